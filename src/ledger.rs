//! The task ledger: one durable record per task attempt.
//!
//! Contract: records live in the repository's common git directory
//! (`<git-common-dir>/hybrid/ledger/<task>/<attempt>.json`), so every linked worktree sees the
//! same ledger. Each record is its own file, replaced atomically (write + rename), so a crash
//! never leaves a half record and readers never see one. The write is synced to disk first when
//! git syncs refs (`core.fsync` names `reference`, `committed`, `added` or `all`; see
//! [`crate::fsutil::git_fsyncs_refs`]): by git's default it does not, and a record is only worth
//! what the commit and ref it names are worth after a power loss. Read-modify-write goes through
//! [`Ledger::update`], which holds the task's lock ([`crate::lock::FileLock`]) so concurrent
//! processes never lose each other's updates. Unknown JSON keys are preserved on rewrite, so an
//! older binary does not drop fields a newer one wrote.
//!
//! Records are untrusted input (any agent can write the common git directory): every read
//! checks them against the trust rules of [`trust`] (a record names the task and attempt of its
//! path; `landed`/`empty` only where git confirms it), and a record that fails is
//! [`crate::error::HybridError::Corrupt`] (exit 2, naming the file), never acted on.
//! [`rebuild`] restores the records of landings git proves but whose record was deleted.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::error::HybridError;
use crate::fsutil::{now_rfc3339, write_atomic_with};
use crate::lock::FileLock;
use crate::names;
use crate::repo::Project;

pub mod rebuild;
pub mod refs;
pub mod trust;

/// Where a task attempt is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TaskState {
    /// The worktree is being created (a crash here is repaired by the next `start`).
    Starting,
    /// Worktree and branch exist; no agent has finished yet.
    Ready,
    /// An agent is running in the worktree.
    Running,
    /// Verify passed; waiting to land.
    Passed,
    /// The agent or verify failed; the worktree is kept.
    Failed,
    /// Sync or catch-up conflicts with the target; the worktree is kept.
    Conflict,
    /// Landed as a squash commit (`merge_sha`).
    Landed,
    /// Its work was already in the target; nothing was committed.
    Empty,
    /// Another attempt of the same task landed (best-of-K); kept as a candidate.
    Candidate,
    /// Removed with `clean --force` before landing.
    Abandoned,
    /// Its agent was stopped with `git hybrid stop`; the worktree is kept and the next
    /// `dispatch` resumes it.
    Stopped,
}

impl TaskState {
    pub fn as_str(self) -> &'static str {
        match self {
            TaskState::Starting => "starting",
            TaskState::Ready => "ready",
            TaskState::Running => "running",
            TaskState::Passed => "passed",
            TaskState::Failed => "failed",
            TaskState::Conflict => "conflict",
            TaskState::Landed => "landed",
            TaskState::Empty => "empty",
            TaskState::Candidate => "candidate",
            TaskState::Abandoned => "abandoned",
            TaskState::Stopped => "stopped",
        }
    }

    /// Landed or empty: the task's work is in the target.
    pub fn is_done(self) -> bool {
        matches!(self, TaskState::Landed | TaskState::Empty)
    }
}

/// Labels comparing an attempt's candidate patch with the landed patch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Labels {
    pub jaccard: f64,
    pub ratio: f64,
    pub score: f64,
}

