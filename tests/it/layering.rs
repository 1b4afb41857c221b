//! The crate's modules import one another one way only: down the layers declared in
//! [`LAYERS`], the same order as `src/lib.rs`'s map. A circle lets a change to the command line
//! ripple into the server; an import that runs up a layer is how circles start. This test reads
//! the source, not the compiled crate: every `crate::<path>` outside comments and
//! `#[cfg(test)]` code is an edge, from the file's module to the declared module that owns the
//! path.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// The layers, lowest first. A module may import its own layer and those below it. Each
/// entry owns the module of that path and everything under it not named by a longer entry.
const LAYERS: &[(&str, &[&str])] = &[
    (
        "plain data and mechanisms",
        &[
            "legacy::route",
            "legacy::retirement",
            "message::body",
            "message::fingerprint",
            "observe::bounded_text",
            "observe::log_queue",
            "observe::log_summary",
            "observe::log_text",
            "server::coarse_timer",
            "server::framing_guard",
            "server::net",
            "server::protocol_sniff",
            "server::send_clock",
            "upstream::budget",
        ],
    ),
    (
        "vocabulary: the error, translation, headers, the usage table",
        &[
            "error",
            "legacy",
            "message",
            "message::headers",
            "observe::usage",
            "emulator",
        ],
    ),
    ("settings", &["config", "config::policy"]),
    (
        "records and TLS",
        &[
            "observe",
            "observe::access_log",
            "observe::telemetry",
            "observe::metrics",
            "observe::otel",
            "server::tls",
        ],
    ),
    (
        "the fleet and the upstream",
        &["fleet", "upstream", "upstream::pool"],
    ),
    (
        "one request, the admin listener, reload",
        &["proxy", "proxy::legacy_call", "admin", "server::reload"],
    ),
    ("serving", &["server"]),
    ("entry points", &["cli", "cli::commands", "cli::demo"]),
];

type Graph = BTreeMap<String, BTreeSet<String>>;

/// The declared module that owns a path (`config::policy::Policy` -> `config::policy`), if any:
/// the longest entry that is the path or a prefix of it.
fn owner(path: &str) -> Option<&'static str> {
    LAYERS
        .iter()
        .flat_map(|(_, modules)| modules.iter().copied())
        .filter(|module| path == *module || path.starts_with(&format!("{module}::")))
        .max_by_key(|module| module.len())
}

fn layer_of(module: &str) -> usize {
    LAYERS
        .iter()
        .position(|(_, modules)| modules.contains(&module))
        .unwrap()
}

fn module_path(src: &Path, file: &Path) -> String {
    let relative = file.strip_prefix(src).unwrap().with_extension("");
    let mut parts: Vec<String> = relative
        .components()
        .map(|part| part.as_os_str().to_string_lossy().into_owned())
        .collect();
    if parts.last().is_some_and(|last| last == "mod") {
        parts.pop();
    }
    parts.join("::")
}

/// The paths a use tree names, braces expanded: `a::{b, c::{d}}` gives `a::b` and `a::c::d`.
fn expand(prefix: &str, tree: &str, found: &mut BTreeSet<String>) {
    let tree = tree.trim();
    let Some(open) = tree.find('{') else {
        let path: String = tree
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == ':')
            .collect();
        let path = path.trim_end_matches(':');
        let joined = match (prefix.is_empty(), path.is_empty() || path == "self") {
            (true, _) => path.to_owned(),
            (false, true) => prefix.to_owned(),
            (false, false) => format!("{prefix}::{path}"),
        };
        if !joined.is_empty() {
            found.insert(joined);
        }
        return;
    };
    let head = tree[..open].trim().trim_end_matches("::");
    let prefix = match (prefix.is_empty(), head.is_empty()) {
        (_, true) => prefix.to_owned(),
        (true, false) => head.to_owned(),
        (false, false) => format!("{prefix}::{head}"),
    };
    let mut depth = 0;
    let mut start = open + 1;
    for (index, c) in tree.char_indices().skip(open + 1) {
        match c {
            '{' => depth += 1,
            '}' if depth == 0 => {
                expand(&prefix, &tree[start..index], found);
                return;
            }
            '}' => depth -= 1,
            ',' if depth == 0 => {
                expand(&prefix, &tree[start..index], found);
                start = index + 1;
            }
            _ => {}
        }
    }
}

