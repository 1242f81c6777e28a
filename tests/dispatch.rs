//! `git hybrid dispatch`: scheduling rules proven from what the agents actually did.
//!
//! The agents are `builtin:script` runs of `agent.sh` (committed in each test repository).
//! Each run records its start and stop time (ns) into its own run directory (in the git dir,
//! outside the worktree), plus its stdin, environment and working directory, so the tests
//! check single-flight, claims, dependencies and order from the recorded runs.

mod common;

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{assert_code, assert_ok, stderr, stdout, TestRepo};

/// `agent.sh <file> [sleep] [barrier-dir] [peer-task] [barrier ticks of 50 ms]`: records times, writes `file`, commits.
const AGENT: &str = r#"#!/bin/sh
t() { date +%s%N; }
echo "start $(t)" >> "$HYBRID_RUN_DIR/times"
cat > "$HYBRID_RUN_DIR/stdin.txt"
env > "$HYBRID_RUN_DIR/env.txt"
pwd > "$HYBRID_RUN_DIR/pwd.txt"
if [ -n "$3" ]; then
  touch "$3/$HYBRID_TASK_ID"
  i=0
  while [ ! -e "$3/$4" ] && [ $i -lt "${5:-200}" ]; do sleep 0.05; i=$((i+1)); done
  if [ -e "$3/$4" ]; then echo saw > "$HYBRID_RUN_DIR/peer"; fi
fi
sleep "${2:-0}"
mkdir -p "$(dirname "$1")"
echo "$HYBRID_TASK_ID $HYBRID_ATTEMPT" >> "$1"
git add -A && git commit -q -m "$HYBRID_TASK_ID: write $1"
echo "stop $(t)" >> "$HYBRID_RUN_DIR/times"
"#;

fn setup(plan: &str) -> TestRepo {
    setup_with(plan, &[])
}

fn setup_with(plan: &str, files: &[(&str, &str)]) -> TestRepo {
    let r = TestRepo::new();
    r.write("hybrid.toml", plan);
    r.write("agent.sh", AGENT);
    for (p, c) in files {
        r.write(p, c);
    }
    r.commit_all("plan and agents");
    r
}

fn runs_root(r: &TestRepo) -> PathBuf {
    r.root.join(".git/hybrid/runs")
}

/// The agent wrote its pid (the file is created before its content, so existence is not enough).
fn pid_written(dir: &std::path::Path) -> bool {
    std::fs::read_to_string(dir.join("pid")).is_ok_and(|p| p.trim().parse::<i32>().is_ok())
}

fn run_dir(r: &TestRepo, id: &str, attempt: u32, run: u32) -> PathBuf {
    runs_root(r).join(id).join(attempt.to_string()).join(run.to_string())
}

/// (start, stop) of a task's first run.
fn interval(r: &TestRepo, id: &str) -> (u128, u128) {
    let text = std::fs::read_to_string(run_dir(r, id, 1, 1).join("times"))
        .unwrap_or_else(|e| panic!("no times for {id}: {e}"));
    let get = |k: &str| -> u128 {
        text.lines()
            .find_map(|l| l.strip_prefix(k).map(|v| v.trim().parse().unwrap()))
            .unwrap_or_else(|| panic!("{id}: no {k} in {text}"))
    };
    (get("start "), get("stop "))
}

fn overlaps(a: (u128, u128), b: (u128, u128)) -> bool {
    a.0 < b.1 && b.0 < a.1
}

/// The most runs overlapping at one instant.
fn max_concurrency(intervals: &[(u128, u128)]) -> usize {
    let mut events: Vec<(u128, i32)> = Vec::new();
    for &(s, e) in intervals {
        events.push((s, 1));
        events.push((e, -1));
    }
    events.sort_by_key(|&(t, d)| (t, d));
    let (mut cur, mut max) = (0i32, 0i32);
    for (_, d) in events {
        cur += d;
        max = max.max(cur);
    }
    max as usize
}

fn task<'a>(tasks: &'a [serde_json::Value], id: &str, attempt: u64) -> &'a serde_json::Value {
    tasks
        .iter()
        .find(|t| t["id"] == id && t["attempt"] == attempt)
        .unwrap_or_else(|| panic!("no {id}#{attempt} in {tasks:#?}"))
}

fn state(r: &TestRepo, id: &str, attempt: u64) -> String {
    task(&r.tasks(), id, attempt)["state"].as_str().unwrap().to_string()
}

fn dispatch(r: &TestRepo, extra: &[&str]) -> std::process::Output {
    let mut args = vec!["dispatch"];
    args.extend_from_slice(extra);
    r.hybrid(&args)
}

fn barrier_dir(r: &TestRepo) -> String {
    // In the test's temp dir, which sandboxed agents may write.
    let d = r.home.join("tmp").join("barrier");
    std::fs::create_dir_all(&d).unwrap();
    d.to_string_lossy().into_owned()
}

