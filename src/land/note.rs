//! The landing note: how a train killed after it moved the target gets recorded.
//!
//! Contract: a train writes [`TrainNote`] (`<common>/hybrid/landing/<target>.json`: the target
//! tip it started from and its last squash) atomically before the target moves, and removes it
//! once every task is recorded; all under the landing lock. [`recover_train`], run by every
//! landing right after it takes that lock, finds a note only if a run was killed in between:
//! when the note's last squash is on the target it records each squash of the train from its
//! trailers (`Hybrid-Task`, `Hybrid-Attempt`, `Hybrid-Tip`; the base is the parent), otherwise
//! nothing landed and the note goes. Recording is idempotent, so a recovery that is itself
//! killed is simply run again.

use anyhow::{Context, Result};
use git2::Oid;
use serde::{Deserialize, Serialize};

use super::{mark_done, set_tip_ref};
use crate::ledger::{TaskRecord, TaskState};
use crate::repo::Project;
use crate::{names, task_id};

/// The note a train leaves while it moves the target: `<common>/hybrid/landing/<target>.json`
/// with the target tip it started from and the last squash. Written (atomically) before the
/// target moves, removed once every task of the train is recorded; so a note found under the
/// landing lock is from a killed run: [`recover_train`] records its landings, or drops it when
/// the target never moved.
#[derive(Serialize, Deserialize)]
pub(super) struct TrainNote {
    target: String,
    start: String,
    end: String,
    #[serde(skip)]
    path: std::path::PathBuf,
    /// Removes the note on drop (a failure before the target moved).
    #[serde(skip)]
    pub(super) armed: bool,
}

impl TrainNote {
    fn path(project: &Project, target: &str) -> std::path::PathBuf {
        names::landing_note(&project.state_dir(), target)
    }

    /// The note's temporary file: one fixed name per target (only the holder of the target's
    /// landing lock writes it), so one a killed write left is known and removed by the next landing.
    fn temp_path(project: &Project, target: &str) -> std::path::PathBuf {
        names::landing_note_temp(&project.state_dir(), target)
    }

    /// Writes the note atomically: its temporary file, then a rename.
    pub(super) fn write(project: &Project, target: &str, start: Oid, end: Oid) -> Result<TrainNote> {
        let path = Self::path(project, target);
        let note =
            TrainNote { target: target.to_string(), start: start.to_string(), end: end.to_string(), path, armed: true };
        let json = serde_json::to_vec(&note)?;
        let tmp = Self::temp_path(project, target);
        let written = (|| -> Result<()> {
            if let Some(dir) = tmp.parent() {
                std::fs::create_dir_all(dir)?;
            }
            let mut f = std::fs::File::create(&tmp)?;
            std::io::Write::write_all(&mut f, &json)?;
            if project.fsync_refs {
                f.sync_all()?;
            }
            crate::failpoint!("land::note_temp_written");
            std::fs::rename(&tmp, &note.path)?;
            Ok(())
        })();
        if let Err(e) = written {
            let _ = std::fs::remove_file(&tmp);
            return Err(e).with_context(|| format!("cannot write {}", note.path.display()));
        }
        Ok(note)
    }

    pub(super) fn remove(project: &Project, target: &str) {
        let _ = std::fs::remove_file(Self::path(project, target));
    }
}

