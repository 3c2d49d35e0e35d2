//! The layering of `src/` that docs/design.md ("Module map") describes: no module below the
//! public client imports `client.rs`, the modules import each other without a cycle, and no file
//! grows past about 400 lines. Read from the source text, so a change that breaks the layering
//! fails here, not in review.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::Path;

/// Longest a file of `src/` may be, tests included.
const MAX_LINES: usize = 400;

/// Each module of `src/` and the modules of `src/` its non-test code names as `crate::<module>`.
fn graph() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = BTreeMap::new();
    for entry in fs::read_dir(&src).unwrap() {
        let path = entry.unwrap().path();
        let (name, file) = if path.is_dir() {
            (
                path.file_name().unwrap().to_string_lossy().into_owned(),
                path.join("mod.rs"),
            )
        } else if path.extension().is_some_and(|e| e == "rs") {
            (
                path.file_stem().unwrap().to_string_lossy().into_owned(),
                path.clone(),
            )
        } else {
            continue;
        };
        files.insert(name, fs::read_to_string(file).unwrap());
    }
    let modules: BTreeSet<String> = files.keys().cloned().collect();
    files
        .iter()
        .map(|(name, text)| {
            let code = text.split("#[cfg(test)]\nmod tests").next().unwrap();
            let mut deps = BTreeSet::new();
            for line in code.lines().filter(|l| !l.trim_start().starts_with("//")) {
                for (at, _) in line.match_indices("crate::") {
                    let rest = &line[at + "crate::".len()..];
                    let word: String = rest
                        .chars()
                        .take_while(|c| c.is_alphanumeric() || *c == '_')
                        .collect();
                    // `use crate::{a, b::C}` names several.
                    let named: Vec<String> = if let Some(list) = rest.strip_prefix("{") {
                        list.split([',', '}'])
                            .map(|p| p.trim().split("::").next().unwrap_or("").to_owned())
                            .collect()
                    } else {
                        vec![word]
                    };
                    deps.extend(named.into_iter().filter(|m| modules.contains(m) && m != name));
                }
            }
            if name == "lib" {
                // `mod x;` and `pub use x::...` in the crate root.
                for line in code.lines() {
                    if let Some(m) = line.strip_prefix("pub use ").and_then(|r| r.split("::").next()) {
                        if modules.contains(m) {
                            deps.insert(m.to_owned());
                        }
                    }
                }
            }
            (name.clone(), deps)
        })
        .collect()
}

#[test]
fn only_the_crate_root_imports_the_client() {
    let importers: Vec<_> = graph()
        .into_iter()
        .filter(|(name, deps)| name != "lib" && deps.contains("client"))
        .map(|(name, _)| name)
        .collect();
    assert!(
        importers.is_empty(),
        "these modules import client.rs: {importers:?}"
    );
}

#[test]
fn modules_import_each_other_without_a_cycle() {
    let g = graph();
    assert!(
        g["lib"].contains("client"),
        "the graph reader misses `pub use client::...`"
    );
    assert!(
        g["acquire"].contains("fanout"),
        "the graph reader misses `use crate::x::y`"
    );
    // Depth-first search; a module met again while still on the path closes a cycle.
    fn visit<'a>(
        g: &'a BTreeMap<String, BTreeSet<String>>,
        m: &'a str,
        path: &mut Vec<&'a str>,
        done: &mut BTreeSet<&'a str>,
    ) {
        if let Some(at) = path.iter().position(|p| *p == m) {
            panic!("import cycle: {} -> {m}", path[at..].join(" -> "));
        }
        if !done.insert(m) {
            return;
        }
        path.push(m);
        for d in &g[m] {
            visit(g, d, path, done);
        }
        path.pop();
    }
    let mut done = BTreeSet::new();
    for m in g.keys() {
        visit(&g, m, &mut Vec::new(), &mut done);
    }
}

#[test]
fn no_source_file_is_over_400_lines() {
    let mut long = Vec::new();
    let mut stack = vec![Path::new(env!("CARGO_MANIFEST_DIR")).join("src")];
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let lines = fs::read_to_string(&path).unwrap().lines().count();
                if lines > MAX_LINES {
                    long.push(format!("{} ({lines})", path.display()));
                }
            }
        }
    }
    assert!(long.is_empty(), "split these by what they hold: {long:?}");
}
