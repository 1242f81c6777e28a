//! Writing a train's new objects as one pack instead of many loose files.
//!
//! Contract: [`new_objects`] lists the objects that some commits introduced and that the object
//! store on disk does not have yet (the commits, and the trees and blobs they do not share with
//! their first parent and the store), reading them through a repository handle that can see
//! them (an in-memory object backend). [`write_pack`] stores them as one pack
//! (`objects/pack/pack-<hash>.pack`, then its version 2 `.idx`: git ignores a pack until its index
//! is there), each written to a temporary file and renamed into place; the objects are on disk
//! when it returns, so refs may then point at them. Object ids are the ones the in-memory store
//! computed when the objects were written (libgit2's pack indexer re-inflated, re-applied and
//! re-hashed every object to learn them again: a fifth of writing a train's pack). No delta search: a tree whose previous version at the same path is earlier
//! in the same pack is stored as a delta against it (`OFS_DELTA`: the bytes before and after
//! the entries it shares with that version copied from it, the others inserted), chains at most
//! [`MAX_DEPTH`] long; everything else is stored whole. In a train, consecutive squashes rewrite
//! the same big trees (the root, a crowded folder) one entry apart: whole, deflating them was
//! most of the pack's cost and size.
//!
//! Why: a loose object is a temporary file created, linked and unlinked, one per object; on some
//! file systems creating a file costs more than everything else a landing does. A train of tasks
//! writes all its objects as one pack, the way `git fast-import` and `git receive-pack` keep what
//! they are given.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use anyhow::{Context, Result};
use flate2::{Compress, Compression, FlushCompress, Status};
use git2::{ObjectType, Odb, Oid, Repository};
use sha1::{Digest, Sha1};

use super::tree::{join, Entries, MODE_SUBMODULE, MODE_TREE};

/// Longest delta chain written (git's own default limit is 50).
pub const MAX_DEPTH: u32 = 16;

/// One object to pack: its id and, for a tree, the previous version at the same path (the
/// tree it replaces in its commit's first parent), a candidate base for a delta.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NewObject {
    pub id: Oid,
    pub previous: Option<Oid>,
}

/// The objects `commits` introduced that `disk` does not have, read through `repo` (which must
/// see them), each after the previous versions it may be a delta of.
pub fn new_objects(repo: &Repository, disk: &Odb, commits: &[Oid]) -> Result<Vec<NewObject>> {
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for &id in commits {
        if !seen.insert(id) || on_disk(disk, id) {
            continue;
        }
        out.push(NewObject { id, previous: None });
        let commit = repo.find_commit(id)?;
        let old = commit.parents().next().map(|p| p.tree_id());
        collect_tree(repo, disk, commit.tree_id(), old, &mut seen, &mut out)?;
    }
    Ok(out)
}

/// Whether `disk` has `id`, without re-reading its pack folder on a miss (most lookups here are
/// misses: the new objects). An object a concurrent repack just moved is then packed once more,
/// which is harmless.
fn on_disk(disk: &Odb, id: Oid) -> bool {
    disk.exists_ext(id, git2::OdbLookupFlags::NO_REFRESH)
}

/// Adds `tree` and what it holds that differs from `old` (the same path's tree in the parent)
/// and is not on disk. Entries are read through [`Entries::load`] (trees the train just merged
/// are remembered there) and joined by name.
fn collect_tree(
    repo: &Repository,
    disk: &Odb,
    tree: Oid,
    old: Option<Oid>,
    seen: &mut HashSet<Oid>,
    out: &mut Vec<NewObject>,
) -> Result<()> {
    if !seen.insert(tree) || on_disk(disk, tree) {
        return Ok(());
    }
    out.push(NewObject { id: tree, previous: old });
    let (new, before) = (Entries::load(repo, Some(tree))?, Entries::load(repo, old)?);
    join([&*new, &*before], |_, [now, then]| -> Result<bool> {
        let Some((id, mode)) = now else { return Ok(true) };
        if then.is_some_and(|(was, _)| was == id) {
            return Ok(true); // unchanged
        }
        let then = then.filter(|t| t.1 == MODE_TREE).map(|t| t.0);
        match mode {
            MODE_TREE => collect_tree(repo, disk, id, then, seen, out)?,
            MODE_SUBMODULE => {} // a submodule's commit is not in this repository
            _ if seen.insert(id) && !on_disk(disk, id) => out.push(NewObject { id, previous: None }),
            _ => {}
        }
        Ok(true)
    })?;
    Ok(())
}

