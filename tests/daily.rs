//! Issue 14, the rough edges a new user hit: each test reproduces one report through the real
//! binary on a hermetic repository.

mod common;

use common::{assert_code, assert_ok, stderr, stdout, TestRepo};
use serde_json::Value;

/// A repository whose plan runs `agent` (argv as TOML) for task `t1`.
fn with_plan(plan: &str) -> TestRepo {
    let r = TestRepo::new();
    r.write("hybrid.toml", plan);
    r.commit_all("plan");
    r
}

fn record(r: &TestRepo, id: &str) -> Value {
    r.tasks().into_iter().find(|t| t["id"] == id).unwrap_or_else(|| panic!("{id} not in status"))
}

#[test]
fn failure_notes_show_the_useful_last_line_once() {
    let r = with_plan(
        "[agent]\ncommand = [\"sh\", \"-c\", \"cat >/dev/null; echo noise >&2; echo 'sh: claude: not found' >&2; exit 127\"]\n\
         [[task]]\nid = \"t1\"\nprompt = \"x\"\n",
    );
    let out = r.hybrid(&["dispatch"]);
    assert_code(&out, 1);
    let log = stderr(&out);
    let failed: Vec<&str> = log.lines().filter(|l| l.contains("t1 failed")).collect();
    assert_eq!(failed.len(), 1, "`failed` printed once: {log}");
    assert!(failed[0].contains("exited with code 127") && failed[0].contains("sh: claude: not found"), "{log}");
    // The final table's note.
    let table = stdout(&out);
    let row = table.lines().find(|l| l.starts_with("t1 ")).unwrap_or_else(|| panic!("{table}"));
    assert!(row.contains("sh: claude: not found"), "{table}");
    // status shows the output tail under the failure.
    let st = r.hybrid_ok(&["status"]);
    assert!(st.contains("sh: claude: not found"), "{st}");
    assert!(st.contains("noise"), "{st}");
}

#[test]
fn a_retried_failure_is_reported_per_run_and_once_at_the_end() {
    let r = with_plan(
        "[agent]\ncommand = [\"sh\", \"-c\", \"cat >/dev/null; echo \\\"bad run $HYBRID_RUN_DIR\\\" >&2; exit 3\"]\n\
         [[task]]\nid = \"t1\"\nprompt = \"x\"\nretries = 1\n",
    );
    let out = r.hybrid(&["dispatch"]);
    assert_code(&out, 1);
    let log = stderr(&out);
    assert_eq!(log.lines().filter(|l| l.contains("t1 retry after run 1 failed")).count(), 1, "{log}");
    assert_eq!(log.lines().filter(|l| l.contains("t1 failed")).count(), 1, "{log}");
    assert_ok(&r.hybrid(&["status", "t1"]), &["status"]);
    assert_eq!(record(&r, "t1")["runs"], 2);
}

#[test]
fn merging_only_uncommitted_work_is_refused_not_recorded_empty() {
    let r = TestRepo::new();
    r.hybrid_ok(&["start", "t1"]);
    let wt = r.task_dir("t1");
    common::write_file(&wt.join("f.txt"), "work\n");
    let before = r.refs_snapshot();
    let out = r.hybrid(&["merge", "t1"]);
    assert_code(&out, 3);
    assert!(
        stderr(&out).contains("uncommitted changes") && stderr(&out).contains("nothing was landed"),
        "{}",
        stderr(&out)
    );
    assert!(!stdout(&out).contains("empty"), "{}", stdout(&out));
    let out = r.hybrid(&["--json", "merge", "t1"]);
    assert_code(&out, 3);
    let doc: Value = serde_json::from_str(stderr(&out).trim()).unwrap();
    assert_eq!(doc["paths"], serde_json::json!(["f.txt"]));
    assert_eq!(r.refs_snapshot(), before);
    assert_eq!(record(&r, "t1")["state"], "ready");
    assert!(wt.join("f.txt").exists());
    // Once committed, the work lands.
    r.commit_all_in(&wt, "work");
    r.hybrid_ok(&["merge", "t1"]);
    let rec = record(&r, "t1");
    assert_eq!(rec["state"], "landed");
    assert_eq!(r.git(&["show", "main:f.txt"]), "work");
}

