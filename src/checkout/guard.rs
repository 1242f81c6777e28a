//! What stands in the way of moving a checkout from one commit to another with git's two-tree
//! checkout (`git read-tree -m -u`), checked before anything moves.
//!
//! Contract: [`blocking_paths`] lists every path of the checkout whose content the move would
//! overwrite or delete and that is not a clean tracked file the move owns. Nothing is changed.
//! It reads the checkout through git itself (`git status`, `git ls-files`), so whatever git
//! supports (split index, sparse checkout and sparse index, filters, fsmonitor-free stat data) is
//! read as git reads it; skip-worktree entries are not local changes. The rules:
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

const MODE_GITLINK: i32 = 0o160000;
const MODE_TREE: i32 = 0o040000;

/// Past this many bytes of pathspecs, `git status` reads the whole checkout instead (and the
/// result is filtered here): the same answer, without an argument list the system refuses.
const MAX_PATHSPEC_BYTES: usize = 256 * 1024;

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
    let unmerged = unmerged_paths(co)?;
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
    let near_changes = if changed.is_empty() { Vec::new() } else { status(co, Some(changed), true)? };
    for rec in near_changes {
        let path = rec.path.trim_end_matches('/');
        let relevant = changed.contains(path) || under_doomed(path);
        if !relevant {
            continue;
        }
        if !rec.already_moved(new, changed) {
            blocked.insert(rec.path);
        }
    }
    if scope == Scope::Whole {
        for rec in status(co, None, false)? {
            if !rec.already_moved(new, changed) {
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

/// One entry of `git status --porcelain=v2`.
struct StatusRecord {
    path: String,
    /// For a tracked entry: whether the file equals the index (`.` in the worktree column) and
    /// the index entry's mode and object id.
    tracked: Option<(bool, i32, git2::Oid)>,
}

impl StatusRecord {
    /// Index already holds the new commit's entry and the file matches it: nothing to lose.
    fn already_moved(&self, new: &Tree, changed: &BTreeSet<String>) -> bool {
        let Some((file_clean, mode, id)) = self.tracked else { return false };
        if !file_clean || !changed.contains(&self.path) {
            return false;
        }
        let want = new.get_path(Path::new(&self.path)).ok().map(|e| (e.filemode(), e.id()));
        want == Some((mode, id))
    }
}

/// `git status` of the checkout, untracked files one by one, optionally ignored ones, limited to
/// `paths` (and what lies below them) when given.
fn status(co: &Checkout, paths: Option<&BTreeSet<String>>, ignored: bool) -> Result<Vec<StatusRecord>> {
    let mut args: Vec<&str> = vec![
        // No program configured in the repository runs for a status, and the index is not
        // rewritten (a refresh would take `index.lock`).
        "-c",
        "core.fsmonitor=false",
        "--no-optional-locks",
        "status",
        "--porcelain=v2",
        "-z",
        "--untracked-files=all",
        "--no-renames",
        "--ignore-submodules=all",
    ];
    if ignored {
        // With `--untracked-files=all`, every ignored file is listed on its own, also inside an
        // ignored folder (`matching` would list the folder alone).
        args.push("--ignored=traditional");
    }
    let specs: Vec<String> = match paths {
        Some(ps) if ps.iter().map(|p| p.len() + 16).sum::<usize>() <= MAX_PATHSPEC_BYTES => {
            // Literal paths from the top, whatever characters they hold.
            ps.iter().map(|p| format!(":(top,literal){p}")).collect()
        }
        _ => Vec::new(),
    };
    if !specs.is_empty() {
        args.push("--");
        args.extend(specs.iter().map(String::as_str));
    }
    let out = crate::git::output(&co.dir, &args)?;
    if !out.status.success() {
        anyhow::bail!(
            "cannot read the status of {}: {}",
            co.dir.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    parse_status(&out.stdout)
}

fn parse_status(stdout: &[u8]) -> Result<Vec<StatusRecord>> {
    let mut out = Vec::new();
    for rec in stdout.split(|b| *b == 0) {
        let line = String::from_utf8_lossy(rec);
        let Some(kind) = line.chars().next() else { continue };
        match kind {
            '?' | '!' => {
                out.push(StatusRecord { path: line[2..].to_string(), tracked: None });
            }
            '1' => {
                // 1 XY sub mH mI mW hH hI path
                let f: Vec<&str> = line.splitn(9, ' ').collect();
                if f.len() < 9 {
                    anyhow::bail!("unexpected git status record {line:?}");
                }
                let file_clean = f[1].as_bytes().get(1) == Some(&b'.');
                let mode = i32::from_str_radix(f[4], 8).unwrap_or(0);
                let id = git2::Oid::from_str(f[7]).unwrap_or(git2::Oid::zero());
                out.push(StatusRecord { path: f[8].to_string(), tracked: Some((file_clean, mode, id)) });
            }
            '2' => {
                // A rename record (not asked for): its path blocks like any other change.
                let f: Vec<&str> = line.splitn(10, ' ').collect();
                if let Some(p) = f.get(9) {
                    out.push(StatusRecord { path: p.to_string(), tracked: Some((false, 0, git2::Oid::zero())) });
                }
            }
            _ => {} // '#' headers; 'u' records are read by `unmerged_paths`; the origin path of '2'
        }
    }
    Ok(out)
}

/// The index's unmerged paths, through git (which reads every index git writes).
fn unmerged_paths(co: &Checkout) -> Result<Vec<String>> {
    let out = crate::git::output(&co.dir, ["ls-files", "--unmerged", "-z"])?;
    if !out.status.success() {
        anyhow::bail!("cannot read the index of {}: {}", co.dir.display(), String::from_utf8_lossy(&out.stderr).trim());
    }
    let mut paths = BTreeSet::new();
    for rec in out.stdout.split(|b| *b == 0) {
        // <mode> <object> <stage>\t<path>
        if let Some(tab) = rec.iter().position(|b| *b == b'\t') {
            paths.insert(String::from_utf8_lossy(&rec[tab + 1..]).into_owned());
        }
    }
    Ok(paths.into_iter().collect())
}

/// The paths git names in a refusal of `read-tree` (`error: Entry 'x' not uptodate. Cannot
/// merge.`, `error: Untracked working tree file 'x' would be overwritten by merge.`, ...).
pub(crate) fn paths_in_git_error(stderr: &str) -> Vec<String> {
    let mut out = BTreeSet::new();
    for line in stderr.lines() {
        let Some(rest) = line.strip_prefix("error: ") else {
            // Porcelain lists: a tab-indented path per line.
            if let Some(p) = line.strip_prefix('\t') {
                out.insert(p.trim().to_string());
            }
            continue;
        };
        if let (Some(a), Some(b)) = (rest.find('\''), rest.rfind('\'')) {
            if b > a + 1 {
                out.insert(rest[a + 1..b].to_string());
            }
        }
    }
    out.into_iter().collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn paths_in_git_errors() {
        let err = "error: Entry 'a/b.txt' not uptodate. Cannot merge.\nerror: Updating 'd' would lose untracked \
                   files in it\nfatal: something\n";
        assert_eq!(super::paths_in_git_error(err), ["a/b.txt", "d"]);
        let listed = "error: The following untracked working tree files would be overwritten by merge:\n\tx.txt\n\t\
                      y/z.txt\nPlease move or remove them before you merge.\nAborting\n";
        assert_eq!(super::paths_in_git_error(listed), ["x.txt", "y/z.txt"]);
    }

    #[test]
    fn below_means_strictly_inside_a_folder() {
        assert!(super::is_below("d/x", "d"));
        assert!(!super::is_below("d", "d"));
        assert!(!super::is_below("dx/y", "d"));
    }
}
