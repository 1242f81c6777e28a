//! One task attempt, from its worktree to its landing (or to why not): steps 1–7 of the
//! contract of [`crate::dispatch`], run on a worker thread of the dispatch.

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;

use anyhow::{Context, Result};

use super::resume::{checkpoint, latest_run, left_behind, preamble, remove_index_lock};
use super::{Ctx, Event, STOP};
use crate::agent::{self, Launch, Timing};
use crate::error::{find_hybrid_error, HybridError};
use crate::ledger::{Ledger, TaskState};
use crate::plan::PlanTask;
use crate::repo::Project;
use crate::schedule::UnitEnd;
use crate::worktree::{self, StartOptions};
use crate::{land, sync};

/// One attempt from start to landing (or to why not).
pub(super) fn run_attempt(ctx: &Ctx, task: &PlanTask, attempt: u32, picked_ns: u128, emit: &dyn Fn(Event)) -> UnitEnd {
    let phase = |p: &str, detail: String| {
        emit(Event::Phase { task: task.id.clone(), attempt, phase: p.to_string(), detail });
    };
    let finished = |state: &str, detail: String| {
        emit(Event::Finished { task: task.id.clone(), attempt, state: state.to_string(), detail });
    };
    let result = attempt_inner(ctx, task, attempt, picked_ns, &phase);
    // An attempt that ends without landing while another attempt of its task has landed is a
    // candidate. Decided under the task's landing mutex, so it cannot race with that landing
    // (which marks the attempts that are not running any more).
    let result = match result {
        Ok(AttemptEnd::NotLanded { state, reason }) if state != "candidate" && task.attempts > 1 => {
            let land_lock = ctx.land_lock(&task.id);
            let _guard = land_lock.lock().unwrap_or_else(|p| p.into_inner());
            match Project::open(&ctx.root).map(|p| p.ledger()) {
                Ok(ledger) if other_attempt_landed(&ledger, &task.id, attempt).unwrap_or(false) => {
                    become_candidate(&ledger, &task.id, attempt)
                }
                _ => Ok(AttemptEnd::NotLanded { state, reason }),
            }
        }
        other => other,
    };
    match result {
        Ok(AttemptEnd::Landed { state, merge_sha }) => {
            finished(&state, merge_sha.unwrap_or_default());
            UnitEnd::Landed
        }
        Ok(AttemptEnd::NotLanded { state, reason }) => {
            finished(&state, reason.clone());
            UnitEnd::NotLanded(reason)
        }
        Err(e) => {
            let reason = format!("{e:#}");
            // Record the error when the attempt has a record; otherwise it stays in the report.
            if let Ok(project) = Project::open(&ctx.root) {
                let _ = project.ledger().update(&task.id, attempt, |r| {
                    if !r.state.is_done() {
                        r.state = TaskState::Failed;
                        r.failure = Some(reason.clone());
                    }
                });
            }
            finished("failed", reason.clone());
            UnitEnd::NotLanded(reason)
        }
    }
}

enum AttemptEnd {
    Landed { state: String, merge_sha: Option<String> },
    NotLanded { state: String, reason: String },
}

fn not_landed(state: TaskState, reason: impl Into<String>) -> Result<AttemptEnd> {
    Ok(AttemptEnd::NotLanded { state: state.as_str().to_string(), reason: reason.into() })
}

/// How one run (agent, checkpoint, sync, gate, verify) ended.
enum RunEnd {
    /// Verify passed (or none is configured): the attempt may land.
    Passed,
    /// The run failed (recorded `failed`); the next run, if any, retries with this reason.
    Retry(String),
    /// The attempt ends here.
    End(AttemptEnd),
}

/// What the steps of one attempt share.
struct Attempt<'a> {
    ctx: &'a Ctx<'a>,
    project: Project,
    ledger: Ledger,
    task: &'a PlanTask,
    id: &'a str,
    attempt: u32,
    /// `runs/<id>/<attempt>/` in the state folder: one numbered folder per run.
    attempt_dir: PathBuf,
    /// The attempt's worktree.
    wt: PathBuf,
    phase: &'a dyn Fn(&str, String),
}

