//! Landing a task as one squash commit on the target.
//!
//! Contract: [`land_task`] lands task attempt `<id>`/`<attempt>` (or adopts a branch
//! `hybrid/<id>` that has no ledger record) on the target branch:
//!
//! 1. **Catch-up.** When the target tip is not in the task branch, the target is merged into the
//!    branch first, exactly as [`crate::sync`] does. A conflict changes nothing, marks the task
//!    `conflict` with its paths and returns [`HybridError::Conflict`] (exit 3).
//! 2. **Squash in memory.** One commit whose single parent is the target tip and whose tree is the
//!    caught-up tip's tree; message: summary (`-m`, the task title, or the commit subjects), a body
//!    listing the task's commit subjects, and the trailers of `docs/DESIGN.md`. No working tree is
//!    read or written for it. When that tree equals the target's, the task is `empty`: no commit.
//! 3. **Move.** Under the landing lock (`hybrid/locks/land-<target>.lock`, serializing git-hybrid
//!    landings on one target) the target ref is locked git's way and compared: if anything else
//!    moved it, everything is recomputed on the new tip (at most [`MAX_TRIES`] times). Every
//!    checkout that has the target checked out is checked first: a local change (modified,
//!    staged, untracked, ignored) on a path the landing changes refuses the landing before
//!    anything moves ([`HybridError::LocalChanges`], exit 3). Then the task branch takes its
//!    catch-up merge, those checkouts move with `git read-tree -m -u` (local changes elsewhere
//!    carried along, staged changes stay staged and are never in the squash), and only then the
//!    target ref moves; see [`crate::checkout`] for why this order.
//! 4. **Record.** The ledger gets `merge_sha`, `merge_base`, `tip`, `landed_at` and state `landed`
//!    (or `empty`); `refs/hybrid/tips/<id>[@N]` keeps the landed tip reachable.
//! 5. **Clean.** Unless `keep`, a clean task worktree and the branch are removed; anything with
//!    uncommitted work, or a failure anywhere, keeps them.
//!
//! Crash safety: before the target moves, the ledger records the squash it is about to land
//! (`landing` key). A re-run that finds that squash on the target finishes the record and the
//! cleanup instead of landing anything twice; one that does not find it starts over. A re-run of a
//! landed task is a no-op that reports the recorded landing.
//!
//! Test hook: `HYBRID_TEST_PAUSE_MS=<ms>` makes a landing sleep that long between its steps, so
//! the kill -9 tests can interrupt it at many points. It is read only for that purpose.

use anyhow::{Context, Result};
use git2::{Oid, Sort};
use serde::Serialize;

use crate::checkout::{self, RefLock};
use crate::error::HybridError;
use crate::ledger::{TaskRecord, TaskState};
use crate::lock::FileLock;
use crate::repo::Project;
use crate::sync;
use crate::{git, task_id, worktree};

/// How often a landing recomputes after the target moved under it before giving up (exit 4).
pub const MAX_TRIES: usize = 10;

/// Options for one landing.
#[derive(Debug, Clone, Default)]
pub struct LandOptions {
    /// Target branch (default: the task's target, else the project's).
    pub target: Option<String>,
    /// Summary line for the squash commit.
    pub message: Option<String>,
    /// Keep the worktree and branch after landing.
    pub keep: bool,
}

/// The result of a landing.
#[derive(Debug, Clone, Serialize)]
pub struct LandReport {
    pub task: String,
    pub attempt: u32,
    /// `"landed"` or `"empty"`.
    pub status: String,
    pub merge_sha: Option<String>,
    /// Target tip the squash was computed on.
    pub base: String,
    /// Task branch tip that landed (after catch-up).
    pub tip: String,
    /// Whether the worktree and branch were removed.
    pub cleaned: bool,
    /// The target branch.
    pub target: String,
    /// True when this run found the task already landed (or finished a landing a killed run made).
    pub already: bool,
    /// True when the target was merged into the task branch first.
    pub caught_up: bool,
    /// Why the worktree or branch was kept, if it was.
    pub kept: Option<String>,
}

