//! `git hybrid diff <task>[@N] [--stat] [--no-pager]`: the change the task would land, against
//! the caught-up target (see `git_hybrid::taskdiff`), printed by git itself (hardened: no
//! external diff, no textconv) with git's colour and pager conventions (`pager.rs`).
//! A conflict with the target is an answer: the paths, exit 3.

use clap::Args;
use git_hybrid::error::{HybridError, EXIT_CONFLICT};
use git_hybrid::taskdiff;

use super::{output, pager, GlobalArgs};

#[derive(Debug, Args)]
pub struct DiffArgs {
    /// The task (`TASK@N`: attempt N).
    #[arg(value_name = "TASK[@N]", add = super::completions::task_ids())]
    pub task: String,
    /// Attempt number (for a task given without `@N`).
    #[arg(long, default_value_t = 1)]
    pub attempt: u32,
    /// A diffstat instead of the patch.
    #[arg(long)]
    pub stat: bool,
    /// Never page the output (it is paged only on a terminal anyway).
    #[arg(long)]
    pub no_pager: bool,
}

pub fn handle_diff(a: DiffArgs, g: &GlobalArgs) -> anyhow::Result<i32> {
    let (id, attempt) = git_hybrid::task_id::split_attempt(&a.task, a.attempt)?;
    let project = output::project(g)?;
    let rec = output::task_record(&project, &id, attempt)?;
    let d = taskdiff::compute(&project, &rec)?;
    let Some(new) = d.new else {
        let error = format!("task {id} conflicts with {} in {} path(s)", d.target, d.conflicts.len());
        if g.json {
            output::print_json(&serde_json::json!({ "task": id, "attempt": attempt, "status": "conflict",
                "target": d.target, "target_tip": d.target_tip, "tip": d.tip, "conflicts": d.conflicts,
                "error": error, "exit_code": EXIT_CONFLICT }))?;
        } else {
            println!("{id}: conflict with {}", d.target);
            for p in &d.conflicts {
                println!("  conflict: {p}");
            }
            eprintln!("git-hybrid: {error}; `git hybrid sync {id}` merges the target in to resolve them");
        }
        return Ok(EXIT_CONFLICT);
    };
    let color = !g.json && pager::diff_color(g, &project.repo);
    let mut git = git_hybrid::git::command(&project.root);
    git.args(["diff", "--no-ext-diff", "--no-textconv", "-M"]);
    git.arg(if color { "--color=always" } else { "--no-color" });
    if a.stat && !g.json {
        git.arg("--stat");
        if let Some(cols) = pager::term_columns() {
            git.env("COLUMNS", cols.to_string());
        }
    }
    git.arg(d.old.to_string()).arg(new.to_string());
    let out = git.output().map_err(|e| anyhow::anyhow!("cannot run git diff: {e}"))?;
    if !out.status.success() {
        return Err(
            HybridError::Repo(format!("git diff failed: {}", String::from_utf8_lossy(&out.stderr).trim())).into()
        );
    }
    if g.json {
        let files = taskdiff::files(&project.repo, d.old, new)?;
        let insertions: usize = files.iter().map(|f| f.insertions).sum();
        let deletions: usize = files.iter().map(|f| f.deletions).sum();
        let mut doc = serde_json::to_value(&d)?;
        doc["status"] = serde_json::json!("clean");
        doc["files"] = serde_json::to_value(&files)?;
        doc["insertions"] = insertions.into();
        doc["deletions"] = deletions.into();
        if !a.stat {
            doc["patch"] = String::from_utf8_lossy(&out.stdout).into();
        }
        output::print_json(&doc)?;
        return Ok(0);
    }
    pager::page(&out.stdout, a.no_pager)?;
    Ok(0)
}
