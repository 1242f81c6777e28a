//! `git hybrid label`: labels for landed tasks, or for a JSONL stream of diff pairs.

use std::io::BufWriter;
use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use git_hybrid::error::HybridError;
use git_hybrid::labels::{landed, pairs};

use super::output::{print_json, project};
use super::GlobalArgs;

#[derive(Debug, Args)]
pub struct LabelArgs {
    /// Label only these landed tasks (default: every landed task).
    #[arg(value_name = "TASK", conflicts_with = "pairs", add = super::completions::task_ids())]
    pub tasks: Vec<String>,
    /// Label a JSONL file of {"id","candidate","final"} pairs (`-` = stdin) instead of the ledger;
    /// writes {"id","jaccard","ratio","score"} lines in input order.
    #[arg(long, value_name = "FILE|-")]
    pub pairs: Option<PathBuf>,
    /// Worker threads, 1 to 256 (default: one per core).
    #[arg(long, short = 'j', value_name = "N", value_parser = clap::value_parser!(u16).range(1..=256))]
    pub jobs: Option<u16>,
    /// With --pairs: skip malformed lines (counted on stderr) instead of stopping at the first.
    #[arg(long, requires = "pairs")]
    pub skip_bad: bool,
    /// Compute and print the labels without storing them in the ledger.
    #[arg(long, conflicts_with = "pairs")]
    pub dry_run: bool,
}

pub fn handle_label(a: LabelArgs, g: &GlobalArgs) -> anyhow::Result<i32> {
    match &a.pairs {
        Some(path) => label_pairs(path, &a),
        None => label_ledger(&a, g),
    }
}

fn label_pairs(path: &PathBuf, a: &LabelArgs) -> anyhow::Result<i32> {
    let jobs =
        a.jobs.map(usize::from).unwrap_or_else(|| std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1));
    let stdout = std::io::stdout();
    let out = BufWriter::with_capacity(1 << 16, stdout.lock());
    let summary = if path.as_os_str() == "-" {
        let opts = pairs::PairsOptions { jobs, skip_bad: a.skip_bad, source: "stdin".into() };
        pairs::run(std::io::stdin(), out, &opts)?
    } else {
        let file = std::fs::File::open(path)
            .map_err(|e| HybridError::Usage(format!("--pairs {}: cannot read it: {e}", path.display())))?;
        if file.metadata().is_ok_and(|m| m.is_dir()) {
            return Err(HybridError::Usage(format!(
                "--pairs {}: is a directory; name a JSONL file or -",
                path.display()
            ))
            .into());
        }
        let opts = pairs::PairsOptions { jobs, skip_bad: a.skip_bad, source: path.display().to_string() };
        pairs::run(file, out, &opts).with_context(|| format!("labelling {}", path.display()))?
    };
    if a.skip_bad && summary.skipped > 0 {
        let lines: Vec<String> = summary.skipped_lines.iter().map(|n| n.to_string()).collect();
        let more = if summary.skipped > lines.len() { ", ..." } else { "" };
        eprintln!("skipped {} malformed line(s): {}{more}", summary.skipped, lines.join(", "));
    }
    Ok(0)
}

fn label_ledger(a: &LabelArgs, g: &GlobalArgs) -> anyhow::Result<i32> {
    let project = project(g)?;
    let report = landed::label_landed(&project, &a.tasks, a.jobs.map(usize::from), !a.dry_run)?;
    if g.json {
        print_json(&report)?;
        return Ok(0);
    }
    if report.labeled.is_empty() && report.skipped.is_empty() {
        println!("no landed tasks to label");
    }
    for l in &report.labeled {
        println!(
            "{}#{} ({}): score {:.4}  jaccard {:.4}  ratio {:.4}",
            l.task, l.attempt, l.state, l.score, l.jaccard, l.ratio
        );
    }
    for s in &report.skipped {
        println!("{}#{}: skipped: {}", s.task, s.attempt, s.reason);
    }
    Ok(0)
}
