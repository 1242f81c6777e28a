//! Bringing the target branch into a task branch.
//!
//! Contract: [`sync_task`] merges the target into the task branch as a real merge commit
//! (parents: task tip, target tip), or does nothing when the task already contains the target.
//! The merge is computed in memory with libgit2; then every checkout of the task branch (its
//! git-hybrid worktree; none for a branch an agent pushed) moves to the merge, and the branch
//! moves by compare-and-swap while locked (see [`crate::checkout`] for the order and why).
//!
//! - Uncommitted changes (modified, staged, untracked) in a checkout of the task branch refuse
//!   with [`HybridError::LocalChanges`] (exit 3), listing them; nothing changes.
//! - A conflict changes nothing (worktree, index, branch), marks the ledger state `conflict` with
//!   the paths, and returns [`HybridError::Conflict`] (exit 3).
//! - A branch `hybrid/<id>` without a ledger record is adopted (record created, base = its
//!   merge base with the target), so work pushed by a remote agent can be synced and landed.
//!
//! - When the target lands through a remote ([`crate::remote`]), the remote's target is fetched
//!   first and merged when it contains the local target (else the local target is).
//!
//! Crash window: after the worktree moved to the merge and before the branch ref did, the
//! worktree's index holds the merge's content. The next sync recomputes the same merge tree,
//! recognises that state as "already moved" (not as local changes) and finishes the move.

use anyhow::{Context, Result};
use git2::{MergeOptions, Oid};
use serde::Serialize;

use crate::checkout::{self, Scope};
use crate::error::HybridError;
use crate::git::lockfile::RefLock;
use crate::ledger::{TaskRecord, TaskState};
use crate::repo::Project;
use crate::{git, names, task_id};

/// The result of a successful sync.
#[derive(Debug, Clone, Serialize)]
pub struct SyncReport {
    pub task: String,
    pub attempt: u32,
    /// `"up-to-date"`, `"fast-forward"` or `"merged"`.
    pub status: String,
    /// The merge commit, when one was made.
    pub commit: Option<String>,
    /// The task branch tip after the sync.
    pub tip: String,
    /// The target branch merged in.
    pub target: String,
}

/// Merges the target into the task branch (see the module contract).
pub fn sync_task(project: &Project, id: &str, attempt: u32) -> Result<SyncReport> {
    task_id::validate(id)?;
    fast_reads();
    project.require_commits()?;
    let ledger = project.ledger();
    require_known(project, id, attempt)?;
    let _task_lock = ledger.lock_task(id)?;
    let rec = load_or_adopt(project, id, attempt, None)?;
    let repo = &project.repo;
    let target_ref = branch_ref_checked(project, &rec.target)?;
    let target_tip = crate::remote::sync_tip(project, &rec.target, repo.refname_to_id(&target_ref)?)?;
    let branch_ref = format!("refs/heads/{}", rec.branch);
    let tip = task_tip(project, &rec)?;
    let report = |status: &str, commit: Option<Oid>, tip: Oid| SyncReport {
        task: id.to_string(),
        attempt,
        status: status.to_string(),
        commit: commit.map(|c| c.to_string()),
        tip: tip.to_string(),
        target: rec.target.clone(),
    };
    if git::graph::contains(repo, tip, target_tip)? {
        clear_conflict(project, &rec)?;
        return Ok(report("up-to-date", None, tip));
    }
    if git::graph::contains(repo, target_tip, tip)? {
        // No commits of its own: fast-forward, as `git merge` would, instead of a merge commit.
        move_task_branch(
            project,
            &branch_ref,
            (tip, target_tip),
            &format!("git-hybrid sync: fast-forward to {}", rec.target),
        )?;
        clear_conflict(project, &rec)?;
        return Ok(report("fast-forward", None, target_tip));
    }
    let merge = match merge_commit(project, tip, target_tip, &rec.target, &rec.branch)? {
        Ok(m) => m,
        Err(paths) => {
            record_conflict(project, &rec, &format!("merging {} into {}", rec.target, rec.branch), &paths)?;
            return Err(
                HybridError::Conflict { what: format!("merging {} into {}", rec.target, rec.branch), paths }.into()
            );
        }
    };
    move_task_branch(project, &branch_ref, (tip, merge), &format!("git-hybrid sync: merge {}", rec.target))?;
    clear_conflict(project, &rec)?;
    Ok(report("merged", Some(merge), merge))
}