const HEAD: &str = "[agent]\ncommand = [\"builtin:script\", \"agent.sh\"]\n";

fn script_task(id: &str, extra: &str, args: &[&str]) -> String {
    let argv: Vec<String> = ["builtin:script", "agent.sh"].iter().chain(args).map(|a| format!("{a:?}")).collect();
    format!("\n[[task]]\nid = \"{id}\"\nprompt = \"do {id}\"\nagent = [{}]\n{extra}", argv.join(", "))
}

#[test]
fn jobs_limit_is_respected_and_all_land() {
    let mut plan = HEAD.to_string();
    for i in 0..5 {
        plan += &script_task(&format!("t{i}"), "", &[&format!("out/t{i}.txt"), "0.2"]);
    }
    let r = setup(&plan);
    let out = dispatch(&r, &["-j", "2"]);
    assert_ok(&out, &["dispatch"]);
    let iv: Vec<_> = (0..5).map(|i| interval(&r, &format!("t{i}"))).collect();
    assert!(max_concurrency(&iv) <= 2, "{iv:?}");
    for i in 0..5 {
        assert_eq!(state(&r, &format!("t{i}"), 1), "landed");
        assert_eq!(r.read(&format!("out/t{i}.txt")), format!("t{i} 1\n"));
    }
    // One squash commit per task on main.
    assert_eq!(r.git(&["rev-list", "--count", "main"]), "7");
    assert!(stdout(&out).contains("5 landed"), "{}", stdout(&out));
}

#[test]
fn many_tasks_start_at_once() {
    let mut plan = HEAD.to_string();
    for i in 0..10 {
        plan += &script_task(&format!("m{i}"), "", &[&format!("m/{i}.txt")]);
    }
    let r = setup(&plan);
    let out = dispatch(&r, &["-j", "10"]);
    assert_ok(&out, &["dispatch -j 10"]);
    assert!(stdout(&out).contains("10 landed"), "{}", stdout(&out));
}

#[test]
fn parallel_plugins_really_run_together() {
    let r = TestRepo::new();
    let bar = barrier_dir(&r);
    let plan = format!(
        "{HEAD}{}{}",
        script_task("p1", "shape = \"plugin\"\nplugin = \"one\"\n", &["src/plugins/one/a.txt", "0", &bar, "p2"]),
        script_task("p2", "shape = \"plugin\"\nplugin = \"two\"\n", &["src/plugins/two/a.txt", "0", &bar, "p1"]),
    );
    r.write("hybrid.toml", &plan);
    r.write("agent.sh", AGENT);
    r.commit_all("plan");
    assert_ok(&dispatch(&r, &["-j", "4"]), &["dispatch"]);
    // Each agent waited for the other to start: both saw their peer, so they overlapped.
    assert!(run_dir(&r, "p1", 1, 1).join("peer").exists());
    assert!(run_dir(&r, "p2", 1, 1).join("peer").exists());
    assert!(overlaps(interval(&r, "p1"), interval(&r, "p2")));
}

#[test]
fn core_tasks_are_single_flight() {
    let r = TestRepo::new();
    let bar = barrier_dir(&r);
    // c1 and c2 are core: even though they try to meet at a barrier, they must not overlap.
    let plan = format!(
        "{HEAD}{}{}{}",
        script_task(
            "c1",
            "shape = \"core\"\ntouches = [\"src/core/a.rs\"]\n",
            &["src/core/a.rs", "0", &bar, "c2", "20"]
        ),
        script_task(
            "c2",
            "shape = \"core\"\ntouches = [\"src/core/b.rs\"]\n",
            &["src/core/b.rs", "0", &bar, "c1", "20"]
        ),
        script_task("p", "shape = \"plugin\"\nplugin = \"p\"\n", &["src/plugins/p/x", "0.1"]),
    );
    r.write("hybrid.toml", &plan);
    r.write("agent.sh", AGENT);
    r.commit_all("plan");
    // The barrier gives up after 1 s: the core tasks must never meet.
    assert_ok(&dispatch(&r, &["-j", "4"]), &["dispatch"]);
    let (c1, c2) = (interval(&r, "c1"), interval(&r, "c2"));
    assert!(!overlaps(c1, c2), "core tasks overlapped: {c1:?} {c2:?}");
    // The second core task never saw the first one running alongside it.
    let saw = |id| run_dir(&r, id, 1, 1).join("peer").exists();
    assert!(!(saw("c1") && saw("c2")));
    for id in ["c1", "c2", "p"] {
        assert_eq!(state(&r, id, 1), "landed");
    }
}

