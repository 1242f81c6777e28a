//! The dispatcher as a process: its lock and pid file, its log, and starting it detached.
//!
//! Contract: one dispatcher runs per repository. It holds `<git-common-dir>/hybrid/dispatch.pid`
//! as a `flock` ([`acquire_dispatcher_lock`]), so a second one refuses (exit 4) with the first
//! one's pid and a `kill -9`'d dispatcher leaves nothing to clean up; [`running_dispatcher`]
//! probes it without writing anything. [`detach`] starts `git-hybrid dispatch` in the background
//! ([`crate::background`]: new session, log appended to `dispatch.log`) and returns once the
//! child holds the lock, or with the log's last lines when it ended at once.

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Result;

use super::DispatchOptions;
use crate::background;
use crate::error::HybridError;
use crate::lock::FileLock;
use crate::repo::Project;

/// The dispatcher lock/pid file of a repository.
pub fn pid_path(project: &Project) -> PathBuf {
    crate::names::dispatch_pid(&project.state_dir())
}

/// The background dispatcher's log file.
pub fn log_path(project: &Project) -> PathBuf {
    crate::names::dispatch_log(&project.state_dir())
}

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

/// What [`detach`] started.
#[derive(Debug, Clone)]
pub enum Detached {
    /// The background dispatcher holds the lock.
    Started { pid: u32, log: PathBuf, pid_file: PathBuf },
    /// It ended before taking the lock, with this exit code; `tail` is the log's last lines.
    EndedAtOnce { code: i32, log: PathBuf, tail: Vec<String> },
}

/// Starts `git-hybrid dispatch` in the background with `opts` (see the module contract). The
/// plan is loaded here first, so bad input is reported in the foreground with its exit code.
pub fn detach(project: &Project, opts: &DispatchOptions) -> Result<Detached> {
    crate::plan::load(project, opts.plan_file.as_deref())?;
    if let Some(pid) = running_dispatcher(project) {
        return Err(HybridError::Busy(format!("another dispatcher is running on this repository (pid {pid})")).into());
    }
    let log = log_path(project);
    let mut args: Vec<OsString> = vec!["dispatch".into(), "--detached-child".into()];
    if let Some(p) = &opts.plan_file {
        args.push("--plan".into());
        args.push(p.into());
    }
    if let Some(j) = opts.jobs {
        args.push("-j".into());
        args.push(j.to_string().into());
    }
    let mut child = background::spawn(project, "dispatch", &args, &log)?;
    let pid = child.id();
    if let Some(code) = background::wait_started(&mut child, &|| running_dispatcher(project) == Some(pid))? {
        let tail = background::log_tail(&log, 10);
        return Ok(Detached::EndedAtOnce { code, log, tail });
    }
    Ok(Detached::Started { pid, log, pid_file: pid_path(project) })
}
