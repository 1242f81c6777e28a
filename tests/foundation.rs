//! Issue 2, the foundation: the CLI surface, `start` (base, ids, repository states, linked
//! worktrees), the ledger as seen by `status --json`, config errors, `init` and `clean`.
//!
//! Every test drives the built binary against a hermetic temporary repository and checks
//! both what it printed and what it left on disk (refs, worktrees, ledger files).

mod common;

use std::path::{Path, PathBuf};

use common::{assert_code, assert_ok, stderr, stdout, write_file, TestRepo};
use serde_json::Value;

/// The id rule as the error message states it.
const RULE: &str = "[A-Za-z0-9][A-Za-z0-9._-]{0,63}";

/// Everything a failed command must leave as it was: refs, worktrees, the main checkout's
/// status, git-hybrid's state folder and the worktree root.
fn snapshot(r: &TestRepo) -> String {
    let mut files = Vec::new();
    list_files(&r.root.join(".git").join("hybrid"), &mut files);
    format!(
        "refs:\n{}\nworktrees:\n{}\nstatus:\n{}\nhybrid state: {:?}\nworktree root exists: {}",
        r.refs_snapshot(),
        r.git(&["worktree", "list", "--porcelain"]),
        r.porcelain(&r.root),
        files,
        r.base().join("repo.hybrid").exists()
    )
}

fn list_files(dir: &Path, out: &mut Vec<PathBuf>) {
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                list_files(&p, out);
            } else {
                out.push(p);
            }
        }
    }
    out.sort();
}

/// `status --json` record of one task attempt.
fn task(r: &TestRepo, id: &str) -> Value {
    r.tasks().into_iter().find(|t| t["id"] == id).unwrap_or_else(|| panic!("task {id} not in status"))
}

fn path_of(v: &Value) -> PathBuf {
    PathBuf::from(v.as_str().expect("a path string"))
}

/// A repository whose checkout is on `feature`, one commit ahead of `main`, with an
/// uncommitted change: the situation `start` must not be fooled by.
fn user_on_feature_branch() -> (TestRepo, String, String) {
    let r = TestRepo::new();
    let main_tip = r.rev("main");
    r.git(&["checkout", "-q", "-b", "feature"]);
    r.write("feature.txt", "feature work\n");
    let feature_tip = r.commit_all("feature commit");
    r.write("README.md", "hello\nlocal edit, not committed\n");
    (r, main_tip, feature_tip)
}

// ---------------------------------------------------------------------------------------------
// The command-line surface
// ---------------------------------------------------------------------------------------------

#[test]
fn help_lists_exactly_the_commands() {
    let r = TestRepo::new();
    let out = r.hybrid(&["--help"]);
    assert_ok(&out, &["--help"]);
    let text = stdout(&out);
    let commands: Vec<String> = text
        .lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .filter(|l| l.starts_with("  ") && !l.starts_with("   "))
        .map(|l| l.split_whitespace().next().unwrap().to_string())
        .collect();
    let expected = [
        "init",
        "start",
        "sync",
        "merge",
        "fetch",
        "dispatch",
        "status",
        "label",
        "export",
        "verify",
        "hooks",
        "list",
        "path",
        "diff",
        "logs",
        "stop",
        "clean",
        "archive",
        "demo",
        "mcp",
        "completions",
        "shell-init",
        "help",
    ];
    assert_eq!(commands, expected, "help text:\n{text}");
    assert!(text.contains("Exit codes"), "{text}");
}

#[test]
fn version_and_completions() {
    let r = TestRepo::new();
    let out = r.hybrid(&["--version"]);
    assert_ok(&out, &["--version"]);
    assert_eq!(stdout(&out).trim(), format!("git-hybrid {}", env!("CARGO_PKG_VERSION")));

    let out = r.hybrid(&["completions", "bash"]);
    assert_ok(&out, &["completions", "bash"]);
    let script = stdout(&out);
    // Dynamic: the script calls the binary back (tests/shell.rs completes in a real bash).
    assert!(script.contains("-F _clap_complete_git_hybrid git-hybrid"), "{script}");
    assert!(script.contains("GIT_HYBRID_COMPLETE=\"bash\""), "{script}");
    let check = std::process::Command::new("bash").arg("-n").arg("-c").arg(&script).output();
    if let Ok(check) = check {
        assert!(check.status.success(), "bash -n rejects the completion script: {}", stderr(&check));
    }
    for shell in ["zsh", "fish"] {
        let out = r.hybrid(&["completions", shell]);
        assert_ok(&out, &["completions", shell]);
        assert!(stdout(&out).contains("GIT_HYBRID_COMPLETE"), "{}", stdout(&out));
    }
    assert_code(&r.hybrid(&["completions", "tcsh-nope"]), 2);
}

#[test]
fn bash_completion_serves_git_hybrid_through_git() {
    let r = TestRepo::new();
    let script = stdout(&r.hybrid(&["completions", "bash"]));
    assert!(script.contains("_git_hybrid()"), "no shim for `git hybrid <TAB>`");
    // git's completion calls _git_hybrid with COMP_WORDS = (git hybrid ...).
    let probe =
        format!("{script}\nCOMP_WORDS=(git hybrid st); COMP_CWORD=2; _git_hybrid; echo \"[${{COMPREPLY[*]}}]\"");
    let Ok(out) = std::process::Command::new("bash").arg("-c").arg(&probe).output() else {
        return; // no bash on this machine
    };
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out).trim(), "[start status stop]");
}

#[test]
fn usage_errors_exit_2() {
    let r = TestRepo::new();
    assert_code(&r.hybrid(&["no-such-command"]), 2);
    assert_code(&r.hybrid(&["start"]), 2);
    assert_code(&r.hybrid(&["start", "t1", "--attempt", "many"]), 2);
    let out = r.hybrid(&["start", "t1", "--attempt", "0"]);
    assert_code(&out, 2);
    let out = r.hybrid(&["clean"]);
    assert_code(&out, 2);
    assert!(stderr(&out).contains("--merged"), "{}", stderr(&out));
    assert!(!r.root.join(".git/hybrid/ledger").exists());
    assert!(!r.base().join("repo.hybrid").exists());
}

