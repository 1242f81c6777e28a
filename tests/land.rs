//! `git hybrid merge`: squash landing with catch-up, the checked-out target kept coherent,
//! concurrency, empty tasks and crash recovery. Every test drives the real binary.

mod common;

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use common::{assert_code, assert_ok, stderr, stdout, write_file, TestRepo};

/// Starts a task, writes `files` in its worktree and commits them there.
fn task(repo: &TestRepo, id: &str, files: &[(&str, &str)], msg: &str) -> PathBuf {
    assert_ok(&repo.hybrid(&["start", id]), &["start", id]);
    let dir = repo.task_dir(id);
    for (p, c) in files {
        write_file(&dir.join(p), c);
    }
    repo.commit_all_in(&dir, msg);
    dir
}

/// The ledger record of attempt 1, read from disk.
fn record(repo: &TestRepo, id: &str) -> serde_json::Value {
    let p = repo.root.join(".git/hybrid/ledger").join(id).join("1.json");
    serde_json::from_slice(&std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))).unwrap()
}

fn merge_json(repo: &TestRepo, args: &[&str]) -> serde_json::Value {
    let mut all = vec!["--json", "merge"];
    all.extend_from_slice(args);
    let out = repo.hybrid(&all);
    assert_ok(&out, &all);
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Commits on `main` whose message carries `Hybrid-Task: <id>`.
fn landings_of(repo: &TestRepo, id: &str) -> usize {
    let log = repo.git(&["log", "main", "--format=%H%n%(trailers:key=Hybrid-Task,valueonly)%x00", "--"]);
    log.split('\0').filter(|e| e.lines().skip(1).any(|l| l.trim() == id)).count()
}

fn trailer(repo: &TestRepo, rev: &str, key: &str) -> String {
    repo.git(&["log", "-1", &format!("--format=%(trailers:key={key},valueonly)"), rev]).trim().to_string()
}

/// The task landed exactly once on `main`, and its record names that squash commit; returns it.
fn assert_landed_once(repo: &TestRepo, id: &str, context: &str) -> String {
    assert_eq!(landings_of(repo, id), 1, "{id} {context}");
    let rec = record(repo, id);
    assert_eq!(rec["state"], "landed", "{id} {context}");
    let sha = rec["merge_sha"].as_str().unwrap().to_string();
    assert_eq!(trailer(repo, &sha, "Hybrid-Task"), id, "{context}");
    sha
}

/// Every named step of a landing whose task needs a catch-up and has a worktree, with `main`
/// checked out (fast path), in the order they run (`src/failpoint.rs`, docs/DESIGN.md).
const LANDING_STEPS: &[&str] = &[
    "land::locked",
    "land::recovered",
    "land::train_built",
    "land::ref_locked",
    "land::checked",
    "land::note_written",
    "checkout::index_flagged",
    "checkout::files_written",
    "land::checkouts_staged",
    "land::ref_moved",
    "checkout::finished",
    "land::checkouts_moved",
    "land::recorded",
    "land::note_removed",
    "sync::ref_locked",
    "sync::checkouts_moved",
    "sync::ref_moved",
    "land::cleaned",
];

fn fsck_clean(repo: &TestRepo) {
    let out = repo.git_out(&repo.root, &["fsck", "--no-progress"]);
    assert!(out.status.success(), "git fsck: {}", stderr(&out));
}

#[test]
fn lands_one_squash_commit_records_it_and_cleans_up() {
    let repo = TestRepo::new();
    let before = repo.rev("main");
    let dir = task(&repo, "t1", &[("a.txt", "a\n")], "add a");
    write_file(&dir.join("b.txt"), "b\n");
    repo.commit_all_in(&dir, "add b");
    let tip = repo.git_in(&dir, &["rev-parse", "HEAD"]);

    let r = merge_json(&repo, &["t1"]);
    assert_eq!(r["status"], "landed");
    let sha = r["merge_sha"].as_str().unwrap().to_string();
    assert_eq!(repo.rev("main"), sha);
    assert_eq!(repo.rev("main^"), before, "single parent is the old target tip");
    assert_eq!(repo.git(&["rev-list", "--parents", "-n1", "main"]).split(' ').count(), 2);
    assert_eq!(repo.rev("main^{tree}"), repo.rev(&format!("{tip}^{{tree}}")));
    let msg = repo.git(&["log", "-1", "--format=%B", "main"]);
    assert!(msg.starts_with("add a; add b\n"), "{msg}");
    assert!(msg.contains("- add a\n- add b\n"), "{msg}");
    assert_eq!(trailer(&repo, "main", "Hybrid-Task"), "t1");
    assert_eq!(trailer(&repo, "main", "Hybrid-Base"), before);
    assert_eq!(trailer(&repo, "main", "Hybrid-Tip"), tip);
    assert_eq!(trailer(&repo, "main", "Hybrid-Attempt"), "");

    let rec = record(&repo, "t1");
    assert_eq!(rec["state"], "landed");
    assert_eq!(rec["merge_sha"], sha.as_str());
    assert_eq!(rec["merge_base"], before.as_str());
    assert_eq!(rec["tip"], tip.as_str());
    assert!(rec["landed_at"].is_string());
    assert!(rec["worktree"].is_null());
    assert!(rec.get("landing").is_none());
    assert_eq!(repo.rev("refs/hybrid/tips/t1"), tip);
    assert!(!dir.exists(), "clean worktree removed");
    assert!(repo.git_out(&repo.root, &["rev-parse", "--verify", "-q", "refs/heads/hybrid/t1"]).stdout.is_empty());
    // The main checkout (main checked out) moved with the ref.
    assert_eq!(repo.read("a.txt"), "a\n");
    assert_eq!(repo.porcelain(&repo.root), "");
    fsck_clean(&repo);
    // The crash notes of the task's own refs are gone with their locks (they would pile up, one
    // set per task); the target's stays, marked free, for the next landing to reuse.
    let mut notes: Vec<String> = std::fs::read_dir(repo.root.join(".git/hybrid/locks"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".note"))
        .collect();
    notes.sort();
    assert_eq!(notes, ["index-main-refs%heads%main.note", "ref-refs%heads%main.note"]);
    for n in &notes {
        let text = std::fs::read_to_string(repo.root.join(".git/hybrid/locks").join(n)).unwrap();
        assert_eq!(text.trim(), "none", "{n}");
    }

    // A second run is a no-op that reports the recorded landing.
    let again = merge_json(&repo, &["t1"]);
    assert_eq!(again["already"], true);
    assert_eq!(again["merge_sha"], sha.as_str());
    assert_eq!(repo.rev("main"), sha);
}

#[test]
fn message_flag_and_title_and_keep() {
    let repo = TestRepo::new();
    assert_ok(&repo.hybrid(&["start", "t1", "--title", "Add the a file"]), &["start"]);
    let dir = repo.task_dir("t1");
    write_file(&dir.join("a.txt"), "a\n");
    repo.commit_all_in(&dir, "wip");
    let r = merge_json(&repo, &["t1", "--keep"]);
    assert_eq!(r["cleaned"], false);
    assert!(dir.exists());
    assert_eq!(repo.git(&["log", "-1", "--format=%s", "main"]), "Add the a file");

    let d2 = task(&repo, "t2", &[("b.txt", "b\n")], "wip 2");
    merge_json(&repo, &["t2", "-m", "Custom summary"]);
    assert_eq!(repo.git(&["log", "-1", "--format=%s", "main"]), "Custom summary");
    assert!(!d2.exists());
}

#[test]
fn target_moved_on_a_disjoint_file_catches_up_cleanly() {
    let repo = TestRepo::new();
    let dir = task(&repo, "t1", &[("task.txt", "task\n")], "task work");
    repo.write("other.txt", "main moved\n");
    let moved = repo.commit_all("main moves");

    let r = merge_json(&repo, &["t1", "--keep"]);
    assert_eq!(r["status"], "landed");
    assert_eq!(r["caught_up"], true);
    assert_eq!(repo.rev("main^"), moved);
    assert_eq!(trailer(&repo, "main", "Hybrid-Base"), moved);
    let tip = trailer(&repo, "main", "Hybrid-Tip");
    // The caught-up tip is a merge of main into the task branch, and descends from the base.
    assert_eq!(repo.rev("hybrid/t1"), tip);
    assert_eq!(repo.git(&["rev-list", "--parents", "-n1", &tip]).split(' ').count(), 3);
    assert!(repo.git_out(&repo.root, &["merge-base", "--is-ancestor", &moved, &tip]).status.success());
    assert_eq!(repo.rev("main^{tree}"), repo.rev(&format!("{tip}^{{tree}}")));
    assert_eq!(repo.read("task.txt"), "task\n");
    assert_eq!(repo.read("other.txt"), "main moved\n");
    // The task worktree moved with its branch.
    assert_eq!(std::fs::read_to_string(dir.join("other.txt")).unwrap(), "main moved\n");
    assert_eq!(repo.porcelain(&dir), "");
    assert_eq!(repo.porcelain(&repo.root), "");
    // Only the task's own commit is listed in the body.
    let msg = repo.git(&["log", "-1", "--format=%B", "main"]);
    assert!(msg.contains("- task work\n") && !msg.contains("main moves"), "{msg}");
}

#[test]
fn both_sides_edit_the_same_lines_conflict_and_change_nothing() {
    let repo = TestRepo::new();
    repo.write("f.txt", "one\ntwo\nthree\n");
    repo.commit_all("add f");
    let dir = task(&repo, "t1", &[("f.txt", "one\nTASK\nthree\n")], "task edits f");
    repo.write("f.txt", "one\nMAIN\nthree\n");
    repo.commit_all("main edits f");

    let refs = repo.refs_snapshot();
    let main_status = repo.porcelain(&repo.root);
    let task_status = repo.porcelain(&dir);
    let out = repo.hybrid(&["--json", "merge", "t1"]);
    assert_code(&out, 3);
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (&j["task"], &j["status"], &j["conflicts"]),
        (&"t1".into(), &"conflict".into(), &serde_json::json!(["f.txt"]))
    );
    // The error shape's keys too, as for every failure with --json.
    assert_eq!(j["exit_code"], 3);
    assert!(j["error"].as_str().unwrap().contains("conflicts in"), "{j}");
    assert_eq!(repo.refs_snapshot(), refs);
    assert_eq!(repo.porcelain(&repo.root), main_status);
    assert_eq!(repo.porcelain(&dir), task_status);
    assert_eq!(std::fs::read_to_string(dir.join("f.txt")).unwrap(), "one\nTASK\nthree\n");
    assert_eq!(repo.read("f.txt"), "one\nMAIN\nthree\n");
    let rec = record(&repo, "t1");
    assert_eq!(rec["state"], "conflict");
    assert_eq!(rec["conflicts"], serde_json::json!(["f.txt"]));

    // Text mode names the file too.
    let out = repo.hybrid(&["merge", "t1"]);
    assert_code(&out, 3);
    assert!(stdout(&out).contains("f.txt"), "{}", stdout(&out));
}