fn attempt_inner(
    ctx: &Ctx,
    task: &PlanTask,
    attempt: u32,
    picked_ns: u128,
    phase: &dyn Fn(&str, String),
) -> Result<AttemptEnd> {
    let project = Project::open(&ctx.root)?;
    let ledger = project.ledger();
    let id = task.id.as_str();
    let mut timing = Timing { picked_ns: Some(picked_ns), ..Timing::default() };
    let attempt_dir = crate::names::attempt_dir(&project.state_dir(), id, attempt);
    let mut previous_failure = left_behind(&ledger, id, attempt, &attempt_dir)?;
    // This dispatch resumes an attempt `git hybrid stop` stopped in an earlier one.
    let stop_request = crate::names::stop_request(&project.state_dir(), id, attempt);
    let _ = std::fs::remove_file(&stop_request);

    let _claim = match &ctx.remote {
        None => None,
        Some(remote) => {
            let stop = || STOP.load(Ordering::SeqCst);
            let waiting = |c: &crate::remote::claims::Claim| {
                phase("claimed-elsewhere", format!("{} pid {}", c.machine, c.pid));
            };
            let scope = crate::remote::file_claims::Scope { paths: task.claims.clone(), core: task.is_core() };
            match crate::remote::claims::claim_or_wait(&project, remote, id, &scope, &stop, &waiting)? {
                crate::remote::claims::ClaimWait::Claimed(guard) => guard,
                crate::remote::claims::ClaimWait::LandedElsewhere(rec) => {
                    return Ok(AttemptEnd::Landed { state: rec.state.as_str().into(), merge_sha: rec.merge_sha });
                }
                crate::remote::claims::ClaimWait::Stopped => {
                    return not_landed(TaskState::Failed, "the dispatcher was stopped");
                }
            }
        }
    };

    phase("worktree", String::new());
    timing.worktree_begin_ns = Some(agent::now_ns());
    let opts = StartOptions {
        id: id.to_string(),
        base: task.base.clone(),
        attempt: Some(attempt),
        title: task.title.clone(),
        claims: Some(task.claims.clone()),
    };
    let started = worktree::start(&project, &opts)?;
    if let Some(wt) = started.record.worktree.as_deref().filter(|w| started.created && w.is_dir()) {
        // A new worktree gets the copies and, before its first agent run, the setup command.
        let _ = std::fs::remove_file(crate::names::setup_done(&project.state_dir(), id, attempt));
        copy_into(&project, wt, phase);
    }
    timing.worktree_ready_ns = Some(agent::now_ns());
    let mut rec = started.record;
    if rec.state.is_done() {
        return Ok(AttemptEnd::Landed { state: rec.state.as_str().into(), merge_sha: rec.merge_sha });
    }
    // The pre-commit hook checks the claims of the plan this dispatch runs, recorded before
    // any agent runs; an attempt resumed under another plan takes that plan's claims.
    if rec.claims.as_ref() != Some(&task.claims) {
        rec = ledger
            .update(id, attempt, |r| r.claims = Some(task.claims.clone()))?
            .context("the task record vanished")?;
    }
    let wt = rec.worktree.clone().context("the task record has no worktree")?;
    // A worktree made just now from the target tip holds nothing to checkpoint and nothing to
    // sync: it cannot conflict, and the sync before verify catches it up anyway.
    let branch_tip = project.repo.refname_to_id(&crate::names::branch_ref(&rec.branch)).ok().map(|o| o.to_string());
    let mut fresh = started.created && task.base.is_none() && branch_tip.as_deref() == Some(rec.base.as_str());
    if !started.created {
        checkpoint(&wt, &format!("hybrid: checkpoint of {id} (work left in the worktree by an earlier run)"))?;
    }

    let a = Attempt { ctx, project, ledger, task, id, attempt, attempt_dir, wt, phase };

    let mut verified = rec.state == TaskState::Passed;
    let max_runs = 1 + task.retries;
    let mut runs_here = 0;
    while !verified {
        if runs_here >= max_runs {
            let reason = previous_failure.clone().unwrap_or_else(|| "failed".into());
            return not_landed(TaskState::Failed, reason);
        }
        if STOP.load(Ordering::SeqCst) {
            return not_landed(TaskState::Failed, "the dispatcher was stopped");
        }
        if stop_request.exists() {
            return a.end_stopped("stopped by `git hybrid stop` before its next run".into());
        }
        if other_attempt_landed(&a.ledger, id, attempt)? {
            return become_candidate(&a.ledger, id, attempt);
        }
        runs_here += 1;

        if !std::mem::take(&mut fresh) {
            phase("sync", String::new());
            if let Some(end) = sync_or_conflict(&a.project, id, attempt)? {
                return Ok(end);
            }
        }
        timing.synced_ns = Some(agent::now_ns());
        match a.run(&mut timing, previous_failure.as_deref(), runs_here < max_runs)? {
            RunEnd::Passed => verified = true,
            RunEnd::Retry(why) => previous_failure = Some(why),
            RunEnd::End(end) => return Ok(end),
        }
    }
    a.land()
}

