//! Ancestry questions about commits, answered by the generation-bounded walk of
//! [`super::generation`] (libgit2 where it cannot bound the walk).
//!
//! Contract: [`contains`] is the one "is this commit already in that history" check every
//! module uses (sync, landing, trust rules, remote, status). A commit's id fixes its parents, so
//! an answer never changes: answers are remembered for the life of the process (a long-lived
//! one, the MCP server, asks the same questions of every `status` call).

use std::collections::HashMap;
use std::sync::Mutex;

use anyhow::Result;
use git2::{Oid, Repository};

/// Remembered answers at most; the memo starts over beyond it.
const MEMO_MAX: usize = 100_000;

/// True when `tip` already contains `target` (equal or descends from it).
pub fn contains(repo: &Repository, tip: Oid, target: Oid) -> Result<bool> {
    static MEMO: Mutex<Option<HashMap<(Oid, Oid), bool>>> = Mutex::new(None);
    if tip == target {
        return Ok(true);
    }
    if let Some(hit) = MEMO.lock().ok().and_then(|m| m.as_ref().and_then(|m| m.get(&(tip, target)).copied())) {
        return Ok(hit);
    }
    let answer = super::generation::descends_from(repo, tip, target)?;
    if let Ok(mut m) = MEMO.lock() {
        let m = m.get_or_insert_with(HashMap::new);
        if m.len() >= MEMO_MAX {
            m.clear();
        }
        m.insert((tip, target), answer);
    }
    Ok(answer)
}
