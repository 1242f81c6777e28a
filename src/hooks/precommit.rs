//! The pre-commit hook: claims and secret checks on what is staged in a task worktree, then a
//! checkpoint commit of the index (contract in [`crate::hooks`]).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use git2::{DiffOptions, Oid, Repository};
use serde::Serialize;

use super::{head_branch, open_here};
use crate::claims;
use crate::git::index_tree;
use crate::git::{self, Role};
use crate::names;
use crate::repo::Project;
use crate::secrets::{self, Allowlist, ALLOW_MARKER};
use crate::{task_id, treediff};

/// A secret-looking addition found by pre-commit (the secret itself is never kept).
#[derive(Debug, Clone, Serialize)]
pub struct SecretHit {
    pub path: String,
    pub line: u32,
    pub kind: String,
}

/// What pre-commit found and did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct PreCommitReport {
    /// The task attempt of this worktree, when it is a task worktree.
    pub task: Option<String>,
    pub attempt: Option<u32>,
    /// Whether any check ran.
    pub checked: bool,
    /// The claim patterns, when the task has claims.
    pub claims: Option<Vec<String>>,
    /// Staged paths outside the claims.
    pub outside_claims: Vec<String>,
    pub secrets: Vec<SecretHit>,
    /// The checkpoint commit recorded (when the checks passed).
    pub checkpoint: Option<String>,
    /// The checkpoint ref name.
    pub checkpoint_ref: Option<String>,
}

impl PreCommitReport {
    /// Whether the commit must be refused.
    pub fn refused(&self) -> bool {
        !self.outside_claims.is_empty() || !self.secrets.is_empty()
    }
}

/// The pre-commit hook (see the module contract). `Err` means the checks could not run.
pub fn pre_commit(cwd: &Path) -> Result<PreCommitReport> {
    fast_object_access();
    let repo = open_here(cwd)?;
    let task = head_branch(&repo).and_then(|b| task_id::from_branch(&b));
    let project = match Project::open(cwd) {
        Ok(p) => p,
        Err(e) if task.is_some() => return Err(e),
        Err(_) => return Ok(PreCommitReport::default()),
    };
    // A task branch counts only with a ledger record; an unreadable record is an error (warned).
    let task = match task {
        Some((id, n)) => project.ledger().get(&id, n)?.map(|rec| (id, n, rec)),
        None => None,
    };
    let hooks_cfg = &project.config.config.hooks;
    let mut report = PreCommitReport::default();
    if task.is_none() && !hooks_cfg.everywhere {
        return Ok(report);
    }
    report.checked = true;
    if let Some((id, n, _)) = &task {
        report.task = Some(id.clone());
        report.attempt = Some(*n);
    }

    let head = repo.head().ok().and_then(|h| h.peel_to_commit().ok());
    let head_tree = head.as_ref().map(|c| c.tree()).transpose()?;
    // The index as a tree: libgit2 reuses the index's cache of unchanged subtrees, and a
    // tree-to-tree diff then skips every subtree whose id did not change, so the cost follows
    // the size of the change rather than of the repository. The checkpoint reuses the tree.
    let index_tree_id = index_tree::write_tree(&repo, index_file(cwd).as_deref())?;
    let index_tree = repo.find_tree(index_tree_id)?;
    let changes = treediff::changes(&repo, head_tree.as_ref(), Some(&index_tree))?;
    let mut staged: BTreeSet<String> = changes.iter().map(|c| c.display()).collect();
    // Concluding a merge: paths taken unchanged from the other side are not this task's change.
    if let Ok(merge_head) = repo.revparse_single("MERGE_HEAD").and_then(|o| o.peel_to_tree()) {
        let other = treediff::changes(&repo, Some(&merge_head), Some(&index_tree))?;
        let changed_vs_other: BTreeSet<String> = other.iter().map(|c| c.display()).collect();
        staged.retain(|p| changed_vs_other.contains(p));
    }

    if let Some((_, _, rec)) = &task {
        if !hooks_cfg.no_claims {
            // The claims recorded when the attempt started; hybrid.toml's when none were.
            if let Some(claims) = claims::for_record(&project, rec)? {
                report.outside_claims = staged.iter().filter(|p| !claims.allows(p)).cloned().collect();
                report.claims = Some(claims.patterns.clone());
            }
        }
    }

    report.secrets = scan_added_lines(&repo, &changes, &staged, &Allowlist::new(&hooks_cfg.allow_secrets))?;
    if report.refused() {
        return Ok(report);
    }
    if let Some((id, n, _)) = &task {
        let name = names::checkpoint_ref(id, *n);
        let oid = checkpoint(&repo, index_tree_id, head.as_ref(), &name, id, *n)?;
        report.checkpoint = Some(oid.to_string());
        report.checkpoint_ref = Some(name);
    }
    Ok(report)
}

