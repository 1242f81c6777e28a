//! Moving a branch that may be checked out, without ever leaving a checkout behind its ref.
//!
//! Contract:
//! - [`checkouts_of`] finds every checkout (the main one and linked worktrees) whose `HEAD` is
//!   the given branch, reading only the small `HEAD`/`gitdir` files.
//! - [`blocking_paths`] (`checkout/guard.rs`) says what in a checkout a move would overwrite or
//!   delete: local changes on the paths it changes (or, for a git-hybrid-owned task worktree,
//!   anywhere), untracked and ignored content and nested repositories where it writes or where
//!   a folder becomes a file, and unresolved conflicts. A path the move changes is fine only
//!   when it is clean (index and file equal the old commit) or already moved (index equals the
//!   new commit and the file equals the index: a move a killed run started, or a change the user
//!   staged that is byte-for-byte the incoming one, which git keeps too).
//! - [`in_progress`] (`checkout/ops.rs`) refuses to move a branch that some checkout is
//!   rebasing, merging, cherry-picking, reverting, bisecting or applying patches to.
//! - [`read_tree`] moves a checkout's index and files from one commit to another with
//!   `git read-tree -m -u <old> <new>`: exactly git's two-tree checkout, which carries local
//!   changes on other paths along, never deletes untracked files, and refuses as a whole (writing
//!   nothing) when a change would be overwritten. It treats ignored files as expendable, which is
//!   why [`blocking_paths`] runs first. A held `index.lock` is waited for ([`index_lock_wait`]).
//! - The branch is held the way git does (`<ref>.lock`, [`RefLock`] in the git layer) while its
//!   checkouts move, and compared-and-swapped by [`Moving::move_ref`].
//!
//! The order is always: lock the ref, check, move the checkouts, move the ref. A fast move
//! ([`stage_moves`], [`Moving`]) writes the checkout in three phases around the ref so that a
//! `kill -9` at any step, followed by the user removing the lock files git names and committing,
//! gives a commit holding only the user's change (`checkout/write.rs`; the one exception is the
//! instant between the index rename and the ref rename), and [`recover_interrupted`] finishes
//! the checkout at the next landing. A `git read-tree` move (the fallback) moves index and files
//! before the ref: a kill after it leaves each checkout "already moved", which the next run
//! recognises and finishes, but a user's commit in between would take in the train's changes
//! (documented in the README). The opposite order would leave a ref ahead of a stale index, and
//! the user's next `git commit -a` would silently revert the change.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use git2::{Oid, Repository, Tree};

use crate::error::HybridError;
use crate::git::lockfile::RefLock;
use crate::git::worktrees;
use crate::repo::Project;

mod attributes;
mod clean;
mod fast;
mod guard;
mod ops;
mod write;
pub use fast::DISABLE_ENV as NO_FAST_CHECKOUT_ENV;
pub use guard::is_below;
pub use ops::in_progress;

/// One checkout of a branch.
#[derive(Debug, Clone)]
pub struct Checkout {
    /// Its working directory.
    pub dir: PathBuf,
    /// Its private git directory (holds `index` and `index.lock`).
    pub git_dir: PathBuf,
}

/// Every checkout whose `HEAD` is the branch `refname` (`refs/heads/...`).
pub fn checkouts_of(project: &Project, refname: &str) -> Result<Vec<Checkout>> {
    let mut out = Vec::new();
    if worktrees::head_ref(&project.common_dir).as_deref() == Some(refname) {
        out.push(Checkout { dir: project.root.clone(), git_dir: project.common_dir.clone() });
    }
    let linked = worktrees::linked(&project.common_dir)
        .with_context(|| format!("cannot read {}", project.common_dir.join("worktrees").display()))?;
    for entry in linked {
        if worktrees::head_ref(&entry.admin).as_deref() != Some(refname) {
            continue;
        }
        let Some(dir) = entry.dir() else { continue };
        if dir.exists() {
            out.push(Checkout { dir: dir.to_path_buf(), git_dir: entry.admin.clone() });
        }
    }
    Ok(out)
}

/// Paths that differ between two trees (both sides of renames, which are not paired).
/// Descends only into subtrees whose ids differ, so the cost follows the change, not the
/// repository (libgit2's tree diff walks every entry). Trees are read through
/// [`crate::git::tree::Entries::load`], so the landing's merge has usually parsed them already.
pub fn changed_paths(repo: &Repository, old: &Tree, new: &Tree) -> Result<BTreeSet<String>> {
    let mut out = BTreeSet::new();
    diff_into(repo, Some(old.id()), Some(new.id()), "", &mut out)?;
    Ok(out)
}

