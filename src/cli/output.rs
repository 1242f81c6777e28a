//! Printing: colour rules, JSON, the working directory.

use std::io::IsTerminal;
use std::path::PathBuf;

use anyhow::{Context, Result};
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

/// The directory to run in (`-C DIR` or the current one).
pub fn cwd(g: &GlobalArgs) -> Result<PathBuf> {
    let here = std::env::current_dir().context("cannot read the current directory")?;
    Ok(match &g.dir {
        Some(d) if d.is_absolute() => d.clone(),
        Some(d) => here.join(d),
        None => here,
    })
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
        "running" | "starting" => "33",
        _ => "0",
    }
}
