//! The deployment files work as shipped: the sidecar manifest, the image's own
//! config, the Dockerfile, the Compose file and the licence. Docker and Kubernetes do not run
//! here, so the files are read as data, and every config they carry is fed to the real binary's
//! `--check-config`.

use std::net::SocketAddr;
use std::time::Duration;

use crate::support::{TempConfig, run_binary};
use yaml_rust2::{Yaml, YamlLoader};

/// The distroless `nonroot` user and group, which the image runs as.
pub(crate) const NONROOT_ID: i64 = 65532;
/// Where the image reads its config (its `EXPLO_SHIM_CONFIG`).
pub(crate) const IMAGE_CONFIG_PATH: &str = "/etc/explo-shim/explo-shim.toml";
const SHIM_CONTAINER: &str = "explo-shim";

pub(crate) fn repo_file(path: &str) -> String {
    let full = format!("{}/{path}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&full).unwrap_or_else(|error| panic!("{full}: {error}"))
}

// ---------------------------------------------------------------- the sidecar manifest

pub(crate) fn manifest() -> Vec<Yaml> {
    YamlLoader::load_from_str(&repo_file("examples/kubernetes-sidecar.yaml"))
        .expect("examples/kubernetes-sidecar.yaml is YAML")
}

pub(crate) fn document<'a>(documents: &'a [Yaml], kind: &str) -> &'a Yaml {
    let mut found = documents
        .iter()
        .filter(|doc| doc["kind"].as_str() == Some(kind));
    let first = found
        .next()
        .unwrap_or_else(|| panic!("the manifest has no {kind}"));
    assert!(
        found.next().is_none(),
        "the manifest has more than one {kind}"
    );
    first
}

/// The shim's config file as the ConfigMap carries it.
pub(crate) fn configmap_toml(documents: &[Yaml]) -> &str {
    document(documents, "ConfigMap")["data"]["explo-shim.toml"]
        .as_str()
        .expect("the ConfigMap has an explo-shim.toml")
}

pub(crate) fn configmap_settings(documents: &[Yaml]) -> toml::Table {
    configmap_toml(documents)
        .parse()
        .expect("the ConfigMap's explo-shim.toml is TOML")
}

pub(crate) fn pod_spec(documents: &[Yaml]) -> &Yaml {
    let spec = &document(documents, "Deployment")["spec"]["template"]["spec"];
    assert!(spec.is_hash(), "the Deployment has a pod template");
    spec
}

/// The sequence at `key`, or none when it is absent.
pub(crate) fn items<'a>(node: &'a Yaml, key: &str) -> &'a [Yaml] {
    node[key].as_vec().map(Vec::as_slice).unwrap_or_default()
}

/// Every container of the pod, init containers (sidecars) included.
pub(crate) fn all_items(pod: &Yaml) -> impl Iterator<Item = &Yaml> {
    items(pod, "initContainers")
        .iter()
        .chain(items(pod, "containers"))
}

pub(crate) fn named<'a>(list: &'a [Yaml], name: &str) -> Option<&'a Yaml> {
    list.iter().find(|item| item["name"].as_str() == Some(name))
}

pub(crate) fn shim_container(pod: &Yaml) -> &Yaml {
    named(items(pod, "initContainers"), SHIM_CONTAINER)
        .expect("the shim is one of the pod's initContainers")
}

pub(crate) fn address(settings: &toml::Table, key: &str) -> SocketAddr {
    settings[key]
        .as_str()
        .and_then(|value| value.parse().ok())
        .unwrap_or_else(|| panic!("the ConfigMap's `{key}` is an IP:PORT"))
}

pub(crate) fn duration(settings: &toml::Table, table: &str, key: &str) -> Duration {
    let value = settings[table][key]
        .as_str()
        .unwrap_or_else(|| panic!("the ConfigMap sets `{table}.{key}`"));
    humantime::parse_duration(value).unwrap_or_else(|error| panic!("{table}.{key}: {error}"))
}

