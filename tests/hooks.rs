//! Hooks: install/uninstall with chaining, hooksPath, linked worktrees, pre-commit checks,
//! checkpoints, post-merge ledger records, doctor.
//!
//! Fake secrets are assembled at run time (`fake_secret`) so this file holds no secret-looking text.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use common::{assert_code, assert_ok, stderr, write_file, TestRepo};

fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_git-hybrid"))
}

/// PATH with the test binary's folder first, so `git-hybrid` resolves to it in the wrappers.
fn path_with_bin() -> String {
    format!("{}:{}", bin().parent().unwrap().display(), std::env::var("PATH").unwrap_or_default())
}

/// Runs git (firing hooks) with the test binary on PATH.
fn git_h(r: &TestRepo, dir: &Path, args: &[&str]) -> Output {
    git_with_path(r, dir, args, &path_with_bin())
}

fn git_with_path(r: &TestRepo, dir: &Path, args: &[&str], path: &str) -> Output {
    let mut cmd = Command::new("git");
    cmd.args(args).current_dir(dir).stdin(Stdio::null());
    r.env(&mut cmd);
    cmd.env("PATH", path);
    cmd.output().expect("run git")
}

fn commit_h(r: &TestRepo, dir: &Path, msg: &str) -> Output {
    git_h(r, dir, &["commit", "-q", "-m", msg])
}

fn hooks_dir(r: &TestRepo) -> PathBuf {
    r.root.join(".git").join("hooks")
}

fn write_hook(path: &Path, body: &str, mode: u32) {
    write_file(path, body);
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
}

/// Writes hybrid.toml in the main checkout (uncommitted is fine: config is read from there).
fn config(r: &TestRepo, text: &str) {
    r.write("hybrid.toml", text);
}

fn start(r: &TestRepo, id: &str) -> PathBuf {
    let out = r.hybrid(&["start", id]);
    assert_ok(&out, &["start", id]);
    r.task_dir(id)
}

/// A fake credential of each kind, built by concatenation.
fn fake_secret(kind: &str) -> String {
    let rep = |s: &str, n: usize| s.repeat(n);
    match kind {
        "aws-access-key" => format!("{}{}{}", "AK", "IA", rep("Q7", 8)),
        "github-token" => format!("{}{}", "gh", "p_") + &rep("aB3", 12),
        "gitlab-token" => format!("{}{}", "glp", "at-") + &rep("xY9", 7),
        "private-key" => format!("{} {}{}", "-----BEGIN", "OPENSSH PRIVATE", " KEY-----"),
        "anthropic-api-key" => format!("{}{}", "sk-", "ant-api03-") + &rep("Qw8_", 12),
        "openai-api-key" => format!("{}{}", "sk-", "proj-") + &rep("Zx4", 16),
        "slack-token" => format!("{}{}", "xo", "xb-") + "1234567890-" + &rep("Ab1", 8),
        "stripe-key" => format!("{}{}", "sk_", "live_") + &rep("Pq5", 9),
        "aws-secret-key" => format!("{}{}", "aws_secret_", "access_key=") + &rep("w+J/", 9) + "AbCd",
        "google-api-key" => format!("{}{}", "AI", "za") + &rep("Sy_", 11) + "xy",
        "slack-webhook" => format!("{}{}", "https://hooks.", "slack.com/services/") + "T000/B111/" + &rep("Xy", 12),
        "openai-legacy" => format!("{}{}", "s", "k-") + &rep("aZ09", 12),
        other => panic!("no fake for {other}"),
    }
}

const KINDS: [&str; 11] = [
    "aws-access-key",
    "aws-secret-key",
    "google-api-key",
    "slack-webhook",
    "github-token",
    "gitlab-token",
    "private-key",
    "anthropic-api-key",
    "openai-api-key",
    "slack-token",
    "stripe-key",
];

