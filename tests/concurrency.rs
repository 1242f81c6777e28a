//! Issue 2: concurrent `start`s and crash safety.
//!
//! Real processes race on one repository: 16 starting 16 tasks, 8 starting the same task. A
//! crash mid-start (a `starting` record with a half-made worktree, or a real `kill -9`) must
//! be repaired by the next `start`.

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Child, Stdio};

use common::{assert_ok, stderr, stdout, write_file, TestRepo};
use serde_json::Value;

fn spawn_start(r: &TestRepo, id: &str) -> Child {
    r.hybrid_cmd(&r.root, &["start", id]).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("spawn")
}

/// Ledger records as stored on disk (every file must parse: no torn writes).
fn ledger_files(r: &TestRepo) -> Vec<Value> {
    let mut out = Vec::new();
    let dir = r.root.join(".git/hybrid/ledger");
    for task in std::fs::read_dir(&dir).unwrap().flatten() {
        for f in std::fs::read_dir(task.path()).unwrap().flatten() {
            let name = f.file_name().to_string_lossy().into_owned();
            if name.starts_with(".tmp-") {
                continue; // a write killed before its rename; readers skip these
            }
            let text = std::fs::read_to_string(f.path()).unwrap();
            out.push(serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}: {text}", f.path().display())));
        }
    }
    out
}

/// `(path, branch)` of every worktree git knows, main checkout included.
fn git_worktrees(r: &TestRepo) -> Vec<(String, String)> {
    let text = r.git(&["worktree", "list", "--porcelain"]);
    text.split("\n\n")
        .filter(|b| !b.trim().is_empty())
        .map(|block| {
            let path = block.lines().find_map(|l| l.strip_prefix("worktree ")).unwrap_or("").to_string();
            let branch = block.lines().find_map(|l| l.strip_prefix("branch ")).unwrap_or("(none)").to_string();
            (path, branch)
        })
        .collect()
}

/// A task worktree is complete: on its branch, at the base, nothing modified or missing.
fn assert_complete(r: &TestRepo, wt: &Path, branch: &str, base: &str) {
    assert_eq!(r.git_in(wt, &["symbolic-ref", "HEAD"]), format!("refs/heads/{branch}"), "{}", wt.display());
    assert_eq!(r.git_in(wt, &["rev-parse", "HEAD"]), base, "{}", wt.display());
    assert_eq!(r.porcelain(wt), "", "{} is not clean", wt.display());
}

/// A repository with a few hundred files, so a checkout takes long enough to be interrupted.
fn repo_with_files(n: usize) -> TestRepo {
    let r = TestRepo::new();
    for i in 0..n {
        r.write(&format!("src/d{}/f{i}.txt", i % 10), &format!("file {i}\n{}\n", "x".repeat(i % 300)));
    }
    r.commit_all("many files");
    r
}

/// Rewrites attempt 1's ledger record with `state`, as a crash at that point would leave it.
fn set_state_on_disk(r: &TestRepo, id: &str, state: &str) {
    let file = r.root.join(format!(".git/hybrid/ledger/{id}/1.json"));
    let mut rec: Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    rec["state"] = state.into();
    std::fs::write(&file, serde_json::to_vec_pretty(&rec).unwrap()).unwrap();
}

#[test]
fn sixteen_processes_start_sixteen_tasks() {
    let r = repo_with_files(50);
    let base = r.rev("main");
    let ids: Vec<String> = (1..=16).map(|i| format!("p{i}")).collect();
    let children: Vec<Child> = ids.iter().map(|id| spawn_start(&r, id)).collect();
    for (id, child) in ids.iter().zip(children) {
        let out = child.wait_with_output().unwrap();
        assert_ok(&out, &["start", id]);
        assert_eq!(stdout(&out).trim(), r.task_dir(id).display().to_string());
    }

    let records = ledger_files(&r);
    assert_eq!(records.len(), 16);
    let mut seen = BTreeSet::new();
    for rec in &records {
        let id = rec["id"].as_str().unwrap();
        assert!(seen.insert(id.to_string()));
        assert_eq!(rec["attempt"], 1);
        assert_eq!(rec["state"], "ready", "{rec}");
        assert_eq!(rec["branch"], format!("hybrid/{id}"));
        assert_eq!(rec["worktree"], r.task_dir(id).display().to_string());
        assert_eq!(rec["base"], base.as_str());
    }
    assert_eq!(seen, ids.iter().cloned().collect::<BTreeSet<_>>());
    assert_eq!(r.tasks().len(), 16, "status sees every task");

    let worktrees = git_worktrees(&r);
    assert_eq!(worktrees.len(), 17, "{worktrees:?}");
    for id in &ids {
        let path = r.task_dir(id).display().to_string();
        let branch = format!("refs/heads/hybrid/{id}");
        assert_eq!(worktrees.iter().filter(|(p, b)| *p == path && *b == branch).count(), 1, "{id}: {worktrees:?}");
        assert_complete(&r, &r.task_dir(id), &format!("hybrid/{id}"), &base);
    }
    assert_eq!(r.porcelain(&r.root), "");
}

