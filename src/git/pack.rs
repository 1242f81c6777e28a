//! Writing a train's new objects as one pack instead of many loose files.
//!
//! Contract: [`new_objects`] lists the objects that some commits introduced and that the object
//! store on disk does not have yet (the commits, and the trees and blobs they do not share with
//! their first parent and the store), reading them through a repository handle that can see
//! them (an in-memory object backend). [`write_pack`] stores them as one pack
//! (`objects/pack/pack-<hash>.pack` and `.idx`) through libgit2's pack indexer, which re-hashes
//! every object and writes the index; the objects are on disk when it returns, so refs may then
//! point at them. Objects are stored whole (no deltas): a landing's new objects are a few small
//! trees and commits per task, and searching for deltas would cost more than it saves.
//!
//! Why: a loose object is a temporary file created, linked and unlinked, one per object; on some
//! file systems creating a file costs more than everything else a landing does. A train of tasks
//! writes all its objects as one pack, the way `git fast-import` and `git receive-pack` keep what
//! they are given.

use std::collections::HashSet;
use std::io::Write;

use anyhow::{Context, Result};
use flate2::{Compress, Compression, FlushCompress, Status};
use git2::{ObjectType, Odb, Oid, Repository};
use sha1::{Digest, Sha1};

/// The objects `commits` introduced that `disk` does not have, read through `repo` (which must
/// see them), in an order the indexer accepts (any: no deltas).
pub fn new_objects(repo: &Repository, disk: &Odb, commits: &[Oid]) -> Result<Vec<Oid>> {
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for &id in commits {
        if !seen.insert(id) || disk.exists(id) {
            continue;
        }
        out.push(id);
        let commit = repo.find_commit(id)?;
        let old = commit.parents().next().map(|p| p.tree_id());
        collect_tree(repo, disk, commit.tree_id(), old, &mut seen, &mut out)?;
    }
    Ok(out)
}

/// Adds `tree` and what it holds that differs from `old` (the same path's tree in the parent)
/// and is not on disk.
fn collect_tree(
    repo: &Repository,
    disk: &Odb,
    tree: Oid,
    old: Option<Oid>,
    seen: &mut HashSet<Oid>,
    out: &mut Vec<Oid>,
) -> Result<()> {
    if !seen.insert(tree) || disk.exists(tree) {
        return Ok(());
    }
    out.push(tree);
    let t = repo.find_tree(tree)?;
    let old_tree = old.and_then(|o| repo.find_tree(o).ok());
    for e in t.iter() {
        let before = old_tree.as_ref().and_then(|o| o.get_name_bytes(e.name_bytes()).map(|pe| pe.id()));
        if before == Some(e.id()) {
            continue;
        }
        match e.kind() {
            Some(ObjectType::Tree) => collect_tree(repo, disk, e.id(), before, seen, out)?,
            Some(ObjectType::Blob) if seen.insert(e.id()) && !disk.exists(e.id()) => out.push(e.id()),
            _ => {} // a submodule's commit is not in this repository
        }
    }
    Ok(())
}

/// Writes `objects` (read through `repo`) as one pack into `disk`'s object store. No-op for none.
pub fn write_pack(repo: &Repository, disk: &Odb, objects: &[Oid]) -> Result<()> {
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
    for &id in objects {
        let obj = odb.read(id).with_context(|| format!("cannot read the new object {id}"))?;
        let kind = match obj.kind() {
            ObjectType::Commit => 1u8,
            ObjectType::Tree => 2,
            ObjectType::Blob => 3,
            ObjectType::Tag => 4,
            other => anyhow::bail!("cannot pack an object of type {other:?}"),
        };
        entry_header(&mut pack, kind, obj.data().len() as u64);
        deflate_into(&mut z, obj.data(), &mut pack)?;
    }
    let checksum = Sha1::digest(&pack);
    pack.extend_from_slice(&checksum);
    let mut w = disk.packwriter().context("cannot start writing a pack")?;
    w.write_all(&pack).context("cannot write a pack")?;
    w.commit().context("cannot store the pack")?;
    Ok(())
}

/// Appends `data` zlib-compressed to `out` (one complete stream), reusing `z`.
fn deflate_into(z: &mut Compress, data: &[u8], out: &mut Vec<u8>) -> Result<()> {
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
        write_pack(&repo, &disk_odb, &objects).unwrap();
        mem.reset().unwrap();
        let fresh = Repository::open(dir.path()).unwrap();
        let c = fresh.find_commit(c2).unwrap();
        let blob = c.tree().unwrap().get_path(std::path::Path::new("c/z")).unwrap().to_object(&fresh).unwrap();
        assert_eq!(blob.as_blob().unwrap().content(), b"new");
        let out =
            std::process::Command::new("git").args(["fsck", "--strict"]).current_dir(dir.path()).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
}
