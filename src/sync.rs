//! Bringing the target branch into a task branch (placeholder until the land issue).
//!
//! Contract (to be built): [`sync_task`] merges the target into the task branch inside its
//! worktree as a real merge commit, or does nothing when up to date. Uncommitted changes in the
//! worktree refuse with [`crate::error::HybridError::LocalChanges`]; a conflict leaves worktree,
//! index and branch untouched, marks the ledger state `conflict` and returns
//! [`crate::error::HybridError::Conflict`] with the paths.

use anyhow::Result;
use serde::Serialize;

use crate::error::HybridError;
use crate::repo::Project;

/// The result of a successful sync.
#[derive(Debug, Clone, Serialize)]
pub struct SyncReport {
    pub task: String,
    pub attempt: u32,
    /// `"up-to-date"` or `"merged"`.
    pub status: String,
    /// The merge commit, when one was made.
    pub commit: Option<String>,
    /// The task branch tip after the sync.
    pub tip: String,
}

/// Merges the target into the task branch (see the module contract).
pub fn sync_task(_project: &Project, _id: &str, _attempt: u32) -> Result<SyncReport> {
    Err(HybridError::NotBuilt("sync").into())
}
