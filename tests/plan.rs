//! Plan validation through the real binary: every error names `file:line`, exits 2 and
//! changes nothing (no ledger, no refs, no worktrees).

mod common;

use common::{assert_code, stderr, TestRepo};

const AGENT: &str = "[agent]\ncommand = [\"true\"]\n";

/// Dispatches `plan` as hybrid.toml and returns stderr after checking exit 2 and no change.
fn rejected(plan: &str) -> String {
    let r = TestRepo::new();
    r.write("hybrid.toml", plan);
    r.commit_all("plan");
    let before = r.refs_snapshot();
    for args in [&["dispatch"][..], &["dispatch", "--dry-run"], &["dispatch", "--detach"]] {
        let out = r.hybrid(args);
        assert_code(&out, 2);
        assert_eq!(r.refs_snapshot(), before, "{args:?} changed refs");
        assert!(!r.root.join(".git/hybrid/ledger").exists(), "{args:?} wrote the ledger");
        assert!(!r.base().join("repo.hybrid").exists(), "{args:?} made worktrees");
    }
    stderr(&r.hybrid(&["dispatch"]))
}

fn located(err: &str, line: usize) {
    let needle = format!("hybrid.toml:{line}:");
    assert!(err.contains(&needle), "expected {needle} in: {err}");
}

#[test]
fn unknown_key() {
    let e = rejected(&format!("{AGENT}[[task]]\nid = \"a\"\nprompt = \"x\"\nshapes = \"core\"\n"));
    located(&e, 6);
    assert!(e.contains("unknown key `shapes`"), "{e}");
}

#[test]
fn duplicate_id() {
    let e = rejected(&format!("{AGENT}[[task]]\nid = \"a\"\nprompt = \"x\"\n[[task]]\nid = \"a\"\nprompt = \"y\"\n"));
    located(&e, 7);
    assert!(e.contains("duplicate task id"), "{e}");
}

#[test]
fn dangling_depends_on() {
    let e = rejected(&format!("{AGENT}[[task]]\nid = \"a\"\nprompt = \"x\"\ndepends_on = [\"ghost\"]\n"));
    located(&e, 6);
    assert!(e.contains("\"ghost\", which is not in the plan"), "{e}");
}

#[test]
fn cycle() {
    let e = rejected(&format!(
        "{AGENT}[[task]]\nid = \"a\"\nprompt = \"x\"\ndepends_on = [\"b\"]\n[[task]]\nid = \"b\"\nprompt = \"x\"\ndepends_on = [\"a\"]\n"
    ));
    located(&e, 10);
    assert!(e.contains("dependency cycle: a -> b -> a"), "{e}");
}

#[test]
fn core_without_touches() {
    let e = rejected(&format!("{AGENT}[[task]]\nid = \"a\"\nprompt = \"x\"\nshape = \"core\"\n"));
    located(&e, 6);
    assert!(e.contains("core"), "{e}");
}

#[test]
fn bad_glob() {
    let e = rejected(&format!(
        "{AGENT}[[task]]\nid = \"a\"\nprompt = \"x\"\ntouches = [\n  \"ok/**\",\n  \"src/[a\",\n]\n"
    ));
    located(&e, 8);
    assert!(e.contains("bad glob \"src/[a\""), "{e}");
}

#[test]
fn missing_agent_and_builtin_arguments() {
    let e = rejected("[[task]]\nid = \"a\"\nprompt = \"x\"\n");
    located(&e, 2);
    assert!(e.contains("no agent"), "{e}");
    let e = rejected("[[task]]\nid = \"a\"\nprompt = \"x\"\nagent = [\"builtin:patch\"]\n");
    located(&e, 4);
    let e = rejected("[[task]]\nid = \"a\"\nprompt = \"x\"\nagent = [\"builtin:script\", \"../outside.sh\"]\n");
    located(&e, 4);
}

#[test]
fn plan_file_errors_name_the_plan_file() {
    let r = TestRepo::new();
    let plan = r.base().join("my-plan.toml");
    std::fs::write(&plan, format!("{AGENT}[[task]]\nid = \"a\"\nprompt = \"x\"\ndepends_on = [\"a\"]\n")).unwrap();
    let out = r.hybrid(&["dispatch", "--plan", plan.to_str().unwrap()]);
    assert_code(&out, 2);
    assert!(stderr(&out).contains("my-plan.toml:6:"), "{}", stderr(&out));
    let out = r.hybrid(&["dispatch", "--plan", "/nonexistent/plan.toml"]);
    assert_code(&out, 2);
}

#[test]
fn empty_plan_is_bad_input() {
    let r = TestRepo::new();
    let out = r.hybrid(&["dispatch"]);
    assert_code(&out, 2);
    assert!(stderr(&out).contains("no tasks"), "{}", stderr(&out));
}
