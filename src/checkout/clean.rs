//! A fast answer to "is this task worktree clean anywhere?", asked before a kept task's
//! worktree is caught up (`sync::move_task_branch`).
//!
//! Contract: [`clean_anywhere`] returns `true` only when the index equals the commit the branch
//! is at (its cache tree's root is valid and names that tree), no stage other than 0 and no
//! assume-unchanged/skip-worktree entry exists, every tracked file's `lstat` matches its index
//! entry exactly (git's stat shortcut, racily clean entries excluded), and the walk of the
//! worktree finds no file outside the index that the worktree's `.gitignore` files and
//! `info/exclude` do not ignore. It never changes anything. `false` means "maybe not": the caller
//! then asks git (`git status`, `checkout/guard.rs`), which has the last word and names the
//! paths. A wrong `true` cannot lose anything either: a fast move writes only the paths the
//! move changes, after checking each of them.
//!
//! Why: `git status` of a whole worktree of git/git's size costs tens of milliseconds, most of
//! a kept task's catch-up; this costs a walk and an `lstat` per file.

use std::collections::HashSet;

use git2::Oid;

use super::Checkout;
use crate::git::index::{RawIndex, FLAG_VALID};

/// See the module contract. `head_tree` is the tree of the commit the checkout's branch is at.
pub fn clean_anywhere(co: &Checkout, index: &RawIndex, index_mtime: (i64, i64), head_tree: Oid) -> bool {
    match index.cache_tree() {
        Ok(Some(root)) if root.valid.is_some_and(|(_, id)| id == *head_tree.as_bytes()) => {}
        _ => return false,
    }
    let mut tracked: HashSet<&[u8]> = HashSet::with_capacity(index.entry_count());
    for i in 0..index.entry_count() {
        let e = index.entry_at(i);
        if e.stage() != 0 || e.flags & FLAG_VALID != 0 || e.flags_extended != 0 {
            return false;
        }
        let path = index.path_at(i);
        let Ok(rel) = std::str::from_utf8(path) else { return false };
        let Ok(m) = std::fs::symlink_metadata(co.dir.join(rel)) else { return false };
        if !e.stat_matches(&m, index_mtime) {
            return false;
        }
        tracked.insert(path);
    }
    let walk = ignore::WalkBuilder::new(&co.dir)
        .standard_filters(false)
        .git_ignore(true)
        .git_exclude(true)
        .require_git(false)
        .filter_entry(|e| e.file_name() != ".git")
        .build();
    for entry in walk {
        let Ok(entry) = entry else { return false };
        if entry.file_type().is_some_and(|t| t.is_dir()) {
            continue;
        }
        let Ok(rel) = entry.path().strip_prefix(&co.dir) else { return false };
        let Some(rel) = rel.to_str() else { return false };
        if !tracked.contains(rel.as_bytes()) {
            return false;
        }
    }
    true
}
