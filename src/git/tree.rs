//! Tree objects as plain data: a tree's entries read once into Rust memory, and a tree written
//! from entries without libgit2's tree builder.
//!
//! Contract: [`Entries::load`] lists a tree's entries sorted by name bytes (the order every join
//! by name here uses), parsed once from the raw object into one buffer, so comparing and looking
//! up names costs no call into libgit2. Loaded and written trees are remembered per thread by id
//! (an id names the same entries in every repository; bounded, see [`CACHE_SLOTS`]), so a train
//! that merges the tree it just wrote, or diffs it in the gate, reads and parses nothing again. A
//! malformed tree object is an error, never a panic. [`write`] stores a tree of the given entries
//! (names unique) in git's canonical form: entries in git's tree order (a folder's name compared
//! as if it ended in `/`), modes written as git writes them (`40000` for a folder); the id is the
//! one `git mktree` would give. Callers check names before they get here (the landing's gate).
//!
//! Why: the three-way tree merge and the tree diff compare a few hundred names per folder level
//! of a real repository; through libgit2 every comparison was two calls and two `strlen`s, and
//! its tree builder copied the whole base tree to change one entry. In a train of 30 on git/git,
//! reading and sorting the same root and `t/` trees again for every task was a fifth of the time.

use std::cell::RefCell;
use std::cmp::Ordering;
use std::collections::HashMap;
use std::io::Write;
use std::ops::Range;
use std::rc::Rc;

use anyhow::{bail, Context, Result};
use git2::{ObjectType, Oid, Repository};

/// A folder's mode in a tree.
pub const MODE_TREE: i32 = 0o040000;

