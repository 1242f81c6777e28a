//! git's worktree admin entries (`<common-dir>/worktrees/<name>`) for task worktrees: made
//! (by [`crate::git::worktrees::create`], or `git worktree add` where filter drivers apply),
//! found by path, removed; and the new worktree's files written.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use git2::Repository;

use crate::git::worktrees;
use crate::names;
use crate::repo::Project;

/// Removes `refs/heads/<branch>.lock` left by a process killed while creating the branch.
///
/// Safe because the caller holds the task lock and the branch does not exist: the only writer
/// of a not-yet-existing `hybrid/<id>` branch is a `start` of that task, which takes the same
/// lock, so a lock file seen now belongs to a dead process (git would otherwise refuse to
/// create the branch forever, and the user would have to delete the file by hand).
pub(super) fn remove_stale_ref_lock(project: &Project, branch: &str) -> Result<()> {
    let lock = project.common_dir.join("refs").join("heads").join(format!("{branch}.lock"));
    match std::fs::remove_file(&lock) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).with_context(|| format!("cannot remove the stale ref lock {}", lock.display())),
    }
}

/// Creates the worktree at `path` with `branch` checked out.
///
/// How, and why (measured by `benches/worktrees.py`; numbers and the steps that led here are
/// in docs/benchmarks.md): the admin entry (`<common-dir>/worktrees/<name>`: `gitdir`,
/// `commondir`, `HEAD`) is written by git-hybrid itself, then the files and the index are
/// written in this process: by `git::populate::fill_empty_worktree` (one writer thread per core)
/// when no filter can apply, else by libgit2's checkout. Against `git worktree add` on a
/// 5,000-file repository this measured 0.88-0.97x git's time on 2 cores; single-threaded it
/// was slower than git on ext4, so the parallel writer is what meets the goal.
///
/// Why not libgit2's own worktree add (the first version):
/// - its "branch already checked out" check misfires while another process is creating or
///   removing a worktree (libgit2 1.9 `git_repository_foreach_worktree` turns a failed
///   lookup into "checked out"), which broke parallel starts of different tasks;
/// - it writes the admin entry file by file, so other processes (and a kill -9) can see a
///   half-made entry. Here the entry is built in `<common-dir>/hybrid/tmp/` and renamed into
///   place, so git and libgit2 only ever see a complete entry;
/// - it names the entry after the folder and fails (or, on repair, pruned) when a user's own
///   worktree has the same folder name.
///
/// `git worktree add` is used when the user's global/system config defines filter drivers
/// (`filter.<name>.smudge`/`.process`, e.g. git-lfs), which libgit2 cannot run: there the files
/// must be exactly what git writes. Drivers from the repository's own config never run.
///
/// The admin entry gets a free name (`<name>`, else `<name>1`, `<name>2`, ... as git does), so
/// a user's own worktree with the same folder name is never reused or pruned; git-hybrid finds
/// its entries by path.
pub(super) fn add_worktree(project: &Project, name: &str, path: &Path, branch: &str) -> Result<()> {
    let full = format!("refs/heads/{branch}");
    if crate::git::trusted_filter_drivers() {
        // The git CLI, because only git runs filter drivers on checkout.
        let args = [OsStr::new("worktree"), OsStr::new("add"), OsStr::new("-q"), path.as_os_str(), OsStr::new(branch)];
        crate::git::run(&project.root, args)
            .with_context(|| format!("cannot create the worktree {}", path.display()))?;
        return Ok(());
    }

    // 1-2. The admin entry (complete, renamed into place), the working folder and its `.git`.
    let temp = names::worktree_admin_temp(&project.state_dir(), name);
    worktrees::create(&project.common_dir, &temp, name, path, &full)?;

    // 3. Files and index. libgit2 re-hashes every blob it reads (SHA-1DC, ~10% of a start's
    // CPU); `git checkout` does not: zlib's checksum and the pack index already guard the
    // bytes. It is a process-wide libgit2 option, so it is switched back on right after.
    let wt = Repository::open(path).with_context(|| format!("cannot open the new worktree {}", path.display()))?;
    let filters = attributes_may_apply(project, &wt);
    git2::opts::strict_hash_verification(false);
    let done = fill(project, &wt, path, filters);
    git2::opts::strict_hash_verification(true);
    done.with_context(|| format!("cannot check out {branch} in {}", path.display()))?;
    Ok(())
}

/// Writes HEAD's files and the index into the empty worktree: in parallel when no filter can
/// apply (see `checkout`), else with libgit2's checkout.
fn fill(project: &Project, wt: &Repository, path: &Path, filters: bool) -> Result<()> {
    if !filters {
        let tree = wt.head()?.peel_to_tree()?;
        if crate::git::populate::fill_empty_worktree(wt, path, &project.common_dir, &tree)? {
            return Ok(());
        }
    }
    let mut co = git2::build::CheckoutBuilder::new();
    co.force();
    // libgit2 looks up attributes for every file it writes (to pick filters), resolving each
    // file's folder with realpath(3): ~18 failing readlink calls per file. When no attribute
    // source exists and autocrlf is off, no filter can apply and skipping the lookup writes
    // exactly the same bytes.
    if !filters {
        co.disable_filters(true);
    }
    // The progress of a large fill on a terminal (`git::populate::progress`), as the fast path has.
    let mut shown = None;
    co.progress(move |_, done, total| {
        let before = *shown.get_or_insert_with(|| {
            crate::git::populate::progress(0, total);
            0
        });
        if done > before {
            crate::git::populate::progress(done - before, 0);
            shown = Some(done);
        }
    });
    wt.checkout_head(Some(&mut co))?;
    Ok(())
}

