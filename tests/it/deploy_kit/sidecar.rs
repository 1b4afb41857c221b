//! `deploy/kustomize/sidecar`, the sidecar as a kustomize Component, and
//! `examples/kubernetes-sidecar.yaml`, the same sidecar as one pod, say the same.

use super::kustomize::{assert_memory_comment, assert_resources_fit};
use super::{generated_config, yaml_file};
use crate::deployment::{
    address, all_items, configmap_settings, configmap_toml, document, items, manifest, pod_spec,
    port_number, repo_file, shim_container,
};
use yaml_rust2::Yaml;

pub(super) const COMPONENT: &str = "deploy/kustomize/sidecar";
/// The pod label the patch adds and the sidecar's PodMonitor selects.
const SCRAPE_LABEL: &str = "explo-shim/sidecar";

pub(super) fn patch() -> Vec<Yaml> {
    let kustomization = &yaml_file(&format!("{COMPONENT}/kustomization.yaml"))[0];
    assert_eq!(kustomization["kind"].as_str(), Some("Component"));
    let patches = items(kustomization, "patches");
    assert_eq!(patches.len(), 1, "one patch: the sidecar");
    assert_eq!(patches[0]["target"]["kind"].as_str(), Some("Deployment"));
    assert!(
        patches[0]["target"]["labelSelector"].as_str().is_some(),
        "the patch picks the application's Deployment by label"
    );
    yaml_file(&format!(
        "{COMPONENT}/{}",
        patches[0]["path"].as_str().unwrap()
    ))
}

#[test]
fn the_component_adds_the_examples_sidecar_unchanged() {
    let example = manifest();
    let example_pod = pod_spec(&example);
    let patch = patch();
    let patched_pod = &patch[0]["spec"]["template"]["spec"];
    let example_shim = shim_container(example_pod);
    let patched_shim = shim_container(patched_pod);
    // The container whole: image, probes, resources, security context, mounts.
    assert_eq!(patched_shim, example_shim, "the sidecar container");
    assert_eq!(
        patched_pod["volumes"], example_pod["volumes"],
        "the pod's volumes"
    );
    let scrape_label = |labels: &Yaml| labels[SCRAPE_LABEL].as_str().map(str::to_owned);
    assert_eq!(
        scrape_label(&patch[0]["spec"]["template"]["metadata"]["labels"]),
        Some("true".to_owned()),
        "the patch labels the pod for the sidecar's PodMonitor"
    );
    assert_eq!(
        scrape_label(&document(&example, "Deployment")["spec"]["template"]["metadata"]["labels"]),
        Some("true".to_owned()),
        "the example's pod carries the same label"
    );
    assert!(
        items(patched_pod, "containers").is_empty(),
        "the component leaves the application's own containers alone"
    );
}

/// The patch touches nothing of the pod that is the application's: it adds its container,
/// its volume and a label of its own, and sets no pod-wide key (annotations, the grace
/// period, the pod's securityContext) that would overwrite the application's.
#[test]
fn the_patch_sets_only_the_shims_parts_of_the_pod() {
    let patch = patch();
    let template = &patch[0]["spec"]["template"];
    let keys = |node: &Yaml| -> Vec<String> {
        node.as_hash()
            .map(|hash| {
                hash.keys()
                    .map(|key| key.as_str().unwrap().to_owned())
                    .collect()
            })
            .unwrap_or_default()
    };
    assert_eq!(keys(template), ["metadata", "spec"]);
    assert_eq!(
        keys(&template["metadata"]),
        ["labels"],
        "no pod annotations"
    );
    assert_eq!(keys(&template["metadata"]["labels"]), [SCRAPE_LABEL]);
    assert_eq!(
        keys(&template["spec"]),
        ["initContainers", "volumes"],
        "no pod-wide setting: no terminationGracePeriodSeconds, no securityContext"
    );
    // The grace period is the user's to set: the patch's comment says how long it must be.
    let text = repo_file(&format!("{COMPONENT}/sidecar.yaml"));
    assert!(
        text.contains("shutdown.delay") && text.contains("shutdown.grace"),
        "sidecar.yaml tells the user the grace period the shim needs"
    );
    assert!(text.contains("terminationGracePeriodSeconds"));
}

/// The sidecar's PodMonitor scrapes the pods the patch labels, on the shim's own port.
#[test]
fn the_sidecar_podmonitor_scrapes_the_shims_port_of_the_labelled_pods() {
    let monitor = &yaml_file("deploy/prometheus/podmonitor-sidecar.yaml")[0];
    assert_eq!(monitor["kind"].as_str(), Some("PodMonitor"));
    let selector = &monitor["spec"]["selector"]["matchLabels"];
    assert_eq!(selector.as_hash().map(|hash| hash.len()), Some(1));
    assert_eq!(selector[SCRAPE_LABEL].as_str(), Some("true"));
    let endpoints = items(&monitor["spec"], "podMetricsEndpoints");
    assert_eq!(endpoints.len(), 1);
    let patch = patch();
    let shim = shim_container(&patch[0]["spec"]["template"]["spec"]);
    let port = endpoints[0]["port"].as_str().expect("a named port");
    let admin = address(&configmap_settings(&manifest()), "admin");
    assert_eq!(
        port_number(shim, &Yaml::String(port.to_owned())),
        i64::from(admin.port()),
        "the PodMonitor scrapes the shim's admin port"
    );
    assert_eq!(endpoints[0]["path"].as_str(), Some("/metrics"));
}

#[test]
fn the_component_config_is_the_examples_configmap() {
    let example = manifest();
    let (name, path) = generated_config(COMPONENT);
    assert_eq!(repo_file(&path), configmap_toml(&example), "{path}");
    let patch = patch();
    assert!(
        items(&patch[0]["spec"]["template"]["spec"], "volumes")
            .iter()
            .any(|volume| volume["configMap"]["name"].as_str() == Some(&name)),
        "the sidecar mounts the generated ConfigMap"
    );
}

#[test]
fn no_sidecar_mount_uses_sub_path_and_resources_follow_the_formula() {
    let example = manifest();
    let patch = patch();
    for pod in [pod_spec(&example), &patch[0]["spec"]["template"]["spec"]] {
        for container in all_items(pod) {
            for mount in items(container, "volumeMounts") {
                assert!(
                    mount["subPath"].is_badvalue() && mount["subPathExpr"].is_badvalue(),
                    "{:?}: the kubelet never updates a subPath mount",
                    mount["name"]
                );
            }
        }
    }
    let settings = configmap_settings(&example);
    assert_resources_fit(
        &shim_container(pod_spec(&example))["resources"],
        &settings,
        "the sidecar",
    );
    assert_memory_comment("examples/kubernetes-sidecar.yaml", &settings);
    assert_memory_comment(&format!("{COMPONENT}/sidecar.yaml"), &settings);
}

#[test]
fn the_sidecar_image_tags_are_the_crate_version() {
    let example = manifest();
    let patch = patch();
    for (what, pod) in [
        ("the example", pod_spec(&example)),
        ("the component", &patch[0]["spec"]["template"]["spec"]),
    ] {
        let image = shim_container(pod)["image"].as_str().expect("an image");
        assert_eq!(
            image.rsplit_once(':').map(|(_, tag)| tag),
            Some(env!("CARGO_PKG_VERSION")),
            "{what}: {image}"
        );
    }
}