#[test]
fn overlapping_claims_never_run_together_and_deferred_task_runs() {
    let plan = format!(
        "{HEAD}{}{}{}",
        script_task("wide", "touches = [\"src/**\"]\n", &["src/a/w.txt", "0.3"]),
        script_task("narrow", "touches = [\"src/a/**/x.rs\"]\n", &["src/a/n/x.rs", "0.1"]),
        script_task("other", "touches = [\"docs/**\"]\n", &["docs/o.md", "0.1"]),
    );
    let r = setup(&plan);
    let out = dispatch(&r, &["-j", "4"]);
    assert_ok(&out, &["dispatch"]);
    let (w, n) = (interval(&r, "wide"), interval(&r, "narrow"));
    assert!(!overlaps(w, n), "claims overlapped in time: {w:?} {n:?}");
    for id in ["wide", "narrow", "other"] {
        assert_eq!(state(&r, id, 1), "landed", "{id}");
    }
}

#[test]
fn dependent_starts_after_dependency_landed() {
    let plan = format!(
        "{HEAD}{}{}{}",
        script_task("base", "", &["lib/base.txt", "0.2"]),
        script_task("mid", "depends_on = [\"base\"]\n", &["lib/mid.txt"]),
        script_task("top", "depends_on = [\"mid\", \"base\"]\n", &["lib/top.txt"]),
    );
    let r = setup(&plan);
    assert_ok(&dispatch(&r, &["-j", "4"]), &["dispatch"]);
    let (b, m, t) = (interval(&r, "base"), interval(&r, "mid"), interval(&r, "top"));
    assert!(b.1 < m.0 && m.1 < t.0, "{b:?} {m:?} {t:?}");
    // What the dependent saw: its worktree started from a target that had the dependency's work.
    let top_tasks = r.tasks();
    let mid_base = task(&top_tasks, "mid", 1)["base"].as_str().unwrap().to_string();
    let base_merge = task(&top_tasks, "base", 1)["merge_sha"].as_str().unwrap().to_string();
    let contains = r.git_out(&r.root, &["merge-base", "--is-ancestor", &base_merge, &mid_base]);
    assert!(contains.status.success(), "mid's base does not contain base's landing");
}

#[test]
fn higher_priority_starts_first() {
    let plan = format!(
        "{HEAD}{}{}{}",
        script_task("low", "priority = -1\n", &["p/low"]),
        script_task("plain", "", &["p/plain"]),
        script_task("high", "priority = 5\n", &["p/high"]),
    );
    let r = setup(&plan);
    assert_ok(&dispatch(&r, &["-j", "1"]), &["dispatch"]);
    let mut starts: Vec<(u128, &str)> = ["low", "plain", "high"].iter().map(|id| (interval(&r, id).0, *id)).collect();
    starts.sort();
    let order: Vec<&str> = starts.iter().map(|s| s.1).collect();
    assert_eq!(order, vec!["high", "plain", "low"]);
}

#[test]
fn dry_run_explains_and_changes_nothing() {
    let plan = format!(
        "{HEAD}{}{}{}{}",
        script_task("a", "shape = \"core\"\ntouches = [\"core/x\"]\n", &["core/x"]),
        script_task("b", "shape = \"core\"\ntouches = [\"core/y\"]\n", &["core/y"]),
        script_task("c", "depends_on = [\"a\"]\n", &["c"]),
        script_task("d", "touches = [\"core/**\"]\n", &["core/z"]),
    );
    let r = setup(&plan);
    let before = r.refs_snapshot();
    let out = dispatch(&r, &["--dry-run", "-j", "4"]);
    assert_ok(&out, &["dispatch", "--dry-run"]);
    let text = stdout(&out);
    assert!(text.contains("core task a"), "{text}");
    assert!(text.contains("waits for a to land"), "{text}");
    assert!(text.contains("claims may overlap"), "{text}");
    assert_eq!(r.refs_snapshot(), before);
    assert!(!r.root.join(".git/hybrid/ledger").exists());
    let json = r.hybrid_json(&["dispatch", "--dry-run"]);
    let order = json["order"].as_array().unwrap();
    assert_eq!(order.len(), 4);
    assert_eq!(order[0]["wave"], 1);
}

