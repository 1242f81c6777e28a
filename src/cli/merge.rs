use clap::Args;
use git_hybrid::error::{self, HybridError};
use git_hybrid::gate::GateOptions;
use git_hybrid::land::{self, LandOptions};

use super::{output, GlobalArgs};

#[derive(Debug, Args)]
pub struct MergeArgs {
    /// The task(s) to land. Several tasks land as one train: each its own squash commit on the
    /// one before, with the same checks, and the target moves once; a conflict or refusal of one
    /// does not stop the others.
    /// `TASK@N` lands attempt N of that task (other tasks take `--attempt`).
    #[arg(value_name = "TASK[@N]", required = true, num_args = 1.., add = super::completions::task_ids())]
    pub tasks: Vec<String>,
    /// Branch to land on (default: the project's target).
    #[arg(long)]
    pub target: Option<String>,
    /// Summary line of the squash commit (one task only).
    #[arg(short = 'm', long = "message")]
    pub message: Option<String>,
    /// Keep the worktree and branch after landing.
    #[arg(long)]
    pub keep: bool,
    /// Land on this clone only, even when the target has a remote (`[project] remote` or the
    /// target's upstream): nothing is fetched or pushed.
    #[arg(long)]
    pub local: bool,
    /// Attempt number of the tasks given without `@N`.
    #[arg(long, default_value_t = 1)]
    pub attempt: u32,
    /// How long to wait for another process's landing on the same target (it is named on
    /// stderr), before giving up with exit 4 and nothing changed.
    #[arg(long, value_name = "SECONDS", default_value_t = 60)]
    pub wait: u64,
    /// Let the landing change paths outside the task's claims (recorded in its ledger record).
    #[arg(long)]
    pub allow_unclaimed: bool,
    /// Let the landing change protected paths (hybrid.toml, CI workflows, hooks, verify
    /// scripts, `[land] protected`) its claims do not name (recorded in its ledger record).
    #[arg(long)]
    pub allow_protected: bool,
}

pub fn handle_merge(a: MergeArgs, g: &GlobalArgs) -> anyhow::Result<i32> {
    // Bad input (ids, attempt, duplicates, `-m` with several tasks, unknown tasks) is refused
    // by `land::land_tasks` before anything lands.
    let tasks = a
        .tasks
        .iter()
        .map(|t| git_hybrid::task_id::split_attempt(t, a.attempt))
        .collect::<Result<Vec<(String, u32)>, _>>()?;
    // Never dropped: the process ends right after, and freeing libgit2's caches and unmapping its
    // pack windows one by one cost a lone landing more than the exit does (no file or lock is
    // held by the repository handle; every write was committed by then).
    let project = std::mem::ManuallyDrop::new(output::project(g)?);
    let gate =
        GateOptions { allow_unclaimed: a.allow_unclaimed, allow_protected: a.allow_protected, verify: Vec::new() };
    let wait = Some(std::time::Duration::from_secs(a.wait));
    let opts = LandOptions { target: a.target, message: a.message, keep: a.keep, local: a.local, gate, wait };
    if tasks.len() == 1 {
        let (task, attempt) = &tasks[0];
        let report = match land::land_task(&project, task, *attempt, &opts) {
            Ok(r) => r,
            Err(e) => return super::sync::report_conflict(task, e, g, "git hybrid merge"),
        };
        if g.json {
            output::print_json(&report)?;
        } else {
            print_report(&report);
        }
        return Ok(0);
    }
    let mut code = 0;
    let mut docs = Vec::new();
    for (t, result) in land::land_tasks(&project, &tasks, &opts)? {
        match result {
            Ok(report) => {
                if g.json {
                    docs.push(serde_json::to_value(&report)?);
                } else {
                    print_report(&report);
                }
            }
            Err(e) => {
                let report = error::ErrorReport::of(&e);
                if code == 0 {
                    code = report.exit_code;
                }
                let mut doc = report.to_json();
                doc["task"] = serde_json::json!(t);
                doc["status"] = match error::find_hybrid_error(&e) {
                    Some(HybridError::Conflict { .. }) => "conflict",
                    Some(HybridError::Refused { .. }) => "refused",
                    _ => "error",
                }
                .into();
                if g.json {
                    docs.push(doc);
                } else {
                    let status = doc["status"].as_str().filter(|s| *s != "error").unwrap_or("not landed");
                    println!("{t}: {status}");
                    for p in doc["conflicts"].as_array().into_iter().chain(doc["paths"].as_array()).flatten() {
                        println!("  {}", p.as_str().unwrap_or_default());
                    }
                    eprintln!("git-hybrid: {t}: error: {e:#}");
                }
            }
        }
    }
    if g.json {
        output::print_json(&docs)?;
    }
    Ok(code)
}

fn print_report(report: &land::LandReport) {
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
}
