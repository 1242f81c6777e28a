//! `git hybrid list`: the live tasks, one row each (worktrunk's `wt list` is the model).
//!
//! Contract: [`list`] returns every task attempt that is not archived and still has its
//! worktree folder or its branch (a cleaned or landed-and-removed attempt has neither), in
//! task-id then attempt order, with the branch's commits ahead of and behind the target's tip
//! and whether its worktree has uncommitted changes (untracked files count, ignored ones do
//! not). Reads only.

use std::path::PathBuf;

use anyhow::Result;
use serde::Serialize;

use crate::repo::Project;

/// One live task attempt.
#[derive(Debug, Clone, Serialize)]
pub struct ListRow {
    pub id: String,
    pub attempt: u32,
    pub state: String,
    pub branch: String,
    /// False when the branch is gone (the worktree is left).
    pub branch_exists: bool,
    pub target: String,
    /// The worktree folder, `null` when it is gone.
    pub worktree: Option<PathBuf>,
    /// Commits on the branch that the target lacks, and the other way round (`null` when the
    /// branch or the target is missing).
    pub ahead: Option<usize>,
    pub behind: Option<usize>,
    /// Uncommitted changes in the worktree (`null` without a worktree).
    pub dirty: Option<bool>,
}

/// The live task attempts (see the module contract).
pub fn list(project: &Project) -> Result<Vec<ListRow>> {
    let repo = &project.repo;
    let mut out = Vec::new();
    for r in project.ledger().list()? {
        if r.archived.is_some() {
            continue;
        }
        let tip = repo.refname_to_id(&format!("refs/heads/{}", r.branch)).ok();
        let worktree = r.worktree.clone().filter(|w| !w.as_os_str().is_empty() && w.is_dir());
        if tip.is_none() && worktree.is_none() {
            continue;
        }
        let target = repo.refname_to_id(&format!("refs/heads/{}", r.target)).ok();
        let (ahead, behind) = match (tip, target) {
            (Some(t), Some(g)) => match repo.graph_ahead_behind(t, g) {
                Ok((a, b)) => (Some(a), Some(b)),
                Err(_) => (None, None),
            },
            _ => (None, None),
        };
        let dirty = worktree.as_deref().and_then(is_dirty);
        out.push(ListRow {
            id: r.id.clone(),
            attempt: r.attempt,
            state: r.state.as_str().to_string(),
            branch: r.branch.clone(),
            branch_exists: tip.is_some(),
            target: r.target.clone(),
            worktree,
            ahead,
            behind,
            dirty,
        });
    }
    Ok(out)
}

/// Whether a worktree has changes git would show in `git status` (ignored files aside).
fn is_dirty(dir: &std::path::Path) -> Option<bool> {
    let wt = git2::Repository::open(dir).ok()?;
    let mut opts = git2::StatusOptions::new();
    opts.include_untracked(true).recurse_untracked_dirs(false).include_ignored(false).exclude_submodules(true);
    let statuses = wt.statuses(Some(&mut opts)).ok()?;
    Some(!statuses.is_empty())
}