#[test]
fn agent_environment_is_scrubbed() {
    let plan = format!(
        "[agent]\ncommand = [\"builtin:script\", \"agent.sh\"]\nenv_pass = [\"PASS_ME\"]\n{}",
        script_task("envy", "", &["e.txt"])
    );
    let r = setup(&plan);
    let mut cmd = r.hybrid_cmd(&r.root, &["dispatch"]);
    cmd.env("SECRET_TOKEN", "s3cret-value").env("PASS_ME", "passed-value").env("GIT_DIR", "/nonexistent");
    let out = cmd.output().unwrap();
    assert_ok(&out, &["dispatch"]);
    let env = std::fs::read_to_string(run_dir(&r, "envy", 1, 1).join("env.txt")).unwrap();
    assert!(!env.contains("SECRET_TOKEN") && !env.contains("s3cret-value"), "{env}");
    assert!(env.contains("PASS_ME=passed-value"), "{env}");
    assert!(!env.contains("GIT_DIR="), "{env}");
    for k in ["HYBRID_TASK_ID=envy", "HYBRID_ATTEMPT=1", "HYBRID_RUN_DIR=", "HYBRID_PROGRESS=", "HYBRID_BLOCKED="] {
        assert!(env.contains(k), "{k} missing: {env}");
    }
    // The prompt arrived on stdin and the agent ran in the task worktree.
    assert_eq!(std::fs::read_to_string(run_dir(&r, "envy", 1, 1).join("stdin.txt")).unwrap(), "do envy\n");
    let pwd = std::fs::read_to_string(run_dir(&r, "envy", 1, 1).join("pwd.txt")).unwrap();
    assert_eq!(pwd.trim(), r.task_dir("envy").to_string_lossy());
    let meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(run_dir(&r, "envy", 1, 1).join("meta.json")).unwrap()).unwrap();
    assert_eq!(meta["exit_code"], 0);
    assert_eq!(meta["argv"][0], "builtin:script");
}

#[test]
fn timeout_kills_the_agent_and_fails_the_task() {
    let plan = format!("{HEAD}{}", script_task("slow", "timeout = \"1s\"\n", &["s.txt", "30"]));
    let r = setup(&plan);
    let t = Instant::now();
    let out = dispatch(&r, &[]);
    assert_code(&out, 1);
    assert!(t.elapsed() < Duration::from_secs(20));
    let tasks = r.tasks();
    let rec = task(&tasks, "slow", 1);
    assert_eq!(rec["state"], "failed");
    assert!(rec["failure"].as_str().unwrap().contains("timed out"), "{rec}");
    let meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(run_dir(&r, "slow", 1, 1).join("meta.json")).unwrap()).unwrap();
    assert_eq!(meta["timed_out"], true);
    // The worktree is kept for inspection.
    assert!(r.task_dir("slow").exists());
}

#[test]
fn retry_resumes_with_preamble() {
    // Run 1 commits some work, leaves a note and an uncommitted file, then fails.
    // Run 2 (the retry) must see all of that in its prompt, and succeeds.
    let flaky = r#"#!/bin/sh
cat > "$HYBRID_RUN_DIR/stdin.txt"
if [ "$HYBRID_RUN" = "1" ]; then
  echo part1 > part1.txt
  git add part1.txt && git commit -q -m "flaky: part one"
  echo "did part one; part two left" >> "$HYBRID_PROGRESS"
  echo "unsure about part two" >> "$HYBRID_BLOCKED"
  echo scratch > leftover.txt
  echo "boom" >&2
  exit 3
fi
echo part2 > part2.txt
git add -A && git commit -q -m "flaky: part two"
"#;
    let plan = "[[task]]\nid = \"flaky\"\nprompt = \"do both parts\"\nagent = [\"builtin:script\", \"flaky.sh\"]\nretries = 1\n";
    let r = setup_with(plan, &[("flaky.sh", flaky)]);
    assert_ok(&dispatch(&r, &[]), &["dispatch"]);
    let rec = task(&r.tasks(), "flaky", 1).clone();
    assert_eq!(rec["state"], "landed");
    assert_eq!(rec["runs"], 2);
    let prompt = std::fs::read_to_string(run_dir(&r, "flaky", 1, 2).join("prompt.md")).unwrap();
    assert!(prompt.starts_with("# Resuming task flaky"), "{prompt}");
    assert!(prompt.contains("flaky: part one"), "{prompt}");
    assert!(prompt.contains("checkpoint after run 1"), "{prompt}");
    assert!(prompt.contains("exited with code 3"), "{prompt}");
    assert!(prompt.contains("boom"), "{prompt}");
    assert!(prompt.contains("did part one; part two left"), "{prompt}");
    assert!(prompt.contains("unsure about part two"), "{prompt}");
    assert!(prompt.trim_end().ends_with("do both parts"), "{prompt}");
    // Run 2 saw the same stdin, and everything landed (the checkpoint kept leftover.txt).
    assert_eq!(std::fs::read_to_string(run_dir(&r, "flaky", 1, 2).join("stdin.txt")).unwrap(), prompt);
    for f in ["part1.txt", "part2.txt", "leftover.txt"] {
        assert!(r.root.join(f).exists(), "{f} did not land");
    }
    // The first run's prompt had no preamble.
    let first = std::fs::read_to_string(run_dir(&r, "flaky", 1, 1).join("prompt.md")).unwrap();
    assert_eq!(first, "do both parts\n");
}

