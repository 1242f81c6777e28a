//! `git hybrid label`: labels for every attempt of every landed task, stored in the ledger.
//!
//! Contract: a task is landed when one of its attempts is in state `landed` with a `merge_sha`.
//! The final patch is that squash commit against its first parent. For every attempt of the
//! task (the landed one included), the candidate patch runs from the attempt's base to its tip:
//! - the tip is the branch `hybrid/<id>[@N]` if it still exists, else the ledger's `tip`, else
//!   `refs/hybrid/tips/<id>[@N]`; an attempt with none of them is reported as skipped;
//! - the base is the ledger's `base`, moved forward to the merge base of the tip and the squash
//!   commit's parent when that descends from `base`. An attempt that synced or caught up with
//!   the target took other tasks' work in; diffing from the point where it last did so keeps
//!   that work out of its candidate (for the landed attempt the candidate is then exactly the
//!   squash's patch). For an attempt that never synced it is just `base`.
//!
//! Diffs and labels are computed in parallel on a rayon pool (each worker opens its own
//! repository handle); the labels are then written one record at a time through
//! [`Ledger::update`] (task lock, atomic write). Nothing else in the repository changes.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result};
use git2::{Oid, Repository};
use rayon::prelude::*;
use serde::Serialize;

use super::{gitdiff, Labels};
use crate::error::HybridError;
use crate::ledger::{TaskRecord, TaskState};
use crate::names;
use crate::repo::Project;

/// The labels of one attempt.
#[derive(Debug, Clone, Serialize)]
pub struct AttemptLabel {
    pub task: String,
    pub attempt: u32,
    pub state: String,
    /// The squash commit the candidate is compared with.
    pub merge_sha: String,
    /// The commit the candidate patch starts from.
    pub from: String,
    /// The attempt's tip (the candidate patch ends here).
    pub tip: String,
    /// Where the tip came from: `branch`, `ledger` or `tips-ref`.
    pub tip_source: String,
    pub jaccard: f64,
    pub ratio: f64,
    pub score: f64,
    /// The `similar` crate's ratio over the same keys (extra measure, not stored in the ledger).
    pub similar_ratio: f64,
}

impl AttemptLabel {
    pub fn labels(&self) -> Labels {
        Labels { jaccard: self.jaccard, ratio: self.ratio, score: self.score }
    }
}

/// An attempt that could not be labelled, and why.
#[derive(Debug, Clone, Serialize)]
pub struct Skipped {
    pub task: String,
    pub attempt: u32,
    pub reason: String,
}

/// What `label` did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct LabelReport {
    pub labeled: Vec<AttemptLabel>,
    pub skipped: Vec<Skipped>,
}

/// The landed attempt of each task: task id → (its records, the squash commit).
pub fn landed_tasks(records: Vec<TaskRecord>) -> BTreeMap<String, (Vec<TaskRecord>, Option<String>)> {
    let mut tasks: BTreeMap<String, (Vec<TaskRecord>, Option<String>)> = BTreeMap::new();
    for rec in records {
        let entry = tasks.entry(rec.id.clone()).or_default();
        if rec.state == TaskState::Landed {
            if let Some(sha) = &rec.merge_sha {
                entry.1 = Some(sha.clone());
            }
        }
        entry.0.push(rec);
    }
    tasks
}

/// The tip of an attempt and where it was found (see the module contract).
pub fn resolve_tip(repo: &Repository, rec: &TaskRecord) -> Option<(Oid, &'static str)> {
    let branch = if rec.branch.is_empty() { names::branch(&rec.id, rec.attempt) } else { rec.branch.clone() };
    if let Ok(oid) = repo.refname_to_id(&format!("refs/heads/{branch}")) {
        return Some((oid, "branch"));
    }
    if let Some(oid) = rec.tip.as_deref().and_then(|t| Oid::from_str(t).ok()) {
        if repo.find_commit(oid).is_ok() {
            return Some((oid, "ledger"));
        }
    }
    let tips = names::tip_ref(&rec.id, rec.attempt);
    repo.refname_to_id(&tips).ok().map(|oid| (oid, "tips-ref"))
}

/// The commit an attempt's candidate patch starts from (see the module contract).
pub fn candidate_base(repo: &Repository, rec: &TaskRecord, tip: Oid, squash_parent: Option<Oid>) -> Result<Oid> {
    let base = Oid::from_str(&rec.base)
        .ok()
        .filter(|b| repo.find_commit(*b).is_ok())
        .with_context(|| format!("the base {:?} of {}#{} is not a commit here", rec.base, rec.id, rec.attempt))?;
    if let Some(parent) = squash_parent {
        if let Ok(Some(mb)) = crate::git::generation::merge_base(repo, tip, parent) {
            if crate::git::graph::contains(repo, mb, base).unwrap_or(false) {
                return Ok(mb);
            }
        }
    }
    Ok(base)
}

