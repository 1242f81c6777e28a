//! `git hybrid mcp` driven by clients nobody here wrote: the official MCP Python SDK
//! (tests/mcp_client.py) against the real binary and a real repository.
//!
//! The Python SDK (PyPI `mcp`, installed by `.ci/run`) must be present under CI; elsewhere a
//! missing SDK makes these tests print a loud SKIPPED line instead of failing.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{assert_code, stderr, stdout, TestRepo};

/// `agent.sh <file> <text>`: notes progress, writes the file, commits.
const AGENT: &str = r#"#!/bin/sh
echo "starting $HYBRID_TASK_ID" >> "$HYBRID_PROGRESS"
echo "$2" > "$1"
git add -A && git commit -q -m "$HYBRID_TASK_ID: write $1"
echo "agent output for $HYBRID_TASK_ID"
echo "done $HYBRID_TASK_ID" >> "$HYBRID_PROGRESS"
"#;

/// Runs tests/mcp_client.py; `None` when the SDK is missing outside CI.
fn run_client(r: &TestRepo, scenario: &str) -> Option<serde_json::Value> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/mcp_client.py");
    let mut cmd = Command::new("python3");
    cmd.arg(&script).arg(scenario).arg(env!("CARGO_BIN_EXE_git-hybrid")).arg(&r.root).stdin(Stdio::null());
    r.env(&mut cmd);
    let out = cmd.output().expect("run python3");
    if out.status.code() == Some(77) {
        assert!(
            std::env::var_os("CI").is_none(),
            "the MCP Python SDK is missing under CI: .ci/run must install it (pip install 'mcp>=1,<2')"
        );
        eprintln!("\n*** SKIPPED: the MCP Python SDK is not installed (python3 -m pip install 'mcp>=1,<2') ***\n");
        return None;
    }
    assert!(out.status.success(), "mcp_client.py {scenario} failed:\n{}\n{}", stdout(&out), stderr(&out));
    let text = stdout(&out);
    let last = text.lines().last().expect("client output");
    Some(serde_json::from_str(last).expect("client JSON"))
}

/// A repository whose first commit adds `files` (the test agents' scripts, and fixtures).
fn repo_with(files: &[(&str, &str)]) -> TestRepo {
    let r = TestRepo::new();
    for (path, text) in files {
        r.write(path, text);
    }
    r.commit_all("agents");
    r
}

fn setup() -> TestRepo {
    let r = repo_with(&[("agent.sh", AGENT), ("shared.txt", "base\n")]);
    // Two tasks started by hand that change the same line: the second cannot land after the first.
    for (id, text) in [("manual", "manual\n"), ("clash", "clash\n")] {
        common::assert_ok(&r.hybrid(&["start", id]), &["start", id]);
        let dir = r.task_dir(id);
        common::write_file(&dir.join("shared.txt"), text);
        r.commit_all_in(&dir, &format!("{id}: edit shared"));
    }
    r
}

#[test]
fn python_sdk_client_dispatches_polls_lands_and_reads_resources() {
    let r = setup();
    let Some(facts) = run_client(&r, "full") else { return };
    let log = r.git(&["log", "--format=%H", "main"]);
    let shas = facts["merge_shas"].as_object().expect("merge_shas");
    assert_eq!(shas.len(), 4, "{facts}");
    for (task, sha) in shas {
        let sha = sha.as_str().expect("sha");
        assert!(log.lines().any(|l| l == sha), "{task}'s merge {sha} is not on main:\n{log}");
        let msg = r.git(&["show", "-s", "--format=%B", sha]);
        assert!(msg.contains(&format!("Hybrid-Task: {task}")), "{msg}");
    }
    // What the agents and the hand landing wrote is on main, and the refused landing changed nothing.
    assert_eq!(r.git(&["show", "main:one.txt"]), "1");
    assert_eq!(r.git(&["show", "main:three.txt"]), "3");
    assert_eq!(r.git(&["show", "main:shared.txt"]), "manual");
    let clash = r.hybrid_json(&["status", "clash"]);
    assert_eq!(clash["tasks"][0]["state"], "conflict", "{clash}");
}

/// `hold.sh <file> <dir>`: notes progress; finishes at once when its prompt says FINISH-NOW,
/// else when `<dir>/release-<task>` appears (at most 60 s).
const HOLD: &str = r#"#!/bin/sh
prompt=$(cat)
echo "run $HYBRID_RUN waiting" >> "$HYBRID_PROGRESS"
case "$prompt" in
  *FINISH-NOW*) ;;
  *) i=0
     while [ ! -e "$2/release-$HYBRID_TASK_ID" ] && [ $i -lt 1200 ]; do sleep 0.05; i=$((i+1)); done ;;