/// A submodule's mode in a tree (the entry is a commit of another repository).
pub const MODE_SUBMODULE: i32 = 0o160000;

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
    /// The entries of tree `id` (none for `None`), from the per-thread memory or the object
    /// database.
    pub fn load(repo: &Repository, id: Option<Oid>) -> Result<Rc<Entries>> {
        let Some(id) = id else { return Ok(Rc::new(Entries::default())) };
        if let Some(e) = CACHE.with(|c| c.borrow().0.get(&id).cloned()) {
            return Ok(e);
        }
        let odb = repo.odb()?;
        let obj = odb.read(id).with_context(|| format!("cannot read tree {id}"))?;
        if obj.kind() != ObjectType::Tree {
            bail!("{id} is a {}, not a tree", obj.kind());
        }
        let e = Rc::new(Entries::parse(obj.data()).with_context(|| format!("tree {id} is malformed"))?);
        remember(id, &e);
        Ok(e)
    }

    /// Parses a tree object's body (git's `<octal mode> <name>\0<20-byte id>` entries).
    fn parse(mut data: &[u8]) -> Result<Entries> {
        let mut e = Entries { names: Vec::with_capacity(data.len()), slots: Vec::with_capacity(data.len() / 32) };
        while !data.is_empty() {
            let Some(sp) = data.iter().position(|&b| b == b' ').filter(|&sp| (1..=7).contains(&sp)) else {
                bail!("an entry without a mode")
            };
            let mut mode = 0i32;
            for &d in &data[..sp] {
                if !(b'0'..=b'7').contains(&d) {
                    bail!("a bad mode {:?}", String::from_utf8_lossy(&data[..sp]));
                }
                mode = mode * 8 + i32::from(d - b'0');
            }
            let rest = &data[sp + 1..];
            let Some(nul) = rest.iter().position(|&b| b == 0) else { bail!("an entry without a name end") };
            let Some(raw_id) = rest.get(nul + 1..nul + 21) else { bail!("an entry cut short") };
            let start = e.names.len();
            e.names.extend_from_slice(&rest[..nul]);
            e.slots.push(Slot { name: start..e.names.len(), id: Oid::from_bytes(raw_id)?, mode });
            if mode == MODE_TREE {
                e.place_folder(e.slots.len() - 1);
            }
            data = &rest[nul + 21..];
        }
        if !e.slots.windows(2).all(|w| e.names[w[0].name.clone()] < e.names[w[1].name.clone()]) {
            bail!("its entries are not in git's order, or a name repeats");
        }
        Ok(e)
    }

    /// Moves the folder at `i` (the last entry read so far, in git's tree order) to its place by
    /// name: before the entries just above it that extend its name with a byte below `/` (git
    /// reads the folder `a` as `a/`, so `a-b` and `a.c` come first there). Those entries are
    /// contiguous right above it, so only they are looked at.
    fn place_folder(&mut self, i: usize) {
        let dir = self.slots[i].name.clone();
        let mut j = i;
        while j > 0 && self.names[self.slots[j - 1].name.clone()].starts_with(&self.names[dir.clone()]) {
            j -= 1;
        }
        self.slots[j..=i].rotate_right(1);
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
/// returns its id (see the module contract). Entries already sorted by name (a join's output)
/// are remembered as the tree's [`Entries`] without another sort.
pub fn write(repo: &Repository, entries: &mut [(&[u8], Oid, i32)]) -> Result<Oid> {
    let by_name = entries.windows(2).all(|w| w[0].0 < w[1].0);
    let remembered = by_name.then(|| {
        let mut e = Entries { names: Vec::with_capacity(entries.len() * 16), slots: Vec::with_capacity(entries.len()) };
        for (name, id, mode) in entries.iter() {
            let start = e.names.len();
            e.names.extend_from_slice(name);
            e.slots.push(Slot { name: start..e.names.len(), id: *id, mode: *mode });
        }
        e
    });
    if by_name {
        name_to_tree_order(entries);
    } else {
        entries.sort_by(|a, b| tree_order(a.0, a.2 == MODE_TREE, b.0, b.2 == MODE_TREE));
    }
    let mut bytes = Vec::with_capacity(entries.iter().map(|e| e.0.len() + 28).sum());
    for (name, id, mode) in entries.iter() {
        match mode_bytes(*mode) {
            Some(m) => bytes.extend_from_slice(m),
            // Writing into a Vec cannot fail.
            None => drop(write!(bytes, "{mode:o} ")),
        }
        bytes.extend_from_slice(name);
        bytes.push(0);
        bytes.extend_from_slice(id.as_bytes());
    }
    let id = super::loose::write(repo, ObjectType::Tree, &bytes).context("cannot write a tree")?;
    if let Some(e) = remembered {
        remember(id, &Rc::new(e));
    }
    Ok(id)
}

/// Puts entries sorted by name (unique) in git's tree order without a sort: a folder `F` sorts as
/// `F/`, so it moves past the run of names right after it that start with `F` followed by a byte
/// below `/` (`F.h`, `F-x`). Folders are placed from the last to the first, so each run it moves
/// past is already in tree order. (git/git's root is never in tree order by name, `builtin`
/// precedes `builtin.h`, so every write of it was checked and sorted; with the byte modes below,
/// a train of 30 takes 4.5% less CPU.)
fn name_to_tree_order(entries: &mut [(&[u8], Oid, i32)]) {
    for i in (0..entries.len()).rev() {
        if entries[i].2 != MODE_TREE {
            continue;
        }
        let dir = entries[i].0;
        let run = entries[i + 1..]
            .iter()
            .take_while(|e| e.0.len() > dir.len() && e.0.starts_with(dir) && e.0[dir.len()] < b'/')
            .count();
        entries[i..=i + run].rotate_left(1);
    }
}

/// The mode as a tree entry spells it, with its space, for the modes git writes (`None`: any
/// other, formatted in octal), instead of a formatter call per entry.
fn mode_bytes(mode: i32) -> Option<&'static [u8]> {
    Some(match mode {
        0o100644 => b"100644 ",
        0o100755 => b"100755 ",
        0o120000 => b"120000 ",
        MODE_TREE => b"40000 ",
        MODE_SUBMODULE => b"160000 ",
        _ => return None,
    })
}

/// How many entries (over all trees) the per-thread memory of trees holds before it starts
/// over: about 10 MB, a few hundred versions of git/git's crowded folders.
pub const CACHE_SLOTS: usize = 200_000;

thread_local! {
    static CACHE: RefCell<(HashMap<Oid, Rc<Entries>>, usize)> = RefCell::new((HashMap::new(), 0));
}

/// Forgets every remembered tree (tests that must read from the object database).
#[cfg(test)]
fn forget_all() {
    CACHE.with(|c| *c.borrow_mut() = (HashMap::new(), 0));
}

