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
use std::io::Write;

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
    let hex = id.to_string();
    let path = repo.commondir().join("objects").join(&hex[..2]).join(&hex[2..]);
    fsutil::write_atomic_as(
        &path,
        &stored(kind, bytes)?,
        Atomic { temp_prefix: "tmp_obj_", mode: Some(0o444), sync: false },
    )
    .with_context(|| format!("cannot write object {id}"))?;
    Ok(id)
}

/// The loose object file's bytes: `<kind> <size>\0<bytes>` as a zlib stream of stored blocks.
fn stored(kind: ObjectType, bytes: &[u8]) -> Result<Vec<u8>> {
    let header = format!("{} {}\0", kind.str(), bytes.len());
    let total = header.len() + bytes.len();
    // Five bytes per 64 KiB block, the zlib header and the Adler-32 sum.
    let mut z = flate2::write::ZlibEncoder::new(
        Vec::with_capacity(total + 5 * (total / 65_535 + 1) + 6),
        flate2::Compression::none(),
    );
    z.write_all(header.as_bytes())?;
    z.write_all(bytes)?;
    Ok(z.finish()?)
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
        let file = dir.join(".git/objects").join(&hex[..2]).join(&hex[2..]);
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
        let hex = id.to_string();
        assert!(!dir.join(".git/objects").join(&hex[..2]).join(&hex[2..]).exists());
        assert!(odb.exists(id));
        let id2 = write(&repo, ObjectType::Blob, b"on disk\n").unwrap();
        let hex2 = id2.to_string();
        assert!(is_stored_object(&dir.join(".git/objects").join(&hex2[..2]).join(&hex2[2..])));
    }
}
