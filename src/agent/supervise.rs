//! The supervising child: the process the dispatcher really starts for an agent or a verify
//! command, so that the agent is sandboxed and dies with its dispatcher.
//!
//! Contract: `git-hybrid __supervise <dispatcher-pid> [--write <path>]... -- <program> <argv0>
//! [args...]` (built by [`wrap`], run through [`main`] before any argument parsing) is started by
//! the dispatcher as the leader of a new process group, with the agent's environment, working
//! directory and stdio. It
//! 1. asks the kernel for `SIGTERM` when its parent thread dies (`PR_SET_PDEATHSIG`), then checks
//!    that the dispatcher is still its parent (it may have died before the request);
//! 2. with `--write` paths, applies the Landlock sandbox ([`super::sandbox::restrict`]); a
//!    sandbox that cannot be applied ends the run (exit 126) rather than run the agent without;
//! 3. drops `CAP_SYS_PTRACE` (an agent running as root could otherwise read the dispatcher's
//!    environment, which the dispatcher hides by being non-dumpable);
//! 4. starts the agent in its own process group (the supervisor's) and waits for it, then exits
//!    with the agent's status (the same code, or the same signal).
//!
//! Signals: `SIGTERM`/`SIGINT`/`SIGHUP` sent to the group reach the agent directly; the supervisor
//! outlives them so the dispatcher's grace period holds. When its dispatcher is gone (the
//! death signal, or any of these signals arriving with a new parent), the supervisor kills the
//! whole group with `SIGKILL`: nothing an agent started keeps writing to a worktree once its
//! dispatcher has died, even by `kill -9`. A process that leaves the group on purpose
//! (`setsid`) is not followed; the next dispatch's [`super::kill_orphan`] still finds it by its
//! run directory.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI32, Ordering};

use rustix::process::{Pid, Signal};

/// The hidden first argument that selects the supervisor.
pub const SUBCOMMAND: &str = "__supervise";

/// How to supervise a run.
#[derive(Debug, Clone)]
pub struct Supervisor {
    /// The git-hybrid binary.
    pub exe: PathBuf,
    /// Landlock write paths; `None` runs without a sandbox.
    pub sandbox: Option<Vec<PathBuf>>,
}

impl Supervisor {
    /// The program and arguments that run `program` (shown to it as `argv0`) under this supervisor.
    pub fn wrap(&self, program: &Path, argv0: &str, args: &[String]) -> (PathBuf, Vec<OsString>) {
        let mut v: Vec<OsString> = vec![SUBCOMMAND.into(), std::process::id().to_string().into()];
        for p in self.sandbox.iter().flatten() {
            v.push("--write".into());
            v.push(p.into());
        }
        v.push("--".into());
        v.push(program.into());
        v.push(argv0.into());
        v.extend(args.iter().map(OsString::from));
        (self.exe.clone(), v)
    }
}

/// The dispatcher's pid, for the signal handler.
static PARENT: AtomicI32 = AtomicI32::new(0);

extern "C" fn on_signal(_sig: libc::c_int) {
    // Only async-signal-safe calls here (rustix's are plain system calls).
    if !parent_is(PARENT.load(Ordering::SeqCst)) {
        let _ = rustix::process::kill_current_process_group(Signal::KILL);
    }
}

/// Whether our parent is still the process `parent` (the dispatcher).
fn parent_is(parent: i32) -> bool {
    Pid::as_raw(rustix::process::getppid()) == parent
}

fn fail(code: i32, msg: &str) -> ! {
    eprintln!("git-hybrid: {msg}");
    std::process::exit(code)
}

