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
//!    moved it, everything is recomputed on the new tip (at most [`MAX_TRIES`] times; through a
//!    remote, for as long as `wait`, at least that often). Every
//!    checkout that has the target checked out is checked first: a local change (modified,
//!    staged, untracked, ignored) on a path the landing changes refuses the landing before
//!    anything moves ([`HybridError::LocalChanges`], exit 3). Then those checkouts move (in
//!    process where provably equal to `git read-tree -m -u`, else with it; local changes
//!    elsewhere carried along, staged changes stay staged and are never in the squash), and only
//!    then the target ref moves; see [`crate::checkout`] for why this order. After that the task
//!    branch takes its catch-up merge (unless it is removed right after: no worktree, no
//!    `--keep`); a task worktree with uncommitted changes keeps its branch where it was.
//! 4. **Record.** The ledger gets `merge_sha`, `merge_base`, `tip`, `landed_at` and state `landed`
//!    (or `empty`); `refs/hybrid/tips/<id>[@N]` keeps the landed tip reachable.
//! 5. **Clean.** Unless `keep`, a clean task worktree and the branch are removed; anything with
//!    uncommitted work, or a failure anywhere, keeps them.
//!
//! **Trains.** [`land_tasks`] lands several tasks the same way in one pass, the way a merge queue
//! does: task k is caught up with and squashed onto task k-1's squash (the first onto the target
//! tip), so each task is still its own squash commit with one parent and its own trailers, and
//! the target ref, the checkouts and the index move once for the whole train (one reflog
//! entry). A task that conflicts with what is ahead of it reports `conflict` and drops out; one
//! whose paths have local changes in a checkout is refused and the rest are chained again
//! without it. A train of [`PACK_MIN_TASKS`] or more writes its new objects as one pack
//! ([`crate::git::pack`]). [`land_task`] is a train of one.
//!
//! Crash safety: before the target moves, the landing writes a note
//! (`hybrid/landing/<target>.json`: the tip it started from and its last squash) and removes it
//! once every task is recorded. The next landing on that target finds a note left by a killed
//! run: if its last squash is on the target, it records every squash of the train from their
//! trailers (task, attempt, tip; the base is the parent); if not, nothing landed and the note
//! goes. A re-run of a landed task is a no-op that reports the recorded landing and finishes its
//! cleanup.
//!
//! Every step has a named failpoint (`land::locked`, `land::train_built`, ...; listed in
//! `docs/DESIGN.md`), where the crash tests stop the process; release builds hold none.
//!
//! Files: this one builds and moves a train; `note.rs` the crash note and its recovery,
//! `message.rs` the squash message, `record.rs` the tip ref, ledger record and report of a task,
//! `cleanup.rs` the task branch and worktree afterwards, `publish.rs` what a train pushes.

use anyhow::{Context, Result};
use git2::Oid;
use serde::Serialize;

use crate::checkout;
use crate::error::HybridError;
use crate::git::lockfile::RefLock;
use crate::ledger::{TaskRecord, TaskState};
use crate::lock::FileLock;
use crate::repo::Project;
use crate::sync;
use crate::{git, names, task_id, worktree};

mod cleanup;
mod message;
mod note;
mod publish;
mod record;

use cleanup::{catch_up_branch, cleanup};
use message::squash_message;
use note::{recover_train, TrainNote};
use record::{already_done, mark_done, report, set_tip_ref};

/// How often a landing recomputes after the target moved under it before giving up (exit 4).
pub const MAX_TRIES: usize = 10;

/// How long a landing through a remote keeps retrying lost leases (other clones pushing) when the
/// caller set no `wait`: at least [`MAX_TRIES`] tries, then until this much time has passed.
pub const REMOTE_RACE_BUDGET: std::time::Duration = std::time::Duration::from_secs(120);

