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
//! A plan may grow while it runs ([`dispatch_growing`], the MCP runner's round): tasks that join
//! are scheduled by the same rules as if they had been in the plan from the start, after its
//! tasks at equal priority.
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
//!
//! Files: this one runs the plan (the scheduler loop, worker threads, stop signals);
//! `attempt.rs` one attempt's steps; `resume.rs` what an interrupted run left behind and the
//! resume preamble; `report.rs` the outcome table and exit code; `process.rs` the dispatcher
//! lock, pid file, log and `--detach`; `running_plan.rs` the running plan's task ids for
//! `status`; `tamper.rs` what agents must not change.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde::Serialize;

use crate::agent;
use crate::ledger::{Ledger, TaskState};
use crate::plan::{Plan, PlanTask};
use crate::repo::Project;
use crate::schedule::{DryRunRow, SchedTask, Scheduler, TaskStatus, Unit, UnitEnd};

mod attempt;
mod process;
mod report;
mod resume;
pub mod running_plan;
pub mod tamper;

pub use process::{acquire_dispatcher_lock, detach, log_path, pid_path, running_dispatcher, Detached};
pub use report::{DispatchReport, TaskOutcome};
pub use resume::{checkpoint, preamble, SUPERVISOR_NOTES_FILE};

/// Set by SIGINT/SIGTERM (see [`install_stop_handlers`]) or by [`request_stop`].
static STOP: AtomicBool = AtomicBool::new(false);

/// Asks a running dispatch (in this process) to stop its agents and return.
pub fn request_stop() {
    STOP.store(true, Ordering::SeqCst);
}

#[allow(unsafe_code)]
extern "C" fn on_stop_signal(_sig: libc::c_int) {
    if STOP.swap(true, Ordering::SeqCst) {
        // Second signal: leave now; the next dispatch ends the agents left behind.
        // SAFETY: _exit is async-signal-safe and takes no pointers.
        unsafe { libc::_exit(130) };
    }
}

/// SIGINT/SIGTERM stop the dispatch cleanly; a second one exits at once. Through `libc`:
/// installing a handler is `unsafe` in every crate (rustix offers none outside its `runtime`
/// feature), and `_exit` in the handler has no safe equivalent (`std::process::exit` is not
/// async-signal-safe).
#[allow(unsafe_code)]
pub fn install_stop_handlers() {
    // SAFETY: the handler only touches an atomic and calls _exit, both async-signal-safe.
    unsafe {
        libc::signal(libc::SIGINT, on_stop_signal as *const () as libc::sighandler_t);
        libc::signal(libc::SIGTERM, on_stop_signal as *const () as libc::sighandler_t);
    }
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
    /// Tasks joined the running plan ([`dispatch_growing`]).
    Added { tasks: Vec<String> },
    /// Something the user should know about the whole dispatch (e.g. no sandbox).
    Warning { message: String },
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
    let mut entries = Vec::new();
    for t in &plan.tasks {
        let deps = t.depends_on.iter().filter_map(|d| plan.index_of(d)).collect();
        entries.push(sched_entry(&ledger, t, deps)?);
    }
    let (sched_tasks, starts): (Vec<SchedTask>, Vec<Start>) = entries.into_iter().unzip();
    let mut sched = Scheduler::new(sched_tasks, jobs);
    for (i, start) in starts.iter().enumerate() {
        start.apply(&mut sched, i);
    }
    let landed = starts.iter().filter(|s| matches!(s, Start::Landed { .. })).count();
    let empty = starts.iter().filter(|s| matches!(s, Start::Landed { empty: true })).count();
    Ok((sched, landed - empty, empty))
}

/// How a plan task enters the schedule.
enum Start {
    /// Attempts remain to run.
    Run,
    /// Landed (or empty) before: it does not run again, dependents may start.
    Landed { empty: bool },
    /// Every attempt was abandoned with `clean --force`.
    Abandoned,
}

impl Start {
    fn apply(&self, sched: &mut Scheduler, i: usize) {
        match self {
            Start::Run => {}
            Start::Landed { .. } => sched.set_landed(i),
            Start::Abandoned => sched.set_skipped(i, "abandoned with `git hybrid clean --force`; not restarted"),
        }
    }
}

/// A plan task as the scheduler sees it (`deps`: the indices of its dependencies), from the ledger.
fn sched_entry(ledger: &Ledger, t: &PlanTask, deps: Vec<usize>) -> Result<(SchedTask, Start)> {
    let recs = ledger.attempts(&t.id)?;
    let mut attempts: Vec<u32> = (1..=t.attempts).collect();
    let start = if recs.iter().any(|r| r.state.is_done()) {
        attempts.clear();
        Start::Landed { empty: !recs.iter().any(|r| r.state == TaskState::Landed) }
    } else {
        let abandoned: HashSet<u32> =
            recs.iter().filter(|r| r.state == TaskState::Abandoned).map(|r| r.attempt).collect();
        attempts.retain(|a| !abandoned.contains(a));
        if attempts.is_empty() {
            Start::Abandoned
        } else {
            Start::Run
        }
    };
    let st = SchedTask {
        id: t.id.clone(),
        priority: t.priority,
        index: t.index,
        core: t.is_core(),
        claims: t.claims.clone(),
        deps,
        attempts,
    };
    Ok((st, start))
}

