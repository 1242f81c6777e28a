//! Resuming an attempt: what an earlier run left behind (a cut-short run, its leftover
//! processes and `index.lock`, uncommitted work committed as a checkpoint) and the preamble that
//! tells the next run what is already done.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use git2::Oid;

use crate::agent::{self, RunMeta};
use crate::ledger::{Ledger, TaskRecord, TaskState};
use crate::repo::Project;
use crate::worktree;

/// File in an attempt's folder (`runs/<id>/<attempt>/`) with a supervisor's extra instructions
/// (written by the MCP `retry` tool); the resume preamble includes it.
pub const SUPERVISOR_NOTES_FILE: &str = "supervisor.md";

/// What an earlier dispatch left behind of an attempt, as the reason its last run did not
/// finish (`None`: nothing to say). The run directories are the record of what was launched:
/// a run without an end in its meta.json was cut short by a crash, whatever the ledger had time
/// to say; whatever is left of its agent is killed.
pub(super) fn left_behind(ledger: &Ledger, id: &str, attempt: u32, attempt_dir: &Path) -> Result<Option<String>> {
    let mut previous_failure: Option<String> = None;
    if let Some(rec) = ledger.get(id, attempt)? {
        let last = latest_run(attempt_dir);
        let cut_short = last.as_ref().and_then(|(_, dir)| {
            let meta = RunMeta::read(dir);
            match &meta {
                Some(m) if m.ended.is_some() => None,
                _ => Some(meta),
            }
        });
        if !rec.state.is_done() && (rec.state == TaskState::Running || cut_short.is_some()) {
            let (n, dir) = last.clone().unwrap_or((rec.runs, attempt_dir.join(rec.runs.to_string())));
            let killed = agent::kill_orphan(&dir);
            if killed {
                remove_stale_index_lock(&rec);
            }
            let ended = RunMeta::read(&dir).and_then(|m| m.ended.map(|_| m.exit_code));
            previous_failure = Some(match ended {
                Some(code) => format!(
                    "the dispatcher was interrupted (crash or kill) after run {n} ended (exit code {}) and before \
                     its result was checked",
                    code.map(|c| c.to_string()).unwrap_or_else(|| "unknown".into())
                ),
                None => format!(
                    "the dispatcher was interrupted (crash or kill) while run {n} was running{}",
                    if killed { "; its leftover processes were stopped" } else { "" }
                ),
            });
        } else if matches!(rec.state, TaskState::Failed | TaskState::Conflict | TaskState::Stopped) {
            previous_failure = rec.failure.clone();
        }
    }
    Ok(previous_failure)
}

