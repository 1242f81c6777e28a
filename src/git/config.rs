//! Where git reads its configuration from, as libgit2 config handles.
//!
//! Contract: [`sources`] returns every configuration file git would read for a repository that
//! libgit2 (opened without its environment mode) may miss: libgit2's own view of the repository
//! (`repo.config()`: system, XDG, global, local, and what they include) plus the files
//! `GIT_CONFIG_GLOBAL` and `GIT_CONFIG_SYSTEM` name (libgit2 ignores both variables). When git
//! would also take settings from the environment (`git -c`, which reaches a child as
//! `GIT_CONFIG_PARAMETERS`, or `GIT_CONFIG_COUNT`/`GIT_CONFIG_KEY_*`), it says so instead of
//! reading them ([`Sources::Environment`]): a caller that needs to know a setting's value for sure
//! treats that as "unknown".
//!
//! The union is deliberately conservative: git's effective value of a key comes from one of these
//! sources or is the default, so a caller that finds a setting harmless in every source knows it
//! is harmless for git. What a setting means is decided by the caller (`checkout/fast.rs`).

use std::path::PathBuf;

use anyhow::{Context, Result};
use git2::Repository;

/// The configuration sources of [`sources`].
pub enum Sources {
    /// Every file git reads (libgit2's view first, then the `GIT_CONFIG_GLOBAL`/`GIT_CONFIG_SYSTEM`
    /// files that exist).
    Files(Vec<git2::Config>),
    /// git would also read settings given in the environment (`git -c`, `GIT_CONFIG_COUNT`),
    /// which are not read here.
    Environment,
}

/// See the module contract.
pub fn sources(repo: &Repository) -> Result<Sources> {
    let set = |k: &str| std::env::var_os(k).is_some_and(|v| !v.is_empty() && v != "0");
    if set("GIT_CONFIG_PARAMETERS") || set("GIT_CONFIG_COUNT") {
        return Ok(Sources::Environment);
    }
    let mut out = vec![repo.config()?];
    for var in ["GIT_CONFIG_GLOBAL", "GIT_CONFIG_SYSTEM"] {
        if let Some(p) = std::env::var_os(var).filter(|p| !p.is_empty()).map(PathBuf::from) {
            if p.is_file() {
                out.push(git2::Config::open(&p).with_context(|| format!("cannot read {}", p.display()))?);
            }
        }
    }
    Ok(Sources::Files(out))
}