enum Msg {
    Event(Event),
    Done(Unit, UnitEnd),
}

/// Shared, read-only context of the workers.
struct Ctx<'a> {
    root: PathBuf,
    plan: &'a Plan,
    /// One mutex per task id: only one attempt of a task decides to land at a time.
    land_locks: Mutex<HashMap<String, Arc<Mutex<()>>>>,
    /// The target's remote: tasks are claimed there first ([`crate::remote::claims`]).
    remote: Option<crate::remote::Remote>,
    /// Snapshots what agents must not change, restores it after each run.
    guard: tamper::Guard,
    /// The git-hybrid binary that supervises agent runs.
    supervisor_exe: PathBuf,
    /// Agents run under Landlock.
    sandboxed: bool,
}

impl Ctx<'_> {
    /// The landing mutex of task `id`.
    fn land_lock(&self, id: &str) -> Arc<Mutex<()>> {
        let mut locks = self.land_locks.lock().unwrap_or_else(|p| p.into_inner());
        locks.entry(id.to_string()).or_default().clone()
    }

    /// The supervisor of a run in `worktree` writing to `run_dir` (sandboxed when enabled).
    fn supervisor(&self, project: &Project, worktree: &Path, run_dir: &Path) -> agent::supervise::Supervisor {
        let sandbox = self
            .sandboxed
            .then(|| agent::sandbox::write_paths(&project.common_dir, worktree, run_dir, &self.plan.allow_write));
        agent::supervise::Supervisor { exe: self.supervisor_exe.clone(), sandbox }
    }
}

/// Runs the plan (see the module contract). `on_event` is called on this thread.
pub fn dispatch(project: &Project, opts: &DispatchOptions, on_event: &mut dyn FnMut(&Event)) -> Result<DispatchReport> {
    run_plan(project, opts, on_event, None)
}

/// How often [`dispatch_growing`] asks for more tasks while the plan runs.
pub const GROW_POLL: Duration = Duration::from_millis(500);

/// [`dispatch`] of a plan that may grow while it runs (the MCP runner's round). Every
/// [`GROW_POLL`] while attempts run (never after a stop), `grow` may return the plan again with
/// more tasks: the tasks whose ids the running plan lacks join it (announced by
/// [`Event::Added`]) and are scheduled by the same rules (dependencies, claims, core, `-j`),
/// after the running plan's tasks at equal priority. Tasks of the running plan missing from it
/// stay; its settings (concurrency, sandbox, `env_pass`) are those of the plan given at the start.
pub fn dispatch_growing(
    project: &Project,
    opts: &DispatchOptions,
    on_event: &mut dyn FnMut(&Event),
    grow: &mut dyn FnMut() -> Option<Plan>,
) -> Result<DispatchReport> {
    run_plan(project, opts, on_event, Some(grow))
}

