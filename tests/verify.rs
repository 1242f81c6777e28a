//! `git hybrid verify`: a passing history of landings, and every kind of failure.
//!
//! Landings are built with git plumbing the way the land step makes them: a task branch from the
//! target, then a squash commit whose parent is `Hybrid-Base` and whose tree is the merge of base
//! and the (caught-up) tip, with `Hybrid-*` trailers.

mod common;

use std::path::Path;

use common::{assert_code, assert_ok, stdout, TestRepo};

struct Landing {
    squash: String,
    base: String,
    tip: String,
}

/// Makes a task tip on top of `from` adding `file`, without touching the main checkout.
fn task_tip(r: &TestRepo, from: &str, file: &str, content: &str) -> String {
    let idx = r.base().join(format!("idx-{}", file.replace('/', "_")));
    let idx_s = idx.to_str().unwrap().to_string();
    let run = |args: &[&str]| {
        let mut git = std::process::Command::new("git");
        r.env(&mut git);
        git.env("GIT_INDEX_FILE", &idx_s).args(args).current_dir(&r.root);
        let out = git.output().unwrap();
        assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    run(&["read-tree", from]);
    let blob = {
        let p = r.base().join("blob.tmp");
        std::fs::write(&p, content).unwrap();
        r.git(&["hash-object", "-w", p.to_str().unwrap()])
    };
    run(&["update-index", "--add", "--cacheinfo", &format!("100644,{blob},{file}")]);
    let tree = run(&["write-tree"]);
    let _ = std::fs::remove_file(&idx);
    r.git(&["commit-tree", &tree, "-p", from, "-m", &format!("work: {file}")])
}

fn trailers(id: &str, attempt: u32, base: &str, tip: &str) -> String {
    let mut m = format!("Land {id}\n\nHybrid-Task: {id}\nHybrid-Base: {base}\nHybrid-Tip: {tip}\n");
    if attempt > 1 {
        m.push_str(&format!("Hybrid-Attempt: {attempt}\n"));
    }
    m
}

/// Moves main (checked out, clean) to `new` by compare-and-swap and syncs the checkout.
fn advance_main(r: &TestRepo, new: &str) {
    let old = r.rev("main");
    r.git(&["update-ref", "refs/heads/main", new, &old]);
    r.git(&["reset", "-q", "--hard"]);
}

/// A correct landing of `id` on main: tip from main, squash = tip's tree on main.
fn land(r: &TestRepo, id: &str, attempt: u32, file: &str) -> Landing {
    let base = r.rev("main");
    let tip = task_tip(r, &base, file, &format!("{id}\n"));
    let tree = r.git(&["rev-parse", &format!("{tip}^{{tree}}")]);
    let squash = r.git(&["commit-tree", &tree, "-p", &base, "-m", &trailers(id, attempt, &base, &tip)]);
    advance_main(r, &squash);
    let tip_ref =
        if attempt > 1 { format!("refs/hybrid/tips/{id}@{attempt}") } else { format!("refs/hybrid/tips/{id}") };
    r.git(&["update-ref", &tip_ref, &tip]);
    Landing { squash, base, tip }
}

/// Writes the ledger record a landing leaves.
fn ledger(r: &TestRepo, id: &str, attempt: u32, l: &Landing) {
    let rec = serde_json::json!({
        "id": id, "attempt": attempt, "state": "landed",
        "branch": if attempt > 1 { format!("hybrid/{id}@{attempt}") } else { format!("hybrid/{id}") },
        "worktree": null, "base": l.base, "target": "main", "title": null,
        "merge_sha": l.squash, "merge_base": l.base, "tip": l.tip, "landed_at": "2026-01-01T00:00:00Z",
        "created": "2026-01-01T00:00:00Z", "updated": "2026-01-01T00:00:00Z",
        "run_dir": null, "agent": null, "failure": null, "labels": null
    });
    let p = r.root.join(".git/hybrid/ledger").join(id).join(format!("{attempt}.json"));
    common::write_file(&p, &serde_json::to_string_pretty(&rec).unwrap());
}

fn verify_json(r: &TestRepo, args: &[&str]) -> (Option<i32>, serde_json::Value) {
    let mut all = vec!["--json", "verify"];
    all.extend_from_slice(args);
    let out = r.hybrid(&all);
    let v = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("bad JSON: {e}: {}\n{}", stdout(&out), common::stderr(&out)));
    (out.status.code(), v)
}