/// Lands a task attempt (see the module contract).
pub fn land_task(project: &Project, id: &str, attempt: u32, opts: &LandOptions) -> Result<LandReport> {
    task_id::validate(id)?;
    sync::fast_reads();
    project.require_commits()?;
    if opts.message.as_deref().is_some_and(|m| m.trim().is_empty()) {
        return Err(HybridError::Usage("the -m message is empty".into()).into());
    }
    let repo = &project.repo;
    let ledger = project.ledger();
    let _task_lock = ledger.lock_task(id)?;
    let rec = sync::load_or_adopt(project, id, attempt, opts.target.as_deref())?;
    let target = opts.target.clone().unwrap_or_else(|| rec.target.clone());
    let target_ref = sync::branch_ref_checked(project, &target)?;
    let land_lock = FileLock::acquire(&land_lock_path(project, &target))?;
    pause();

    let rec = match finish_interrupted(project, &rec)? {
        Some(done) => done,
        None => rec,
    };
    if rec.state.is_done() {
        drop(land_lock);
        return already_done(project, rec, opts);
    }

    let branch_ref = format!("refs/heads/{}", rec.branch);
    let tip = sync::task_tip(project, &rec)?;
    for _ in 0..MAX_TRIES {
        let base = repo.refname_to_id(&target_ref)?;
        let bases = sync::merge_bases(repo, tip, base)?;
        let caught_up = if tip == base || bases == [base] {
            None // the task already contains the target
        } else {
            match sync::merge_commit_on(project, tip, base, &target, &rec.branch, &bases)? {
                Ok(m) => Some(m),
                Err(paths) => {
                    let what = format!("catching {} up with {target}", rec.branch);
                    sync::record_conflict(project, &rec, &what, &paths)?;
                    return Err(HybridError::Conflict { what, paths }.into());
                }
            }
        };
        let landed_tip = caught_up.unwrap_or(tip);
        let base_commit = repo.find_commit(base)?;
        let base_tree = base_commit.tree()?;
        let tip_tree = repo.find_commit(landed_tip)?.tree()?;
        pause();

        if tip_tree.id() == base_tree.id() {
            // The work is already on the target: record it, commit nothing.
            set_tip_ref(project, &rec, tip)?;
            drop(land_lock);
            let rec = mark_done(project, &rec, TaskState::Empty, None, base, tip, &target)?;
            let (cleaned, kept) = cleanup(project, &rec, tip, opts.keep);
            return Ok(report(&rec, "empty", None, base, tip, &target, cleaned, kept, false, false));
        }

        let message = squash_message(project, &rec, opts, base, landed_tip, tip, &bases)?;
        let author = git::signature(repo, git::Role::Author)?;
        let committer = git::signature(repo, git::Role::Committer)?;
        let squash = repo.commit(None, &author, &committer, &message, &tip_tree, &[&base_commit])?;
        let intent = serde_json::json!({
            "merge_sha": squash.to_string(), "base": base.to_string(), "tip": landed_tip.to_string(), "target": target,
        });
        let rec = ledger
            .update_locked(id, attempt, |r| {
                r.extra.insert("landing".into(), intent);
            })?
            .context("the ledger record vanished")?;
        pause();

        // Any failure from here until the target moves drops the note (best effort: a note left
        // behind is harmless, the next run checks it against the target).
        let mut intent_guard = IntentGuard { project, rec: &rec, armed: true };
        let target_lock = RefLock::acquire(project, &target_ref)?;
        if target_lock.current != Some(base) {
            continue; // someone else moved the target: recompute on its new tip
        }
        let checkouts = checkout::checkouts_of(project, &target_ref)?;
        let mut moves = Vec::with_capacity(checkouts.len());
        if !checkouts.is_empty() {
            let changed = checkout::changed_paths(repo, &base_tree, &tip_tree)?;
            for co in &checkouts {
                let prepared = checkout::prepare_move(project, co, &target_ref, &base_tree, &tip_tree, &changed)?;
                if let Err(blocked) = prepared {
                    return Err(HybridError::LocalChanges {
                        message: format!(
                            "landing {id} would change path(s) that have local changes in {} (where {target} is \
                             checked out); nothing was changed. Commit, stash or move those changes, then re-run \
                             `git hybrid merge {id}`",
                            co.dir.display()
                        ),
                        paths: blocked,
                    }
                    .into());
                }
                moves.extend(prepared.ok());
            }
        }
        if let Some(m) = caught_up {
            sync::move_task_branch(project, &branch_ref, tip, m, &format!("git-hybrid merge: catch up with {target}"))?;
            pause();
        }
        checkout::apply_moves(project, moves, base, squash)?;
        pause();
        if let Err(e) = target_lock.commit(repo, squash, &format!("git-hybrid merge: land {id}")) {
            checkout::undo(&checkouts, base, squash);
            return Err(e);
        }
        intent_guard.armed = false;
        pause();
        set_tip_ref(project, &rec, landed_tip)?;
        drop(land_lock);
        let rec = mark_done(project, &rec, TaskState::Landed, Some(squash), base, landed_tip, &target)?;
        pause();
        let (cleaned, kept) = cleanup(project, &rec, landed_tip, opts.keep);
        return Ok(report(
            &rec,
            "landed",
            Some(squash),
            base,
            landed_tip,
            &target,
            cleaned,
            kept,
            false,
            caught_up.is_some(),
        ));
    }
    Err(HybridError::Busy(format!(
        "{target} kept moving while landing {id} ({MAX_TRIES} tries); nothing landed, re-run"
    ))
    .into())
}

