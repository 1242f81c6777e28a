//! Landing through a shared remote served by a real git server on loopback (`git daemon` and
//! smart HTTP, see `tests/common/server.rs`).

mod common;

use common::server::{GitServer, Kind};
use common::TestRepo;

/// Both servers accept a push and serve a clone, so the remote tests exercise real transports.
#[test]
fn test_servers_serve_push_and_clone() {
    for kind in [Kind::Daemon, Kind::Http] {
        let repo = TestRepo::new();
        let server = GitServer::start(&repo, kind);
        repo.publish_to(&server);
        assert_eq!(server.rev(&repo, "refs/heads/main").as_deref(), Some(repo.rev("main").as_str()), "{kind:?}");
        let other = repo.clone_from(&server, "other");
        assert_eq!(other.read("README.md"), "hello\n");
        other.write("b.txt", "b\n");
        let pushed = other.commit_all("b");
        other.git(&["push", "-q", "origin", "main"]);
        assert_eq!(server.rev(&repo, "main").as_deref(), Some(pushed.as_str()), "{kind:?}");
        // An atomic push with a stale lease is refused as a whole.
        repo.write("c.txt", "c\n");
        let mine = repo.commit_all("c");
        let stale = repo.rev("origin/main");
        let out = repo.git_out(
            &repo.root,
            &[
                "push",
                "--porcelain",
                "--atomic",
                &format!("--force-with-lease=refs/heads/main:{stale}"),
                "origin",
                &format!("{mine}:refs/heads/main"),
                &format!("{mine}:refs/hybrid/x"),
            ],
        );
        assert!(!out.status.success(), "{kind:?}");
        assert!(common::stdout(&out).contains("stale info"), "{kind:?}: {}", common::stdout(&out));
        assert_eq!(server.rev(&repo, "main").as_deref(), Some(pushed.as_str()), "{kind:?}");
        assert_eq!(server.rev(&repo, "refs/hybrid/x"), None, "{kind:?}");
    }
}

/// A repository whose `main` is published on a fresh server (upstream set, so it is the
/// landing remote by default) and a task `t1` with one commit.
fn published(kind: Kind) -> (TestRepo, GitServer) {
    let repo = TestRepo::new();
    let server = GitServer::start(&repo, kind);
    repo.publish_to(&server);
    (repo, server)
}

/// `git log --format=%H %P` of the server's main, newest first.
fn server_log(repo: &TestRepo, server: &GitServer) -> Vec<(String, Vec<String>)> {
    repo.git_in(&server.bare, &["log", "--format=%H %P", "main"])
        .lines()
        .map(|l| {
            let mut p = l.split(' ').map(str::to_string);
            (p.next().unwrap(), p.collect())
        })
        .collect()
}

#[test]
fn merge_lands_on_the_remote_with_its_record_over_both_transports() {
    for kind in [Kind::Daemon, Kind::Http] {
        let (repo, server) = published(kind);
        repo.task_with_commit("t1", "a.txt");
        // Someone else pushes meanwhile: the landing builds on what is really on the remote.
        let other = repo.clone_from(&server, "other");
        other.write("o.txt", "o\n");
        let theirs = other.commit_all("other work");
        other.git(&["push", "-q", "origin", "main"]);

        let rep = repo.hybrid_json(&["merge", "t1"]);
        let sha = rep["merge_sha"].as_str().unwrap().to_string();
        assert_eq!(server.rev(&repo, "main").as_deref(), Some(sha.as_str()), "{kind:?}");
        assert_eq!(repo.rev(&format!("{sha}^")), theirs, "{kind:?}: built on the remote tip");
        assert_eq!(repo.rev("main"), sha, "{kind:?}: the local target moved too");
        assert_eq!(repo.read("o.txt"), "o\n", "{kind:?}: the checkout moved coherently");
        assert_eq!(repo.read("a.txt"), "t1\n");
        // The record travelled with it.
        let blob = server.rev(&repo, "refs/hybrid/ledger/t1/1").expect("record on the remote");
        let record: serde_json::Value =
            serde_json::from_str(&repo.git_in(&server.bare, &["cat-file", "blob", &blob])).unwrap();
        assert_eq!(record["merge_sha"], sha.as_str());
        assert_eq!(record["state"], "landed");
        assert!(server.rev(&repo, "refs/hybrid/tips/t1").is_some(), "{kind:?}: the landed tip travelled");
        assert_eq!(repo.rev("refs/hybrid/ledger/t1/1"), blob);
    }
}

