//! Tamper detection: what an agent must not change in the shared git dir and the main checkout
//! is snapshotted before it runs, compared after, and restored byte for byte.
//!
//! Contract: [`Guard::begin`] is called before an agent (or verify) run and [`Guard::end`] after
//! it. Watched: `<common>/config` and `config.worktree`, every file and symlink under
//! `<common>/hooks/` and `<common>/info/`, the `gitdir`, `commondir` and `config.worktree` files
//! of every worktree admin entry (`<common>/worktrees/*/`), and the main checkout's
//! `hybrid.toml`. One baseline serves all the runs of a dispatch that overlap in time: it is
//! taken when a run begins while none is active, so changes made between runs (by the user)
//! are accepted. [`Guard::end`] compares with the baseline; every difference is restored
//! (changed and deleted files rewritten with their bytes and mode, added ones removed), the
//! changed or added versions are kept under `<evidence>/tampered/` (nothing written is lost),
//! and the paths are reported to the ending run and to every run active at the same time (with
//! the sandbox off, two overlapping agents cannot be told apart). Worktree admin entries that
//! appear or disappear are not reported (the dispatcher starts and removes worktrees while
//! agents run), and a `hybrid.toml` equal to the target tip's is accepted (a landing wrote it).
//!
//! Not covered: a dispatcher killed mid-run has no baseline to restore from (the Landlock
//! sandbox is the protection that holds then).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use anyhow::{Context, Result};

/// One watched path's state.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Entry {
    Absent,
    File { bytes: Vec<u8>, mode: u32 },
    Symlink(PathBuf),
    Other,
}

/// Watched path (absolute) → its state.
type Snapshot = BTreeMap<PathBuf, Entry>;

/// Per-dispatch tamper guard.
pub struct Guard {
    common: PathBuf,
    root: PathBuf,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    baseline: Snapshot,
    /// Active runs and the tampered paths reported to them.
    active: BTreeMap<u64, Vec<String>>,
    next: u64,
}

impl Guard {
    pub fn new(common_dir: &Path, root: &Path) -> Guard {
        Guard { common: common_dir.to_path_buf(), root: root.to_path_buf(), state: Mutex::new(State::default()) }
    }

    /// Registers a run about to start; returns its key for [`Guard::end`].
    pub fn begin(&self) -> u64 {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if st.active.is_empty() {
            st.baseline = self.take();
        }
        st.next += 1;
        let key = st.next;
        st.active.insert(key, Vec::new());
        key
    }

    /// Ends a run: restores whatever changed since the baseline (changed versions kept under
    /// `evidence/tampered/`) and returns the tampered paths this run is told about, shown
    /// relative to the repository (`.git/hooks/pre-commit`, `hybrid.toml`).
    pub fn end(&self, key: u64, evidence: &Path, target_hybrid_toml: Option<&[u8]>) -> Vec<String> {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let now = self.take();
        let toml = self.root.join(crate::config::FILE_NAME);
        let mut changed = Vec::new();
        for (path, now_entry) in &now {
            let before = st.baseline.get(path);
            match before {
                Some(b) if b == now_entry => {}
                None if self.is_admin_file(path) => {} // a worktree made during the run
                _ => {
                    if *path == toml {
                        if let (Entry::File { bytes, .. }, Some(t)) = (now_entry, target_hybrid_toml) {
                            if bytes.as_slice() == t {
                                continue; // a landing wrote the target's version
                            }
                        }
                    }
                    changed.push(path.clone());
                }
            }
        }
        for path in st.baseline.keys() {
            if !now.contains_key(path) && !self.is_admin_file(path) {
                changed.push(path.clone());
            }
        }
        // Accept the landing's hybrid.toml into the baseline.
        if let Some(e) = now.get(&toml) {
            if !changed.contains(&toml) {
                st.baseline.insert(toml.clone(), e.clone());
            }
        }
        if !changed.is_empty() {
            let names: Vec<String> = changed.iter().map(|p| self.show(p)).collect();
            for path in &changed {
                let cur = now.get(path).cloned().unwrap_or(Entry::Absent);
                let _ = keep_evidence(&cur, &evidence.join("tampered").join(self.show(path).trim_start_matches('/')));
                let want = st.baseline.get(path).cloned().unwrap_or(Entry::Absent);
                if let Err(e) = restore(path, &want) {
                    eprintln!("git-hybrid: warning: cannot restore {}: {e:#}", path.display());
                }
            }
            for notes in st.active.values_mut() {
                for n in &names {
                    if !notes.contains(n) {
                        notes.push(n.clone());
                    }
                }
            }
        }
        st.active.remove(&key).unwrap_or_default()
    }

