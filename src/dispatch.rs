//! The dispatcher: runs a validated plan with agents in parallel and lands what passes.
//!
//! Contract: [`dispatch`] holds the repository's dispatcher lock (`<git-common-dir>/hybrid/
//! dispatch.pid`, a `flock`, so a second dispatcher refuses with the first one's pid and a
//! `kill -9`'d dispatcher leaves nothing to clean up), reads the ledger, and runs every task
//! attempt the [`crate::schedule::Scheduler`] releases. Per attempt:
//!
//! 1. `worktree::start` (attempt N on `hybrid/<id>@N`); an existing worktree is reused as is;
//!    the plan's claims for the task are recorded in its ledger record (`claims`), which is
//!    what the pre-commit hook checks;
//! 2. anything left uncommitted in that worktree (an interrupted run's work) is committed as a
//!    checkpoint: the worktree is git-hybrid's own, never the user's checkout;
//! 3. `sync::sync_task`: a conflict marks the task `conflict` and launches no agent;
//! 4. the prompt is written to the run directory (`runs/<id>/<attempt>/<run>/prompt.md`),
//!    prefixed on a retry or resume by a preamble: the commits already on the branch, why the
//!    previous run did not finish, and the agent's own `progress.md`/`blocked.md` notes;
//! 5. the agent runs (ledger `running`, `runs` + 1, `run_dir`, `agent`), see [`crate::agent`];
//! 6. leftovers are committed as a checkpoint; the branch is synced again and the verify
//!    command runs in the worktree (none configured = pass), output in `verify.log`;
//! 7. pass → `land::land_task`; fail → state `failed` with `failure`, worktree kept, and up to
//!    `retries` more runs in the same worktree with the preamble.
//!
//! Best-of-K: attempts 1..K run on their own branches; the first to pass verify lands (a
//! per-task mutex plus a ledger check make that "exactly one"), every other attempt becomes a
//! `candidate` with its worktree kept. Attempts not yet started when one lands are not started.
//!
//! Crash and resume: landed tasks (`landed`/`empty`) are never redone. An attempt whose record
//! says `running` while this dispatcher holds the lock was interrupted: whatever is left of its
//! agent (same process group, identified by its run directory) is killed, its leftovers are
//! committed as a checkpoint and it resumes in the same worktree with the preamble. Attempts
//! that `failed` or hit a `conflict` in an earlier dispatch get a fresh round of runs (a
//! conflict is re-synced first). Attempts removed with `clean --force` (`abandoned`) are not
//! restarted. SIGINT/SIGTERM stop the agents, mark their attempts `failed` ("stopped") and end
//! the dispatch; the next dispatch resumes them.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};
use git2::Oid;
use serde::Serialize;

use crate::agent::{self, Launch, RunMeta, Timing};
use crate::error::{find_hybrid_error, HybridError};
use crate::ledger::{Ledger, TaskRecord, TaskState};
use crate::lock::FileLock;
use crate::plan::{Plan, PlanTask};
use crate::repo::Project;
use crate::schedule::{DryRunRow, SchedTask, Scheduler, TaskStatus, Unit, UnitEnd};
use crate::worktree::{self, StartOptions};
use crate::{land, sync};

pub mod running_plan;
pub mod tamper;

/// Set by SIGINT/SIGTERM (see [`install_stop_handlers`]) or by [`request_stop`].
static STOP: AtomicBool = AtomicBool::new(false);

/// Asks a running dispatch (in this process) to stop its agents and return.
pub fn request_stop() {
    STOP.store(true, Ordering::SeqCst);
}

extern "C" fn on_stop_signal(_sig: libc::c_int) {
    if STOP.swap(true, Ordering::SeqCst) {
        // Second signal: leave now; the next dispatch ends the agents left behind.
        unsafe { libc::_exit(130) };
    }
}

