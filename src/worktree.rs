//! One worktree and branch per task attempt, created from an explicit base.
//!
//! Contract:
//! - [`start`] creates branch `hybrid/<id>` (attempt N > 1: `hybrid/<id>@N`) at the base (default:
//!   the target tip, never whatever the user has checked out) and a worktree for it under the
//!   worktree root. Starting a task that exists changes nothing and returns its record. The
//!   task lock serializes concurrent starts of one task; different tasks never wait for each
//!   other. A crash mid-start leaves a `starting` record that the next start repairs (the
//!   half-made worktree is git-hybrid's own and holds no user work).
//! - [`clean`] removes a worktree and its branch only when no work would be lost: uncommitted
//!   changes or commits not yet landed keep both unless `force`, and the report says why. A
//!   forced removal of unlanded commits keeps them reachable at `refs/hybrid/trash/<id>@<N>`.
//!
//! Worktrees are made with git2 (no `git` process, no checkout hooks: a task worktree is not
//! the user's checkout, and the agent's own tooling runs hooks when it commits), except in
//! repositories with filter drivers (git-lfs and the like), where `git worktree add` writes
//! the files; see [`add_worktree`] for the measurement behind this choice. git-hybrid finds a
//! task's admin entry (`<common-dir>/worktrees/*`) by its path, never by name alone, so a
//! user's own worktree is never pruned or reused.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use git2::{BranchType, Oid, Repository, StatusOptions};
use serde::Serialize;

use crate::error::HybridError;
use crate::ledger::trust::{self, TaskWorktree};
use crate::ledger::{TaskRecord, TaskState};
use crate::repo::Project;
use crate::{names, task_id};

/// What `start` is asked to do.
#[derive(Debug, Clone, Default)]
pub struct StartOptions {
    pub id: String,
    /// Revision to branch from; default: the target tip.
    pub base: Option<String>,
    /// Attempt number (default 1).
    pub attempt: Option<u32>,
    pub title: Option<String>,
    /// Claims recorded in the ledger when the record is written (`None`: left as they are).
    pub claims: Option<Vec<String>>,
}

/// What `start` did.
#[derive(Debug, Clone)]
pub struct StartOutcome {
    pub record: TaskRecord,
    /// False when the task already existed and nothing was changed.
    pub created: bool,
}

