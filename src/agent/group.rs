//! Process groups: every agent run and verify command runs in a group of its own, which is
//! waited for with a timeout and a stop flag and then ended as a whole (SIGTERM, SIGKILL after
//! [`KILL_GRACE`]); what an interrupted run left running is found again from its `meta.json`.
//! Signals go through `rustix` (no `unsafe`).

use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal};

use super::{RunMeta, KILL_GRACE};

/// What waiting for a process group's leader gave.
pub(super) struct Waited {
    pub(super) status: Option<std::process::ExitStatus>,
    pub(super) timed_out: bool,
    pub(super) interrupted: bool,
}

/// Waits for a group leader until it exits, the deadline passes or `stop` is set (then the
/// group is ended: SIGTERM, SIGKILL after [`KILL_GRACE`]).
pub(super) fn wait_group(mut child: std::process::Child, timeout: Duration, t0: Instant, stop: &AtomicBool) -> Waited {
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
    let waiter = std::thread::spawn(move || {
        let _ = tx.send(child.wait());
    });
    let deadline = t0 + timeout;
    let mut w = Waited { status: None, timed_out: false, interrupted: false };
    w.status = loop {
        let now = Instant::now();
        if stop.load(Ordering::SeqCst) {
            w.interrupted = true;
            break end_group(pid, &rx);
        }
        if now >= deadline {
            w.timed_out = true;
            break end_group(pid, &rx);
        }
        let tick = (deadline - now).min(Duration::from_millis(100));
        match rx.recv_timeout(tick) {
            Ok(s) => break s.ok(),
            Err(mpsc::RecvTimeoutError::Timeout) => continue,
            Err(mpsc::RecvTimeoutError::Disconnected) => break None,
        }
    };
    let _ = waiter.join();
    w
}

/// SIGTERM to the group, SIGKILL after the grace period; returns the exit status if reaped.
pub(super) fn end_group(
    pid: u32,
    rx: &mpsc::Receiver<std::io::Result<std::process::ExitStatus>>,
) -> Option<std::process::ExitStatus> {
    kill_group(pid, Signal::TERM);
    match rx.recv_timeout(KILL_GRACE) {
        Ok(s) => s.ok(),
        Err(_) => {
            kill_group(pid, Signal::KILL);
            rx.recv().ok().and_then(|s| s.ok())
        }
    }
}

pub(super) fn exit_signal(s: &std::process::ExitStatus) -> Option<i32> {
    use std::os::unix::process::ExitStatusExt;
    s.signal()
}

/// A group id that may be signalled: never 0 (our own group) or 1 (init's).
fn group_pid(pgid: u32) -> Option<Pid> {
    if pgid <= 1 {
        return None;
    }
    Pid::from_raw(i32::try_from(pgid).ok()?)
}

/// Sends a signal to a process group (errors such as "no such group" are ignored).
pub fn kill_group(pgid: u32, sig: Signal) {
    if let Some(pgid) = group_pid(pgid) {
        let _ = rustix::process::kill_process_group(pgid, sig);
    }
}

/// True while any process of the group is alive (signal 0: existence and permission only).
pub fn group_alive(pgid: u32) -> bool {
    group_pid(pgid).is_some_and(|pgid| rustix::process::test_kill_process_group(pgid).is_ok())
}

/// Puts the child in a process group of its own (so the whole group can be ended).
///
/// Deliberately no `pre_exec` hook: any hook makes the standard library fork the whole
/// dispatcher instead of using `posix_spawn`, and forking a busy multi-threaded process cost
/// more than all other launch steps together (benches/dispatch.py). What must happen in the
/// child (death signal, sandbox) is done by the [`supervise`] child after its own exec.
pub(super) fn configure_child(cmd: &mut Command) {
    use std::os::unix::process::CommandExt;
    cmd.process_group(0);
}

