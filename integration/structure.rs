//! The module house has no import cycles: the top-level modules of `src/`
//! (a file `src/X.rs` or a folder `src/X/`) and the `crate::X` paths each
//! one names outside its inline unit tests form a graph without a circle,
//! so that every module can be read, tested and benched from the bottom up
//! (docs/ARCHITECTURE.md). The same rule as the team's review hook.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// `crate::X` (and `crate::{X, ..}`) names in `text`.
fn named(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let ident = |s: &str| -> String {
        s.chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect()
    };
    for (i, _) in text.match_indices("crate::") {
        let rest = &text[i + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let group = &group[..group.find('}').unwrap_or(group.len())];
            for part in group.split(',') {
                let m = ident(part.trim());
                if !m.is_empty() {
                    out.insert(m);
                }
            }
        } else {
            let m = ident(rest);
            if m.starts_with(|c: char| c.is_ascii_lowercase() || c == '_') {
                out.insert(m);
            }
        }
    }
    out
}

fn walk(dir: &Path, files: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            walk(&path, files);
        } else if path.extension().is_some_and(|e| e == "rs") {
            files.push(path);
        }
    }
}

/// Each top-level module and the top-level modules it names.
fn edges(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let mut files = Vec::new();
    walk(src, &mut files);
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in files {
        let rel = file.strip_prefix(src).unwrap();
        let first = rel
            .components()
            .next()
            .unwrap()
            .as_os_str()
            .to_string_lossy();
        let module = first.trim_end_matches(".rs").to_string();
        if module == "lib" || module == "main" {
            continue;
        }
        let mut text = std::fs::read_to_string(&file).unwrap();
        // Inline unit tests may reach anywhere.
        if let Some(at) = text.find("#[cfg(test)]\nmod tests {") {
            text.truncate(at);
        }
        let names = named(&text);
        let entry = edges.entry(module.clone()).or_default();
        entry.extend(names.into_iter().filter(|n| *n != module));
    }
    let modules: BTreeSet<String> = edges.keys().cloned().collect();
    for targets in edges.values_mut() {
        targets.retain(|t| modules.contains(t));
    }
    edges
}

/// A circle through `start`, if any (depth-first).
fn circle(
    edges: &BTreeMap<String, BTreeSet<String>>,
    path: &mut Vec<String>,
    done: &mut BTreeSet<String>,
) -> Option<Vec<String>> {
    let here = path.last()?.clone();
    for next in &edges[&here] {
        if let Some(i) = path.iter().position(|p| p == next) {
            let mut c = path[i..].to_vec();
            c.push(next.clone());
            return Some(c);
        }
        if done.contains(next) {
            continue;
        }
        path.push(next.clone());
        if let Some(c) = circle(edges, path, done) {
            return Some(c);
        }
        path.pop();
    }
    done.insert(here);
    None
}

#[test]
fn the_top_level_modules_import_each_other_without_a_circle() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let edges = edges(&src);
    assert!(edges.len() > 10, "modules found: {:?}", edges.keys());
    assert!(
        edges["proxy"].contains("snapshot"),
        "the reader sees imports"
    );
    let mut done = BTreeSet::new();
    for start in edges.keys() {
        if let Some(c) = circle(&edges, &mut vec![start.clone()], &mut done) {
            panic!(
                "import cycle between top-level modules: {} (each names the next as crate::X)",
                c.join(" -> ")
            );
        }
    }
    // The leaf and the pure layers stay where they are.
    assert!(
        edges["model"].is_empty(),
        "model is a leaf: {:?}",
        edges["model"]
    );
    for pure in ["routing", "placement"] {
        for upper in ["snapshot", "health", "proxy", "server", "admin"] {
            assert!(
                !edges[pure].contains(upper),
                "{pure} is pure and must not name {upper}"
            );
        }
    }
}

#[test]
fn the_reader_finds_paths_and_groups() {
    let names = named("use crate::{a, b::c};\nlet x = crate::d::e(); // crate::Type");
    assert_eq!(
        names,
        ["a", "b", "d"].map(String::from).into_iter().collect()
    );
}
