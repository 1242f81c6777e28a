//! Reading git's index file and writing it back with a few entries replaced (the checkout's
//! fast move, `checkout/fast.rs`; the tree of an index, [`super::index_tree`]).
//!
//! Contract: [`RawIndex::parse`] accepts only what it fully understands — index versions 2 and
//! 3 with a trailing SHA-1 — and says why otherwise (the caller falls back to git).
//! [`RawIndex::write_with`] returns the same index with the given paths' stage-0 entries
//! replaced or removed: every other entry is copied byte-for-byte (stat data included), the
//! cache tree (`TREE`) is kept with the changed paths invalidated exactly as git's
//! `cache_tree_invalidate_path` does, `REUC` and any other extension whose content does not
//! depend on the entries is kept, and the optional caches git rebuilds on its own (`UNTR`
//! untracked cache, `FSMN` fsmonitor, `EOIE`/`IEOT` offset tables) are dropped because the move
//! makes them stale. Mandatory extensions (`link` split index, `sdir` sparse index) are refused.
//!
//! Why not libgit2's index: it hashes the 400 KB index of a 5,000-file repository twice with
//! the collision-detecting SHA-1 (about half the CPU of a landing that moves a checkout), once to
//! verify it on read (git does not: its `verify_hdr` checks only for `git fsck`) and once to
//! write it, and copies and path-validates every entry. Here the write uses plain SHA-1, as git's
//! own index writer does (the checksum protects against corruption, not attacks).

use std::ops::Range;

use anyhow::Result;
use git2::Oid;
use sha1::{Digest, Sha1};

/// Entry modes: a regular file, an executable file, a symlink.
pub const MODE_FILE: u32 = 0o100644;
pub const MODE_EXEC: u32 = 0o100755;
pub const MODE_LINK: u32 = 0o120000;
/// Entry flag bits: assume-unchanged (`CE_VALID`, in `flags`).
pub const FLAG_VALID: u16 = 0x8000;
/// Extended flag bits (`flags_extended`, index version 3): intent-to-add, skip-worktree.
pub const FLAG_EXT_INTENT_TO_ADD: u16 = 0x2000;
pub const FLAG_EXT_SKIP_WORKTREE: u16 = 0x4000;

/// One index entry's fields (git's on-disk layout, host integers).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub ctime: (u32, u32),
    pub mtime: (u32, u32),
    pub dev: u32,
    pub ino: u32,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub size: u32,
    pub id: Oid,
    pub flags: u16,
    pub flags_extended: u16,
}

impl Entry {
    pub fn stage(&self) -> u16 {
        (self.flags >> 12) & 3
    }

    /// An entry for `id` (`mode`) with the stat data of the file `m`, no flags.
    pub fn from_stat(m: &std::fs::Metadata, id: Oid, mode: u32) -> Entry {
        use std::os::unix::fs::MetadataExt;
        Entry {
            ctime: (m.ctime() as u32, m.ctime_nsec() as u32),
            mtime: (m.mtime() as u32, m.mtime_nsec() as u32),
            dev: m.dev() as u32,
            ino: m.ino() as u32,
            mode,
            uid: m.uid(),
            gid: m.gid(),
            size: m.size() as u32,
            id,
            flags: 0,
            flags_extended: 0,
        }
    }

    /// git's stat shortcut: the file `m` has this entry's stat data and the entry is not racily
    /// clean (its mtime is before `index_mtime`, the index file's own).
    pub fn stat_matches(&self, m: &std::fs::Metadata, index_mtime: (i64, i64)) -> bool {
        use std::os::unix::fs::MetadataExt;
        self.stat_data_matches(
            &StatData {
                size: m.size(),
                mtime: (m.mtime(), m.mtime_nsec()),
                ctime: (m.ctime(), m.ctime_nsec()),
                ino: m.ino(),
                uid: m.uid(),
                gid: m.gid(),
            },
            index_mtime,
        )
    }

