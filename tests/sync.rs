//! `git hybrid sync`: merging the target into a task branch. Every test drives the real binary.

mod common;

use common::{assert_code, assert_ok, stderr, stdout, write_file, TestRepo};

fn record(repo: &TestRepo, id: &str) -> serde_json::Value {
    let p = repo.root.join(".git/hybrid/ledger").join(id).join("1.json");
    serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap()
}

fn start(repo: &TestRepo, id: &str) -> std::path::PathBuf {
    assert_ok(&repo.hybrid(&["start", id]), &["start", id]);
    repo.task_dir(id)
}

#[test]
fn up_to_date_is_a_no_op() {
    let repo = TestRepo::new();
    let dir = start(&repo, "t1");
    write_file(&dir.join("a.txt"), "a\n");
    repo.commit_all_in(&dir, "task work");
    let refs = repo.refs_snapshot();
    let j = repo.hybrid_json(&["sync", "t1"]);
    assert_eq!(j["status"], "up-to-date");
    assert!(j["commit"].is_null());
    assert_eq!(repo.refs_snapshot(), refs);
    assert!(repo.hybrid_ok(&["sync", "t1"]).contains("up to date"));
}

#[test]
fn target_moved_makes_a_real_merge_commit_and_moves_the_worktree() {
    let repo = TestRepo::new();
    let dir = start(&repo, "t1");
    write_file(&dir.join("a.txt"), "task\n");
    let task_tip = repo.commit_all_in(&dir, "task work");
    repo.write("b.txt", "main\n");
    let main = repo.commit_all("main moves");

    let j = repo.hybrid_json(&["sync", "t1"]);
    assert_eq!(j["status"], "merged");
    let merge = j["commit"].as_str().unwrap().to_string();
    assert_eq!(repo.rev("hybrid/t1"), merge);
    assert_eq!(j["tip"], merge.as_str());
    assert_eq!(repo.git(&["rev-list", "--parents", "-n1", &merge]), format!("{merge} {task_tip} {main}"));
    assert_eq!(repo.git(&["log", "-1", "--format=%s", &merge]), "Merge branch 'main' into hybrid/t1");
    // The worktree, its index and its HEAD moved together.
    assert_eq!(std::fs::read_to_string(dir.join("b.txt")).unwrap(), "main\n");
    assert_eq!(repo.git_in(&dir, &["rev-parse", "HEAD"]), merge);
    assert_eq!(repo.porcelain(&dir), "");
    assert_eq!(record(&repo, "t1")["state"], "ready");
    // Now up to date.
    assert_eq!(repo.hybrid_json(&["sync", "t1"])["status"], "up-to-date");
    // The main checkout was never touched.
    assert_eq!(repo.porcelain(&repo.root), "");
}

#[test]
fn uncommitted_changes_in_the_worktree_refuse_and_are_listed() {
    let repo = TestRepo::new();
    let dir = start(&repo, "t1");
    write_file(&dir.join("wip.txt"), "not committed\n");
    write_file(&dir.join("README.md"), "edited\n");
    repo.write("b.txt", "main\n");
    repo.commit_all("main moves");
    let refs = repo.refs_snapshot();
    let status = repo.porcelain(&dir);

    let out = repo.hybrid(&["sync", "t1"]);
    assert_code(&out, 3);
    let err = stderr(&out);
    assert!(err.contains("wip.txt") && err.contains("README.md"), "{err}");
    assert_eq!(repo.refs_snapshot(), refs);
    assert_eq!(repo.porcelain(&dir), status);
    assert_eq!(std::fs::read_to_string(dir.join("README.md")).unwrap(), "edited\n");
    assert!(!dir.join("b.txt").exists());
}

#[test]
fn conflict_changes_nothing_reports_paths_and_marks_the_task() {
    let repo = TestRepo::new();
    repo.write("f.txt", "1\n2\n3\n");
    repo.write("g.txt", "x\n");
    repo.commit_all("files");
    let dir = start(&repo, "t1");
    write_file(&dir.join("f.txt"), "1\nTASK\n3\n");
    write_file(&dir.join("g.txt"), "task g\n");
    repo.commit_all_in(&dir, "task edits");
    repo.write("f.txt", "1\nMAIN\n3\n");
    repo.write("g.txt", "main g\n");
    repo.commit_all("main edits");
    let refs = repo.refs_snapshot();
    let status = repo.porcelain(&dir);
    let head_index = repo.git_in(&dir, &["ls-files", "-s"]);

    let out = repo.hybrid(&["--json", "sync", "t1"]);
    assert_code(&out, 3);
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", stdout(&out)));
    assert_eq!(
        (&j["task"], &j["status"], &j["conflicts"]),
        (&"t1".into(), &"conflict".into(), &serde_json::json!(["f.txt", "g.txt"]))
    );
    // The error shape's keys too, as for every failure with --json.
    assert_eq!(j["exit_code"], 3);
    assert!(j["error"].as_str().unwrap().contains("conflicts in"), "{j}");
    assert_eq!(repo.refs_snapshot(), refs);
    assert_eq!(repo.porcelain(&dir), status);
    assert_eq!(repo.git_in(&dir, &["ls-files", "-s"]), head_index);
    assert_eq!(std::fs::read_to_string(dir.join("f.txt")).unwrap(), "1\nTASK\n3\n");
    let rec = record(&repo, "t1");
    assert_eq!(rec["state"], "conflict");
    assert_eq!(rec["conflicts"], serde_json::json!(["f.txt", "g.txt"]));

    // Human output lists the paths too.
    let out = repo.hybrid(&["sync", "t1"]);
    assert_code(&out, 3);
    assert!(stdout(&out).contains("conflict: f.txt"), "{}", stdout(&out));

    // After the user resolves it by hand, sync is a no-op and the state clears.
    repo.git_in(&dir, &["merge", "-q", "main", "-s", "ours", "-m", "resolve"]);
    assert_eq!(repo.hybrid_json(&["sync", "t1"])["status"], "up-to-date");
    assert_eq!(record(&repo, "t1")["state"], "ready");
}

