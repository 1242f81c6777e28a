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