/// The `crate::` paths in the code of one file, its test module and comments left out.
fn references(text: &str) -> BTreeSet<String> {
    let code = text
        .split("#[cfg(test)]\nmod tests")
        .next()
        .unwrap_or_default();
    let code: String = code
        .lines()
        .map(str::trim_start)
        .filter(|line| !line.starts_with("//"))
        .map(|line| line.split(" //").next().unwrap_or_default())
        .collect::<Vec<_>>()
        .join("\n");
    let mut found = BTreeSet::new();
    for (at, _) in code.match_indices("crate::") {
        if code[..at].ends_with(|c: char| c.is_ascii_alphanumeric() || c == '_' || c == '$') {
            continue;
        }
        let rest = &code[at + "crate::".len()..];
        // One use tree: up to the end of the braces it opens, or of the path.
        let mut depth = 0;
        let mut end = rest.len();
        for (index, c) in rest.char_indices() {
            match c {
                '{' => depth += 1,
                '}' => {
                    depth -= 1;
                    if depth == 0 {
                        end = index + 1;
                        break;
                    }
                }
                c if depth == 0 && !(c.is_ascii_alphanumeric() || c == '_' || c == ':') => {
                    end = index;
                    break;
                }
                _ => {}
            }
        }
        expand("", &rest[..end], &mut found);
    }
    found
}

/// Declared module -> the declared modules it imports; fails on a file no entry owns.
fn module_graph() -> Graph {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut graph = Graph::new();
    let mut pending = vec![src.clone()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                pending.push(path);
                continue;
            }
            if path.extension().is_none_or(|ext| ext != "rs") {
                continue;
            }
            let module = module_path(&src, &path);
            if module == "lib" || module == "main" {
                continue;
            }
            let Some(from) = owner(&module) else {
                panic!("`{module}` is in no layer: add it to LAYERS (and to src/lib.rs's map)");
            };
            let text = std::fs::read_to_string(&path).unwrap();
            let edges = graph.entry(from.to_owned()).or_default();
            edges.extend(
                references(&text)
                    .iter()
                    .filter_map(|path| owner(path))
                    .filter(|to| *to != from)
                    .map(str::to_owned),
            );
        }
    }
    graph
}

/// A circle through `start`, if there is one: depth-first search back to it.
fn circle_through(graph: &Graph, start: &str) -> Option<Vec<String>> {
    fn visit(
        graph: &Graph,
        start: &str,
        at: &str,
        path: &mut Vec<String>,
        seen: &mut BTreeSet<String>,
    ) -> bool {
        for next in graph.get(at).into_iter().flatten() {
            if next == start {
                path.push(next.clone());
                return true;
            }
            if seen.insert(next.clone()) {
                path.push(next.clone());
                if visit(graph, start, next, path, seen) {
                    return true;
                }
                path.pop();
            }
        }
        false
    }
    let mut path = vec![start.to_owned()];
    let mut seen = BTreeSet::new();
    visit(graph, start, start, &mut path, &mut seen).then_some(path)
}

#[test]
fn no_two_modules_import_each_other_even_through_others() {
    let graph = module_graph();
    assert!(graph.len() > 30, "read too few modules: {graph:?}");
    let circles: Vec<String> = graph
        .keys()
        .filter_map(|module| circle_through(&graph, module))
        .map(|circle| circle.join(" -> "))
        .collect();
    assert!(
        circles.is_empty(),
        "imports run in a circle:\n{}",
        circles.join("\n")
    );
}

