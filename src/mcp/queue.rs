//! Tasks dispatched through MCP, and the background runner that dispatches them.
//!
//! Contract: the tasks the `dispatch` tool accepted live in `<git-common-dir>/hybrid/mcp/
//! tasks.json` (`{"tasks": [...], "wanted": [ids], "retried": [ids]}`, written atomically under
//! `mcp/tasks.lock`);
//! `mcp/plan.toml` is the same tasks as a readable plan. A new batch is validated together with
//! the tasks already there exactly as a plan file ([`crate::plan::validate`], errors exit 2
//! located in `plan.toml`), so ids are unique, dependencies exist and have no cycle, agents can
//! run. An id the ledger already knows from elsewhere is refused.
//!
//! Agents: a task's `agent` may only be omitted (the `[agent] command` of the trusted
//! `hybrid.toml`), equal to that command, or a built-in (`builtin:patch`, `builtin:script
//! <path in the repo> [args]`, which run like any agent). An MCP client never chooses a host
//! command.
//!
//! Running: `wanted` lists the tasks to run. The runner (`git hybrid mcp --run-queue`, started
//! detached by [`ensure_runner`] and holding `mcp/runner.lock` for its life) repeats rounds:
//! a round is a plan of the wanted tasks whose dependencies are landed or wanted too (plus
//! those dependencies), run by [`crate::dispatch::dispatch`] (the same dispatcher as
//! `git hybrid dispatch`, under its lock: while another dispatcher runs, the round waits).
//! After a round the tasks that ran leave `wanted` (failed ones stay failed until `retry`; one
//! retried while its round still ran stays, marked in `retried` until a round takes it); one
//! that did not start because a dependency failed stays there, waiting (`status` shows it
//! `queued` with `waits_for`) until the dependency is retried and lands. The runner
//! leaves only when no wanted task can run, deciding so under the store lock; [`ensure_runner`]
//! adds to `wanted` under the same lock and starts a runner when none holds the runner lock,
//! so a task is never stranded. While a round runs, the runner looks at the queue every
//! [`dispatch::GROW_POLL`] and adds wanted tasks that can run (with their dependencies) to the
//! running round ([`dispatch::dispatch_growing`]): they start as soon as the scheduler's rules
//! allow, not after the round; ones queued after the round's last attempt ended run in the next.

use std::collections::{BTreeSet, HashMap};
use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::dispatch::{self, DispatchOptions, Event};
use crate::error::{find_hybrid_error, HybridError};
use crate::fsutil::write_atomic;
use crate::ledger::TaskState;
use crate::lock::FileLock;
use crate::repo::Project;
use crate::task_id;

/// File in an attempt's run folder (`runs/<id>/<attempt>/`) holding the supervisor's extra
/// instructions; the dispatcher's resume preamble includes it.
pub use crate::dispatch::SUPERVISOR_NOTES_FILE;

/// A task as the `dispatch` tool takes it (the `[[task]]` keys an MCP client may set).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NewTask {
    /// Task id: `[A-Za-z0-9][A-Za-z0-9._-]{0,63}`, not ending in `.lock`, no `..`.
    pub id: String,
    /// What the agent should do.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prompt: Option<String>,
    /// One-line title (also the squash commit's summary).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// `plugin` (claims `<plugin_root>/<plugin>/**`) or `core` (needs `touches`; one at a time).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shape: Option<ShapeArg>,
    /// The plugin folder name, with shape `plugin`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub plugin: Option<String>,
    /// Globs of the paths the task may change (git-style).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub touches: Vec<String>,
    /// Ids of tasks (dispatched through MCP) that must land first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub depends_on: Vec<String>,
    /// Higher starts first.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub priority: Option<i64>,
    /// The agent argv: omit for `[agent] command` of hybrid.toml; otherwise exactly that
    /// command, `["builtin:patch"]` or `["builtin:script", "<path in the repo>", args...]`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub agent: Option<Vec<String>>,
    /// Best-of-K: how many attempts run (1..=16).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attempts: Option<u32>,
    /// Patch file (path in the repository) for `builtin:patch`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub patch: Option<String>,
}