#[test]
fn install_chains_user_hooks_and_uninstall_restores_them_exactly() {
    let r = TestRepo::new();
    let side = r.base().join("side.log");
    let pre = hooks_dir(&r).join("pre-commit");
    let post = hooks_dir(&r).join("post-merge");
    let pre_body = format!("#!/bin/sh\necho \"pre-commit ran as $(basename \"$0\")\" >> '{}'\n", side.display());
    // A bash hook takes the exec path; it records its argument (the squash flag).
    let post_body = format!("#!/usr/bin/env bash\necho \"post-merge ran with $1\" >> '{}'\n", side.display());
    write_hook(&pre, &pre_body, 0o750);
    write_hook(&post, &post_body, 0o700);

    let v = r.hybrid_json(&["hooks", "install"]);
    let hooks = v["hooks"].as_array().unwrap();
    assert_eq!(hooks.len(), 2);
    for h in hooks {
        assert_eq!(h["action"], "installed", "{v}");
        assert!(h["chained"].as_str().unwrap().ends_with(".hybrid-chained"), "{v}");
    }
    let chained = hooks_dir(&r).join("pre-commit.hybrid-chained");
    assert_eq!(std::fs::read_to_string(&chained).unwrap(), pre_body);
    assert_eq!(mode(&chained), 0o750);

    // Idempotent: a second install changes nothing.
    let wrapper = std::fs::read(&pre).unwrap();
    let v = r.hybrid_json(&["hooks", "install"]);
    assert!(v["hooks"].as_array().unwrap().iter().all(|h| h["action"] == "unchanged"), "{v}");
    assert_eq!(std::fs::read(&pre).unwrap(), wrapper);
    assert_eq!(std::fs::read_to_string(&chained).unwrap(), pre_body);
    let st = r.hybrid_json(&["hooks", "status"]);
    assert!(st["hooks"].as_array().unwrap().iter().all(|h| h["state"] == "installed"), "{st}");
    let doc = r.hybrid(&["hooks", "doctor"]);
    assert_code(&doc, 0);

    // The chained hooks still run: the sh one under its own name, the bash one with its argument.
    r.write("a.txt", "a\n");
    r.git(&["add", "a.txt"]);
    let out = commit_h(&r, &r.root, "add a");
    assert_ok(&out, &["commit"]);
    r.git(&["branch", "side"]);
    r.git(&["checkout", "-q", "side"]);
    r.write("b.txt", "b\n");
    r.git(&["add", "b.txt"]);
    assert_ok(&commit_h(&r, &r.root, "add b"), &["commit"]);
    r.git(&["checkout", "-q", "main"]);
    assert_ok(&git_h(&r, &r.root, &["merge", "-q", "side"]), &["merge"]);
    let log = std::fs::read_to_string(&side).unwrap();
    assert!(log.lines().any(|l| l == "pre-commit ran as pre-commit"), "sh hooks keep their $0: {log}");
    assert!(log.lines().any(|l| l == "post-merge ran with 0"), "{log}");

    let v = r.hybrid_json(&["hooks", "uninstall"]);
    assert!(v["hooks"].as_array().unwrap().iter().filter(|h| h["action"] == "restored").count() == 2, "{v}");
    assert_eq!(std::fs::read_to_string(&pre).unwrap(), pre_body);
    assert_eq!(mode(&pre), 0o750);
    assert_eq!(std::fs::read_to_string(&post).unwrap(), post_body);
    assert_eq!(mode(&post), 0o700);
    assert!(!chained.exists());
    assert!(!hooks_dir(&r).join("post-merge.hybrid-chained").exists());
}

#[test]
fn uninstall_without_previous_hooks_removes_the_wrappers() {
    let r = TestRepo::new();
    r.hybrid_ok(&["hooks", "install"]);
    assert!(hooks_dir(&r).join("pre-commit").exists());
    r.hybrid_ok(&["hooks", "uninstall"]);
    assert!(!hooks_dir(&r).join("pre-commit").exists());
    assert!(!hooks_dir(&r).join("post-merge").exists());
}

#[test]
fn install_refuses_when_a_foreign_hook_sits_beside_a_chained_one() {
    let r = TestRepo::new();
    let pre = hooks_dir(&r).join("pre-commit");
    write_hook(&pre, "#!/bin/sh\nexit 0\n", 0o755);
    write_hook(&hooks_dir(&r).join("pre-commit.hybrid-chained"), "#!/bin/sh\necho old\n", 0o755);
    let out = r.hybrid(&["hooks", "install"]);
    assert_code(&out, 3);
    assert!(stderr(&out).contains("pre-commit.hybrid-chained"), "{}", stderr(&out));
    assert_eq!(std::fs::read_to_string(&pre).unwrap(), "#!/bin/sh\nexit 0\n");
    assert!(!hooks_dir(&r).join("post-merge").exists(), "nothing changed");
}

