use std::io::IsTerminal;
use std::time::Duration;

use clap::Args;
use git_hybrid::repo::short;
use git_hybrid::status::{self, StatusReport};

use super::{output, GlobalArgs};

#[derive(Debug, Args)]
#[command(override_usage = "git hybrid status [OPTIONS] [TASK]...")]
pub struct StatusArgs {
    /// Only these tasks (each must exist: an unknown task is exit 2).
    // The first id accepts a leading hyphen so that `-rf` is rejected by the id rule, with the
    // rule stated; the rest do not, so a flag after the ids (`status t1 --watch`) stays a flag.
    #[arg(value_name = "TASK", allow_hyphen_values = true, add = super::completions::task_ids())]
    pub task: Option<String>,
    #[arg(value_name = "TASK", hide = true, add = super::completions::task_ids())]
    pub more: Vec<String>,
    /// Refresh until interrupted.
    #[arg(long)]
    pub watch: bool,
    /// Also show archived tasks (`git hybrid archive`).
    #[arg(long)]
    pub all: bool,
    /// Seconds between refreshes with --watch.
    #[arg(long, default_value_t = 2.0)]
    pub interval: f64,
}

pub fn handle_status(a: StatusArgs, g: &GlobalArgs) -> anyhow::Result<i32> {
    let tasks: Vec<String> = a.task.iter().chain(&a.more).cloned().collect();
    for t in &tasks {
        git_hybrid::task_id::validate(t)?;
    }
    let project = output::project(g)?;
    let mut first = true;
    loop {
        let report = status::collect_with(&project, &tasks, a.all)?;
        if g.json {
            output::print_json(&report)?;
        } else {
            // Clear the screen only on a terminal: piped or logged, each refresh follows the last.
            if a.watch && std::io::stdout().is_terminal() {
                print!("\x1b[2J\x1b[H");
            } else if a.watch && !first {
                println!();
            }
            print_table(&report, output::use_color(g), a.watch);
            if !report.tasks.is_empty() {
                print_archived_note(&report);
            }
        }
        if !a.watch {
            return Ok(0);
        }
        first = false;
        std::thread::sleep(Duration::from_secs_f64(a.interval.max(0.1)));
    }
}

fn print_rebuilt(report: &StatusReport) {
    for r in &report.rebuilt.rebuilt {
        println!("rebuilt from git: {r}");
    }
    for u in &report.rebuilt.unrecoverable {
        println!("not recoverable: {u}");
    }
}

fn print_table(report: &StatusReport, color: bool, watch: bool) {
    print_rebuilt(report);
    if let Some(d) = &report.dispatcher {
        println!("dispatcher: running (pid {}), log {}", d.pid, d.log.display());
    } else if watch {
        println!("dispatcher: not running");
    }
    if report.tasks.is_empty() && report.archived_hidden > 0 {
        println!("no tasks shown: every task is archived (`git hybrid status --all` shows them)");
        return;
    }
    if report.tasks.is_empty() {
        println!("no tasks yet (start one with `git hybrid start <task>` or `git hybrid dispatch`)");
        return;
    }
    // The bar counts the plan the dispatcher runs, not every task the ledger remembers.
    if let (true, Some(d)) = (watch, &report.dispatcher) {
        if let Some(plan) = d.plan.as_ref().filter(|p| !p.is_empty()) {
            let (done, total) = (d.plan_done.min(plan.len()), plan.len());
            let width = 30;
            let filled = done * width / total;
            println!("[{}{}] {done}/{total} of the plan landed", "=".repeat(filled), " ".repeat(width - filled));
        }
    }
    println!("{:<24} {:>3} {:<10} {:>4} {:>7} {:<10} LAST COMMIT", "TASK", "ATT", "STATE", "RUNS", "ELAPSED", "MERGE");
    for row in &report.tasks {
        let r = &row.record;
        let state = format!("{:<10}", r.state.as_str());
        println!(
            "{:<24} {:>3} {} {:>4} {:>7} {:<10} {}",
            r.id,
            r.attempt,
            output::paint(color, output::state_color(r.state.as_str()), &state),
            r.runs,
            row.elapsed_secs.map(fmt_secs).unwrap_or_else(|| "-".into()),
            r.merge_sha.as_deref().map(short).unwrap_or("-"),
            row.last_commit.as_deref().unwrap_or("-")
        );
        if let Some(b) = &row.blocked {
            println!("{:<28}blocked: {b}", "");
        }
        if let Some(p) = &row.progress {
            println!("{:<28}progress: {p}", "");
        }
        if !r.state.is_done() {
            if let Some(f) = &r.failure {
                println!("{:<28}{}", "", f.lines().next().unwrap_or(""));
                for l in status::note_tail(f, 3) {
                    println!("{:<30}{l}", "");
                }
            }
        }
    }
}

fn print_archived_note(report: &StatusReport) {
    if report.archived_hidden > 0 {
        println!(
            "({} attempt(s) of archived tasks hidden; `git hybrid status --all` shows them)",
            report.archived_hidden
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
