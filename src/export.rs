//! Opt-in export of training records: one JSONL record per finished task attempt.
//!
//! Contract:
//! - **Opt-in**: [`check_opt_in`] refuses (exit 2) unless `[export] enabled = true` and
//!   `acknowledged_terms = true`; with only `enabled` the refusal carries the terms banner.
//! - **Reader**: every ledger attempt that is finished (not `starting`/`ready`/`running`), in
//!   task-id then attempt order. Prompt and trajectory come from the attempt's run folder (the
//!   ledger's `run_dir`, else the newest run under `<git-common-dir>/hybrid/runs/<id>/<attempt>/`):
//!   `prompt.md` and the verbatim `stdout.log`. `final_diff` is the landed squash commit of the
//!   task (read through the ledger's `merge_sha`) against its parent, `candidate_diff` the
//!   attempt's own patch (see [`crate::labels::landed`]; for an attempt of a task that did not
//!   land, from its last catch-up point with the target, see [`candidate`]); labels are the ledger's, or computed
//!   on the fly for a landed task that was not labelled yet.
//! - **Dedupe** on (prompt, final_diff) before anything else is filtered: of the attempts that
//!   share both, the landed one (else the first) is kept. Attempts without a captured prompt
//!   are never merged.
//! - **Split**: `train`/`val`/`test` from SHA-256 of the task id (first 8 bytes, big-endian,
//!   mod 100: < 80 train, < 90 val, else test), so all attempts of a task share a split and the
//!   partition never changes between exports.
//! - **Projection** ([`Format`]): `raw` keeps the trajectory verbatim; `openai`, `sharegpt`
//!   and `chatml` turn it into chat messages (see [`Format`]). Every format carries `task`,
//!   `attempt`, `split`, `outcome`, `labels`, `final_diff` and `provenance`.
//! - **Redaction** happens on the projected copy only ([`crate::redact`]); provenance records
//!   the rules applied and how many spans each replaced. Stored run files are never changed.
//! - Output is deterministic: the same ledger, runs and config give byte-identical JSONL.

use std::collections::HashMap;
use std::path::PathBuf;

use anyhow::Result;
use git2::{Oid, Repository};
use regex::Regex;
use serde::Serialize;
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

use crate::config::ExportConfig;
use crate::error::HybridError;
use crate::labels::{self, landed, Labels};
use crate::ledger::{TaskRecord, TaskState};
use crate::redact::{Counts, Redactor};
use crate::repo::Project;

/// The policy reminder shown when export is enabled but the terms are not acknowledged.
pub const TERMS_BANNER: &str = "\
Training-record export is enabled, but the terms are not acknowledged.
Agent outputs are covered by your model provider's terms. For example, Anthropic's Usage
Policies prohibit using Claude outputs to develop models that compete with Anthropic's
services. This export is meant for personal or internal distillation on your own code;
distributing models derived from it is your responsibility.
To go on, set `acknowledged_terms = true` under [export] in hybrid.toml.";

/// Refuses unless both opt-in flags are set (see the module contract).
pub fn check_opt_in(cfg: &ExportConfig) -> Result<(), HybridError> {
    match (cfg.enabled, cfg.acknowledged_terms) {
        (true, true) => Ok(()),
        (true, false) => Err(HybridError::Usage(format!("export refused.\n{TERMS_BANNER}"))),
        _ => Err(HybridError::Usage(
            "export is off: training-record export is opt-in through two settings in hybrid.toml: \
             `enabled = true` and `acknowledged_terms = true` under [export] (the second confirms you \
             have read your model provider's terms on using its outputs for training)"
                .into(),
        )),
    }
}

/// Output shape of a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Everything, trajectory verbatim: `prompt`, `trajectory`, `candidate_diff`, `final_diff`...
    Raw,
    /// `messages`: `user` = the prompt, then the stream's assistant turns (text in `content`,
    /// tool uses as `tool_calls` with JSON-string arguments, thinking in a `thinking` field)
    /// and tool results as `tool` messages. A trajectory that is not a stream-json message
    /// stream becomes one assistant message: the final diff when the task landed, else the text.
    Openai,
    /// `conversations` of `{from, value}`: `human`, `gpt`, `tool`; tool uses flattened to
    /// `<tool_call name="X">{json}</tool_call>` text; thinking dropped.
    Sharegpt,
    /// `text`: `<|im_start|>role\n...<|im_end|>` turns (user, assistant, tool), tool uses
    /// flattened as for ShareGPT.
    Chatml,
}

