use clap::Args;

use super::{output, GlobalArgs};

#[derive(Debug, Args)]
pub struct SyncArgs {
    /// The task whose branch receives the target.
    pub task: String,
    /// Attempt number.
    #[arg(long, default_value_t = 1)]
    pub attempt: u32,
}

pub fn handle_sync(a: SyncArgs, g: &GlobalArgs) -> anyhow::Result<i32> {
    git_hybrid::task_id::validate(&a.task)?;
    let project = output::project(g)?;
    let report = git_hybrid::sync::sync_task(&project, &a.task, a.attempt)?;
    if g.json {
        output::print_json(&report)?;
    } else {
        println!("{}: {}", report.task, report.status);
    }
    Ok(0)
}
