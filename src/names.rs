//! Every name git-hybrid gives: task branches, worktree folders, its refs under `refs/hybrid/`
//! and its files under `<git-common-dir>/hybrid/` (the table "Names and places" in
//! docs/DESIGN.md; scripts and tests rely on it).
//!
//! Contract: each rule is formatted here and nowhere else. The functions are pure: nothing here
//! reads, writes or validates. Task ids reach them already checked by [`crate::task_id`], which
//! also reads a task attempt back from its branch name ([`crate::task_id::from_branch`]). A
//! branch name (a landing's target) inside a file name has its `/` written `%`.

use std::path::{Path, PathBuf};

/// Prefix of every task branch: `hybrid/<id>`, `hybrid/<id>@<N>`.
pub const BRANCH_PREFIX: &str = "hybrid/";

/// Refs that keep landed task tips reachable.
pub const TIP_REFS: &str = "refs/hybrid/tips/";
/// Refs of pre-commit checkpoints.
pub const CHECKPOINT_REFS: &str = "refs/hybrid/checkpoints/";
/// Refs of the published landing records (blobs), local and on the remote.
pub const LEDGER_REFS: &str = "refs/hybrid/ledger/";
/// Refs of task claims on the remote.
pub const CLAIM_REFS: &str = "refs/hybrid/claims/";
/// This clone's last read copies of the remote's claims.
pub const SEEN_CLAIM_REFS: &str = "refs/hybrid/seen-claims/";

/// `<id>` for attempt 1, `<id>@<N>` for attempt N > 1: the attempt's worktree folder and
/// worktree admin entry, and the last part of its refs.
pub fn attempt_name(id: &str, attempt: u32) -> String {
    if attempt <= 1 {
        id.to_string()
    } else {
        format!("{id}@{attempt}")
    }
}

/// The branch of a task attempt: `hybrid/<id>`, `hybrid/<id>@<N>`.
pub fn branch(id: &str, attempt: u32) -> String {
    format!("{BRANCH_PREFIX}{}", attempt_name(id, attempt))
}

/// The full ref of a branch: `refs/heads/<branch>`.
pub fn branch_ref(branch: &str) -> String {
    format!("refs/heads/{branch}")
}

/// `<checkout>.hybrid` beside the main checkout `root`: the default worktree root (a task
/// attempt's worktree is `<worktree root>/<attempt_name>`).
pub fn default_worktree_root(root: &Path) -> PathBuf {
    let name = root.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "repo".into());
    root.parent().unwrap_or(Path::new("/")).join(format!("{name}.hybrid"))
}

/// `refs/hybrid/tips/<id>[@N]`: keeps a landed tip reachable.
pub fn tip_ref(id: &str, attempt: u32) -> String {
    format!("{TIP_REFS}{}", attempt_name(id, attempt))
}

/// `refs/hybrid/trash/<id>[@N]`: the work of a force-cleaned attempt.
pub fn trash_ref(id: &str, attempt: u32) -> String {
    format!("refs/hybrid/trash/{}", attempt_name(id, attempt))
}

/// `refs/hybrid/checkpoints/<id>[@N]`: the pre-commit hook's checkpoints.
pub fn checkpoint_ref(id: &str, attempt: u32) -> String {
    format!("{CHECKPOINT_REFS}{}", attempt_name(id, attempt))
}

/// `refs/hybrid/floor/<target>`: the parent of the first squash landed on `target`.
pub fn floor_ref(target: &str) -> String {
    format!("refs/hybrid/floor/{target}")
}

/// `refs/hybrid/ledger/<id>/<attempt>`: a published landing record.
pub fn ledger_ref(id: &str, attempt: u32) -> String {
    format!("{LEDGER_REFS}{id}/{attempt}")
}

/// `refs/hybrid/claims/<id>`: a task's claim on the remote.
pub fn claim_ref(id: &str) -> String {
    format!("{CLAIM_REFS}{id}")
}

/// `refs/hybrid/seen-claims/<id>`: the last copy of a remote claim this clone read.
pub fn seen_claim_ref(id: &str) -> String {
    format!("{SEEN_CLAIM_REFS}{id}")
}

