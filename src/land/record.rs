//! Recording a landing: the task's tip ref and ledger record, and the report of one task
//! (also for a task found already landed, whose interrupted cleanup is finished).

use anyhow::{Context, Result};
use git2::Oid;

use super::cleanup::{cleanup, cleanup_worktree_only, move_branch_to};
use super::{publish, LandOptions, LandReport};
use crate::error::HybridError;
use crate::git::lockfile::RefLock;
use crate::ledger::{TaskRecord, TaskState};
use crate::repo::Project;
use crate::{git, names};

/// Points `refs/hybrid/tips/<id>` at `tip`. Through [`RefLock`] (the caller holds the task
/// lock, which guards this ref), so a lock file a killed landing left on it is recognised as
/// that run's and removed, never mistaken for another process's.
pub(super) fn set_tip_ref(project: &Project, rec: &TaskRecord, tip: Oid) -> Result<()> {
    let name = names::tip_ref(&rec.id, rec.attempt);
    let lock = RefLock::acquire(&project.repo, &project.common_dir, &name)?;
    if lock.current == Some(tip) {
        return Ok(());
    }
    lock.commit(&project.repo, tip, "git-hybrid merge: landed tip").context("cannot write the tip ref")
}

pub(super) fn mark_done(
    project: &Project,
    rec: &TaskRecord,
    state: TaskState,
    squash: Option<Oid>,
    base: Oid,
    tip: Oid,
    target: &str,
) -> Result<TaskRecord> {
    let now = crate::fsutil::now_rfc3339();
    if squash.is_some() {
        crate::ledger::rebuild::note_floor(project, target, base);
    }
    project.ledger().upsert_locked(rec, |r| publish::fill_landed(r, state, squash, base, tip, target, now))
}

/// The report for a task that was already landed (or empty); finishes an interrupted cleanup.
pub(super) fn already_done(project: &Project, rec: TaskRecord, opts: &LandOptions) -> Result<LandReport> {
    let repo = &project.repo;
    let recorded_tip = rec.tip.as_deref().and_then(|t| Oid::from_str(t).ok());
    let branch_tip = repo.refname_to_id(&names::branch_ref(&rec.branch)).ok();
    if let (Some(now), Some(landed)) = (branch_tip, recorded_tip) {
        if now != landed && !git::graph::contains(repo, landed, now)? {
            return Err(HybridError::Usage(format!(
                "task {} (attempt {}) already landed as {}, but {} has commits since; land them as a new attempt \
                 (`git hybrid start {} --attempt {}`)",
                rec.id,
                rec.attempt,
                rec.merge_sha.as_deref().unwrap_or("an empty landing"),
                rec.branch,
                rec.id,
                rec.attempt + 1
            ))
            .into());
        }
    }
    let (cleaned, kept) = match (branch_tip, recorded_tip) {
        // Behind its landed (caught-up) tip: the catch-up after the landing was interrupted.
        (Some(t), Some(landed)) if t != landed && git::graph::contains(repo, landed, t)? => {
            let (at, not_caught_up) = move_branch_to(project, &rec, t, landed, &rec.target, opts);
            let (cleaned, kept) = cleanup(project, &rec, at, opts.keep);
            (cleaned, kept.or(not_caught_up))
        }
        (Some(t), _) => cleanup(project, &rec, t, opts.keep),
        (None, _) => cleanup_worktree_only(project, &rec, opts.keep),
    };
    let status = rec.state.as_str();
    let squash = rec.merge_sha.as_deref().and_then(|s| Oid::from_str(s).ok());
    let base = rec.merge_base.as_deref().and_then(|s| Oid::from_str(s).ok()).unwrap_or(Oid::zero());
    let tip = recorded_tip.unwrap_or(Oid::zero());
    let target = rec.target.clone();
    Ok(report(&rec, status, squash, base, tip, &target, cleaned, kept, true, false))
}

#[allow(clippy::too_many_arguments)]
pub(super) fn report(
    rec: &TaskRecord,
    status: &str,
    squash: Option<Oid>,
    base: Oid,
    tip: Oid,
    target: &str,
    cleaned: bool,
    kept: Option<String>,
    already: bool,
    caught_up: bool,
) -> LandReport {
    LandReport {
        task: rec.id.clone(),
        attempt: rec.attempt,
        status: status.to_string(),
        merge_sha: squash.map(|s| s.to_string()),
        base: base.to_string(),
        tip: tip.to_string(),
        cleaned,
        target: target.to_string(),
        already,
        caught_up,
        kept,
    }
}
