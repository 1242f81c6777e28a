//! What a dispatch reports: one outcome per plan task and the exit code of the whole run.

use anyhow::Result;
use serde::Serialize;

use crate::ledger::{Ledger, TaskState};
use crate::plan::PlanTask;
use crate::schedule::TaskStatus;

/// The outcome of one task.
#[derive(Debug, Clone, Serialize)]
pub struct TaskOutcome {
    pub id: String,
    pub title: Option<String>,
    /// `landed`, `empty`, `failed`, `conflict`, `passed`, `skipped`, ...
    pub state: String,
    /// The attempt the state belongs to (the landed one when landed).
    pub attempt: Option<u32>,
    /// Agent runs of that attempt so far.
    pub runs: u32,
    pub merge_sha: Option<String>,
    /// Failure, conflict paths or skip reason.
    pub note: Option<String>,
    /// Landed before this dispatch started.
    pub already_landed: bool,
    /// Attempts kept as candidates (best-of-K).
    pub candidates: Vec<u32>,
}

/// The whole dispatch result.
#[derive(Debug, Clone, Serialize)]
pub struct DispatchReport {
    pub tasks: Vec<TaskOutcome>,
    pub jobs: usize,
    /// Stopped by SIGINT/SIGTERM before the plan finished.
    pub interrupted: bool,
}

impl DispatchReport {
    /// 0 when every task landed (or was empty), 3 when the only problems are conflicts, else 1.
    pub fn exit_code(&self) -> i32 {
        let bad: Vec<&TaskOutcome> =
            self.tasks.iter().filter(|t| !matches!(t.state.as_str(), "landed" | "empty")).collect();
        if bad.is_empty() && !self.interrupted {
            crate::error::EXIT_OK
        } else if !self.interrupted && bad.iter().all(|t| t.state == "conflict") {
            crate::error::EXIT_CONFLICT
        } else {
            crate::error::EXIT_FAILURE
        }
    }
}

/// The outcome of plan task `t`: its landed attempt, else its latest non-candidate one.
pub(super) fn outcome(ledger: &Ledger, t: &PlanTask, status: &TaskStatus, already_landed: bool) -> Result<TaskOutcome> {
    let recs = ledger.attempts(&t.id)?;
    let candidates = recs.iter().filter(|r| r.state == TaskState::Candidate).map(|r| r.attempt).collect();
    let main = recs
        .iter()
        .find(|r| r.state.is_done())
        .or_else(|| recs.iter().filter(|r| r.state != TaskState::Candidate).max_by(|a, b| a.updated.cmp(&b.updated)))
        .or_else(|| recs.last());
    let mut o = TaskOutcome {
        id: t.id.clone(),
        title: t.title.clone(),
        state: "pending".into(),
        attempt: None,
        runs: 0,
        merge_sha: None,
        note: None,
        already_landed,
        candidates,
    };
    if let Some(r) = main {
        o.state = r.state.as_str().to_string();
        o.attempt = Some(r.attempt);
        o.runs = r.runs;
        o.merge_sha = r.merge_sha.clone();
        o.note = match r.state {
            TaskState::Conflict if !r.conflicts.is_empty() => Some(format!("conflicts in {}", r.conflicts.join(", "))),
            _ => r.failure.clone(),
        };
    }
    if let TaskStatus::Skipped(reason) = status {
        o.state = "skipped".into();
        o.note = Some(reason.clone());
    }
    Ok(o)
}
