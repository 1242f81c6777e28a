use std::collections::HashMap;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Result;
use clap::Args;
use git_hybrid::dispatch::{self, Detached, DispatchOptions, DispatchReport, Event};
use git_hybrid::repo::short;
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};

use super::{output, GlobalArgs};

#[derive(Debug, Args)]
pub struct DispatchArgs {
    /// Read the [[task]] plan from FILE instead of hybrid.toml (same schema).
    #[arg(long, value_name = "FILE")]
    pub plan: Option<PathBuf>,
    /// Agents run at once (default: [project] concurrency, else 4).
    #[arg(short = 'j', long = "jobs", value_name = "N", value_parser = clap::value_parser!(u32).range(1..=256))]
    pub jobs: Option<u32>,
    /// Print the order tasks would start in and why each waits; start nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Run in the background (pid in <git-common-dir>/hybrid/dispatch.pid, log in dispatch.log).
    #[arg(long, conflicts_with = "dry_run")]
    pub detach: bool,
    /// Internal: this process is the background dispatcher started by --detach.
    #[arg(long, hide = true)]
    pub detached_child: bool,
}

pub fn handle_dispatch(a: DispatchArgs, g: &GlobalArgs) -> Result<i32> {
    let project = output::project(g)?;
    let plan_file = match &a.plan {
        Some(p) => Some(output::cwd(g)?.join(p)),
        None => None,
    };
    let opts = DispatchOptions { plan_file, jobs: a.jobs.map(|j| j as usize) };
    if a.dry_run {
        return print_dry_run(&project, &opts, g);
    }
    if a.detach {
        return detach(&project, &opts, g);
    }
    dispatch::install_stop_handlers();
    let mut printer = Printer::new(!a.detached_child && std::io::stderr().is_terminal());
    let report = dispatch::dispatch(&project, &opts, &mut |e| printer.event(e))?;
    printer.finish();
    if g.json {
        output::print_json(&report)?;
    } else {
        print_report(&report, output::use_color(g));
    }
    Ok(report.exit_code())
}

fn print_dry_run(project: &git_hybrid::repo::Project, opts: &DispatchOptions, g: &GlobalArgs) -> Result<i32> {
    let (plan, jobs, rows) = dispatch::dry_run(project, opts)?;
    if g.json {
        output::print_json(&serde_json::json!({ "plan": plan.path, "jobs": jobs, "order": rows }))?;
        return Ok(0);
    }
    println!("dry run of {} ({} tasks, -j {jobs}); nothing is started", plan.path.display(), rows.len());
    println!("{:<5} {:<24} WHY IT WAITS", "WAVE", "TASK");
    let mut sorted: Vec<_> = rows.iter().collect();
    sorted.sort_by_key(|r| r.wave.unwrap_or(usize::MAX));
    for r in sorted {
        let wave = match r.wave {
            Some(w) => w.to_string(),
            None => "-".into(),
        };
        let why = if r.already_landed { "already landed".to_string() } else { r.waits.clone().unwrap_or_default() };
        println!("{wave:<5} {:<24} {why}", r.id);
    }
    Ok(0)
}

/// Starts the dispatcher in the background ([`dispatch::detach`]) and says where it logs.
fn detach(project: &git_hybrid::repo::Project, opts: &DispatchOptions, g: &GlobalArgs) -> Result<i32> {
    match dispatch::detach(project, opts)? {
        Detached::EndedAtOnce { code, log, tail } => {
            eprintln!("the background dispatcher ended at once; last lines of {}:", log.display());
            for l in tail {
                eprintln!("  {l}");
            }
            Ok(code)
        }
        Detached::Started { pid, log, pid_file } => {
            if g.json {
                output::print_json(&serde_json::json!({ "pid": pid, "log": log, "pid_file": pid_file }))?;
            } else {
                println!("dispatching in the background (pid {pid})");
                println!("  log:    {}", log.display());
                println!("  follow: git hybrid status --watch");
            }
            Ok(0)
        }
    }
}

/// Progress: bars on a terminal, plain timestamped lines otherwise (stderr either way).
pub struct Printer {
    bars: Option<Bars>,
}

struct Bars {
    multi: MultiProgress,
    overall: ProgressBar,
    units: HashMap<(String, u32), ProgressBar>,
}

