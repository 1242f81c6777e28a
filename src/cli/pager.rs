//! git's output conventions for commands that print a diff (`git hybrid diff`): colour from
//! `--color`, `NO_COLOR`, `color.diff`/`color.ui`; a pager only when stdout is a terminal.
//!
//! The pager is `GIT_PAGER`, else `core.pager` from the user's own (global or system) config,
//! else `PAGER`, else `less`, run through `sh -c` as git runs it, with `LESS=FRX` and `LV=-c`
//! unless set. `core.pager` in the repository's own config is not read: agents can write that
//! file, and it would name a program to run. An empty pager or `cat` means none; `--no-pager`
//! turns it off, and so does git's own `git --no-pager hybrid ...` (git sets `GIT_PAGER=cat`
//! for the command it runs). When git pages for us (`git -p hybrid ...`, `GIT_PAGER_IN_USE`),
//! colour `auto` is on, as for git's own commands.

use std::io::{IsTerminal, Write};
use std::process::{Command, Stdio};

use super::{ColorWhen, GlobalArgs};

/// Whether a diff is coloured: `--color always|never`, else `NO_COLOR` (off), else git's
/// `color.diff`, then `color.ui` (`always`, `never`/`false`, or `auto`/`true`: on a terminal).
pub fn diff_color(g: &GlobalArgs, repo: &git2::Repository) -> bool {
    let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
    match g.color {
        ColorWhen::Never => false,
        ColorWhen::Always => !no_color,
        ColorWhen::Auto if no_color => false,
        ColorWhen::Auto => {
            let cfg = repo.config().ok();
            let get = |k: &str| cfg.as_ref().and_then(|c| c.get_string(k).ok());
            match get("color.diff").or_else(|| get("color.ui")).map(|v| v.to_ascii_lowercase()).as_deref() {
                Some("always") => true,
                Some("never" | "false" | "off" | "no" | "0") => false,
                // `git -p hybrid diff`: git pages our output itself and says so.
                _ => std::io::stdout().is_terminal() || pager_in_use(),
            }
        }
    }
}

/// True when git started a pager for this command (`git -p hybrid ...`, `pager.hybrid`).
fn pager_in_use() -> bool {
    std::env::var("GIT_PAGER_IN_USE")
        .is_ok_and(|v| matches!(v.to_ascii_lowercase().as_str(), "true" | "1" | "yes" | "on"))
}

/// The pager command line to use, if any (see the module contract).
pub fn pager(no_pager: bool) -> Option<String> {
    if no_pager || !std::io::stdout().is_terminal() {
        return None;
    }
    let env = |k: &str| std::env::var(k).ok();
    let trusted = || git2::Config::open_default().ok().and_then(|c| c.get_string("core.pager").ok());
    let cmd = env("GIT_PAGER").or_else(trusted).or_else(|| env("PAGER")).unwrap_or_else(|| "less".into());
    let cmd = cmd.trim().to_string();
    (!cmd.is_empty() && cmd != "cat").then_some(cmd)
}

/// Writes `text` to stdout, through the pager when there is one. A pager the user quits early
/// is not an error.
pub fn page(text: &[u8], no_pager: bool) -> anyhow::Result<()> {
    if let Some(cmd) = pager(no_pager) {
        let mut child = Command::new("sh");
        child.arg("-c").arg(&cmd).stdin(Stdio::piped());
        if std::env::var_os("LESS").is_none() {
            child.env("LESS", "FRX");
        }
        if std::env::var_os("LV").is_none() {
            child.env("LV", "-c");
        }
        if let Ok(mut child) = child.spawn() {
            if let Some(mut stdin) = child.stdin.take() {
                let _ = stdin.write_all(text);
            }
            let _ = child.wait();
            return Ok(());
        }
    }
    let mut out = std::io::stdout().lock();
    out.write_all(text)?;
    out.flush()?;
    Ok(())
}

/// The terminal's width when stdout is one (for `--stat`).
pub fn term_columns() -> Option<u16> {
    let out = std::io::stdout();
    if !out.is_terminal() {
        return None;
    }
    rustix::termios::tcgetwinsize(&out).ok().map(|ws| ws.ws_col).filter(|c| *c > 0)
}
