//! `git hybrid hooks install|uninstall|status|doctor`, and the hidden `hooks run <hook>` that the
//! installed wrappers call.

use clap::{Args, Subcommand};
use git_hybrid::hooks::{self, InstallReport};

use super::{output, GlobalArgs};

#[derive(Debug, Args)]
pub struct HooksArgs {
    #[command(subcommand)]
    pub action: HooksAction,
}

#[derive(Debug, Subcommand)]
pub enum HooksAction {
    /// Install the hooks (chaining any hook already there).
    Install,
    /// Remove the hooks and restore what was there before.
    Uninstall,
    /// Show which hooks are installed.
    Status,
    /// Find missing, stale, shadowed or non-executable hooks and say how to fix them.
    Doctor,
    /// Run one hook's checks (called by the installed wrappers).
    #[command(hide = true)]
    Run {
        /// `pre-commit` or `post-merge`.
        hook: String,
        /// The arguments git passed to the hook.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
}

pub fn handle_hooks(a: HooksArgs, g: &GlobalArgs) -> anyhow::Result<i32> {
    match a.action {
        HooksAction::Run { hook, args } => run_hook(&hook, &args, g),
        HooksAction::Install => {
            let project = output::project(g)?;
            let report = hooks::install(&project, &output::cwd(g)?)?;
            print_changes(&report, g)?;
            Ok(0)
        }
        HooksAction::Uninstall => {
            let project = output::project(g)?;
            let report = hooks::uninstall(&project, &output::cwd(g)?)?;
            print_changes(&report, g)?;
            Ok(0)
        }
        HooksAction::Status => {
            let project = output::project(g)?;
            let st = hooks::status(&project, &output::cwd(g)?)?;
            if g.json {
                output::print_json(&st)?;
                return Ok(0);
            }
            println!("hooks folder: {}", st.location.dir.display());
            if let Some(p) = &st.location.hooks_path {
                println!("core.hooksPath: {}{}", p.display(), if st.location.relative { " (relative)" } else { "" });
            }
            for h in &st.hooks {
                let chained = h.chained.as_ref().map(|c| format!(" (chains {})", c.display())).unwrap_or_default();
                println!("{:<11} {:<15} {}{chained}", h.name, h.state.as_str(), h.path.display());
            }
            for h in &st.shadowed {
                println!("{:<11} {:<15} {} (shadowed: git does not look here)", h.name, "shadowed", h.path.display());
            }
            Ok(0)
        }
        HooksAction::Doctor => {
            let project = output::project(g)?;
            let report = hooks::doctor(&project, &output::cwd(g)?)?;
            let code = if report.problems.is_empty() { 0 } else { 1 };
            if g.json {
                output::print_json(&serde_json::json!({
                    "ok": report.problems.is_empty(),
                    "location": report.location,
                    "problems": report.problems,
                }))?;
                return Ok(code);
            }
            if report.problems.is_empty() {
                println!("hooks ok: {}", report.location.dir.display());
            }
            for p in &report.problems {
                println!("{}: {}\n  fix: {}", p.kind, p.message, p.fix);
            }
            Ok(code)
        }
    }
}

fn print_changes(report: &InstallReport, g: &GlobalArgs) -> anyhow::Result<()> {
    if g.json {
        return output::print_json(report);
    }
    println!("hooks folder: {}", report.location.dir.display());
    for c in &report.hooks {
        let chained = match (&c.chained, c.action.as_str()) {
            (Some(p), "restored") => format!(" (put back the hook kept at {})", p.display()),
            (Some(p), _) => format!(" (chains {})", p.display()),
            _ => String::new(),
        };
        println!("{:<11} {:<13} {}{chained}", c.name, c.action, c.path.display());
    }
    for w in &report.warnings {
        eprintln!("git-hybrid: warning: {w}");
    }
    Ok(())
}

/// Runs a hook. Infrastructure errors become warnings with exit 0: a hook must never break git
/// because git-hybrid itself could not run; only a policy refusal (pre-commit) exits non-zero.
fn run_hook(hook: &str, args: &[String], g: &GlobalArgs) -> anyhow::Result<i32> {
    let cwd = output::cwd(g)?;
    match hook {
        "pre-commit" => match hooks::pre_commit(&cwd) {
            Ok(r) if r.refused() => {
                print_refusal(&r);
                Ok(1)
            }
            Ok(_) => Ok(0),
            Err(e) => {
                eprintln!("git-hybrid: warning: pre-commit checks skipped: {e:#}");
                Ok(0)
            }
        },
        "post-merge" => {
            let squash = args.first().is_some_and(|a| a == "1");
            match hooks::post_merge(&cwd, squash) {
                Ok(items) => {
                    for i in items.iter().filter(|i| i.action != "recorded" && i.action != "known") {
                        let why = match i.action.as_str() {
                            "busy" => "its task is locked by another git-hybrid process",
                            "disagrees" => "the ledger records a different landing (see `git hybrid verify`)",
                            _ => "its trailers are invalid",
                        };
                        eprintln!(
                            "git-hybrid: post-merge: did not record {} (task {} attempt {}): {why}",
                            &i.commit[..i.commit.len().min(10)],
                            i.task,
                            i.attempt
                        );
                    }
                }
                Err(e) => eprintln!("git-hybrid: warning: post-merge could not update the ledger: {e:#}"),
            }
            Ok(0)
        }
        other => {
            eprintln!("git-hybrid: warning: unknown hook {other:?}; nothing to run");
            Ok(0)
        }
    }
}

fn print_refusal(r: &hooks::PreCommitReport) {
    let who = match (&r.task, r.attempt) {
        (Some(t), Some(n)) if n > 1 => format!("task {t} attempt {n}"),
        (Some(t), _) => format!("task {t}"),
        _ => "this checkout".to_string(),
    };
    eprintln!("git-hybrid pre-commit: commit refused ({who})");
    if !r.outside_claims.is_empty() {
        let claims = r.claims.as_ref().map(|c| c.join(", ")).unwrap_or_default();
        eprintln!("  staged paths outside the task's claim ({claims}):");
        for p in &r.outside_claims {
            eprintln!("    {p}");
        }
        eprintln!("  unstage them (git restore --staged <path>) or change the task's touches in hybrid.toml");
    }
    if !r.secrets.is_empty() {
        eprintln!("  staged additions that look like secrets (values not shown):");
        for s in &r.secrets {
            eprintln!("    {}:{}: {}", s.path, s.line, s.kind);
        }
        eprintln!(
            "  remove them; for a known false positive add \"{}\" on that line or list it under [hooks] allow_secrets in hybrid.toml",
            git_hybrid::secrets::ALLOW_MARKER
        );
    }
}