/// Writes `objects` (read through `repo`) as one pack into `disk`'s object store. No-op for none.
pub fn write_pack(repo: &Repository, objects_dir: &Path, objects: &[NewObject]) -> Result<()> {
    if objects.is_empty() {
        return Ok(());
    }
    let odb = repo.odb()?;
    let mut pack = Vec::with_capacity(4096 * objects.len());
    pack.extend_from_slice(b"PACK");
    pack.extend_from_slice(&2u32.to_be_bytes());
    pack.extend_from_slice(&u32::try_from(objects.len()).context("too many objects for one pack")?.to_be_bytes());
    // One compressor for all objects: setting one up zeroes a few hundred KB of tables.
    let mut z = Compress::new(Compression::fast(), true);
    // Trees written so far: where their entry starts, the object, its chain depth.
    let mut written: HashMap<Oid, (usize, git2::OdbObject<'_>, u32)> = HashMap::new();
    // Every entry's id and offset, in pack order.
    let mut entries: Vec<(Oid, usize)> = Vec::with_capacity(objects.len() + 1);
    let mut delta = Vec::new();
    for o in objects {
        let obj = odb.read(o.id).with_context(|| format!("cannot read the new object {}", o.id))?;
        let kind = match obj.kind() {
            ObjectType::Commit => 1u8,
            ObjectType::Tree => 2,
            ObjectType::Blob => 3,
            ObjectType::Tag => 4,
            other => anyhow::bail!("cannot pack an object of type {other:?}"),
        };
        let offset = pack.len();
        entries.push((o.id, offset));
        // The previous version's entry offset and chain depth, when a delta against it pays.
        let base = o
            .previous
            .and_then(|p| written.get(&p))
            .filter(|(_, prev, depth)| *depth < MAX_DEPTH && tree_delta(prev.data(), obj.data(), &mut delta).is_some());
        let depth = match base {
            Some(&(at, _, depth)) => {
                entry_header(&mut pack, OFS_DELTA, delta.len() as u64);
                ofs_delta_offset(&mut pack, offset - at);
                deflate_into(&mut z, &delta, &mut pack)?;
                depth + 1
            }
            None => {
                entry_header(&mut pack, kind, obj.data().len() as u64);
                deflate_into(&mut z, obj.data(), &mut pack)?;
                0
            }
        };
        if obj.kind() == ObjectType::Tree {
            written.insert(o.id, (offset, obj, depth));
        }
    }
    entries.push((Oid::zero(), pack.len())); // the end of the last entry
    let checksum = Sha1::digest(&pack);
    pack.extend_from_slice(&checksum);
    let mut index: Vec<(Oid, u32, usize)> =
        entries.windows(2).map(|w| (w[0].0, crc32fast::hash(&pack[w[0].1..w[1].1]), w[0].1)).collect();
    index.sort_unstable_by_key(|e| e.0);
    let dir = objects_dir.join("pack");
    let name = format!("pack-{checksum:x}");
    put_file(&dir, &format!("{name}.pack"), &pack)?;
    put_file(&dir, &format!("{name}.idx"), &index_v2(&index, &checksum)?)?;
    Ok(())
}

/// A pack index, version 2: fan-out table, sorted ids, CRC-32s, offsets (31-bit, larger ones in
/// the 64-bit table), the pack's checksum and the index's own.
fn index_v2(entries: &[(Oid, u32, usize)], pack_checksum: &[u8]) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(8 + 1024 + entries.len() * 28 + 40);
    out.extend_from_slice(b"\xfftOc");
    out.extend_from_slice(&2u32.to_be_bytes());
    let mut fanout = [0u32; 256];
    for (id, _, _) in entries {
        fanout[usize::from(id.as_bytes()[0])] += 1;
    }
    let mut total = 0u32;
    for n in fanout {
        total += n;
        out.extend_from_slice(&total.to_be_bytes());
    }
    for (id, _, _) in entries {
        out.extend_from_slice(id.as_bytes());
    }
    for (_, crc, _) in entries {
        out.extend_from_slice(&crc.to_be_bytes());
    }
    let mut large = Vec::new();
    for &(_, _, offset) in entries {
        let small = match u32::try_from(offset) {
            Ok(o) if o < 0x8000_0000 => o,
            _ => 0x8000_0000 | u32::try_from(large.len()).context("too many large offsets")?,
        };
        if small & 0x8000_0000 != 0 {
            large.push(offset as u64);
        }
        out.extend_from_slice(&small.to_be_bytes());
    }
    for o in large {
        out.extend_from_slice(&o.to_be_bytes());
    }
    out.extend_from_slice(pack_checksum);
    let own = Sha1::digest(&out);
    out.extend_from_slice(&own);
    Ok(out)
}

