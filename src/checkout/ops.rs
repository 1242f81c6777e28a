//! Operations in progress that a branch move would break.
//!
//! Contract: [`in_progress`] says (as a ready message) whether any checkout of the repository,
//! the main one or a linked worktree, is in the middle of an operation that names the branch:
//! a rebase of it (`rebase-merge/head-name` or `rebase-apply/head-name`, HEAD detached), a bisect
//! started from it (`BISECT_START`), or, in a checkout whose `HEAD` is the branch, a merge
//! (`MERGE_HEAD`), cherry-pick (`CHERRY_PICK_HEAD`, `sequencer/`), revert (`REVERT_HEAD`) or
//! `git am` (`rebase-apply/applying`). git refuses to move such a branch itself; moving it
//! anyway makes `git rebase --continue` fail and `--abort` drop what was landed. It reads only
//! those small files.

use std::path::{Path, PathBuf};

use anyhow::Result;

use crate::repo::Project;

/// `Some(message)` when a checkout is in the middle of an operation on `refname`
/// (`refs/heads/...`); see the module contract.
pub fn in_progress(project: &Project, refname: &str) -> Result<Option<String>> {
    let short = refname.strip_prefix("refs/heads/").unwrap_or(refname);
    for (dir, admin) in admin_dirs(project) {
        if let Some((what, how)) = operation_on(&admin, refname, short) {
            return Ok(Some(format!(
                "{short} is being {what} in {}; finish or abort it first ({how} there), then re-run; nothing was \
                 changed",
                dir.display()
            )));
        }
    }
    Ok(None)
}

/// (checkout folder, its private git directory) of the main checkout and every linked worktree.
fn admin_dirs(project: &Project) -> Vec<(PathBuf, PathBuf)> {
    let mut out = vec![(project.root.clone(), project.common_dir.clone())];
    for entry in crate::git::worktrees::linked(&project.common_dir).unwrap_or_default() {
        let dir = entry.dir().map(Path::to_path_buf).unwrap_or_else(|| entry.admin.clone());
        out.push((dir, entry.admin));
    }
    out
}

fn read_trimmed(p: &Path) -> Option<String> {
    std::fs::read_to_string(p).ok().map(|s| s.trim().to_string())
}

/// What is happening to the branch in the checkout whose git directory is `admin` (a past
/// participle for "main is being ...") and how to finish or abort it.
fn operation_on(admin: &Path, refname: &str, short: &str) -> Option<(&'static str, &'static str)> {
    let names = |v: Option<String>| v.is_some_and(|v| v == refname || v == short);
    for dir in ["rebase-merge", "rebase-apply"] {
        if names(read_trimmed(&admin.join(dir).join("head-name"))) {
            return Some(("rebased", "`git rebase --continue` or `git rebase --abort`"));
        }
    }
    if names(read_trimmed(&admin.join("BISECT_START"))) {
        return Some(("bisected", "`git bisect reset`"));
    }
    let head = read_trimmed(&admin.join("HEAD"));
    if head.as_deref().and_then(|h| h.strip_prefix("ref:")).map(str::trim) != Some(refname) {
        return None;
    }
    let exists = |name: &str| std::fs::symlink_metadata(admin.join(name)).is_ok();
    if exists("MERGE_HEAD") {
        return Some(("merged into", "`git merge --continue` or `git merge --abort`"));
    }
    if exists("CHERRY_PICK_HEAD") {
        return Some(("cherry-picked onto", "`git cherry-pick --continue` or `git cherry-pick --abort`"));
    }
    if exists("REVERT_HEAD") {
        return Some(("reverted on", "`git revert --continue` or `git revert --abort`"));
    }
    if exists("rebase-apply/applying") {
        return Some(("patched by `git am`", "`git am --continue` or `git am --abort`"));
    }
    if exists("sequencer") {
        return Some(("cherry-picked onto or reverted on", "`git cherry-pick --continue` or `git cherry-pick --quit`"));
    }
    None
}