#[test]
fn verify_failure_without_retries_keeps_worktree() {
    let plan =
        format!("{HEAD}[verify]\ncommand = \"echo verify-says-no; exit 1\"\n{}", script_task("v", "", &["v.txt"]));
    let r = setup(&plan);
    let before = r.rev("main");
    assert_code(&dispatch(&r, &[]), 1);
    let rec = task(&r.tasks(), "v", 1).clone();
    assert_eq!(rec["state"], "failed");
    assert!(rec["failure"].as_str().unwrap().contains("verify exited with code 1"), "{rec}");
    assert!(rec["failure"].as_str().unwrap().contains("verify-says-no"), "{rec}");
    assert_eq!(r.rev("main"), before);
    assert!(r.task_dir("v").join("v.txt").exists());
}

#[test]
fn best_of_k_lands_one_and_keeps_candidates() {
    // Only attempt 2 passes verify.
    let verify = "#!/bin/sh\ngrep -q ' 2$' k.txt\n";
    let plan = format!(
        "{HEAD}[verify]\ncommand = [\"sh\", \"verify.sh\"]\n{}",
        script_task("k", "attempts = 3\n", &["k.txt"])
    );
    let r = setup_with(&plan, &[("verify.sh", verify)]);
    assert_ok(&dispatch(&r, &["-j", "4"]), &["dispatch"]);
    let tasks = r.tasks();
    assert_eq!(task(&tasks, "k", 2)["state"], "landed");
    assert_eq!(task(&tasks, "k", 1)["state"], "candidate");
    assert_eq!(task(&tasks, "k", 3)["state"], "candidate");
    assert_eq!(r.read("k.txt"), "k 2\n");
    // Candidates keep their branches and worktrees.
    r.git(&["rev-parse", "--verify", "hybrid/k"]);
    r.git(&["rev-parse", "--verify", "hybrid/k@3"]);
    assert!(r.base().join("repo.hybrid/k@3/k.txt").exists());
    assert!(r.task_dir("k").join("k.txt").exists());
}

#[test]
fn conflicting_pair_one_lands_one_conflicts() {
    let r = TestRepo::new();
    let bar = barrier_dir(&r);
    // Both rewrite README.md (no declared claims), meeting at a barrier so both commit before
    // either lands.
    let edit = "#!/bin/sh\ntouch \"$2/$HYBRID_TASK_ID\"\ni=0\nwhile [ ! -e \"$2/$3\" ] && [ $i -lt 200 ]; do sleep 0.05; i=$((i+1)); done\necho \"$1\" > README.md\ngit commit -q -am \"README: $1\"\n";
    let plan = format!(
        "[[task]]\nid = \"ra\"\nprompt = \"a\"\nagent = [\"builtin:script\", \"edit.sh\", \"from a\", \"{bar}\", \"rb\"]\n\n[[task]]\nid = \"rb\"\nprompt = \"b\"\nagent = [\"builtin:script\", \"edit.sh\", \"from b\", \"{bar}\", \"ra\"]\n"
    );
    r.write("hybrid.toml", &plan);
    r.write("edit.sh", edit);
    r.commit_all("plan");
    let out = dispatch(&r, &["-j", "2"]);
    assert_code(&out, 3);
    let tasks = r.tasks();
    let states: Vec<String> =
        ["ra", "rb"].iter().map(|id| task(&tasks, id, 1)["state"].as_str().unwrap().to_string()).collect();
    let mut sorted = states.clone();
    sorted.sort();
    assert_eq!(sorted, vec!["conflict", "landed"], "{tasks:#?}");
    let loser = if states[0] == "conflict" { "ra" } else { "rb" };
    assert_eq!(task(&tasks, loser, 1)["conflicts"], serde_json::json!(["README.md"]));
    assert!(stdout(&out).contains("conflicts in README.md"), "{}", stdout(&out));
}

#[test]
fn presync_conflict_launches_no_agent() {
    let plan = format!(
        "{HEAD}{}{}",
        script_task("first", "touches = [\"README.md\"]\npriority = 1\n", &["README.md"]),
        script_task("second", "touches = [\"README.md\"]\n", &["README.md"]),
    );
    let r = setup(&plan);
    // An earlier edit of README.md already sits on second's branch.
    r.git(&["branch", "hybrid/second", "main"]);
    let wt = r.base().join("side");
    r.git(&["worktree", "add", "-q", wt.to_str().unwrap(), "hybrid/second"]);
    std::fs::write(wt.join("README.md"), "older edit\n").unwrap();
    r.commit_all_in(&wt, "older edit");
    r.git(&["worktree", "remove", wt.to_str().unwrap()]);
    let out = dispatch(&r, &[]);
    assert_code(&out, 3);
    let tasks = r.tasks();
    assert_eq!(task(&tasks, "first", 1)["state"], "landed");
    let second = task(&tasks, "second", 1);
    assert_eq!(second["state"], "conflict");
    assert_eq!(second["runs"], 0);
    assert!(!runs_root(&r).join("second").exists(), "an agent was launched");
}

