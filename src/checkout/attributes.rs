//! Whether a checkout conversion could apply to the paths a fast move writes, read from the
//! attribute files themselves.
//!
//! Contract: [`blocker`] returns a reason when any attribute that makes git convert a file on
//! checkout (`eol` other than `lf`, `crlf`, `filter`, `ident`, `working-tree-encoding`, or a
//! macro that sets one of them) may apply to one of the paths, and `None` only when none can.
//! It reads every source git reads for a checkout: `.gitattributes` in each folder on the way,
//! both the checkout's file and the index's blob (git uses the index first on checkout, the file
//! otherwise: both are read, so either order gives the same answer), `$GIT_COMMON_DIR/info/
//! attributes`, `core.attributesFile` (or `$XDG_CONFIG_HOME/git/attributes`) and the system file.
//!
//! It over-approximates on purpose: a line counts when its pattern may match, whatever a later
//! line unsets, and a pattern it cannot read (C-quoted, an invalid glob) matches everything. A
//! false "may apply" only sends the move to `git read-tree`, which does the conversion itself.
//! Why not libgit2's attribute lookup: it loads the checkout's whole index first (SHA-1 over
//! the file and a hash map of every entry), most of a lone landing on a repository the size of
//! git/git.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use anyhow::Result;
use globset::GlobBuilder;

use super::Checkout;
use crate::git::index::RawIndex;
use crate::repo::Project;

/// Attributes whose value makes git convert a blob when it writes the file.
fn converts(name: &str, value: State) -> bool {
    match name {
        "text" => false, // LF output only (checked in the config): blobs are written as they are
        "eol" => !matches!(value, State::Unspecified | State::Value("lf")),
        "filter" | "ident" => !matches!(value, State::Unspecified | State::Unset),
        "crlf" | "working-tree-encoding" => !matches!(value, State::Unspecified),
        _ => false,
    }
}

#[derive(Clone, Copy)]
enum State<'a> {
    Set,
    Unset,
    Unspecified,
    Value(&'a str),
}

fn parse_attr(token: &str) -> (&str, State<'_>) {
    if let Some(n) = token.strip_prefix('-') {
        (n, State::Unset)
    } else if let Some(n) = token.strip_prefix('!') {
        (n, State::Unspecified)
    } else if let Some((n, v)) = token.split_once('=') {
        (n, State::Value(v))
    } else {
        (token, State::Set)
    }
}

/// One attributes file: its folder (relative to the checkout's root, `""` for root-level
/// sources) and its text.
struct Source {
    dir: String,
    text: String,
}

/// See the module contract. `paths` are relative to the checkout's root.
pub fn blocker(project: &Project, co: &Checkout, index: &RawIndex, paths: &[&str]) -> Result<Option<String>> {
    let sources = sources(project, co, index, paths)?;
    if sources.is_empty() {
        return Ok(None);
    }
    // Macros first (`[attr]name ...`, in any file): a macro converts when it sets an attribute
    // that converts, directly or through another macro.
    let mut macros: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for s in &sources {
        for line in s.text.lines() {
            if let Some(def) = line.trim().strip_prefix("[attr]") {
                let mut it = def.split_whitespace();
                if let Some(name) = it.next() {
                    macros.entry(name).or_default().extend(it);
                }
            }
        }
    }
    let mut bad_macros: BTreeSet<&str> = BTreeSet::new();
    loop {
        let before = bad_macros.len();
        for (name, attrs) in &macros {
            if attrs.iter().any(|a| token_converts(a, &bad_macros)) {
                bad_macros.insert(name);
            }
        }
        if bad_macros.len() == before {
            break;
        }
    }
    for s in &sources {
        for line in s.text.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') || line.starts_with("[attr]") {
                continue;
            }
            let mut tokens = line.split_whitespace();
            let Some(pattern) = tokens.next() else { continue };
            let Some(attr) = tokens.find(|t| token_converts(t, &bad_macros)) else { continue };
            for path in paths {
                if may_match(&s.dir, pattern, path) {
                    return Ok(Some(format!("the attribute {attr:?} may apply to {path:?}")));
                }
            }
        }
    }
    Ok(None)
}

fn token_converts(token: &str, bad_macros: &BTreeSet<&str>) -> bool {
    let (name, state) = parse_attr(token);
    converts(name, state) || (matches!(state, State::Set) && bad_macros.contains(name))
}