/// `<common>/hybrid/locks/land-<target>.lock`, `/` written as `%`.
pub fn land_lock_path(project: &Project, target: &str) -> std::path::PathBuf {
    project.state_dir().join("locks").join(format!("land-{}.lock", target.replace('/', "%")))
}

/// The ref that keeps a landed tip reachable.
pub fn tip_ref(id: &str, attempt: u32) -> String {
    format!("refs/hybrid/tips/{}", worktree::worktree_name(id, attempt))
}

fn set_tip_ref(project: &Project, rec: &TaskRecord, tip: Oid) -> Result<()> {
    project
        .repo
        .reference(&tip_ref(&rec.id, rec.attempt), tip, true, "git-hybrid merge: landed tip")
        .context("cannot write the tip ref")?;
    Ok(())
}

/// Sleeps between steps when `HYBRID_TEST_PAUSE_MS` is set (test-only; see the module docs).
pub(crate) fn pause() {
    if let Some(ms) = std::env::var("HYBRID_TEST_PAUSE_MS").ok().and_then(|v| v.parse::<u64>().ok()) {
        std::thread::sleep(std::time::Duration::from_millis(ms));
    }
}

fn mark_done(
    project: &Project,
    rec: &TaskRecord,
    state: TaskState,
    squash: Option<Oid>,
    base: Oid,
    tip: Oid,
    target: &str,
) -> Result<TaskRecord> {
    let now = crate::fsutil::now_rfc3339();
    project
        .ledger()
        .update_locked(&rec.id, rec.attempt, |r| {
            r.state = state;
            r.merge_sha = squash.map(|s| s.to_string());
            r.merge_base = Some(base.to_string());
            r.tip = Some(tip.to_string());
            r.landed_at = Some(now);
            r.target = target.to_string();
            r.conflicts.clear();
            r.failure = None;
            r.extra.remove("landing");
        })?
        .context("the ledger record vanished")
}

/// Drops the ledger's `landing` note when a landing fails before the target moved.
struct IntentGuard<'a> {
    project: &'a Project,
    rec: &'a TaskRecord,
    armed: bool,
}

impl Drop for IntentGuard<'_> {
    fn drop(&mut self) {
        if self.armed {
            let _ = clear_intent(self.project, self.rec);
        }
    }
}

