//! `git hybrid list`: one line per live task (see `git_hybrid::tasklist`), and
//! `git hybrid path [<task>[@N]]`: a task's worktree (the main checkout without a task), for
//! `cd "$(git hybrid path t1)"` and the `shell-init` helper.

use clap::Args;
use git_hybrid::error::HybridError;

use super::{output, GlobalArgs};

#[derive(Debug, Args)]
pub struct ListArgs {}

#[derive(Debug, Args)]
pub struct PathArgs {
    /// The task (`TASK@N`: attempt N); without it, the main checkout.
    #[arg(value_name = "TASK[@N]", add = super::completions::task_ids())]
    pub task: Option<String>,
    /// Attempt number (for a task given without `@N`).
    #[arg(long, default_value_t = 1)]
    pub attempt: u32,
}

pub fn handle_list(_a: ListArgs, g: &GlobalArgs) -> anyhow::Result<i32> {
    let project = output::project(g)?;
    let rows = git_hybrid::tasklist::list(&project)?;
    if g.json {
        output::print_json(&serde_json::json!({ "tasks": rows }))?;
        return Ok(0);
    }
    if rows.is_empty() {
        println!("no live tasks (`git hybrid status` shows every task)");
        return Ok(0);
    }
    let color = output::use_color(g);
    let name = |r: &git_hybrid::tasklist::ListRow| {
        if r.attempt == 1 {
            r.id.clone()
        } else {
            format!("{}@{}", r.id, r.attempt)
        }
    };
    let w_task = rows.iter().map(|r| name(r).len()).max().unwrap_or(4).max(4);
    let w_branch = rows.iter().map(|r| r.branch.len()).max().unwrap_or(6).max(6);
    println!("{:<w_task$}  {:<10}  {:<w_branch$}  {:>9}  {:<5}  PATH", "TASK", "STATE", "BRANCH", "AHEAD/BEH", "DIRTY");
    for r in &rows {
        let state = format!("{:<10}", r.state);
        let ab = match (r.ahead, r.behind) {
            (Some(a), Some(b)) => format!("+{a} -{b}"),
            _ => "-".into(),
        };
        let dirty = match r.dirty {
            Some(true) => output::paint(color, "33", "dirty"),
            Some(false) => "clean".into(),
            None => "-    ".into(),
        };
        let branch = if r.branch_exists { r.branch.clone() } else { format!("({} gone)", r.branch) };
        let path = r.worktree.as_ref().map(|p| p.display().to_string()).unwrap_or_else(|| "-".into());
        println!(
            "{:<w_task$}  {}  {:<w_branch$}  {:>9}  {:<5}  {path}",
            name(r),
            output::paint(color, output::state_color(&r.state), &state),
            branch,
            ab,
            dirty
        );
    }
    Ok(0)
}

pub fn handle_path(a: PathArgs, g: &GlobalArgs) -> anyhow::Result<i32> {
    let project = output::project(g)?;
    let (task, attempt, path) = match &a.task {
        None => (None, None, project.root.clone()),
        Some(t) => {
            let (id, attempt) = git_hybrid::task_id::split_attempt(t, a.attempt)?;
            let rec = output::task_record(&project, &id, attempt)?;
            let dir = rec.worktree.clone().filter(|w| !w.as_os_str().is_empty() && w.is_dir()).ok_or_else(|| {
                HybridError::Usage(format!(
                    "task {id} attempt {attempt} has no worktree (state {}; it was cleaned or never had one)",
                    rec.state.as_str()
                ))
            })?;
            (Some(id), Some(attempt), dir)
        }
    };
    if g.json {
        output::print_json(&serde_json::json!({ "task": task, "attempt": attempt, "path": path }))?;
    } else {
        println!("{}", path.display());
    }
    Ok(0)
}
