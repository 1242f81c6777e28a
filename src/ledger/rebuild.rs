//! Rebuilding ledger records that were deleted, from what git proves.
//!
//! Contract: [`rebuild`] walks the target's first-parent history from its tip and, for every
//! squash commit carrying `Hybrid-Task` (parsed by [`crate::trailers`]) whose ledger record
//! file is missing, writes the published record of that landing when there is one
//! (`refs/hybrid/ledger/<id>/<n>`, trusted by the same rules), else a `landed` record from the
//! commit alone: task and attempt from the
//! trailers, `merge_sha` the commit, `merge_base` its parent, `tip` its `Hybrid-Tip`,
//! `landed_at` its committer date; the record must then pass the trust rules
//! ([`super::trust::confirm_done`]) or it is not written. `refs/hybrid/tips/<id>` is restored
//! when that tip object is still here. An existing record is never overwritten, and a task
//! whose lock another process holds is left for the next run. What git cannot know is named
//! in the report: a rebuilt record has no title, worktree, run history, agent, labels or
//! claims; agent runs (`hybrid/runs/<id>`) and tip refs with neither a record nor a landing
//! are listed as unrecoverable.
//!
//! The walk is bounded so that it does not grow with the repository's history: it stops at the
//! *floor*, `refs/hybrid/floor/<target>`, the parent of the first squash git-hybrid landed on
//! that target (written by [`note_floor`] at every landing while it is absent; without it
//! git-hybrid never landed on that target here, so nothing is walked: a fresh clone gets the
//! published records with `git hybrid fetch`), and in any case
//! after [`MAX_SCAN`] commits (the report says so). Landings older than the floor (made before
//! this version wrote one) are not searched.

use std::collections::BTreeSet;

use anyhow::Result;
use git2::Oid;
use serde::Serialize;

use super::{TaskRecord, TaskState};
use crate::repo::Project;

/// Commits walked when the target has no floor ref.
pub const MAX_SCAN: usize = 10_000;

/// What [`rebuild`] did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RebuildReport {
    /// Records written from git, as `<id>#<attempt> (<sha>)`.
    pub rebuilt: Vec<String>,
    /// What could not be recovered, one sentence each.
    pub unrecoverable: Vec<String>,
    /// First-parent commits of the target walked.
    pub scanned: usize,
}

impl RebuildReport {
    /// True when there is nothing to say.
    pub fn is_empty(&self) -> bool {
        self.rebuilt.is_empty() && self.unrecoverable.is_empty()
    }
}

/// Records `base` (the parent of a squash just landed on `target`) as the floor of the rebuild
/// walk if the target has none yet. Best effort: a floor that cannot be written only makes the
/// walk fall back to [`MAX_SCAN`].
pub fn note_floor(project: &Project, target: &str, base: Oid) {
    let name = crate::names::floor_ref(target);
    if project.repo.refname_to_id(&name).is_err() {
        let _ = project.repo.reference(&name, base, false, "git-hybrid: the first landing on this target");
    }
}