fn run_plan(
    project: &Project,
    opts: &DispatchOptions,
    on_event: &mut dyn FnMut(&Event),
    mut grow: Option<&mut dyn FnMut() -> Option<Plan>>,
) -> Result<DispatchReport> {
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
    for t in &plan.tasks {
        retire_attempts_of_landed_task(&ledger, t)?;
    }
    on_event(&Event::Plan { tasks: plan.tasks.len(), already_landed: already, already_empty, jobs });
    let mut already_landed: Vec<bool> = (0..plan.tasks.len()).map(|i| *sched.status(i) == TaskStatus::Landed).collect();
    // The running plan's tasks; workers hold their own reference, so the list may grow.
    let mut tasks: Vec<Arc<PlanTask>> = plan.tasks.iter().cloned().map(Arc::new).collect();

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
        land_locks: Mutex::new(HashMap::new()),
        remote,
        guard: tamper::Guard::new(&project.common_dir, &project.root),
        supervisor_exe: std::env::current_exe().context("cannot locate the git-hybrid binary")?,
        sandboxed,
    };
    let (tx, rx) = mpsc::channel::<Msg>();
    let mut reported_skips: HashSet<usize> = HashSet::new();
    std::thread::scope(|scope| {
        let mut active = 0usize;
        let mut grown_at = Instant::now();
        loop {
            if !STOP.load(Ordering::SeqCst) {
                let units = sched.start_next();
                let picked_ns = agent::now_ns();
                for unit in units {
                    let task = tasks[unit.task].clone();
                    on_event(&Event::Picked { task: task.id.clone(), attempt: unit.attempt });
                    let tx = tx.clone();
                    let ctx = &ctx;
                    active += 1;
                    scope.spawn(move || {
                        let emit = |e: Event| {
                            let _ = tx.send(Msg::Event(e));
                        };
                        let end = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                            attempt::run_attempt(ctx, &task, unit.attempt, picked_ns, &emit)
                        }))
                        .unwrap_or_else(|_| UnitEnd::NotLanded("internal error (panic) in the dispatcher".into()));
                        let _ = tx.send(Msg::Done(unit, end));
                    });
                }
            }
            for (i, task) in tasks.iter().enumerate() {
                if let TaskStatus::Skipped(reason) = sched.status(i) {
                    if reported_skips.insert(i) {
                        on_event(&Event::Skipped { task: task.id.clone(), reason: reason.clone() });
                    }
                }
            }
            if active == 0 {
                break;
            }
            let received = match grow {
                Some(_) => rx.recv_timeout(GROW_POLL.saturating_sub(grown_at.elapsed())),
                None => rx.recv().map_err(|_| RecvTimeoutError::Disconnected),
            };
            match received {
                Ok(Msg::Event(e)) => on_event(&e),
                Ok(Msg::Done(unit, end)) => {
                    active -= 1;
                    sched.finish(unit, end);
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
            if let Some(grow) = grow.as_mut() {
                if grown_at.elapsed() >= GROW_POLL && !STOP.load(Ordering::SeqCst) {
                    grown_at = Instant::now();
                    if let Some(more) = grow() {
                        match add_tasks(&ledger, &mut sched, &mut tasks, more) {
                            Ok(added) if added.is_empty() => {}
                            Ok(added) => {
                                already_landed
                                    .extend(added.iter().map(|(i, _)| *sched.status(*i) == TaskStatus::Landed));
                                running_plan::write(project, tasks.iter().map(|t| t.id.clone()).collect());
                                on_event(&Event::Added { tasks: added.into_iter().map(|(_, id)| id).collect() });
                            }
                            Err(e) => on_event(&Event::Warning {
                                message: format!("cannot add the tasks queued meanwhile (they run next time): {e:#}"),
                            }),
                        }
                    }
                }
            }
        }
    });
    drop(tx);
    while let Ok(Msg::Event(e)) = rx.try_recv() {
        on_event(&e);
    }
    let interrupted = STOP.load(Ordering::SeqCst);
    let outcomes = tasks
        .iter()
        .enumerate()
        .map(|(i, t)| report::outcome(&ledger, t, sched.status(i), already_landed[i]))
        .collect::<Result<Vec<_>>>()?;
    Ok(DispatchReport { tasks: outcomes, jobs, interrupted })
}

/// Adds the tasks of `more` whose ids the running plan lacks, in `more`'s order, to `tasks` and
/// the schedule; returns their indices and ids. Reads everything before it changes anything, so
/// an error leaves both as they were.
fn add_tasks(
    ledger: &Ledger,
    sched: &mut Scheduler,
    tasks: &mut Vec<Arc<PlanTask>>,
    more: Plan,
) -> Result<Vec<(usize, String)>> {
    let known: HashSet<String> = tasks.iter().map(|t| t.id.clone()).collect();
    let mut new: Vec<PlanTask> = more.tasks.into_iter().filter(|t| !known.contains(&t.id)).collect();
    let first = tasks.len();
    for (k, t) in new.iter_mut().enumerate() {
        t.index = first + k;
    }
    let index_of = |id: &str| {
        tasks.iter().position(|t| t.id == id).or_else(|| new.iter().position(|t| t.id == id).map(|k| first + k))
    };
    let mut entries = Vec::new();
    for t in &new {
        let deps = t.depends_on.iter().filter_map(|d| index_of(d)).collect();
        entries.push(sched_entry(ledger, t, deps)?);
    }
    for t in &new {
        retire_attempts_of_landed_task(ledger, t)?;
    }
    let mut added = Vec::new();
    for (t, (st, start)) in new.into_iter().zip(entries) {
        let i = sched.add(st);
        start.apply(sched, i);
        added.push((i, t.id.clone()));
        tasks.push(Arc::new(t));
    }
    Ok(added)
}

/// When a task has landed, its other attempts that are not running are candidates.
fn retire_attempts_of_landed_task(ledger: &Ledger, t: &PlanTask) -> Result<()> {
    let recs = ledger.attempts(&t.id)?;
    if !recs.iter().any(|r| r.state.is_done()) {
        return Ok(());
    }
    for r in recs {
        if matches!(
            r.state,
            TaskState::Running
                | TaskState::Ready
                | TaskState::Failed
                | TaskState::Stopped
                | TaskState::Passed
                | TaskState::Conflict
        ) {
            if r.state == TaskState::Running {
                if let Some(dir) = ledger.run_dir(&r) {
                    agent::kill_orphan(&dir);
                }
            }
            ledger.update(&t.id, r.attempt, |rec| rec.state = TaskState::Candidate)?;
        }
    }
    Ok(())
}

/// Makes the dispatcher's own memory and `/proc/<pid>/environ` unreadable to other processes of
/// the same user (agents among them) on Linux.
#[cfg(target_os = "linux")]
fn harden_self() {
    let _ = rustix::process::set_dumpable_behavior(rustix::process::DumpableBehavior::NotDumpable);
}

#[cfg(not(target_os = "linux"))]
fn harden_self() {}
