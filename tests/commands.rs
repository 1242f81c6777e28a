//! The commands users reached for (issue 14): `diff`, `list`, `path`, `shell-init`, `archive`,
//! through the real binary on hermetic repositories.

mod common;

use std::process::Command;

use common::{assert_code, assert_ok, stderr, stdout, TestRepo};
use serde_json::Value;

/// Starts task `id` and commits `files` (path, content) in its worktree.
fn task_with(r: &TestRepo, id: &str, files: &[(&str, &str)]) {
    r.hybrid_ok(&["start", id]);
    for (p, c) in files {
        common::write_file(&r.task_dir(id).join(p), c);
    }
    r.commit_all_in(&r.task_dir(id), &format!("{id} work"));
}

/// Runs `git-hybrid <args>` under a pseudo-terminal (`script`), so stdout is a terminal.
fn on_a_tty(r: &TestRepo, args: &str, env: &[(&str, &str)]) -> String {
    let bin = env!("CARGO_BIN_EXE_git-hybrid");
    let mut cmd = Command::new("script");
    cmd.args(["-qec", &format!("{bin} {args}"), "/dev/null"]).current_dir(&r.root);
    r.env(&mut cmd);
    cmd.env_remove("GIT_PAGER").env_remove("PAGER");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("script (util-linux) runs a command under a pty");
    assert_ok(&out, &["script", args]);
    stdout(&out).replace("\r\n", "\n")
}

#[test]
fn diff_shows_what_would_land_against_the_caught_up_target() {
    let r = TestRepo::new();
    task_with(&r, "t1", &[("a.txt", "mine\n")]);
    task_with(&r, "other", &[("b.txt", "theirs\n")]);
    task_with(&r, "t2", &[("b.txt", "rival\n")]);
    r.hybrid_ok(&["merge", "other"]);
    // t1 never synced: its diff is against main as it is now, without b.txt showing as deleted.
    let text = r.hybrid_ok(&["diff", "t1"]);
    assert!(text.contains("+++ b/a.txt") && text.contains("+mine"), "{text}");
    assert!(!text.contains("b.txt"), "the target's newer work shows as removed: {text}");
    let stat = r.hybrid_ok(&["diff", "t1", "--stat"]);
    assert!(stat.contains("a.txt | 1 +") && stat.contains("1 file changed, 1 insertion(+)"), "{stat}");
    let doc = r.hybrid_json(&["diff", "t1"]);
    assert_eq!(doc["status"], "clean");
    assert_eq!(doc["target_tip"], r.rev("main").as_str());
    assert_eq!(
        doc["files"],
        serde_json::json!([{"path": "a.txt", "status": "added", "insertions": 1, "deletions": 0}])
    );
    assert!(doc["patch"].as_str().unwrap().contains("+mine"), "{doc}");
    // Nothing moved.
    let before = r.refs_snapshot();
    r.hybrid_ok(&["diff", "t1@1"]);
    assert_eq!(r.refs_snapshot(), before);

    // A conflict is an answer (exit 3) naming the paths.
    let out = r.hybrid(&["diff", "t2"]);
    assert_code(&out, 3);
    assert!(stdout(&out).contains("conflict: b.txt"), "{}", stdout(&out));
    let out = r.hybrid(&["--json", "diff", "t2"]);
    assert_code(&out, 3);
    let doc: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(doc["conflicts"], serde_json::json!(["b.txt"]));
    assert_eq!(doc["exit_code"], 3);

    // Bad input: exit 2, JSON errors.
    assert_code(&r.hybrid(&["diff", "nope"]), 2);
    assert_code(&r.hybrid(&["diff", "t1@7"]), 2);
    let out = r.hybrid(&["--json", "diff", "-bad"]);
    assert_code(&out, 2);
    assert!(serde_json::from_str::<Value>(stderr(&out).trim()).is_ok(), "{}", stderr(&out));
}