/// Rebuilds missing records of landings on the project's target (see the module contract).
pub fn rebuild(project: &Project) -> Result<RebuildReport> {
    let mut report = RebuildReport::default();
    let Ok(target) = project.target_branch() else { return Ok(report) };
    let repo = &project.repo;
    let Ok(tip) = repo.refname_to_id(&format!("refs/heads/{target}")) else { return Ok(report) };
    // No floor: git-hybrid never landed on this target here (a fresh clone, say), so there is
    // no record to have lost; `git hybrid fetch` brings in the published ones.
    let Ok(floor) = repo.refname_to_id(&crate::names::floor_ref(&target)) else { return Ok(report) };
    let ledger = project.ledger();
    let mut landed_ids = BTreeSet::new();
    let mut from_git_alone = false;
    let walk = landings(repo, tip, floor);
    report.scanned = walk.scanned;
    if walk.capped {
        report.unrecoverable.push(format!(
            "only the last {MAX_SCAN} commits of {target} were searched for landings ({} is not among them)",
            crate::names::floor_ref(&target),
        ));
    }
    for (id, task, attempt) in walk.landings {
        landed_ids.insert(task.clone());
        if ledger.path(&task, attempt).exists() {
            continue;
        }
        let Ok(c) = repo.find_commit(id) else { continue };
        let Some(t) = crate::trailers::of_commit(&c) else { continue };
        let Some(_lock) = ledger.try_lock_task(&t.task)? else { continue };
        if ledger.path(&t.task, attempt).exists() {
            continue;
        }
        let branch = crate::names::branch(&t.task, attempt);
        let Ok(parent) = c.parent_id(0) else { continue };
        let name = format!("{}#{attempt} ({})", t.task, crate::repo::short(&c.id().to_string()));
        // A published record of this very landing (landed through a remote) holds more (title,
        // labels, ...): it is used when it passes the same trust rules.
        let published = super::refs::published_record(repo, &t.task, attempt)
            .filter(|p| p.merge_sha.as_deref() == Some(c.id().to_string().as_str()))
            .filter(|p| super::trust::confirm_done(repo, p).is_ok());
        if let Some(mut p) = published {
            p.worktree = None;
            p.run_dir = None;
            ledger.put(&p)?;
            restore_tip_ref(project, &t.task, attempt, t.tip_oid());
            report.rebuilt.push(format!("{name}, from its published record"));
            continue;
        }
        let mut rec = TaskRecord::adopted(&t.task, attempt, &branch, &parent.to_string(), &target);
        rec.state = TaskState::Landed;
        rec.merge_sha = Some(c.id().to_string());
        rec.merge_base = Some(parent.to_string());
        rec.tip = t.tip.clone();
        let when = c.committer().when().seconds().max(0) as u64;
        rec.landed_at = Some(
            humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + std::time::Duration::from_secs(when)).to_string(),
        );
        rec.extra.insert("rebuilt_from".into(), serde_json::json!("git"));
        if let Err(why) = super::trust::confirm_done(repo, &rec) {
            report.unrecoverable.push(format!("{name}: its squash commit does not prove the landing: {why}"));
            continue;
        }
        ledger.put(&rec)?;
        restore_tip_ref(project, &t.task, attempt, t.tip_oid());
        report.rebuilt.push(name);
        from_git_alone = true;
    }
    if from_git_alone {
        report.unrecoverable.push(
            "rebuilt records have no title, worktree, run history, agent, labels or claims (git does not hold them)"
                .into(),
        );
    }
    orphans(project, &landed_ids, &mut report)?;
    Ok(report)
}

/// The landings found on a target's first-parent history (see [`landings`]).
#[derive(Clone, Default)]
struct Walk {
    /// (squash commit, task, attempt), newest first, one per task attempt (the newest landing
    /// of an attempt is the one its record names).
    landings: Vec<(Oid, String, u32)>,
    scanned: usize,
    /// Stopped at [`MAX_SCAN`] before reaching the floor.
    capped: bool,
}

/// The landings between `tip` and `floor` (module contract). Commits never change, so the walk
/// is remembered per process: a later call (the MCP server answers `status` many times) walks
/// only the commits added on top of the tip it saw last.
fn landings(repo: &git2::Repository, tip: Oid, floor: Oid) -> Walk {
    use std::sync::Mutex;
    type Memo = (std::path::PathBuf, Oid, Oid, Walk);
    static MEMO: Mutex<Option<Memo>> = Mutex::new(None);
    let key = repo.path().to_path_buf();
    let known = MEMO.lock().ok().and_then(|m| m.clone()).filter(|(k, f, _, _)| *k == key && *f == floor);
    let mut walk = Walk::default();
    let mut seen = BTreeSet::new();
    let mut cur = repo.find_commit(tip).ok();
    while let Some(c) = cur {
        if c.id() == floor {
            break;
        }
        if let Some((_, _, _, old)) = known.as_ref().filter(|(_, _, t, _)| *t == c.id()) {
            walk.scanned += old.scanned;
            walk.capped = old.capped;
            for l in &old.landings {
                if seen.insert((l.1.clone(), l.2)) {
                    walk.landings.push(l.clone());
                }
            }
            break;
        }
        if walk.scanned == MAX_SCAN {
            walk.capped = true;
            break;
        }
        walk.scanned += 1;
        cur = c.parent(0).ok();
        let Some(t) = crate::trailers::of_commit(&c) else { continue };
        let Some(attempt) = t.attempt_number() else { continue };
        if crate::task_id::validate(&t.task).is_ok() && seen.insert((t.task.clone(), attempt)) {
            walk.landings.push((c.id(), t.task.clone(), attempt));
        }
    }
    if let Ok(mut m) = MEMO.lock() {
        *m = Some((key, floor, tip, walk.clone()));
    }
    walk
}