impl Printer {
    pub fn new(tty: bool) -> Printer {
        let bars = tty.then(|| {
            let multi = MultiProgress::new();
            let overall = multi.add(ProgressBar::new(0));
            overall.set_style(
                ProgressStyle::with_template("{elapsed:>4} [{bar:30}] {pos}/{len} tasks {msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_bar())
                    .progress_chars("=> "),
            );
            // Files written into new worktrees, once a fill is large (see `fill_progress`).
            let _ = FILL_MULTI.set(multi.clone());
            git_hybrid::git::populate::set_progress_hook(fill_progress);
            Bars { multi, overall, units: HashMap::new() }
        });
        Printer { bars }
    }

    pub fn event(&mut self, e: &Event) {
        match &mut self.bars {
            Some(b) => b.event(e),
            None => plain(e),
        }
    }

    pub fn finish(&mut self) {
        if let Some(bar) = FILL_BAR.lock().ok().and_then(|mut b| b.take()) {
            bar.finish();
        }
        if let Some(b) = &self.bars {
            for bar in b.units.values() {
                bar.finish_and_clear();
            }
            b.overall.finish();
        }
    }
}

impl Bars {
    fn event(&mut self, e: &Event) {
        match e {
            Event::Plan { tasks, already_landed, already_empty, jobs } => {
                self.overall.set_length(tasks.saturating_sub(already_landed + already_empty) as u64);
                self.overall.set_message(format!("(-j {jobs})"));
            }
            Event::Added { tasks } => self.overall.inc_length(tasks.len() as u64),
            Event::Picked { task, attempt } => {
                let bar = self.multi.add(ProgressBar::new_spinner());
                bar.set_style(
                    ProgressStyle::with_template("  {spinner} {prefix:<28} {msg}")
                        .unwrap_or_else(|_| ProgressStyle::default_spinner()),
                );
                bar.set_prefix(label(task, *attempt));
                bar.set_message("starting");
                bar.enable_steady_tick(Duration::from_millis(120));
                self.units.insert((task.clone(), *attempt), bar);
            }
            Event::Phase { task, attempt, phase, detail } => {
                if let Some(bar) = self.units.get(&(task.clone(), *attempt)) {
                    bar.set_message(format!("{phase} {detail}"));
                }
            }
            Event::Finished { task, attempt, state, detail } => {
                if let Some(bar) = self.units.remove(&(task.clone(), *attempt)) {
                    bar.finish_and_clear();
                }
                let _ = self.multi.println(format!("  {:<28} {state} {}", label(task, *attempt), first_line(detail)));
                if state == "landed" || state == "empty" {
                    self.overall.inc(1);
                }
            }
            Event::Skipped { task, reason } => {
                let _ = self.multi.println(format!("  {task:<28} skipped: {reason}"));
            }
            Event::Warning { message } => {
                let _ = self.multi.println(format!("warning: {message}"));
            }
        }
    }
}

/// Files of new worktrees below which no bar is shown.
const FILL_PROGRESS_MIN: usize = 1000;

static FILL_MULTI: std::sync::OnceLock<MultiProgress> = std::sync::OnceLock::new();
static FILL_BAR: std::sync::Mutex<Option<ProgressBar>> = std::sync::Mutex::new(None);

/// One bar for every worktree this dispatch fills (files written / files to write, summed),
/// shown once the fills reach [`FILL_PROGRESS_MIN`] files; on a terminal only.
fn fill_progress(done: usize, total: usize) {
    if total < FILL_PROGRESS_MIN {
        return;
    }
    let (Some(multi), Ok(mut slot)) = (FILL_MULTI.get(), FILL_BAR.lock()) else { return };
    let bar = slot.get_or_insert_with(|| {
        let bar = multi.add(ProgressBar::new(total as u64));
        bar.set_style(
            ProgressStyle::with_template("     [{bar:30}] {pos}/{len} files written into new worktrees")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
        );
        bar
    });
    bar.set_length(total as u64);
    bar.set_position(done as u64);
}

fn label(task: &str, attempt: u32) -> String {
    if attempt > 1 {
        format!("{task}#{attempt}")
    } else {
        task.to_string()
    }
}

fn first_line(s: &str) -> String {
    git_hybrid::ledger::one_line(s)
}

fn plain(e: &Event) {
    let now = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
    let t = now.get(11..19).unwrap_or(&now).to_string();
    match e {
        Event::Plan { tasks, already_landed, already_empty, jobs } => {
            let empty = if *already_empty > 0 { format!(", {already_empty} already empty") } else { String::new() };
            eprintln!("[{t}] plan: {tasks} tasks ({already_landed} already landed{empty}), -j {jobs}")
        }
        Event::Added { tasks } => eprintln!("[{t}] added to the running plan: {}", tasks.join(", ")),
        Event::Picked { task, attempt } => eprintln!("[{t}] {} started", label(task, *attempt)),
        // Worktree and sync steps are quick and many: plain output keeps the meaningful ones.
        Event::Phase { phase, .. } if phase == "worktree" || phase == "sync" => {}
        Event::Phase { task, attempt, phase, detail } => {
            eprintln!("[{t}] {} {phase} {detail}", label(task, *attempt).trim_end())
        }
        Event::Finished { task, attempt, state, detail } => {
            eprintln!("[{t}] {} {state} {}", label(task, *attempt), first_line(detail))
        }
        Event::Skipped { task, reason } => eprintln!("[{t}] {task} skipped: {reason}"),
        Event::Warning { message } => eprintln!("[{t}] warning: {message}"),
    }
}

/// The outcome table.
pub fn print_report(report: &DispatchReport, color: bool) {
    println!("{:<24} {:>3} {:<10} {:>4} {:<10} NOTE", "TASK", "ATT", "STATE", "RUNS", "MERGE");
    for t in &report.tasks {
        let state = format!("{:<10}", t.state);
        let mut note = t.note.as_deref().map(first_line).unwrap_or_default();
        if t.already_landed {
            note = if t.state == "empty" {
                "empty before this dispatch (its work was already on the target)".into()
            } else {
                "landed before this dispatch".into()
            };
        }
        if !t.candidates.is_empty() {
            let c: Vec<String> = t.candidates.iter().map(|a| format!("#{a}")).collect();
            let sep = if note.is_empty() { "" } else { "; " };
            note = format!("{note}{sep}candidates {}", c.join(" "));
        }
        println!(
            "{:<24} {:>3} {} {:>4} {:<10} {}",
            t.id,
            t.attempt.map(|a| a.to_string()).unwrap_or_else(|| "-".into()),
            output::paint(color, output::state_color(&t.state), &state),
            t.runs,
            t.merge_sha.as_deref().map(short).unwrap_or("-"),
            note
        );
    }
    let mut counts: Vec<(String, usize)> = Vec::new();
    for t in &report.tasks {
        match counts.iter_mut().find(|(s, _)| *s == t.state) {
            Some((_, n)) => *n += 1,
            None => counts.push((t.state.clone(), 1)),
        }
    }
    let summary: Vec<String> = counts.iter().map(|(s, n)| format!("{n} {s}")).collect();
    println!("{}{}", summary.join(", "), if report.interrupted { " (stopped before the plan finished)" } else { "" });
}
