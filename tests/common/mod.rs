//! Hermetic test fixtures: a real temporary git repository and the real `git-hybrid` binary.
//!
//! Every git and git-hybrid process gets `GIT_CONFIG_GLOBAL`/`GIT_CONFIG_SYSTEM` pointed at an
//! empty file, a private `HOME`, a fixed author/committer and fixed dates, and `NO_COLOR`, so
//! results do not depend on the machine.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

pub mod server;

/// Fixed date used for every commit (2026-01-01T00:00:00Z).
pub const DATE: &str = "@1767225600 +0000";

/// A temporary repository with one commit on `main`.
pub struct TestRepo {
    pub tmp: tempfile::TempDir,
    /// The main checkout.
    pub root: PathBuf,
    /// Empty file used as global and system git config.
    pub empty_config: PathBuf,
    pub home: PathBuf,
}

impl TestRepo {
    /// `main` with one commit holding `README.md`.
    pub fn new() -> TestRepo {
        let repo = TestRepo::empty();
        repo.write("README.md", "hello\n");
        repo.commit_all("initial commit");
        repo
    }

    /// An initialised repository with no commits.
    pub fn empty() -> TestRepo {
        let tmp = tempfile::tempdir().expect("tempdir");
        let base = std::fs::canonicalize(tmp.path()).expect("canonicalize");
        let root = base.join("repo");
        let home = base.join("home");
        std::fs::create_dir_all(&root).unwrap();
        std::fs::create_dir_all(&home).unwrap();
        let empty_config = base.join("empty.gitconfig");
        std::fs::write(&empty_config, "").unwrap();
        let r = TestRepo { tmp, root, empty_config, home };
        r.git(&["init", "-q", "-b", "main"]);
        r
    }

    /// The folder holding the repository (and its sibling `repo.hybrid`).
    pub fn base(&self) -> PathBuf {
        self.root.parent().unwrap().to_path_buf()
    }

    /// Default worktree path of a task.
    pub fn task_dir(&self, id: &str) -> PathBuf {
        let name = self.root.file_name().unwrap().to_string_lossy();
        self.base().join(format!("{name}.hybrid")).join(id)
    }

    /// Applies the hermetic environment to a command.
    pub fn env(&self, cmd: &mut Command) {
        // A temp dir of its own: agents may write the temp dir under the sandbox, and the
        // repository itself lives in the system one.
        let tmp = self.home.join("tmp");
        let _ = std::fs::create_dir_all(&tmp);
        cmd.env("TMPDIR", tmp);
        cmd.env_remove("GIT_DIR")
            .env_remove("GIT_WORK_TREE")
            .env_remove("GIT_INDEX_FILE")
            .env("GIT_CONFIG_GLOBAL", &self.empty_config)
            .env("GIT_CONFIG_SYSTEM", &self.empty_config)
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("HOME", &self.home)
            .env("XDG_CONFIG_HOME", self.home.join(".config"))
            .env("GIT_AUTHOR_NAME", "Test Author")
            .env("GIT_AUTHOR_EMAIL", "author@example.com")
            .env("GIT_AUTHOR_DATE", DATE)
            .env("GIT_COMMITTER_NAME", "Test Committer")
            .env("GIT_COMMITTER_EMAIL", "committer@example.com")
            .env("GIT_COMMITTER_DATE", DATE)
            .env("NO_COLOR", "1")
            .env("LANG", "C")
            .env("LC_ALL", "C");
    }