#[test]
fn hooks_fire_in_linked_worktrees_and_record_checkpoints() {
    let r = TestRepo::new();
    r.hybrid_ok(&["hooks", "install"]);
    let wt = start(&r, "t1");
    let before = r.git_in(&wt, &["rev-parse", "HEAD"]);
    write_file(&wt.join("src/one.txt"), "one\n");
    r.git_in(&wt, &["add", "-A"]);
    assert_ok(&commit_h(&r, &wt, "one"), &["commit"]);
    let cp = r.git(&["rev-parse", "refs/hybrid/checkpoints/t1"]);
    let head = r.git_in(&wt, &["rev-parse", "HEAD"]);
    assert_eq!(r.git(&["rev-parse", &format!("{cp}^{{tree}}")]), r.git(&["rev-parse", &format!("{head}^{{tree}}")]));
    assert_eq!(r.git(&["rev-parse", &format!("{cp}^1")]), before, "first parent is HEAD before the commit");

    // The next checkpoint keeps the previous one as its second parent.
    write_file(&wt.join("src/two.txt"), "two\n");
    r.git_in(&wt, &["add", "-A"]);
    assert_ok(&commit_h(&r, &wt, "two"), &["commit"]);
    let cp2 = r.git(&["rev-parse", "refs/hybrid/checkpoints/t1"]);
    assert_eq!(r.git(&["rev-parse", &format!("{cp2}^1")]), head);
    assert_eq!(r.git(&["rev-parse", &format!("{cp2}^2")]), cp);
}

#[test]
fn core_hooks_path_absolute_is_honoured() {
    let r = TestRepo::new();
    let dir = r.base().join("shared-hooks");
    r.git(&["config", "core.hooksPath", dir.to_str().unwrap()]);
    let v = r.hybrid_json(&["hooks", "install"]);
    assert_eq!(v["location"]["dir"], dir.to_str().unwrap());
    let git_path = r.git(&["rev-parse", "--git-path", "hooks"]);
    assert_eq!(PathBuf::from(git_path), dir);
    assert!(dir.join("pre-commit").exists());
    assert!(!hooks_dir(&r).join("pre-commit").exists());

    config(&r, "[[task]]\nid = \"t1\"\ntouches = [\"src/a/**\"]\n");
    let wt = start(&r, "t1");
    write_file(&wt.join("src/b/x.txt"), "x\n");
    r.git_in(&wt, &["add", "-A"]);
    let out = commit_h(&r, &wt, "outside");
    assert!(!out.status.success(), "the hook fired through core.hooksPath in a linked worktree");
    assert!(stderr(&out).contains("src/b/x.txt"), "{}", stderr(&out));
    assert_code(&r.hybrid(&["hooks", "doctor"]), 0);
}

#[test]
fn core_hooks_path_relative_installs_per_checkout_and_doctor_flags_it() {
    let r = TestRepo::new();
    r.git(&["config", "core.hooksPath", ".githooks"]);
    let out = r.hybrid(&["hooks", "install"]);
    assert_ok(&out, &["hooks", "install"]);
    assert!(stderr(&out).contains("relative"), "{}", stderr(&out));
    assert!(r.root.join(".githooks/pre-commit").exists());

    // It fires in the main checkout (checks everywhere, to see it).
    config(&r, "[hooks]\neverywhere = true\n");
    r.write("k.txt", &format!("key = {}\n", fake_secret("aws-access-key")));
    r.git(&["add", "k.txt"]);
    let out = commit_h(&r, &r.root, "secret");
    assert!(!out.status.success());
    assert!(stderr(&out).contains("k.txt:1: aws-access-key"), "{}", stderr(&out));
    r.git(&["rm", "-q", "--cached", "k.txt"]);

    // A linked worktree resolves .githooks inside itself: doctor names it.
    config(&r, "");
    let wt = start(&r, "t1");
    let out = r.hybrid(&["--json", "hooks", "doctor"]);
    assert_code(&out, 1);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let p = v["problems"].as_array().unwrap().iter().find(|p| p["kind"] == "relative-hooks-path").cloned();
    let p = p.unwrap_or_else(|| panic!("{v}"));
    assert!(p["message"].as_str().unwrap().contains(wt.to_str().unwrap()), "{p}");
    assert!(p["fix"].as_str().unwrap().contains("git config core.hooksPath"), "{p}");

    // Following the fix: the old wrappers are now shadowed until reinstalled.
    r.git(&["config", "core.hooksPath", r.root.join(".githooks").to_str().unwrap()]);
    assert_code(&r.hybrid(&["hooks", "doctor"]), 0);
    r.git(&["config", "core.hooksPath", r.base().join("elsewhere").to_str().unwrap()]);
    let out = r.hybrid(&["--json", "hooks", "doctor"]);
    assert_code(&out, 1);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let kinds: Vec<&str> = v["problems"].as_array().unwrap().iter().map(|p| p["kind"].as_str().unwrap()).collect();
    assert!(kinds.contains(&"shadowed") && kinds.contains(&"missing"), "{v}");
}