#[test]
fn unknown_task_and_bad_id_exit_2() {
    let repo = TestRepo::new();
    assert_code(&repo.hybrid(&["sync", "missing"]), 2);
    assert_code(&repo.hybrid(&["sync", "-x"]), 2);
    assert_code(&repo.hybrid(&["sync", "a/b"]), 2);
}

#[test]
fn a_branch_without_worktree_is_merged_in_place() {
    let repo = TestRepo::new();
    // A branch with a commit of its own (one without would fast-forward).
    repo.git(&["checkout", "-q", "-b", "hybrid/r1"]);
    repo.write("r.txt", "remote agent\n");
    repo.commit_all("remote agent work");
    repo.git(&["checkout", "-q", "main"]);
    repo.write("b.txt", "main\n");
    let main = repo.commit_all("main moves");
    let j = repo.hybrid_json(&["sync", "r1"]);
    assert_eq!(j["status"], "merged");
    assert_eq!(repo.rev("hybrid/r1^2"), main);
    assert_eq!(record(&repo, "r1")["state"], "ready");
}

#[test]
fn a_worktree_left_already_moved_by_a_killed_sync_is_finished() {
    let repo = TestRepo::new();
    let dir = start(&repo, "t1");
    write_file(&dir.join("a.txt"), "task\n");
    let tip = repo.commit_all_in(&dir, "task work");
    repo.write("b.txt", "main\n");
    repo.commit_all("main moves");
    // Index and files hold the merge, HEAD does not: what a sync killed before its ref move leaves.
    repo.git_in(&dir, &["merge", "-q", "--no-commit", "--no-ff", "main"]);
    repo.git_in(&dir, &["merge", "--quit"]);
    assert_eq!(repo.git_in(&dir, &["diff", "--cached", "--name-only"]), "b.txt");
    let j = repo.hybrid_json(&["sync", "t1"]);
    assert_eq!(j["status"], "merged");
    assert_eq!(repo.rev("hybrid/t1^1"), tip);
    assert_eq!(repo.porcelain(&dir), "");
}

/// Main adds `path` (an ignored path, force-added) after the task started.
fn main_adds_ignored(repo: &TestRepo, path: &str, content: &str) {
    repo.write(path, content);
    repo.git(&["add", "-f", path]);
    repo.git(&["commit", "-q", "-m", &format!("main adds {path}")]);
}

#[test]
fn ignored_files_in_a_task_worktree_are_never_overwritten_by_a_sync() {
    // (what the worktree has, ignored; what main adds; what the refusal names)
    let cases = [("notes.log", "notes.log", "notes.log"), ("cache", "cache/x.bin", "cache")];
    for (mine, added, named) in cases {
        let repo = TestRepo::new();
        repo.write(".gitignore", "*.log\ncache\n");
        repo.commit_all("ignores");
        let dir = start(&repo, "t1");
        write_file(&dir.join("a.txt"), "task\n");
        repo.commit_all_in(&dir, "task work");
        write_file(&dir.join(mine), "the agent's local file\n");
        main_adds_ignored(&repo, added, "from main\n");
        let refs = repo.refs_snapshot();

        let out = repo.hybrid(&["sync", "t1"]);
        assert_code(&out, 3);
        assert!(stderr(&out).contains(named), "{mine}: {}", stderr(&out));
        assert_eq!(std::fs::read_to_string(dir.join(mine)).unwrap(), "the agent's local file\n", "{mine}");
        assert_eq!(repo.refs_snapshot(), refs, "{mine}");
        assert_eq!(repo.porcelain(&dir), "", "{mine}");
    }
}

#[test]
fn the_keep_catch_up_leaves_ignored_files_in_the_task_worktree_alone() {
    let repo = TestRepo::new();
    repo.write(".gitignore", "*.log\n");
    repo.commit_all("ignores");
    let dir = start(&repo, "t1");
    write_file(&dir.join("a.txt"), "task\n");
    let tip = repo.commit_all_in(&dir, "task work");
    write_file(&dir.join("run.log"), "the agent's log\n");
    main_adds_ignored(&repo, "run.log", "from main\n");

    let out = repo.hybrid(&["--json", "merge", "--keep", "t1"]);
    assert_ok(&out, &["merge", "--keep", "t1"]);
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(j["status"], "landed");
    assert!(j["kept"].as_str().unwrap().contains("run.log"), "{j}");
    assert_eq!(std::fs::read_to_string(dir.join("run.log")).unwrap(), "the agent's log\n");
    assert_eq!(repo.rev("hybrid/t1"), tip, "the branch stays where it was");
    assert_eq!(repo.porcelain(&dir), "");
}
