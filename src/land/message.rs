//! The squash commit's message.
//!
//! Contract: [`squash_message`] is a summary line (`-m`, the task title, or the task's commit
//! subjects without git-hybrid's checkpoint subjects, each once), a body listing the task's own commit subjects, and the trailers of
//! `docs/DESIGN.md` (`Hybrid-Task`, `Hybrid-Base`, `Hybrid-Tip`, and `Hybrid-Attempt` when > 1).

use anyhow::Result;
use git2::{Oid, Sort};

use super::LandOptions;
use crate::ledger::TaskRecord;
use crate::repo::Project;

/// The squash commit message: summary, the task's commit subjects, trailers.
///
/// The subjects are those of the non-merge commits reachable from the task tip and not from the
/// target (`base`). Those are exactly the ones not reachable from any merge base of the two
/// (a commit reachable from both is a common ancestor, so it is reachable from some merge base),
/// so the walk hides the merge bases: it then stops near the task's own commits instead of
/// walking everything the target gained since the task started. The catch-up merge itself is
/// a merge commit and never listed.
#[allow(clippy::too_many_arguments)]
pub(super) fn squash_message(
    project: &Project,
    rec: &TaskRecord,
    opts: &LandOptions,
    base: Oid,
    tip: Oid,
    task_tip: Oid,
    merge_bases: &[Oid],
) -> Result<String> {
    let repo = &project.repo;
    let hide = if merge_bases.is_empty() { std::slice::from_ref(&base) } else { merge_bases };
    let commits = match crate::git::generation::only_in(repo, task_tip, hide) {
        Some(commits) => commits,
        None => {
            let mut walk = repo.revwalk()?;
            walk.set_sorting(Sort::TOPOLOGICAL | Sort::REVERSE)?;
            walk.push(task_tip)?;
            for b in hide {
                walk.hide(*b)?;
            }
            walk.collect::<std::result::Result<Vec<Oid>, git2::Error>>()?
        }
    };
    let mut subjects = Vec::new();
    for oid in commits {
        let c = repo.find_commit(oid)?;
        if c.parent_count() <= 1 {
            subjects.push(String::from_utf8_lossy(c.summary_bytes().unwrap_or_default()).trim().to_string());
        }
    }
    let (summary, extra) = match (&opts.message, &rec.title) {
        (Some(m), _) => {
            let m = m.trim();
            match m.split_once('\n') {
                Some((first, rest)) => (first.trim().to_string(), Some(rest.trim().to_string())),
                None => (m.to_string(), None),
            }
        }
        (None, Some(t)) if !t.trim().is_empty() => (t.trim().to_string(), None),
        _ => (summary_from_subjects(&rec.id, &subjects), None),
    };
    let mut msg = summary;
    msg.push_str("\n\n");
    if let Some(e) = extra.filter(|e| !e.is_empty()) {
        msg.push_str(&e);
        msg.push_str("\n\n");
    }
    if !subjects.is_empty() {
        msg.push_str("Commits:\n");
        for s in &subjects {
            msg.push_str(&format!("- {s}\n"));
        }
        msg.push('\n');
    }
    msg.push_str(&format!("Hybrid-Task: {}\nHybrid-Base: {base}\nHybrid-Tip: {tip}\n", rec.id));
    if rec.attempt > 1 {
        msg.push_str(&format!("Hybrid-Attempt: {}\n", rec.attempt));
    }
    Ok(msg)
}

/// The subject of the commits git-hybrid itself makes of what an agent left uncommitted.
pub const CHECKPOINT_PREFIX: &str = "hybrid: checkpoint ";

/// A summary from the task's own commit subjects: git-hybrid's checkpoint subjects left out,
/// each subject once, in order.
fn summary_from_subjects(id: &str, subjects: &[String]) -> String {
    let mut own: Vec<String> = Vec::new();
    for s in subjects {
        if !s.is_empty() && !s.starts_with(CHECKPOINT_PREFIX) && !own.contains(s) {
            own.push(s.clone());
        }
    }
    let subjects = own.as_slice();
    match subjects {
        [] => format!("Land task {id}"),
        [one] => one.clone(),
        [first, rest @ ..] => {
            let joined = subjects.join("; ");
            if joined.chars().count() <= 72 {
                joined
            } else {
                format!("{first} (+{} more)", rest.len())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::summary_from_subjects;

    #[test]
    fn summaries_skip_checkpoints_and_repeats() {
        let s = |v: &[&str]| summary_from_subjects("t", &v.iter().map(|x| x.to_string()).collect::<Vec<_>>());
        assert_eq!(s(&["hybrid: checkpoint after run 1 of t"]), "Land task t");
        assert_eq!(s(&["fix a", "fix a", "hybrid: checkpoint after run 2 of t"]), "fix a");
        assert_eq!(s(&["a", "b"]), "a; b");
    }
}
