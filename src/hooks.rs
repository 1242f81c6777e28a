//! git-hybrid's git hooks: installing them next to the user's own, and what they check.
//!
//! Contract:
//! - **Where.** Hooks go into the directory git really runs them from: `core.hooksPath` when it is
//!   set (a relative value resolves against the root of the checkout the command runs in, as git
//!   resolves it against the checkout a hook runs in), else `<git-common-dir>/hooks`, which every
//!   linked worktree shares. [`locate`] computes it; [`doctor`] flags a relative `core.hooksPath`
//!   because each linked worktree then looks in its own folder.
//! - **Chaining.** [`install`] never overwrites a hook it did not write: an existing hook (the
//!   user's own, pre-commit, lefthook, husky) is renamed to `<hook>.hybrid-chained` (same bytes,
//!   same mode, symlinks kept as symlinks) and a small POSIX `sh` wrapper takes its place. The
//!   wrapper runs `git-hybrid hooks run <hook>` and then the chained hook with the same arguments
//!   and stdin (an `sh` hook is sourced in a subshell so its `$0` stays `<hook>`, which husky
//!   relies on). [`uninstall`] renames the chained hook back, so it is restored exactly. Install
//!   is idempotent and refuses (exit 3, nothing changed) when a foreign hook and a chained one both
//!   exist. Every step is one rename, so a crash leaves a state the next install/uninstall fixes.
//! - **Missing binary.** The wrapper looks for `git-hybrid` on `PATH`, then at the absolute path of
//!   the binary that installed it; when neither exists it warns and lets git continue.
//! - **pre-commit** ([`pre_commit`]), in a task worktree (branch `hybrid/<id>[@N]` with a ledger
//!   record): refuses staged paths outside the attempt's claims ([`crate::claims`]: the ones its
//!   ledger record holds, else `hybrid.toml`'s) and staged added lines that look like secrets
//!   ([`crate::secrets`]); then records a checkpoint commit of the index at
//!   `refs/hybrid/checkpoints/<id>[@N]` (parents: HEAD and the previous checkpoint), so every
//!   state an agent committed stays recoverable after resets or amends. Outside task
//!   worktrees it does nothing unless `[hooks] everywhere = true` (then: the secret scan only).
//!   It reads only the index and HEAD with git2 and never spawns git.
//! - **post-merge** ([`post_merge`]): records commits with `Hybrid-Task` trailers that a merge or
//!   pull brought in (`ORIG_HEAD..HEAD`, or at most [`POST_MERGE_WALK_LIMIT`] commits without
//!   `ORIG_HEAD`) as landed in the ledger. It never fails the user's merge: callers turn errors
//!   into warnings, and a task whose lock is busy is skipped (its lander records it anyway).

use std::collections::BTreeSet;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use git2::{DiffOptions, Index, Oid, Repository, Sort};
use serde::{Deserialize, Serialize};

use crate::checkout::index::{Node as CacheNode, RawIndex};
use crate::claims;
use crate::error::HybridError;
use crate::fsutil::write_atomic;
use crate::git::{self, Role};
use crate::ledger::{TaskRecord, TaskState};
use crate::lock::FileLock;
use crate::repo::{canonical, Project};
use crate::secrets::{self, Allowlist, ALLOW_MARKER};
use crate::verify::{self, LandingTrailers};
use crate::worktree;

/// The hooks git-hybrid installs.
pub const HOOKS: [&str; 2] = ["pre-commit", "post-merge"];

/// Suffix of a pre-existing hook kept (and still run) beside the wrapper.
pub const CHAINED_SUFFIX: &str = ".hybrid-chained";

/// First-line marker that identifies a wrapper written by git-hybrid.
const MARKER: &str = "# git-hybrid hook wrapper";

/// Wrapper format; bump when the script text changes in a way doctor should call stale.
const FORMAT: u32 = 1;

/// How far post-merge walks back from HEAD when `ORIG_HEAD` is missing.
pub const POST_MERGE_WALK_LIMIT: usize = 1000;

/// Where git runs hooks for the checkout a command runs in.
#[derive(Debug, Clone, Serialize)]
pub struct Location {
    /// The hooks folder git uses here.
    pub dir: PathBuf,
    /// `core.hooksPath` as configured, when set.
    pub hooks_path: Option<PathBuf>,
    /// Whether `core.hooksPath` is relative (resolved per checkout).
    pub relative: bool,
    /// `<git-common-dir>/hooks`, git's folder when `core.hooksPath` is unset.
    pub default_dir: PathBuf,
    /// Root of the checkout the command ran in.
    pub workdir: PathBuf,
}

/// Finds the hooks folder git uses for the checkout at `cwd` (`git rev-parse --git-path hooks`).
pub fn locate(project: &Project, cwd: &Path) -> Result<Location> {
    let here = Repository::discover(cwd).with_context(|| format!("cannot open the repository at {}", cwd.display()))?;
    let workdir = canonical(here.workdir().unwrap_or(&project.root));
    let default_dir = project.common_dir.join("hooks");
    let cfg = here.config().context("cannot read git config")?;
    let hooks_path = cfg.get_path("core.hooksPath").ok().filter(|p| !p.as_os_str().is_empty());
    let (dir, relative) = match &hooks_path {
        Some(p) if p.is_absolute() => (p.clone(), false),
        Some(p) => (workdir.join(p), true),
        None => (default_dir.clone(), false),
    };
    Ok(Location { dir: normalize(&dir), hooks_path, relative, default_dir, workdir })
}

