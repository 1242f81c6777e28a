//! Launching one agent run: the process, its environment, its files, its timeout.
//!
//! Contract: [`launch`] runs the agent argv with the task worktree as working directory and the
//! prompt (`prompt.md` of the run directory) on stdin. stdout goes verbatim to `stdout.log`
//! (the trajectory, e.g. stream-json lines), stderr to `stderr.log`. The environment is
//! scrubbed: only [`ALLOWED_ENV`] (plus `LC_*`), the config's `env_pass` names, and the
//! `HYBRID_*` variables reach the agent, so secrets in the dispatcher's own environment are
//! not inherited. `meta.json` records argv, pid, start/end times, exit code and `timed_out`;
//! it is written once the process exists (with its pid, for crash recovery) and again when it
//! has ended.
//!
//! Process lifetime: the agent runs in a process group of its own. On timeout or a stop
//! request the whole group gets SIGTERM, then SIGKILL after a grace period; when the agent
//! exits, whatever it left running in its group is killed too (nothing keeps writing to a
//! worktree that is about to be verified and landed). It is not in the dispatcher's group, so a
//! Ctrl-C on the terminal reaches only the dispatcher, which then stops its agents itself.
//!
//! Supervision and sandbox: with [`Launch::supervisor`] set (as `dispatch` always does), the
//! process started is the [`supervise`] child (the git-hybrid binary itself), which leads the
//! group, applies the Landlock [`sandbox`] and starts the agent: when the dispatcher dies, even
//! by `kill -9`, the supervisor kills the whole group. Whatever escaped the group is ended by the
//! next dispatch with [`kill_orphan`] before it resumes the run, so two agents never share a
//! worktree. On Linux, processes are recognised by the `HYBRID_RUN_DIR` in their environment.
//!
//! Built-ins: `["builtin:script", "<path>", args...]` runs `<path> args...` with the
//! interpreter its `#!` line names, or `sh` when it has none (the path is looked up in the
//! worktree, then in the main checkout); `["builtin:patch"]` applies the task's
//! `patch` file with `git apply --index` and commits it. Both are ordinary child processes.
//!
//! Files: this one launches a run; `group.rs` process groups (wait, end, orphans); `command.rs`
//! program lookup and other commands (verify); `supervise.rs` the supervising child;
//! `sandbox.rs` the Landlock ruleset.

use std::ffi::OsString;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use crate::fsutil::now_rfc3339;

mod command;
mod group;
pub mod sandbox;
pub mod supervise;

use command::program_command;
pub use command::{missing_program, run_command, CommandExit};
use group::{configure_child, exit_signal, wait_group};
pub use group::{group_alive, kill_group, kill_orphan};

use supervise::Supervisor;

/// Environment variables an agent inherits from the dispatcher (besides `LC_*` and `env_pass`):
/// the same allowlist as every git child's.
pub use crate::git::ALLOWED_ENV;

/// Prefix of the built-in agents.
pub const BUILTIN_PREFIX: &str = "builtin:";
/// `["builtin:patch"]`: applies the task's `patch` file and commits.
pub const BUILTIN_PATCH: &str = "builtin:patch";
/// `["builtin:script", "<path in the repo>", args...]`: runs a script from the repository with `sh`.
pub const BUILTIN_SCRIPT: &str = "builtin:script";

/// How long a timed-out or stopped agent gets between SIGTERM and SIGKILL.
pub const KILL_GRACE: Duration = Duration::from_secs(3);

/// File names inside a run directory.
pub const PROMPT_FILE: &str = "prompt.md";
pub const STDOUT_FILE: &str = "stdout.log";
pub const STDERR_FILE: &str = "stderr.log";
pub const PROGRESS_FILE: &str = "progress.md";
pub const BLOCKED_FILE: &str = "blocked.md";
pub const META_FILE: &str = "meta.json";

/// Wall-clock nanoseconds since the Unix epoch (comparable across processes).
pub fn now_ns() -> u128 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0)
}

