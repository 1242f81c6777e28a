//! git's attribute files (`gitattributes(5)`) read without libgit2: where they are, their lines,
//! macros and patterns.
//!
//! Contract:
//! - [`sources`] returns the text of every attribute file git reads for a checkout's paths, each
//!   with the folder it applies to: the system files (unless `GIT_ATTR_NOSYSTEM`), the global one
//!   ([`global_files`]: `core.attributesFile`, else `$XDG_CONFIG_HOME/git/attributes`),
//!   `$GIT_COMMON_DIR/info/attributes`, and `.gitattributes` in each folder on the way to a path,
//!   both the checkout's file and the index's blob (git uses the index first on checkout, the file
//!   otherwise). A source that cannot be read is left out.
//! - [`macros`] lists the macro definitions (`[attr]name ...`) of all sources; [`rules`] the
//!   other lines as `(folder, pattern, attribute tokens)`; [`parse_attr`] reads one token
//!   (`name`, `-name`, `!name`, `name=value`).
//! - [`Pattern`] says whether a line's pattern may match a path,
//!   over-approximating: a pattern it cannot read (C-quoted, an invalid glob) matches everything.
//!   A pattern is compiled once, however many paths it is matched against.
//!
//! What an attribute means for a move is decided by the caller (`checkout/attributes.rs`).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use git2::Repository;
use globset::GlobBuilder;

use super::index::RawIndex;

/// One attribute's state on a line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State<'a> {
    Set,
    Unset,
    Unspecified,
    Value(&'a str),
}

/// One token of an attribute line: its name and state.
pub fn parse_attr(token: &str) -> (&str, State<'_>) {
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
pub struct Source {
    pub dir: String,
    pub text: String,
}

/// Every macro definition (`[attr]name attr...`) in `sources`: name → attribute tokens (a name
/// defined twice gets both lists).
pub fn macros(sources: &[Source]) -> BTreeMap<&str, Vec<&str>> {
    let mut out: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for s in sources {
        for line in s.text.lines() {
            if let Some(def) = line.trim().strip_prefix("[attr]") {
                let mut it = def.split_whitespace();
                if let Some(name) = it.next() {
                    out.entry(name).or_default().extend(it);
                }
            }
        }
    }
    out
}

/// Every pattern line of `sources` in order (blank lines, comments and macro definitions left
/// out): the source's folder, the pattern and the attribute tokens.
pub fn rules(sources: &[Source]) -> impl Iterator<Item = (&str, &str, std::str::SplitWhitespace<'_>)> {
    sources.iter().flat_map(|s| {
        s.text.lines().filter_map(move |line| {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') || line.starts_with("[attr]") {
                return None;
            }
            let mut tokens = line.split_whitespace();
            let pattern = tokens.next()?;
            Some((s.dir.as_str(), pattern, tokens))
        })
    })
}

/// An attribute line's pattern, read once and matched against many paths (gitattributes rules:
/// gitignore's patterns without negation; a pattern without a slash matches the name at any
/// depth, one with a slash the path from `dir`; one ending in a slash matches only folders).
pub struct Pattern<'a> {
    dir: &'a str,
    how: How,
}

enum How {
    /// C-quoted or not a glob we can read: may match anything.
    Anything,
    /// Folders only: never a file's attributes.
    Nothing,
    /// The glob, against the name only (`basename`) or the path from `dir`.
    Glob { matcher: globset::GlobMatcher, basename: bool },
    /// `*<literal>` against the name (`*.sh`, the common line): no glob compiled.
    NameEndsWith(String),
    /// A literal name or path (no glob characters).
    Literal { text: String, basename: bool },
}