impl Format {
    pub fn parse(s: &str) -> Option<Format> {
        match s {
            "raw" => Some(Format::Raw),
            "openai" => Some(Format::Openai),
            "sharegpt" => Some(Format::Sharegpt),
            "chatml" => Some(Format::Chatml),
            _ => None,
        }
    }
}

/// The deterministic split of a task.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Split {
    Train,
    Val,
    Test,
}

impl Split {
    pub fn as_str(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Val => "val",
            Split::Test => "test",
        }
    }

    pub fn parse(s: &str) -> Option<Split> {
        match s {
            "train" => Some(Split::Train),
            "val" => Some(Split::Val),
            "test" => Some(Split::Test),
            _ => None,
        }
    }
}

/// SHA-256 of the task id, first 8 bytes big-endian, mod 100: < 80 train, < 90 val, else test.
pub fn split_of(task_id: &str) -> Split {
    let digest = Sha256::digest(task_id.as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    match u64::from_be_bytes(first) % 100 {
        0..=79 => Split::Train,
        80..=89 => Split::Val,
        _ => Split::Test,
    }
}

/// What to export.
#[derive(Debug, Clone)]
pub struct ExportOptions {
    pub format: Format,
    /// Only records of this split.
    pub split: Option<Split>,
    /// Drop repeated (prompt, final_diff) pairs (default on).
    pub dedupe: bool,
    /// Apply the redaction rules (default on).
    pub redact: bool,
}

/// What an export did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ExportSummary {
    pub records: usize,
    pub duplicates: usize,
    pub other_splits: usize,
    /// Attempts still in flight (`starting`, `ready`, `running`).
    pub in_flight: usize,
    /// Records a chat format could not project (no prompt or nothing the assistant said).
    pub empty: usize,
    pub redaction_rules: Vec<String>,
    pub redactions: Counts,
    pub warnings: Vec<String>,
}

/// The redactor an export uses: built-in rules plus `[export] redact`; a bad custom regex is a
/// config error (exit 2).
pub fn redactor(project: &Project) -> Result<Redactor> {
    let loaded = &project.config;
    Redactor::new(&loaded.config.export.redact).map_err(|(i, msg)| {
        let pattern = &loaded.config.export.redact[i];
        let offset = loaded.text.find(pattern.as_str()).unwrap_or(0);
        loaded.error_at(offset, format!("[export] redact entry {} is not a usable regex: {msg}", i + 1)).into()
    })
}

/// One attempt as read from the ledger, run files and git, before projection.
struct Source {
    rec: TaskRecord,
    prompt: Option<String>,
    trajectory: Option<String>,
    candidate_diff: Option<String>,
    final_diff: Option<String>,
    merge_sha: Option<String>,
    labels: Option<Labels>,
    model: Option<String>,
}

