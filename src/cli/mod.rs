//! The command line: argument definitions and one `handle_<cmd>` per subcommand.
//!
//! Each handler parses nothing itself beyond its args struct, calls the library and prints:
//! human text on stdout (colour only on a terminal and never with `NO_COLOR`), or one JSON
//! document with `--json`. Errors go to stderr; `main` maps them to exit codes.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

pub mod archive;
pub mod clean;
pub mod completions;
pub mod demo;
pub mod diff;
pub mod dispatch;
pub mod export;
pub mod fetch;
pub mod hooks;
pub mod init;
pub mod label;
pub mod list;
pub mod logs;
pub mod man;
pub mod mcp;
pub mod merge;
pub mod output;
pub mod pager;
pub mod shell_init;
pub mod start;
pub mod status;
pub mod stop;
pub mod sync;
pub mod verify;

/// git-hybrid: run many AI coding agents on one repository without losing work.
#[derive(Debug, Parser)]
#[command(name = "git-hybrid", bin_name = "git hybrid", version, about, long_about = None)]
#[command(
    after_help = "Exit codes: 0 ok, 1 failed, 2 bad input (nothing changed), 3 conflict or refused to protect work, 4 busy."
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// Options every command takes.
#[derive(Debug, Clone, Args)]
pub struct GlobalArgs {
    /// Run as if started in DIR.
    // Its own id: `demo [DIR]` has a positional named `dir`, and two args with one id share
    // their value.
    #[arg(id = "chdir", short = 'C', global = true, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// Print one JSON document instead of text.
    #[arg(long, global = true)]
    pub json: bool,
    /// When to use colour.
    #[arg(long, global = true, value_enum, default_value_t = ColorWhen::Auto)]
    pub color: ColorWhen,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ColorWhen {
    Auto,
    Always,
    Never,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Write a commented hybrid.toml template (refuses to overwrite one).
    Init(init::InitArgs),
    /// Create a task's branch and worktree from an explicit base.
    Start(start::StartArgs),
    /// Merge the target branch into a task branch, reporting conflicts by file.
    Sync(sync::SyncArgs),
    /// Land a task as one squash commit on the target, catching up first.
    Merge(merge::MergeArgs),
    /// Fetch the target and every clone's published landing records from the remote.
    Fetch(fetch::FetchArgs),
    /// Run a plan of tasks with coding agents in parallel and land what passes.
    Dispatch(dispatch::DispatchArgs),
    /// Show every task: state, attempt, elapsed, last commit, progress, merge SHA.
    Status(status::StatusArgs),
    /// Score candidate patches against landed patches (Jaccard + difflib ratio).
    Label(label::LabelArgs),
    /// Export training records (opt-in).
    Export(export::ExportArgs),
    /// Check squash merges on the target (the CI job).
    Verify(verify::VerifyArgs),
    /// Install, remove, inspect or diagnose git-hybrid's git hooks.
    Hooks(hooks::HooksArgs),
    /// List the live tasks: worktree, branch, ahead/behind the target, dirty, state.
    List(list::ListArgs),
    /// Print a task's worktree (the main checkout without a task).
    Path(list::PathArgs),
    /// Show the change a task would land, against the caught-up target.
    Diff(diff::DiffArgs),
    /// Show (or follow) the latest run of a task: notes, stdout, stderr, verify output.
    Logs(logs::LogsArgs),
    /// Stop running agents, keeping their worktrees; `dispatch` resumes them.
    Stop(stop::StopArgs),
    /// Remove task worktrees and branches that hold no unlanded work.
    Clean(clean::CleanArgs),
    /// Hide finished tasks from `status` and `list` (kept in the ledger; `status --all`).
    Archive(archive::ArchiveArgs),
    /// Build a sample repository and dispatch a plan on it with built-in agents.
    Demo(demo::DemoArgs),
    /// Serve this repository to an MCP client (Claude, Codex, ...) over stdin/stdout.
    Mcp(mcp::McpArgs),
    /// Print shell completions.
    Completions(completions::CompletionsArgs),
    /// Print a shell function that changes to a task's worktree (`hcd <task>`).
    ShellInit(shell_init::ShellInitArgs),
    /// Write the man pages into DIR (used by install.sh).
    #[command(name = "__man", hide = true)]
    Man(man::ManArgs),
}

/// Runs the parsed command; returns the exit code.
pub fn run(cli: Cli) -> anyhow::Result<i32> {
    let g = cli.global;
    match cli.command {
        Command::Init(a) => init::handle_init(a, &g),
        Command::Start(a) => start::handle_start(a, &g),
        Command::Sync(a) => sync::handle_sync(a, &g),
        Command::Merge(a) => merge::handle_merge(a, &g),
        Command::Fetch(a) => fetch::handle_fetch(a, &g),
        Command::Dispatch(a) => dispatch::handle_dispatch(a, &g),
        Command::Status(a) => status::handle_status(a, &g),
        Command::Label(a) => label::handle_label(a, &g),
        Command::Export(a) => export::handle_export(a, &g),
        Command::Verify(a) => verify::handle_verify(a, &g),
        Command::Hooks(a) => hooks::handle_hooks(a, &g),
        Command::List(a) => list::handle_list(a, &g),
        Command::Path(a) => list::handle_path(a, &g),
        Command::Diff(a) => diff::handle_diff(a, &g),
        Command::Logs(a) => logs::handle_logs(a, &g),
        Command::Stop(a) => stop::handle_stop(a, &g),
        Command::Clean(a) => clean::handle_clean(a, &g),
        Command::Archive(a) => archive::handle_archive(a, &g),
        Command::Demo(a) => demo::handle_demo(a, &g),
        Command::Mcp(a) => mcp::handle_mcp(a, &g),
        Command::Completions(a) => completions::handle_completions(a),
        Command::ShellInit(a) => shell_init::handle_shell_init(a, &g),
        Command::Man(a) => man::handle_man(a, &g),
    }
}
