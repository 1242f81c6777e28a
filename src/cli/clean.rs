use clap::Args;
use git_hybrid::error::HybridError;
use git_hybrid::worktree::{self, CleanSelector};

use super::{output, GlobalArgs};

#[derive(Debug, Args)]
pub struct CleanArgs {
    /// The task to clean (all its attempts).
    #[arg(allow_hyphen_values = true, add = super::completions::task_ids())]
    pub task: Option<String>,
    /// Clean every landed (or empty) task.
    #[arg(long, conflicts_with_all = ["task", "all"])]
    pub merged: bool,
    /// Clean every task.
    #[arg(long, conflicts_with = "task")]
    pub all: bool,
    /// Remove even uncommitted changes and unlanded commits (commits stay at refs/hybrid/trash/).
    #[arg(long)]
    pub force: bool,
}

pub fn handle_clean(a: CleanArgs, g: &GlobalArgs) -> anyhow::Result<i32> {
    let selector = match (&a.task, a.merged, a.all) {
        (Some(t), _, _) => {
            git_hybrid::task_id::validate(t)?;
            CleanSelector::Task(t.clone())
        }
        (None, true, _) => CleanSelector::Merged,
        (None, _, true) => CleanSelector::All,
        _ => return Err(HybridError::Usage("say which tasks to clean: <task>, --merged or --all".into()).into()),
    };
    let project = output::project(g)?;
    let report = worktree::clean(&project, &selector, a.force)?;
    if g.json {
        output::print_json(&report)?;
    } else {
        for r in &report.removed {
            println!("removed {} (attempt {})", r.id, r.attempt);
        }
        for k in &report.kept {
            println!("kept {} (attempt {}): {}", k.id, k.attempt, k.reason.as_deref().unwrap_or(""));
        }
        if report.removed.is_empty() && report.kept.is_empty() {
            println!("nothing to clean");
        }
    }
    Ok(if report.kept.is_empty() { 0 } else { 3 })
}
