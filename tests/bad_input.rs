//! Bad input (issues 10 and 18): every case exits with the documented code, says what is wrong
//! in plain words, prints the JSON error shape with `--json`, and leaves nothing behind (no
//! lock file, ref, worktree or ledger record).

mod common;

use std::path::{Path, PathBuf};

use common::{assert_code, stderr, stdout, TestRepo};
use serde_json::Value;

/// Every file under `.git/hybrid` (locks included), every ref, the worktrees and the main
/// checkout's status: what a refused command must leave as it was.
fn snapshot(r: &TestRepo) -> String {
    let mut files = Vec::new();
    list_files(&r.root.join(".git").join("hybrid"), &mut files);
    files.sort();
    format!(
        "refs:\n{}\nworktrees:\n{}\nstatus:\n{}\nhybrid state: {:?}",
        r.refs_snapshot(),
        r.git(&["worktree", "list", "--porcelain"]),
        r.porcelain(&r.root),
        files
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
}

/// Runs `args` in text and JSON mode: exit `code` both times, stderr containing `needle`, the
/// JSON error shape, and nothing changed. Returns the text-mode stderr.
fn refused(r: &TestRepo, args: &[&str], code: i32, needle: &str) -> String {
    let before = snapshot(r);
    let out = r.hybrid(args);
    assert_code(&out, code);
    let err = stderr(&out);
    assert!(err.contains(needle), "{args:?}: expected {needle:?} in: {err}");
    assert_eq!(snapshot(r), before, "{args:?} changed something");
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    let out = r.hybrid(&all);
    assert_code(&out, code);
    let doc: Value = serde_json::from_str(stderr(&out).trim())
        .unwrap_or_else(|e| panic!("{all:?}: no JSON error document ({e}): {}", stderr(&out)));
    assert_eq!(doc["exit_code"], code, "{doc}");
    assert!(doc["error"].as_str().unwrap_or_default().contains(needle), "{doc}");
    assert_eq!(snapshot(r), before, "{all:?} changed something");
    err
}

#[test]
fn a_task_id_git_refuses_as_a_branch_is_bad_input() {
    let r = TestRepo::new();
    for id in ["a.", "fix-login."] {
        let err = refused(&r, &["start", id], 2, "invalid task id");
        assert!(err.contains("git refuses") && err.contains("must not end in \".\""), "{err}");
        assert!(!err.contains("class=Reference"), "a raw libgit2 error: {err}");
        for cmd in ["sync", "merge", "clean", "status"] {
            refused(&r, &[cmd, id], 2, "invalid task id");
        }
    }
    assert!(!r.root.join(".git/hybrid").exists());
    assert!(!r.task_dir("a.").exists());
}

#[test]
fn a_config_that_is_not_utf8_is_located() {
    let r = TestRepo::new();
    std::fs::write(r.root.join("hybrid.toml"), b"[project]\ntarget = \"m\xffain\"\n").unwrap();
    let err = refused(&r, &["start", "t1"], 2, "hybrid.toml:2:12: the file is not valid UTF-8");
    assert!(err.contains("0xff"), "{err}");
    refused(&r, &["status"], 2, "not valid UTF-8");
    // A plan file too.
    std::fs::remove_file(r.root.join("hybrid.toml")).unwrap();
    let plan = r.base().join("plan.toml");
    std::fs::write(&plan, b"[[task]]\nid = \"\xfe\"\n").unwrap();
    refused(
        &r,
        &["dispatch", "--dry-run", "--plan", plan.to_str().unwrap()],
        2,
        "plan.toml:2:7: the file is not valid UTF-8",
    );
}

#[test]
fn dash_c_must_name_a_directory() {
    let r = TestRepo::new();
    let file = r.root.join("README.md");
    refused(&r, &["-C", file.to_str().unwrap(), "status"], 2, "not a directory");
    refused(&r, &["-C", "README.md", "start", "t1"], 2, "not a directory");
    refused(&r, &["-C", "no/such/dir", "status"], 2, "-C no/such/dir");
}

#[test]
fn sync_of_an_unknown_task_leaves_no_lock_behind() {
    let r = TestRepo::new();
    r.hybrid_ok(&["start", "t1"]);
    refused(&r, &["sync", "nosuch"], 2, "unknown task \"nosuch\"");
    assert!(!r.root.join(".git/hybrid/locks/task-nosuch.lock").exists());
}

#[test]
fn verify_junit_must_name_a_file() {
    let r = TestRepo::new();
    refused(&r, &["verify", "--all", "--junit", "/"], 2, "--junit /: is a directory");
    let d = r.base().join("reports");
    std::fs::create_dir(&d).unwrap();
    refused(&r, &["verify", "--all", "--junit", d.to_str().unwrap()], 2, "is a directory");
    let below_a_file = r.root.join("README.md/out.xml");
    refused(&r, &["verify", "--all", "--junit", below_a_file.to_str().unwrap()], 2, "a folder on its path is a file");
    // A good path still works.
    let ok = r.base().join("out.xml");
    r.hybrid_ok(&["verify", "--all", "--junit", ok.to_str().unwrap()]);
    assert!(ok.is_file());
}

#[test]
fn export_out_must_name_a_file() {
    let r = TestRepo::new();
    r.write("hybrid.toml", "[export]\nenabled = true\nacknowledged_terms = true\n");
    r.commit_all("export on");
    refused(&r, &["export", "--out", "/"], 2, "--out /: is a directory");
}

#[test]
fn worktree_root_inside_the_git_dir_or_a_tracked_path_is_refused() {
    let r = TestRepo::new();
    r.write("src/lib.rs", "x\n");
    r.write(".gitignore", "src/wt/\nsrc/lib.rs/\n");
    r.commit_all("src");
    for (root, why) in [
        (".git", "inside the git directory"),
        (".git/wt", "inside the git directory"),
        ("sub/.git/wt", "inside a .git folder"),
        (".", "the repository's own checkout"),
        ("src", "tracked path \"src/lib.rs\""),
        ("README.md", "tracked path \"README.md\""),
        ("src/lib.rs/wt", "tracked path \"src/lib.rs\""),
    ] {
        r.write("hybrid.toml", &format!("[project]\nworktree_root = \"{root}\"\n"));
        let err = refused(&r, &["start", "t1"], 2, why);
        assert!(err.contains("worktree_root"), "{err}");
    }
    assert!(!r.root.join(".git/t1").exists());
    assert!(!r.root.join(".git/wt").exists());
    // An ignored folder inside a tracked folder (no tracked file in it) is still fine.
    r.write("hybrid.toml", "[project]\nworktree_root = \"src/wt\"\n");
    r.hybrid_ok(&["start", "t1"]);
    assert!(r.root.join("src/wt/t1/.git").exists());
}

#[test]
fn prompt_file_outside_the_repository_is_refused() {
    let r = TestRepo::new();
    let secret = r.base().join("secret.txt");
    std::fs::write(&secret, "token\n").unwrap();
    std::os::unix::fs::symlink(&secret, r.root.join("link.md")).unwrap();
    r.write("inside.md", "do it\n");
    let agent = "[agent]\ncommand = [\"true\"]\n";
    for (pf, why) in [
        (secret.to_str().unwrap().to_string(), "not an absolute path"),
        ("../secret.txt".to_string(), "must not contain '..'"),
        ("link.md".to_string(), "outside the repository"),
    ] {
        r.write("hybrid.toml", &format!("{agent}[[task]]\nid = \"a\"\nprompt_file = \"{pf}\"\n"));
        let err = refused(&r, &["dispatch", "--dry-run"], 2, why);
        assert!(err.contains("hybrid.toml:5:15: `prompt_file`"), "{err}");
    }
    r.write("hybrid.toml", &format!("{agent}[[task]]\nid = \"a\"\nprompt_file = \"inside.md\"\n"));
    r.hybrid_ok(&["dispatch", "--dry-run"]);
}

#[test]
fn argument_errors_in_json_mode_print_the_json_shape() {
    let r = TestRepo::new();
    for args in [&["--json", "start"][..], &["merge", "--json", "--bogus", "t1"], &["--json", "nosuchcommand"]] {
        let before = snapshot(&r);
        let out = r.hybrid(args);
        assert_code(&out, 2);
        let doc: Value = serde_json::from_str(stderr(&out).trim())
            .unwrap_or_else(|e| panic!("{args:?}: not JSON ({e}): {}", stderr(&out)));
        assert_eq!(doc["exit_code"], 2);
        assert!(!doc["error"].as_str().unwrap().is_empty());
        assert_eq!(snapshot(&r), before);
    }
    // --help with --json is not an error.
    let out = r.hybrid(&["--json", "start", "--help"]);
    assert_code(&out, 0);
    assert!(stdout(&out).contains("Usage"));
}

#[test]
fn a_plans_base_is_checked_before_anything_starts() {
    let r = TestRepo::new();
    r.write(
        "hybrid.toml",
        "[agent]\ncommand = [\"true\"]\n[[task]]\nid = \"a\"\nprompt = \"x\"\n[[task]]\nid = \"b\"\nprompt = \"y\"\nbase = \"no-such-rev\"\n",
    );
    r.commit_all("plan");
    for args in [&["dispatch", "--dry-run"][..], &["dispatch"]] {
        let err = refused(&r, args, 2, "hybrid.toml:9:1:");
        assert!(err.contains("`base` \"no-such-rev\" is not a commit"), "{err}");
    }
    assert!(!r.task_dir("a").exists());
}

#[test]
fn status_of_unknown_tasks_exits_2_and_takes_several_ids() {
    let r = TestRepo::new();
    // Even with no tasks at all, an unknown task is not "no tasks yet".
    refused(&r, &["status", "ghost"], 2, "unknown task \"ghost\"");
    r.hybrid_ok(&["start", "t1"]);
    r.hybrid_ok(&["start", "t2"]);
    r.hybrid_ok(&["start", "t3"]);
    refused(&r, &["status", "t1", "ghost"], 2, "unknown task \"ghost\"");
    let doc = r.hybrid_json(&["status", "t3", "t1"]);
    let ids: Vec<&str> = doc["tasks"].as_array().unwrap().iter().map(|t| t["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["t3", "t1"]);
    // Flags after the ids stay flags.
    let out = r.hybrid(&["status", "t1", "--interval", "1"]);
    assert_code(&out, 0);
}

#[test]
fn start_into_an_occupied_folder_leaves_no_lock_behind() {
    let r = TestRepo::new();
    common::write_file(&r.task_dir("t9").join("mine.txt"), "the user's\n");
    let err = refused(&r, &["start", "t9"], 2, "already exists");
    assert!(err.contains("t9"), "{err}");
    assert!(!r.root.join(".git/hybrid/locks/task-t9.lock").exists());
    assert_eq!(std::fs::read_to_string(r.task_dir("t9").join("mine.txt")).unwrap(), "the user's\n");
}

#[test]
fn label_pairs_must_be_a_file_and_jobs_are_bounded() {
    let r = TestRepo::new();
    let dir = r.base().to_str().unwrap().to_string();
    refused(&r, &["label", "--pairs", &dir], 2, "is a directory");
    let pairs = r.base().join("p.jsonl");
    std::fs::write(&pairs, "{\"id\":\"a\",\"candidate\":\"+x\\n\",\"final\":\"+x\\n\"}\n").unwrap();
    for flag in ["--jobs", "-j"] {
        for n in ["100000", "257", "0"] {
            refused(&r, &["label", "--pairs", pairs.to_str().unwrap(), flag, n], 2, n);
        }
    }
    let out = r.hybrid(&["label", "--pairs", pairs.to_str().unwrap(), "-j", "256"]);
    assert_code(&out, 0);
    assert!(stdout(&out).contains("\"id\":\"a\""), "{}", stdout(&out));
}

#[test]
fn concurrency_is_bounded_in_config() {
    let r = TestRepo::new();
    r.write("hybrid.toml", "[project]\nconcurrency = 100000\n");
    refused(&r, &["status"], 2, "hybrid.toml:2:1: `concurrency` is at most 256");
}