#[test]
fn two_clones_landing_at_the_same_moment_both_land_linearly() {
    for kind in [Kind::Daemon, Kind::Http] {
        let (a, server) = published(kind);
        let b = a.clone_from(&server, "b");
        a.task_with_commit("ta", "a.txt");
        b.task_with_commit("tb", "b.txt");
        let mut ca = a.hybrid_cmd(&a.root, &["--json", "merge", "ta"]);
        let mut cb = b.hybrid_cmd(&b.root, &["--json", "merge", "tb"]);
        for c in [&mut ca, &mut cb] {
            c.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped());
        }
        let (ca, cb) = (ca.spawn().unwrap(), cb.spawn().unwrap());
        let (oa, ob) = (ca.wait_with_output().unwrap(), cb.wait_with_output().unwrap());
        common::assert_ok(&oa, &["merge", "ta"]);
        common::assert_ok(&ob, &["merge", "tb"]);
        let log = server_log(&a, &server);
        assert_eq!(log.len(), 3, "{kind:?}: initial + two squashes: {log:?}");
        assert!(log.iter().all(|(_, parents)| parents.len() <= 1), "{kind:?}: linear history: {log:?}");
        for (id, out) in [("ta", &oa), ("tb", &ob)] {
            let rep: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
            let sha = rep["merge_sha"].as_str().unwrap();
            assert!(log.iter().any(|(c, _)| c == sha), "{kind:?}: {id} is on the remote");
            assert!(server.rev(&a, &format!("refs/hybrid/ledger/{id}/1")).is_some(), "{kind:?}: {id}'s record");
        }
    }
}

#[test]
fn a_lease_race_with_a_user_push_from_a_third_clone_is_retried_on_the_new_tip() {
    for kind in [Kind::Daemon, Kind::Http] {
        let (repo, server) = published(kind);
        let user = repo.clone_from(&server, "user");
        user.write("u.txt", "user\n");
        let theirs = user.commit_all("user work");
        repo.task_with_commit("t1", "a.txt");
        // The user's push lands on the server while the landing's own push is in flight (after
        // the landing read the remote's tip): the first push loses the race, the retry wins.
        let marker = repo.base().join("race-once");
        std::fs::write(&marker, "").unwrap();
        server.set_pre_receive(&format!(
            "if [ -f '{m}' ]; then rm '{m}'; env -u GIT_DIR -u GIT_QUARANTINE_PATH -u GIT_OBJECT_DIRECTORY \
             -u GIT_ALTERNATE_OBJECT_DIRECTORIES -u GIT_PROTOCOL git -C '{u}' push -q origin main >&2 || exit 1; fi",
            m = marker.display(),
            u = user.root.display()
        ));
        let rep = repo.hybrid_json(&["merge", "t1"]);
        assert!(!marker.exists(), "{kind:?}: the race happened");
        let sha = rep["merge_sha"].as_str().unwrap();
        let log = server_log(&repo, &server);
        assert_eq!(log[0].0, sha, "{kind:?}");
        assert_eq!(log[0].1, vec![theirs.clone()], "{kind:?}: recomputed on the user's push, which is kept");
        assert_eq!(log.len(), 3, "{kind:?}: {log:?}");
        assert_eq!(repo.rev("main"), sha);
        assert_eq!(repo.read("u.txt"), "user\n");
    }
}

