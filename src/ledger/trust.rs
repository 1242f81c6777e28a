//! The trust rules: what git-hybrid believes of state an agent can write.
//!
//! Everything under the common git directory (`hybrid/ledger`, `hybrid/runs`, `refs/...`,
//! `worktrees/*`) is writable by any agent working in a linked worktree, so it is input, not
//! truth. Contract (one place for every rule; the README's "Security model" states them):
//!
//! 1. **Identity.** A record at `ledger/<id>/<n>.json` must parse and name task `<id>`, attempt
//!    `<n>` ([`check_identity`]); otherwise it is corrupt ([`HybridError::Corrupt`], exit 2
//!    naming the file) and nothing is done on its word.
//! 2. **Done means git agrees** ([`confirm_done`]). `landed` is believed only when its
//!    `merge_sha` is a commit on the record's target (the branch, or a remote-tracking branch of
//!    that name), with one parent (`merge_base` when recorded), carrying `Hybrid-Task: <id>`
//!    and the attempt's `Hybrid-Attempt` (absent for attempt 1), whose `Hybrid-Tip` is the
//!    recorded `tip` (without that trailer: the recorded tip's work is in the commit), and, when
//!    that tip object is here, whose tree is the tip's tree. `empty`
//!    is believed when its `merge_base` is on the target and the recorded `tip`'s work is in
//!    it (the tip is contained in the base, has its tree, or merges into it without a change).
//!    No commit names an empty task, so git cannot tie an `empty` record to its task: what it
//!    proves is that the recorded tip's work is on the target, which is all that removing a
//!    branch at or behind that tip needs. Task branches (`hybrid/...`) are never a target.
//!    Confirmations are memoised per process, keyed by the record's fields and the target tips.
//! 3. **Worktrees** ([`task_worktree`]). A path from a record is removed only when git lists it
//!    as a worktree of the task's branch (an admin entry `<common>/worktrees/*` whose `gitdir`
//!    is `<path>/.git` and whose `HEAD` is the branch, as `git worktree list` reads them), its
//!    `.git` file (when present) points back at that entry, and it lies (symlinks resolved)
//!    under the configured worktree root. Otherwise it is left and the reason is given.
//!    The same rules hold for records published as refs (`refs/hybrid/ledger/<id>/<n>`, see
//!    `remote/published.rs`), confirmed on the fetched target tip ([`confirm_done_on`]).
//! 4. **Run folders** ([`run_dir`]). A record's `run_dir` is used only inside
//!    `<common>/hybrid/runs/<id>/<attempt>/`.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use git2::{Oid, Repository};

use super::{TaskRecord, TaskState};
use crate::error::HybridError;
use crate::git::worktrees;
use crate::repo::{normalize, Project};

/// Rule 1: the record at `path` (`ledger/<id>/<attempt>.json`) names that task and attempt.
pub fn check_identity(path: &Path, rec: &TaskRecord, id: &str, attempt: u32) -> Result<(), HybridError> {
    let corrupt = |reason: String| HybridError::Corrupt { path: path.display().to_string(), reason };
    if rec.id != id || rec.attempt != attempt {
        return Err(corrupt(format!(
            "it holds task {:?} attempt {} but its path is task {id:?} attempt {attempt}",
            rec.id, rec.attempt
        )));
    }
    if crate::task_id::validate(&rec.id).is_err() || rec.attempt == 0 {
        return Err(corrupt(format!("{:?} attempt {} is not a valid task attempt", rec.id, rec.attempt)));
    }
    let branch = crate::names::branch(id, attempt);
    if rec.branch != branch {
        return Err(corrupt(format!("its branch is {:?}, not the task's {branch:?}", rec.branch)));
    }
    Ok(())
}

/// Parses a ledger record's bytes; anything that does not parse is corrupt (exit 2).
pub fn parse(path: &Path, bytes: &[u8]) -> Result<TaskRecord, HybridError> {
    serde_json::from_slice(bytes).map_err(|e| HybridError::Corrupt {
        path: path.display().to_string(),
        reason: format!("not a ledger record: {e}"),
    })
}

fn memo() -> &'static Mutex<HashSet<String>> {
    static CONFIRMED: OnceLock<Mutex<HashSet<String>>> = OnceLock::new();
    CONFIRMED.get_or_init(|| Mutex::new(HashSet::new()))
}

/// The refs a landing on `target` may be found on: the branch and its remote-tracking copies.
fn target_tips(repo: &Repository, target: &str) -> Result<Vec<Oid>, String> {
    let full = format!("refs/heads/{target}");
    if target.starts_with(crate::names::BRANCH_PREFIX) || !git2::Reference::is_valid_name(&full) {
        return Err(format!("its target {target:?} is not a branch tasks land on"));
    }
    let mut tips: Vec<Oid> = repo.refname_to_id(&full).ok().into_iter().collect();
    if let Ok(remotes) = repo.remotes() {
        for remote in remotes.iter().flatten() {
            if let Ok(oid) = repo.refname_to_id(&format!("refs/remotes/{remote}/{target}")) {
                tips.push(oid);
            }
        }
    }
    if tips.is_empty() {
        return Err(format!("its target branch {target:?} does not exist"));
    }
    Ok(tips)
}

