//! `git hybrid __man DIR` (hidden): writes one man page per command, generated from the clap
//! definitions, as `git-hybrid.1`, `git-hybrid-merge.1`, `git-hybrid-hooks-install.1`, ... into
//! DIR (created if missing; existing pages are replaced). `install.sh` runs it to install the
//! pages under `$PREFIX/share/man/man1`, where `git help hybrid` (and so `git hybrid --help`)
//! finds them. Hidden commands get no page.

use std::path::{Path, PathBuf};

use clap::{Args, CommandFactory};
use git_hybrid::error::HybridError;

use super::{output, GlobalArgs};

#[derive(Debug, Args)]
pub struct ManArgs {
    /// Folder to write the pages into (e.g. `$PREFIX/share/man/man1`).
    pub dir: PathBuf,
}

pub fn handle_man(a: ManArgs, g: &GlobalArgs) -> anyhow::Result<i32> {
    if a.dir.exists() && !a.dir.is_dir() {
        return Err(HybridError::Usage(format!("{} is not a directory", a.dir.display())).into());
    }
    std::fs::create_dir_all(&a.dir).map_err(|e| anyhow::anyhow!("cannot create {}: {e}", a.dir.display()))?;
    let mut cmd = super::Cli::command().disable_help_subcommand(true);
    cmd.build();
    let mut pages = Vec::new();
    write_pages(&cmd, &a.dir, &mut pages)?;
    if g.json {
        output::print_json(&serde_json::json!({ "dir": a.dir, "pages": pages }))?;
    } else {
        for p in &pages {
            println!("{}", p.display());
        }
    }
    Ok(0)
}

fn write_pages(cmd: &clap::Command, dir: &Path, pages: &mut Vec<PathBuf>) -> anyhow::Result<()> {
    let version = cmd.get_version().unwrap_or_default();
    let page = clap_mangen::Man::new(cmd.clone()).source(format!("git-hybrid {version}")).manual("git-hybrid Manual");
    let path = dir.join(page.get_filename());
    let mut text = Vec::new();
    render(&page, cmd, &mut text)?;
    std::fs::write(&path, text).map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))?;
    pages.push(path);
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        write_pages(sub, dir, pages)?;
    }
    Ok(())
}

/// clap_mangen's sections, with the exit codes as an EXIT STATUS section on every page (in
/// place of its EXTRA section, which would hold the top-level `after_help` only).
fn render(page: &clap_mangen::Man, cmd: &clap::Command, w: &mut Vec<u8>) -> std::io::Result<()> {
    page.render_title(w)?;
    page.render_name_section(w)?;
    page.render_synopsis_section(w)?;
    page.render_description_section(w)?;
    page.render_options_section(w)?;
    if cmd.get_subcommands().any(|s| !s.is_hide_set()) {
        page.render_subcommands_section(w)?;
    }
    w.extend_from_slice(EXIT_STATUS.as_bytes());
    if cmd.get_version().is_some() {
        page.render_version_section(w)?;
    }
    Ok(())
}

const EXIT_STATUS: &str = r#".SH "EXIT STATUS"
.TP
0
success
.TP
1
the operation ran and failed
.TP
2
bad input (usage, configuration, task id, missing ref, corrupt state); nothing was changed
.TP
3
conflict, or refused to protect work (uncommitted or local changes in the way, unlanded commits, a squash the landing gate refuses)
.TP
4
busy: another live process holds the lock
.PP
With \fB\-\-json\fR, errors are printed to stderr as one JSON document with \fBerror\fR and \fBexit_code\fR.
"#;