    /// Runs git in `dir`; panics on failure.
    pub fn git_in(&self, dir: &Path, args: &[&str]) -> String {
        let out = self.git_out(dir, args);
        assert!(out.status.success(), "git {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).trim_end().to_string()
    }

    /// Runs git in `dir` and returns its output, whatever the status.
    pub fn git_out(&self, dir: &Path, args: &[&str]) -> Output {
        let mut cmd = Command::new("git");
        cmd.args(args).current_dir(dir).stdin(Stdio::null());
        self.env(&mut cmd);
        cmd.output().expect("run git")
    }

    /// Runs git in the main checkout.
    pub fn git(&self, args: &[&str]) -> String {
        self.git_in(&self.root, args)
    }

    /// Writes a file (creating folders) under the main checkout.
    pub fn write(&self, rel: &str, content: &str) {
        write_file(&self.root.join(rel), content);
    }

    /// Reads a file under the main checkout.
    pub fn read(&self, rel: &str) -> String {
        std::fs::read_to_string(self.root.join(rel)).unwrap()
    }

    /// `git add -A && git commit` in the main checkout; returns the new HEAD.
    pub fn commit_all(&self, msg: &str) -> String {
        self.commit_all_in(&self.root.clone(), msg)
    }

    /// `git add -A && git commit` in `dir`; returns the new HEAD.
    pub fn commit_all_in(&self, dir: &Path, msg: &str) -> String {
        self.git_in(dir, &["add", "-A"]);
        self.git_in(dir, &["commit", "-q", "-m", msg]);
        self.git_in(dir, &["rev-parse", "HEAD"])
    }

    /// `start`s task `id` and commits `file` (holding `<id>\n`) in its worktree.
    pub fn task_with_commit(&self, id: &str, file: &str) {
        self.hybrid_ok(&["start", id]);
        let dir = self.task_dir(id);
        write_file(&dir.join(file), &format!("{id}\n"));
        self.commit_all_in(&dir, &format!("{id}: add {file}"));
    }

    /// Commits a plan with one task `h` whose agent notes progress, then waits until the returned
    /// path exists (at most 60 s), then prints to stdout and stderr, commits and exits.
    pub fn holding_plan(&self) -> PathBuf {
        let release = self.base().join("release");
        self.write(
            "hold.sh",
            "#!/bin/sh\ncat >/dev/null\necho 'reading the code' >> \"$HYBRID_RUN_DIR/progress.md\"\necho 'before release'\n\
             i=0\nwhile [ ! -e \"$1\" ] && [ $i -lt 1200 ]; do sleep 0.05; i=$((i+1)); done\n\
             echo 'after release'\necho 'a warning' >&2\necho held > held.txt\ngit add held.txt && git commit -q -m held\n",
        );
        self.write(
            "hybrid.toml",
            &format!(
                "[[task]]\nid = \"h\"\nprompt = \"hold\"\nagent = [\"builtin:script\", \"hold.sh\", \"{}\"]\n",
                release.display()
            ),
        );
        self.commit_all("plan");
        release
    }

    /// Resolves a revision.
    pub fn rev(&self, rev: &str) -> String {
        self.git(&["rev-parse", rev])
    }

    /// A `git-hybrid` command ready to run in `dir`.
    pub fn hybrid_cmd(&self, dir: &Path, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_git-hybrid"));
        cmd.args(args).current_dir(dir).stdin(Stdio::null());
        self.env(&mut cmd);
        cmd
    }

    /// The folder where paused failpoints write `<step>.paused` and wait for `<step>.resume`.
    pub fn failpoints_dir(&self) -> PathBuf {
        self.base().join("failpoints")
    }

    /// A `git-hybrid <args>` command in the main checkout with the failpoints `spec`
    /// (`HYBRID_FAILPOINTS`, see `src/failpoint.rs`), e.g. `land::ref_moved=kill`.
    pub fn failpoint_cmd(&self, args: &[&str], spec: &str) -> Command {
        let dir = self.failpoints_dir();
        std::fs::create_dir_all(&dir).unwrap();
        let mut cmd = self.hybrid_cmd(&self.root, args);
        cmd.env("HYBRID_FAILPOINTS", spec).env("HYBRID_FAILPOINTS_DIR", dir);
        cmd
    }

    /// Runs `git-hybrid <args>` with `spec`; returns its output and whether it died of SIGKILL.
    pub fn run_failpoint(&self, args: &[&str], spec: &str) -> (Output, bool) {
        use std::os::unix::process::ExitStatusExt;
        let out = self.failpoint_cmd(args, spec).output().expect("run git-hybrid");
        let killed = out.status.signal() == Some(SIGKILL);
        (out, killed)
    }

    /// Runs `git-hybrid <args>` and `kill -9`s it at `step` (`step` may carry `@N`: the N-th
    /// time it is reached); panics unless the process died exactly there.
    pub fn kill_at(&self, args: &[&str], step: &str) {
        let (name, nth) = match step.split_once('@') {
            Some((n, k)) => (n, format!("@{k}")),
            None => (step, String::new()),
        };
        let (out, killed) = self.run_failpoint(args, &format!("{name}=kill{nth}"));
        assert!(
            killed,
            "{args:?} never reached the step {step} (exit {:?}; built without `--features failpoints`?)\nstdout:\n{}\nstderr:\n{}",
            out.status.code(),
            stdout(&out),
            stderr(&out)
        );
    }

    /// Starts `git-hybrid <args>` and returns once it is paused at `step` (see [`Paused`]).
    /// `step` may carry `@N` (pause only the N-th time it is reached).
    pub fn pause_at(&self, args: &[&str], step: &str) -> Paused {
        let (step, nth) = match step.split_once('@') {
            Some((s, n)) => (s, format!("@{n}")),
            None => (step, String::new()),
        };
        let name = step.replace("::", "-");
        let paused = self.failpoints_dir().join(format!("{name}.paused"));
        let resume = self.failpoints_dir().join(format!("{name}.resume"));
        let _ = std::fs::remove_file(&paused);
        let _ = std::fs::remove_file(&resume);
        let mut child = self
            .failpoint_cmd(args, &format!("{step}=pause{nth}"))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn git-hybrid");
        // A liveness bound, not a timing assert: the step is reached in milliseconds.
        let start = std::time::Instant::now();
        while !paused.exists() {
            if let Some(status) = child.try_wait().unwrap() {
                let out = child.wait_with_output().unwrap();
                panic!("{args:?} exited ({status}) before reaching {step}:\n{}{}", stdout(&out), stderr(&out));
            }
            assert!(start.elapsed() < std::time::Duration::from_secs(120), "{args:?} never reached {step}");
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        Paused { child: Some(child), resume }
    }

    /// Runs `git-hybrid <args>` in `dir`.
    pub fn hybrid_in(&self, dir: &Path, args: &[&str]) -> Output {
        self.hybrid_cmd(dir, args).output().expect("run git-hybrid")
    }

    /// Runs `git-hybrid <args>` in the main checkout.
    pub fn hybrid(&self, args: &[&str]) -> Output {
        self.hybrid_in(&self.root.clone(), args)
    }

    /// Runs `git-hybrid <args>` and asserts exit 0; returns stdout.
    pub fn hybrid_ok(&self, args: &[&str]) -> String {
        let out = self.hybrid(args);
        assert_ok(&out, args);
        stdout(&out)
    }

    /// Runs `git-hybrid --json <args>` and parses stdout.
    pub fn hybrid_json(&self, args: &[&str]) -> serde_json::Value {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        let out = self.hybrid(&all);
        assert_ok(&out, &all);
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("bad JSON from {all:?}: {e}: {}", stdout(&out)))
    }

    /// The `status --json` task list.
    pub fn tasks(&self) -> Vec<serde_json::Value> {
        self.hybrid_json(&["status"])["tasks"].as_array().cloned().unwrap_or_default()
    }

    /// Output of `git status --porcelain` in `dir` (untracked included).
    pub fn porcelain(&self, dir: &Path) -> String {
        self.git_in(dir, &["status", "--porcelain", "--untracked-files=all"])
    }

    /// Every ref with its target, for "nothing changed" assertions.
    pub fn refs_snapshot(&self) -> String {
        self.git(&["for-each-ref", "--format=%(refname) %(objectname)"])
    }
}

/// A `git-hybrid` process stopped at a failpoint (`pause`): [`Paused::kill`] is a `kill -9`
/// exactly at that step, [`Paused::resume`] lets it go on. Dropped unresumed, it is killed.
pub struct Paused {
    child: Option<Child>,
    resume: PathBuf,
}

impl Paused {
    /// The paused process's id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// `kill -9`s the paused process.
    pub fn kill(mut self) {
        if let Some(mut child) = self.child.take() {
            kill_9(&mut child);
        }
    }

