//! `git hybrid verify [<range>] [--all] [--since REV] [--allow-merges] [--junit FILE]`: the CI job.

use std::path::PathBuf;

use clap::Args;
use git_hybrid::repo::short;
use git_hybrid::verify::{self, VerifyOptions};

use super::{output, GlobalArgs};

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// Commits to check: `A..B`, or one revision (everything reachable from it). Default: the
    /// target's commits that its upstream does not have.
    pub range: Option<String>,
    /// Check the target's commits since git-hybrid's first landing on it (history from before
    /// git-hybrid is not checked; `verify <target>` checks it all).
    #[arg(long)]
    pub all: bool,
    /// Check the target's commits that REV lacks (implies --all).
    #[arg(long, value_name = "REV", conflicts_with = "range")]
    pub since: Option<String>,
    /// Do not flag merge commits (also `[verify] allow_merge_commits`).
    #[arg(long)]
    pub allow_merges: bool,
    /// Also write the result as JUnit XML (one test case per checked commit).
    #[arg(long, value_name = "FILE")]
    pub junit: Option<PathBuf>,
}

pub fn handle_verify(a: VerifyArgs, g: &GlobalArgs) -> anyhow::Result<i32> {
    let project = output::project(g)?;
    let junit = a.junit.as_deref().map(|p| output::output_file(g, "--junit", p)).transpose()?;
    let report = verify::verify(
        &project,
        &VerifyOptions { range: a.range, all: a.all, since: a.since, allow_merges: a.allow_merges },
    )?;
    if let Some(path) = &junit {
        output::write_output("--junit", path, verify::junit_xml(&report).as_bytes())?;
    }
    let code = if report.ok { 0 } else { 1 };
    if g.json {
        output::print_json(&report)?;
        return Ok(code);
    }
    let color = output::use_color(g);
    for r in &report.rebuilt.rebuilt {
        println!("rebuilt from git: {r}");
    }
    for u in &report.rebuilt.unrecoverable {
        println!("not recoverable: {u}");
    }
    for c in &report.commits {
        let what = c.task.clone().unwrap_or_else(|| "merge commit".into());
        if c.failures.is_empty() {
            println!("{} {} {what}: {}", output::paint(color, "32", "ok  "), short(&c.commit), c.summary);
        }
        for f in &c.failures {
            println!("{} {} {what}: {f}", output::paint(color, "31", "FAIL"), short(&c.commit));
        }
        for w in &c.warnings {
            println!("{} {} {what}: {w}", output::paint(color, "33", "warn"), short(&c.commit));
        }
    }
    println!("verify {}: checked {}", report.range, report.scope);
    println!(
        "verify {}: {} commit(s) scanned, {} checked, {} failed, {} warning(s)",
        report.range,
        report.scanned,
        report.commits.len(),
        report.failures,
        report.warnings
    );
    Ok(code)
}