#[test]
fn doctor_finds_missing_stale_not_executable_and_shadowed_hooks() {
    let r = TestRepo::new();
    let kinds = |r: &TestRepo| -> Vec<String> {
        let out = r.hybrid(&["--json", "hooks", "doctor"]);
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(out.status.code(), Some(if v["ok"] == true { 0 } else { 1 }));
        v["problems"].as_array().unwrap().iter().map(|p| p["kind"].as_str().unwrap().to_string()).collect()
    };
    assert_eq!(kinds(&r), ["missing", "missing"]);
    r.hybrid_ok(&["hooks", "install"]);
    assert!(kinds(&r).is_empty());

    let pre = hooks_dir(&r).join("pre-commit");
    std::fs::set_permissions(&pre, std::fs::Permissions::from_mode(0o644)).unwrap();
    let post = hooks_dir(&r).join("post-merge");
    let text = std::fs::read_to_string(&post).unwrap().replace("git-hybrid 0.", "git-hybrid 9.");
    std::fs::write(&post, text).unwrap();
    assert_eq!(kinds(&r), ["not-executable", "stale"]);
    let out = r.hybrid(&["hooks", "doctor"]);
    assert!(common::stdout(&out).contains("fix: run `chmod +x"), "{}", common::stdout(&out));
    r.hybrid_ok(&["hooks", "install"]);
    assert!(kinds(&r).is_empty());

    r.git(&["config", "core.hooksPath", r.base().join("managed").to_str().unwrap()]);
    assert_eq!(kinds(&r), ["missing", "missing", "shadowed", "shadowed"]);
}

#[test]
fn missing_binary_warns_and_never_blocks_git() {
    let r = TestRepo::new();
    let side = r.base().join("side.log");
    write_hook(&hooks_dir(&r).join("pre-commit"), &format!("#!/bin/sh\necho user >> '{}'\n", side.display()), 0o755);
    // Install from a copy of the binary, then delete the copy.
    let copy_dir = r.base().join("gone");
    std::fs::create_dir_all(&copy_dir).unwrap();
    let copy = copy_dir.join("git-hybrid");
    std::fs::copy(bin(), &copy).unwrap();
    let mut cmd = Command::new(&copy);
    cmd.args(["hooks", "install"]).current_dir(&r.root).stdin(Stdio::null());
    r.env(&mut cmd);
    // A test thread forking while the copy was open for writing holds that descriptor until its
    // child execs, and exec of the copy then fails with "Text file busy": retry briefly.
    let mut out = cmd.output();
    for _ in 0..100 {
        match &out {
            Err(e) if e.kind() == std::io::ErrorKind::ExecutableFileBusy => {
                std::thread::sleep(std::time::Duration::from_millis(10));
                out = cmd.output();
            }
            _ => break,
        }
    }
    assert_ok(&out.unwrap(), &["hooks", "install"]);
    std::fs::remove_file(&copy).unwrap();

    r.write("a.txt", "a\n");
    r.git(&["add", "a.txt"]);
    let out = git_with_path(&r, &r.root, &["commit", "-q", "-m", "a"], "/usr/local/bin:/usr/bin:/bin");
    assert_ok(&out, &["commit"]);
    assert!(stderr(&out).contains("git-hybrid is not on PATH"), "{}", stderr(&out));
    assert!(std::fs::read_to_string(&side).unwrap().contains("user"), "the chained hook still ran");

    // The wrappers point at a binary that no longer exists: doctor calls them stale.
    let out = r.hybrid(&["--json", "hooks", "doctor"]);
    assert_code(&out, 1);
    assert!(common::stdout(&out).contains("\"stale\""));
}

