//! The git-I/O layer: a thin, hardened wrapper around the `git` command line (this file), and
//! under `src/git/` every piece of git's on-disk formats and lock protocols git-hybrid reads or
//! writes itself. Domain modules go through these and never touch git's bytes:
//! - [`graph`]: ancestry (`contains`); [`generation`]: merge bases and ancestry walks by
//!   generation number, with [`commit_facts`] the facts of commits outside git's commit-graph
//!   kept across processes; [`refnames`]: ref names from the ref store's files;
//!   [`worktrees`]: linked worktrees' admin entries and `HEAD` files;
//! - [`index`]: the raw index reader/writer; [`index_tree`]: the tree of an index;
//! - [`pack`]: a train's new objects as one pack; [`populate`]: the parallel fill of a new worktree;
//! - [`status`]: `git status` / `git ls-files --unmerged` output and the paths in git's errors,
//!   as typed values;
//! - [`attributes`]: git's attribute files (where they are, lines, macros, patterns);
//!   [`config`]: which configuration files git reads;
//! - [`lockfile`]: git's `<ref>.lock` held for a compare-and-swap and a checkout's `index.lock`,
//!   with the crash notes that make a dead holder's lock removable;
//! - [`network`]: the `git` children that reach a remote.
//!
//! The layer imports only foundation modules (`error`, `failpoint`, `gitdate`, `names`,
//! `safe_path`), never a domain module (`tests/module_graph.rs` checks it): what a step needs
//! from the domain (a repository, a path) is passed in.
//!
//! Why a subprocess at all: git2 does the reads and the in-memory merges, but a few steps must
//! behave exactly like git on a working tree: moving a checked-out branch's index and files
//! the way `git checkout` carries local changes (`git read-tree -m -u`), `git add -A` with git's
//! own ignore rules, `git worktree add` where filter drivers apply. Those go through [`command`]
//! (or [`run`] / [`output`]), which never uses a shell, passes arguments as an argv list and
//! reports git's own stderr on failure.
//!
//! Contract (the agent boundary, see README "Security model"): every `git` child git-hybrid
//! starts is built by [`command`], and so
//! - gets a **scrubbed environment**: only [`ALLOWED_ENV`] (`PATH`, `HOME`, `LANG`,
//!   the `GIT_AUTHOR_*`/`GIT_COMMITTER_*` identity and dates, ...), `LC_*` and the variables that
//!   say where the user's *trusted* config lives ([`TRUSTED_CONFIG_ENV`]); no secret, no
//!   `GIT_DIR`/`GIT_WORK_TREE`/`GIT_INDEX_FILE`, no `GIT_CONFIG_PARAMETERS`/`GIT_CONFIG_COUNT`/
//!   `GIT_CONFIG_KEY_*` injected from outside; `LC_ALL=C`, so the git messages git-hybrid reads
//!   are git's English ones in every user's locale;
//! - runs **no program named by the repository's own config** (which agents can write):
//!   [`HARDENING`] turns off hooks (`core.hooksPath=/dev/null`), fsmonitor, commit and tag
//!   signing (so no `gpg.program`), automatic gc/maintenance, submodule recursion, pager and
//!   editor; and every filter driver named in the repository-local config (`$GIT_COMMON_DIR/
//!   config`, `config.worktree`, and what they include) is overridden with the value the user's
//!   global/system config gives it, or emptied (`filter.<x>.smudge=`, `clean=`, `process=`,
//!   `required=false`) when the trusted config does not define it. A filter the user defines
//!   globally (git-lfs's `git lfs install`) keeps working; one planted in `.git/config` never
//!   runs. Callers that diff add `--no-ext-diff --no-textconv` themselves.
//!
//! Children that reach a remote (fetch, push) are built by [`network::command`] instead: the same
//! hardening plus the user's ssh/proxy/CA environment and overrides for the programs a
//! repository's config can name for the network (credential helpers, `core.sshCommand`, ...).
//!
//! No step of git-hybrid runs hooks on purpose: the checkpoint commit of an agent's leftovers is
//! made without them (the agent's own commits ran them, inside its sandbox).

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use anyhow::{bail, Context, Result};

