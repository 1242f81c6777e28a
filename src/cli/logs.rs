//! `git hybrid logs <task>[@N] [-f] [-n LINES]`: the latest run of a task attempt: its
//! `progress.md` and `blocked.md` notes in full, the last lines of `stdout.log`, `stderr.log`
//! and `verify.log` (see `git_hybrid::runlog`). `-f` follows them, moving on to the next run
//! of a retry or resume, until the attempt is no longer starting or running. With `--json`:
//! one document; with `-f`, then one JSON line per appended chunk (`{"run", "file", "text"}`).

use std::time::Duration;

use clap::Args;
use git_hybrid::ledger::TaskState;
use git_hybrid::runlog::{self, Follower, FILES};

use super::{output, GlobalArgs};

#[derive(Debug, Args)]
pub struct LogsArgs {
    /// The task (`TASK@N`: attempt N).
    #[arg(value_name = "TASK[@N]", add = super::completions::task_ids())]
    pub task: String,
    /// Attempt number (for a task given without `@N`).
    #[arg(long, default_value_t = 1)]
    pub attempt: u32,
    /// Keep printing what the run writes until the attempt stops running.
    #[arg(short, long)]
    pub follow: bool,
    /// Lines of stdout.log, stderr.log and verify.log to show (0: all).
    #[arg(short = 'n', long, default_value_t = 40)]
    pub lines: usize,
}

const POLL: Duration = Duration::from_millis(200);

fn is_live(state: TaskState) -> bool {
    matches!(state, TaskState::Starting | TaskState::Running)
}

pub fn handle_logs(a: LogsArgs, g: &GlobalArgs) -> anyhow::Result<i32> {
    let (id, attempt) = git_hybrid::task_id::split_attempt(&a.task, a.attempt)?;
    let project = output::project(g)?;
    let state_dir = project.state_dir();
    let mut rec = output::task_record(&project, &id, attempt)?;
    let ledger = project.ledger();
    let mut run = runlog::latest_run(&state_dir, &rec);
    // Show what is there now.
    if g.json {
        let files: serde_json::Map<String, serde_json::Value> = FILES
            .iter()
            .map(|f| {
                let text = run.as_ref().and_then(|(_, d)| runlog::tail(&d.join(f), lines_for(f, a.lines)));
                (f.to_string(), serde_json::json!(text))
            })
            .collect();
        let doc = serde_json::json!({ "task": id, "attempt": attempt, "state": rec.state.as_str(),
            "run": run.as_ref().map(|r| r.0), "run_dir": run.as_ref().map(|r| &r.1), "files": files });
        if a.follow {
            println!("{doc}");
        } else {
            output::print_json(&doc)?;
        }
    } else {
        match &run {
            None => println!("{id} attempt {attempt} ({}): no run yet", rec.state.as_str()),
            Some((n, dir)) => print_run(&id, attempt, *n, dir, rec.state, a.lines),
        }
    }
    if !a.follow {
        return Ok(0);
    }
    let mut follower = run.as_ref().map(|(_, d)| Follower::new(d));
    let mut last_file = "";
    loop {
        let live = is_live(rec.state);
        // A newer run (retry, resume) replaces the one followed: shown from its start.
        let newest = runlog::latest_run(&state_dir, &rec);
        if newest.as_ref().map(|r| &r.1) != run.as_ref().map(|r| &r.1) {
            if let Some((n, dir)) = &newest {
                if !g.json {
                    println!("==> {id} attempt {attempt}, run {n}: {}", dir.display());
                }
                follower = Some(Follower::with_nothing_shown(dir));
                last_file = "";
            }
            run = newest;
        }
        if let (Some(f), Some((n, _))) = (follower.as_mut(), &run) {
            for (file, text) in f.poll() {
                if g.json {
                    println!("{}", serde_json::json!({ "run": n, "file": file, "text": text }));
                } else {
                    if file != last_file {
                        println!("--- {file} ---");
                        last_file = file;
                    }
                    print!("{text}");
                }
            }
        }
        use std::io::Write;
        std::io::stdout().flush()?;
        if !live {
            return Ok(0);
        }
        std::thread::sleep(POLL);
        rec = match ledger.get(&id, attempt)? {
            Some(r) => r,
            None => return Ok(0),
        };
    }
}

/// The agent's notes are short and shown whole; logs are cut to their last `lines`.
fn lines_for(file: &str, lines: usize) -> usize {
    if file.ends_with(".md") {
        0
    } else {
        lines
    }
}

fn print_run(id: &str, attempt: u32, n: u32, dir: &std::path::Path, state: TaskState, lines: usize) {
    let meta = git_hybrid::agent::RunMeta::read(dir);
    let how = match &meta {
        Some(m) if m.ended.is_none() => "running".to_string(),
        Some(m) if m.timed_out => "timed out".to_string(),
        Some(m) => match (m.exit_code, m.signal) {
            (Some(c), _) => format!("exited with code {c}"),
            (None, Some(s)) => format!("killed by signal {s}"),
            _ => "ended".to_string(),
        },
        None => "starting".to_string(),
    };
    println!("==> {id} attempt {attempt} ({}), run {n}: {how}; {}", state.as_str(), dir.display());
    for f in FILES {
        let Some(all) = runlog::tail(&dir.join(f), 0) else { continue };
        if all.trim().is_empty() {
            continue;
        }
        let text = runlog::tail(&dir.join(f), lines_for(f, lines)).unwrap_or_default();
        let cut = if text.len() < all.len() { format!(" (last {lines} lines)") } else { String::new() };
        println!("--- {f}{cut} ---");
        print!("{text}");
        if !text.ends_with('\n') {
            println!();
        }
    }
}
