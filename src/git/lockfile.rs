//! git's `<name>.lock` files taken by git-hybrid (a ref's, a checkout's `index.lock`), and the notes that make a killed holder's lock
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
//! - [`IndexLock`] holds a checkout's index the way git does (`index.lock`, created exclusively, so
//!   every git command keeps out) until the new index is in place: a git command's lock is waited
//!   for up to [`index_lock_wait`] ([`wait_index_unlocked`]), then refused as
//!   [`HybridError::Busy`] ([`index_busy`], nothing changed). [`IndexLock::commit`] writes the new
//!   index to `hybrid-index.new` beside it and renames it over `index` while `index.lock` is still
//!   held (readers see the old or the new index, never a torn one); dropping the lock releases it.
//!   `index.lock` itself stays empty, which keeps the stale-lock proof exact: before the lock is
//!   hard-linked into place, a note (`names::index_lock_note`) names its device, inode and times,
//!   and the next holder (under the same git-hybrid flock) removes a lock the note proves is a dead
//!   holder's, and nothing else.
//! - [`Note`] (one fixed-size record, opened once per lock and written in place) and [`identity`]
//!   are the note and the file identity it compares, shared by both locks. A ref lock's note is
//!   removed when the lock is released if [`names::ref_lock_note_is_kept`] says the ref is locked
//!   once or twice in its life (a task's branch and tip refs), so notes do not pile up one per
//!   task; a target's note stays and is reused by every landing (no new file per landing).

use std::fs;
use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use git2::{ErrorCode, Oid, Repository};

use crate::error::HybridError;
use crate::names;

/// A ref locked git's way (`<ref>.lock`) for a compare-and-swap.
pub struct RefLock<'r> {
    tx: Option<git2::Transaction<'r>>,
    refname: String,
    common_dir: PathBuf,
    note: Option<Note>,
    /// The ref's value while locked (`None` when it does not exist).
    pub current: Option<Oid>,
}

impl<'r> RefLock<'r> {
    /// Locks `refname` in `repo`, whose common git directory is `common_dir`. The caller holds
    /// the git-hybrid flock that guards this ref (the landing lock for a target, the task lock for
    /// a task branch), which makes the stale-lock repair safe.
    pub fn acquire(repo: &'r Repository, common_dir: &Path, refname: &str) -> Result<RefLock<'r>> {
        let note = Note::open(&names::ref_lock_note(&names::state_dir(common_dir), refname));
        let lock_file = common_dir.join(format!("{refname}.lock"));
        if let Some(note) = &note {
            remove_stale_lock(note, &lock_file);
            note.put("pending");
        }
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
        let mut lock = RefLock {
            tx: None,
            refname: refname.to_string(),
            common_dir: common_dir.to_path_buf(),
            note,
            current: None,
        };
        lock.tx = Some(locked?); // on Err, dropping `lock` marks the note free
        if let (Some(note), Some((dev, ino, s, ns, _))) = (&lock.note, identity(&lock_file)) {
            note.put(&format!("held {dev} {ino} {s} {ns}"));
        }
        lock.current = repo.refname_to_id(refname).ok();
        Ok(lock)
    }

    /// Deletes the ref (locked at [`RefLock::current`]) and releases it.
    ///
    /// A ref that is only loose (not in `packed-refs`, which a scan for its line tells) is
    /// removed here, with its reflog and the folders that empties, as git does; libgit2 parses
    /// all of `packed-refs` into a map to find out the same (a twelfth of a lone landing's
    /// instructions on git/git, and it grows with the number of tags). Otherwise libgit2
    /// removes it from both. In both cases the lock is held until the ref is gone.
    pub fn delete(mut self) -> Result<()> {
        let mut tx = self.tx.take().context("ref lock already used")?;
        let loose = self.common_dir.join(&self.refname);
        if self.current.is_some() && !self.maybe_packed() {
            match fs::remove_file(&loose) {
                Ok(()) => {}
                Err(e) if e.kind() == ErrorKind::NotFound => {}
                Err(e) => return Err(e).with_context(|| format!("cannot delete {}", self.refname)),
            }
            self.remove_reflog();
            remove_empty_parents(&loose, &self.common_dir.join("refs"));
            drop(tx); // libgit2 removes the .lock file, writing nothing
            return Ok(());
        }
        tx.remove(&self.refname)?;
        tx.commit().with_context(|| format!("cannot delete {}", self.refname))?;
        self.remove_reflog(); // libgit2 leaves a packed ref's reflog
        Ok(()) // dropping `self` releases the note
    }

    /// Points the ref at `new` and releases it.
    pub fn commit(mut self, repo: &Repository, new: Oid, message: &str) -> Result<()> {
        let mut tx = self.tx.take().context("ref lock already used")?;
        let sig = crate::git::signature(repo, crate::git::Role::Committer)?;
        tx.set_target(&self.refname, new, Some(&sig), message)?;
        tx.commit().with_context(|| format!("cannot update {}", self.refname))?;
        Ok(()) // dropping `self` releases the note
    }
}

impl RefLock<'_> {
    /// Removes the deleted ref's reflog and the folders that empties, as git does.
    fn remove_reflog(&self) {
        let log = self.common_dir.join("logs").join(&self.refname);
        match fs::remove_file(&log) {
            Ok(()) => remove_empty_parents(&log, &self.common_dir.join("logs").join("refs")),
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => eprintln!("git-hybrid: warning: cannot remove the reflog {}: {e}", log.display()),
        }
    }

