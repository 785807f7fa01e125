//! The module graph of `src/` has no cycles, and `xds` knows nothing of the application
//! around it.
//!
//! Each file is a module (`src/xds/sotw.rs` is `xds::sotw`, `src/xds/mod.rs` is `xds`).
//! An edge A -> B is a path in A's non-test code that names B: `crate::b::...`,
//! `super::...`, `self::...`, or a child module used by name. A path names the longest
//! module it starts with (`crate::xds::cache::SnapshotCache` names `xds::cache`). Test code
//! (from `#[cfg(test)]` on, and `tests` modules) is left out: tests may reach anywhere.
//!
//! `cargo test --test integration architecture:: -- --nocapture` prints every edge.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use regex::Regex;

/// Modules and the modules each one names.
type Graph = BTreeMap<String, BTreeSet<String>>;

fn source_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read src/") {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            source_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// `src/xds/sotw.rs` -> `xds::sotw`; `src/xds/mod.rs` -> `xds`; `src/lib.rs` -> `crate`.
fn module_of(src: &Path, file: &Path) -> String {
    let rel = file.strip_prefix(src).expect("a file under src/");
    let mut parts: Vec<String> = rel
        .with_extension("")
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if parts.last().is_some_and(|p| p == "mod" || p == "lib") {
        parts.pop();
    }
    if parts.is_empty() {
        "crate".to_owned()
    } else {
        parts.join("::")
    }
}

fn parent(module: &str) -> String {
    match module.rsplit_once("::") {
        Some((p, _)) => p.to_owned(),
        None => "crate".to_owned(),
    }
}