/// Reads objects the way git does: without re-hashing each one on every read (libgit2's
/// default "strict hash verification" costs a SHA-1 per object read; git verifies on fsck,
/// transfer and gc instead). Process-wide and idempotent.
pub(crate) fn fast_reads() {
    git2::opts::strict_hash_verification(false);
}

/// `refs/heads/<name>`, checked to be a valid, existing branch (exit 2 otherwise).
pub(crate) fn branch_ref_checked(project: &Project, name: &str) -> Result<String> {
    let full = format!("refs/heads/{name}");
    if !git2::Reference::is_valid_name(&full) {
        return Err(HybridError::Usage(format!("{name:?} is not a valid branch name")).into());
    }
    if project.repo.refname_to_id(&full).is_err() {
        return Err(HybridError::Repo(format!("the branch {name:?} does not exist")).into());
    }
    Ok(full)
}

/// The task branch's tip; a missing branch is exit 2.
pub(crate) fn task_tip(project: &Project, rec: &TaskRecord) -> Result<Oid> {
    project.repo.refname_to_id(&format!("refs/heads/{}", rec.branch)).map_err(|_| {
        HybridError::Repo(format!("the task branch {} does not exist (was the task cleaned?)", rec.branch)).into()
    })
}

/// Refuses an unknown task (no ledger record, no branch `hybrid/<id>` to adopt) before any lock
/// file is made for it (exit 2): a typo must leave nothing behind.
pub(crate) fn require_known(project: &Project, id: &str, attempt: u32) -> Result<()> {
    task_id::validate_attempt(attempt)?;
    if project.ledger().get(id, attempt)?.is_some() {
        return Ok(());
    }
    let branch = names::branch(id, attempt);
    if project.repo.refname_to_id(&format!("refs/heads/{branch}")).is_err() {
        return Err(HybridError::UnknownTask(id.to_string()).into());
    }
    Ok(())
}

/// The task's ledger record; a branch `hybrid/<id>` without one is adopted. Caller holds the task lock.
pub(crate) fn load_or_adopt(project: &Project, id: &str, attempt: u32, target: Option<&str>) -> Result<TaskRecord> {
    let (rec, saved) = load_or_adopt_unsaved(project, id, attempt, target)?;
    if !saved {
        project.ledger().put(&rec)?;
    }
    Ok(rec)
}

/// [`load_or_adopt`] without writing an adopted record (`false`: not in the ledger yet); the
/// caller's first ledger write for the task creates it ([`crate::ledger::Ledger::upsert_locked`]).
pub(crate) fn load_or_adopt_unsaved(
    project: &Project,
    id: &str,
    attempt: u32,
    target: Option<&str>,
) -> Result<(TaskRecord, bool)> {
    task_id::validate_attempt(attempt)?;
    let ledger = project.ledger();
    if let Some(rec) = ledger.get(id, attempt)? {
        return Ok((rec, true));
    }
    let branch = names::branch(id, attempt);
    let Ok(tip) = project.repo.refname_to_id(&format!("refs/heads/{branch}")) else {
        return Err(HybridError::UnknownTask(id.to_string()).into());
    };
    let target = match target {
        Some(t) => t.to_string(),
        None => project.target_branch()?,
    };
    let target_tip = project.repo.refname_to_id(&branch_ref_checked(project, &target)?)?;
    let base = git::generation::merge_bases(&project.repo, tip, target_tip)?.first().copied().ok_or_else(|| {
        HybridError::Repo(format!("{branch} shares no history with {target}; cannot adopt it as a task"))
    })?;
    Ok((TaskRecord::adopted(id, attempt, &branch, &base.to_string(), &target), false))
}

/// Merges `target_tip` into `tip` in memory and writes the merge commit (no ref moves).
/// `Ok(Err(paths))` when the merge conflicts.
pub(crate) fn merge_commit(
    project: &Project,
    tip: Oid,
    target_tip: Oid,
    target: &str,
    branch: &str,
) -> Result<std::result::Result<Oid, Vec<String>>> {
    let bases = git::generation::merge_bases(&project.repo, tip, target_tip)?;
    merge_commit_on(project, tip, target_tip, target, branch, &bases)
}