/// Runs the supervisor (`args` are the arguments after the program name); never returns.
#[allow(unsafe_code)]
pub fn main(args: &[OsString]) -> ! {
    let mut it = args.iter();
    if it.next().map(|a| a != SUBCOMMAND).unwrap_or(true) {
        fail(2, "bad supervisor arguments");
    }
    let parent: i32 = it.next().and_then(|a| a.to_str()?.parse().ok()).unwrap_or_else(|| fail(2, "bad supervisor pid"));
    let mut writes: Option<Vec<PathBuf>> = None;
    loop {
        match it.next().and_then(|a| a.to_str()) {
            Some("--write") => {
                let p = it.next().unwrap_or_else(|| fail(2, "--write needs a path"));
                writes.get_or_insert_with(Vec::new).push(PathBuf::from(p));
            }
            Some("--") => break,
            _ => fail(2, "bad supervisor arguments"),
        }
    }
    let program = it.next().unwrap_or_else(|| fail(2, "no program to supervise")).clone();
    let argv0 = it.next().unwrap_or_else(|| fail(2, "no argv0")).clone();
    let rest: Vec<OsString> = it.cloned().collect();

    PARENT.store(parent, Ordering::SeqCst);
    install_handlers();
    watch_parent(parent);

    if let Some(w) = &writes {
        if let Err(e) = super::sandbox::restrict(w) {
            fail(126, &format!("cannot apply the Landlock sandbox: {e:#}"));
        }
    }
    drop_ptrace();

    let mut cmd = std::process::Command::new(&program);
    std::os::unix::process::CommandExt::arg0(&mut cmd, &argv0);
    cmd.args(&rest);
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => fail(127, &format!("cannot run {:?}: {e}", argv0)),
    };
    let status = match child.wait() {
        Ok(s) => s,
        Err(e) => fail(1, &format!("cannot wait for the agent: {e}")),
    };
    use std::os::unix::process::ExitStatusExt;
    if let Some(sig) = status.signal() {
        // Die the same way, so the dispatcher records the same signal. Through `libc`: resetting a
        // signal's action is `unsafe` in every crate.
        // SAFETY: restoring the default action and signalling ourselves.
        unsafe {
            libc::signal(sig, libc::SIG_DFL);
            libc::kill(libc::getpid(), sig);
        }
    }
    std::process::exit(status.code().unwrap_or(1))
}

/// Takes `CAP_SYS_PTRACE` away from the agent (when it runs as root): together with the
/// dispatcher being non-dumpable, it cannot read the dispatcher's memory or
/// `/proc/<pid>/environ`. Failures are ignored (an unprivileged user has nothing to drop).
#[cfg(target_os = "linux")]
fn drop_ptrace() {
    use rustix::thread::{self, CapabilitySet};
    let _ = thread::remove_capability_from_bounding_set(CapabilitySet::SYS_PTRACE);
    let _ = thread::clear_ambient_capability_set();
    if let Ok(mut sets) = thread::capabilities(None) {
        sets.effective.remove(CapabilitySet::SYS_PTRACE);
        sets.permitted.remove(CapabilitySet::SYS_PTRACE);
        sets.inheritable.remove(CapabilitySet::SYS_PTRACE);
        let _ = thread::set_capabilities(None, sets);
    }
}

#[cfg(not(target_os = "linux"))]
fn drop_ptrace() {}

/// Installs [`on_signal`]. Through `libc`: installing a handler is `unsafe` in every crate
/// (rustix offers none outside its `runtime` feature, signal-hook's is `unsafe` too).
#[allow(unsafe_code)]
fn install_handlers() {
    for sig in [libc::SIGTERM, libc::SIGINT, libc::SIGHUP] {
        // SAFETY: a plain C handler that only calls async-signal-safe functions.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_signal as extern "C" fn(libc::c_int) as usize;
            sa.sa_flags = libc::SA_RESTART;
            libc::sigemptyset(&mut sa.sa_mask);
            libc::sigaction(sig, &sa, std::ptr::null_mut());
        }
    }
}

/// Asks for SIGTERM when the parent dies, then closes the race with a parent already gone.
#[cfg(target_os = "linux")]
fn watch_parent(parent: i32) {
    let _ = rustix::process::set_parent_process_death_signal(Some(Signal::TERM));
    if !parent_is(parent) {
        let _ = rustix::process::kill_current_process_group(Signal::KILL);
    }
}

#[cfg(not(target_os = "linux"))]
fn watch_parent(parent: i32) {
    // No death signal: poll for the parent in a thread.
    std::thread::spawn(move || loop {
        if !parent_is(parent) {
            let _ = rustix::process::kill_current_process_group(Signal::KILL);
        }
        std::thread::sleep(std::time::Duration::from_millis(500));
    });
}