/// Creates (or finds) a task attempt's branch and worktree.
pub fn start(project: &Project, opts: &StartOptions) -> Result<StartOutcome> {
    task_id::validate(&opts.id)?;
    let attempt = opts.attempt.unwrap_or(1);
    task_id::validate_attempt(attempt)?;
    project.require_commits()?;
    let target = project.target_branch()?;
    project.target_ref()?;
    let base = match &opts.base {
        Some(rev) => project.resolve_commit(rev)?,
        None => project.target_tip()?,
    };
    let root = project.worktree_root();
    check_worktree_root(project, &root)?;

    let ledger = project.ledger();
    let repo = &project.repo;
    let branch = names::branch(&opts.id, attempt);
    let name = names::attempt_name(&opts.id, attempt);
    let path = root.join(&name);
    // A new task whose folder is taken is refused before its lock file is made (checked again
    // under the lock: another start may be making the task meanwhile).
    // The record is read again after the folder: a concurrent start writes its record before
    // it makes the folder, so a folder seen with no record after it is not that start's.
    if ledger.get(&opts.id, attempt)?.is_none() {
        if let Err(e) = refuse_occupied(&path) {
            if ledger.get(&opts.id, attempt)?.is_none() {
                return Err(e);
            }
        }
    }
    let _lock = ledger.lock_task(&opts.id)?;
    crate::failpoint!("start::locked");

    let existing = ledger.get(&opts.id, attempt)?;
    if let Some(rec) = &existing {
        let has_tree = rec.worktree.as_deref().is_some_and(|w| w.join(".git").exists());
        if rec.state != TaskState::Starting && has_tree {
            // The recorded path is where agents run and checkpoints are committed: only the
            // task's own worktree is handed out (trust rule 3).
            if let TaskWorktree::NotOwned(why) = trust::task_worktree(project, rec) {
                let path = ledger.path(&opts.id, attempt).display().to_string();
                return Err(HybridError::Corrupt { path, reason: why }.into());
            }
            return Ok(StartOutcome { record: rec.clone(), created: false });
        }
        if rec.state.is_done() && repo.find_branch(&branch, BranchType::Local).is_err() {
            // Landed and cleaned: there is nothing to recreate.
            return Ok(StartOutcome { record: rec.clone(), created: false });
        }
    }
    let repairing = existing.as_ref().is_some_and(|r| r.state == TaskState::Starting);
    if repairing {
        remove_half_made(project, &name, &path)?;
    } else {
        refuse_occupied(&path)?;
    }

    // Entries for this path whose folder is gone (deleted by hand) are stale: drop them.
    remove_admin_entries(project, &path)?;
    if let Some(other) = checked_out_elsewhere(project, &format!("refs/heads/{branch}")) {
        return Err(HybridError::Repo(format!(
            "branch {branch} is checked out in {}; switch that checkout to another branch first",
            other.display()
        ))
        .into());
    }

    // Adopt an existing branch (e.g. pushed by an agent elsewhere); otherwise create it at base.
    let record_base = match repo.find_branch(&branch, BranchType::Local) {
        Ok(b) => {
            let tip = b.get().target().context("branch has no target")?;
            existing
                .as_ref()
                .map(|r| r.base.clone())
                .unwrap_or_else(|| repo.merge_base(tip, base).unwrap_or(base).to_string())
        }
        Err(_) => {
            remove_stale_ref_lock(project, &branch)?;
            let commit = repo.find_commit(base)?;
            repo.branch(&branch, &commit, false).with_context(|| format!("cannot create branch {branch}"))?;
            crate::failpoint!("start::branch_created");
            base.to_string()
        }
    };

    // A task restarted after `clean` (or whose folder was deleted by hand) keeps its record;
    // its base is the branch's base now, and its state survives unless it was never ready.
    let prior_state = existing.as_ref().map(|r| r.state);
    let mut rec = existing.unwrap_or_else(|| TaskRecord::new(&opts.id, attempt, &branch, &path, &record_base, &target));
    rec.base = record_base;
    rec.state = TaskState::Starting;
    rec.worktree = Some(path.clone());
    if opts.title.is_some() {
        rec.title = opts.title.clone();
    }
    if opts.claims.is_some() {
        rec.claims = opts.claims.clone();
    }
    ledger.put(&rec)?;
    crate::failpoint!("start::recorded");

    std::fs::create_dir_all(&root).with_context(|| format!("cannot create {}", root.display()))?;
    if path.exists() {
        // An empty folder is fine to reuse; libgit2 wants to create it itself.
        let _ = std::fs::remove_dir(&path);
    }
    add_worktree(project, &name, &path, &branch)?;
    crate::failpoint!("start::worktree_added");

    rec.state = match prior_state {
        None | Some(TaskState::Starting) | Some(TaskState::Abandoned) => TaskState::Ready,
        Some(s) => s,
    };
    rec.updated = crate::fsutil::now_rfc3339();
    ledger.put(&rec)?;
    Ok(StartOutcome { record: rec, created: true })
}