esac
echo "done by run $HYBRID_RUN" > "$1"
git add -A && git commit -q -m "$HYBRID_TASK_ID: done"
"#;

#[test]
fn cancel_retry_with_instructions_and_a_client_that_leaves() {
    let r = repo_with(&[("hold.sh", HOLD)]);
    let Some(facts) = run_client(&r, "lifecycle") else { return };
    // The cancelled run was killed; the retry's prompt carried the supervisor's instructions.
    assert!(facts["slow_failure"].as_str().unwrap_or("").contains("signal"), "{facts}");
    let prompt = std::fs::read_to_string(r.root.join(".git/hybrid/runs/slow/1/2/prompt.md")).unwrap();
    assert!(prompt.contains("Instructions from the supervisor") && prompt.contains("FINISH-NOW"), "{prompt}");
    assert_eq!(r.git(&["show", "main:slow.txt"]), "done by run 2");
    // The client has gone; the background dispatcher still runs `bg` and lands it once released.
    std::fs::write(r.base().join("release-bg"), "").unwrap();
    let until = Instant::now() + Duration::from_secs(120);
    loop {
        let st = r.hybrid_json(&["status", "bg"]);
        if st["tasks"][0]["state"] == "landed" {
            break;
        }
        assert!(Instant::now() < until, "bg never landed after the client left: {st}");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(r.git(&["show", "main:bg.txt"]), "done by run 1");
}

#[test]
fn a_task_dispatched_while_a_round_runs_joins_that_round() {
    let r = repo_with(&[("hold.sh", HOLD)]);
    let Some(facts) = run_client(&r, "midround") else { return };
    let (quick, slow) = (facts["quick"].as_str().expect("quick's merge"), facts["slow"].as_str().expect("slow's"));
    // `quick` landed while `slow` still ran: its squash is the older of the two on main.
    let log: Vec<String> = r.git(&["log", "--format=%H", "main"]).lines().map(str::to_string).collect();
    let at = |sha: &str| log.iter().position(|l| l == sha).unwrap_or_else(|| panic!("{sha} is not on main: {log:?}"));
    assert!(at(quick) > at(slow), "quick {quick} should be older than slow {slow} on main: {log:?}");
    assert_eq!(r.git(&["show", "main:quick.txt"]), "done by run 1");
    assert_eq!(r.git(&["show", "main:slow.txt"]), "done by run 1");
    let log = std::fs::read_to_string(r.root.join(".git/hybrid/dispatch.log")).unwrap_or_default();
    assert!(log.contains("adding quick to the running round"), "{log}");
}

/// `picky.sh <file>`: fails unless its prompt says FINISH-NOW (a retry's instructions do).
const PICKY: &str = "#!/bin/sh\nprompt=$(cat)\ncase \"$prompt\" in\n  *FINISH-NOW*) ;;\n  \
                     *) echo 'no FINISH-NOW in the prompt' >&2; exit 1 ;;\nesac\n\
                     echo done > \"$1\"\ngit add -A && git commit -q -m \"$HYBRID_TASK_ID\"\n";

#[test]
fn a_task_retried_while_its_round_runs_runs_again() {
    let r = repo_with(&[("hold.sh", HOLD), ("picky.sh", PICKY)]);
    let Some(facts) = run_client(&r, "retry_midround") else { return };
    assert_eq!(facts["runs"], 2, "{facts}");
    let sha = facts["bad"].as_str().expect("bad landed");
    assert_eq!(r.git(&["log", "-1", "--format=%H", "main"]), sha);
    assert_eq!(r.git(&["show", "main:bad.txt"]), "done");
}

#[test]
fn a_task_waits_for_its_failed_dependency_until_a_retry_lands_it() {
    let r = repo_with(&[("picky.sh", PICKY)]);
    let Some(facts) = run_client(&r, "deps") else { return };
    let sha = facts["after"].as_str().expect("after landed");
    assert_eq!(r.git(&["log", "-1", "--format=%H", "main"]), sha);
    assert_eq!(r.git(&["show", "main:dep.txt"]), "done");
}

#[test]
fn mcp_refuses_to_start_outside_a_repository() {
    let r = TestRepo::new();
    let outside = r.base().join("not-a-repo");
    std::fs::create_dir_all(&outside).unwrap();
    let out = r.hybrid_in(&outside, &["mcp"]);
    assert_code(&out, 2);
    assert!(stderr(&out).contains("not inside a git repository"), "{}", stderr(&out));
}