#[test]
fn clean_merged_removes_untouched_tasks_and_keeps_started_work() {
    let r = TestRepo::new();
    r.hybrid_ok(&["start", "untouched"]);
    r.hybrid_ok(&["start", "busy"]);
    common::write_file(&r.task_dir("busy").join("b.txt"), "b\n");
    r.commit_all_in(&r.task_dir("busy"), "busy work");
    r.hybrid_ok(&["start", "dirty"]);
    common::write_file(&r.task_dir("dirty").join("d.txt"), "d\n");
    r.hybrid_ok(&["start", "done"]);
    common::write_file(&r.task_dir("done").join("x.txt"), "x\n");
    r.commit_all_in(&r.task_dir("done"), "done work");
    r.hybrid_ok(&["merge", "--keep", "done"]);

    let doc = r.hybrid_json(&["clean", "--merged", "--force"]);
    let mut removed: Vec<&str> = doc["removed"].as_array().unwrap().iter().map(|i| i["id"].as_str().unwrap()).collect();
    removed.sort();
    assert_eq!(removed, ["done", "untouched"], "{doc}");
    assert!(!r.task_dir("untouched").exists());
    assert!(r.git_out(&r.root, &["rev-parse", "--verify", "-q", "hybrid/untouched"]).stdout.is_empty());
    // Work in started tasks is not `--merged`'s, even with --force.
    assert!(r.task_dir("busy").join("b.txt").exists());
    assert!(r.task_dir("dirty").join("d.txt").exists());
    assert!(!r.rev("hybrid/busy").is_empty());
}

#[test]
fn clean_treats_patch_equivalent_commits_as_landed() {
    let r = TestRepo::new();
    r.hybrid_ok(&["start", "t1"]);
    let wt = r.task_dir("t1");
    common::write_file(&wt.join("f.txt"), "work\n");
    let c = r.commit_all_in(&wt, "work");
    // The same change reaches main another way (cherry-pick onto a moved main), with another id.
    r.write("other.txt", "o\n");
    r.commit_all("main moves");
    r.git(&["cherry-pick", &c]);
    assert_ne!(r.rev("main"), c);
    let doc = r.hybrid_json(&["clean", "t1"]);
    assert_eq!(doc["removed"][0]["id"], "t1", "{doc}");
    assert!(!wt.exists());
    assert!(r.git_out(&r.root, &["rev-parse", "--verify", "-q", "refs/hybrid/trash/t1"]).stdout.is_empty());
    // A commit main does not have is still kept.
    r.hybrid_ok(&["start", "t2"]);
    common::write_file(&r.task_dir("t2").join("g.txt"), "g\n");
    r.commit_all_in(&r.task_dir("t2"), "g");
    let out = r.hybrid(&["clean", "t2"]);
    assert!(stdout(&out).contains("1 commit(s) not landed"), "{}", stdout(&out));
    assert!(r.task_dir("t2").exists());
}

#[test]
fn sync_fast_forwards_a_branch_without_commits_of_its_own() {
    let r = TestRepo::new();
    r.hybrid_ok(&["start", "t1"]);
    let wt = r.task_dir("t1");
    r.write("b.txt", "main\n");
    let main = r.commit_all("main moves");
    let j = r.hybrid_json(&["sync", "t1"]);
    assert_eq!(j["status"], "fast-forward", "{j}");
    assert_eq!(j["commit"], Value::Null);
    assert_eq!(r.rev("hybrid/t1"), main, "no merge commit");
    assert_eq!(r.git_in(&wt, &["rev-parse", "HEAD"]), main);
    assert_eq!(std::fs::read_to_string(wt.join("b.txt")).unwrap(), "main\n");
    assert_eq!(r.porcelain(&wt), "");
    // Text mode says so.
    r.write("c.txt", "c\n");
    r.commit_all("main moves again");
    assert!(r.hybrid_ok(&["sync", "t1"]).contains("fast-forwarded to main"));
    // Uncommitted changes in the way still refuse, changing nothing.
    r.write("b.txt", "main 2\n");
    let main2 = r.commit_all("main edits b");
    common::write_file(&wt.join("b.txt"), "mine\n");
    let out = r.hybrid(&["sync", "t1"]);
    assert_code(&out, 3);
    assert_ne!(r.rev("hybrid/t1"), main2);
    assert_eq!(std::fs::read_to_string(wt.join("b.txt")).unwrap(), "mine\n");
}