#[test]
fn diff_follows_gits_pager_and_colour_conventions() {
    let r = TestRepo::new();
    task_with(&r, "t1", &[("a.txt", "mine\n")]);
    let pager = [("GIT_PAGER", "sed s/^/PAGED:/")];
    // On a terminal: paged; piped: not; --no-pager: not.
    assert!(on_a_tty(&r, "diff t1", &pager).contains("PAGED:+mine"));
    let mut piped = r.hybrid_cmd(&r.root, &["diff", "t1"]);
    piped.env("GIT_PAGER", "sed s/^/PAGED:/");
    let text = stdout(&piped.output().unwrap());
    assert!(text.contains("+mine") && !text.contains("PAGED:"), "{text}");
    let text = on_a_tty(&r, "diff --no-pager t1", &pager);
    assert!(text.contains("+mine") && !text.contains("PAGED:"), "{text}");
    // git's own `--no-pager` reaches us (git sets GIT_PAGER=cat for the command it runs).
    let bindir = std::path::Path::new(env!("CARGO_BIN_EXE_git-hybrid")).parent().unwrap().display().to_string();
    let path = format!("{bindir}:{}", std::env::var("PATH").unwrap());
    let mut git = Command::new("script");
    git.args(["-qec", "git --no-pager hybrid diff t1", "/dev/null"]).current_dir(&r.root);
    r.env(&mut git);
    git.env("PATH", &path).env("GIT_PAGER", "sed s/^/PAGED:/");
    let text = stdout(&git.output().unwrap());
    assert!(text.contains("+mine") && !text.contains("PAGED:"), "{text}");
    // `git -p hybrid diff`: git pages; we do not page again, and colour `auto` is on.
    let mut git = Command::new("script");
    git.args(["-qec", "git -p hybrid diff t1", "/dev/null"]).current_dir(&r.root);
    r.env(&mut git);
    git.env("PATH", &path).env("GIT_PAGER", "sed s/^/PAGED:/").env_remove("NO_COLOR");
    let text = stdout(&git.output().unwrap());
    assert!(text.contains("PAGED:\x1b[32m") && !text.contains("PAGED:PAGED:"), "{text:?}");
    // PAGER when GIT_PAGER is unset; `cat` is no pager.
    assert!(on_a_tty(&r, "diff t1", &[("PAGER", "sed s/^/P2:/")]).contains("P2:+mine"));
    // core.pager from the repository's own config (agents can write it) never runs.
    r.git(&["config", "core.pager", "touch pwned; sed s/^/REPO:/"]);
    let text = on_a_tty(&r, "diff t1", &[("PAGER", "sed s/^/P3:/")]);
    assert!(text.contains("P3:+mine") && !text.contains("REPO:"), "{text}");
    assert!(!r.root.join("pwned").exists());

    // Colour: NO_COLOR (the test default) wins; color.ui=always colours even a pipe;
    // --color never wins over it.
    assert!(!stdout(&r.hybrid(&["diff", "t1"])).contains('\x1b'));
    r.git(&["config", "color.ui", "always"]);
    let mut cmd = r.hybrid_cmd(&r.root, &["diff", "t1"]);
    cmd.env_remove("NO_COLOR");
    assert!(stdout(&cmd.output().unwrap()).contains("\x1b[32mmine"));
    let mut cmd = r.hybrid_cmd(&r.root, &["--color", "never", "diff", "t1"]);
    cmd.env_remove("NO_COLOR");
    assert!(!stdout(&cmd.output().unwrap()).contains('\x1b'));
    // auto on a terminal colours; in JSON never.
    r.git(&["config", "color.ui", "auto"]);
    let text = on_a_tty(&r, "diff --no-pager t1", &[("NO_COLOR", "")]);
    assert!(text.contains("\x1b[32mmine"), "{text:?}");
    let doc = r.hybrid_json(&["--color", "always", "diff", "t1"]);
    assert!(!doc["patch"].as_str().unwrap().contains('\x1b'));
}