fn remember(id: Oid, e: &Rc<Entries>) {
    CACHE.with(|c| {
        let (map, slots) = &mut *c.borrow_mut();
        if *slots + e.len() > CACHE_SLOTS {
            map.clear();
            *slots = 0;
        }
        if map.insert(id, Rc::clone(e)).is_none() {
            *slots += e.len();
        }
    });
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
        forget_all(); // read it from the object database
        let e = Entries::load(&repo, Some(theirs)).unwrap();
        let got: Vec<&[u8]> = (0..e.len()).map(|i| e.name(i)).collect();
        assert_eq!(got, [&b"a"[..], b"a-b", b"a0", b"b.link", b"c", b"c.txt"]);
        let empty = Entries::load(&repo, None).unwrap();
        let mut rows = Vec::new();
        join([&*e, &*empty], |n, [x, y]| {
            rows.push((n.to_vec(), x.is_some(), y.is_some()));
            Ok::<_, ()>(true)
        })
        .unwrap();
        assert_eq!(rows.len(), 6);
        assert!(rows.iter().all(|r| r.1 && !r.2));
    }

    #[test]
    fn written_entries_are_remembered_as_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let repo = Repository::init(dir.path()).unwrap();
        let blob = repo.blob(b"x\n").unwrap();
        let sub = write(&repo, &mut [(&b"f"[..], blob, 0o100644)]).unwrap();
        // A join's output (by name), not git's tree order: `a` (a folder) before `a-b`.
        let mut entries: Vec<(&[u8], Oid, i32)> = vec![(b"a", sub, MODE_TREE), (b"a-b", blob, 0o100644)];
        let id = write(&repo, &mut entries).unwrap();
        let remembered = Entries::load(&repo, Some(id)).unwrap();
        forget_all();
        let read = Entries::load(&repo, Some(id)).unwrap();
        for e in [&remembered, &read] {
            let got: Vec<(&[u8], (Oid, i32))> = (0..e.len()).map(|i| (e.name(i), e.at(i))).collect();
            assert_eq!(got, [(&b"a"[..], (sub, MODE_TREE)), (&b"a-b"[..], (blob, 0o100644))]);
        }
    }

    /// Every set of names over a small alphabet, each a folder or not: moving folders into place
    /// gives exactly what sorting by git's tree order gives.
    #[test]
    fn name_order_becomes_tree_order_as_a_sort_would() {
        let alphabet: [&[u8]; 5] = [b"a", b".", b"-", b"0", b"_"];
        let mut names: Vec<Vec<u8>> = Vec::new();
        for x in alphabet {
            names.push(x.to_vec());
            for y in alphabet {
                names.push([x, y].concat());
                for z in alphabet {
                    names.push([x, y, z].concat());
                }
            }
        }
        names.sort();
        let id = Oid::zero();
        for seed in 0u64..400 {
            // A different subset of names and of folders for each seed (an LCG, reproducible).
            let mut r = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            let mut next = || {
                r = r.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                r >> 33
            };
            let mut entries: Vec<(&[u8], Oid, i32)> = names
                .iter()
                .filter_map(|n| {
                    let pick = next();
                    (pick % 3 == 0).then_some((n.as_slice(), id, if pick % 2 == 0 { MODE_TREE } else { 0o100644 }))
                })
                .collect();
            let mut sorted = entries.clone();
            sorted.sort_by(|a, b| tree_order(a.0, a.2 == MODE_TREE, b.0, b.2 == MODE_TREE));
            name_to_tree_order(&mut entries);
            assert_eq!(entries, sorted, "seed {seed}");
        }
    }

    #[test]
    fn malformed_trees_are_errors() {
        let id = [7u8; 20];
        let entry = |mode: &[u8], name: &[u8], id: &[u8]| [mode, b" ", name, b"\0", id].concat();
        assert!(Entries::parse(&entry(b"100644", b"ok", &id)).is_ok());
        // git's tree order (folders read as `name/`) becomes name order.
        let tree_order = [
            entry(b"100644", b"a.b.c", &id),
            entry(b"40000", b"a.b", &id),
            entry(b"40000", b"a", &id),
            entry(b"100644", b"a0", &id),
        ]
        .concat();
        let e = Entries::parse(&tree_order).unwrap();
        let names: Vec<&[u8]> = (0..e.len()).map(|i| e.name(i)).collect();
        assert_eq!(names, [&b"a"[..], b"a.b", b"a.b.c", b"a0"]);
        for bad in [
            entry(b"100644", b"short", &id[..19]),
            entry(b"10x644", b"mode", &id),
            entry(b"", b"nomode", &id),
            entry(b"10064400", b"toolong", &id),
            b"100644 no-nul".to_vec(),
            b"100644".to_vec(),
            [entry(b"100644", b"b", &id), entry(b"100644", b"a", &id)].concat(),
            [entry(b"100644", b"a", &id), entry(b"40000", b"a", &id)].concat(),
        ] {
            assert!(Entries::parse(&bad).is_err(), "{:?}", String::from_utf8_lossy(&bad));
        }
    }
}
