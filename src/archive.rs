//! Archiving tasks: hiding finished tasks from `status` and `list` while keeping them.
//!
//! Contract: [`archive`] stamps `archived` (the time) on every attempt record of each task
//! named, under the task lock, and [`unarchive`] clears it; nothing else changes (worktrees,
//! branches, refs and the records' other fields stay, so `status --all`, `verify`, `label` and
//! `export` see the task as before). Every id is checked first: an unknown task is bad input
//! (exit 2) and a task with an attempt still `starting` or `running` is refused (exit 3), and
//! then nothing is archived. [`landed`] names the tasks that landed (an attempt `landed` or
//! `empty`) and are not archived yet.

use anyhow::Result;
use serde::Serialize;

use crate::error::HybridError;
use crate::fsutil::now_rfc3339;
use crate::ledger::TaskState;
use crate::repo::Project;

/// What [`archive`] or [`unarchive`] did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ArchiveReport {
    /// Tasks whose records changed.
    pub changed: Vec<String>,
    /// Tasks that were already archived (or, for `unarchive`, not archived).
    pub unchanged: Vec<String>,
}

/// Archives the tasks `ids` (see the module contract).
pub fn archive(project: &Project, ids: &[String]) -> Result<ArchiveReport> {
    set(project, ids, Some(now_rfc3339()))
}

/// Brings archived tasks back into `status` and `list`.
pub fn unarchive(project: &Project, ids: &[String]) -> Result<ArchiveReport> {
    set(project, ids, None)
}

/// Tasks with a landed (or empty) attempt that are not archived.
pub fn landed(project: &Project) -> Result<Vec<String>> {
    let mut out: Vec<String> = Vec::new();
    for r in project.ledger().list()? {
        if r.state.is_done() && r.archived.is_none() && out.last() != Some(&r.id) {
            out.push(r.id);
        }
    }
    Ok(out)
}

fn set(project: &Project, ids: &[String], stamp: Option<String>) -> Result<ArchiveReport> {
    let ledger = project.ledger();
    let mut all = Vec::new();
    for id in ids {
        crate::task_id::validate(id)?;
        let attempts = ledger.attempts(id)?;
        if attempts.is_empty() {
            return Err(HybridError::UnknownTask(id.clone()).into());
        }
        if stamp.is_some() {
            if let Some(r) = attempts.iter().find(|r| matches!(r.state, TaskState::Starting | TaskState::Running)) {
                return Err(HybridError::Refused {
                    message: format!(
                        "task {id} attempt {} is {}; archive it once it has finished (nothing was archived)",
                        r.attempt,
                        r.state.as_str()
                    ),
                    paths: Vec::new(),
                }
                .into());
            }
        }
        all.push((id.clone(), attempts));
    }
    let mut report = ArchiveReport::default();
    for (id, attempts) in all {
        let mut changed = false;
        for r in attempts {
            if r.archived.is_some() != stamp.is_some() {
                let stamp = stamp.clone();
                ledger.update(&id, r.attempt, |rec| rec.archived = stamp)?;
                changed = true;
            }
        }
        if changed {
            report.changed.push(id);
        } else {
            report.unchanged.push(id);
        }
    }
    Ok(report)
}
