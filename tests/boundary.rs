//! The agent boundary (issues 11 and 18): nothing an agent plants in the shared git dir runs on
//! the host with the host's environment, tampering is restored and reported, agents run in a
//! Landlock sandbox and die with their dispatcher.
//!
//! Planted programs append `== <name>` and their whole environment to `planted.log` beside the
//! repository; the tests put secrets in the environment of git-hybrid and assert that no planted
//! program ever saw one.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{assert_ok, TestRepo};

/// Secrets in the dispatcher's environment.
const SECRETS: &[(&str, &str)] = &[
    ("AWS_SECRET_ACCESS_KEY", "aws-secret-7f3a9c"),
    ("GITHUB_TOKEN", "ghp_planted0secret0value0000000000000000"),
    ("ANTHROPIC_API_KEY", "sk-ant-secret-value-1b2c"),
    ("OPENAI_API_KEY", "sk-openai-secret-value-3d4e"),
];

/// The planted program: logs its name and environment, then passes stdin through (so it also
/// works as a clean/smudge filter).
fn planted_script(log: &Path, name: &str) -> String {
    format!("#!/bin/sh\n{{ echo \"== {name} $*\"; env; }} >> '{}'\ncat 2>/dev/null\nexit 0\n", log.display())
}

fn write_exec(path: &Path, text: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// Runs `git-hybrid <args>` in `dir` with the secrets in its environment.
fn hybrid_with_secrets(r: &TestRepo, dir: &Path, args: &[&str], extra_env: &[(&str, &str)]) -> std::process::Output {
    let mut cmd: Command = r.hybrid_cmd(dir, args);
    for (k, v) in SECRETS.iter().chain(extra_env) {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

/// Panics when any planted program ran with a secret; returns the log.
fn assert_no_secret_seen(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    for (k, v) in SECRETS {
        assert!(!text.contains(v), "a planted program ran with {k} in its environment:\n{text}");
    }
    text
}

/// Plants hooks, fsmonitor, a filter driver and gpg signing in the shared git dir, as an agent
/// would (the repository's own `git config`, never the user's global one).
fn plant_everything(r: &TestRepo, log: &Path) -> PathBuf {
    let common = r.root.join(".git");
    let bin = r.base().join("planted");
    for hook in
        ["pre-commit", "post-commit", "post-index-change", "reference-transaction", "post-checkout", "pre-auto-gc"]
    {
        write_exec(&common.join("hooks").join(hook), &planted_script(log, hook));
    }
    for name in ["fsmonitor", "smudge", "clean", "gpg"] {
        write_exec(&bin.join(name), &planted_script(log, name));
    }
    let cfg = |k: &str, v: &Path| r.git(&["config", k, &v.to_string_lossy()]);
    cfg("core.fsmonitor", &bin.join("fsmonitor"));
    cfg("filter.evil.smudge", &bin.join("smudge"));
    cfg("filter.evil.clean", &bin.join("clean"));
    r.git(&["config", "filter.evil.required", "true"]);
    cfg("gpg.program", &bin.join("gpg"));
    r.git(&["config", "commit.gpgSign", "true"]);
    bin
}

#[test]
fn git_children_never_run_planted_hooks_filters_or_signing_with_secrets() {
    let r = TestRepo::new();
    // The task leaves its work uncommitted: git-hybrid's checkpoint commits it.
    r.write("agent.sh", "echo work > a.txt\n");
    r.write(".gitattributes", "*.txt filter=evil\n");
    r.write(
        "hybrid.toml",
        "[agent]\ncommand = [\"builtin:script\", \"agent.sh\"]\n\n[[task]]\nid = \"t1\"\nprompt = \"p\"\ntouches = [\"a.txt\"]\n",
    );
    r.commit_all("setup");
    let log = r.base().join("planted.log");
    plant_everything(&r, &log);

    // Checkpoint commit (git add -A, git commit) and the landing through read-tree (the
    // filter attribute keeps the in-process checkout off) in the user's checkout.
    let out = hybrid_with_secrets(&r, &r.root, &["dispatch"], &[]);
    assert_ok(&out, &["dispatch"]);
    assert_eq!(r.read("a.txt"), "work\n");
    assert!(r.git(&["log", "-1", "--format=%B", "main"]).contains("Hybrid-Task: t1"));
    // `git worktree add` (filter drivers configured) on start.
    let out = hybrid_with_secrets(&r, &r.root, &["start", "t2"], &[]);
    assert_ok(&out, &["start"]);
    assert_eq!(std::fs::read_to_string(r.task_dir("t2").join("a.txt")).unwrap(), "work\n");
    // And a merge through read-tree with the fast path off.
    std::fs::write(r.task_dir("t2").join("b.txt"), "more\n").unwrap();
    r.git_in(&r.task_dir("t2"), &["-c", "commit.gpgSign=false", "add", "-A"]);
    r.git_in(
        &r.task_dir("t2"),
        &["-c", "commit.gpgSign=false", "-c", "core.hooksPath=/dev/null", "commit", "-q", "-m", "b"],
    );
    let out = hybrid_with_secrets(&r, &r.root, &["merge", "t2"], &[("HYBRID_NO_FAST_CHECKOUT", "1")]);
    assert_ok(&out, &["merge"]);
    assert_eq!(r.read("b.txt"), "more\n");
    assert_no_secret_seen(&log);
}

#[test]
fn a_filter_from_the_trusted_global_config_still_runs() {
    let r = TestRepo::new();
    let log = r.base().join("trusted.log");
    let bin = r.base().join("trusted-smudge");
    write_exec(&bin, &planted_script(&log, "trusted-smudge"));
    // The user's global config defines the driver; the repository's config redefines it.
    std::fs::write(&r.empty_config, format!("[filter \"lfsish\"]\n\tsmudge = {}\n", bin.display())).unwrap();
    r.write(".gitattributes", "*.bin filter=lfsish\n");
    r.write("x.bin", "payload\n");
    r.commit_all("attrs");
    let planted = r.base().join("planted-smudge");
    let plog = r.base().join("planted.log");
    write_exec(&planted, &planted_script(&plog, "planted-smudge"));
    r.git(&["config", "filter.lfsish.smudge", &planted.to_string_lossy()]);
    let out = hybrid_with_secrets(&r, &r.root, &["start", "t1"], &[]);
    assert_ok(&out, &["start"]);
    assert_eq!(std::fs::read_to_string(r.task_dir("t1").join("x.bin")).unwrap(), "payload\n");
    assert!(!plog.exists(), "the repository's own driver ran: {}", std::fs::read_to_string(&plog).unwrap());
    let trusted = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(trusted.contains("== trusted-smudge"), "the user's global driver did not run: {trusted}");
    std::fs::write(&r.empty_config, "").unwrap();
}