/// SIGINT/SIGTERM stop the dispatch cleanly; a second one exits at once.
pub fn install_stop_handlers() {
    // SAFETY: the handler only touches an atomic and calls _exit, both async-signal-safe.
    unsafe {
        libc::signal(libc::SIGINT, on_stop_signal as *const () as libc::sighandler_t);
        libc::signal(libc::SIGTERM, on_stop_signal as *const () as libc::sighandler_t);
    }
}

/// The dispatcher lock/pid file of a repository.
pub fn pid_path(project: &Project) -> PathBuf {
    project.state_dir().join("dispatch.pid")
}

/// The background dispatcher's log file.
pub fn log_path(project: &Project) -> PathBuf {
    project.state_dir().join("dispatch.log")
}

/// File in an attempt's folder (`runs/<id>/<attempt>/`) with a supervisor's extra instructions
/// (written by the MCP `retry` tool); the resume preamble includes it.
pub const SUPERVISOR_NOTES_FILE: &str = "supervisor.md";

/// The pid of the live dispatcher of this repository, if one runs. Never writes anything.
pub fn running_dispatcher(project: &Project) -> Option<u32> {
    let path = pid_path(project);
    let file = std::fs::File::open(&path).ok()?;
    match file.try_lock_shared() {
        Ok(()) => {
            let _ = file.unlock();
            None
        }
        Err(std::fs::TryLockError::WouldBlock) => Some(FileLock::holder_pid(&path).unwrap_or(0)),
        Err(_) => None,
    }
}

/// Takes the dispatcher lock or refuses with the holder's pid (exit 4).
pub fn acquire_dispatcher_lock(project: &Project) -> Result<FileLock> {
    let path = pid_path(project);
    // A `status` probe holds a shared lock for microseconds: retry briefly before refusing.
    for _ in 0..20 {
        if let Some(lock) = FileLock::try_acquire(&path)? {
            return Ok(lock);
        }
        if let Some(pid) = running_dispatcher(project) {
            return Err(HybridError::Busy(format!(
                "another dispatcher is running on this repository (pid {pid}); follow it with `git hybrid status --watch`"
            ))
            .into());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let pid = FileLock::holder_pid(&path).unwrap_or(0);
    Err(HybridError::Busy(format!("another dispatcher is running on this repository (pid {pid})")).into())
}

/// What a dispatch is asked to do.
#[derive(Debug, Clone, Default)]
pub struct DispatchOptions {
    /// `--plan FILE` (default: the tasks of `hybrid.toml`).
    pub plan_file: Option<PathBuf>,
    /// `-j N` (default: `[project] concurrency`, else 4).
    pub jobs: Option<usize>,
}

/// Progress reported while dispatching (the CLI turns these into bars or lines).
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// The plan and what already landed.
    /// `already_landed`: tasks landed before this dispatch; `already_empty`: tasks recorded
    /// `empty` before it (their work was already on the target). Neither runs again.
    Plan { tasks: usize, already_landed: usize, already_empty: usize, jobs: usize },
    /// An attempt was chosen by the scheduler.
    Picked { task: String, attempt: u32 },
    /// An attempt entered a step: `worktree`, `sync`, `agent`, `verify`, `land`.
    Phase { task: String, attempt: u32, phase: String, detail: String },
    /// An attempt ended in `state`.
    Finished { task: String, attempt: u32, state: String, detail: String },
    /// A task will not run.
    Skipped { task: String, reason: String },
    /// Something the user should know about the whole dispatch (e.g. no sandbox).
    Warning { message: String },
}

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

/// `--dry-run`: the order tasks would start in and why each waits; changes nothing.
pub fn dry_run(project: &Project, opts: &DispatchOptions) -> Result<(Plan, usize, Vec<DryRunRow>)> {
    let plan = crate::plan::load(project, opts.plan_file.as_deref())?;
    let jobs = opts.jobs.unwrap_or(plan.concurrency).max(1);
    let (sched, _, _) = initial_scheduler(project, &plan, jobs)?;
    Ok((plan.clone(), jobs, sched.simulate()))
}

/// The scheduler, and how many plan tasks were landed and how many empty before this run.
fn initial_scheduler(project: &Project, plan: &Plan, jobs: usize) -> Result<(Scheduler, usize, usize)> {
    let ledger = project.ledger();
    let mut sched_tasks = Vec::new();
    let mut landed = Vec::new();
    let mut skipped = Vec::new();
    let mut empty = 0;
    for (i, t) in plan.tasks.iter().enumerate() {
        let recs = ledger.attempts(&t.id)?;
        let deps = t.depends_on.iter().filter_map(|d| plan.index_of(d)).collect();
        let mut attempts: Vec<u32> = (1..=t.attempts).collect();
        if recs.iter().any(|r| r.state.is_done()) {
            if !recs.iter().any(|r| r.state == TaskState::Landed) {
                empty += 1;
            }
            landed.push(i);
            attempts.clear();
        } else {
            let abandoned: HashSet<u32> =
                recs.iter().filter(|r| r.state == TaskState::Abandoned).map(|r| r.attempt).collect();
            attempts.retain(|a| !abandoned.contains(a));
            if attempts.is_empty() {
                skipped.push(i);
            }
        }
        sched_tasks.push(SchedTask {
            id: t.id.clone(),
            priority: t.priority,
            index: t.index,
            core: t.is_core(),
            claims: t.claims.clone(),
            deps,
            attempts,
        });
    }
    let mut sched = Scheduler::new(sched_tasks, jobs);
    for &i in &landed {
        sched.set_landed(i);
    }
    for &i in &skipped {
        sched.set_skipped(i, "abandoned with `git hybrid clean --force`; not restarted");
    }
    Ok((sched, landed.len() - empty, empty))
}

enum Msg {
    Event(Event),
    Done(Unit, UnitEnd),
}

/// Shared, read-only context of the workers.
struct Ctx<'a> {
    root: PathBuf,
    plan: &'a Plan,
    /// One mutex per task: only one attempt of a task decides to land at a time.
    land_locks: Vec<Mutex<()>>,
    /// The target's remote: tasks are claimed there first ([`crate::remote::claims`]).
    remote: Option<crate::remote::Remote>,
    /// Snapshots what agents must not change, restores it after each run.
    guard: tamper::Guard,
    /// The git-hybrid binary that supervises agent runs.
    supervisor_exe: PathBuf,
    /// Agents run under Landlock.
    sandboxed: bool,
}