/// A container port given by name or number, as a number.
pub(crate) fn port_number(container: &Yaml, port: &Yaml) -> i64 {
    if let Some(number) = port.as_i64() {
        return number;
    }
    let name = port.as_str().expect("a port is a number or a name");
    named(items(container, "ports"), name)
        .unwrap_or_else(|| panic!("the container has no port named {name}"))["containerPort"]
        .as_i64()
        .expect("containerPort is a number")
}

/// A Kubernetes CPU quantity ("1", "500m", 2) in millicores.
pub(crate) fn millicores(quantity: &Yaml) -> i64 {
    match quantity {
        Yaml::Integer(cores) => cores * 1000,
        Yaml::String(text) => match text.strip_suffix('m') {
            Some(milli) => milli.parse().expect("a millicore quantity"),
            None => text.parse::<i64>().expect("a whole number of cores") * 1000,
        },
        other => panic!("not a CPU quantity: {other:?}"),
    }
}

pub(crate) fn check_config(path: &str) {
    let output = run_binary(&["--config", path, "--check-config"], &[]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "--check-config exited with {}: {stderr}",
        output.status
    );
    assert!(
        !stderr.to_ascii_lowercase().contains("error"),
        "--check-config complained: {stderr}"
    );
}

#[test]
fn the_sidecar_configmap_passes_check_config() {
    let documents = manifest();
    let file = TempConfig::new(configmap_toml(&documents));
    check_config(file.path());
}

#[test]
fn the_sidecar_is_a_native_sidecar_that_starts_before_the_app() {
    let documents = manifest();
    let pod = pod_spec(&documents);
    let shim = shim_container(pod);
    assert_eq!(
        shim["restartPolicy"].as_str(),
        Some("Always"),
        "an init container with restartPolicy Always is a native sidecar (Kubernetes 1.29+)"
    );
    assert!(
        named(items(pod, "containers"), SHIM_CONTAINER).is_none(),
        "the shim is not also a regular container"
    );
    assert!(
        shim["image"]
            .as_str()
            .is_some_and(|image| image.contains("explo-shim"))
    );
    // The app is started only once the sidecar's startup probe passes.
    let startup = &shim["startupProbe"]["httpGet"];
    assert_eq!(startup["path"].as_str(), Some("/readyz"));
    let readiness = &shim["readinessProbe"]["httpGet"];
    assert_eq!(readiness["path"].as_str(), Some("/readyz"));
    assert_eq!(
        shim["livenessProbe"]["httpGet"]["path"].as_str(),
        Some("/healthz")
    );

    // The probes come from the kubelet, on the pod's IP: the admin listener must take them.
    let settings = configmap_settings(&documents);
    let admin = address(&settings, "admin");
    assert!(
        admin.ip().is_unspecified(),
        "admin {admin} is not reachable from the kubelet"
    );
    for probe in [startup, readiness] {
        assert_eq!(port_number(shim, &probe["port"]), i64::from(admin.port()));
    }
}

#[test]
fn the_app_reaches_the_shim_on_loopback_only() {
    let documents = manifest();
    let pod = pod_spec(&documents);
    let listen = address(&configmap_settings(&documents), "listen");
    assert!(
        listen.ip().is_loopback(),
        "the sidecar serves its own pod only"
    );
    let app = named(items(pod, "containers"), "app").expect("the app container");
    let base_url = named(items(app, "env"), "EXPLO_API_BASE_URL")
        .expect("the app is given the shim's URL")["value"]
        .as_str();
    assert_eq!(base_url, Some(format!("http://{listen}").as_str()));
}

#[test]
fn the_configmap_is_mounted_where_the_image_reads_its_config() {
    let documents = manifest();
    let pod = pod_spec(&documents);
    let shim = shim_container(pod);
    let configmap_name = document(&documents, "ConfigMap")["metadata"]["name"].as_str();
    let volume = items(pod, "volumes")
        .iter()
        .find(|volume| volume["configMap"]["name"].as_str() == configmap_name)
        .expect("a volume of the ConfigMap");
    let mount = items(shim, "volumeMounts")
        .iter()
        .find(|mount| mount["name"] == volume["name"])
        .expect("the shim mounts the ConfigMap");
    let mounted_file = format!(
        "{}/explo-shim.toml",
        mount["mountPath"].as_str().unwrap().trim_end_matches('/')
    );
    assert_eq!(mounted_file, IMAGE_CONFIG_PATH);
    assert_eq!(mount["readOnly"].as_bool(), Some(true));
    assert!(
        final_stage().iter().any(|(op, args)| op == "ENV"
            && args.contains(&format!("EXPLO_SHIM_CONFIG={IMAGE_CONFIG_PATH}"))),
        "the image's EXPLO_SHIM_CONFIG is {IMAGE_CONFIG_PATH}"
    );
}