/// [`merge_commit`] with the merge bases of `tip` and `target_tip` already known.
pub(crate) fn merge_commit_on(
    project: &Project,
    tip: Oid,
    target_tip: Oid,
    target: &str,
    branch: &str,
    bases: &[Oid],
) -> Result<std::result::Result<Oid, Vec<String>>> {
    let repo = &project.repo;
    let tree_id = match merged_tree(repo, tip, target_tip, bases)? {
        Ok(t) => t,
        Err(paths) => return Ok(Err(paths)),
    };
    let ours = repo.find_commit(tip)?;
    let theirs = repo.find_commit(target_tip)?;
    let author = git::signature(repo, git::Role::Author)?;
    let committer = git::signature(repo, git::Role::Committer)?;
    let msg = format!("Merge branch '{target}' into {branch}\n");
    let tree = repo.find_tree(tree_id)?;
    Ok(Ok(repo.commit(None, &author, &committer, &msg, &tree, &[&ours, &theirs])?))
}

/// The tree of merging `target_tip` into `tip` (merge bases `bases`), as every catch-up and
/// landing computes it: [`tree_merge`] where it decides, else libgit2's merge with rename
/// detection. `Ok(Err(paths))` lists the conflicting paths, sorted. Writes only tree objects.
pub(crate) fn merged_tree(
    repo: &git2::Repository,
    tip: Oid,
    target_tip: Oid,
    bases: &[Oid],
) -> Result<std::result::Result<Oid, Vec<String>>> {
    let ours = repo.find_commit(tip)?;
    let theirs = repo.find_commit(target_tip)?;
    if bases.len() == 1 {
        let base_tree = repo.find_commit(bases[0])?.tree_id();
        if let Some(tree_id) = tree_merge(repo, Some(base_tree), ours.tree_id(), theirs.tree_id())? {
            return Ok(Ok(tree_id));
        }
    }
    let mut opts = MergeOptions::new();
    opts.find_renames(true);
    let mut index = repo.merge_commits(&ours, &theirs, Some(&opts)).context("cannot merge in memory")?;
    if index.has_conflicts() {
        let mut paths: Vec<String> = index
            .conflicts()?
            .flatten()
            .filter_map(|c| c.our.or(c.their).or(c.ancestor))
            .map(|e| String::from_utf8_lossy(&e.path).into_owned())
            .collect();
        paths.sort();
        paths.dedup();
        return Ok(Err(paths));
    }
    Ok(Ok(index.write_tree_to(repo).context("cannot write the merged tree")?))
}

/// Three-way merge of trees that descends only into subtrees both sides changed, so its cost
/// follows the size of the change, not of the repository. It decides only the cases where every
/// path is "unchanged on one side, take the other" (or changed identically on both); anything
/// else returns `None` and the caller uses libgit2's full merge (content merges, conflicts and
/// rename detection). A path deleted on both sides also falls back, because rename detection can
/// turn that into a rename/rename conflict. In the cases it decides, the result is the tree
/// libgit2's merge produces: with no path changed on both sides, renames pair a deletion and an
/// addition on the same side and move nothing.
pub(crate) fn tree_merge(repo: &git2::Repository, base: Option<Oid>, ours: Oid, theirs: Oid) -> Result<Option<Oid>> {
    if ours == theirs || base == Some(theirs) {
        return Ok(Some(ours));
    }
    if base == Some(ours) {
        return Ok(Some(theirs));
    }
    use crate::git::tree::{self, Entries, MODE_TREE as TREE};
    let (eb, eo, et) =
        (Entries::load(repo, base)?, Entries::load(repo, Some(ours))?, Entries::load(repo, Some(theirs))?);
    let mut out: Vec<(&[u8], Oid, i32)> = Vec::with_capacity(eo.len() + 4);
    let mut changed = false;
    // The closure answers `false` for a name this merge does not decide: libgit2 then merges.
    let decided = tree::join([&*eb, &*eo, &*et], |name, [b, o, t]| -> Result<bool> {
        let result = if o == t {
            if o.is_none() && b.is_some() {
                return Ok(false); // deleted on both sides
            }
            o
        } else if o == b {
            t
        } else if t == b {
            o
        } else {
            match (b, o, t) {
                (b, Some((oi, TREE)), Some((ti, TREE))) if b.is_none_or(|(_, m)| m == TREE) => {
                    match tree_merge(repo, b.map(|(bi, _)| bi), oi, ti)? {
                        Some(id) => Some((id, TREE)),
                        None => return Ok(false),
                    }
                }
                _ => return Ok(false),
            }
        };
        if result != o {
            // A name libgit2's tree builder would refuse: leave the whole merge to libgit2.
            if std::str::from_utf8(name).is_err() || matches!(name, b"" | b"." | b"..") || name.contains(&b'/') {
                return Ok(false);
            }
            changed = true;
        }
        out.extend(result.map(|(id, mode)| (name, id, mode)));
        Ok(true)
    })?;
    if !decided {
        return Ok(None);
    }
    if !changed {
        return Ok(Some(ours));
    }
    Ok(Some(tree::write(repo, &mut out)?))
}

