//! Loose objects that git-hybrid writes itself: stored (zlib level 0) instead of deflated.
//!
//! Contract: [`write`] stores `bytes` as a loose object of `kind` in the repository's object
//! folder and returns its id (libgit2's collision-detecting SHA-1, as for every object it
//! writes). The file is `objects/xx/<38 hex digits>`, mode 0444, written under a temporary name
//! and renamed into place, so a reader sees all of it or nothing; like libgit2's default (which
//! this replaces) it is not synced. When an object with that id already exists (loose or
//! packed), libgit2 writes it instead, which only freshens the existing copy's time, as git
//! does, so that a `git gc` running now does not prune it as old and unreachable.
//!
//! While a [`Packing`] guard for a repository handle lives (a train collects its objects in an
//! in-memory backend and writes them as one pack, `land.rs`), [`write`] on that handle, on this
//! thread, goes to libgit2's object database, that is to the in-memory backend.
//!
//! Why: a landing writes the merged versions of the folders its task touched; on git/git that
//! is the 22 KB root tree and the 61 KB `t/` tree, every time. libgit2 deflates loose objects at
//! level 1, which was two thirds of writing them (6% of a lone landing's CPU). Stored, a loose
//! tree is about a third larger (tree entries are mostly binary ids, which do not compress)
//! until `git gc` packs it, and reading it back is a copy instead of an inflate. git reads any
//! zlib stream; `git fsck` checks these objects like any other.

use std::cell::RefCell;

use anyhow::{Context, Result};
use git2::{ObjectType, OdbLookupFlags, Oid, Repository};

use crate::fsutil::{self, Atomic};

thread_local! {
    /// Repository handles (by address) whose writes go to libgit2's object database.
    static PACKING: RefCell<Vec<usize>> = const { RefCell::new(Vec::new()) };
}

/// While alive, [`write`] on `repo` (on this thread) goes to libgit2's object database.
pub struct Packing<'r> {
    repo: &'r Repository,
}

impl<'r> Packing<'r> {
    pub fn new(repo: &'r Repository) -> Packing<'r> {
        PACKING.with(|p| p.borrow_mut().push(address(repo)));
        Packing { repo }
    }
}

impl Drop for Packing<'_> {
    fn drop(&mut self) {
        let me = address(self.repo);
        PACKING.with(|p| {
            let mut p = p.borrow_mut();
            if let Some(i) = p.iter().rposition(|a| *a == me) {
                p.remove(i);
            }
        });
    }
}

fn address(repo: &Repository) -> usize {
    repo as *const Repository as usize
}

/// Stores `bytes` as an object of `kind` (see the module contract); returns its id.
pub fn write(repo: &Repository, kind: ObjectType, bytes: &[u8]) -> Result<Oid> {
    let odb = repo.odb()?;
    if PACKING.with(|p| p.borrow().contains(&address(repo))) {
        return Ok(odb.write(kind, bytes)?);
    }
    let id = Oid::hash_object(kind, bytes)?;
    if odb.exists_ext(id, OdbLookupFlags::NO_REFRESH) {
        return Ok(odb.write(kind, bytes)?); // freshens the existing copy
    }
    let path = object_path(&repo.commondir().join("objects"), id);
    fsutil::write_atomic_as(
        &path,
        &stored(kind, bytes),
        Atomic { temp_prefix: "tmp_obj_", mode: Some(0o444), sync: false },
    )
    .with_context(|| format!("cannot write object {id}"))?;
    Ok(id)
}

/// Where the loose object `id` lives under the object folder `objects`: `xx/<38 hex digits>`.
pub fn object_path(objects: &std::path::Path, id: Oid) -> std::path::PathBuf {
    let hex = id.to_string();
    objects.join(&hex[..2]).join(&hex[2..])
}

/// The loose object file's bytes: `<kind> <size>\0<bytes>` as a zlib stream of stored blocks.
fn stored(kind: ObjectType, bytes: &[u8]) -> Vec<u8> {
    let mut raw = format!("{} {}\0", kind.str(), bytes.len()).into_bytes();
    raw.extend_from_slice(bytes);
    let mut out = Vec::with_capacity(raw.len() + 5 * (raw.len() / STORED_BLOCK + 1) + 6);
    zlib_stored(&raw, &mut out);
    out
}

/// The most bytes one stored deflate block holds (its length field is 16 bits).
const STORED_BLOCK: usize = 65_535;