#[test]
fn status_shows_no_last_commit_for_a_task_without_commits() {
    let r = TestRepo::new();
    r.hybrid_ok(&["start", "t1"]);
    assert_eq!(record(&r, "t1")["last_commit"], Value::Null);
    let st = r.hybrid_ok(&["status"]);
    let row = st.lines().find(|l| l.starts_with("t1 ")).unwrap();
    assert!(!row.contains("initial commit"), "{st}");
    // After a fast-forward sync the branch still has none of its own.
    r.write("m.txt", "m\n");
    r.commit_all("main moves");
    r.hybrid_ok(&["sync", "t1"]);
    assert_eq!(record(&r, "t1")["last_commit"], Value::Null);
    common::write_file(&r.task_dir("t1").join("f.txt"), "f\n");
    r.commit_all_in(&r.task_dir("t1"), "task work");
    assert_eq!(record(&r, "t1")["last_commit"], "task work");
}

#[test]
fn plan_validation_reports_every_problem() {
    let r = with_plan(
        "[agent]\ncommand = [\"true\"]\n\
         [[task]]\nid = \"a\"\nprompt = \"x\"\ntouches = [\"../x\"]\n\
         [[task]]\nid = \"b\"\nprompt = \"y\"\ndepends_on = [\"ghost\"]\nbase = \"no-such-rev\"\n",
    );
    for args in [&["dispatch", "--dry-run"][..], &["dispatch"]] {
        let out = r.hybrid(args);
        assert_code(&out, 2);
        let err = stderr(&out);
        for needle in [
            "hybrid.toml:6:12: bad glob",
            "hybrid.toml:10:15: task \"b\" depends on \"ghost\"",
            "hybrid.toml:11:1: task \"b\": `base`",
            "(3 problems in the plan)",
        ] {
            assert!(err.contains(needle), "{needle}: {err}");
        }
    }
    assert!(!r.root.join(".git/hybrid/ledger").exists());
}

#[test]
fn merge_takes_an_attempt_per_task() {
    let r = TestRepo::new();
    r.hybrid_ok(&["start", "t1", "--attempt", "2"]);
    r.hybrid_ok(&["start", "t2"]);
    let wt1 = r.base().join("repo.hybrid").join("t1@2");
    common::write_file(&wt1.join("a.txt"), "a\n");
    r.commit_all_in(&wt1, "t1 attempt 2");
    common::write_file(&r.task_dir("t2").join("b.txt"), "b\n");
    r.commit_all_in(&r.task_dir("t2"), "t2 work");
    for bad in ["t1@x", "t1@0", "t1@"] {
        let out = r.hybrid(&["merge", bad, "t2"]);
        assert_code(&out, 2);
    }
    let docs = r.hybrid_json(&["merge", "t1@2", "t2"]);
    assert_eq!(docs[0]["task"], "t1");
    assert_eq!(docs[0]["attempt"], 2, "{docs}");
    assert_eq!(docs[1]["task"], "t2");
    assert_eq!(docs[1]["attempt"], 1, "{docs}");
    assert_eq!(r.git(&["show", "main:a.txt"]), "a");
    assert_eq!(r.git(&["show", "main:b.txt"]), "b");
}

