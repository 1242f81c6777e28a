use std::time::Duration;

use clap::Args;
use git_hybrid::repo::short;
use git_hybrid::status::{self, StatusReport};

use super::{output, GlobalArgs};

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Only this task.
    #[arg(allow_hyphen_values = true)]
    pub task: Option<String>,
    /// Refresh until interrupted.
    #[arg(long)]
    pub watch: bool,
    /// Seconds between refreshes with --watch.
    #[arg(long, default_value_t = 2.0)]
    pub interval: f64,
}

pub fn handle_status(a: StatusArgs, g: &GlobalArgs) -> anyhow::Result<i32> {
    if let Some(t) = &a.task {
        git_hybrid::task_id::validate(t)?;
    }
    let project = output::project(g)?;
    loop {
        let report = status::collect(&project, a.task.as_deref())?;
        if g.json {
            output::print_json(&report)?;
        } else {
            if a.watch {
                print!("\x1b[2J\x1b[H");
            }
            print_table(&report, output::use_color(g));
        }
        if !a.watch {
            return Ok(0);
        }
        std::thread::sleep(Duration::from_secs_f64(a.interval.max(0.1)));
    }
}

fn print_table(report: &StatusReport, color: bool) {
    if report.tasks.is_empty() {
        println!("no tasks yet (start one with `git hybrid start <task>`)");
        return;
    }
    println!("{:<24} {:>3} {:<10} {:>7} {:<10} {:<10} NOTE", "TASK", "ATT", "STATE", "ELAPSED", "BASE", "MERGE");
    for row in &report.tasks {
        let r = &row.record;
        let state = format!("{:<10}", r.state.as_str());
        let note = row
            .blocked
            .as_ref()
            .map(|b| format!("blocked: {b}"))
            .or_else(|| row.progress.clone())
            .or_else(|| r.failure.clone())
            .or_else(|| row.last_commit.clone())
            .unwrap_or_default();
        println!(
            "{:<24} {:>3} {} {:>7} {:<10} {:<10} {}",
            r.id,
            r.attempt,
            output::paint(color, output::state_color(r.state.as_str()), &state),
            row.elapsed_secs.map(fmt_secs).unwrap_or_else(|| "-".into()),
            short(&r.base),
            r.merge_sha.as_deref().map(short).unwrap_or("-"),
            note
        );
    }
}

fn fmt_secs(s: u64) -> String {
    if s < 60 {
        format!("{s}s")
    } else if s < 3600 {
        format!("{}m{:02}s", s / 60, s % 60)
    } else {
        format!("{}h{:02}m", s / 3600, (s % 3600) / 60)
    }
}
