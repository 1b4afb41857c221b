//! `deploy/kustomize/base`: the shim as a shared service. The Deployment is judged against
//! the config its ConfigMap is generated from, and that config against the real binary.

use std::net::SocketAddr;
use std::time::Duration;

use super::{generated_config, strings, yaml_file};
use crate::deployment::{
    NONROOT_ID, address, assert_pod_security_restricted, check_config, duration, items, millicores,
    named, port_number, repo_file,
};
use crate::support::*;
use yaml_rust2::Yaml;

const BASE: &str = "deploy/kustomize/base";
const SHIM: &str = "explo-shim";

/// The base's resources, every document of every file its kustomization lists.
fn resources() -> Vec<Yaml> {
    let kustomization = &yaml_file(&format!("{BASE}/kustomization.yaml"))[0];
    strings(kustomization, "resources")
        .into_iter()
        .flat_map(|file| yaml_file(&format!("{BASE}/{file}")))
        .collect()
}

fn one<'a>(documents: &'a [Yaml], kind: &str) -> &'a Yaml {
    let found: Vec<&Yaml> = documents
        .iter()
        .filter(|doc| doc["kind"].as_str() == Some(kind))
        .collect();
    assert_eq!(found.len(), 1, "the base has one {kind}");
    found[0]
}

fn config_text() -> String {
    repo_file(&generated_config(BASE).1)
}

fn config() -> toml::Table {
    config_text()
        .parse()
        .expect("the base's explo-shim.toml is TOML")
}

fn pod(documents: &[Yaml]) -> &Yaml {
    let pod = &one(documents, "Deployment")["spec"]["template"]["spec"];
    assert!(pod.is_hash(), "the Deployment has a pod template");
    pod
}

fn shim(documents: &[Yaml]) -> &Yaml {
    named(items(pod(documents), "containers"), SHIM).expect("a container named explo-shim")
}

fn pod_labels(documents: &[Yaml]) -> &Yaml {
    &one(documents, "Deployment")["spec"]["template"]["metadata"]["labels"]
}

/// Fails unless every label `selector` asks for is one of `labels`, with its value.
fn assert_selects(selector: &Yaml, labels: &Yaml, what: &str) {
    let wanted = selector
        .as_hash()
        .filter(|wanted| !wanted.is_empty())
        .unwrap_or_else(|| panic!("{what}: an empty selector matches every pod"));
    for (key, value) in wanted {
        assert_eq!(&labels[key.as_str().unwrap()], value, "{what}: {key:?}");
    }
}

/// The config file with the admin token's path pointed at a token file of the test's own,
/// as the Secret's mount would provide it; the token file is removed with the config.
struct ConfigWithToken {
    config: TempConfig,
    _token: TempConfig,
}

fn config_with_token() -> ConfigWithToken {
    let token = TempConfig::new("an-admin-token-of-the-tests-own-0123456789\n");
    let mut settings = config();
    settings.insert(
        "admin_token_file".to_owned(),
        toml::Value::from(token.path()),
    );
    ConfigWithToken {
        config: TempConfig::new(&toml::to_string(&settings).unwrap()),
        _token: token,
    }
}

#[test]
fn every_listed_resource_and_generated_file_exists() {
    for dir in [BASE, "deploy/kustomize/sidecar", "deploy/prometheus"] {
        let kustomization = &yaml_file(&format!("{dir}/kustomization.yaml"))[0];
        let mut files = strings(kustomization, "resources");
        files.extend(
            items(kustomization, "patches")
                .iter()
                .map(|patch| patch["path"].as_str().expect("a patch names its file")),
        );
        for generator in items(kustomization, "configMapGenerator") {
            files.extend(strings(generator, "files"));
        }
        assert!(!files.is_empty(), "{dir} lists its files");
        for file in files {
            let path = format!("{}/{dir}/{file}", env!("CARGO_MANIFEST_DIR"));
            assert!(
                std::path::Path::new(&path).is_file(),
                "{dir} lists {file}, which does not exist"
            );
        }
    }
    let kinds: Vec<String> = resources()
        .iter()
        .map(|doc| doc["kind"].as_str().unwrap_or("?").to_owned())
        .collect();
    for kind in [
        "Deployment",
        "Service",
        "PodDisruptionBudget",
        "NetworkPolicy",
    ] {
        assert!(
            kinds.iter().any(|found| found == kind),
            "the base has a {kind}: {kinds:?}"
        );
    }
}