/// Moves a task branch from `old` to `new`, carrying every checkout of it along. Every such
/// checkout must be clean anywhere (a task worktree; its agent commits what it wants kept, and
/// one with uncommitted work may have an agent at work in it). Caller holds the task lock.
/// A clean worktree moves on the fast path where it applies (`checkout/fast.rs`; cleanliness
/// first asked of `checkout/clean.rs`, then of git); otherwise with `git read-tree`.
pub(crate) fn move_task_branch(
    project: &Project,
    branch_ref: &str,
    (old, new): (Oid, Oid),
    message: &str,
) -> Result<()> {
    let repo = &project.repo;
    let lock = RefLock::acquire(&project.repo, &project.common_dir, branch_ref)?;
    crate::failpoint!("sync::ref_locked");
    checkout::recover(project, branch_ref)?;
    if lock.current != Some(old) {
        return Err(HybridError::Repo(format!(
            "{} moved while git-hybrid was working on it; nothing was changed, re-run",
            branch_ref.trim_start_matches("refs/heads/")
        ))
        .into());
    }
    if let Some(why) = checkout::in_progress(project, branch_ref)? {
        return Err(HybridError::LocalChanges { message: why, paths: Vec::new() }.into());
    }
    let checkouts = checkout::checkouts_of(project, branch_ref)?;
    let mut moves = Vec::with_capacity(checkouts.len());
    if !checkouts.is_empty() {
        let old_tree = repo.find_commit(old)?.tree()?;
        let new_tree = repo.find_commit(new)?.tree()?;
        let changed = checkout::changed_paths(repo, &old_tree, &new_tree)?;
        let dirty = |co: &checkout::Checkout, paths: Vec<String>| -> anyhow::Error {
            HybridError::LocalChanges {
                message: format!(
                    "the task worktree {} has uncommitted changes; commit or stash them there, then re-run \
                     (nothing was changed)",
                    co.dir.display()
                ),
                paths,
            }
            .into()
        };
        for co in &checkouts {
            let prepared = checkout::prepare_move(project, co, branch_ref, &old_tree, &new_tree, &changed)?;
            if let Ok(checkout::Move::Fast(f)) = &prepared {
                if f.clean_anywhere(old_tree.id()) {
                    moves.push(prepared.expect("matched"));
                    continue;
                }
            }
            // Ask git (it waits for the index lock a fast move holds: release it first).
            drop(prepared);
            if std::env::var_os("HYBRID_DEBUG_CHECKOUT").is_some() {
                eprintln!("git-hybrid: asking git status whether {} is clean", co.dir.display());
            }
            let blocked = checkout::blocking_paths(co, &old_tree, &new_tree, &changed, Scope::Whole)?;
            if !blocked.is_empty() {
                return Err(dirty(co, blocked));
            }
            match checkout::prepare_move(project, co, branch_ref, &old_tree, &new_tree, &changed)? {
                Ok(m) => moves.push(m),
                Err(paths) => return Err(dirty(co, paths)),
            }
        }
    }
    let moving = checkout::stage_moves(project, branch_ref, moves, old, new)?;
    crate::failpoint!("sync::checkouts_moved");
    let moving = moving.move_ref(lock, message)?;
    crate::failpoint!("sync::ref_moved");
    moving.finish()
}

/// Marks a task `conflict` with its paths.
pub(crate) fn record_conflict(project: &Project, rec: &TaskRecord, what: &str, paths: &[String]) -> Result<()> {
    project.ledger().upsert_locked(rec, |r| {
        r.state = TaskState::Conflict;
        r.conflicts = paths.to_vec();
        r.failure = Some(format!("{what} conflicts in {}", paths.join(", ")));
    })?;
    Ok(())
}