/// One task attempt.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TaskRecord {
    pub id: String,
    pub attempt: u32,
    pub state: TaskState,
    pub branch: String,
    /// The task worktree; `null` once it is cleaned.
    pub worktree: Option<PathBuf>,
    /// The commit the branch was created from.
    pub base: String,
    /// The target branch (short name) the task lands on.
    pub target: String,
    pub title: Option<String>,
    /// The squash commit the task became.
    pub merge_sha: Option<String>,
    /// The target tip the squash was computed on (`Hybrid-Base`).
    pub merge_base: Option<String>,
    /// The task branch tip that landed (`Hybrid-Tip`).
    pub tip: Option<String>,
    pub landed_at: Option<String>,
    pub created: String,
    pub updated: String,
    /// Folder of the latest run's files (prompt, stdout, stderr, progress.md, blocked.md).
    pub run_dir: Option<PathBuf>,
    /// The agent argv of the latest run.
    pub agent: Option<Vec<String>>,
    /// Why the latest run failed or conflicted.
    pub failure: Option<String>,
    /// Paths in conflict, when `state` is `conflict`.
    #[serde(default)]
    pub conflicts: Vec<String>,
    /// How many times an agent has been launched for this attempt.
    #[serde(default)]
    pub runs: u32,
    pub labels: Option<Labels>,
    /// The paths this attempt may change (see [`crate::claims`]), fixed when it was started:
    /// the dispatched plan's claims, or the `hybrid.toml` entry's for `git hybrid start`. `[]`
    /// means unrestricted; `null` (not known when it started) makes the pre-commit hook read
    /// `hybrid.toml` at commit time.
    #[serde(default)]
    pub claims: Option<Vec<String>>,
    /// Explicit overrides of the landing gate that let paths of this attempt through
    /// (`merge --allow-unclaimed`, `--allow-protected`; see [`crate::gate`]).
    #[serde(default)]
    pub overrides: Vec<GateOverride>,
    /// When the task was archived (`git hybrid archive`): hidden from `status` and `list`,
    /// shown by `status --all`; `null` when it is not.
    #[serde(default)]
    pub archived: Option<String>,
    /// Fields written by other versions, kept verbatim.
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

/// One use of a landing-gate override: which, for which paths, when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GateOverride {
    /// `allow-unclaimed` or `allow-protected`.
    pub kind: String,
    pub paths: Vec<String>,
    pub at: String,
}

impl TaskRecord {
    /// A fresh record.
    /// The record of a branch git-hybrid did not start (no worktree), found ready to land.
    pub fn adopted(id: &str, attempt: u32, branch: &str, base: &str, target: &str) -> TaskRecord {
        let mut rec = TaskRecord::new(id, attempt, branch, Path::new(""), base, target);
        rec.worktree = None;
        rec.state = TaskState::Ready;
        rec
    }

    pub fn new(id: &str, attempt: u32, branch: &str, worktree: &Path, base: &str, target: &str) -> TaskRecord {
        let now = now_rfc3339();
        TaskRecord {
            id: id.to_string(),
            attempt,
            state: TaskState::Starting,
            branch: branch.to_string(),
            worktree: Some(worktree.to_path_buf()),
            base: base.to_string(),
            target: target.to_string(),
            title: None,
            merge_sha: None,
            merge_base: None,
            tip: None,
            landed_at: None,
            created: now.clone(),
            updated: now,
            run_dir: None,
            agent: None,
            failure: None,
            conflicts: Vec::new(),
            runs: 0,
            labels: None,
            claims: None,
            overrides: Vec::new(),
            archived: None,
            extra: serde_json::Map::new(),
        }
    }
}

/// Handle on the ledger directory.
#[derive(Debug, Clone)]
pub struct Ledger {
    dir: PathBuf,
    /// `<git-common-dir>/hybrid`.
    state: PathBuf,
    sync: bool,
    /// The common git directory `landed`/`empty` records are confirmed against (trust rule 2);
    /// `None` only for [`Ledger::unconfirmed`].
    confirm_in: Option<PathBuf>,
}

/// A failure note (or any multi-line note) on one line for logs and tables: its first line,
/// and, when there is more, its last non-empty line (usually the useful one: the agent's or
/// the verify command's last output), e.g. `the agent exited with code 127; last output: sh:
/// claude: not found`.
pub fn one_line(note: &str) -> String {
    let lines: Vec<&str> = note.lines().map(str::trim_end).filter(|l| !l.trim().is_empty()).collect();
    match lines.as_slice() {
        [] => String::new(),
        [only] => only.to_string(),
        [first, .., last] => {
            let head = first.trim_end_matches(':');
            let sep = if first.ends_with(':') { ": " } else { " ... " };
            format!("{head}{sep}{}", last.trim())
        }
    }
}

