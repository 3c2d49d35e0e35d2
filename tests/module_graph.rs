//! The layering of `src/`, read from the source text so that a change that breaks it fails here,
//! not in review:
//!
//! - every file of `src/` belongs to a layer of [`LAYERS`] (a folder, or a file at the top level);
//! - no module imports from a layer above its own;
//! - nothing imports `client.rs` but the crate root, and no import closes a cycle;
//! - no file grows past [`MAX_LINES`];
//! - docs/design.md's module map lists exactly the files of the tree, each under its layer, in
//!   the order of [`LAYERS`], so the map cannot drift from the tree.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

/// Longest a file of `src/` may be, tests included.
const MAX_LINES: usize = 400;

/// The layers of `src/` from the bottom up: each layer's name (as docs/design.md's module map
/// writes it) and what holds it, a folder (`pure/`) or files at the top level (`shared.rs`).
/// A module may import from its own layer and the layers below it.
const LAYERS: &[(&str, &[&str])] = &[
    ("pure", &["pure/"]),
    ("errors", &["errors/"]),
    ("wire", &["wire/"]),
    ("connection", &["connection/"]),
    ("node set", &["node_set/"]),
    ("fan-out", &["fan_out/"]),
    ("shared", &["shared.rs"]),
    ("operations", &["operations/"]),
    ("builder", &["builder.rs"]),
    ("client", &["client.rs"]),
    ("root", &["lib.rs", "guides.rs"]),
];

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// Every `.rs` file under `src/`, as a path relative to it with `/` separators.
fn files() -> Vec<String> {
    let root = src();
    let mut found = Vec::new();
    let mut stack = vec![root.clone()];
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let rel = path.strip_prefix(&root).unwrap();
                found.push(rel.to_string_lossy().replace('\\', "/"));
            }
        }
    }
    found.sort();
    found
}

/// The index in [`LAYERS`] of the file or module path `rel` (`pure/quorum.rs`, `shared.rs`).
fn layer_of(rel: &str) -> Option<usize> {
    LAYERS.iter().position(|(_, holds)| {
        holds.iter().any(|h| {
            if h.ends_with('/') {
                rel.starts_with(h)
            } else {
                rel == *h
            }
        })
    })
}

/// The module a file is: `pure::quorum` for `pure/quorum.rs`, `pure` for `pure/mod.rs`,
/// `wire::scripts` for `wire/scripts/mod.rs`, `shared` for `shared.rs`.
fn module_of(rel: &str) -> String {
    let rel = rel.strip_suffix(".rs").unwrap();
    let rel = rel.strip_suffix("/mod").unwrap_or(rel);
    rel.replace('/', "::")
}

/// The paths a `use crate::...` tree or a `crate::a::b` expression names, braces expanded:
/// `{pure::quorum, fan_out::{calls, undo::X}}` gives `pure::quorum`, `fan_out::calls`,
/// `fan_out::undo::X`. Reads from the start of `s` (just after `crate::`).
fn paths(s: &str) -> Vec<String> {
    fn tree(s: &[u8], at: &mut usize, prefix: &str, out: &mut Vec<String>) {
        let skip = |at: &mut usize| {
            while *at < s.len() && (s[*at] as char).is_whitespace() {
                *at += 1;
            }
        };
        skip(at);
        if *at < s.len() && s[*at] == b'{' {
            *at += 1;
            loop {
                tree(s, at, prefix, out);
                skip(at);
                match s.get(*at) {
                    Some(b',') => *at += 1,
                    Some(b'}') => {
                        *at += 1;
                        break;
                    }
                    _ => break,
                }
                skip(at);
                if s.get(*at) == Some(&b'}') {
                    *at += 1;
                    break;
                }
            }
            return;
        }
        let start = *at;
        while *at < s.len() && (s[*at].is_ascii_alphanumeric() || s[*at] == b'_') {
            *at += 1;
        }
        let word = std::str::from_utf8(&s[start..*at]).unwrap();
        let path = if prefix.is_empty() {
            word.to_owned()
        } else {
            format!("{prefix}::{word}")
        };
        if s[*at..].starts_with(b"::") {
            *at += 2;
            tree(s, at, &path, out);
        } else {
            out.push(path);
            // `x as y`: the path is `x`; skip the new name.
            skip(at);
            if s[*at..].starts_with(b"as ") {
                *at += 3;
                skip(at);
                while *at < s.len() && (s[*at].is_ascii_alphanumeric() || s[*at] == b'_') {
                    *at += 1;
                }
            }
        }
    }
    let mut out = Vec::new();
    tree(s.as_bytes(), &mut 0, "", &mut out);
    out
}

