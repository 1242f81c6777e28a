//! One worktree and branch per task attempt, created from an explicit base.
//!
//! Contract:
//! - [`start`] creates branch `hybrid/<id>` (attempt N > 1: `hybrid/<id>@N`) at the base (default:
//!   the target tip, never whatever the user has checked out) and a worktree for it under the
//!   worktree root. Starting a task that exists changes nothing and returns its record. The
//!   task lock serializes concurrent starts of one task; different tasks never wait for each
//!   other. A crash mid-start leaves a `starting` record that the next start repairs (the
//!   half-made worktree is git-hybrid's own and holds no user work).
//! - [`clean`] removes a worktree and its branch only when no work would be lost: uncommitted
//!   changes or commits not yet landed keep both unless `force`, and the report says why. A
//!   forced removal of unlanded commits keeps them reachable at `refs/hybrid/trash/<id>@<N>`.
//!
//! Worktrees are made with git2 (no `git` process, no checkout hooks: a task worktree is not
//! the user's checkout, and the agent's own tooling runs hooks when it commits).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use git2::{BranchType, Oid, Repository, StatusOptions, WorktreeAddOptions, WorktreePruneOptions};
use serde::Serialize;

use crate::error::HybridError;
use crate::ledger::{TaskRecord, TaskState};
use crate::repo::Project;
use crate::task_id;

/// The branch of a task attempt.
pub fn branch_name(id: &str, attempt: u32) -> String {
    if attempt <= 1 {
        format!("hybrid/{id}")
    } else {
        format!("hybrid/{id}@{attempt}")
    }
}

/// The worktree (and worktree admin) name of a task attempt.
pub fn worktree_name(id: &str, attempt: u32) -> String {
    if attempt <= 1 {
        id.to_string()
    } else {
        format!("{id}@{attempt}")
    }
}

/// What `start` is asked to do.
#[derive(Debug, Clone, Default)]
pub struct StartOptions {
    pub id: String,
    /// Revision to branch from; default: the target tip.
    pub base: Option<String>,
    /// Attempt number (default 1).
    pub attempt: Option<u32>,
    pub title: Option<String>,
}

/// What `start` did.
#[derive(Debug, Clone)]
pub struct StartOutcome {
    pub record: TaskRecord,
    /// False when the task already existed and nothing was changed.
    pub created: bool,
}

/// Creates (or finds) a task attempt's branch and worktree.
pub fn start(project: &Project, opts: &StartOptions) -> Result<StartOutcome> {
    task_id::validate(&opts.id)?;
    let attempt = opts.attempt.unwrap_or(1);
    if attempt == 0 {
        return Err(HybridError::Usage("--attempt starts at 1".into()).into());
    }
    project.require_commits()?;
    let target = project.target_branch()?;
    project.target_ref()?;
    let base = match &opts.base {
        Some(rev) => project.resolve_commit(rev)?,
        None => project.target_tip()?,
    };
    let root = project.worktree_root();
    check_worktree_root(project, &root)?;

    let ledger = project.ledger();
    let _lock = ledger.lock_task(&opts.id)?;
    let repo = &project.repo;
    let branch = branch_name(&opts.id, attempt);
    let name = worktree_name(&opts.id, attempt);
    let path = root.join(&name);

    let existing = ledger.get(&opts.id, attempt)?;
    if let Some(rec) = &existing {
        let has_tree = rec.worktree.as_deref().is_some_and(|w| w.join(".git").exists());
        if rec.state != TaskState::Starting && has_tree {
            return Ok(StartOutcome { record: rec.clone(), created: false });
        }
        if rec.state.is_done() && repo.find_branch(&branch, BranchType::Local).is_err() {
            // Landed and cleaned: there is nothing to recreate.
            return Ok(StartOutcome { record: rec.clone(), created: false });
        }
    }
    let repairing = existing.as_ref().is_some_and(|r| r.state == TaskState::Starting);
    if repairing {
        remove_half_made(repo, &name, &path)?;
    } else if path.exists() && std::fs::read_dir(&path).map(|mut d| d.next().is_some()).unwrap_or(true) {
        return Err(HybridError::Repo(format!(
            "{} already exists and is not a worktree git-hybrid knows; move it away or set [project] worktree_root",
            path.display()
        ))
        .into());
    }

    // Adopt an existing branch (e.g. pushed by an agent elsewhere); otherwise create it at base.
    let (branch_ref, record_base) = match repo.find_branch(&branch, BranchType::Local) {
        Ok(b) => {
            let tip = b.get().target().context("branch has no target")?;
            let base_sha = existing
                .as_ref()
                .map(|r| r.base.clone())
                .unwrap_or_else(|| repo.merge_base(tip, base).unwrap_or(base).to_string());
            (b.into_reference(), base_sha)
        }
        Err(_) => {
            let commit = repo.find_commit(base)?;
            let b = repo.branch(&branch, &commit, false).with_context(|| format!("cannot create branch {branch}"))?;
            (b.into_reference(), base.to_string())
        }
    };

    let mut rec = existing.unwrap_or_else(|| TaskRecord::new(&opts.id, attempt, &branch, &path, &record_base, &target));
    rec.state = TaskState::Starting;
    rec.worktree = Some(path.clone());
    if opts.title.is_some() {
        rec.title = opts.title.clone();
    }
    ledger.put(&rec)?;

    std::fs::create_dir_all(&root).with_context(|| format!("cannot create {}", root.display()))?;
    if path.exists() {
        // An empty folder is fine to reuse; libgit2 wants to create it itself.
        let _ = std::fs::remove_dir(&path);
    }
    prune_stale_admin(repo, &name)?;
    let mut add = WorktreeAddOptions::new();
    add.reference(Some(&branch_ref));
    repo.worktree(&name, &path, Some(&add))
        .with_context(|| format!("cannot create the worktree {}", path.display()))?;

    rec.state = TaskState::Ready;
    rec.updated = crate::fsutil::now_rfc3339();
    ledger.put(&rec)?;
    Ok(StartOutcome { record: rec, created: true })
}