fn failures_of(v: &serde_json::Value, commit: &str) -> Vec<String> {
    v["commits"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["commit"] == commit)
        .unwrap_or_else(|| panic!("{commit} not checked: {v}"))["failures"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f.as_str().unwrap().to_string())
        .collect()
}

fn has(fails: &[String], needle: &str) -> bool {
    fails.iter().any(|f| f.contains(needle))
}

#[test]
fn a_history_of_real_landings_passes() {
    let r = TestRepo::new();
    let a = land(&r, "feat-a", 1, "src/a.rs");
    ledger(&r, "feat-a", 1, &a);
    r.write("notes.txt", "direct commit\n");
    r.commit_all("a plain commit on main");
    let b = land(&r, "feat-b", 2, "src/b.rs");
    ledger(&r, "feat-b", 2, &b);

    // A landing whose tip does not descend from its base: the tree is the real three-way merge.
    let base = r.rev("main");
    let old_tip = task_tip(&r, &a.squash, "src/c.rs", "c\n");
    let merged = r.git(&["merge-tree", "--write-tree", &base, &old_tip]);
    let c = r.git(&["commit-tree", &merged, "-p", &base, "-m", &trailers("feat-c", 1, &base, &old_tip)]);
    advance_main(&r, &c);

    let junit = r.base().join("out/verify.xml");
    let (code, v) = verify_json(&r, &["--all", "--junit", junit.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{v}");
    assert_eq!(v["ok"], true);
    let checked: Vec<&str> = v["commits"].as_array().unwrap().iter().map(|c| c["task"].as_str().unwrap()).collect();
    assert_eq!(checked, ["feat-a", "feat-b", "feat-c"]);
    assert_eq!(v["commits"][1]["attempt"], 2);
    assert_eq!(v["warnings"], 0, "{v}");
    let xml = std::fs::read_to_string(&junit).unwrap();
    assert_eq!(xml.matches("<testcase ").count(), 3, "{xml}");
    assert!(xml.contains("failures=\"0\""), "{xml}");

    // An explicit range checks only its commits.
    let (code, v) = verify_json(&r, &[&format!("{}..main", a.squash)]);
    assert_eq!(code, Some(0));
    assert_eq!(v["commits"].as_array().unwrap().len(), 2);

    // Text output names each landing.
    let out = r.hybrid(&["verify", "--all"]);
    assert_ok(&out, &["verify", "--all"]);
    assert!(stdout(&out).contains("feat-b"), "{}", stdout(&out));
}

#[test]
fn default_range_is_what_the_upstream_lacks() {
    let r = TestRepo::new();
    let out = r.hybrid(&["verify"]);
    assert_code(&out, 2);
    assert!(common::stderr(&out).contains("no upstream"), "{}", common::stderr(&out));

    land(&r, "feat-a", 1, "a.txt");
    let clone = r.base().join("clone");
    r.git_in(&r.base(), &["clone", "-q", r.root.to_str().unwrap(), clone.to_str().unwrap()]);
    let out = r.hybrid_in(&clone, &["--json", "verify"]);
    assert_ok(&out, &["verify"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["scanned"], 0, "{v}");
    assert_eq!(v["range"], "origin/main..main");

    // A forged landing committed locally, not yet pushed, is in the default range.
    common::write_file(&clone.join("x.txt"), "x\n");
    r.git_in(&clone, &["add", "x.txt"]);
    r.git_in(&clone, &["commit", "-q", "-m", "sneaky\n\nHybrid-Task: feat-z\n"]);
    let out = r.hybrid_in(&clone, &["verify"]);
    assert_code(&out, 1);
    assert!(stdout(&out).contains("missing Hybrid-Base trailer"), "{}", stdout(&out));
}

#[test]
fn forged_trailers_fail() {
    let r = TestRepo::new();
    let a = land(&r, "feat-a", 1, "a.txt");
    ledger(&r, "feat-a", 1, &a);

    // A hand-made commit claiming to be a landing, without the other trailers.
    r.write("x.txt", "x\n");
    r.git(&["add", "x.txt"]);
    r.git(&["commit", "-q", "-m", "looks landed\n\nHybrid-Task: feat-x\n"]);
    let forged1 = r.rev("HEAD");

    // A copy of feat-a's trailers on another commit (base = its parent, tip = the real tip).
    let base = r.rev("main");
    let tree = r.git(&["rev-parse", "main^{tree}"]);
    let forged2 = r.git(&["commit-tree", &tree, "-p", &base, "-m", &trailers("feat-a", 1, &base, &a.tip)]);
    advance_main(&r, &forged2);

    let (code, v) = verify_json(&r, &["--all"]);
    assert_eq!(code, Some(1), "{v}");
    assert!(failures_of(&v, &a.squash).is_empty(), "{v}");
    let f1 = failures_of(&v, &forged1);
    assert!(has(&f1, "missing Hybrid-Base") && has(&f1, "missing Hybrid-Tip"), "{f1:?}");
    let f2 = failures_of(&v, &forged2);
    assert!(has(&f2, "ledger records task feat-a attempt 1 as landed in"), "{f2:?}");
    assert!(has(&f2, "already landed in this range"), "{f2:?}");
}

#[test]
fn an_amended_squash_fails() {
    let r = TestRepo::new();
    let a = land(&r, "feat-a", 1, "a.txt");
    ledger(&r, "feat-a", 1, &a);
    r.write("extra.txt", "slipped in\n");
    r.git(&["add", "extra.txt"]);
    r.git(&["commit", "-q", "--amend", "--no-edit"]);
    let amended = r.rev("HEAD");
    let (code, v) = verify_json(&r, &["--all"]);
    assert_eq!(code, Some(1));
    let f = failures_of(&v, &amended);
    assert!(has(&f, "tree mismatch") && has(&f, "extra.txt"), "{f:?}");
    assert!(has(&f, "forged trailer or amended squash"), "{f:?}");

    // Without a ledger the tree check alone still catches it.
    std::fs::remove_dir_all(r.root.join(".git/hybrid/ledger")).unwrap();
    let (code, v) = verify_json(&r, &["--all"]);
    assert_eq!(code, Some(1));
    assert!(has(&failures_of(&v, &amended), "tree mismatch"));
}

#[test]
fn merge_commits_fail_unless_allowed() {
    let r = TestRepo::new();
    land(&r, "feat-a", 1, "a.txt");
    r.git(&["checkout", "-q", "-b", "side"]);
    r.write("side.txt", "side\n");
    r.commit_all("side work");
    r.git(&["checkout", "-q", "main"]);
    r.write("main.txt", "main\n");
    r.commit_all("main work");
    r.git(&["merge", "-q", "--no-ff", "-m", "Merge branch side", "side"]);
    let merge = r.rev("HEAD");

    let (code, v) = verify_json(&r, &["--all"]);
    assert_eq!(code, Some(1));
    assert!(has(&failures_of(&v, &merge), "merge commit (2 parents)"), "{v}");
    let out = r.hybrid(&["verify", "--all"]);
    assert!(stdout(&out).contains(&format!("FAIL {}", &merge[..10])), "{}", stdout(&out));

    let (code, v) = verify_json(&r, &["--all", "--allow-merges"]);
    assert_eq!(code, Some(0), "{v}");
    r.write("hybrid.toml", "[verify]\nallow_merge_commits = true\n");
    let (code, _) = verify_json(&r, &["--all"]);
    assert_eq!(code, Some(0));
}

#[test]
fn a_wrong_parent_fails() {
    let r = TestRepo::new();
    let base = r.rev("main");
    let tip = task_tip(&r, &base, "a.txt", "a\n");
    r.write("other.txt", "moved on\n");
    r.commit_all("target moved");
    let parent = r.rev("main");
    // Claims base, but sits on another commit.
    let tree = r.git(&["rev-parse", &format!("{tip}^{{tree}}")]);
    let bad = r.git(&["commit-tree", &tree, "-p", &parent, "-m", &trailers("feat-a", 1, &base, &tip)]);
    advance_main(&r, &bad);
    let (code, v) = verify_json(&r, &["--all"]);
    assert_eq!(code, Some(1));
    assert!(has(&failures_of(&v, &bad), "wrong parent"), "{v}");
}

#[test]
fn a_tree_mismatch_fails_and_a_missing_tip_only_warns() {
    let r = TestRepo::new();
    let base = r.rev("main");
    let tip = task_tip(&r, &base, "a.txt", "a\n");
    let other = task_tip(&r, &base, "a.txt", "not what the tip had\n");
    let tree = r.git(&["rev-parse", &format!("{other}^{{tree}}")]);
    let bad = r.git(&["commit-tree", &tree, "-p", &base, "-m", &trailers("feat-a", 1, &base, &tip)]);
    advance_main(&r, &bad);
    let (code, v) = verify_json(&r, &["--all"]);
    assert_eq!(code, Some(1));
    let f = failures_of(&v, &bad);
    assert!(has(&f, "tree mismatch") && has(&f, "a.txt"), "{f:?}");

    // A landing whose tip object is not here: warned about, not failed.
    let r = TestRepo::new();
    let base = r.rev("main");
    let tree = r.git(&["rev-parse", "main^{tree}"]);
    let gone = "0123456789abcdef0123456789abcdef01234567";
    let c = r.git(&["commit-tree", &tree, "-p", &base, "-m", &trailers("feat-b", 1, &base, gone)]);
    advance_main(&r, &c);
    let junit = r.base().join("v.xml");
    let (code, v) = verify_json(&r, &["--all", "--junit", junit.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{v}");
    assert_eq!(v["warnings"], 1);
    assert!(v["commits"][0]["warnings"][0].as_str().unwrap().contains("tree not checked"), "{v}");
    assert!(std::fs::read_to_string(&junit).unwrap().contains("<system-out>"));
}

#[test]
fn bad_input_exits_2_and_changes_nothing() {
    let r = TestRepo::new();
    let before = r.refs_snapshot();
    assert_code(&r.hybrid(&["verify", "nope..main"]), 2);
    assert_code(&r.hybrid(&["verify", "main", "--all"]), 2);
    assert_code(&r.hybrid(&["verify", "main...main"]), 2);
    assert_eq!(r.refs_snapshot(), before);
    assert!(!Path::new(&r.root.join(".git/hybrid/ledger")).exists());
}

/// Issue 14 item 14: on a repository with history, `--all` judges only what git-hybrid landed
/// since its first landing (the floor ref, or the oldest landing in a fresh clone), and says so.
#[test]
fn all_starts_at_the_first_landing_and_says_so() {
    let r = TestRepo::new();
    // History from before git-hybrid, with a merge.
    r.git(&["checkout", "-q", "-b", "side"]);
    r.write("side.txt", "side\n");
    r.commit_all("side work");
    r.git(&["checkout", "-q", "main"]);
    r.write("main.txt", "main\n");
    r.commit_all("main work");
    r.git(&["merge", "-q", "--no-ff", "-m", "Merge branch side", "side"]);
    let old_merge = r.rev("HEAD");

    // Nothing landed yet: nothing to judge, and it says so.
    let (code, v) = verify_json(&r, &["--all"]);
    assert_eq!(code, Some(0), "{v}");
    assert_eq!(v["scanned"], 0, "{v}");
    assert!(v["scope"].as_str().unwrap().contains("git-hybrid never landed on main"), "{v}");

    let floor = r.rev("main");
    r.hybrid_ok(&["start", "t1"]);
    common::write_file(&r.task_dir("t1").join("t1.txt"), "t1\n");
    r.commit_all_in(&r.task_dir("t1"), "t1 work");
    r.hybrid_ok(&["merge", "t1"]);
    let landing = r.rev("main");
    assert_eq!(r.rev("refs/hybrid/floor/main"), floor);

    let (code, v) = verify_json(&r, &["--all"]);
    assert_eq!(code, Some(0), "{v}");
    assert_eq!(v["since"], floor.as_str(), "{v}");
    assert_eq!(v["scanned"], 1, "{v}");
    assert_eq!(v["commits"][0]["commit"], landing.as_str(), "{v}");
    let out = r.hybrid(&["verify", "--all"]);
    assert_ok(&out, &["verify", "--all"]);
    let text = stdout(&out);
    assert!(
        text.contains(&format!("since the first git-hybrid landing (after {}, refs/hybrid/floor/main)", &floor[..10])),
        "{text}"
    );

    // A fresh clone has no floor: the oldest landing in the history marks the start.
    r.git(&["update-ref", "-d", "refs/hybrid/floor/main"]);
    let (code, v) = verify_json(&r, &["--all"]);
    assert_eq!(code, Some(0), "{v}");
    assert_eq!(v["since"], floor.as_str(), "{v}");
    assert!(v["scope"].as_str().unwrap().contains(&format!("first git-hybrid landing ({}", &landing[..10])), "{v}");

    // A merge after git-hybrid started is judged.
    r.git(&["checkout", "-q", "side"]);
    r.write("side2.txt", "more\n");
    r.commit_all("more side work");
    r.git(&["checkout", "-q", "main"]);
    r.git(&["merge", "-q", "--no-ff", "-m", "Merge side again", "side"]);
    let new_merge = r.rev("HEAD");
    let (code, v) = verify_json(&r, &["--all"]);
    assert_eq!(code, Some(1), "{v}");
    assert!(has(&failures_of(&v, &new_merge), "merge commit"), "{v}");
    assert!(!v["commits"].as_array().unwrap().iter().any(|c| c["commit"] == old_merge.as_str()), "{v}");

    // `--since REV` starts elsewhere (and implies --all); the whole history is `verify main`.
    let first = r.git(&["rev-list", "--max-parents=0", "main"]);
    let (code, v) = verify_json(&r, &["--since", &first]);
    assert_eq!(code, Some(1), "{v}");
    assert!(has(&failures_of(&v, &old_merge), "merge commit"), "{v}");
    assert_eq!(v["since"], first.as_str());
    assert!(v["scope"].as_str().unwrap().contains(&format!("since {first}")), "{v}");
    let (code, v) = verify_json(&r, &["main"]);
    assert_eq!(code, Some(1), "{v}");
    assert!(has(&failures_of(&v, &old_merge), "merge commit"), "{v}");

    // Bad input: an unknown revision, or --since with a range.
    let before = r.refs_snapshot();
    assert_code(&r.hybrid(&["verify", "--since", "no-such-rev"]), 2);
    assert_code(&r.hybrid(&["verify", "--since", &first, "main"]), 2);
    let out = r.hybrid(&["--json", "verify", "--all", "--since", "no-such-rev"]);
    assert_code(&out, 2);
    let err: serde_json::Value = serde_json::from_str(common::stderr(&out).trim()).unwrap();
    assert_eq!(err["exit_code"], 2);
    assert_eq!(r.refs_snapshot(), before);
}