/// Runs the plan (see the module contract). `on_event` is called on this thread.
pub fn dispatch(project: &Project, opts: &DispatchOptions, on_event: &mut dyn FnMut(&Event)) -> Result<DispatchReport> {
    project.require_commits()?;
    project.target_ref()?;
    let plan = crate::plan::load(project, opts.plan_file.as_deref())?;
    let jobs = opts.jobs.unwrap_or(plan.concurrency).max(1);
    let _lock = acquire_dispatcher_lock(project)?;
    running_plan::write(project, plan.tasks.iter().map(|t| t.id.clone()).collect());
    let ledger = project.ledger();
    // With a remote, other machines' landings count: bring their records in first.
    let remote = crate::remote::for_target(project, &project.target_branch()?, false)?;
    if remote.is_some() {
        crate::remote::published::fetch(project)?;
    }
    // A landed task whose record was deleted is not redone: git still proves the landing.
    let rebuilt = crate::ledger::rebuild::rebuild(project)?;
    for r in &rebuilt.rebuilt {
        eprintln!("git-hybrid: rebuilt from git: {r}");
    }

    let (mut sched, already, already_empty) = initial_scheduler(project, &plan, jobs)?;
    retire_attempts_of_landed_tasks(&ledger, &plan)?;
    on_event(&Event::Plan { tasks: plan.tasks.len(), already_landed: already, already_empty, jobs });
    let already_landed: Vec<bool> = (0..plan.tasks.len()).map(|i| *sched.status(i) == TaskStatus::Landed).collect();

    harden_self();
    let sandboxed = match plan.sandbox {
        agent::sandbox::Mode::Off => false,
        agent::sandbox::Mode::Landlock if agent::sandbox::probe().is_some() => true,
        agent::sandbox::Mode::Landlock => {
            on_event(&Event::Warning {
                message: "this kernel does not support Landlock: agents run without the sandbox \
                          (set `[agent] sandbox = \"off\"` to silence this)"
                    .into(),
            });
            false
        }
    };
    let ctx = Ctx {
        root: project.root.clone(),
        plan: &plan,
        land_locks: plan.tasks.iter().map(|_| Mutex::new(())).collect(),
        remote,
        guard: tamper::Guard::new(&project.common_dir, &project.root),
        supervisor_exe: std::env::current_exe().context("cannot locate the git-hybrid binary")?,
        sandboxed,
    };
    let (tx, rx) = mpsc::channel::<Msg>();
    let mut reported_skips: HashSet<usize> = HashSet::new();
    std::thread::scope(|scope| {
        let mut active = 0usize;
        loop {
            if !STOP.load(Ordering::SeqCst) {
                let units = sched.start_next();
                let picked_ns = agent::now_ns();
                for unit in units {
                    let task = &plan.tasks[unit.task];
                    on_event(&Event::Picked { task: task.id.clone(), attempt: unit.attempt });
                    let tx = tx.clone();
                    let ctx = &ctx;
                    active += 1;
                    scope.spawn(move || {
                        let emit = |e: Event| {
                            let _ = tx.send(Msg::Event(e));
                        };
                        let end = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                            run_attempt(ctx, task, unit.attempt, picked_ns, &emit)
                        }))
                        .unwrap_or_else(|_| UnitEnd::NotLanded("internal error (panic) in the dispatcher".into()));
                        let _ = tx.send(Msg::Done(unit, end));
                    });
                }
            }
            for i in 0..plan.tasks.len() {
                if let TaskStatus::Skipped(reason) = sched.status(i) {
                    if reported_skips.insert(i) {
                        on_event(&Event::Skipped { task: plan.tasks[i].id.clone(), reason: reason.clone() });
                    }
                }
            }
            if active == 0 {
                break;
            }
            match rx.recv() {
                Ok(Msg::Event(e)) => on_event(&e),
                Ok(Msg::Done(unit, end)) => {
                    active -= 1;
                    sched.finish(unit, end);
                }
                Err(_) => break,
            }
        }
    });
    drop(tx);
    while let Ok(Msg::Event(e)) = rx.try_recv() {
        on_event(&e);
    }
    let interrupted = STOP.load(Ordering::SeqCst);
    let tasks = plan
        .tasks
        .iter()
        .enumerate()
        .map(|(i, t)| outcome(&ledger, t, sched.status(i), already_landed[i]))
        .collect::<Result<Vec<_>>>()?;
    Ok(DispatchReport { tasks, jobs, interrupted })
}

