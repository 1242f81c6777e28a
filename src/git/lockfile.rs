//! git's `<name>.lock` files taken by git-hybrid, and the notes that make a killed holder's lock
//! removable.
//!
//! Contract:
//! - [`RefLock`] holds a ref the way git does (`<ref>.lock`, through a libgit2 transaction), so no
//!   other git process can move it meanwhile, and compares-and-swaps it ([`RefLock::commit`],
//!   [`RefLock::delete`]). A held lock is waited for up to 3 s, then refused as
//!   [`HybridError::Busy`] (nothing changed).
//! - Because a `kill -9` would leave that lock file behind, the holder writes a note
//!   (`names::ref_lock_note`) naming the lock file's identity; the next holder removes a lock file
//!   the note proves was left by a dead git-hybrid process, and nothing else. That proof is only
//!   sound when the caller holds the git-hybrid flock that guards the ref (the landing lock for a
//!   target, the task lock for a task branch), so no live git-hybrid process can hold it.
//! - [`put_note`] and [`identity`] are the note record and the file identity it compares, shared
//!   with the checkout's `index.lock` (`checkout/fast.rs`).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use git2::{ErrorCode, Oid, Repository};

use crate::error::HybridError;

/// A ref locked git's way (`<ref>.lock`) for a compare-and-swap.
pub struct RefLock<'r> {
    tx: Option<git2::Transaction<'r>>,
    refname: String,
    note: PathBuf,
    /// The ref's value while locked (`None` when it does not exist).
    pub current: Option<Oid>,
}

impl<'r> RefLock<'r> {
    /// Locks `refname` in `repo`, whose common git directory is `common_dir`. The caller holds
    /// the git-hybrid flock that guards this ref (the landing lock for a target, the task lock for
    /// a task branch), which makes the stale-lock repair safe.
    pub fn acquire(repo: &'r Repository, common_dir: &Path, refname: &str) -> Result<RefLock<'r>> {
        let note = crate::names::ref_lock_note(&crate::names::state_dir(common_dir), refname);
        let lock_file = common_dir.join(format!("{refname}.lock"));
        remove_stale_lock(&note, &lock_file);
        write_pending_note(&note);
        let locked = (|| -> Result<git2::Transaction<'r>> {
            let start = Instant::now();
            loop {
                let mut tx = repo.transaction()?;
                match tx.lock_ref(refname) {
                    Ok(()) => return Ok(tx),
                    Err(e) if e.code() == ErrorCode::Locked && start.elapsed() < Duration::from_secs(3) => {
                        std::thread::sleep(Duration::from_millis(10));
                    }
                    Err(e) if e.code() == ErrorCode::Locked => {
                        return Err(HybridError::Busy(format!(
                            "{refname} is locked by another git process ({} exists); nothing was changed. Retry, \
                             or remove that file if no git process is running",
                            lock_file.display()
                        ))
                        .into())
                    }
                    Err(e) => return Err(e).with_context(|| format!("cannot lock {refname}")),
                }
            }
        })();
        let tx = match locked {
            Ok(tx) => tx,
            Err(e) => {
                clear_note(&note);
                return Err(e);
            }
        };
        write_note(&note, &lock_file);
        let current = repo.refname_to_id(refname).ok();
        Ok(RefLock { tx: Some(tx), refname: refname.to_string(), note, current })
    }

    /// Deletes the ref (locked at [`RefLock::current`]) and releases it.
    pub fn delete(mut self) -> Result<()> {
        let mut tx = self.tx.take().context("ref lock already used")?;
        tx.remove(&self.refname)?;
        tx.commit().with_context(|| format!("cannot delete {}", self.refname))?;
        clear_note(&self.note);
        Ok(())
    }

    /// Points the ref at `new` and releases it.
    pub fn commit(mut self, repo: &Repository, new: Oid, message: &str) -> Result<()> {
        let mut tx = self.tx.take().context("ref lock already used")?;
        let sig = crate::git::signature(repo, crate::git::Role::Committer)?;
        tx.set_target(&self.refname, new, Some(&sig), message)?;
        tx.commit().with_context(|| format!("cannot update {}", self.refname))?;
        clear_note(&self.note);
        Ok(())
    }
}