#[test]
fn uncommitted_edit_on_a_path_the_landing_changes_is_refused_and_preserved() {
    let repo = TestRepo::new();
    task(&repo, "t1", &[("README.md", "hello from the task\n")], "task edits readme");
    let edit = "my own edit\r\nwith odd bytes \u{1F600}\n";
    repo.write("README.md", edit);
    let refs = repo.refs_snapshot();
    let status = repo.porcelain(&repo.root);

    let out = repo.hybrid(&["merge", "t1"]);
    assert_code(&out, 3);
    assert!(stderr(&out).contains("README.md"), "{}", stderr(&out));
    assert!(stderr(&out).contains("stash"), "says how to proceed: {}", stderr(&out));
    assert_eq!(std::fs::read(repo.root.join("README.md")).unwrap(), edit.as_bytes());
    assert_eq!(repo.refs_snapshot(), refs);
    assert_eq!(repo.porcelain(&repo.root), status);
    assert!(repo.task_dir("t1").exists());
    assert!(record(&repo, "t1").get("landing").is_none());
}

#[test]
fn uncommitted_edit_elsewhere_is_carried_along_byte_for_byte() {
    let repo = TestRepo::new();
    repo.write("mine.txt", "committed\n");
    repo.commit_all("add mine");
    task(&repo, "t1", &[("a.txt", "task\n")], "task adds a");
    let edit = "uncommitted\nno newline at end";
    repo.write("mine.txt", edit);

    let r = merge_json(&repo, &["t1"]);
    assert_eq!(r["status"], "landed");
    assert_eq!(std::fs::read(repo.root.join("mine.txt")).unwrap(), edit.as_bytes());
    assert_eq!(repo.read("a.txt"), "task\n");
    assert_eq!(repo.porcelain(&repo.root), " M mine.txt");
    assert_eq!(repo.git(&["diff", "--cached", "--name-only"]), "");
    assert_eq!(repo.git(&["show", "--format=", "--name-only", "main"]), "a.txt");
}