pub mod attributes;
pub mod commit_facts;
pub mod config;
pub mod generation;
pub mod graph;
pub mod index;
pub mod index_tree;
pub mod lockfile;
pub mod loose;
pub mod network;
pub mod pack;
pub mod populate;
pub mod refnames;
pub mod status;
pub mod tree;
pub mod worktrees;

/// Runs `git <args>` in `dir`; fails with git's stderr when it exits non-zero.
pub fn run<I, S>(dir: &Path, args: I) -> Result<String>
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let out = output(dir, args)?;
    if !out.status.success() {
        bail!("{}", String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Runs `git <args>` in `dir` and returns the raw output whatever the exit status.
pub fn output<I, S>(dir: &Path, args: I) -> Result<Output>
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let args: Vec<_> = args.into_iter().map(|a| a.as_ref().to_os_string()).collect();
    command(dir).args(&args).output().with_context(|| {
        format!("cannot run git {}", args.iter().map(|a| a.to_string_lossy()).collect::<Vec<_>>().join(" "))
    })
}

/// Environment variables git children and agents inherit from git-hybrid (besides `LC_*`; agents
/// also get their plan's `env_pass`, git children [`TRUSTED_CONFIG_ENV`]).
pub const ALLOWED_ENV: &[&str] = &[
    "PATH",
    "HOME",
    "USER",
    "LOGNAME",
    "SHELL",
    "TERM",
    "LANG",
    "TMPDIR",
    "TZ",
    "GIT_AUTHOR_NAME",
    "GIT_AUTHOR_EMAIL",
    "GIT_AUTHOR_DATE",
    "GIT_COMMITTER_NAME",
    "GIT_COMMITTER_EMAIL",
    "GIT_COMMITTER_DATE",
];

/// Environment variables naming where the user's trusted git config lives; kept for git
/// children (they come from whoever started git-hybrid, never from a file an agent writes).
pub const TRUSTED_CONFIG_ENV: &[&str] =
    &["GIT_CONFIG_GLOBAL", "GIT_CONFIG_SYSTEM", "GIT_CONFIG_NOSYSTEM", "XDG_CONFIG_HOME"];

/// `-c` settings every git child gets: nothing the repository's config names is run.
pub const HARDENING: &[&str] = &[
    "core.hooksPath=/dev/null",
    "core.fsmonitor=false",
    "commit.gpgSign=false",
    "tag.gpgSign=false",
    "gc.auto=0",
    "maintenance.auto=false",
    "submodule.recurse=false",
    "core.pager=cat",
    "core.editor=:",
    "sequence.editor=:",
];

/// The environment of a git child: the agents' allowlist, `LC_*`, [`TRUSTED_CONFIG_ENV`], and
/// `GIT_TERMINAL_PROMPT=0`.
pub fn scrubbed_env() -> Vec<(std::ffi::OsString, std::ffi::OsString)> {
    let mut out = Vec::new();
    for (k, v) in std::env::vars_os() {
        let Some(name) = k.to_str() else { continue };
        if ALLOWED_ENV.contains(&name) || name.starts_with("LC_") || TRUSTED_CONFIG_ENV.contains(&name) {
            out.push((k, v));
        }
    }
    out.push(("GIT_TERMINAL_PROMPT".into(), "0".into()));
    out
}

/// The locale of every git child: git's messages in English whatever the user's `LANG`/`LC_*`
/// say, because git-hybrid reads some of them (`git/status.rs`: read-tree's refusals, the paths
/// in git's errors) and quotes the rest in its own English messages. Paths are bytes to git, so
/// nothing else changes with the locale.
const GIT_LOCALE: (&str, &str) = ("LC_ALL", "C");

/// A `git` command for `dir` with the scrubbed environment, [`HARDENING`] and the filter
/// overrides of the repository `dir` is in (see the module contract). Add the subcommand and
/// its arguments, then run it.
pub fn command(dir: &Path) -> Command {
    let mut cmd = Command::new("git");
    cmd.current_dir(dir).env_clear().envs(scrubbed_env()).env(GIT_LOCALE.0, GIT_LOCALE.1).stdin(Stdio::null());
    for setting in HARDENING {
        cmd.arg("-c").arg(setting);
    }
    for setting in filter_overrides(dir) {
        cmd.arg("-c").arg(setting);
    }
    cmd
}

/// `$XDG_CONFIG_HOME/git/<name>`, else `$HOME/.config/git/<name>`: where git looks for the user's
/// `config`, `attributes` and `ignore` files when nothing names them.
pub fn xdg_git_file(name: &str) -> Option<PathBuf> {
    let var = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty());
    let base =
        var("XDG_CONFIG_HOME").map(PathBuf::from).or_else(|| var("HOME").map(|h| PathBuf::from(h).join(".config")));
    base.map(|b| b.join("git").join(name))
}

