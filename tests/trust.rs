//! State an agent can write is untrusted input: ledger records, the paths they name, a planted
//! `hybrid.toml`. Every test plays the hostile agent (or the careful user) against the real
//! binary in a hermetic repository.

mod common;

use std::path::{Path, PathBuf};

use common::{assert_code, assert_ok, stderr, stdout, write_file, TestRepo};
use serde_json::Value;

fn record_path(r: &TestRepo, id: &str, attempt: u32) -> PathBuf {
    r.root.join(format!(".git/hybrid/ledger/{id}/{attempt}.json"))
}

fn record(r: &TestRepo, id: &str) -> Value {
    serde_json::from_slice(&std::fs::read(record_path(r, id, 1)).unwrap()).unwrap()
}

fn write_record(r: &TestRepo, id: &str, attempt: u32, rec: &Value) {
    let p = record_path(r, id, attempt);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, serde_json::to_vec_pretty(rec).unwrap()).unwrap();
}

/// Starts a task and commits one file in its worktree.
fn task_with_commit(r: &TestRepo, id: &str) -> PathBuf {
    r.hybrid_ok(&["start", id]);
    let dir = r.task_dir(id);
    write_file(&dir.join(format!("{id}.txt")), &format!("{id}\n"));
    r.commit_all_in(&dir, id);
    dir
}

fn branch_exists(r: &TestRepo, branch: &str) -> bool {
    r.git_out(&r.root, &["rev-parse", "-q", "--verify", &format!("refs/heads/{branch}")]).status.success()
}

/// Another project of the user's, outside anything git-hybrid made.
fn victim_folder(r: &TestRepo) -> PathBuf {
    let victim = r.base().join("other-project");
    write_file(&victim.join("precious.txt"), "the user's own work\n");
    victim
}

fn assert_corrupt_named(out: &std::process::Output, file: &Path) {
    assert_code(out, 2);
    let err = stderr(out);
    assert!(err.contains(&file.display().to_string()), "the corrupt file is not named: {err}");
}

#[test]
fn a_forged_worktree_path_is_never_removed_by_merge() {
    let r = TestRepo::new();
    let wt = task_with_commit(&r, "t1");
    // The agent detaches its worktree and points its record at another folder of the user's.
    r.git_in(&wt, &["checkout", "-q", "--detach"]);
    let victim = victim_folder(&r);
    let mut rec = record(&r, "t1");
    rec["worktree"] = victim.display().to_string().into();
    write_record(&r, "t1", 1, &rec);

    let out = r.hybrid(&["merge", "t1"]);
    assert_ok(&out, &["merge", "t1"]);
    assert!(victim.join("precious.txt").exists(), "merge removed a folder named only by the ledger");
    let text = format!("{}{}", stdout(&out), stderr(&out));
    assert!(text.contains("does not list") && text.contains(&victim.display().to_string()), "{text}");
    assert!(wt.exists(), "the detached worktree is not the branch's worktree either: kept");
}

#[test]
fn a_forged_worktree_path_is_never_removed_by_clean() {
    let r = TestRepo::new();
    task_with_commit(&r, "t1");
    r.hybrid_ok(&["merge", "--keep", "t1"]);
    let victim = victim_folder(&r);
    let mut rec = record(&r, "t1");
    rec["worktree"] = victim.display().to_string().into();
    write_record(&r, "t1", 1, &rec);

    let out = r.hybrid(&["clean", "t1", "--force"]);
    assert!(victim.join("precious.txt").exists(), "clean --force removed a folder named only by the ledger");
    assert!(stdout(&out).contains("does not list"), "{}", stdout(&out));
    // A path that git lists for the branch but that lies outside the worktree root is kept too.
    let outside = r.base().join("outside-root");
    r.git_in(&r.task_dir("t1"), &["checkout", "-q", "--detach"]);
    r.git(&["worktree", "add", "-q", outside.to_str().unwrap(), "hybrid/t1"]);
    rec["worktree"] = outside.display().to_string().into();
    write_record(&r, "t1", 1, &rec);
    let out = r.hybrid(&["clean", "t1", "--force"]);
    assert!(outside.join("t1.txt").exists(), "clean removed a worktree outside the worktree root");
    assert!(stdout(&out).contains("not under the worktree root"), "{}", stdout(&out));
}