/// Whether any gitattributes or autocrlf setting could change the bytes a checkout of `wt`'s
/// HEAD writes: a `.gitattributes` anywhere in the tree, `info/attributes`, the global
/// attributes file (`core.attributesFile` or `$XDG_CONFIG_HOME/git/attributes`), or
/// `core.autocrlf = true`. Errs on the side of "may apply" (also when something cannot be read).
fn attributes_may_apply(project: &Project, wt: &Repository) -> bool {
    attributes_found(project, wt).unwrap_or(true)
}

fn attributes_found(project: &Project, wt: &Repository) -> Result<bool> {
    let cfg = wt.config()?;
    if cfg.get_bool("core.autocrlf").unwrap_or(false) || cfg.get_string("core.autocrlf").is_ok_and(|v| v != "false") {
        return Ok(true);
    }
    if project.common_dir.join("info").join("attributes").exists() {
        return Ok(true);
    }
    let global = match cfg.get_path("core.attributesFile") {
        Ok(p) => Some(p),
        Err(_) => crate::git::xdg_git_file("attributes"),
    };
    if global.is_some_and(|g| g.exists()) {
        return Ok(true);
    }
    let tree = wt.head()?.peel_to_tree()?;
    let mut found = false;
    tree.walk(git2::TreeWalkMode::PreOrder, |_, entry| {
        if entry.name_bytes() == b".gitattributes" {
            found = true;
            return git2::TreeWalkResult::Abort;
        }
        git2::TreeWalkResult::Ok
    })
    .or_else(|e| if found { Ok(()) } else { Err(e) })?;
    Ok(found)
}

/// A checkout (main or linked) other than `path`'s that has `full_ref` as HEAD.
pub(super) fn checked_out_elsewhere(project: &Project, full_ref: &str) -> Option<PathBuf> {
    let head_is = |git_dir: &Path| worktrees::head_ref(git_dir).as_deref() == Some(full_ref);
    if head_is(&project.common_dir) {
        return Some(project.root.clone());
    }
    for entry in worktrees::linked(&project.common_dir).ok()? {
        let Some(gitlink) = &entry.dot_git else { continue };
        // An entry whose folder is gone holds nothing checked out (git would prune it).
        if head_is(&entry.admin) && gitlink.exists() {
            return Some(entry.dir().map_or_else(|| gitlink.clone(), Path::to_path_buf));
        }
    }
    None
}

/// Admin entries (`<common-dir>/worktrees/*`) whose `gitdir` file points at `<path>/.git`.
fn admin_entries_for(project: &Project, path: &Path) -> Vec<PathBuf> {
    let want = crate::repo::normalize(&path.join(".git"));
    worktrees::linked(&project.common_dir)
        .unwrap_or_default()
        .into_iter()
        .filter(|e| e.dot_git.as_deref().is_some_and(|target| crate::repo::normalize(target) == want))
        .map(|e| e.admin)
        .collect()
}

/// Removes the admin entries of the worktree at `path` (its folder is gone or being removed).
pub(super) fn remove_admin_entries(project: &Project, path: &Path) -> Result<()> {
    if path.join(".git").exists() {
        return Ok(()); // a live worktree: its entry is not stale
    }
    for admin in admin_entries_for(project, path) {
        std::fs::remove_dir_all(&admin)
            .with_context(|| format!("cannot remove the stale worktree entry {}", admin.display()))?;
    }
    Ok(())
}

/// Removes what a crashed `start` left: the task folder and its admin entries.
///
/// Only called for a `starting` record under the task lock, so the folder is git-hybrid's own
/// and holds no user work (its path is printed only once the record is `ready`).
pub(super) fn remove_half_made(project: &Project, name: &str, path: &Path) -> Result<()> {
    if path.exists() {
        std::fs::remove_dir_all(path)
            .with_context(|| format!("cannot remove half-made worktree {}", path.display()))?;
    }
    remove_admin_entries(project, path)?;
    // A crash inside the add can leave an entry of this task's name family before its
    // `gitdir` file is written; such an entry is invalid to git too (`git worktree prune`
    // removes it). Entries with a `gitdir` that points elsewhere are someone else's: kept.
    let dir = project.common_dir.join("worktrees");
    if let Ok(entries) = std::fs::read_dir(&dir) {
        for e in entries.flatten() {
            let entry_name = e.file_name().to_string_lossy().into_owned();
            let family = entry_name
                .strip_prefix(name)
                .is_some_and(|rest| rest.is_empty() || rest.bytes().all(|b| b.is_ascii_digit()));
            if family && !e.path().join("gitdir").exists() {
                std::fs::remove_dir_all(e.path())
                    .with_context(|| format!("cannot remove the half-made worktree entry {}", e.path().display()))?;
            }
        }
    }
    Ok(())
}