#[test]
fn a_rerun_counts_landed_and_empty_tasks_apart() {
    let r = with_plan(
        "[agent]\ncommand = [\"sh\", \"-c\", \"cat >/dev/null\"]\n\
         [[task]]\nid = \"work\"\nprompt = \"x\"\nagent = [\"sh\", \"-c\", \"cat >/dev/null; echo w > w.txt; git add -A; git commit -qm work\"]\n\
         [[task]]\nid = \"nothing\"\nprompt = \"y\"\n",
    );
    let out = r.hybrid(&["dispatch"]);
    assert_ok(&out, &["dispatch"]);
    assert_eq!(record(&r, "work")["state"], "landed");
    assert_eq!(record(&r, "nothing")["state"], "empty");
    let out = r.hybrid(&["dispatch"]);
    assert_ok(&out, &["dispatch"]);
    let log = stderr(&out);
    assert!(log.contains("plan: 2 tasks (1 already landed, 1 already empty)"), "{log}");
    let table = stdout(&out);
    let row = table.lines().find(|l| l.starts_with("nothing ")).unwrap();
    assert!(row.contains("empty before this dispatch"), "{table}");
}

#[test]
fn builtin_script_honours_the_shebang() {
    let r = TestRepo::new();
    // bash-only syntax (`<<<`), which `sh` (dash) refuses with "redirection unexpected".
    r.write(
        "bash-agent.sh",
        "#!/usr/bin/env bash\nread -r word <<< \"from-bash\"\necho \"$word\" > out.txt\ngit add out.txt && git commit -qm \"bash agent\"\n",
    );
    // A shebang with an argument: `sh -x` traces to stderr.
    r.write(
        "traced.sh",
        "#!/bin/sh -x\ncat >/dev/null\necho traced > traced.txt\ngit add traced.txt && git commit -qm traced\n",
    );
    // No shebang: run by sh.
    r.write("sh-agent", "cat >/dev/null\necho plain > plain.txt\ngit add plain.txt && git commit -qm \"sh agent\"\n");
    r.write(
        "hybrid.toml",
        "[[task]]\nid = \"b\"\nprompt = \"x\"\nagent = [\"builtin:script\", \"bash-agent.sh\"]\n\
         [[task]]\nid = \"s\"\nprompt = \"y\"\nagent = [\"builtin:script\", \"sh-agent\"]\n\
         [[task]]\nid = \"x\"\nprompt = \"z\"\nagent = [\"builtin:script\", \"traced.sh\"]\n",
    );
    r.commit_all("agents (not executable)");
    let out = r.hybrid(&["dispatch"]);
    assert_ok(&out, &["dispatch"]);
    assert_eq!(r.git(&["show", "main:out.txt"]), "from-bash");
    assert_eq!(r.git(&["show", "main:plain.txt"]), "plain");
    let trace = std::fs::read_to_string(r.root.join(".git/hybrid/runs/x/1/1/stderr.log")).unwrap();
    assert!(trace.contains("+ echo traced"), "the shebang's argument was passed: {trace}");
}

#[test]
fn a_missing_agent_program_is_found_before_any_worktree() {
    let r = with_plan(
        "[agent]\ncommand = [\"no-such-agent-program\", \"-p\"]\n\
         [[task]]\nid = \"t1\"\nprompt = \"x\"\n\
         [[task]]\nid = \"t2\"\nprompt = \"y\"\nagent = [\"/no/such/agent\"]\n\
         [[task]]\nid = \"t3\"\nprompt = \"z\"\nagent = [\"true\"]\n",
    );
    for args in [&["dispatch"][..], &["dispatch", "--dry-run"], &["dispatch", "--detach"]] {
        let out = r.hybrid(args);
        assert_code(&out, 2);
        let err = stderr(&out);
        assert!(
            err.contains("hybrid.toml:3: task \"t1\": the agent program `no-such-agent-program` is not on the PATH"),
            "{err}"
        );
        assert!(
            err.contains("hybrid.toml:6: task \"t2\": the agent program /no/such/agent is not an executable file"),
            "{err}"
        );
        assert!(!err.contains("\"t3\""), "{err}");
        assert!(!r.task_dir("t1").exists() && !r.task_dir("t3").exists(), "no worktree is made");
        assert!(!r.root.join(".git/hybrid/ledger").exists());
    }
}