#[test]
fn a_record_naming_another_task_is_corrupt_and_nothing_is_removed() {
    let r = TestRepo::new();
    task_with_commit(&r, "t1");
    let t2 = task_with_commit(&r, "t2");
    r.hybrid_ok(&["merge", "--keep", "t2"]);
    // t1's record now holds t2's landed record.
    let t2_rec = std::fs::read(record_path(&r, "t2", 1)).unwrap();
    std::fs::write(record_path(&r, "t1", 1), &t2_rec).unwrap();

    let out = r.hybrid(&["merge", "t1"]);
    assert_corrupt_named(&out, &record_path(&r, "t1", 1));
    assert!(!stdout(&out).contains("already"), "{}", stdout(&out));
    assert!(t2.exists() && branch_exists(&r, "hybrid/t2"), "t2's kept worktree or branch was removed");

    // A record that does not parse is corrupt too (exit 2, not 1), for every reader.
    std::fs::write(record_path(&r, "t1", 1), "{ not json").unwrap();
    assert_corrupt_named(&r.hybrid(&["status"]), &record_path(&r, "t1", 1));
    assert_corrupt_named(&r.hybrid(&["merge", "t1"]), &record_path(&r, "t1", 1));
}

#[test]
fn a_forged_landed_record_is_not_believed() {
    let r = TestRepo::new();
    r.write(
        "hybrid.toml",
        "[agent]\ncommand = [\"builtin:script\", \"agent.sh\"]\n\n[[task]]\nid = \"victim\"\nprompt = \"write v\"\n",
    );
    r.write("agent.sh", "#!/bin/sh\necho v > v.txt\ngit add -A && git commit -q -m victim\n");
    let unrelated = r.commit_all("plan");
    // The forged record: landed as an unrelated commit on main.
    let forged = serde_json::json!({
        "id": "victim", "attempt": 1, "state": "landed", "branch": "hybrid/victim", "worktree": null,
        "base": unrelated, "target": "main", "title": null, "merge_sha": unrelated, "merge_base": null,
        "tip": null, "landed_at": "2026-01-01T00:00:00Z", "created": "2026-01-01T00:00:00Z",
        "updated": "2026-01-01T00:00:00Z", "run_dir": null, "agent": null, "failure": null, "labels": null
    });
    write_record(&r, "victim", 1, &forged);
    let out = r.hybrid(&["dispatch"]);
    assert_corrupt_named(&out, &record_path(&r, "victim", 1));
    assert!(!stdout(&out).contains("landed"), "dispatch believed the forged record: {}", stdout(&out));
    std::fs::remove_dir_all(record_path(&r, "victim", 1).parent().unwrap()).unwrap();

    // A task with unlanded commits whose record claims it landed: clean removes nothing.
    let wt = task_with_commit(&r, "t1");
    let mut rec = record(&r, "t1");
    rec["state"] = "landed".into();
    rec["merge_sha"] = unrelated.clone().into();
    rec["tip"] = r.rev("hybrid/t1").into();
    write_record(&r, "t1", 1, &rec);
    let out = r.hybrid(&["clean", "--merged"]);
    assert_corrupt_named(&out, &record_path(&r, "t1", 1));
    assert!(wt.join("t1.txt").exists() && branch_exists(&r, "hybrid/t1"), "clean removed unlanded work");
    // merge does not report it "already landed"; it refuses the same way.
    assert_corrupt_named(&r.hybrid(&["merge", "t1"]), &record_path(&r, "t1", 1));

    // A forged "empty" whose tip's work is not on main is not believed either.
    rec["state"] = "empty".into();
    rec["merge_sha"] = Value::Null;
    rec["merge_base"] = unrelated.into();
    write_record(&r, "t1", 1, &rec);
    assert_corrupt_named(&r.hybrid(&["clean", "--merged"]), &record_path(&r, "t1", 1));
    assert!(branch_exists(&r, "hybrid/t1"));
}

