//! The sidecar component applied to an application of its own settings: the pod's
//! annotations, grace period and securityContext are the application's and survive.
//!
//! The patch is applied here as kustomize's strategic merge does for the keys it sets (maps
//! merged key by key, lists of named items merged by name, anything else replaced), so the
//! test runs without kustomize. Where `kubectl` is on the PATH the overlay is also rendered
//! for real, and the rendered Deployment must pass the same checks (without it that test says
//! SKIPPED, and fails where `EXPLO_SHIM_REQUIRE_KUBECTL` is set).

use std::path::Path;
use std::process::Command;

use super::sidecar::{COMPONENT, patch};
use crate::deployment::{items, named, shim_container};
use crate::support::temp_path;
use yaml_rust2::{Yaml, YamlLoader};

/// An application with settings of its own where the shim's patch used to write: metrics on
/// port 8000 announced by annotations, a long graceful shutdown, and a pod running as root.
const APPLICATION: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata:
  name: application
  labels: {explo-shim/sidecar: "true"}
spec:
  selector:
    matchLabels: {app: application}
  template:
    metadata:
      labels: {app: application}
      annotations:
        prometheus.io/scrape: "true"
        prometheus.io/port: "8000"
        prometheus.io/path: /metrics
    spec:
      terminationGracePeriodSeconds: 120
      securityContext: {runAsNonRoot: false, runAsUser: 0}
      containers:
        - name: app
          image: registry.example.com/application:1.0
          ports:
            - {name: metrics, containerPort: 8000}
      volumes:
        - name: data
          emptyDir: {}
"#;

fn application() -> Yaml {
    YamlLoader::load_from_str(APPLICATION).unwrap().remove(0)
}

/// `patch` over `base` as a strategic merge patch does it for these keys.
fn merge(base: &Yaml, patch: &Yaml) -> Yaml {
    match (base, patch) {
        (Yaml::Hash(base), Yaml::Hash(patch)) => {
            let mut merged = base.clone();
            for (key, value) in patch {
                let next = match base.get(key) {
                    Some(old) => merge(old, value),
                    None => value.clone(),
                };
                merged.insert(key.clone(), next);
            }
            Yaml::Hash(merged)
        }
        (Yaml::Array(base), Yaml::Array(patch))
            if patch.iter().all(|item| item["name"].as_str().is_some()) =>
        {
            let mut merged = base.clone();
            for item in patch {
                match merged.iter_mut().find(|old| old["name"] == item["name"]) {
                    Some(old) => *old = merge(old, item),
                    None => merged.push(item.clone()),
                }
            }
            Yaml::Array(merged)
        }
        (_, patch) => patch.clone(),
    }
}

/// `node` with every map's keys in order: kustomize writes them sorted, and two maps of
/// yaml-rust2 are equal only in the same order.
fn sorted(node: &Yaml) -> Yaml {
    match node {
        Yaml::Hash(hash) => {
            let mut pairs: Vec<(Yaml, Yaml)> = hash
                .iter()
                .map(|(key, value)| (key.clone(), sorted(value)))
                .collect();
            pairs.sort_by(|a, b| a.0.cmp(&b.0));
            Yaml::Hash(pairs.into_iter().collect())
        }
        Yaml::Array(list) => Yaml::Array(list.iter().map(sorted).collect()),
        other => other.clone(),
    }
}

