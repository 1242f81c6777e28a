//! File claims across machines: two dispatchers on clones of one remote never run, at the same
//! time, two tasks whose claims may overlap (`touches`, a plugin's folder) or two `core` tasks.
//!
//! Contract. A task claim on the remote (`super::claims`) carries the task's [`Scope`] and a
//! phase: `checking` when first created, `running` once the check below passed. A dispatcher
//! that has just created its claim (`checking`) lists every live claim on the remote
//! (`refs/hybrid/claims/*`, expired ones and its own process's ignored: its own scheduler keeps
//! those apart) and decides ([`check`]):
//! - an overlapping claim that is `running` → [`Verdict::Yield`]: release the claim, wait until
//!   no live overlapping claim is left, start over;
//! - an overlapping `checking` claim of a task whose id sorts before ours → `Yield` too;
//! - overlapping `checking` claims of tasks that sort after ours only → [`Verdict::Wait`]: keep
//!   the claim and look again (they either saw ours and yield, or did not and turn `running`,
//!   and then we yield);
//! - nothing overlapping → [`Verdict::Clear`]: the caller turns its claim `running`.
//!
//! Why it holds: each side publishes its claim before it looks, so of two dispatchers claiming
//! overlapping tasks at once at least one sees the other; one that sees a `running` claim always
//! yields, and when both see each other as `checking` only the later id yields.

use anyhow::Result;
use serde::{Deserialize, Serialize};

use super::claims::Claim;
use super::Remote;
// The remote's claims are fetched to SEEN_REFS (mirrored, pruned).
use crate::names::{CLAIM_REFS, SEEN_CLAIM_REFS as SEEN_REFS};
use crate::repo::Project;

/// What a task claims besides itself.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Scope {
    /// Claim globs (touches plus a plugin's folder).
    #[serde(default)]
    pub paths: Vec<String>,
    /// `shape = "core"`: single-flight across machines.
    #[serde(default)]
    pub core: bool,
}

impl Scope {
    /// Whether two tasks with these scopes may not run at once.
    pub fn overlaps(&self, other: &Scope) -> bool {
        (self.core && other.core)
            || self.paths.iter().any(|a| other.paths.iter().any(|b| crate::schedule::claims_overlap(a, b)))
    }

    pub fn is_empty(&self) -> bool {
        self.paths.is_empty() && !self.core
    }
}

/// What [`check`] decided.
#[derive(Debug)]
pub enum Verdict {
    Clear,
    /// Release the claim and wait: this claim (of another task) goes first.
    Yield(Claim),
    /// Keep the claim and look again shortly.
    Wait(Claim),
}

/// Decides for the claim of task `id` with `scope` (module contract).
pub fn check(project: &Project, remote: &Remote, id: &str, scope: &Scope) -> Result<Verdict> {
    if scope.is_empty() {
        return Ok(Verdict::Clear);
    }
    let others = live_claims(project, remote)?;
    let mut wait = None;
    for c in others.into_iter().filter(|c| c.task != id && c.scope.overlaps(scope)) {
        if c.running || c.task.as_str() < id {
            return Ok(Verdict::Yield(c));
        }
        wait = Some(c);
    }
    Ok(wait.map_or(Verdict::Clear, Verdict::Wait))
}

/// Whether a live claim of another process overlaps `scope` now (a yielded task waits for this
/// to be false before it claims again).
pub fn blocked(project: &Project, remote: &Remote, id: &str, scope: &Scope) -> Result<Option<Claim>> {
    if scope.is_empty() {
        return Ok(None);
    }
    Ok(live_claims(project, remote)?.into_iter().find(|c| c.task != id && c.scope.overlaps(scope)))
}

/// Every unexpired claim on the remote held by another process.
fn live_claims(project: &Project, remote: &Remote) -> Result<Vec<Claim>> {
    let spec = format!("+{CLAIM_REFS}*:{SEEN_REFS}*");
    let out = remote.git_fetch(project, &["--prune"], &[spec])?;
    if !out.status.success() {
        anyhow::bail!("cannot list the claims on {}: {}", remote.name, String::from_utf8_lossy(&out.stderr).trim());
    }
    let repo = &project.repo;
    let mut claims = Vec::new();
    for r in repo.references_glob(&format!("{SEEN_REFS}*"))?.flatten() {
        let Some(oid) = r.target() else { continue };
        let Ok(blob) = repo.find_blob(oid) else { continue };
        let Ok(c) = serde_json::from_slice::<Claim>(blob.content()) else { continue };
        if !c.expired() && !c.is_this_process() {
            claims.push(c);
        }
    }
    Ok(claims)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scope(paths: &[&str], core: bool) -> Scope {
        Scope { paths: paths.iter().map(|p| p.to_string()).collect(), core }
    }

    #[test]
    fn scopes_overlap_on_paths_or_core() {
        assert!(scope(&["src/a/**"], false).overlaps(&scope(&["src/a/b.rs"], false)));
        assert!(!scope(&["src/a/**"], false).overlaps(&scope(&["docs/**"], false)));
        assert!(scope(&[], true).overlaps(&scope(&[], true)));
        assert!(!scope(&[], true).overlaps(&scope(&["x"], false)));
        assert!(scope(&[], false).is_empty());
    }
}
