//! git's linked-worktree admin entries (`<common-dir>/worktrees/<id>/`) and `HEAD` files, read
//! from the files themselves (no repository is opened).
//!
//! Contract: [`linked`] lists every admin entry with the `.git` its `gitdir` file names. git
//! writes that path absolute, or (git 2.48 and later, `worktree.useRelativePaths`) relative to
//! the entry; both are returned absolute, the relative form joined to the entry and cleaned of
//! `.`/`..` (the entry lies in the common directory, whose path the caller gives canonical, so
//! no symlink is crossed). [`head_ref`] is the ref a git directory's `HEAD` names, read the way
//! git reads it (`ref:`, optional blanks, the name). Every module that pairs checkouts with
//! branches reads the entries through here, so they agree on which checkouts exist.
//!
//! [`create`] writes a new linked worktree's entry the way `git worktree add` lays it out
//! (`commondir`, `gitdir` absolute, `HEAD` naming the branch) but atomically: built in a
//! temporary folder and renamed into place under a free name, so git, libgit2 and a `kill -9`
//! only ever see a complete entry; then the working folder and its `.git` link. The files and the
//! index are the caller's.

use std::path::{Component, Path, PathBuf};

use anyhow::{Context, Result};

/// One admin entry.
#[derive(Debug, Clone)]
pub struct Linked {
    /// The entry itself (`<common-dir>/worktrees/<id>`): the checkout's private git directory.
    pub admin: PathBuf,
    /// The `.git` of its checkout (from the `gitdir` file); `None` when that file is unreadable.
    pub dot_git: Option<PathBuf>,
}

impl Linked {
    /// The checkout's folder (the parent of [`Linked::dot_git`]).
    pub fn dir(&self) -> Option<&Path> {
        self.dot_git.as_deref().and_then(Path::parent)
    }
}

/// Every admin entry under `common_dir` (none when `worktrees/` does not exist).
pub fn linked(common_dir: &Path) -> std::io::Result<Vec<Linked>> {
    let entries = match std::fs::read_dir(common_dir.join("worktrees")) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    Ok(entries
        .flatten()
        .map(|e| {
            let admin = e.path();
            let dot_git = gitdir_target(&admin);
            Linked { admin, dot_git }
        })
        .collect())
}

/// The `.git` an admin entry's `gitdir` file names, made absolute (module contract).
pub fn gitdir_target(admin: &Path) -> Option<PathBuf> {
    let text = std::fs::read_to_string(admin.join("gitdir")).ok()?;
    let named = Path::new(text.trim());
    if named.as_os_str().is_empty() {
        return None;
    }
    Some(if named.is_absolute() { named.to_path_buf() } else { lexical_join(admin, named) })
}

/// The ref the `HEAD` in `git_dir` names (`None`: detached, missing or unreadable).
pub fn head_ref(git_dir: &Path) -> Option<String> {
    let head = std::fs::read_to_string(git_dir.join("HEAD")).ok()?;
    head.trim().strip_prefix("ref:").map(|r| r.trim().to_string())
}

/// Creates the admin entry of a new linked worktree at `path` (which must not exist) with
/// `full_ref` checked out, then `path` and its `.git` link (module contract). `temp` is where the
/// entry is built (a folder of git-hybrid's own; one left by a killed run is removed: the caller
/// holds the lock that run held). The entry is named `name`, else the first free `<name>N`, so a
/// user's own worktree entry of the same name is never reused. Returns the entry.
pub fn create(common_dir: &Path, temp: &Path, name: &str, path: &Path, full_ref: &str) -> Result<PathBuf> {
    if temp.exists() {
        std::fs::remove_dir_all(temp).with_context(|| format!("cannot remove {}", temp.display()))?;
    }
    std::fs::create_dir_all(temp).with_context(|| format!("cannot create {}", temp.display()))?;
    let gitlink = path.join(".git");
    std::fs::write(temp.join("commondir"), "../..\n")?;
    std::fs::write(temp.join("gitdir"), format!("{}\n", gitlink.display()))?;
    std::fs::write(temp.join("HEAD"), format!("ref: {full_ref}\n"))?;
    let admins = common_dir.join("worktrees");
    std::fs::create_dir_all(&admins).with_context(|| format!("cannot create {}", admins.display()))?;
    let mut admin_name = free_name(&admins, name);
    let mut tries = 0;
    let admin = loop {
        let candidate = admins.join(&admin_name);
        // rename(2) refuses a non-empty target, so a name taken meanwhile is never clobbered;
        // check first anyway, because an empty directory would be replaced.
        if !candidate.exists() && std::fs::rename(temp, &candidate).is_ok() {
            break candidate;
        }
        tries += 1;
        if tries > 100 {
            anyhow::bail!("cannot find a free worktree entry name for {name} in {}", admins.display());
        }
        admin_name = format!("{name}{tries}");
    };
    crate::failpoint!("start::admin_entry_written");

    std::fs::create_dir(path).with_context(|| format!("cannot create {}", path.display()))?;
    std::fs::write(&gitlink, format!("gitdir: {}\n", admin.display()))
        .with_context(|| format!("cannot write {}", gitlink.display()))?;
    crate::failpoint!("start::gitlink_written");
    Ok(admin)
}

/// `<name>` if `admins` has no entry of that name, else the first free `<name>N` (N = 1, 2, ...).
fn free_name(admins: &Path, name: &str) -> String {
    if !admins.join(name).exists() {
        return name.to_string();
    }
    (1u32..).map(|n| format!("{name}{n}")).find(|n| !admins.join(n).exists()).unwrap_or_else(|| name.to_string())
}

/// `base` joined with the relative `rel`, `.` dropped and `..` taking away a component.
fn lexical_join(base: &Path, rel: &Path) -> PathBuf {
    let mut out = base.to_path_buf();
    for c in rel.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gitdir_absolute_or_relative_to_the_entry_and_head() {
        let d = tempfile::tempdir().unwrap();
        let common = d.path().join("repo/.git");
        for (id, gitdir, head) in [
            ("abs", "/somewhere/abs/.git\n", "ref: refs/heads/a\n"),
            ("rel", "../../../../rel/.git\n", "ref:refs/heads/b"),
            ("detached", "", "0123456789012345678901234567890123456789\n"),
        ] {
            let admin = common.join("worktrees").join(id);
            std::fs::create_dir_all(&admin).unwrap();
            std::fs::write(admin.join("gitdir"), gitdir).unwrap();
            std::fs::write(admin.join("HEAD"), head).unwrap();
        }
        let mut got: Vec<(String, Option<PathBuf>, Option<String>)> = linked(&common)
            .unwrap()
            .into_iter()
            .map(|l| {
                (
                    l.admin.file_name().unwrap().to_string_lossy().into_owned(),
                    l.dir().map(Path::to_path_buf),
                    head_ref(&l.admin),
                )
            })
            .collect();
        got.sort();
        assert_eq!(
            got,
            [
                ("abs".to_string(), Some(PathBuf::from("/somewhere/abs")), Some("refs/heads/a".to_string())),
                ("detached".to_string(), None, None),
                ("rel".to_string(), Some(d.path().join("rel")), Some("refs/heads/b".to_string())),
            ]
        );
        assert!(linked(&d.path().join("none")).unwrap().is_empty());
    }
}
