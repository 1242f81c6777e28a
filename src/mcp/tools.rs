//! The MCP tools' typed arguments, results and blocking implementations.
//!
//! Contract: each `fn` here takes the opened [`Project`] and its typed arguments, calls the same
//! library function as the matching CLI command and returns a JSON object. Nothing here runs a
//! command or opens a path from the arguments: task ids pass the id rule, files are chosen from
//! a fixed list ([`LogFile`]) inside the task's own run directory.

use std::io::{Read, Seek, SeekFrom};

use anyhow::{Context, Result};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::error::{class_of, ErrorReport, HybridError, EXIT_OK};
use crate::ledger::TaskRecord;
use crate::repo::Project;
use crate::{land, status, task_id};

/// Default and largest `max_bytes` of `task_log` and `task_diff`.
pub const DEFAULT_MAX_BYTES: u64 = 16 * 1024;
pub const MAX_MAX_BYTES: u64 = 256 * 1024;

/// A tool failure: the message and the CLI exit code it maps to.
#[derive(Debug, Clone, Serialize)]
pub struct ToolError {
    pub error: String,
    pub exit_code: i32,
    /// `bad_input` (2), `conflict` (3, also refusals that protect work), `busy` (4), `failed` (1).
    pub class: &'static str,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub conflicts: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub paths: Vec<String>,
    /// The partial result, when the tool did part of its work (a train, a verify report).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result: Option<Value>,
}

impl ToolError {
    pub fn from_anyhow(e: &anyhow::Error) -> ToolError {
        let r = ErrorReport::of(e);
        ToolError {
            error: r.error,
            exit_code: r.exit_code,
            class: class_of(r.exit_code),
            conflicts: r.conflicts.unwrap_or_default(),
            paths: r.paths.unwrap_or_default(),
            result: None,
        }
    }

    pub fn boxed(e: &anyhow::Error) -> Box<ToolError> {
        Box::new(ToolError::from_anyhow(e))
    }

    pub fn with_code(message: impl Into<String>, exit_code: i32, result: Option<Value>) -> ToolError {
        ToolError {
            error: message.into(),
            exit_code,
            class: class_of(exit_code),
            conflicts: Vec::new(),
            paths: Vec::new(),
            result,
        }
    }
}

fn bad(msg: impl Into<String>) -> anyhow::Error {
    HybridError::Usage(msg.into()).into()
}

fn attempt_of(a: Option<u32>) -> Result<u32> {
    let a = a.unwrap_or(1);
    task_id::validate_attempt(a)?;
    Ok(a)
}

/// The records of a task, or `UnknownTask`.
pub fn records(project: &Project, id: &str) -> Result<Vec<TaskRecord>> {
    task_id::validate(id)?;
    let recs = project.ledger().attempts(id)?;
    if recs.is_empty() {
        return Err(HybridError::UnknownTask(id.to_string()).into());
    }
    Ok(recs)
}

/// One attempt's record, or `UnknownTask`.
pub fn record(project: &Project, id: &str, attempt: u32) -> Result<TaskRecord> {
    records(project, id)?
        .into_iter()
        .find(|r| r.attempt == attempt)
        .ok_or_else(|| HybridError::UnknownTask(format!("{id} attempt {attempt}")).into())
}

fn to_object<T: Serialize>(v: &T) -> Result<Value> {
    Ok(serde_json::to_value(v)?)
}

// ---------------------------------------------------------------- status

#[derive(Debug, Deserialize, JsonSchema)]
pub struct StatusArgs {
    /// Only this task (all its attempts); default: every task.
    pub task: Option<String>,
}

/// `status`: the status report (the ledger plus live facts), with the tasks `dispatch` queued
/// that have not started yet (`state: "queued"`).
pub fn status(project: &Project, a: StatusArgs) -> Result<Value> {
    let queued = super::queue::queued(project)?;
    let only: Vec<String> = a.task.iter().cloned().collect();
    let report = match &a.task {
        // A task `dispatch` queued has no ledger record yet.
        Some(t) if queued.iter().any(|q| &q.id == t) && project.ledger().attempts(t)?.is_empty() => {
            let dispatcher = status::dispatcher_info(project);
            status::StatusReport { tasks: Vec::new(), dispatcher, rebuilt: Default::default(), archived_hidden: 0 }
        }
        _ => status::collect(project, &only)?,
    };
    let mut tasks: Vec<Value> = report.tasks.iter().map(row_json).collect();
    for q in queued {
        if a.task.as_deref().is_none_or(|t| t == q.id) && !report.tasks.iter().any(|r| r.record.id == q.id) {
            tasks.push(json!({ "id": q.id, "attempt": null, "state": "queued", "title": q.title,
                "waits_for": q.waits_for }));
        }
    }
    if let Some(t) = &a.task {
        if tasks.is_empty() {
            return Err(HybridError::UnknownTask(t.clone()).into());
        }
    }
    Ok(json!({ "tasks": tasks, "dispatcher": report.dispatcher }))
}