fn diff_into(
    repo: &Repository,
    old: Option<Oid>,
    new: Option<Oid>,
    prefix: &str,
    out: &mut BTreeSet<String>,
) -> Result<()> {
    use crate::git::tree::{join, Entries, MODE_TREE};
    if old == new {
        return Ok(());
    }
    let (eo, en) = (Entries::load(repo, old)?, Entries::load(repo, new)?);
    join([&*eo, &*en], |name, [o, n]| -> Result<bool> {
        if o == n {
            return Ok(true);
        }
        let path = format!("{prefix}{}", String::from_utf8_lossy(name));
        let subtree = |e: Option<(Oid, i32)>| e.filter(|e| e.1 == MODE_TREE).map(|e| e.0);
        let (ot, nt) = (subtree(o), subtree(n));
        if ot.is_some() || nt.is_some() {
            diff_into(repo, ot, nt, &format!("{path}/"), out)?;
        }
        // A blob (or link) on either side is itself a changed path.
        if o.is_some_and(|(_, m)| m != MODE_TREE) || n.is_some_and(|(_, m)| m != MODE_TREE) {
            out.insert(path);
        }
        Ok(true)
    })?;
    Ok(())
}

/// How much of a checkout must be clean.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Only the paths the move changes (the user's checkout of the target).
    ChangedPaths,
    /// The whole checkout (a task worktree before a sync or catch-up).
    Whole,
}

pub use crate::git::lockfile::index_lock_wait;

/// Waits for a running git command to release the checkout's `index.lock` (up to
/// [`index_lock_wait`], saying so after a second), then reports the checkout busy (exit 4) if it
/// is still held.
pub fn wait_index_unlocked(co: &Checkout) -> Result<()> {
    wait_index_unlocked_until(co, Instant::now() + index_lock_wait())
}

fn wait_index_unlocked_until(co: &Checkout, deadline: Instant) -> Result<()> {
    crate::git::lockfile::wait_index_unlocked(&co.dir, &co.git_dir, deadline)
}

fn index_busy(co: &Checkout) -> anyhow::Error {
    crate::git::lockfile::index_busy(&co.dir, &co.git_dir)
}

pub use guard::blocking_paths;