#[test]
fn squash_subjects_come_from_the_title_or_the_prompt_not_checkpoints() {
    let r = with_plan(
        "[agent]\ncommand = [\"sh\", \"-c\", \"cat >/dev/null; echo \\\"$HYBRID_TASK_ID\\\" > \\\"$HYBRID_TASK_ID.txt\\\"\"]\n\
         [[task]]\nid = \"p\"\nprompt = \"# Add the greeting\\n\\nThen more details.\"\n\
         [[task]]\nid = \"t\"\ntitle = \"Titled task\"\nprompt = \"do it\"\n",
    );
    let out = r.hybrid(&["dispatch", "-j", "1"]);
    assert_ok(&out, &["dispatch"]);
    let subjects = r.git(&["log", "--format=%s", "main"]);
    assert!(subjects.contains("Add the greeting"), "{subjects}");
    assert!(subjects.contains("Titled task"), "{subjects}");
    assert!(!subjects.contains("checkpoint"), "{subjects}");
    // A hand merge of a task whose only commit is a checkpoint does not use that subject either.
    r.hybrid_ok(&["start", "h"]);
    common::write_file(&r.task_dir("h").join("h.txt"), "h\n");
    r.commit_all_in(&r.task_dir("h"), "hybrid: checkpoint after run 1 of h");
    r.hybrid_ok(&["merge", "h"]);
    assert_eq!(r.git(&["log", "-1", "--format=%s", "main"]), "Land task h");
}

#[test]
fn git_dates_in_every_format_git_accepts_are_used() {
    let r = TestRepo::new();
    for (i, (author, committer)) in [
        ("Thu, 07 Apr 2005 22:13:13 +0200", "2005-04-07T22:13:13+02:00"),
        ("2005-04-07 22:13:13 +0200", "Thu Apr 7 22:13:13 2005 +0200"),
        ("@1112904793 +0200", "1112904793 +0200"),
    ]
    .iter()
    .enumerate()
    {
        let id = format!("t{i}");
        r.hybrid_ok(&["start", &id]);
        common::write_file(&r.task_dir(&id).join(format!("{id}.txt")), "x\n");
        r.commit_all_in(&r.task_dir(&id), "work");
        let out = r
            .hybrid_cmd(&r.root, &["merge", &id])
            .env("GIT_AUTHOR_DATE", author)
            .env("GIT_COMMITTER_DATE", committer)
            .output()
            .unwrap();
        assert_ok(&out, &["merge", &id]);
        let dates = r.git(&["log", "-1", "--format=%ad|%cd", "--date=raw", "main"]);
        assert_eq!(dates, "1112904793 +0200|1112904793 +0200", "{author} / {committer}");
    }
}

