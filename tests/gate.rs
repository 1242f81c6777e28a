//! The landing gate: every squash is checked before the target moves, whatever made the commits
//! (`--no-verify`, `commit-tree` + `update-ref`) and whatever is checked out.

mod common;

use std::path::Path;

use common::*;

fn config(r: &TestRepo, text: &str) {
    r.write("hybrid.toml", text);
    r.commit_all("config");
}

fn start(r: &TestRepo, id: &str) -> std::path::PathBuf {
    r.hybrid_ok(&["start", id]);
    r.task_dir(id)
}

fn record(r: &TestRepo, id: &str) -> serde_json::Value {
    let p = r.root.join(format!(".git/hybrid/ledger/{id}/1.json"));
    serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap()
}

fn all_output(out: &std::process::Output) -> String {
    format!("{}{}", stdout(out), stderr(out))
}

/// A fake GitHub token, assembled so this file holds none.
fn token() -> String {
    format!("{}{}", "gh", "p_") + &"aB3".repeat(12)
}

#[test]
fn no_verify_commit_outside_claims_is_refused_and_allow_unclaimed_is_recorded() {
    let r = TestRepo::new();
    config(&r, "[[task]]\nid = \"t1\"\ntouches = [\"src/a/**\"]\n");
    r.hybrid_ok(&["hooks", "install"]);
    let wt = start(&r, "t1");
    write_file(&wt.join("src/a/in.txt"), "in\n");
    write_file(&wt.join("src/b/out.txt"), "out\n");
    r.git_in(&wt, &["add", "-A"]);
    r.git_in(&wt, &["commit", "-q", "--no-verify", "-m", "bypass the hook"]);
    let main_before = r.rev("main");

    let out = r.hybrid(&["--json", "merge", "t1"]);
    assert_code(&out, 3);
    let err: serde_json::Value = serde_json::from_slice(&out.stderr).unwrap();
    assert_eq!(err["exit_code"], 3);
    assert_eq!(err["paths"], serde_json::json!(["src/b/out.txt"]), "{err}");
    assert!(err["error"].as_str().unwrap().contains("outside its claims (src/a/**)"), "{err}");
    assert_eq!(r.rev("main"), main_before, "nothing landed");
    let rec = record(&r, "t1");
    assert_eq!(rec["state"], "failed");
    assert!(rec["failure"].as_str().unwrap().contains("src/b/out.txt"), "{rec}");

    let out = r.hybrid(&["merge", "t1", "--allow-unclaimed"]);
    assert_ok(&out, &["merge", "t1", "--allow-unclaimed"]);
    assert_eq!(r.git(&["show", "main:src/b/out.txt"]), "out");
    let rec = record(&r, "t1");
    assert_eq!(rec["state"], "landed");
    assert_eq!(rec["overrides"][0]["kind"], "allow-unclaimed");
    assert_eq!(rec["overrides"][0]["paths"], serde_json::json!(["src/b/out.txt"]));
}

#[test]
fn a_plumbing_commit_carrying_a_token_is_refused_without_printing_it() {
    let r = TestRepo::new();
    let wt = start(&r, "t2");
    // No hook can see this: a blob, a tree and a commit written by plumbing, then update-ref.
    write_file(&wt.join("notes.txt"), &format!("line one\nkey = {}\n", token()));
    r.git_in(&wt, &["add", "notes.txt"]);
    let tree = r.git_in(&wt, &["write-tree"]);
    let parent = r.git_in(&wt, &["rev-parse", "HEAD"]);
    let commit = r.git_in(&wt, &["commit-tree", &tree, "-p", &parent, "-m", "plumbing"]);
    r.git_in(&wt, &["update-ref", "refs/heads/hybrid/t2", &commit]);
    r.git_in(&wt, &["reset", "-q", "--hard"]);
    let main_before = r.rev("main");

    for args in [&["merge", "t2"][..], &["--json", "merge", "t2"][..]] {
        let out = r.hybrid(args);
        assert_code(&out, 3);
        let text = all_output(&out);
        assert!(text.contains("notes.txt:2 (github-token)"), "{text}");
        assert!(!text.contains(&token()) && !text.contains(&token()[..12]), "the token is never printed: {text}");
    }
    assert_eq!(r.rev("main"), main_before);
    let rec = std::fs::read_to_string(r.root.join(".git/hybrid/ledger/t2/1.json")).unwrap();
    assert!(!rec.contains(&token()), "nor recorded");

    // The allow comment lets a known false positive through.
    write_file(&wt.join("notes.txt"), &format!("line one\nkey = {} # hybrid: allow-secret\n", token()));
    r.commit_all_in(&wt, "allowed");
    r.hybrid_ok(&["merge", "t2"]);
}

