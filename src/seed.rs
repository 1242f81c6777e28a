//! Seeding a new task worktree with what the checkout of its base lacks: the `[worktree] copy`
//! files (ignored files a task needs, such as `.env`) copied from the main checkout.
//!
//! Contract: [`check_copy_path`] is the rule for an entry of `[worktree] copy`, applied when
//! `hybrid.toml` is read (a bad entry is a config error, exit 2): a relative path inside the
//! repository that git itself would accept ([`crate::safe_path`]: no `..`, no `.git`, no
//! absolute path). [`copy_files`] copies each entry, a file or a folder (recursively), from the
//! main checkout into a worktree just created:
//! - never a symlink: a source that is a symlink, or lies below one, is skipped (it could point
//!   anywhere), and so are symlinks inside a copied folder; nothing is ever linked back into the
//!   user's checkout, every file is a copy (a reflink where the file system can, else bytes);
//! - nothing in the worktree is overwritten (a tracked file is already there: skipped), and no
//!   write goes through a symlink of the worktree (a tracked symlink named `config` cannot
//!   redirect `config/x`): files are created with `O_EXCL|O_NOFOLLOW` below real folders only;
//! - the file mode's permission bits are kept.
//!
//! What was skipped, and why, is in the report; an entry missing from the main checkout is
//! skipped too. Copying stops at nothing: one entry that cannot be copied does not stop the
//! others.

use std::fs::File;
use std::io;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use serde::Serialize;

/// What [`copy_files`] did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct CopyReport {
    /// Files copied, as repository paths.
    pub copied: Vec<String>,
    /// `(path, reason)` for everything not copied.
    pub skipped: Vec<(String, String)>,
}

/// Checks one `[worktree] copy` entry (see the module contract).
pub fn check_copy_path(p: &str) -> Result<(), String> {
    let trimmed = p.trim_end_matches('/');
    if trimmed.is_empty() {
        return Err("an empty path".into());
    }
    if trimmed.starts_with('/') || trimmed.starts_with('~') {
        return Err("must be relative to the repository (no absolute path, no `~`)".into());
    }
    crate::safe_path::check(trimmed.as_bytes(), false)
        .map_err(|why| format!("not a path inside the repository ({why})"))
}

/// Copies the `entries` from the checkout `root` into the worktree `worktree` (see the module
/// contract).
pub fn copy_files(root: &Path, worktree: &Path, entries: &[String]) -> CopyReport {
    let mut report = CopyReport::default();
    for entry in entries {
        let rel = entry.trim_end_matches('/');
        if check_copy_path(rel).is_err() {
            report.skipped.push((entry.clone(), "not a path inside the repository".into()));
            continue;
        }
        if let Err(why) = real_folders_below(root, rel) {
            report.skipped.push((entry.clone(), format!("{why} in the main checkout")));
            continue;
        }
        let src = root.join(rel);
        match std::fs::symlink_metadata(&src) {
            Err(_) => report.skipped.push((entry.clone(), "not in the main checkout".into())),
            Ok(m) if m.file_type().is_symlink() => {
                report.skipped.push((entry.clone(), "a symlink (only files and folders are copied)".into()))
            }
            Ok(_) => copy_tree(&src, worktree, rel, &mut report),
        }
    }
    report
}

/// Every folder on the way to `rel` below `base` is a real folder (or missing): no symlink.
fn real_folders_below(base: &Path, rel: &str) -> Result<(), &'static str> {
    let mut cur = base.to_path_buf();
    let parts: Vec<&str> = rel.split('/').collect();
    for part in &parts[..parts.len() - 1] {
        cur.push(part);
        match std::fs::symlink_metadata(&cur) {
            Ok(m) if m.file_type().is_symlink() => return Err("a symlink on its path"),
            Ok(m) if !m.is_dir() => return Err("a file on its path"),
            _ => {}
        }
    }
    Ok(())
}

fn copy_tree(src: &Path, worktree: &Path, rel: &str, report: &mut CopyReport) {
    let Ok(meta) = std::fs::symlink_metadata(src) else { return };
    if meta.file_type().is_symlink() {
        report.skipped.push((rel.to_string(), "a symlink (only files and folders are copied)".into()));
        return;
    }
    if let Err(why) = real_folders_below(worktree, rel) {
        report.skipped.push((rel.to_string(), format!("{why} in the worktree")));
        return;
    }
    let dest = worktree.join(rel);
    if meta.is_dir() {
        match std::fs::symlink_metadata(&dest) {
            Ok(m) if !m.is_dir() || m.file_type().is_symlink() => {
                report.skipped.push((rel.to_string(), "already in the worktree (not overwritten)".into()));
                return;
            }
            Ok(_) => {}
            Err(_) => {
                if let Err(e) = std::fs::create_dir_all(&dest) {
                    report.skipped.push((rel.to_string(), format!("cannot create the folder: {e}")));
                    return;
                }
            }
        }
        let Ok(entries) = std::fs::read_dir(src) else {
            report.skipped.push((rel.to_string(), "cannot read the folder".into()));
            return;
        };
        let mut names: Vec<String> = entries.flatten().filter_map(|e| e.file_name().into_string().ok()).collect();
        names.sort();
        for name in names {
            let child = format!("{rel}/{name}");
            if crate::safe_path::check(child.as_bytes(), false).is_err() {
                report.skipped.push((child, "not a path git accepts".into()));
                continue;
            }
            copy_tree(&src.join(&name), worktree, &child, report);
        }
        return;
    }
    if !meta.is_file() {
        report.skipped.push((rel.to_string(), "not a regular file".into()));
        return;
    }
    if let Some(parent) = dest.parent() {
        if let Err(e) = std::fs::create_dir_all(parent) {
            report.skipped.push((rel.to_string(), format!("cannot create its folder: {e}")));
            return;
        }
    }
    match copy_file(src, &dest, meta.permissions().mode()) {
        Ok(()) => report.copied.push(rel.to_string()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            report.skipped.push((rel.to_string(), "already in the worktree (not overwritten)".into()))
        }
        Err(e) => report.skipped.push((rel.to_string(), format!("cannot copy: {e}"))),
    }
}

/// Copies one file to a path that must not exist (never through a symlink), as a reflink when
/// the file system can, else byte by byte; keeps the permission bits.
fn copy_file(src: &Path, dest: &Path, mode: u32) -> io::Result<()> {
    let mut from = File::open(src)?;
    let mut to = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .custom_flags(libc::O_NOFOLLOW)
        .mode(mode & 0o777)
        .open(dest)?;
    let result = reflink(&from, &to).or_else(|_| io::copy(&mut from, &mut to).map(|_| ()));
    if result.is_err() {
        drop(to);
        let _ = std::fs::remove_file(dest);
        return result;
    }
    to.set_permissions(std::fs::Permissions::from_mode(mode & 0o777))
}

#[cfg(target_os = "linux")]
fn reflink(from: &File, to: &File) -> io::Result<()> {
    rustix::fs::ioctl_ficlone(to, from).map_err(io::Error::from)
}

#[cfg(not(target_os = "linux"))]
fn reflink(_from: &File, _to: &File) -> io::Result<()> {
    Err(io::Error::from(io::ErrorKind::Unsupported))
}
