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

    /// Starts `git-hybrid <args>` in the main checkout, output discarded; with `pause_ms`, every
    /// landing step sleeps that long first (`HYBRID_TEST_PAUSE_MS`), so a kill can hit it.
    pub fn spawn_paused(&self, args: &[&str], pause_ms: Option<u64>) -> Child {
        let mut cmd = self.hybrid_cmd(&self.root, args);
        if let Some(ms) = pause_ms {
            cmd.env("HYBRID_TEST_PAUSE_MS", ms.to_string());
        }
        cmd.stdout(Stdio::null()).stderr(Stdio::null()).spawn().expect("spawn git-hybrid")
    }

    /// Starts `git-hybrid <args>` (see [`TestRepo::spawn_paused`]) and `kill -9`s it after `after`.
    pub fn kill_after(&self, args: &[&str], pause_ms: Option<u64>, after: std::time::Duration) {
        let mut child = self.spawn_paused(args, pause_ms);
        std::thread::sleep(after);
        kill_9(&mut child);
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

/// Writes a file, creating parent folders.
/// Sends SIGKILL to a child (if it still runs) and reaps it.
pub fn kill_9(child: &mut Child) {
    let _ = child.kill(); // std's kill is SIGKILL on Unix
    let _ = child.wait();
}

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
