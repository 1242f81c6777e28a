//! Installing git-hybrid's hook wrappers next to the user's own hooks, removing them, and
//! checking them (`hooks install|uninstall|status|doctor`; contract in [`crate::hooks`]).

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use git2::Repository;
use serde::{Deserialize, Serialize};

use crate::error::HybridError;
use crate::fsutil::write_atomic;
use crate::repo::{canonical, Project};

/// The hooks git-hybrid installs.
pub const HOOKS: [&str; 2] = ["pre-commit", "post-merge"];

/// Suffix of a pre-existing hook kept (and still run) beside the wrapper.
pub const CHAINED_SUFFIX: &str = ".hybrid-chained";

/// First-line marker that identifies a wrapper written by git-hybrid.
const MARKER: &str = "# git-hybrid hook wrapper";

/// Wrapper format; bump when the script text changes in a way doctor should call stale.
const FORMAT: u32 = 1;

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
    let how = crate::fsutil::Atomic { temp_prefix: ".git-hybrid-tmp-", mode: Some(0o755), sync: true };
    crate::fsutil::write_atomic_as(path, data, how).with_context(|| format!("cannot install {}", path.display()))
}

/// The record of folders git-hybrid installed into (`<common>/hybrid/hooks.json`), so doctor
/// finds wrappers that a later `core.hooksPath` change left behind.
#[derive(Debug, Default, Serialize, Deserialize)]
struct InstallRecord {
    #[serde(default)]
    dirs: Vec<PathBuf>,
}

fn record_path(project: &Project) -> PathBuf {
    crate::names::hooks_record(&project.state_dir())
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