/// A branch, remote or ref name as one file name: `/` written `%`.
fn file_part(branch: &str) -> String {
    branch.replace('/', "%")
}

/// `<git-common-dir>/hybrid`: every file git-hybrid keeps (the "state folder").
pub fn state_dir(common_dir: &Path) -> PathBuf {
    common_dir.join("hybrid")
}

/// `<state>/ledger`: one folder per task, one `<attempt>.json` per attempt.
pub fn ledger_dir(state: &Path) -> PathBuf {
    state.join("ledger")
}

/// The file name of an attempt's record in its task's ledger folder: `<attempt>.json`.
pub fn ledger_file_name(attempt: u32) -> String {
    format!("{attempt}.json")
}

/// `<state>/locks`.
pub fn locks_dir(state: &Path) -> PathBuf {
    state.join("locks")
}

/// `<state>/locks/task-<id>.lock`: the task lock.
pub fn task_lock(state: &Path, id: &str) -> PathBuf {
    locks_dir(state).join(format!("task-{id}.lock"))
}

/// `<state>/locks/land-<target>.lock`: the landing lock of a target.
pub fn land_lock(state: &Path, target: &str) -> PathBuf {
    locks_dir(state).join(format!("land-{}.lock", file_part(target)))
}

/// `<state>/locks/remote-<remote>.lock`: serializes this clone's fetches and pushes.
pub fn remote_lock(state: &Path, remote: &str) -> PathBuf {
    locks_dir(state).join(format!("remote-{}.lock", file_part(remote)))
}

/// `<state>/locks/ref-<refname>.note`: the crash note of a git-style ref lock.
pub fn ref_lock_note(state: &Path, refname: &str) -> PathBuf {
    locks_dir(state).join(format!("ref-{}.note", file_part(refname)))
}

/// Whether a ref's lock note stays (marked free) when the lock is released: yes for refs locked
/// again and again (a target branch: every landing reuses its note, no new file each time); no
/// for a task's own refs (its branch and tip refs, locked a few times in the task's life), whose
/// notes would otherwise pile up, one per task.
pub fn ref_lock_note_is_kept(refname: &str) -> bool {
    let task_ref = refname.strip_prefix("refs/heads/").is_some_and(|b| b.starts_with(BRANCH_PREFIX))
        || refname.starts_with("refs/hybrid/");
    !task_ref
}

/// `<state>/locks/index-<who>-<target>.note`: the crash note of a fast checkout move's
/// `index.lock` (`who`: `main` for the main checkout, `wt-<name>` for a linked worktree).
pub fn index_lock_note(state: &Path, who: &str, target: &str) -> PathBuf {
    locks_dir(state).join(format!("index-{who}-{}.note", file_part(target)))
}

/// `<state>/moves/<refname>.json`: the note of a checkout move under way on a branch's
/// checkouts (a landing's or a catch-up's).
pub fn move_note(state: &Path, refname: &str) -> PathBuf {
    state.join("moves").join(format!("{}.json", file_part(refname)))
}

/// `<state>/landing/<target>.json`: the note of a landing under way (or killed).
pub fn landing_note(state: &Path, target: &str) -> PathBuf {
    state.join("landing").join(format!("{}.json", file_part(target)))
}

/// The landing note's one temporary file.
pub fn landing_note_temp(state: &Path, target: &str) -> PathBuf {
    state.join("landing").join(format!(".{}.json.tmp", file_part(target)))
}

/// `<state>/runs`: one folder per task.
pub fn runs_dir(state: &Path) -> PathBuf {
    state.join("runs")
}

/// `<state>/runs/<id>/<attempt>`: an attempt's runs, one numbered folder each.
pub fn attempt_dir(state: &Path, id: &str, attempt: u32) -> PathBuf {
    runs_dir(state).join(id).join(attempt.to_string())
}

/// `<state>/runs/<id>/<attempt>/stop`: `git hybrid stop` asks the dispatcher to record the
/// attempt as `stopped` (the next dispatch removes it and resumes the attempt).
pub fn stop_request(state: &Path, id: &str, attempt: u32) -> PathBuf {
    attempt_dir(state, id, attempt).join("stop")
}

