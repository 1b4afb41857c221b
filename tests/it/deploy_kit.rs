//! The deploy kit under `deploy/` works as shipped: the kustomize base (the shared service) and
//! the sidecar component, the Prometheus rules and the Grafana dashboard. Kubernetes,
//! Prometheus and Grafana do not run here, so their files are read as data and judged against
//! the real binary: its `--check-config`, its probe paths and its `/metrics`.

mod kustomize;
mod promql;
mod sidecar;
mod sidecar_patch;

use crate::deployment::repo_file;
use yaml_rust2::{Yaml, YamlLoader};

/// Every document of a YAML file of the repository.
fn yaml_file(path: &str) -> Vec<Yaml> {
    YamlLoader::load_from_str(&repo_file(path)).unwrap_or_else(|error| panic!("{path}: {error}"))
}

/// The strings of the sequence at `key` (a kustomization's `resources`, say).
fn strings<'a>(node: &'a Yaml, key: &str) -> Vec<&'a str> {
    crate::deployment::items(node, key)
        .iter()
        .map(|item| {
            item.as_str()
                .unwrap_or_else(|| panic!("{key}: {item:?} is not a string"))
        })
        .collect()
}

/// The one config file a kustomization's `configMapGenerator` makes its ConfigMap from:
/// (the generated ConfigMap's name, the file's path in the repository).
fn generated_config(dir: &str) -> (String, String) {
    let kustomization = &yaml_file(&format!("{dir}/kustomization.yaml"))[0];
    let generators = crate::deployment::items(kustomization, "configMapGenerator");
    assert_eq!(generators.len(), 1, "{dir}: one generated ConfigMap");
    let files = strings(&generators[0], "files");
    assert_eq!(files, ["explo-shim.toml"], "{dir}: the config file alone");
    let name = generators[0]["name"]
        .as_str()
        .expect("the ConfigMap's name");
    (name.to_owned(), format!("{dir}/{}", files[0]))
}