/// The worktree root must be a place of git-hybrid's own: never inside a git directory (the
/// common one, or any `.git` folder), never a tracked file or inside one, never a folder that
/// holds tracked files, and, inside the checkout, ignored by git. Anything else is bad
/// input (exit 2), refused before anything is made.
fn check_worktree_root(project: &Project, root: &Path) -> Result<()> {
    let bad = |why: String| -> Result<()> {
        Err(HybridError::Config {
            location: config_location(project),
            message: format!("[project] worktree_root {}: {why}", root.display()),
        }
        .into())
    };
    if root.starts_with(&project.common_dir) {
        return bad(format!("it is inside the git directory {}", project.common_dir.display()));
    }
    if let Ok(rel) = root.strip_prefix(&project.root) {
        if rel.components().any(|c| c.as_os_str().eq_ignore_ascii_case(".git")) {
            return bad("it is inside a .git folder".into());
        }
        if rel.as_os_str().is_empty() {
            return bad("it is the repository's own checkout".into());
        }
        if let Some(tracked) = tracked_at_or_under(project, rel)? {
            return bad(format!("it is inside or holds the tracked path {tracked:?}"));
        }
    }
    if let Ok(rel) = root.strip_prefix(&project.root) {
        let probe = rel.join("probe");
        let ignored = project.repo.is_path_ignored(&probe).unwrap_or(false);
        if !ignored {
            return Err(HybridError::Repo(format!(
                "the worktree root {} is inside the repository and not ignored by git; add it to .gitignore or set [project] worktree_root outside the checkout",
                root.display()
            ))
            .into());
        }
    }
    Ok(())
}

/// A task's worktree folder that exists and is not empty is someone else's (exit 2).
fn refuse_occupied(path: &Path) -> Result<()> {
    if path.exists() && std::fs::read_dir(path).map(|mut d| d.next().is_some()).unwrap_or(true) {
        return Err(HybridError::Repo(format!(
            "{} already exists and is not a worktree git-hybrid knows; move it away or set [project] worktree_root",
            path.display()
        ))
        .into());
    }
    Ok(())
}

/// Where `[project] worktree_root` came from, for messages.
fn config_location(project: &Project) -> String {
    let path = project.config.path.clone().unwrap_or_else(|| project.root.join(crate::config::FILE_NAME));
    path.display().to_string()
}

/// A tracked path (in the main checkout's index) that is `rel` itself, one of its ancestors,
/// or inside it.
fn tracked_at_or_under(project: &Project, rel: &Path) -> Result<Option<String>> {
    let Some(rel) = rel.to_str() else { return Ok(None) };
    let index = project.repo.index().context("cannot read the index")?;
    let mut prefix = String::new();
    for part in rel.split('/') {
        if !prefix.is_empty() {
            prefix.push('/');
        }
        prefix.push_str(part);
        if index.get_path(Path::new(&prefix), 0).is_some() {
            return Ok(Some(prefix));
        }
    }
    let dir = format!("{rel}/");
    if let Ok(i) = index.find_prefix(Path::new(&dir)) {
        if let Some(e) = index.get(i) {
            if e.path.starts_with(dir.as_bytes()) {
                return Ok(Some(String::from_utf8_lossy(&e.path).into_owned()));
            }
        }
    }
    Ok(None)
}