#[test]
fn a_rejecting_pre_receive_hook_fails_the_landing_and_changes_nothing_here() {
    let (repo, server) = published(Kind::Daemon);
    repo.task_with_commit("t1", "a.txt");
    server.set_pre_receive("echo 'main is protected: open a pull request' >&2; exit 1");
    let before = repo.refs_snapshot();
    let remote_before = server.rev(&repo, "main");
    let out = repo.hybrid(&["merge", "t1"]);
    common::assert_code(&out, 1);
    let err = common::stderr(&out);
    assert!(err.contains("main is protected: open a pull request"), "the server's message: {err}");
    assert_eq!(server.rev(&repo, "main"), remote_before);
    assert_eq!(server.rev(&repo, "refs/hybrid/ledger/t1/1"), None);
    assert_eq!(repo.refs_snapshot(), before, "no ref moved here");
    assert!(!repo.root.join("a.txt").exists());
    let t = &repo.hybrid_json(&["status", "t1"])["tasks"][0];
    assert_ne!(t["state"], "landed", "{t}");
    // A re-run once the server allows it lands.
    std::fs::remove_file(server.bare.join("hooks/pre-receive")).unwrap();
    let rep = repo.hybrid_json(&["merge", "t1"]);
    assert_eq!(server.rev(&repo, "main").as_deref(), rep["merge_sha"].as_str());
}

#[test]
fn an_unreachable_remote_is_a_clear_error_and_local_lands_here_only() {
    let (repo, server) = published(Kind::Daemon);
    repo.task_with_commit("t1", "a.txt");
    let dead = format!("git://127.0.0.1:{}/origin.git", common::server::free_port());
    repo.git(&["remote", "set-url", "origin", &dead]);
    let before = repo.refs_snapshot();
    let out = repo.hybrid(&["merge", "t1"]);
    common::assert_code(&out, 1);
    assert!(common::stderr(&out).contains("cannot fetch main from origin"), "{}", common::stderr(&out));
    assert_eq!(repo.refs_snapshot(), before);
    let rep = repo.hybrid_json(&["merge", "--local", "t1"]);
    assert_eq!(repo.rev("main"), rep["merge_sha"].as_str().unwrap());
    assert_ne!(server.rev(&repo, "main").as_deref(), rep["merge_sha"].as_str());
}

#[test]
fn a_local_target_ahead_of_the_remote_is_refused() {
    let (repo, server) = published(Kind::Daemon);
    repo.task_with_commit("t1", "a.txt");
    repo.write("mine.txt", "unpushed\n");
    repo.commit_all("unpushed work");
    let before = repo.refs_snapshot();
    let out = repo.hybrid(&["merge", "t1"]);
    common::assert_code(&out, 3);
    assert!(common::stderr(&out).contains("not on origin/main"), "{}", common::stderr(&out));
    assert_eq!(repo.refs_snapshot(), before);
    assert_eq!(server.rev(&repo, "refs/hybrid/ledger/t1/1"), None);
}

#[test]
fn sync_merges_what_is_on_the_remote() {
    let (repo, server) = published(Kind::Http);
    repo.task_with_commit("t1", "a.txt");
    let other = repo.clone_from(&server, "other");
    other.write("o.txt", "o\n");
    let theirs = other.commit_all("other work");
    other.git(&["push", "-q", "origin", "main"]);
    repo.hybrid_ok(&["sync", "t1"]);
    assert_eq!(std::fs::read_to_string(repo.task_dir("t1").join("o.txt")).unwrap(), "o\n");
    assert_eq!(repo.rev("origin/main"), theirs);
}