impl Drop for TrainNote {
    fn drop(&mut self) {
        if self.armed {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Finishes the records of a train a killed run left (see [`TrainNote`]). Its squash commits
/// carry everything a record needs (`Hybrid-Task`, `Hybrid-Attempt`, `Hybrid-Tip`; the base is
/// the parent), so the note only names where the train starts and ends. A task whose lock
/// another live process holds is left, with the note, for later. Caller holds the landing lock
/// and the task locks of `held`.
/// `remote_tip`: the remote's target as just fetched, when the target lands through a remote
/// (a train counts as landed when either tip contains its last squash).
pub(super) fn recover_train(
    project: &Project,
    target: &str,
    target_ref: &str,
    held: &[&str],
    remote_tip: Option<Oid>,
) -> Result<()> {
    // A note write a kill interrupted left only its temporary file: nothing moved after it.
    let _ = std::fs::remove_file(TrainNote::temp_path(project, target));
    let path = TrainNote::path(project, target);
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    let repo = &project.repo;
    let note: Option<(Oid, Oid)> = serde_json::from_slice::<TrainNote>(&bytes)
        .ok()
        .and_then(|n| Some((Oid::from_str(&n.start).ok()?, Oid::from_str(&n.end).ok()?)));
    let Some((start, end)) = note else {
        TrainNote::remove(project, target); // not ours to understand (written atomically, so never torn)
        return Ok(());
    };
    let tip = repo.refname_to_id(target_ref)?;
    let local_behind =
        tip == start && remote_tip.is_some_and(|r| crate::git::graph::contains(repo, r, end).unwrap_or(false));
    let landed = crate::git::graph::contains(repo, tip, end).unwrap_or(false)
        || remote_tip.is_some_and(|r| crate::git::graph::contains(repo, r, end).unwrap_or(false));
    let mut complete = true;
    if landed {
        let mut train = Vec::new();
        let mut c = repo.find_commit(end)?;
        while c.id() != start {
            let Ok(parent) = c.parent(0) else {
                // Not a note this code wrote (its end always descends from its start by first
                // parents): say so and drop it rather than block every landing on the target.
                eprintln!("git-hybrid: warning: ignoring {}: {end} does not descend from {start}", path.display());
                TrainNote::remove(project, target);
                return Ok(());
            };
            train.push((c, parent.id()));
            c = parent;
        }
        let ledger = project.ledger();
        for (commit, base) in train.into_iter().rev() {
            let Some((id, attempt, landed_tip)) = squash_trailers(&commit) else { continue };
            let _lock = if held.contains(&id.as_str()) {
                None
            } else {
                match ledger.try_lock_task(&id)? {
                    Some(lock) => Some(lock),
                    None => {
                        complete = false;
                        continue;
                    }
                }
            };
            let branch = names::branch(&id, attempt);
            let fresh = TaskRecord::adopted(&id, attempt, &branch, &base.to_string(), target);
            let rec = ledger.get(&id, attempt)?.unwrap_or(fresh);
            if rec.merge_sha.as_deref() == Some(commit.id().to_string().as_str()) {
                continue; // recorded already
            }
            set_tip_ref(project, &rec, landed_tip)?;
            mark_done(project, &rec, TaskState::Landed, Some(commit.id()), base, landed_tip, target)?;
        }
    }
    if local_behind {
        // Killed between the push and the local move: the train is on the remote, this clone's
        // target still at its start. Move it (and its checkouts) now, as the landing would have.
        if let Err(e) = move_local_target(project, target_ref, start, end) {
            eprintln!("git-hybrid: warning: {target} here stays behind the remote's: {e:#}");
        }
    }
    if complete {
        TrainNote::remove(project, target);
    }
    Ok(())
}

/// Moves the local target ref `target_ref` from `start` to `end` (a train already published)
/// with every checkout of it, the way a landing moves them (`crate::checkout`). Refuses, moving
/// nothing, when a local change in a checkout is in the way.
fn move_local_target(project: &Project, target_ref: &str, start: Oid, end: Oid) -> Result<()> {
    use crate::checkout;
    let repo = &project.repo;
    let lock = crate::git::lockfile::RefLock::acquire(&project.repo, &project.common_dir, target_ref)?;
    if lock.current != Some(start) {
        return Ok(()); // moved meanwhile: nothing to finish here
    }
    if let Some(why) = checkout::in_progress(project, target_ref)? {
        anyhow::bail!("{why}");
    }
    let (old_tree, new_tree) = (repo.find_commit(start)?.tree()?, repo.find_commit(end)?.tree()?);
    let changed = checkout::changed_paths(repo, &old_tree, &new_tree)?;
    let mut moves = Vec::new();
    for co in checkout::checkouts_of(project, target_ref)? {
        match checkout::prepare_move(project, &co, target_ref, &old_tree, &new_tree, &changed)? {
            Ok(m) => moves.push(m),
            Err(paths) => anyhow::bail!("local changes in {} are in the way: {}", co.dir.display(), paths.join(", ")),
        }
    }
    checkout::stage_moves(project, target_ref, moves, start, end)?
        .move_ref(lock, "git-hybrid merge: catch up with the published landing")?
        .finish()
}

/// `(task, attempt, tip)` from a squash commit's trailers ([`crate::trailers`]).
fn squash_trailers(commit: &git2::Commit) -> Option<(String, u32, Oid)> {
    let t = crate::trailers::of_commit(commit)?;
    task_id::validate(&t.task).ok()?;
    Some((t.task.clone(), t.attempt_number()?, t.tip_oid()?))
}