#[test]
fn staged_changes_stay_staged_and_never_enter_the_squash() {
    let repo = TestRepo::new();
    task(&repo, "t1", &[("a.txt", "task\n")], "task adds a");
    repo.write("staged.txt", "staged by the user\n");
    repo.write("README.md", "staged edit\n");
    repo.git(&["add", "staged.txt", "README.md"]);

    merge_json(&repo, &["t1"]);
    assert_eq!(repo.git(&["show", "--format=", "--name-only", "main"]), "a.txt");
    assert_eq!(repo.git(&["diff", "--cached", "--name-only"]), "README.md\nstaged.txt");
    assert_eq!(repo.git(&["diff", "--name-only"]), "");
    assert_eq!(repo.read("staged.txt"), "staged by the user\n");
    assert_eq!(repo.git(&["show", "main:README.md"]), "hello");
}

#[test]
fn untracked_file_at_a_path_the_task_adds_is_refused_and_preserved() {
    let repo = TestRepo::new();
    task(&repo, "t1", &[("new/file.txt", "from the task\n")], "task adds a file");
    repo.write("new/file.txt", "the user's untracked file\n");
    let refs = repo.refs_snapshot();
    let out = repo.hybrid(&["merge", "t1"]);
    assert_code(&out, 3);
    assert!(stderr(&out).contains("new/file.txt"), "{}", stderr(&out));
    assert_eq!(repo.read("new/file.txt"), "the user's untracked file\n");
    assert_eq!(repo.refs_snapshot(), refs);
    assert_eq!(repo.porcelain(&repo.root), "?? new/file.txt");
}

#[test]
fn rename_on_one_side_edit_on_the_other() {
    let repo = TestRepo::new();
    let body: String = (0..40).map(|i| format!("line {i}\n")).collect();
    repo.write("old_name.txt", &body);
    repo.commit_all("add file");
    let edited = body.replace("line 20\n", "line 20 edited by the task\n");
    task(&repo, "t1", &[("old_name.txt", &edited)], "task edits the file");
    repo.git(&["mv", "old_name.txt", "new_name.txt"]);
    repo.git(&["commit", "-q", "-m", "main renames the file"]);

    merge_json(&repo, &["t1"]);
    assert_eq!(repo.read("new_name.txt"), edited);
    assert!(!repo.root.join("old_name.txt").exists());
    assert_eq!(repo.porcelain(&repo.root), "");

    // And the other way round: the task renames, the target edits.
    let repo = TestRepo::new();
    repo.write("old_name.txt", &body);
    repo.commit_all("add file");
    assert_ok(&repo.hybrid(&["start", "t2"]), &["start"]);
    let dir = repo.task_dir("t2");
    repo.git_in(&dir, &["mv", "old_name.txt", "new_name.txt"]);
    repo.git_in(&dir, &["commit", "-q", "-m", "task renames"]);
    repo.write("old_name.txt", &edited);
    repo.commit_all("main edits");
    merge_json(&repo, &["t2"]);
    assert_eq!(repo.read("new_name.txt"), edited);
    assert!(!repo.root.join("old_name.txt").exists());
    assert_eq!(repo.porcelain(&repo.root), "");
}