fn check_worktree_root(project: &Project, root: &Path) -> Result<()> {
    if let Ok(rel) = root.strip_prefix(&project.root) {
        let probe = rel.join("probe");
        let ignored = project.repo.is_path_ignored(&probe).unwrap_or(false);
        if !ignored {
            return Err(HybridError::Repo(format!(
                "the worktree root {} is inside the repository and not ignored by git; add it to .gitignore or set [project] worktree_root outside the checkout",
                root.display()
            ))
            .into());
        }
    }
    Ok(())
}

fn remove_half_made(repo: &Repository, name: &str, path: &Path) -> Result<()> {
    if let Ok(wt) = repo.find_worktree(name) {
        let _ = wt.prune(Some(WorktreePruneOptions::new().valid(true).locked(true).working_tree(true)));
    }
    if path.exists() {
        std::fs::remove_dir_all(path)
            .with_context(|| format!("cannot remove half-made worktree {}", path.display()))?;
    }
    Ok(())
}

/// Removes the admin folder of a worktree whose directory is gone (as `git worktree prune`).
fn prune_stale_admin(repo: &Repository, name: &str) -> Result<()> {
    if let Ok(wt) = repo.find_worktree(name) {
        if wt.validate().is_err() {
            wt.prune(Some(WorktreePruneOptions::new().valid(true)))
                .with_context(|| format!("cannot prune the stale worktree entry {name}"))?;
        }
    }
    Ok(())
}

/// Uncommitted changes (modified, staged, untracked; not ignored) in a checkout.
pub fn dirty_paths(worktree: &Path) -> Result<Vec<String>> {
    let repo = Repository::open(worktree).with_context(|| format!("cannot open {}", worktree.display()))?;
    let mut opts = StatusOptions::new();
    opts.include_untracked(true).recurse_untracked_dirs(true).include_ignored(false).exclude_submodules(true);
    let statuses = repo.statuses(Some(&mut opts))?;
    let mut out: Vec<String> = statuses.iter().filter_map(|s| s.path().map(str::to_string)).collect();
    out.sort();
    out.dedup();
    Ok(out)
}

/// Which tasks `clean` considers.
#[derive(Debug, Clone)]
pub enum CleanSelector {
    Task(String),
    Merged,
    All,
}

/// One task attempt in a clean report.
#[derive(Debug, Clone, Serialize)]
pub struct CleanItem {
    pub id: String,
    pub attempt: u32,
    pub worktree: Option<PathBuf>,
    pub branch: String,
    /// Why it was kept (absent for removed items).
    pub reason: Option<String>,
}

/// What `clean` did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct CleanReport {
    pub removed: Vec<CleanItem>,
    pub kept: Vec<CleanItem>,
}