/// The code of a file without comments and without its tests.
fn code_of(text: &str) -> String {
    let text = match text.find("#[cfg(test)]") {
        Some(i) => &text[..i],
        None => text,
    };
    let comment = Regex::new(r"//[^\n]*").unwrap();
    let string = Regex::new(r#""(?:[^"\\]|\\.)*""#).unwrap();
    let text = comment.replace_all(text, "");
    string.replace_all(&text, "\"\"").into_owned()
}

/// Expands `use` trees: `a::{b, c::{d, self}}` -> `a::b`, `a::c::d`, `a::c`.
fn expand_use(tree: &str) -> Vec<String> {
    let renamed = Regex::new(r"\s+as\s+\w+").unwrap();
    let tree: String = renamed.replace_all(tree, "").split_whitespace().collect();
    let Some(open) = tree.find('{') else {
        return vec![tree];
    };
    let prefix = tree[..open].trim_end_matches("::");
    let inner = &tree[open + 1..tree.rfind('}').expect("a closing brace")];
    let mut items = Vec::new();
    let (mut depth, mut start) = (0, 0);
    for (i, ch) in inner.char_indices() {
        match ch {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                items.push(&inner[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    items.push(&inner[start..]);
    items
        .into_iter()
        .filter(|i| !i.is_empty())
        .flat_map(expand_use)
        .map(|item| match item.as_str() {
            "self" => prefix.to_owned(),
            _ => format!("{prefix}::{item}"),
        })
        .collect()
}

/// The module a path in `module` names, if it names one of `modules` other than itself.
fn target(module: &str, path: &str, modules: &BTreeSet<String>) -> Option<String> {
    let mut segments: Vec<&str> = path.split("::").collect();
    let mut base = match segments.first().copied() {
        Some("crate") => {
            segments.remove(0);
            Vec::new()
        }
        Some("self") => {
            segments.remove(0);
            module.split("::").map(str::to_owned).collect()
        }
        Some("super") => {
            let mut base = module.to_owned();
            while segments.first() == Some(&"super") {
                segments.remove(0);
                base = parent(&base);
            }
            if base == "crate" {
                Vec::new()
            } else {
                base.split("::").map(str::to_owned).collect()
            }
        }
        // A child module used by name (`use names::Names;` in `xds::sotw`).
        Some(first) if modules.contains(&child(module, first)) => {
            module.split("::").map(str::to_owned).collect()
        }
        _ => return None,
    };
    if module == "crate" {
        base.clear();
    }
    let mut named = if base.is_empty() {
        "crate".to_owned()
    } else {
        base.join("::")
    };
    for s in segments {
        let longer = child(&named, s);
        if modules.contains(&longer) {
            named = longer;
        } else {
            break;
        }
    }
    (named != module && named != "crate").then_some(named)
}

fn child(module: &str, name: &str) -> String {
    if module == "crate" {
        name.to_owned()
    } else {
        format!("{module}::{name}")
    }
}

fn graph() -> Graph {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    source_files(&src, &mut files);
    files.retain(|f| !f.ends_with("main.rs"));
    let modules: BTreeSet<String> = files.iter().map(|f| module_of(&src, f)).collect();
    let uses = Regex::new(r"\buse\s+([^;]+);").unwrap();
    let paths = Regex::new(r"\b(?:crate|super|self)(?:::\w+)+").unwrap();
    let mut graph = Graph::new();
    for file in &files {
        let module = module_of(&src, file);
        if module.split("::").any(|s| s == "tests") {
            continue;
        }
        let code = code_of(&std::fs::read_to_string(file).expect("read a source file"));
        let mut named: Vec<String> = uses
            .captures_iter(&code)
            .flat_map(|c| expand_use(&c[1]))
            .collect();
        named.extend(paths.find_iter(&code).map(|m| m.as_str().to_owned()));
        let edges = graph.entry(module.clone()).or_default();
        edges.extend(named.iter().filter_map(|p| target(&module, p, &modules)));
    }
    graph
}

/// A cycle in `graph`, as the modules along it, if there is one.
fn find_cycle(graph: &Graph) -> Option<Vec<String>> {
    fn visit(
        m: &str,
        graph: &Graph,
        done: &mut BTreeSet<String>,
        path: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        if let Some(i) = path.iter().position(|p| p == m) {
            let mut cycle = path[i..].to_vec();
            cycle.push(m.to_owned());
            return Some(cycle);
        }
        if done.contains(m) {
            return None;
        }
        path.push(m.to_owned());
        for next in graph.get(m).into_iter().flatten() {
            if let Some(cycle) = visit(next, graph, done, path) {
                return Some(cycle);
            }
        }
        path.pop();
        done.insert(m.to_owned());
        None
    }
    let mut done = BTreeSet::new();
    graph
        .keys()
        .find_map(|m| visit(m, graph, &mut done, &mut Vec::new()))
}

#[test]
fn no_module_of_src_imports_one_that_imports_it_back() {
    let graph = graph();
    for (m, edges) in &graph {
        println!(
            "{m} -> {}",
            edges.iter().cloned().collect::<Vec<_>>().join(", ")
        );
    }
    assert!(graph.len() > 30, "too few modules found: {graph:?}");
    if let Some(cycle) = find_cycle(&graph) {
        panic!("import cycle: {}", cycle.join(" -> "));
    }
}

#[test]
fn xds_knows_nothing_above_it() {
    let graph = graph();
    for (m, edges) in graph.iter().filter(|(m, _)| m.starts_with("xds")) {
        let outside: Vec<&String> = edges
            .iter()
            .filter(|t| !t.starts_with("xds") && *t != "hash")
            .collect();
        assert!(outside.is_empty(), "{m} imports {outside:?}");
    }
}

#[test]
fn the_checker_sees_cycles_and_edges_it_should() {
    let modules: BTreeSet<String> = ["xds", "xds::sotw", "xds::sotw::names", "state"]
        .into_iter()
        .map(str::to_owned)
        .collect();
    let t = |m: &str, p: &str| target(m, p, &modules);
    assert_eq!(t("xds::sotw", "super::ResourceType"), Some("xds".into()));
    assert_eq!(
        t("xds::sotw", "names::Names"),
        Some("xds::sotw::names".into())
    );
    assert_eq!(t("xds::sotw::names", "super::super::X"), Some("xds".into()));
    assert_eq!(t("xds", "crate::state::Color"), Some("state".into()));
    assert_eq!(t("xds", "self::sotw::X"), Some("xds::sotw".into()));
    assert_eq!(t("xds", "std::sync::Arc"), None);
    assert_eq!(
        expand_use("crate::xds::{self, cache::{A, B}, sync::C as D}"),
        [
            "crate::xds",
            "crate::xds::cache::A",
            "crate::xds::cache::B",
            "crate::xds::sync::C"
        ]
    );
    let mut g = Graph::new();
    g.entry("a".into()).or_default().insert("b".into());
    g.entry("b".into()).or_default().insert("c".into());
    assert_eq!(find_cycle(&g), None);
    g.entry("c".into()).or_default().insert("a".into());
    assert_eq!(find_cycle(&g).unwrap(), ["a", "b", "c", "a"]);
}