/// The candidate patch of an attempt against the squash commit `merge_sha`:
/// `(from, tip, tip_source, diff)`.
pub fn candidate_diff(
    repo: &Repository,
    rec: &TaskRecord,
    merge_sha: Oid,
) -> Result<Option<(Oid, Oid, &'static str, String)>> {
    let Some((tip, source)) = resolve_tip(repo, rec) else {
        return Ok(None);
    };
    let squash = repo.find_commit(merge_sha).with_context(|| format!("cannot read the squash commit {merge_sha}"))?;
    let parent = squash.parent_id(0).ok();
    let from = candidate_base(repo, rec, tip, parent)?;
    let diff = gitdiff::range_diff(repo, from, tip)?;
    Ok(Some((from, tip, source, diff)))
}

/// The patch a squash commit landed.
pub fn final_diff(repo: &Repository, merge_sha: &str) -> Result<String> {
    let oid = Oid::from_str(merge_sha).with_context(|| format!("{merge_sha:?} is not a commit id"))?;
    let commit =
        repo.find_commit(oid).with_context(|| format!("the squash commit {merge_sha} is not in this repository"))?;
    gitdiff::commit_diff(repo, &commit)
}

/// Labels the attempts of landed tasks (all, or the ones in `only`) and, when `write`, stores
/// the labels in the ledger. `jobs` = worker threads (default: one per core).
pub fn label_landed(project: &Project, only: &[String], jobs: Option<usize>, write: bool) -> Result<LabelReport> {
    let ledger = project.ledger();
    let mut tasks = landed_tasks(ledger.list()?);
    if !only.is_empty() {
        for id in only {
            match tasks.get(id) {
                None => return Err(HybridError::UnknownTask(id.clone()).into()),
                Some((_, None)) => {
                    return Err(HybridError::Usage(format!(
                        "task {id:?} has not landed: only landed tasks have a final patch to compare with"
                    ))
                    .into())
                }
                Some(_) => {}
            }
        }
        tasks.retain(|id, _| only.contains(id));
    }
    let jobs_list: Vec<(TaskRecord, String)> = tasks
        .into_values()
        .filter_map(|(recs, sha)| sha.map(|s| (recs, s)))
        .flat_map(|(recs, sha)| recs.into_iter().map(move |r| (r, sha.clone())))
        .collect();

    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(jobs.unwrap_or(0))
        .build()
        .context("cannot start the labelling threads")?;
    let common = project.common_dir.clone();
    let results: Vec<Result<AttemptLabel, Skipped>> = pool.install(|| {
        jobs_list
            .par_iter()
            .map_init(|| Repository::open(&common), |repo, (rec, sha)| label_one(repo, &common, rec, sha))
            .collect()
    });

    let mut report = LabelReport::default();
    for r in results {
        match r {
            Ok(l) => report.labeled.push(l),
            Err(s) => report.skipped.push(s),
        }
    }
    if write {
        for l in &report.labeled {
            let labels = l.labels();
            ledger
                .update(&l.task, l.attempt, |r| r.labels = Some(labels))
                .with_context(|| format!("cannot store the labels of {}#{}", l.task, l.attempt))?;
        }
    }
    Ok(report)
}

fn label_one(
    repo: &mut std::result::Result<Repository, git2::Error>,
    common: &Path,
    rec: &TaskRecord,
    sha: &str,
) -> Result<AttemptLabel, Skipped> {
    let skip = |reason: String| Skipped { task: rec.id.clone(), attempt: rec.attempt, reason };
    let repo = match repo {
        Ok(r) => r,
        Err(e) => return Err(skip(format!("cannot open {}: {}", common.display(), e.message()))),
    };
    let final_text = final_diff(repo, sha).map_err(|e| skip(format!("{e:#}")))?;
    let merge = Oid::from_str(sha).map_err(|e| skip(e.message().to_string()))?;
    let Some((from, tip, source, cand)) = candidate_diff(repo, rec, merge).map_err(|e| skip(format!("{e:#}")))? else {
        return Err(skip("no tip: the branch, the ledger tip and refs/hybrid/tips are all gone".into()));
    };
    let labels = super::score(&cand, &final_text);
    Ok(AttemptLabel {
        task: rec.id.clone(),
        attempt: rec.attempt,
        state: rec.state.as_str().to_string(),
        merge_sha: sha.to_string(),
        from: from.to_string(),
        tip: tip.to_string(),
        tip_source: source.to_string(),
        jaccard: labels.jaccard,
        ratio: labels.ratio,
        score: labels.score,
        similar_ratio: super::similar_ratio(&cand, &final_text),
    })
}
