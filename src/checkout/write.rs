//! Writing a fast move (`checkout/fast.rs`) so that a `kill -9` at any step leaves the checkout
//! safe for the user's next commit, and the recovery that finishes what a kill left.
//!
//! Contract. The checkout's index and its branch's ref are two files; no order of two renames
//! makes them move together. So the files and the index are moved in three phases around the
//! ref, using git's assume-unchanged bit (`CE_VALID`: git neither stats nor stages such a path,
//! not with `commit -a`, not with `add -A`) to hide every file that is ahead of the ref:
//! 1. [`FastMove::stage`], before the ref moves: the index keeps the old entries, with
//!    `CE_VALID` on every modified or deleted path; then the modified files are written and the
//!    deleted ones removed. Added files are not written yet (an untracked file would be swept
//!    in by `add -A`). A user's commit now holds exactly the old content plus their change.
//! 2. [`FastMove::switch`], right before the ref moves: the new index (new entries; the added
//!    paths flagged, their files still absent). This rename and the ref's are back to back: a
//!    kill in the instant between them is the one state where the user's next commit would
//!    take in the train's changes (git's own `commit` has the same instant; documented).
//! 3. [`FastMove::finish`], after the ref moved: the added files are written and the final index
//!    (no flags, real stat data) replaces the flagged one; the index lock is released.
//!
//! [`FastMove::undo`] (a failure before the ref moved) puts the old files and the original
//! index back. [`recover`] runs at the next landing on the target (the landing note says a run
//! was killed, and between which commits): on the paths that train changed, every entry with
//! the flag is made true again (the file written from the entry when it is missing or holds the
//! other side's bytes, which are ours), and the flag cleared; a file that is neither side's
//! (the user's edit) is left as it is, flag cleared, so it shows as their change.