/// The Pod Security Standards' "restricted" profile, judged on the whole pod as the admission
/// controller does: https://kubernetes.io/docs/concepts/security/pod-security-standards/
#[test]
fn the_sidecar_example_meets_pod_security_restricted() {
    let documents = manifest();
    let pod = pod_spec(&documents);
    let checked = assert_pod_security_restricted(pod);
    assert!(checked >= 2, "the shim and the app are both checked");

    // The shim runs as the image's own user, by number.
    let shim = &shim_container(pod)["securityContext"];
    assert_eq!(shim["runAsUser"].as_i64(), Some(NONROOT_ID));
    assert_eq!(shim["runAsGroup"].as_i64(), Some(NONROOT_ID));
    assert_eq!(
        dockerfile_user(),
        format!("{NONROOT_ID}:{NONROOT_ID}"),
        "the manifest's user is the image's"
    );
}

/// Fails unless `pod` meets "restricted" (with a read-only root filesystem besides); the
/// number of containers checked.
pub(crate) fn assert_pod_security_restricted(pod: &Yaml) -> usize {
    let pod_security = &pod["securityContext"];
    for host_namespace in ["hostNetwork", "hostPID", "hostIPC"] {
        assert_ne!(
            pod[host_namespace].as_bool(),
            Some(true),
            "{host_namespace}"
        );
    }
    const ALLOWED_VOLUMES: [&str; 8] = [
        "configMap",
        "csi",
        "downwardAPI",
        "emptyDir",
        "ephemeral",
        "persistentVolumeClaim",
        "projected",
        "secret",
    ];
    for volume in items(pod, "volumes") {
        for key in volume.as_hash().unwrap().keys().filter_map(Yaml::as_str) {
            assert!(
                key == "name" || ALLOWED_VOLUMES.contains(&key),
                "volume type {key} is not allowed under restricted"
            );
        }
    }
    let mut checked = 0;
    for container in all_items(pod) {
        let name = container["name"].as_str().unwrap_or("?");
        let security = &container["securityContext"];
        // A container's own setting wins over the pod's.
        let effective = |key: &str| {
            if security[key].is_badvalue() {
                &pod_security[key]
            } else {
                &security[key]
            }
        };
        assert_eq!(
            effective("runAsNonRoot").as_bool(),
            Some(true),
            "{name}: runAsNonRoot"
        );
        assert_ne!(
            effective("runAsUser").as_i64(),
            Some(0),
            "{name}: runAsUser"
        );
        assert_eq!(
            security["allowPrivilegeEscalation"].as_bool(),
            Some(false),
            "{name}: allowPrivilegeEscalation"
        );
        assert_ne!(security["privileged"].as_bool(), Some(true), "{name}");
        assert_eq!(
            security["readOnlyRootFilesystem"].as_bool(),
            Some(true),
            "{name}: readOnlyRootFilesystem"
        );
        let capabilities = &security["capabilities"];
        assert!(
            items(capabilities, "drop")
                .iter()
                .any(|cap| cap.as_str() == Some("ALL")),
            "{name}: capabilities.drop has ALL"
        );
        for added in items(capabilities, "add") {
            assert_eq!(added.as_str(), Some("NET_BIND_SERVICE"), "{name}");
        }
        assert!(
            matches!(
                effective("seccompProfile")["type"].as_str(),
                Some("RuntimeDefault" | "Localhost")
            ),
            "{name}: seccompProfile"
        );
        for port in items(container, "ports") {
            assert!(port["hostPort"].is_badvalue(), "{name}: hostPort");
        }
        checked += 1;
    }
    checked
}