/// Task shapes (see `hybrid.toml`).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ShapeArg {
    Plugin,
    Core,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Store {
    tasks: Vec<NewTask>,
    wanted: Vec<String>,
    /// Wanted tasks retried after an attempt of theirs ended, not yet taken by a round: the end
    /// of the round they ran in (which may still run other tasks) keeps them queued.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    retried: Vec<String>,
}

#[derive(Serialize)]
struct TomlPlan<'a> {
    task: Vec<&'a NewTask>,
}

struct Paths {
    dir: PathBuf,
}

impl Paths {
    fn of(project: &Project) -> Paths {
        Paths { dir: crate::names::mcp_dir(&project.state_dir()) }
    }
    fn store(&self) -> PathBuf {
        self.dir.join("tasks.json")
    }
    fn lock(&self) -> PathBuf {
        self.dir.join("tasks.lock")
    }
    fn runner(&self) -> PathBuf {
        self.dir.join("runner.lock")
    }
    fn plan(&self) -> PathBuf {
        self.dir.join("plan.toml")
    }
    fn round(&self) -> PathBuf {
        self.dir.join("round.toml")
    }
}

fn load(paths: &Paths) -> Result<Store> {
    match std::fs::read(paths.store()) {
        Ok(b) => serde_json::from_slice(&b).with_context(|| format!("cannot parse {}", paths.store().display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Store::default()),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", paths.store().display())),
    }
}

fn save(paths: &Paths, store: &Store) -> Result<()> {
    write_atomic(&paths.store(), &serde_json::to_vec_pretty(store)?)?;
    write_atomic(&paths.plan(), render(&store.tasks.iter().collect::<Vec<_>>())?.as_bytes())
}

fn lock_store(paths: &Paths) -> Result<FileLock> {
    std::fs::create_dir_all(&paths.dir).with_context(|| format!("cannot create {}", paths.dir.display()))?;
    FileLock::acquire(&paths.lock())
}

fn render(tasks: &[&NewTask]) -> Result<String> {
    Ok(format!(
        "# Tasks dispatched through `git hybrid mcp` (written by git-hybrid; do not edit).\n\n{}",
        toml::to_string(&TomlPlan { task: tasks.to_vec() }).context("cannot render the MCP plan")?
    ))
}

/// The pid holding a lock file, if a live process holds it. Writes nothing.
fn lock_holder(path: &std::path::Path) -> Option<u32> {
    let file = std::fs::File::open(path).ok()?;
    match file.try_lock_shared() {
        Ok(()) => {
            let _ = file.unlock();
            None
        }
        Err(std::fs::TryLockError::WouldBlock) => Some(FileLock::holder_pid(path).unwrap_or(0)),
        Err(_) => None,
    }
}

fn check_agent(project: &Project, t: &NewTask) -> Result<()> {
    let Some(argv) = &t.agent else { return Ok(()) };
    if project.config.config.agent.command.as_ref() == Some(argv) {
        return Ok(());
    }
    match argv.first().map(String::as_str) {
        Some(crate::plan::BUILTIN_PATCH) | Some(crate::plan::BUILTIN_SCRIPT) => Ok(()),
        _ => Err(HybridError::Usage(format!(
            "task {:?}: `agent` may only be omitted (the `[agent] command` of hybrid.toml), equal to that command, or a \
             built-in (\"builtin:patch\", \"builtin:script\"); an MCP client cannot choose another command",
            t.id
        ))
        .into()),
    }
}

/// The `dispatch` tool: validates `tasks` with the MCP plan, queues them and makes sure a
/// runner runs. Returns at once with each task's state and the runner.
pub fn dispatch(project: &Project, tasks: Vec<NewTask>) -> Result<Value> {
    if tasks.is_empty() {
        return Err(HybridError::Usage("`tasks` is empty: give at least one task".into()).into());
    }
    project.require_commits()?;
    project.target_ref()?;
    let ledger = project.ledger();
    for t in &tasks {
        task_id::validate(&t.id)?;
        check_agent(project, t)?;
    }
    let paths = Paths::of(project);
    let _lock = lock_store(&paths)?;
    let mut store = load(&paths)?;
    for t in &tasks {
        if !store.tasks.iter().any(|s| s.id == t.id) && !ledger.attempts(&t.id)?.is_empty() {
            return Err(HybridError::Usage(format!(
                "task id {:?} is already in the ledger (started outside MCP); pick another id",
                t.id
            ))
            .into());
        }
    }
    let all: Vec<&NewTask> = store.tasks.iter().chain(tasks.iter()).collect();
    let text = render(&all)?;
    let parsed = crate::config::parse(&paths.plan(), &text)?;
    crate::plan::validate(&project.config, &parsed, &project.plugin_root(), &project.root)?;
    let ids: Vec<String> = tasks.iter().map(|t| t.id.clone()).collect();
    store.tasks.extend(tasks);
    store.wanted.extend(ids.iter().cloned());
    save(&paths, &store)?;
    let runner = ensure_runner(project, &paths)?;
    let states: Vec<Value> = ids.iter().map(|id| json!({ "id": id, "state": "queued" })).collect();
    Ok(json!({ "tasks": states, "runner": runner, "plan": paths.plan() }))
}

/// Starts the runner unless one holds the runner lock. Call with the store lock held.
fn ensure_runner(project: &Project, paths: &Paths) -> Result<Value> {
    let log = dispatch::log_path(project);
    if let Some(pid) = lock_holder(&paths.runner()) {
        return Ok(json!({ "pid": pid, "started": false, "log": log }));
    }
    let args: Vec<OsString> = vec!["mcp".into(), "--run-queue".into()];
    let mut child = crate::background::spawn(project, "mcp task runner", &args, &log)?;
    let pid = child.id();
    let runner = paths.runner();
    if let Some(code) = crate::background::wait_started(&mut child, &|| lock_holder(&runner) == Some(pid))? {
        return Err(anyhow::anyhow!(
            "the background task runner ended at once (exit {code}); last lines of {}:\n{}",
            log.display(),
            crate::background::log_tail(&log, 10).join("\n")
        ));
    }
    // Reap it when it ends, so it never lingers as a zombie of this server.
    std::thread::spawn(move || {
        let _ = child.wait();
    });
    Ok(json!({ "pid": pid, "started": true, "log": log }))
}

/// A task of the MCP plan that has not started yet.
#[derive(Debug, Clone, Serialize)]
pub struct Queued {
    pub id: String,
    pub title: Option<String>,
    /// Dependencies that have not landed yet.
    pub waits_for: Vec<String>,
}

/// Wanted tasks without a ledger record yet.
pub fn queued(project: &Project) -> Result<Vec<Queued>> {
    let paths = Paths::of(project);
    if !paths.store().exists() {
        return Ok(Vec::new());
    }
    let store = load(&paths)?;
    let ledger = project.ledger();
    let mut out = Vec::new();
    for id in &store.wanted {
        if !ledger.attempts(id)?.is_empty() {
            continue;
        }
        let Some(t) = store.tasks.iter().find(|t| &t.id == id) else { continue };
        let mut waits_for = Vec::new();
        for d in &t.depends_on {
            if !ledger.attempts(d)?.iter().any(|r| r.state.is_done()) {
                waits_for.push(d.clone());
            }
        }
        out.push(Queued { id: id.clone(), title: t.title.clone(), waits_for });
    }
    Ok(out)
}

/// The `retry` tool: queues a new run of a failed (or conflicted, or passed-but-not-landed)
/// task dispatched through MCP, with `instructions` added to its resume preamble.
pub fn retry(project: &Project, id: &str, attempt: u32, instructions: Option<&str>) -> Result<Value> {
    task_id::validate(id)?;
    task_id::validate_attempt(attempt)?;
    let paths = Paths::of(project);
    let _lock = lock_store(&paths)?;
    let mut store = load(&paths)?;
    let Some(task) = store.tasks.iter().find(|t| t.id == id) else {
        if project.ledger().attempts(id)?.is_empty() {
            return Err(HybridError::UnknownTask(id.to_string()).into());
        }
        return Err(HybridError::Usage(format!(
            "task {id:?} was not dispatched through MCP; re-run its plan with `git hybrid dispatch`"
        ))
        .into());
    };
    if attempt > task.attempts.unwrap_or(1) {
        return Err(HybridError::Usage(format!("task {id:?} has no attempt {attempt}")).into());
    }
    let recs = project.ledger().attempts(id)?;
    if recs.iter().any(|r| r.state.is_done()) {
        return Err(HybridError::Usage(format!("task {id:?} has already landed")).into());
    }
    let state = recs.iter().find(|r| r.attempt == attempt).map(|r| r.state);
    match state {
        Some(TaskState::Running) | Some(TaskState::Starting) => {
            return Err(HybridError::LocalChanges {
                message: format!("task {id:?} attempt {attempt} is running; cancel it first"),
                paths: Vec::new(),
            }
            .into())
        }
        Some(TaskState::Abandoned) | Some(TaskState::Candidate) => {
            return Err(HybridError::Usage(format!(
                "task {id:?} attempt {attempt} is {}; it is not run again",
                state.map(|s| s.as_str()).unwrap_or("")
            ))
            .into())
        }
        _ => {}
    }
    if let Some(text) = instructions.filter(|t| !t.trim().is_empty()) {
        if text.len() > 64 * 1024 {
            return Err(HybridError::Usage("`instructions` is longer than 64 KiB".into()).into());
        }
        let dir = crate::names::attempt_dir(&project.state_dir(), id, attempt);
        std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let file = dir.join(SUPERVISOR_NOTES_FILE);
        let mut notes = std::fs::read_to_string(&file).unwrap_or_default();
        notes.push_str(&format!("### {}\n\n{}\n\n", crate::fsutil::now_rfc3339(), text.trim_end()));
        write_atomic(&file, notes.as_bytes())?;
    }
    if !store.wanted.iter().any(|w| w == id) {
        store.wanted.push(id.to_string());
    }
    if state.is_some() && !store.retried.iter().any(|r| r == id) {
        store.retried.push(id.to_string());
    }
    save(&paths, &store)?;
    let runner = ensure_runner(project, &paths)?;
    Ok(json!({ "task": id, "attempt": attempt, "state": state.map(|s| s.as_str()).unwrap_or("queued"),
        "queued": true, "runner": runner }))
}

/// The `cancel` tool: stops the agent of a running attempt (its worktree and commits are kept;
/// the dispatcher records the attempt as failed), or takes a task that has not started out of
/// the queue.
pub fn cancel(project: &Project, id: &str, attempt: u32) -> Result<Value> {
    task_id::validate(id)?;
    task_id::validate_attempt(attempt)?;
    let recs = project.ledger().attempts(id)?;
    if recs.is_empty() {
        let paths = Paths::of(project);
        let _lock = lock_store(&paths)?;
        let mut store = load(&paths)?;
        if !store.wanted.iter().any(|w| w == id) {
            return Err(HybridError::UnknownTask(id.to_string()).into());
        }
        store.wanted.retain(|w| w != id);
        save(&paths, &store)?;
        return Ok(json!({ "task": id, "attempt": attempt, "state": "queued", "stopped": false, "dequeued": true }));
    }
    let Some(rec) = recs.into_iter().find(|r| r.attempt == attempt) else {
        return Err(HybridError::UnknownTask(format!("{id} attempt {attempt}")).into());
    };
    if rec.state != TaskState::Running {
        return Err(HybridError::Usage(format!(
            "task {id:?} attempt {attempt} is not running (state {}); nothing to cancel",
            rec.state.as_str()
        ))
        .into());
    }
    let stopped = match &rec.run_dir {
        Some(dir) => crate::agent::kill_orphan(dir),
        None => false,
    };
    Ok(json!({ "task": id, "attempt": attempt, "state": rec.state.as_str(), "stopped": stopped, "dequeued": false }))
}

/// The background runner (`git hybrid mcp --run-queue`): rounds until nothing wanted can run.
pub fn run(root: &std::path::Path) -> Result<i32> {
    let project = Project::open(root)?;
    let paths = Paths::of(&project);
    std::fs::create_dir_all(&paths.dir)?;
    let mut runner_lock = Some(FileLock::acquire(&paths.runner())?);
    dispatch::install_stop_handlers();
    let mut not_started: HashMap<String, u32> = HashMap::new();
    loop {
        let project = Project::open(root)?;
        let round = {
            let _lock = lock_store(&paths)?;
            let mut store = load(&paths)?;
            let (ids, plan_tasks) = runnable(&project, &mut store)?;
            store.retried.retain(|r| !ids.contains(r));
            save(&paths, &store)?;
            if ids.is_empty() {
                // Leave while holding the store lock: a `dispatch` that queues more after this
                // sees no runner and starts one.
                drop(runner_lock.take());
                eprintln!("[{}] mcp runner: nothing left to run", now());
                return Ok(0);
            }
            write_atomic(&paths.round(), render(&plan_tasks.iter().collect::<Vec<_>>())?.as_bytes())?;
            ids
        };
        eprintln!("[{}] mcp runner: round of {}", now(), round.iter().cloned().collect::<Vec<_>>().join(", "));
        let opts = DispatchOptions { plan_file: Some(paths.round()), jobs: None };
        let mut round = round;
        let result = {
            // Tasks queued while the round runs join it (`dispatch_growing`).
            let mut grow = || match grow_round(&project, &paths, &mut round) {
                Ok(plan) => plan,
                Err(e) => {
                    eprintln!("[{}] mcp runner: cannot add the tasks queued meanwhile: {e:#}", now());
                    None
                }
            };
            dispatch::dispatch_growing(&project, &opts, &mut |e| log_event(e), &mut grow)
        };
        let interrupted = match &result {
            Ok(report) => report.interrupted,
            Err(e) if matches!(find_hybrid_error(e), Some(HybridError::Busy(_))) => {
                eprintln!("[{}] mcp runner: {e:#}; waiting", now());
                std::thread::sleep(Duration::from_secs(2));
                continue;
            }
            Err(e) => {
                eprintln!("[{}] mcp runner: the round failed: {e:#}", now());
                false
            }
        };
        {
            // Tasks that ran leave the queue (unless retried since); a task that did not start (its
            // dependency failed) stays queued until the dependency is retried, unless it never
            // starts twice running.
            let _lock = lock_store(&paths)?;
            let mut store = load(&paths)?;
            let ledger = project.ledger();
            let mut leave = BTreeSet::new();
            for id in &round {
                if !ledger.attempts(id)?.is_empty() {
                    if !store.retried.contains(id) {
                        leave.insert(id.clone());
                    }
                    continue;
                }
                let n = not_started.entry(id.clone()).or_insert(0);
                *n += 1;
                if *n >= 2 {
                    eprintln!("[{}] mcp runner: {id} did not start in two rounds; taken out of the queue", now());
                    leave.insert(id.clone());
                }
            }
            store.wanted.retain(|w| !leave.contains(w));
            save(&paths, &store)?;
        }
        if interrupted {
            eprintln!("[{}] mcp runner: stopped", now());
            return Ok(1);
        }
    }
}

/// Called while a round runs: when the queue holds runnable tasks the round lacks, rewrites
/// `round.toml` with them (and their dependencies), adds them to `round` and returns that plan.
fn grow_round(project: &Project, paths: &Paths, round: &mut BTreeSet<String>) -> Result<Option<crate::plan::Plan>> {
    let _lock = lock_store(paths)?;
    let mut store = load(paths)?;
    if store.wanted.iter().all(|w| round.contains(w)) {
        return Ok(None); // the common case, decided without reading the ledger
    }
    let (ids, plan_tasks) = runnable(project, &mut store)?;
    if ids.is_subset(round) {
        return Ok(None);
    }
    write_atomic(&paths.round(), render(&plan_tasks.iter().collect::<Vec<_>>())?.as_bytes())?;
    let plan = crate::plan::load(project, Some(&paths.round()))?;
    // A retried task that joins now runs in this round: its retry is taken. One retried after it
    // ended in this round cannot run again in it and stays marked for the next.
    let joining: BTreeSet<&String> = ids.difference(round).collect();
    store.retried.retain(|r| !joining.contains(r));
    save(paths, &store)?;
    eprintln!(
        "[{}] mcp runner: adding {} to the running round",
        now(),
        ids.difference(round).cloned().collect::<Vec<_>>().join(", ")
    );
    round.extend(ids);
    Ok(Some(plan))
}

fn now() -> String {
    crate::fsutil::now_rfc3339()
}

fn log_event(e: &Event) {
    if let Ok(line) = serde_json::to_string(e) {
        eprintln!("[{}] {line}", now());
    }
}

/// The wanted tasks that can run now and the round plan (them plus their dependencies).
/// Wanted tasks that already landed leave `wanted`.
fn runnable(project: &Project, store: &mut Store) -> Result<(BTreeSet<String>, Vec<NewTask>)> {
    let ledger = project.ledger();
    let by_id: HashMap<&str, &NewTask> = store.tasks.iter().map(|t| (t.id.as_str(), t)).collect();
    let mut done: HashMap<String, bool> = HashMap::new();
    for t in &store.tasks {
        done.insert(t.id.clone(), ledger.attempts(&t.id)?.iter().any(|r| r.state.is_done()));
    }
    let wanted: BTreeSet<String> =
        store.wanted.iter().filter(|w| by_id.contains_key(w.as_str()) && !done[w.as_str()]).cloned().collect();
    // A wanted task can run when each dependency is done or a wanted task that can run.
    fn can_run(
        id: &str,
        by_id: &HashMap<&str, &NewTask>,
        done: &HashMap<String, bool>,
        wanted: &BTreeSet<String>,
        seen: &mut Vec<String>,
    ) -> bool {
        if done.get(id).copied().unwrap_or(false) {
            return true;
        }
        if !wanted.contains(id) || seen.iter().any(|s| s == id) {
            return false;
        }
        seen.push(id.to_string());
        let ok = by_id.get(id).is_some_and(|t| t.depends_on.iter().all(|d| can_run(d, by_id, done, wanted, seen)));
        seen.pop();
        ok
    }
    let ids: BTreeSet<String> =
        wanted.iter().filter(|w| can_run(w, &by_id, &done, &wanted, &mut Vec::new())).cloned().collect();
    // The round plan: the runnable tasks and, transitively, their (done) dependencies.
    let mut include: BTreeSet<String> = BTreeSet::new();
    let mut stack: Vec<String> = ids.iter().cloned().collect();
    while let Some(id) = stack.pop() {
        if include.insert(id.clone()) {
            if let Some(t) = by_id.get(id.as_str()) {
                stack.extend(t.depends_on.iter().cloned());
            }
        }
    }
    let plan_tasks: Vec<NewTask> = store.tasks.iter().filter(|t| include.contains(&t.id)).cloned().collect();
    store.wanted.retain(|w| !done.get(w.as_str()).copied().unwrap_or(false));
    Ok((ids, plan_tasks))
}