/// Options for one landing.
#[derive(Debug, Clone, Default)]
pub struct LandOptions {
    /// Target branch (default: the task's target, else the project's).
    pub target: Option<String>,
    /// Summary line for the squash commit.
    pub message: Option<String>,
    /// Keep the worktree and branch after landing.
    pub keep: bool,
    /// Land locally only, even when the target has a remote (`--local`; see [`crate::remote`]).
    pub local: bool,
    /// Overrides and extra verify commands for the landing gate ([`crate::gate`]).
    pub gate: crate::gate::GateOptions,
    /// How long to wait for a landing on the same target that another process is running
    /// (`None`: until it is done); then [`HybridError::Busy`], nothing changed.
    pub wait: Option<std::time::Duration>,
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

/// Lands a task attempt (see the module contract): a train of one.
pub fn land_task(project: &Project, id: &str, attempt: u32, opts: &LandOptions) -> Result<LandReport> {
    let mut results = land_tasks(project, &[(id.to_string(), attempt)], opts)?;
    results.pop().context("a landing returned no result")?.1
}

/// Lands several task attempts in the order given, each as its own squash commit, as trains
/// (one per target; see the module contract). One result per task, in the same order; a
/// conflict or refusal of one task does not stop the others. `Err` only for bad input (an
/// invalid id, a task given twice, `-m` with several tasks), before anything is changed.
pub fn land_tasks(
    project: &Project,
    tasks: &[(String, u32)],
    opts: &LandOptions,
) -> Result<Vec<(String, Result<LandReport>)>> {
    for (id, attempt) in tasks {
        task_id::validate(id)?;
        task_id::validate_attempt(*attempt)?;
    }
    let mut seen = std::collections::BTreeSet::new();
    if let Some((dup, _)) = tasks.iter().find(|(id, _)| !seen.insert(id.as_str())) {
        return Err(HybridError::Usage(format!("task {dup:?} is given twice")).into());
    }
    if let Some(m) = opts.message.as_deref() {
        if m.trim().is_empty() {
            return Err(HybridError::Usage("the -m message is empty".into()).into());
        }
        if tasks.len() > 1 {
            return Err(HybridError::Usage("-m/--message names one squash commit; give one task with it".into()).into());
        }
    }
    sync::fast_reads();
    project.require_commits()?;
    let ledger = project.ledger();
    // Every task must exist before anything lands (bad input changes nothing).
    for (id, attempt) in tasks {
        let branch = names::branch_ref(&names::branch(id, *attempt));
        if ledger.get(id, *attempt)?.is_none() && project.repo.refname_to_id(&branch).is_err() {
            return Err(HybridError::UnknownTask(id.clone()).into());
        }
    }
    // Task locks in id order, so two processes landing overlapping sets cannot deadlock.
    let mut by_id: Vec<&str> = tasks.iter().map(|(id, _)| id.as_str()).collect();
    by_id.sort_unstable();
    let _task_locks = by_id.iter().map(|id| ledger.lock_task(id)).collect::<Result<Vec<_>>>()?;

    let mut results: Vec<Option<Result<LandReport>>> = tasks.iter().map(|_| None).collect();
    // Trains by target, each in the order the tasks were given.
    let mut trains: Vec<(String, Vec<(usize, TaskRecord)>)> = Vec::new();
    for (slot, (id, attempt)) in tasks.iter().enumerate() {
        let rec = match sync::load_or_adopt_unsaved(project, id, *attempt, opts.target.as_deref()) {
            Ok((rec, _)) => rec,
            Err(e) => {
                results[slot] = Some(Err(e));
                continue;
            }
        };
        let target = opts.target.clone().unwrap_or_else(|| rec.target.clone());
        match trains.iter_mut().find(|(t, _)| *t == target) {
            Some((_, cars)) => cars.push((slot, rec)),
            None => trains.push((target, vec![(slot, rec)])),
        }
    }
    for (target, cars) in trains {
        let slots: Vec<usize> = cars.iter().map(|(slot, _)| *slot).collect();
        let mut out = Vec::new();
        let stopped = run_train(project, &target, cars, opts, &by_id, &mut out).err();
        for (slot, r) in out {
            results[slot] = Some(r);
        }
        if let Some(e) = stopped {
            // The train stopped before these tasks landed: each gets the reason.
            let unfinished: Vec<usize> = slots.into_iter().filter(|s| results[*s].is_none()).collect();
            for slot in unfinished.iter().skip(1) {
                results[*slot] = Some(Err(same_error(&e)));
            }
            if let Some(first) = unfinished.first() {
                results[*first] = Some(Err(e));
            }
        }
    }
    Ok(tasks
        .iter()
        .zip(results)
        .map(|((id, _), r)| (id.clone(), r.unwrap_or_else(|| Err(anyhow::anyhow!("{id} was not landed")))))
        .collect())
}

/// A copy of an error for another task of the same stopped train, keeping its exit code.
fn same_error(e: &anyhow::Error) -> anyhow::Error {
    match crate::error::find_hybrid_error(e) {
        Some(h) => anyhow::Error::from(h.clone()).context(format!("not landed: {e:#}")),
        None => anyhow::anyhow!("not landed: {e:#}"),
    }
}

/// One task's place in a train.
struct Car {
    slot: usize,
    rec: TaskRecord,
    /// The target commit this task's squash is computed on (the previous car's squash, or the
    /// target tip for the first).
    base: Oid,
    /// The task branch tip before the catch-up.
    tip: Oid,
    /// The catch-up merge of `base` into the branch, when the branch did not contain it and
    /// the task is not empty.
    caught_up: Option<Oid>,
    /// The squash commit; `None` when the task's work is already on `base` (`empty`).
    squash: Option<Oid>,
}

impl Car {
    /// The tip that lands (and that `refs/hybrid/tips/<id>` keeps): the catch-up merge if any.
    fn landed_tip(&self) -> Oid {
        self.caught_up.unwrap_or(self.tip)
    }
}

/// Lands one train: the tasks (all with `target`) chained on the target tip, the target moved
/// once. Per-task outcomes go to `out`; `Err` stops the train and every task without an
/// outcome gets that error (nothing of theirs landed).
fn run_train(
    project: &Project,
    target: &str,
    tasks: Vec<(usize, TaskRecord)>,
    opts: &LandOptions,
    held: &[&str],
    out: &mut Vec<(usize, Result<LandReport>)>,
) -> Result<()> {
    let target_ref = sync::branch_ref_checked(project, target)?;
    // A long train writes its objects as one pack (see [`PACK_MIN_TASKS`]) through its own
    // handle on the repository, so the in-memory backend never outlives it.
    let disk = &project.repo;
    let packing_handle = if tasks.len() >= PACK_MIN_TASKS { Some(project.reopen()?) } else { None };
    let project = packing_handle.as_ref().unwrap_or(project);
    let repo = &project.repo;
    let odb = if packing_handle.is_some() { Some(repo.odb()?) } else { None };
    let mempack = match &odb {
        Some(odb) => Some(odb.add_new_mempack_backend(1000).context("cannot set up an in-memory object store")?),
        None => None,
    };
    // Trees written while packing go to that in-memory backend, not to loose files.
    let _packing = mempack.as_ref().map(|_| crate::git::loose::Packing::new(repo));
    let land_lock = FileLock::acquire_waiting(
        &names::land_lock(&project.state_dir(), target),
        &format!("the landing on {target}"),
        opts.wait,
    )?;
    crate::failpoint!("land::locked");

    // With a remote, fetch before the recovery, so a push a killed run made is seen.
    let remote = crate::remote::for_target(project, target, opts.local)?;
    let mut fetched = match &remote {
        Some(r) => Some(r.fetch(project)?.0),
        None => None,
    };
    // Checkouts a kill left mid-move (files hidden behind git's assume-unchanged bit) first.
    checkout::recover(project, &target_ref)?;
    recover_train(project, target, &target_ref, held, fetched)?;
    crate::failpoint!("land::recovered");
    let mut landed_before = Vec::new();
    let mut pending = Vec::new();
    for (slot, rec) in tasks {
        // Re-read: the recovery may just have recorded this task's landing.
        let rec = project.ledger().get(&rec.id, rec.attempt)?.unwrap_or(rec);
        if rec.state.is_done() {
            landed_before.push((slot, rec));
        } else {
            pending.push((slot, rec));
        }
    }

    let mut tries = 0;
    // Through a remote, other clones push all the time: races are retried for as long as the
    // caller would wait for another landing (`--wait`, else REMOTE_RACE_BUDGET), not a fixed count.
    let race_started = std::time::Instant::now();
    let race_budget = opts.wait.unwrap_or(REMOTE_RACE_BUDGET);
    let cars = loop {
        if pending.is_empty() {
            break Vec::new();
        }
        if tries >= MAX_TRIES && (remote.is_none() || race_started.elapsed() >= race_budget) {
            let ids: Vec<&str> = pending.iter().map(|(_, r)| r.id.as_str()).collect();
            return Err(HybridError::Busy(format!(
                "{target} kept moving while landing {} ({tries} tries in {:.1} s); nothing of it landed, re-run",
                ids.join(", "),
                race_started.elapsed().as_secs_f64()
            ))
            .into());
        }
        tries += 1;
        // `local`: the target here; `start`: what the train builds on (the remote's tip when
        // landing through a remote, which must contain `local`).
        let local = repo.refname_to_id(&target_ref)?;
        let start = match &remote {
            None => local,
            Some(r) => r.start_on(project, local, fetched.take())?,
        };
        if remote.is_some() {
            // Landed from another clone meanwhile: report it, do not land it twice.
            let (done, refused) = publish::take_published(project, &mut pending, start)?;
            landed_before.extend(done);
            out.extend(refused);
            if pending.is_empty() {
                break Vec::new();
            }
        }
        let (cars, dropped) = build_train(project, target, start, std::mem::take(&mut pending), opts)?;
        out.extend(dropped);
        if let Some(mempack) = &mempack {
            write_pack(repo, disk, mempack, &cars)?;
        }
        let end = cars.iter().rev().find_map(|c| c.squash).unwrap_or(start);
        crate::failpoint!("land::train_built");
        if end == start {
            break cars; // nothing to commit: every task is empty
        }

        let target_lock = RefLock::acquire(&project.repo, &project.common_dir, &target_ref)?;
        crate::failpoint!("land::ref_locked");
        if target_lock.current != Some(local) {
            pending = cars.into_iter().map(|c| (c.slot, c.rec)).collect();
            continue; // someone else moved the target: recompute on its new tip
        }
        if let Some(why) = checkout::in_progress(project, &target_ref)? {
            return Err(HybridError::LocalChanges { message: why, paths: Vec::new() }.into());
        }
        let start_tree = repo.find_commit(local)?.tree()?;
        let end_tree = repo.find_commit(end)?.tree()?;
        let checkouts = checkout::checkouts_of(project, &target_ref)?;
        let mut moves = Vec::with_capacity(checkouts.len());
        let mut blocked = Vec::new();
        if !checkouts.is_empty() {
            let changed = checkout::changed_paths(repo, &start_tree, &end_tree)?;
            for co in &checkouts {
                match checkout::prepare_move(project, co, &target_ref, &start_tree, &end_tree, &changed)? {
                    Ok(m) => moves.push(m),
                    Err(paths) => blocked.push((co.dir.clone(), paths)),
                }
            }
        }
        crate::failpoint!("land::checked");
        if !blocked.is_empty() {
            // Refuse the tasks that change those paths, before anything moves; land the rest.
            drop(moves);
            drop(target_lock);
            let (refused, rest) = blame(project, target, cars, &blocked)?;
            out.extend(refused);
            pending = rest;
            tries -= 1; // not a race; bounded by the number of tasks
            continue;
        }
        // From here until the target moves, a failure removes the note (best effort: a note left
        // behind is harmless, the next landing checks it against the target).
        let mut note = TrainNote::write(project, target, start, end)?;
        crate::failpoint!("land::note_written");
        if let Some(r) = &remote {
            // The one step a remote adds: publish the train and its records, all or nothing.
            let records = publish::records(project, &cars, target)?;
            if let crate::remote::Published::Raced(_) = r.publish(project, start, end, &records)? {
                drop((moves, target_lock, note));
                pending = cars.into_iter().map(|c| (c.slot, c.rec)).collect();
                crate::remote::backoff(tries);
                continue; // someone pushed: fetch, recompute on the new tip
            }
            note.armed = false; // landed on the remote: from here on only recorded, never undone
            publish::set_local_records(project, &records)?;
            crate::failpoint!("land::published");
        }
        // The checkouts move in three phases around the ref (src/checkout/write.rs), so that a
        // kill at any step but the instant between the two renames leaves the user's next
        // commit holding only their own change.
        let moving = checkout::stage_moves(project, &target_ref, moves, local, end)?;
        crate::failpoint!("land::checkouts_staged");
        let message = match cars.iter().filter(|c| c.squash.is_some()).map(|c| c.rec.id.as_str()).collect::<Vec<_>>()[..]
        {
            [one] => format!("git-hybrid merge: land {one}"),
            ref many => format!("git-hybrid merge: land {} tasks ({})", many.len(), many.join(", ")),
        };
        let moving = moving.move_ref(target_lock, &message)?;
        note.armed = false;
        crate::failpoint!("land::ref_moved");
        if let Err(e) = moving.finish() {
            // Landed; the checkout is safe but unfinished: its move note stays, and the next
            // landing on the target finishes it (`checkout::recover`).
            eprintln!("git-hybrid: warning: {e:#}; the next landing on {target} finishes it");
        }
        crate::failpoint!("land::checkouts_moved");
        break cars;
    };

    // Record every car while the landing lock is held, so no other landing sees half a train.
    let mut recorded = Vec::with_capacity(cars.len());
    let mut all_recorded = true;
    for car in cars {
        let state = if car.squash.is_some() { TaskState::Landed } else { TaskState::Empty };
        let landed_tip = car.landed_tip();
        let done = set_tip_ref(project, &car.rec, landed_tip)
            .and_then(|()| mark_done(project, &car.rec, state, car.squash, car.base, landed_tip, target));
        crate::failpoint!("land::recorded");
        match done {
            Ok(rec) => recorded.push((car, rec)),
            Err(e) => {
                all_recorded = false;
                out.push((car.slot, Err(e)));
            }
        }
    }
    if all_recorded {
        TrainNote::remove(project, target);
    }
    crate::failpoint!("land::note_removed");
    drop(land_lock);
    for (slot, rec) in landed_before {
        out.push((slot, already_done(project, rec, opts)));
    }
    for (car, rec) in recorded {
        let landed_tip = car.landed_tip();
        let (branch_at, not_caught_up) = catch_up_branch(project, &car, target, opts);
        let (cleaned, kept) = cleanup(project, &rec, branch_at, opts.keep);
        let kept = match (kept, not_caught_up) {
            (Some(k), Some(n)) => Some(format!("{k}; {n}")),
            (k, n) => k.or(n),
        };
        let status = if car.squash.is_some() { "landed" } else { "empty" };
        let caught_up = car.caught_up.is_some();
        let report = report(&rec, status, car.squash, car.base, landed_tip, target, cleaned, kept, false, caught_up);
        out.push((car.slot, Ok(report)));
        crate::failpoint!("land::cleaned");
    }
    Ok(())
}

/// From how many tasks a train writes its new objects (catch-up merges, trees, squashes:
/// about four per task) as one pack instead of loose files. Near git's own threshold for keeping
/// received objects packed (`transfer.unpackLimit`, 100 objects); one pack per landing would
/// make many small packs, which slow every object lookup until `git gc` repacks them.
pub const PACK_MIN_TASKS: usize = 16;

/// Writes the objects the train's commits introduced (held in memory) as one pack, then
/// empties the in-memory store. Called before anything refers to those objects.
fn write_pack(repo: &git2::Repository, disk: &git2::Repository, mempack: &git2::Mempack, cars: &[Car]) -> Result<()> {
    // Each squash before its catch-up merge: they share a tree, which is then packed as the
    // squash's (its first parent is the squash before it, whose trees are earlier in the pack and
    // so serve as delta bases); under the merge its first parent would be the task's tip.
    let commits: Vec<Oid> = cars.iter().flat_map(|c| c.squash.into_iter().chain(c.caught_up)).collect();
    let disk_odb = disk.odb()?;
    let objects = crate::git::pack::new_objects(repo, &disk_odb, &commits)?;
    crate::git::pack::write_pack(repo, &disk.commondir().join("objects"), &objects)?;
    mempack.reset().context("cannot reset the in-memory object store")?;
    Ok(())
}

/// Chains the tasks on `start`: each is caught up with the commit before it (the target tip for
/// the first) and squashed onto it. Writes the catch-up merges and squash commits (objects
/// only, no ref moves). Returns the train and the tasks that dropped out with their outcome
/// (conflicts are recorded in the ledger).
#[allow(clippy::type_complexity)]
fn build_train(
    project: &Project,
    target: &str,
    start: Oid,
    tasks: Vec<(usize, TaskRecord)>,
    opts: &LandOptions,
) -> Result<(Vec<Car>, Vec<(usize, Result<LandReport>)>)> {
    let repo = &project.repo;
    let author = git::signature(repo, git::Role::Author)?;
    let committer = git::signature(repo, git::Role::Committer)?;
    let mut cur = repo.find_commit(start)?;
    let gate = crate::gate::Gate::new(project, &opts.gate)?;
    let mut cars = Vec::with_capacity(tasks.len());
    let mut dropped = Vec::new();
    for (slot, rec) in tasks {
        let tip = match sync::task_tip(project, &rec) {
            Ok(t) => t,
            Err(e) => {
                dropped.push((slot, Err(e)));
                continue;
            }
        };
        let base = cur.id();
        // The commits ahead of `start` in this train are brand new, so no task tip contains
        // them: the tip's merge bases with `base` are those with `start` (one walk per tip,
        // not one through the whole train).
        let bases = git::generation::merge_bases(repo, tip, start)?;
        let caught_up = if tip == base || bases == [base] {
            None // the task already contains the target
        } else {
            match sync::merge_commit_on(project, tip, base, target, &rec.branch, &bases)? {
                Ok(m) => Some(m),
                Err(paths) => {
                    let what = format!("catching {} up with {target}", rec.branch);
                    sync::record_conflict(project, &rec, &what, &paths)?;
                    dropped.push((slot, Err(HybridError::Conflict { what, paths }.into())));
                    continue;
                }
            }
        };
        let landed_tip = caught_up.unwrap_or(tip);
        let tip_tree = repo.find_commit(landed_tip)?.tree()?;
        if tip_tree.id() == cur.tree_id() {
            // Nothing committed beyond the target. Work left uncommitted in the task's worktree
            // is not "already on the target": refuse, and never record `empty` over it.
            if let Some((dir, paths)) = uncommitted_work(&rec) {
                let id = &rec.id;
                let e = HybridError::LocalChanges {
                    message: format!(
                        "{id} has uncommitted changes in {} and nothing committed beyond {target}, so nothing was \
                         landed; commit them in that worktree, then re-run `git hybrid merge {id}`",
                        dir.display()
                    ),
                    paths,
                };
                dropped.push((slot, Err(e.into())));
                continue;
            }
            // The work is already on the target: record it, commit nothing.
            cars.push(Car { slot, rec, base, tip, caught_up: None, squash: None });
            continue;
        }
        let message = squash_message(project, &rec, opts, base, landed_tip, tip, &bases)?;
        if let Some(refused) = gate.pass(&rec, &cur.tree()?, &tip_tree, &message)? {
            dropped.push((slot, Err(refused.into())));
            continue; // like a conflict: the rest of the train lands without it
        }
        let squash = repo.commit(None, &author, &committer, &message, &tip_tree, &[&cur])?;
        cur = repo.find_commit(squash)?;
        cars.push(Car { slot, rec, base, tip, caught_up, squash: Some(squash) });
    }
    Ok((cars, dropped))
}

/// The uncommitted changes (untracked included) in the task's own worktree: the folder its
/// record names, when that folder has the task branch checked out.
fn uncommitted_work(rec: &TaskRecord) -> Option<(std::path::PathBuf, Vec<String>)> {
    let dir = rec.worktree.as_ref()?;
    let wt = git2::Repository::open(dir).ok()?;
    let head = wt.find_reference("HEAD").ok()?;
    if head.symbolic_target() != Some(format!("refs/heads/{}", rec.branch).as_str()) {
        return None;
    }
    let paths = worktree::dirty_paths(dir).ok()?;
    (!paths.is_empty()).then(|| (dir.clone(), paths))
}

/// Splits a train whose landing local changes block: the tasks that change a blocked path are
/// refused ([`HybridError::LocalChanges`], nothing of theirs changed), the others go back to be
/// chained again without them.
#[allow(clippy::type_complexity)]
fn blame(
    project: &Project,
    target: &str,
    cars: Vec<Car>,
    blocked: &[(std::path::PathBuf, Vec<String>)],
) -> Result<(Vec<(usize, Result<LandReport>)>, Vec<(usize, TaskRecord)>)> {
    let repo = &project.repo;
    let mut refused = Vec::new();
    let mut rest = Vec::new();
    let mut own_changes = Vec::with_capacity(cars.len());
    for car in &cars {
        let changed = match car.squash {
            Some(s) => {
                let old = repo.find_commit(car.base)?.tree()?;
                let new = repo.find_commit(s)?.tree()?;
                checkout::changed_paths(repo, &old, &new)?
            }
            None => Default::default(),
        };
        own_changes.push(changed);
    }
    // A blocked path is a task's when the task changes it, something below it (a file in the
    // way of a folder the task fills) or something above it (a folder that becomes a file).
    let hits_car = |changed: &std::collections::BTreeSet<String>, blocked: &str| {
        let b = blocked.trim_end_matches('/');
        changed.contains(b)
            || changed.range(format!("{b}/")..).next().is_some_and(|c| checkout::is_below(c, b))
            || b.match_indices('/').any(|(i, _)| changed.contains(&b[..i]))
    };
    // Were no task to blame (cannot happen: the train's change is the sum of its tasks'), all are.
    let none_blamed = !own_changes.iter().any(|c| blocked.iter().any(|(_, ps)| ps.iter().any(|p| hits_car(c, p))));
    for (car, changed) in cars.into_iter().zip(own_changes) {
        let hits: Vec<(&std::path::PathBuf, Vec<String>)> = blocked
            .iter()
            .map(|(dir, ps)| {
                (dir, ps.iter().filter(|p| none_blamed || hits_car(&changed, p)).cloned().collect::<Vec<_>>())
            })
            .filter(|(_, ps)| !ps.is_empty())
            .collect();
        let Some((dir, _)) = hits.first() else {
            rest.push((car.slot, car.rec));
            continue;
        };
        let paths: Vec<String> = hits.iter().flat_map(|(_, ps)| ps.iter().cloned()).collect();
        let id = &car.rec.id;
        let e = HybridError::LocalChanges {
            message: format!(
                "landing {id} would overwrite or delete local changes, untracked or ignored files or a nested \
                 repository in {} (where {target} is checked out); nothing was changed. Commit, stash or move them \
                 out of the way (git-hybrid never deletes ignored files), then re-run `git hybrid merge {id}`; in \
                 the way",
                dir.display()
            ),
            paths,
        };
        refused.push((car.slot, Err(e.into())));
    }
    debug_assert!(!refused.is_empty());
    Ok((refused, rest))
}