/// Runs the export (the opt-in must already be checked); returns the JSONL lines.
pub fn export(project: &Project, opts: &ExportOptions) -> Result<(Vec<String>, ExportSummary)> {
    let redactor = if opts.redact { redactor(project)? } else { Redactor::none() };
    let mut summary = ExportSummary { redaction_rules: redactor.rule_names(), ..Default::default() };
    let tasks = landed::landed_tasks(project.ledger().list()?);
    let repo = &project.repo;

    let mut sources = Vec::new();
    for (id, (recs, merge_sha)) in &tasks {
        let final_diff = match merge_sha {
            Some(sha) => match landed::final_diff(repo, sha) {
                Ok(d) => Some(d),
                Err(e) => {
                    summary.warnings.push(format!("{id}: no final_diff: {e:#}"));
                    None
                }
            },
            None => None,
        };
        for rec in recs {
            if matches!(rec.state, TaskState::Starting | TaskState::Ready | TaskState::Running) {
                summary.in_flight += 1;
                continue;
            }
            sources.push(read_source(project, rec, merge_sha.as_deref(), final_diff.as_deref(), &mut summary));
        }
    }

    // Dedupe on (prompt, final_diff): the landed attempt wins, else the first. Attempts with
    // no captured prompt are not trajectories of a known task and are never merged.
    let mut winner: HashMap<(&str, Option<&str>), usize> = HashMap::new();
    for (i, s) in sources.iter().enumerate() {
        let Some(prompt) = s.prompt.as_deref() else { continue };
        let key = (prompt, s.final_diff.as_deref());
        match winner.get(&key) {
            Some(&w) if !(sources[i].rec.state == TaskState::Landed && sources[w].rec.state != TaskState::Landed) => {}
            _ => {
                winner.insert(key, i);
            }
        }
    }
    let keep: Vec<bool> = if opts.dedupe {
        let mut keep: Vec<bool> = sources.iter().map(|s| s.prompt.is_none()).collect();
        winner.values().for_each(|&i| keep[i] = true);
        keep
    } else {
        vec![true; sources.len()]
    };

    let mut lines = Vec::new();
    for (s, keep) in sources.iter().zip(keep) {
        if !keep {
            summary.duplicates += 1;
            continue;
        }
        let split = split_of(&s.rec.id);
        if opts.split.is_some_and(|want| want != split) {
            summary.other_splits += 1;
            continue;
        }
        let Some(mut record) = project_record(s, split, opts.format) else {
            summary.empty += 1;
            continue;
        };
        let mut counts = Counts::new();
        redactor.redact_value(&mut record, &mut counts);
        for (k, n) in &counts {
            *summary.redactions.entry(k.clone()).or_default() += n;
        }
        if let Some(p) = record.get_mut("provenance").and_then(Value::as_object_mut) {
            p.insert("redaction".into(), json!({ "rules": redactor.rule_names(), "replaced": counts }));
        }
        lines.push(serde_json::to_string(&record)?);
        summary.records += 1;
    }
    Ok((lines, summary))
}

fn read_source(
    project: &Project,
    rec: &TaskRecord,
    merge_sha: Option<&str>,
    final_diff: Option<&str>,
    summary: &mut ExportSummary,
) -> Source {
    let dir = run_dir(project, rec);
    let read = |name: &str| -> Option<String> {
        let path = dir.as_ref()?.join(name);
        std::fs::read(&path).ok().map(|b| String::from_utf8_lossy(&b).into_owned())
    };
    let prompt = read("prompt.md");
    let trajectory = read("stdout.log");
    let model = trajectory.as_deref().and_then(model_name);
    let repo = &project.repo;
    let candidate_diff = match candidate(repo, rec, merge_sha) {
        Ok(d) => d,
        Err(e) => {
            summary.warnings.push(format!("{}#{}: no candidate_diff: {e:#}", rec.id, rec.attempt));
            None
        }
    };
    let labels = rec.labels.clone().or_else(|| match (&candidate_diff, final_diff) {
        (Some(c), Some(f)) => Some(labels::score(c, f)),
        _ => None,
    });
    Source {
        rec: rec.clone(),
        prompt,
        trajectory,
        candidate_diff,
        final_diff: final_diff.map(str::to_string),
        merge_sha: merge_sha.map(str::to_string),
        labels,
        model,
    }
}

/// The attempt's own patch: against the landed squash when there is one; else (a conflicted,
/// failed or caught-up attempt) from its last catch-up point, the merge base of its tip and the
/// target, so the work of other tasks that `sync` brought into the branch stays out (its base
/// when it never caught up, or when the target is gone).
fn candidate(repo: &Repository, rec: &TaskRecord, merge_sha: Option<&str>) -> Result<Option<String>> {
    if let Some(sha) = merge_sha.and_then(|s| Oid::from_str(s).ok()) {
        if repo.find_commit(sha).is_ok() {
            return Ok(landed::candidate_diff(repo, rec, sha)?.map(|c| c.3));
        }
    }
    let Some((tip, _)) = landed::resolve_tip(repo, rec) else {
        return Ok(None);
    };
    let target = repo.refname_to_id(&format!("refs/heads/{}", rec.target)).ok();
    let from = landed::candidate_base(repo, rec, tip, target)?;
    Ok(Some(labels::gitdiff::range_diff(repo, from, tip)?))
}