    /// [`Entry::stat_matches`] for stat data however it was read (e.g. `fstatat` on a folder's
    /// descriptor).
    pub fn stat_data_matches(&self, m: &StatData, index_mtime: (i64, i64)) -> bool {
        let racy = (self.mtime.0 as i64, self.mtime.1 as i64) >= index_mtime;
        !racy
            && self.size == m.size as u32
            && self.mtime == (m.mtime.0 as u32, m.mtime.1 as u32)
            && self.ctime == (m.ctime.0 as u32, m.ctime.1 as u32)
            && self.ino == m.ino as u32
            && self.uid == m.uid
            && self.gid == m.gid
    }
}

/// The part of a file's `lstat` an index entry records (git truncates each to 32 bits).
#[derive(Debug, Clone, Copy)]
pub struct StatData {
    pub size: u64,
    /// Seconds and nanoseconds.
    pub mtime: (i64, i64),
    pub ctime: (i64, i64),
    pub ino: u64,
    pub uid: u32,
    pub gid: u32,
}

struct Slot {
    /// The entry's bytes in `data` (padding included).
    bytes: Range<usize>,
    path: Range<usize>,
}

/// A parsed index (see the module contract).
pub struct RawIndex {
    data: Vec<u8>,
    version: u32,
    slots: Vec<Slot>,
    /// Extensions kept as they are: (signature, whole extension bytes).
    keep: Vec<Range<usize>>,
    tree: Option<Range<usize>>,
}

const FIXED: usize = 62;
const EXTENDED: u16 = 0x4000;

/// Tests verify the checksum of every index they read (`HYBRID_VERIFY_INDEX_CHECKSUM`).
fn verify_checksum() -> bool {
    cfg!(test) || std::env::var_os("HYBRID_VERIFY_INDEX_CHECKSUM").is_some()
}

fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

impl RawIndex {
    /// `Ok(Err(reason))` when the index is of a kind this module does not handle.
    pub fn parse(data: Vec<u8>) -> Result<std::result::Result<RawIndex, String>> {
        let n = data.len();
        if n < 12 + 20 || &data[..4] != b"DIRC" {
            return Ok(Err("not an index file".into()));
        }
        let version = be32(&data, 4);
        if version != 2 && version != 3 {
            return Ok(Err(format!("index version {version}")));
        }
        let body = &data[..n - 20];
        if data[n - 20..].iter().all(|b| *b == 0) {
            return Ok(Err("index without checksum (index.skipHash)".into()));
        }
        // Like git, the trailing checksum is not re-verified on every read (git's `verify_hdr`
        // checks it only for `git fsck`, since 2.14); the structure is bounds-checked instead.
        if verify_checksum() && Sha1::digest(body).as_slice() != &data[n - 20..] {
            return Ok(Err("index checksum mismatch".into()));
        }
        let count = be32(&data, 8) as usize;
        let mut slots = Vec::with_capacity(count);
        let mut at = 12;
        for _ in 0..count {
            if at + FIXED > body.len() {
                return Ok(Err("truncated index".into()));
            }
            let flags = be16(&data, at + 60);
            let fixed = if flags & EXTENDED != 0 {
                if version < 3 {
                    return Ok(Err("extended flags in a version 2 index".into()));
                }
                FIXED + 2
            } else {
                FIXED
            };
            let start = at + fixed;
            let Some(len) = body[start.min(body.len())..].iter().position(|b| *b == 0) else {
                return Ok(Err("truncated index".into()));
            };
            let size = (fixed + len + 8) & !7;
            if at + size > body.len() {
                return Ok(Err("truncated index".into()));
            }
            slots.push(Slot { bytes: at..at + size, path: start..start + len });
            at += size;
        }
        let (mut keep, mut tree) = (Vec::new(), None);
        while at < body.len() {
            if at + 8 > body.len() {
                return Ok(Err("truncated index extension".into()));
            }
            let sig = &data[at..at + 4];
            let len = be32(&data, at + 4) as usize;
            let end = at + 8 + len;
            if end > body.len() {
                return Ok(Err("truncated index extension".into()));
            }
            match sig {
                b"TREE" => tree = Some(at + 8..end),
                b"UNTR" | b"FSMN" | b"EOIE" | b"IEOT" => {} // stale after the move; git rebuilds them
                s if s[0].is_ascii_uppercase() => keep.push(at..end),
                s => return Ok(Err(format!("index extension {:?}", String::from_utf8_lossy(s)))),
            }
            at = end;
        }
        Ok(Ok(RawIndex { data, version, slots, keep, tree }))
    }

