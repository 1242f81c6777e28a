//! Interrupted and concurrent work: a landing another process holds, a `kill -9` at each
//! named step (`src/failpoint.rs`) of a train or a `clean`, and what the user does next.
//! Every test drives the real binary built with `--features failpoints`.
#![cfg(unix)]

mod common;

use std::path::PathBuf;
use std::process::Stdio;

use common::{assert_code, assert_ok, stderr, write_file, TestRepo};

/// Starts a task, writes `files` in its worktree and commits them there.
fn task(repo: &TestRepo, id: &str, files: &[(&str, &str)]) -> PathBuf {
    assert_ok(&repo.hybrid(&["start", id]), &["start", id]);
    let dir = repo.task_dir(id);
    for (p, c) in files {
        write_file(&dir.join(p), c);
    }
    repo.commit_all_in(&dir, &format!("work {id}"));
    dir
}

/// The ledger record of attempt 1, read from disk.
fn record(repo: &TestRepo, id: &str) -> serde_json::Value {
    let p = repo.root.join(".git/hybrid/ledger").join(id).join("1.json");
    serde_json::from_slice(&std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))).unwrap()
}

#[test]
fn a_landing_held_by_another_process_is_named_and_waited_for_up_to_wait() {
    let repo = TestRepo::new();
    task(&repo, "t1", &[("a.txt", "a\n")]);
    task(&repo, "t2", &[("b.txt", "b\n")]);
    let holder = repo.pause_at(&["merge", "t1"], "land::locked");
    let before = repo.refs_snapshot();

    // Gives up after --wait, exit 4, naming the holder; nothing changed.
    let out = repo.hybrid(&["merge", "t2", "--wait", "1"]);
    assert_code(&out, 4);
    let err = stderr(&out);
    assert!(err.contains(&format!("waiting for the landing on main by pid {}", holder.pid())), "{err}");
    assert!(err.contains("gave up waiting"), "{err}");
    assert_eq!(repo.refs_snapshot(), before);
    assert_eq!(record(&repo, "t2")["state"], "ready");
    let out = repo.hybrid(&["--json", "merge", "t2", "--wait", "0"]);
    assert_code(&out, 4);
    let doc: serde_json::Value = serde_json::from_slice(&out.stderr[stderr(&out).find('{').unwrap()..]).unwrap();
    assert_eq!(doc["exit_code"], 4, "{doc}");

    // Waits (saying so) while the other landing runs, then lands once it is done.
    let log = repo.base().join("waiting.log");
    let mut waiting = repo
        .hybrid_cmd(&repo.root, &["merge", "t2"])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let start = std::time::Instant::now();
    while !std::fs::read_to_string(&log).unwrap().contains("waiting for the landing on main") {
        assert!(waiting.try_wait().unwrap().is_none(), "merge t2 did not wait");
        assert!(start.elapsed() < std::time::Duration::from_secs(60), "merge t2 never said it waits");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert_ok(&holder.resume(), &["merge", "t1"]);
    assert!(waiting.wait().unwrap().success(), "{}", std::fs::read_to_string(&log).unwrap());
    assert_eq!(record(&repo, "t1")["state"], "landed");
    assert_eq!(record(&repo, "t2")["state"], "landed");
    assert_eq!(repo.porcelain(&repo.root), "");
}
