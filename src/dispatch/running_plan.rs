//! The plan a running dispatcher works on, for `status`: which task ids it runs.
//!
//! Contract: [`write`] records the dispatcher's pid and its plan's task ids at
//! `<git-common-dir>/hybrid/dispatch.plan` once it holds the dispatcher lock (best effort: a
//! file that cannot be written only costs `status --watch` its progress bar). [`read`] returns
//! the ids only when the file names `pid`, the live dispatcher's: a file left by an earlier
//! dispatcher (killed, or finished) is never taken for the current plan.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::repo::Project;

#[derive(Debug, Serialize, Deserialize)]
struct RunningPlan {
    pid: u32,
    tasks: Vec<String>,
}

fn path(project: &Project) -> PathBuf {
    crate::names::dispatch_plan(&project.state_dir())
}

/// Records this process's plan (see the module contract).
pub fn write(project: &Project, tasks: Vec<String>) {
    let doc = RunningPlan { pid: std::process::id(), tasks };
    if let Ok(json) = serde_json::to_vec(&doc) {
        let _ = crate::fsutil::write_atomic_with(&path(project), &json, false);
    }
}

/// The task ids of the plan dispatcher `pid` runs, if it recorded them.
pub fn read(project: &Project, pid: u32) -> Option<Vec<String>> {
    let text = std::fs::read(path(project)).ok()?;
    let doc: RunningPlan = serde_json::from_slice(&text).ok()?;
    (doc.pid == pid).then_some(doc.tasks)
}