#[test]
fn a_genuine_landing_is_still_believed_after_main_moves_on() {
    let r = TestRepo::new();
    task_with_commit(&r, "t1");
    r.hybrid_ok(&["merge", "--keep", "t1"]);
    r.write("later.txt", "later\n");
    r.commit_all("later work on main");
    let out = r.hybrid(&["clean", "--merged"]);
    assert_ok(&out, &["clean", "--merged"]);
    assert!(!branch_exists(&r, "hybrid/t1"));
    assert_eq!(record(&r, "t1")["state"], "landed");
}

#[test]
fn clean_never_deletes_a_branch_a_checkout_has_out() {
    let r = TestRepo::new();
    task_with_commit(&r, "t1");
    r.hybrid_ok(&["merge", "--keep", "t1"]);
    r.git(&["worktree", "remove", r.task_dir("t1").to_str().unwrap()]);
    r.git(&["checkout", "-q", "hybrid/t1"]);

    let out = r.hybrid(&["clean", "--merged"]);
    assert!(branch_exists(&r, "hybrid/t1"), "clean deleted the branch the main checkout has out");
    assert!(r.git_out(&r.root, &["rev-parse", "-q", "--verify", "HEAD"]).status.success(), "HEAD is unborn");
    assert!(stdout(&out).contains("checked out in"), "{}", stdout(&out));
}

#[test]
fn hybrid_toml_must_be_a_small_regular_file() {
    let r = TestRepo::new();
    // A huge (but valid) file is refused, not read without bound.
    let huge = format!("# padding\n{}", "#".repeat(2 << 20));
    std::fs::write(r.root.join("hybrid.toml"), huge).unwrap();
    let out = r.hybrid(&["status"]);
    assert_code(&out, 2);
    assert!(stderr(&out).contains("hybrid.toml") && stderr(&out).contains("larger than"), "{}", stderr(&out));

    // A symlink to a device (as a landed task could plant).
    std::fs::remove_file(r.root.join("hybrid.toml")).unwrap();
    std::os::unix::fs::symlink("/dev/zero", r.root.join("hybrid.toml")).unwrap();
    let out = r.hybrid(&["status"]);
    assert_code(&out, 2);
    assert!(stderr(&out).contains("device"), "{}", stderr(&out));

    // A directory.
    std::fs::remove_file(r.root.join("hybrid.toml")).unwrap();
    std::fs::create_dir(r.root.join("hybrid.toml")).unwrap();
    let out = r.hybrid(&["--json", "status"]);
    assert_code(&out, 2);
    assert!(stderr(&out).contains("directory") && stderr(&out).contains("\"exit_code\":2"), "{}", stderr(&out));

    // A plan file and a prompt_file get the same rule.
    std::fs::remove_dir(r.root.join("hybrid.toml")).unwrap();
    std::os::unix::fs::symlink("/dev/zero", r.root.join("plan.toml")).unwrap();
    let out = r.hybrid(&["dispatch", "--dry-run", "--plan", "plan.toml"]);
    assert_code(&out, 2);
    assert!(stderr(&out).contains("device"), "{}", stderr(&out));
    std::fs::write(r.root.join("prompt.md"), "x".repeat(2 << 20)).unwrap();
    r.write("p2.toml", "[[task]]\nid = \"a\"\nprompt_file = \"prompt.md\"\n");
    let out = r.hybrid(&["dispatch", "--dry-run", "--plan", "p2.toml"]);
    assert_code(&out, 2);
    assert!(stderr(&out).contains("prompt_file") && stderr(&out).contains("larger than"), "{}", stderr(&out));
}