/// Lexically removes `.` and `..` so paths print and compare well.
fn normalize(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            std::path::Component::CurDir => {}
            std::path::Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

/// The absolute path of the running binary, recorded in wrappers as the fallback.
pub fn current_binary() -> PathBuf {
    std::env::current_exe().map(|p| canonical(&p)).unwrap_or_else(|_| PathBuf::from("git-hybrid"))
}

/// Quotes a string for POSIX sh (single quotes).
fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// The wrapper script installed as `<hooks>/<hook>`.
pub fn wrapper_script(hook: &str, fallback: &Path) -> String {
    let run = if hook == "post-merge" {
        // post-merge must never fail or block: the merge is already done.
        format!("\"$__gh_bin\" hooks run {hook} \"$@\" </dev/null || :")
    } else {
        format!("\"$__gh_bin\" hooks run {hook} \"$@\" </dev/null || exit $?")
    };
    format!(
        r#"#!/bin/sh
{MARKER} ({hook}, format {FORMAT}, git-hybrid {version})
# Installed by `git hybrid hooks install`; `git hybrid hooks uninstall` removes it and puts back
# any hook that was here before (kept beside it as {hook}{CHAINED_SUFFIX}, and still run).
__gh_fallback={fallback}
if command -v git-hybrid >/dev/null 2>&1; then
  __gh_bin=git-hybrid
elif [ -x "$__gh_fallback" ]; then
  __gh_bin=$__gh_fallback
else
  __gh_bin=
fi
if [ -n "$__gh_bin" ]; then
  {run}
else
  echo "git-hybrid: warning: git-hybrid is not on PATH (nor at $__gh_fallback); its {hook} checks were skipped" >&2
fi
case $0 in */*) __gh_chained=${{0%/*}}/{hook}{CHAINED_SUFFIX} ;; *) __gh_chained=./{hook}{CHAINED_SUFFIX} ;; esac
if [ -f "$__gh_chained" ] && [ -x "$__gh_chained" ]; then
  __gh_first=
  IFS= read -r __gh_first <"$__gh_chained" || :
  case $__gh_first in
    '#!/bin/sh' | '#!/usr/bin/env sh')
      # An sh hook is sourced in a subshell so that its "$0" is still the hook's own name.
      unset __gh_bin __gh_fallback __gh_first
      (. "$__gh_chained")
      exit $?
      ;;
  esac
  exec "$__gh_chained" "$@"
fi
exit 0
"#,
        version = crate::VERSION,
        fallback = sh_quote(&fallback.to_string_lossy()),
    )
}

/// Whether file content is a git-hybrid wrapper (any version).
fn is_wrapper(content: &[u8]) -> bool {
    content.split(|b| *b == b'\n').nth(1).is_some_and(|l| l.starts_with(MARKER.as_bytes()))
}

/// The state of one hook in one folder.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum HookState {
    /// Nothing there.
    Absent,
    /// Our current wrapper, executable.
    Installed,
    /// Our wrapper from another version or binary path.
    Stale,
    /// Our wrapper without the executable bit (git skips it).
    NotExecutable,
    /// Someone else's hook; git-hybrid's checks do not run.
    Foreign,
}

impl HookState {
    pub fn as_str(self) -> &'static str {
        match self {
            HookState::Absent => "absent",
            HookState::Installed => "installed",
            HookState::Stale => "stale",
            HookState::NotExecutable => "not-executable",
            HookState::Foreign => "foreign",
        }
    }
}

/// One hook as found on disk.
#[derive(Debug, Clone, Serialize)]
pub struct HookInfo {
    pub name: String,
    pub path: PathBuf,
    pub state: HookState,
    /// The chained pre-existing hook, when there is one.
    pub chained: Option<PathBuf>,
}

fn inspect(dir: &Path, hook: &str, expected: &str) -> HookInfo {
    let path = dir.join(hook);
    let chained_path = dir.join(format!("{hook}{CHAINED_SUFFIX}"));
    let chained = std::fs::symlink_metadata(&chained_path).ok().map(|_| chained_path);
    let state = match std::fs::symlink_metadata(&path) {
        Err(_) => HookState::Absent,
        Ok(m) if !m.file_type().is_file() => HookState::Foreign,
        Ok(m) => match std::fs::read(&path) {
            Ok(c) if is_wrapper(&c) => {
                if m.permissions().mode() & 0o111 == 0 {
                    HookState::NotExecutable
                } else if c != expected.as_bytes() {
                    HookState::Stale
                } else {
                    HookState::Installed
                }
            }
            _ => HookState::Foreign,
        },
    };
    HookInfo { name: hook.to_string(), path, state, chained }
}

/// Writes an executable file atomically (temp file with mode 0755 + rename).
fn write_executable(path: &Path, data: &[u8]) -> Result<()> {
    let dir = path.parent().context("hook path has no folder")?;
    let mut tmp = tempfile::Builder::new()
        .prefix(".git-hybrid-tmp-")
        .tempfile_in(dir)
        .with_context(|| format!("cannot create a temporary file in {}", dir.display()))?;
    tmp.write_all(data).context("cannot write the hook")?;
    tmp.as_file().set_permissions(std::fs::Permissions::from_mode(0o755)).context("cannot make the hook executable")?;
    tmp.as_file().sync_all().context("cannot sync the hook")?;
    tmp.persist(path).with_context(|| format!("cannot install {}", path.display()))?;
    Ok(())
}

/// The record of folders git-hybrid installed into (`<common>/hybrid/hooks.json`), so doctor
/// finds wrappers that a later `core.hooksPath` change left behind.
#[derive(Debug, Default, Serialize, Deserialize)]
struct InstallRecord {
    #[serde(default)]
    dirs: Vec<PathBuf>,
}

fn record_path(project: &Project) -> PathBuf {
    project.state_dir().join("hooks.json")
}

fn read_record(project: &Project) -> InstallRecord {
    std::fs::read(record_path(project)).ok().and_then(|b| serde_json::from_slice(&b).ok()).unwrap_or_default()
}

fn write_record(project: &Project, rec: &InstallRecord) -> Result<()> {
    let mut json = serde_json::to_vec_pretty(rec)?;
    json.push(b'\n');
    write_atomic(&record_path(project), &json)
}

/// What install or uninstall did to one hook.
#[derive(Debug, Clone, Serialize)]
pub struct HookChange {
    pub name: String,
    pub path: PathBuf,
    /// `installed`, `updated`, `unchanged`, `removed`, `restored`, `not-installed`, `left-foreign`.
    pub action: String,
    /// The pre-existing hook now chained (install) or put back (uninstall).
    pub chained: Option<PathBuf>,
}

/// The result of install or uninstall.
#[derive(Debug, Clone, Serialize)]
pub struct InstallReport {
    pub location: Location,
    pub hooks: Vec<HookChange>,
    /// Things the user should know (relative hooksPath, hooks left in place).
    pub warnings: Vec<String>,
}

/// Installs the wrappers into the hooks folder git uses here (see the module contract).
pub fn install(project: &Project, cwd: &Path) -> Result<InstallReport> {
    let loc = locate(project, cwd)?;
    let bin = current_binary();
    let mut refusals = Vec::new();
    let mut infos = Vec::new();
    for hook in HOOKS {
        let expected = wrapper_script(hook, &bin);
        let info = inspect(&loc.dir, hook, &expected);
        if info.state == HookState::Foreign {
            if let Some(c) = &info.chained {
                refusals.push(format!("{} (and {})", info.path.display(), c.display()));
            }
        }
        infos.push((info, expected));
    }
    if !refusals.is_empty() {
        return Err(HybridError::LocalChanges {
            message: "a hook that git-hybrid did not write sits beside an already chained one; move one of them away (nothing was changed)".into(),
            paths: refusals,
        }
        .into());
    }
    std::fs::create_dir_all(&loc.dir).with_context(|| format!("cannot create {}", loc.dir.display()))?;
    let mut changes = Vec::new();
    for (info, expected) in infos {
        let chained_path = loc.dir.join(format!("{}{CHAINED_SUFFIX}", info.name));
        let action = match info.state {
            HookState::Installed => "unchanged",
            HookState::Stale | HookState::NotExecutable => {
                write_executable(&info.path, expected.as_bytes())?;
                "updated"
            }
            HookState::Absent => {
                write_executable(&info.path, expected.as_bytes())?;
                "installed"
            }
            HookState::Foreign => {
                // Keep the user's hook byte for byte (rename keeps content, mode and symlinks).
                std::fs::rename(&info.path, &chained_path)
                    .with_context(|| format!("cannot move {} to {}", info.path.display(), chained_path.display()))?;
                write_executable(&info.path, expected.as_bytes())?;
                "installed"
            }
        };
        let chained = std::fs::symlink_metadata(&chained_path).ok().map(|_| chained_path);
        changes.push(HookChange { name: info.name, path: info.path, action: action.into(), chained });
    }
    let mut rec = read_record(project);
    if !rec.dirs.contains(&loc.dir) {
        rec.dirs.push(loc.dir.clone());
        write_record(project, &rec)?;
    }
    let mut warnings = Vec::new();
    if loc.relative {
        warnings.push(relative_warning(&loc));
    }
    Ok(InstallReport { location: loc, hooks: changes, warnings })
}

fn relative_warning(loc: &Location) -> String {
    format!(
        "core.hooksPath is relative ({}): git looks for hooks in that folder of each checkout, so linked worktrees \
         (task worktrees included) do not run these hooks; make it absolute with `git config core.hooksPath {}` and run \
         `git hybrid hooks install` again",
        loc.hooks_path.as_deref().unwrap_or(Path::new("")).display(),
        sh_quote(&loc.dir.to_string_lossy())
    )
}

/// Every folder that may hold our wrappers: the one in use, git's default, and recorded ones.
fn candidate_dirs(project: &Project, loc: &Location) -> Vec<PathBuf> {
    let mut dirs = vec![loc.dir.clone()];
    for d in std::iter::once(loc.default_dir.clone()).chain(read_record(project).dirs) {
        if !dirs.contains(&d) {
            dirs.push(d);
        }
    }
    dirs
}

/// Removes the wrappers (from every folder git-hybrid installed into) and restores chained hooks.
pub fn uninstall(project: &Project, cwd: &Path) -> Result<InstallReport> {
    let loc = locate(project, cwd)?;
    let mut changes = Vec::new();
    let mut warnings = Vec::new();
    for dir in candidate_dirs(project, &loc) {
        let in_use = dir == loc.dir;
        for hook in HOOKS {
            let info = inspect(&dir, hook, "");
            let chained = info.chained.clone();
            let action = match (info.state, &chained) {
                (HookState::Foreign, _) => {
                    if in_use || chained.is_some() {
                        warnings.push(format!(
                            "{} is not git-hybrid's wrapper; left it in place{}",
                            info.path.display(),
                            chained.as_ref().map(|c| format!(" (and {})", c.display())).unwrap_or_default()
                        ));
                        "left-foreign"
                    } else {
                        continue;
                    }
                }
                (HookState::Absent, None) => {
                    if in_use {
                        "not-installed"
                    } else {
                        continue;
                    }
                }
                (_, Some(c)) => {
                    // One rename puts the original back over the wrapper (or into the gap a
                    // crashed install left).
                    std::fs::rename(c, &info.path)
                        .with_context(|| format!("cannot restore {} from {}", info.path.display(), c.display()))?;
                    "restored"
                }
                (_, None) => {
                    std::fs::remove_file(&info.path)
                        .with_context(|| format!("cannot remove {}", info.path.display()))?;
                    "removed"
                }
            };
            changes.push(HookChange { name: hook.to_string(), path: info.path, action: action.into(), chained });
        }
    }
    let mut rec = read_record(project);
    if !rec.dirs.is_empty() {
        rec.dirs.clear();
        write_record(project, &rec)?;
    }
    Ok(InstallReport { location: loc, hooks: changes, warnings })
}

/// What `hooks status` reports.
#[derive(Debug, Clone, Serialize)]
pub struct StatusReport {
    pub location: Location,
    pub binary: PathBuf,
    pub hooks: Vec<HookInfo>,
    /// Our wrappers in folders git does not use here.
    pub shadowed: Vec<HookInfo>,
}

/// The hooks in the folder git uses here, and any of ours it ignores.
pub fn status(project: &Project, cwd: &Path) -> Result<StatusReport> {
    let loc = locate(project, cwd)?;
    let bin = current_binary();
    let hooks = HOOKS.iter().map(|h| inspect(&loc.dir, h, &wrapper_script(h, &bin))).collect();
    let mut shadowed = Vec::new();
    for dir in candidate_dirs(project, &loc).into_iter().skip(1) {
        for h in HOOKS {
            let info = inspect(&dir, h, &wrapper_script(h, &bin));
            if !matches!(info.state, HookState::Absent | HookState::Foreign) {
                shadowed.push(info);
            }
        }
    }
    Ok(StatusReport { location: loc, binary: bin, hooks, shadowed })
}

/// One problem doctor found, with the fix.
#[derive(Debug, Clone, Serialize)]
pub struct Problem {
    /// `missing`, `stale`, `not-executable`, `shadowed`, `relative-hooks-path`.
    pub kind: String,
    pub hook: Option<String>,
    pub path: Option<PathBuf>,
    pub message: String,
    pub fix: String,
}

/// What `hooks doctor` reports.
#[derive(Debug, Clone, Serialize)]
pub struct DoctorReport {
    pub location: Location,
    pub problems: Vec<Problem>,
}

/// Finds missing, stale, shadowed and non-executable hooks and a relative `core.hooksPath`.
pub fn doctor(project: &Project, cwd: &Path) -> Result<DoctorReport> {
    let st = status(project, cwd)?;
    let loc = st.location.clone();
    let mut problems = Vec::new();
    for h in &st.hooks {
        let (kind, message, fix) = match h.state {
            HookState::Installed => continue,
            HookState::Absent => (
                "missing",
                format!("{} is not installed ({} does not exist)", h.name, h.path.display()),
                "run `git hybrid hooks install`".to_string(),
            ),
            HookState::Foreign => (
                "missing",
                format!("{} holds another hook, so git-hybrid's {} checks do not run", h.path.display(), h.name),
                "run `git hybrid hooks install` (it keeps that hook and chains it)".to_string(),
            ),
            HookState::Stale => (
                "stale",
                format!(
                    "{} was written by another git-hybrid version or binary path (this one is {} at {})",
                    h.path.display(),
                    crate::VERSION,
                    st.binary.display()
                ),
                "run `git hybrid hooks install` to rewrite it".to_string(),
            ),
            HookState::NotExecutable => (
                "not-executable",
                format!("{} is not executable, so git skips it", h.path.display()),
                format!("run `chmod +x {}` or `git hybrid hooks install`", sh_quote(&h.path.to_string_lossy())),
            ),
        };
        problems.push(Problem {
            kind: kind.into(),
            hook: Some(h.name.clone()),
            path: Some(h.path.clone()),
            message,
            fix,
        });
    }
    for h in &st.shadowed {
        let why = match &loc.hooks_path {
            Some(p) => format!("core.hooksPath is {}, so git ignores {}", p.display(), h.path.display()),
            None => {
                format!("core.hooksPath is unset, so git uses {} and ignores {}", loc.dir.display(), h.path.display())
            }
        };
        problems.push(Problem {
            kind: "shadowed".into(),
            hook: Some(h.name.clone()),
            path: Some(h.path.clone()),
            message: format!("git-hybrid's {} wrapper is shadowed: {why}", h.name),
            fix: "run `git hybrid hooks uninstall` then `git hybrid hooks install` to move it where git looks".into(),
        });
    }
    if loc.relative {
        let mut broken = Vec::new();
        for wt in linked_worktree_roots(project) {
            let rel = loc.hooks_path.as_deref().unwrap_or(Path::new(""));
            let dir = normalize(&wt.join(rel));
            let bin = current_binary();
            if HOOKS.iter().any(|h| inspect(&dir, h, &wrapper_script(h, &bin)).state != HookState::Installed) {
                broken.push(wt.display().to_string());
            }
        }
        let detail = if broken.is_empty() {
            "worktrees created later (task worktrees) will not run the hooks".to_string()
        } else {
            format!("these linked worktrees do not run the hooks: {}", broken.join(", "))
        };
        problems.push(Problem {
            kind: "relative-hooks-path".into(),
            hook: None,
            path: loc.hooks_path.clone(),
            message: format!(
                "core.hooksPath is relative ({}), so git resolves it inside each checkout; {detail}",
                loc.hooks_path.as_deref().unwrap_or(Path::new("")).display()
            ),
            fix: format!(
                "run `git config core.hooksPath {}` then `git hybrid hooks install`",
                sh_quote(&loc.dir.to_string_lossy())
            ),
        });
    }
    Ok(DoctorReport { location: loc, problems })
}

/// Roots of the linked worktrees that exist on disk.
fn linked_worktree_roots(project: &Project) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(names) = project.repo.worktrees() {
        for name in names.iter().flatten() {
            if let Ok(wt) = project.repo.find_worktree(name) {
                if wt.path().exists() {
                    out.push(canonical(wt.path()));
                }
            }
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// The hooks themselves.

/// Opens the repository a hook runs for: `$GIT_DIR` (git exports it to hooks), else discovery.
fn open_here(cwd: &Path) -> Result<Repository> {
    match std::env::var_os("GIT_DIR").filter(|v| !v.is_empty()) {
        Some(d) => {
            let p = cwd.join(PathBuf::from(d));
            Repository::open(&p).with_context(|| format!("cannot open the repository at {}", p.display()))
        }
        None => Repository::discover(cwd).with_context(|| format!("cannot open the repository at {}", cwd.display())),
    }
}

/// The task attempt a branch belongs to: `hybrid/<id>` is attempt 1, `hybrid/<id>@<N>` attempt N.
pub fn parse_task_branch(branch: &str) -> Option<(String, u32)> {
    let rest = branch.strip_prefix("refs/heads/").unwrap_or(branch).strip_prefix("hybrid/")?;
    let (id, attempt) = match rest.rsplit_once('@') {
        Some((id, n)) => (id, n.parse::<u32>().ok().filter(|n| *n > 1)?),
        None => (rest, 1),
    };
    crate::task_id::validate(id).ok()?;
    Some((id.to_string(), attempt))
}

/// The branch HEAD names (also on an unborn branch).
fn head_branch(repo: &Repository) -> Option<String> {
    repo.find_reference("HEAD").ok()?.symbolic_target().map(str::to_string)
}

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
    let task = head_branch(&repo).and_then(|b| parse_task_branch(&b));
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
    let index_tree_id = index_tree(&repo, cwd)?;
    let index_tree = repo.find_tree(index_tree_id)?;
    let mut changes = Vec::new();
    tree_changes(&repo, head_tree.as_ref(), Some(&index_tree), "", &mut changes)?;
    let mut staged: BTreeSet<String> = changes.iter().map(|c| c.path.clone()).collect();
    // Concluding a merge: paths taken unchanged from the other side are not this task's change.
    if let Ok(merge_head) = repo.revparse_single("MERGE_HEAD").and_then(|o| o.peel_to_tree()) {
        let mut other = Vec::new();
        tree_changes(&repo, Some(&merge_head), Some(&index_tree), "", &mut other)?;
        let changed_vs_other: BTreeSet<String> = other.into_iter().map(|c| c.path).collect();
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
        let name = format!("refs/hybrid/checkpoints/{}", worktree::worktree_name(id, *n));
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

/// The index being committed as a tree id, as libgit2's `write_tree_to` writes it: read with
/// [`RawIndex`] (no collision-detecting SHA-1 over the whole index, no per-entry copies) when it
/// parses and holds nothing unusual, else through libgit2 itself.
fn index_tree(repo: &Repository, cwd: &Path) -> Result<Oid> {
    if let Some(id) = fast_index_tree(repo, cwd)? {
        return Ok(id);
    }
    let mut index = open_index(repo, cwd)?;
    index.write_tree_to(repo).context("cannot write the index as a tree")
}

/// The file [`open_index`] reads.
fn index_file(repo: &Repository, cwd: &Path) -> PathBuf {
    match std::env::var_os("GIT_INDEX_FILE").filter(|v| !v.is_empty()) {
        Some(f) => cwd.join(PathBuf::from(f)),
        None => repo.path().join("index"),
    }
}

/// [`index_tree`] from the raw index; `Ok(None)` when libgit2 must decide (unreadable or
/// unusual index: other versions, conflicts, extended flags such as intent-to-add, a cache tree
/// that does not parse, names libgit2 would refuse or modes it does not write).
fn fast_index_tree(repo: &Repository, cwd: &Path) -> Result<Option<Oid>> {
    let Ok(data) = std::fs::read(index_file(repo, cwd)) else { return Ok(None) };
    let Ok(Ok(idx)) = RawIndex::parse(data) else { return Ok(None) };
    let Ok(cache) = idx.cache_tree() else { return Ok(None) };
    for i in 0..idx.entry_count() {
        if idx.flags_at(i) & 0x7000 != 0 || !plain_path(idx.path_at(i)) {
            return Ok(None); // a conflict stage, an extended flag, or a path libgit2 may refuse
        }
    }
    let odb = repo.odb().context("cannot open the object database")?;
    Ok(write_index_dir(&odb, &idx, cache.as_ref(), b"", 0)?.map(|(id, _)| id))
}

/// Whether every component of an index path is one libgit2 accepts on every platform setting:
/// git's rules ([`crate::safe_path`]), and plain ASCII without the characters Windows forbids.
fn plain_path(path: &[u8]) -> bool {
    path.is_ascii() && !path.iter().any(|b| b"\\:<>\"|?*".contains(b)) && crate::safe_path::is_safe(path, false)
}

/// The tree of the index folder `prefix` (`""` or ending in `/`), whose entries start at
/// `start`, and the first entry after it — libgit2's `write_tree`: a valid cache-tree node is
/// reused as is; otherwise the folder's tree is built from its entries and subfolders.
fn write_index_dir(
    odb: &git2::Odb<'_>,
    idx: &RawIndex,
    node: Option<&CacheNode>,
    prefix: &[u8],
    start: usize,
) -> Result<Option<(Oid, usize)>> {
    let end = start + (start..idx.entry_count()).take_while(|i| idx.path_at(*i).starts_with(prefix)).count();
    if let Some((_, id)) = node.and_then(|n| n.valid) {
        return Ok(Some((Oid::from_bytes(&id)?, end)));
    }
    // (name, mode, id, is a folder)
    let mut items: Vec<(&[u8], u32, Oid, bool)> = Vec::new();
    let mut i = start;
    while i < end {
        let path = idx.path_at(i);
        let rest = &path[prefix.len()..];
        match rest.iter().position(|b| *b == b'/') {
            Some(slash) => {
                let name = &rest[..slash];
                let child = node.and_then(|n| n.children.iter().find(|c| c.name == name));
                let sub = &path[..prefix.len() + slash + 1];
                let Some((id, next)) = write_index_dir(odb, idx, child, sub, i)? else { return Ok(None) };
                items.push((name, 0o40000, id, true));
                i = next;
            }
            None => {
                let e = idx.entry_at(i);
                if !matches!(e.mode, 0o100644 | 0o100755 | 0o120000 | 0o160000) {
                    return Ok(None);
                }
                items.push((rest, e.mode, e.id, false));
                i += 1;
            }
        }
    }
    // git's tree order: names compared as if folders ended in '/'.
    let key = |(name, _, _, dir): &(&[u8], u32, Oid, bool)| -> Vec<u8> {
        let mut k = name.to_vec();
        if *dir {
            k.push(b'/');
        }
        k
    };
    items.sort_by_cached_key(key);
    if items.windows(2).any(|w| w[0].0 == w[1].0) {
        return Ok(None); // a file and a folder of one name: libgit2 keeps one, refuse to guess
    }
    let mut buf = Vec::with_capacity(items.len() * 48);
    for (name, mode, id, _) in &items {
        buf.extend_from_slice(format!("{mode:o} ").as_bytes());
        buf.extend_from_slice(name);
        buf.push(0);
        buf.extend_from_slice(id.as_bytes());
    }
    let id = odb.write(git2::ObjectType::Tree, &buf).context("cannot write the index as a tree")?;
    Ok(Some((id, end)))
}

/// The index being committed: `$GIT_INDEX_FILE` (git points it at a temporary index for
/// `commit -a` and `commit <paths>`), else the repository's index.
fn open_index(repo: &Repository, cwd: &Path) -> Result<Index> {
    match std::env::var_os("GIT_INDEX_FILE").filter(|v| !v.is_empty()) {
        Some(f) => {
            let p = cwd.join(PathBuf::from(f));
            Index::open(&p).with_context(|| format!("cannot read the index {}", p.display()))
        }
        None => repo.index().context("cannot read the index"),
    }
}

/// One path whose content differs between two trees (`None`: absent, or not a file, on that side).
#[derive(Debug, Clone)]
struct Change {
    path: String,
    old: Option<Oid>,
    new: Option<Oid>,
}

/// A tree entry reduced to what comparing needs: id, kind, mode.
type Entry = (Oid, Option<git2::ObjectType>, i32);

fn entries(t: Option<&git2::Tree<'_>>) -> std::collections::BTreeMap<Vec<u8>, Entry> {
    t.map(|t| t.iter().map(|e| (e.name_bytes().to_vec(), (e.id(), e.kind(), e.filemode()))).collect())
        .unwrap_or_default()
}

/// Paths that differ between two trees. Subtrees with equal ids are skipped without being
/// read, so the cost follows the size of the change, not of the repository. Submodules
/// (commits in the tree) count as changed paths with no blob.
fn tree_changes(
    repo: &Repository,
    a: Option<&git2::Tree<'_>>,
    b: Option<&git2::Tree<'_>>,
    prefix: &str,
    out: &mut Vec<Change>,
) -> Result<()> {
    let (ea, eb) = (entries(a), entries(b));
    let names: BTreeSet<&Vec<u8>> = ea.keys().chain(eb.keys()).collect();
    let is_tree = |e: Option<&Entry>| e.is_some_and(|e| e.1 == Some(git2::ObjectType::Tree));
    let blob = |e: Option<&Entry>| e.filter(|e| e.1 == Some(git2::ObjectType::Blob)).map(|e| e.0);
    for name in names {
        let (x, y) = (ea.get(name), eb.get(name));
        if x == y {
            continue;
        }
        let path = format!("{prefix}{}", String::from_utf8_lossy(name));
        if is_tree(x) || is_tree(y) {
            let tx = if is_tree(x) { x.map(|e| repo.find_tree(e.0)).transpose()? } else { None };
            let ty = if is_tree(y) { y.map(|e| repo.find_tree(e.0)).transpose()? } else { None };
            tree_changes(repo, tx.as_ref(), ty.as_ref(), &format!("{path}/"), out)?;
            // A file replaced by a folder (or the reverse) also changes the file's own path.
            if (x.is_some() && !is_tree(x)) || (y.is_some() && !is_tree(y)) {
                let old = if is_tree(x) { None } else { blob(x) };
                let new = if is_tree(y) { None } else { blob(y) };
                out.push(Change { path, old, new });
            }
        } else {
            out.push(Change { path, old: blob(x), new: blob(y) });
        }
    }
    Ok(())
}

/// Added lines in staged files that look like secrets, minus allowed ones.
fn scan_added_lines(
    repo: &Repository,
    changes: &[Change],
    staged: &BTreeSet<String>,
    allow: &Allowlist,
) -> Result<Vec<SecretHit>> {
    let mut hits = Vec::new();
    let mut opts = DiffOptions::new();
    opts.context_lines(0);
    for c in changes.iter().filter(|c| staged.contains(&c.path)) {
        let Some(new) = c.new else { continue };
        let new_blob = repo.find_blob(new)?;
        if new_blob.is_binary() {
            continue;
        }
        let old_blob = c.old.map(|o| repo.find_blob(o)).transpose()?;
        let old_content = old_blob.as_ref().map(|b| b.content()).unwrap_or(&[]);
        let patch = git2::Patch::from_buffers(old_content, None, new_blob.content(), None, Some(&mut opts))
            .with_context(|| format!("cannot diff {}", c.path))?;
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
                        hits.push(SecretHit { path: c.path.clone(), line: line_no, kind: f.kind.to_string() });
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

/// One landing post-merge recorded (or why not).
#[derive(Debug, Clone, Serialize)]
pub struct PostMergeItem {
    pub task: String,
    pub attempt: u32,
    pub commit: String,
    /// `recorded`, `known`, `busy`, `disagrees`, `invalid`.
    pub action: String,
}

/// The post-merge hook: record landings a merge or pull brought in (see the module contract).
pub fn post_merge(cwd: &Path, squash: bool) -> Result<Vec<PostMergeItem>> {
    if squash {
        return Ok(Vec::new()); // a squash merge moves no commits onto the branch
    }
    let repo = open_here(cwd)?;
    let Some(head) = repo.head().ok().and_then(|h| h.target()) else { return Ok(Vec::new()) };
    let orig = repo.revparse_single("ORIG_HEAD").ok().and_then(|o| o.peel_to_commit().ok()).map(|c| c.id());
    let mut walk = repo.revwalk()?;
    walk.set_sorting(Sort::TOPOLOGICAL | Sort::REVERSE)?;
    walk.push(head)?;
    let limit = match orig {
        Some(o) => {
            walk.hide(o)?;
            usize::MAX
        }
        None => POST_MERGE_WALK_LIMIT,
    };
    let mut found: Vec<(Oid, LandingTrailers, i64)> = Vec::new();
    for oid in walk.take(limit) {
        let oid = oid?;
        let commit = repo.find_commit(oid)?;
        let msg = String::from_utf8_lossy(commit.message_bytes());
        if !msg.contains("Hybrid-Task") {
            continue;
        }
        if let Some(t) = verify::parse_trailers(&msg) {
            found.push((oid, t, commit.committer().when().seconds()));
        }
    }
    if found.is_empty() {
        return Ok(Vec::new());
    }
    let project = Project::open(cwd)?;
    let ledger = project.ledger();
    let target = project
        .target_branch()
        .ok()
        .or_else(|| head_branch(&repo).map(|b| b.trim_start_matches("refs/heads/").to_string()))
        .unwrap_or_else(|| "HEAD".into());
    let mut items = Vec::new();
    for (oid, t, when) in found {
        let attempt = t.attempt.unwrap_or(1);
        let mut item = PostMergeItem { task: t.task.clone(), attempt, commit: oid.to_string(), action: String::new() };
        if crate::task_id::validate(&t.task).is_err() || attempt == 0 {
            item.action = "invalid".into();
            items.push(item);
            continue;
        }
        // Never wait: a lander holding the task lock records this landing itself.
        let Some(_lock) = FileLock::try_acquire(&ledger.task_lock_path(&t.task))? else {
            item.action = "busy".into();
            items.push(item);
            continue;
        };
        let sha = oid.to_string();
        let landed_at = humantime::format_rfc3339_seconds(
            std::time::UNIX_EPOCH + std::time::Duration::from_secs(when.max(0) as u64),
        )
        .to_string();
        item.action = match ledger.get(&t.task, attempt)? {
            Some(rec) if rec.merge_sha.as_deref() == Some(sha.as_str()) && rec.state == TaskState::Landed => "known",
            Some(rec) if rec.merge_sha.as_deref().is_some_and(|m| m != sha) => "disagrees",
            Some(_) => {
                ledger.update_locked(&t.task, attempt, |r| {
                    r.state = TaskState::Landed;
                    r.merge_sha = Some(sha.clone());
                    r.merge_base = t.base.clone().or(r.merge_base.take());
                    r.tip = t.tip.clone().or(r.tip.take());
                    r.landed_at.get_or_insert(landed_at.clone());
                })?;
                "recorded"
            }
            None => {
                let branch = worktree::branch_name(&t.task, attempt);
                let base = t.base.clone().unwrap_or_default();
                let mut rec = TaskRecord::new(&t.task, attempt, &branch, Path::new(""), &base, &target);
                rec.worktree = None;
                rec.state = TaskState::Landed;
                rec.merge_sha = Some(sha.clone());
                rec.merge_base = t.base.clone();
                rec.tip = t.tip.clone();
                rec.landed_at = Some(landed_at);
                rec.extra.insert("recorded_by".into(), serde_json::json!("post-merge"));
                ledger.put(&rec)?;
                "recorded"
            }
        }
        .to_string();
        items.push(item);
    }
    Ok(items)
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::test_support::git;

    fn put(dir: &Path, p: &str, content: &str) {
        let f = dir.join(p);
        std::fs::create_dir_all(f.parent().unwrap()).unwrap();
        std::fs::write(f, content).unwrap();
    }

    /// The raw-index tree id next to libgit2's and git's (`None`: the fast path declined).
    fn compare(dir: &Path) -> Option<Oid> {
        let repo = Repository::open(dir).unwrap();
        let fast = fast_index_tree(&repo, dir).unwrap();
        let mut index = repo.index().unwrap();
        let libgit2 = index.write_tree_to(&repo).unwrap();
        if let Some(f) = fast {
            assert_eq!(f, libgit2, "raw-index tree differs from libgit2's");
        }
        assert_eq!(libgit2.to_string(), git(dir, &["write-tree"]).trim());
        fast
    }

    /// Nested folders, exec bits, symlinks, a gitlink, names that sort differently as folders,
    /// staged adds/modifications/deletions with a partly invalidated cache tree, and an index
    /// without any cache tree: the raw-index tree is libgit2's, byte for byte.
    #[test]
    fn raw_index_tree_matches_libgit2() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path();
        git(dir, &["init", "-q"]);
        for p in [
            "a.txt",
            "a-b",
            "a/x",
            "a/b/c.txt",
            "a/b/d/e.txt",
            "b/y",
            "b.c/z",
            "c/d/e/f/g",
            "z",
            ".github/w.yml",
            ".gitattributes",
        ] {
            put(dir, p, p);
        }
        put(dir, "run.sh", "#!/bin/sh\n");
        std::os::unix::fs::symlink("a/x", dir.join("link")).unwrap();
        std::os::unix::fs::symlink("missing", dir.join("b/dangling")).unwrap();
        git(dir, &["add", "-A"]);
        git(dir, &["update-index", "--chmod=+x", "run.sh"]);
        let head_like = git(dir, &["write-tree"]);
        let commit = git(dir, &["commit-tree", head_like.trim(), "-m", "sub"]);
        git(dir, &["update-index", "--add", "--cacheinfo", &format!("160000,{},sub/mod", commit.trim())]);
        git(dir, &["commit", "-q", "-m", "c"]);
        // Fully valid cache tree (git commit writes it).
        assert!(compare(dir).is_some());
        // Modify, add, delete: git add invalidates the nodes on the way.
        put(dir, "a/b/c.txt", "changed");
        put(dir, "c/d/new/h", "new");
        put(dir, "a/b.txt", "sorts before a/b/");
        git(dir, &["add", "a/b/c.txt", "c/d/new/h", "a/b.txt"]);
        git(dir, &["rm", "-q", "--cached", "b.c/z", "z"]);
        git(dir, &["update-index", "--chmod=-x", "run.sh"]);
        let raw = RawIndex::parse(std::fs::read(dir.join(".git/index")).unwrap()).unwrap().unwrap();
        let root = raw.cache_tree().unwrap().unwrap();
        let names: Vec<_> =
            root.children.iter().map(|c| (String::from_utf8_lossy(&c.name).into_owned(), c.valid.is_some())).collect();
        assert!(root.valid.is_none() && root.children.iter().any(|c| c.name == b"b" && c.valid.is_some()), "{names:?}");
        assert!(compare(dir).is_some());
        // No TREE extension at all: every folder is built from the entries.
        let listed = git(dir, &["ls-files", "-s"]);
        std::fs::remove_file(dir.join(".git/index")).unwrap();
        let mut child = std::process::Command::new("git")
            .args(["update-index", "--index-info"])
            .current_dir(dir)
            .stdin(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(listed.as_bytes()).unwrap();
        assert!(child.wait().unwrap().success());
        let raw = RawIndex::parse(std::fs::read(dir.join(".git/index")).unwrap()).unwrap().unwrap();
        assert!(raw.cache_tree().unwrap().is_none(), "a fresh index has no cache tree");
        assert!(compare(dir).is_some());
        git(dir, &["add", "-A"]);
        assert!(compare(dir).is_some());
        // An empty index.
        git(dir, &["rm", "-r", "-q", "--cached", "."]);
        assert!(compare(dir).is_some());
        // Intent-to-add (extended flag): libgit2 decides.
        git(dir, &["add", "-A"]);
        put(dir, "ita.txt", "x");
        git(dir, &["add", "-N", "ita.txt"]);
        let repo = Repository::open(dir).unwrap();
        assert!(fast_index_tree(&repo, dir).unwrap().is_none());
    }

    /// Names libgit2 may refuse to write into a tree send the hook to libgit2.
    #[test]
    fn unusual_paths_are_left_to_libgit2() {
        assert!(plain_path(b"a/b.c/d-e") && plain_path(b".github/x") && plain_path(b".gitignore"));
        for p in [
            &b"a/.GIT/x"[..],
            b".git. /x",
            b"a/.git",
            b"GIT~1/x",
            b"a//b",
            b"a/./b",
            b"../a",
            b"a\\b",
            b"c:d",
            "\u{e9}".as_bytes(),
        ] {
            assert!(!plain_path(p), "{}", String::from_utf8_lossy(p));
        }
    }
}