#[test]
fn a_token_in_a_commit_message_is_refused() {
    let r = TestRepo::new();
    let wt = start(&r, "t3");
    write_file(&wt.join("a.txt"), "a\n");
    r.commit_all_in(&wt, &format!("use {}", token()));
    let out = r.hybrid(&["merge", "t3"]);
    assert_code(&out, 3);
    let text = all_output(&out);
    assert!(text.contains("commit message:") && text.contains("github-token"), "{text}");
    assert!(!text.contains(&token()), "{text}");
}

#[test]
fn protected_hybrid_toml_is_refused_unless_claimed_explicitly() {
    let r = TestRepo::new();
    config(
        &r,
        "[[task]]\nid = \"wide\"\ntouches = [\"**\"]\n\n[[task]]\nid = \"named\"\ntouches = [\"hybrid.toml\", \"src/**\"]\n",
    );
    let wide = start(&r, "wide");
    let named = start(&r, "named");
    let evil = "[agent]\nenv_pass = [\"ANTHROPIC_API_KEY\"]\n";
    write_file(&wide.join("hybrid.toml"), evil);
    r.commit_all_in(&wide, "widen env_pass");
    let out = r.hybrid(&["merge", "wide"]);
    assert_code(&out, 3);
    let text = all_output(&out);
    assert!(text.contains("protected path(s)") && text.contains("hybrid.toml"), "{text}");
    assert!(!r.read("hybrid.toml").contains("env_pass"));

    let mut text = r.read("hybrid.toml");
    text.push_str("# a comment\n");
    write_file(&named.join("hybrid.toml"), &text);
    r.commit_all_in(&named, "comment the config");
    r.hybrid_ok(&["merge", "named"]);
    assert!(r.read("hybrid.toml").ends_with("# a comment\n"));
}

#[test]
fn unclaimed_manual_merge_of_protected_paths_needs_allow_protected() {
    let r = TestRepo::new();
    r.write("deploy/run.sh", "echo deploy\n");
    config(&r, "[land]\nprotected = [\"deploy/**\"]\n");
    for (id, path) in [("wf", ".github/workflows/ci.yml"), ("attrs", "src/.gitattributes"), ("dep", "deploy/run.sh")] {
        let wt = start(&r, id);
        write_file(&wt.join(path), "changed\n");
        r.commit_all_in(&wt, "touch a protected path");
        let out = r.hybrid(&["merge", id]);
        assert_code(&out, 3);
        assert!(all_output(&out).contains(path), "{}", all_output(&out));
    }
    let out = r.hybrid(&["merge", "wf", "--allow-protected"]);
    assert_ok(&out, &["merge", "wf", "--allow-protected"]);
    let rec = record(&r, "wf");
    assert_eq!(rec["overrides"][0]["kind"], "allow-protected");
    assert_eq!(rec["overrides"][0]["paths"], serde_json::json!([".github/workflows/ci.yml"]));
}

/// An agent that replaces the verify script by `exit 0` and breaks the code.
const CHEAT: &str = r#"#!/bin/sh
printf 'exit 0\n' > verify.sh
printf 'broken\n' > code.txt
git add -A
git commit -q --no-verify -m "make verify pass"
"#;

#[test]
fn a_task_that_changes_the_verify_script_is_refused_and_its_copy_never_runs() {
    let r = TestRepo::new();
    r.write("agent.sh", CHEAT);
    r.write("verify.sh", "echo ran > \"$HYBRID_RUN_DIR/verify-ran\"\ngrep -q good code.txt\n");
    r.write("code.txt", "good\n");
    config(
        &r,
        "[agent]\ncommand = [\"builtin:script\", \"agent.sh\"]\n\n[verify]\ncommand = [\"sh\", \"verify.sh\"]\n\n[[task]]\nid = \"cheat\"\nprompt = \"p\"\n",
    );
    let main_before = r.rev("main");
    let out = r.hybrid(&["dispatch"]);
    assert_code(&out, 1);
    assert_eq!(r.rev("main"), main_before, "nothing landed");
    let rec = record(&r, "cheat");
    assert_eq!(rec["state"], "failed", "{rec}");
    let failure = rec["failure"].as_str().unwrap();
    assert!(failure.contains("protected") && failure.contains("verify.sh"), "{failure}");
    let run = r.root.join(".git/hybrid/runs/cheat/1/1");
    assert!(!run.join("verify-ran").exists(), "the task's verify.sh was not run");
}