    /// Lets the process go on from the step and waits for it to finish.
    pub fn resume(mut self) -> Output {
        std::fs::write(&self.resume, "").unwrap();
        self.child.take().expect("a paused process").wait_with_output().expect("wait for git-hybrid")
    }
}

impl Drop for Paused {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            kill_9(&mut child);
        }
    }
}

/// The signal `kill -9` sends.
pub const SIGKILL: i32 = 9;

/// Sends SIGKILL to a child (if it still runs) and reaps it.
pub fn kill_9(child: &mut Child) {
    let _ = child.kill(); // std's kill is SIGKILL on Unix
    let _ = child.wait();
}

/// Writes a file, creating parent folders.
pub fn write_file(path: &Path, content: &str) {
    if let Some(p) = path.parent() {
        std::fs::create_dir_all(p).unwrap();
    }
    std::fs::write(path, content).unwrap();
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Asserts a zero exit with both streams in the message.
pub fn assert_ok(out: &Output, what: &[&str]) {
    assert!(
        out.status.success(),
        "{what:?} exited {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        stdout(out),
        stderr(out)
    );
}

/// Asserts a specific exit code.
pub fn assert_code(out: &Output, code: i32) {
    assert_eq!(
        out.status.code(),
        Some(code),
        "expected exit {code}\nstdout:\n{}\nstderr:\n{}",
        stdout(out),
        stderr(out)
    );
}
