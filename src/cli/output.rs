//! Printing: colour rules, JSON, the working directory.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use git_hybrid::error::HybridError;
use git_hybrid::repo::Project;
use serde::Serialize;

use super::{ColorWhen, GlobalArgs};

/// Colour only when stdout is a terminal, `NO_COLOR` is unset and `--color` allows it.
pub fn use_color(g: &GlobalArgs) -> bool {
    match g.color {
        ColorWhen::Never => false,
        ColorWhen::Always => std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()),
        ColorWhen::Auto => std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()) && std::io::stdout().is_terminal(),
    }
}

/// Wraps text in an ANSI colour when colour is on.
pub fn paint(on: bool, code: &str, text: &str) -> String {
    if on {
        format!("\x1b[{code}m{text}\x1b[0m")
    } else {
        text.to_string()
    }
}

/// Prints a value as pretty JSON on stdout.
pub fn print_json<T: Serialize>(value: &T) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// The directory to run in (`-C DIR` or the current one). A `-C` that is not a directory
/// (missing, a file) is bad input (exit 2), as for `git -C`.
pub fn cwd(g: &GlobalArgs) -> Result<PathBuf> {
    let here = std::env::current_dir().context("cannot read the current directory")?;
    let Some(d) = &g.dir else { return Ok(here) };
    let dir = if d.is_absolute() { d.clone() } else { here.join(d) };
    match std::fs::metadata(&dir) {
        Ok(m) if m.is_dir() => Ok(dir),
        Ok(_) => Err(HybridError::Usage(format!("-C {}: not a directory", d.display())).into()),
        Err(e) => Err(HybridError::Usage(format!("-C {}: cannot use it as a directory: {e}", d.display())).into()),
    }
}

/// An output file named on the command line (`--junit FILE`, `--out FILE`), resolved against
/// the run's directory and checked before any work: a folder, or a path below a file, is bad
/// input (exit 2). Missing folders are made when the file is written.
pub fn output_file(g: &GlobalArgs, flag: &str, path: &Path) -> Result<PathBuf> {
    let full = if path.is_absolute() { path.to_path_buf() } else { cwd(g)?.join(path) };
    let bad = |why: &str| -> Result<PathBuf> {
        Err(HybridError::Usage(format!("{flag} {}: {why}; name a file to write", path.display())).into())
    };
    if full.is_dir() || full.file_name().is_none() {
        return bad("is a directory");
    }
    if full.ancestors().skip(1).any(|a| a.exists() && !a.is_dir()) {
        return bad("a folder on its path is a file");
    }
    Ok(full)
}

/// A failed write of an output file named on the command line: bad input (exit 2), like a
/// path refused before the work.
pub fn write_output(flag: &str, path: &Path, data: &[u8]) -> Result<()> {
    git_hybrid::fsutil::write_atomic(path, data)
        .map_err(|e| HybridError::Usage(format!("{flag} {}: cannot write it: {e:#}", path.display())).into())
}

/// Opens the project for the run's directory.
pub fn project(g: &GlobalArgs) -> Result<Project> {
    Project::open(&cwd(g)?)
}

/// Colour for a task state in tables.
pub fn state_color(state: &str) -> &'static str {
    match state {
        "landed" => "32",
        "empty" | "candidate" => "36",
        "failed" | "conflict" => "31",
        "stopped" => "35",
        "running" | "starting" => "33",
        _ => "0",
    }
}

/// The ledger record of attempt `attempt` of task `id`; a task (or attempt) the ledger does not
/// know is bad input (exit 2).
pub fn task_record(project: &Project, id: &str, attempt: u32) -> Result<git_hybrid::ledger::TaskRecord> {
    let attempts = project.ledger().attempts(id)?;
    if attempts.is_empty() {
        return Err(HybridError::UnknownTask(id.to_string()).into());
    }
    attempts.into_iter().find(|r| r.attempt == attempt).ok_or_else(|| {
        HybridError::Usage(format!("task {id:?} has no attempt {attempt} (see `git hybrid status {id}`)")).into()
    })
}

/// Files of a new worktree below which no progress bar is shown.
const FILL_PROGRESS_MIN: usize = 1000;

static FILL_BAR: std::sync::Mutex<Option<indicatif::ProgressBar>> = std::sync::Mutex::new(None);

/// Shows a progress bar on stderr while a large worktree is filled, when stderr is a terminal
/// (call before the work; [`fill_progress_done`] after it).
pub fn fill_progress_on_terminal() {
    if std::io::stderr().is_terminal() {
        git_hybrid::git::populate::set_progress_hook(fill_progress);
    }
}

fn fill_progress(done: usize, total: usize) {
    if total < FILL_PROGRESS_MIN {
        return;
    }
    let Ok(mut bar) = FILL_BAR.lock() else { return };
    let bar = bar.get_or_insert_with(|| {
        let b = indicatif::ProgressBar::with_draw_target(Some(total as u64), indicatif::ProgressDrawTarget::stderr());
        if let Ok(style) = indicatif::ProgressStyle::with_template("filling the worktree [{bar:30}] {pos}/{len} files")
        {
            b.set_style(style.progress_chars("=> "));
        }
        b
    });
    bar.set_length(total as u64);
    bar.set_position(done as u64);
}

/// Ends the bar of [`fill_progress_on_terminal`], leaving its last state on the screen.
pub fn fill_progress_done() {
    if let Ok(mut bar) = FILL_BAR.lock() {
        if let Some(b) = bar.take() {
            b.finish();
            // indicatif leaves the cursor after the bar: what follows starts on its own line.
            eprintln!();
        }
    }
}
