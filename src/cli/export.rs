//! `git hybrid export`: opt-in training records as JSONL.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, ValueEnum};
use git_hybrid::export::{self, ExportOptions, Format, Split};

use super::output::{print_json, project};
use super::GlobalArgs;

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum FormatArg {
    /// Everything, trajectory verbatim.
    Raw,
    /// {"messages": [...]} with tool_calls and tool messages.
    Openai,
    /// {"conversations": [{"from","value"}]}.
    Sharegpt,
    /// {"text": "<|im_start|>..."}.
    Chatml,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum SplitArg {
    Train,
    Val,
    Test,
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// Record shape.
    #[arg(long, value_enum, default_value_t = FormatArg::Raw)]
    pub format: FormatArg,
    /// Only records of this split (by SHA-256 of the task id: 80% train, 10% val, 10% test).
    #[arg(long, value_enum)]
    pub split: Option<SplitArg>,
    /// Write to FILE (atomically) instead of stdout.
    #[arg(long, short = 'o', value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// Keep records that repeat an earlier (prompt, final_diff) pair.
    #[arg(long)]
    pub no_dedupe: bool,
    /// Do not redact: a faithful copy for local use only.
    #[arg(long)]
    pub no_redact: bool,
}

pub fn handle_export(a: ExportArgs, g: &GlobalArgs) -> anyhow::Result<i32> {
    let project = project(g)?;
    let out_path = a.out.as_deref().map(|p| super::output::output_file(g, "--out", p)).transpose()?;
    export::check_opt_in(&project.config.config.export)?;
    let opts = ExportOptions {
        format: match a.format {
            FormatArg::Raw => Format::Raw,
            FormatArg::Openai => Format::Openai,
            FormatArg::Sharegpt => Format::Sharegpt,
            FormatArg::Chatml => Format::Chatml,
        },
        split: a.split.map(|s| match s {
            SplitArg::Train => Split::Train,
            SplitArg::Val => Split::Val,
            SplitArg::Test => Split::Test,
        }),
        dedupe: !a.no_dedupe,
        redact: !a.no_redact,
    };
    let (lines, summary) = export::export(&project, &opts)?;
    let mut data = Vec::new();
    for l in &lines {
        data.extend_from_slice(l.as_bytes());
        data.push(b'\n');
    }
    for w in &summary.warnings {
        eprintln!("warning: {w}");
    }
    match &out_path {
        Some(path) => {
            super::output::write_output("--out", path, &data)?;
            if g.json {
                print_json(&summary)?;
            } else {
                println!(
                    "exported {} record(s) to {} ({} duplicate(s) dropped, {} in other splits, {} still running, {} without content)",
                    summary.records,
                    path.display(),
                    summary.duplicates,
                    summary.other_splits,
                    summary.in_flight,
                    summary.empty
                );
            }
        }
        None => {
            let mut out = std::io::stdout().lock();
            out.write_all(&data).context("cannot write the records")?;
            out.flush().context("cannot write the records")?;
            eprintln!(
                "exported {} record(s) ({} duplicate(s) dropped, {} in other splits, {} still running, {} without content)",
                summary.records, summary.duplicates, summary.other_splits, summary.in_flight, summary.empty
            );
        }
    }
    Ok(0)
}