impl Attempt<'_> {
    /// One run: prompt and run files, the agent, its leftovers committed, then [`Self::verify`].
    fn run(&self, timing: &mut Timing, previous_failure: Option<&str>, retrying: bool) -> Result<RunEnd> {
        let (project, ledger, task, id, attempt, wt, ctx) =
            (&self.project, &self.ledger, self.task, self.id, self.attempt, &self.wt, self.ctx);
        let (run, run_dir) = self.prepare_run(previous_failure)?;
        if let Some(end) = self.setup(run, &run_dir)? {
            return Ok(end);
        }
        timing.prepared_ns = Some(agent::now_ns());
        (self.phase)("agent", format!("run {run}"));
        let launch = Launch {
            task: id.to_string(),
            attempt,
            run,
            argv: task.agent.clone(),
            worktree: wt.clone(),
            repo_root: project.root.clone(),
            run_dir: run_dir.clone(),
            env_pass: ctx.plan.env_pass.clone(),
            timeout: task.timeout,
            patch: task.patch.clone(),
            title: task.title.clone().unwrap_or_else(|| id.to_string()),
            timing: timing.clone(),
            supervisor: Some(ctx.supervisor(project, wt, &run_dir)),
        };
        // The ledger's `running` record is written (and flushed to disk) while the agent starts,
        // not before: the flush would otherwise sit on every launch. A crash in between is
        // still recognised on resume, from the run directory (see `resume::left_behind`), and
        // the run numbers never repeat because they also count the run directories.
        let (exit, recorded, tampered) = std::thread::scope(|s| {
            let recorder = s.spawn(|| {
                ledger.update(id, attempt, |r| {
                    r.state = TaskState::Running;
                    r.runs = run;
                    r.run_dir = Some(run_dir.clone());
                    r.agent = Some(task.agent.clone());
                    r.failure = None;
                    r.conflicts.clear();
                })
            });
            let watch = ctx.guard.begin();
            let exit = agent::launch(&launch, &STOP);
            let tampered = ctx.guard.end(watch, &run_dir, target_hybrid_toml(project).as_deref());
            let recorded = recorder.join().unwrap_or_else(|_| Err(anyhow::anyhow!("the ledger writer panicked")));
            (exit, recorded, tampered)
        });
        recorded.context("cannot record the run in the ledger")?;
        if let Some(why) = tamper_note(&tampered, &format!("run {run}"), &run_dir) {
            return self.end_failed(why);
        }
        let exit = exit?;
        if !exit.success() || exit.meta.interrupted {
            // The run's whole process group is gone (killed on stop, timeout, cancel or exit): a
            // git it was running cannot hold the worktree's index any more.
            remove_index_lock(wt);
        }
        let checkpointed = checkpoint(wt, &format!("hybrid: checkpoint after run {run} of {id}"));

        if crate::names::stop_request(&project.state_dir(), id, attempt).exists() {
            return Ok(RunEnd::End(self.end_stopped(format!("stopped by `git hybrid stop` during run {run}"))?));
        }
        if exit.meta.interrupted || STOP.load(Ordering::SeqCst) {
            return self.end_failed(format!("the dispatcher was stopped during run {run}"));
        }
        if let Err(e) = checkpointed {
            return self.retry(run, retrying, format!("cannot commit what run {run} left in the worktree: {e:#}"));
        }
        if other_attempt_landed(ledger, id, attempt)? {
            return Ok(RunEnd::End(become_candidate(ledger, id, attempt)?));
        }
        if !exit.success() {
            return self.retry(run, retrying, with_tail(exit.describe(), &run_dir.join(agent::STDERR_FILE)));
        }
        self.verify(run, &run_dir, retrying)
    }

    /// The next run's number and folder, with its prompt (behind the resume preamble when it is
    /// not the attempt's first run) and the agent's notebook carried over from the last run.
    fn prepare_run(&self, previous_failure: Option<&str>) -> Result<(u32, PathBuf)> {
        let rec = self.ledger.get(self.id, self.attempt)?.context("the task record vanished")?;
        let last = latest_run(&self.attempt_dir);
        let run = rec.runs.max(last.as_ref().map(|(n, _)| *n).unwrap_or(0)) + 1;
        let run_dir = self.attempt_dir.join(run.to_string());
        std::fs::create_dir_all(&run_dir).with_context(|| format!("cannot create {}", run_dir.display()))?;
        let last_dir = last.map(|(_, d)| d);
        let mut prompt = String::new();
        if run > 1 || previous_failure.is_some() {
            prompt.push_str(&preamble(&self.project, &rec, last_dir.as_deref(), previous_failure, run));
        }
        prompt.push_str(&self.task.prompt);
        if !prompt.ends_with('\n') {
            prompt.push('\n');
        }
        std::fs::write(run_dir.join(agent::PROMPT_FILE), &prompt).context("cannot write prompt.md")?;
        // The agent's notebook carries over between runs of one attempt.
        if let Some(prev) = &last_dir {
            if let Ok(notes) = std::fs::read(prev.join(agent::PROGRESS_FILE)) {
                std::fs::write(run_dir.join(agent::PROGRESS_FILE), notes).context("cannot copy progress.md")?;
            }
        }
        Ok((run, run_dir))
    }

    /// Verify on the caught-up branch: sync, the gate, then the verify command (none = pass).
    fn verify(&self, run: u32, run_dir: &Path, retrying: bool) -> Result<RunEnd> {
        let (project, ledger, task, id, attempt, wt, ctx) =
            (&self.project, &self.ledger, self.task, self.id, self.attempt, &self.wt, self.ctx);
        (self.phase)("sync", String::new());
        if let Some(end) = sync_or_conflict(project, id, attempt)? {
            return Ok(RunEnd::End(end));
        }
        // The gate first: a task that changed a file the verify command runs (or anything else
        // the landing would refuse) fails here, and its copy of that file never runs.
        let gate = crate::gate::GateOptions { verify: task.verify.iter().cloned().collect(), ..Default::default() };
        let rec = ledger.get(id, attempt)?.context("the task record vanished")?;
        if let Some(refused) = crate::gate::precheck(project, &rec, &gate)? {
            return self.retry(run, retrying, refused.to_string());
        }
        if let Some(argv) = &task.verify {
            (self.phase)("verify", String::new());
            let log = run_dir.join("verify.log");
            let mut vars = agent::hybrid_vars(id, attempt, run, run_dir, wt);
            vars.retain(|(k, _)| k != "HYBRID_PROGRESS" && k != "HYBRID_BLOCKED");
            let env = agent::scrubbed_env(&ctx.plan.env_pass, &vars);
            let supervisor = ctx.supervisor(project, wt, run_dir);
            let watch = ctx.guard.begin();
            let v = agent::run_command(argv, wt, env, &log, task.timeout, &STOP, Some(&supervisor));
            let tampered = ctx.guard.end(watch, run_dir, target_hybrid_toml(project).as_deref());
            if let Some(why) = tamper_note(&tampered, "verify", run_dir) {
                return self.end_failed(why);
            }
            let v = v?;
            if !v.success() {
                if v.interrupted {
                    return self.end_failed("the dispatcher was stopped during verify".to_string());
                }
                return self.retry(run, retrying, with_tail(v.describe("verify", task.timeout), &log));
            }
        }
        ledger.update(id, attempt, |r| {
            r.state = TaskState::Passed;
            r.failure = None;
        })?;
        Ok(RunEnd::Passed)
    }

    /// The `[worktree] setup` command, once per worktree before its first agent run (until it
    /// succeeds: `setup.done`), run like verify: scrubbed environment, sandboxed under the
    /// supervisor, in its own process group, with a timeout (`setup_timeout`, default 10
    /// minutes), output in the run folder's `setup.log`. A failure ends the attempt `failed`
    /// (the next dispatch runs it again).
    fn setup(&self, run: u32, run_dir: &Path) -> Result<Option<RunEnd>> {
        let (project, id, attempt, wt, ctx) = (&self.project, self.id, self.attempt, &self.wt, self.ctx);
        let conf = &project.config.config.worktree;
        let Some(cmd) = &conf.setup else { return Ok(None) };
        let done = crate::names::setup_done(&project.state_dir(), id, attempt);
        if done.exists() {
            return Ok(None);
        }
        (self.phase)("setup", String::new());
        let timeout = conf
            .setup_timeout
            .as_ref()
            .and_then(|t| t.to_duration().ok())
            .unwrap_or(std::time::Duration::from_secs(600));
        let log = run_dir.join("setup.log");
        let mut vars = agent::hybrid_vars(id, attempt, run, run_dir, wt);
        vars.retain(|(k, _)| k != "HYBRID_PROGRESS" && k != "HYBRID_BLOCKED");
        let env = agent::scrubbed_env(&ctx.plan.env_pass, &vars);
        let supervisor = ctx.supervisor(project, wt, run_dir);
        let watch = ctx.guard.begin();
        let v = agent::run_command(&cmd.argv(), wt, env, &log, timeout, &STOP, Some(&supervisor));
        let tampered = ctx.guard.end(watch, run_dir, target_hybrid_toml(project).as_deref());
        if let Some(why) = tamper_note(&tampered, "the setup command", run_dir) {
            return self.end_failed(why).map(Some);
        }
        let v = v?;
        if !v.success() {
            let why = if v.interrupted {
                "the dispatcher was stopped during the [worktree] setup command".to_string()
            } else {
                with_tail(v.describe("the [worktree] setup command", timeout), &log)
            };
            return self.end_failed(why).map(Some);
        }
        std::fs::write(&done, format!("{}\n", crate::fsutil::now_rfc3339())).context("cannot write setup.done")?;
        Ok(None)
    }

    /// Records a failed run (`failed`, its reason) and lets the next run retry.
    fn retry(&self, run: u32, retrying: bool, why: String) -> Result<RunEnd> {
        mark_failed(&self.ledger, self.id, self.attempt, &why)?;
        run_failed(self.phase, run, retrying, &why);
        Ok(RunEnd::Retry(why))
    }

    /// Records the attempt `failed` with `why` and ends it (no retry).
    fn end_failed(&self, why: String) -> Result<RunEnd> {
        mark_failed(&self.ledger, self.id, self.attempt, &why)?;
        Ok(RunEnd::End(not_landed(TaskState::Failed, why)?))
    }

    /// Records the attempt `stopped` with `why` and ends it: `git hybrid stop` asked, and the
    /// next dispatch resumes it.
    fn end_stopped(&self, why: String) -> Result<AttemptEnd> {
        self.ledger.update(self.id, self.attempt, |r| {
            r.state = TaskState::Stopped;
            r.failure = Some(why.clone());
        })?;
        not_landed(TaskState::Stopped, why)
    }

    /// Lands the verified attempt; one attempt per task at a time decides.
    fn land(&self) -> Result<AttemptEnd> {
        let (project, ledger, task, id, attempt) = (&self.project, &self.ledger, self.task, self.id, self.attempt);
        let land_lock = self.ctx.land_lock(&task.id);
        let _guard = land_lock.lock().unwrap_or_else(|p| p.into_inner());
        if other_attempt_landed(ledger, id, attempt)? {
            return become_candidate(ledger, id, attempt);
        }
        (self.phase)("land", String::new());
        let gate = crate::gate::GateOptions { verify: task.verify.iter().cloned().collect(), ..Default::default() };
        let opts = land::LandOptions { message: Some(squash_summary(task)), gate, ..Default::default() };
        match land::land_task(project, id, attempt, &opts) {
            Ok(report) => {
                let state = if report.status == "empty" { TaskState::Empty } else { TaskState::Landed };
                // The land module records the landing; make sure the state says so.
                ledger.update(id, attempt, |r| {
                    if !r.state.is_done() {
                        r.state = state;
                        r.merge_sha = report.merge_sha.clone();
                    }
                })?;
                for other in ledger.attempts(id)? {
                    if other.attempt != attempt
                        && matches!(
                            other.state,
                            TaskState::Failed
                                | TaskState::Stopped
                                | TaskState::Passed
                                | TaskState::Conflict
                                | TaskState::Ready
                        )
                    {
                        ledger.update(id, other.attempt, |r| r.state = TaskState::Candidate)?;
                    }
                }
                Ok(AttemptEnd::Landed { state: state.as_str().into(), merge_sha: report.merge_sha })
            }
            Err(e) => {
                if let Some(HybridError::Conflict { paths, .. }) = find_hybrid_error(&e) {
                    return record_conflict(ledger, id, attempt, "landing", paths);
                }
                if let Some(refused @ HybridError::Refused { .. }) = find_hybrid_error(&e) {
                    // The gate recorded the task `failed` with the reason; no retry lands it as is.
                    return not_landed(TaskState::Failed, refused.to_string());
                }
                // Verify passed; the landing itself was refused (e.g. local changes in the way).
                let why = format!("verify passed but landing failed: {e:#}");
                ledger.update(id, attempt, |r| {
                    if !r.state.is_done() {
                        r.state = TaskState::Passed;
                        r.failure = Some(why.clone());
                    }
                })?;
                not_landed(TaskState::Passed, why)
            }
        }
    }
}

