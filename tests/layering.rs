//! The crate's modules import one another one way only (the layers in `src/lib.rs`'s map).
//! A circle lets a change to the command line ripple into the server; this test names any
//! circle as soon as it appears. It reads the source, not the compiled crate: every
//! `crate::<module>` outside comments and `#[cfg(test)]` code is an edge between top-level
//! modules.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

type Graph = BTreeMap<String, BTreeSet<String>>;

fn top_module(src: &Path, file: &Path) -> String {
    let relative = file.strip_prefix(src).unwrap();
    let first = relative.components().next().unwrap().as_os_str();
    first.to_string_lossy().trim_end_matches(".rs").to_owned()
}

/// `crate::name` references in the code of one file (`use crate::{a, b::c}` counts `a` and
/// `b`), its test module and comments left out.
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
    let name_at = |text: &str| -> String {
        text.trim_start()
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect()
    };
    let mut found = BTreeSet::new();
    for (at, _) in code.match_indices("crate::") {
        let rest = &code[at + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            // A grouped import: the first name of each comma-separated path, at brace depth 0.
            let mut depth = 0;
            let mut start = 0;
            for (index, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => {
                        found.insert(name_at(&group[start..index]));
                        break;
                    }
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        found.insert(name_at(&group[start..index]));
                        start = index + 1;
                    }
                    _ => {}
                }
            }
        } else {
            found.insert(name_at(rest));
        }
    }
    found.remove("");
    found
}

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
            let module = top_module(&src, &path);
            if module == "lib" || module == "main" {
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            let edges = graph.entry(module.clone()).or_default();
            edges.extend(references(&text).into_iter().filter(|name| *name != module));
        }
    }
    // Only edges between the crate's own modules.
    let modules: BTreeSet<String> = graph.keys().cloned().collect();
    for edges in graph.values_mut() {
        edges.retain(|name| modules.contains(name));
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
        for next in &graph[at] {
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
    assert!(graph.len() > 20, "read too few modules: {graph:?}");
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
fn the_lowest_modules_import_nothing_of_the_crate() {
    let graph = module_graph();
    // Mechanisms with no knowledge of the rest: they may use each other (accepting summarises
    // its failures' log lines), nothing above them.
    let lowest = [
        "route",
        "fingerprint",
        "net",
        "body",
        "retirement",
        "ratelimit",
        "log_summary",
        "bounded_text",
    ];
    for leaf in lowest {
        let above: Vec<&String> = graph[leaf]
            .iter()
            .filter(|imported| !lowest.contains(&imported.as_str()))
            .collect();
        assert!(
            above.is_empty(),
            "`{leaf}` is meant to sit at the bottom, but imports {above:?}"
        );
    }
    // The four edges of the circle issue 17 found must stay gone.
    for (from, to) in [
        ("config", "cli"),
        ("cli", "commands"),
        ("emulator", "server"),
        ("telemetry", "config"),
    ] {
        assert!(
            !(graph[from].contains(to) && graph[to].contains(from)),
            "`{from}` and `{to}` import each other"
        );
    }
}

#[test]
fn the_reader_sees_a_circle_when_there_is_one() {
    // The check itself, on a made-up graph: a test that can never fail proves nothing.
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
        ["config".to_owned()].into()
    );
    assert_eq!(
        references("use crate::{body::{A, B}, fleet,\n  net::accept};"),
        ["body".to_owned(), "fleet".to_owned(), "net".to_owned()].into()
    );
}
