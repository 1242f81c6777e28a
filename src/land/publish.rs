//! What a train publishes besides the target when it lands through a remote ([`crate::remote`]).
//!
//! Contract: [`records`] lists, for every task of the train, its landing record (the ledger
//! record as [`super::mark_done`] will write it, stored as a blob) under
//! `refs/hybrid/ledger/<id>/<attempt>` and its landed tip under `refs/hybrid/tips/<id>[@N]`
//! (so `verify` and `label` work from any clone); the push carries them with the target, all or
//! nothing. [`set_local_records`] writes the same refs here once the push succeeded.

use anyhow::{Context, Result};
use git2::Oid;

use super::Car;
use crate::ledger::{TaskRecord, TaskState};
use crate::remote;
use crate::repo::Project;

/// The fields a landing sets on a record (shared by the ledger write and the published record).
pub(super) fn fill_landed(
    r: &mut TaskRecord,
    state: TaskState,
    squash: Option<Oid>,
    base: Oid,
    tip: Oid,
    target: &str,
    now: String,
) {
    r.state = state;
    r.merge_sha = squash.map(|s| s.to_string());
    r.merge_base = Some(base.to_string());
    r.tip = Some(tip.to_string());
    r.landed_at = Some(now);
    r.target = target.to_string();
    r.conflicts.clear();
    r.failure = None;
}

/// `(ref, object)` for every record and landed tip the train publishes.
pub(super) fn records(project: &Project, cars: &[Car], target: &str) -> Result<Vec<(String, Oid)>> {
    let now = crate::fsutil::now_rfc3339();
    let mut out = Vec::with_capacity(cars.len() * 2);
    for car in cars {
        let state = if car.squash.is_some() { TaskState::Landed } else { TaskState::Empty };
        let mut rec = car.rec.clone();
        fill_landed(&mut rec, state, car.squash, car.base, car.landed_tip(), target, now.clone());
        let blob = remote::record_blob(&project.repo, &rec)?;
        out.push((remote::ledger_ref(&rec.id, rec.attempt), blob));
        out.push((crate::names::tip_ref(&rec.id, rec.attempt), car.landed_tip()));
    }
    Ok(out)
}

/// Writes the published ledger refs here too, after the push succeeded (the tip refs are
/// written with the ledger record, as for a local landing).
pub(super) fn set_local_records(project: &Project, records: &[(String, Oid)]) -> Result<()> {
    for (name, oid) in records.iter().filter(|(name, _)| name.starts_with(remote::LEDGER_REFS)) {
        project
            .repo
            .reference(name, *oid, true, "git-hybrid merge: published")
            .with_context(|| format!("cannot write {name}"))?;
    }
    Ok(())
}

/// Takes out of `pending` the tasks another clone already landed on the remote (their
/// published record confirmed on `tip`, brought into the ledger: they report as already
/// landed) and those whose attempt another clone landed with other work (refused, nothing
/// of theirs changed). Caller holds their task locks.
#[allow(clippy::type_complexity)]
pub(super) fn take_published(
    project: &Project,
    pending: &mut Vec<(usize, TaskRecord)>,
    tip: Oid,
) -> Result<(Vec<(usize, TaskRecord)>, Vec<(usize, Result<super::LandReport>)>)> {
    let mut done = Vec::new();
    let mut refused = Vec::new();
    let mut rest = Vec::with_capacity(pending.len());
    for (slot, rec) in pending.drain(..) {
        let local = project.ledger().get(&rec.id, rec.attempt)?;
        match remote::published::adopt(project, &rec.id, rec.attempt, Some(local.as_ref().unwrap_or(&rec)), tip)? {
            remote::published::Adopted::No => rest.push((slot, rec)),
            remote::published::Adopted::Yes(r) => done.push((slot, *r)),
            remote::published::Adopted::Different(why) => {
                refused.push((slot, Err(crate::error::HybridError::Usage(why).into())));
            }
        }
    }
    *pending = rest;
    Ok((done, refused))
}