#[test]
fn deleted_records_are_rebuilt_from_git_by_status_and_verify() {
    let r = TestRepo::new();
    // History before git-hybrid's first landing is not walked (the floor bounds the walk).
    for i in 0..20 {
        r.write("history.txt", &format!("{i}\n"));
        r.commit_all(&format!("old work {i}"));
    }
    task_with_commit(&r, "done1");
    task_with_commit(&r, "done2");
    r.hybrid_ok(&["merge", "done1", "done2"]);
    let landed = record(&r, "done1");
    let sha1 = landed["merge_sha"].as_str().unwrap().to_string();
    let tip1 = landed["tip"].as_str().unwrap().to_string();
    let forget = |r: &TestRepo| {
        std::fs::remove_dir_all(r.root.join(".git/hybrid/ledger/done1")).unwrap();
        r.git(&["update-ref", "-d", "refs/hybrid/tips/done1"]);
    };
    forget(&r);
    // Runs of a task whose record is gone and that never landed: named as unrecoverable.
    std::fs::create_dir_all(r.root.join(".git/hybrid/runs/lost/1/1")).unwrap();

    let status = r.hybrid_json(&["status"]);
    let done1 = status["tasks"].as_array().unwrap().iter().find(|t| t["id"] == "done1").cloned();
    let done1 = done1.unwrap_or_else(|| panic!("done1 was not rebuilt: {status:#}"));
    assert_eq!(done1["state"], "landed");
    assert_eq!(done1["merge_sha"], sha1.as_str());
    assert_eq!(done1["tip"], tip1.as_str());
    assert_eq!(r.rev("refs/hybrid/tips/done1"), tip1, "the tip ref is restored");
    let rebuilt = &status["rebuilt"];
    assert!(rebuilt["rebuilt"].to_string().contains("done1#1"), "{rebuilt:#}");
    let unrecoverable = rebuilt["unrecoverable"].to_string();
    assert!(unrecoverable.contains("title") && unrecoverable.contains("lost"), "{unrecoverable}");
    assert_eq!(rebuilt["scanned"], 2, "the walk stops at the first landing: {rebuilt:#}");
    // The rebuilt record is believed like any other (a later merge reports it landed).
    let again = r.hybrid_json(&["merge", "done1"]);
    assert_eq!(again["already"], true, "{again:#}");

    forget(&r);
    let out = r.hybrid(&["verify", "--all"]);
    assert_ok(&out, &["verify", "--all"]);
    assert!(stdout(&out).contains("rebuilt from git: done1#1"), "{}", stdout(&out));
    assert_eq!(record(&r, "done1")["merge_sha"], sha1.as_str());
}

#[test]
fn dispatch_does_not_redo_a_landed_task_whose_record_was_deleted() {
    let r = TestRepo::new();
    r.write(
        "hybrid.toml",
        "[agent]\ncommand = [\"builtin:script\", \"agent.sh\"]\n\n[[task]]\nid = \"done1\"\nprompt = \"write d\"\n",
    );
    r.write("agent.sh", "#!/bin/sh\necho \"$HYBRID_TASK_ID\" >> d.txt\ngit add -A && git commit -q -m done1\n");
    r.commit_all("plan");
    assert_ok(&r.hybrid(&["dispatch"]), &["dispatch"]);
    let landed = r.rev("main");
    std::fs::remove_dir_all(r.root.join(".git/hybrid/ledger/done1")).unwrap();
    r.git(&["update-ref", "-d", "refs/hybrid/tips/done1"]);

    let out = r.hybrid(&["dispatch"]);
    assert_ok(&out, &["dispatch (again)"]);
    assert_eq!(r.rev("main"), landed, "the task ran and landed a second time");
    assert!(stderr(&out).contains("rebuilt from git: done1#1"), "{}", stderr(&out));
    assert_eq!(record(&r, "done1")["merge_sha"], landed.as_str());
}
