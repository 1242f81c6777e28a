//! What `git hybrid status` reports for each task attempt.
//!
//! Contract: [`collect`] reads the ledger plus cheap live facts (branch's last commit subject,
//! last line of the agent's `progress.md`, its `blocked.md` reason). It writes nothing except
//! the records of landings git proves whose record was deleted ([`crate::ledger::rebuild`]).
//! The JSON form is stable: every ledger key is present (`null` when unknown) and the live
//! facts are added as `elapsed_secs`, `last_commit`, `progress`, `blocked`; `dispatcher` is the
//! live dispatcher (`{"pid", "log", "plan": [ids] | null, "plan_done": N}`: the task ids of the
//! plan it runs and how many of them landed) or `null`; `rebuilt` (`{"rebuilt": [..],
//! "unrecoverable": [..], "scanned": N}`) is present only when there is something to say;
//! `archived_hidden` counts the attempts of archived tasks left out (see [`collect_with`]).

use anyhow::Result;
use serde::Serialize;

use crate::error::HybridError;
use crate::fsutil::{last_line, secs_since};
use crate::ledger::TaskRecord;
use crate::repo::Project;

/// One row of the status table.
#[derive(Debug, Clone, Serialize)]
pub struct StatusRow {
    #[serde(flatten)]
    pub record: TaskRecord,
    /// Seconds from creation to landing (landed) or to now.
    pub elapsed_secs: Option<u64>,
    /// Subject of the task branch's tip commit.
    pub last_commit: Option<String>,
    /// Last line of the agent's `progress.md`.
    pub progress: Option<String>,
    /// Last line of the agent's `blocked.md`.
    pub blocked: Option<String>,
}

/// The whole report, `{"tasks": [...], "dispatcher": {"pid": N} | null}` in JSON.
#[derive(Debug, Clone, Serialize)]
pub struct StatusReport {
    pub tasks: Vec<StatusRow>,
    /// The live dispatcher of this repository, if one runs.
    pub dispatcher: Option<DispatcherInfo>,
    /// Records rebuilt from git because they were missing, and what could not be recovered.
    #[serde(skip_serializing_if = "crate::ledger::rebuild::RebuildReport::is_empty")]
    pub rebuilt: crate::ledger::rebuild::RebuildReport,
    /// Attempts of archived tasks left out (`git hybrid archive`; `status --all` shows them).
    #[serde(default)]
    pub archived_hidden: usize,
}

/// A running dispatcher (it holds `<git-common-dir>/hybrid/dispatch.pid`).
#[derive(Debug, Clone, Serialize)]
pub struct DispatcherInfo {
    pub pid: u32,
    /// Its log when it runs in the background.
    pub log: std::path::PathBuf,
    /// The task ids of the plan it runs (`null` when it did not record them).
    pub plan: Option<Vec<String>>,
    /// How many of those have landed (`landed` or `empty`).
    pub plan_done: usize,
}

/// Builds the status report: every task, or only the tasks in `only` (in that order). A task
/// in `only` that the ledger does not know is bad input ([`HybridError::UnknownTask`], exit 2),
/// as for every other command.
pub fn collect(project: &Project, only: &[String]) -> Result<StatusReport> {
    collect_with(project, only, false)
}

/// [`collect`]; archived tasks are left out of a report of every task unless `all` (a task
/// named in `only` is always shown).
pub fn collect_with(project: &Project, only: &[String], all: bool) -> Result<StatusReport> {
    let ledger = project.ledger();
    for id in only {
        crate::task_id::validate(id)?;
    }
    // Records deleted by hand (or by an agent) come back from the squash commits on the target.
    let rebuilt = crate::ledger::rebuild::rebuild(project)?;
    let mut archived_hidden = 0;
    let records = if only.is_empty() {
        let mut recs = ledger.list()?;
        if !all {
            let before = recs.len();
            recs.retain(|r| r.archived.is_none());
            archived_hidden = before - recs.len();
        }
        recs
    } else {
        let mut out = Vec::new();
        for id in only {
            let attempts = ledger.attempts(id)?;
            if attempts.is_empty() {
                return Err(HybridError::UnknownTask(id.clone()).into());
            }
            if !out.iter().any(|r: &TaskRecord| &r.id == id) {
                out.extend(attempts);
            }
        }
        out
    };
    let tasks: Vec<StatusRow> = records.into_iter().map(|rec| row(project, rec)).collect();
    let dispatcher = dispatcher_info(project);
    Ok(StatusReport { tasks, dispatcher, rebuilt, archived_hidden })
}

/// The live dispatcher of the repository and its plan's progress, if one runs.
pub fn dispatcher_info(project: &Project) -> Option<DispatcherInfo> {
    let pid = crate::dispatch::running_dispatcher(project)?;
    let plan = crate::dispatch::running_plan::read(project, pid);
    let ledger = project.ledger();
    let plan_done = match &plan {
        Some(ids) => ids.iter().filter(|id| plan_task_done(&ledger, id)).count(),
        None => 0,
    };
    Some(DispatcherInfo { pid, log: crate::dispatch::log_path(project), plan, plan_done })
}

/// True when some attempt of task `id` has landed (or landed empty).
fn plan_task_done(ledger: &crate::ledger::Ledger, id: &str) -> bool {
    ledger.attempts(id).map(|a| a.iter().any(|r| r.state.is_done())).unwrap_or(false)
}

fn row(project: &Project, record: TaskRecord) -> StatusRow {
    let elapsed_secs = match (&record.landed_at, secs_since(&record.created)) {
        (Some(landed), Some(since_created)) => secs_since(landed).map(|l| since_created.saturating_sub(l)),
        (None, s) => s,
        _ => None,
    };
    let last_commit = project
        .repo
        .refname_to_id(&format!("refs/heads/{}", record.branch))
        .ok()
        .and_then(|id| project.repo.find_commit(id).ok())
        // A branch with no commits of its own shows none (not the target's last commit).
        .filter(|c| !no_own_commits(project, &record, c.id()))
        .and_then(|c| c.summary().map(str::to_string))
        // A landed task's branch is gone: its squash commit says what landed.
        .or_else(|| {
            let sha = record.merge_sha.as_deref()?;
            let commit = project.repo.find_commit(git2::Oid::from_str(sha).ok()?).ok()?;
            commit.summary().map(str::to_string)
        });
    let (progress, blocked) = match crate::ledger::trust::run_dir(&project.state_dir(), &record) {
        Some(dir) => (last_line(&dir.join("progress.md")), last_line(&dir.join("blocked.md"))),
        None => (None, None),
    };
    StatusRow { record, elapsed_secs, last_commit, progress, blocked }
}

/// True when the task branch's tip is its base, or a commit the target already has.
fn no_own_commits(project: &Project, record: &TaskRecord, tip: git2::Oid) -> bool {
    if record.base == tip.to_string() {
        return true;
    }
    let Ok(target) = project.repo.refname_to_id(&format!("refs/heads/{}", record.target)) else { return false };
    crate::git::graph::contains(&project.repo, target, tip).unwrap_or(false)
}

/// The last `n` non-empty lines of a note after its first line (the output tail), for
/// `status`, which has room for more than one line.
pub fn note_tail(note: &str, n: usize) -> Vec<String> {
    let lines: Vec<&str> = note.lines().skip(1).filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(n)..].iter().map(|l| l.to_string()).collect()
}