    /// Whether `packed-refs` may hold the ref: its line (`<id> <name>`) is found, or the file
    /// cannot be read. Refnames hold no space or newline, so the search cannot match another.
    fn maybe_packed(&self) -> bool {
        match fs::read(self.common_dir.join("packed-refs")) {
            Ok(packed) => {
                let line = format!(" {}\n", self.refname);
                memchr::memmem::find(&packed, line.as_bytes()).is_some()
            }
            Err(e) => e.kind() != ErrorKind::NotFound,
        }
    }
}

/// Removes the folders above `path` that are empty, up to (not including) `stop` and its
/// first level (`refs/heads`, `logs/refs/heads` stay).
fn remove_empty_parents(path: &Path, stop: &Path) {
    let mut dir = path.parent();
    while let Some(d) = dir {
        if d == stop || d.parent() == Some(stop) || !d.starts_with(stop) || fs::remove_dir(d).is_err() {
            return;
        }
        dir = d.parent();
    }
}

impl Drop for RefLock<'_> {
    fn drop(&mut self) {
        if let Some(tx) = self.tx.take() {
            drop(tx); // libgit2 removes the .lock file
        }
        if let Some(note) = self.note.take() {
            if names::ref_lock_note_is_kept(&self.refname) {
                note.put("none");
            } else {
                note.remove();
            }
        }
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

/// A crash note: one fixed-size record at offset 0 of a small file, opened once and rewritten in
/// place with single `pwrite`s, so a killed writer leaves the old record or the new one, never a
/// torn or empty one. Notes are best effort: a note that cannot be opened or written only
/// means a lock a kill leaves behind is not removed automatically (git's own message says how).
pub struct Note {
    file: fs::File,
    path: PathBuf,
}

impl Note {
    /// Opens (creating it and its folder if needed) the note at `path`.
    pub fn open(path: &Path) -> Option<Note> {
        let open = || fs::OpenOptions::new().read(true).write(true).create(true).truncate(false).open(path);
        let file = crate::fsutil::in_made_dir(path.parent()?, open).ok()?;
        Some(Note { file, path: path.to_path_buf() })
    }

    /// The record (empty for a new note).
    pub fn read(&self) -> String {
        use std::os::unix::fs::FileExt;
        let mut buf = [0u8; 80];
        let n = self.file.read_at(&mut buf, 0).unwrap_or(0);
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }

    /// Replaces the record with `text` (at most 79 bytes are kept).
    pub fn put(&self, text: &str) {
        use std::os::unix::fs::FileExt;
        let mut rec = format!("{text:<79}").into_bytes();
        rec.truncate(79);
        rec.push(b'\n');
        let _ = self.file.write_all_at(&rec, 0);
    }

    /// When the record was last written (the note file's modification time).
    fn written_at(&self) -> Option<(i64, i64)> {
        use std::os::unix::fs::MetadataExt;
        let m = self.file.metadata().ok()?;
        Some((m.mtime(), m.mtime_nsec()))
    }

    /// Removes the note's file.
    fn remove(self) {
        let _ = fs::remove_file(&self.path);
    }
}

/// Removes `<ref>.lock` only when the note left by a dead git-hybrid holder (the caller holds
/// the flock that holder had) proves it is that holder's:
/// - "held": same device and inode, not older than noted (libgit2 writes the new value into the
///   lock file just before renaming it, so a holder killed inside its commit leaves a newer mtime);
/// - "pending" (killed between taking the lock and noting it): an empty lock file created after
///   the note. git writes a lock file's content right after creating it, so an empty one is not a
///   live git command's.
fn remove_stale_lock(note: &Note, lock_file: &Path) {
    let recorded = note.read();
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
        (Some("pending"), Some((_, _, s, ns, len))) => len == 0 && note.written_at().is_some_and(|w| (s, ns) >= w),
        _ => false,
    };
    if stale {
        let _ = std::fs::remove_file(lock_file);
    }
    note.put("none");
}