/// Moves a checkout's index and files from commit `old` to commit `new`.
///
/// Why the `git` CLI: this must behave exactly like git on a working tree (its two-tree merge
/// rules, filters and smudge drivers, sparse checkout, index extensions, stat cache). libgit2's
/// checkout differs on several of those. `read-tree` checks every path before writing any, so a
/// refusal leaves the checkout untouched; the error carries git's message.
pub fn read_tree(co: &Checkout, old: Oid, new: Oid) -> Result<()> {
    use crate::git::status::{self, ReadTree};
    let deadline = Instant::now() + index_lock_wait();
    loop {
        wait_index_unlocked_until(co, deadline)?;
        let mut outcome = status::read_tree(&co.dir, old, new)?;
        if let ReadTree::NotUpToDate(_) = outcome {
            // read-tree trusts the index's stat data and, unlike `git checkout`, does not refresh it
            // first (a copied or touched checkout looks modified). Refresh exactly as `git status`
            // does and retry once.
            status::refresh_index(&co.dir)?;
            outcome = status::read_tree(&co.dir, old, new)?;
        }
        match outcome {
            ReadTree::Moved => return Ok(()),
            ReadTree::IndexLocked(_) => {
                // Another git command took the lock between our wait and git's: wait again.
                if Instant::now() >= deadline {
                    return Err(index_busy(co));
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            ReadTree::NotUpToDate(stderr) | ReadTree::Refused(stderr) => {
                return Err(HybridError::LocalChanges {
                    message: format!(
                        "git refused to update the checkout {} ({}); nothing was changed there. Commit, stash or \
                         move the local changes, then retry",
                        co.dir.display(),
                        stderr.trim().replace('\n', " ")
                    ),
                    paths: status::paths_in_error(&stderr),
                }
                .into());
            }
        }
    }
}

/// How one checkout of the target will be moved: in process ([`fast`], checked and its index
/// locked) or by `git read-tree` (checked with [`blocking_paths`]).
pub enum Move {
    Fast(Box<fast::FastMove>),
    ReadTree(Checkout),
}

/// Checks a checkout of a branch that moves from `old` to `new` (changing `changed`) and says
/// how it will be moved; `Ok(Err(paths))` when local changes on those paths block the move.
/// Nothing is changed; a returned [`Move::Fast`] holds the checkout's `index.lock` until it is
/// applied or dropped.
pub fn prepare_move(
    project: &Project,
    co: &Checkout,
    branch: &str,
    old: &Tree,
    new: &Tree,
    changed: &BTreeSet<String>,
) -> Result<std::result::Result<Move, Vec<String>>> {
    if changed.is_empty() {
        return Ok(Ok(Move::ReadTree(co.clone())));
    }
    let reason = match fast::plan(project, co, branch, old, new, changed)? {
        fast::Plan::Fast(m) => return Ok(Ok(Move::Fast(m))),
        fast::Plan::Blocked(paths) => return Ok(Err(paths)),
        fast::Plan::Fallback(reason) => reason,
    };
    if std::env::var_os("HYBRID_DEBUG_CHECKOUT").is_some() {
        eprintln!("git-hybrid: moving {} with git read-tree: {reason}", co.dir.display());
    }
    let blocked = blocking_paths(co, old, new, changed, Scope::ChangedPaths)?;
    Ok(if blocked.is_empty() { Ok(Move::ReadTree(co.clone())) } else { Err(blocked) })
}

/// Prepared moves being carried out around the move of their branch's ref (the three phases of
/// `checkout/write.rs`): [`stage_moves`], then [`Moving::move_ref`] (the new indexes and the ref),
/// then [`Moving::finish`].
///
/// While a fast move is under way a note (`<state>/moves/<ref>.json`: the two commits) says so;
/// [`recover`] finishes what a killed run left, from it. The caller holds the lock that
/// serialises moves of that ref (the landing lock of a target, the task lock of a task branch).
pub struct Moving<'p> {
    project: &'p Project,
    fast: Vec<fast::FastMove>,
    read_tree: Vec<Checkout>,
    old: Oid,
    new: Oid,
    note: Option<PathBuf>,
}

/// Phase 1 of every prepared move of `refname` from `old` to `new`. A `git read-tree` move (the
/// fallback) is done whole here: its index moves before the ref (the documented limit of that
/// path). On an error everything done is put back.
pub fn stage_moves<'p>(
    project: &'p Project,
    refname: &str,
    moves: Vec<Move>,
    old: Oid,
    new: Oid,
) -> Result<Moving<'p>> {
    let mut moving = Moving { project, fast: Vec::new(), read_tree: Vec::new(), old, new, note: None };
    if moves.iter().any(|m| matches!(m, Move::Fast(_))) {
        let note = move_note(project, refname);
        if let Some(dir) = note.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        }
        crate::fsutil::write_atomic(&note, format!("{old} {new}\n").as_bytes())?;
        moving.note = Some(note);
    }
    for m in moves {
        let result = match m {
            Move::Fast(mut f) => {
                let r = f.stage(&project.repo);
                if r.is_ok() {
                    moving.fast.push(*f);
                }
                r
            }
            Move::ReadTree(co) => {
                let r = read_tree(&co, old, new);
                if r.is_ok() {
                    moving.read_tree.push(co);
                }
                r
            }
        };
        if let Err(e) = result {
            moving.undo();
            return Err(e);
        }
    }
    Ok(moving)
}

impl Moving<'_> {
    /// Phase 2 and the ref, back to back: the new index of every fast move, then `lock` moves
    /// the ref to the new commit (compare-and-swap). If either fails, every checkout is put back
    /// ([`Moving::undo`]) and the error returned; otherwise [`Moving::finish`] comes next.
    pub fn move_ref(mut self, lock: RefLock<'_>, message: &str) -> Result<Self> {
        let moved = self
            .fast
            .iter_mut()
            .try_for_each(|f| f.switch())
            .and_then(|()| lock.commit(&self.project.repo, self.new, message));
        match moved {
            Ok(()) => Ok(self),
            Err(e) => {
                self.undo();
                Err(e)
            }
        }
    }

    /// Phase 3, after the ref moved: the added files and the final index of every fast move.
    /// Every checkout is tried; the first error is returned and the note kept (each checkout
    /// stays safe and [`recover`] finishes it).
    pub fn finish(self) -> Result<()> {
        let mut first = Ok(());
        for f in self.fast {
            let dir = f.checkout().dir.clone();
            if let Err(e) = f.finish(&self.project.repo) {
                if first.is_ok() {
                    first = Err(e.context(format!("cannot finish moving {}", dir.display())));
                }
            }
        }
        if first.is_ok() {
            if let Some(note) = &self.note {
                let _ = std::fs::remove_file(note);
            }
        }
        first
    }

    /// Puts every checkout back where it was (the ref did not move).
    pub fn undo(self) {
        for mut f in self.fast {
            f.undo(&self.project.repo);
        }
        undo(&self.read_tree, self.old, self.new);
        if let Some(note) = &self.note {
            let _ = std::fs::remove_file(note);
        }
    }
}

fn move_note(project: &Project, refname: &str) -> PathBuf {
    crate::names::move_note(&project.state_dir(), refname)
}

