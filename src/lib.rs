//! git-hybrid: the git layer for running many AI coding agents on one repository.
//!
//! The library is clap-free; the `git-hybrid` binary (`src/main.rs`, `src/cli/`) only parses
//! arguments, calls into these modules and prints. One module per domain concept (docs/DESIGN.md
//! "Module map" draws their layers; `tests/module_graph.rs` keeps them free of import cycles):
//!
//! | module | concept |
//! |--------|---------|
//! | [`repo`] | finding the repository, target branch, worktree root |
//! | [`config`] | `hybrid.toml` |
//! | [`names`] | every branch, ref and file name git-hybrid gives (the one place they are formatted) |
//! | [`task_id`] | the task id rule |
//! | [`ledger`] | durable per-attempt task records |
//! | [`worktree`] | per-task worktrees and branches (`start`, `clean`) |
//! | [`seed`] | what a new worktree gets besides its checkout (`[worktree] copy`) |
//! | [`sync`] | merging the target into a task branch |
//! | [`tasklist`] | the live tasks with their worktree, branch, ahead/behind, dirty (`list`) |
//! | [`taskdiff`] | the change a task would land (its merge with the target, in memory) |
//! | [`land`] | squash-merge with catch-up |
//! | [`remote`] | landing through a shared remote: fetch, one leased atomic push, published records |
//! | [`gate`] | what every squash must pass before it lands (claims, protected paths, secrets, paths) |
//! | [`safe_path`] | the one path validator (git's rules, `gix-validate`) |
//! | [`treediff`] | changed paths between two trees, skipping equal subtrees |
//! | [`checkout`] | moving a checked-out branch coherently (index and files, around the ref) |
//! | [`status`] | the status report |
//! | [`stop`] | stopping running agents on request, keeping their work (`stop`) |
//! | [`archive`] | hiding finished tasks from `status` and `list` (kept in the ledger) |
//! | [`plan`] | the dispatch plan (`[[task]]`) and its validation |
//! | [`schedule`] | which task attempts may start now (pure) |
//! | [`agent`] | launching one agent run: env, files, timeout, process group |
//! | [`runlog`] | an attempt's latest run files, tailed and followed (`logs`) |
//! | [`dispatch`] | the dispatcher loop, crash resume, best-of-K |
//! | [`demo`] | the sample repository and plan of `git hybrid demo` |
//! | [`hooks`] | installing git hooks; the pre-commit and post-merge checks |
//! | [`secrets`] | secret-looking patterns (pre-commit scan, export redaction) |
//! | [`claims`] | the paths a task may change |
//! | [`verify`] | checking squash landings on the target (the CI job) |
//! | [`trailers`] | the `Hybrid-*` trailers of a squash commit (the one parser) |
//! | [`labels`] | diff-similarity labels (Jaccard + difflib-exact ratio), `label --pairs` |
//! | [`export`], [`redact`] | opt-in training-record export, export-time redaction |
//! | [`mcp`] | `git hybrid mcp`: the MCP server (tools, resources, the background task runner) |
//! | [`background`] | starting git-hybrid detached (`dispatch --detach`, the MCP task runner) |
//! | [`git`] | the git-I/O layer: the `git` subprocess, ancestry, git's formats (index, pack, ref locks, worktree fill) |
//! | [`lock`], [`fsutil`] | crash-safe locks, atomic files |
//! | [`gitdate`] | the dates git accepts in `GIT_AUTHOR_DATE` / `GIT_COMMITTER_DATE` |
//! | [`failpoint`] | named steps where the crash tests stop a process (test builds only) |

pub mod agent;
pub mod archive;
pub mod background;
pub mod checkout;
pub mod claims;
pub mod config;
pub mod demo;
pub mod dispatch;
pub mod error;
pub mod export;
pub mod failpoint;
pub mod fsutil;
pub mod gate;
pub mod git;
pub mod gitdate;
pub mod hooks;
pub mod labels;
pub mod land;
pub mod ledger;
pub mod lock;
pub mod mcp;
pub mod names;
pub mod plan;
pub mod redact;
pub mod remote;
pub mod repo;
pub mod runlog;
pub mod safe_path;
pub mod schedule;
pub mod secrets;
pub mod seed;
pub mod status;
pub mod stop;
pub mod sync;
pub mod task_id;
pub mod taskdiff;
pub mod tasklist;
#[cfg(test)]
mod test_support;
pub mod trailers;
pub mod treediff;
pub mod verify;
pub mod worktree;

/// The version stamped into provenance and `--version`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