/// Ends what is left of an interrupted run (found through its `meta.json`). Returns true when
/// something was killed. On Linux only processes whose environment names this run directory
/// are considered the run's, so a recycled pid is never signalled.
pub fn kill_orphan(run_dir: &Path) -> bool {
    let Some(meta) = RunMeta::read(run_dir) else { return false };
    let Some(pgid) = meta.pid else { return false };
    if meta.ended.is_some() || !group_alive(pgid) || !group_is_run(pgid, run_dir) {
        return false;
    }
    kill_group(pgid, Signal::TERM);
    let until = Instant::now() + KILL_GRACE;
    while group_alive(pgid) && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(20));
    }
    if group_alive(pgid) {
        kill_group(pgid, Signal::KILL);
        let until = Instant::now() + Duration::from_secs(1);
        while group_alive(pgid) && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    true
}

/// Whether a process of group `pgid` has `HYBRID_RUN_DIR=<run_dir>` in its environment.
/// `/proc` stays here, as no crate API gives the answer: no system call lists the processes of a
/// group or reads another process's environment (`/proc/<pid>/environ`), and the group is read
/// from `/proc/<pid>/stat` rather than asked with rustix's `getpgid`, which asserts a positive
/// group while kernel threads and processes whose group leader lives outside our pid namespace
/// report 0 (the unit test below met one and panicked).
///
/// A process that is inside `exec` shows an empty environment: the kernel lets the parent go on
/// (`spawn` returns) once the old program is gone, before the new one's environment is in place
/// (under load, a third of the checks made right after a spawn saw it empty). So when no process
/// carries the marker but one showed an empty environment, the group is read again for up to
/// [`EXEC_SETTLE`] before the answer is "not this run's".
#[cfg(target_os = "linux")]
fn group_is_run(pgid: u32, run_dir: &Path) -> bool {
    let mut marker = b"HYBRID_RUN_DIR=".to_vec();
    marker.extend_from_slice(run_dir.as_os_str().as_encoded_bytes());
    let until = Instant::now() + EXEC_SETTLE;
    loop {
        match scan_group(pgid, &marker) {
            Scan::Found => return true,
            Scan::Unsettled if Instant::now() < until => std::thread::sleep(Duration::from_millis(5)),
            Scan::Unsettled | Scan::Absent => return false,
        }
    }
}

/// How long [`group_is_run`] waits for a process inside `exec` to show its environment.
#[cfg(target_os = "linux")]
const EXEC_SETTLE: Duration = Duration::from_millis(500);

#[cfg(target_os = "linux")]
enum Scan {
    /// A process of the group carries the marker.
    Found,
    /// None does, and one showed an empty environment (it may be inside `exec`).
    Unsettled,
    /// None does.
    Absent,
}

#[cfg(target_os = "linux")]
fn scan_group(pgid: u32, marker: &[u8]) -> Scan {
    let Ok(entries) = std::fs::read_dir("/proc") else { return Scan::Absent };
    let mut unsettled = false;
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(pid) = name.to_str().and_then(|s| s.parse::<u32>().ok()) else { continue };
        if proc_group(pid) != Some(pgid) {
            continue;
        }
        if let Ok(env) = std::fs::read(format!("/proc/{pid}/environ")) {
            if env.split(|&b| b == 0).any(|kv| kv == marker) {
                return Scan::Found;
            }
            unsettled |= env.is_empty();
        }
    }
    if unsettled {
        Scan::Unsettled
    } else {
        Scan::Absent
    }
}

/// The process group of `pid` (from `/proc/<pid>/stat`), `None` when it is gone.
#[cfg(target_os = "linux")]
fn proc_group(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the ")" that closes the command name: state ppid pgrp ...
    let rest = stat.rsplit_once(')')?.1;
    rest.split_whitespace().nth(2)?.parse().ok()
}

#[cfg(not(target_os = "linux"))]
fn group_is_run(_pgid: u32, _run_dir: &Path) -> bool {
    // Without /proc the group id is trusted: it was recorded when the run started.
    true
}

/// The processes of group `pgid` and their state letters (`/proc/<pid>/stat`), for test messages.
#[cfg(all(test, target_os = "linux"))]
fn members(pgid: u32) -> Vec<(u32, char)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else { continue };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { continue };
        let Some((_, rest)) = stat.rsplit_once(')') else { continue };
        let f: Vec<&str> = rest.split_whitespace().collect();
        if f.get(2).and_then(|g| g.parse::<u32>().ok()) == Some(pgid) {
            out.push((pid, f[0].chars().next().unwrap_or('?')));
        }
    }
    out
}