/// Removes `refs/heads/<branch>.lock` left by a process killed while creating the branch.
///
/// Safe because the caller holds the task lock and the branch does not exist: the only writer
/// of a not-yet-existing `hybrid/<id>` branch is a `start` of that task, which takes the same
/// lock, so a lock file seen now belongs to a dead process (git would otherwise refuse to
/// create the branch forever, and the user would have to delete the file by hand).
fn remove_stale_ref_lock(project: &Project, branch: &str) -> Result<()> {
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
/// written in this process: by `populate::fill_empty_worktree` (one writer thread per core)
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
fn add_worktree(project: &Project, name: &str, path: &Path, branch: &str) -> Result<()> {
    let full = format!("refs/heads/{branch}");
    if crate::git::trusted_filter_drivers() {
        // The git CLI, because only git runs filter drivers on checkout.
        let args = [OsStr::new("worktree"), OsStr::new("add"), OsStr::new("-q"), path.as_os_str(), OsStr::new(branch)];
        crate::git::run(&project.root, args)
            .with_context(|| format!("cannot create the worktree {}", path.display()))?;
        return Ok(());
    }

    // 1. The admin entry, complete, renamed into place.
    let tmp = names::worktree_admin_temp(&project.state_dir(), name);
    if tmp.exists() {
        // Left by a start of this task that died (the caller holds the task lock).
        std::fs::remove_dir_all(&tmp).with_context(|| format!("cannot remove {}", tmp.display()))?;
    }
    std::fs::create_dir_all(&tmp).with_context(|| format!("cannot create {}", tmp.display()))?;
    let gitlink = path.join(".git");
    std::fs::write(tmp.join("commondir"), "../..\n")?;
    std::fs::write(tmp.join("gitdir"), format!("{}\n", gitlink.display()))?;
    std::fs::write(tmp.join("HEAD"), format!("ref: {full}\n"))?;
    let admins = project.common_dir.join("worktrees");
    std::fs::create_dir_all(&admins).with_context(|| format!("cannot create {}", admins.display()))?;
    let mut admin_name = free_admin_name(project, name);
    let mut tries = 0;
    let admin = loop {
        let candidate = admins.join(&admin_name);
        // rename(2) refuses a non-empty target, so a name taken meanwhile is never clobbered;
        // check first anyway, because an empty directory would be replaced.
        if !candidate.exists() && std::fs::rename(&tmp, &candidate).is_ok() {
            break candidate;
        }
        tries += 1;
        if tries > 100 {
            anyhow::bail!("cannot find a free worktree entry name for {name} in {}", admins.display());
        }
        admin_name = format!("{name}{tries}");
    };
    crate::failpoint!("start::admin_entry_written");

    // 2. The working folder and its `.git` link.
    std::fs::create_dir(path).with_context(|| format!("cannot create {}", path.display()))?;
    std::fs::write(&gitlink, format!("gitdir: {}\n", admin.display()))
        .with_context(|| format!("cannot write {}", gitlink.display()))?;
    crate::failpoint!("start::gitlink_written");

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
        if crate::populate::fill_empty_worktree(wt, path, &project.common_dir, &tree)? {
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
        Err(_) => std::env::var_os("XDG_CONFIG_HOME")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))
            .map(|d| d.join("git").join("attributes")),
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
fn checked_out_elsewhere(project: &Project, full_ref: &str) -> Option<PathBuf> {
    let wanted = format!("ref: {full_ref}");
    let head_is = |head: &Path| std::fs::read_to_string(head).is_ok_and(|h| h.trim() == wanted);
    if head_is(&project.common_dir.join("HEAD")) {
        return Some(project.root.clone());
    }
    let entries = std::fs::read_dir(project.common_dir.join("worktrees")).ok()?;
    for e in entries.flatten() {
        let admin = e.path();
        let Ok(gitdir) = std::fs::read_to_string(admin.join("gitdir")) else { continue };
        let gitlink = admin.join(gitdir.trim()); // absolute, or relative to the entry
                                                 // An entry whose folder is gone holds nothing checked out (git would prune it).
        if head_is(&admin.join("HEAD")) && gitlink.exists() {
            return Some(gitlink.parent().map(Path::to_path_buf).unwrap_or(gitlink));
        }
    }
    None
}

/// `<name>` if no admin entry has that name, else the first free `<name>N` (N = 1, 2, ...).
fn free_admin_name(project: &Project, name: &str) -> String {
    let dir = project.common_dir.join("worktrees");
    if !dir.join(name).exists() {
        return name.to_string();
    }
    (1u32..).map(|n| format!("{name}{n}")).find(|n| !dir.join(n).exists()).unwrap_or_else(|| name.to_string())
}

/// Admin entries (`<common-dir>/worktrees/*`) whose `gitdir` file points at `<path>/.git`.
fn admin_entries_for(project: &Project, path: &Path) -> Vec<PathBuf> {
    let dir = project.common_dir.join("worktrees");
    let want = crate::repo::normalize(&path.join(".git"));
    let Ok(entries) = std::fs::read_dir(&dir) else { return Vec::new() };
    entries
        .flatten()
        .map(|e| e.path())
        .filter(|admin| {
            let Ok(text) = std::fs::read_to_string(admin.join("gitdir")) else { return false };
            let target = Path::new(text.trim());
            let target = if target.is_absolute() { target.to_path_buf() } else { admin.join(target) };
            crate::repo::normalize(&target) == want
        })
        .collect()
}

/// Removes the admin entries of the worktree at `path` (its folder is gone or being removed).
fn remove_admin_entries(project: &Project, path: &Path) -> Result<()> {
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
fn remove_half_made(project: &Project, name: &str, path: &Path) -> Result<()> {
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

/// Uncommitted changes (modified, staged, untracked; not ignored) in a checkout.
pub fn dirty_paths(worktree: &Path) -> Result<Vec<String>> {
    let repo = Repository::open(worktree).with_context(|| format!("cannot open {}", worktree.display()))?;
    let mut opts = StatusOptions::new();
    opts.include_untracked(true).recurse_untracked_dirs(true).include_ignored(false).exclude_submodules(true);
    let statuses = repo.statuses(Some(&mut opts))?;
    let mut out: Vec<String> = statuses.iter().filter_map(|s| s.path().map(str::to_string)).collect();
    out.sort();
    out.dedup();
    Ok(out)
}

/// Which tasks `clean` considers.
#[derive(Debug, Clone)]
pub enum CleanSelector {
    Task(String),
    Merged,
    All,
}

/// One task attempt in a clean report.
#[derive(Debug, Clone, Serialize)]
pub struct CleanItem {
    pub id: String,
    pub attempt: u32,
    pub worktree: Option<PathBuf>,
    pub branch: String,
    /// Why it was kept (absent for removed items).
    pub reason: Option<String>,
}

/// What `clean` did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct CleanReport {
    pub removed: Vec<CleanItem>,
    pub kept: Vec<CleanItem>,
}

/// Removes task worktrees and branches that hold no unlanded work (all selected ones with `force`).
pub fn clean(project: &Project, selector: &CleanSelector, force: bool) -> Result<CleanReport> {
    let ledger = project.ledger();
    let records = match selector {
        CleanSelector::Task(id) => {
            task_id::validate(id)?;
            let recs = ledger.attempts(id)?;
            if recs.is_empty() {
                return Err(HybridError::UnknownTask(id.clone()).into());
            }
            recs
        }
        // Landed (or empty) tasks, and started ones nobody touched (checked below: no commit,
        // no change), which hold nothing to land either.
        CleanSelector::Merged => {
            ledger.list()?.into_iter().filter(|r| r.state.is_done() || r.state == TaskState::Ready).collect()
        }
        CleanSelector::All => ledger.list()?,
    };
    let target_tip = project.target_tip().ok();
    let mut report = CleanReport::default();
    for rec in records {
        let _lock = ledger.lock_task(&rec.id)?;
        // Re-read under the lock: another process may have changed it.
        let Some(rec) = ledger.get(&rec.id, rec.attempt)? else { continue };
        let branch_ref = format!("refs/heads/{}", rec.branch);
        let branch_tip = project.repo.refname_to_id(&branch_ref).ok();
        let own_tree = trust::task_worktree(project, &rec);
        let tree_present = rec.worktree.as_deref().is_some_and(Path::exists);
        let leftover = rec.worktree.as_deref().map(removal_leftover).is_some_and(|p| p.exists());
        if branch_tip.is_none() && !tree_present && !leftover {
            continue; // already clean
        }
        let item = |reason: Option<String>| CleanItem {
            id: rec.id.clone(),
            attempt: rec.attempt,
            worktree: rec.worktree.clone(),
            branch: rec.branch.clone(),
            reason,
        };
        // A recorded path git does not list as this task's worktree is never removed.
        let own_dir = match &own_tree {
            TaskWorktree::NotOwned(why) => {
                report.kept.push(item(Some(why.clone())));
                continue;
            }
            TaskWorktree::Owned { dir, .. } => Some(crate::repo::canonical(dir)),
            TaskWorktree::Gone => None,
        };
        // Never delete a branch a checkout has out (`git branch -D` refuses too): the main
        // checkout's HEAD would be left on an unborn branch.
        let elsewhere = crate::checkout::checkouts_of(project, &branch_ref)?
            .into_iter()
            .find(|c| Some(crate::repo::canonical(&c.dir)) != own_dir);
        if let Some(other) = elsewhere {
            report.kept.push(item(Some(format!(
                "{} is checked out in {}; switch that checkout to another branch first",
                rec.branch,
                other.dir.display()
            ))));
            continue;
        }
        let mut reasons = Vec::new();
        if let (true, Some(wt)) = (tree_present, own_dir.as_deref()) {
            match dirty_paths(wt) {
                Ok(d) if !d.is_empty() => reasons.push(format!("{} uncommitted change(s) ({})", d.len(), preview(&d))),
                Ok(_) => {}
                Err(e) => reasons.push(format!("cannot read its status: {e:#}")),
            }
        }
        if let Some(tip) = branch_tip {
            if let Some(n) = unlanded_commits(project, &rec, tip, target_tip)? {
                reasons.push(format!("{n} commit(s) not landed on {}", rec.target));
            }
        }
        if !reasons.is_empty() && matches!(selector, CleanSelector::Merged) && !rec.state.is_done() {
            continue; // a started task with work in it is not merged: not `--merged`'s, even forced
        }
        if !reasons.is_empty() && !force {
            report.kept.push(item(Some(format!("{}; use --force to remove anyway", reasons.join(" and ")))));
            continue;
        }
        if let Some(tip) = branch_tip {
            if !reasons.is_empty() {
                let trash = names::trash_ref(&rec.id, rec.attempt);
                project.repo.reference(&trash, tip, true, "git-hybrid clean --force: keep unlanded commits")?;
            }
        }
        crate::failpoint!("clean::checked");
        remove_worktree(project, &rec)?;
        crate::failpoint!("clean::worktree_removed");
        if let Some(tip) = branch_tip {
            delete_branch_cas(project, &rec.branch, tip)?;
        }
        crate::failpoint!("clean::branch_deleted");
        let was_done = rec.state.is_done();
        ledger.update_locked(&rec.id, rec.attempt, |r| {
            r.worktree = None;
            if !was_done && r.state != TaskState::Candidate {
                r.state = TaskState::Abandoned;
            }
        })?;
        report.removed.push(item(None));
    }
    Ok(report)
}

fn preview(paths: &[String]) -> String {
    let mut s = paths.iter().take(3).cloned().collect::<Vec<_>>().join(", ");
    if paths.len() > 3 {
        s.push_str(", ...");
    }
    s
}

/// Number of commits on the branch whose work is not in the target, or `None` when all landed.
fn unlanded_commits(project: &Project, rec: &TaskRecord, tip: Oid, target_tip: Option<Oid>) -> Result<Option<usize>> {
    let repo = &project.repo;
    if let Some(t) = target_tip {
        if crate::git::graph::contains(repo, t, tip).unwrap_or(false) {
            return Ok(None);
        }
    }
    if rec.state.is_done() && rec.tip.as_deref() == Some(&tip.to_string()) {
        return Ok(None);
    }
    let base = Oid::from_str(&rec.base).ok();
    if base == Some(tip) {
        return Ok(None);
    }
    let mut walk = repo.revwalk()?;
    walk.push(tip)?;
    if let Some(b) = base {
        let _ = walk.hide(b);
    }
    if let Some(t) = target_tip {
        let _ = walk.hide(t);
    }
    if let Some(landed) = rec.tip.as_deref().and_then(|s| Oid::from_str(s).ok()) {
        if rec.state.is_done() {
            let _ = walk.hide(landed);
        }
    }
    let n = walk.count();
    if n == 0 {
        return Ok(None);
    }
    // Commits the target has under another id (cherry-picked, rebased, landed by hand) are
    // landed too: what `git cherry` marks `-` (same patch id). Why the git CLI: libgit2 has no
    // patch-id equivalence; git's own definition is the one users check with.
    if let Some(t) = target_tip {
        let out = crate::git::run(&project.root, ["cherry".to_string(), t.to_string(), tip.to_string()]);
        if let Ok(text) = out {
            let unlanded = text.lines().filter(|l| l.starts_with('+')).count();
            return Ok((unlanded > 0).then_some(unlanded));
        }
    }
    Ok(Some(n))
}

/// Removes a task worktree folder and its admin entry (found by path, never by name, so a
/// user's worktree with the same folder name is left alone).
///
/// Only a worktree the trust rules prove is the task's own is touched
/// ([`crate::ledger::trust::task_worktree`]: git lists it as a worktree of the task's branch
/// and it lies under the worktree root); any other recorded path is an error and left alone.
///
/// Resumable: the folder is first renamed, in one step, to its [`removal_leftover`] name beside
/// it, and only then deleted (its admin entry last). A kill while deleting leaves no
/// half-deleted worktree at the task's path (whose missing files would look like uncommitted
/// changes), only the leftover, which the next removal of the task (`clean`, or a landing's
/// cleanup) deletes first.
pub fn remove_worktree(project: &Project, rec: &TaskRecord) -> Result<()> {
    match trust::task_worktree(project, rec) {
        TaskWorktree::Gone => {
            // The entry may have been pruned by git after a kill: a leftover under the
            // worktree root still carries a name only this function makes.
            let root = crate::repo::normalize(&project.worktree_root());
            if let Some(dir) = rec.worktree.as_deref().map(crate::repo::normalize) {
                if dir != root && dir.starts_with(&root) {
                    remove_leftover(&removal_leftover(&dir))?;
                }
            }
            Ok(())
        }
        TaskWorktree::NotOwned(why) => Err(HybridError::Corrupt {
            path: project.ledger().path(&rec.id, rec.attempt).display().to_string(),
            reason: why,
        }
        .into()),
        TaskWorktree::Owned { dir, admin } => {
            let leftover = removal_leftover(&dir);
            remove_leftover(&leftover)?;
            if std::fs::symlink_metadata(&dir).is_ok() {
                // A folder that cannot be renamed (a mount point, say) is deleted where it is.
                let doomed = if std::fs::rename(&dir, &leftover).is_ok() { leftover.clone() } else { dir.clone() };
                crate::failpoint!("worktree::renamed_away");
                std::fs::remove_dir_all(&doomed).with_context(|| format!("cannot remove {}", doomed.display()))?;
            }
            match std::fs::remove_dir_all(&admin) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    Err(e).with_context(|| format!("cannot remove the worktree entry {}", admin.display()))
                }
                _ => Ok(()),
            }
        }
    }
}