fn row_json(row: &status::StatusRow) -> Value {
    let r = &row.record;
    json!({
        "id": r.id,
        "attempt": r.attempt,
        "state": r.state.as_str(),
        "title": r.title,
        "runs": r.runs,
        "elapsed_secs": row.elapsed_secs,
        "progress": row.progress,
        "blocked": row.blocked,
        "last_commit": row.last_commit,
        "merge_sha": r.merge_sha,
        "conflicts": r.conflicts,
        "failure": r.failure.as_deref().map(|f| cap_str(f, 4000)),
        "branch": r.branch,
        "target": r.target,
        "worktree": r.worktree,
        "updated": r.updated,
    })
}

fn cap_str(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

// ---------------------------------------------------------------- task_log

/// The run files `task_log` reads.
#[derive(Debug, Clone, Copy, Deserialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum LogFile {
    /// The agent's notebook (`progress.md`).
    Progress,
    /// Why the agent is blocked (`blocked.md`).
    Blocked,
    /// The agent's standard output, verbatim.
    Stdout,
    /// The agent's standard error.
    Stderr,
    /// The verify command's output of that run.
    Verify,
}

impl LogFile {
    pub fn file_name(self) -> &'static str {
        match self {
            LogFile::Progress => crate::agent::PROGRESS_FILE,
            LogFile::Blocked => crate::agent::BLOCKED_FILE,
            LogFile::Stdout => crate::agent::STDOUT_FILE,
            LogFile::Stderr => crate::agent::STDERR_FILE,
            LogFile::Verify => "verify.log",
        }
    }
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct TaskLogArgs {
    pub task: String,
    /// Attempt number (default 1).
    pub attempt: Option<u32>,
    /// Which file (default `progress`).
    pub file: Option<LogFile>,
    /// Byte offset to read from (pass the previous call's `next_offset`); default: the last
    /// `max_bytes` of the file.
    pub offset: Option<u64>,
    /// At most this many bytes (default 16384, at most 262144).
    pub max_bytes: Option<u64>,
}