#[test]
fn the_base_config_passes_check_config() {
    let file = config_with_token();
    check_config(file.config.path());
    // As shipped, it names the file the Secret's mount provides (checked below).
    assert!(config()["admin_token_file"].as_str().is_some());
}

/// The probes ask the real binary, started with the base's config, for their paths on the
/// admin listener: each answers 200.
#[tokio::test]
async fn the_probes_hit_the_admin_ports_real_paths() {
    let documents = resources();
    let shim_container = shim(&documents);
    let settings = config();
    let admin = address(&settings, "admin");
    let mut paths = Vec::new();
    for (probe, path) in [("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")] {
        let get = &shim_container[probe]["httpGet"];
        assert_eq!(get["path"].as_str(), Some(path), "{probe}");
        assert_eq!(
            port_number(shim_container, &get["port"]),
            i64::from(admin.port()),
            "{probe} asks the admin port"
        );
        paths.push(path);
    }
    let file = config_with_token();
    let upstream = team_only_upstream().await;
    let running = Shim::start(&upstream.url(), &["--config", file.config.path()]);
    for path in paths {
        let got = send("GET", &running.admin_url(path), &[], "").await;
        assert_eq!(got.status, 200, "{path} on the admin listener");
    }
}

#[test]
fn the_ports_agree_with_the_config() {
    let documents = resources();
    let settings = config();
    let listen: SocketAddr = address(&settings, "listen");
    let admin: SocketAddr = address(&settings, "admin");
    for (name, addr) in [("listen", listen), ("admin", admin)] {
        assert!(
            addr.ip().is_unspecified(),
            "{name} {addr} is not reachable from other pods"
        );
    }
    let container = shim(&documents);
    let port = |name: &str| port_number(container, &Yaml::String(name.to_owned()));
    assert_eq!(port("proxy"), i64::from(listen.port()));
    assert_eq!(port("admin"), i64::from(admin.port()));

    let service = one(&documents, "Service");
    assert_selects(
        &service["spec"]["selector"],
        pod_labels(&documents),
        "Service",
    );
    let target_ports: Vec<i64> = items(&service["spec"], "ports")
        .iter()
        .map(|port| port_number(container, &port["targetPort"]))
        .collect();
    assert_eq!(
        target_ports,
        [i64::from(listen.port())],
        "the Service carries the proxy port alone, not the admin port"
    );
}

#[test]
fn the_pod_meets_pod_security_restricted() {
    let documents = resources();
    let pod = pod(&documents);
    assert!(assert_pod_security_restricted(pod) >= 1);
    let security = &shim(&documents)["securityContext"];
    assert_eq!(security["runAsUser"].as_i64(), Some(NONROOT_ID));
    assert_eq!(security["runAsGroup"].as_i64(), Some(NONROOT_ID));
    assert_eq!(security["readOnlyRootFilesystem"].as_bool(), Some(true));
}