impl Project {
    /// The ledger of this repository (defined here, so the repository layer does not depend on
    /// the ledger).
    pub fn ledger(&self) -> Ledger {
        Ledger::new(&self.common_dir).synced(self.fsync_refs)
    }
}

impl Ledger {
    /// The ledger of the repository whose common git directory is `common_dir`.
    /// Every write is synced to disk; see [`Ledger::synced`].
    pub fn new(common_dir: &Path) -> Ledger {
        Ledger {
            dir: names::ledger_dir(&names::state_dir(common_dir)),
            state: names::state_dir(common_dir),
            sync: true,
            confirm_in: Some(common_dir.to_path_buf()),
        }
    }

    /// This ledger without trust rule 2: `landed`/`empty` records are returned as written (the
    /// identity rule still holds). Only for readers that check landings themselves (`verify`
    /// compares every record with the commit it names) and for tests.
    pub fn unconfirmed(mut self) -> Ledger {
        self.confirm_in = None;
        self
    }

    /// Whether writes are synced to disk before they replace a record (see the module docs).
    pub fn synced(mut self, sync: bool) -> Ledger {
        self.sync = sync;
        self
    }

    /// The file of one attempt's record.
    pub fn path(&self, id: &str, attempt: u32) -> PathBuf {
        self.dir.join(id).join(names::ledger_file_name(attempt))
    }

    /// Reads, checks and confirms one record file (see the module docs); `repo` is opened on
    /// the first record that needs git and reused.
    fn load(
        &self,
        path: &Path,
        id: &str,
        attempt: u32,
        repo: &mut Option<git2::Repository>,
    ) -> Result<Option<TaskRecord>> {
        let Some(rec) = read_record(path, id, attempt)? else { return Ok(None) };
        if let (true, Some(common)) = (rec.state.is_done(), &self.confirm_in) {
            if repo.is_none() {
                *repo =
                    Some(git2::Repository::open(common).with_context(|| format!("cannot open {}", common.display()))?);
            }
            if let Some(r) = repo.as_ref() {
                trust::confirm_done(r, &rec).map_err(|why| HybridError::Corrupt {
                    path: path.display().to_string(),
                    reason: format!("it says {} but git does not confirm it: {why}", rec.state.as_str()),
                })?;
            }
        }
        Ok(Some(rec))
    }

    /// The record's `run_dir` if the trust rules accept it (inside this repository's
    /// `hybrid/runs/<id>/<attempt>/`; see [`trust::run_dir`]).
    pub fn run_dir(&self, rec: &TaskRecord) -> Option<PathBuf> {
        trust::run_dir(&self.state, rec)
    }

    /// Path of the lock that serializes changes to one task (all attempts).
    pub fn task_lock_path(&self, id: &str) -> PathBuf {
        names::task_lock(&self.state, id)
    }

    /// Takes the task's lock (waits for it).
    pub fn lock_task(&self, id: &str) -> Result<FileLock> {
        FileLock::acquire(&self.task_lock_path(id))
    }

    /// One attempt's record, if it exists.
    pub fn get(&self, id: &str, attempt: u32) -> Result<Option<TaskRecord>> {
        self.load(&self.path(id, attempt), id, attempt, &mut None)
    }

    /// All attempts of one task, by attempt number.
    pub fn attempts(&self, id: &str) -> Result<Vec<TaskRecord>> {
        self.attempts_with(id, &mut None)
    }

