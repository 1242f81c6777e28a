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
//! the user's checkout, and the agent's own tooling runs hooks when it commits), except in
//! repositories with filter drivers (git-lfs and the like), where `git worktree add` writes
//! the files; see `admin.rs` (`add_worktree`) for the measurement behind this choice. git-hybrid finds a
//! task's admin entry (`<common-dir>/worktrees/*`) by its path, never by name alone, so a
//! user's own worktree is never pruned or reused.
//!
//! Files: this one starts an attempt (branch, record, checks on the worktree root); `admin.rs`
//! makes and removes git's worktree admin entries and fills a new worktree; `clean.rs` removes
//! worktrees and branches (`clean`, and the landing's cleanup).

use std::path::Path;

use anyhow::{Context, Result};

use git2::{BranchType, Repository, StatusOptions};

use crate::error::HybridError;
use crate::ledger::trust::{self, TaskWorktree};
use crate::ledger::{TaskRecord, TaskState};
use crate::repo::Project;
use crate::{names, task_id};

mod admin;
mod clean;

use admin::{add_worktree, checked_out_elsewhere, remove_admin_entries, remove_half_made, remove_stale_ref_lock};
pub use clean::{clean, delete_branch_cas, removal_leftover, remove_worktree, CleanItem, CleanReport, CleanSelector};

/// What `start` is asked to do.
#[derive(Debug, Clone, Default)]
pub struct StartOptions {
    pub id: String,
    /// Revision to branch from; default: the target tip.
    pub base: Option<String>,
    /// Attempt number (default 1).
    pub attempt: Option<u32>,
    pub title: Option<String>,
    /// Claims recorded in the ledger when the record is written (`None`: left as they are).
    pub claims: Option<Vec<String>>,
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
    task_id::validate_attempt(attempt)?;
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
    let repo = &project.repo;
    let branch = names::branch(&opts.id, attempt);
    let name = names::attempt_name(&opts.id, attempt);
    let path = root.join(&name);
    // A new task whose folder is taken is refused before its lock file is made (checked again
    // under the lock: another start may be making the task meanwhile).
    // The record is read again after the folder: a concurrent start writes its record before
    // it makes the folder, so a folder seen with no record after it is not that start's.
    if ledger.get(&opts.id, attempt)?.is_none() {
        if let Err(e) = refuse_occupied(&path) {
            if ledger.get(&opts.id, attempt)?.is_none() {
                return Err(e);
            }
        }
    }
    let _lock = ledger.lock_task(&opts.id)?;
    crate::failpoint!("start::locked");

    let existing = ledger.get(&opts.id, attempt)?;
    if let Some(rec) = &existing {
        let has_tree = rec.worktree.as_deref().is_some_and(|w| w.join(".git").exists());
        if rec.state != TaskState::Starting && has_tree {
            // The recorded path is where agents run and checkpoints are committed: only the
            // task's own worktree is handed out (trust rule 3).
            if let TaskWorktree::NotOwned(why) = trust::task_worktree(project, rec) {
                let path = ledger.path(&opts.id, attempt).display().to_string();
                return Err(HybridError::Corrupt { path, reason: why }.into());
            }
            return Ok(StartOutcome { record: rec.clone(), created: false });
        }
        if rec.state.is_done() && repo.find_branch(&branch, BranchType::Local).is_err() {
            // Landed and cleaned: there is nothing to recreate.
            return Ok(StartOutcome { record: rec.clone(), created: false });
        }
    }
    let repairing = existing.as_ref().is_some_and(|r| r.state == TaskState::Starting);
    if repairing {
        remove_half_made(project, &name, &path)?;
    } else {
        refuse_occupied(&path)?;
    }

    // Entries for this path whose folder is gone (deleted by hand) are stale: drop them.
    remove_admin_entries(project, &path)?;
    if let Some(other) = checked_out_elsewhere(project, &format!("refs/heads/{branch}")) {
        return Err(HybridError::Repo(format!(
            "branch {branch} is checked out in {}; switch that checkout to another branch first",
            other.display()
        ))
        .into());
    }

    // Adopt an existing branch (e.g. pushed by an agent elsewhere); otherwise create it at base.
    let record_base = match repo.find_branch(&branch, BranchType::Local) {
        Ok(b) => {
            let tip = b.get().target().context("branch has no target")?;
            existing.as_ref().map(|r| r.base.clone()).unwrap_or_else(|| {
                crate::git::generation::merge_base(repo, tip, base).ok().flatten().unwrap_or(base).to_string()
            })
        }
        Err(_) => {
            remove_stale_ref_lock(project, &branch)?;
            let commit = repo.find_commit(base)?;
            repo.branch(&branch, &commit, false).with_context(|| format!("cannot create branch {branch}"))?;
            crate::failpoint!("start::branch_created");
            base.to_string()
        }
    };

