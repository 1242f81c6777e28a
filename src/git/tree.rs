//! Tree objects as plain data: a tree's entries read once into Rust memory, and a tree written
//! from entries without libgit2's tree builder.
//!
//! Contract: [`Entries::of`] lists a tree's entries sorted by name bytes (the order every join by
//! name here uses), each name read once through libgit2 and kept in one buffer, so comparing
//! and looking up names costs no call into libgit2. [`write`] stores a tree of the given entries
//! (names unique) in git's canonical form: entries in git's tree order (a folder's name compared
//! as if it ended in `/`), modes written as git writes them (`40000` for a folder); the id is the
//! one `git mktree` would give. Callers check names before they get here (the landing's gate).
//!
//! Why: the three-way tree merge and the tree diff compare a few hundred names per folder level
//! of a real repository; through libgit2 every comparison was two calls and two `strlen`s, and
//! its tree builder copied the whole base tree to change one entry.

use std::cmp::Ordering;
use std::io::Write;
use std::ops::Range;

use anyhow::{Context, Result};
use git2::{ObjectType, Oid, Repository, Tree};

/// A folder's mode in a tree.
pub const MODE_TREE: i32 = 0o040000;

/// One entry: where its name is in [`Entries`]' buffer, its id and mode.
#[derive(Debug, Clone)]
struct Slot {
    name: Range<usize>,
    id: Oid,
    mode: i32,
}

/// A tree's entries, sorted by name bytes (see the module contract).
#[derive(Debug, Default)]
pub struct Entries {
    names: Vec<u8>,
    slots: Vec<Slot>,
}

impl Entries {
    /// The entries of `tree` (none for `None`).
    pub fn of(tree: Option<&Tree<'_>>) -> Entries {
        let Some(tree) = tree else { return Entries::default() };
        let mut e = Entries { names: Vec::with_capacity(tree.len() * 16), slots: Vec::with_capacity(tree.len()) };
        for entry in tree.iter() {
            let start = e.names.len();
            e.names.extend_from_slice(entry.name_bytes());
            e.slots.push(Slot { name: start..e.names.len(), id: entry.id(), mode: entry.filemode() });
        }
        let names = &e.names;
        e.slots.sort_unstable_by(|a, b| names[a.name.clone()].cmp(&names[b.name.clone()]));
        e
    }

    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// The `i`-th entry's name.
    pub fn name(&self, i: usize) -> &[u8] {
        &self.names[self.slots[i].name.clone()]
    }

    /// The `i`-th entry's id and mode.
    pub fn at(&self, i: usize) -> (Oid, i32) {
        (self.slots[i].id, self.slots[i].mode)
    }
}

/// Walks several sorted entry lists together by name: calls `f` once per name present in any of
/// them (in byte order) with that name and each list's entry (`None` where absent). Stops at the
/// first `Err` or `Ok(false)` from `f`; `Ok(true)` when every name was visited.
pub fn join<'a, const N: usize, E>(
    lists: [&'a Entries; N],
    mut f: impl FnMut(&'a [u8], [Option<(Oid, i32)>; N]) -> std::result::Result<bool, E>,
) -> std::result::Result<bool, E> {
    let mut at = [0usize; N];
    loop {
        let mut least: Option<&'a [u8]> = None;
        for k in 0..N {
            if at[k] < lists[k].len() {
                let n = lists[k].name(at[k]);
                if least.is_none_or(|l| n < l) {
                    least = Some(n);
                }
            }
        }
        let Some(name) = least else { return Ok(true) };
        let mut row = [None; N];
        for k in 0..N {
            if at[k] < lists[k].len() && lists[k].name(at[k]) == name {
                row[k] = Some(lists[k].at(at[k]));
                at[k] += 1;
            }
        }
        if !f(name, row)? {
            return Ok(false);
        }
    }
}

/// git's tree order: names compared bytewise, a folder's as if it ended in `/`.
pub fn tree_order(a: &[u8], a_is_tree: bool, b: &[u8], b_is_tree: bool) -> Ordering {
    let n = a.len().min(b.len());
    match a[..n].cmp(&b[..n]) {
        Ordering::Equal => {}
        other => return other,
    }
    let next = |s: &[u8], is_tree: bool| match s.get(n) {
        Some(&c) => c,
        None if is_tree => b'/',
        None => 0,
    };
    next(a, a_is_tree).cmp(&next(b, b_is_tree))
}

/// Writes the tree of `entries` (name, id, mode; names unique) to `repo`'s object database and
/// returns its id (see the module contract).
pub fn write(repo: &Repository, entries: &mut [(&[u8], Oid, i32)]) -> Result<Oid> {
    entries.sort_unstable_by(|a, b| tree_order(a.0, a.2 == MODE_TREE, b.0, b.2 == MODE_TREE));
    let mut bytes = Vec::with_capacity(entries.iter().map(|e| e.0.len() + 28).sum());
    for (name, id, mode) in entries.iter() {
        // Writing into a Vec cannot fail.
        let _ = write!(bytes, "{mode:o} ");
        bytes.extend_from_slice(name);
        bytes.push(0);
        bytes.extend_from_slice(id.as_bytes());
    }
    repo.odb()?.write(ObjectType::Tree, &bytes).context("cannot write a tree")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_trees_are_what_libgit2_writes() {
        let dir = tempfile::tempdir().unwrap();
        let repo = Repository::init(dir.path()).unwrap();
        let blob = repo.blob(b"x\n").unwrap();
        let sub = repo.treebuilder(None).unwrap();
        let mut sub = sub;
        sub.insert("f", blob, 0o100644).unwrap();
        let sub = sub.write().unwrap();
        // Names that sort differently in git's tree order than bytewise: "a-b" < "a/" < "a0".
        let names: [(&str, Oid, i32); 6] = [
            ("a", sub, MODE_TREE),
            ("a-b", blob, 0o100644),
            ("a0", blob, 0o100755),
            ("b.link", blob, 0o120000),
            ("c", sub, MODE_TREE),
            ("c.txt", blob, 0o100644),
        ];
        let mut tb = repo.treebuilder(None).unwrap();
        for (n, id, m) in names {
            tb.insert(n, id, m).unwrap();
        }
        let theirs = tb.write().unwrap();
        let mut ours: Vec<(&[u8], Oid, i32)> = names.iter().rev().map(|(n, id, m)| (n.as_bytes(), *id, *m)).collect();
        assert_eq!(write(&repo, &mut ours).unwrap(), theirs);
        // And read back: sorted by bytes, joined by name.
        let t = repo.find_tree(theirs).unwrap();
        let e = Entries::of(Some(&t));
        let got: Vec<&[u8]> = (0..e.len()).map(|i| e.name(i)).collect();
        assert_eq!(got, [&b"a"[..], b"a-b", b"a0", b"b.link", b"c", b"c.txt"]);
        let empty = Entries::of(None);
        let mut rows = Vec::new();
        join([&e, &empty], |n, [x, y]| {
            rows.push((n.to_vec(), x.is_some(), y.is_some()));
            Ok::<_, ()>(true)
        })
        .unwrap();
        assert_eq!(rows.len(), 6);
        assert!(rows.iter().all(|r| r.1 && !r.2));
    }
}
