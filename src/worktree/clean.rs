//! Removing task worktrees and branches: `clean` (only when no work would be lost, unless
//! forced, with forced unlanded work kept at `refs/hybrid/trash/<id>[@N]`) and the removal a
//! landing's cleanup uses.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use git2::Oid;
use serde::Serialize;

use super::dirty_paths;
use crate::error::HybridError;
use crate::ledger::trust::{self, TaskWorktree};
use crate::ledger::{TaskRecord, TaskState};
use crate::repo::Project;
use crate::{names, task_id};

/// Which tasks `clean` considers.
#[derive(Debug, Clone)]
pub enum CleanSelector {
    Task(String),
    Merged,
    All,
}

/// One task attempt in a clean report.
#[derive(Debug, Clone, Serialize)]
pub struct CleanItem {
    pub id: String,
    pub attempt: u32,
    pub worktree: Option<PathBuf>,
    pub branch: String,
    /// Why it was kept (absent for removed items).
    pub reason: Option<String>,
}

/// What `clean` did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct CleanReport {
    pub removed: Vec<CleanItem>,
    pub kept: Vec<CleanItem>,
}

/// Removes task worktrees and branches that hold no unlanded work (all selected ones with `force`).
pub fn clean(project: &Project, selector: &CleanSelector, force: bool) -> Result<CleanReport> {
    let ledger = project.ledger();
    let records = match selector {
        CleanSelector::Task(id) => {
            task_id::validate(id)?;
            let recs = ledger.attempts(id)?;
            if recs.is_empty() {
                return Err(HybridError::UnknownTask(id.clone()).into());
            }
            recs
        }
        // Landed (or empty) tasks, and started ones nobody touched (checked below: no commit,
        // no change), which hold nothing to land either.
        CleanSelector::Merged => {
            ledger.list()?.into_iter().filter(|r| r.state.is_done() || r.state == TaskState::Ready).collect()
        }
        CleanSelector::All => ledger.list()?,
    };
    let target_tip = project.target_tip().ok();
    let mut report = CleanReport::default();
    for rec in records {
        let _lock = ledger.lock_task(&rec.id)?;
        // Re-read under the lock: another process may have changed it.
        let Some(rec) = ledger.get(&rec.id, rec.attempt)? else { continue };
        let branch_ref = format!("refs/heads/{}", rec.branch);
        let branch_tip = project.repo.refname_to_id(&branch_ref).ok();
        let own_tree = trust::task_worktree(project, &rec);
        let tree_present = rec.worktree.as_deref().is_some_and(Path::exists);
        let leftover = rec.worktree.as_deref().map(removal_leftover).is_some_and(|p| p.exists());
        if branch_tip.is_none() && !tree_present && !leftover {
            continue; // already clean
        }
        let item = |reason: Option<String>| CleanItem {
            id: rec.id.clone(),
            attempt: rec.attempt,
            worktree: rec.worktree.clone(),
            branch: rec.branch.clone(),
            reason,
        };
        // A recorded path git does not list as this task's worktree is never removed.
        let own_dir = match &own_tree {
            TaskWorktree::NotOwned(why) => {
                report.kept.push(item(Some(why.clone())));
                continue;
            }
            TaskWorktree::Owned { dir, .. } => Some(crate::repo::canonical(dir)),
            TaskWorktree::Gone => None,
        };
        // Never delete a branch a checkout has out (`git branch -D` refuses too): the main
        // checkout's HEAD would be left on an unborn branch.
        let elsewhere = crate::checkout::checkouts_of(project, &branch_ref)?
            .into_iter()
            .find(|c| Some(crate::repo::canonical(&c.dir)) != own_dir);
        if let Some(other) = elsewhere {
            report.kept.push(item(Some(format!(
                "{} is checked out in {}; switch that checkout to another branch first",
                rec.branch,
                other.dir.display()
            ))));
            continue;
        }
        let mut reasons = Vec::new();
        if let (true, Some(wt)) = (tree_present, own_dir.as_deref()) {
            match dirty_paths(wt) {
                Ok(d) if !d.is_empty() => reasons.push(format!("{} uncommitted change(s) ({})", d.len(), preview(&d))),
                Ok(_) => {}
                Err(e) => reasons.push(format!("cannot read its status: {e:#}")),
            }
        }
        if let Some(tip) = branch_tip {
            if let Some(n) = unlanded_commits(project, &rec, tip, target_tip)? {
                reasons.push(format!("{n} commit(s) not landed on {}", rec.target));
            }
        }
        if !reasons.is_empty() && matches!(selector, CleanSelector::Merged) && !rec.state.is_done() {
            continue; // a started task with work in it is not merged: not `--merged`'s, even forced
        }
        if !reasons.is_empty() && !force {
            report.kept.push(item(Some(format!("{}; use --force to remove anyway", reasons.join(" and ")))));
            continue;
        }
        if let Some(tip) = branch_tip {
            if !reasons.is_empty() {
                let trash = names::trash_ref(&rec.id, rec.attempt);
                project.repo.reference(&trash, tip, true, "git-hybrid clean --force: keep unlanded commits")?;
            }
        }
        crate::failpoint!("clean::checked");
        remove_worktree(project, &rec)?;
        crate::failpoint!("clean::worktree_removed");
        if let Some(tip) = branch_tip {
            delete_branch_cas(project, &rec.branch, tip)?;
        }
        crate::failpoint!("clean::branch_deleted");
        let was_done = rec.state.is_done();
        ledger.update_locked(&rec.id, rec.attempt, |r| {
            r.worktree = None;
            if !was_done && r.state != TaskState::Candidate {
                r.state = TaskState::Abandoned;
            }
        })?;
        report.removed.push(item(None));
    }
    Ok(report)
}

