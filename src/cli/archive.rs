//! `git hybrid archive <task>... | --landed [--undo]`: hide finished tasks from `status` and
//! `list`, keeping their records (see `git_hybrid::archive`).

use clap::Args;
use git_hybrid::error::HybridError;

use super::{output, GlobalArgs};

#[derive(Debug, Args)]
pub struct ArchiveArgs {
    /// The tasks to archive (all their attempts).
    #[arg(value_name = "TASK", add = super::completions::task_ids())]
    pub tasks: Vec<String>,
    /// Archive every task that landed.
    #[arg(long, conflicts_with = "tasks")]
    pub landed: bool,
    /// Bring the tasks back into `status` and `list`.
    #[arg(long, conflicts_with = "landed")]
    pub undo: bool,
}

pub fn handle_archive(a: ArchiveArgs, g: &GlobalArgs) -> anyhow::Result<i32> {
    if a.tasks.is_empty() && !a.landed {
        return Err(HybridError::Usage("name the tasks to archive, or pass --landed".into()).into());
    }
    for t in &a.tasks {
        git_hybrid::task_id::validate(t)?;
    }
    let project = output::project(g)?;
    let ids = if a.landed { git_hybrid::archive::landed(&project)? } else { a.tasks.clone() };
    let report = if a.undo {
        git_hybrid::archive::unarchive(&project, &ids)?
    } else {
        git_hybrid::archive::archive(&project, &ids)?
    };
    if g.json {
        let verb = if a.undo { "unarchived" } else { "archived" };
        output::print_json(&serde_json::json!({ verb: report.changed, "unchanged": report.unchanged }))?;
        return Ok(0);
    }
    let (done, already) = if a.undo { ("unarchived", "was not archived") } else { ("archived", "already archived") };
    for id in &report.changed {
        println!("{id}: {done}");
    }
    for id in &report.unchanged {
        println!("{id}: {already}");
    }
    if ids.is_empty() {
        println!("no landed task to archive");
    }
    Ok(0)
}