    fn path(&self, i: usize) -> &[u8] {
        &self.data[self.slots[i].path.clone()]
    }

    fn entry(&self, i: usize) -> Entry {
        let d = &self.data;
        let a = self.slots[i].bytes.start;
        let flags = be16(d, a + 60);
        Entry {
            ctime: (be32(d, a), be32(d, a + 4)),
            mtime: (be32(d, a + 8), be32(d, a + 12)),
            dev: be32(d, a + 16),
            ino: be32(d, a + 20),
            mode: be32(d, a + 24),
            uid: be32(d, a + 28),
            gid: be32(d, a + 32),
            size: be32(d, a + 36),
            id: Oid::from_bytes(&d[a + 40..a + 60]).unwrap_or(Oid::zero()),
            flags,
            flags_extended: if flags & EXTENDED != 0 { be16(d, a + 62) } else { 0 },
        }
    }

    /// How many entries the index holds (all stages).
    pub fn entry_count(&self) -> usize {
        self.slots.len()
    }

    /// The path of entry `i` (entries are in git's index order: by path bytes, then stage).
    pub fn path_at(&self, i: usize) -> &[u8] {
        self.path(i)
    }

    /// The fields of entry `i`.
    pub fn entry_at(&self, i: usize) -> Entry {
        self.entry(i)
    }

    /// The flags of entry `i` (stage, extended-flags bit, name length).
    pub fn flags_at(&self, i: usize) -> u16 {
        be16(&self.data, self.slots[i].bytes.start + 60)
    }

    /// The cache tree (`TREE` extension): `Ok(None)` when the index has none, `Err(())` when it
    /// cannot be parsed (libgit2 refuses such an index).
    #[allow(clippy::result_unit_err)]
    pub fn cache_tree(&self) -> std::result::Result<Option<Node>, ()> {
        let Some(tree) = &self.tree else { return Ok(None) };
        let data = &self.data[tree.clone()];
        let mut at = 0;
        let root = parse_node(data, &mut at).ok_or(())?;
        if at != data.len() {
            return Err(());
        }
        Ok(Some(root))
    }

    /// The first slot whose (path, stage) is not below (`path`, `stage`).
    fn lower_bound(&self, path: &[u8], stage: u16) -> usize {
        self.slots.partition_point(|s| {
            let p = &self.data[s.path.clone()];
            p < path || (p == path && ((be16(&self.data, s.bytes.start + 60) >> 12) & 3) < stage)
        })
    }

    /// The entry at `path` and stage 0.
    pub fn get(&self, path: &str) -> Option<Entry> {
        let i = self.lower_bound(path.as_bytes(), 0);
        (i < self.slots.len() && self.path(i) == path.as_bytes()).then(|| self.entry(i)).filter(|e| e.stage() == 0)
    }

    /// Whether any entry is unmerged (stage 1 to 3).
    pub fn has_conflicts(&self) -> bool {
        (0..self.slots.len()).any(|i| (be16(&self.data, self.slots[i].bytes.start + 60) >> 12) & 3 != 0)
    }

    /// The index file as it was read.
    pub fn bytes(&self) -> &[u8] {
        &self.data
    }

    /// Whether any entry's path starts with `prefix`.
    pub fn has_prefix(&self, prefix: &str) -> bool {
        let i = self.lower_bound(prefix.as_bytes(), 0);
        i < self.slots.len() && self.path(i).starts_with(prefix.as_bytes())
    }

    /// Appends the entries `slots` as they are, in one copy (entries lie back to back in the
    /// file, in order); returns how many.
    fn copy_entries(&self, slots: std::ops::Range<usize>, out: &mut Vec<u8>) -> u32 {
        if slots.is_empty() {
            return 0;
        }
        let (from, to) = (self.slots[slots.start].bytes.start, self.slots[slots.end - 1].bytes.end);
        out.extend_from_slice(&self.data[from..to]);
        slots.len() as u32
    }

