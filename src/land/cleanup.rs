//! What a landing does to the task's own branch and worktree once its work is on the target.
//!
//! Contract: [`catch_up_branch`] moves a kept task branch (and its worktree) to the catch-up
//! merge that landed, after the target moved, best effort: a task worktree with uncommitted
//! changes keeps its branch where it was and the reason is returned. [`cleanup`] then removes a
//! clean task worktree and the branch (only while the branch is where the landing left it);
//! anything with uncommitted work, another checkout of the branch, or `--keep` is kept, with the
//! reason. Neither ever fails the landing. A recorded worktree path is removed only when the
//! trust rules prove it is the task's own ([`crate::ledger::trust::task_worktree`]); otherwise
//! it is left and the reason is returned.

use anyhow::{Context, Result};
use git2::Oid;

use super::{Car, LandOptions};
use crate::checkout;
use crate::ledger::trust::{self, TaskWorktree};
use crate::ledger::TaskRecord;
use crate::repo::Project;
use crate::{sync, worktree};

/// Moves a landed task's branch to its catch-up merge, so a kept branch (and its worktree)
/// holds what landed. Done after the target moved: the merge then joins real target history, and
/// a landing that fails earlier leaves the branch as it was. Skipped when the branch is removed
/// right after anyway (the tip ref keeps the merge). Best effort: a task worktree with
/// uncommitted changes keeps its branch where it was, and the reason is returned. Returns where
/// the branch is.
pub(super) fn catch_up_branch(project: &Project, car: &Car, target: &str, opts: &LandOptions) -> (Oid, Option<String>) {
    match car.caught_up {
        Some(merge) => move_branch_to(project, &car.rec, car.tip, merge, target, opts),
        None => (car.tip, None),
    }
}

/// [`catch_up_branch`] from `from` to `to` (also finishes one a killed run left half done: the
/// task worktree "already moved", see [`crate::checkout::blocking_paths`]).
pub(super) fn move_branch_to(
    project: &Project,
    rec: &TaskRecord,
    from: Oid,
    to: Oid,
    target: &str,
    opts: &LandOptions,
) -> (Oid, Option<String>) {
    let branch_ref = format!("refs/heads/{}", rec.branch);
    if removed_after_landing(project, rec, &branch_ref, opts).unwrap_or(false) {
        return (from, None);
    }
    let message = format!("git-hybrid merge: catch up with {target}");
    match sync::move_task_branch(project, &branch_ref, (from, to), &message) {
        Ok(()) => (to, None),
        Err(e) => (from, Some(format!("{} was not caught up with {target}: {e:#}", rec.branch))),
    }
}

/// True when the landing will remove the task branch right after (no `--keep`, no worktree, not
/// checked out anywhere): then moving it to the catch-up merge first is a ref write for nothing.
fn removed_after_landing(project: &Project, rec: &TaskRecord, branch_ref: &str, opts: &LandOptions) -> Result<bool> {
    Ok(!opts.keep
        && rec.worktree.as_deref().is_none_or(|w| !w.exists())
        && checkout::checkouts_of(project, branch_ref)?.is_empty())
}

/// Removes the task worktree (when clean) and the branch (when still at `expected`).
/// Never fails the landing: problems become the "kept" reason.
pub(super) fn cleanup(project: &Project, rec: &TaskRecord, expected: Oid, keep: bool) -> (bool, Option<String>) {
    if keep {
        return (false, Some("--keep".into()));
    }
    match try_cleanup(project, rec, Some(expected)) {
        Ok(None) => (true, None),
        Ok(Some(reason)) => (false, Some(reason)),
        Err(e) => (false, Some(format!("cleanup failed: {e:#}"))),
    }
}

pub(super) fn cleanup_worktree_only(project: &Project, rec: &TaskRecord, keep: bool) -> (bool, Option<String>) {
    if keep {
        return (false, Some("--keep".into()));
    }
    match try_cleanup(project, rec, None) {
        Ok(None) => (true, None),
        Ok(Some(reason)) => (false, Some(reason)),
        Err(e) => (false, Some(format!("cleanup failed: {e:#}"))),
    }
}

/// `Ok(Some(reason))` when something had to be kept.
fn try_cleanup(project: &Project, rec: &TaskRecord, expected: Option<Oid>) -> Result<Option<String>> {
    let repo = &project.repo;
    let branch_ref = format!("refs/heads/{}", rec.branch);
    // The recorded path is removed only if it is provably the task's own worktree.
    let own_tree = trust::task_worktree(project, rec);
    let own = match &own_tree {
        TaskWorktree::Owned { dir, .. } => Some(crate::repo::canonical(dir)),
        TaskWorktree::NotOwned(why) => return Ok(Some(why.clone())),
        TaskWorktree::Gone => None,
    };
    let others: Vec<_> = checkout::checkouts_of(project, &branch_ref)?
        .into_iter()
        .filter(|c| Some(crate::repo::canonical(&c.dir)) != own)
        .collect();
    if !others.is_empty() {
        return Ok(Some(format!("{} is also checked out in {}", rec.branch, others[0].dir.display())));
    }
    if let TaskWorktree::Owned { dir: wt, .. } = &own_tree {
        if wt.join(".git").exists() {
            let dirty = worktree::dirty_paths(wt)?;
            if !dirty.is_empty() {
                return Ok(Some(format!(
                    "the worktree {} has {} uncommitted change(s) (not landed): {}",
                    wt.display(),
                    dirty.len(),
                    dirty.iter().take(5).cloned().collect::<Vec<_>>().join(", ")
                )));
            }
            // Without its .git file a half-removed worktree is recognisably ours to finish removing.
            std::fs::remove_file(wt.join(".git")).with_context(|| format!("cannot remove {}", wt.display()))?;
        }
    }
    worktree::remove_worktree(project, rec)?;
    if rec.worktree.is_some() {
        project.ledger().update_locked(&rec.id, rec.attempt, |r| r.worktree = None)?;
    }
    if let Some(expected) = expected {
        let now = repo.refname_to_id(&branch_ref).ok();
        if now == Some(expected) {
            worktree::delete_branch_cas(project, &rec.branch, expected)?;
        } else if now.is_some() {
            return Ok(Some(format!("{} moved after landing; kept it", rec.branch)));
        }
    }
    Ok(None)
}
