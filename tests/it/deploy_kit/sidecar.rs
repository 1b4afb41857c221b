//! `deploy/kustomize/sidecar`, the sidecar as a kustomize Component, and
//! `examples/kubernetes-sidecar.yaml`, the same sidecar as one pod, say the same.

use super::kustomize::assert_resources_fit;
use super::{generated_config, yaml_file};
use crate::deployment::{
    all_items, configmap_settings, configmap_toml, document, items, manifest, pod_spec, repo_file,
    shim_container,
};
use yaml_rust2::Yaml;

const COMPONENT: &str = "deploy/kustomize/sidecar";

fn patch() -> Vec<Yaml> {
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
    for key in [
        "securityContext",
        "terminationGracePeriodSeconds",
        "volumes",
    ] {
        assert_eq!(patched_pod[key], example_pod[key], "the pod's {key}");
    }
    assert_eq!(
        patch[0]["spec"]["template"]["metadata"]["annotations"],
        document(&example, "Deployment")["spec"]["template"]["metadata"]["annotations"],
        "the scrape annotations"
    );
    assert!(
        items(patched_pod, "containers").is_empty(),
        "the component leaves the application's own containers alone"
    );
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
    assert_resources_fit(
        &shim_container(pod_spec(&example))["resources"],
        &configmap_settings(&example),
        "the sidecar",
    );
}