    // A task restarted after `clean` (or whose folder was deleted by hand) keeps its record;
    // its base is the branch's base now, and its state survives unless it was never ready.
    let prior_state = existing.as_ref().map(|r| r.state);
    let mut rec = existing.unwrap_or_else(|| TaskRecord::new(&opts.id, attempt, &branch, &path, &record_base, &target));
    rec.base = record_base;
    rec.state = TaskState::Starting;
    rec.worktree = Some(path.clone());
    if opts.title.is_some() {
        rec.title = opts.title.clone();
    }
    if opts.claims.is_some() {
        rec.claims = opts.claims.clone();
    }
    ledger.put(&rec)?;
    crate::failpoint!("start::recorded");

    std::fs::create_dir_all(&root).with_context(|| format!("cannot create {}", root.display()))?;
    if path.exists() {
        // An empty folder is fine to reuse; libgit2 wants to create it itself.
        let _ = std::fs::remove_dir(&path);
    }
    add_worktree(project, &name, &path, &branch)?;
    crate::failpoint!("start::worktree_added");

    rec.state = match prior_state {
        None | Some(TaskState::Starting) | Some(TaskState::Abandoned) => TaskState::Ready,
        Some(s) => s,
    };
    rec.updated = crate::fsutil::now_rfc3339();
    ledger.put(&rec)?;
    Ok(StartOutcome { record: rec, created: true })
}

/// The worktree root must be a place of git-hybrid's own: never inside a git directory (the
/// common one, or any `.git` folder), never a tracked file or inside one, never a folder that
/// holds tracked files, and, inside the checkout, ignored by git. Anything else is bad
/// input (exit 2), refused before anything is made.
fn check_worktree_root(project: &Project, root: &Path) -> Result<()> {
    let bad = |why: String| -> Result<()> {
        Err(HybridError::Config {
            location: config_location(project),
            message: format!("[project] worktree_root {}: {why}", root.display()),
        }
        .into())
    };
    if root.starts_with(&project.common_dir) {
        return bad(format!("it is inside the git directory {}", project.common_dir.display()));
    }
    if let Ok(rel) = root.strip_prefix(&project.root) {
        if rel.components().any(|c| c.as_os_str().eq_ignore_ascii_case(".git")) {
            return bad("it is inside a .git folder".into());
        }
        if rel.as_os_str().is_empty() {
            return bad("it is the repository's own checkout".into());
        }
        if let Some(tracked) = tracked_at_or_under(project, rel)? {
            return bad(format!("it is inside or holds the tracked path {tracked:?}"));
        }
    }
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

/// A task's worktree folder that exists and is not empty is someone else's (exit 2).
fn refuse_occupied(path: &Path) -> Result<()> {
    if path.exists() && std::fs::read_dir(path).map(|mut d| d.next().is_some()).unwrap_or(true) {
        return Err(HybridError::Repo(format!(
            "{} already exists and is not a worktree git-hybrid knows; move it away or set [project] worktree_root",
            path.display()
        ))
        .into());
    }
    Ok(())
}

/// Where `[project] worktree_root` came from, for messages.
fn config_location(project: &Project) -> String {
    let path = project.config.path.clone().unwrap_or_else(|| project.root.join(crate::config::FILE_NAME));
    path.display().to_string()
}

/// A tracked path (in the main checkout's index) that is `rel` itself, one of its ancestors,
/// or inside it.
fn tracked_at_or_under(project: &Project, rel: &Path) -> Result<Option<String>> {
    let Some(rel) = rel.to_str() else { return Ok(None) };
    let index = project.repo.index().context("cannot read the index")?;
    let mut prefix = String::new();
    for part in rel.split('/') {
        if !prefix.is_empty() {
            prefix.push('/');
        }
        prefix.push_str(part);
        if index.get_path(Path::new(&prefix), 0).is_some() {
            return Ok(Some(prefix));
        }
    }
    let dir = format!("{rel}/");
    if let Ok(i) = index.find_prefix(Path::new(&dir)) {
        if let Some(e) = index.get(i) {
            if e.path.starts_with(dir.as_bytes()) {
                return Ok(Some(String::from_utf8_lossy(&e.path).into_owned()));
            }
        }
    }
    Ok(None)
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