    fn is_admin_file(&self, path: &Path) -> bool {
        path.starts_with(self.common.join("worktrees"))
    }

    /// How a watched path is named in notes.
    fn show(&self, path: &Path) -> String {
        if let Ok(rel) = path.strip_prefix(&self.root) {
            if !rel.starts_with(".git") || self.common != self.root.join(".git") {
                return rel.to_string_lossy().into_owned();
            }
        }
        match path.strip_prefix(&self.common) {
            Ok(rel) if self.common == self.root.join(".git") => format!(".git/{}", rel.display()),
            Ok(rel) => format!("{}/{}", self.common.display(), rel.display()),
            Err(_) => path.display().to_string(),
        }
    }

    fn take(&self) -> Snapshot {
        let mut s = Snapshot::new();
        for f in ["config", "config.worktree"] {
            let p = self.common.join(f);
            s.insert(p.clone(), read_entry(&p));
        }
        for d in ["hooks", "info"] {
            walk(&self.common.join(d), &mut s);
        }
        if let Ok(entries) = std::fs::read_dir(self.common.join("worktrees")) {
            for e in entries.flatten() {
                for f in ["gitdir", "commondir", "config.worktree"] {
                    let p = e.path().join(f);
                    let entry = read_entry(&p);
                    if entry != Entry::Absent {
                        s.insert(p, entry);
                    }
                }
            }
        }
        let toml = self.root.join(crate::config::FILE_NAME);
        s.insert(toml.clone(), read_entry(&toml));
        s
    }
}

/// A path's state. A path removed between its `stat` and its read is [`Entry::Absent`], not
/// [`Entry::Other`]: the dispatcher removes a landed task's worktree entry while other agents
/// run, and a snapshot taken meanwhile must not see a change there (it was reported as
/// tampering, and the "restore" wrote a lone `commondir` back into the removed entry).
fn read_entry(p: &Path) -> Entry {
    use std::os::unix::fs::PermissionsExt;
    let gone = |e: &std::io::Error| e.kind() == std::io::ErrorKind::NotFound;
    let Ok(meta) = std::fs::symlink_metadata(p) else { return Entry::Absent };
    if meta.file_type().is_symlink() {
        return match std::fs::read_link(p) {
            Ok(target) => Entry::Symlink(target),
            Err(e) if gone(&e) => Entry::Absent,
            Err(_) => Entry::Other,
        };
    }
    if meta.is_file() {
        // Hooks, config and hybrid.toml are small; a huge planted file is still compared whole.
        return match std::fs::read(p) {
            Ok(bytes) => Entry::File { bytes, mode: meta.permissions().mode() & 0o7777 },
            Err(e) if gone(&e) => Entry::Absent,
            Err(_) => Entry::Other,
        };
    }
    Entry::Other
}

/// Records every file and symlink beneath `dir` (not following symlinks).
fn walk(dir: &Path, out: &mut Snapshot) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for e in entries.flatten() {
        let p = e.path();
        match e.file_type() {
            Ok(t) if t.is_dir() => walk(&p, out),
            _ => {
                out.insert(p.clone(), read_entry(&p));
            }
        }
    }
}

fn keep_evidence(cur: &Entry, dest: &Path) -> Result<()> {
    match cur {
        Entry::File { .. } | Entry::Symlink(_) => {
            if let Some(parent) = dest.parent() {
                std::fs::create_dir_all(parent)?;
            }
            let _ = std::fs::remove_file(dest);
            match cur {
                Entry::File { bytes, .. } => std::fs::write(dest, bytes)?,
                Entry::Symlink(t) => std::os::unix::fs::symlink(t, dest)?,
                _ => {}
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

fn restore(path: &Path, want: &Entry) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::symlink_metadata(path).ok();
    let is_dir = meta.as_ref().is_some_and(|m| m.is_dir());
    match want {
        Entry::Absent => {
            if is_dir {
                std::fs::remove_dir_all(path)
            } else if meta.is_some() {
                std::fs::remove_file(path)
            } else {
                Ok(())
            }
            .with_context(|| format!("cannot remove {}", path.display()))?;
        }
        Entry::File { bytes, mode } => {
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent)?;
            }
            if is_dir {
                std::fs::remove_dir_all(path)?;
            } else if meta.as_ref().is_some_and(|m| m.file_type().is_symlink()) {
                std::fs::remove_file(path)?;
            }
            crate::fsutil::write_atomic(path, bytes)?;
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(*mode))?;
        }
        Entry::Symlink(target) => {
            if is_dir {
                std::fs::remove_dir_all(path)?;
            } else if meta.is_some() {
                std::fs::remove_file(path)?;
            }
            std::os::unix::fs::symlink(target, path)?;
        }
        Entry::Other => {}
    }
    Ok(())
}