/// Commits everything left uncommitted in a task worktree; returns the new commit if any.
///
/// Why the git CLI: `git add -A` must treat ignore rules and deletions exactly like git. The
/// commands are hardened ([`crate::git::command`]): no hooks (the commit is git-hybrid's own,
/// and hooks in the shared git dir may have been planted by an agent), no signing, no filter
/// driver from the repository's config, no secret in their environment.
pub fn checkpoint(worktree: &Path, message: &str) -> Result<Option<String>> {
    let dirty = worktree::dirty_paths(worktree)?;
    if dirty.is_empty() {
        return Ok(None);
    }
    let ident = agent::identity_env(worktree);
    let git = |args: &[&str]| -> Result<std::process::Output> {
        crate::git::command(worktree)
            .args(args)
            .envs(ident.iter().map(|(k, v)| (k, v)))
            .output()
            .with_context(|| format!("cannot run git {}", args.join(" ")))
    };
    let run = |args: &[&str]| -> Result<String> {
        let out = git(args)?;
        if !out.status.success() {
            anyhow::bail!(
                "git {} failed: {}{}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim(),
                String::from_utf8_lossy(&out.stdout).trim()
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    };
    run(&["add", "-A"])?;
    crate::failpoint!("checkpoint::staged");
    let staged = git(&["diff", "--cached", "--quiet", "--no-ext-diff", "--no-textconv"])?;
    if staged.status.success() {
        return Ok(None);
    }
    run(&["commit", "-q", "--no-verify", "-m", message])?;
    crate::failpoint!("checkpoint::committed");
    Ok(Some(run(&["rev-parse", "HEAD"])?))
}

/// The resume preamble: what is already done, why the last run stopped, the agent's notes.
pub fn preamble(
    project: &Project,
    rec: &TaskRecord,
    last_run: Option<&Path>,
    previous_failure: Option<&str>,
    run: u32,
) -> String {
    let mut s = String::new();
    s.push_str(&format!(
        "# Resuming task {} (attempt {}, run {run})\n\nThis worktree already holds work from an earlier run. Do not start over: \
         check what is committed, then continue from where it stopped.\n\n",
        rec.id, rec.attempt
    ));
    s.push_str("## Commits already on the branch (merges of the target left out)\n\n");
    let commits = branch_commits(project, rec).unwrap_or_default();
    if commits.is_empty() {
        s.push_str("(none)\n");
    } else {
        for c in &commits {
            s.push_str(&format!("- {c}\n"));
        }
    }
    s.push_str("\n## Why the previous run did not finish\n\n");
    s.push_str(previous_failure.unwrap_or("(not recorded)"));
    s.push('\n');
    let recorded = crate::ledger::trust::run_dir(&project.state_dir(), rec);
    if let Some(dir) = last_run.or(recorded.as_deref()) {
        for (file, title) in
            [(agent::PROGRESS_FILE, "Your progress notes"), (agent::BLOCKED_FILE, "Your blocked notes")]
        {
            if let Ok(text) = std::fs::read_to_string(dir.join(file)) {
                if !text.trim().is_empty() {
                    s.push_str(&format!("\n## {title} ({file})\n\n{}\n", tail_lines(&text, 60)));
                }
            }
        }
    }
    let notes = crate::names::attempt_dir(&project.state_dir(), &rec.id, rec.attempt).join(SUPERVISOR_NOTES_FILE);
    if let Ok(text) = std::fs::read_to_string(notes) {
        if !text.trim().is_empty() {
            s.push_str(&format!("\n## Instructions from the supervisor (newest last)\n\n{}\n", text.trim_end()));
        }
    }
    s.push_str("\n## The task\n\n");
    s
}

/// Removes the `index.lock` a killed agent may have left in its worktree's git folder (the
/// whole process group is gone, so nobody holds it).
fn remove_stale_index_lock(rec: &TaskRecord) {
    if let Some(wt) = rec.worktree.as_deref() {
        remove_index_lock(wt);
    }
}

/// Removes `index.lock` from the git folder of the worktree `wt`.
pub(super) fn remove_index_lock(wt: &Path) {
    if let Ok(repo) = git2::Repository::open(wt) {
        let lock = repo.path().join("index.lock");
        if lock.exists() {
            let _ = std::fs::remove_file(lock);
        }
    }
}

/// The highest-numbered run directory of an attempt.
pub(super) fn latest_run(attempt_dir: &Path) -> Option<(u32, PathBuf)> {
    std::fs::read_dir(attempt_dir)
        .ok()?
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok().map(|n| (n, e.path())))
        .max_by_key(|(n, _)| *n)
}

fn tail_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// `short-sha subject` of the commits on the task branch that the target does not have.
fn branch_commits(project: &Project, rec: &TaskRecord) -> Result<Vec<String>> {
    let repo = &project.repo;
    let tip = repo.refname_to_id(&format!("refs/heads/{}", rec.branch))?;
    let mut walk = repo.revwalk()?;
    walk.push(tip)?;
    if let Ok(base) = Oid::from_str(&rec.base) {
        let _ = walk.hide(base);
    }
    if let Ok(t) = project.target_tip() {
        let _ = walk.hide(t);
    }
    let mut out = Vec::new();
    for oid in walk.take(50) {
        let oid = oid?;
        let c = repo.find_commit(oid)?;
        if c.parent_count() > 1 {
            continue; // sync merges of the target say nothing about the task's own work
        }
        let sha = oid.to_string();
        out.push(format!("{} {}", &sha[..10], c.summary().unwrap_or("")));
    }
    Ok(out)
}
