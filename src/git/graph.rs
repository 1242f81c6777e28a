//! Ancestry questions about commits, answered from the object database (git2).
//!
//! Contract: [`contains`] is the one "is this commit already in that history" check every
//! module uses (sync, landing, trust rules, remote, status).

use anyhow::Result;
use git2::{Oid, Repository};

/// True when `tip` already contains `target` (equal or descends from it).
pub fn contains(repo: &Repository, tip: Oid, target: Oid) -> Result<bool> {
    Ok(tip == target || repo.graph_descendant_of(tip, target)?)
}