/// When a task has landed, its other attempts that are not running are candidates.
fn retire_attempts_of_landed_tasks(ledger: &Ledger, plan: &Plan) -> Result<()> {
    for t in &plan.tasks {
        let recs = ledger.attempts(&t.id)?;
        if !recs.iter().any(|r| r.state.is_done()) {
            continue;
        }
        for r in recs {
            if matches!(
                r.state,
                TaskState::Running | TaskState::Ready | TaskState::Failed | TaskState::Passed | TaskState::Conflict
            ) {
                if r.state == TaskState::Running {
                    if let Some(dir) = ledger.run_dir(&r) {
                        agent::kill_orphan(&dir);
                    }
                }
                ledger.update(&t.id, r.attempt, |rec| rec.state = TaskState::Candidate)?;
            }
        }
    }
    Ok(())
}

fn outcome(ledger: &Ledger, t: &PlanTask, status: &TaskStatus, already_landed: bool) -> Result<TaskOutcome> {
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

/// One attempt from start to landing (or to why not).
fn run_attempt(ctx: &Ctx, task: &PlanTask, attempt: u32, picked_ns: u128, emit: &dyn Fn(Event)) -> UnitEnd {
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
            let _guard = ctx.land_locks[task.index].lock().unwrap_or_else(|p| p.into_inner());
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

    // What an earlier dispatch left behind. The run directories are the record of what was
    // launched: a run without an end in its meta.json was cut short by a crash, whatever the
    // ledger had time to say.
    let attempt_dir = project.state_dir().join("runs").join(id).join(attempt.to_string());
    let mut previous_failure: Option<String> = None;
    if let Some(rec) = ledger.get(id, attempt)? {
        let last = latest_run(&attempt_dir);
        let cut_short = last.as_ref().and_then(|(_, dir)| {
            let meta = RunMeta::read(dir);
            match &meta {
                Some(m) if m.ended.is_some() => None,
                _ => Some(meta),
            }
        });
        if !rec.state.is_done() && (rec.state == TaskState::Running || cut_short.is_some()) {
            let (n, dir) = last.clone().unwrap_or((rec.runs, attempt_dir.join(rec.runs.to_string())));
            let killed = agent::kill_orphan(&dir);
            if killed {
                remove_stale_index_lock(&rec);
            }
            let ended = RunMeta::read(&dir).and_then(|m| m.ended.map(|_| m.exit_code));
            previous_failure = Some(match ended {
                Some(code) => format!(
                    "the dispatcher was interrupted (crash or kill) after run {n} ended (exit code {}) and before \
                     its result was checked",
                    code.map(|c| c.to_string()).unwrap_or_else(|| "unknown".into())
                ),
                None => format!(
                    "the dispatcher was interrupted (crash or kill) while run {n} was running{}",
                    if killed { "; its leftover processes were stopped" } else { "" }
                ),
            });
        } else if matches!(rec.state, TaskState::Failed | TaskState::Conflict) {
            previous_failure = rec.failure.clone();
        }
    }

    let _claim = match &ctx.remote {
        None => None,
        Some(remote) => {
            let stop = || STOP.load(Ordering::SeqCst);
            let waiting = |c: &crate::remote::claims::Claim| {
                phase("claimed-elsewhere", format!("{} pid {}", c.machine, c.pid));
            };
            match crate::remote::claims::claim_or_wait(&project, remote, id, &stop, &waiting)? {
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
    let branch_tip = project.repo.refname_to_id(&format!("refs/heads/{}", rec.branch)).ok().map(|o| o.to_string());
    let mut fresh = started.created && task.base.is_none() && branch_tip.as_deref() == Some(rec.base.as_str());
    if !started.created {
        checkpoint(&wt, &format!("hybrid: checkpoint of {id} (work left in the worktree by an earlier run)"))?;
    }

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
        if other_attempt_landed(&ledger, id, attempt)? {
            return become_candidate(&ledger, id, attempt);
        }
        runs_here += 1;

        if !std::mem::take(&mut fresh) {
            phase("sync", String::new());
            if let Some(end) = sync_or_conflict(&project, id, attempt)? {
                return Ok(end);
            }
        }
        timing.synced_ns = Some(agent::now_ns());

        // Prompt and run files.
        let rec = ledger.get(id, attempt)?.context("the task record vanished")?;
        let last = latest_run(&attempt_dir);
        let run = rec.runs.max(last.as_ref().map(|(n, _)| *n).unwrap_or(0)) + 1;
        let run_dir = attempt_dir.join(run.to_string());
        std::fs::create_dir_all(&run_dir).with_context(|| format!("cannot create {}", run_dir.display()))?;
        let last_dir = last.map(|(_, d)| d);
        let mut prompt = String::new();
        if run > 1 || previous_failure.is_some() {
            prompt.push_str(&preamble(&project, &rec, last_dir.as_deref(), previous_failure.as_deref(), run));
        }
        prompt.push_str(&task.prompt);
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
        timing.prepared_ns = Some(agent::now_ns());
        phase("agent", format!("run {run}"));
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
            supervisor: Some(ctx.supervisor(&project, &wt, &run_dir)),
        };
        // The ledger's `running` record is written (and flushed to disk) while the agent starts,
        // not before: the flush would otherwise sit on every launch. A crash in between is
        // still recognised on resume, from the run directory (see above), and the run numbers
        // never repeat because they also count the run directories.
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
            let tampered = ctx.guard.end(watch, &run_dir, target_hybrid_toml(&project).as_deref());
            let recorded = recorder.join().unwrap_or_else(|_| Err(anyhow::anyhow!("the ledger writer panicked")));
            (exit, recorded, tampered)
        });
        recorded.context("cannot record the run in the ledger")?;
        if let Some(why) = tamper_note(&tampered, &format!("run {run}"), &run_dir) {
            mark_failed(&ledger, id, attempt, &why)?;
            return not_landed(TaskState::Failed, why);
        }
        let exit = exit?;
        if !exit.success() || exit.meta.interrupted {
            // The run's whole process group is gone (killed on stop, timeout, cancel or exit): a
            // git it was running cannot hold the worktree's index any more.
            remove_index_lock(&wt);
        }
        let checkpointed = checkpoint(&wt, &format!("hybrid: checkpoint after run {run} of {id}"));

        if exit.meta.interrupted || STOP.load(Ordering::SeqCst) {
            let why = format!("the dispatcher was stopped during run {run}");
            mark_failed(&ledger, id, attempt, &why)?;
            return not_landed(TaskState::Failed, why);
        }
        if let Err(e) = checkpointed {
            let why = format!("cannot commit what run {run} left in the worktree: {e:#}");
            mark_failed(&ledger, id, attempt, &why)?;
            run_failed(phase, run, runs_here < max_runs, &why);
            previous_failure = Some(why);
            continue;
        }
        if other_attempt_landed(&ledger, id, attempt)? {
            return become_candidate(&ledger, id, attempt);
        }
        if !exit.success() {
            let why = with_tail(exit.describe(), &run_dir.join(agent::STDERR_FILE));
            mark_failed(&ledger, id, attempt, &why)?;
            run_failed(phase, run, runs_here < max_runs, &why);
            previous_failure = Some(why);
            continue;
        }

        // Verify on the caught-up branch.
        phase("sync", String::new());
        if let Some(end) = sync_or_conflict(&project, id, attempt)? {
            return Ok(end);
        }
        // The gate first: a task that changed a file the verify command runs (or anything else
        // the landing would refuse) fails here, and its copy of that file never runs.
        let gate = crate::gate::GateOptions { verify: task.verify.iter().cloned().collect(), ..Default::default() };
        let rec = ledger.get(id, attempt)?.context("the task record vanished")?;
        if let Some(refused) = crate::gate::precheck(&project, &rec, &gate)? {
            let why = refused.to_string();
            mark_failed(&ledger, id, attempt, &why)?;
            run_failed(phase, run, runs_here < max_runs, &why);
            previous_failure = Some(why);
            continue;
        }
        if let Some(argv) = &task.verify {
            phase("verify", String::new());
            let log = run_dir.join("verify.log");
            let mut vars = agent::hybrid_vars(id, attempt, run, &run_dir, &wt);
            vars.retain(|(k, _)| k != "HYBRID_PROGRESS" && k != "HYBRID_BLOCKED");
            let env = agent::scrubbed_env(&ctx.plan.env_pass, &vars);
            let supervisor = ctx.supervisor(&project, &wt, &run_dir);
            let watch = ctx.guard.begin();
            let v = agent::run_command(argv, &wt, env, &log, task.timeout, &STOP, Some(&supervisor));
            let tampered = ctx.guard.end(watch, &run_dir, target_hybrid_toml(&project).as_deref());
            if let Some(why) = tamper_note(&tampered, "verify", &run_dir) {
                mark_failed(&ledger, id, attempt, &why)?;
                return not_landed(TaskState::Failed, why);
            }
            let v = v?;
            if !v.success() {
                if v.interrupted {
                    let why = "the dispatcher was stopped during verify".to_string();
                    mark_failed(&ledger, id, attempt, &why)?;
                    return not_landed(TaskState::Failed, why);
                }
                let why = with_tail(v.describe("verify", task.timeout), &log);
                mark_failed(&ledger, id, attempt, &why)?;
                run_failed(phase, run, runs_here < max_runs, &why);
                previous_failure = Some(why);
                continue;
            }
        }
        ledger.update(id, attempt, |r| {
            r.state = TaskState::Passed;
            r.failure = None;
        })?;
        verified = true;
    }

    // Land: one attempt per task at a time decides.
    let _guard = ctx.land_locks[task.index].lock().unwrap_or_else(|p| p.into_inner());
    if other_attempt_landed(&ledger, id, attempt)? {
        return become_candidate(&ledger, id, attempt);
    }
    phase("land", String::new());
    let gate = crate::gate::GateOptions { verify: task.verify.iter().cloned().collect(), ..Default::default() };
    let opts = land::LandOptions { message: Some(squash_summary(task)), gate, ..Default::default() };
    match land::land_task(&project, id, attempt, &opts) {
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
                        TaskState::Failed | TaskState::Passed | TaskState::Conflict | TaskState::Ready
                    )
                {
                    ledger.update(id, other.attempt, |r| r.state = TaskState::Candidate)?;
                }
            }
            Ok(AttemptEnd::Landed { state: state.as_str().into(), merge_sha: report.merge_sha })
        }
        Err(e) => {
            if let Some(HybridError::Conflict { paths, .. }) = find_hybrid_error(&e) {
                return record_conflict(&ledger, id, attempt, "landing", paths);
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

impl Ctx<'_> {
    /// The supervisor of a run in `worktree` writing to `run_dir` (sandboxed when enabled).
    fn supervisor(&self, project: &Project, worktree: &Path, run_dir: &Path) -> agent::supervise::Supervisor {
        let sandbox = self
            .sandboxed
            .then(|| agent::sandbox::write_paths(&project.common_dir, worktree, run_dir, &self.plan.allow_write));
        agent::supervise::Supervisor { exe: self.supervisor_exe.clone(), sandbox }
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

/// Makes the dispatcher's own memory and `/proc/<pid>/environ` unreadable to other processes of
/// the same user (agents among them) on Linux.
#[cfg(target_os = "linux")]
fn harden_self() {
    // SAFETY: prctl with integer arguments only.
    unsafe {
        libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0);
    }
}

#[cfg(not(target_os = "linux"))]
fn harden_self() {}

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
        phase("retry", format!("after run {run} failed: {}", crate::status::one_line(why)));
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

/// Commits everything left uncommitted in a task worktree; returns the new commit if any.
///
/// Why the git CLI: `git add -A` must treat ignore rules and deletions exactly like git. The
/// commands are hardened ([`crate::git::command`]): no hooks (the commit is git-hybrid's own,
/// and hooks in the shared git dir may have been planted by an agent), no signing, no filter
/// driver from the repository's config, no secret in their environment.
pub fn checkpoint(worktree: &Path, message: &str) -> Result<Option<String>> {
    let dirty = worktree::dirty_paths(worktree)?;
    if dirty.is_empty() {
        return Ok(None);
    }
    let ident = agent::identity_env(worktree);
    let git = |args: &[&str]| -> Result<std::process::Output> {
        crate::git::command(worktree)
            .args(args)
            .envs(ident.iter().map(|(k, v)| (k, v)))
            .output()
            .with_context(|| format!("cannot run git {}", args.join(" ")))
    };
    let run = |args: &[&str]| -> Result<String> {
        let out = git(args)?;
        if !out.status.success() {
            anyhow::bail!(
                "git {} failed: {}{}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim(),
                String::from_utf8_lossy(&out.stdout).trim()
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    };
    run(&["add", "-A"])?;
    crate::failpoint!("checkpoint::staged");
    let staged = git(&["diff", "--cached", "--quiet", "--no-ext-diff", "--no-textconv"])?;
    if staged.status.success() {
        return Ok(None);
    }
    run(&["commit", "-q", "--no-verify", "-m", message])?;
    crate::failpoint!("checkpoint::committed");
    Ok(Some(run(&["rev-parse", "HEAD"])?))
}

/// The resume preamble: what is already done, why the last run stopped, the agent's notes.
pub fn preamble(
    project: &Project,
    rec: &TaskRecord,
    last_run: Option<&Path>,
    previous_failure: Option<&str>,
    run: u32,
) -> String {
    let mut s = String::new();
    s.push_str(&format!(
        "# Resuming task {} (attempt {}, run {run})\n\nThis worktree already holds work from an earlier run. Do not start over: \
         check what is committed, then continue from where it stopped.\n\n",
        rec.id, rec.attempt
    ));
    s.push_str("## Commits already on the branch (merges of the target left out)\n\n");
    let commits = branch_commits(project, rec).unwrap_or_default();
    if commits.is_empty() {
        s.push_str("(none)\n");
    } else {
        for c in &commits {
            s.push_str(&format!("- {c}\n"));
        }
    }
    s.push_str("\n## Why the previous run did not finish\n\n");
    s.push_str(previous_failure.unwrap_or("(not recorded)"));
    s.push('\n');
    let recorded = crate::ledger::trust::run_dir(&project.state_dir(), rec);
    if let Some(dir) = last_run.or(recorded.as_deref()) {
        for (file, title) in
            [(agent::PROGRESS_FILE, "Your progress notes"), (agent::BLOCKED_FILE, "Your blocked notes")]
        {
            if let Ok(text) = std::fs::read_to_string(dir.join(file)) {
                if !text.trim().is_empty() {
                    s.push_str(&format!("\n## {title} ({file})\n\n{}\n", tail_lines(&text, 60)));
                }
            }
        }
    }
    let notes =
        project.state_dir().join("runs").join(&rec.id).join(rec.attempt.to_string()).join(SUPERVISOR_NOTES_FILE);
    if let Ok(text) = std::fs::read_to_string(notes) {
        if !text.trim().is_empty() {
            s.push_str(&format!("\n## Instructions from the supervisor (newest last)\n\n{}\n", text.trim_end()));
        }
    }
    s.push_str("\n## The task\n\n");
    s
}

/// Removes the `index.lock` a killed agent may have left in its worktree's git folder (the
/// whole process group is gone, so nobody holds it).
fn remove_stale_index_lock(rec: &TaskRecord) {
    if let Some(wt) = rec.worktree.as_deref() {
        remove_index_lock(wt);
    }
}

fn remove_index_lock(wt: &Path) {
    if let Ok(repo) = git2::Repository::open(wt) {
        let lock = repo.path().join("index.lock");
        if lock.exists() {
            let _ = std::fs::remove_file(lock);
        }
    }
}

/// The highest-numbered run directory of an attempt.
fn latest_run(attempt_dir: &Path) -> Option<(u32, PathBuf)> {
    std::fs::read_dir(attempt_dir)
        .ok()?
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok().map(|n| (n, e.path())))
        .max_by_key(|(n, _)| *n)
}

fn tail_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// `short-sha subject` of the commits on the task branch that the target does not have.
fn branch_commits(project: &Project, rec: &TaskRecord) -> Result<Vec<String>> {
    let repo = &project.repo;
    let tip = repo.refname_to_id(&format!("refs/heads/{}", rec.branch))?;
    let mut walk = repo.revwalk()?;
    walk.push(tip)?;
    if let Ok(base) = Oid::from_str(&rec.base) {
        let _ = walk.hide(base);
    }
    if let Ok(t) = project.target_tip() {
        let _ = walk.hide(t);
    }
    let mut out = Vec::new();
    for oid in walk.take(50) {
        let oid = oid?;
        let c = repo.find_commit(oid)?;
        if c.parent_count() > 1 {
            continue; // sync merges of the target say nothing about the task's own work
        }
        let sha = oid.to_string();
        out.push(format!("{} {}", &sha[..10], c.summary().unwrap_or("")));
    }
    Ok(out)
}