/// Writes `name` in `dir` through a temporary file renamed into place, mode 0444 as git keeps
/// pack files; the temporary name starts with `tmp_`, which `git gc` removes when a kill leaves one.
fn put_file(dir: &Path, name: &str, bytes: &[u8]) -> Result<()> {
    let how = crate::fsutil::Atomic { temp_prefix: "tmp_hybrid_", mode: Some(0o444), sync: false };
    crate::fsutil::write_atomic_as(&dir.join(name), bytes, how)
}

/// The pack entry type of a delta against an earlier entry of the same pack.
const OFS_DELTA: u8 = 6;

/// Writes into `out` a git delta that turns tree `base` into tree `target`: every entry of
/// `target` that `base` holds byte for byte is copied from it (neighbours in one copy), the others
/// inserted. None when they share too little for a delta to pay, or either is not a valid tree.
fn tree_delta(base: &[u8], target: &[u8], out: &mut Vec<u8>) -> Option<()> {
    out.clear();
    delta_size(out, base.len());
    delta_size(out, target.len());
    // Both trees list their entries in git's tree order: walk them side by side.
    let (mut copy, mut insert, mut inserted) = ((0usize, 0usize), 0usize, 0usize);
    let (mut i, mut j) = (0usize, 0usize);
    while j < target.len() {
        let tl = tree_entry_len(&target[j..])?;
        let t = &target[j..j + tl];
        let order = match base.get(i..) {
            Some(rest) if !rest.is_empty() => {
                let bl = tree_entry_len(rest)?;
                let b = &base[i..i + bl];
                if b == t {
                    insert_op(out, &target[insert..j]);
                    if copy.1 > 0 && copy.0 + copy.1 == i {
                        copy.1 += bl;
                    } else {
                        copy_op(out, copy.0, copy.1);
                        copy = (i, bl);
                    }
                    (i, j, insert) = (i + bl, j + tl, j + tl);
                    continue;
                }
                let ((bn, bt), (tn, tt)) = (entry_name(b)?, entry_name(t)?);
                super::tree::tree_order(bn, bt, tn, tt)
            }
            _ => std::cmp::Ordering::Greater,
        };
        match order {
            // An entry the target no longer has: skip it in the base.
            std::cmp::Ordering::Less => i += tree_entry_len(&base[i..])?,
            // An entry only the target has, or one that changed: insert it.
            std::cmp::Ordering::Greater | std::cmp::Ordering::Equal => {
                if order == std::cmp::Ordering::Equal {
                    i += tree_entry_len(&base[i..])?;
                }
                copy_op(out, copy.0, copy.1);
                copy = (0, 0);
                inserted += tl;
                j += tl;
            }
        }
    }
    copy_op(out, copy.0, copy.1);
    insert_op(out, &target[insert..]);
    (inserted * 2 <= target.len()).then_some(())
}

/// A tree entry's name and whether it is a folder (mode `40000`).
fn entry_name(entry: &[u8]) -> Option<(&[u8], bool)> {
    let space = entry.iter().position(|&b| b == b' ')?;
    let nul = entry.iter().position(|&b| b == 0)?;
    (space < nul).then(|| (&entry[space + 1..nul], &entry[..space] == b"40000"))
}

/// The length of the tree entry at the start of `bytes` (`<mode> <name>\0<20-byte id>`).
fn tree_entry_len(bytes: &[u8]) -> Option<usize> {
    let nul = bytes.iter().position(|&b| b == 0)?;
    (bytes.len() >= nul + 21).then_some(nul + 21)
}

/// Insert instructions for `bytes` (at most 127 literal bytes each).
fn insert_op(out: &mut Vec<u8>, bytes: &[u8]) {
    for chunk in bytes.chunks(0x7f) {
        out.push(chunk.len() as u8);
        out.extend_from_slice(chunk);
    }
}