/// Turns off libgit2's re-hashing of every object it reads and its existence checks on every
/// object it writes, for this process. git itself does neither on ordinary reads and writes;
/// in the hook they are most of the cost, and the hook only reads objects git just wrote.
fn fast_object_access() {
    git2::opts::strict_hash_verification(false);
    git2::opts::strict_object_creation(false);
}

/// The index being committed: `$GIT_INDEX_FILE` (git points it at a temporary index for
/// `commit -a` and `commit <paths>`), else the repository's index (`None`).
fn index_file(cwd: &Path) -> Option<PathBuf> {
    std::env::var_os("GIT_INDEX_FILE").filter(|v| !v.is_empty()).map(|f| cwd.join(PathBuf::from(f)))
}

/// Added lines in staged files that look like secrets, minus allowed ones.
fn scan_added_lines(
    repo: &Repository,
    changes: &[treediff::Change],
    staged: &BTreeSet<String>,
    allow: &Allowlist,
) -> Result<Vec<SecretHit>> {
    // A blob's id on one side (submodules, commits in the tree, have no lines to scan).
    let blob = |s: Option<treediff::Side>| s.filter(|s| s.mode != 0o160000).map(|s| s.id);
    let mut hits = Vec::new();
    let mut opts = DiffOptions::new();
    opts.context_lines(0);
    for c in changes {
        let path = c.display();
        if !staged.contains(&path) {
            continue;
        }
        let Some(new) = blob(c.new) else { continue };
        let new_blob = repo.find_blob(new)?;
        if new_blob.is_binary() {
            continue;
        }
        let old_blob = blob(c.old).map(|o| repo.find_blob(o)).transpose()?;
        let old_content = old_blob.as_ref().map(|b| b.content()).unwrap_or(&[]);
        let patch = git2::Patch::from_buffers(old_content, None, new_blob.content(), None, Some(&mut opts))
            .with_context(|| format!("cannot diff {path}"))?;
        for h in 0..patch.num_hunks() {
            for l in 0..patch.num_lines_in_hunk(h)? {
                let line = patch.line_in_hunk(h, l)?;
                if line.origin() != '+' {
                    continue;
                }
                let text = String::from_utf8_lossy(line.content());
                if text.contains(ALLOW_MARKER) {
                    continue;
                }
                for f in secrets::scan(&text) {
                    if !allow.allows(&text[f.start..f.end]) {
                        let line_no = line.new_lineno().unwrap_or(0);
                        hits.push(SecretHit { path: path.clone(), line: line_no, kind: f.kind.to_string() });
                    }
                }
            }
        }
    }
    Ok(hits)
}

/// Records the index tree as a commit at `name` (parents: HEAD, then the previous checkpoint).
fn checkpoint(
    repo: &Repository,
    tree_id: Oid,
    head: Option<&git2::Commit<'_>>,
    name: &str,
    id: &str,
    attempt: u32,
) -> Result<Oid> {
    let prev = repo.refname_to_id(name).ok();
    let prev_commit = prev.and_then(|p| repo.find_commit(p).ok());
    if let Some(pc) = &prev_commit {
        let same_head = pc.parent_id(0).ok() == head.map(|h| h.id());
        if pc.tree_id() == tree_id && same_head {
            return Ok(pc.id()); // nothing new since the last checkpoint
        }
    }
    let tree = repo.find_tree(tree_id)?;
    let mut parents: Vec<&git2::Commit<'_>> = Vec::new();
    if let Some(h) = head {
        parents.push(h);
    }
    if let Some(pc) = &prev_commit {
        if head.map(|h| h.id()) != Some(pc.id()) {
            parents.push(pc);
        }
    }
    let sig = git::signature(repo, Role::Committer)?;
    let msg = format!(
        "git-hybrid checkpoint: {id} attempt {attempt} before commit\n\nHEAD: {}\n",
        head.map(|h| h.id().to_string()).unwrap_or_else(|| "(none)".into())
    );
    let oid = repo.commit(None, &sig, &sig, &msg, &tree, &parents).context("cannot write the checkpoint commit")?;
    crate::failpoint!("hook::checkpoint_written");
    let reflog = "git-hybrid pre-commit checkpoint";
    match prev {
        Some(p) => repo.reference_matching(name, oid, true, p, reflog),
        None => repo.reference(name, oid, false, reflog),
    }
    .with_context(|| format!("cannot move {name} (another commit raced this one)"))?;
    Ok(oid)
}
