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
    let report = land::land_task(&project, &a.task, a.attempt, &opts)?;
    if g.json {
        output::print_json(&report)?;
    } else {
        println!("{}: {} {}", report.task, report.status, report.merge_sha.as_deref().unwrap_or(""));
    }
    Ok(0)
}
