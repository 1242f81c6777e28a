//! Named failpoints: where the crash tests stop a process, compiled only into test builds.
//!
//! Contract: [`failpoint!`](crate::failpoint!)`("land::ref_moved")` marks a step. Without the
//! cargo feature `failpoints` (every release build: `cargo build --release`, `install.sh`) the
//! macro expands to nothing: no code, no name, no environment read. With it (`./test.sh`,
//! `cargo test --features failpoints`), `HYBRID_FAILPOINTS` selects steps and what happens
//! there:
//!
//! ```text
//! HYBRID_FAILPOINTS="land::checkouts_moved=kill;clean::worktree_renamed=pause"
//! ```
//!
//! | action | effect at the step |
//! |---|---|
//! | `kill` | the process sends itself `SIGKILL`: exactly a `kill -9` there (no destructor runs, no lock is released but the kernel's `flock`s) |
//! | `abort` | `std::process::abort()` (`SIGABRT`, also without destructors) |
//! | `exit(N)` | exits with code N without unwinding |
//! | `panic` | panics (unwinds: destructors run, as on an error) |
//! | `sleep(MS)` | sleeps MS milliseconds, then goes on |
//! | `pause` | writes `$HYBRID_FAILPOINTS_DIR/<step>.paused` (holding the pid) and waits there until `<step>.resume` appears (then removes it and goes on) or the process is killed |
//!
//! `action@N` acts only on the N-th time the step is reached (counted per process, from 1), so a
//! test can stop a train at its third record; without `@N` every time. In file names `::`
//! becomes `-`. Every step's name is listed in `docs/DESIGN.md` ("Test-only failpoints").
//!
//! Why not the `fail` crate: its actions unwind (`panic`) or return, which runs the destructors
//! that remove lock files and notes, the very things a `kill -9` leaves behind; a test must see
//! what a real kill leaves.

#[cfg(feature = "failpoints")]
mod imp {
    use std::collections::HashMap;
    use std::path::PathBuf;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::OnceLock;
    use std::time::Duration;

    #[derive(Debug, Clone, PartialEq)]
    enum Action {
        Kill,
        Abort,
        Exit(i32),
        Panic,
        Sleep(u64),
        Pause,
    }

    struct Point {
        action: Action,
        nth: Option<u64>,
        hits: AtomicU64,
    }

    fn parse_action(text: &str) -> Option<(Action, Option<u64>)> {
        let (action, nth) = match text.rsplit_once('@') {
            Some((a, n)) => (a, Some(n.trim().parse().ok()?)),
            None => (text, None),
        };
        let arg = |name: &str| action.strip_prefix(name)?.strip_prefix('(')?.strip_suffix(')').map(str::trim);
        let action = match action.trim() {
            "kill" => Action::Kill,
            "abort" => Action::Abort,
            "panic" => Action::Panic,
            "pause" => Action::Pause,
            _ => {
                if let Some(code) = arg("exit") {
                    Action::Exit(code.parse().ok()?)
                } else if let Some(ms) = arg("sleep") {
                    Action::Sleep(ms.parse().ok()?)
                } else {
                    return None;
                }
            }
        };
        Some((action, nth))
    }

    fn points() -> &'static HashMap<String, Point> {
        static POINTS: OnceLock<HashMap<String, Point>> = OnceLock::new();
        POINTS.get_or_init(|| {
            let mut map = HashMap::new();
            let spec = std::env::var("HYBRID_FAILPOINTS").unwrap_or_default();
            for item in spec.split(';').map(str::trim).filter(|s| !s.is_empty()) {
                let parsed = item.split_once('=').and_then(|(name, a)| Some((name.trim(), parse_action(a)?)));
                let Some((name, (action, nth))) = parsed else {
                    eprintln!("git-hybrid: HYBRID_FAILPOINTS: cannot parse {item:?}");
                    std::process::abort();
                };
                map.insert(name.to_string(), Point { action, nth, hits: AtomicU64::new(0) });
            }
            map
        })
    }

    fn file(name: &str, suffix: &str) -> PathBuf {
        let dir = std::env::var_os("HYBRID_FAILPOINTS_DIR").map(PathBuf::from).unwrap_or_else(std::env::temp_dir);
        dir.join(format!("{}.{suffix}", name.replace("::", "-")))
    }

    pub fn hit(name: &str) {
        let Some(point) = points().get(name) else { return };
        let n = point.hits.fetch_add(1, Ordering::SeqCst) + 1;
        if point.nth.is_some_and(|want| want != n) {
            return;
        }
        match point.action {
            Action::Kill => {
                let _ = rustix::process::kill_process(rustix::process::getpid(), rustix::process::Signal::KILL);
                // SIGKILL cannot be caught; the process never gets here.
                std::process::abort();
            }
            Action::Abort => std::process::abort(),
            Action::Exit(code) => std::process::exit(code),
            Action::Panic => panic!("failpoint {name}"),
            Action::Sleep(ms) => std::thread::sleep(Duration::from_millis(ms)),
            Action::Pause => {
                let (paused, resume) = (file(name, "paused"), file(name, "resume"));
                let tmp = file(name, &format!("paused.{}", std::process::id()));
                // Rename into place, so a waiting test never reads an empty file.
                if std::fs::write(&tmp, std::process::id().to_string()).is_err()
                    || std::fs::rename(&tmp, &paused).is_err()
                {
                    eprintln!("git-hybrid: failpoint {name}: cannot write {}", paused.display());
                    std::process::abort();
                }
                while std::fs::remove_file(&resume).is_err() {
                    std::thread::sleep(Duration::from_millis(5));
                }
                let _ = std::fs::remove_file(&paused);
            }
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn actions_parse() {
            assert_eq!(parse_action("kill"), Some((Action::Kill, None)));
            assert_eq!(parse_action("kill@3"), Some((Action::Kill, Some(3))));
            assert_eq!(parse_action("exit(7)"), Some((Action::Exit(7), None)));
            assert_eq!(parse_action("sleep(25)@2"), Some((Action::Sleep(25), Some(2))));
            assert_eq!(parse_action("pause"), Some((Action::Pause, None)));
            assert_eq!(parse_action("explode"), None);
            assert_eq!(parse_action("kill@x"), None);
        }
    }
}

#[cfg(feature = "failpoints")]
pub use imp::hit;

/// Marks a named step (see the module contract); nothing at all without the `failpoints` feature.
#[macro_export]
#[doc(hidden)]
macro_rules! failpoint {
    ($name:literal) => {
        #[cfg(feature = "failpoints")]
        $crate::failpoint::hit($name);
    };
}
