//! Stopping running agents on request (`git hybrid stop`), keeping their work.
//!
//! Contract: [`stop`] takes the attempts named (or, with `all`, every attempt the ledger says is
//! `running`) and for each running one: writes the stop request (`runs/<id>/<attempt>/stop`),
//! ([`crate::names::stop_request`]), then ends its latest run's process group ([`crate::agent::kill_orphan`]: SIGTERM, SIGKILL
//! after a grace period; on Linux only processes whose environment names that run). The
//! dispatcher running it sees the request when the agent exits and records the attempt as
//! `stopped` instead of retrying it; with no live dispatcher (it was killed) the record is set
//! to `stopped` here. The worktree, the branch and what the agent committed stay; what it left
//! uncommitted is committed as a checkpoint when the attempt resumes: the next `dispatch`
//! removes the request and resumes a `stopped` attempt like a failed one, with the
//! resume preamble. An attempt that is not running is left alone and reported.

use anyhow::Result;
use serde::Serialize;

use crate::error::HybridError;
use crate::ledger::{TaskRecord, TaskState};
use crate::repo::Project;

/// One attempt [`stop`] looked at.
#[derive(Debug, Clone, Serialize)]
pub struct Stopped {
    pub task: String,
    pub attempt: u32,
    /// The state after the stop (`stopped`, or the state it had when it was not running).
    pub state: String,
    /// Whether a live agent process group was ended.
    pub killed: bool,
}

/// What [`stop`] did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct StopReport {
    pub stopped: Vec<Stopped>,
    /// Attempts named that were not running (nothing done).
    pub not_running: Vec<Stopped>,
}

/// Stops the running attempts among `targets` (`(id, None)`: every attempt of that task), or
/// every running attempt when `targets` is empty (see the module contract); `dispatcher_alive`:
/// a dispatcher holds the repository's lock (it records the attempts itself). An unknown task
/// is bad input (exit 2) and nothing is stopped.
pub fn stop(project: &Project, targets: &[(String, Option<u32>)], dispatcher_alive: bool) -> Result<StopReport> {
    let ledger = project.ledger();
    let mut recs: Vec<TaskRecord> = Vec::new();
    if targets.is_empty() {
        recs = ledger.list()?.into_iter().filter(|r| r.state == TaskState::Running).collect();
    } else {
        for (id, attempt) in targets {
            crate::task_id::validate(id)?;
            let attempts = ledger.attempts(id)?;
            if attempts.is_empty() {
                return Err(HybridError::UnknownTask(id.clone()).into());
            }
            let chosen: Vec<TaskRecord> =
                attempts.into_iter().filter(|r| attempt.is_none_or(|a| r.attempt == a)).collect();
            if chosen.is_empty() {
                return Err(HybridError::Usage(format!("task {id:?} has no attempt {}", attempt.unwrap_or(1))).into());
            }
            recs.extend(chosen);
        }
    }
    let state_dir = project.state_dir();
    let mut report = StopReport::default();
    for rec in recs {
        if rec.state != TaskState::Running {
            report.not_running.push(Stopped {
                task: rec.id.clone(),
                attempt: rec.attempt,
                state: rec.state.as_str().into(),
                killed: false,
            });
            continue;
        }
        let req = crate::names::stop_request(&state_dir, &rec.id, rec.attempt);
        if let Some(dir) = req.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(&req, format!("stopped by `git hybrid stop` at {}\n", crate::fsutil::now_rfc3339()))?;
        let killed =
            crate::runlog::latest_run(&state_dir, &rec).is_some_and(|(_, dir)| crate::agent::kill_orphan(&dir));
        let state = if dispatcher_alive {
            // The dispatcher records it once it sees the agent gone; wait for that (bounded).
            wait_for_state_change(project, &rec)
        } else {
            ledger.update(&rec.id, rec.attempt, |r| {
                if r.state == TaskState::Running {
                    r.state = TaskState::Stopped;
                    r.failure = Some("stopped by `git hybrid stop`".into());
                }
            })?;
            TaskState::Stopped
        };
        report.stopped.push(Stopped {
            task: rec.id.clone(),
            attempt: rec.attempt,
            state: state.as_str().into(),
            killed,
        });
    }
    Ok(report)
}

/// The attempt's state once it is no longer `running` (at most a few seconds: the dispatcher
/// records it right after the agent's group is gone).
fn wait_for_state_change(project: &Project, rec: &TaskRecord) -> TaskState {
    let ledger = project.ledger();
    let until = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let state = ledger.get(&rec.id, rec.attempt).ok().flatten().map(|r| r.state).unwrap_or(rec.state);
        if state != TaskState::Running || std::time::Instant::now() > until {
            return state;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}