/// The user's system and global config files, lowest priority first, as git finds them.
fn trusted_config_files() -> Vec<PathBuf> {
    let var = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty());
    let mut out = Vec::new();
    let nosystem = std::env::var("GIT_CONFIG_NOSYSTEM").is_ok_and(|v| !matches!(v.as_str(), "" | "0" | "false"));
    if !nosystem {
        match var("GIT_CONFIG_SYSTEM") {
            Some(f) => out.push(PathBuf::from(f)),
            None => out.extend(git2::Config::find_system().ok()),
        }
    }
    match var("GIT_CONFIG_GLOBAL") {
        Some(f) => out.push(PathBuf::from(f)),
        None => {
            out.extend(xdg_git_file("config"));
            out.extend(var("HOME").map(|h| PathBuf::from(h).join(".gitconfig")));
        }
    }
    out.into_iter().filter(|f| f.is_file()).collect()
}

/// True when the user's trusted (system/global) config defines a smudge or process filter
/// driver: only then can a checkout need git itself rather than libgit2.
pub fn trusted_filter_drivers() -> bool {
    trusted_entries(Some(r"^filter\..*\.(smudge|process)$")).iter().any(|(_, v)| !v.trim().is_empty())
}

/// Every `(name, value)` of the user's system and global config files (those whose names match
/// the regex `pattern`, if given), in the order git reads them: system first, then global.
fn trusted_entries(pattern: Option<&str>) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for f in trusted_config_files() {
        let Ok(cfg) = git2::Config::open(&f) else { continue };
        let Ok(mut entries) = cfg.entries(pattern) else { continue };
        while let Some(Ok(e)) = entries.next() {
            if let Some(name) = e.name() {
                out.push((name.to_string(), e.value().unwrap_or("").to_string()));
            }
        }
    }
    out
}

/// `key=value` overrides for every filter driver that the repository-local config of the
/// repository at `dir` names: the trusted (system/global) value of each key, else empty.
pub fn filter_overrides(dir: &Path) -> Vec<String> {
    use git2::ConfigLevel;
    use std::collections::{BTreeMap, BTreeSet};
    let Ok(repo) = git2::Repository::discover(dir) else { return Vec::new() };
    // Entries at these levels come from the user's own files; everything else (local,
    // worktree, what those include) is writable by agents.
    let is_trusted = |l: ConfigLevel| {
        matches!(l, ConfigLevel::ProgramData | ConfigLevel::System | ConfigLevel::XDG | ConfigLevel::Global)
    };
    // (driver, key) pairs the untrusted config sets.
    let mut untrusted: BTreeSet<(String, String)> = BTreeSet::new();
    let mut scan = |cfg: &git2::Config, force_untrusted: bool| {
        let Ok(mut entries) = cfg.entries(Some(r"^filter\.")) else { return };
        while let Some(Ok(e)) = entries.next() {
            let Some(name) = e.name() else { continue };
            // filter.<driver>.<key>; the driver name may itself hold dots.
            let Some(rest) = name.strip_prefix("filter.") else { continue };
            let Some((driver, key)) = rest.rsplit_once('.') else { continue };
            if force_untrusted || !is_trusted(e.level()) {
                untrusted.insert((driver.to_string(), key.to_ascii_lowercase()));
            }
        }
    };
    if let Ok(cfg) = repo.config() {
        scan(&cfg, false);
    }
    // config.worktree files, in case libgit2 did not read them.
    let common = repo.commondir().to_path_buf();
    for f in [repo.path().join("config.worktree"), common.join("config.worktree"), common.join("config")] {
        if f.is_file() {
            if let Ok(cfg) = git2::Config::open(&f) {
                scan(&cfg, true);
            }
        }
    }
    // The trusted files as git itself finds them (libgit2 ignores GIT_CONFIG_GLOBAL/SYSTEM).
    let trusted: BTreeMap<String, String> =
        trusted_entries(Some(r"^filter\.")).into_iter().map(|(k, v)| (k.to_ascii_lowercase(), v)).collect();
    // Each program key the untrusted config sets gets the trusted value, else empty (an empty
    // `process` also turns off the driver's smudge/clean: git reads a set `process` first).
    let mut out = Vec::new();
    let mut drivers: BTreeSet<&str> = BTreeSet::new();
    for (driver, key) in &untrusted {
        drivers.insert(driver);
        if matches!(key.as_str(), "smudge" | "clean" | "process") {
            let full = format!("filter.{driver}.{key}");
            let value = trusted.get(&full.to_ascii_lowercase()).cloned().unwrap_or_default();
            out.push(format!("{full}={value}"));
        }
    }
    for driver in drivers {
        let full = format!("filter.{driver}.required");
        let value = trusted.get(&full.to_ascii_lowercase()).cloned().unwrap_or_else(|| "false".into());
        out.push(format!("{full}={value}"));
    }
    out
}