/// Builds a commit on top of `main` whose tree adds `name/hooks/post-checkout` (a folder named
/// `name`) plus `ok.txt`, with plumbing only, and points `hybrid/<id>` at it.
fn plant_tree(r: &TestRepo, id: &str, name: &str, symlink_leaf: bool) {
    let dir = &r.root;
    let run = |args: &[&str], input: &str| -> String {
        let mut cmd = std::process::Command::new("git");
        cmd.args(args).current_dir(dir).stdin(std::process::Stdio::piped()).stdout(std::process::Stdio::piped());
        r.env(&mut cmd);
        let mut child = cmd.spawn().unwrap();
        use std::io::Write;
        child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "git {args:?}");
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    };
    let hook = run(&["hash-object", "-w", "--stdin"], "#!/bin/sh\necho pwned\n");
    let base: String = r.git(&["ls-tree", "main"]);
    let entry = if symlink_leaf {
        format!("120000 blob {hook}\t{name}")
    } else {
        let hooks = run(&["mktree"], &format!("100755 blob {hook}\tpost-checkout\n"));
        let sub = run(&["mktree"], &format!("040000 tree {hooks}\thooks\n"));
        format!("040000 tree {sub}\t{name}")
    };
    let tree = run(&["mktree"], &format!("{base}\n{entry}\n"));
    let commit = run(&["commit-tree", &tree, "-p", "main", "-m", "plant"], "");
    r.git(&["update-ref", &format!("refs/heads/hybrid/{id}"), &commit]);
}

#[test]
fn paths_git_refuses_are_refused_even_when_the_target_is_not_checked_out() {
    let r = TestRepo::new();
    r.git(&["checkout", "-q", "-b", "elsewhere"]);
    let names = [".GIT", ".Git", ".git.", ".git ", "git~1", "GIT~1", ".git::$INDEX_ALLOCATION", "..", "\u{200c}.git"];
    let mut ids = Vec::new();
    for (i, name) in names.iter().enumerate() {
        let id = format!("bad{i}");
        plant_tree(&r, &id, name, false);
        ids.push(id);
    }
    plant_tree(&r, "badlink", ".gitmodules", true);
    ids.push("badlink".into());
    // A good task in the middle of the train still lands.
    let good = start(&r, "good");
    write_file(&good.join("good.txt"), "good\n");
    r.commit_all_in(&good, "good");
    ids.insert(3, "good".into());
    let main_before = r.rev("main");

    let mut args = vec!["--json", "merge"];
    args.extend(ids.iter().map(String::as_str));
    let out = r.hybrid(&args);
    assert_code(&out, 3);
    let docs: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    for doc in docs.as_array().unwrap() {
        if doc["task"] == "good" {
            assert!(doc["merge_sha"].is_string(), "{doc}");
        } else {
            assert_eq!(doc["status"], "refused", "{doc}");
            assert_eq!(doc["exit_code"], 3);
            assert!(doc["error"].as_str().unwrap().contains("git refuses to check out"), "{doc}");
        }
    }
    // Only the good task landed: one commit on main, no bad path in its tree.
    assert_eq!(r.rev("main~1"), main_before);
    let files = r.git(&["ls-tree", "-r", "--name-only", "main"]);
    assert_eq!(files, "README.md\ngood.txt", "{files}");
    assert!(!Path::new(&r.root.join(".GIT")).exists());
}

#[test]
fn the_gate_scans_with_the_new_kinds_and_honours_allow_secrets() {
    let r = TestRepo::new();
    let hf = format!("{}{}", "hf", "_") + &"aB3d".repeat(9);
    let jwt = format!(
        "{}.{}.{}",
        "ey".to_string() + "JhbGciOiJIUzI1NiJ9",
        "ey".to_string() + "JzdWIiOiIxIn0",
        "s1g".repeat(8)
    );
    let pem = format!("-----BEGIN {}  PRIVATE\tKEY-----", "RSA");
    let pw = format!("{}{}", "q8Zr2LmX", "v0Kp7Tn4Wd");
    let wt = start(&r, "kinds");
    write_file(&wt.join("a.env"), &format!("HF={hf}\nJWT={jwt}\n{pem}\ndb_password = \"{pw}\"\nplain = 1\n"));
    r.commit_all_in(&wt, "add env");
    let out = r.hybrid(&["merge", "kinds"]);
    assert_code(&out, 3);
    let text = all_output(&out);
    for want in ["a.env:1 (huggingface-token)", "a.env:2 (jwt)", "a.env:3 (private-key)", "a.env:4 (generic-secret)"] {
        assert!(text.contains(want), "{want}: {text}");
    }
    for secret in [&hf, &jwt, &pw] {
        assert!(!text.contains(secret.as_str()), "{text}");
    }
    // Known false positives listed in hybrid.toml (the main checkout's) pass.
    let allow = format!("[hooks]\nallow_secrets = [\"{}\", \"{}\", \"{}\", \"PRIVATE\"]\n", &hf[..12], &jwt[..20], pw);
    config(&r, &allow);
    r.hybrid_ok(&["merge", "kinds"]);
}

#[test]
fn core_worktree_pointing_at_a_task_worktree_is_refused() {
    let r = TestRepo::new();
    let wt = start(&r, "t1");
    write_file(&wt.join("hybrid.toml"), "[agent]\nenv_pass = [\"ANTHROPIC_API_KEY\"]\n");
    r.git(&["config", "core.worktree", wt.to_str().unwrap()]);
    let out = r.hybrid(&["status"]);
    assert_code(&out, 2);
    assert!(stderr(&out).contains("linked worktree"), "{}", stderr(&out));
}