impl Drop for RefLock<'_> {
    fn drop(&mut self) {
        if let Some(tx) = self.tx.take() {
            drop(tx); // libgit2 removes the .lock file
        }
        clear_note(&self.note);
    }
}

/// A file's identity as a note records it: device, inode, mtime (seconds, nanoseconds), length.
#[cfg(unix)]
pub fn identity(path: &Path) -> Option<(u64, u64, i64, i64, u64)> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::symlink_metadata(path).ok()?;
    Some((m.dev(), m.ino(), m.mtime(), m.mtime_nsec(), m.len()))
}

#[cfg(not(unix))]
pub fn identity(_path: &Path) -> Option<(u64, u64, i64, i64, u64)> {
    None
}

/// Writes a note as one fixed-size `pwrite` at offset 0 of a file that is never deleted: a
/// killed writer leaves the old record or the new one, never a torn or empty one, and no file
/// is created per landing (file creation dominates on busy file systems).
#[cfg(unix)]
pub fn put_note(note: &Path, text: &str) {
    use std::os::unix::fs::FileExt;
    if let Some(dir) = note.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    let mut rec = format!("{text:<79}").into_bytes();
    rec.truncate(79);
    rec.push(b'\n');
    if let Ok(f) = std::fs::OpenOptions::new().write(true).create(true).truncate(false).open(note) {
        let _ = f.write_all_at(&rec, 0);
    }
}

#[cfg(not(unix))]
pub fn put_note(note: &Path, text: &str) {
    let _ = std::fs::write(note, text);
}

/// Marks a note as holding nothing.
fn clear_note(note: &Path) {
    if note.exists() {
        put_note(note, "none");
    }
}

/// Before locking: "pending" (the note file's mtime, set by this write, says when).
fn write_pending_note(note: &Path) {
    put_note(note, "pending");
}

/// After locking: "held <dev> <ino> <secs> <nanos>" of the lock file.
fn write_note(note: &Path, lock_file: &Path) {
    if let Some((dev, ino, s, ns, _)) = identity(lock_file) {
        put_note(note, &format!("held {dev} {ino} {s} {ns}"));
    }
}

/// Removes `<ref>.lock` only when the note left by a dead git-hybrid holder (the caller holds
/// the flock that holder had) proves it is that holder's:
/// - "held": same device and inode, not older than noted (libgit2 writes the new value into the
///   lock file just before renaming it, so a holder killed inside its commit leaves a newer mtime);
/// - "pending" (killed between taking the lock and noting it): an empty lock file created after
///   the note. git writes a lock file's content right after creating it, so an empty one is not a
///   live git command's.
fn remove_stale_lock(note: &Path, lock_file: &Path) {
    let Ok(recorded) = std::fs::read_to_string(note) else { return };
    let fields: Vec<&str> = recorded.split_whitespace().collect();
    if fields.first().is_none_or(|f| *f == "none") {
        return;
    }
    let num = |i: usize| fields.get(i).and_then(|v| v.parse::<i64>().ok());
    let stale = match (fields.first().copied(), identity(lock_file)) {
        (Some("held"), Some((dev, ino, s, ns, _))) => {
            num(1) == Some(dev as i64) && num(2) == Some(ino as i64) && Some((s, ns)) >= num(3).zip(num(4))
        }
        // Compare file times with file times: the kernel's file clock is coarser than SystemTime.
        (Some("pending"), Some((_, _, s, ns, len))) => {
            len == 0 && identity(note).is_some_and(|(_, _, ns_s, ns_ns, _)| (s, ns) >= (ns_s, ns_ns))
        }
        _ => false,
    };
    if stale {
        let _ = std::fs::remove_file(lock_file);
    }
    clear_note(note);
}
