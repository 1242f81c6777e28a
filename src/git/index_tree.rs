//! The tree of a git index, written the way libgit2's `git_index_write_tree` writes it, from the
//! raw index bytes ([`super::index::RawIndex`]).
//!
//! Contract: [`write_tree`] returns the same tree id as libgit2 (and `git write-tree`) for the
//! given index file. When the raw index parses and holds nothing unusual, the tree comes from the
//! index's cache tree plus the entries of invalidated folders (no collision-detecting SHA-1 over
//! the whole index, no per-entry copies); anything unusual (other index versions, conflict
//! stages, extended flags such as intent-to-add, names libgit2 may refuse, modes it does not
//! write) is left to libgit2 itself. Only new tree objects are written; the index is not changed.

use std::path::Path;

use anyhow::{Context, Result};
use git2::{Index, Oid, Repository};

use super::index::{Node as CacheNode, RawIndex};

/// The tree of the index at `index_file` (`None`: the repository's own index).
pub fn write_tree(repo: &Repository, index_file: Option<&Path>) -> Result<Oid> {
    if let Some(id) = fast_write_tree(repo, index_file)? {
        return Ok(id);
    }
    let mut index = match index_file {
        Some(p) => Index::open(p).with_context(|| format!("cannot read the index {}", p.display()))?,
        None => repo.index().context("cannot read the index")?,
    };
    index.write_tree_to(repo).context("cannot write the index as a tree")
}

/// [`write_tree`] from the raw index; `Ok(None)` when libgit2 must decide (unreadable or
/// unusual index: other versions, conflicts, extended flags such as intent-to-add, a cache tree
/// that does not parse, names libgit2 would refuse or modes it does not write).
fn fast_write_tree(repo: &Repository, index_file: Option<&Path>) -> Result<Option<Oid>> {
    let path = index_file.map(Path::to_path_buf).unwrap_or_else(|| repo.path().join("index"));
    let Ok(data) = std::fs::read(path) else { return Ok(None) };
    let Ok(Ok(idx)) = RawIndex::parse(data) else { return Ok(None) };
    let Ok(cache) = idx.cache_tree() else { return Ok(None) };
    for i in 0..idx.entry_count() {
        if idx.flags_at(i) & 0x7000 != 0 || !plain_path(idx.path_at(i)) {
            return Ok(None); // a conflict stage, an extended flag, or a path libgit2 may refuse
        }
    }
    let odb = repo.odb().context("cannot open the object database")?;
    Ok(write_index_dir(&odb, &idx, cache.as_ref(), b"", 0)?.map(|(id, _)| id))
}

/// Whether every component of an index path is one libgit2 accepts on every platform setting:
/// git's rules ([`crate::safe_path`]), and plain ASCII without the characters Windows forbids.
fn plain_path(path: &[u8]) -> bool {
    path.is_ascii() && !path.iter().any(|b| b"\\:<>\"|?*".contains(b)) && crate::safe_path::is_safe(path, false)
}