#[test]
fn the_sidecar_cpu_limit_matches_its_workers_and_memory_is_limited() {
    let documents = manifest();
    let limits = &shim_container(pod_spec(&documents))["resources"]["limits"];
    let workers = configmap_settings(&documents)
        .get("workers")
        .and_then(toml::Value::as_integer)
        .expect("the ConfigMap sets `workers` to a number");
    assert!(!limits["cpu"].is_badvalue(), "the shim has a CPU limit");
    assert_eq!(
        millicores(&limits["cpu"]),
        workers * 1000,
        "one serving thread per CPU of the limit"
    );
    assert!(
        limits["memory"].as_str().is_some_and(|m| !m.is_empty()),
        "the shim has a memory limit"
    );
}

#[test]
fn the_termination_grace_period_covers_the_shutdown_delay_and_grace() {
    let documents = manifest();
    let settings = configmap_settings(&documents);
    let delay = duration(&settings, "shutdown", "delay");
    let grace = duration(&settings, "shutdown", "grace");
    assert!(
        delay > Duration::ZERO,
        "the example shows the shutdown delay"
    );
    let period = pod_spec(&documents)["terminationGracePeriodSeconds"]
        .as_i64()
        .expect("terminationGracePeriodSeconds is set");
    let period = Duration::from_secs(u64::try_from(period).unwrap());
    assert!(
        period > delay + grace,
        "terminationGracePeriodSeconds ({period:?}) leaves no margin over delay {delay:?} + grace {grace:?}"
    );
    // Distroless has no shell or `sleep`: a preStop exec hook could not run.
    assert!(shim_container(pod_spec(&documents))["lifecycle"]["preStop"].is_badvalue());
}

// ---------------------------------------------------------------- the image

/// The Dockerfile's instructions as (OPERATION, arguments), continuation lines joined and
/// comments dropped.
pub(crate) fn dockerfile_instructions() -> Vec<(String, String)> {
    let mut instructions = Vec::new();
    let mut current = String::new();
    for line in repo_file("Dockerfile").lines() {
        let line = line.trim();
        if line.starts_with('#') || (line.is_empty() && current.is_empty()) {
            continue;
        }
        match line.strip_suffix('\\') {
            Some(part) => current.push_str(part),
            None => {
                current.push_str(line);
                let (op, args) = current.trim().split_once(char::is_whitespace).unwrap();
                instructions.push((op.to_ascii_uppercase(), args.trim().to_owned()));
                current.clear();
            }
        }
    }
    instructions
}

/// The instructions of the last stage: what the image is made of.
pub(crate) fn final_stage() -> Vec<(String, String)> {
    let mut instructions = dockerfile_instructions();
    let last_from = instructions
        .iter()
        .rposition(|(op, _)| op == "FROM")
        .expect("the Dockerfile has a FROM");
    instructions.drain(..last_from);
    instructions
}

pub(crate) fn dockerfile_user() -> String {
    let users: Vec<String> = final_stage()
        .into_iter()
        .filter(|(op, _)| op == "USER")
        .map(|(_, user)| user)
        .collect();
    assert_eq!(users.len(), 1, "one USER: {users:?}");
    users[0].clone()
}

#[test]
fn the_image_config_passes_check_config_and_sets_only_addresses_and_log_format() {
    check_config(&format!(
        "{}/config/container.toml",
        env!("CARGO_MANIFEST_DIR")
    ));
    let settings: toml::Table = repo_file("config/container.toml").parse().unwrap();
    // A mounted file replaces this one whole, so nothing else may live only here.
    let mut keys: Vec<&str> = settings.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(keys, ["admin", "listen", "log_format"]);
    assert_eq!(settings["listen"].as_str(), Some("0.0.0.0:8080"));
    assert_eq!(settings["admin"].as_str(), Some("0.0.0.0:9901"));
    assert_eq!(settings["log_format"].as_str(), Some("json"));
}