/// Points `refs/hybrid/tips/<id>[@N]` at the landed tip again, if that commit is here and the
/// ref is missing.
fn restore_tip_ref(project: &Project, id: &str, attempt: u32, tip: Option<Oid>) {
    let repo = &project.repo;
    if let Some(tip) = tip.filter(|o| repo.find_commit(*o).is_ok()) {
        let name = crate::names::tip_ref(id, attempt);
        if repo.refname_to_id(&name).is_err() {
            let _ = repo.reference(&name, tip, false, "git-hybrid: rebuilt landed tip");
        }
    }
}

/// Agent runs and tip refs of tasks with neither a record nor a landing found on the target.
fn orphans(project: &Project, landed: &BTreeSet<String>, report: &mut RebuildReport) -> Result<()> {
    let known = |id: &str| landed.contains(id) || crate::names::ledger_dir(&project.state_dir()).join(id).exists();
    let mut ids = BTreeSet::new();
    if let Ok(entries) = std::fs::read_dir(crate::names::runs_dir(&project.state_dir())) {
        for e in entries.flatten() {
            let id = e.file_name().to_string_lossy().into_owned();
            if crate::task_id::validate(&id).is_ok() && !known(&id) {
                ids.insert((id, "agent runs in .git/hybrid/runs"));
            }
        }
    }
    // Names only: reading every tip ref (one per landed task) was most of a `status` call.
    for full in crate::git::refnames::names_under(&project.common_dir, crate::names::TIP_REFS) {
        let Some(name) = full.strip_prefix(crate::names::TIP_REFS) else { continue };
        let id = name.split('@').next().unwrap_or(name).to_string();
        if crate::task_id::validate(&id).is_ok() && !known(&id) {
            ids.insert((id, "a landed tip ref"));
        }
    }
    for (id, what) in ids {
        report.unrecoverable.push(format!(
            "{id}: {what} but no ledger record and no landing on the target; its state cannot be recovered"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::git;

    fn land(dir: &std::path::Path, task: &str) -> Oid {
        let msg = format!("land {task}\n\nHybrid-Task: {task}\nHybrid-Attempt: 1\n");
        git(dir, &["commit", "-q", "--allow-empty", "-m", &msg]);
        Oid::from_str(git(dir, &["rev-parse", "HEAD"]).trim()).unwrap()
    }

    #[test]
    fn the_walk_is_remembered_and_only_new_commits_are_read_again() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        git(dir, &["init", "-q", "-b", "main"]);
        git(dir, &["commit", "-q", "--allow-empty", "-m", "base"]);
        let floor = Oid::from_str(git(dir, &["rev-parse", "HEAD"]).trim()).unwrap();
        let a = land(dir, "a");
        land(dir, "b");
        let repo = git2::Repository::open(dir).unwrap();
        let tip = repo.refname_to_id("refs/heads/main").unwrap();
        let first = landings(&repo, tip, floor);
        assert_eq!(first.scanned, 2);
        assert_eq!(first.landings.iter().map(|l| l.1.as_str()).collect::<Vec<_>>(), ["b", "a"]);
        // One more landing, and a second landing of `a` (the newest one is the one that counts).
        land(dir, "c");
        let a2 = land(dir, "a");
        let tip = repo.refname_to_id("refs/heads/main").unwrap();
        let second = landings(&repo, tip, floor);
        assert_eq!(second.scanned, 4, "two new commits read, two remembered");
        let got: Vec<(&str, Oid)> = second.landings.iter().map(|l| (l.1.as_str(), l.0)).collect();
        assert_eq!(got.len(), 3);
        assert_eq!(got[0], ("a", a2));
        assert!(!got.iter().any(|(_, id)| *id == a), "the older landing of a is shadowed");
        // Another floor (another repository state) is walked afresh.
        let third = landings(&repo, tip, a);
        assert_eq!(third.scanned, 3);
    }
}
