//! MCP resources (`hybrid://task/<id>`, `hybrid://task/<id>/progress`) and the watcher that
//! turns file changes into `notifications/resources/updated` for subscribed resources.
//!
//! Contract: reading a resource never writes anything. The watcher polls (every 250 ms, only
//! while something is subscribed) a fingerprint of the files behind each subscribed resource:
//! the task's ledger records (size and modification time of `ledger/<id>/*.json`) or its latest
//! run's `progress.md`; a change sends one notification.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rmcp::model::{ReadResourceResult, Resource, ResourceContents, ResourceTemplate, ResourceUpdatedNotificationParam};
use rmcp::service::Peer;
use rmcp::{ErrorData as McpError, RoleServer};
use serde_json::json;

use super::tools::{self, ToolError};
use crate::ledger::{Ledger, TaskRecord};
use crate::repo::Project;

const PREFIX: &str = "hybrid://task/";
/// The largest `progress.md` tail a resource read returns.
const MAX_PROGRESS: usize = 256 * 1024;

/// What a resource URI names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Task(String),
    Progress(String),
}

/// Parses a `hybrid://task/...` URI; the id passes the id rule.
pub fn parse_uri(uri: &str) -> Result<Target, McpError> {
    let rest = uri
        .strip_prefix(PREFIX)
        .ok_or_else(|| McpError::invalid_params(format!("unknown resource {uri:?} (expected {PREFIX}<id>)"), None))?;
    let (id, progress) = match rest.strip_suffix("/progress") {
        Some(id) => (id, true),
        None => (rest, false),
    };
    crate::task_id::validate(id).map_err(|e| error_of(&e.into()))?;
    Ok(if progress { Target::Progress(id.to_string()) } else { Target::Task(id.to_string()) })
}

fn error_of(e: &anyhow::Error) -> McpError {
    let t = ToolError::from_anyhow(e);
    let data = Some(json!({ "exit_code": t.exit_code, "class": t.class }));
    match t.exit_code {
        2 if matches!(crate::error::find_hybrid_error(e), Some(crate::error::HybridError::UnknownTask(_))) => {
            McpError::resource_not_found(t.error, data)
        }
        2 => McpError::invalid_params(t.error, data),
        _ => McpError::internal_error(t.error, data),
    }
}

pub fn templates() -> Vec<ResourceTemplate> {
    vec![
        ResourceTemplate::new(format!("{PREFIX}{{id}}"), "task")
            .with_description("A task's ledger records and live status (JSON)")
            .with_mime_type("application/json"),
        ResourceTemplate::new(format!("{PREFIX}{{id}}/progress"), "task progress")
            .with_description("The agent's progress.md of the task's latest run")
            .with_mime_type("text/markdown"),
    ]
}

/// Both resources of every task in the ledger or queued.
pub fn list(root: &Path) -> anyhow::Result<Vec<Resource>> {
    let project = Project::open(root)?;
    let mut ids: Vec<String> = project.ledger().list()?.into_iter().map(|r| r.id).collect();
    ids.extend(super::queue::queued(&project)?.into_iter().map(|q| q.id));
    ids.sort();
    ids.dedup();
    let mut out = Vec::new();
    for id in ids {
        out.push(Resource::new(format!("{PREFIX}{id}"), id.clone()).with_mime_type("application/json"));
        out.push(
            Resource::new(format!("{PREFIX}{id}/progress"), format!("{id} progress")).with_mime_type("text/markdown"),
        );
    }
    Ok(out)
}

/// The latest-updated attempt of a task.
fn latest(recs: &[TaskRecord]) -> Option<&TaskRecord> {
    recs.iter().max_by(|a, b| a.updated.cmp(&b.updated).then(a.attempt.cmp(&b.attempt)))
}

pub fn read(root: &Path, uri: &str) -> Result<ReadResourceResult, McpError> {
    let target = parse_uri(uri)?;
    let project = Project::open(root).map_err(|e| error_of(&e))?;
    match target {
        Target::Task(id) => {
            let status =
                tools::status(&project, tools::StatusArgs { task: Some(id.clone()) }).map_err(|e| error_of(&e))?;
            let records = project.ledger().attempts(&id).map_err(|e| error_of(&e))?;
            let doc = json!({ "task": id, "status": status["tasks"], "records": records });
            let text = serde_json::to_string_pretty(&doc).map_err(|e| McpError::internal_error(e.to_string(), None))?;
            Ok(ReadResourceResult::new(vec![ResourceContents::text(text, uri).with_mime_type("application/json")]))
        }
        Target::Progress(id) => {
            let recs = tools::records(&project, &id).map_err(|e| error_of(&e))?;
            let text = latest(&recs)
                .and_then(|r| r.run_dir.as_ref())
                .and_then(|d| std::fs::read(d.join(crate::agent::PROGRESS_FILE)).ok())
                .map(|b| {
                    let start = b.len().saturating_sub(MAX_PROGRESS);
                    String::from_utf8_lossy(&b[start..]).into_owned()
                })
                .unwrap_or_default();
            Ok(ReadResourceResult::new(vec![ResourceContents::text(text, uri).with_mime_type("text/markdown")]))
        }
    }
}