fn on_target(repo: &Repository, tips: &[Oid], commit: Oid) -> bool {
    tips.iter().any(|&t| crate::git::graph::contains(repo, t, commit).unwrap_or(false))
}

/// Rule 2: `Ok(())` when git confirms a `landed` or `empty` record (other states need nothing),
/// else why not.
pub fn confirm_done(repo: &Repository, rec: &TaskRecord) -> Result<(), String> {
    if !rec.state.is_done() {
        return Ok(());
    }
    let tips = target_tips(repo, &rec.target)?;
    confirm_done_on(repo, rec, &tips)
}

/// [`confirm_done`] against given target tips (a fetched remote tip, say) instead of the
/// record's target branch and its remote-tracking copies.
pub fn confirm_done_on(repo: &Repository, rec: &TaskRecord, tips: &[Oid]) -> Result<(), String> {
    if !rec.state.is_done() {
        return Ok(());
    }
    let key = format!(
        "{}|{}|{}|{}|{:?}|{:?}|{:?}|{}|{:?}",
        repo.path().display(),
        rec.id,
        rec.attempt,
        rec.state.as_str(),
        rec.merge_sha,
        rec.merge_base,
        rec.tip,
        rec.target,
        tips
    );
    if memo().lock().map(|m| m.contains(&key)).unwrap_or(false) {
        return Ok(());
    }
    match rec.state {
        TaskState::Landed => confirm_landed(repo, rec, tips)?,
        _ => confirm_empty(repo, rec, tips)?,
    }
    if let Ok(mut m) = memo().lock() {
        m.insert(key);
    }
    Ok(())
}

fn commit_of<'r>(repo: &'r Repository, field: &str, value: Option<&str>) -> Result<git2::Commit<'r>, String> {
    let value = value.ok_or_else(|| format!("it has no {field}"))?;
    let oid = Oid::from_str(value).map_err(|_| format!("its {field} {value:?} is not a commit id"))?;
    repo.find_commit(oid).map_err(|_| format!("its {field} {value} is not a commit in this repository"))
}

fn confirm_landed(repo: &Repository, rec: &TaskRecord, tips: &[Oid]) -> Result<(), String> {
    let squash = commit_of(repo, "merge_sha", rec.merge_sha.as_deref())?;
    let sha = squash.id();
    let t = crate::trailers::of_commit(&squash).ok_or_else(|| format!("{sha} carries no Hybrid-Task trailer"))?;
    if t.task != rec.id {
        return Err(format!("{sha} is the landing of task {:?}, not {:?}", t.task, rec.id));
    }
    if t.attempt_number() != Some(rec.attempt) {
        return Err(format!("{sha} is not the landing of attempt {} (its Hybrid-Attempt differs)", rec.attempt));
    }
    match (rec.tip.as_deref(), t.tip.as_deref()) {
        (Some(tip), Some(trailer)) if tip != trailer => {
            return Err(format!("its tip {tip} is not the Hybrid-Tip of {sha}"));
        }
        // No Hybrid-Tip (a landing made by hand): the recorded tip's work must be in it.
        (Some(_), None) => {
            let tip = commit_of(repo, "tip", rec.tip.as_deref())?;
            if tip.tree_id() != squash.tree_id() && !merges_without_change(repo, &squash, &tip) {
                return Err(format!("the work of its tip {} is not in {sha}", tip.id()));
            }
        }
        _ => {}
    }
    if squash.parent_count() != 1 {
        return Err(format!("{sha} is not a squash commit (it has {} parents)", squash.parent_count()));
    }
    if let Some(base) = rec.merge_base.as_deref() {
        if squash.parent_id(0).map(|p| p.to_string()).ok().as_deref() != Some(base) {
            return Err(format!("its merge_base {base} is not the parent of {sha}"));
        }
    }
    if let Some(tip) = t.tip_oid().and_then(|o| repo.find_commit(o).ok()) {
        if tip.tree_id() != squash.tree_id() {
            return Err(format!("the tree of {sha} is not its Hybrid-Tip's tree"));
        }
    }
    if !on_target(repo, tips, sha) {
        return Err(format!("{sha} is not on {}", rec.target));
    }
    Ok(())
}