#[test]
fn a_fresh_clone_fetches_every_landing_record_and_verifies_and_labels_them() {
    let (a, server) = published(Kind::Daemon);
    let b = a.clone_from(&server, "b");
    a.task_with_commit("ta", "a.txt");
    a.task_with_commit("ta2", "a2.txt");
    a.hybrid_ok(&["merge", "ta", "ta2"]);
    b.task_with_commit("tb", "b.txt");
    b.hybrid_ok(&["merge", "tb"]);

    // A fresh clone knows nothing until `git hybrid fetch` brings the published ledger in.
    let fresh = a.clone_from(&server, "fresh");
    assert!(fresh.tasks().is_empty());
    let rep = fresh.hybrid_json(&["fetch"]);
    let mut imported: Vec<&str> = rep["imported"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    imported.sort();
    assert_eq!(imported, ["ta/1", "ta2/1", "tb/1"]);
    let tasks = fresh.tasks();
    assert_eq!(tasks.len(), 3);
    for t in &tasks {
        assert_eq!(t["state"], "landed", "{t}");
        let sha = t["merge_sha"].as_str().unwrap();
        assert_eq!(server.rev(&a, sha).as_deref(), Some(sha));
        assert!(t["worktree"].is_null() && t["run_dir"].is_null(), "no other machine's paths: {t}");
    }
    let v = fresh.hybrid_json(&["verify", "--all"]);
    assert_eq!(v["ok"], true, "{v}");
    assert_eq!(v["warnings"], 0, "every tip was fetched, every tree checked: {v}");
    assert_eq!(v["commits"].as_array().map(Vec::len), Some(3), "{v}");
    let labels = fresh.hybrid_json(&["label"]);
    assert_eq!(labels["labeled"].as_array().map(Vec::len), Some(3), "{labels}");

    // The first clone sees the second's landing too, and fetching again brings nothing new.
    let rep = a.hybrid_json(&["fetch"]);
    assert_eq!(rep["imported"], serde_json::json!(["tb/1"]));
    assert_eq!(a.tasks().len(), 3);
    assert_eq!(a.hybrid_json(&["fetch"])["imported"], serde_json::json!([]));
}

#[test]
fn fetch_without_a_remote_is_bad_input() {
    let repo = TestRepo::new();
    common::assert_code(&repo.hybrid(&["fetch"]), 2);
}

/// Waits (polling, with a liveness bound only) until `path` exists.
fn wait_for(path: &std::path::Path, what: &str) {
    let start = std::time::Instant::now();
    while !path.exists() {
        assert!(start.elapsed() < std::time::Duration::from_secs(120), "never saw {what}");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

#[test]
fn a_lander_killed_during_its_push_leaves_squash_and_record_together_or_neither() {
    for kind in [Kind::Daemon, Kind::Http] {
        for server_accepts in [true, false] {
            let (repo, server) = published(kind);
            repo.task_with_commit("t1", "a.txt");
            // The push stops in the server's pre-receive hook until the test says how it ends;
            // the lander is killed while it waits there, so its push is in flight.
            let gate = repo.base().join("gate");
            std::fs::create_dir_all(&gate).unwrap();
            repo.git_in(&server.bare, &["config", "receive.keepAlive", "0"]);
            server.set_pre_receive(&format!(
                "touch '{g}/reached'; while [ ! -e '{g}/go' ]; do sleep 0.01; done; \
                 if [ \"$(cat '{g}/go')\" = accept ]; then exit 0; fi; touch '{g}/done'; exit 1",
                g = gate.display()
            ));
            let post = server.bare.join("hooks/post-receive");
            std::fs::write(&post, format!("#!/bin/sh\ntouch '{}/done'\n", gate.display())).unwrap();
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&post, std::fs::Permissions::from_mode(0o755)).unwrap();

            let mut lander = repo
                .hybrid_cmd(&repo.root, &["merge", "t1"])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .unwrap();
            wait_for(&gate.join("reached"), "the push reach the server");
            common::kill_9(&mut lander);
            std::fs::write(gate.join("go"), if server_accepts { "accept" } else { "reject" }).unwrap();
            wait_for(&gate.join("done"), "the server finish the push");
            let case = format!("{kind:?}, server accepts: {server_accepts}");
            let squash = server.rev(&repo, "main").unwrap();
            let record = server.rev(&repo, "refs/hybrid/ledger/t1/1");
            assert_eq!(squash != repo.rev("main"), server_accepts, "{case}: the target moved on the remote");
            assert_eq!(record.is_some(), server_accepts, "{case}: the record moved with it");

            // The next run records the landing the killed one published, or lands it now.
            std::fs::remove_file(server.bare.join("hooks/pre-receive")).unwrap();
            std::fs::remove_file(&post).unwrap();
            let rep = repo.hybrid_json(&["merge", "t1"]);
            let sha = rep["merge_sha"].as_str().unwrap();
            assert_eq!(server.rev(&repo, "main").as_deref(), Some(sha), "{case}");
            if server_accepts {
                assert_eq!(sha, squash, "{case}: recorded, not landed twice");
            }
            let log = server_log(&repo, &server);
            assert_eq!(log.len(), 2, "{case}: one squash on the remote: {log:?}");
            assert!(server.rev(&repo, "refs/hybrid/ledger/t1/1").is_some(), "{case}");
            let t = &repo.hybrid_json(&["status", "t1"])["tasks"][0];
            assert_eq!(t["state"], "landed", "{case}: {t}");
            assert_eq!(t["merge_sha"], sha, "{case}");
            assert_eq!(repo.hybrid_json(&["verify", "--all"])["ok"], true, "{case}");
        }
    }
}

/// `agent.sh <file>`: writes the task id into `file` and commits.
/// Runs `git hybrid --json dispatch <args>` on two clones at the same time; both must succeed.
fn dispatch_on_both(runs: [(&TestRepo, &[&str]); 2]) {
    let children: Vec<_> = runs
        .iter()
        .map(|(r, args)| {
            let mut all = vec!["--json", "dispatch"];
            all.extend_from_slice(args);
            let mut c = r.hybrid_cmd(&r.root, &all);
            c.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped());
            c.spawn().unwrap()
        })
        .collect();
    for (child, (r, _)) in children.into_iter().zip(runs) {
        common::assert_ok(&child.wait_with_output().unwrap(), &["dispatch on", &r.root.display().to_string()]);
    }
}

const AGENT: &str = "#!/bin/sh\nmkdir -p \"$(dirname \"$1\")\"\necho \"$HYBRID_TASK_ID\" > \"$1\"\n\
                     git add -A && git commit -q -m \"$HYBRID_TASK_ID: write $1\"\n";

#[test]
fn two_dispatchers_on_two_clones_share_a_plan_each_task_runs_once_and_lands_once() {
    let (a, server) = published(Kind::Daemon);
    let mut plan = "[agent]\ncommand = [\"builtin:script\", \"agent.sh\"]\n".to_string();
    for i in 0..12 {
        let deps = if i >= 8 { format!("depends_on = [\"t{}\"]\n", i - 8) } else { String::new() };
        plan += &format!(
            "\n[[task]]\nid = \"t{i}\"\nprompt = \"do t{i}\"\nagent = [\"builtin:script\", \"agent.sh\", \"out/t{i}.txt\"]\n{deps}"
        );
    }
    a.write("hybrid.toml", &plan);
    a.write("agent.sh", AGENT);
    a.commit_all("plan and agent");
    a.git(&["push", "-q", "origin", "main"]);
    let b = a.clone_from(&server, "b");

    dispatch_on_both([(&a, &["-j", "3"]), (&b, &["-j", "3"])]);

    let log = server_log(&a, &server);
    assert!(log.iter().all(|(_, parents)| parents.len() <= 1), "linear: {log:?}");
    let subjects = a.git_in(&server.bare, &["log", "--format=%(trailers:key=Hybrid-Task,valueonly)", "main"]);
    for i in 0..12 {
        let id = format!("t{i}");
        let landings = subjects.lines().filter(|l| l.trim() == id).count();
        assert_eq!(landings, 1, "{id} landed once on the remote:\n{subjects}");
        assert!(server.rev(&a, &format!("refs/hybrid/ledger/{id}/1")).is_some(), "{id}'s record");
        let ran_on: Vec<&TestRepo> =
            [&a, &b].into_iter().filter(|r| r.root.join(".git/hybrid/runs").join(&id).exists()).collect();
        assert_eq!(ran_on.len(), 1, "{id} ran on exactly one clone");
    }
    assert_eq!(server.rev(&a, "refs/hybrid/claims/t0"), None, "claims are released");
    for r in [&a, &b] {
        let tasks = r.tasks();
        assert_eq!(tasks.iter().filter(|t| t["state"] == "landed").count(), 12, "every landing is known on each clone");
    }
}

#[test]
fn an_expired_claim_is_taken_over_and_released_after_the_landing() {
    let (a, server) = published(Kind::Http);
    a.write(
        "hybrid.toml",
        "[agent]\ncommand = [\"builtin:script\", \"agent.sh\"]\n\n[[task]]\nid = \"t0\"\nprompt = \"do t0\"\n\
         agent = [\"builtin:script\", \"agent.sh\", \"out/t0.txt\"]\n",
    );
    a.write("agent.sh", AGENT);
    a.commit_all("plan and agent");
    a.git(&["push", "-q", "origin", "main"]);
    // A dispatcher on another machine claimed t0 and died long ago.
    let blob = {
        let mut cmd = std::process::Command::new("git");
        cmd.args(["hash-object", "-w", "--stdin"]).current_dir(&a.root);
        a.env(&mut cmd);
        cmd.stdin(std::process::Stdio::piped()).stdout(std::process::Stdio::piped());
        let mut child = cmd.spawn().unwrap();
        use std::io::Write;
        child.stdin.take().unwrap().write_all(br#"{"task":"t0","machine":"gone","pid":1,"expires":1}"#).unwrap();
        String::from_utf8(child.wait_with_output().unwrap().stdout).unwrap().trim().to_string()
    };
    a.git(&["push", "-q", "origin", &format!("{blob}:refs/hybrid/claims/t0")]);
    let out = a.hybrid(&["--json", "dispatch"]);
    common::assert_ok(&out, &["dispatch"]);
    let rep: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(rep["tasks"][0]["state"], "landed", "{rep}");
    assert_eq!(server.rev(&a, "refs/hybrid/claims/t0"), None, "the claim is released after the landing");
}

#[test]
fn a_lander_killed_right_after_its_push_is_recorded_by_the_next_run() {
    let (repo, server) = published(Kind::Daemon);
    repo.task_with_commit("t1", "a.txt");
    repo.kill_at(&["merge", "t1"], "land::published");
    let squash = server.rev(&repo, "main").unwrap();
    assert_ne!(squash, repo.rev("main"), "published, not moved here yet");
    assert!(server.rev(&repo, "refs/hybrid/ledger/t1/1").is_some());
    let rep = repo.hybrid_json(&["merge", "t1"]);
    assert_eq!(rep["merge_sha"], squash.as_str(), "recorded, not landed twice: {rep}");
    assert_eq!(server_log(&repo, &server).len(), 2);
    assert_eq!(repo.hybrid_json(&["status", "t1"])["tasks"][0]["state"], "landed");
    // The local target and the checkout caught up with the published landing.
    assert_eq!(repo.rev("main"), squash);
    assert_eq!(repo.read("a.txt"), "t1\n");
    assert_eq!(repo.porcelain(&repo.root), "");
}

#[test]
fn a_user_push_between_fetch_and_push_loses_the_lease_and_the_landing_retries() {
    for kind in [Kind::Daemon, Kind::Http] {
        let (repo, server) = published(kind);
        let user = repo.clone_from(&server, "user");
        repo.task_with_commit("t1", "a.txt");
        // The landing has fetched and built its squash; the user pushes before it publishes.
        let paused = repo.pause_at(&["--json", "merge", "t1"], "land::note_written@1");
        user.write("u.txt", "user\n");
        let theirs = user.commit_all("user work");
        user.git(&["push", "-q", "origin", "main"]);
        let out = paused.resume();
        common::assert_ok(&out, &["merge", "t1"]);
        let rep: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let log = server_log(&repo, &server);
        assert_eq!(log.len(), 3, "{kind:?}: {log:?}");
        assert_eq!(log[0].0, rep["merge_sha"].as_str().unwrap(), "{kind:?}");
        assert_eq!(log[0].1, vec![theirs], "{kind:?}: recomputed on the user's push, never forced over it");
        assert_eq!(repo.read("u.txt"), "user\n");
    }
}

/// The CI job (`.github/workflows/hybrid-verify.yml`, `docs/ci/gitlab-ci.yml`): a plain clone that
/// fetches `refs/hybrid/tips/*` and `refs/hybrid/ledger/*` with git alone verifies every landing
/// against the published ledger; an amended squash pushed over it (same trailers, same tree)
/// fails, because the record published with the landing names another commit.
#[test]
fn the_ci_job_verifies_pushed_landings_against_the_published_ledger() {
    let (repo, server) = published(Kind::Daemon);
    repo.task_with_commit("t1", "a.txt");
    repo.hybrid_ok(&["merge", "t1"]);
    let ci_fetch = [
        "fetch",
        "--no-tags",
        "origin",
        "+refs/hybrid/tips/*:refs/hybrid/tips/*",
        "+refs/hybrid/ledger/*:refs/hybrid/ledger/*",
    ];
    // The shipped jobs fetch exactly these.
    for job in [".github/workflows/hybrid-verify.yml", "docs/ci/gitlab-ci.yml"] {
        let text = std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(job)).unwrap();
        for spec in &ci_fetch[3..] {
            assert!(text.contains(&format!("'{spec}'")), "{job} does not fetch {spec}");
        }
    }
    let ci = repo.clone_from(&server, "ci");
    ci.git(&ci_fetch);
    let v = ci.hybrid_json(&["verify", "--all"]);
    assert_eq!((v["ok"].clone(), v["warnings"].clone()), (serde_json::json!(true), serde_json::json!(0)), "{v}");

    // Someone amends the landed squash (a new subject, trailers and tree kept) and force-pushes.
    let other = repo.clone_from(&server, "other");
    let message = other.git(&["log", "-1", "--format=%B", "main"]);
    let amended = message.replacen("git-hybrid", "amended", 1);
    let amended = if amended == message { format!("amended: {message}") } else { amended };
    other.git(&["commit", "-q", "--amend", "-m", &amended]);
    other.git(&["push", "-q", "-f", "origin", "main"]);
    let ci2 = repo.clone_from(&server, "ci2");
    ci2.git(&ci_fetch);
    let out = ci2.hybrid(&["--json", "verify", "--all"]);
    common::assert_code(&out, 1);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(v.to_string().contains("the published ledger"), "{v}");
}

/// File claims across machines (issue 13 item 3): four tasks that all touch `shared/**`, run by
/// two dispatchers on two clones, never run two at a time, and each lands once.
#[test]
fn two_dispatchers_never_run_overlapping_tasks_at_the_same_time() {
    let (a, server) = published(Kind::Daemon);
    let log = a.base().join("runs.log");
    let agent = format!(
        "#!/bin/sh\necho \"start $HYBRID_TASK_ID\" >> '{log}'\nsleep 0.3\nmkdir -p shared\n\
         echo \"$HYBRID_TASK_ID\" > \"shared/$HYBRID_TASK_ID.txt\"\n\
         git add -A && git commit -q -m \"$HYBRID_TASK_ID\"\necho \"end $HYBRID_TASK_ID\" >> '{log}'\n",
        log = log.display()
    );
    a.write("hybrid.toml", "[agent]\ncommand = [\"builtin:script\", \"agent.sh\"]\nsandbox = \"off\"\n");
    a.write("agent.sh", &agent);
    a.commit_all("agent");
    a.git(&["push", "-q", "origin", "main"]);
    let b = a.clone_from(&server, "b");
    // One plan, in opposite priority orders on the two machines: each starts with another task.
    for (r, name, sign) in [(&a, "plan-a.toml", 1), (&b, "plan-b.toml", -1)] {
        let mut plan = String::new();
        for i in 0..4 {
            plan += &format!(
                "[[task]]\nid = \"s{i}\"\nprompt = \"do s{i}\"\ntouches = [\"shared/**\"]\npriority = {}\n\n",
                sign * i
            );
        }
        std::fs::write(r.base().join(name), plan).unwrap();
    }
    let (plan_a, plan_b) = (a.base().join("plan-a.toml"), b.base().join("plan-b.toml"));
    dispatch_on_both([
        (&a, &["-j", "2", "--plan", plan_a.to_str().unwrap()]),
        (&b, &["-j", "2", "--plan", plan_b.to_str().unwrap()]),
    ]);

    let runs = std::fs::read_to_string(&log).unwrap();
    let mut running: Option<&str> = None;
    for line in runs.lines() {
        match line.split_once(' ') {
            Some(("start", id)) => {
                assert!(running.is_none(), "{id} started while {running:?} ran:\n{runs}");
                running = Some(id);
            }
            Some(("end", id)) => {
                assert_eq!(running, Some(id), "{runs}");
                running = None;
            }
            _ => panic!("{runs}"),
        }
    }
    let subjects = a.git_in(&server.bare, &["log", "--format=%(trailers:key=Hybrid-Task,valueonly)", "main"]);
    for i in 0..4 {
        let id = format!("s{i}");
        assert_eq!(subjects.lines().filter(|l| l.trim() == id).count(), 1, "{id} landed once:\n{subjects}");
    }
    assert_eq!(runs.lines().filter(|l| l.starts_with("start")).count(), 4, "each ran once:\n{runs}");
}