/// The attempt's run folder: the ledger's `run_dir`, else the newest run on disk.
fn run_dir(project: &Project, rec: &TaskRecord) -> Option<PathBuf> {
    if let Some(d) = crate::ledger::trust::run_dir(&project.state_dir(), rec) {
        if d.is_dir() {
            return Some(d);
        }
    }
    let runs = crate::names::attempt_dir(&project.state_dir(), &rec.id, rec.attempt);
    let mut best: Option<(u64, String)> = None;
    for entry in std::fs::read_dir(&runs).ok()?.flatten() {
        if !entry.path().is_dir() {
            continue;
        }
        let name = entry.file_name().to_string_lossy().into_owned();
        let n = name.parse::<u64>().unwrap_or(0);
        if best.as_ref().is_none_or(|b| (n, &name) > (b.0, &b.1)) {
            best = Some((n, name));
        }
    }
    best.map(|(_, name)| runs.join(name))
}

/// The first `"model": "..."` the agent's output stream shows.
pub fn model_name(stream: &str) -> Option<String> {
    static RE: std::sync::OnceLock<Regex> = std::sync::OnceLock::new();
    let re = RE.get_or_init(|| Regex::new(r#""model"\s*:\s*"([^"\\]{1,200})""#).expect("model regex compiles"));
    re.captures(stream).map(|c| c[1].to_string())
}

/// One chat turn parsed from a stream-json trajectory.
#[derive(Debug, Clone)]
enum Turn {
    User(String),
    Assistant { id: Option<String>, text: String, thinking: String, calls: Vec<(String, String, String)> },
    Tool { call_id: String, content: String },
}

/// Parses a Claude Code style `stream-json` trajectory; `None` when it holds no turns.
fn parse_stream(stream: &str) -> Option<Vec<Turn>> {
    let mut turns: Vec<Turn> = Vec::new();
    for line in stream.lines() {
        let line = line.trim();
        if !line.starts_with('{') {
            continue;
        }
        let Ok(event) = serde_json::from_str::<Value>(line) else { continue };
        let message = &event["message"];
        match event["type"].as_str() {
            Some("assistant") => {
                let id = message["id"].as_str().map(str::to_string);
                let (mut text, mut thinking, mut calls) = (String::new(), String::new(), Vec::new());
                for block in blocks(&message["content"]) {
                    match block["type"].as_str() {
                        Some("text") => push_para(&mut text, block["text"].as_str().unwrap_or("")),
                        Some("thinking") => push_para(&mut thinking, block["thinking"].as_str().unwrap_or("")),
                        Some("tool_use") => calls.push((
                            block["id"].as_str().unwrap_or("").to_string(),
                            block["name"].as_str().unwrap_or("").to_string(),
                            serde_json::to_string(&block["input"]).unwrap_or_default(),
                        )),
                        _ => {}
                    }
                }
                if let Some(Turn::Assistant { id: Some(prev), text: t, thinking: th, calls: c }) = turns.last_mut() {
                    if id.as_deref() == Some(prev.as_str()) {
                        push_para(t, &text);
                        push_para(th, &thinking);
                        c.extend(calls);
                        continue;
                    }
                }
                turns.push(Turn::Assistant { id, text, thinking, calls });
            }
            Some("user") => {
                if let Some(s) = message["content"].as_str() {
                    turns.push(Turn::User(s.to_string()));
                    continue;
                }
                for block in blocks(&message["content"]) {
                    match block["type"].as_str() {
                        Some("tool_result") => turns.push(Turn::Tool {
                            call_id: block["tool_use_id"].as_str().unwrap_or("").to_string(),
                            content: content_text(&block["content"]),
                        }),
                        Some("text") => turns.push(Turn::User(block["text"].as_str().unwrap_or("").to_string())),
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    turns.iter().any(|t| matches!(t, Turn::Assistant { .. })).then_some(turns)
}

fn blocks(content: &Value) -> Vec<&Value> {
    match content {
        Value::Array(items) => items.iter().collect(),
        Value::String(_) => vec![content],
        _ => Vec::new(),
    }
}

fn content_text(content: &Value) -> String {
    match content {
        Value::String(s) => s.clone(),
        Value::Array(items) => items
            .iter()
            .map(|b| b["text"].as_str().map(str::to_string).unwrap_or_else(|| b.to_string()))
            .collect::<Vec<_>>()
            .join("\n"),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

fn push_para(into: &mut String, text: &str) {
    if text.is_empty() {
        return;
    }
    if !into.is_empty() {
        into.push('\n');
    }
    into.push_str(text);
}

/// Tool calls flattened to text for formats without tool semantics.
fn flatten(text: &str, calls: &[(String, String, String)]) -> String {
    let mut out = text.to_string();
    for (_, name, args) in calls {
        let name = serde_json::to_string(name).unwrap_or_default();
        push_para(&mut out, &format!("<tool_call name={name}>{args}</tool_call>"));
    }
    out
}

/// The chat turns of a record: the stream's, or one assistant turn (final diff, else the text).
fn turns_of(s: &Source) -> Option<Vec<Turn>> {
    if let Some(turns) = s.trajectory.as_deref().and_then(parse_stream) {
        return Some(turns);
    }
    let answer = s
        .final_diff
        .clone()
        .filter(|d| !d.is_empty())
        .or_else(|| s.trajectory.as_deref().map(str::trim).filter(|t| !t.is_empty()).map(str::to_string))?;
    Some(vec![Turn::Assistant { id: None, text: answer, thinking: String::new(), calls: Vec::new() }])
}

fn project_record(s: &Source, split: Split, format: Format) -> Option<Value> {
    let rec = &s.rec;
    let mut provenance = Map::new();
    provenance.insert("tool".into(), json!("git-hybrid"));
    provenance.insert("tool_version".into(), json!(crate::VERSION));
    provenance.insert("agent".into(), json!(rec.agent));
    provenance.insert("model".into(), json!(s.model));
    provenance.insert("created".into(), json!(rec.created));
    provenance.insert("updated".into(), json!(rec.updated));
    provenance.insert("landed_at".into(), json!(rec.landed_at));
    provenance.insert("runs".into(), json!(rec.runs));
    let mut out = Map::new();
    out.insert("task".into(), json!(rec.id));
    out.insert("attempt".into(), json!(rec.attempt));
    out.insert("split".into(), json!(split.as_str()));
    out.insert("outcome".into(), json!(rec.state.as_str()));
    out.insert("labels".into(), json!(s.labels));
    out.insert("final_diff".into(), json!(s.final_diff));
    match format {
        Format::Raw => {
            out.insert("title".into(), json!(rec.title));
            out.insert("prompt".into(), json!(s.prompt));
            out.insert("trajectory".into(), json!(s.trajectory));
            out.insert("candidate_diff".into(), json!(s.candidate_diff));
            out.insert("merge_sha".into(), json!(s.merge_sha));
        }
        Format::Openai | Format::Sharegpt | Format::Chatml => {
            let prompt = s.prompt.as_deref().filter(|p| !p.trim().is_empty())?;
            let turns = turns_of(s)?;
            match format {
                Format::Openai => {
                    out.insert("messages".into(), Value::Array(openai_messages(prompt, &turns)));
                }
                Format::Sharegpt => {
                    let mut conv = vec![json!({"from": "human", "value": prompt})];
                    for t in &turns {
                        conv.push(match t {
                            Turn::User(u) => json!({"from": "human", "value": u}),
                            Turn::Assistant { text, calls, .. } => {
                                json!({"from": "gpt", "value": flatten(text, calls)})
                            }
                            Turn::Tool { content, .. } => json!({"from": "tool", "value": content}),
                        });
                    }
                    out.insert("conversations".into(), Value::Array(conv));
                }
                _ => {
                    let mut text = chatml_turn("user", prompt);
                    for t in &turns {
                        text.push_str(&match t {
                            Turn::User(u) => chatml_turn("user", u),
                            Turn::Assistant { text, calls, .. } => chatml_turn("assistant", &flatten(text, calls)),
                            Turn::Tool { content, .. } => chatml_turn("tool", content),
                        });
                    }
                    out.insert("text".into(), json!(text));
                }
            }
        }
    }
    out.insert("provenance".into(), Value::Object(provenance));
    Some(Value::Object(out))
}

fn openai_messages(prompt: &str, turns: &[Turn]) -> Vec<Value> {
    let mut messages = vec![json!({"role": "user", "content": prompt})];
    for t in turns {
        messages.push(match t {
            Turn::User(u) => json!({"role": "user", "content": u}),
            Turn::Assistant { text, thinking, calls, .. } => {
                let mut m = Map::new();
                m.insert("role".into(), json!("assistant"));
                m.insert("content".into(), json!(text));
                if !calls.is_empty() {
                    let calls: Vec<Value> = calls
                        .iter()
                        .map(|(id, name, args)| {
                            json!({"id": id, "type": "function", "function": {"name": name, "arguments": args}})
                        })
                        .collect();
                    m.insert("tool_calls".into(), Value::Array(calls));
                }
                if !thinking.is_empty() {
                    m.insert("thinking".into(), json!(thinking));
                }
                Value::Object(m)
            }
            Turn::Tool { call_id, content } => json!({"role": "tool", "tool_call_id": call_id, "content": content}),
        });
    }
    messages
}

fn chatml_turn(role: &str, content: &str) -> String {
    format!("<|im_start|>{role}\n{content}<|im_end|>\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_is_stable_and_roughly_80_10_10() {
        assert_eq!(split_of("task-1"), split_of("task-1"));
        let mut n = [0usize; 3];
        for i in 0..10_000 {
            n[split_of(&format!("t{i}")) as usize] += 1;
        }
        assert!((7700..8300).contains(&n[0]) && (800..1200).contains(&n[1]) && (800..1200).contains(&n[2]), "{n:?}");
    }

    #[test]
    fn opt_in_needs_both_flags() {
        let mut c = ExportConfig::default();
        assert!(check_opt_in(&c).unwrap_err().to_string().contains("acknowledged_terms = true"));
        c.enabled = true;
        assert!(check_opt_in(&c).unwrap_err().to_string().contains("Anthropic"));
        c.acknowledged_terms = true;
        assert!(check_opt_in(&c).is_ok());
    }

    #[test]
    fn stream_json_becomes_turns() {
        let stream = concat!(
            r#"{"type":"system","subtype":"init","model":"claude-test-1"}"#,
            "\n",
            r#"{"type":"assistant","message":{"id":"m1","model":"claude-test-1","content":[{"type":"thinking","thinking":"hmm"},{"type":"text","text":"I will edit."}]}}"#,
            "\n",
            r#"{"type":"assistant","message":{"id":"m1","content":[{"type":"tool_use","id":"tu1","name":"Edit","input":{"file":"a"}}]}}"#,
            "\n",
            r#"{"type":"user","message":{"content":[{"type":"tool_result","tool_use_id":"tu1","content":"ok"}]}}"#,
            "\n",
            r#"{"type":"result","result":"done"}"#,
        );
        assert_eq!(model_name(stream).as_deref(), Some("claude-test-1"));
        let turns = parse_stream(stream).unwrap();
        assert_eq!(turns.len(), 2);
        let msgs = openai_messages("do it", &turns);
        assert_eq!(msgs[1]["content"], "I will edit.");
        assert_eq!(msgs[1]["thinking"], "hmm");
        assert_eq!(msgs[1]["tool_calls"][0]["function"]["arguments"], "{\"file\":\"a\"}");
        assert_eq!(msgs[2]["role"], "tool");
        assert!(parse_stream("plain text\n").is_none());
    }
}