/// A task that merges cleanly again is no longer in conflict.
fn clear_conflict(project: &Project, rec: &TaskRecord) -> Result<()> {
    if rec.state == TaskState::Conflict {
        project.ledger().update_locked(&rec.id, rec.attempt, |r| {
            r.state = TaskState::Ready;
            r.conflicts.clear();
            r.failure = None;
        })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use git2::{Oid, Repository, Signature};

    /// Commits `files` (path → Some(content) or None to delete) on top of `parent`.
    fn commit(repo: &Repository, parent: Option<Oid>, files: &[(&str, Option<&str>)]) -> Oid {
        let mut index = git2::Index::new().unwrap();
        if let Some(p) = parent {
            index.read_tree(&repo.find_commit(p).unwrap().tree().unwrap()).unwrap();
        }
        for (path, content) in files {
            match content {
                Some(c) => crate::test_support::add_file(repo, &mut index, path, c),
                None => index.remove_path(std::path::Path::new(path)).unwrap(),
            }
        }
        let tree = repo.find_tree(index.write_tree_to(repo).unwrap()).unwrap();
        let sig = Signature::new("t", "t@e", &git2::Time::new(0, 0)).unwrap();
        let parents: Vec<_> = parent.map(|p| repo.find_commit(p).unwrap()).into_iter().collect();
        let refs: Vec<_> = parents.iter().collect();
        repo.commit(None, &sig, &sig, "c", &tree, &refs).unwrap()
    }

    /// tree_merge, when it decides, gives libgit2's result; otherwise libgit2 must be needed.
    fn check(ours_files: &[(&str, Option<&str>)], theirs_files: &[(&str, Option<&str>)]) -> bool {
        let d = tempfile::tempdir().unwrap();
        let repo = Repository::init_bare(d.path()).unwrap();
        let body: String = (0..30).map(|i| format!("l{i}\n")).collect();
        let base = commit(
            &repo,
            None,
            &[("a/x.txt", Some(&body)), ("a/y.txt", Some("y\n")), ("b/c/z.txt", Some("z\n")), ("top.txt", Some("t\n"))],
        );
        let ours = commit(&repo, Some(base), ours_files);
        let theirs = commit(&repo, Some(base), theirs_files);
        let (o, t) = (repo.find_commit(ours).unwrap(), repo.find_commit(theirs).unwrap());
        let bt = repo.find_commit(base).unwrap().tree().unwrap();
        let fast = super::tree_merge(&repo, Some(bt.id()), o.tree_id(), t.tree_id()).unwrap();
        let mut opts = git2::MergeOptions::new();
        opts.find_renames(true);
        let mut idx = repo.merge_commits(&o, &t, Some(&opts)).unwrap();
        if let Some(f) = fast {
            assert!(!idx.has_conflicts(), "fast path decided a conflicting merge");
            assert_eq!(f, idx.write_tree_to(&repo).unwrap(), "fast path differs from libgit2");
        }
        fast.is_some()
    }

    #[test]
    fn tree_merge_matches_libgit2() {
        // Disjoint edits, additions and deletions in nested folders: decided.
        assert!(check(&[("a/y.txt", Some("Y\n")), ("new/n.txt", Some("n\n"))], &[("b/c/z.txt", Some("Z\n"))]));
        assert!(check(&[("a/y.txt", None)], &[("b/c/w.txt", Some("w\n")), ("top.txt", Some("T\n"))]));
        assert!(check(&[("a/x.txt", None), ("a/moved.txt", Some("l0\n"))], &[("b/c/z.txt", None)]));
        // The same change on both sides: decided.
        assert!(check(&[("a/y.txt", Some("same\n"))], &[("a/y.txt", Some("same\n")), ("top.txt", None)]));
        // Both sides add in the same new folder: decided by recursing.
        assert!(check(&[("n/1.txt", Some("1\n"))], &[("n/2.txt", Some("2\n"))]));
        // Content merges, conflicts, renames against edits, deletes on both sides: left to libgit2.
        let edited: String = (0..30).map(|i| if i == 3 { "x\n".into() } else { format!("l{i}\n") }).collect();
        let edited2: String = (0..30).map(|i| if i == 25 { "y\n".into() } else { format!("l{i}\n") }).collect();
        assert!(!check(&[("a/x.txt", Some(&edited))], &[("a/x.txt", Some(&edited2))]));
        assert!(!check(&[("a/y.txt", Some("1\n"))], &[("a/y.txt", Some("2\n"))]));
        let body: String = (0..30).map(|i| format!("l{i}\n")).collect();
        assert!(!check(&[("a/x.txt", None), ("a/r.txt", Some(&body))], &[("a/x.txt", Some(&edited))]));
        assert!(!check(
            &[("a/x.txt", None), ("a/r1.txt", Some(&body))],
            &[("a/x.txt", None), ("a/r2.txt", Some(&body))]
        ));
        // A file on one side where the other has a folder.
        assert!(!check(&[("a/y.txt", None), ("a/y.txt/inner", Some("i\n"))], &[("a/y.txt", Some("changed\n"))]));
    }
}