/// Which identity a signature is for.
#[derive(Debug, Clone, Copy)]
pub enum Role {
    Author,
    Committer,
}

/// The signature git itself would use: `GIT_{AUTHOR,COMMITTER}_{NAME,EMAIL,DATE}` first (libgit2
/// ignores them), then `user.name` / `user.email`, then a git-hybrid fallback identity.
pub fn signature(repo: &git2::Repository, role: Role) -> Result<git2::Signature<'static>> {
    let prefix = match role {
        Role::Author => "GIT_AUTHOR",
        Role::Committer => "GIT_COMMITTER",
    };
    let env = |k: &str| std::env::var(format!("{prefix}_{k}")).ok().filter(|v| !v.is_empty());
    // Read only when the environment does not say (a commit and a reflog entry each ask), and
    // as a snapshot: a live config re-reads (stats) every file on each lookup.
    let cfg = std::cell::OnceCell::new();
    let cfg_get = |k: &str| {
        cfg.get_or_init(|| repo.config().ok().and_then(|mut c| c.snapshot().ok()))
            .as_ref()
            .and_then(|c: &git2::Config| c.get_string(k).ok())
    };
    let name = env("NAME").or_else(|| cfg_get("user.name")).unwrap_or_else(|| "git-hybrid".into());
    let email = env("EMAIL").or_else(|| cfg_get("user.email")).unwrap_or_else(|| "git-hybrid@localhost".into());
    let sig = match env("DATE").and_then(|d| crate::gitdate::parse(&d)) {
        Some((secs, offset_min)) => git2::Signature::new(&name, &email, &git2::Time::new(secs, offset_min))?,
        None => git2::Signature::now(&name, &email)?,
    };
    Ok(sig)
}

/// Lets libgit2's object cache keep trees up to 1 MiB. Its default keeps only trees under 4 KiB,
/// so a real repository's root tree and crowded folders (git/git's root is 20 KB, `t/` 60 KB)
/// were read from the pack, inflated and parsed again at every lookup: in a train, the same base
/// root once per task. Call once, first thing in `main`, before any thread is started.
#[allow(unsafe_code)]
pub fn cache_large_trees() {
    // SAFETY: libgit2's limits are an unsynchronized global; the caller runs before any thread
    // exists (main's first lines), so nothing reads it concurrently.
    let _ = unsafe { git2::opts::set_cache_object_limit(git2::ObjectType::Tree, 1 << 20) };
}

#[cfg(test)]
mod tests {
    use super::*;

    /// git's messages are read (`git/status.rs`), so every git child speaks English: with
    /// `LANG=de_DE.UTF-8` a translating git says "Schwerwiegend: ..." instead of "fatal: ...".
    #[test]
    fn git_children_run_in_the_c_locale() {
        let cmd = command(Path::new("."));
        let envs: Vec<(&OsStr, Option<&OsStr>)> = cmd.get_envs().collect();
        let lc_all: Vec<_> = envs.iter().filter(|(k, _)| *k == "LC_ALL").collect();
        assert_eq!(lc_all.len(), 1, "{envs:?}");
        assert_eq!(lc_all[0].1, Some(OsStr::new("C")), "{envs:?}");
    }
}
