//! What stands in the way of moving a checkout from one commit to another with git's two-tree
//! checkout (`git read-tree -m -u`), checked before anything moves.
//!
//! Contract: [`blocking_paths`] lists every path of the checkout whose content the move would
//! overwrite or delete and that is not a clean tracked file the move owns. Nothing is changed.
//! It reads the checkout through git itself (`git status`, `git ls-files`, parsed by
//! [`crate::git::status`]), so whatever git supports (split index, sparse checkout and sparse
//! index, filters, fsmonitor-free stat data) is read as git reads it; skip-worktree entries are
//! not local changes. The rules:
//!
//! - **Unresolved conflicts** anywhere in the index refuse the whole move (git refuses any
//!   two-tree move then): [`HybridError::LocalChanges`] naming the unmerged paths and saying so.
//! - **A path the move changes** must be clean (index and file equal the old commit), or already
//!   moved (index equals the new commit, file equals the index: a move a killed run started, or
//!   the user staged exactly the incoming change).
//! - **Untracked and ignored content is never deleted or overwritten.** `git read-tree -m -u`
//!   treats ignored files as expendable; git-hybrid does not. Blocked are: an untracked or
//!   ignored file at a path the move writes; one at a folder on the way to a path it writes
//!   (a file `logs` where `logs/today.txt` arrives); and anything untracked or ignored inside a
//!   folder that becomes a file (`build/` when a file `build` arrives, `d/secret.key` when `d`
//!   becomes a file).
//! - **A nested repository** (a folder with its own `.git`: a submodule's checkout, a clone
//!   inside the checkout) is untracked content: a move that writes a file over it, or inside it,
//!   is refused, naming the folder. Removing a submodule's gitlink leaves its folder alone, as
//!   git does, and is not refused.
//! - With [`Scope::Whole`] (a task worktree before a sync or catch-up) every tracked change and
//!   untracked file anywhere blocks too; ignored files elsewhere do not.

use std::collections::BTreeSet;
use std::fs;
use std::io::ErrorKind;
use std::path::Path;

use anyhow::{Context, Result};
use git2::Tree;

use super::{wait_index_unlocked, Checkout, Scope};
use crate::error::HybridError;
use crate::git::status::{self, StatusEntry};

const MODE_GITLINK: i32 = 0o160000;
const MODE_TREE: i32 = 0o040000;

/// Local changes, untracked and ignored content, and nested repositories in `co` that a move
/// from `old` to `new` (changing `changed`) would overwrite or delete (see the module contract).
pub fn blocking_paths(
    co: &Checkout,
    old: &Tree,
    new: &Tree,
    changed: &BTreeSet<String>,
    scope: Scope,
) -> Result<Vec<String>> {
    if scope == Scope::ChangedPaths && changed.is_empty() {
        return Ok(Vec::new());
    }
    wait_index_unlocked(co)?;
    let unmerged = status::unmerged_paths(&co.dir)?;
    if !unmerged.is_empty() {
        return Err(HybridError::LocalChanges {
            message: format!(
                "the checkout {} has unresolved conflicts (an unfinished merge, cherry-pick, stash pop, ...); \
                 nothing was changed. Resolve them (`git add`) or abort that operation there, then re-run; the \
                 unmerged path(s)",
                co.dir.display()
            ),
            paths: unmerged,
        }
        .into());
    }
    let mut blocked = BTreeSet::new();
    let doomed = in_the_way_on_disk(co, old, new, changed, &mut blocked)?;
    let under_doomed = |p: &str| doomed.iter().any(|d| is_below(p, d));

    // Ignored files count only where the move writes or deletes; git status lists them for the
    // changed paths and everything below them (a folder that becomes a file).
    let near_changes = if changed.is_empty() { Vec::new() } else { status::status(&co.dir, Some(changed), true)? };
    for rec in near_changes {
        let path = rec.path.trim_end_matches('/');
        let relevant = changed.contains(path) || under_doomed(path);
        if !relevant {
            continue;
        }
        if !already_moved(&rec, new, changed) {
            blocked.insert(rec.path);
        }
    }
    if scope == Scope::Whole {
        for rec in status::status(&co.dir, None, false)? {
            if !already_moved(&rec, new, changed) {
                blocked.insert(rec.path);
            }
        }
    }
    Ok(blocked.into_iter().collect())
}

/// Whether `p` lies strictly below the folder `dir`.
pub fn is_below(p: &str, dir: &str) -> bool {
    p.len() > dir.len() && p.starts_with(dir) && p.as_bytes()[dir.len()] == b'/'
}