/// Timestamps (ns since the epoch) of the dispatch steps before the agent process exists.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Timing {
    /// The scheduler chose this attempt.
    pub picked_ns: Option<u128>,
    /// Worktree creation began.
    pub worktree_begin_ns: Option<u128>,
    /// The worktree existed.
    pub worktree_ready_ns: Option<u128>,
    /// The pre-dispatch sync was done.
    #[serde(default)]
    pub synced_ns: Option<u128>,
    /// The prompt and the ledger's `running` record were written.
    #[serde(default)]
    pub prepared_ns: Option<u128>,
    /// Just before the agent process was spawned.
    pub spawn_ns: Option<u128>,
    /// The agent process existed (spawn returned).
    pub spawned_ns: Option<u128>,
}

/// `meta.json` of one run.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RunMeta {
    pub task: String,
    pub attempt: u32,
    pub run: u32,
    /// The argv as configured (`builtin:*` included).
    pub argv: Vec<String>,
    /// What was actually executed.
    pub exec: Vec<String>,
    pub cwd: PathBuf,
    /// The agent's pid, which is also its process group id.
    pub pid: Option<u32>,
    pub started: String,
    pub ended: Option<String>,
    pub exit_code: Option<i32>,
    /// The signal that ended it, if any.
    pub signal: Option<i32>,
    pub timed_out: bool,
    /// Stopped because the dispatcher was asked to stop.
    #[serde(default)]
    pub interrupted: bool,
    pub timeout_secs: u64,
    pub duration_ms: Option<u64>,
    #[serde(default)]
    pub timing: Timing,
}

impl RunMeta {
    /// Reads a run's `meta.json`.
    pub fn read(run_dir: &Path) -> Option<RunMeta> {
        let bytes = std::fs::read(run_dir.join(META_FILE)).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    /// Replaces `meta.json` atomically (temp file + rename). Not fsynced: it is a record of
    /// the run, not state the dispatcher recovers from (the ledger is), and it is written on
    /// the launch path, where a sync would cost a disk flush per task.
    fn write(&self, run_dir: &Path) -> Result<()> {
        let mut json = serde_json::to_vec_pretty(self)?;
        json.push(b'\n');
        let tmp = run_dir.join(format!(".{META_FILE}.tmp"));
        std::fs::write(&tmp, &json).with_context(|| format!("cannot write {}", tmp.display()))?;
        std::fs::rename(&tmp, run_dir.join(META_FILE)).context("cannot rename meta.json into place")?;
        Ok(())
    }
}

/// Everything needed to launch one run.
#[derive(Debug, Clone)]
pub struct Launch {
    pub task: String,
    pub attempt: u32,
    pub run: u32,
    pub argv: Vec<String>,
    pub worktree: PathBuf,
    /// The main checkout (second place built-ins look for their files).
    pub repo_root: PathBuf,
    /// The run directory; `prompt.md` must already be written there.
    pub run_dir: PathBuf,
    pub env_pass: Vec<String>,
    pub timeout: Duration,
    /// `patch` of the task, for `builtin:patch`.
    pub patch: Option<String>,
    /// Commit subject for `builtin:patch`.
    pub title: String,
    pub timing: Timing,
    /// Run under the supervising child (dies with the dispatcher; sandbox); `None` starts the
    /// agent directly.
    pub supervisor: Option<Supervisor>,
}

/// How a run ended.
#[derive(Debug, Clone)]
pub struct RunExit {
    pub meta: RunMeta,
}

impl RunExit {
    pub fn success(&self) -> bool {
        self.meta.exit_code == Some(0) && !self.meta.timed_out && !self.meta.interrupted
    }

