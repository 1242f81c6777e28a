//! The post-merge hook: landings (squash commits with `Hybrid-*` trailers) that a merge or pull
//! brought in are recorded in the ledger (contract in [`crate::hooks`]).

use std::path::Path;

use anyhow::Result;
use git2::{Oid, Sort};
use serde::Serialize;

use super::{head_branch, open_here};
use crate::ledger::{TaskRecord, TaskState};
use crate::lock::FileLock;
use crate::names;
use crate::repo::Project;
use crate::verify::{self, LandingTrailers};

/// How far post-merge walks back from HEAD when `ORIG_HEAD` is missing.
pub const POST_MERGE_WALK_LIMIT: usize = 1000;

/// One landing post-merge recorded (or why not).
#[derive(Debug, Clone, Serialize)]
pub struct PostMergeItem {
    pub task: String,
    pub attempt: u32,
    pub commit: String,
    /// `recorded`, `known`, `busy`, `disagrees`, `invalid`.
    pub action: String,
}

/// The post-merge hook: record landings a merge or pull brought in (see the module contract).
pub fn post_merge(cwd: &Path, squash: bool) -> Result<Vec<PostMergeItem>> {
    if squash {
        return Ok(Vec::new()); // a squash merge moves no commits onto the branch
    }
    let repo = open_here(cwd)?;
    let Some(head) = repo.head().ok().and_then(|h| h.target()) else { return Ok(Vec::new()) };
    let orig = repo.revparse_single("ORIG_HEAD").ok().and_then(|o| o.peel_to_commit().ok()).map(|c| c.id());
    let mut walk = repo.revwalk()?;
    walk.set_sorting(Sort::TOPOLOGICAL | Sort::REVERSE)?;
    walk.push(head)?;
    let limit = match orig {
        Some(o) => {
            walk.hide(o)?;
            usize::MAX
        }
        None => POST_MERGE_WALK_LIMIT,
    };
    let mut found: Vec<(Oid, LandingTrailers, i64)> = Vec::new();
    for oid in walk.take(limit) {
        let oid = oid?;
        let commit = repo.find_commit(oid)?;
        let msg = String::from_utf8_lossy(commit.message_bytes());
        if !msg.contains("Hybrid-Task") {
            continue;
        }
        if let Some(t) = verify::parse_trailers(&msg) {
            found.push((oid, t, commit.committer().when().seconds()));
        }
    }
    if found.is_empty() {
        return Ok(Vec::new());
    }
    let project = Project::open(cwd)?;
    let ledger = project.ledger();
    let target = project
        .target_branch()
        .ok()
        .or_else(|| head_branch(&repo).map(|b| b.trim_start_matches("refs/heads/").to_string()))
        .unwrap_or_else(|| "HEAD".into());
    let mut items = Vec::new();
    for (oid, t, when) in found {
        let attempt = t.attempt.unwrap_or(1);
        let mut item = PostMergeItem { task: t.task.clone(), attempt, commit: oid.to_string(), action: String::new() };
        if crate::task_id::validate(&t.task).is_err() || attempt == 0 {
            item.action = "invalid".into();
            items.push(item);
            continue;
        }
        // Never wait: a lander holding the task lock records this landing itself.
        let Some(_lock) = FileLock::try_acquire(&ledger.task_lock_path(&t.task))? else {
            item.action = "busy".into();
            items.push(item);
            continue;
        };
        let sha = oid.to_string();
        let landed_at = humantime::format_rfc3339_seconds(
            std::time::UNIX_EPOCH + std::time::Duration::from_secs(when.max(0) as u64),
        )
        .to_string();
        item.action = match ledger.get(&t.task, attempt)? {
            Some(rec) if rec.merge_sha.as_deref() == Some(sha.as_str()) && rec.state == TaskState::Landed => "known",
            Some(rec) if rec.merge_sha.as_deref().is_some_and(|m| m != sha) => "disagrees",
            Some(_) => {
                ledger.update_locked(&t.task, attempt, |r| {
                    r.state = TaskState::Landed;
                    r.merge_sha = Some(sha.clone());
                    r.merge_base = t.base.clone().or(r.merge_base.take());
                    r.tip = t.tip.clone().or(r.tip.take());
                    r.landed_at.get_or_insert(landed_at.clone());
                })?;
                "recorded"
            }
            None => {
                let branch = names::branch(&t.task, attempt);
                let base = t.base.clone().unwrap_or_default();
                let mut rec = TaskRecord::new(&t.task, attempt, &branch, Path::new(""), &base, &target);
                rec.worktree = None;
                rec.state = TaskState::Landed;
                rec.merge_sha = Some(sha.clone());
                rec.merge_base = t.base.clone();
                rec.tip = t.tip.clone();
                rec.landed_at = Some(landed_at);
                rec.extra.insert("recorded_by".into(), serde_json::json!("post-merge"));
                ledger.put(&rec)?;
                "recorded"
            }
        }
        .to_string();
        items.push(item);
    }
    Ok(items)
}