#[test]
fn every_import_runs_down_the_declared_layers() {
    let graph = module_graph();
    let mut upward = Vec::new();
    for (from, edges) in &graph {
        for to in edges {
            if layer_of(to) > layer_of(from) {
                upward.push(format!(
                    "{from} ({}) imports {to} ({})",
                    LAYERS[layer_of(from)].0,
                    LAYERS[layer_of(to)].0
                ));
            }
        }
    }
    assert!(
        upward.is_empty(),
        "imports that run up a layer:\n{}",
        upward.join("\n")
    );
    // Every declared module exists: a stale entry would hide a moved file.
    for (_, modules) in LAYERS {
        for module in *modules {
            assert!(
                graph.contains_key(*module),
                "`{module}` is declared but has no file"
            );
        }
    }
}

/// The layers `src/lib.rs`'s map states, top first: each numbered item's ``[`path`]`` links.
fn layers_in_the_map() -> Vec<Vec<String>> {
    let lib =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("src/lib.rs")).unwrap();
    let map = lib
        .split("//! The layers, top first:\n//!\n")
        .nth(1)
        .expect("src/lib.rs states its layers, then a blank line");
    let mut layers: Vec<Vec<String>> = Vec::new();
    for line in map.lines() {
        let Some(text) = line.strip_prefix("//!") else {
            break;
        };
        let text = text.trim_start();
        if text.is_empty() {
            break;
        }
        if text
            .split_once(". ")
            .is_some_and(|(number, _)| number.parse::<usize>().is_ok())
        {
            layers.push(Vec::new());
        }
        let layer = layers
            .last_mut()
            .expect("a layer's text follows its number");
        for link in text.split("[`").skip(1) {
            layer.push(link.split('`').next().unwrap_or_default().to_owned());
        }
    }
    layers
}

#[test]
fn the_crate_map_states_the_same_layers_as_this_test() {
    let stated = layers_in_the_map();
    assert_eq!(stated.len(), LAYERS.len(), "{stated:?}");
    for (top_first, links) in stated.iter().enumerate() {
        let (name, modules) = LAYERS[LAYERS.len() - 1 - top_first];
        for link in links {
            let owner = owner(link).unwrap_or_else(|| panic!("`{link}` is in no layer"));
            assert!(
                modules.contains(&owner),
                "src/lib.rs puts `{link}` in layer {}, LAYERS in another than `{name}`",
                top_first + 1
            );
        }
        for module in modules {
            assert!(
                links.iter().any(|link| owner(link) == Some(module)),
                "src/lib.rs's layer {} does not name `{module}` ({name})",
                top_first + 1
            );
        }
    }
}

#[test]
fn the_reader_sees_a_circle_and_an_upward_import_when_there_is_one() {
    // The checks themselves, on made-up input: a test that can never fail proves nothing.
    let mut graph = Graph::new();
    graph.insert("a".into(), ["b".to_owned()].into());
    graph.insert("b".into(), ["c".to_owned()].into());
    graph.insert("c".into(), ["a".to_owned()].into());
    graph.insert("d".into(), ["a".to_owned()].into());
    assert_eq!(
        circle_through(&graph, "a"),
        Some(vec!["a".into(), "b".into(), "c".into(), "a".into()])
    );
    assert_eq!(circle_through(&graph, "d"), None);
    assert_eq!(
        references(
            "use crate::config::X; // crate::cli\n// crate::server\n#[cfg(test)]\nmod tests {\ncrate::proxy"
        ),
        ["config::X".to_owned()].into()
    );
    assert_eq!(
        references("use crate::{message::body::{A, B}, fleet,\n  server::{net::accept, self}};"),
        [
            "fleet",
            "message::body::A",
            "message::body::B",
            "server",
            "server::net::accept"
        ]
        .map(str::to_owned)
        .into()
    );
    assert_eq!(owner("config::policy::Policy"), Some("config::policy"));
    assert_eq!(owner("config::Config"), Some("config"));
    assert_eq!(owner("Prepared"), None);
    assert!(layer_of("server::net") < layer_of("observe::metrics"));
    assert!(layer_of("cli") > layer_of("server"));
}