/// Appends `data` as a zlib stream of stored (uncompressed) blocks: the zlib header (32 KB
/// window, no dictionary, fastest), then per block of at most [`STORED_BLOCK`] bytes its header
/// (final or not), `LEN` and its complement (little-endian) and the bytes, then the Adler-32 of
/// `data` (big-endian). Used for loose objects and for a pack's small entries
/// (`super::pack`); it needs none of a compressor's tables, whose set-up clears 64 KB.
pub(super) fn zlib_stored(data: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(&[0x78, 0x01]);
    let mut blocks = data.chunks(STORED_BLOCK).peekable();
    if blocks.peek().is_none() {
        out.extend_from_slice(&[0x01, 0x00, 0x00, 0xff, 0xff]); // one empty final block
    }
    while let Some(block) = blocks.next() {
        let len = block.len() as u16; // at most STORED_BLOCK
        out.push(u8::from(blocks.peek().is_none()));
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&(!len).to_le_bytes());
        out.extend_from_slice(block);
    }
    out.extend_from_slice(&adler32(data).to_be_bytes());
}

/// zlib's checksum (RFC 1950); the sums are reduced every 5,552 bytes, where they cannot yet
/// overflow.
fn adler32(data: &[u8]) -> u32 {
    const MOD: u32 = 65_521;
    let (mut a, mut b) = (1u32, 0u32);
    for chunk in data.chunks(5552) {
        for &byte in chunk {
            a += u32::from(byte);
            b += a;
        }
        a %= MOD;
        b %= MOD;
    }
    (b << 16) | a
}

/// Whether `path` holds a loose object file git-hybrid would write (tests).
#[cfg(test)]
fn is_stored_object(path: &std::path::Path) -> bool {
    std::fs::read(path).is_ok_and(|b| b.len() > 2 && b[0] == 0x78 && b[1] == 0x01)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::git as run;

    /// Where the loose object `id` of the repository at `dir` lives.
    fn object_file(dir: &std::path::Path, id: Oid) -> std::path::PathBuf {
        object_path(&dir.join(".git/objects"), id)
    }

    /// zlib reads back what `zlib_stored` wrote: no bytes, one block, several blocks.
    #[test]
    fn zlib_reads_stored_streams() {
        use std::io::Read;
        let big: Vec<u8> = (0..70_000u32).map(|i| (i % 251) as u8).collect();
        for data in [&b""[..], b"x", &[0xffu8; STORED_BLOCK][..], &big[..]] {
            let mut out = Vec::new();
            zlib_stored(data, &mut out);
            let blocks = data.len().div_ceil(STORED_BLOCK).max(1);
            assert_eq!(out.len(), 2 + 5 * blocks + data.len() + 4, "{} bytes", data.len());
            let mut back = Vec::new();
            flate2::read::ZlibDecoder::new(&out[..]).read_to_end(&mut back).unwrap();
            assert_eq!(back, data);
        }
        assert_eq!(adler32(b"Wikipedia"), 0x11E6_0398);
        assert_eq!(adler32(&[0xff; 100_000]), {
            let (mut a, mut b) = (1u64, 0u64);
            for _ in 0..100_000 {
                a = (a + 255) % 65_521;
                b = (b + a) % 65_521;
            }
            ((b << 16) | a) as u32
        });
    }

    /// git reads what `write` stored (same id as `git hash-object`, content, `fsck --strict`);
    /// the file is stored, not deflated, mode 0444.
    #[test]
    fn git_reads_stored_objects() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path();
        run(dir, &["init", "-q"]);
        let repo = Repository::open(dir).unwrap();
        let blob = b"hello\n".repeat(20_000); // over one 64 KiB stored block
        let id = write(&repo, ObjectType::Blob, &blob).unwrap();
        std::fs::write(dir.join("f"), &blob).unwrap();
        assert_eq!(run(dir, &["hash-object", "f"]).trim(), id.to_string());
        let hex = id.to_string();
        let file = object_file(dir, id);
        assert!(is_stored_object(&file));
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&file).unwrap().permissions().mode() & 0o777, 0o444);
        assert_eq!(run(dir, &["cat-file", "blob", &hex]).as_bytes(), &blob[..]);
        run(dir, &["fsck", "--strict", "--no-dangling"]);
        // Written again: still one object, same id.
        assert_eq!(write(&repo, ObjectType::Blob, &blob).unwrap(), id);
    }

    /// Under a `Packing` guard the object goes to libgit2's object database (here: an
    /// in-memory backend), not to a loose file; after the guard, loose again.
    #[test]
    fn packing_guard_sends_writes_to_the_odb() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path();
        run(dir, &["init", "-q"]);
        let repo = Repository::open(dir).unwrap();
        let odb = repo.odb().unwrap();
        let _mem = odb.add_new_mempack_backend(1000).unwrap();
        let id = {
            let _packing = Packing::new(&repo);
            write(&repo, ObjectType::Blob, b"in memory\n").unwrap()
        };
        assert!(!object_file(dir, id).exists());
        assert!(odb.exists(id));
        let id2 = write(&repo, ObjectType::Blob, b"on disk\n").unwrap();
        assert!(is_stored_object(&object_file(dir, id2)));
    }
}
