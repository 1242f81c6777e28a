use clap::Args;
use git_hybrid::worktree::{self, StartOptions};

use super::{output, GlobalArgs};

#[derive(Debug, Args)]
pub struct StartArgs {
    /// Task id: [A-Za-z0-9][A-Za-z0-9._-]{0,63}.
    // Hyphen values are accepted so that an id like `-rf` is rejected by the id rule, with the rule stated.
    #[arg(allow_hyphen_values = true)]
    pub task: String,
    /// Revision to branch from (default: the tip of the target branch).
    #[arg(long)]
    pub base: Option<String>,
    /// Attempt number (best-of-K); attempt N > 1 uses branch hybrid/<task>@N.
    #[arg(long, default_value_t = 1)]
    pub attempt: u32,
    /// A title recorded in the ledger.
    #[arg(long)]
    pub title: Option<String>,
}

pub fn handle_start(a: StartArgs, g: &GlobalArgs) -> anyhow::Result<i32> {
    // Validate before touching git at all.
    git_hybrid::task_id::validate(&a.task)?;
    let project = output::project(g)?;
    // No plan here: the task's hybrid.toml entry, when it has one, gives the claims recorded.
    let claims = git_hybrid::claims::plan_entry_patterns(&project, &a.task);
    output::fill_progress_on_terminal();
    let out = worktree::start(
        &project,
        &StartOptions { id: a.task, base: a.base, attempt: Some(a.attempt), title: a.title, claims },
    )?;
    output::fill_progress_done();
    if !out.created {
        eprintln!("task {} (attempt {}) already exists; nothing changed", out.record.id, out.record.attempt);
    } else if let Some(wt) = out.record.worktree.as_deref().filter(|w| w.is_dir()) {
        // `[worktree] copy`: the ignored files a task needs, from the main checkout.
        let copy = &project.config.config.worktree.copy;
        if !copy.is_empty() {
            let report = git_hybrid::seed::copy_files(&project.root, wt, copy);
            for (path, why) in &report.skipped {
                eprintln!("git-hybrid: [worktree] copy: {path} not copied: {why}");
            }
        }
    }
    if g.json {
        output::print_json(&out.record)?;
    } else {
        match &out.record.worktree {
            Some(w) => println!("{}", w.display()),
            None => println!("(landed as {}; worktree removed)", out.record.merge_sha.as_deref().unwrap_or("-")),
        }
    }
    Ok(0)
}