/// Whether the attribute `pattern` of a file in `dir` may match `path` (gitattributes rules:
/// gitignore's patterns without negation; a pattern without a slash matches the name at any
/// depth, one with a slash the path from `dir`; one ending in a slash matches only folders).
fn may_match(dir: &str, pattern: &str, path: &str) -> bool {
    let rel = if dir.is_empty() {
        path
    } else {
        match path.strip_prefix(dir).and_then(|r| r.strip_prefix('/')) {
            Some(r) => r,
            None => return false,
        }
    };
    if pattern.starts_with('"') {
        return true; // C-quoted: not parsed here
    }
    if pattern.ends_with('/') {
        return false; // folders only: never a file's attributes
    }
    let (pattern, subject) = match pattern.strip_prefix('/') {
        Some(anchored) => (anchored, rel),
        None if !pattern.contains('/') => (pattern, rel.rsplit('/').next().unwrap_or(rel)),
        None => (pattern, rel),
    };
    match GlobBuilder::new(pattern).literal_separator(true).backslash_escape(true).build() {
        Ok(g) => g.compile_matcher().is_match(subject),
        Err(_) => true,
    }
}

/// Every attributes source that can apply to `paths` in `co` (module contract).
fn sources(project: &Project, co: &Checkout, index: &RawIndex, paths: &[&str]) -> Result<Vec<Source>> {
    let mut out = Vec::new();
    let push_file = |out: &mut Vec<Source>, dir: &str, file: &Path| {
        if let Ok(text) = std::fs::read(file) {
            out.push(Source { dir: dir.to_string(), text: String::from_utf8_lossy(&text).into_owned() });
        }
    };
    let no_system = std::env::var_os("GIT_ATTR_NOSYSTEM").is_some_and(|v| v != "0" && v != "false");
    if !no_system {
        for p in ["/etc/gitattributes", "/usr/etc/gitattributes", "/usr/local/etc/gitattributes"] {
            push_file(&mut out, "", Path::new(p));
        }
    }
    for f in global_files(project) {
        push_file(&mut out, "", &f);
    }
    push_file(&mut out, "", &project.common_dir.join("info").join("attributes"));
    let mut dirs: BTreeSet<&str> = BTreeSet::from([""]);
    for p in paths {
        let mut p = *p;
        while let Some((parent, _)) = p.rsplit_once('/') {
            dirs.insert(parent);
            p = parent;
        }
    }
    for d in dirs {
        let rel = if d.is_empty() { ".gitattributes".to_string() } else { format!("{d}/.gitattributes") };
        push_file(&mut out, d, &co.dir.join(&rel));
        if let Some(e) = index.get(&rel) {
            if let Ok(blob) = project.repo.find_blob(e.id) {
                out.push(Source { dir: d.to_string(), text: String::from_utf8_lossy(blob.content()).into_owned() });
            }
        }
    }
    Ok(out)
}

/// `core.attributesFile` from every config source, else `$XDG_CONFIG_HOME/git/attributes`
/// (or `~/.config/git/attributes`).
fn global_files(project: &Project) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(Ok(configs)) = super::fast::config_sources(&project.repo) {
        for c in configs {
            if let Ok(p) = c.get_path("core.attributesfile") {
                out.push(p);
            }
        }
    }
    if out.is_empty() {
        out.extend(crate::git::xdg_git_file("attributes"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_follow_gitattributes_rules() {
        assert!(may_match("", "*.bat", "a/b/run.bat"));
        assert!(!may_match("", "*.bat", "a/b/run.c"));
        assert!(may_match("", "/mergetools/*", "mergetools/vim"));
        assert!(!may_match("", "/mergetools/*", "x/mergetools/vim"));
        assert!(!may_match("", "/mergetools/*", "mergetools/a/vim"));
        assert!(may_match("", "/Documentation/**/*.adoc", "Documentation/a/b.adoc"));
        assert!(may_match("", "/t/t????-*.sh", "t/t0001-init.sh"));
        assert!(may_match("", "*.[ch]", "builtin/add.c"));
        assert!(may_match("sub", "*.c", "sub/x/a.c"));
        assert!(!may_match("sub", "*.c", "other/a.c"));
        assert!(may_match("sub", "x/*.c", "sub/x/a.c"));
        assert!(!may_match("", "build/", "build"));
        assert!(may_match("", "\"odd name\"", "anything"));
    }

    #[test]
    fn only_converting_attributes_count() {
        let none = BTreeSet::new();
        for t in ["text", "-text", "text=auto", "eol=lf", "!eol", "-filter", "diff=cpp", "whitespace=trail", "binary"] {
            assert!(!token_converts(t, &none), "{t}");
        }
        for t in ["eol=crlf", "eol", "filter=lfs", "ident", "crlf", "-crlf", "working-tree-encoding=UTF-16"] {
            assert!(token_converts(t, &none), "{t}");
        }
        let bad = BTreeSet::from(["mine"]);
        assert!(token_converts("mine", &bad));
        assert!(!token_converts("-mine", &bad));
    }
}