/// How long a landing waits for another git command to release a checkout's `index.lock`
/// before it reports the checkout busy (exit 4): as long as for the landing lock, because a
/// user's own git (a `git status` in an editor, a commit) holds it briefly all the time.
/// `HYBRID_INDEX_LOCK_WAIT_MS` overrides it (tests).
pub fn index_lock_wait() -> Duration {
    std::env::var("HYBRID_INDEX_LOCK_WAIT_MS")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        .map(Duration::from_millis)
        .unwrap_or(Duration::from_secs(60))
}

/// Waits until `<git_dir>/index.lock` is gone (a running git command released it), saying so
/// after a second; at `deadline` reports the checkout at `work_dir` busy ([`index_busy`]).
pub fn wait_index_unlocked(work_dir: &Path, git_dir: &Path, deadline: Instant) -> Result<()> {
    let lock = git_dir.join("index.lock");
    let start = Instant::now();
    let mut said = false;
    while lock.exists() {
        if Instant::now() >= deadline {
            return Err(index_busy(work_dir, git_dir));
        }
        if !said && start.elapsed() > Duration::from_secs(1) {
            eprintln!(
                "git-hybrid: waiting for {} (another git command is using {})",
                lock.display(),
                work_dir.display()
            );
            said = true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

/// The error for a checkout whose `index.lock` stayed held ([`HybridError::Busy`], exit 4).
pub fn index_busy(work_dir: &Path, git_dir: &Path) -> anyhow::Error {
    HybridError::Busy(format!(
        "another git command is using the checkout {} ({} exists, waited {}s); nothing was changed. Retry when it \
         finishes, or remove that file if no git process is running",
        work_dir.display(),
        git_dir.join("index.lock").display(),
        index_lock_wait().as_secs()
    ))
    .into()
}

/// git's `index.lock` on a checkout's index, held by git-hybrid from the check to the rename of
/// the new index (module contract).
pub struct IndexLock {
    lock: PathBuf,
    /// The checkout's `index`.
    pub index: PathBuf,
    /// Where the new index is written before it is renamed over `index`.
    new: PathBuf,
    note: Option<Note>,
}

impl IndexLock {
    /// Locks the index of the checkout at `work_dir` whose private git directory is `git_dir`,
    /// noting the lock in `note` (`names::index_lock_note`); the caller holds the git-hybrid flock
    /// that note belongs to, which makes the stale-lock repair safe. A git command's lock is
    /// waited for up to [`index_lock_wait`], then refused ([`index_busy`]). `Ok(None)` when the
    /// checkout has no index (git's own code handles that case).
    pub fn acquire(work_dir: &Path, git_dir: &Path, note: PathBuf) -> Result<Option<IndexLock>> {
        let index = git_dir.join("index");
        let lock = git_dir.join("index.lock");
        let note = Note::open(&note);
        if let Some(note) = &note {
            remove_stale_index_lock(note, &lock);
        }
        if !index.exists() {
            return Ok(None);
        }
        // A killed run's lock candidate (see below); we hold its flock, so it is dead.
        let candidate = git_dir.join("hybrid-index-lock.tmp");
        let _ = fs::remove_file(&candidate);
        wait_index_unlocked(work_dir, git_dir, Instant::now() + index_lock_wait())?;
        // No window for kill -9: the lock is made as an empty file under another name, its
        // identity is noted, and only then is it hard-linked to `index.lock` (link(2) fails if
        // the name exists, exactly like git's O_EXCL create). A run killed before the link leaves
        // no `index.lock`; one killed after it leaves a lock the note proves is its own.
        fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&candidate)
            .with_context(|| format!("cannot create {}", candidate.display()))?;
        if let (Some(note), Some((dev, ino, s, ns, _))) = (&note, identity(&candidate)) {
            note.put(&format!("held {dev} {ino} {s} {ns}"));
        }
        // A git command may take the lock between our wait and the link: wait for it again.
        let deadline = Instant::now() + index_lock_wait();
        let linked = loop {
            match fs::hard_link(&candidate, &lock) {
                Err(e) if e.kind() == ErrorKind::AlreadyExists && Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20));
                }
                r => break r,
            }
        };
        let _ = fs::remove_file(&candidate);
        match linked {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::AlreadyExists => {
                note.inspect(|n| n.put("none"));
                return Err(index_busy(work_dir, git_dir));
            }
            Err(e) => {
                note.inspect(|n| n.put("none"));
                return Err(e).with_context(|| format!("cannot create {}", lock.display()));
            }
        }
        let new = git_dir.join("hybrid-index.new");
        let _ = fs::remove_file(&new); // a killed run's, under the lock we now hold
        Ok(Some(IndexLock { lock, index, new, note }))
    }

    /// Puts `bytes` in place as the new index (written beside it, then renamed over it while
    /// `index.lock` is held, so readers see the old or the new index, never a torn one);
    /// dropping `self` then releases the lock.
    pub fn commit(&self, bytes: &[u8]) -> Result<()> {
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o666)
            .open(&self.new)
            .with_context(|| format!("cannot create {}", self.new.display()))?;
        f.write_all(bytes).with_context(|| format!("cannot write {}", self.new.display()))?;
        drop(f);
        fs::rename(&self.new, &self.index).with_context(|| format!("cannot replace {}", self.index.display()))
    }
}

