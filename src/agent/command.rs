//! Running a program for a task: the agent's program looked up in the `PATH` the child gets,
//! checked before any worktree is made ([`missing_program`]), and other commands such as
//! verify ([`run_command`]: own process group, timeout, output to a log).

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use super::group::{configure_child, exit_signal, kill_group, wait_group};
use super::supervise::Supervisor;
use super::{scrubbed_env, BUILTIN_PREFIX};

/// The result of a command run by [`run_command`].
#[derive(Debug, Clone)]
pub struct CommandExit {
    pub exit_code: Option<i32>,
    pub signal: Option<i32>,
    pub timed_out: bool,
    pub interrupted: bool,
}

impl CommandExit {
    pub fn success(&self) -> bool {
        self.exit_code == Some(0) && !self.timed_out && !self.interrupted
    }

    /// Plain words for a failure of `what`.
    pub fn describe(&self, what: &str, timeout: Duration) -> String {
        if self.interrupted {
            format!("{what} was stopped")
        } else if self.timed_out {
            format!("{what} timed out after {}s", timeout.as_secs())
        } else if let Some(c) = self.exit_code {
            format!("{what} exited with code {c}")
        } else if let Some(s) = self.signal {
            format!("{what} was killed by signal {s}")
        } else {
            format!("{what} ended without an exit status")
        }
    }
}

/// Runs a command (e.g. verify) in `cwd` with the given environment, stdout and stderr both
/// appended to `log`, stdin empty, in its own process group, with a timeout; under
/// `supervisor` when given.
pub fn run_command(
    argv: &[String],
    cwd: &Path,
    env: Vec<(OsString, OsString)>,
    log: &Path,
    timeout: Duration,
    stop: &AtomicBool,
    supervisor: Option<&Supervisor>,
) -> Result<CommandExit> {
    let program = argv.first().context("the command is empty")?;
    let out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .with_context(|| format!("cannot open {}", log.display()))?;
    let err = out.try_clone()?;
    let mut cmd = program_command(argv, &env, supervisor);
    cmd.current_dir(cwd).env_clear().envs(env).stdin(Stdio::null()).stdout(Stdio::from(out)).stderr(Stdio::from(err));
    configure_child(&mut cmd);
    let t0 = Instant::now();
    let child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            use std::io::Write;
            let mut f = std::fs::OpenOptions::new().append(true).open(log)?;
            let _ = writeln!(f, "git-hybrid: cannot run {program:?}: {e}");
            return Ok(CommandExit { exit_code: Some(127), signal: None, timed_out: false, interrupted: false });
        }
    };
    let pid = child.id();
    let w = wait_group(child, timeout, t0, stop);
    kill_group(pid, rustix::process::Signal::KILL);
    Ok(CommandExit {
        exit_code: w.status.and_then(|s| s.code()),
        signal: w.status.as_ref().and_then(exit_signal),
        timed_out: w.timed_out,
        interrupted: w.interrupted,
    })
}

/// Why an agent argv cannot start, checked before any worktree is made: a bare program name
/// not on the `PATH` agents get, or an absolute path that is not an executable file. Built-ins
/// and paths relative to the worktree (which does not exist yet) pass.
pub fn missing_program(argv: &[String], env_pass: &[String]) -> Option<String> {
    use std::os::unix::fs::PermissionsExt;
    let name = argv.first()?;
    if name.starts_with(BUILTIN_PREFIX) {
        return None;
    }
    let executable = |p: &Path| std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0);
    if name.contains('/') {
        let p = Path::new(name);
        return (p.is_absolute() && !executable(p))
            .then(|| format!("the agent program {name} is not an executable file"));
    }
    let env = scrubbed_env(env_pass, &[]);
    let found = resolve_program(name, &env);
    if found.is_absolute() && executable(&found) {
        return None;
    }
    let path = env.iter().find(|(k, _)| k == "PATH").map(|(_, v)| v.to_string_lossy().into_owned());
    Some(format!(
        "the agent program `{name}` is not on the PATH agents get ({}); install it or set the full path",
        path.unwrap_or_else(|| "no PATH".into())
    ))
}

/// The program to execute: a bare name is looked up in the `PATH` the child gets.
///
/// Why here: given a bare name and a changed `PATH`, the standard library must search the
/// child's `PATH` itself and falls back from `posix_spawn` to `fork`, which is far slower for a
/// busy multi-threaded dispatcher. A name that is not found is passed on unchanged, so the
/// spawn reports it as usual.
pub(super) fn resolve_program(name: &str, env: &[(OsString, OsString)]) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    if name.contains('/') {
        return PathBuf::from(name);
    }
    let path = env.iter().find(|(k, _)| k == "PATH").map(|(_, v)| v.clone());
    if let Some(path) = path {
        for dir in std::env::split_paths(&path) {
            if dir.as_os_str().is_empty() || !dir.is_absolute() {
                continue; // relative PATH entries would depend on the agent's cwd
            }
            let candidate = dir.join(name);
            if let Ok(meta) = std::fs::metadata(&candidate) {
                if meta.is_file() && meta.permissions().mode() & 0o111 != 0 {
                    return candidate;
                }
            }
        }
    }
    PathBuf::from(name)
}

/// The command that runs `argv` (program looked up in the child's `PATH`), through the
/// supervisor when given.
pub(super) fn program_command(
    argv: &[String],
    env: &[(OsString, OsString)],
    supervisor: Option<&Supervisor>,
) -> Command {
    let program = resolve_program(&argv[0], env);
    match supervisor {
        Some(s) => {
            let (exe, args) = s.wrap(&program, &argv[0], &argv[1..]);
            let mut cmd = Command::new(exe);
            cmd.args(args);
            cmd
        }
        None => {
            let mut cmd = Command::new(program);
            std::os::unix::process::CommandExt::arg0(&mut cmd, &argv[0]);
            cmd.args(&argv[1..]);
            cmd
        }
    }
}
