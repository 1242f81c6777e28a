//! Unified diffs of git objects, in the format `git diff` prints.
//!
//! Contract: [`tree_diff`] renders `diff --git a/.. b/..` patches with 3 lines of context, the
//! indent heuristic and rename detection (git's defaults), binary files as
//! `Binary files ... differ`. [`commit_diff`] is a commit against its first parent (the empty
//! tree for a root commit), which for a squash commit is exactly the patch that landed.

use anyhow::{Context, Result};
use git2::{Commit, DiffFindOptions, DiffFormat, DiffOptions, Oid, Repository, Tree};

/// The unified diff from `old` to `new` (`None` = the empty tree).
pub fn tree_diff(repo: &Repository, old: Option<&Tree<'_>>, new: Option<&Tree<'_>>) -> Result<String> {
    let mut opts = DiffOptions::new();
    opts.context_lines(3).indent_heuristic(true);
    let mut diff = repo.diff_tree_to_tree(old, new, Some(&mut opts)).context("cannot diff trees")?;
    let mut find = DiffFindOptions::new();
    find.renames(true);
    diff.find_similar(Some(&mut find)).context("cannot detect renames")?;
    let mut out = Vec::new();
    diff.print(DiffFormat::Patch, |_delta, _hunk, line| {
        if matches!(line.origin(), '+' | '-' | ' ') {
            out.push(line.origin() as u8);
        }
        out.extend_from_slice(line.content());
        true
    })
    .context("cannot print the diff")?;
    Ok(String::from_utf8_lossy(&out).into_owned())
}

/// The diff of `commit` against its first parent.
pub fn commit_diff(repo: &Repository, commit: &Commit<'_>) -> Result<String> {
    let new = commit.tree().context("cannot read the commit's tree")?;
    let old = match commit.parent(0) {
        Ok(p) => Some(p.tree().context("cannot read the parent's tree")?),
        Err(_) => None,
    };
    tree_diff(repo, old.as_ref(), Some(&new))
}

/// The diff between two commits' trees.
pub fn range_diff(repo: &Repository, from: Oid, to: Oid) -> Result<String> {
    let old = repo.find_commit(from).with_context(|| format!("cannot read commit {from}"))?.tree()?;
    let new = repo.find_commit(to).with_context(|| format!("cannot read commit {to}"))?.tree()?;
    tree_diff(repo, Some(&old), Some(&new))
}