/// Checks the file system where the move writes: a non-folder on the way to a written path
/// that the move does not own, a nested repository on the way or at a path that becomes a file.
/// Returns the folders that become files ("doomed"; their content is checked by `git status`).
fn in_the_way_on_disk(
    co: &Checkout,
    old: &Tree,
    new: &Tree,
    changed: &BTreeSet<String>,
    blocked: &mut BTreeSet<String>,
) -> Result<Vec<String>> {
    let mut doomed = Vec::new();
    let mut folders_seen: BTreeSet<String> = BTreeSet::new();
    for p in changed {
        // Only a path the move writes can run into something (a deletion leaves folders alone).
        match mode_in(new, p) {
            None | Some(MODE_GITLINK) => continue,
            Some(_) => {}
        }
        let mut prefix = String::new();
        let parts: Vec<&str> = p.split('/').collect();
        for part in &parts[..parts.len() - 1] {
            if !prefix.is_empty() {
                prefix.push('/');
            }
            prefix.push_str(part);
            if folders_seen.contains(&prefix) {
                continue;
            }
            match lstat(co, &prefix)? {
                None => break,
                Some(m) if m.is_dir() => {
                    if has_dot_git(co, &prefix) {
                        blocked.insert(format!("{prefix}/"));
                        break;
                    }
                    folders_seen.insert(prefix.clone());
                }
                Some(_) => {
                    // A file or symlink where the move needs a folder: fine only when it is a
                    // tracked file the move removes (its own status is checked as a changed path).
                    let owned = changed.contains(&prefix) && mode_in(old, &prefix).is_some();
                    if !owned {
                        blocked.insert(prefix.clone());
                    }
                    break;
                }
            }
        }
        if lstat(co, p)?.is_some_and(|m| m.is_dir()) {
            // A folder where a file arrives: everything in it must be the move's to delete.
            if has_dot_git(co, p) {
                blocked.insert(format!("{p}/"));
            } else {
                nested_repositories(co, p, blocked)?;
            }
            doomed.push(p.clone());
        }
    }
    Ok(doomed)
}

/// Adds every folder below `dir` that holds its own `.git` (not descending into it).
fn nested_repositories(co: &Checkout, dir: &str, out: &mut BTreeSet<String>) -> Result<()> {
    let full = co.dir.join(dir);
    let entries = match fs::read_dir(&full) {
        Ok(e) => e,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", full.display())),
    };
    for entry in entries {
        let entry = entry.with_context(|| format!("cannot read {}", full.display()))?;
        if !entry.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        let rel = format!("{dir}/{}", entry.file_name().to_string_lossy());
        if has_dot_git(co, &rel) {
            out.insert(format!("{rel}/"));
        } else {
            nested_repositories(co, &rel, out)?;
        }
    }
    Ok(())
}

fn has_dot_git(co: &Checkout, rel: &str) -> bool {
    fs::symlink_metadata(co.dir.join(rel).join(".git")).is_ok()
}

fn lstat(co: &Checkout, rel: &str) -> Result<Option<fs::Metadata>> {
    let full = co.dir.join(rel);
    match fs::symlink_metadata(&full) {
        Ok(m) => Ok(Some(m)),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
        // A path component that is a file ("not a directory"): nothing can be there.
        Err(e) if e.raw_os_error() == Some(libc::ENOTDIR) => Ok(None),
        Err(e) => Err(e).with_context(|| format!("cannot inspect {}", full.display())),
    }
}

/// The mode of the entry at `path` in `tree` (`None` when absent; trees are not entries here).
fn mode_in(tree: &Tree, path: &str) -> Option<i32> {
    tree.get_path(Path::new(path)).ok().map(|e| e.filemode()).filter(|m| *m != MODE_TREE)
}

/// The index already holds the new commit's entry for `rec` and the file matches it: nothing to
/// lose.
fn already_moved(rec: &StatusEntry, new: &Tree, changed: &BTreeSet<String>) -> bool {
    let Some(t) = rec.tracked else { return false };
    if !t.file_matches_index || !changed.contains(&rec.path) {
        return false;
    }
    let want = new.get_path(Path::new(&rec.path)).ok().map(|e| (e.filemode(), e.id()));
    want == Some((t.mode, t.id))
}

#[cfg(test)]
mod tests {
    #[test]
    fn below_means_strictly_inside_a_folder() {
        assert!(super::is_below("d/x", "d"));
        assert!(!super::is_below("d", "d"));
        assert!(!super::is_below("dx/y", "d"));
    }
}