fn preview(paths: &[String]) -> String {
    let mut s = paths.iter().take(3).cloned().collect::<Vec<_>>().join(", ");
    if paths.len() > 3 {
        s.push_str(", ...");
    }
    s
}

/// Number of commits on the branch whose work is not in the target, or `None` when all landed.
fn unlanded_commits(project: &Project, rec: &TaskRecord, tip: Oid, target_tip: Option<Oid>) -> Result<Option<usize>> {
    let repo = &project.repo;
    if let Some(t) = target_tip {
        if crate::git::graph::contains(repo, t, tip).unwrap_or(false) {
            return Ok(None);
        }
    }
    if rec.state.is_done() && rec.tip.as_deref() == Some(&tip.to_string()) {
        return Ok(None);
    }
    let base = Oid::from_str(&rec.base).ok();
    if base == Some(tip) {
        return Ok(None);
    }
    let mut walk = repo.revwalk()?;
    walk.push(tip)?;
    if let Some(b) = base {
        let _ = walk.hide(b);
    }
    if let Some(t) = target_tip {
        let _ = walk.hide(t);
    }
    if let Some(landed) = rec.tip.as_deref().and_then(|s| Oid::from_str(s).ok()) {
        if rec.state.is_done() {
            let _ = walk.hide(landed);
        }
    }
    let n = walk.count();
    if n == 0 {
        return Ok(None);
    }
    // Commits the target has under another id (cherry-picked, rebased, landed by hand) are
    // landed too: what `git cherry` marks `-` (same patch id). Why the git CLI: libgit2 has no
    // patch-id equivalence; git's own definition is the one users check with.
    if let Some(t) = target_tip {
        let out = crate::git::run(&project.root, ["cherry".to_string(), t.to_string(), tip.to_string()]);
        if let Ok(text) = out {
            let unlanded = text.lines().filter(|l| l.starts_with('+')).count();
            return Ok((unlanded > 0).then_some(unlanded));
        }
    }
    Ok(Some(n))
}

/// Removes a task worktree folder and its admin entry (found by path, never by name, so a
/// user's worktree with the same folder name is left alone).
///
/// Only a worktree the trust rules prove is the task's own is touched
/// ([`crate::ledger::trust::task_worktree`]: git lists it as a worktree of the task's branch
/// and it lies under the worktree root); any other recorded path is an error and left alone.
///
/// Resumable: the folder is first renamed, in one step, to its [`removal_leftover`] name beside
/// it, and only then deleted (its admin entry last). A kill while deleting leaves no
/// half-deleted worktree at the task's path (whose missing files would look like uncommitted
/// changes), only the leftover, which the next removal of the task (`clean`, or a landing's
/// cleanup) deletes first.
pub fn remove_worktree(project: &Project, rec: &TaskRecord) -> Result<()> {
    match trust::task_worktree(project, rec) {
        TaskWorktree::Gone => {
            // The entry may have been pruned by git after a kill: a leftover under the
            // worktree root still carries a name only this function makes.
            let root = crate::repo::normalize(&project.worktree_root());
            if let Some(dir) = rec.worktree.as_deref().map(crate::repo::normalize) {
                if dir != root && dir.starts_with(&root) {
                    remove_leftover(&removal_leftover(&dir))?;
                }
            }
            Ok(())
        }
        TaskWorktree::NotOwned(why) => Err(HybridError::Corrupt {
            path: project.ledger().path(&rec.id, rec.attempt).display().to_string(),
            reason: why,
        }
        .into()),
        TaskWorktree::Owned { dir, admin } => {
            let leftover = removal_leftover(&dir);
            remove_leftover(&leftover)?;
            if std::fs::symlink_metadata(&dir).is_ok() {
                // A folder that cannot be renamed (a mount point, say) is deleted where it is.
                let doomed = if std::fs::rename(&dir, &leftover).is_ok() { leftover.clone() } else { dir.clone() };
                crate::failpoint!("worktree::renamed_away");
                std::fs::remove_dir_all(&doomed).with_context(|| format!("cannot remove {}", doomed.display()))?;
            }
            match std::fs::remove_dir_all(&admin) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    Err(e).with_context(|| format!("cannot remove the worktree entry {}", admin.display()))
                }
                _ => Ok(()),
            }
        }
    }
}

/// Where [`remove_worktree`] moves a task worktree while it deletes it: `.<name>.hybrid-removing`
/// beside it (same folder, so the rename never crosses file systems).
pub fn removal_leftover(path: &Path) -> PathBuf {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    path.with_file_name(format!(".{name}.hybrid-removing"))
}

fn remove_leftover(leftover: &Path) -> Result<()> {
    match std::fs::symlink_metadata(leftover) {
        Ok(m) if m.is_dir() => std::fs::remove_dir_all(leftover)
            .with_context(|| format!("cannot remove {} (left by an interrupted removal)", leftover.display())),
        _ => Ok(()), // absent; anything but a folder is not one of ours
    }
}

/// Deletes `refs/heads/<branch>` only if it still points at `expected`. Through [`RefLock`]
/// (the caller holds the task lock, which guards the branch), so a `<branch>.lock` that a
/// killed git-hybrid left on it is recognised and removed, never one of another process.
///
/// [`RefLock`]: crate::git::lockfile::RefLock
pub fn delete_branch_cas(project: &Project, branch: &str, expected: Oid) -> Result<()> {
    let name = format!("refs/heads/{branch}");
    let lock = crate::git::lockfile::RefLock::acquire(&project.repo, &project.common_dir, &name)?;
    crate::failpoint!("branch::delete_locked");
    if lock.current != Some(expected) {
        return Err(HybridError::Repo(format!("{branch} moved while cleaning; left it in place")).into());
    }
    lock.delete()
}