/// The failure note of a run that changed what it must not (`None` when nothing was changed).
fn tamper_note(tampered: &[String], what: &str, run_dir: &Path) -> Option<String> {
    if tampered.is_empty() {
        return None;
    }
    Some(format!(
        "tampering: {what} changed files outside its worktree that agents must not change: {}; they were \
         restored (the changed versions are kept in {})",
        tampered.join(", "),
        run_dir.join("tampered").display()
    ))
}

/// The target tip's `hybrid.toml` (a landing may write it into the main checkout mid-run).
fn target_hybrid_toml(project: &Project) -> Option<Vec<u8>> {
    let tip = project.target_tip().ok()?;
    let tree = project.repo.find_commit(tip).ok()?.tree().ok()?;
    let entry = tree.get_path(Path::new(crate::config::FILE_NAME)).ok()?;
    Some(project.repo.find_blob(entry.id()).ok()?.content().to_vec())
}

/// Syncs the task branch; `Some(end)` when it conflicts (state `conflict`, nothing launched).
fn sync_or_conflict(project: &Project, id: &str, attempt: u32) -> Result<Option<AttemptEnd>> {
    match sync::sync_task(project, id, attempt) {
        Ok(_) => Ok(None),
        Err(e) => {
            if let Some(HybridError::Conflict { paths, .. }) = find_hybrid_error(&e) {
                return record_conflict(&project.ledger(), id, attempt, "sync", paths).map(Some);
            }
            Err(e.context(format!("cannot sync {id} with the target")))
        }
    }
}