/// A cheap description of the files behind a resource; changes when they change.
fn fingerprint(common_dir: &Path, target: &Target) -> String {
    let stamp = |p: &Path| -> String {
        match std::fs::metadata(p) {
            Ok(m) => {
                let t = m.modified().ok().and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok());
                format!("{}:{}", m.len(), t.map(|d| d.as_nanos()).unwrap_or(0))
            }
            Err(_) => "-".into(),
        }
    };
    match target {
        Target::Task(id) => {
            let dir = crate::names::ledger_dir(&crate::names::state_dir(common_dir)).join(id);
            let mut parts: Vec<String> = std::fs::read_dir(&dir)
                .into_iter()
                .flatten()
                .flatten()
                .map(|e| format!("{}={}", e.file_name().to_string_lossy(), stamp(&e.path())))
                .collect();
            parts.sort();
            parts.join(",")
        }
        Target::Progress(id) => {
            let recs = Ledger::new(common_dir).attempts(id).unwrap_or_default();
            match latest(&recs).and_then(|r| r.run_dir.clone()) {
                Some(dir) => format!("{}={}", dir.display(), stamp(&dir.join(crate::agent::PROGRESS_FILE))),
                None => "-".into(),
            }
        }
    }
}

struct State {
    /// Subscribed URI → (what it names, last fingerprint).
    subs: HashMap<String, (Target, String)>,
    peer: Option<Peer<RoleServer>>,
    polling: bool,
}

/// Subscriptions and the polling task.
pub struct Watcher {
    common_dir: PathBuf,
    state: Mutex<State>,
}

impl Watcher {
    pub fn new(common_dir: PathBuf) -> Watcher {
        Watcher { common_dir, state: Mutex::new(State { subs: HashMap::new(), peer: None, polling: false }) }
    }

    /// Subscribes `uri` (already parsed) and starts polling if needed.
    pub fn subscribe(self: &Arc<Self>, uri: String, peer: Peer<RoleServer>) {
        let Ok(target) = parse_uri(&uri) else { return };
        let print = fingerprint(&self.common_dir, &target);
        let start = {
            let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
            st.subs.insert(uri, (target, print));
            st.peer = Some(peer);
            !std::mem::replace(&mut st.polling, true)
        };
        if start {
            let me = self.clone();
            tokio::spawn(async move { me.poll().await });
        }
    }

    pub fn unsubscribe(&self, uri: &str) {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).subs.remove(uri);
    }

    async fn poll(self: Arc<Self>) {
        loop {
            tokio::time::sleep(Duration::from_millis(250)).await;
            let (subs, peer) = {
                let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
                if st.subs.is_empty() || st.peer.is_none() {
                    st.polling = false;
                    return;
                }
                let subs: Vec<(String, Target, String)> =
                    st.subs.iter().map(|(u, (t, f))| (u.clone(), t.clone(), f.clone())).collect();
                (subs, st.peer.clone())
            };
            let Some(peer) = peer else { continue };
            let common = self.common_dir.clone();
            let changed = tokio::task::spawn_blocking(move || {
                subs.into_iter()
                    .filter_map(|(u, t, old)| {
                        let new = fingerprint(&common, &t);
                        (new != old).then_some((u, new))
                    })
                    .collect::<Vec<_>>()
            })
            .await
            .unwrap_or_default();
            for (uri, new) in changed {
                if let Some(entry) = self.state.lock().unwrap_or_else(|p| p.into_inner()).subs.get_mut(&uri) {
                    entry.1 = new;
                }
                if peer.notify_resource_updated(ResourceUpdatedNotificationParam::new(uri)).await.is_err() {
                    // The client went away: stop polling (the background dispatcher is unaffected).
                    let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
                    st.polling = false;
                    st.peer = None;
                    return;
                }
            }
        }
    }
}
