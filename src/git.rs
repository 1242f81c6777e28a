//! A thin wrapper around the `git` command line.
//!
//! Why a subprocess at all: git2 does the reads and the in-memory merges, but a few steps must
//! behave exactly like git on a working tree: moving a checked-out branch's index and files
//! the way `git checkout` carries local changes (`git read-tree -m -u`), and anything that must
//! fire the user's hooks. Those go through [`run`], which never uses a shell, passes arguments
//! as an argv list and reports git's own stderr on failure.

use std::ffi::OsStr;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use anyhow::{bail, Context, Result};

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
    Command::new("git").args(&args).current_dir(dir).stdin(Stdio::null()).output().with_context(|| {
        format!("cannot run git {}", args.iter().map(|a| a.to_string_lossy()).collect::<Vec<_>>().join(" "))
    })
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
    let cfg = repo.config().ok();
    let cfg_get = |k: &str| cfg.as_ref().and_then(|c| c.get_string(k).ok());
    let name = env("NAME").or_else(|| cfg_get("user.name")).unwrap_or_else(|| "git-hybrid".into());
    let email = env("EMAIL").or_else(|| cfg_get("user.email")).unwrap_or_else(|| "git-hybrid@localhost".into());
    let sig = match env("DATE").and_then(|d| crate::gitdate::parse(&d)) {
        Some((secs, offset_min)) => git2::Signature::new(&name, &email, &git2::Time::new(secs, offset_min))?,
        None => git2::Signature::now(&name, &email)?,
    };
    Ok(sig)
}
