//! An attempt's run files for `git hybrid logs`: which run is the latest, and what its files
//! say.
//!
//! Contract: [`latest_run`] is the ledger's `run_dir` when the trust rules accept it (inside
//! `<git-common-dir>/hybrid/runs/<id>/<attempt>/`), else the highest-numbered run folder there;
//! `None` when the attempt never ran. [`FILES`] are the files shown, in order: the agent's
//! `progress.md` and `blocked.md` notes, the `setup.log` of the `[worktree] setup` command (first
//! run of a worktree), its `stdout.log` and `stderr.log`, then the `verify.log` of the verify
//! command. [`tail`] reads the last lines of one of them, lossily
//! decoded. [`Follower`] remembers how much of each file was shown and returns what was
//! appended since (a file that shrank is shown again from its start). Reads only.

use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use crate::ledger::TaskRecord;

/// The files of a run that `logs` shows, in order.
pub const FILES: &[&str] = &[
    crate::agent::PROGRESS_FILE,
    crate::agent::BLOCKED_FILE,
    "setup.log",
    crate::agent::STDOUT_FILE,
    crate::agent::STDERR_FILE,
    "verify.log",
];

/// The attempt's latest run folder and its number (see the module contract).
pub fn latest_run(state_dir: &Path, rec: &TaskRecord) -> Option<(u32, PathBuf)> {
    let attempt_dir = crate::names::attempt_dir(state_dir, &rec.id, rec.attempt);
    let mut best: Option<(u32, PathBuf)> = None;
    for e in std::fs::read_dir(&attempt_dir).ok()?.flatten() {
        let Some(n) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else { continue };
        if e.path().is_dir() && best.as_ref().is_none_or(|b| n > b.0) {
            best = Some((n, e.path()));
        }
    }
    if let Some(dir) = crate::ledger::trust::run_dir(state_dir, rec).filter(|d| d.is_dir()) {
        let n = dir.file_name().and_then(|s| s.to_str()).and_then(|s| s.parse::<u32>().ok()).unwrap_or(0);
        if best.as_ref().is_none_or(|b| n >= b.0) {
            return Some((n, dir));
        }
    }
    best
}

/// The last `lines` lines of `file` (all of it when `lines` is 0); `None` when it is missing.
pub fn tail(file: &Path, lines: usize) -> Option<String> {
    let bytes = std::fs::read(file).ok()?;
    let text = String::from_utf8_lossy(&bytes);
    if lines == 0 {
        return Some(text.into_owned());
    }
    let trimmed = text.strip_suffix('\n').unwrap_or(&text);
    let start = trimmed.rmatch_indices('\n').nth(lines - 1).map(|(i, _)| i + 1).unwrap_or(0);
    Some(text[start..].to_string())
}

/// Follows the files of one run: [`Follower::poll`] returns what each gained since last time.
#[derive(Debug)]
pub struct Follower {
    dir: PathBuf,
    seen: Vec<u64>,
}

impl Follower {
    /// Starts following `dir`, as if what each file holds now had been shown.
    pub fn new(dir: &Path) -> Follower {
        let seen = FILES.iter().map(|f| std::fs::metadata(dir.join(f)).map(|m| m.len()).unwrap_or(0)).collect();
        Follower { dir: dir.to_path_buf(), seen }
    }

    /// Starts following `dir` from the start of every file (a run that just began).
    pub fn with_nothing_shown(dir: &Path) -> Follower {
        Follower { dir: dir.to_path_buf(), seen: vec![0; FILES.len()] }
    }

    /// The folder followed.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// `(file name, text appended)` for every file that grew (from its start if it shrank).
    pub fn poll(&mut self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        for (i, name) in FILES.iter().enumerate() {
            let path = self.dir.join(name);
            let Ok(len) = std::fs::metadata(&path).map(|m| m.len()) else { continue };
            if len == self.seen[i] {
                continue;
            }
            let from = if len < self.seen[i] { 0 } else { self.seen[i] };
            let Ok(mut f) = std::fs::File::open(&path) else { continue };
            let mut buf = Vec::new();
            if f.seek(SeekFrom::Start(from)).is_err() || f.take(len - from).read_to_end(&mut buf).is_err() {
                continue;
            }
            self.seen[i] = from + buf.len() as u64;
            out.push((*name, String::from_utf8_lossy(&buf).into_owned()));
        }
        out
    }
}