/// Marks an attempt `conflict` with the paths `step` ("sync" or "landing") reported.
fn record_conflict(ledger: &Ledger, id: &str, attempt: u32, step: &str, paths: &[String]) -> Result<AttemptEnd> {
    let why = format!("{step} conflicts in {}", paths.join(", "));
    ledger.update(id, attempt, |r| {
        r.state = TaskState::Conflict;
        r.conflicts = paths.to_vec();
        r.failure = Some(why.clone());
    })?;
    not_landed(TaskState::Conflict, why)
}

/// `[worktree] copy` into a worktree just made; what was copied or skipped goes to the
/// dispatch log as a `copy` phase.
fn copy_into(project: &Project, wt: &Path, phase: &dyn Fn(&str, String)) {
    let entries = &project.config.config.worktree.copy;
    if entries.is_empty() {
        return;
    }
    let report = crate::seed::copy_files(&project.root, wt, entries);
    let mut detail = format!("{} file(s) copied", report.copied.len());
    for (path, why) in &report.skipped {
        detail.push_str(&format!("; {path} not copied: {why}"));
    }
    phase("copy", detail);
}

fn mark_failed(ledger: &Ledger, id: &str, attempt: u32, why: &str) -> Result<()> {
    ledger.update(id, attempt, |r| {
        r.state = TaskState::Failed;
        r.failure = Some(why.to_string());
    })?;
    Ok(())
}

