//! The change a task would land: its branch merged with the target as a landing's catch-up
//! would merge it, against the target's tip.
//!
//! Contract: [`compute`] merges the task's tip (its branch, else the ledger's `tip`) with the
//! target's tip in memory with [`crate::sync::merged_tree`], the computation every catch-up and
//! landing uses, and returns the two trees to diff (`old` the target's, `new` the merge) or the
//! conflicting paths. It writes only tree objects (unreferenced; `git gc` drops them) and changes
//! no ref, index or file. [`files`] summarises a pair of trees per path (rename detection on).
//! `git hybrid diff` and the MCP `task_diff` tool show this.

use anyhow::{Context, Result};
use git2::Oid;
use serde::Serialize;

use crate::error::HybridError;
use crate::ledger::TaskRecord;
use crate::repo::Project;

/// What merging a task into its target gives.
#[derive(Debug, Clone, Serialize)]
pub struct TaskDiff {
    pub task: String,
    pub attempt: u32,
    pub state: String,
    pub target: String,
    pub target_tip: String,
    pub tip: String,
    /// The target's tree (the "before" side).
    #[serde(skip)]
    pub old: Oid,
    /// The merged tree (the "after" side); `None` on a conflict.
    #[serde(skip)]
    pub new: Option<Oid>,
    /// Paths that conflict, sorted (empty when the merge is clean).
    pub conflicts: Vec<String>,
}

/// One changed path.
#[derive(Debug, Clone, Serialize)]
pub struct FileChange {
    pub path: String,
    /// `added`, `deleted`, `modified`, `renamed`, `copied`, `typechange`.
    pub status: String,
    /// The path before a rename or copy.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub old_path: Option<String>,
    pub insertions: usize,
    pub deletions: usize,
}

/// Merges the task attempt `rec` with its target in memory (see the module contract). A task
/// with neither a branch nor a recorded tip (cleaned before landing) is bad input (exit 2).
pub fn compute(project: &Project, rec: &TaskRecord) -> Result<TaskDiff> {
    let repo = &project.repo;
    let target_ref = format!("refs/heads/{}", rec.target);
    let target_tip = repo.refname_to_id(&target_ref).map_err(|_| {
        HybridError::Repo(format!("the target branch {} of task {} does not exist", rec.target, rec.id))
    })?;
    let tip = match repo.refname_to_id(&format!("refs/heads/{}", rec.branch)) {
        Ok(t) => t,
        Err(_) => rec.tip.as_deref().and_then(|t| Oid::from_str(t).ok()).ok_or_else(|| {
            HybridError::Repo(format!("task {} has no branch any more (state {})", rec.id, rec.state.as_str()))
        })?,
    };
    let old = repo.find_commit(target_tip)?.tree_id();
    let bases = crate::git::generation::merge_bases(repo, tip, target_tip)?;
    let merged = crate::sync::merged_tree(repo, tip, target_tip, &bases)
        .with_context(|| format!("cannot merge {} with {}", rec.branch, rec.target))?;
    let (new, conflicts) = match merged {
        Ok(tree) => (Some(tree), Vec::new()),
        Err(paths) => (None, paths),
    };
    Ok(TaskDiff {
        task: rec.id.clone(),
        attempt: rec.attempt,
        state: rec.state.as_str().to_string(),
        target: rec.target.clone(),
        target_tip: target_tip.to_string(),
        tip: tip.to_string(),
        old,
        new,
        conflicts,
    })
}

/// The paths that differ between trees `old` and `new`, in git's order, with line counts.
pub fn files(repo: &git2::Repository, old: Oid, new: Oid) -> Result<Vec<FileChange>> {
    let (old, new) = (repo.find_tree(old)?, repo.find_tree(new)?);
    let mut diff = repo.diff_tree_to_tree(Some(&old), Some(&new), None)?;
    diff.find_similar(None)?;
    let mut out = Vec::new();
    for i in 0..diff.deltas().len() {
        let Some(patch) = git2::Patch::from_diff(&diff, i)? else { continue };
        let d = patch.delta();
        let path_of = |f: git2::DiffFile<'_>| f.path().map(|p| p.to_string_lossy().into_owned());
        let path = path_of(d.new_file()).or_else(|| path_of(d.old_file())).unwrap_or_default();
        let status = match d.status() {
            git2::Delta::Added => "added",
            git2::Delta::Deleted => "deleted",
            git2::Delta::Renamed => "renamed",
            git2::Delta::Copied => "copied",
            git2::Delta::Typechange => "typechange",
            _ => "modified",
        };
        let old_path =
            matches!(d.status(), git2::Delta::Renamed | git2::Delta::Copied).then(|| path_of(d.old_file())).flatten();
        let (_, insertions, deletions) = patch.line_stats()?;
        out.push(FileChange { path, status: status.into(), old_path, insertions, deletions });
    }
    Ok(out)
}