use std::collections::BTreeSet;
use std::fs;
use std::io::{ErrorKind, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use anyhow::{Context, Result};
use git2::{Oid, Repository, Tree};

use super::fast::{blob_entry, file_matches, lock_index, FastMove};
use super::Checkout;
use crate::git::index::{Entry, RawIndex, FLAG_VALID, MODE_EXEC, MODE_LINK};
use crate::repo::Project;

impl FastMove {
    /// The checkout this moves.
    pub fn checkout(&self) -> &Checkout {
        &self.co
    }

    /// Whether the whole checkout is surely clean at `head_tree` (`checkout/clean.rs`).
    pub fn clean_anywhere(&self, head_tree: Oid) -> bool {
        super::clean::clean_anywhere(&self.co, &self.index, self.index_mtime, head_tree)
    }

    /// Phase 1 (module contract): flags the modified and deleted paths, then writes and removes
    /// their files. On an error everything is put back.
    pub fn stage(&mut self, repo: &Repository) -> Result<()> {
        let flagged: Vec<(String, Option<Entry>)> = self
            .ops
            .iter()
            .filter(|op| op.old.is_some())
            .filter_map(|op| {
                let mut e = self.index.get(&op.path)?;
                e.flags |= FLAG_VALID;
                Some((op.path.clone(), Some(e)))
            })
            .collect();
        if !flagged.is_empty() {
            self.lock.commit(&self.index.write_with(&flagged))?;
        }
        crate::failpoint!("checkout::index_flagged");
        for op in self.ops.iter().filter(|op| op.old.is_some()) {
            match put(&self.co, repo, &op.path, op.new) {
                Ok(entry) => self.staged.push((op.path.clone(), entry)),
                Err(e) => {
                    self.undo(repo);
                    return Err(e);
                }
            }
        }
        // Folders a removal emptied go too, as git does; deepest first, never the root.
        let mut dirs: BTreeSet<&str> = BTreeSet::new();
        for op in self.ops.iter().filter(|o| o.new.is_none()) {
            let mut p = op.path.as_str();
            while let Some((parent, _)) = p.rsplit_once('/') {
                dirs.insert(parent);
                p = parent;
            }
        }
        for d in dirs.iter().rev() {
            let _ = fs::remove_dir(self.co.dir.join(d)); // fails (and stays) when not empty
        }
        crate::failpoint!("checkout::files_written");
        Ok(())
    }

    /// Phase 2: the new index, added paths flagged (their files are not there yet). The caller
    /// moves the ref right after.
    pub fn switch(&mut self) -> Result<()> {
        let changes = self.changes(|op| {
            op.new.map(|(id, mode)| Entry {
                ctime: (0, 0),
                mtime: (0, 0),
                dev: 0,
                ino: 0,
                mode,
                uid: 0,
                gid: 0,
                size: 0,
                id,
                flags: FLAG_VALID,
                flags_extended: 0,
            })
        });
        self.lock.commit(&self.index.write_with(&changes))
    }

    /// Phase 3, after the ref moved: writes the added files and the final index, and releases
    /// the index lock. An error leaves the flagged index (safe; [`recover`] finishes it).
    pub fn finish(self, repo: &Repository) -> Result<()> {
        if self.ops.iter().all(|op| op.old.is_some()) {
            crate::failpoint!("checkout::finished");
            return Ok(()); // nothing added: the index of phase 2 is the final one
        }
        let mut added = Vec::new();
        for op in self.ops.iter().filter(|op| op.old.is_none()) {
            added.push((op.path.clone(), put(&self.co, repo, &op.path, op.new)?));
        }
        let mut added = added.into_iter();
        let changes = self.changes(|_| added.next().and_then(|(_, e)| e));
        self.lock.commit(&self.index.write_with(&changes))?;
        crate::failpoint!("checkout::finished");
        Ok(())
    }

    /// Every op's path with its staged entry (modified, deleted) or `added(op)` (added), sorted
    /// as [`RawIndex::write_with`] needs (`ops` come from a sorted set).
    fn changes(&self, mut added: impl FnMut(&super::fast::Op) -> Option<Entry>) -> Vec<(String, Option<Entry>)> {
        let mut staged = self.staged.iter();
        self.ops
            .iter()
            .map(|op| match op.old {
                Some(_) => staged.next().cloned().unwrap_or((op.path.clone(), None)),
                None => (op.path.clone(), added(op)),
            })
            .collect()
    }

    /// Puts back the files [`FastMove::stage`] wrote and the original index (before the ref
    /// moved; best effort, a failure is reported and [`recover`] finishes later).
    pub fn undo(&mut self, repo: &Repository) {
        let written: Vec<&super::fast::Op> =
            self.ops.iter().filter(|op| op.old.is_some()).take(self.staged.len()).collect();
        for op in written.into_iter().rev() {
            if let Err(e) = put(&self.co, repo, &op.path, op.old) {
                eprintln!("git-hybrid: warning: could not restore {}: {e:#}", self.co.dir.join(&op.path).display());
            }
        }
        self.staged.clear();
        if let Err(e) = self.lock.commit(self.index.bytes()) {
            eprintln!("git-hybrid: warning: could not restore the index of {}: {e:#}", self.co.dir.display());
        }
    }
}

/// Finishes, in `co`, a move between the trees `(start, end)` that a killed landing left (module
/// contract); `changed` are the paths that move changes, `target` the branch's ref.
pub fn recover(
    project: &Project,
    co: &Checkout,
    target: &str,
    trees: (&Tree, &Tree),
    changed: &BTreeSet<String>,
) -> Result<()> {
    let repo = &project.repo;
    let Some(lock) = lock_index(project, co, target)? else { return Ok(()) };
    let data = fs::read(&lock.index).with_context(|| format!("cannot read {}", lock.index.display()))?;
    let Ok(index) = RawIndex::parse(data)? else { return Ok(()) }; // not ours to touch (read-tree fallback)
    let (start, end) = trees;
    let mut changes: Vec<(String, Option<Entry>)> = Vec::new();
    for path in changed {
        let Some(entry) = index.get(path) else { continue };
        if entry.flags & FLAG_VALID == 0 || entry.stage() != 0 {
            continue;
        }
        let want = Some((entry.id, entry.mode));
        let (file, folder) = match fs::symlink_metadata(co.dir.join(path)) {
            Ok(m) if m.is_dir() => (None, true),
            Ok(m) => (Some(m), false),
            Err(e) if e.kind() == ErrorKind::NotFound => (None, false),
            Err(e) => return Err(e).with_context(|| format!("cannot inspect {}", co.dir.join(path).display())),
        };
        let sides = [blob_entry(start, path).flatten(), blob_entry(end, path).flatten()];
        let is = |w: Option<(Oid, u32)>| file_matches(co, path, file.as_ref(), w, None, (i64::MAX, 0));
        let fresh = if let Some(m) = file.as_ref().filter(|_| is(want).unwrap_or(false)) {
            // Already right: just its stat data.
            Some(Entry::from_stat(m, entry.id, entry.mode))
        } else if (file.is_none() && !folder)
            || sides.iter().any(|s| *s != want && s.is_some() && is(*s).unwrap_or(false))
        {
            // Missing, or the other side's bytes (ours): the entry's content.
            put(co, repo, path, want)?
        } else {
            // The user's own bytes (or a folder they made there): keep them, let git see them.
            let mut e = entry.clone();
            e.flags &= !FLAG_VALID;
            e.mtime = (0, 0); // forces git to look at the content
            Some(e)
        };
        changes.push((path.clone(), fresh));
    }
    if !changes.is_empty() {
        lock.commit(&index.write_with(&changes))?;
    }
    Ok(())
}

/// Writes (or removes) one path of the checkout; returns its new index entry.
pub(super) fn put(co: &Checkout, repo: &Repository, rel: &str, entry: Option<(Oid, u32)>) -> Result<Option<Entry>> {
    let dst = co.dir.join(rel);
    let Some((id, mode)) = entry else {
        match fs::remove_file(&dst) {
            Ok(()) => return Ok(None),
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e).with_context(|| format!("cannot remove {}", dst.display())),
        }
    };
    let blob = repo.find_blob(id)?;
    if let Some(parent) = dst.parent() {
        fs::create_dir_all(parent).with_context(|| format!("cannot create {}", parent.display()))?;
    }
    let tmp = co.git_dir.join(format!("hybrid-checkout-{}.tmp", std::process::id()));
    let _ = fs::remove_file(&tmp);
    write_file(&tmp, blob.content(), mode)?;
    if let Err(e) = fs::rename(&tmp, &dst) {
        let _ = fs::remove_file(&tmp);
        if e.raw_os_error() != Some(libc::EXDEV) {
            return Err(e).with_context(|| format!("cannot write {}", dst.display()));
        }
        // The git directory is on another file system: write in place, as git does.
        match fs::remove_file(&dst) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| format!("cannot replace {}", dst.display())),
        }
        write_file(&dst, blob.content(), mode)?;
    }
    let m = fs::symlink_metadata(&dst).with_context(|| format!("cannot inspect {}", dst.display()))?;
    Ok(Some(Entry::from_stat(&m, id, mode)))
}

/// Creates `path` with `content`: a symlink for links, else a file with git's permissions
/// (0777 or 0666 minus the umask).
fn write_file(path: &Path, content: &[u8], mode: u32) -> Result<()> {
    if mode == MODE_LINK {
        use std::os::unix::ffi::OsStrExt;
        std::os::unix::fs::symlink(std::ffi::OsStr::from_bytes(content), path)
            .with_context(|| format!("cannot create the symlink {}", path.display()))?;
        return Ok(());
    }
    let perm = if mode == MODE_EXEC { 0o777 } else { 0o666 };
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(perm)
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    f.write_all(content).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}
