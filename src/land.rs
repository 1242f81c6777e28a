//! Landing a task as one squash commit on the target (placeholder until the land issue).
//!
//! Contract (to be built): see issue "Land work safely". [`land_task`] catches the task branch
//! up with the target, computes the squash in memory, moves the target by compare-and-swap,
//! keeps a checked-out target coherent, and records merge SHA, base and tip in the ledger.

use anyhow::Result;
use serde::Serialize;

use crate::error::HybridError;
use crate::repo::Project;

/// Options for one landing.
#[derive(Debug, Clone, Default)]
pub struct LandOptions {
    /// Target branch (default: the project's target).
    pub target: Option<String>,
    /// Summary line for the squash commit.
    pub message: Option<String>,
    /// Keep the worktree and branch after landing.
    pub keep: bool,
}

/// The result of a landing.
#[derive(Debug, Clone, Serialize)]
pub struct LandReport {
    pub task: String,
    pub attempt: u32,
    /// `"landed"` or `"empty"`.
    pub status: String,
    pub merge_sha: Option<String>,
    /// Target tip the squash was computed on.
    pub base: String,
    /// Task branch tip that landed.
    pub tip: String,
    /// Whether the worktree and branch were removed.
    pub cleaned: bool,
}

/// Lands a task attempt (see the module contract).
pub fn land_task(_project: &Project, _id: &str, _attempt: u32, _opts: &LandOptions) -> Result<LandReport> {
    Err(HybridError::NotBuilt("merge").into())
}