/// The tree of the index folder `prefix` (`""` or ending in `/`), whose entries start at
/// `start`, and the first entry after it — libgit2's `write_tree`: a valid cache-tree node is
/// reused as is; otherwise the folder's tree is built from its entries and subfolders.
fn write_index_dir(
    odb: &git2::Odb<'_>,
    idx: &RawIndex,
    node: Option<&CacheNode>,
    prefix: &[u8],
    start: usize,
) -> Result<Option<(Oid, usize)>> {
    let end = start + (start..idx.entry_count()).take_while(|i| idx.path_at(*i).starts_with(prefix)).count();
    if let Some((_, id)) = node.and_then(|n| n.valid) {
        return Ok(Some((Oid::from_bytes(&id)?, end)));
    }
    // (name, mode, id, is a folder)
    let mut items: Vec<(&[u8], u32, Oid, bool)> = Vec::new();
    let mut i = start;
    while i < end {
        let path = idx.path_at(i);
        let rest = &path[prefix.len()..];
        match rest.iter().position(|b| *b == b'/') {
            Some(slash) => {
                let name = &rest[..slash];
                let child = node.and_then(|n| n.children.iter().find(|c| c.name == name));
                let sub = &path[..prefix.len() + slash + 1];
                let Some((id, next)) = write_index_dir(odb, idx, child, sub, i)? else { return Ok(None) };
                items.push((name, 0o40000, id, true));
                i = next;
            }
            None => {
                let e = idx.entry_at(i);
                if !matches!(e.mode, 0o100644 | 0o100755 | 0o120000 | 0o160000) {
                    return Ok(None);
                }
                items.push((rest, e.mode, e.id, false));
                i += 1;
            }
        }
    }
    // git's tree order: names compared as if folders ended in '/'.
    let key = |(name, _, _, dir): &(&[u8], u32, Oid, bool)| -> Vec<u8> {
        let mut k = name.to_vec();
        if *dir {
            k.push(b'/');
        }
        k
    };
    items.sort_by_cached_key(key);
    if items.windows(2).any(|w| w[0].0 == w[1].0) {
        return Ok(None); // a file and a folder of one name: libgit2 keeps one, refuse to guess
    }
    let mut buf = Vec::with_capacity(items.len() * 48);
    for (name, mode, id, _) in &items {
        buf.extend_from_slice(format!("{mode:o} ").as_bytes());
        buf.extend_from_slice(name);
        buf.push(0);
        buf.extend_from_slice(id.as_bytes());
    }
    let id = odb.write(git2::ObjectType::Tree, &buf).context("cannot write the index as a tree")?;
    Ok(Some((id, end)))
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;
    use crate::test_support::git;

    fn put(dir: &Path, p: &str, content: &str) {
        let f = dir.join(p);
        std::fs::create_dir_all(f.parent().unwrap()).unwrap();
        std::fs::write(f, content).unwrap();
    }

    /// The raw-index tree id next to libgit2's and git's (`None`: the fast path declined).
    fn compare(dir: &Path) -> Option<Oid> {
        let repo = Repository::open(dir).unwrap();
        let fast = fast_write_tree(&repo, None).unwrap();
        let mut index = repo.index().unwrap();
        let libgit2 = index.write_tree_to(&repo).unwrap();
        if let Some(f) = fast {
            assert_eq!(f, libgit2, "raw-index tree differs from libgit2's");
        }
        assert_eq!(libgit2.to_string(), git(dir, &["write-tree"]).trim());
        fast
    }

    /// Nested folders, exec bits, symlinks, a gitlink, names that sort differently as folders,
    /// staged adds/modifications/deletions with a partly invalidated cache tree, and an index
    /// without any cache tree: the raw-index tree is libgit2's, byte for byte.
    #[test]
    fn raw_index_tree_matches_libgit2() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path();
        git(dir, &["init", "-q"]);
        for p in [
            "a.txt",
            "a-b",
            "a/x",
            "a/b/c.txt",
            "a/b/d/e.txt",
            "b/y",
            "b.c/z",
            "c/d/e/f/g",
            "z",
            ".github/w.yml",
            ".gitattributes",
        ] {
            put(dir, p, p);
        }
        put(dir, "run.sh", "#!/bin/sh\n");
        std::os::unix::fs::symlink("a/x", dir.join("link")).unwrap();
        std::os::unix::fs::symlink("missing", dir.join("b/dangling")).unwrap();
        git(dir, &["add", "-A"]);
        git(dir, &["update-index", "--chmod=+x", "run.sh"]);
        let head_like = git(dir, &["write-tree"]);
        let commit = git(dir, &["commit-tree", head_like.trim(), "-m", "sub"]);
        git(dir, &["update-index", "--add", "--cacheinfo", &format!("160000,{},sub/mod", commit.trim())]);
        git(dir, &["commit", "-q", "-m", "c"]);
        // Fully valid cache tree (git commit writes it).
        assert!(compare(dir).is_some());
        // Modify, add, delete: git add invalidates the nodes on the way.
        put(dir, "a/b/c.txt", "changed");
        put(dir, "c/d/new/h", "new");
        put(dir, "a/b.txt", "sorts before a/b/");
        git(dir, &["add", "a/b/c.txt", "c/d/new/h", "a/b.txt"]);
        git(dir, &["rm", "-q", "--cached", "b.c/z", "z"]);
        git(dir, &["update-index", "--chmod=-x", "run.sh"]);
        let raw = RawIndex::parse(std::fs::read(dir.join(".git/index")).unwrap()).unwrap().unwrap();
        let root = raw.cache_tree().unwrap().unwrap();
        let names: Vec<_> =
            root.children.iter().map(|c| (String::from_utf8_lossy(&c.name).into_owned(), c.valid.is_some())).collect();
        assert!(root.valid.is_none() && root.children.iter().any(|c| c.name == b"b" && c.valid.is_some()), "{names:?}");
        assert!(compare(dir).is_some());
        // No TREE extension at all: every folder is built from the entries.
        let listed = git(dir, &["ls-files", "-s"]);
        std::fs::remove_file(dir.join(".git/index")).unwrap();
        let mut child = std::process::Command::new("git")
            .args(["update-index", "--index-info"])
            .current_dir(dir)
            .stdin(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(listed.as_bytes()).unwrap();
        assert!(child.wait().unwrap().success());
        let raw = RawIndex::parse(std::fs::read(dir.join(".git/index")).unwrap()).unwrap().unwrap();
        assert!(raw.cache_tree().unwrap().is_none(), "a fresh index has no cache tree");
        assert!(compare(dir).is_some());
        git(dir, &["add", "-A"]);
        assert!(compare(dir).is_some());
        // An empty index.
        git(dir, &["rm", "-r", "-q", "--cached", "."]);
        assert!(compare(dir).is_some());
        // Intent-to-add (extended flag): libgit2 decides.
        git(dir, &["add", "-A"]);
        put(dir, "ita.txt", "x");
        git(dir, &["add", "-N", "ita.txt"]);
        let repo = Repository::open(dir).unwrap();
        assert!(fast_write_tree(&repo, None).unwrap().is_none());
    }

    /// Names libgit2 may refuse to write into a tree send the hook to libgit2.
    #[test]
    fn unusual_paths_are_left_to_libgit2() {
        assert!(plain_path(b"a/b.c/d-e") && plain_path(b".github/x") && plain_path(b".gitignore"));
        for p in [
            &b"a/.GIT/x"[..],
            b".git. /x",
            b"a/.git",
            b"GIT~1/x",
            b"a//b",
            b"a/./b",
            b"../a",
            b"a\\b",
            b"c:d",
            "\u{e9}".as_bytes(),
        ] {
            assert!(!plain_path(p), "{}", String::from_utf8_lossy(p));
        }
    }
}