#[test]
fn claims_refuse_paths_outside_touches_and_plugin_dirs() {
    let r = TestRepo::new();
    r.hybrid_ok(&["hooks", "install"]);
    config(
        &r,
        "[project]\nplugin_root = \"plugins\"\n\n[[task]]\nid = \"core1\"\nshape = \"core\"\ntouches = [\"src/core/**\", \"docs/core.md\"]\n\n[[task]]\nid = \"login\"\nshape = \"plugin\"\nplugin = \"login\"\n",
    );
    let wt = start(&r, "core1");
    write_file(&wt.join("src/core/a.rs"), "a\n");
    write_file(&wt.join("src/other/b.rs"), "b\n");
    write_file(&wt.join("README.md"), "changed\n");
    r.git_in(&wt, &["add", "-A"]);
    let head = r.git_in(&wt, &["rev-parse", "HEAD"]);
    let out = commit_h(&r, &wt, "too wide");
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("src/other/b.rs") && err.contains("README.md"), "{err}");
    assert!(!err.contains("    src/core/a.rs"), "{err}");
    assert!(err.contains("src/core/**, docs/core.md"), "names the claim: {err}");
    assert_eq!(r.git_in(&wt, &["rev-parse", "HEAD"]), head);
    assert!(r.git_out(&r.root, &["rev-parse", "-q", "--verify", "refs/hybrid/checkpoints/core1"]).stdout.is_empty());

    r.git_in(&wt, &["reset", "-q"]);
    r.git_in(&wt, &["add", "src/core/a.rs"]);
    assert_ok(&commit_h(&r, &wt, "in claim"), &["commit"]);

    let wt = start(&r, "login");
    write_file(&wt.join("plugins/login/page.rs"), "p\n");
    r.git_in(&wt, &["add", "-A"]);
    assert_ok(&commit_h(&r, &wt, "plugin"), &["commit"]);
    write_file(&wt.join("plugins/logout/page.rs"), "p\n");
    r.git_in(&wt, &["add", "-A"]);
    let out = commit_h(&r, &wt, "other plugin");
    assert!(!out.status.success());
    assert!(stderr(&out).contains("plugins/logout/page.rs") && stderr(&out).contains("plugins/login/**"));
}

