//! The layout holds (issue 14): stage code knows nothing of clap — no
//! module of a stage imports `crate::cli` — and no two modules depend on
//! each other, directly or around a loop. Read from the source: a `use` or
//! path naming `crate::X` or `super::X` (comments and test modules aside).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// `src/deploy/plan.rs` → `deploy::plan`; `src/scan/mod.rs` → `scan`.
fn module_of(src: &Path, file: &Path) -> Vec<String> {
    let rel = file.strip_prefix(src).unwrap().with_extension("");
    let mut parts: Vec<String> = rel
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    if matches!(
        parts.last().map(String::as_str),
        Some("mod" | "lib" | "main")
    ) {
        parts.pop();
    }
    parts
}

fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The code of a file without its comments and its test module.
fn code(file: &Path) -> String {
    let text = std::fs::read_to_string(file).unwrap();
    let text = text.split("#[cfg(test)]").next().unwrap_or_default();
    text.lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The names following each `prefix` in `text` (`crate::` → `scan`, …).
fn named_after<'a>(text: &'a str, prefix: &str) -> Vec<&'a str> {
    text.match_indices(prefix)
        .map(|(i, _)| {
            let rest = &text[i + prefix.len()..];
            let end = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(rest.len());
            &rest[..end]
        })
        .filter(|n| !n.is_empty())
        .collect()
}

#[test]
fn stages_know_no_clap_and_no_module_depends_on_itself() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut all = vec![];
    files(&src, &mut all);
    let modules: BTreeSet<Vec<String>> = all.iter().map(|f| module_of(&src, f)).collect();
    // Edges between top-level modules, and between the modules of one
    // stage (`deploy::observe` → `deploy::plan`).
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in &all {
        let me = module_of(&src, file);
        let text = code(file);
        let top = me.first().cloned().unwrap_or_default();
        if ["scan", "deploy", "push", "auth", "registry", "image"].contains(&top.as_str()) {
            assert!(
                !text.contains("crate::cli"),
                "{} imports crate::cli: stage code takes its own settings",
                file.display()
            );
        }
        for name in named_after(&text, "crate::") {
            if !me.is_empty() && name != top && modules.contains(&vec![name.to_string()]) {
                edges
                    .entry(top.clone())
                    .or_default()
                    .insert(name.to_string());
            }
        }
        if me.len() >= 2 {
            let parent = &me[..me.len() - 1];
            for name in named_after(&text, "super::") {
                let mut target = parent.to_vec();
                target.push(name.to_string());
                if modules.contains(&target) && target != me {
                    edges
                        .entry(me.join("::"))
                        .or_default()
                        .insert(target.join("::"));
                }
            }
        }
    }
    // A loop is a path from a module back to itself.
    for start in edges.keys() {
        let mut seen = BTreeSet::new();
        let mut stack: Vec<(String, Vec<String>)> = vec![(start.clone(), vec![start.clone()])];
        while let Some((at, path)) = stack.pop() {
            for next in edges.get(&at).into_iter().flatten() {
                assert!(
                    next != start,
                    "a module cycle: {} → {start}",
                    path.join(" → ")
                );
                if seen.insert(next.clone()) {
                    let mut p = path.clone();
                    p.push(next.clone());
                    stack.push((next.clone(), p));
                }
            }
        }
    }
    assert!(edges.len() > 10, "the source was read: {edges:?}");
}