#[test]
fn sixteen_concurrent_landings_all_land_and_are_recorded() {
    let repo = TestRepo::new();
    let ids: Vec<String> = (0..16).map(|i| format!("c{i:02}")).collect();
    for id in &ids {
        task(&repo, id, &[(&format!("files/{id}.txt"), &format!("{id}\n"))], &format!("work {id}"));
    }
    repo.write("user-notes.txt", "not committed\n");
    let children: Vec<_> = ids
        .iter()
        .map(|id| {
            repo.hybrid_cmd(&repo.root, &["--json", "merge", id])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for (id, child) in ids.iter().zip(children) {
        let out = child.wait_with_output().unwrap();
        assert_ok(&out, &["merge", id]);
    }
    assert_eq!(repo.git(&["rev-list", "--count", "main"]), "17");
    assert_eq!(repo.git(&["rev-list", "--merges", "--count", "main"]), "0");
    for id in &ids {
        assert_landed_once(&repo, id, "");
        assert_eq!(repo.read(&format!("files/{id}.txt")), format!("{id}\n"));
    }
    assert_eq!(repo.porcelain(&repo.root), "?? user-notes.txt");
    fsck_clean(&repo);
}

#[test]
fn two_truly_conflicting_tasks_one_lands_the_other_reports_conflict() {
    let repo = TestRepo::new();
    repo.write("shared.txt", "a\nb\nc\n");
    repo.commit_all("shared");
    task(&repo, "x", &[("shared.txt", "a\nX\nc\n")], "x edits");
    task(&repo, "y", &[("shared.txt", "a\nY\nc\n")], "y edits");
    let spawn = |id: &str| {
        repo.hybrid_cmd(&repo.root, &["--json", "merge", id])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (cx, cy) = (spawn("x"), spawn("y"));
    let (ox, oy) = (cx.wait_with_output().unwrap(), cy.wait_with_output().unwrap());
    let mut codes = [ox.status.code().unwrap(), oy.status.code().unwrap()];
    codes.sort();
    assert_eq!(codes, [0, 3], "x: {} y: {}", stderr(&ox), stderr(&oy));
    let (loser, lout) = if ox.status.code() == Some(3) { ("x", &ox) } else { ("y", &oy) };
    let j: serde_json::Value = serde_json::from_slice(&lout.stdout).unwrap();
    assert_eq!(j["status"], "conflict");
    assert_eq!(j["conflicts"], serde_json::json!(["shared.txt"]));
    assert_eq!(record(&repo, loser)["state"], "conflict");
    assert_eq!(repo.git(&["rev-list", "--count", "main"]), "3");
    assert_eq!(repo.porcelain(&repo.root), "");
}

#[test]
fn already_merged_branch_lands_as_empty() {
    let repo = TestRepo::new();
    let dir = task(&repo, "t1", &[("a.txt", "same change\n")], "task adds a");
    // The same change reaches main another way.
    repo.write("a.txt", "same change\n");
    let main = repo.commit_all("someone else adds a");

    let r = merge_json(&repo, &["t1"]);
    assert_eq!(r["status"], "empty");
    assert!(r["merge_sha"].is_null());
    assert_eq!(repo.rev("main"), main, "no commit");
    let rec = record(&repo, "t1");
    assert_eq!(rec["state"], "empty");
    assert!(rec["merge_sha"].is_null());
    assert!(!dir.exists());
    let out = repo.hybrid(&["merge", "t1"]);
    assert_ok(&out, &["merge"]);
    assert!(stdout(&out).contains("empty"), "{}", stdout(&out));

    // A task with no commits at all is empty too.
    assert_ok(&repo.hybrid(&["start", "t2"]), &["start"]);
    assert_eq!(merge_json(&repo, &["t2"])["status"], "empty");
    assert_eq!(repo.rev("main"), main);
}

#[test]
fn adopts_a_branch_without_a_ledger_record() {
    let repo = TestRepo::new();
    repo.git(&["branch", "hybrid/remote1"]);
    let wt = repo.base().join("elsewhere");
    repo.git(&["worktree", "add", "-q", wt.to_str().unwrap(), "hybrid/remote1"]);
    write_file(&wt.join("r.txt"), "remote\n");
    repo.commit_all_in(&wt, "remote agent work");
    repo.git(&["worktree", "remove", wt.to_str().unwrap()]);

    let r = merge_json(&repo, &["remote1"]);
    assert_eq!(r["status"], "landed");
    assert_eq!(repo.read("r.txt"), "remote\n");
    assert_eq!(record(&repo, "remote1")["state"], "landed");
    assert_eq!(trailer(&repo, "main", "Hybrid-Task"), "remote1");
}

#[test]
fn bad_input_exits_2_and_changes_nothing() {
    let repo = TestRepo::new();
    let refs = repo.refs_snapshot();
    assert_code(&repo.hybrid(&["merge", "nope"]), 2);
    assert_code(&repo.hybrid(&["merge", "../x"]), 2);
    task(&repo, "t1", &[("a.txt", "a\n")], "a");
    let refs2 = repo.refs_snapshot();
    assert_code(&repo.hybrid(&["merge", "t1", "--target", "no-such-branch"]), 2);
    assert_code(&repo.hybrid(&["merge", "t1", "--target", "bad..name"]), 2);
    assert_eq!(repo.refs_snapshot(), refs2);
    assert_ne!(refs, refs2);
}

#[test]
fn attempt_two_gets_its_own_trailer() {
    let repo = TestRepo::new();
    assert_ok(&repo.hybrid(&["start", "t1", "--attempt", "2"]), &["start"]);
    let dir = repo.base().join("repo.hybrid").join("t1@2");
    write_file(&dir.join("a.txt"), "a\n");
    repo.commit_all_in(&dir, "attempt two");
    let r = merge_json(&repo, &["t1", "--attempt", "2"]);
    assert_eq!(r["status"], "landed");
    assert_eq!(trailer(&repo, "main", "Hybrid-Attempt"), "2");
    assert!(repo.git_out(&repo.root, &["rev-parse", "--verify", "refs/hybrid/tips/t1@2"]).status.success());
}

#[test]
fn a_held_index_lock_in_the_main_checkout_refuses_without_moving() {
    let repo = TestRepo::new();
    task(&repo, "t1", &[("a.txt", "a\n")], "a");
    std::fs::write(repo.root.join(".git/index.lock"), "").unwrap();
    let refs = repo.refs_snapshot();
    // The landing waits for the lock (a minute by default; shortened here), then reports busy.
    let out = repo.hybrid_cmd(&repo.root, &["merge", "t1"]).env("HYBRID_INDEX_LOCK_WAIT_MS", "300").output().unwrap();
    assert_code(&out, 4);
    assert!(stderr(&out).contains("index.lock"), "{}", stderr(&out));
    assert_eq!(repo.refs_snapshot(), refs);
    std::fs::remove_file(repo.root.join(".git/index.lock")).unwrap();
    merge_json(&repo, &["t1"]);
    assert_eq!(repo.porcelain(&repo.root), "");
}

#[test]
fn target_not_checked_out_anywhere_lands_without_touching_files() {
    let repo = TestRepo::new();
    task(&repo, "t1", &[("a.txt", "a\n")], "a");
    repo.git(&["checkout", "-q", "-b", "side"]);
    repo.write("scratch.txt", "x\n");
    merge_json(&repo, &["t1"]);
    assert!(!repo.root.join("a.txt").exists());
    assert_eq!(repo.git(&["show", "main:a.txt"]), "a");
    assert_eq!(repo.porcelain(&repo.root), "?? scratch.txt");
}

#[test]
fn kill_9_at_every_step_then_rerun_lands_exactly_once() {
    let repo = TestRepo::new();
    for (i, step) in LANDING_STEPS.iter().enumerate() {
        let id = format!("k{i}");
        task(&repo, &id, &[(&format!("k/{id}.txt"), &format!("{id}\n"))], &format!("work {id}"));
        repo.write(&format!("moved/{i}.txt"), "moved\n"); // so the task needs a catch-up
        repo.commit_all(&format!("main moves {i}"));
        repo.kill_at(&["merge", &id], step);
        let out = repo.hybrid(&["--json", "merge", &id]);
        assert_ok(&out, &["merge", &id, &format!("(killed at {step})")]);
        assert_landed_once(&repo, &id, &format!("(killed at {step})"));
        assert_eq!(repo.porcelain(&repo.root), "", "{id} killed at {step}: main checkout coherent");
        assert!(!repo.task_dir(&id).exists(), "{id} killed at {step}: worktree cleaned on re-run");
        assert!(!repo.root.join(".git/hybrid/landing/main.json").exists(), "killed at {step}");
        assert!(!repo.root.join(".git/refs/heads/main.lock").exists(), "killed at {step}");
    }
    fsck_clean(&repo);
}

#[test]
fn a_checkout_left_already_moved_by_a_killed_landing_is_finished() {
    let repo = TestRepo::new();
    task(&repo, "t1", &[("a.txt", "a\n"), ("README.md", "changed by the task\n")], "task");
    repo.write("mine.txt", "user's untracked file\n");
    // What a landing killed between moving the checkout and moving the ref leaves behind.
    repo.git(&["read-tree", "-m", "-u", "main", "hybrid/t1"]);
    assert_eq!(repo.git(&["diff", "--cached", "--name-only"]), "README.md\na.txt");
    let r = merge_json(&repo, &["t1"]);
    assert_eq!(r["status"], "landed");
    assert_eq!(repo.porcelain(&repo.root), "?? mine.txt");
    assert_eq!(repo.read("README.md"), "changed by the task\n");
}

#[test]
fn a_rewritten_but_identical_file_on_a_changed_path_does_not_block() {
    let repo = TestRepo::new();
    task(&repo, "t1", &[("README.md", "task\n")], "task edits readme");
    repo.write("README.md", "hello\n"); // same bytes, new mtime: stale stat data in the index
    let old = std::time::UNIX_EPOCH + Duration::from_secs(1_000_000_000);
    std::fs::File::options().write(true).open(repo.root.join("README.md")).unwrap().set_modified(old).unwrap();
    merge_json(&repo, &["t1"]);
    assert_eq!(repo.read("README.md"), "task\n");
    assert_eq!(repo.porcelain(&repo.root), "");
}

#[test]
fn several_tasks_in_one_process_each_land_as_their_own_squash() {
    let repo = TestRepo::new();
    repo.write("shared.txt", "a\nb\nc\n");
    repo.commit_all("shared");
    task(&repo, "m1", &[("m1.txt", "1\n")], "m1 work");
    task(&repo, "m2", &[("shared.txt", "a\nTASK\nc\n")], "m2 edits shared");
    task(&repo, "m3", &[("dir/m3.txt", "3\n")], "m3 work");
    repo.write("shared.txt", "a\nMAIN\nc\n");
    repo.commit_all("main edits shared");
    repo.write("user.txt", "uncommitted\n");

    // Bad input anywhere in the list changes nothing.
    let before = repo.refs_snapshot();
    for args in [&["merge", "m1", "nosuch"][..], &["merge", "m1", "m3", "-m", "one message"], &["merge", "m1", "m1"]] {
        let out = repo.hybrid(args);
        assert_code(&out, 2);
        assert_eq!(repo.refs_snapshot(), before, "{args:?}");
    }

    let out = repo.hybrid(&["--json", "merge", "m1", "m2", "m3"]);
    assert_code(&out, 3);
    let docs: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(docs.len(), 3);
    assert_eq!(docs[0]["task"], "m1");
    assert_eq!(docs[0]["status"], "landed");
    assert_eq!(docs[1]["task"], "m2");
    assert_eq!(docs[1]["status"], "conflict");
    assert_eq!(docs[1]["conflicts"], serde_json::json!(["shared.txt"]));
    assert_eq!(docs[2]["status"], "landed");
    assert_eq!(landings_of(&repo, "m1"), 1);
    assert_eq!(landings_of(&repo, "m2"), 0);
    assert_eq!(landings_of(&repo, "m3"), 1);
    assert_eq!(repo.rev("main"), docs[2]["merge_sha"].as_str().unwrap());
    assert_eq!(repo.rev("main^"), docs[0]["merge_sha"].as_str().unwrap(), "one squash commit each");
    assert_eq!(record(&repo, "m2")["state"], "conflict");
    assert_eq!(repo.read("dir/m3.txt"), "3\n");
    assert_eq!(repo.porcelain(&repo.root), "?? user.txt");
    fsck_clean(&repo);

    // One task keeps the single-object JSON.
    let r = merge_json(&repo, &["m1"]);
    assert_eq!(r["status"], "landed");
    assert_eq!(r["already"], true);
}

#[test]
fn commit_list_after_an_earlier_sync_and_a_moved_target_names_only_the_tasks_commits() {
    let repo = TestRepo::new();
    let dir = task(&repo, "t1", &[("one.txt", "1\n")], "task one");
    repo.write("m1.txt", "m1\n");
    repo.commit_all("main one");
    assert_ok(&repo.hybrid(&["sync", "t1"]), &["sync", "t1"]);
    write_file(&dir.join("two.txt"), "2\n");
    repo.commit_all_in(&dir, "task two");
    for i in 2..5 {
        repo.write(&format!("m{i}.txt"), "m\n");
        repo.commit_all(&format!("main {i}"));
    }
    merge_json(&repo, &["t1"]);
    let msg = repo.git(&["log", "-1", "--format=%B", "main"]);
    assert!(msg.contains("Commits:\n- task one\n- task two\n\nHybrid-Task"), "{msg}");
    assert!(!msg.contains("main ") && !msg.contains("Merge"), "{msg}");
}

#[test]
fn a_train_lands_each_task_as_its_own_squash_and_moves_the_target_once() {
    let repo = TestRepo::new();
    let ids: Vec<String> = (0..3).map(|i| format!("r{i}")).collect();
    for id in &ids {
        task(&repo, id, &[(&format!("{id}.txt"), &format!("{id}\n"))], &format!("work {id}"));
    }
    let before = repo.rev("main");
    let reflog_before = repo.git(&["reflog", "show", "--format=%H", "main"]).lines().count();
    let out = repo.hybrid(&["--json", "merge", "r0", "r1", "r2"]);
    assert_ok(&out, &["merge", "r0", "r1", "r2"]);
    let docs: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    // Each squash's parent is the one before it, the first's is the old tip.
    assert_eq!(docs[0]["base"], before.as_str());
    assert_eq!(docs[1]["base"], docs[0]["merge_sha"]);
    assert_eq!(docs[2]["base"], docs[1]["merge_sha"]);
    assert_eq!(repo.rev("main"), docs[2]["merge_sha"].as_str().unwrap());
    for (i, id) in ids.iter().enumerate() {
        let rev = format!("main~{}", 2 - i);
        assert_eq!(trailer(&repo, &rev, "Hybrid-Task"), *id);
        assert_eq!(repo.git(&["log", "-1", "--format=%p", &rev]).split_whitespace().count(), 1, "{id}: one parent");
        assert_eq!(record(&repo, id)["merge_sha"], docs[i]["merge_sha"]);
        // Hybrid-Tip is reachable and contains the squash's parent (the caught-up tip).
        let tip = trailer(&repo, &rev, "Hybrid-Tip");
        assert_eq!(repo.rev(&format!("refs/hybrid/tips/{id}")), tip);
        repo.git(&["merge-base", "--is-ancestor", &format!("{rev}^"), &tip]);
        assert_eq!(repo.git(&["diff", &tip, &rev]), "", "{id}: squash tree is the caught-up tip's");
    }
    let reflog_after = repo.git(&["reflog", "show", "--format=%H", "main"]).lines().count();
    assert_eq!(reflog_after, reflog_before + 1, "the target moved once for the whole train");
    assert_eq!(repo.porcelain(&repo.root), "");
    // Each squash of the train passes the CI check like any other landing.
    let out = repo.hybrid(&["verify", "--all"]);
    assert_ok(&out, &["verify", "--all"]);
    assert!(stdout(&out).contains("3 checked, 0 failed"), "{}", stdout(&out));
    fsck_clean(&repo);
}

#[test]
fn a_local_change_refuses_only_the_task_of_the_train_that_changes_its_path() {
    let repo = TestRepo::new();
    repo.write("b.txt", "b\n");
    repo.commit_all("b");
    task(&repo, "a1", &[("a.txt", "a\n")], "a1 adds a");
    task(&repo, "b1", &[("b.txt", "changed by b1\n")], "b1 edits b");
    task(&repo, "c1", &[("c.txt", "c\n")], "c1 adds c");
    repo.write("b.txt", "the user's uncommitted edit\n");
    let out = repo.hybrid(&["--json", "merge", "a1", "b1", "c1"]);
    assert_code(&out, 3);
    let docs: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(docs[0]["status"], "landed");
    assert_eq!(docs[1]["status"], "error");
    assert_eq!(docs[1]["paths"], serde_json::json!(["b.txt"]));
    assert_eq!(docs[2]["status"], "landed");
    assert_eq!(docs[2]["base"], docs[0]["merge_sha"], "c1 chained on a1 without b1");
    assert_eq!(repo.read("b.txt"), "the user's uncommitted edit\n");
    assert_eq!(landings_of(&repo, "b1"), 0);
    assert_eq!(repo.porcelain(&repo.root), " M b.txt");
    assert!(repo.task_dir("b1").exists(), "the refused task keeps its worktree");
    assert_eq!(record(&repo, "b1")["state"], "ready");
}

#[test]
fn a_train_killed_after_the_target_moved_is_recorded_by_the_next_landing() {
    let repo = TestRepo::new();
    for id in ["q1", "q2", "q3", "q4"] {
        task(&repo, id, &[(&format!("{id}.txt"), &format!("{id}\n"))], &format!("work {id}"));
    }
    let before = repo.rev("main");
    repo.kill_at(&["merge", "q1", "q2", "q3"], "land::ref_moved");
    assert_ne!(repo.rev("main"), before, "killed right after moving the target");
    let note = repo.root.join(".git/hybrid/landing/main.json");
    assert!(note.exists(), "the killed train left its note");
    assert_ne!(record(&repo, "q1")["state"], "landed", "killed before recording");

    // Any landing on main finishes the killed train's records first.
    let r = merge_json(&repo, &["q4"]);
    assert_eq!(r["status"], "landed");
    assert!(!note.exists());
    for (i, id) in ["q1", "q2", "q3"].iter().enumerate() {
        let rec = record(&repo, id);
        assert_eq!(rec["state"], "landed", "{id}");
        let sha = repo.rev(&format!("main~{}", 3 - i));
        assert_eq!(rec["merge_sha"], sha.as_str(), "{id}");
        assert_eq!(rec["merge_base"], repo.rev(&format!("{sha}^")).as_str(), "{id}");
        assert_eq!(rec["tip"], trailer(&repo, &sha, "Hybrid-Tip").as_str(), "{id}");
        assert_eq!(repo.rev(&format!("refs/hybrid/tips/{id}")), trailer(&repo, &sha, "Hybrid-Tip"));
        assert_eq!(landings_of(&repo, id), 1);
    }
    // Re-running the killed command lands nothing twice and finishes the cleanup.
    let out = repo.hybrid(&["--json", "merge", "q1", "q2", "q3"]);
    assert_ok(&out, &["merge", "q1", "q2", "q3"]);
    let docs: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert!(docs.iter().all(|d| d["already"] == true), "{docs:?}");
    for id in ["q1", "q2", "q3"] {
        assert_eq!(landings_of(&repo, id), 1);
        assert!(!repo.task_dir(id).exists(), "{id}: worktree cleaned on re-run");
    }
    assert_eq!(repo.porcelain(&repo.root), "");
    fsck_clean(&repo);
}

#[test]
fn a_long_train_writes_its_objects_as_one_pack() {
    let repo = TestRepo::new();
    let ids: Vec<String> = (0..16).map(|i| format!("p{i:02}")).collect();
    for id in &ids {
        task(&repo, id, &[(&format!("p/{id}.txt"), &format!("{id}\n"))], &format!("work {id}"));
    }
    repo.write("main.txt", "main moved\n");
    repo.commit_all("main moves: every task needs a catch-up");
    let counts = |repo: &TestRepo| {
        let v = repo.git(&["count-objects", "-v"]);
        let get = |k: &str| v.lines().find_map(|l| l.strip_prefix(k)).unwrap().trim().parse::<u64>().unwrap();
        (get("count:"), get("packs:"))
    };
    let (loose, packs) = counts(&repo);
    let mut args = vec!["merge"];
    args.extend(ids.iter().map(String::as_str));
    assert_ok(&repo.hybrid(&args), &args);
    assert_eq!(counts(&repo), (loose, packs + 1), "no loose objects, one new pack");
    for (i, id) in ids.iter().enumerate() {
        assert_eq!(trailer(&repo, &format!("main~{}", 15 - i), "Hybrid-Task"), *id);
        assert_eq!(record(&repo, id)["state"], "landed");
    }
    assert_eq!(repo.porcelain(&repo.root), "");
    let out = repo.git_out(&repo.root, &["fsck", "--strict", "--no-progress"]);
    assert!(out.status.success(), "git fsck: {}", stderr(&out));
}

#[test]
fn concurrent_trains_and_single_landings_all_land_once() {
    let repo = TestRepo::new();
    let ids: Vec<String> = (0..10).map(|i| format!("w{i}")).collect();
    for id in &ids {
        task(&repo, id, &[(&format!("w/{id}.txt"), &format!("{id}\n"))], &format!("work {id}"));
    }
    // Two trains, a single landing and a two-task train race for main.
    let groups: [&[&str]; 4] = [&["w0", "w1", "w2", "w3"], &["w4", "w5", "w6"], &["w7"], &["w8", "w9"]];
    let children: Vec<_> = groups
        .iter()
        .map(|g| {
            let mut args = vec!["--json", "merge"];
            args.extend_from_slice(g);
            repo.hybrid_cmd(&repo.root, &args).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap()
        })
        .collect();
    for (g, child) in groups.iter().zip(children) {
        let out = child.wait_with_output().unwrap();
        assert_ok(&out, g);
    }
    assert_eq!(repo.git(&["rev-list", "--count", "main"]), "11");
    for id in &ids {
        assert_landed_once(&repo, id, "");
        assert_eq!(repo.read(&format!("w/{id}.txt")), format!("{id}\n"));
    }
    assert_eq!(repo.porcelain(&repo.root), "");
    assert!(!repo.root.join(".git/hybrid/landing/main.json").exists());
    fsck_clean(&repo);
}

#[test]
fn a_train_killed_at_every_step_then_rerun_lands_each_task_exactly_once() {
    let repo = TestRepo::new();
    // The steps of one landing, plus the second car's record, catch-up and cleanup.
    let steps = LANDING_STEPS.iter().copied().chain(["land::recorded@2", "sync::ref_moved@2", "land::cleaned@2"]);
    for (r, step) in steps.enumerate() {
        let ids: Vec<String> = (0..3).map(|i| format!("k{r}x{i}")).collect();
        for id in &ids {
            task(&repo, id, &[(&format!("k/{id}.txt"), &format!("{id}\n"))], &format!("work {id}"));
        }
        repo.write(&format!("moved/{r}.txt"), "moved\n");
        repo.commit_all(&format!("main moves {r}"));
        let mut args = vec!["merge"];
        args.extend(ids.iter().map(String::as_str));
        repo.kill_at(&args, step);
        let out = repo.hybrid(&args);
        assert_ok(&out, &[&format!("round {r}, killed at {step}")]);
        for id in &ids {
            let sha = assert_landed_once(&repo, id, &format!("(killed at {step})"));
            assert_eq!(record(&repo, id)["merge_base"], repo.rev(&format!("{sha}^")).as_str(), "{id}");
            assert!(!repo.task_dir(id).exists(), "{id}: worktree cleaned on re-run");
        }
        assert_eq!(repo.porcelain(&repo.root), "", "round {r} (killed at {step}): checkout coherent");
        assert!(!repo.root.join(".git/hybrid/landing/main.json").exists());
        assert!(!repo.root.join(".git/refs/heads/main.lock").exists(), "killed at {step}");
    }
    fsck_clean(&repo);
}

#[test]
fn a_task_whose_change_an_earlier_car_already_made_lands_as_empty() {
    let repo = TestRepo::new();
    task(&repo, "e1", &[("same.txt", "identical\n")], "e1 adds same.txt");
    task(&repo, "e2", &[("same.txt", "identical\n")], "e2 adds the same file");
    task(&repo, "e3", &[("e3.txt", "3\n")], "e3 work");
    let out = repo.hybrid(&["--json", "merge", "e1", "e2", "e3"]);
    assert_ok(&out, &["merge", "e1", "e2", "e3"]);
    let docs: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(docs[0]["status"], "landed");
    assert_eq!(docs[1]["status"], "empty");
    assert!(docs[1]["merge_sha"].is_null());
    assert_eq!(docs[1]["base"], docs[0]["merge_sha"], "empty on top of e1's squash");
    assert_eq!(record(&repo, "e2")["state"], "empty");
    assert_eq!(docs[2]["base"], docs[0]["merge_sha"]);
    assert_eq!(repo.git(&["rev-list", "--count", "main"]), "3");
    assert_eq!(landings_of(&repo, "e2"), 0);
    assert_eq!(repo.porcelain(&repo.root), "");
}

#[test]
fn a_dirty_task_worktree_does_not_stop_its_landing_and_keeps_its_branch() {
    let repo = TestRepo::new();
    let dir = task(&repo, "d1", &[("d1.txt", "committed\n")], "d1 work");
    let tip = repo.rev("hybrid/d1");
    write_file(&dir.join("scratch.txt"), "the agent's unfinished, uncommitted work\n");
    repo.write("main.txt", "main moved\n");
    repo.commit_all("main moves: d1 needs a catch-up");
    let r = merge_json(&repo, &["d1"]);
    assert_eq!(r["status"], "landed");
    assert_eq!(r["cleaned"], false);
    let kept = r["kept"].as_str().unwrap();
    assert!(kept.contains("uncommitted") && kept.contains("scratch.txt"), "{kept}");
    // Nothing in the task worktree moved: its branch, its files, the uncommitted file.
    assert_eq!(repo.rev("hybrid/d1"), tip);
    assert!(!dir.join("main.txt").exists());
    assert_eq!(std::fs::read_to_string(dir.join("scratch.txt")).unwrap(), "the agent's unfinished, uncommitted work\n");
    // What landed is the committed work; the caught-up tip stays reachable.
    assert_eq!(repo.read("d1.txt"), "committed\n");
    assert_eq!(repo.rev("refs/hybrid/tips/d1"), r["tip"].as_str().unwrap());
    assert_eq!(landings_of(&repo, "d1"), 1);
    // Landing it again reports the landing and still keeps the dirty worktree.
    let again = merge_json(&repo, &["d1"]);
    assert_eq!(again["already"], true);
    assert!(dir.join("scratch.txt").exists());
    fsck_clean(&repo);
}

#[test]
fn a_landing_note_that_is_not_ours_never_blocks_landings() {
    let repo = TestRepo::new();
    task(&repo, "n1", &[("n1.txt", "1\n")], "n1 work");
    task(&repo, "n2", &[("n2.txt", "2\n")], "n2 work");
    let note = repo.root.join(".git/hybrid/landing/main.json");
    std::fs::create_dir_all(note.parent().unwrap()).unwrap();
    // Unparsable, then an end that does not descend from its start.
    std::fs::write(&note, "{ not json").unwrap();
    assert_eq!(merge_json(&repo, &["n1"])["status"], "landed");
    assert!(!note.exists());
    let unrelated = repo.rev("hybrid/n2");
    let main = repo.rev("main");
    std::fs::write(&note, format!(r#"{{"target":"main","start":"{unrelated}","end":"{main}"}}"#)).unwrap();
    let out = repo.hybrid(&["--json", "merge", "n2"]);
    assert_ok(&out, &["merge", "n2"]);
    assert!(stderr(&out).contains("does not descend"), "{}", stderr(&out));
    assert!(!note.exists());
    assert_landed_once(&repo, "n2", "");
}

/// A kept task's catch-up moves its clean worktree in process (no `git read-tree`), also when
/// ignored files are there; a staged change or an untracked file anywhere keeps it where it is.
#[test]
fn a_kept_clean_worktree_is_caught_up_on_the_fast_path_and_a_dirty_one_is_not() {
    for (case, dirty) in
        [("clean", None), ("ignored", None), ("staged", Some("README.md")), ("untracked", Some("new.txt"))]
    {
        let repo = TestRepo::new();
        repo.write(".gitignore", "build/\n");
        repo.commit_all("ignore build/");
        let dir = task(&repo, "k1", &[("k1.txt", "work\n")], "k1 work");
        match case {
            "ignored" => write_file(&dir.join("build/out.bin"), "artefact\n"),
            "staged" => {
                write_file(&dir.join("README.md"), "staged edit\n");
                repo.git_in(&dir, &["add", "README.md"]);
            }
            "untracked" => write_file(&dir.join("new.txt"), "scratch\n"),
            _ => {}
        }
        repo.write("main.txt", "main moved\n");
        repo.commit_all("main moves: k1 needs a catch-up");
        let out = repo
            .hybrid_cmd(&repo.root, &["--json", "merge", "--keep", "k1"])
            .env("HYBRID_DEBUG_CHECKOUT", "1")
            .output()
            .unwrap();
        assert_ok(&out, &["merge --keep", case]);
        let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(r["status"], "landed", "{case}");
        match dirty {
            None => {
                let err = stderr(&out);
                assert!(!err.contains("read-tree") && !err.contains("git status"), "{case}: {err}");
                assert_eq!(std::fs::read_to_string(dir.join("main.txt")).unwrap(), "main moved\n", "{case}");
                assert_eq!(repo.porcelain(&dir), "", "{case}");
                assert_eq!(repo.git_in(&dir, &["rev-parse", "HEAD"]), repo.rev("hybrid/k1"), "{case}");
            }
            Some(path) => {
                let kept = r["kept"].as_str().unwrap_or_default();
                assert!(kept.contains(path), "{case}: {kept}");
                assert!(!dir.join("main.txt").exists(), "{case}: not caught up");
            }
        }
        if case == "ignored" {
            assert_eq!(std::fs::read_to_string(dir.join("build/out.bin")).unwrap(), "artefact\n");
        }
    }
}
