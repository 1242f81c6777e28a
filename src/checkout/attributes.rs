//! Whether a checkout conversion could apply to the paths a fast move writes, read from the
//! attribute files themselves.
//!
//! Contract: [`blocker`] returns a reason when any attribute that makes git convert a file on
//! checkout (`eol` other than `lf`, `crlf`, `filter`, `ident`, `working-tree-encoding`, or a
//! macro that sets one of them) may apply to one of the paths, and `None` only when none can.
//! It reads every source git reads for a checkout (found and parsed by
//! [`crate::git::attributes`]): `.gitattributes` in each folder on the way, both the checkout's
//! file and the index's blob (git uses the index first on checkout, the file otherwise: both are
//! read, so either order gives the same answer), `$GIT_COMMON_DIR/info/attributes`,
//! `core.attributesFile` (or `$XDG_CONFIG_HOME/git/attributes`) and the system file.
//!
//! It over-approximates on purpose: a line counts when its pattern may match, whatever a later
//! line unsets, and a pattern it cannot read (C-quoted, an invalid glob) matches everything. A
//! false "may apply" only sends the move to `git read-tree`, which does the conversion itself.
//! Why not libgit2's attribute lookup: it loads the checkout's whole index first (SHA-1 over
//! the file and a hash map of every entry), most of a lone landing on a repository the size of
//! git/git.

use std::collections::BTreeSet;

use anyhow::Result;

use super::Checkout;
use crate::git::attributes::{self as gitattributes, parse_attr, Pattern, State};
use crate::git::config::Sources;
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

/// See the module contract. `paths` are relative to the checkout's root.
pub fn blocker(project: &Project, co: &Checkout, index: &RawIndex, paths: &[&str]) -> Result<Option<String>> {
    // `core.attributesFile` from every config file git reads (none read when `git -c` settings
    // exist: the fast move falls back then anyway).
    let configs = match crate::git::config::sources(&project.repo) {
        Ok(Sources::Files(c)) => c,
        Ok(Sources::Environment) | Err(_) => Vec::new(),
    };
    let sources = gitattributes::sources(&project.repo, &project.common_dir, &co.dir, index, &configs, paths);
    if sources.is_empty() {
        return Ok(None);
    }
    // Macros first (`[attr]name ...`, in any file): a macro converts when it sets an attribute
    // that converts, directly or through another macro.
    let macros = gitattributes::macros(&sources);
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
    for (dir, pattern, mut tokens) in gitattributes::rules(&sources) {
        let Some(attr) = tokens.find(|t| token_converts(t, &bad_macros)) else { continue };
        let pattern = Pattern::new(dir, pattern);
        for path in paths {
            if pattern.may_match(path) {
                return Ok(Some(format!("the attribute {attr:?} may apply to {path:?}")));
            }
        }
    }
    Ok(None)
}

fn token_converts(token: &str, bad_macros: &BTreeSet<&str>) -> bool {
    let (name, state) = parse_attr(token);
    converts(name, state) || (matches!(state, State::Set) && bad_macros.contains(name))
}

#[cfg(test)]
mod tests {
    use super::*;

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
