//! Landing records as git objects: a record (without this machine's paths) written as a blob,
//! and the records under `refs/hybrid/ledger/<id>/<attempt>` read back.
//!
//! Contract: [`published_record`] holds a record to trust rule 1 ([`super::trust`]: it must name
//! the task attempt of its ref); confirming a landing against git is the caller's step
//! ([`super::trust::confirm_done_on`]). Publishing and fetching these refs is
//! [`crate::remote::published`]'s.

use anyhow::Result;
use git2::Oid;

use super::{trust, TaskRecord};
use crate::names::{ledger_ref, LEDGER_REFS};

/// Writes the published form of a landing record (this machine's paths left out) as a blob.
pub fn record_blob(repo: &git2::Repository, rec: &TaskRecord) -> Result<Oid> {
    let mut public = rec.clone();
    public.worktree = None;
    public.run_dir = None;
    let json = serde_json::to_vec_pretty(&public)?;
    Ok(repo.blob(&json)?)
}

/// The published record of `<id>/<attempt>` in this repository, if one was fetched or written
/// and names that task attempt (trust rule 1 of [`crate::ledger::trust`]).
pub fn published_record(repo: &git2::Repository, id: &str, attempt: u32) -> Option<TaskRecord> {
    let name = ledger_ref(id, attempt);
    let oid = repo.refname_to_id(&name).ok()?;
    let blob = repo.find_blob(oid).ok()?;
    let rec = trust::parse(std::path::Path::new(&name), blob.content()).ok()?;
    trust::check_identity(std::path::Path::new(&name), &rec, id, attempt).ok()?;
    Some(rec)
}

/// Every published record fetched into this repository.
pub fn published_records(repo: &git2::Repository) -> Result<Vec<TaskRecord>> {
    let mut out = Vec::new();
    for r in repo.references_glob(&format!("{LEDGER_REFS}*"))?.flatten() {
        let Some(oid) = r.target() else { continue };
        let Ok(blob) = repo.find_blob(oid) else { continue };
        if let Ok(rec) = serde_json::from_slice::<TaskRecord>(blob.content()) {
            out.push(rec);
        }
    }
    Ok(out)
}