#[test]
fn list_shows_live_tasks_with_ahead_behind_and_dirty() {
    let r = TestRepo::new();
    task_with(&r, "t1", &[("a.txt", "a\n")]);
    task_with(&r, "t2", &[("b.txt", "b\n")]);
    task_with(&r, "gone", &[("g.txt", "g\n")]);
    r.hybrid_ok(&["merge", "gone"]); // landed and removed: not live
    common::write_file(&r.task_dir("t2").join("scratch.txt"), "uncommitted\n");
    r.hybrid_ok(&["start", "idle"]);

    let doc = r.hybrid_json(&["list"]);
    let rows = doc["tasks"].as_array().unwrap();
    let ids: Vec<&str> = rows.iter().map(|t| t["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["idle", "t1", "t2"], "{doc}");
    let row = |id: &str| rows.iter().find(|t| t["id"] == id).unwrap();
    assert_eq!(row("t1")["ahead"], 1);
    assert_eq!(row("t1")["behind"], 1, "main moved by `gone`: {doc}");
    assert_eq!(row("t1")["dirty"], false);
    assert_eq!(row("t2")["dirty"], true);
    assert_eq!(row("idle")["ahead"], 0);
    assert_eq!(row("t1")["worktree"], r.task_dir("t1").to_str().unwrap());
    assert_eq!(row("t1")["branch"], "hybrid/t1");
    assert_eq!(row("t1")["state"], "ready");

    let text = r.hybrid_ok(&["list"]);
    let line = |id: &str| {
        text.lines().find(|l| l.starts_with(&format!("{id} "))).unwrap_or_else(|| panic!("{text}")).to_string()
    };
    assert!(line("t1").contains("+1 -1") && line("t1").contains("clean"), "{text}");
    assert!(line("t2").contains("dirty") && line("t2").contains(r.task_dir("t2").to_str().unwrap()), "{text}");
    assert!(!text.contains("gone"), "{text}");
    // Outside a repository: exit 2.
    let out = r.hybrid_in(&r.base(), &["list"]);
    assert_code(&out, 2);
}

#[test]
fn path_prints_a_worktree_and_shell_init_changes_to_it() {
    let r = TestRepo::new();
    task_with(&r, "t1", &[("a.txt", "a\n")]);
    assert_eq!(r.hybrid_ok(&["path", "t1"]).trim(), r.task_dir("t1").to_str().unwrap());
    assert_eq!(r.hybrid_ok(&["path"]).trim(), r.root.to_str().unwrap());
    // From inside another worktree too.
    let out = r.hybrid_in(&r.task_dir("t1"), &["path"]);
    assert_eq!(stdout(&out).trim(), r.root.to_str().unwrap());
    let doc = r.hybrid_json(&["path", "t1@1"]);
    assert_eq!(doc["path"], r.task_dir("t1").to_str().unwrap());
    assert_eq!(doc["attempt"], 1);
    assert_code(&r.hybrid(&["path", "nope"]), 2);
    assert_code(&r.hybrid(&["path", "t1@2"]), 2);
    r.hybrid_ok(&["merge", "t1"]);
    let out = r.hybrid(&["--json", "path", "t1"]);
    assert_code(&out, 2);
    let err: Value = serde_json::from_str(stderr(&out).trim()).unwrap();
    assert!(err["error"].as_str().unwrap().contains("has no worktree"), "{err}");

    for shell in ["bash", "zsh", "fish"] {
        let script = r.hybrid_ok(&["shell-init", shell]);
        assert!(script.contains("hcd") && script.contains("git-hybrid path"), "{script}");
    }
    assert!(r.hybrid_ok(&["shell-init", "bash", "--cmd", "wcd"]).contains("wcd()"));
    assert_code(&r.hybrid(&["shell-init", "bash", "--cmd", "rm -rf /"]), 2);
    assert_code(&r.hybrid(&["shell-init", "tcsh"]), 2);
}

#[test]
fn archive_hides_finished_tasks_from_status_and_list() {
    let r = TestRepo::new();
    task_with(&r, "done1", &[("a.txt", "a\n")]);
    r.hybrid_ok(&["merge", "done1"]);
    task_with(&r, "done2", &[("b.txt", "b\n")]);
    r.hybrid_ok(&["merge", "done2", "--keep"]);
    task_with(&r, "open", &[("c.txt", "c\n")]);
    let ledger_before: Vec<Value> = r.tasks();

    let doc = r.hybrid_json(&["archive", "--landed"]);
    assert_eq!(doc["archived"], serde_json::json!(["done1", "done2"]));
    let st = r.hybrid_json(&["status"]);
    let ids: Vec<&str> = st["tasks"].as_array().unwrap().iter().map(|t| t["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["open"], "{st}");
    assert_eq!(st["archived_hidden"], 2);
    let text = r.hybrid_ok(&["status"]);
    assert!(text.contains("archived tasks hidden") && !text.contains("done1"), "{text}");
    // Kept in the ledger: --all and naming the task show them, unchanged but for the stamp.
    let all = r.hybrid_json(&["status", "--all"]);
    assert_eq!(all["tasks"].as_array().unwrap().len(), 3);
    let d1 = all["tasks"].as_array().unwrap().iter().find(|t| t["id"] == "done1").unwrap().clone();
    assert!(d1["archived"].is_string(), "{d1}");
    let mut before = ledger_before.iter().find(|t| t["id"] == "done1").unwrap().clone();
    let mut after = d1.clone();
    for k in ["archived", "updated", "elapsed_secs"] {
        before.as_object_mut().unwrap().remove(k);
        after.as_object_mut().unwrap().remove(k);
    }
    assert_eq!(before, after);
    assert_eq!(r.hybrid_json(&["status", "done2"])["tasks"][0]["id"], "done2");
    // `list` hides done2 although its worktree is kept.
    let list = r.hybrid_json(&["list"]);
    assert_eq!(list["tasks"].as_array().unwrap().len(), 1, "{list}");
    // Again: nothing to do; --undo brings a task back.
    assert_eq!(r.hybrid_json(&["archive", "done1"])["unchanged"], serde_json::json!(["done1"]));
    r.hybrid_ok(&["archive", "--undo", "done2"]);
    assert_eq!(r.hybrid_json(&["list"])["tasks"].as_array().unwrap().len(), 2);
    // Bad input changes nothing: an unknown task among known ones, no task at all.
    let out = r.hybrid(&["archive", "open", "nope"]);
    assert_code(&out, 2);
    assert!(r.hybrid_json(&["status", "open"])["tasks"][0]["archived"].is_null());
    assert_code(&r.hybrid(&["archive"]), 2);
    // A task whose agent is running is refused (exit 3), and nothing is archived.
    let rec = r.root.join(".git/hybrid/ledger/open/1.json");
    let text = std::fs::read_to_string(&rec).unwrap().replace("\"state\": \"ready\"", "\"state\": \"running\"");
    std::fs::write(&rec, text).unwrap();
    let out = r.hybrid(&["archive", "done2", "open"]);
    assert_code(&out, 3);
    assert!(stderr(&out).contains("open attempt 1 is running"), "{}", stderr(&out));
    assert!(r.hybrid_json(&["status", "done2"])["tasks"][0]["archived"].is_null());
    let out = r.hybrid(&["--json", "archive", "--landed", "open"]);
    assert_code(&out, 2);
}

/// Waits (bounded, a liveness check) until `f` holds.
fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    for _ in 0..1200 {
        if f() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    panic!("timed out waiting for {what}");
}

#[test]
fn logs_shows_and_follows_the_latest_run() {
    use std::io::BufRead;
    let r = TestRepo::new();
    let release = r.holding_plan();
    assert_code(&r.hybrid(&["logs", "nope"]), 2);
    let log = std::fs::File::create(r.base().join("dispatch.err")).unwrap();
    let mut dispatcher =
        r.hybrid_cmd(&r.root, &["dispatch"]).stdout(std::process::Stdio::null()).stderr(log).spawn().unwrap();
    let progress = r.root.join(".git/hybrid/runs/h/1/1/progress.md");
    wait_until("the agent to note progress", || progress.exists());

    let text = r.hybrid_ok(&["logs", "h"]);
    assert!(text.starts_with("==> h attempt 1 (running), run 1: running;"), "{text}");
    assert!(text.contains("--- progress.md ---\nreading the code\n"), "{text}");

    let mut follow = r.hybrid_cmd(&r.root, &["logs", "h", "-f"]).stdout(std::process::Stdio::piped()).spawn().unwrap();
    let mut lines = std::io::BufReader::new(follow.stdout.take().unwrap()).lines();
    let mut seen = String::new();
    for line in lines.by_ref() {
        let line = line.unwrap();
        seen.push_str(&line);
        seen.push('\n');
        if line == "reading the code" {
            break;
        }
    }
    std::fs::write(&release, "").unwrap();
    // `logs -f` ends by itself once the attempt stops running.
    for line in lines {
        seen.push_str(&line.unwrap());
        seen.push('\n');
    }
    assert!(follow.wait().unwrap().success());
    assert!(dispatcher.wait().unwrap().success());
    assert!(seen.contains("after release"), "{seen}");
    assert!(seen.contains("--- stderr.log ---\na warning"), "{seen}");

    let doc = r.hybrid_json(&["logs", "h", "-n", "1"]);
    assert_eq!(doc["state"], "landed");
    assert_eq!(doc["run"], 1);
    assert_eq!(doc["files"]["stdout.log"], "after release\n");
    assert_eq!(doc["files"]["progress.md"], "reading the code\n");
    assert!(doc["files"]["blocked.md"].is_null());
}

#[test]
fn worktree_copy_brings_ignored_files_in_as_copies_never_links() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let r = TestRepo::new();
    let outside = r.base().join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    std::os::unix::fs::symlink(&outside, r.root.join("conf")).unwrap(); // tracked symlink
    r.write(".gitignore", ".env\nsecrets/\nlink.env\n");
    r.write(
        "hybrid.toml",
        "[worktree]\ncopy = [\".env\", \"secrets/\", \"link.env\", \"README.md\", \"missing.txt\", \"conf/x\"]\n",
    );
    r.commit_all("config");
    r.write(".env", "TOKEN=local\n");
    std::fs::set_permissions(r.root.join(".env"), std::fs::Permissions::from_mode(0o600)).unwrap();
    r.write("secrets/a.txt", "a\n");
    r.write("secrets/sub/b.txt", "b\n");
    std::os::unix::fs::symlink("/etc/passwd", r.root.join("secrets/evil")).unwrap();
    std::os::unix::fs::symlink(".env", r.root.join("link.env")).unwrap();
    r.write("README.md", "my local edit\n");

    let out = r.hybrid(&["start", "t1"]);
    assert_ok(&out, &["start"]);
    let wt = r.task_dir("t1");
    let env = std::fs::symlink_metadata(wt.join(".env")).unwrap();
    assert!(env.file_type().is_file(), "a copy, not a link");
    assert_ne!(env.ino(), std::fs::metadata(r.root.join(".env")).unwrap().ino(), "not a hard link");
    assert_eq!(env.permissions().mode() & 0o777, 0o600);
    assert_eq!(std::fs::read_to_string(wt.join(".env")).unwrap(), "TOKEN=local\n");
    assert_eq!(std::fs::read_to_string(wt.join("secrets/sub/b.txt")).unwrap(), "b\n");
    assert!(wt.join("secrets/a.txt").is_file());
    assert!(std::fs::symlink_metadata(wt.join("secrets/evil")).is_err(), "a symlink was copied");
    assert!(std::fs::symlink_metadata(wt.join("link.env")).is_err(), "a symlink was copied");
    assert_eq!(std::fs::read_to_string(wt.join("README.md")).unwrap(), "hello\n", "a tracked file was overwritten");
    assert!(!outside.join("x").exists());
    let err = stderr(&out);
    for (path, why) in [
        ("link.env", "a symlink"),
        ("secrets/evil", "a symlink"),
        ("README.md", "already in the worktree"),
        ("missing.txt", "not in the main checkout"),
        ("conf/x", "a symlink on its path"),
    ] {
        assert!(err.contains(&format!("{path} not copied: {why}")), "{path}: {err}");
    }
    // The copy is the task's own: editing it leaves the user's file alone, and git ignores it.
    common::write_file(&wt.join(".env"), "TOKEN=agent\n");
    assert_eq!(r.read(".env"), "TOKEN=local\n");
    assert_eq!(r.porcelain(&wt), "");

    // Entries outside the repository are config errors (exit 2), found before anything is made.
    for bad in ["../x", "/etc/passwd", ".git/config", "a/../../b", "~/.ssh/id_rsa"] {
        r.write("hybrid.toml", &format!("[worktree]\ncopy = [{bad:?}]\n"));
        let out = r.hybrid(&["start", "t2"]);
        assert_code(&out, 2);
        assert!(stderr(&out).contains("hybrid.toml:2:"), "{bad}: {}", stderr(&out));
        assert!(!r.task_dir("t2").exists());
    }
}

#[test]
fn filling_a_large_worktree_shows_progress_only_on_a_terminal() {
    let r = TestRepo::new();
    for i in 0..1100 {
        r.write(&format!("src/d{}/f{i}.txt", i % 20), &format!("{i}\n"));
    }
    r.commit_all("many files");
    let text = on_a_tty(&r, "start big", &[]);
    assert!(text.contains("filling the worktree") && text.contains("1101/1101 files"), "{text:?}");
    assert!(text.contains(r.task_dir("big").to_str().unwrap()), "{text:?}");
    // Not on a terminal: no bar, only the path.
    let out = r.hybrid(&["start", "big2"]);
    assert_ok(&out, &["start"]);
    assert!(!stderr(&out).contains("filling"), "{}", stderr(&out));
    assert_eq!(stdout(&out).trim(), r.task_dir("big2").to_str().unwrap());
    // With attributes (git/git has a .gitattributes) libgit2 checks out, with the same bar.
    r.write(".gitattributes", "*.txt text\n");
    r.commit_all("attributes");
    let files = r.git(&["ls-files"]).lines().count();
    let text = on_a_tty(&r, "start big3", &[]);
    assert!(text.contains(&format!("{files}/{files} files")), "{text:?}");
    // dispatch: one bar over the worktrees it fills, on a terminal only.
    r.write("hybrid.toml", "[[task]]\nid = \"d1\"\nprompt = \"x\"\nagent = [\"builtin:script\", \"a.sh\"]\n");
    r.write(
        "a.sh",
        "#!/bin/sh\ncat >/dev/null\necho x > \"$HYBRID_TASK_ID.txt\"\ngit add -A && git commit -q -m \"$HYBRID_TASK_ID\"\n",
    );
    r.commit_all("plan");
    let files = r.git(&["ls-files"]).lines().count();
    let text = on_a_tty(&r, "dispatch", &[]);
    assert!(text.contains(&format!("{files}/{files} files written into new worktrees")), "{text:?}");
    r.write("hybrid.toml", "[[task]]\nid = \"d2\"\nprompt = \"x\"\nagent = [\"builtin:script\", \"a.sh\"]\n");
    r.commit_all("plan 2");
    let out = r.hybrid(&["dispatch"]);
    assert_ok(&out, &["dispatch d2"]);
    assert_eq!(r.hybrid_json(&["status", "d2"])["tasks"][0]["state"], "landed");
    assert!(!stderr(&out).contains("files written"), "{}", stderr(&out));
    // A small worktree gets no bar even on a terminal.
    let small = TestRepo::new();
    let text = on_a_tty(&small, "start s", &[]);
    assert!(!text.contains("filling"), "{text:?}");
}

#[test]
fn stop_ends_a_running_agent_keeps_its_work_and_dispatch_resumes_it() {
    let r = TestRepo::new();
    let release = r.holding_plan();
    let log = std::fs::File::create(r.base().join("dispatch.err")).unwrap();
    let mut dispatcher =
        r.hybrid_cmd(&r.root, &["dispatch"]).stdout(std::process::Stdio::null()).stderr(log).spawn().unwrap();
    let progress = r.root.join(".git/hybrid/runs/h/1/1/progress.md");
    wait_until("the agent to note progress", || progress.exists());
    let meta: Value =
        serde_json::from_str(&std::fs::read_to_string(r.root.join(".git/hybrid/runs/h/1/1/meta.json")).unwrap())
            .unwrap();
    let pgid = meta["pid"].as_i64().unwrap() as i32;
    common::write_file(&r.task_dir("h").join("wip.txt"), "work in progress\n");

    let out = r.hybrid(&["stop", "h"]);
    assert_ok(&out, &["stop"]);
    assert!(stdout(&out).contains("h@1: stopped (agent ended"), "{}", stdout(&out));
    // The dispatcher ends: the attempt did not land; nothing else was retried.
    let status = dispatcher.wait().unwrap();
    assert!(!status.success());
    // `kill -0 -PGID` probes the agent's process group: gone.
    let probe = Command::new("kill").args(["-0", "--", &format!("-{pgid}")]).output().unwrap();
    assert!(!probe.status.success(), "the agent's process group is still alive");
    let st = r.hybrid_json(&["status", "h"]);
    assert_eq!(st["tasks"][0]["state"], "stopped", "{st}");
    assert!(r.task_dir("h").join("wip.txt").exists(), "the worktree was not kept");
    assert!(!r.root.join(".git/hybrid/runs/h/1/2").exists(), "stop was retried");

    // Stopping again, an unknown task, no task: said, and nothing changes.
    assert!(r.hybrid_ok(&["stop", "h"]).contains("h@1: not running (stopped)"));
    assert!(r.hybrid_ok(&["stop", "--all"]).contains("no agent is running"));
    assert_code(&r.hybrid(&["stop", "nope"]), 2);
    assert_code(&r.hybrid(&["stop"]), 2);
    let doc = r.hybrid_json(&["stop", "--all"]);
    assert_eq!(doc["stopped"], serde_json::json!([]));

    // The next dispatch resumes it (with the preamble) and lands it, the uncommitted work too.
    std::fs::write(&release, "").unwrap();
    let out = r.hybrid(&["dispatch"]);
    assert_ok(&out, &["dispatch (resume)"]);
    assert_eq!(r.hybrid_json(&["status", "h"])["tasks"][0]["state"], "landed");
    assert_eq!(r.git(&["show", "main:wip.txt"]), "work in progress");
    let prompt2 = std::fs::read_to_string(r.root.join(".git/hybrid/runs/h/1/2/prompt.md")).unwrap();
    assert!(prompt2.contains("stopped by `git hybrid stop`"), "{prompt2}");
    assert!(!r.root.join(".git/hybrid/runs/h/1/stop").exists());
}

#[test]
fn dispatch_copies_files_and_runs_setup_before_the_agent_hardened() {
    let r = TestRepo::new();
    r.write(".gitignore", ".env\nsetup-saw.txt\n");
    r.write(
        "agent.sh",
        "#!/bin/sh\ncat >/dev/null\n[ -f setup-saw.txt ] || { echo 'setup did not run' >&2; exit 1; }\n\
         echo work > work.txt\ngit add work.txt && git commit -q -m work\n",
    );
    let plan = |setup: &str| {
        format!(
            "[worktree]\ncopy = [\".env\"]\nsetup = {setup:?}\n\
             [[task]]\nid = \"t1\"\nprompt = \"x\"\nagent = [\"builtin:script\", \"agent.sh\"]\n"
        )
    };
    r.write("hybrid.toml", &plan("exit 7"));
    r.commit_all("plan");
    r.write(".env", "TOKEN=local\n");

    // A failing setup: the attempt fails before any agent runs, its output in the run folder.
    let mut cmd = r.hybrid_cmd(&r.root, &["dispatch"]);
    cmd.env("SECRET_X", "do-not-leak");
    let out = cmd.output().unwrap();
    assert_code(&out, 1);
    let run1 = r.root.join(".git/hybrid/runs/t1/1/1");
    assert!(run1.join("setup.log").exists());
    assert!(!run1.join("stdout.log").exists(), "the agent ran after a failed setup");
    let st = r.hybrid_json(&["status", "t1"]);
    assert!(st["tasks"][0]["failure"].as_str().unwrap().contains("setup command"), "{st}");
    assert_eq!(std::fs::read_to_string(r.task_dir("t1").join(".env")).unwrap(), "TOKEN=local\n");

    // A working setup (the next dispatch runs it again): it sees the copied file, not the
    // dispatcher's environment, and runs before the agent.
    r.write("hybrid.toml", &plan("echo preparing; cat .env; echo \"secret=[$SECRET_X]\"; touch setup-saw.txt"));
    r.commit_all("setup fixed");
    let mut cmd = r.hybrid_cmd(&r.root, &["dispatch"]);
    cmd.env("SECRET_X", "do-not-leak");
    let out = cmd.output().unwrap();
    assert_ok(&out, &["dispatch"]);
    let log = std::fs::read_to_string(r.root.join(".git/hybrid/runs/t1/1/2/setup.log")).unwrap();
    assert!(log.contains("preparing\nTOKEN=local\nsecret=[]"), "{log}");
    assert!(!log.contains("do-not-leak"), "{log}");
    assert_eq!(r.hybrid_json(&["status", "t1"])["tasks"][0]["state"], "landed");
    assert!(r.root.join(".git/hybrid/runs/t1/1/setup.done").exists());
    // `logs` shows the setup output.
    assert!(r.hybrid_ok(&["logs", "t1"]).contains("--- setup.log ---\npreparing"));
}
