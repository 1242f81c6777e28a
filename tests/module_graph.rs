//! The library's top-level modules import each other without a cycle (docs/DESIGN.md, "Module
//! map"). Reads the sources: every `crate::<module>` path and `use crate::{...}` group in
//! `src/<module>.rs` and `src/<module>/**` (unit tests left out) is an edge `<module> ->
//! <other>`. `cargo test --test module_graph -- --nocapture` prints the edges. The foundation
//! layer (the git-I/O layer among it) imports no domain module.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

type Graph = BTreeMap<String, BTreeSet<String>>;

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

fn ident(s: &str) -> &str {
    let end = s.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(s.len());
    &s[..end]
}

/// The top-level modules a source file names through `crate::`.
fn targets(text: &str) -> BTreeSet<String> {
    let code = match text.find("#[cfg(test)]\nmod tests") {
        Some(i) => &text[..i],
        None => text,
    };
    let code: String = code.lines().filter(|l| !l.trim_start().starts_with("//")).map(|l| format!("{l}\n")).collect();
    let mut out = BTreeSet::new();
    for (i, _) in code.match_indices("crate::") {
        let rest = &code[i + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            // `use crate::{a, b::c, d::{e, f}}`: the first name of every item at depth 0.
            let mut depth = 0;
            let mut item_start = true;
            for (j, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => item_start = true,
                    c if item_start && (c.is_ascii_alphanumeric() || c == '_') => {
                        out.insert(ident(&group[j..]).to_string());
                        item_start = false;
                    }
                    _ => {}
                }
            }
        } else {
            out.insert(ident(rest).to_string());
        }
    }
    out
}

fn graph() -> Graph {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let module_of = |p: &Path| -> String {
        let first = p.strip_prefix(&src).unwrap().components().next().unwrap();
        first.as_os_str().to_string_lossy().trim_end_matches(".rs").to_string()
    };
    let modules: BTreeSet<String> = files.iter().map(|p| module_of(p)).collect();
    let mut g = Graph::new();
    for f in &files {
        let m = module_of(f);
        if matches!(m.as_str(), "main" | "lib" | "cli") {
            continue; // the binary (src/main.rs, src/cli/) sits on top of everything
        }
        let text = std::fs::read_to_string(f).unwrap();
        let edges = g.entry(m.clone()).or_default();
        for t in targets(&text) {
            if t != m && modules.contains(&t) {
                edges.insert(t);
            }
        }
    }
    g
}

/// A cycle through `start`, if there is one (depth-first search).
fn cycle_from(g: &Graph, start: &str) -> Option<Vec<String>> {
    fn walk(g: &Graph, node: &str, start: &str, path: &mut Vec<String>, seen: &mut BTreeSet<String>) -> bool {
        for next in g.get(node).into_iter().flatten() {
            if next == start {
                return true;
            }
            if seen.insert(next.clone()) {
                path.push(next.clone());
                if walk(g, next, start, path, seen) {
                    return true;
                }
                path.pop();
            }
        }
        false
    }
    let mut path = vec![start.to_string()];
    walk(g, start, start, &mut path, &mut BTreeSet::new()).then(|| {
        path.push(start.to_string());
        path
    })
}

#[test]
fn top_level_modules_import_each_other_without_a_cycle() {
    let g = graph();
    for (m, edges) in &g {
        println!("{m} -> {}", edges.iter().cloned().collect::<Vec<_>>().join(", "));
    }
    assert!(g.len() > 20 && g["land"].contains("ledger"), "the source scan found too little: {g:?}");
    let cycles: Vec<String> = g.keys().filter_map(|m| cycle_from(&g, m)).map(|c| c.join(" -> ")).collect();
    assert!(cycles.is_empty(), "import cycles between top-level modules:\n{}", cycles.join("\n"));
}

/// The foundation layer (docs/DESIGN.md, "Module map"): modules with no domain knowledge. They
/// import only each other, so the git-I/O layer (`git`) never reaches up into a domain module.
const FOUNDATION: &[&str] = &[
    "error",
    "failpoint",
    "fsutil",
    "git",
    "gitdate",
    "lock",
    "names",
    "redact",
    "safe_path",
    "secrets",
    "task_id",
    "test_support",
    "trailers",
    "treediff",
];

#[test]
fn the_foundation_imports_no_domain_module() {
    let g = graph();
    let mut upward = Vec::new();
    for m in FOUNDATION {
        let edges = g.get(*m).unwrap_or_else(|| panic!("no module {m} (update FOUNDATION)"));
        upward.extend(edges.iter().filter(|t| !FOUNDATION.contains(&t.as_str())).map(|t| format!("{m} -> {t}")));
    }
    assert!(upward.is_empty(), "foundation modules importing domain modules:\n{}", upward.join("\n"));
}

/// The scanner itself: plain paths, `use` groups with nested groups, comments and unit tests.
#[test]
fn the_scanner_reads_paths_and_use_groups() {
    let text = "use crate::{git, ledger::{trust, TaskRecord}, names};\n\
                // crate::commented\n\
                let x = crate::sync::run();\n\
                #[cfg(test)]\nmod tests {\n    use crate::test_only;\n}\n";
    let got: Vec<String> = targets(text).into_iter().collect();
    assert_eq!(got, ["git", "ledger", "names", "sync"]);
    let mut g = Graph::new();
    g.entry("a".into()).or_default().insert("b".into());
    g.entry("b".into()).or_default().insert("a".into());
    assert_eq!(cycle_from(&g, "a"), Some(vec!["a".to_string(), "b".into(), "a".into()]));
    g.get_mut("b").unwrap().clear();
    assert_eq!(cycle_from(&g, "a"), None);
}