    /// Plain words for a failed run.
    pub fn describe(&self) -> String {
        let m = &self.meta;
        if m.interrupted {
            "the dispatcher was stopped while the agent ran".into()
        } else if m.timed_out {
            format!("the agent timed out after {}s", m.timeout_secs)
        } else if let Some(c) = m.exit_code {
            format!("the agent exited with code {c}")
        } else if let Some(s) = m.signal {
            format!("the agent was killed by signal {s}")
        } else {
            "the agent ended without an exit status".into()
        }
    }
}

/// The environment an agent (or the verify command) gets: allowlist, `LC_*`, `env_pass`, extras.
pub fn scrubbed_env(env_pass: &[String], extra: &[(String, OsString)]) -> Vec<(OsString, OsString)> {
    let mut out: Vec<(OsString, OsString)> = Vec::new();
    for (k, v) in std::env::vars_os() {
        let Some(name) = k.to_str() else { continue };
        let allowed = ALLOWED_ENV.contains(&name) || name.starts_with("LC_") || env_pass.iter().any(|p| p == name);
        if allowed {
            out.push((k, v));
        }
    }
    for (k, v) in extra {
        out.retain(|(ok, _)| ok.to_str() != Some(k.as_str()));
        out.push((k.into(), v.clone()));
    }
    out
}

/// The `HYBRID_*` variables of a run.
pub fn hybrid_vars(task: &str, attempt: u32, run: u32, run_dir: &Path, worktree: &Path) -> Vec<(String, OsString)> {
    vec![
        ("HYBRID_TASK_ID".into(), task.into()),
        ("HYBRID_ATTEMPT".into(), attempt.to_string().into()),
        ("HYBRID_RUN".into(), run.to_string().into()),
        ("HYBRID_RUN_DIR".into(), run_dir.into()),
        ("HYBRID_PROGRESS".into(), run_dir.join(PROGRESS_FILE).into()),
        ("HYBRID_BLOCKED".into(), run_dir.join(BLOCKED_FILE).into()),
        ("HYBRID_WORKTREE".into(), worktree.into()),
    ]
}

/// A file named by a built-in: in the worktree, else in the main checkout.
fn repo_file(worktree: &Path, root: &Path, rel: &str) -> Result<PathBuf> {
    for base in [worktree, root] {
        let p = base.join(rel);
        if p.is_file() {
            return Ok(p);
        }
    }
    bail!("{rel} is neither in the task worktree {} nor in {}", worktree.display(), root.display())
}

/// The interpreter of a `builtin:script`: its `#!` line as the kernel reads it (the program,
/// then the rest of the line as one optional argument), else `sh`. Read here rather than left
/// to `execve`, so a script committed without its executable bit runs the same.
fn interpreter(script: &Path) -> Result<Vec<String>> {
    use std::io::{BufRead, BufReader, Read};
    let file = File::open(script).with_context(|| format!("cannot read {}", script.display()))?;
    let mut first = Vec::new();
    BufReader::new(file).take(4096).read_until(b'\n', &mut first)?;
    let line = String::from_utf8_lossy(&first);
    let Some(rest) = line.strip_prefix("#!") else { return Ok(vec!["sh".into()]) };
    let rest = rest.trim();
    let (program, arg) = match rest.split_once([' ', '\t']) {
        Some((p, a)) => (p, Some(a.trim())),
        None => (rest, None),
    };
    if program.is_empty() {
        return Ok(vec!["sh".into()]);
    }
    let mut v = vec![program.to_string()];
    v.extend(arg.filter(|a| !a.is_empty()).map(str::to_string));
    Ok(v)
}

/// Turns the configured argv into what is executed (expanding the built-ins).
fn exec_argv(l: &Launch) -> Result<Vec<String>> {
    let first = l.argv.first().context("the agent command is empty")?;
    if first == BUILTIN_SCRIPT {
        let script = l.argv.get(1).context("builtin:script needs a script path")?;
        let path = repo_file(&l.worktree, &l.repo_root, script)?;
        let mut v = interpreter(&path)?;
        v.push(path.to_string_lossy().into_owned());
        v.extend(l.argv[2..].iter().cloned());
        return Ok(v);
    }
    if first == BUILTIN_PATCH {
        let rel = l.patch.as_deref().context("builtin:patch needs the task's `patch`")?;
        let path = repo_file(&l.worktree, &l.repo_root, rel)?;
        // Why the git CLI: the patch must land in the worktree exactly as `git apply` would.
        let script = "set -e\ngit apply --index --whitespace=nowarn \"$1\"\necho \"applied $3\" >> \"$HYBRID_PROGRESS\"\ngit commit -q -m \"$2\"\necho \"committed $3\" >> \"$HYBRID_PROGRESS\"\n";
        return Ok(vec![
            "sh".into(),
            "-c".into(),
            script.into(),
            "builtin:patch".into(),
            path.to_string_lossy().into_owned(),
            l.title.clone(),
            rel.to_string(),
        ]);
    }
    Ok(l.argv.clone())
}

/// Runs one agent to its end (or timeout, or `stop`), writing the run files.
pub fn launch(l: &Launch, stop: &AtomicBool) -> Result<RunExit> {
    let dir = &l.run_dir;
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut meta = RunMeta {
        task: l.task.clone(),
        attempt: l.attempt,
        run: l.run,
        argv: l.argv.clone(),
        exec: Vec::new(),
        cwd: l.worktree.clone(),
        started: now_rfc3339(),
        timeout_secs: l.timeout.as_secs(),
        timing: l.timing.clone(),
        ..RunMeta::default()
    };
    let exec = match exec_argv(l) {
        Ok(v) => v,
        Err(e) => {
            // Nothing could start: record why, as the agent's stderr would have.
            let _ = std::fs::write(dir.join(STDERR_FILE), format!("git-hybrid: {e:#}\n"));
            meta.ended = Some(now_rfc3339());
            meta.exit_code = Some(127);
            meta.write(dir)?;
            return Ok(RunExit { meta });
        }
    };
    meta.exec = exec.clone();

    let stdin =
        File::open(dir.join(PROMPT_FILE)).with_context(|| format!("cannot open {}/prompt.md", dir.display()))?;
    let stdout = File::create(dir.join(STDOUT_FILE)).context("cannot create stdout.log")?;
    let stderr = File::create(dir.join(STDERR_FILE)).context("cannot create stderr.log")?;
    let mut extra = hybrid_vars(&l.task, l.attempt, l.run, dir, &l.worktree);
    if l.argv.first().map(String::as_str) == Some(BUILTIN_PATCH) {
        extra.extend(identity_env(&l.worktree));
    }
    let env = scrubbed_env(&l.env_pass, &extra);
    let mut cmd = program_command(&exec, &env, l.supervisor.as_ref());
    cmd.current_dir(&l.worktree)
        .env_clear()
        .envs(env)
        .stdin(Stdio::from(stdin))
        .stdout(Stdio::from(stdout))
        .stderr(Stdio::from(stderr));
    configure_child(&mut cmd);

    let t0 = Instant::now();
    meta.timing.spawn_ns = Some(now_ns());
    let child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            let _ = std::fs::write(dir.join(STDERR_FILE), format!("git-hybrid: cannot run {:?}: {e}\n", exec[0]));
            meta.ended = Some(now_rfc3339());
            meta.exit_code = Some(127);
            meta.write(dir)?;
            return Ok(RunExit { meta });
        }
    };
    meta.timing.spawned_ns = Some(now_ns());
    let pid = child.id();
    meta.pid = Some(pid);
    meta.write(dir)?;

    let waited = wait_group(child, l.timeout, t0, stop);
    meta.timed_out = waited.timed_out;
    meta.interrupted = waited.interrupted;
    let status = waited.status;
    // Whatever the agent left running in its group must not keep writing to the worktree.
    kill_group(pid, rustix::process::Signal::KILL);
    meta.ended = Some(now_rfc3339());
    meta.duration_ms = Some(t0.elapsed().as_millis() as u64);
    if let Some(s) = status {
        meta.exit_code = s.code();
        meta.signal = exit_signal(&s);
    }
    meta.write(dir)?;
    Ok(RunExit { meta })
}

