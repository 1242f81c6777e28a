//! `git hybrid mcp`: the supervisor's interface, an MCP server over stdio (built on `rmcp`).
//!
//! Contract: [`serve`] serves the repository it was opened on until the client closes stdin.
//! Every tool is a thin adapter over the same library calls as the CLI (no second
//! implementation): arguments are typed (JSON schemas generated from [`tools`]), results are
//! structured JSON, and a failure is a tool error (`isError: true`) whose structured content is
//! `{"error", "exit_code", "class"}` with the CLI's exit-code class (`bad_input` 2,
//! `conflict` 3, `busy` 4, `failed` 1), plus `conflicts`/`paths` when the library reports them.
//!
//! Safety: no tool runs an arbitrary command or takes an arbitrary path. Task ids go through the
//! id rule; a dispatched task's `agent` may only be the `[agent] command` of the trusted
//! `hybrid.toml` or a built-in (`builtin:patch`, `builtin:script <path in the repo>`), see
//! [`queue`]. Dispatched tasks run in a detached background dispatcher ([`queue::run`]), so a
//! client disconnecting never stops them; tool calls are served while it runs (each call opens
//! the repository on a blocking thread; refs move by compare-and-swap as everywhere).
//!
//! Resources: `hybrid://task/<id>` (the task's ledger records and live status, JSON) and
//! `hybrid://task/<id>/progress` (its latest run's `progress.md`). Subscriptions are served by
//! a watcher that polls the files behind each subscribed resource and sends
//! `notifications/resources/updated` when they change.

pub mod queue;
mod resources;
mod server;
pub mod tools;

use std::path::Path;

use anyhow::{Context, Result};

use crate::repo::Project;

/// The server's instructions to the client (shown to the supervising model).
pub const INSTRUCTIONS: &str =
    "git-hybrid runs coding agents on this repository, each task in its own worktree and branch, \
and lands their work as squash commits with compare-and-swap. Workflow: 1) `dispatch` tasks (id, prompt, optional \
touches/depends_on/...): they run in a background dispatcher and the call returns at once. 2) Poll `status` (all tasks \
or one) and `task_log` (pass back `next_offset` as `offset` to read only what is new), or subscribe to the \
`hybrid://task/<id>` resources. 3) Tasks that pass verify land by themselves; `land` lands a task (or a train) by \
hand, `task_diff` shows what would land, `retry` re-runs a failed task with your extra instructions, `cancel` stops a \
running agent (its worktree is kept). Errors carry `class`: bad_input, conflict, busy or failed.";

/// Serves MCP over stdin/stdout for the repository at `dir` until the client disconnects.
///
/// Refuses (exit 2) when `dir` is not inside a usable repository.
pub fn serve(dir: &Path) -> Result<()> {
    let project = Project::open(dir)?;
    let (root, common_dir) = (project.root.clone(), project.common_dir.clone());
    drop(project);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(server::run(root, common_dir))
}
