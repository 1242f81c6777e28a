//! `git hybrid export`: the two-flag opt-in, formats, dedupe, deterministic split, redaction.

mod common;

use std::path::PathBuf;

use common::{assert_code, assert_ok, stderr, stdout, TestRepo};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

const CONFIG: &str = "[export]\nenabled = true\nacknowledged_terms = true\nredact = [\"ACME-[0-9]{4}\"]\n";

fn aws_key() -> String {
    ["AKIA", "Q3EGRIRZDOJ5BOSC"].concat()
}

fn record(id: &str, attempt: u32, state: &str, base: &str) -> Value {
    let branch = if attempt == 1 { format!("hybrid/{id}") } else { format!("hybrid/{id}@{attempt}") };
    json!({
        "id": id, "attempt": attempt, "state": state, "branch": branch, "worktree": null,
        "base": base, "target": "main", "title": format!("task {id}"), "merge_sha": null,
        "merge_base": null, "tip": null, "landed_at": null, "created": "2026-01-01T00:00:00Z",
        "updated": "2026-01-01T00:00:00Z", "run_dir": null,
        "agent": ["claude", "-p", "--output-format", "stream-json"], "failure": null,
        "conflicts": [], "runs": 1, "labels": null
    })
}

fn write_record(repo: &TestRepo, rec: &Value) {
    let path =
        repo.root.join(".git/hybrid/ledger").join(rec["id"].as_str().unwrap()).join(format!("{}.json", rec["attempt"]));
    common::write_file(&path, &serde_json::to_string_pretty(rec).unwrap());
}

/// Writes a run's files; returns the run folder.
fn write_run(repo: &TestRepo, id: &str, attempt: u32, run: u32, prompt: &str, stdout: &str) -> PathBuf {
    let dir = repo.root.join(".git/hybrid/runs").join(id).join(attempt.to_string()).join(run.to_string());
    common::write_file(&dir.join("prompt.md"), prompt);
    common::write_file(&dir.join("stdout.log"), stdout);
    common::write_file(&dir.join("stderr.log"), "");
    dir
}

fn stream(model: &str, text: &str) -> String {
    [
        json!({"type": "system", "subtype": "init", "model": model, "cwd": "/home/alice/work/repo"}),
        json!({"type": "assistant", "message": {"id": "m1", "model": model, "content": [
            {"type": "thinking", "thinking": "let me look"},
            {"type": "text", "text": text}]}}),
        json!({"type": "assistant", "message": {"id": "m1", "model": model, "content": [
            {"type": "tool_use", "id": "tu1", "name": "Edit", "input": {"file_path": "/home/alice/work/repo/a.txt"}}]}}),
        json!({"type": "user", "message": {"content": [
            {"type": "tool_result", "tool_use_id": "tu1", "content": [{"type": "text", "text": "edited"}]}]}}),
        json!({"type": "result", "subtype": "success", "result": text}),
    ]
    .iter()
    .map(|v| v.to_string() + "\n")
    .collect()
}

/// t1 landed (attempt 1) with a rival attempt 2 sharing its prompt; t2 failed twice with the
/// same prompt; t3 landed with a plain-text agent; tasks f0..f19 failed with their own prompts.
struct Fixture {
    repo: TestRepo,
    squash: String,
    stdout1: PathBuf,
}

