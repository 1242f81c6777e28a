//! Filling a new, empty task worktree with a tree's files and a matching index, in parallel.
//!
//! Contract: [`fill_empty_worktree`] writes exactly the bytes, modes and symlinks `git checkout`
//! writes, and an index whose entries carry the files' stat data (so `git status` in the new
//! worktree is clean without re-hashing). It only takes the fast path when that is provably
//! true: no filter can apply (the caller checks attributes and autocrlf), `core.symlinks` is on,
//! and every path in the tree is one git would check out ([`crate::safe_path`]).
//! Otherwise it says so (`Ok(false)`) and the caller uses libgit2's checkout.
//!
//! Why (measured by `benches/worktrees.py`): creating thousands of files is kernel work
//! (inode allocation, page cache), and both git and libgit2 do it on one thread. Writing the
//! files from several threads, each with its own handle on the object database, spreads that
//! work over the cores.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use git2::{FileMode, IndexEntry, IndexTime, ObjectType, Oid, Repository, TreeWalkMode, TreeWalkResult};
use rayon::prelude::*;

/// Below this many files one thread does it all (thread start-up would cost more).
const PARALLEL_THRESHOLD: usize = 256;

/// Who watches the fast fills of this process (the command line's progress bar on a
/// terminal): called from writer threads with (files written, files to write), summed over
/// every fill this process made, as files are written.
static PROGRESS_HOOK: std::sync::OnceLock<fn(usize, usize)> = std::sync::OnceLock::new();
static FILES_DONE: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
static FILES_TOTAL: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// Sets the progress watcher (once per process; later calls are ignored).
pub fn set_progress_hook(hook: fn(usize, usize)) {
    let _ = PROGRESS_HOOK.set(hook);
}

/// Reports to the progress watcher: `written` more files written, `added` more to write (also
/// for fills that do not take the fast path: libgit2's checkout reports through here).
pub fn progress(written: usize, added: usize) {
    use std::sync::atomic::Ordering::Relaxed;
    if let Some(hook) = PROGRESS_HOOK.get() {
        let total = FILES_TOTAL.fetch_add(added, Relaxed) + added;
        let done = FILES_DONE.fetch_add(written, Relaxed) + written;
        hook(done, total);
    }
}

/// One blob, symlink or submodule to place.
struct Item {
    /// Path relative to the worktree, `/`-separated, as stored in the index.
    rel: Vec<u8>,
    id: Oid,
    mode: i32,
}

/// Checks out `tree` into the empty worktree `wt` (files + index). `odb_dir` is the common git
/// directory each writer thread opens. Returns `Ok(false)`, having written nothing, when the
/// fast path does not apply.
pub fn fill_empty_worktree(wt: &Repository, workdir: &Path, odb_dir: &Path, tree: &git2::Tree) -> Result<bool> {
    if !wt.config()?.get_bool("core.symlinks").unwrap_or(true) {
        return Ok(false);
    }
    let mut dirs: Vec<Vec<u8>> = Vec::new();
    let mut items: Vec<Item> = Vec::new();
    let mut unsafe_path = false;
    let walked = tree.walk(TreeWalkMode::PreOrder, |root, entry| {
        let name = entry.name_bytes();
        let symlink = entry.filemode() == i32::from(FileMode::Link);
        if crate::safe_path::check_component(name, symlink).is_err() {
            unsafe_path = true;
            return TreeWalkResult::Abort;
        }
        let mut rel = root.as_bytes().to_vec();
        rel.extend_from_slice(name);
        match entry.kind() {
            Some(ObjectType::Tree) => dirs.push(rel),
            Some(ObjectType::Blob) | Some(ObjectType::Commit) => {
                items.push(Item { rel, id: entry.id(), mode: entry.filemode() })
            }
            _ => {
                unsafe_path = true;
                return TreeWalkResult::Abort;
            }
        }
        TreeWalkResult::Ok
    });
    // A path that is not UTF-8 also stops the walk: libgit2's checkout handles those.
    if unsafe_path || walked.is_err() {
        return Ok(false);
    }

    // Folders first, parents before children (pre-order), so writers never race on them.
    for d in &dirs {
        let p = workdir.join(OsStr::from_bytes(d));
        std::fs::create_dir(&p).with_context(|| format!("cannot create {}", p.display()))?;
    }

    // GIT_HYBRID_CHECKOUT_THREADS overrides the writer count (1 = one thread, e.g. on a network
    // file system where parallel creates do not pay; benches/worktrees.py compares counts).
    let forced = std::env::var("GIT_HYBRID_CHECKOUT_THREADS").ok().and_then(|v| v.trim().parse::<usize>().ok());
    let threads = if let Some(n) = forced {
        n.clamp(1, 64)
    } else if items.len() < PARALLEL_THRESHOLD {
        1
    } else {
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1).clamp(1, 8)
    };
    let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().context("cannot start writer threads")?;
    progress(0, items.len());
    let entries: Vec<IndexEntry> = pool.install(|| {
        items
            .par_iter()
            .map_init(
                || Repository::open(odb_dir),
                |repo, item| {
                    let repo = repo.as_ref().map_err(|e| anyhow::anyhow!("cannot open {}: {e}", odb_dir.display()))?;
                    let entry = write_item(&repo.odb()?, workdir, item);
                    progress(1, 0);
                    entry
                },
            )
            .collect::<Result<Vec<_>>>()
    })?;

    crate::failpoint!("start::files_written");
    let mut index = wt.index().context("cannot open the new worktree's index")?;
    index.clear()?;
    for e in &entries {
        index.add(e).with_context(|| format!("cannot add {} to the index", String::from_utf8_lossy(&e.path)))?;
    }
    index.write().context("cannot write the new worktree's index")?;
    Ok(true)
}

