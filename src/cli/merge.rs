use clap::Args;
use git_hybrid::land::{self, LandOptions};

use super::{output, GlobalArgs};

#[derive(Debug, Args)]
pub struct MergeArgs {
    /// The task to land.
    pub task: String,
    /// Branch to land on (default: the project's target).
    #[arg(long)]
    pub target: Option<String>,
    /// Summary line of the squash commit.
    #[arg(short = 'm', long = "message")]
    pub message: Option<String>,
    /// Keep the worktree and branch after landing.
    #[arg(long)]
    pub keep: bool,
    /// Attempt number.
    #[arg(long, default_value_t = 1)]
    pub attempt: u32,
}

pub fn handle_merge(a: MergeArgs, g: &GlobalArgs) -> anyhow::Result<i32> {
    git_hybrid::task_id::validate(&a.task)?;
    let project = output::project(g)?;
    let opts = LandOptions { target: a.target, message: a.message, keep: a.keep };
    let report = match land::land_task(&project, &a.task, a.attempt, &opts) {
        Ok(r) => r,
        Err(e) => return super::sync::report_conflict(&a.task, e, g, "git hybrid merge"),
    };
    if g.json {
        output::print_json(&report)?;
        return Ok(0);
    }
    let again = if report.already { " (already)" } else { "" };
    match report.merge_sha.as_deref() {
        Some(sha) => println!("{}: landed on {} as {}{again}", report.task, report.target, sha),
        None => {
            println!("{}: empty: its work is already on {}; nothing was committed{again}", report.task, report.target)
        }
    }
    if let Some(k) = &report.kept {
        println!("  kept worktree/branch: {k}");
    }
    Ok(0)
}
