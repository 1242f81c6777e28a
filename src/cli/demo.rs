use std::io::IsTerminal;
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use git_hybrid::demo;

use super::{dispatch::print_report, dispatch::Printer, output, GlobalArgs};

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Folder for the sample repository; must not exist or be empty (default: a new temporary folder).
    pub dir: Option<PathBuf>,
    /// Agents run at once (default: the demo plan's concurrency, 4).
    #[arg(short = 'j', long = "jobs", value_name = "N", value_parser = clap::value_parser!(u32).range(1..=256))]
    pub jobs: Option<u32>,
}

pub fn handle_demo(a: DemoArgs, g: &GlobalArgs) -> Result<i32> {
    let dir = match &a.dir {
        Some(d) => output::cwd(g)?.join(d),
        None => {
            let tmp = tempfile::Builder::new()
                .prefix("git-hybrid-demo-")
                .tempdir()
                .context("cannot make a temporary folder")?;
            tmp.keep().join("demo")
        }
    };
    demo::create(&dir)?;
    let dir = git_hybrid::repo::canonical(&dir);
    if !g.json {
        println!("git-hybrid demo: sample repository in {}", dir.display());
        println!("dispatching its plan (hybrid.toml) with the built-in agents...\n");
    }
    git_hybrid::dispatch::install_stop_handlers();
    let mut printer = Printer::new(!g.json && std::io::stderr().is_terminal());
    let report = demo::run(&dir, a.jobs.map(|j| j as usize), &mut |e| printer.event(e))?;
    printer.finish();
    let surprises = demo::surprises(&report);
    if g.json {
        output::print_json(&serde_json::json!({
            "dir": dir,
            "report": report,
            "as_expected": surprises.is_empty(),
        }))?;
    } else {
        println!();
        print_report(&report, output::use_color(g));
        println!();
        println!("What happened:");
        println!("  - plugin tasks ran side by side: each claims only src/plugins/<name>/**;");
        println!("  - core-logging and core-config ran one after the other (core tasks are single-flight);");
        println!("  - plugin-index waited for the three plugins to land, release-notes for plugin-index;");
        println!("  - plugin-dice failed verify on run 1, then resumed with its own notes and passed on run 2;");
        println!("  - tagline-a and tagline-b both claim README.md, so they never ran together; tagline-b's");
        println!("    branch held an older edit of the same line: the sync before launch found the conflict,");
        println!("    so no agent was started for it.");
        println!();
        println!("Look around:");
        println!("  cd {}", dir.display());
        println!("  git log --oneline main        # one squash commit per landed task");
        println!("  git hybrid status             # state, runs, merge SHA per task");
        // One folder per run of attempt 1 (`runs/<task>/<attempt>/<run>/`).
        println!(
            "  ls .git/hybrid/runs/plugin-dice/1/1/ .git/hybrid/runs/plugin-dice/1/2/   # prompt.md stdout.log stderr.log progress.md verify.log meta.json"
        );
    }
    if !surprises.is_empty() {
        for (id, want, got) in &surprises {
            eprintln!("git-hybrid demo: {id} ended as {got:?}, expected {want:?}");
        }
        return Ok(git_hybrid::error::EXIT_FAILURE);
    }
    Ok(0)
}