    fn attempts_with(&self, id: &str, repo: &mut Option<git2::Repository>) -> Result<Vec<TaskRecord>> {
        let dir = self.dir.join(id);
        let mut out = Vec::new();
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", dir.display())),
        };
        for entry in entries {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(stem) = name.strip_suffix(".json") else { continue };
            if name.starts_with('.') {
                continue;
            }
            let attempt = stem.parse::<u32>().ok().filter(|n| *n >= 1 && n.to_string() == stem).ok_or_else(|| {
                HybridError::Corrupt {
                    path: entry.path().display().to_string(),
                    reason: "a ledger file is named <attempt>.json (a positive number)".into(),
                }
            })?;
            if let Some(rec) = self.load(&entry.path(), id, attempt, repo)? {
                out.push(rec);
            }
        }
        out.sort_by_key(|r| r.attempt);
        Ok(out)
    }

    /// Every record, sorted by task id then attempt.
    pub fn list(&self) -> Result<Vec<TaskRecord>> {
        let mut out = Vec::new();
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", self.dir.display())),
        };
        let mut repo = None;
        for entry in entries {
            let entry = entry?;
            if entry.file_type()?.is_dir() {
                let id = entry.file_name().to_string_lossy().into_owned();
                if id.starts_with('.') {
                    continue;
                }
                out.extend(self.attempts_with(&id, &mut repo)?);
            }
        }
        out.sort_by(|a, b| a.id.cmp(&b.id).then(a.attempt.cmp(&b.attempt)));
        Ok(out)
    }

    /// Writes a record as a whole (atomically). Callers hold the task lock.
    pub fn put(&self, rec: &TaskRecord) -> Result<()> {
        let mut json = serde_json::to_vec_pretty(rec)?;
        json.push(b'\n');
        let path = self.path(&rec.id, rec.attempt);
        if let Some(dir) = path.parent() {
            remove_dead_temp_files(dir);
        }
        write_atomic_with(&path, &json, self.sync)
            .with_context(|| format!("cannot write the ledger record of {}#{}", rec.id, rec.attempt))
    }

    /// Read-modify-write of one record under the task lock; `None` if it does not exist.
    pub fn update<F>(&self, id: &str, attempt: u32, f: F) -> Result<Option<TaskRecord>>
    where
        F: FnOnce(&mut TaskRecord),
    {
        // No record, no lock file: an unknown task leaves nothing behind.
        if !self.path(id, attempt).exists() {
            return Ok(None);
        }
        let _lock = self.lock_task(id)?;
        self.update_locked(id, attempt, f)
    }

    /// Read-modify-write of one record under the task lock the caller holds, starting from
    /// `fresh` when the record does not exist yet (a branch adopted by the same command).
    pub fn upsert_locked<F>(&self, fresh: &TaskRecord, f: F) -> Result<TaskRecord>
    where
        F: FnOnce(&mut TaskRecord),
    {
        let rec = self.get(&fresh.id, fresh.attempt)?.unwrap_or_else(|| fresh.clone());
        self.rewrite(rec, f)
    }

    /// Takes the task's lock if no live process holds it.
    pub fn try_lock_task(&self, id: &str) -> Result<Option<FileLock>> {
        FileLock::try_acquire(&self.task_lock_path(id))
    }

    /// Like [`Ledger::update`] for a caller that already holds the task lock.
    pub fn update_locked<F>(&self, id: &str, attempt: u32, f: F) -> Result<Option<TaskRecord>>
    where
        F: FnOnce(&mut TaskRecord),
    {
        match self.get(id, attempt)? {
            Some(rec) => self.rewrite(rec, f).map(Some),
            None => Ok(None),
        }
    }

    /// Applies `f` to a record, stamps `updated` and writes it.
    fn rewrite<F>(&self, mut rec: TaskRecord, f: F) -> Result<TaskRecord>
    where
        F: FnOnce(&mut TaskRecord),
    {
        f(&mut rec);
        rec.updated = now_rfc3339();
        self.put(&rec)?;
        Ok(rec)
    }
}