/// Removes task worktrees and branches that hold no unlanded work (all selected ones with `force`).
pub fn clean(project: &Project, selector: &CleanSelector, force: bool) -> Result<CleanReport> {
    let ledger = project.ledger();
    let records = match selector {
        CleanSelector::Task(id) => {
            task_id::validate(id)?;
            let recs = ledger.attempts(id)?;
            if recs.is_empty() {
                return Err(HybridError::UnknownTask(id.clone()).into());
            }
            recs
        }
        CleanSelector::Merged => ledger.list()?.into_iter().filter(|r| r.state.is_done()).collect(),
        CleanSelector::All => ledger.list()?,
    };
    let target_tip = project.target_tip().ok();
    let mut report = CleanReport::default();
    for rec in records {
        let _lock = ledger.lock_task(&rec.id)?;
        // Re-read under the lock: another process may have changed it.
        let Some(rec) = ledger.get(&rec.id, rec.attempt)? else { continue };
        let branch_tip = project.repo.refname_to_id(&format!("refs/heads/{}", rec.branch)).ok();
        let tree_present = rec.worktree.as_deref().is_some_and(Path::exists);
        if branch_tip.is_none() && !tree_present {
            continue; // already clean
        }
        let item = |reason: Option<String>| CleanItem {
            id: rec.id.clone(),
            attempt: rec.attempt,
            worktree: rec.worktree.clone(),
            branch: rec.branch.clone(),
            reason,
        };
        let mut reasons = Vec::new();
        if tree_present {
            let wt = rec.worktree.as_deref().unwrap_or(Path::new("."));
            match dirty_paths(wt) {
                Ok(d) if !d.is_empty() => reasons.push(format!("{} uncommitted change(s) ({})", d.len(), preview(&d))),
                Ok(_) => {}
                Err(e) => reasons.push(format!("cannot read its status: {e:#}")),
            }
        }
        if let Some(tip) = branch_tip {
            if let Some(n) = unlanded_commits(project, &rec, tip, target_tip)? {
                reasons.push(format!("{n} commit(s) not landed on {}", rec.target));
            }
        }
        if !reasons.is_empty() && !force {
            report.kept.push(item(Some(format!("{}; use --force to remove anyway", reasons.join(" and ")))));
            continue;
        }
        if let Some(tip) = branch_tip {
            if !reasons.is_empty() {
                let trash = format!("refs/hybrid/trash/{}", worktree_name(&rec.id, rec.attempt));
                project.repo.reference(&trash, tip, true, "git-hybrid clean --force: keep unlanded commits")?;
            }
        }
        remove_worktree(project, &rec)?;
        if let Some(tip) = branch_tip {
            delete_branch_cas(&project.repo, &rec.branch, tip)?;
        }
        let was_done = rec.state.is_done();
        ledger.update_locked(&rec.id, rec.attempt, |r| {
            r.worktree = None;
            if !was_done && r.state != TaskState::Candidate {
                r.state = TaskState::Abandoned;
            }
        })?;
        report.removed.push(item(None));
    }
    Ok(report)
}

fn preview(paths: &[String]) -> String {
    let mut s = paths.iter().take(3).cloned().collect::<Vec<_>>().join(", ");
    if paths.len() > 3 {
        s.push_str(", ...");
    }
    s
}

/// Number of commits on the branch whose work is not in the target, or `None` when all landed.
fn unlanded_commits(project: &Project, rec: &TaskRecord, tip: Oid, target_tip: Option<Oid>) -> Result<Option<usize>> {
    let repo = &project.repo;
    if let Some(t) = target_tip {
        if t == tip || repo.graph_descendant_of(t, tip).unwrap_or(false) {
            return Ok(None);
        }
    }
    if rec.state.is_done() && rec.tip.as_deref() == Some(&tip.to_string()) {
        return Ok(None);
    }
    let base = Oid::from_str(&rec.base).ok();
    if base == Some(tip) {
        return Ok(None);
    }
    let mut walk = repo.revwalk()?;
    walk.push(tip)?;
    if let Some(b) = base {
        let _ = walk.hide(b);
    }
    if let Some(t) = target_tip {
        let _ = walk.hide(t);
    }
    if let Some(landed) = rec.tip.as_deref().and_then(|s| Oid::from_str(s).ok()) {
        if rec.state.is_done() {
            let _ = walk.hide(landed);
        }
    }
    let n = walk.count();
    Ok(if n == 0 { None } else { Some(n) })
}

/// Removes a task worktree folder and its admin entry.
pub fn remove_worktree(project: &Project, rec: &TaskRecord) -> Result<()> {
    let name = worktree_name(&rec.id, rec.attempt);
    if let Some(path) = &rec.worktree {
        if path.exists() {
            std::fs::remove_dir_all(path).with_context(|| format!("cannot remove {}", path.display()))?;
        }
    }
    if let Ok(wt) = project.repo.find_worktree(&name) {
        wt.prune(Some(WorktreePruneOptions::new().valid(true).working_tree(false)))
            .with_context(|| format!("cannot prune the worktree entry {name}"))?;
    }
    Ok(())
}

/// Deletes `refs/heads/<branch>` only if it still points at `expected`.
pub fn delete_branch_cas(repo: &Repository, branch: &str, expected: Oid) -> Result<()> {
    let name = format!("refs/heads/{branch}");
    let mut tx = repo.transaction()?;
    tx.lock_ref(&name)?;
    let now = repo.refname_to_id(&name).ok();
    if now != Some(expected) {
        return Err(HybridError::Repo(format!("{branch} moved while cleaning; left it in place")).into());
    }
    tx.remove(&name)?;
    tx.commit()?;
    Ok(())
}
