//! `git hybrid stop <task>[@N]... | --all`: stops running agents, keeping their worktrees and
//! commits; the attempts become `stopped` and the next `dispatch` resumes them (see
//! `git_hybrid::stop`).

use clap::Args;
use git_hybrid::error::HybridError;

use super::{output, GlobalArgs};

#[derive(Debug, Args)]
pub struct StopArgs {
    /// The tasks to stop (`TASK@N`: only attempt N; else every running attempt of the task).
    #[arg(value_name = "TASK[@N]", add = super::completions::task_ids())]
    pub tasks: Vec<String>,
    /// Stop every running agent of this repository.
    #[arg(long, conflicts_with = "tasks")]
    pub all: bool,
}

pub fn handle_stop(a: StopArgs, g: &GlobalArgs) -> anyhow::Result<i32> {
    if a.tasks.is_empty() && !a.all {
        return Err(HybridError::Usage("name the tasks to stop, or pass --all".into()).into());
    }
    let mut targets = Vec::new();
    for t in &a.tasks {
        let attempt = t.split_once('@').map(|_| git_hybrid::task_id::split_attempt(t, 1)).transpose()?;
        match attempt {
            Some((id, n)) => targets.push((id, Some(n))),
            None => {
                git_hybrid::task_id::validate(t)?;
                targets.push((t.clone(), None));
            }
        }
    }
    let project = output::project(g)?;
    let alive = git_hybrid::dispatch::running_dispatcher(&project).is_some();
    let report = git_hybrid::stop::stop(&project, &targets, alive)?;
    if g.json {
        output::print_json(&report)?;
        return Ok(0);
    }
    for s in &report.stopped {
        let how = if s.killed { "agent ended" } else { "no agent process was left" };
        println!("{}@{}: {} ({how}; worktree kept, `git hybrid dispatch` resumes it)", s.task, s.attempt, s.state);
    }
    for s in &report.not_running {
        println!("{}@{}: not running ({}); nothing to stop", s.task, s.attempt, s.state);
    }
    if report.stopped.is_empty() && report.not_running.is_empty() {
        println!("no agent is running");
    }
    Ok(0)
}