fn other_attempt_landed(ledger: &Ledger, id: &str, attempt: u32) -> Result<bool> {
    Ok(ledger.attempts(id)?.iter().any(|r| r.attempt != attempt && r.state.is_done()))
}

fn become_candidate(ledger: &Ledger, id: &str, attempt: u32) -> Result<AttemptEnd> {
    ledger.update(id, attempt, |r| r.state = TaskState::Candidate)?;
    not_landed(TaskState::Candidate, "another attempt landed; kept as a candidate")
}

/// The summary line of a dispatched task's squash commit: its title, else its prompt's first
/// line (not the subjects of the checkpoint commits git-hybrid made for it).
fn squash_summary(task: &PlanTask) -> String {
    if let Some(t) = task.title.as_deref().map(str::trim).filter(|t| !t.is_empty()) {
        return t.to_string();
    }
    let line = task.prompt.lines().map(|l| l.trim().trim_start_matches('#').trim()).find(|l| !l.is_empty());
    let line = line.unwrap_or(task.id.as_str());
    if line.chars().count() <= 72 {
        return line.to_string();
    }
    let cut: String = line.chars().take(69).collect();
    format!("{}...", cut.trim_end())
}

/// Reports a failed run as a phase only when another run follows: the last failure is the
/// attempt's result, which the `Finished` event reports (once).
fn run_failed(phase: &dyn Fn(&str, String), run: u32, retrying: bool, why: &str) {
    if retrying {
        phase("retry", format!("after run {run} failed: {}", crate::ledger::one_line(why)));
    }
}

/// A failure description with the last lines of a log.
fn with_tail(what: String, log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    if lines.is_empty() {
        return what;
    }
    let tail = lines[lines.len().saturating_sub(5)..].join("\n");
    format!("{what}; last output:\n{tail}")
}