/// Item 10: `status --watch` piped (not a terminal) never clears the screen, and its progress
/// bar counts the plan the dispatcher runs, not every task in the ledger.
#[test]
fn watch_clears_only_a_terminal_and_counts_the_running_plan() {
    use std::io::BufRead;
    let r = TestRepo::new();
    // Tasks from before, outside the plan: one landed, one started.
    r.hybrid_ok(&["start", "old1"]);
    common::write_file(&r.task_dir("old1").join("old1.txt"), "old\n");
    r.commit_all_in(&r.task_dir("old1"), "old1 work");
    r.hybrid_ok(&["merge", "old1"]);
    r.hybrid_ok(&["start", "old2"]);
    let release = r.holding_plan();
    let log = std::fs::File::create(r.base().join("dispatch.err")).unwrap();
    let mut dispatcher =
        r.hybrid_cmd(&r.root, &["dispatch"]).stdout(std::process::Stdio::null()).stderr(log).spawn().unwrap();
    // A liveness bound, not a timing assert: the agent starts in well under a second.
    let mut st = Value::Null;
    for _ in 0..1200 {
        st = r.hybrid_json(&["status"]);
        if st["dispatcher"]["plan"].is_array()
            && st["tasks"].as_array().unwrap().iter().any(|t| t["id"] == "h" && t["state"] == "running")
        {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert_eq!(st["dispatcher"]["plan"], serde_json::json!(["h"]), "{st}");
    assert_eq!(st["dispatcher"]["plan_done"], 0, "{st}");
    assert_eq!(st["dispatcher"]["pid"], dispatcher.id());

    let mut watch = r
        .hybrid_cmd(&r.root, &["status", "--watch", "--interval", "0.1"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut text = String::new();
    let mut headers = 0;
    for line in std::io::BufReader::new(watch.stdout.take().unwrap()).lines() {
        let line = line.unwrap();
        headers += usize::from(line.starts_with("TASK "));
        text.push_str(&line);
        text.push('\n');
        if headers == 2 {
            break;
        }
    }
    watch.kill().unwrap();
    watch.wait().unwrap();
    assert!(!text.contains('\x1b'), "escape codes on a pipe: {text:?}");
    assert!(text.contains("] 0/1 of the plan landed"), "{text}");
    assert!(!text.contains("/3"), "the bar counts the ledger: {text}");
    assert!(text.contains("old2"), "the table still shows every task: {text}");

    std::fs::write(&release, "").unwrap();
    assert!(dispatcher.wait().unwrap().success());
    let st = r.hybrid_json(&["status"]);
    assert!(st["dispatcher"].is_null(), "{st}");
    assert_eq!(record(&r, "h")["state"], "landed");
}

/// Item 8: the `candidate_diff` of an attempt that caught up with the target (sync) and then
/// conflicted holds its own work only, not the other tasks' work sync brought in.
#[test]
fn export_candidate_of_a_caught_up_conflicted_task_is_its_own_work() {
    let r = with_plan("[export]\nenabled = true\nacknowledged_terms = true\n");
    let commit_in = |id: &str, file: &str, text: &str| {
        common::write_file(&r.task_dir(id).join(file), text);
        r.commit_all_in(&r.task_dir(id), &format!("{id}: {file}"));
    };
    r.hybrid_ok(&["start", "t1"]);
    commit_in("t1", "a.txt", "a\n");
    r.hybrid_ok(&["start", "t2"]);
    commit_in("t2", "b.txt", "from t2\n");
    r.hybrid_ok(&["merge", "t2"]);
    r.hybrid_ok(&["sync", "t1"]); // brings t2's b.txt into t1's branch
    commit_in("t1", "a.txt", "a2\n");
    r.hybrid_ok(&["start", "t3"]);
    commit_in("t3", "a.txt", "from t3\n");
    r.hybrid_ok(&["merge", "t3"]);
    assert_code(&r.hybrid(&["merge", "t1"]), 3);
    assert_eq!(record(&r, "t1")["state"], "conflict");

    let out = r.hybrid(&["export"]);
    assert_ok(&out, &["export"]);
    let recs: Vec<Value> = stdout(&out).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let t1 = recs.iter().find(|x| x["task"] == "t1").unwrap_or_else(|| panic!("{}", stdout(&out)));
    let diff = t1["candidate_diff"].as_str().unwrap();
    assert!(diff.contains("+++ b/a.txt") && diff.contains("+a2"), "{diff}");
    assert!(!diff.contains("b.txt") && !diff.contains("from t2"), "t2's work in t1's candidate: {diff}");
    // A landed task's candidate is unchanged: its own patch.
    let t2 = recs.iter().find(|x| x["task"] == "t2").unwrap();
    assert!(t2["candidate_diff"].as_str().unwrap().contains("+from t2"), "{t2}");
}