/// A delta header size: 7 bits per byte, least significant first.
fn delta_size(out: &mut Vec<u8>, mut n: usize) {
    loop {
        let byte = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

/// Copy instructions for `len` bytes of the base from `offset` (at most 64 KiB each, the size
/// a copy instruction may name without its third size byte being needed).
fn copy_op(out: &mut Vec<u8>, mut offset: usize, mut len: usize) {
    while len > 0 {
        let n = len.min(0x10000);
        let size = if n == 0x10000 { 0 } else { n }; // size 0 means 0x10000
        let mut op = 0x80u8;
        let at = out.len();
        out.push(0);
        for i in 0..4 {
            let b = ((offset >> (8 * i)) & 0xff) as u8;
            if b != 0 {
                op |= 1 << i;
                out.push(b);
            }
        }
        for i in 0..3 {
            let b = ((size >> (8 * i)) & 0xff) as u8;
            if b != 0 {
                op |= 0x10 << i;
                out.push(b);
            }
        }
        out[at] = op;
        offset += n;
        len -= n;
    }
}

/// The distance back to an `OFS_DELTA`'s base, as the pack format encodes it (7 bits per byte,
/// most significant first, each continuation adding one).
fn ofs_delta_offset(out: &mut Vec<u8>, distance: usize) {
    let mut bytes = vec![(distance & 0x7f) as u8];
    let mut rest = distance >> 7;
    while rest > 0 {
        rest -= 1;
        bytes.push(0x80 | (rest & 0x7f) as u8);
        rest >>= 7;
    }
    bytes.reverse();
    out.extend_from_slice(&bytes);
}

/// Objects up to this size are stored in the pack without compression (see [`deflate_into`]).
const STORED_MAX: usize = 4096;

/// Appends `data` zlib-compressed to `out` (one complete stream), reusing `z`. Data up to
/// [`STORED_MAX`] bytes (a train's commits and tree deltas, most of its entries) goes in as one
/// stored block: resetting the compressor clears its 64 KB hash table, which cost more than
/// compressing a 100-byte delta saves.
fn deflate_into(z: &mut Compress, data: &[u8], out: &mut Vec<u8>) -> Result<()> {
    if data.len() <= STORED_MAX {
        super::loose::zlib_stored(data, out);
        return Ok(());
    }
    z.reset();
    let mut input = data;
    loop {
        out.reserve(input.len() / 2 + 64);
        let before = z.total_in();
        let status = z.compress_vec(input, out, FlushCompress::Finish).context("cannot compress an object")?;
        input = &input[(z.total_in() - before) as usize..];
        if status == Status::StreamEnd {
            return Ok(());
        }
    }
}

/// A pack entry's header: type and size, 4 bits of size first, then 7 bits per byte.
fn entry_header(out: &mut Vec<u8>, kind: u8, size: u64) {
    let mut byte = (kind << 4) | (size & 0x0f) as u8;
    let mut rest = size >> 4;
    while rest > 0 {
        out.push(byte | 0x80);
        byte = (rest & 0x7f) as u8;
        rest >>= 7;
    }
    out.push(byte);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Small data is stored, larger data deflated; zlib reads both back to the same bytes.
    #[test]
    fn deflate_into_round_trips_through_zlib() {
        use std::io::Read;
        let mut z = Compress::new(Compression::fast(), true);
        let big: Vec<u8> = (0..20_000u32).flat_map(|i| (i % 251).to_le_bytes()).collect();
        for data in [&b""[..], b"x", &[0xffu8; 4096][..], &big[..]] {
            let mut out = Vec::new();
            deflate_into(&mut z, data, &mut out).unwrap();
            let stored = out.len() == data.len() + 11;
            assert_eq!(stored, data.len() <= STORED_MAX, "{} bytes", data.len());
            let mut back = Vec::new();
            flate2::read::ZlibDecoder::new(&out[..]).read_to_end(&mut back).unwrap();
            assert_eq!(back, data);
        }
    }

    #[test]
    fn entry_header_matches_the_pack_format() {
        let mut v = Vec::new();
        entry_header(&mut v, 3, 10);
        assert_eq!(v, [0x3a]);
        v.clear();
        entry_header(&mut v, 1, 100); // 100 = 0b110_0100: low 4 bits 0100, then 0b110
        assert_eq!(v, [0x80 | 0x14, 0x06]);
    }

    #[test]
    fn a_written_pack_holds_exactly_the_new_objects() {
        let dir = tempfile::tempdir().unwrap();
        let repo = Repository::init(dir.path()).unwrap();
        let sig = git2::Signature::new("T", "t@example.com", &git2::Time::new(1_700_000_000, 0)).unwrap();
        let tree_with = |files: &[(&str, &str)]| {
            let mut idx = repo.index().unwrap();
            idx.clear().unwrap();
            for (p, data) in files {
                crate::test_support::add_file(&repo, &mut idx, p, data);
            }
            idx.write_tree().unwrap()
        };
        let t1 = repo.find_tree(tree_with(&[("a/x", "1"), ("b/y", "2")])).unwrap();
        let c1 = repo.find_commit(repo.commit(None, &sig, &sig, "one", &t1, &[]).unwrap()).unwrap();

        // The second commit goes to memory only; the disk handle must not see it.
        let disk = Repository::open(dir.path()).unwrap();
        let odb = repo.odb().unwrap();
        let mem = odb.add_new_mempack_backend(1000).unwrap();
        let t2 = repo.find_tree(tree_with(&[("a/x", "1"), ("b/y", "changed"), ("c/z", "new")])).unwrap();
        let c2 = repo.commit(None, &sig, &sig, "two", &t2, &[&c1]).unwrap();
        let disk_odb = disk.odb().unwrap();
        assert!(!disk_odb.exists(c2));

        let objects = new_objects(&repo, &disk_odb, &[c2]).unwrap();
        // commit, root tree, b/ and c/ trees, the two new blobs; not a/ nor its blob.
        assert_eq!(objects.len(), 6, "{objects:?}");
        write_pack(&repo, &dir.path().join(".git/objects"), &objects).unwrap();
        mem.reset().unwrap();
        let fresh = Repository::open(dir.path()).unwrap();
        let c = fresh.find_commit(c2).unwrap();
        let blob = c.tree().unwrap().get_path(std::path::Path::new("c/z")).unwrap().to_object(&fresh).unwrap();
        assert_eq!(blob.as_blob().unwrap().content(), b"new");
        let out =
            std::process::Command::new("git").args(["fsck", "--strict"]).current_dir(dir.path()).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        // The pack and its index, read-only for everyone as git writes them, nothing else left.
        use std::os::unix::fs::PermissionsExt;
        let mut files: Vec<(String, u32)> = std::fs::read_dir(dir.path().join(".git/objects/pack"))
            .unwrap()
            .map(|e| e.unwrap())
            .map(|e| (e.file_name().to_string_lossy().into_owned(), e.metadata().unwrap().permissions().mode() & 0o777))
            .collect();
        files.sort();
        assert_eq!(files.len(), 2, "{files:?}");
        assert!(files[0].0.ends_with(".idx") && files[1].0.ends_with(".pack"), "{files:?}");
        assert!(files.iter().all(|f| f.1 == 0o444), "{files:?}");
    }

    #[test]
    fn consecutive_versions_of_a_tree_are_stored_as_deltas() {
        let dir = tempfile::tempdir().unwrap();
        let repo = Repository::init(dir.path()).unwrap();
        let sig = git2::Signature::new("T", "t@example.com", &git2::Time::new(1_700_000_000, 0)).unwrap();
        let files: Vec<(String, String)> = (0..300).map(|i| (format!("d/f{i:03}"), format!("{i}\n"))).collect();
        let mut idx = repo.index().unwrap();
        for (p, d) in &files {
            crate::test_support::add_file(&repo, &mut idx, p, d);
        }
        let t0 = repo.find_tree(idx.write_tree().unwrap()).unwrap();
        let c0 = repo.commit(None, &sig, &sig, "zero", &t0, &[]).unwrap();
        let disk = Repository::open(dir.path()).unwrap();
        let odb = repo.odb().unwrap();
        let mem = odb.add_new_mempack_backend(1000).unwrap();
        // Five commits, each changing one file of the crowded folder `d` and adding a file.
        let mut parent = repo.find_commit(c0).unwrap();
        let mut commits = Vec::new();
        for k in 0..5 {
            crate::test_support::add_file(&repo, &mut idx, &format!("d/f{:03}", 50 * k), "changed\n");
            crate::test_support::add_file(&repo, &mut idx, &format!("d/new{k}"), "new\n");
            let t = repo.find_tree(idx.write_tree().unwrap()).unwrap();
            let c = repo.commit(None, &sig, &sig, &format!("c{k}"), &t, &[&parent]).unwrap();
            parent = repo.find_commit(c).unwrap();
            commits.push(c);
        }
        let disk_odb = disk.odb().unwrap();
        let objects = new_objects(&repo, &disk_odb, &commits).unwrap();
        write_pack(&repo, &dir.path().join(".git/objects"), &objects).unwrap();
        mem.reset().unwrap();
        repo.reference("refs/heads/main", parent.id(), true, "t").unwrap();
        let git = |args: &[&str]| crate::test_support::git(dir.path(), args);
        git(&["fsck", "--strict", "--no-dangling"]);
        let pack = std::fs::read_dir(dir.path().join(".git/objects/pack"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| p.extension().is_some_and(|x| x == "idx"))
            .unwrap();
        let verify = git(&["verify-pack", "-v", pack.to_str().unwrap()]);
        // The `d` trees of commits 2..5 are deltas (depth and base at the end of the line); the
        // one-entry root trees share nothing and stay whole.
        let deltas = verify.lines().filter(|l| l.contains(" tree ") && l.split_whitespace().count() == 7).count();
        assert_eq!(deltas, 4, "{verify}");
        // Every tree reads back whole through a fresh handle.
        let fresh = Repository::open(dir.path()).unwrap();
        let tip = fresh.find_commit(parent.id()).unwrap().tree().unwrap();
        assert_eq!(
            tip.get_path(std::path::Path::new("d")).unwrap().to_object(&fresh).unwrap().as_tree().unwrap().len(),
            305
        );
    }

    #[test]
    fn tree_delta_round_trips() {
        let apply = |base: &[u8], d: &[u8]| -> Vec<u8> {
            let mut i = 0;
            let mut varint = || {
                let (mut n, mut shift) = (0usize, 0);
                loop {
                    let b = d[i];
                    i += 1;
                    n |= ((b & 0x7f) as usize) << shift;
                    shift += 7;
                    if b & 0x80 == 0 {
                        return n;
                    }
                }
            };
            assert_eq!(varint(), base.len());
            let size = varint();
            let mut out = Vec::new();
            while i < d.len() {
                let op = d[i];
                i += 1;
                if op & 0x80 != 0 {
                    let (mut off, mut len) = (0usize, 0usize);
                    for k in 0..4 {
                        if op & (1 << k) != 0 {
                            off |= (d[i] as usize) << (8 * k);
                            i += 1;
                        }
                    }
                    for k in 0..3 {
                        if op & (0x10 << k) != 0 {
                            len |= (d[i] as usize) << (8 * k);
                            i += 1;
                        }
                    }
                    let len = if len == 0 { 0x10000 } else { len };
                    out.extend_from_slice(&base[off..off + len]);
                } else {
                    out.extend_from_slice(&d[i..i + op as usize]);
                    i += op as usize;
                }
            }
            assert_eq!(out.len(), size);
            out
        };
        let entry = |name: &str, fill: u8| -> Vec<u8> {
            let mut e = format!("100644 {name}\0").into_bytes();
            e.extend_from_slice(&[fill; 20]);
            e
        };
        let base: Vec<u8> = (0..5000).flat_map(|i| entry(&format!("f{i:05}"), 1)).collect();
        let mut target = Vec::new();
        for i in 0..5000 {
            target.extend(entry(&format!("f{i:05}"), if i == 7 || i == 4000 { 2 } else { 1 }));
            if i == 2500 {
                target.extend(entry("f02500a", 3));
            }
        }
        let mut d = Vec::new();
        tree_delta(&base, &target, &mut d).unwrap();
        assert_eq!(apply(&base, &d), target);
        assert!(d.len() < 200, "{}", d.len());
        let shorter: Vec<u8> =
            (0..5000).filter(|i| i % 1000 != 0).flat_map(|i| entry(&format!("f{i:05}"), 1)).collect();
        tree_delta(&base, &shorter, &mut d).unwrap();
        assert_eq!(apply(&base, &d), shorter);
        assert!(tree_delta(&entry("a", 1), &entry("a", 2), &mut d).is_none());
        assert!(tree_delta(b"not a tree", &base, &mut d).is_none());
    }
}