#[test]
fn the_config_and_the_token_are_mounted_as_directories() {
    let documents = resources();
    let pod = pod(&documents);
    let container = shim(&documents);
    let mounts = items(container, "volumeMounts");
    for mount in mounts {
        assert!(
            mount["subPath"].is_badvalue() && mount["subPathExpr"].is_badvalue(),
            "{:?}: the kubelet never updates a subPath mount",
            mount["name"]
        );
        assert_eq!(
            mount["readOnly"].as_bool(),
            Some(true),
            "{:?}",
            mount["name"]
        );
    }
    let mount_of = |source: &str, key: &str, name: &str| -> String {
        let volume = items(pod, "volumes")
            .iter()
            .find(|volume| volume[source][key].as_str() == Some(name))
            .unwrap_or_else(|| panic!("a {source} volume of {name}"));
        let mount = mounts
            .iter()
            .find(|mount| mount["name"] == volume["name"])
            .unwrap_or_else(|| panic!("the shim mounts the {source} {name}"));
        mount["mountPath"]
            .as_str()
            .unwrap()
            .trim_end_matches('/')
            .to_owned()
    };
    // The config: the generated ConfigMap, where --config reads it.
    let (configmap, _) = generated_config(BASE);
    let config_dir = mount_of("configMap", "name", &configmap);
    let args: Vec<&str> = items(container, "args")
        .iter()
        .filter_map(Yaml::as_str)
        .collect();
    assert_eq!(
        args,
        ["--config", &format!("{config_dir}/explo-shim.toml")],
        "the shim reads the mounted config"
    );
    // The token: a Secret, never a value in the repository, where admin_token_file points.
    let token_file = config()["admin_token_file"].as_str().unwrap().to_owned();
    let secret_dir = mount_of("secret", "secretName", "explo-shim-admin");
    assert_eq!(token_file, format!("{secret_dir}/token"));
    assert!(
        !resources()
            .iter()
            .any(|doc| doc["kind"].as_str() == Some("Secret")),
        "no Secret (and so no token) lives in the repository"
    );
}

/// A Kubernetes memory quantity ("128Mi", "134M", 134217728) in bytes.
fn bytes(quantity: &Yaml) -> u64 {
    let text = match quantity {
        Yaml::Integer(number) => return u64::try_from(*number).unwrap(),
        Yaml::String(text) => text,
        other => panic!("not a memory quantity: {other:?}"),
    };
    let split = text
        .find(|c: char| c.is_ascii_alphabetic())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number.parse().expect("a whole number of bytes");
    let unit = match unit {
        "" => 1,
        "k" => 1_000,
        "M" => 1_000_000,
        "G" => 1_000_000_000,
        "Ki" => 1 << 10,
        "Mi" => 1 << 20,
        "Gi" => 1 << 30,
        other => panic!("unit {other} of {text}"),
    };
    number * unit
}

/// `limits.KEY` of `settings`, or its default from the reference config.
pub(super) fn limit(settings: &toml::Table, key: &str) -> u64 {
    let reference: toml::Table = repo_file("config/explo-shim.toml").parse().unwrap();
    let value = settings
        .get("limits")
        .and_then(|limits| limits.get(key))
        .or_else(|| reference["limits"].get(key))
        .and_then(toml::Value::as_integer)
        .unwrap_or_else(|| panic!("limits.{key} is a number"));
    u64::try_from(value).unwrap()
}

/// A `usize` constant of the shim's source, `const NAME: usize = 4 * 1024 * 1024;`, evaluated:
/// the memory arithmetic follows the code's bounds, not a copy of them.
fn code_constant(file: &str, name: &str) -> u64 {
    let text = repo_file(file);
    let line = text
        .lines()
        .find(|line| line.contains(&format!("const {name}: ")))
        .unwrap_or_else(|| panic!("{file} has no constant {name}"));
    let value = line
        .split_once('=')
        .and_then(|(_, rest)| rest.split_once(';'))
        .unwrap_or_else(|| panic!("{file}: {line}"))
        .0;
    value
        .split('*')
        .map(|factor| {
            factor
                .trim()
                .replace('_', "")
                .parse::<u64>()
                .unwrap_or_else(|_| panic!("{file}: {name} = {value} is not a product of numbers"))
        })
        .product()
}

/// The bounded buffers that can all be full at once, besides connections and requests: the
/// admin reports held for slow readers, the log queue, the span queue, the migration
/// tracker's client table, and (with Redis) the fleet's call queue and its records held while
/// Redis is away. docs/design/memory.md gives each.
fn bounded_buffer_bytes(settings: &toml::Table) -> u64 {
    // One fleet record: a client's calls to one endpoint, the usage block whose size a unit
    // test in src/observe/usage/buckets.rs pins.
    const FLEET_RECORD_BYTES: u64 = 340;
    // A tracked client's record at most (docs/design/memory.md, "The migration tracker").
    const CLIENT_RECORD_BYTES: u64 = 4_000;
    code_constant("src/admin/report_budget.rs", "REPORT_BYTES_IN_FLIGHT")
        + code_constant("src/observe/telemetry.rs", "LOG_QUEUE_BYTES")
        + code_constant("src/observe/otel/export.rs", "QUEUE_BYTES")
        + CLIENT_RECORD_BYTES * limit(settings, "max_tracked_clients")
        + code_constant("src/fleet/usage.rs", "QUEUE_BYTES")
        + FLEET_RECORD_BYTES * code_constant("src/fleet/usage.rs", "MAX_PENDING")
}