/// Test helper: waits up to 5 s for group `pgid` to be gone, then asserts that nothing of it still
/// runs. A killed process stays a zombie (`Z`) until its new parent reaps it, which a test does not
/// control (this VM's init reaps orphans only every ~2 s, later under load).
#[cfg(test)]
pub(super) fn assert_group_ended(pgid: u32) {
    let until = Instant::now() + Duration::from_secs(5);
    while group_alive(pgid) && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(20));
    }
    if group_alive(pgid) {
        #[cfg(target_os = "linux")]
        {
            let left = members(pgid);
            assert!(left.iter().all(|(_, state)| matches!(state, 'Z' | 'X')), "group {pgid} still runs: {left:?}");
        }
        #[cfg(not(target_os = "linux"))]
        panic!("group {pgid} is still alive 5 s after SIGKILL");
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::process::CommandExt;

    use super::*;

    /// A run's group is recognised by the run directory in its environment, and only by it;
    /// ending the group ends every process in it.
    #[test]
    fn a_group_is_found_by_its_run_directory_and_ended() {
        let d = tempfile::tempdir().unwrap();
        let run = d.path().join("run");
        let mut child = Command::new("sh")
            .args(["-c", "sleep 30 & sleep 30"])
            .env("HYBRID_RUN_DIR", &run)
            .process_group(0)
            .spawn()
            .unwrap();
        let pgid = child.id();
        assert!(group_alive(pgid), "group {pgid} not alive right after spawn");
        #[cfg(target_os = "linux")]
        {
            // Asked right after the spawn, while `sh` may still be inside exec (see group_is_run).
            assert!(group_is_run(pgid, &run), "group {pgid} not recognised as {run:?}; members: {:?}", members(pgid));
            let other = d.path().join("other");
            assert!(!group_is_run(pgid, &other), "group {pgid} taken for {other:?}; members: {:?}", members(pgid));
        }
        kill_group(pgid, Signal::KILL);
        child.wait().unwrap();
        assert_group_ended(pgid);
        assert!(!group_alive(0) && !group_alive(1), "group 0 or 1 reported as signalable");
    }

    /// Checked right after a spawn, under load a third of the checks saw `sh` inside exec with an
    /// empty environment: `group_is_run` waits for it. 200 spawns, each checked at once.
    #[cfg(target_os = "linux")]
    #[test]
    fn a_group_is_recognised_while_its_leader_execs() {
        let d = tempfile::tempdir().unwrap();
        let run = d.path().join("run");
        let mut missed = Vec::new();
        for _ in 0..200 {
            let mut child =
                Command::new("sleep").arg("30").env("HYBRID_RUN_DIR", &run).process_group(0).spawn().unwrap();
            let pgid = child.id();
            if !group_is_run(pgid, &run) {
                missed.push((pgid, members(pgid)));
            }
            kill_group(pgid, Signal::KILL);
            child.wait().unwrap();
        }
        assert!(missed.is_empty(), "groups not recognised right after their spawn: {missed:?}");
    }

    /// A group left with only a zombie (its leader exited, not yet reaped) is answered at once:
    /// a zombie's environment cannot be read at all (ESRCH), so it never looks like a process
    /// inside exec (an empty environment).
    #[cfg(target_os = "linux")]
    #[test]
    fn a_zombie_group_is_not_waited_for() {
        let d = tempfile::tempdir().unwrap();
        let run = d.path().join("run");
        let mut child =
            Command::new("sh").args(["-c", "exit 0"]).env("HYBRID_RUN_DIR", &run).process_group(0).spawn().unwrap();
        let pgid = child.id();
        let until = Instant::now() + Duration::from_secs(10);
        while !members(pgid).iter().all(|(_, s)| *s == 'Z') && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(members(pgid).iter().map(|(_, s)| *s).collect::<Vec<_>>(), ['Z'], "the leader should be a zombie");
        let started = Instant::now();
        assert!(!group_is_run(pgid, &run), "a zombie-only group taken for its run: {:?}", members(pgid));
        assert!(started.elapsed() < EXEC_SETTLE, "took {:?} (waited as if inside exec)", started.elapsed());
        child.wait().unwrap();
    }
}
