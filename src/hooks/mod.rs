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

//!
//! Files: `install.rs` (locating the hooks folder, install, uninstall, status, doctor),
//! `precommit.rs` (the pre-commit checks and checkpoint), `postmerge.rs` (landings a merge
//! brought in). The index is turned into a tree by [`crate::git::index_tree`], the diff against HEAD
//! comes from [`crate::treediff`].

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use git2::Repository;

mod install;
mod postmerge;
mod precommit;

pub use install::{
    current_binary, doctor, install, locate, status, uninstall, wrapper_script, DoctorReport, HookChange, HookInfo,
    HookState, InstallReport, Location, Problem, StatusReport, CHAINED_SUFFIX, HOOKS,
};
pub use postmerge::{post_merge, PostMergeItem, POST_MERGE_WALK_LIMIT};
pub use precommit::{pre_commit, PreCommitReport, SecretHit};

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

/// The branch HEAD names (also on an unborn branch).
fn head_branch(repo: &Repository) -> Option<String> {
    repo.find_reference("HEAD").ok()?.symbolic_target().map(str::to_string)
}