    /// The index with the stage-0 entries of `changes` (sorted by path, unique) set (`Some`) or
    /// removed (`None`), checksum included.
    pub fn write_with(&self, changes: &[(String, Option<Entry>)]) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.data.len() + 256 * changes.len());
        out.extend_from_slice(b"DIRC");
        out.extend_from_slice(&self.version.to_be_bytes());
        out.extend_from_slice(&[0; 4]); // count, patched below
        let mut count: u32 = 0;
        let mut next = 0; // next existing slot to copy
        for (path, entry) in changes {
            let at = self.lower_bound(path.as_bytes(), 0);
            count += self.copy_entries(next..at, &mut out);
            next = at;
            if next < self.slots.len() && self.path(next) == path.as_bytes() && self.entry(next).stage() == 0 {
                next += 1; // replaced or removed
            }
            if let Some(e) = entry {
                write_entry(&mut out, path, e);
                count += 1;
            }
        }
        count += self.copy_entries(next..self.slots.len(), &mut out);
        out[8..12].copy_from_slice(&count.to_be_bytes());
        if let Some(tree) = &self.tree {
            if let Some(t) = invalidate_tree(&self.data[tree.clone()], changes.iter().map(|(p, _)| p.as_str())) {
                out.extend_from_slice(b"TREE");
                out.extend_from_slice(&(t.len() as u32).to_be_bytes());
                out.extend_from_slice(&t);
            }
        }
        for k in &self.keep {
            out.extend_from_slice(&self.data[k.clone()]);
        }
        let sum = Sha1::digest(&out);
        out.extend_from_slice(&sum);
        out
    }
}

fn write_entry(out: &mut Vec<u8>, path: &str, e: &Entry) {
    let start = out.len();
    for v in [e.ctime.0, e.ctime.1, e.mtime.0, e.mtime.1, e.dev, e.ino, e.mode, e.uid, e.gid, e.size] {
        out.extend_from_slice(&v.to_be_bytes());
    }
    out.extend_from_slice(e.id.as_bytes());
    // Name length, stage and the assume-unchanged (`CE_VALID`) bit; no extended flags.
    let flags = (path.len().min(0xfff) as u16) | (e.flags & 0xB000);
    out.extend_from_slice(&flags.to_be_bytes());
    out.extend_from_slice(path.as_bytes());
    let size = (FIXED + path.len() + 8) & !7;
    out.resize(start + size, 0);
}

/// A cache-tree node (git's `TREE` extension).
pub struct Node {
    /// The folder's name (empty for the root).
    pub name: Vec<u8>,
    /// Entry count and tree id; `None` when invalid (`-1` entries, no id).
    pub valid: Option<(u64, [u8; 20])>,
    pub children: Vec<Node>,
}

fn parse_node(d: &[u8], at: &mut usize) -> Option<Node> {
    let nul = d[*at..].iter().position(|b| *b == 0)?;
    let name = d[*at..*at + nul].to_vec();
    *at += nul + 1;
    let sp = d[*at..].iter().position(|b| *b == b' ')?;
    let entries: i64 = std::str::from_utf8(&d[*at..*at + sp]).ok()?.parse().ok()?;
    *at += sp + 1;
    let lf = d[*at..].iter().position(|b| *b == b'\n')?;
    let subtrees: usize = std::str::from_utf8(&d[*at..*at + lf]).ok()?.parse().ok()?;
    *at += lf + 1;
    let valid = if entries >= 0 {
        let id: [u8; 20] = d.get(*at..*at + 20)?.try_into().ok()?;
        *at += 20;
        Some((entries as u64, id))
    } else {
        None
    };
    let mut children = Vec::with_capacity(subtrees);
    for _ in 0..subtrees {
        children.push(parse_node(d, at)?);
    }
    Some(Node { name, valid, children })
}