fn clear_intent(project: &Project, rec: &TaskRecord) -> Result<()> {
    project.ledger().update_locked(&rec.id, rec.attempt, |r| {
        r.extra.remove("landing");
    })?;
    Ok(())
}

/// Finishes the record of a landing a killed run made (its squash is on the target), or drops
/// the note of one that never happened. Caller holds the task and landing locks.
fn finish_interrupted(project: &Project, rec: &TaskRecord) -> Result<Option<TaskRecord>> {
    let Some(intent) = rec.extra.get("landing") else { return Ok(None) };
    let field = |k: &str| intent.get(k).and_then(|v| v.as_str()).map(str::to_string);
    let parsed = (|| {
        Some((
            Oid::from_str(&field("merge_sha")?).ok()?,
            Oid::from_str(&field("base")?).ok()?,
            Oid::from_str(&field("tip")?).ok()?,
            field("target")?,
        ))
    })();
    let repo = &project.repo;
    if let Some((squash, base, tip, target)) = parsed {
        let on_target = repo
            .refname_to_id(&format!("refs/heads/{target}"))
            .is_ok_and(|t| t == squash || repo.graph_descendant_of(t, squash).unwrap_or(false));
        if on_target {
            set_tip_ref(project, rec, tip)?;
            return Ok(Some(mark_done(project, rec, TaskState::Landed, Some(squash), base, tip, &target)?));
        }
    }
    clear_intent(project, rec)?;
    Ok(None)
}

