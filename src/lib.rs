//! git-hybrid: the git layer for running many AI coding agents on one repository.
//!
//! The library is clap-free; the `git-hybrid` binary (`src/main.rs`, `src/cli/`) only parses
//! arguments, calls into these modules and prints. One module per domain concept:
//!
//! | module | concept |
//! |--------|---------|
//! | [`repo`] | finding the repository, target branch, worktree root |
//! | [`config`] | `hybrid.toml` |
//! | [`task_id`] | the task id rule |
//! | [`ledger`] | durable per-attempt task records |
//! | [`worktree`] | per-task worktrees and branches (`start`, `clean`) |
//! | [`checkout`] | filling a new task worktree (files + index) in parallel |
//! | [`sync`] | merging the target into a task branch |
//! | [`land`] | squash-merge with catch-up |
//! | [`status`] | the status report |
//! | [`lock`], [`fsutil`], [`git`] | crash-safe locks, atomic files, the `git` subprocess |

pub mod checkout;
pub mod config;
pub mod error;
pub mod fsutil;
pub mod git;
pub mod land;
pub mod ledger;
pub mod lock;
pub mod repo;
pub mod status;
pub mod sync;
pub mod task_id;
pub mod worktree;

/// The version stamped into provenance and `--version`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