/// `<state>/runs/<id>/<attempt>/setup.done`: the `[worktree] setup` command succeeded in the
/// attempt's worktree (`dispatch` runs it before the first agent run that finds this missing).
pub fn setup_done(state: &Path, id: &str, attempt: u32) -> PathBuf {
    attempt_dir(state, id, attempt).join("setup.done")
}

/// `<state>/dispatch.pid`: the dispatcher's lock and pid file.
pub fn dispatch_pid(state: &Path) -> PathBuf {
    state.join("dispatch.pid")
}

/// `<state>/dispatch.log`: the background dispatcher's log.
pub fn dispatch_log(state: &Path) -> PathBuf {
    state.join("dispatch.log")
}

/// `<state>/dispatch.plan`: the running dispatcher's pid and plan task ids.
pub fn dispatch_plan(state: &Path) -> PathBuf {
    state.join("dispatch.plan")
}

/// `<state>/hooks.json`: the folders hooks were installed into.
pub fn hooks_record(state: &Path) -> PathBuf {
    state.join("hooks.json")
}

/// `<state>/commit-facts.bin`: generation numbers, dates and parents of commits outside git's
/// commit-graph, kept across processes (`git::commit_facts`).
pub fn commit_facts(state: &Path) -> PathBuf {
    state.join("commit-facts.bin")
}

/// `<state>/locks/commit-facts.lock`: held while a process adds to `commit-facts.bin`.
pub fn commit_facts_lock(state: &Path) -> PathBuf {
    locks_dir(state).join("commit-facts.lock")
}

/// `<state>/mcp`: the tasks dispatched through MCP.
pub fn mcp_dir(state: &Path) -> PathBuf {
    state.join("mcp")
}

/// `<state>/tmp/worktrees/<name>`: where a new worktree's admin entry is built.
pub fn worktree_admin_temp(state: &Path, name: &str) -> PathBuf {
    state.join("tmp").join("worktrees").join(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The table in docs/DESIGN.md, spelled out.
    #[test]
    fn names_match_the_documented_table() {
        assert_eq!(branch("t1", 1), "hybrid/t1");
        assert_eq!(branch("t1", 3), "hybrid/t1@3");
        assert_eq!(attempt_name("t1", 1), "t1");
        assert_eq!(attempt_name("t1", 2), "t1@2");
        assert_eq!(tip_ref("t1", 2), "refs/hybrid/tips/t1@2");
        assert_eq!(trash_ref("t1", 1), "refs/hybrid/trash/t1");
        assert_eq!(checkpoint_ref("t1", 2), "refs/hybrid/checkpoints/t1@2");
        assert_eq!(floor_ref("main"), "refs/hybrid/floor/main");
        assert_eq!(ledger_ref("t1", 2), "refs/hybrid/ledger/t1/2");
        assert_eq!(claim_ref("t1"), "refs/hybrid/claims/t1");
        let s = state_dir(Path::new("/r/.git"));
        assert_eq!(s, Path::new("/r/.git/hybrid"));
        assert_eq!(ledger_dir(&s).join("t1").join(ledger_file_name(2)), Path::new("/r/.git/hybrid/ledger/t1/2.json"));
        assert_eq!(task_lock(&s, "t1"), Path::new("/r/.git/hybrid/locks/task-t1.lock"));
        assert_eq!(land_lock(&s, "team/main"), Path::new("/r/.git/hybrid/locks/land-team%main.lock"));
        assert_eq!(landing_note(&s, "team/main"), Path::new("/r/.git/hybrid/landing/team%main.json"));
        assert_eq!(attempt_dir(&s, "t1", 2), Path::new("/r/.git/hybrid/runs/t1/2"));
        assert_eq!(dispatch_pid(&s), Path::new("/r/.git/hybrid/dispatch.pid"));
        assert_eq!(commit_facts(&s), Path::new("/r/.git/hybrid/commit-facts.bin"));
        assert_eq!(commit_facts_lock(&s), Path::new("/r/.git/hybrid/locks/commit-facts.lock"));
    }
}