/// The worst case of docs/design/memory.md: RSS ≈ 10 MB + 30 KB × open connections + 40 KB ×
/// requests in flight, plus every bounded buffer full.
pub(super) fn formula_bytes(settings: &toml::Table) -> u64 {
    10_000_000
        + 30_000 * limit(settings, "max_connections")
        + 40_000 * limit(settings, "max_in_flight")
        + bounded_buffer_bytes(settings)
}

/// Fails unless the comment of the manifest at `path` does the arithmetic with the caps of
/// `settings` and comes to what [`formula_bytes`] does.
pub(super) fn assert_memory_comment(path: &str, settings: &toml::Table) {
    let text = repo_file(path);
    for key in ["max_connections", "max_in_flight", "max_tracked_clients"] {
        let cap = limit(settings, key);
        assert!(
            text.contains(&format!("× {cap} ({key})")),
            "{path}'s comment computes with {key} = {cap}"
        );
    }
    for buffer in [
        "admin reports",
        "log queue",
        "span queue",
        "fleet call queue",
    ] {
        assert!(
            text.contains(buffer),
            "{path}'s comment counts the {buffer}"
        );
    }
    let megabytes = format!("= {:.1} MB", formula_bytes(settings) as f64 / 1e6);
    assert!(
        text.contains(&megabytes),
        "{path}'s comment comes to {megabytes}"
    );
}

/// Fails unless `resources` fit the caps of `settings`: the memory limit covers the formula
/// with a margin of 10 % (the formula is a fit, not a bound) and wastes no more than half of
/// it again; the request is at most the limit and at least the shim's idle size.
pub(super) fn assert_resources_fit(resources: &Yaml, settings: &toml::Table, what: &str) {
    let needed = formula_bytes(settings);
    let limit = bytes(&resources["limits"]["memory"]);
    let request = bytes(&resources["requests"]["memory"]);
    assert!(
        limit * 10 >= needed * 11,
        "{what}: memory limit {limit} B leaves no 10 % margin over the formula's {needed} B"
    );
    assert!(
        limit * 2 <= needed * 3,
        "{what}: memory limit {limit} B is far over the formula's {needed} B"
    );
    assert!(
        (10_000_000..=limit).contains(&request),
        "{what}: memory request {request} B"
    );
    let workers = settings
        .get("workers")
        .and_then(toml::Value::as_integer)
        .unwrap_or_else(|| panic!("{what}: `workers` is a number, to go with the CPU limit"));
    assert_eq!(
        millicores(&resources["limits"]["cpu"]),
        workers * 1000,
        "{what}: one serving thread per CPU of the limit"
    );
}

#[test]
fn the_resources_follow_the_memory_formula_for_the_configs_caps() {
    let documents = resources();
    let settings = config();
    assert_resources_fit(&shim(&documents)["resources"], &settings, "base");
    // The comment states the arithmetic, with the caps the config holds.
    assert_memory_comment(&format!("{BASE}/deployment.yaml"), &settings);
}

#[test]
fn the_grace_period_covers_the_shutdown_delay_and_grace() {
    let documents = resources();
    let settings = config();
    let delay = duration(&settings, "shutdown", "delay");
    let grace = duration(&settings, "shutdown", "grace");
    assert!(
        delay > Duration::ZERO,
        "behind a Service the delay lets the endpoints catch up"
    );
    let period = pod(&documents)["terminationGracePeriodSeconds"]
        .as_i64()
        .expect("terminationGracePeriodSeconds is set");
    let period = Duration::from_secs(u64::try_from(period).unwrap());
    assert!(
        period > delay + grace,
        "terminationGracePeriodSeconds ({period:?}) leaves no margin over {delay:?} + {grace:?}"
    );
    // Distroless has no shell or `sleep`: a preStop exec hook could not run.
    assert!(shim(&documents)["lifecycle"]["preStop"]["exec"].is_badvalue());
}