/// The report for a task that was already landed (or empty); finishes an interrupted cleanup.
fn already_done(project: &Project, rec: TaskRecord, opts: &LandOptions) -> Result<LandReport> {
    let repo = &project.repo;
    let recorded_tip = rec.tip.as_deref().and_then(|t| Oid::from_str(t).ok());
    let branch_tip = repo.refname_to_id(&format!("refs/heads/{}", rec.branch)).ok();
    if let (Some(now), Some(landed)) = (branch_tip, recorded_tip) {
        if now != landed && !sync::contains(repo, landed, now)? {
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
fn report(
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

/// The squash commit message: summary, the task's commit subjects, trailers.
///
/// The subjects are those of the non-merge commits reachable from the task tip and not from the
/// target (`base`). Those are exactly the ones not reachable from any merge base of the two
/// (a commit reachable from both is a common ancestor, so it is reachable from some merge base),
/// so the walk hides the merge bases: it then stops near the task's own commits instead of
/// walking everything the target gained since the task started. The catch-up merge itself is
/// a merge commit and never listed.
#[allow(clippy::too_many_arguments)]
fn squash_message(
    project: &Project,
    rec: &TaskRecord,
    opts: &LandOptions,
    base: Oid,
    tip: Oid,
    task_tip: Oid,
    merge_bases: &[Oid],
) -> Result<String> {
    let repo = &project.repo;
    let mut walk = repo.revwalk()?;
    walk.set_sorting(Sort::TOPOLOGICAL | Sort::REVERSE)?;
    walk.push(task_tip)?;
    if merge_bases.is_empty() {
        walk.hide(base)?;
    }
    for b in merge_bases {
        walk.hide(*b)?;
    }
    let mut subjects = Vec::new();
    for oid in walk {
        let c = repo.find_commit(oid?)?;
        if c.parent_count() <= 1 {
            subjects.push(String::from_utf8_lossy(c.summary_bytes().unwrap_or_default()).trim().to_string());
        }
    }
    let (summary, extra) = match (&opts.message, &rec.title) {
        (Some(m), _) => {
            let m = m.trim();
            match m.split_once('\n') {
                Some((first, rest)) => (first.trim().to_string(), Some(rest.trim().to_string())),
                None => (m.to_string(), None),
            }
        }
        (None, Some(t)) if !t.trim().is_empty() => (t.trim().to_string(), None),
        _ => (summary_from_subjects(&rec.id, &subjects), None),
    };
    let mut msg = summary;
    msg.push_str("\n\n");
    if let Some(e) = extra.filter(|e| !e.is_empty()) {
        msg.push_str(&e);
        msg.push_str("\n\n");
    }
    if !subjects.is_empty() {
        msg.push_str("Commits:\n");
        for s in &subjects {
            msg.push_str(&format!("- {s}\n"));
        }
        msg.push('\n');
    }
    msg.push_str(&format!("Hybrid-Task: {}\nHybrid-Base: {base}\nHybrid-Tip: {tip}\n", rec.id));
    if rec.attempt > 1 {
        msg.push_str(&format!("Hybrid-Attempt: {}\n", rec.attempt));
    }
    Ok(msg)
}

fn summary_from_subjects(id: &str, subjects: &[String]) -> String {
    match subjects {
        [] => format!("Land task {id}"),
        [one] => one.clone(),
        [first, rest @ ..] => {
            let joined = subjects.join("; ");
            if joined.chars().count() <= 72 {
                joined
            } else {
                format!("{first} (+{} more)", rest.len())
            }
        }
    }
}

/// Removes the task worktree (when clean) and the branch (when still at `expected`).
/// Never fails the landing: problems become the "kept" reason.
fn cleanup(project: &Project, rec: &TaskRecord, expected: Oid, keep: bool) -> (bool, Option<String>) {
    if keep {
        return (false, Some("--keep".into()));
    }
    match try_cleanup(project, rec, Some(expected)) {
        Ok(None) => (true, None),
        Ok(Some(reason)) => (false, Some(reason)),
        Err(e) => (false, Some(format!("cleanup failed: {e:#}"))),
    }
}

fn cleanup_worktree_only(project: &Project, rec: &TaskRecord, keep: bool) -> (bool, Option<String>) {
    if keep {
        return (false, Some("--keep".into()));
    }
    match try_cleanup(project, rec, None) {
        Ok(None) => (true, None),
        Ok(Some(reason)) => (false, Some(reason)),
        Err(e) => (false, Some(format!("cleanup failed: {e:#}"))),
    }
}

/// `Ok(Some(reason))` when something had to be kept.
fn try_cleanup(project: &Project, rec: &TaskRecord, expected: Option<Oid>) -> Result<Option<String>> {
    let repo = &project.repo;
    let branch_ref = format!("refs/heads/{}", rec.branch);
    let own = rec.worktree.as_deref().map(crate::repo::canonical);
    let others: Vec<_> = checkout::checkouts_of(project, &branch_ref)?
        .into_iter()
        .filter(|c| Some(crate::repo::canonical(&c.dir)) != own)
        .collect();
    if !others.is_empty() {
        return Ok(Some(format!("{} is also checked out in {}", rec.branch, others[0].dir.display())));
    }
    if let Some(wt) = rec.worktree.as_deref().filter(|w| w.exists()) {
        if wt.join(".git").exists() {
            let dirty = worktree::dirty_paths(wt)?;
            if !dirty.is_empty() {
                return Ok(Some(format!(
                    "the worktree {} has {} uncommitted change(s) (not landed): {}",
                    wt.display(),
                    dirty.len(),
                    dirty.iter().take(5).cloned().collect::<Vec<_>>().join(", ")
                )));
            }
            // Without its .git file a half-removed worktree is recognisably ours to finish removing.
            std::fs::remove_file(wt.join(".git")).with_context(|| format!("cannot remove {}", wt.display()))?;
        }
    }
    worktree::remove_worktree(project, rec)?;
    if rec.worktree.is_some() {
        project.ledger().update_locked(&rec.id, rec.attempt, |r| r.worktree = None)?;
    }
    if let Some(expected) = expected {
        let now = repo.refname_to_id(&branch_ref).ok();
        if now == Some(expected) {
            worktree::delete_branch_cas(repo, &rec.branch, expected)?;
        } else if now.is_some() {
            return Ok(Some(format!("{} moved after landing; kept it", rec.branch)));
        }
    }
    Ok(None)
}