#[test]
fn dependents_of_a_failed_task_are_skipped() {
    let plan = format!(
        "{HEAD}[[task]]\nid = \"bad\"\nprompt = \"x\"\nagent = [\"false\"]\n{}",
        script_task("after", "depends_on = [\"bad\"]\n", &["after.txt"])
    );
    let r = setup(&plan);
    let out = dispatch(&r, &[]);
    assert_code(&out, 1);
    assert!(stdout(&out).contains("skipped"), "{}", stdout(&out));
    assert!(stdout(&out).contains("dependency bad did not land"), "{}", stdout(&out));
    assert!(!runs_root(&r).join("after").exists());
}

fn wait_for(r: &TestRepo, what: &str, mut f: impl FnMut() -> bool) {
    let until = Instant::now() + Duration::from_secs(60);
    while !f() {
        if Instant::now() > until {
            let status = stdout(&r.hybrid(&["status"]));
            let log = std::fs::read_to_string(r.root.join(".git/hybrid/dispatch.log")).unwrap_or_default();
            panic!("timed out waiting for {what}\nstatus:\n{status}\nlog:\n{log}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The first dispatcher's stderr goes where `wait_for` shows it on a timeout.
fn log_file(r: &TestRepo) -> std::fs::File {
    let p = r.root.join(".git/hybrid/dispatch.log");
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::File::create(p).unwrap()
}

/// True while `pid` is a live process (a zombie waiting to be reaped counts as dead).
#[allow(unsafe_code)]
fn pid_running(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            let state = stat.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().next());
            state != Some("Z")
        }
        // SAFETY: probing a pid with signal 0 (systems without /proc).
        Err(_) => !std::path::Path::new("/proc/self").exists() && unsafe { libc::kill(pid, 0) == 0 },
    }
}

/// `hold.sh <file> <dir>`: records, then waits until `<dir>/release-<run>` exists (at most 60 s).
const HOLD: &str = r#"#!/bin/sh
cat > "$HYBRID_RUN_DIR/stdin.txt"
pwd > "$HYBRID_RUN_DIR/pwd.txt"
echo "$$" > "$HYBRID_RUN_DIR/pid"
echo "run $HYBRID_RUN" >> "$1.log"
git add -A && git commit -q -m "hold: started run $HYBRID_RUN"
i=0
while [ ! -e "$2/release-$HYBRID_RUN" ] && [ $i -lt 1200 ]; do sleep 0.05; i=$((i+1)); done
echo done > "$1"
git add -A && git commit -q -m "hold: done"
"#;

/// A repository whose plan is one task `h` whose agent holds until released (see [`HOLD`]).
fn repo_with_one_holding_task() -> TestRepo {
    let r = TestRepo::new();
    let base = r.base().to_string_lossy().into_owned();
    let plan = format!(
        "[[task]]\nid = \"h\"\nprompt = \"hold\"\nagent = [\"builtin:script\", \"hold.sh\", \"h.txt\", \"{base}\"]\n"
    );
    r.write("hybrid.toml", &plan);
    r.write("hold.sh", HOLD);
    r.commit_all("plan");
    r
}

#[test]
fn second_dispatcher_is_refused_with_pid() {
    let r = repo_with_one_holding_task();
    let mut first = r.hybrid_cmd(&r.root, &["dispatch"]).stdout(Stdio::null()).stderr(log_file(&r)).spawn().unwrap();
    wait_for(&r, "the agent to start", || pid_written(&run_dir(&r, "h", 1, 1)));
    let out = dispatch(&r, &[]);
    assert_code(&out, 4);
    assert!(stderr(&out).contains(&format!("pid {}", first.id())), "{}", stderr(&out));
    let st = r.hybrid_json(&["status"]);
    assert_eq!(st["dispatcher"]["pid"], first.id());
    std::fs::write(r.base().join("release-1"), "").unwrap();
    assert!(first.wait().unwrap().success());
    assert_eq!(state(&r, "h", 1), "landed");
}

#[test]
fn detach_runs_in_background() {
    let plan = format!("{HEAD}{}{}", script_task("d1", "", &["d1.txt"]), script_task("d2", "", &["d2.txt"]));
    let r = setup(&plan);
    let out = r.hybrid_json(&["dispatch", "--detach"]);
    let pid = out["pid"].as_u64().unwrap();
    assert!(pid > 0);
    wait_for(&r, "both tasks to land", || {
        let t = r.tasks();
        t.len() == 2 && t.iter().all(|x| x["state"] == "landed")
    });
    let log = PathBuf::from(out["log"].as_str().unwrap());
    wait_for(&r, "the dispatcher to exit", || r.hybrid_json(&["status"])["dispatcher"].is_null());
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("d1") && text.contains("landed"), "{text}");
}