/// `GIT_AUTHOR_*`/`GIT_COMMITTER_*` names and emails the way git would resolve them, with
/// git-hybrid's fallback identity, so the built-in patch agent can commit on a fresh machine.
pub fn identity_env(worktree: &Path) -> Vec<(String, OsString)> {
    let mut out = Vec::new();
    let Ok(repo) = git2::Repository::open(worktree) else { return out };
    for (role, prefix) in [(crate::git::Role::Author, "GIT_AUTHOR"), (crate::git::Role::Committer, "GIT_COMMITTER")] {
        if let Ok(sig) = crate::git::signature(&repo, role) {
            if let Some(n) = sig.name() {
                out.push((format!("{prefix}_NAME"), n.into()));
            }
            if let Some(e) = sig.email() {
                out.push((format!("{prefix}_EMAIL"), e.into()));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn launch_in(dir: &Path, argv: &[&str], timeout: Duration) -> RunExit {
        let run_dir = dir.join("run");
        std::fs::create_dir_all(&run_dir).unwrap();
        std::fs::write(run_dir.join(PROMPT_FILE), "the prompt\n").unwrap();
        let l = Launch {
            task: "t".into(),
            attempt: 1,
            run: 1,
            argv: argv.iter().map(|s| s.to_string()).collect(),
            worktree: dir.to_path_buf(),
            repo_root: dir.to_path_buf(),
            run_dir,
            env_pass: vec![],
            timeout,
            patch: None,
            title: "t".into(),
            timing: Timing::default(),
            supervisor: None,
        };
        launch(&l, &AtomicBool::new(false)).unwrap()
    }

    #[test]
    fn prompt_on_stdin_and_files() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("s.sh"), "cat; echo err >&2; echo \"$HYBRID_TASK_ID $HYBRID_ATTEMPT\"; pwd\n")
            .unwrap();
        let r = launch_in(d.path(), &["builtin:script", "s.sh"], Duration::from_secs(10));
        assert!(r.success(), "{:?}", r.meta);
        let out = std::fs::read_to_string(d.path().join("run/stdout.log")).unwrap();
        assert!(out.starts_with("the prompt\nt 1\n"), "{out}");
        assert_eq!(std::fs::read_to_string(d.path().join("run/stderr.log")).unwrap(), "err\n");
        let meta = RunMeta::read(&d.path().join("run")).unwrap();
        assert_eq!(meta.exit_code, Some(0));
        assert!(meta.pid.is_some() && meta.ended.is_some());
    }

    #[test]
    fn timeout_kills_the_group() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("s.sh"), "sleep 30 & sleep 30\n").unwrap();
        let t = Instant::now();
        let r = launch_in(d.path(), &["builtin:script", "s.sh"], Duration::from_millis(300));
        assert!(r.meta.timed_out);
        assert!(!r.success());
        assert!(t.elapsed() < Duration::from_secs(10));
        // Killed processes may linger as zombies until their new parent reaps them.
        group::assert_group_ended(r.meta.pid.unwrap());
        assert!(r.describe().contains("timed out"));
    }

    #[test]
    fn missing_program_is_a_failed_run() {
        let d = tempfile::tempdir().unwrap();
        let r = launch_in(d.path(), &["/nonexistent/agent"], Duration::from_secs(5));
        assert_eq!(r.meta.exit_code, Some(127));
        let err = std::fs::read_to_string(d.path().join("run/stderr.log")).unwrap();
        assert!(err.contains("cannot run"), "{err}");
    }

    #[test]
    fn env_is_scrubbed() {
        let env = scrubbed_env(&["MY_PASS".into()], &[("HYBRID_TASK_ID".into(), "x".into())]);
        let names: Vec<String> = env.iter().map(|(k, _)| k.to_string_lossy().into_owned()).collect();
        assert!(names.iter().all(|n| ALLOWED_ENV.contains(&n.as_str())
            || n.starts_with("LC_")
            || n == "MY_PASS"
            || n == "HYBRID_TASK_ID"));
        assert!(names.contains(&"HYBRID_TASK_ID".to_string()));
    }
}