fn fixture() -> Fixture {
    let repo = TestRepo::new();
    repo.write("a.txt", "one\ntwo\nthree\n");
    let base = repo.commit_all("base");
    repo.git(&["checkout", "-q", "-b", "hybrid/t1"]);
    repo.write("a.txt", "one\n2\nthree\n");
    let tip1 = repo.commit_all("t1");
    repo.git(&["checkout", "-q", "main"]);
    repo.git(&["merge", "-q", "--squash", "hybrid/t1"]);
    repo.git(&["commit", "-q", "-m", "t1\n\nHybrid-Task: t1"]);
    let squash = repo.rev("HEAD");
    repo.git(&["checkout", "-q", "-b", "hybrid/t1@2", &base]);
    repo.write("a.txt", "one\nTWO\nthree\n");
    repo.commit_all("t1 attempt 2");
    repo.git(&["checkout", "-q", "main"]);
    repo.git(&["checkout", "-q", "-b", "hybrid/t3"]);
    repo.write("b.txt", "bee\n");
    let tip3 = repo.commit_all("t3");
    repo.git(&["checkout", "-q", "main"]);
    repo.git(&["merge", "-q", "--squash", "hybrid/t3"]);
    repo.git(&["commit", "-q", "-m", "t3\n\nHybrid-Task: t3"]);
    let squash3 = repo.rev("HEAD");

    let prompt1 = "Change two to 2 (ticket ACME-1234).\n";
    let out1 = stream("claude-test-4", &format!("Done. Key was {} in /home/alice/x", aws_key()));
    let dir1 = write_run(&repo, "t1", 1, 1, prompt1, &out1);
    let mut r1 = record("t1", 1, "landed", &base);
    r1["merge_sha"] = json!(squash);
    r1["tip"] = json!(tip1);
    r1["landed_at"] = json!("2026-01-01T02:00:00Z");
    r1["run_dir"] = json!(dir1);
    write_record(&repo, &r1);
    // Attempt 2: no run_dir in the ledger; its newest run (2) is used.
    write_run(&repo, "t1", 2, 1, "an older prompt\n", "old run\n");
    write_run(&repo, "t1", 2, 2, prompt1, &stream("claude-test-4", "My take."));
    write_record(&repo, &record("t1", 2, "candidate", &base));

    for a in 1..=2 {
        write_run(&repo, "t2", a, 1, "Impossible task.\n", "I could not do it.\n");
        write_record(&repo, &record("t2", a, "failed", &base));
    }
    let dir3 = write_run(&repo, "t3", 1, 1, "Add b.txt.\n", "plain text agent output\n");
    let mut r3 = record("t3", 1, "landed", &squash);
    r3["merge_sha"] = json!(squash3);
    r3["tip"] = json!(tip3);
    r3["run_dir"] = json!(dir3);
    r3["agent"] = json!(["my-agent", "--token", format!("ghp_{}", "x".repeat(36))]);
    write_record(&repo, &r3);
    for i in 0..20 {
        let id = format!("f{i}");
        write_run(&repo, &id, 1, 1, &format!("Prompt {i}.\n"), "no luck\n");
        write_record(&repo, &record(&id, 1, "failed", &base));
    }
    // Still running: not exported.
    write_record(&repo, &record("busy", 1, "running", &base));
    repo.write("hybrid.toml", CONFIG);
    Fixture { repo, squash, stdout1: dir1.join("stdout.log") }
}

fn export(repo: &TestRepo, args: &[&str]) -> Vec<Value> {
    let mut all = vec!["export"];
    all.extend_from_slice(args);
    let out = repo.hybrid(&all);
    assert_ok(&out, &all);
    stdout(&out).lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

fn find<'a>(records: &'a [Value], task: &str, attempt: u64) -> Option<&'a Value> {
    records.iter().find(|r| r["task"] == task && r["attempt"] == attempt)
}

fn expected_split(id: &str) -> &'static str {
    let d = Sha256::digest(id.as_bytes());
    let n = u64::from_be_bytes(d[..8].try_into().unwrap()) % 100;
    if n < 80 {
        "train"
    } else if n < 90 {
        "val"
    } else {
        "test"
    }
}

#[test]
fn export_is_refused_without_both_flags() {
    let f = fixture();
    let repo = &f.repo;
    repo.write("hybrid.toml", "");
    let out = repo.hybrid(&["export"]);
    assert_code(&out, 2);
    let err = stderr(&out);
    assert!(err.contains("enabled = true") && err.contains("acknowledged_terms = true"), "{err}");
    assert!(stdout(&out).is_empty());

    repo.write("hybrid.toml", "[export]\nenabled = true\n");
    let out = repo.hybrid(&["export"]);
    assert_code(&out, 2);
    assert!(stderr(&out).contains("terms are not acknowledged"), "{}", stderr(&out));
    assert!(stderr(&out).contains("Anthropic"));

    repo.write("hybrid.toml", "[export]\nacknowledged_terms = true\n");
    assert_code(&repo.hybrid(&["export"]), 2);

    repo.write("hybrid.toml", "[export]\nenabled = true\nacknowledged_terms = true\nredact = [\"(unclosed\"]\n");
    let out = repo.hybrid(&["export"]);
    assert_code(&out, 2);
    assert!(stderr(&out).contains("hybrid.toml:4:"), "{}", stderr(&out));
}