/// Where [`remove_worktree`] moves a task worktree while it deletes it: `.<name>.hybrid-removing`
/// beside it (same folder, so the rename never crosses file systems).
pub fn removal_leftover(path: &Path) -> PathBuf {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    path.with_file_name(format!(".{name}.hybrid-removing"))
}

fn remove_leftover(leftover: &Path) -> Result<()> {
    match std::fs::symlink_metadata(leftover) {
        Ok(m) if m.is_dir() => std::fs::remove_dir_all(leftover)
            .with_context(|| format!("cannot remove {} (left by an interrupted removal)", leftover.display())),
        _ => Ok(()), // absent; anything but a folder is not one of ours
    }
}

/// Deletes `refs/heads/<branch>` only if it still points at `expected`. Through [`RefLock`]
/// (the caller holds the task lock, which guards the branch), so a `<branch>.lock` that a
/// killed git-hybrid left on it is recognised and removed, never one of another process.
///
/// [`RefLock`]: crate::checkout::RefLock
pub fn delete_branch_cas(project: &Project, branch: &str, expected: Oid) -> Result<()> {
    let name = format!("refs/heads/{branch}");
    let lock = crate::checkout::RefLock::acquire(project, &name)?;
    crate::failpoint!("branch::delete_locked");
    if lock.current != Some(expected) {
        return Err(HybridError::Repo(format!("{branch} moved while cleaning; left it in place")).into());
    }
    lock.delete()
}