#[test]
fn eight_processes_start_the_same_task() {
    let r = repo_with_files(50);
    let base = r.rev("main");
    for round in 0..3 {
        let id = format!("same{round}");
        let children: Vec<Child> = (0..8).map(|_| spawn_start(&r, &id)).collect();
        let outs: Vec<_> = children.into_iter().map(|c| c.wait_with_output().unwrap()).collect();
        for out in &outs {
            assert_ok(out, &["start", &id]);
            assert_eq!(stdout(out).trim(), r.task_dir(&id).display().to_string());
        }
        let exists = outs.iter().filter(|o| stderr(o).contains("already exists")).count();
        assert_eq!(exists, 7, "exactly one process creates the task, the rest report it exists");

        let branch = format!("refs/heads/hybrid/{id}");
        let matching = git_worktrees(&r).into_iter().filter(|(_, b)| *b == branch).count();
        assert_eq!(matching, 1);
        assert_complete(&r, &r.task_dir(&id), &format!("hybrid/{id}"), &base);
        let records: Vec<Value> = ledger_files(&r).into_iter().filter(|rec| rec["id"] == id.as_str()).collect();
        assert_eq!(records.len(), 1);
        assert_eq!(records[0]["state"], "ready");
    }
    assert_eq!(git_worktrees(&r).len(), 4);
}

#[test]
fn a_starting_record_with_a_half_made_worktree_is_repaired() {
    let r = repo_with_files(30);
    let base = r.rev("main");
    r.hybrid_ok(&["start", "t1"]);
    let wt = r.task_dir("t1");
    // Simulate a crash during checkout: the record still says `starting`, files are missing,
    // a partial file and the index are in a broken state.
    set_state_on_disk(&r, "t1", "starting");
    std::fs::remove_dir_all(wt.join("src/d3")).unwrap();
    write_file(&wt.join("src/d1/f1.txt"), "half writ");
    std::fs::write(r.root.join(".git/worktrees/t1/index"), b"garbage").unwrap();

    let out = r.hybrid(&["start", "t1"]);
    assert_ok(&out, &["start", "t1"]);
    assert!(!stderr(&out).contains("already exists"), "a half-made task was reported as existing");
    assert_complete(&r, &wt, "hybrid/t1", &base);
    assert_eq!(r.tasks()[0]["state"], "ready");
    assert_eq!(git_worktrees(&r).len(), 2);
}

#[test]
fn a_starting_record_without_a_worktree_is_repaired() {
    let r = TestRepo::new();
    let base = r.rev("main");
    r.hybrid_ok(&["start", "t1"]);
    let wt = r.task_dir("t1");
    // Crash right after the record was written: the folder exists (empty or with a stray
    // file), git has no worktree entry.
    set_state_on_disk(&r, "t1", "starting");
    std::fs::remove_dir_all(&wt).unwrap();
    std::fs::remove_dir_all(r.root.join(".git/worktrees/t1")).unwrap();
    write_file(&wt.join("README.md"), "hel");

    let out = r.hybrid(&["start", "t1"]);
    assert_ok(&out, &["start", "t1"]);
    assert_complete(&r, &wt, "hybrid/t1", &base);
}

#[test]
fn a_branch_left_by_a_crash_before_the_record_is_adopted() {
    let r = TestRepo::new();
    let base = r.rev("main");
    // Crash after the branch was created, before the ledger record: only the branch exists.
    r.git(&["branch", "hybrid/t1", "main"]);
    let rec = r.hybrid_json(&["start", "t1"]);
    assert_eq!(rec["base"], base.as_str());
    assert_complete(&r, &r.task_dir("t1"), "hybrid/t1", &base);
}

#[test]
fn kill_9_at_any_point_of_start_is_recovered() {
    let r = repo_with_files(300);
    let base = r.rev("main");
    // Kill `start` at each of its steps: before and after the branch and record writes, inside
    // the worktree's creation (admin entry, link, the first and the 150th file), after it.
    let steps = [
        "start::locked",
        "start::branch_created",
        "start::recorded",
        "start::admin_entry_written",
        "start::gitlink_written",
        "start::writing_file@1",
        "start::writing_file@150",
        "start::files_written",
        "start::worktree_added",
    ];
    for (i, step) in steps.into_iter().enumerate() {
        let id = format!("k{i}");
        r.kill_at(&["start", &id], step);

        let out = r.hybrid(&["start", &id]);
        assert_ok(&out, &["start", &id, &format!("after kill -9 at {step}")]);
        assert_eq!(stdout(&out).trim(), r.task_dir(&id).display().to_string());
        assert_complete(&r, &r.task_dir(&id), &format!("hybrid/{id}"), &base);
        let rec: Vec<Value> = r.tasks().into_iter().filter(|t| t["id"] == id.as_str()).collect();
        assert_eq!(rec.len(), 1);
        assert_eq!(rec[0]["state"], "ready");
    }
    ledger_files(&r);
    // Every task has exactly one worktree; no stray admin entries.
    let worktrees = git_worktrees(&r);
    assert_eq!(worktrees.len(), steps.len() + 1, "{worktrees:?}");
    let out = r.git(&["worktree", "prune", "--dry-run", "-v"]);
    assert_eq!(out, "", "stale worktree entries left behind");
}