fn confirm_empty(repo: &Repository, rec: &TaskRecord, tips: &[Oid]) -> Result<(), String> {
    if let Some(sha) = &rec.merge_sha {
        return Err(format!("state empty with a merge_sha ({sha})"));
    }
    let base = commit_of(repo, "merge_base", rec.merge_base.as_deref())?;
    let tip = commit_of(repo, "tip", rec.tip.as_deref())?;
    if !on_target(repo, tips, base.id()) {
        return Err(format!("its merge_base {} is not on {}", base.id(), rec.target));
    }
    let in_base = tip.tree_id() == base.tree_id()
        || crate::git::graph::contains(repo, base.id(), tip.id()).unwrap_or(false)
        || merges_without_change(repo, &base, &tip);
    if !in_base {
        return Err(format!("the work of its tip {} is not in its merge_base {}", tip.id(), base.id()));
    }
    Ok(())
}

/// Whether merging `tip` into `base` leaves `base`'s tree as it is (in memory; may write the
/// merged tree object, unreferenced).
fn merges_without_change(repo: &Repository, base: &git2::Commit, tip: &git2::Commit) -> bool {
    let Ok(mut index) = repo.merge_commits(base, tip, None) else { return false };
    if index.has_conflicts() {
        return false;
    }
    index.write_tree_to(repo).is_ok_and(|tree| tree == base.tree_id())
}

/// What a record's `worktree` is to git-hybrid (rule 3).
#[derive(Debug, Clone)]
pub enum TaskWorktree {
    /// No worktree recorded, or the recorded folder is gone and git lists none for the task.
    Gone,
    /// The task's own worktree: `dir` (may be half removed) and its admin entry.
    Owned { dir: PathBuf, admin: PathBuf },
    /// Not provably the task's: never removed. The reason says why.
    NotOwned(String),
}

/// Rule 3: whether the record's `worktree` is provably the task's own (see the module docs).
pub fn task_worktree(project: &Project, rec: &TaskRecord) -> TaskWorktree {
    let Some(recorded) = rec.worktree.as_deref() else { return TaskWorktree::Gone };
    let dir = normalize(recorded);
    let branch_ref = format!("refs/heads/{}", rec.branch);
    let admin = admin_entry_of(project, &dir, &branch_ref);
    let present = std::fs::symlink_metadata(recorded).is_ok();
    let Some(admin) = admin else {
        return if present {
            TaskWorktree::NotOwned(format!(
                "git does not list {} as a worktree of {}; left it in place",
                recorded.display(),
                rec.branch
            ))
        } else {
            TaskWorktree::Gone
        };
    };
    let root = normalize(&project.worktree_root());
    if dir == root || !dir.starts_with(&root) {
        return TaskWorktree::NotOwned(format!(
            "{} is not under the worktree root {}; left it in place",
            recorded.display(),
            root.display()
        ));
    }
    // Its `.git` file, when still there, must point back at the entry (a half-removed
    // worktree has lost it: see `land/cleanup.rs`).
    let dotgit = dir.join(".git");
    if std::fs::symlink_metadata(&dotgit).is_ok() {
        let back = std::fs::read_to_string(&dotgit)
            .ok()
            .and_then(|t| t.trim().strip_prefix("gitdir:").map(|g| PathBuf::from(g.trim())))
            .map(|g| if g.is_absolute() { g } else { dir.join(g) });
        if back.map(|b| normalize(&b)) != Some(normalize(&admin)) {
            return TaskWorktree::NotOwned(format!(
                "{} is not the checkout of git's worktree entry {}; left it in place",
                recorded.display(),
                admin.display()
            ));
        }
    }
    TaskWorktree::Owned { dir, admin }
}

/// The admin entry (`<common>/worktrees/*`) whose `gitdir` is `<dir>/.git` and whose `HEAD` is
/// `branch_ref`: how `git worktree list --porcelain` pairs a worktree with its branch.
fn admin_entry_of(project: &Project, dir: &Path, branch_ref: &str) -> Option<PathBuf> {
    let want = dir.join(".git");
    for entry in worktrees::linked(&project.common_dir).ok()? {
        if entry.dot_git.as_deref().map(normalize).as_deref() != Some(want.as_path()) {
            continue;
        }
        if worktrees::head_ref(&entry.admin).as_deref() == Some(branch_ref) {
            return Some(entry.admin);
        }
    }
    None
}

/// Rule 4: the record's `run_dir` (relative: to the common git directory), if it lies inside
/// `<state_dir>/runs/<id>/<attempt>/` (`state_dir`: `<common>/hybrid`).
pub fn run_dir(state_dir: &Path, rec: &TaskRecord) -> Option<PathBuf> {
    let recorded = rec.run_dir.as_deref()?;
    let common = state_dir.parent().unwrap_or(state_dir);
    let dir = normalize(&if recorded.is_absolute() { recorded.to_path_buf() } else { common.join(recorded) });
    let allowed = normalize(&crate::names::attempt_dir(state_dir, &rec.id, rec.attempt));
    (dir.starts_with(&allowed) && dir != allowed).then_some(dir)
}