#[test]
fn kill_9_then_resume_finishes_the_plan() {
    let r = TestRepo::new();
    let base = r.base().to_string_lossy().into_owned();
    let plan = format!(
        "{HEAD}{}\n[[task]]\nid = \"h\"\nprompt = \"hold\"\nagent = [\"builtin:script\", \"hold.sh\", \"h.txt\", \"{base}\"]\n",
        script_task("quick", "", &["quick.txt"])
    );
    r.write("hybrid.toml", &plan);
    r.write("agent.sh", AGENT);
    r.write("hold.sh", HOLD);
    r.commit_all("plan");
    let mut first =
        r.hybrid_cmd(&r.root, &["dispatch", "-j", "2"]).stdout(Stdio::null()).stderr(log_file(&r)).spawn().unwrap();
    wait_for(&r, "quick to land and h to run", || {
        pid_written(&run_dir(&r, "h", 1, 1)) && r.tasks().iter().any(|t| t["id"] == "quick" && t["state"] == "landed")
    });
    first.kill().unwrap(); // SIGKILL
    first.wait().unwrap();
    let agent_pid: i32 = std::fs::read_to_string(run_dir(&r, "h", 1, 1).join("pid")).unwrap().trim().parse().unwrap();
    assert_eq!(state(&r, "h", 1), "running");
    let quick_merge = task(&r.tasks(), "quick", 1)["merge_sha"].clone();
    // The agent died with its dispatcher (its supervising child kills the group): the resume
    // never finds it still writing in the worktree it resumes.
    wait_for(&r, "the agent to die with its dispatcher", || !pid_running(agent_pid));
    std::fs::write(r.base().join("release-2"), "").unwrap();
    let out = dispatch(&r, &["-j", "2"]);
    assert_ok(&out, &["dispatch (resume)"]);
    assert!(!pid_running(agent_pid), "the first agent is still running");
    let tasks = r.tasks();
    // Landed work was not redone: one run, same merge.
    assert_eq!(task(&tasks, "quick", 1)["runs"], 1);
    assert_eq!(task(&tasks, "quick", 1)["merge_sha"], quick_merge);
    assert!(!runs_root(&r).join("quick/1/2").exists());
    // The interrupted attempt resumed in the same worktree, with the preamble.
    let h = task(&tasks, "h", 1);
    assert_eq!(h["state"], "landed");
    assert_eq!(h["runs"], 2);
    let pwd1 = std::fs::read_to_string(run_dir(&r, "h", 1, 1).join("pwd.txt")).unwrap();
    let pwd2 = std::fs::read_to_string(run_dir(&r, "h", 1, 2).join("pwd.txt")).unwrap();
    assert_eq!(pwd1, pwd2);
    let prompt = std::fs::read_to_string(run_dir(&r, "h", 1, 2).join("prompt.md")).unwrap();
    assert!(prompt.contains("interrupted"), "{prompt}");
    assert!(prompt.contains("hold: started run 1"), "{prompt}");
    assert_eq!(r.read("h.txt.log"), "run 1\nrun 2\n");
}

#[test]
fn plan_file_option_is_used() {
    let r = setup("");
    let plan_path = r.base().join("plan.toml");
    std::fs::write(&plan_path, format!("{HEAD}{}", script_task("fromfile", "", &["ff.txt"]))).unwrap();
    let out = dispatch(&r, &["--plan", plan_path.to_str().unwrap()]);
    assert_ok(&out, &["dispatch --plan"]);
    assert_eq!(state(&r, "fromfile", 1), "landed");
    // A second dispatch has nothing to do.
    let again = dispatch(&r, &["--plan", plan_path.to_str().unwrap()]);
    assert_ok(&again, &["dispatch --plan (again)"]);
    assert!(stdout(&again).contains("landed before this dispatch"), "{}", stdout(&again));
    assert!(!runs_root(&r).join("fromfile/1/2").exists());
}

#[test]
#[allow(unsafe_code)]
fn sigint_stops_the_agents_and_the_next_dispatch_resumes() {
    let r = repo_with_one_holding_task();
    let mut first = r.hybrid_cmd(&r.root, &["dispatch"]).stdout(Stdio::piped()).stderr(log_file(&r)).spawn().unwrap();
    wait_for(&r, "the agent to start", || pid_written(&run_dir(&r, "h", 1, 1)));
    let agent_pid: i32 = std::fs::read_to_string(run_dir(&r, "h", 1, 1).join("pid")).unwrap().trim().parse().unwrap();
    // SAFETY: sending SIGINT to the dispatcher we started.
    unsafe { libc::kill(first.id() as i32, libc::SIGINT) };
    let status = first.wait().unwrap();
    assert_eq!(status.code(), Some(1));
    let until = Instant::now() + Duration::from_secs(10);
    while pid_running(agent_pid) && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(!pid_running(agent_pid), "the agent outlived the stop");
    let rec = task(&r.tasks(), "h", 1).clone();
    assert_eq!(rec["state"], "failed");
    assert!(rec["failure"].as_str().unwrap().contains("stopped"), "{rec}");
    std::fs::write(r.base().join("release-2"), "").unwrap();
    assert_ok(&dispatch(&r, &[]), &["dispatch (resume)"]);
    let rec = task(&r.tasks(), "h", 1).clone();
    assert_eq!(rec["state"], "landed");
    assert_eq!(rec["runs"], 2);
    let prompt = std::fs::read_to_string(run_dir(&r, "h", 1, 2).join("prompt.md")).unwrap();
    assert!(prompt.contains("stopped during run 1"), "{prompt}");
}