/// The code of a file: without its unit tests (`#[cfg(test)] mod tests`, last in every file)
/// and without comments (`/* */`, and `//` to the end of the line where it starts a line or
/// follows a space, so that `redis://` in a string stays).
fn code_of(text: &str) -> String {
    let text = text.split("#[cfg(test)]\nmod tests").next().unwrap();
    let mut code = String::new();
    let mut rest = text;
    while let Some(open) = rest.find("/*") {
        code.push_str(&rest[..open]);
        rest = rest[open..].split_once("*/").map_or("", |(_, after)| after);
    }
    code.push_str(rest);
    code.lines()
        .map(|l| {
            let cut = l
                .match_indices("//")
                .find(|(at, _)| *at == 0 || l.as_bytes()[at - 1].is_ascii_whitespace())
                .map_or(l.len(), |(at, _)| at);
            &l[..cut]
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Each module of `src/` and the modules its non-test code names as `crate::...`.
fn graph() -> BTreeMap<String, BTreeSet<String>> {
    let files = files();
    let modules: BTreeSet<String> = files.iter().map(|f| module_of(f)).collect();
    // The longest module a path starts with: `pure::quorum::Tally` is in `pure::quorum`.
    let longest_module = |path: &str| -> Option<String> {
        let parts: Vec<&str> = path.split("::").collect();
        (1..=parts.len())
            .rev()
            .map(|n| parts[..n].join("::"))
            .find(|m| modules.contains(m))
    };
    // What the crate root re-exports (`crate::Redlock` is `client::Redlock`), by its name.
    let root = code_of(&fs::read_to_string(src().join("lib.rs")).unwrap());
    let reexports: BTreeMap<String, String> = root
        .lines()
        .filter_map(|l| l.trim_start().strip_prefix("pub use "))
        .flat_map(paths)
        .filter_map(|p| {
            let name = p.rsplit("::").next()?.to_owned();
            Some((name, longest_module(&p)?))
        })
        .collect();
    let module_in = |path: &str| -> Option<String> {
        longest_module(path).or_else(|| {
            let first = path.split("::").next()?;
            reexports.get(first).cloned()
        })
    };
    files
        .iter()
        .map(|rel| {
            let name = module_of(rel);
            let code = code_of(&fs::read_to_string(src().join(rel)).unwrap());
            // The reader follows `crate::` paths only. In a folder's mod.rs or a file at the
            // top level, `super::` is the crate root, and `super::super::` reaches past a
            // folder anywhere: both are refused outside tests (an inline module's `super::`,
            // its own file, is fine).
            let at_root = !rel.contains('/') || rel.matches('/').count() == 1 && rel.ends_with("/mod.rs");
            assert!(
                !(code.contains("super::super") || at_root && code.contains("super::")),
                "src/{rel}: name modules of other folders by their crate:: path, not super::"
            );
            let mut deps = BTreeSet::new();
            for (at, _) in code.match_indices("crate::") {
                for path in paths(&code[at + "crate::".len()..]) {
                    deps.extend(module_in(&path).filter(|m| *m != name));
                }
            }
            if name == "lib" {
                // `pub use client::Redlock;` in the crate root names a module without `crate::`.
                for line in code.lines() {
                    if let Some(rest) = line.strip_prefix("pub use ") {
                        for path in paths(rest) {
                            deps.extend(module_in(&path));
                        }
                    }
                }
            }
            (name, deps)
        })
        .collect()
}

/// The layer index of a module of [`graph`].
fn module_layer(module: &str) -> usize {
    let first = module.split("::").next().unwrap();
    layer_of(&format!("{first}/"))
        .or_else(|| layer_of(&format!("{first}.rs")))
        .unwrap_or_else(|| panic!("module `{module}` is in no layer"))
}

#[test]
fn every_file_is_in_a_layer() {
    let homeless: Vec<_> = files().into_iter().filter(|f| layer_of(f).is_none()).collect();
    assert!(
        homeless.is_empty(),
        "these files of src/ are in no layer of tests/module_graph.rs (LAYERS): {homeless:?}"
    );
}

#[test]
fn no_module_imports_from_a_higher_layer() {
    let g = graph();
    assert!(
        g["operations::acquire"].contains("fan_out::fanout"),
        "the graph reader misses `use crate::x::y::z`"
    );
    assert!(
        g["lib"].contains("client"),
        "the graph reader misses `pub use client::...`"
    );
    let mut upward = Vec::new();
    for (module, deps) in &g {
        let own = module_layer(module);
        for dep in deps {
            let theirs = module_layer(dep);
            if theirs > own {
                upward.push(format!(
                    "{module} ({}) imports {dep} ({})",
                    LAYERS[own].0, LAYERS[theirs].0
                ));
            }
        }
    }
    assert!(
        upward.is_empty(),
        "imports from a higher layer (a module may import only from its own layer and below): {upward:#?}"
    );
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
    let long: Vec<_> = files()
        .into_iter()
        .filter_map(|rel| {
            let lines = fs::read_to_string(src().join(&rel)).unwrap().lines().count();
            (lines > MAX_LINES).then(|| format!("src/{rel} ({lines})"))
        })
        .collect();
    assert!(long.is_empty(), "split these by what they hold: {long:?}");
}

/// docs/design.md's module map: a table `| Layer | Files | Owns |` under "## Module map", one
/// row per group of files, `Files` naming each file by its path under `src/` in backticks.
#[test]
fn the_module_map_in_design_md_matches_the_tree() {
    let doc = fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/design.md")).unwrap();
    let map = doc
        .split("\n## Module map\n")
        .nth(1)
        .expect("docs/design.md has a \"## Module map\" section")
        .split("\n## ")
        .next()
        .unwrap();
    let mut order: Vec<&str> = Vec::new();
    let mut listed = BTreeMap::new();
    let mut wrong = Vec::new();
    // Rows start with "| "; the header row is the first, the separator row starts with "|-".
    for row in map.lines().filter(|l| l.starts_with("| ")).skip(1) {
        let cells: Vec<&str> = row.split(" | ").collect();
        let layer = cells[0].trim_start_matches("| ").trim();
        if order.last() != Some(&layer) {
            order.push(layer);
        }
        for file in cells[1].split('`').skip(1).step_by(2) {
            let Some(rel) = file.strip_prefix("src/") else {
                wrong.push(format!("`{file}`: not a path under src/"));
                continue;
            };
            match layer_of(rel) {
                Some(at) if LAYERS[at].0 == layer => {}
                Some(at) => wrong.push(format!(
                    "`{file}` is listed under `{layer}` but lives in `{}`",
                    LAYERS[at].0
                )),
                None => wrong.push(format!("`{file}` is in no layer")),
            }
            if listed.insert(rel.to_owned(), layer).is_some() {
                wrong.push(format!("`{file}` is listed twice"));
            }
        }
    }
    let layers: Vec<&str> = LAYERS.iter().map(|(name, _)| *name).collect();
    assert_eq!(
        order, layers,
        "docs/design.md's module map lists the layers out of the order of tests/module_graph.rs"
    );
    // A folder's mod.rs only says what the folder holds; the map's row for the folder does.
    let tree: BTreeSet<String> = files()
        .into_iter()
        .filter(|f| !(f.ends_with("/mod.rs") && f.matches('/').count() == 1))
        .collect();
    let listed: BTreeSet<String> = listed.into_keys().collect();
    for missing in tree.difference(&listed) {
        wrong.push(format!("src/{missing} is not in the map"));
    }
    for gone in listed.difference(&tree) {
        wrong.push(format!("src/{gone} is in the map but not in the tree"));
    }
    assert!(
        wrong.is_empty(),
        "docs/design.md's module map does not match src/: {wrong:#?}"
    );
}

#[test]
fn the_path_reader_expands_groups() {
    assert_eq!(
        paths("{pure::quorum, fan_out::{calls, undo::X}};"),
        ["pure::quorum", "fan_out::calls", "fan_out::undo::X"]
    );
    assert_eq!(paths("wire::metrics::rejected)?"), ["wire::metrics::rejected"]);
    assert_eq!(paths("{\n    a::b,\n    c,\n};"), ["a::b", "c"]);
    assert_eq!(paths("{a::b as x, c::d};"), ["a::b", "c::d"]);
    assert_eq!(
        code_of("use crate::{\n    a::b, // note\n    c, /* x */ d,\n};\nlet u = \"redis://h\";"),
        "use crate::{\n    a::b, \n    c,  d,\n};\nlet u = \"redis://h\";"
    );
}

/// Each layer folder's mod.rs ends its description with "May import:" and the layers below it,
/// as LAYERS orders them (`pure`, ..., `shared`), so what a reader opening the folder is told
/// cannot drift from the rule this file checks.
#[test]
fn each_folder_says_what_it_may_import() {
    let mut wrong = Vec::new();
    for (at, (_, holds)) in LAYERS.iter().enumerate() {
        for folder in holds.iter().filter_map(|h| h.strip_suffix('/')) {
            let text = fs::read_to_string(src().join(folder).join("mod.rs")).unwrap();
            let Some(rest) = text.split("//! May import:").nth(1) else {
                wrong.push(format!("src/{folder}/mod.rs has no \"May import:\""));
                continue;
            };
            let para: String = rest
                .lines()
                .take_while(|l| !l.trim().is_empty() && l.trim() != "//!")
                .collect();
            let said: Vec<&str> = para.split('`').skip(1).step_by(2).collect();
            let below: Vec<&str> = LAYERS[..at]
                .iter()
                .flat_map(|(_, h)| h.iter())
                .map(|h| h.trim_end_matches('/').trim_end_matches(".rs"))
                .collect();
            if said != below {
                wrong.push(format!(
                    "src/{folder}/mod.rs may import {said:?}, LAYERS says {below:?}"
                ));
            }
        }
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
}
