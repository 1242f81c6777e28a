//! The one path validator: which repository paths git-hybrid will write, land or hand to git.
//!
//! Contract: [`check`] applies git's own path rules to a `/`-separated repository path, each
//! component through `gix-validate` (the rules of git's `verify_path` with `core.protectNTFS`
//! and `core.protectHFS` both on, whatever the platform): no empty, `.` or `..` component; no
//! `.git` in any case or in any form NTFS or HFS+ reads as `.git` (`.git.`, `.git `, `git~1`,
//! `.git::$INDEX_ALLOCATION`, `.g\u{200c}it`, ...); no backslash (NTFS reads it as a separator);
//! no NUL or control character; and a `.gitmodules` (or an NTFS/HFS alias of it) that is a
//! symlink is refused. Windows device names (`aux`, `con`) and the characters only Windows
//! forbids (`:`, `?`, `*`) are *allowed*, as git allows them on Unix: refusing them would refuse
//! ordinary files of Unix projects.
//!
//! Used by the landing gate ([`crate::gate`]: every new path of a squash), by
//! [`crate::git::populate`] (the fast fill of a new worktree), by the pre-commit hook's raw index
//! reader and by the fast checkout (both fall back to libgit2/git for paths this refuses).

use bstr::ByteSlice;
use gix_validate::path::component::{Mode, Options};

/// The protections: NTFS and HFS+ aliases on; Windows-only names and characters off (see the
/// module contract).
const OPTIONS: Options = Options { protect_windows: false, protect_hfs: true, protect_ntfs: true };

/// Why a path was refused (a short phrase for messages).
pub type Problem = &'static str;

/// Checks one path component (a tree entry name). `symlink`: the entry is a symbolic link.
pub fn check_component(name: &[u8], symlink: bool) -> Result<(), Problem> {
    if name.contains(&b'\\') {
        return Err("a backslash (a path separator on Windows)");
    }
    if name.iter().any(|b| *b < 0x20 || *b == 0x7f) {
        return Err("a control character");
    }
    let mode = symlink.then_some(Mode::Symlink);
    gix_validate::path::component(name.as_bstr(), mode, OPTIONS).map(|_| ()).map_err(|e| {
        use gix_validate::path::component::Error as E;
        match e {
            E::Empty => "an empty path component",
            E::PathSeparator => "a path separator inside a name",
            E::Relative => "a `.` or `..` component",
            E::DotGitDir => "a `.git` component (or a name NTFS or HFS+ reads as `.git`)",
            E::SymlinkedGitModules => "`.gitmodules` as a symbolic link",
            _ => "a name git refuses to check out",
        }
    })
}

/// Checks a whole `/`-separated path; `symlink`: its last component is a symbolic link.
pub fn check(path: &[u8], symlink: bool) -> Result<(), Problem> {
    if path.is_empty() {
        return Err("an empty path");
    }
    let mut parts = path.split(|b| *b == b'/').peekable();
    while let Some(c) = parts.next() {
        let last = parts.peek().is_none();
        check_component(c, symlink && last)?;
    }
    Ok(())
}

/// Whether git would check out this path (see [`check`]).
pub fn is_safe(path: &[u8], symlink: bool) -> bool {
    check(path, symlink).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn git_rules() {
        for ok in ["a/b.c", ".github/workflows/ci.yml", ".gitignore", "src/aux.rs", "a:b", "x/.gitmodules", "git~x"] {
            assert!(is_safe(ok.as_bytes(), false), "{ok}");
        }
        let bad = [
            ".git/hooks/post-checkout",
            ".GIT/hooks/post-checkout",
            ".Git/x",
            "a/.git/x",
            ".git./x",
            ".git /x",
            "git~1/x",
            "GIT~1/hooks",
            ".git::$INDEX_ALLOCATION/x",
            "a/../b",
            "./a",
            "a//b",
            "a\\b",
            "a\u{1}b",
            ".g\u{200c}it/x",
            "\u{feff}.git/x",
            "",
        ];
        for p in bad {
            assert!(!is_safe(p.as_bytes(), false), "{p:?}");
        }
        assert!(!is_safe(b".gitmodules", true));
        assert!(!is_safe(b"GITMOD~1", true));
        assert!(is_safe(b".gitmodules", false));
    }
}