#[test]
fn raw_export_carries_prompt_trajectory_diffs_labels_and_provenance() {
    let f = fixture();
    let repo = &f.repo;
    let stored = std::fs::read(&f.stdout1).unwrap();
    let recs = export(repo, &[]);
    // 20 failed + t1#1 + t3 + one of t2's two identical attempts; t1#2 repeats t1#1's
    // (prompt, final_diff); the running attempt is not exported.
    assert_eq!(recs.len(), 23, "{recs:#?}");
    assert!(find(&recs, "t1", 2).is_none());
    assert!(find(&recs, "t2", 1).is_some() && find(&recs, "t2", 2).is_none());
    assert!(find(&recs, "busy", 1).is_none());

    let r1 = find(&recs, "t1", 1).unwrap();
    assert_eq!(r1["outcome"], "landed");
    assert_eq!(r1["merge_sha"], json!(f.squash));
    let final_diff = repo.git(&["show", "--format=", &f.squash]) + "\n";
    assert_eq!(r1["final_diff"], json!(final_diff));
    assert_eq!(r1["candidate_diff"], json!(final_diff));
    assert_eq!(r1["labels"], json!({"jaccard": 1.0, "ratio": 1.0, "score": 1.0}));
    assert_eq!(r1["prompt"], "Change two to 2 (ticket <REDACTED:custom>).\n");
    let traj = r1["trajectory"].as_str().unwrap();
    assert!(traj.contains("<REDACTED:aws-access-key>") && !traj.contains(&aws_key()), "{traj}");
    assert!(traj.contains("/home/<REDACTED:username>/work/repo"), "{traj}");
    assert_eq!(traj.lines().count(), 5, "raw trajectory is the verbatim stream");
    assert!(traj.lines().all(|l| l.starts_with('{') && l.contains("\"type\":")));
    let p = &r1["provenance"];
    assert_eq!(p["tool"], "git-hybrid");
    assert_eq!(p["tool_version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(p["model"], "claude-test-4");
    assert_eq!(p["agent"][0], "claude");
    assert_eq!(p["landed_at"], "2026-01-01T02:00:00Z");
    assert_eq!(p["created"], "2026-01-01T00:00:00Z");
    let rules = p["redaction"]["rules"].as_array().unwrap();
    for r in ["aws-access-key", "github-token", "private-key", "username", "custom[0]"] {
        assert!(rules.contains(&json!(r)), "{r} missing from {rules:?}");
    }
    assert_eq!(p["redaction"]["replaced"]["aws-access-key"], 2); // the assistant text and the result event
    assert_eq!(p["redaction"]["replaced"]["custom"], 1);
    assert!(p["redaction"]["replaced"]["username"].as_u64().unwrap() >= 2);

    let r3 = find(&recs, "t3", 1).unwrap();
    assert_eq!(r3["provenance"]["agent"][2], "<REDACTED:github-token>");
    assert!(r3["provenance"]["model"].is_null());
    let f0 = find(&recs, "f0", 1).unwrap();
    assert_eq!(f0["outcome"], "failed");
    assert!(f0["final_diff"].is_null() && f0["labels"].is_null());

    // Redaction is export-only: the stored stream is unchanged.
    assert_eq!(std::fs::read(&f.stdout1).unwrap(), stored);

    // Without dedupe every finished attempt is there; without redaction the text is verbatim.
    let all = export(repo, &["--no-dedupe", "--no-redact"]);
    assert_eq!(all.len(), 25);
    let r2 = find(&all, "t1", 2).unwrap();
    assert_eq!(r2["outcome"], "candidate");
    assert!(r2["trajectory"].as_str().unwrap().contains("My take."), "newest run is used");
    assert!(r2["labels"]["score"].as_f64().unwrap() < 1.0);
    assert!(find(&all, "t1", 1).unwrap()["trajectory"].as_str().unwrap().contains(&aws_key()));
    assert_eq!(find(&all, "t1", 1).unwrap()["provenance"]["redaction"]["rules"], json!([]));
}

#[test]
fn split_is_deterministic_by_task_id_and_filters() {
    let f = fixture();
    let repo = &f.repo;
    let out1 = repo.hybrid(&["export"]);
    let out2 = repo.hybrid(&["export"]);
    assert_ok(&out1, &["export"]);
    assert_eq!(out1.stdout, out2.stdout, "exports are byte-identical");
    let all = export(repo, &[]);
    for r in &all {
        assert_eq!(r["split"], expected_split(r["task"].as_str().unwrap()), "{}", r["task"]);
    }
    let mut total = 0;
    for split in ["train", "val", "test"] {
        let part = export(repo, &["--split", split]);
        assert!(part.iter().all(|r| r["split"] == split));
        total += part.len();
    }
    assert_eq!(total, all.len());
    assert!(all.iter().any(|r| r["split"] == "train"));
    assert!(all.iter().any(|r| r["split"] != "train"), "23 tasks should not all land in train");
}

#[test]
fn chat_formats_project_the_stream() {
    let f = fixture();
    let repo = &f.repo;
    let recs = export(repo, &["--format", "openai"]);
    let r1 = find(&recs, "t1", 1).unwrap();
    let m = r1["messages"].as_array().unwrap();
    assert_eq!(m[0], json!({"role": "user", "content": "Change two to 2 (ticket <REDACTED:custom>).\n"}));
    assert_eq!(m[1]["role"], "assistant");
    assert!(m[1]["content"].as_str().unwrap().starts_with("Done. Key was <REDACTED:aws-access-key>"));
    assert_eq!(m[1]["thinking"], "let me look");
    assert_eq!(m[1]["tool_calls"][0]["function"]["name"], "Edit");
    let args: Value = serde_json::from_str(m[1]["tool_calls"][0]["function"]["arguments"].as_str().unwrap()).unwrap();
    assert_eq!(args["file_path"], "/home/<REDACTED:username>/work/repo/a.txt");
    assert_eq!(m[2], json!({"role": "tool", "tool_call_id": "tu1", "content": "edited"}));
    assert_eq!(m.len(), 3);
    assert!(r1["final_diff"].as_str().unwrap().contains("+2"));
    assert!(r1.get("trajectory").is_none());
    // A plain-text agent: the assistant answers with the landed diff.
    let r3 = find(&recs, "t3", 1).unwrap();
    assert_eq!(r3["messages"][1]["content"], r3["final_diff"]);
    // A failed plain-text attempt: the assistant says what the agent said.
    assert_eq!(find(&recs, "f0", 1).unwrap()["messages"][1]["content"], "no luck");

    let recs = export(repo, &["--format", "sharegpt"]);
    let conv = find(&recs, "t1", 1).unwrap()["conversations"].as_array().unwrap().clone();
    assert_eq!(conv[0]["from"], "human");
    assert_eq!(conv[1]["from"], "gpt");
    assert!(conv[1]["value"].as_str().unwrap().contains("<tool_call name=\"Edit\">{"), "{}", conv[1]);
    assert_eq!(conv[2], json!({"from": "tool", "value": "edited"}));

    let recs = export(repo, &["--format", "chatml"]);
    let text = find(&recs, "t1", 1).unwrap()["text"].as_str().unwrap().to_string();
    assert!(text.starts_with("<|im_start|>user\nChange two to 2"), "{text}");
    assert!(text.contains("<|im_end|>\n<|im_start|>assistant\nDone."), "{text}");
    assert!(text.contains("<|im_start|>tool\nedited<|im_end|>\n"), "{text}");
}

#[test]
fn export_to_a_file() {
    let f = fixture();
    let repo = &f.repo;
    let out = repo.hybrid(&["--json", "export", "--out", "train.jsonl", "--split", "train"]);
    assert_ok(&out, &["export", "--out"]);
    let summary: Value = serde_json::from_slice(&out.stdout).unwrap();
    let text = std::fs::read_to_string(repo.root.join("train.jsonl")).unwrap();
    assert_eq!(text.lines().count() as u64, summary["records"].as_u64().unwrap());
    assert!(summary["duplicates"].as_u64().unwrap() >= 2);
    assert_eq!(summary["in_flight"], 1);
    let out = repo.hybrid(&["export", "--format", "yaml"]);
    assert_code(&out, 2);
}