#[test]
fn closing_stdout_early_is_not_a_crash() {
    let r = TestRepo::new();
    // `git hybrid completions bash | head -1`: the reader goes away; no panic message.
    let mut child = r
        .hybrid_cmd(&r.root, &["completions", "bash"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    assert!(!stderr(&out).contains("panicked"), "{}", stderr(&out));
}

// ---------------------------------------------------------------------------------------------
// start: the base
// ---------------------------------------------------------------------------------------------

#[test]
fn start_branches_from_the_target_tip_not_the_users_branch() {
    let (r, main_tip, feature_tip) = user_on_feature_branch();
    let before_status = r.porcelain(&r.root);
    let out = r.hybrid(&["start", "t1"]);
    assert_ok(&out, &["start", "t1"]);
    let wt = r.task_dir("t1");
    assert_eq!(stdout(&out).trim(), wt.display().to_string());

    assert_eq!(r.git_in(&wt, &["rev-parse", "HEAD"]), main_tip);
    assert_eq!(r.git_in(&wt, &["symbolic-ref", "HEAD"]), "refs/heads/hybrid/t1");
    assert!(!wt.join("feature.txt").exists(), "the task inherited the feature commit");
    assert_eq!(std::fs::read_to_string(wt.join("README.md")).unwrap(), "hello\n", "local edit leaked");
    assert_eq!(r.porcelain(&wt), "", "a new task worktree is clean");
    let merged = r.git_out(&r.root, &["merge-base", "--is-ancestor", &feature_tip, "hybrid/t1"]);
    assert!(!merged.status.success(), "feature commit is in the task branch");

    // The user's checkout is untouched.
    assert_eq!(r.git(&["symbolic-ref", "HEAD"]), "refs/heads/feature");
    assert_eq!(r.rev("HEAD"), feature_tip);
    assert_eq!(r.porcelain(&r.root), before_status);
    assert_eq!(r.read("README.md"), "hello\nlocal edit, not committed\n");

    let t = task(&r, "t1");
    assert_eq!(t["base"], main_tip.as_str());
    assert_eq!(t["target"], "main");
    assert_eq!(t["state"], "ready");
}

#[test]
fn start_honours_base() {
    let (r, main_tip, feature_tip) = user_on_feature_branch();
    let out = r.hybrid(&["start", "on-feature", "--base", "feature"]);
    assert_ok(&out, &["start"]);
    let wt = r.task_dir("on-feature");
    assert_eq!(r.git_in(&wt, &["rev-parse", "HEAD"]), feature_tip);
    assert!(wt.join("feature.txt").exists());
    assert_eq!(task(&r, "on-feature")["base"], feature_tip.as_str());

    // An abbreviated SHA and a revision expression work too.
    let out = r.hybrid(&["start", "by-sha", "--base", &main_tip[..12]]);
    assert_ok(&out, &["start", "by-sha"]);
    assert_eq!(r.git_in(&r.task_dir("by-sha"), &["rev-parse", "HEAD"]), main_tip);
    let out = r.hybrid(&["start", "by-expr", "--base", "feature~1"]);
    assert_ok(&out, &["start", "by-expr"]);
    assert_eq!(r.git_in(&r.task_dir("by-expr"), &["rev-parse", "HEAD"]), main_tip);
}

#[test]
fn start_with_a_missing_base_changes_nothing() {
    let (r, _, _) = user_on_feature_branch();
    let before = snapshot(&r);
    for base in ["nope", "0123456789abcdef0123456789abcdef01234567", "main~5"] {
        let out = r.hybrid(&["start", "t1", "--base", base]);
        assert_code(&out, 2);
        assert!(stderr(&out).contains(base), "error does not name the revision: {}", stderr(&out));
        assert_eq!(snapshot(&r), before, "--base {base} changed something");
    }
    assert!(!r.task_dir("t1").exists());
    // A base that is not a commit (a tree) is bad input too.
    let tree = r.rev("main^{tree}");
    let out = r.hybrid(&["start", "t1", "--base", &tree]);
    assert_code(&out, 2);
    assert_eq!(snapshot(&r), before);
}

#[test]
fn start_from_a_detached_head_uses_main() {
    let r = TestRepo::new();
    let first = r.rev("HEAD");
    r.write("b.txt", "b\n");
    let second = r.commit_all("second");
    r.git(&["checkout", "-q", "--detach", &first]);
    let out = r.hybrid(&["start", "t1"]);
    assert_ok(&out, &["start", "t1"]);
    assert_eq!(r.git_in(&r.task_dir("t1"), &["rev-parse", "HEAD"]), second);
    assert_eq!(r.rev("HEAD"), first, "the user's detached HEAD moved");
}

#[test]
fn start_attempts_get_their_own_branch_and_worktree() {
    let r = TestRepo::new();
    r.hybrid_ok(&["start", "t1"]);
    let out = r.hybrid(&["--json", "start", "t1", "--attempt", "2"]);
    assert_ok(&out, &["start", "--attempt", "2"]);
    let rec: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(rec["attempt"], 2);
    assert_eq!(rec["branch"], "hybrid/t1@2");
    let wt = r.base().join("repo.hybrid").join("t1@2");
    assert_eq!(path_of(&rec["worktree"]), wt);
    assert_eq!(r.git_in(&wt, &["symbolic-ref", "HEAD"]), "refs/heads/hybrid/t1@2");
    let attempts: Vec<i64> =
        r.tasks().iter().filter(|t| t["id"] == "t1").map(|t| t["attempt"].as_i64().unwrap()).collect();
    assert_eq!(attempts, [1, 2]);
    assert!(r.root.join(".git/hybrid/ledger/t1/2.json").is_file());
}

#[test]
fn start_with_a_title_records_it() {
    let r = TestRepo::new();
    let rec = r.hybrid_json(&["start", "t1", "--title", "Add a login page"]);
    assert_eq!(rec["title"], "Add a login page");
}

// ---------------------------------------------------------------------------------------------
// start: an existing task, the JSON record, status
// ---------------------------------------------------------------------------------------------

#[test]
fn starting_an_existing_task_changes_nothing() {
    let r = TestRepo::new();
    let first = r.hybrid_ok(&["start", "t1"]);
    let wt = r.task_dir("t1");
    // The agent works: one commit, one uncommitted file.
    write_file(&wt.join("work.txt"), "committed\n");
    let tip = r.commit_all_in(&wt, "agent commit");
    write_file(&wt.join("wip.txt"), "not committed\n");
    let ledger_file = r.root.join(".git/hybrid/ledger/t1/1.json");
    let record_before = std::fs::read_to_string(&ledger_file).unwrap();
    let before = snapshot(&r);
    let wt_status = r.porcelain(&wt);

    let out = r.hybrid(&["start", "t1"]);
    assert_ok(&out, &["start", "t1"]);
    assert_eq!(stdout(&out), first, "prints the same worktree");
    assert!(stderr(&out).contains("already exists"), "{}", stderr(&out));
    // Even with a different --base: the existing task wins, nothing moves.
    let out = r.hybrid(&["start", "t1", "--base", "HEAD"]);
    assert_ok(&out, &["start", "t1", "--base"]);

    assert_eq!(snapshot(&r), before);
    assert_eq!(r.git_in(&wt, &["rev-parse", "HEAD"]), tip);
    assert_eq!(r.porcelain(&wt), wt_status);
    assert_eq!(std::fs::read_to_string(&ledger_file).unwrap(), record_before, "the ledger record was rewritten");

    let out = r.hybrid(&["--json", "start", "t1"]);
    assert_ok(&out, &["--json", "start", "t1"]);
    let rec: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(rec["id"], "t1");
    assert_eq!(path_of(&rec["worktree"]), wt);
}

#[test]
fn start_json_prints_the_task_record() {
    let r = TestRepo::new();
    let rec = r.hybrid_json(&["start", "t1"]);
    assert_eq!(rec["id"], "t1");
    assert_eq!(rec["attempt"], 1);
    assert_eq!(rec["state"], "ready");
    assert_eq!(rec["branch"], "hybrid/t1");
    assert_eq!(path_of(&rec["worktree"]), r.task_dir("t1"));
    assert_eq!(rec["base"], r.rev("main").as_str());
    assert!(rec["merge_sha"].is_null());
    assert!(rec["created"].is_string() && rec["updated"].is_string());
    // The record on disk is the same document.
    let on_disk: Value =
        serde_json::from_str(&std::fs::read_to_string(r.root.join(".git/hybrid/ledger/t1/1.json")).unwrap()).unwrap();
    assert_eq!(on_disk, rec);
}

#[test]
fn status_json_has_stable_keys() {
    let r = TestRepo::new();
    let empty = r.hybrid_json(&["status"]);
    assert_eq!(empty, serde_json::json!({ "tasks": [], "dispatcher": null, "archived_hidden": 0 }));

    r.hybrid_ok(&["start", "t1"]);
    r.hybrid_ok(&["start", "t2"]);
    let doc = r.hybrid_json(&["status"]);
    let tasks = doc["tasks"].as_array().expect("tasks array");
    assert_eq!(tasks.len(), 2);
    for t in tasks {
        let obj = t.as_object().unwrap();
        for key in ["id", "attempt", "state", "branch", "worktree", "base", "merge_sha"] {
            assert!(obj.contains_key(key), "status record lacks {key}: {t}");
        }
        assert!(t["merge_sha"].is_null());
        assert_eq!(t["state"], "ready");
    }
    assert_eq!(tasks[0]["id"], "t1");
    assert_eq!(tasks[1]["id"], "t2");

    // One task only.
    let one = r.hybrid_json(&["status", "t2"]);
    assert_eq!(one["tasks"].as_array().unwrap().len(), 1);

    // The human table names every task.
    let table = r.hybrid_ok(&["status"]);
    assert!(table.contains("t1") && table.contains("t2") && table.contains("ready"), "{table}");
    assert!(!table.contains('\x1b'), "colour without a terminal: {table:?}");
}

// ---------------------------------------------------------------------------------------------
// Where it runs from
// ---------------------------------------------------------------------------------------------

#[test]
fn works_from_linked_worktrees_and_subdirectories() {
    let r = TestRepo::new();
    r.write("src/deep/er/file.txt", "x\n");
    r.commit_all("nested");
    r.hybrid_ok(&["start", "t1"]);

    // From inside a task worktree (and a subfolder of it).
    let inside = r.task_dir("t1").join("src/deep");
    let out = r.hybrid_in(&inside, &["start", "t2"]);
    assert_ok(&out, &["start", "t2 from t1"]);
    assert_eq!(stdout(&out).trim(), r.task_dir("t2").display().to_string());

    // From a worktree the user made with `git worktree add`.
    let side = r.base().join("side");
    r.git(&["worktree", "add", "-q", "-b", "side", side.to_str().unwrap(), "main"]);
    let out = r.hybrid_in(&side, &["start", "t3"]);
    assert_ok(&out, &["start", "t3 from side"]);
    assert_eq!(stdout(&out).trim(), r.task_dir("t3").display().to_string());

    // From a subdirectory of the main checkout.
    let sub = r.root.join("src/deep/er");
    let out = r.hybrid_in(&sub, &["start", "t4"]);
    assert_ok(&out, &["start", "t4 from subdir"]);
    assert_eq!(stdout(&out).trim(), r.task_dir("t4").display().to_string());

    // With -C.
    let out = r.hybrid_in(&r.base(), &["-C", "repo/src", "start", "t5"]);
    assert_ok(&out, &["-C", "start", "t5"]);

    // Everyone sees the same ledger; worktrees all live in the one sibling root.
    for dir in [r.root.clone(), inside, side.clone(), sub, r.task_dir("t5")] {
        let out = r.hybrid_in(&dir, &["--json", "status"]);
        assert_ok(&out, &["status", "from", &dir.display().to_string()]);
        let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
        let ids: Vec<&str> = doc["tasks"].as_array().unwrap().iter().map(|t| t["id"].as_str().unwrap()).collect();
        assert_eq!(ids, ["t1", "t2", "t3", "t4", "t5"], "from {}", dir.display());
    }
    for t in r.tasks() {
        assert_eq!(path_of(&t["worktree"]).parent().unwrap(), r.base().join("repo.hybrid"));
    }
    // One ledger, in the common git dir; none in the linked worktrees' private dirs.
    assert!(r.root.join(".git/hybrid/ledger/t3/1.json").is_file());
    assert!(!r.root.join(".git/worktrees/side/hybrid").exists());
    // The side worktree is untouched.
    assert_eq!(r.porcelain(&side), "");
    assert_eq!(r.git_in(&side, &["symbolic-ref", "HEAD"]), "refs/heads/side");
}

#[test]
fn worktree_root_defaults_outside_the_checkout() {
    let r = TestRepo::new();
    r.hybrid_ok(&["start", "t1"]);
    let wt = r.task_dir("t1");
    assert!(!wt.starts_with(&r.root));
    assert_eq!(r.porcelain(&r.root), "", "the main checkout saw the task");
}

#[test]
fn worktree_root_inside_the_checkout_must_be_ignored() {
    let r = TestRepo::new();
    r.write("hybrid.toml", "[project]\nworktree_root = \"agents\"\n");
    let before = snapshot(&r);
    let out = r.hybrid(&["start", "t1"]);
    assert_code(&out, 2);
    assert!(stderr(&out).contains("not ignored"), "{}", stderr(&out));
    assert_eq!(snapshot(&r), before);
    assert!(!r.root.join("agents").exists());

    // Sneaking back in through `..` is the same path.
    r.write("hybrid.toml", "[project]\nworktree_root = \"../repo/agents\"\n");
    let before = snapshot(&r);
    let out = r.hybrid(&["start", "t1"]);
    assert_code(&out, 2);
    assert_eq!(snapshot(&r), before);
    assert!(!r.root.join("agents").exists());

    // Once ignored, it is accepted and the main checkout stays clean of it.
    r.write(".gitignore", "/agents/\n");
    r.commit_all("ignore agents");
    let out = r.hybrid(&["start", "t1"]);
    assert_ok(&out, &["start", "t1"]);
    let wt = r.root.join("agents").join("t1");
    assert_eq!(stdout(&out).trim(), wt.display().to_string());
    assert_eq!(r.porcelain(&r.root), "", "the task worktree shows up in the main checkout");
}

#[test]
fn worktree_root_outside_is_normalized() {
    let r = TestRepo::new();
    r.write("hybrid.toml", "[project]\nworktree_root = \"../elsewhere/./wt\"\n");
    let out = r.hybrid(&["start", "t1"]);
    assert_ok(&out, &["start", "t1"]);
    let wt = r.base().join("elsewhere/wt/t1");
    assert_eq!(stdout(&out).trim(), wt.display().to_string());
    assert_eq!(path_of(&task(&r, "t1")["worktree"]), wt);
}

// ---------------------------------------------------------------------------------------------
// Bad task ids
// ---------------------------------------------------------------------------------------------

#[test]
fn bad_task_ids_are_rejected_before_git_is_touched() {
    let r = TestRepo::new();
    let long = "x".repeat(65);
    let ids = ["../x", "-rf", "a/b", "x.lock", "a..b", "", &long, "a\x01b", "a\nb", "a b", ".hidden", "_x", "é"];
    let before = snapshot(&r);
    for id in ids {
        for cmd in [vec!["start", id], vec!["start", id, "--base", "main"], vec!["clean", id], vec!["status", id]] {
            let out = r.hybrid(&cmd);
            assert_code(&out, 2);
            let err = stderr(&out);
            assert!(err.contains(RULE), "{cmd:?}: the rule is not stated: {err}");
            assert!(err.contains("invalid task id"), "{cmd:?}: {err}");
            assert_eq!(snapshot(&r), before, "{cmd:?} changed something");
        }
    }
    assert!(!r.root.join(".git/hybrid").exists());
    assert!(!r.base().join("repo.hybrid").exists());
    assert!(!r.base().join("x").exists());
    // The longest allowed id works.
    let ok = "y".repeat(64);
    r.hybrid_ok(&["start", &ok]);
}

#[test]
fn bad_task_ids_in_json_mode_report_json() {
    let r = TestRepo::new();
    let out = r.hybrid(&["--json", "start", "a/b"]);
    assert_code(&out, 2);
    let doc: Value = serde_json::from_str(stderr(&out).trim()).expect("JSON error document");
    assert_eq!(doc["exit_code"], 2);
    assert!(doc["error"].as_str().unwrap().contains(RULE));
}

// ---------------------------------------------------------------------------------------------
// Bad config, init
// ---------------------------------------------------------------------------------------------

/// Writes `hybrid.toml`, runs `start` and `status`: both exit 2 at `location` with `reason`.
fn assert_bad_config(text: &str, location: &str, reason: &str) {
    let r = TestRepo::new();
    r.write("hybrid.toml", text);
    let before = snapshot(&r);
    for cmd in [&["start", "t1"][..], &["status"][..], &["clean", "--all"][..]] {
        let out = r.hybrid(cmd);
        assert_code(&out, 2);
        let err = stderr(&out);
        let expected = format!("{}:{location}: ", r.root.join("hybrid.toml").display());
        assert!(err.contains(&expected), "{text:?}: expected {expected:?} in {err}");
        assert!(err.contains(reason), "{text:?}: expected {reason:?} in {err}");
        assert_eq!(err.trim().lines().count(), 1, "one-line message expected: {err}");
        assert_eq!(snapshot(&r), before, "{text:?} / {cmd:?} changed something");
    }
    assert!(!r.root.join(".git/hybrid").exists());
}

#[test]
fn malformed_toml_is_located() {
    assert_bad_config("[project]\ntarget = \"main\n", "2:15", "invalid basic string");
    assert_bad_config("[project\ntarget = \"main\"\n", "1:9", "table header");
    assert_bad_config("[project]\ntarget = \"main\"\ntarget = \"dev\"\n", "3:1", "duplicate");
}

#[test]
fn unknown_key_is_located() {
    assert_bad_config("[project]\ntarget = \"main\"\ncolour = 1\n", "3:1", "unknown key `colour`");
    assert_bad_config("[agent]\n  timeout = 5\n  comand = [\"x\"]\n", "3:3", "unknown key `comand`");
}

#[test]
fn unknown_section_is_located() {
    assert_bad_config("[project]\ntarget = \"main\"\n\n[colour]\nx = 1\n", "4:2", "unknown section `[colour]`");
    assert_bad_config("colour = 1\n", "1:1", "unknown key `colour`");
}

#[test]
fn wrong_types_are_located() {
    assert_bad_config("[project]\nconcurrency = \"many\"\n", "2:15", "expected a whole number");
    assert_bad_config("[project]\ntarget = 7\n", "2:10", "expected a string");
    assert_bad_config("[hooks]\neverywhere = \"yes\"\n", "2:14", "expected a boolean");
    assert_bad_config("[agent]\ncommand = 3\n", "2:11", "expected a list");
}

#[test]
fn bad_values_are_located() {
    assert_bad_config("[project]\nconcurrency = 0\n", "2:1", "at least 1");
    assert_bad_config("[project]\ntarget = \"a..b\"\n", "2:1", "not a valid branch name");
    assert_bad_config("# the command below\n[agent]\ntimeout = \"forever\"\n", "3:1", "bad duration");
    assert_bad_config("# command = [] is not allowed\n[verify]\n\ncommand = []\n", "4:1", "must not be empty");
}

#[test]
fn init_writes_a_template_that_parses_and_never_overwrites() {
    let r = TestRepo::new();
    let out = r.hybrid(&["init"]);
    assert_ok(&out, &["init"]);
    let path = r.root.join("hybrid.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains("[project]") && text.contains("# target"), "{text}");
    // The template is a valid config: commands load it.
    r.hybrid_ok(&["status"]);
    r.hybrid_ok(&["start", "t1"]);

    // From a subdirectory, init finds the same file and refuses.
    std::fs::write(&path, "[project]\nconcurrency = 2\n").unwrap();
    std::fs::create_dir_all(r.root.join("sub")).unwrap();
    for dir in [r.root.clone(), r.root.join("sub"), r.task_dir("t1")] {
        let out = r.hybrid_in(&dir, &["init"]);
        assert_code(&out, 2);
        assert!(stderr(&out).contains("already exists"), "{}", stderr(&out));
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "[project]\nconcurrency = 2\n");
    }
    assert!(!r.task_dir("t1").join("hybrid.toml").exists());
}

// ---------------------------------------------------------------------------------------------
// Repository states that cannot be used
// ---------------------------------------------------------------------------------------------

#[test]
fn bare_repository_is_refused() {
    let r = TestRepo::new();
    let bare = r.base().join("bare.git");
    r.git(&["clone", "-q", "--bare", r.root.to_str().unwrap(), bare.to_str().unwrap()]);
    let out = r.hybrid_in(&bare, &["start", "t1"]);
    assert_code(&out, 2);
    assert!(stderr(&out).contains("bare"), "{}", stderr(&out));
    assert!(!bare.join("hybrid").exists());
    assert!(!r.base().join("bare.git.hybrid").exists());
    assert!(!r.base().join("bare.hybrid").exists());
    assert_code(&r.hybrid_in(&bare, &["status"]), 2);
}

#[test]
fn repository_without_commits_is_refused() {
    let r = TestRepo::empty();
    let out = r.hybrid(&["start", "t1"]);
    assert_code(&out, 2);
    assert!(stderr(&out).contains("no commits"), "{}", stderr(&out));
    assert!(!r.root.join(".git/hybrid").exists());
    assert!(!r.base().join("repo.hybrid").exists());
    assert_eq!(r.refs_snapshot(), "");
}

#[test]
fn shallow_clone_is_refused() {
    let r = TestRepo::new();
    r.write("b.txt", "b\n");
    r.commit_all("second");
    let url = format!("file://{}", r.root.display());
    let shallow = r.base().join("shallow");
    r.git_in(&r.base(), &["clone", "-q", "--depth", "1", &url, "shallow"]);
    assert!(shallow.join(".git/shallow").exists());
    let refs = r.git_in(&shallow, &["for-each-ref"]);
    let out = r.hybrid_in(&shallow, &["start", "t1"]);
    assert_code(&out, 2);
    assert!(stderr(&out).contains("shallow"), "{}", stderr(&out));
    assert_eq!(r.git_in(&shallow, &["for-each-ref"]), refs);
    assert!(!shallow.join(".git/hybrid").exists());
    assert!(!r.base().join("shallow.hybrid").exists());
}

#[test]
fn missing_target_branch_is_refused() {
    let r = TestRepo::new();
    r.write("hybrid.toml", "[project]\ntarget = \"nope\"\n");
    let before = snapshot(&r);
    let out = r.hybrid(&["start", "t1"]);
    assert_code(&out, 2);
    let err = stderr(&out);
    assert!(err.contains("\"nope\"") && err.contains("does not exist"), "{err}");
    assert_eq!(snapshot(&r), before);
    // Even with an explicit base, the target must exist (the task must land somewhere).
    assert_code(&r.hybrid(&["start", "t1", "--base", "main"]), 2);
    assert_eq!(snapshot(&r), before);
}

#[test]
fn configured_target_is_used() {
    let r = TestRepo::new();
    r.git(&["branch", "develop"]);
    r.git(&["checkout", "-q", "develop"]);
    r.write("dev.txt", "dev\n");
    let dev_tip = r.commit_all("dev work");
    r.git(&["checkout", "-q", "main"]);
    r.write("hybrid.toml", "[project]\ntarget = \"develop\"\n");
    let rec = r.hybrid_json(&["start", "t1"]);
    assert_eq!(rec["base"], dev_tip.as_str());
    assert_eq!(rec["target"], "develop");
}

#[test]
fn detached_head_without_main_or_master_is_refused() {
    let r = TestRepo::new();
    r.git(&["branch", "-m", "main", "trunk"]);
    r.git(&["checkout", "-q", "--detach"]);
    let before = snapshot(&r);
    let out = r.hybrid(&["start", "t1"]);
    assert_code(&out, 2);
    let err = stderr(&out);
    assert!(err.contains("detached") && err.contains("target"), "{err}");
    assert_eq!(snapshot(&r), before);

    // On a branch called trunk, that branch is the default.
    r.git(&["checkout", "-q", "trunk"]);
    let rec = r.hybrid_json(&["start", "t1"]);
    assert_eq!(rec["target"], "trunk");
}

// ---------------------------------------------------------------------------------------------
// clean
// ---------------------------------------------------------------------------------------------

fn branch_exists(r: &TestRepo, branch: &str) -> bool {
    r.git_out(&r.root, &["rev-parse", "--verify", "-q", &format!("refs/heads/{branch}")]).status.success()
}

fn worktree_listed(r: &TestRepo, path: &Path) -> bool {
    r.git(&["worktree", "list", "--porcelain"]).lines().any(|l| l == format!("worktree {}", path.display()))
}

#[test]
fn clean_removes_a_task_with_nothing_in_it() {
    let r = TestRepo::new();
    r.hybrid_ok(&["start", "t1"]);
    let wt = r.task_dir("t1");
    let out = r.hybrid(&["clean", "t1"]);
    assert_ok(&out, &["clean", "t1"]);
    assert!(stdout(&out).contains("removed t1"), "{}", stdout(&out));
    assert!(!wt.exists());
    assert!(!branch_exists(&r, "hybrid/t1"));
    assert!(!worktree_listed(&r, &wt));
    assert!(!r.root.join(".git/worktrees/t1").exists());
    let t = task(&r, "t1");
    assert!(t["worktree"].is_null());
    // Cleaning again is a no-op.
    let out = r.hybrid(&["clean", "t1"]);
    assert_ok(&out, &["clean", "t1", "again"]);
    assert!(stdout(&out).contains("nothing to clean"));
    // The task can be started again.
    r.hybrid_ok(&["start", "t1"]);
    assert!(wt.join("README.md").is_file());
}

#[test]
fn clean_keeps_uncommitted_changes_unless_forced() {
    let r = TestRepo::new();
    r.hybrid_ok(&["start", "t1"]);
    let wt = r.task_dir("t1");
    write_file(&wt.join("notes.txt"), "precious\n");
    std::fs::write(wt.join("README.md"), "edited\n").unwrap();
    let before = snapshot(&r);

    let out = r.hybrid(&["clean", "t1"]);
    assert_code(&out, 3);
    let text = stdout(&out);
    assert!(text.contains("kept t1") && text.contains("uncommitted") && text.contains("--force"), "{text}");
    assert!(text.contains("notes.txt"), "{text}");
    assert_eq!(snapshot(&r), before);
    assert_eq!(std::fs::read_to_string(wt.join("notes.txt")).unwrap(), "precious\n");

    // A staged change counts too.
    r.git_in(&wt, &["add", "notes.txt"]);
    assert_code(&r.hybrid(&["clean", "t1"]), 3);
    assert!(wt.join("notes.txt").exists());

    let out = r.hybrid(&["--json", "clean", "t1"]);
    assert_code(&out, 3);
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["kept"][0]["id"], "t1");
    assert!(doc["kept"][0]["reason"].as_str().unwrap().contains("uncommitted"));
    assert_eq!(doc["removed"], serde_json::json!([]));

    let out = r.hybrid(&["clean", "t1", "--force"]);
    assert_ok(&out, &["clean", "--force"]);
    assert!(!wt.exists());
    assert!(!branch_exists(&r, "hybrid/t1"));
    assert_eq!(task(&r, "t1")["state"], "abandoned");
}

#[test]
fn clean_keeps_unlanded_commits_unless_forced_and_then_trashes_them() {
    let r = TestRepo::new();
    r.hybrid_ok(&["start", "t1"]);
    let wt = r.task_dir("t1");
    write_file(&wt.join("feature.txt"), "work\n");
    let tip = r.commit_all_in(&wt, "agent work");
    let before = snapshot(&r);

    let out = r.hybrid(&["clean", "t1"]);
    assert_code(&out, 3);
    let text = stdout(&out);
    assert!(text.contains("kept t1") && text.contains("1 commit(s) not landed on main"), "{text}");
    assert_eq!(snapshot(&r), before);

    let out = r.hybrid(&["clean", "--force", "t1"]);
    assert_ok(&out, &["clean", "--force", "t1"]);
    assert!(!wt.exists());
    assert!(!branch_exists(&r, "hybrid/t1"));
    assert_eq!(r.rev("refs/hybrid/trash/t1"), tip, "the forced commits are not recoverable");
    assert_eq!(r.git(&["cat-file", "-p", "refs/hybrid/trash/t1:feature.txt"]), "work");
}

#[test]
fn clean_all_removes_what_is_safe_and_keeps_the_rest() {
    let r = TestRepo::new();
    for t in ["empty", "dirty", "ahead"] {
        r.hybrid_ok(&["start", t]);
    }
    write_file(&r.task_dir("dirty").join("x.txt"), "x\n");
    write_file(&r.task_dir("ahead").join("y.txt"), "y\n");
    r.commit_all_in(&r.task_dir("ahead"), "ahead");

    let out = r.hybrid(&["clean", "--all"]);
    assert_code(&out, 3);
    let text = stdout(&out);
    assert!(text.contains("removed empty"), "{text}");
    assert!(text.contains("kept dirty") && text.contains("kept ahead"), "{text}");
    assert!(!r.task_dir("empty").exists());
    assert!(r.task_dir("dirty").join("x.txt").exists());
    assert!(branch_exists(&r, "hybrid/ahead"));

    let out = r.hybrid(&["clean", "--all", "--force"]);
    assert_ok(&out, &["clean", "--all", "--force"]);
    assert!(!r.task_dir("dirty").exists() && !r.task_dir("ahead").exists());
    assert!(r.git_out(&r.root, &["rev-parse", "-q", "--verify", "refs/hybrid/trash/ahead"]).status.success());
    assert_eq!(r.git(&["worktree", "list", "--porcelain"]).matches("worktree ").count(), 1);
    // The main checkout is untouched throughout.
    assert_eq!(r.porcelain(&r.root), "");
}

/// What `merge` records when a task lands: a squash commit on main, the ledger marked landed.
fn land_by_hand(r: &TestRepo, id: &str) -> (String, String) {
    let tip = r.rev(&format!("hybrid/{id}"));
    r.git(&["merge", "-q", "--squash", &format!("hybrid/{id}")]);
    // The trailer is what makes git confirm the record (a landing without it is not believed).
    r.git(&["commit", "-q", "-m", &format!("{id} (squash)\n\nHybrid-Task: {id}")]);
    let squash = r.rev("HEAD");
    let file = r.root.join(format!(".git/hybrid/ledger/{id}/1.json"));
    let mut rec: Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    rec["state"] = "landed".into();
    rec["merge_sha"] = squash.clone().into();
    rec["tip"] = tip.clone().into();
    std::fs::write(&file, serde_json::to_vec_pretty(&rec).unwrap()).unwrap();
    (tip, squash)
}

#[test]
fn clean_merged_removes_only_landed_tasks() {
    let r = TestRepo::new();
    for t in ["landed", "landed-then-more", "open"] {
        r.hybrid_ok(&["start", t]);
        write_file(&r.task_dir(t).join(format!("{t}.txt")), "work\n");
        r.commit_all_in(&r.task_dir(t), t);
    }
    land_by_hand(&r, "landed");
    land_by_hand(&r, "landed-then-more");
    // An agent kept committing after the landing: that commit is not landed.
    write_file(&r.task_dir("landed-then-more").join("late.txt"), "late\n");
    r.commit_all_in(&r.task_dir("landed-then-more"), "late");

    let out = r.hybrid(&["clean", "--merged"]);
    assert_code(&out, 3);
    let text = stdout(&out);
    assert!(text.contains("removed landed (attempt 1)"), "{text}");
    assert!(text.contains("kept landed-then-more") && text.contains("not landed"), "{text}");
    assert!(!text.contains("open"), "--merged touched an open task: {text}");
    assert!(!r.task_dir("landed").exists() && !branch_exists(&r, "hybrid/landed"));
    assert!(r.task_dir("open").exists() && branch_exists(&r, "hybrid/open"));
    assert!(r.task_dir("landed-then-more").join("late.txt").exists());
    let landed = task(&r, "landed");
    assert_eq!(landed["state"], "landed", "cleaning does not rewrite history");
    assert!(landed["merge_sha"].is_string());
    assert!(r.git_out(&r.root, &["rev-parse", "-q", "--verify", "refs/hybrid/trash/landed"]).status.code() != Some(0));
}

#[test]
fn clean_unknown_task_is_bad_input() {
    let r = TestRepo::new();
    let out = r.hybrid(&["clean", "ghost"]);
    assert_code(&out, 2);
    assert!(stderr(&out).contains("ghost"), "{}", stderr(&out));
}

#[test]
fn clean_copes_with_a_worktree_deleted_by_hand() {
    let r = TestRepo::new();
    r.hybrid_ok(&["start", "t1"]);
    std::fs::remove_dir_all(r.task_dir("t1")).unwrap();
    let out = r.hybrid(&["clean", "t1"]);
    assert_ok(&out, &["clean", "t1"]);
    assert!(!branch_exists(&r, "hybrid/t1"));
    assert!(!r.root.join(".git/worktrees/t1").exists());
    // And start recreates a task whose folder was deleted by hand.
    r.hybrid_ok(&["start", "t2"]);
    std::fs::remove_dir_all(r.task_dir("t2")).unwrap();
    let out = r.hybrid(&["start", "t2"]);
    assert_ok(&out, &["start", "t2"]);
    assert_eq!(r.porcelain(&r.task_dir("t2")), "");
    assert_eq!(r.git_in(&r.task_dir("t2"), &["symbolic-ref", "HEAD"]), "refs/heads/hybrid/t2");
}

#[test]
fn start_refuses_a_foreign_folder_in_the_way() {
    let r = TestRepo::new();
    let wt = r.task_dir("t1");
    write_file(&wt.join("mine.txt"), "not git-hybrid's\n");
    let out = r.hybrid(&["start", "t1"]);
    assert_code(&out, 2);
    assert!(stderr(&out).contains("already exists"), "{}", stderr(&out));
    assert_eq!(std::fs::read_to_string(wt.join("mine.txt")).unwrap(), "not git-hybrid's\n");
    assert!(!branch_exists(&r, "hybrid/t1"), "a branch was left behind");
    assert!(!r.root.join(".git/hybrid/ledger/t1").exists(), "a ledger record was left behind");
}

#[test]
fn a_users_worktree_with_the_same_folder_name_is_never_touched() {
    let r = TestRepo::new();
    // The user made their own worktree whose folder is also called `t1`.
    let mine = r.base().join("mine").join("t1");
    r.git(&["worktree", "add", "-q", "-b", "mywork", mine.to_str().unwrap(), "main"]);
    write_file(&mine.join("precious.txt"), "uncommitted\n");

    let out = r.hybrid(&["start", "t1"]);
    assert_ok(&out, &["start", "t1"]);
    assert_eq!(r.porcelain(&r.task_dir("t1")), "");
    assert_eq!(r.git_in(&r.task_dir("t1"), &["symbolic-ref", "HEAD"]), "refs/heads/hybrid/t1");
    // Starting again, cleaning, starting again: the user's worktree survives all of it.
    r.hybrid_ok(&["start", "t1"]);
    r.hybrid_ok(&["clean", "t1"]);
    assert!(!r.task_dir("t1").exists());
    r.hybrid_ok(&["start", "t1"]);
    r.hybrid_ok(&["clean", "t1"]);
    assert_eq!(std::fs::read_to_string(mine.join("precious.txt")).unwrap(), "uncommitted\n");
    assert_eq!(r.git_in(&mine, &["symbolic-ref", "HEAD"]), "refs/heads/mywork");
    assert_eq!(r.porcelain(&mine), "?? precious.txt");
    let list = r.git(&["worktree", "list", "--porcelain"]);
    assert!(list.contains(&format!("worktree {}", mine.display())), "{list}");
    assert!(!list.contains("prunable"), "{list}");
}

#[test]
fn restarting_a_cleaned_task_branches_from_the_current_target() {
    let r = TestRepo::new();
    r.hybrid_ok(&["start", "t1"]);
    r.hybrid_ok(&["clean", "t1"]);
    r.write("later.txt", "later\n");
    let tip = r.commit_all("later");
    let rec = r.hybrid_json(&["start", "t1"]);
    assert_eq!(rec["base"], tip.as_str());
    assert_eq!(rec["state"], "ready");
    assert_eq!(r.git_in(&r.task_dir("t1"), &["rev-parse", "HEAD"]), tip);
}

#[test]
fn filter_drivers_are_honoured_on_checkout() {
    // libgit2 cannot run filter drivers (git-lfs and the like); the files must be what git writes.
    // The driver is the user's (global config): one from the repository's own config never runs.
    let r = TestRepo::new();
    std::fs::write(&r.empty_config, "[filter \"upper\"]\n\tsmudge = tr a-z A-Z\n\tclean = cat\n").unwrap();
    r.write(".gitattributes", "*.up filter=upper\n");
    r.write("note.up", "shout\n");
    r.commit_all("filtered file");
    r.hybrid_ok(&["start", "t1"]);
    let wt = r.task_dir("t1");
    assert_eq!(std::fs::read_to_string(wt.join("note.up")).unwrap(), "SHOUT\n");
    assert_eq!(r.git_in(&wt, &["symbolic-ref", "HEAD"]), "refs/heads/hybrid/t1");
    r.hybrid_ok(&["clean", "t1", "--force"]);
    assert!(!wt.exists());
    assert_eq!(r.git(&["worktree", "list", "--porcelain"]).matches("worktree ").count(), 1);
}

#[test]
fn a_task_branch_checked_out_by_the_user_is_not_checked_out_twice() {
    let r = TestRepo::new();
    r.hybrid_ok(&["start", "t1"]);
    std::fs::remove_dir_all(r.task_dir("t1")).unwrap();
    r.git(&["worktree", "prune"]);
    r.git(&["checkout", "-q", "hybrid/t1"]);
    let refs = r.refs_snapshot();
    let record = std::fs::read_to_string(r.root.join(".git/hybrid/ledger/t1/1.json")).unwrap();
    let out = r.hybrid(&["start", "t1"]);
    assert_code(&out, 2);
    assert!(stderr(&out).contains("checked out in"), "{}", stderr(&out));
    assert!(!r.task_dir("t1").exists());
    assert_eq!(r.refs_snapshot(), refs);
    assert_eq!(std::fs::read_to_string(r.root.join(".git/hybrid/ledger/t1/1.json")).unwrap(), record);
    assert_eq!(r.git(&["worktree", "list", "--porcelain"]).matches("worktree ").count(), 1);
}

#[test]
fn task_worktrees_are_ordinary_git_worktrees() {
    let r = TestRepo::new();
    r.hybrid_ok(&["start", "t1"]);
    let wt = r.task_dir("t1");
    let list = r.git(&["worktree", "list", "--porcelain"]);
    assert!(
        list.contains(&format!("worktree {}\nHEAD {}\nbranch refs/heads/hybrid/t1", wt.display(), r.rev("main"))),
        "{list}"
    );
    assert!(!list.contains("prunable"), "{list}");
    // git's own commands work in and on it.
    write_file(&wt.join("new.txt"), "n\n");
    r.commit_all_in(&wt, "in the task");
    assert_eq!(r.git(&["worktree", "prune", "--dry-run", "-v"]), "");
    r.git_in(&wt, &["fsck", "--no-progress"]);
    r.git(&["worktree", "move", wt.to_str().unwrap(), r.base().join("moved").to_str().unwrap()]);
    r.git(&["worktree", "remove", r.base().join("moved").to_str().unwrap()]);
    assert_eq!(r.git(&["worktree", "list", "--porcelain"]).matches("worktree ").count(), 1);
}

#[test]
fn gitattributes_conversions_apply_as_git_applies_them() {
    let r = TestRepo::new();
    r.write("deep/sub/.gitattributes", "*.crlf text eol=crlf\n*.id ident\n");
    r.write("deep/sub/a.crlf", "one\ntwo\n");
    r.write("deep/sub/b.id", "$Id$\n");
    r.write("plain.txt", "plain\n");
    r.commit_all("attributes");
    r.hybrid_ok(&["start", "t1"]);
    let wt = r.task_dir("t1");
    let mine = r.base().join("by-git");
    r.git(&["worktree", "add", "-q", "-b", "by-git", mine.to_str().unwrap(), "main"]);
    for f in ["deep/sub/a.crlf", "deep/sub/b.id", "plain.txt", "deep/sub/.gitattributes"] {
        assert_eq!(std::fs::read(wt.join(f)).unwrap(), std::fs::read(mine.join(f)).unwrap(), "{f} differs from git's");
    }
    assert_eq!(std::fs::read_to_string(wt.join("deep/sub/a.crlf")).unwrap(), "one\r\ntwo\r\n");
    assert_eq!(r.porcelain(&wt), "");
}

#[test]
fn autocrlf_applies_as_git_applies_it() {
    let r = TestRepo::new();
    r.write("a.txt", "one\ntwo\n");
    r.commit_all("text");
    r.git(&["config", "core.autocrlf", "true"]);
    r.hybrid_ok(&["start", "t1"]);
    assert_eq!(std::fs::read_to_string(r.task_dir("t1").join("a.txt")).unwrap(), "one\r\ntwo\r\n");
    assert_eq!(r.porcelain(&r.task_dir("t1")), "");
}

/// Type, permission bits, symlink target and content of every path under `dir` but `.git`.
fn tree_listing(dir: &Path) -> Vec<String> {
    use std::os::unix::fs::PermissionsExt;
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            let rel = p.strip_prefix(dir).unwrap().display().to_string();
            if rel == ".git" {
                continue;
            }
            let meta = std::fs::symlink_metadata(&p).unwrap();
            let mode = meta.permissions().mode() & 0o777;
            if meta.file_type().is_symlink() {
                out.push(format!("link {rel} -> {}", std::fs::read_link(&p).unwrap().display()));
            } else if meta.is_dir() {
                out.push(format!("dir {rel} {mode:o}"));
                stack.push(p);
            } else {
                out.push(format!("file {rel} {mode:o} {:?}", std::fs::read(&p).unwrap()));
            }
        }
    }
    out.sort();
    out
}