#[test]
fn each_secret_kind_is_refused_without_printing_it() {
    let r = TestRepo::new();
    r.hybrid_ok(&["hooks", "install"]);
    let wt = start(&r, "t1");
    for kind in KINDS {
        let secret = fake_secret(kind);
        let file = format!("src/{kind}.txt");
        write_file(&wt.join(&file), &format!("line one\nline two\nvalue = \"{secret}\"\n"));
        r.git_in(&wt, &["add", &file]);
        let out = commit_h(&r, &wt, kind);
        assert!(!out.status.success(), "{kind} was not refused");
        let err = stderr(&out);
        assert!(err.contains(&format!("{file}:3: {kind}")), "{kind}: {err}");
        assert!(!err.contains(&secret), "{kind}: the secret was printed");
        r.git_in(&wt, &["rm", "-q", "--cached", &file]);
        std::fs::remove_file(wt.join(&file)).unwrap();
    }
    // OpenAI's legacy key format (`sk-` and 48 letters and digits) is an `openai-api-key` too.
    write_file(&wt.join("legacy.txt"), &format!("{}\n", fake_secret("openai-legacy")));
    r.git_in(&wt, &["add", "legacy.txt"]);
    let out = commit_h(&r, &wt, "legacy");
    assert!(stderr(&out).contains("legacy.txt:1: openai-api-key"), "{}", stderr(&out));
    r.git_in(&wt, &["rm", "-q", "--cached", "legacy.txt"]);
    std::fs::remove_file(wt.join("legacy.txt")).unwrap();
    // `commit -a` uses a temporary index (GIT_INDEX_FILE): still checked.
    write_file(&wt.join("tracked.txt"), "ok\n");
    r.git_in(&wt, &["add", "tracked.txt"]);
    assert_ok(&commit_h(&r, &wt, "tracked"), &["commit"]);
    write_file(&wt.join("tracked.txt"), &format!("ok\n{}\n", fake_secret("github-token")));
    let out = git_h(&r, &wt, &["commit", "-q", "-a", "-m", "all"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("tracked.txt:2: github-token"), "{}", stderr(&out));
}

#[test]
fn false_positives_pass_with_an_allow_comment_or_config() {
    let r = TestRepo::new();
    r.hybrid_ok(&["hooks", "install"]);
    let wt = start(&r, "t1");
    let secret = fake_secret("stripe-key");
    write_file(&wt.join("fixture.txt"), &format!("key = \"{secret}\"  # hybrid: allow-secret\n"));
    r.git_in(&wt, &["add", "-A"]);
    assert_ok(&commit_h(&r, &wt, "allowed by comment"), &["commit"]);

    let aws = fake_secret("aws-access-key");
    write_file(&wt.join("docs.txt"), &format!("example: {aws}\n"));
    r.git_in(&wt, &["add", "-A"]);
    assert!(!commit_h(&r, &wt, "not yet allowed").status.success());
    config(&r, &format!("[hooks]\nallow_secrets = [\"{}\"]\n", &aws[4..]));
    assert_ok(&commit_h(&r, &wt, "allowed by config"), &["commit"]);
}

#[test]
fn outside_task_worktrees_nothing_is_checked_unless_everywhere() {
    let r = TestRepo::new();
    r.hybrid_ok(&["hooks", "install"]);
    r.write("notes.txt", &format!("{}\n", fake_secret("slack-token")));
    r.git(&["add", "notes.txt"]);
    assert_ok(&commit_h(&r, &r.root, "user commit"), &["commit"]);
    assert!(r.git(&["for-each-ref", "refs/hybrid/checkpoints"]).is_empty());

    config(&r, "[hooks]\neverywhere = true\n");
    r.write("more.txt", &format!("{}\n", fake_secret("slack-token")));
    r.git(&["add", "more.txt"]);
    let out = commit_h(&r, &r.root, "user commit 2");
    assert!(!out.status.success());
    assert!(stderr(&out).contains("more.txt:1: slack-token"), "{}", stderr(&out));
}

fn ledger_record(root: &Path, id: &str, attempt: u32) -> Option<serde_json::Value> {
    let p = root.join(".git/hybrid/ledger").join(id).join(format!("{attempt}.json"));
    std::fs::read(p).ok().map(|b| serde_json::from_slice(&b).unwrap())
}

/// Lands a task in `r` with plumbing: a task commit on top of main, then a squash with trailers.
fn land_by_hand(r: &TestRepo, id: &str, attempt: u32, file: &str) -> (String, String, String) {
    let base = r.rev("main");
    r.write(file, &format!("{id}\n"));
    r.git(&["add", file]);
    let tree = r.git(&["write-tree"]);
    let tip = r.git(&["commit-tree", &tree, "-p", &base, "-m", &format!("work on {id}")]);
    let mut msg = format!("Land {id}\n\nHybrid-Task: {id}\nHybrid-Base: {base}\nHybrid-Tip: {tip}\n");
    if attempt > 1 {
        msg.push_str(&format!("Hybrid-Attempt: {attempt}\n"));
    }
    let squash = r.git(&["commit-tree", &tree, "-p", &base, "-m", &msg]);
    r.git(&["update-ref", "refs/heads/main", &squash, &base]);
    r.git(&["update-ref", &format!("refs/hybrid/tips/{id}"), &tip]);
    r.git(&["reset", "-q", "--hard"]);
    (squash, base, tip)
}

#[test]
fn post_merge_records_landings_a_pull_brings_in() {
    let r = TestRepo::new();
    let clone = r.base().join("clone");
    r.git_in(&r.base(), &["clone", "-q", r.root.to_str().unwrap(), clone.to_str().unwrap()]);
    let out = r.hybrid_in(&clone, &["hooks", "install"]);
    assert_ok(&out, &["hooks", "install"]);

    let (s1, b1, t1) = land_by_hand(&r, "feat-a", 1, "a.txt");
    r.write("plain.txt", "plain\n");
    r.commit_all("a plain commit");
    let (s2, _, _) = land_by_hand(&r, "feat-b", 2, "b.txt");

    let out = git_h(&r, &clone, &["pull", "-q", "--ff-only"]);
    assert_ok(&out, &["pull"]);
    let a = ledger_record(&clone, "feat-a", 1).expect("feat-a recorded");
    assert_eq!(a["state"], "landed");
    assert_eq!(a["merge_sha"], s1.as_str());
    assert_eq!(a["merge_base"], b1.as_str());
    assert_eq!(a["tip"], t1.as_str());
    let b = ledger_record(&clone, "feat-b", 2).expect("feat-b attempt 2 recorded");
    assert_eq!(b["merge_sha"], s2.as_str());
    assert!(ledger_record(&clone, "feat-b", 1).is_none());

    // A second pull of nothing new, and a merge without landings, leave the ledger as is.
    let before = std::fs::read(clone.join(".git/hybrid/ledger/feat-a/1.json")).unwrap();
    assert_ok(&git_h(&r, &clone, &["pull", "-q", "--ff-only"]), &["pull"]);
    assert_eq!(std::fs::read(clone.join(".git/hybrid/ledger/feat-a/1.json")).unwrap(), before);

    // verify in the clone agrees with what post-merge recorded (tips are not fetched: warnings).
    let out = r.hybrid_in(&clone, &["--json", "verify", "--all"]);
    assert_ok(&out, &["verify", "--all"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["commits"].as_array().unwrap().len(), 2, "{v}");
    assert_eq!(v["warnings"], 2, "{v}");
}

#[test]
fn post_merge_with_a_forged_task_id_records_nothing() {
    let r = TestRepo::new();
    let clone = r.base().join("clone");
    r.git_in(&r.base(), &["clone", "-q", r.root.to_str().unwrap(), clone.to_str().unwrap()]);
    assert_ok(&r.hybrid_in(&clone, &["hooks", "install"]), &["hooks", "install"]);
    r.write("x.txt", "x\n");
    r.git(&["add", "x.txt"]);
    r.git(&["commit", "-q", "-m", "evil\n\nHybrid-Task: ../../escape\n"]);
    let out = git_h(&r, &clone, &["pull", "-q", "--ff-only"]);
    assert_ok(&out, &["pull"]);
    assert!(stderr(&out).contains("did not record"), "{}", stderr(&out));
    assert!(
        !clone.join(".git/hybrid/ledger").exists()
            || std::fs::read_dir(clone.join(".git/hybrid/ledger")).unwrap().count() == 0
    );
    assert!(!clone.join(".git/escape").exists());
}

#[test]
fn concluding_a_merge_only_checks_what_the_task_changed() {
    let r = TestRepo::new();
    r.write("src/a/x.txt", "base\n");
    r.commit_all("base");
    r.hybrid_ok(&["hooks", "install"]);
    config(&r, "[[task]]\nid = \"t1\"\ntouches = [\"src/a/**\"]\n");
    let wt = start(&r, "t1");
    write_file(&wt.join("src/a/x.txt"), "task\n");
    r.git_in(&wt, &["add", "-A"]);
    assert_ok(&commit_h(&r, &wt, "task change"), &["commit"]);

    // The target moves on: an unrelated path and the task's own file.
    r.write("README.md", "target changed\n");
    r.write("src/a/x.txt", "target\n");
    r.git(&["add", "README.md", "src/a/x.txt"]);
    r.git(&["commit", "-q", "-m", "target moves"]);

    let out = git_h(&r, &wt, &["merge", "-q", "main"]);
    assert!(!out.status.success(), "expected a conflict");
    write_file(&wt.join("src/a/x.txt"), "resolved\n");
    r.git_in(&wt, &["add", "src/a/x.txt"]);
    let out = git_h(&r, &wt, &["commit", "-q", "--no-edit"]);
    assert_ok(&out, &["commit", "(concluding the merge)"]);
    assert_eq!(r.git_in(&wt, &["rev-list", "--count", "--merges", "HEAD"]), "1");
}

/// Agent for the dispatch tests: commits a file outside `src/a` (recording git's exit code and
/// stderr in its run directory), takes it back, then commits `src/a/in.txt`.
const CLAIM_AGENT: &str = r#"#!/bin/sh
mkdir -p src/a src/b
echo out > src/b/out.txt
git add -A
git commit -q -m "outside the claim" 2> "$HYBRID_RUN_DIR/outside.err"
echo $? > "$HYBRID_RUN_DIR/outside.rc"
git reset -q
rm -f src/b/out.txt
echo in > src/a/in.txt
git add -A
git commit -q -m "inside the claim" 2> "$HYBRID_RUN_DIR/inside.err"
echo $? > "$HYBRID_RUN_DIR/inside.rc"
"#;

#[test]
fn dispatched_plan_file_claims_are_enforced_by_the_hook() {
    let r = TestRepo::new();
    r.write("agent.sh", CLAIM_AGENT);
    r.commit_all("agent");
    r.hybrid_ok(&["hooks", "install"]);
    // hybrid.toml has no [[task]]: the claims exist only in the plan file.
    let plan = r.base().join("plan.toml");
    write_file(
        &plan,
        "[agent]\ncommand = [\"builtin:script\", \"agent.sh\"]\n\n[[task]]\nid = \"pa\"\nprompt = \"p\"\ntouches = [\"src/a/**\"]\n",
    );
    assert_ok(&r.hybrid(&["dispatch", "--plan", plan.to_str().unwrap()]), &["dispatch", "--plan"]);

    let run = r.root.join(".git/hybrid/runs/pa/1/1");
    let rc = |name: &str| std::fs::read_to_string(run.join(name)).unwrap().trim().to_string();
    assert_ne!(rc("outside.rc"), "0", "the commit outside the claim was refused");
    let err = std::fs::read_to_string(run.join("outside.err")).unwrap();
    assert!(err.contains("src/b/out.txt") && err.contains("src/a/**"), "{err}");
    assert_eq!(rc("inside.rc"), "0", "{}", std::fs::read_to_string(run.join("inside.err")).unwrap());

    let tasks = r.tasks();
    let t = tasks.iter().find(|t| t["id"] == "pa").unwrap();
    assert_eq!(t["state"], "landed", "{t:#}");
    assert_eq!(t["claims"], serde_json::json!(["src/a/**"]));
    assert_eq!(r.read("src/a/in.txt"), "in\n");
    assert!(!r.root.join("src/b/out.txt").exists());
    assert!(!r.git(&["ls-tree", "-r", "--name-only", "main"]).contains("src/b/"));
}

#[test]
fn start_records_hybrid_toml_claims_and_later_edits_do_not_change_them() {
    let r = TestRepo::new();
    r.hybrid_ok(&["hooks", "install"]);
    config(&r, "[[task]]\nid = \"x\"\ntouches = [\"src/x/**\"]\n");
    let wt = start(&r, "x");
    assert_eq!(ledger_record(&r.root, "x", 1).unwrap()["claims"], serde_json::json!(["src/x/**"]));
    // A task with no plan entry records nothing: the hook reads hybrid.toml when it runs.
    let wt_y = start(&r, "y");
    assert_eq!(ledger_record(&r.root, "y", 1).unwrap()["claims"], serde_json::Value::Null);

    // The plan is edited after the start: x keeps the claims it started with; y, recorded
    // without claims, takes hybrid.toml's as they are now.
    config(&r, "[[task]]\nid = \"x\"\ntouches = [\"other/**\"]\n\n[[task]]\nid = \"y\"\ntouches = [\"src/y/**\"]\n");
    write_file(&wt.join("src/x/a.rs"), "a\n");
    r.git_in(&wt, &["add", "-A"]);
    assert_ok(&commit_h(&r, &wt, "x in its recorded claim"), &["commit"]);
    write_file(&wt.join("other/b.rs"), "b\n");
    r.git_in(&wt, &["add", "-A"]);
    let out = commit_h(&r, &wt, "x outside its recorded claim");
    assert!(!out.status.success());
    assert!(stderr(&out).contains("other/b.rs") && stderr(&out).contains("src/x/**"), "{}", stderr(&out));

    write_file(&wt_y.join("src/z.rs"), "z\n");
    r.git_in(&wt_y, &["add", "-A"]);
    let out = commit_h(&r, &wt_y, "y outside hybrid.toml's claim");
    assert!(!out.status.success());
    assert!(stderr(&out).contains("src/y/**"), "{}", stderr(&out));
}