/// `task_log`: a byte range of one of the latest run's files.
pub fn task_log(project: &Project, a: TaskLogArgs) -> Result<Value> {
    let attempt = attempt_of(a.attempt)?;
    let rec = record(project, &a.task, attempt)?;
    let file = a.file.unwrap_or(LogFile::Progress);
    let max = a.max_bytes.unwrap_or(DEFAULT_MAX_BYTES).clamp(1, MAX_MAX_BYTES);
    let Some(run_dir) = rec.run_dir.clone() else {
        return Ok(json!({ "task": rec.id, "attempt": attempt, "run": null, "file": file.file_name(),
            "exists": false, "size": 0, "offset": 0, "next_offset": 0, "text": "", "more": false }));
    };
    let run = run_dir.file_name().and_then(|n| n.to_str()).and_then(|n| n.parse::<u32>().ok());
    let path = run_dir.join(file.file_name());
    let (exists, size, start, bytes) = match std::fs::File::open(&path) {
        Ok(mut f) => {
            let size = f.metadata()?.len();
            let start = match a.offset {
                Some(o) => o.min(size),
                None => size.saturating_sub(max),
            };
            f.seek(SeekFrom::Start(start))?;
            let mut buf = Vec::new();
            f.take(max).read_to_end(&mut buf).with_context(|| format!("cannot read {}", path.display()))?;
            (true, size, start, buf)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => (false, 0, 0, Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    let next = start + bytes.len() as u64;
    Ok(json!({
        "task": rec.id,
        "attempt": attempt,
        "run": run,
        "state": rec.state.as_str(),
        "file": file.file_name(),
        "exists": exists,
        "size": size,
        "offset": start,
        "next_offset": next,
        "text": String::from_utf8_lossy(&bytes),
        "more": next < size,
    }))
}

// ---------------------------------------------------------------- task_diff

#[derive(Debug, Deserialize, JsonSchema)]
pub struct TaskDiffArgs {
    pub task: String,
    /// Attempt number (default 1).
    pub attempt: Option<u32>,
    /// Cap on the patch text in bytes (default 16384, at most 262144).
    pub max_bytes: Option<u64>,
}

/// `task_diff`: what landing the task now would change on the target: the in-memory merge of
/// the target tip and the task tip (the squash commit's tree), diffed against the target tip.
/// A merge that conflicts is reported (`conflicts`) instead of a patch. The merge is the one every
/// catch-up and landing computes ([`crate::sync::merged_tree`]); no ref moves and no commit is written.
pub fn task_diff(project: &Project, a: TaskDiffArgs) -> Result<Value> {
    let attempt = attempt_of(a.attempt)?;
    let rec = record(project, &a.task, attempt)?;
    let max = a.max_bytes.unwrap_or(DEFAULT_MAX_BYTES).clamp(1, MAX_MAX_BYTES) as usize;
    let repo = &project.repo;
    // The change as it would land: the one computation `git hybrid diff` shows too.
    let d = crate::taskdiff::compute(project, &rec)?;
    let mut out = json!({ "task": rec.id, "attempt": attempt, "state": rec.state.as_str(), "target": rec.target,
        "target_tip": d.target_tip, "tip": d.tip });
    let Some(new) = d.new else {
        out["conflicts"] = json!(d.conflicts);
        out["files"] = json!([]);
        out["patch"] = json!("");
        return Ok(out);
    };
    let files = crate::taskdiff::files(repo, d.old, new)?;
    let (old, tree) = (repo.find_tree(d.old)?, repo.find_tree(new)?);
    let mut diff = repo.diff_tree_to_tree(Some(&old), Some(&tree), None)?;
    diff.find_similar(None)?;
    let mut patch = Vec::new();
    diff.print(git2::DiffFormat::Patch, |_, _, line| {
        let origin = line.origin();
        if matches!(origin, '+' | '-' | ' ') {
            patch.push(origin as u8);
        }
        patch.extend_from_slice(line.content());
        true
    })?;
    let total = patch.len();
    let truncated = total > max;
    patch.truncate(max);
    out["conflicts"] = json!([]);
    out["insertions"] = json!(files.iter().map(|f| f.insertions).sum::<usize>());
    out["deletions"] = json!(files.iter().map(|f| f.deletions).sum::<usize>());
    out["files"] = serde_json::to_value(&files)?;
    out["patch"] = json!(String::from_utf8_lossy(&patch));
    out["patch_bytes"] = json!(total);
    out["truncated"] = json!(truncated);
    Ok(out)
}

// ---------------------------------------------------------------- land, sync

#[derive(Debug, Deserialize, JsonSchema)]
pub struct LandArgs {
    /// The task(s) to land; several land as one train (each its own squash commit, the target
    /// moved once; a conflict of one does not stop the others).
    pub tasks: Vec<String>,
    /// Attempt number of every task (default 1).
    pub attempt: Option<u32>,
    /// Summary line of the squash commit (one task only).
    pub message: Option<String>,
    /// Keep the worktree and branch after landing.
    pub keep: Option<bool>,
}

/// `land`: `land::land_tasks`, the call behind `git hybrid merge`.
pub fn land(project: &Project, a: LandArgs) -> std::result::Result<Value, Box<ToolError>> {
    let run = || -> Result<Vec<(String, Result<land::LandReport>)>> {
        if a.tasks.is_empty() {
            return Err(bad("name at least one task to land"));
        }
        let attempt = attempt_of(a.attempt)?;
        let opts = land::LandOptions {
            target: None,
            message: a.message.clone(),
            keep: a.keep.unwrap_or(false),
            ..Default::default()
        };
        let tasks: Vec<(String, u32)> = a.tasks.iter().map(|t| (t.clone(), attempt)).collect();
        land::land_tasks(project, &tasks, &opts)
    };
    let results = run().map_err(|e| ToolError::boxed(&e))?;
    let mut code = EXIT_OK;
    let mut first_err: Option<Box<ToolError>> = None;
    let mut docs = Vec::new();
    for (task, r) in results {
        match r {
            Ok(report) => docs.push(to_object(&report).map_err(|e| ToolError::boxed(&e))?),
            Err(e) => {
                let t = ToolError::boxed(&e);
                if code == EXIT_OK {
                    code = t.exit_code;
                }
                let status = if t.conflicts.is_empty() { "error" } else { "conflict" };
                docs.push(json!({ "task": task, "status": status, "error": t.error, "exit_code": t.exit_code,
                    "class": t.class, "conflicts": t.conflicts, "paths": t.paths }));
                first_err.get_or_insert(t);
            }
        }
    }
    let result = json!({ "results": docs });
    match first_err {
        None => Ok(result),
        Some(mut t) => {
            if a.tasks.len() > 1 {
                t.error = format!("not every task landed; first problem: {}", t.error);
            }
            t.result = Some(result);
            Err(t)
        }
    }
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct TaskArgs {
    pub task: String,
    /// Attempt number (default 1).
    pub attempt: Option<u32>,
}

/// `sync`: merges the target into the task branch (`git hybrid sync`).
pub fn sync(project: &Project, a: TaskArgs) -> Result<Value> {
    task_id::validate(&a.task)?;
    let attempt = attempt_of(a.attempt)?;
    to_object(&crate::sync::sync_task(project, &a.task, attempt)?)
}

// ---------------------------------------------------------------- clean, labels, verify

#[derive(Debug, Deserialize, JsonSchema)]
pub struct CleanArgs {
    /// The task to clean (all its attempts).
    pub task: Option<String>,
    /// Clean every landed (or empty) task.
    pub merged: Option<bool>,
    /// Clean every task that holds no unlanded work.
    pub all: Option<bool>,
}

/// `clean`: `worktree::clean` without `--force` (work that did not land is never removed here).
pub fn clean(project: &Project, a: CleanArgs) -> std::result::Result<Value, Box<ToolError>> {
    let run = || -> Result<crate::worktree::CleanReport> {
        use crate::worktree::CleanSelector;
        let selector = match (&a.task, a.merged.unwrap_or(false), a.all.unwrap_or(false)) {
            (Some(t), false, false) => {
                task_id::validate(t)?;
                CleanSelector::Task(t.clone())
            }
            (None, true, false) => CleanSelector::Merged,
            (None, false, true) => CleanSelector::All,
            _ => return Err(bad("say which tasks to clean: exactly one of `task`, `merged` or `all`")),
        };
        crate::worktree::clean(project, &selector, false)
    };
    let report = run().map_err(|e| ToolError::boxed(&e))?;
    let value = to_object(&report).map_err(|e| ToolError::boxed(&e))?;
    if report.kept.is_empty() {
        Ok(value)
    } else {
        Err(Box::new(ToolError::with_code(
            "some worktrees were kept because they hold work that did not land",
            3,
            Some(value),
        )))
    }
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct LabelsArgs {
    /// Only these landed tasks (default: every landed task).
    pub tasks: Option<Vec<String>>,
    /// Compute without storing the labels in the ledger.
    pub dry_run: Option<bool>,
}

/// `labels`: diff-similarity labels of landed tasks (`git hybrid label`).
pub fn labels(project: &Project, a: LabelsArgs) -> Result<Value> {
    let only = a.tasks.unwrap_or_default();
    for t in &only {
        task_id::validate(t)?;
    }
    let report = crate::labels::landed::label_landed(project, &only, None, !a.dry_run.unwrap_or(false))?;
    to_object(&report)
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct VerifyArgs {
    /// Commits to check: `A..B`, or one revision. Default: the target's commits its upstream lacks.
    pub range: Option<String>,
    /// Check the target's commits since git-hybrid's first landing on it.
    pub all: Option<bool>,
    /// Check the target's commits that this revision lacks (implies `all`).
    pub since: Option<String>,
    /// Do not flag merge commits.
    pub allow_merges: Option<bool>,
}

/// `verify`: checks the squash landings (`git hybrid verify`); bad commits are a `failed` error
/// carrying the report.
pub fn verify(project: &Project, a: VerifyArgs) -> std::result::Result<Value, Box<ToolError>> {
    let opts = crate::verify::VerifyOptions {
        range: a.range,
        all: a.all.unwrap_or(false),
        since: a.since,
        allow_merges: a.allow_merges.unwrap_or(false),
    };
    let report = crate::verify::verify(project, &opts).map_err(|e| ToolError::boxed(&e))?;
    let value = to_object(&report).map_err(|e| ToolError::boxed(&e))?;
    if report.ok {
        Ok(value)
    } else {
        Err(Box::new(ToolError::with_code(
            format!("verify found {} failure(s) in {}", report.failures, report.range),
            1,
            Some(value),
        )))
    }
}
