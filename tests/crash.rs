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

/// What a killed run may leave that the next run must have removed: files in
/// `.git/hybrid/landing/`, `*.lock` files under `.git/refs/` and `.git/index.lock`, and folders an
/// interrupted worktree removal left beside the task worktrees.
fn leftovers(repo: &TestRepo) -> Vec<String> {
    fn walk(dir: &std::path::Path, out: &mut Vec<String>, keep: &dyn Fn(&std::path::Path) -> bool) {
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let p = e.path();
            if keep(&p) {
                out.push(p.display().to_string());
            }
            if p.is_dir() && !p.is_symlink() {
                walk(&p, out, keep);
            }
        }
    }
    let mut out = Vec::new();
    walk(&repo.root.join(".git/hybrid/landing"), &mut out, &|_| true);
    walk(&repo.root.join(".git/refs"), &mut out, &|p| p.extension().is_some_and(|x| x == "lock"));
    if repo.root.join(".git/index.lock").exists() {
        out.push(".git/index.lock".into());
    }
    walk(&repo.base().join("repo.hybrid"), &mut out, &|p| p.to_string_lossy().ends_with(".hybrid-removing"));
    out
}

#[test]
fn a_killed_clean_is_finished_by_the_next_one() {
    let repo = TestRepo::new();
    for id in ["c1", "c2"] {
        task(&repo, id, &[(&format!("{id}.txt"), "work\n")]);
        assert_ok(&repo.hybrid(&["merge", "--keep", id]), &["merge", "--keep", id]);
    }
    // Killed while deleting the worktree (renamed away first), then while deleting the branch.
    repo.kill_at(&["clean", "c1"], "worktree::renamed_away");
    assert!(!repo.task_dir("c1").exists(), "the worktree left its path in one step");
    repo.kill_at(&["clean", "c2"], "branch::delete_locked");
    assert!(repo.root.join(".git/refs/heads/hybrid/c2.lock").exists());
    assert!(!leftovers(&repo).is_empty());

    let out = repo.hybrid(&["--json", "clean", "--merged"]);
    assert_ok(&out, &["clean", "--merged"]);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["kept"], serde_json::json!([]), "{report}");
    assert_eq!(leftovers(&repo), Vec::<String>::new());
    for id in ["c1", "c2"] {
        assert!(!repo.task_dir(id).exists());
        assert!(
            repo.git_out(&repo.root, &["rev-parse", "--verify", &format!("refs/heads/hybrid/{id}")]).status.code()
                != Some(0)
        );
        assert!(record(&repo, id)["worktree"].is_null(), "{id}");
    }
    assert_eq!(repo.git(&["worktree", "prune", "--dry-run", "-v"]), "");
    assert_eq!(repo.porcelain(&repo.root), "");
}

#[test]
fn a_ref_lock_git_hybrid_cannot_prove_it_left_is_never_removed() {
    let repo = TestRepo::new();
    task(&repo, "c1", &[("c1.txt", "work\n")]);
    assert_ok(&repo.hybrid(&["merge", "--keep", "c1"]), &["merge", "--keep", "c1"]);
    // As if a git command of the user's held the branch.
    let lock = repo.root.join(".git/refs/heads/hybrid/c1.lock");
    std::fs::write(&lock, format!("{}\n", repo.rev("hybrid/c1"))).unwrap();
    let out = repo.hybrid(&["clean", "c1"]);
    assert_code(&out, 4);
    assert!(lock.exists(), "someone else's lock is never removed");
    assert!(stderr(&out).contains("c1.lock"), "{}", stderr(&out));
    std::fs::remove_file(&lock).unwrap();
    assert_ok(&repo.hybrid(&["clean", "c1"]), &["clean", "c1"]);
}

#[test]
fn a_train_killed_at_any_step_leaves_nothing_the_rerun_does_not_remove() {
    let repo = TestRepo::new();
    let steps = [
        "land::note_temp_written",
        "land::note_written",
        "land::checkouts_moved",
        "land::ref_moved",
        "land::recorded@2",
        "sync::ref_locked@2",
        "worktree::renamed_away@2",
        "branch::delete_locked@2",
        "land::cleaned@2",
    ];
    for (r, step) in steps.into_iter().enumerate() {
        let ids: Vec<String> = (0..3).map(|i| format!("r{r}x{i}")).collect();
        for id in &ids {
            task(&repo, id, &[(&format!("{id}.txt"), "work\n")]);
        }
        repo.write(&format!("main{r}.txt"), "main moves\n"); // every task needs a catch-up
        repo.commit_all(&format!("main moves {r}"));
        let mut args = vec!["merge"];
        args.extend(ids.iter().map(String::as_str));
        repo.kill_at(&args, step);
        assert_ok(&repo.hybrid(&args), &[&format!("re-run after a kill at {step}")]);
        assert_eq!(leftovers(&repo), Vec::<String>::new(), "after a kill at {step} and a re-run");
        for id in &ids {
            assert_eq!(record(&repo, id)["state"], "landed", "{id} (killed at {step})");
            assert!(!repo.task_dir(id).exists(), "{id} (killed at {step})");
        }
        assert_eq!(repo.porcelain(&repo.root), "", "killed at {step}");
    }
}