#[test]
fn task_worktrees_hold_what_git_checks_out() {
    use std::os::unix::fs::PermissionsExt;
    let r = TestRepo::new();
    // Enough files for the parallel writer, plus the special cases.
    for i in 0..400 {
        r.write(&format!("many/d{}/f{i}.txt", i % 7), &format!("{i}\n").repeat(i % 50));
    }
    r.write("empty.txt", "");
    r.write("bin/run.sh", "#!/bin/sh\necho hi\n");
    std::fs::set_permissions(r.root.join("bin/run.sh"), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::os::unix::fs::symlink("../empty.txt", r.root.join("bin/link")).unwrap();
    std::os::unix::fs::symlink("many/d1", r.root.join("dirlink")).unwrap();
    r.write("weird name ü.txt", "unicode\n");
    r.commit_all("special files");
    // A submodule entry (gitlink), added to the index by hand.
    let sub_commit = r.rev("HEAD");
    r.git(&["update-index", "--add", "--cacheinfo", &format!("160000,{sub_commit},vendor/sub")]);
    r.git(&["commit", "-q", "-m", "gitlink"]);

    r.hybrid_ok(&["start", "t1"]);
    let wt = r.task_dir("t1");
    // The index holds real stat data: before anything refreshes it, git sees no file as changed.
    assert_eq!(r.git_in(&wt, &["diff-files", "--name-only"]), "");
    let theirs = r.base().join("by-git");
    r.git(&["worktree", "add", "-q", "-b", "by-git", theirs.to_str().unwrap(), "main"]);
    assert_eq!(tree_listing(&wt), tree_listing(&theirs));
    assert_eq!(r.porcelain(&wt), "");
    assert_eq!(r.git_in(&wt, &["ls-files", "-s", "vendor/sub"]), format!("160000 {sub_commit} 0\tvendor/sub"));
    assert_eq!(r.git_in(&wt, &["ls-files", "-s"]), r.git_in(&theirs, &["ls-files", "-s"]));
    // A modification is seen.
    std::fs::write(wt.join("many/d3/f3.txt"), "changed\n").unwrap();
    assert_eq!(r.porcelain(&wt), " M many/d3/f3.txt");
}