/// Removes temporary files a writer killed mid-write left behind (readers already skip them).
/// Writers hold the task lock, so a temporary file older than a minute belongs to a dead one.
fn remove_dead_temp_files(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        if !entry.file_name().to_string_lossy().starts_with(".tmp-") {
            continue;
        }
        let old = entry
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age.as_secs() >= 60);
        if old {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// Largest ledger record read (a record is a few KiB; labels and claims included).
const MAX_RECORD_BYTES: u64 = 4 << 20;

/// Reads the record at `path` and checks it names task `id`, attempt `attempt` (trust rule 1).
fn read_record(path: &Path, id: &str, attempt: u32) -> Result<Option<TaskRecord>> {
    use crate::fsutil::{read_regular_capped, CappedReadError};
    match read_regular_capped(path, MAX_RECORD_BYTES) {
        Ok(bytes) => {
            let rec = trust::parse(path, &bytes)?;
            trust::check_identity(path, &rec, id, attempt)?;
            Ok(Some(rec))
        }
        Err(CappedReadError::NotFound) => Ok(None),
        Err(CappedReadError::Io(e)) => Err(e).with_context(|| format!("cannot read {}", path.display())),
        Err(e) => Err(HybridError::Corrupt { path: path.display().to_string(), reason: e.to_string() }.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_keeps_the_last_output_line() {
        assert_eq!(one_line("x"), "x");
        assert_eq!(
            one_line("the agent exited with code 127; last output:\nfoo\nsh: claude: not found\n"),
            "the agent exited with code 127; last output: sh: claude: not found"
        );
        assert_eq!(one_line("a\n\nb"), "a ... b");
        assert_eq!(one_line(""), "");
    }

    #[test]
    fn put_get_update_list() {
        let d = tempfile::tempdir().unwrap();
        let l = Ledger::new(d.path()).unconfirmed();
        let rec = TaskRecord::new("t1", 1, "hybrid/t1", Path::new("/w/t1"), "abc", "main");
        l.put(&rec).unwrap();
        let got = l.get("t1", 1).unwrap().unwrap();
        assert_eq!(got.branch, "hybrid/t1");
        l.update("t1", 1, |r| r.state = TaskState::Landed).unwrap();
        assert_eq!(l.list().unwrap()[0].state, TaskState::Landed);
        assert!(l.get("t2", 1).unwrap().is_none());
    }

    #[test]
    fn dead_writers_temp_files_are_removed() {
        let d = tempfile::tempdir().unwrap();
        let l = Ledger::new(d.path()).unconfirmed();
        let rec = TaskRecord::new("t1", 1, "hybrid/t1", Path::new("/w/t1"), "abc", "main");
        l.put(&rec).unwrap();
        let dir = d.path().join("hybrid/ledger/t1");
        let stale = dir.join(".tmp-dead");
        let fresh = dir.join(".tmp-live");
        std::fs::write(&stale, "half").unwrap();
        std::fs::write(&fresh, "half").unwrap();
        let old = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
        std::fs::File::options().write(true).open(&stale).unwrap().set_modified(old).unwrap();
        l.put(&rec).unwrap();
        assert!(!stale.exists(), "a dead writer's temporary file is removed");
        assert!(fresh.exists(), "a recent one may be a live writer's and is kept");
        assert_eq!(l.attempts("t1").unwrap().len(), 1);
    }

    #[test]
    fn unknown_fields_survive() {
        let d = tempfile::tempdir().unwrap();
        let l = Ledger::new(d.path()).unconfirmed();
        let mut rec = TaskRecord::new("t1", 1, "hybrid/t1", Path::new("/w/t1"), "abc", "main");
        rec.extra.insert("future".into(), serde_json::json!(42));
        l.put(&rec).unwrap();
        l.update("t1", 1, |r| r.runs += 1).unwrap();
        assert_eq!(l.get("t1", 1).unwrap().unwrap().extra["future"], 42);
    }
}