/// Writes one item and returns its index entry with the file's stat data.
fn write_item(odb: &git2::Odb, workdir: &Path, item: &Item) -> Result<IndexEntry> {
    crate::failpoint!("start::writing_file");
    let path: PathBuf = workdir.join(OsStr::from_bytes(&item.rel));
    let mode = item.mode;
    if mode == i32::from(FileMode::Commit) {
        // A submodule: an empty folder, as `git worktree add` leaves it.
        std::fs::create_dir(&path).with_context(|| format!("cannot create {}", path.display()))?;
        return Ok(entry(item, None));
    }
    let obj = odb.read(item.id).with_context(|| format!("cannot read blob {} ({})", item.id, path.display()))?;
    if mode == i32::from(FileMode::Link) {
        std::os::unix::fs::symlink(OsStr::from_bytes(obj.data()), &path)
            .with_context(|| format!("cannot create the symlink {}", path.display()))?;
    } else {
        // 0666/0777 minus the umask, like git.
        let perm = if mode == i32::from(FileMode::BlobExecutable) { 0o777 } else { 0o666 };
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(perm)
            .open(&path)
            .with_context(|| format!("cannot create {}", path.display()))?;
        std::io::Write::write_all(&mut f, obj.data()).with_context(|| format!("cannot write {}", path.display()))?;
    }
    let meta = std::fs::symlink_metadata(&path).with_context(|| format!("cannot stat {}", path.display()))?;
    Ok(entry(item, Some(&meta)))
}

fn entry(item: &Item, meta: Option<&std::fs::Metadata>) -> IndexEntry {
    let t = |secs: i64, nanos: i64| IndexTime::new(secs as i32, nanos as u32);
    IndexEntry {
        ctime: meta.map(|m| t(m.ctime(), m.ctime_nsec())).unwrap_or(IndexTime::new(0, 0)),
        mtime: meta.map(|m| t(m.mtime(), m.mtime_nsec())).unwrap_or(IndexTime::new(0, 0)),
        dev: meta.map(|m| m.dev() as u32).unwrap_or(0),
        ino: meta.map(|m| m.ino() as u32).unwrap_or(0),
        mode: item.mode as u32,
        uid: meta.map(|m| m.uid()).unwrap_or(0),
        gid: meta.map(|m| m.gid()).unwrap_or(0),
        file_size: meta.map(|m| m.size() as u32).unwrap_or(0),
        id: item.id,
        flags: 0,
        flags_extended: 0,
        path: item.rel.clone(),
    }
}