impl<'a> Pattern<'a> {
    pub fn new(dir: &'a str, pattern: &str) -> Pattern<'a> {
        let how = if pattern.starts_with('"') {
            How::Anything
        } else if pattern.ends_with('/') {
            How::Nothing
        } else {
            let (glob, basename) = match pattern.strip_prefix('/') {
                Some(anchored) => (anchored, false),
                None => (pattern, !pattern.contains('/')),
            };
            let plain = |t: &str| !t.contains(['*', '?', '[', ']', '{', '}', '\\']);
            match glob.strip_prefix('*') {
                Some(rest) if basename && plain(rest) => How::NameEndsWith(rest.to_string()),
                _ if plain(glob) => How::Literal { text: glob.to_string(), basename },
                _ => match GlobBuilder::new(glob).literal_separator(true).backslash_escape(true).build() {
                    Ok(g) => How::Glob { matcher: g.compile_matcher(), basename },
                    Err(_) => How::Anything,
                },
            }
        };
        Pattern { dir, how }
    }

    /// Whether the pattern may match `path` (relative to the checkout's root).
    pub fn may_match(&self, path: &str) -> bool {
        let rel = if self.dir.is_empty() {
            path
        } else {
            match path.strip_prefix(self.dir).and_then(|r| r.strip_prefix('/')) {
                Some(r) => r,
                None => return false,
            }
        };
        let name = || rel.rsplit('/').next().unwrap_or(rel);
        match &self.how {
            How::Anything => true,
            How::Nothing => false,
            How::NameEndsWith(tail) => name().ends_with(tail.as_str()),
            How::Literal { text, basename: true } => name() == text,
            How::Literal { text, basename: false } => rel == text,
            How::Glob { matcher, basename: true } => matcher.is_match(name()),
            How::Glob { matcher, basename: false } => matcher.is_match(rel),
        }
    }
}

/// Every attributes source that can apply to `paths` (relative to `work_dir`, the checkout's
/// root) in a checkout of `repo` (common git directory `common_dir`) whose index is `index`;
/// `configs` are the configuration sources to read `core.attributesFile` from (module contract).
pub fn sources(
    repo: &Repository,
    common_dir: &Path,
    work_dir: &Path,
    index: &RawIndex,
    configs: &[git2::Config],
    paths: &[&str],
) -> Vec<Source> {
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
    for f in global_files(configs) {
        push_file(&mut out, "", &f);
    }
    push_file(&mut out, "", &common_dir.join("info").join("attributes"));
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
        push_file(&mut out, d, &work_dir.join(&rel));
        if let Some(e) = index.get(&rel) {
            if let Ok(blob) = repo.find_blob(e.id) {
                out.push(Source { dir: d.to_string(), text: String::from_utf8_lossy(blob.content()).into_owned() });
            }
        }
    }
    out
}

/// `core.attributesFile` from every one of `configs`, else `$XDG_CONFIG_HOME/git/attributes`
/// (or `~/.config/git/attributes`).
pub fn global_files(configs: &[git2::Config]) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for c in configs {
        if let Ok(p) = c.get_path("core.attributesfile") {
            out.push(p);
        }
    }
    if out.is_empty() {
        out.extend(super::xdg_git_file("attributes"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn may_match(dir: &str, pattern: &str, path: &str) -> bool {
        Pattern::new(dir, pattern).may_match(path)
    }

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
        // Without a glob compiled: `*<literal>` and literal names, as globset reads them.
        for (pattern, path) in [
            ("*.sh", "t/lib.sh"),
            ("*.sh", ".sh"),
            ("*.sh", "t/lib.shx"),
            ("*.sh", "a.sh/b"),
            ("Makefile", "sub/Makefile"),
            ("Makefile", "Makefile.in"),
            ("/Makefile", "sub/Makefile"),
            ("/Makefile", "Makefile"),
            ("t/README", "t/README"),
            ("t/README", "x/t/README"),
            ("*", "any/thing"),
        ] {
            let glob = globset::GlobBuilder::new(pattern.trim_start_matches('/'))
                .literal_separator(true)
                .build()
                .unwrap()
                .compile_matcher();
            let subject = if pattern.contains('/') { path } else { path.rsplit('/').next().unwrap() };
            assert_eq!(may_match("", pattern, path), glob.is_match(subject), "{pattern} {path}");
        }
    }

    #[test]
    fn lines_macros_and_tokens() {
        let src = [
            Source { dir: String::new(), text: "# c\n[attr]mine eol=crlf\n\n*.c text -diff\n".into() },
            Source { dir: "sub".into(), text: "  x/*.h   mine  \n[attr]mine ident\n".into() },
        ];
        let m = macros(&src);
        assert_eq!(m.get("mine").map(Vec::as_slice), Some(&["eol=crlf", "ident"][..]));
        let r: Vec<(&str, &str, Vec<&str>)> = rules(&src).map(|(d, p, t)| (d, p, t.collect())).collect();
        assert_eq!(r, [("", "*.c", vec!["text", "-diff"]), ("sub", "x/*.h", vec!["mine"])]);
        assert_eq!(parse_attr("-a"), ("a", State::Unset));
        assert_eq!(parse_attr("!a"), ("a", State::Unspecified));
        assert_eq!(parse_attr("a=b=c"), ("a", State::Value("b=c")));
        assert_eq!(parse_attr("a"), ("a", State::Set));
    }
}