/// Finishes the fast moves of `refname`'s checkouts that a killed run left (see [`Moving`]):
/// a no-op unless its note is there. Caller holds the lock that serialises moves of that ref.
pub fn recover(project: &Project, refname: &str) -> Result<()> {
    let note = move_note(project, refname);
    let text = match std::fs::read_to_string(&note) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", note.display())),
    };
    let mut it = text.split_whitespace().map(Oid::from_str);
    if let (Some(Ok(start)), Some(Ok(end))) = (it.next(), it.next()) {
        recover_interrupted(project, refname, start, end)?;
    }
    let _ = std::fs::remove_file(&note);
    Ok(())
}

/// Finishes, in every checkout of `refname`, a fast move from `start` to `end` that a kill left
/// ([`write::recover`]).
fn recover_interrupted(project: &Project, refname: &str, start: Oid, end: Oid) -> Result<()> {
    let cos = checkouts_of(project, refname)?;
    if cos.is_empty() {
        return Ok(());
    }
    let repo = &project.repo;
    let tree = |c: Oid| repo.find_commit(c).and_then(|c| c.tree());
    let (Ok(start), Ok(end)) = (tree(start), tree(end)) else { return Ok(()) };
    let changed = changed_paths(repo, &start, &end)?;
    for co in &cos {
        write::recover(project, co, refname, (&start, &end), &changed)?;
    }
    Ok(())
}

/// Moves several checkouts from `old` to `new`; if one refuses, moves the others back.
pub fn read_tree_all(cos: &[Checkout], old: Oid, new: Oid) -> Result<()> {
    for (i, co) in cos.iter().enumerate() {
        if let Err(e) = read_tree(co, old, new) {
            undo(&cos[..i], old, new);
            return Err(e);
        }
    }
    Ok(())
}

/// Moves checkouts back from `new` to `old` after the ref could not move (best effort: a
/// failure leaves the documented "already moved" state, which the next run finishes).
pub fn undo(cos: &[Checkout], old: Oid, new: Oid) {
    for co in cos {
        if let Err(e) = read_tree(co, new, old) {
            eprintln!("git-hybrid: warning: could not move {} back: {e:#}", co.dir.display());
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use git2::Repository;

    fn tree<'r>(repo: &'r Repository, files: &[(&str, &str)]) -> git2::Tree<'r> {
        let mut index = git2::Index::new().unwrap();
        for (p, c) in files {
            crate::test_support::add_file(repo, &mut index, p, c);
        }
        repo.find_tree(index.write_tree_to(repo).unwrap()).unwrap()
    }

    #[test]
    fn changed_paths_matches_libgit2_diff() {
        let d = tempfile::tempdir().unwrap();
        let repo = Repository::init_bare(d.path()).unwrap();
        let old = tree(&repo, &[("a/b/c.txt", "1"), ("a/d.txt", "2"), ("x", "3"), ("same/s.txt", "s"), ("f", "file")]);
        let new = tree(
            &repo,
            &[("a/b/c.txt", "1"), ("a/d.txt", "22"), ("y/z.txt", "3"), ("same/s.txt", "s"), ("f/g", "dir")],
        );
        let ours = super::changed_paths(&repo, &old, &new).unwrap();
        let diff = repo.diff_tree_to_tree(Some(&old), Some(&new), None).unwrap();
        let mut theirs = BTreeSet::new();
        for delta in diff.deltas() {
            for f in [delta.old_file(), delta.new_file()] {
                if let Some(p) = f.path() {
                    theirs.insert(p.to_string_lossy().into_owned());
                }
            }
        }
        assert_eq!(ours, theirs);
        assert_eq!(ours.into_iter().collect::<Vec<_>>(), ["a/d.txt", "f", "f/g", "x", "y/z.txt"]);
    }

    /// A local change to a tracked file named `index.lock` is a refusal naming it, not a held
    /// lock waited for until the checkout is reported busy.
    #[test]
    fn a_changed_file_named_index_lock_is_a_local_change() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path();
        let (old, new) =
            crate::test_support::two_commits_at_first(dir, &[("index.lock", "x\n")], &[("index.lock", "y\n")]);
        std::fs::write(dir.join("index.lock"), "local\n").unwrap();
        let co = super::Checkout { dir: dir.to_path_buf(), git_dir: dir.join(".git") };
        let started = std::time::Instant::now();
        let err = super::read_tree(&co, old, new).unwrap_err();
        match crate::error::find_hybrid_error(&err) {
            Some(crate::error::HybridError::LocalChanges { paths, .. }) => {
                assert_eq!(paths, &["index.lock"], "{err:#}")
            }
            other => panic!("expected a local-changes refusal, got {other:?}: {err:#}"),
        }
        assert!(started.elapsed() < std::time::Duration::from_secs(20), "took {:?}", started.elapsed());
        assert_eq!(std::fs::read_to_string(dir.join("index.lock")).unwrap(), "local\n");
    }
}
