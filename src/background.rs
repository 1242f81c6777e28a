//! Starting git-hybrid itself as a detached background process.
//!
//! Contract: [`spawn`] runs this executable with `-C <repo root> --color never <args>` in a new
//! session (`setsid`: no controlling terminal, not in the caller's process group, so closing
//! the caller's terminal or its MCP client does not signal it), stdin from `/dev/null`, stdout
//! and stderr appended to `log` after a `=== <what> started <time> ===` line.
//! [`wait_started`] waits until the child shows it is up (or ended at once, with the log's last
//! lines as the error). Used by `dispatch --detach` and by the MCP server's task runner.

use std::ffi::OsString;
use std::io::Write;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use crate::repo::Project;

/// Spawns `git-hybrid -C <root> --color never <args>` in the background (see the contract).
#[allow(unsafe_code)]
pub fn spawn(project: &Project, what: &str, args: &[OsString], log: &Path) -> Result<Child> {
    if let Some(dir) = log.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .with_context(|| format!("cannot open {}", log.display()))?;
    writeln!(file, "=== git-hybrid {what} started {} ===", crate::fsutil::now_rfc3339())?;
    let exe = std::env::current_exe().context("cannot find the git-hybrid executable")?;
    let mut cmd = Command::new(exe);
    cmd.arg("-C").arg(&project.root).arg("--color").arg("never").args(args);
    cmd.stdin(Stdio::null()).stdout(Stdio::from(file.try_clone()?)).stderr(Stdio::from(file));
    {
        use std::os::unix::process::CommandExt;
        // SAFETY: the hook runs in the forked child before exec, where only async-signal-safe
        // calls are allowed: setsid (a plain system call through rustix) is one; it detaches the
        // child from our session. `pre_exec` itself is `unsafe` whatever the hook does.
        unsafe {
            cmd.pre_exec(|| {
                let _ = rustix::process::setsid();
                Ok(())
            });
        }
    }
    cmd.spawn().with_context(|| format!("cannot start the background {what}"))
}

/// Waits (up to 10 s) until `up()` is true; `Some(exit code)` when the child ended first.
pub fn wait_started(child: &mut Child, up: &dyn Fn() -> bool) -> Result<Option<i32>> {
    let until = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(Some(status.code().unwrap_or(1)));
        }
        if up() || Instant::now() > until {
            return Ok(None);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The last `n` lines of a log file.
pub fn log_tail(log: &Path, n: usize) -> Vec<String> {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].iter().map(|l| l.to_string()).collect()
}