#[test]
fn landing_refused_by_local_changes_waits_as_passed_then_lands() {
    let plan = format!("{HEAD}{}", script_task("lc", "", &["shared.txt"]));
    let r = setup(&plan);
    // The user has an uncommitted shared.txt in the main checkout (where main is checked out).
    r.write("shared.txt", "my own work\n");
    let out = dispatch(&r, &[]);
    assert_code(&out, 1);
    let rec = task(&r.tasks(), "lc", 1).clone();
    assert_eq!(rec["state"], "passed", "{rec}");
    assert!(rec["failure"].as_str().unwrap().contains("landing failed"), "{rec}");
    assert_eq!(r.read("shared.txt"), "my own work\n");
    // Once the user moved their file away, the next dispatch lands without a new agent run.
    std::fs::remove_file(r.root.join("shared.txt")).unwrap();
    assert_ok(&dispatch(&r, &[]), &["dispatch (again)"]);
    let rec = task(&r.tasks(), "lc", 1).clone();
    assert_eq!(rec["state"], "landed");
    assert_eq!(rec["runs"], 1);
    assert_eq!(r.read("shared.txt"), "lc 1\n");
}

#[test]
fn status_shows_the_claims_each_dispatched_attempt_was_started_with() {
    let r = setup("");
    let plan_path = r.base().join("plan.toml");
    // `redo` fails every run, so the next dispatch resumes it under the edited plan.
    let plan = |touches: &str| {
        format!(
            "{HEAD}{}{}\n[[task]]\nid = \"redo\"\nprompt = \"x\"\nagent = [\"sh\", \"-c\", \"exit 1\"]\ntouches = [{touches}]\n",
            script_task("plug", "shape = \"plugin\"\nplugin = \"login\"\ntouches = [\"docs/login.md\"]\n", &["src/plugins/login/a.txt"]),
            script_task("free", "", &["free.txt"]),
        )
    };
    std::fs::write(&plan_path, plan("\"src/old/**\"")).unwrap();
    let out = dispatch(&r, &["--plan", plan_path.to_str().unwrap()]);
    assert_code(&out, 1);
    let tasks = r.tasks();
    assert_eq!(task(&tasks, "plug", 1)["claims"], serde_json::json!(["src/plugins/login/**", "docs/login.md"]));
    assert_eq!(task(&tasks, "free", 1)["claims"], serde_json::json!([]), "known and unrestricted");
    assert_eq!(task(&tasks, "redo", 1)["claims"], serde_json::json!(["src/old/**"]));
    assert_eq!(task(&tasks, "redo", 1)["state"], "failed");

    std::fs::write(&plan_path, plan("\"src/new/**\"")).unwrap();
    let _ = dispatch(&r, &["--plan", plan_path.to_str().unwrap()]);
    assert_eq!(task(&r.tasks(), "redo", 1)["claims"], serde_json::json!(["src/new/**"]));
    // A task started by hand with no plan entry has no recorded claims.
    r.hybrid_ok(&["start", "manual"]);
    assert_eq!(task(&r.tasks(), "manual", 1)["claims"], serde_json::Value::Null);
}

/// A run killed inside `git commit` (stop, timeout, MCP `cancel`) leaves the worktree's
/// `index.lock`; its process group is gone, so the dispatcher removes it before committing
/// what the run left, and the next run works in the same worktree.
#[test]
fn a_run_that_leaves_the_index_locked_does_not_block_the_next_run() {
    let script = "#!/bin/sh\necho \"run $HYBRID_RUN\" >> work.txt\nif [ \"$HYBRID_RUN\" = 1 ]; then\n  \
                  touch \"$(git rev-parse --git-dir)/index.lock\"\n  exit 1\nfi\n\
                  git add -A && git commit -q -m 'second run'\n";
    let plan = "[[task]]\nid = \"locked\"\nprompt = \"p\"\nagent = [\"builtin:script\", \"lock.sh\"]\nretries = 1\n";
    let r = setup_with(plan, &[("lock.sh", script)]);
    assert_ok(&dispatch(&r, &[]), &["dispatch"]);
    let rec = task(&r.tasks(), "locked", 1).clone();
    assert_eq!(rec["state"], "landed", "{rec}");
    assert_eq!(rec["runs"], 2, "{rec}");
    assert_eq!(r.git(&["show", "main:work.txt"]), "run 1\nrun 2");
}
