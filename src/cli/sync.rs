use clap::Args;
use git_hybrid::error::{find_hybrid_error, ErrorReport, HybridError, EXIT_CONFLICT};

use super::{output, GlobalArgs};

#[derive(Debug, Args)]
pub struct SyncArgs {
    /// The task whose branch receives the target.
    #[arg(add = super::completions::task_ids())]
    pub task: String,
    /// Attempt number.
    #[arg(long, default_value_t = 1)]
    pub attempt: u32,
}

pub fn handle_sync(a: SyncArgs, g: &GlobalArgs) -> anyhow::Result<i32> {
    git_hybrid::task_id::validate(&a.task)?;
    let project = output::project(g)?;
    let report = match git_hybrid::sync::sync_task(&project, &a.task, a.attempt) {
        Ok(r) => r,
        Err(e) => return report_conflict(&a.task, e, g, "git hybrid sync"),
    };
    if g.json {
        output::print_json(&report)?;
    } else if let Some(c) = &report.commit {
        println!("{}: merged {} ({})", report.task, report.target, git_hybrid::repo::short(c));
    } else if report.status == "fast-forward" {
        println!("{}: fast-forwarded to {} ({})", report.task, report.target, git_hybrid::repo::short(&report.tip));
    } else {
        println!("{}: up to date with {}", report.task, report.target);
    }
    Ok(0)
}

/// A conflict is an answer, not a crash: `--json` prints
/// `{"task","status":"conflict","conflicts","error","exit_code"}` on stdout (the error shape's
/// keys included, so a caller that checks `exit_code` or `error` sees the conflict), text mode
/// lists the paths; exit 3. Other errors go back to `main`.
pub fn report_conflict(task: &str, e: anyhow::Error, g: &GlobalArgs, retry: &str) -> anyhow::Result<i32> {
    let Some(HybridError::Conflict { what, paths }) = find_hybrid_error(&e) else { return Err(e) };
    if g.json {
        let mut doc = ErrorReport::of(&e).to_json();
        doc["task"] = serde_json::json!(task);
        doc["status"] = "conflict".into();
        output::print_json(&doc)?;
    } else {
        println!("{task}: conflict ({what})");
        for p in paths {
            println!("  conflict: {p}");
        }
        eprintln!(
            "git-hybrid: nothing was changed; the task is marked `conflict`. Merge the target into the task branch \
             in its worktree, resolve and commit, then re-run `{retry} {task}`."
        );
    }
    Ok(EXIT_CONFLICT)
}