/// Fails unless `rendered`, the application with the sidecar added, keeps the application's
/// own settings and has the shim as the patch describes it.
fn assert_application_kept(rendered: &Yaml, how: &str) {
    let original = sorted(&application());
    let rendered = &sorted(rendered);
    let template = &rendered["spec"]["template"];
    let pod = &template["spec"];
    let original_pod = &original["spec"]["template"]["spec"];
    assert_eq!(
        template["metadata"]["annotations"],
        original["spec"]["template"]["metadata"]["annotations"],
        "{how}: the application's annotations (its own metrics port 8000)"
    );
    assert_eq!(
        pod["terminationGracePeriodSeconds"].as_i64(),
        Some(120),
        "{how}: the application's grace period"
    );
    assert_eq!(
        pod["securityContext"], original_pod["securityContext"],
        "{how}: the pod's securityContext is the application's"
    );
    assert_eq!(
        pod["containers"], original_pod["containers"],
        "{how}: the application's containers"
    );
    let labels = &template["metadata"]["labels"];
    assert_eq!(labels["app"].as_str(), Some("application"), "{how}");
    assert_eq!(labels["explo-shim/sidecar"].as_str(), Some("true"), "{how}");
    assert!(
        named(items(pod, "volumes"), "data").is_some(),
        "{how}: the application's volume"
    );
    let patch = sorted(&patch()[0]);
    let patched_pod = &patch["spec"]["template"]["spec"];
    let shim = shim_container(pod);
    assert_eq!(
        shim,
        shim_container(patched_pod),
        "{how}: the shim container"
    );
    assert_eq!(shim["restartPolicy"].as_str(), Some("Always"), "{how}");
    // The shim's container settings win over the pod's root ones, for the shim alone.
    let security = &shim["securityContext"];
    assert_eq!(security["runAsNonRoot"].as_bool(), Some(true), "{how}");
    assert_eq!(security["runAsUser"].as_i64(), Some(65532), "{how}");
    let config_volume = &items(patched_pod, "volumes")[0];
    let volume = named(
        items(pod, "volumes"),
        config_volume["name"].as_str().unwrap(),
    )
    .unwrap_or_else(|| panic!("{how}: the shim's config volume"));
    assert!(volume["configMap"]["name"].as_str().is_some(), "{how}");
}

#[test]
fn the_patch_keeps_the_applications_annotations_grace_period_and_security_context() {
    let patch = patch();
    let merged = merge(&application(), &patch[0]);
    assert_application_kept(&merged, "the patch applied");
}

/// The merge above is the model of kustomize; this checks the model on the old patch's kind
/// of mistake: a pod-wide key in a patch does overwrite the application's.
#[test]
fn the_merge_model_overwrites_what_a_patch_sets() {
    let overwriting = YamlLoader::load_from_str(
        "spec: {template: {spec: {terminationGracePeriodSeconds: 40, securityContext: {runAsNonRoot: true}}}}",
    )
    .unwrap()
    .remove(0);
    let merged = merge(&application(), &overwriting);
    let pod = &merged["spec"]["template"]["spec"];
    assert_eq!(pod["terminationGracePeriodSeconds"].as_i64(), Some(40));
    assert_eq!(pod["securityContext"]["runAsNonRoot"].as_bool(), Some(true));
    assert_eq!(pod["securityContext"]["runAsUser"].as_i64(), Some(0));
}

/// Removes the overlay's directory when the test ends, passed or failed.
struct TempDir(std::path::PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn kustomize_renders_the_component_over_the_application_the_same_way() {
    let installed = Command::new("kubectl")
        .args(["version", "--client"])
        .output()
        .is_ok_and(|version| version.status.success());
    if !installed {
        let why = "kubectl is not installed, so the component is not rendered for real; the \
                   merge model above still checks the patch";
        assert!(
            std::env::var_os("EXPLO_SHIM_REQUIRE_KUBECTL").is_none(),
            "{why}"
        );
        eprintln!("SKIPPED: {why}");
        return;
    }
    let dir = TempDir(temp_path("overlay"));
    std::fs::create_dir(&dir.0).unwrap();
    // Kustomize takes only a relative path to a component: up to `/` from the overlay, then
    // down to the repository's.
    let component = Path::new(env!("CARGO_MANIFEST_DIR")).join(COMPONENT);
    let up = "../".repeat(dir.0.components().count() - 1);
    let component = format!(
        "{up}{}",
        component.display().to_string().trim_start_matches('/')
    );
    std::fs::write(dir.0.join("application.yaml"), APPLICATION).unwrap();
    std::fs::write(
        dir.0.join("kustomization.yaml"),
        format!(
            "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n\
             resources: [application.yaml]\ncomponents: [{}]\n",
            component
        ),
    )
    .unwrap();
    let rendered = Command::new("kubectl")
        .arg("kustomize")
        .arg(&dir.0)
        .output()
        .expect("kubectl kustomize runs");
    assert!(
        rendered.status.success(),
        "kubectl kustomize: {}",
        String::from_utf8_lossy(&rendered.stderr)
    );
    let documents = YamlLoader::load_from_str(&String::from_utf8(rendered.stdout).unwrap())
        .expect("kustomize renders YAML");
    let deployment = documents
        .iter()
        .find(|doc| doc["kind"].as_str() == Some("Deployment"))
        .expect("the rendered Deployment");
    assert_application_kept(deployment, "kubectl kustomize");
    assert!(
        documents
            .iter()
            .any(|doc| doc["kind"].as_str() == Some("ConfigMap")),
        "the component generates the shim's ConfigMap"
    );
}
