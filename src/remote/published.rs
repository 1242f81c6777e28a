//! The ledger that travels: landing records published as git refs, and bringing them in.
//!
//! Contract: the record of a landing made through a remote is stored as a blob (the ledger
//! record as JSON, without this machine's paths) under `refs/hybrid/ledger/<id>/<attempt>` and
//! published in the same atomic push as the squash ([`super::Remote::publish`]). Published
//! records are immutable once landed: fetching them never overwrites a ref that exists here.
//! [`adopt`] brings one into the local ledger when git confirms it (the record is `landed` and
//! its squash is on the fetched target with the task's `Hybrid-Task`/`Hybrid-Attempt`
//! trailers, or `empty` with its base on the target) and the local record is not already
//! landed; a record git does not confirm is ignored. [`import_all`] does that for every
//! published record (`git hybrid fetch`).

use anyhow::Result;
use git2::Oid;
use serde::Serialize;

use crate::ledger::{trust, TaskRecord};
use crate::repo::Project;

/// Where published landing records live (one ref per task attempt), and their blobs.
pub use crate::ledger::refs::{published_record, published_records, record_blob};
pub use crate::names::{ledger_ref, LEDGER_REFS};

/// True when git confirms a published record on `tip`: the ledger's own trust rules
/// ([`crate::ledger::trust::confirm_done_on`]) against that tip; only `landed` and `empty` count.
pub fn confirmed(repo: &git2::Repository, rec: &TaskRecord, tip: Oid) -> bool {
    rec.state.is_done() && trust::confirm_done_on(repo, rec, &[tip]).is_ok()
}

/// What [`adopt`] found.
#[derive(Debug)]
pub enum Adopted {
    /// No confirmed published record (or the local one is done already): nothing written.
    No,
    /// The published landing, now in the local ledger.
    Yes(Box<TaskRecord>),
    /// A confirmed published landing of the same task attempt with other work than the local
    /// branch (the branch has commits its landed tip lacks): nothing written; the message says
    /// what to do.
    Different(String),
}

/// Brings the published record of `id`/`attempt` into the local ledger when git confirms it on
/// `tip`, the local record (`local`) is not already done and the local branch holds no work the
/// published landing lacks (see [`Adopted`]). The local record keeps its own paths and history;
/// the landing fields come from the published one. Caller holds the task lock.
pub fn adopt(project: &Project, id: &str, attempt: u32, local: Option<&TaskRecord>, tip: Oid) -> Result<Adopted> {
    if local.is_some_and(|l| l.state.is_done()) {
        return Ok(Adopted::No);
    }
    let repo = &project.repo;
    let Some(public) = published_record(repo, id, attempt) else { return Ok(Adopted::No) };
    if public.id != id || public.attempt != attempt || !confirmed(repo, &public, tip) {
        return Ok(Adopted::No);
    }
    if let Some(l) = local {
        let branch_tip = repo.refname_to_id(&format!("refs/heads/{}", l.branch)).ok();
        let landed_tip = public.tip.as_deref().and_then(|t| Oid::from_str(t).ok());
        let same_work = match (branch_tip, landed_tip) {
            (None, _) => true,
            (Some(b), Some(t)) => {
                repo.find_commit(t).is_ok() && crate::git::graph::contains(repo, t, b).unwrap_or(false)
            }
            (Some(_), None) => false,
        };
        if !same_work {
            return Ok(Adopted::Different(format!(
                "{id} (attempt {attempt}) was already landed from another clone as {}, with other work than {}; \
                 nothing of this branch landed: land it as a new attempt (`git hybrid start {id} --attempt {}`)",
                public.merge_sha.as_deref().unwrap_or("an empty landing"),
                l.branch,
                attempt + 1
            )));
        }
    }
    let fresh = match local {
        Some(l) => l.clone(),
        None => {
            let mut p = public.clone();
            p.worktree = None;
            p.run_dir = None;
            p
        }
    };
    let rec = project.ledger().upsert_locked(&fresh, |r| {
        r.state = public.state;
        r.merge_sha = public.merge_sha.clone();
        r.merge_base = public.merge_base.clone();
        r.tip = public.tip.clone();
        r.landed_at = public.landed_at.clone();
        r.target = public.target.clone();
        r.conflicts.clear();
        r.failure = None;
    })?;
    Ok(Adopted::Yes(Box::new(rec)))
}

/// What `git hybrid fetch` did.
#[derive(Debug, Clone, Serialize)]
pub struct FetchReport {
    pub remote: String,
    pub target: String,
    /// The remote's target tip.
    pub tip: String,
    /// Published records (`<id>/<attempt>`) brought into the local ledger.
    pub imported: Vec<String>,
    /// Published records and tips that differ from the local ref of the same name (kept).
    pub kept: Vec<String>,
}

/// `git hybrid fetch`: fetches the target and the published ledger from the target's remote and
/// adopts every confirmed record (see the module contract). No remote is bad input (exit 2).
pub fn fetch(project: &Project) -> Result<FetchReport> {
    let target = project.target_branch()?;
    let Some(remote) = super::for_target(project, &target, false)? else {
        return Err(crate::error::HybridError::Usage(format!(
            "{target} has no remote: set [project] remote in hybrid.toml or an upstream (git push -u origin {target})"
        ))
        .into());
    };
    let (tip, mut kept) = remote.fetch(project)?;
    let ledger = project.ledger();
    let mut imported = Vec::new();
    for public in published_records(&project.repo)? {
        if crate::task_id::validate(&public.id).is_err() || public.attempt == 0 {
            continue;
        }
        let _lock = ledger.lock_task(&public.id)?;
        let name = format!("{}/{}", public.id, public.attempt);
        let local = match ledger.get(&public.id, public.attempt) {
            Ok(l) => l,
            Err(e) => {
                eprintln!("git-hybrid: warning: {name}: the published record was not brought in: {e:#}");
                continue;
            }
        };
        match adopt(project, &public.id, public.attempt, local.as_ref(), tip)? {
            Adopted::Yes(_) => imported.push(name),
            Adopted::Different(why) => {
                eprintln!("git-hybrid: warning: {why}");
                kept.push(ledger_ref(&public.id, public.attempt));
            }
            Adopted::No => {}
        }
    }
    Ok(FetchReport { remote: remote.name, target, tip: tip.to_string(), imported, kept })
}