impl Drop for IndexLock {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.new);
        let _ = fs::remove_file(&self.lock);
        if let Some(note) = &self.note {
            note.put("none");
        }
    }
}

/// Removes an `index.lock` the note proves was left by a dead git-hybrid landing (the caller
/// holds that landing's flock): same device and inode, and the exact times noted (our lock file
/// is never written, so a git command's lock, even on a reused inode, differs).
fn remove_stale_index_lock(note: &Note, lock: &Path) {
    let recorded = note.read();
    let f: Vec<&str> = recorded.split_whitespace().collect();
    if f.first() != Some(&"held") {
        return;
    }
    let num = |i: usize| f.get(i).and_then(|v| v.parse::<i64>().ok());
    if let Some((dev, ino, s, ns, len)) = identity(lock) {
        if len == 0
            && num(1) == Some(dev as i64)
            && num(2) == Some(ino as i64)
            && num(3) == Some(s)
            && num(4) == Some(ns)
        {
            let _ = fs::remove_file(lock);
        }
    }
    note.put("none");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::git as run;

    /// A loose ref goes with its reflog and the folders that empties; a packed one (also loose,
    /// or only packed) goes from `packed-refs` too. git agrees after each.
    #[test]
    fn delete_removes_loose_and_packed_refs_as_git_does() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path();
        run(dir, &["init", "-q", "-b", "main"]);
        run(dir, &["commit", "-q", "--allow-empty", "-m", "one"]);
        for b in ["hybrid/loose", "hybrid/packed", "hybrid/both"] {
            run(dir, &["branch", b]);
        }
        run(dir, &["pack-refs", "--all", "--no-prune"]); // packed and still loose
        std::fs::remove_file(dir.join(".git/refs/heads/hybrid/packed")).unwrap(); // packed only
        std::fs::write(dir.join(".git/packed-refs"), {
            let p = std::fs::read_to_string(dir.join(".git/packed-refs")).unwrap();
            p.lines().filter(|l| !l.ends_with(" refs/heads/hybrid/loose")).map(|l| format!("{l}\n")).collect::<String>()
        })
        .unwrap(); // loose only
        let repo = Repository::open(dir).unwrap();
        let git_dir = dir.join(".git");
        for b in ["hybrid/loose", "hybrid/packed", "hybrid/both"] {
            let name = format!("refs/heads/{b}");
            let lock = RefLock::acquire(&repo, &git_dir, &name).unwrap();
            assert!(lock.current.is_some(), "{b}");
            lock.delete().unwrap();
            assert!(!git_dir.join(format!("{name}.lock")).exists(), "{b}");
            let shown = std::process::Command::new("git")
                .args(["show-ref", "--verify", "--quiet", &name])
                .current_dir(dir)
                .status()
                .unwrap();
            assert!(!shown.success(), "{b} still exists");
            assert!(!git_dir.join("logs").join(&name).exists(), "{b}'s reflog");
        }
        assert!(!git_dir.join("refs/heads/hybrid").exists());
        assert!(!git_dir.join("logs/refs/heads/hybrid").exists());
        assert!(git_dir.join("refs/heads").is_dir() && git_dir.join("logs/refs/heads/main").is_file());
        run(dir, &["fsck", "--no-dangling"]);
    }
}