fn write_node(n: &Node, out: &mut Vec<u8>) {
    out.extend_from_slice(&n.name);
    out.push(0);
    match n.valid {
        Some((entries, _)) => out.extend_from_slice(format!("{entries} {}\n", n.children.len()).as_bytes()),
        None => out.extend_from_slice(format!("-1 {}\n", n.children.len()).as_bytes()),
    }
    if let Some((_, id)) = n.valid {
        out.extend_from_slice(&id);
    }
    for c in &n.children {
        write_node(c, out);
    }
}

/// git's `do_invalidate_path`: every node on the way is invalidated; a node named like the
/// path's last component is removed.
fn invalidate(node: &mut Node, path: &[u8]) {
    node.valid = None;
    match path.iter().position(|b| *b == b'/') {
        None => node.children.retain(|c| c.name != path),
        Some(slash) => {
            if let Some(c) = node.children.iter_mut().find(|c| c.name == path[..slash]) {
                invalidate(c, &path[slash + 1..]);
            }
        }
    }
}

/// The `TREE` extension with `paths` invalidated; `None` (drop it, git rebuilds it) when it
/// cannot be parsed.
fn invalidate_tree<'a>(data: &[u8], paths: impl Iterator<Item = &'a str>) -> Option<Vec<u8>> {
    let mut at = 0;
    let mut root = parse_node(data, &mut at)?;
    if at != data.len() {
        return None;
    }
    for p in paths {
        invalidate(&mut root, p.as_bytes());
    }
    let mut out = Vec::with_capacity(data.len());
    write_node(&root, &mut out);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::test_support::git as run;

    /// Rewriting with no change reproduces git's file byte for byte; a change reads back
    /// through git with the right entries and a cache tree git accepts.
    #[test]
    fn round_trip_and_changes_match_git() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path();
        run(dir, &["init", "-q"]);
        for p in ["a.txt", "d/b.txt", "d/e/c.txt", "z.txt"] {
            let f = dir.join(p);
            std::fs::create_dir_all(f.parent().unwrap()).unwrap();
            std::fs::write(&f, p).unwrap();
        }
        run(dir, &["add", "-A"]);
        run(dir, &["commit", "-q", "-m", "c"]);
        run(dir, &["update-index", "--index-version", "3"]);
        let path = dir.join(".git/index");
        let bytes = std::fs::read(&path).unwrap();
        let idx = RawIndex::parse(bytes.clone()).unwrap().unwrap();
        assert_eq!(idx.write_with(&[]), bytes, "identity rewrite");
        assert!(idx.has_prefix("d/e/"));
        assert!(!idx.has_prefix("q/"));
        let b = idx.get("d/b.txt").unwrap();

        // Replace d/b.txt, remove d/e/c.txt, add n/new.txt: like git update-index would.
        std::fs::write(dir.join("d/b.txt"), "changed").unwrap();
        let id = Oid::from_str(run(dir, &["hash-object", "-w", "d/b.txt"]).trim()).unwrap();
        let changed = Entry { id, size: 7, ..b.clone() };
        std::fs::create_dir_all(dir.join("n")).unwrap();
        std::fs::write(dir.join("n/new.txt"), "d/b.txt").unwrap();
        std::fs::remove_file(dir.join("d/e/c.txt")).unwrap();
        let added = Entry { id: b.id, ..b.clone() };
        let out = idx.write_with(&[
            ("d/b.txt".into(), Some(changed)),
            ("d/e/c.txt".into(), None),
            ("n/new.txt".into(), Some(added)),
        ]);
        std::fs::write(&path, out).unwrap();
        let listed = run(dir, &["ls-files", "-s"]);
        let paths: Vec<&str> = listed.lines().map(|l| l.split('\t').nth(1).unwrap()).collect();
        assert_eq!(paths, ["a.txt", "d/b.txt", "n/new.txt", "z.txt"]);
        assert!(listed.contains(&id.to_string()));
        // The invalidated cache tree still gives git's tree for the new index.
        let ours = run(dir, &["write-tree"]);
        run(dir, &["update-index", "--really-refresh"]);
        let _ = std::fs::remove_file(&path);
        run(dir, &["add", "-A"]);
        assert_eq!(ours, run(dir, &["write-tree"]));
    }
}