#[test]
fn replicas_and_the_disruption_budget_keep_one_serving() {
    let documents = resources();
    let deployment = one(&documents, "Deployment");
    let replicas = deployment["spec"]["replicas"].as_i64().expect("replicas");
    assert!(replicas >= 2, "{replicas} replicas");
    let labels = pod_labels(&documents);
    assert_selects(
        &deployment["spec"]["selector"]["matchLabels"],
        labels,
        "the Deployment",
    );
    let budget = one(&documents, "PodDisruptionBudget");
    assert_selects(
        &budget["spec"]["selector"]["matchLabels"],
        labels,
        "the PodDisruptionBudget",
    );
    let spec = &budget["spec"];
    let still_up = match (
        spec["maxUnavailable"].as_i64(),
        spec["minAvailable"].as_i64(),
    ) {
        (Some(max_unavailable), None) => replicas - max_unavailable,
        (None, Some(min_available)) => min_available,
        other => {
            panic!("the budget sets one of maxUnavailable or minAvailable, as a number: {other:?}")
        }
    };
    assert!(
        (1..replicas).contains(&still_up),
        "the budget keeps {still_up} of {replicas}: at least one, and lets a drain proceed"
    );
    let readiness = &shim(&documents)["readinessProbe"];
    assert!(!readiness.is_badvalue(), "a rollout waits for readiness");
}

#[test]
fn the_network_policy_admits_the_admin_port_only_from_the_scrapers() {
    let documents = resources();
    let policy = one(&documents, "NetworkPolicy");
    assert_selects(
        &policy["spec"]["podSelector"]["matchLabels"],
        pod_labels(&documents),
        "the NetworkPolicy",
    );
    let types: Vec<&str> = strings(&policy["spec"], "policyTypes");
    assert!(types.contains(&"Ingress"), "{types:?}");
    let settings = config();
    let listen = i64::from(address(&settings, "listen").port());
    let admin = i64::from(address(&settings, "admin").port());
    let rules = items(&policy["spec"], "ingress");
    let mut admitted = Vec::new();
    for rule in rules {
        let ports: Vec<i64> = items(rule, "ports")
            .iter()
            .map(|port| port["port"].as_i64().expect("a numbered port"))
            .collect();
        assert!(
            !ports.is_empty(),
            "a rule without ports opens every port, the admin port included"
        );
        let peers = items(rule, "from");
        assert!(!peers.is_empty(), "a rule without `from` admits everyone");
        for port in &ports {
            assert!(
                [listen, admin].contains(port),
                "port {port} is neither listen nor admin"
            );
            admitted.push(*port);
        }
        if ports.contains(&admin) {
            for peer in peers {
                let named_pods = peer["podSelector"]["matchLabels"]
                    .as_hash()
                    .is_some_and(|labels| !labels.is_empty());
                let named_namespace = peer["namespaceSelector"]["matchLabels"]
                    .as_hash()
                    .is_some_and(|labels| !labels.is_empty());
                assert!(
                    named_pods && named_namespace && peer["ipBlock"].is_badvalue(),
                    "the admin port admits only labelled pods of a labelled namespace: {peer:?}"
                );
            }
        }
    }
    admitted.sort_unstable();
    admitted.dedup();
    let mut both = vec![listen, admin];
    both.sort_unstable();
    assert_eq!(
        admitted, both,
        "the proxy port and the admin port each have a rule"
    );
}

#[test]
fn the_image_tag_is_the_crate_version() {
    let documents = resources();
    let image = shim(&documents)["image"].as_str().expect("an image");
    assert_eq!(
        image.rsplit_once(':').map(|(_, tag)| tag),
        Some(env!("CARGO_PKG_VERSION")),
        "{image}"
    );
}