/// Issue 10 item 3: a train of ten tasks killed at each step; the user then does what git
/// advises (removes the `*.lock` files it names) and commits an unrelated change, with
/// `git commit -am` or with `git add -A && git commit`. Their commit must hold only their change,
/// and re-running the merge must record every task as landed with its own squash commit.
#[test]
fn after_a_killed_train_the_users_own_commit_holds_only_their_change() {
    let steps = [
        "land::note_written",
        "checkout::index_flagged",
        "checkout::files_written",
        "land::checkouts_staged",
        "land::ref_moved",
        "checkout::finished",
        "land::checkouts_moved",
        "land::recorded@5",
    ];
    let mut failures = Vec::new();
    for step in steps {
        for how in ["commit -am", "add -A"] {
            let repo = TestRepo::new();
            let ids: Vec<String> = (0..10).map(|i| format!("t{i}")).collect();
            for id in &ids {
                repo.write(&format!("{id}.txt"), "base\n");
            }
            repo.write("user.txt", "base\n");
            repo.commit_all("files the tasks change");
            for id in &ids {
                task(
                    &repo,
                    id,
                    &[(&format!("{id}.txt"), "changed by the task\n"), (&format!("new/{id}.txt"), "added\n")],
                );
            }
            let mut args = vec!["merge"];
            args.extend(ids.iter().map(String::as_str));
            repo.kill_at(&args, step);
            for lock in [".git/index.lock", ".git/refs/heads/main.lock"] {
                let _ = std::fs::remove_file(repo.root.join(lock));
            }
            repo.write("user.txt", "the user's change\n");
            if how == "commit -am" {
                repo.git(&["commit", "-q", "-am", "user"]);
            } else {
                repo.git(&["add", "-A"]);
                repo.git(&["commit", "-q", "-m", "user"]);
            }
            let changed = repo.git(&["show", "--name-only", "--format=", "HEAD"]);
            if changed != "user.txt" {
                failures.push(format!("killed at {step}, `{how}`: the user's commit holds {changed:?}"));
                continue;
            }
            assert_ok(&repo.hybrid(&args), &[&format!("re-run after {step}, {how}")]);
            for id in &ids {
                let rec = record(&repo, id);
                if rec["state"] != "landed" || rec["merge_sha"].is_null() {
                    failures.push(format!("killed at {step}, `{how}`: {id} is {}", rec["state"]));
                }
                let (changed, added) = (repo.read(&format!("{id}.txt")), repo.read(&format!("new/{id}.txt")));
                if changed != "changed by the task\n" || added != "added\n" {
                    failures.push(format!("killed at {step}, `{how}`: {id}'s files are {changed:?}, {added:?}"));
                }
            }
            // Nothing hidden behind git's assume-unchanged bit, nothing left over.
            let hidden: Vec<String> = repo
                .git(&["ls-files", "-v"])
                .lines()
                .filter(|l| l.chars().next().is_some_and(|c| c.is_ascii_lowercase()))
                .map(str::to_string)
                .collect();
            let status = repo.porcelain(&repo.root);
            if !hidden.is_empty() || !status.is_empty() {
                failures.push(format!("killed at {step}, `{how}`: flagged {hidden:?}, status {status:?}"));
            }
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

/// Issue 10 item 3, the user's own edit: after a kill that left a task's file written but hidden
/// (assume-unchanged), the user edits that very file. The re-run must neither overwrite their
/// bytes nor keep them hidden: they show as the user's change and the task touching that path
/// is refused, the others land.
#[test]
fn a_file_the_user_edits_after_a_kill_keeps_their_bytes_and_shows_as_their_change() {
    let repo = TestRepo::new();
    for id in ["t0", "t1"] {
        repo.write(&format!("{id}.txt"), "base\n");
    }
    repo.commit_all("files the tasks change");
    for id in ["t0", "t1"] {
        task(&repo, id, &[(&format!("{id}.txt"), "changed by the task\n")]);
    }
    repo.kill_at(&["merge", "t0", "t1"], "checkout::files_written");
    let _ = std::fs::remove_file(repo.root.join(".git/index.lock"));
    let _ = std::fs::remove_file(repo.root.join(".git/refs/heads/main.lock"));
    repo.write("t0.txt", "the user's own edit\n");
    let out = repo.hybrid(&["merge", "t0", "t1"]);
    assert_eq!(repo.read("t0.txt"), "the user's own edit\n", "{}", common::stderr(&out));
    assert_eq!(repo.porcelain(&repo.root), " M t0.txt", "{}", common::stderr(&out));
    assert_eq!(record(&repo, "t1")["state"], "landed");
    assert_ne!(record(&repo, "t0")["state"], "landed");
    assert_eq!(repo.read("t1.txt"), "changed by the task\n");
}