#[test]
fn the_dockerfile_runs_as_a_numeric_user_and_bakes_in_no_address() {
    let user = dockerfile_user();
    assert!(
        user.split(':')
            .all(|id| !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit())),
        "USER {user} is not numeric: runAsNonRoot cannot verify a name"
    );
    assert_ne!(user.split(':').next(), Some("0"));
    let instructions = dockerfile_instructions();
    // Environment beats the config file: any of these would override a mounted file.
    for (op, args) in &instructions {
        if matches!(op.as_str(), "ENV" | "CMD" | "ENTRYPOINT" | "HEALTHCHECK") {
            for baked in [
                "EXPLO_SHIM_LISTEN",
                "EXPLO_SHIM_ADMIN",
                "EXPLO_SHIM_LOG_FORMAT",
                "--listen",
                "--admin",
                "--log-format",
            ] {
                assert!(!args.contains(baked), "{op} {args} bakes in {baked}");
            }
        }
    }
    let image_env: Vec<String> = final_stage()
        .into_iter()
        .filter(|(op, _)| op == "ENV")
        .map(|(_, args)| args)
        .collect();
    assert_eq!(
        image_env,
        [format!("EXPLO_SHIM_CONFIG={IMAGE_CONFIG_PATH}")],
        "the image sets only where its config is"
    );
}

#[test]
fn the_dockerfile_builds_static_amd64_and_arm64_with_its_own_config() {
    let instructions = dockerfile_instructions();
    let has = |op: &str, needle: &str| {
        instructions
            .iter()
            .any(|(found, args)| found == op && args.contains(needle))
    };
    assert!(has("ARG", "TARGETARCH"), "the platform comes from buildx");
    for (arch, target) in [
        ("amd64", "x86_64-unknown-linux-gnu"),
        ("arm64", "aarch64-unknown-linux-gnu"),
    ] {
        assert!(
            has("RUN", &format!("{arch}) target={target}")),
            "{arch} builds {target}"
        );
    }
    assert!(has("RUN", "exit 1"), "another architecture fails the build");
    assert!(
        has("RUN", "--target \"$target\""),
        "the chosen target is built"
    );
    assert!(has("ENV", "+crt-static") || has("RUN", "+crt-static"));
    assert!(has("COPY", ".cargo"), "jemalloc's settings reach the build");
    assert!(
        final_stage().iter().any(|(op, args)| op == "COPY"
            && args == &format!("config/container.toml {IMAGE_CONFIG_PATH}")),
        "the image gets its own config where EXPLO_SHIM_CONFIG points"
    );
}

#[test]
fn the_compose_example_publishes_the_ports_the_shim_listens_on() {
    let compose = YamlLoader::load_from_str(&repo_file("examples/docker-compose.yaml")).unwrap();
    let shim = &compose[0]["services"]["explo-shim"];
    let env = &shim["environment"];
    assert!(
        env["EXPLO_SHIM_LOG_FORMAT"].is_badvalue(),
        "the image's config already logs JSON"
    );
    let ports: Vec<&str> = items(shim, "ports")
        .iter()
        .filter_map(Yaml::as_str)
        .collect();
    for variable in ["EXPLO_SHIM_LISTEN", "EXPLO_SHIM_ADMIN"] {
        let addr: SocketAddr = env[variable].as_str().unwrap().parse().unwrap();
        assert!(addr.ip().is_unspecified(), "{variable} is reachable");
        let published = format!(":{}", addr.port());
        assert!(
            ports.iter().any(|port| port.ends_with(&published)),
            "{variable}'s port is published: {ports:?}"
        );
    }
}

// ---------------------------------------------------------------- the licence

#[test]
fn the_crate_is_dual_licensed_mit_or_apache_2() {
    assert_eq!(env!("CARGO_PKG_LICENSE"), "MIT OR Apache-2.0");
    let mit = repo_file("LICENSE-MIT");
    assert!(mit.contains("Copyright (c) The explo-shim authors"));
    assert!(mit.contains("Permission is hereby granted, free of charge"));
    assert!(mit.contains("THE SOFTWARE IS PROVIDED \"AS IS\""));
    let apache = repo_file("LICENSE-APACHE");
    assert!(apache.contains("Version 2.0, January 2004"));
    assert!(apache.contains("END OF TERMS AND CONDITIONS"));
    assert!(apache.contains("APPENDIX: How to apply the Apache License to your work."));
}
