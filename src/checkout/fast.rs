//! An in-process replacement for `git read-tree -m -u <old> <new>`, used only where it provably
//! does what git does.
//!
//! Contract: [`plan`] either returns a [`FastMove`] (the checkout was checked and its index is
//! locked), the paths whose local changes block the move ([`Plan::Blocked`]), or
//! [`Plan::Fallback`] with the reason the caller must use `git read-tree` instead. It never
//! changes a file, the index or a ref; [`FastMove::apply`] then writes the changed paths and the
//! index. Both behave like git's two-tree checkout for the paths the move changes, and leave every
//! other path (file, index entry, stat data) exactly as it was.
//!
//! Why it is equivalent to `read-tree -m -u` where it runs (and falls back everywhere else):
//! - **No conversion on checkout.** It runs only when no filter, `ident`, `working-tree-encoding`
//!   or CRLF output applies to a changed path: `core.autocrlf` is unset/false/input, `core.eol`
//!   is unset/lf/native (on Unix), and the paths' attributes set none of `filter`, `ident`,
//!   `working-tree-encoding`, `crlf`, and `eol` only as `lf`. `text` (and `text=auto`) is
//!   allowed: with LF output git writes blobs byte-for-byte (convert.c: `crlf_to_worktree` runs
//!   only for CRLF output). Settings are checked in every configuration source git reads
//!   ([`crate::git::config::sources`]: libgit2's view plus the files `GIT_CONFIG_GLOBAL`/
//!   `GIT_CONFIG_SYSTEM` name, which libgit2 ignores); settings from `git -c` fall back. The attributes are read from the attribute files
//!   themselves, over-approximating (`checkout/attributes.rs`).
//! - **Plain index and checkout.** No sparse checkout (`core.sparseCheckout`, `index.sparse`),
//!   split index, fsmonitor, per-worktree config, `core.symlinks=false`, `core.filemode=false` or
//!   `core.ignorecase`; no unmerged entries; no skip-worktree, intent-to-add or assume-unchanged
//!   bit on a touched entry; index version 2 or 3 without mandatory extensions (`link`, `sdir`).
//!   The `TREE` cache is kept with the touched paths invalidated; the optional caches that the
//!   move makes stale (`UNTR`, `FSMN`, `EOIE`, `IEOT`) are dropped, git rebuilds them and they
//!   hold no user data.
//! - **Simple paths.** Every changed path is a blob or symlink on both sides or absent (no
//!   file/folder swap, no submodule), not a `.git`, `.gitattributes` or `.gitmodules`
//!   name (attribute and submodule changes fall back, as do names git's NTFS/HFS protections
//!   treat specially), no
//!   folder on the way is a file or a symlink in the checkout, an entry in the index or a nested
//!   repository (a folder with its own `.git`), and no index entry lives below a path that
//!   becomes a file (libgit2 would silently drop it). Every such case goes to read-tree, whose
//!   pre-check (`checkout/guard.rs`) refuses what would delete untracked or ignored content.
//!
//! The check per changed path is git's: the index entry must equal the old tree's and the file
//! must match it (stat data first, like git's `ie_match_stat`, the content hash when stat data
//! differs or the entry is racily clean); an added path must be absent (untracked and ignored
//! files block). A path whose index entry is already the new one with a matching file is already
//! moved and left alone (as `checkout::blocking_paths` allows). One more state is accepted: index
//! still old but the file already byte-for-byte the incoming content (or already gone for a
//! deletion) — what a landing killed while writing files leaves; nothing of the user's can be
//! lost by rewriting identical bytes.
//!
//! The index is read and written by [`crate::git::index`] (git's format, versions 2 and 3; anything
//! else falls back), which keeps every untouched entry byte-for-byte and invalidates the cache
//! tree on the changed paths as git does.
//!
//! Locking and crashes: the index is locked git's way (`index.lock`, created exclusively, so
//! every git command keeps out) from the check until the new index is in place, so no `git add`
//! can slip in between ([`crate::git::lockfile::IndexLock`]). The new index is written to
//! `hybrid-index.new` beside it and renamed over `index` while `index.lock` is still held;
//! `index.lock` itself stays empty, which keeps the stale-lock proof below exact.
//! Files are written to a temporary file in the git directory and renamed into place (each file
//! is old or new, never torn; nothing temporary appears in the checkout). The order of the files,
//! the index and the ref, and how a kill at each step is made safe for the user's next commit
//! (git's assume-unchanged bit), is `checkout/write.rs`. A kill leaves our `index.lock`, which
//! the next landing on the same target removes when a note (written before the lock is linked
//! into place, naming its device, inode and times) proves it is the dead holder's.

use std::collections::BTreeSet;
use std::fs::{self, Metadata};
use std::io::ErrorKind;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use anyhow::{Context, Result};
use git2::{ObjectType, Oid, Repository, Tree};

use super::Checkout;
use crate::git::config::Sources;
use crate::git::index::{
    Entry, RawIndex, FLAG_EXT_INTENT_TO_ADD, FLAG_EXT_SKIP_WORKTREE, FLAG_VALID, MODE_EXEC, MODE_FILE, MODE_LINK,
};
use crate::git::lockfile::IndexLock;
use crate::repo::Project;

/// Environment variable that disables the fast path (tests and the benchmark compare both).
pub const DISABLE_ENV: &str = "HYBRID_NO_FAST_CHECKOUT";

/// What [`plan`] decided.
pub enum Plan {
    Fast(Box<FastMove>),
    Blocked(Vec<String>),
    Fallback(String),
}

/// A checked, locked move of one checkout, ready to [`apply`](FastMove::apply).
pub struct FastMove {
    pub(super) co: Checkout,
    pub(super) index: RawIndex,
    pub(super) lock: IndexLock,
    /// Paths to write (`Some`) or remove (`None`), with their old entry for a rollback.
    pub(super) ops: Vec<Op>,
    /// What [`FastMove::stage`] wrote: the new entry of each modified or deleted path, in
    /// `ops` order (`crate::checkout::write`).
    pub(super) staged: Vec<(String, Option<Entry>)>,
    /// The index file's mtime when it was read (git's racy-clean rule).
    pub(super) index_mtime: (i64, i64),
}

pub(super) struct Op {
    pub(super) path: String,
    pub(super) old: Option<(Oid, u32)>,
    pub(super) new: Option<(Oid, u32)>,
}

/// Checks whether `co` can be moved from `old` to `new` in process (see the module contract).
/// `target` names the branch being moved; it scopes the stale-lock note.
pub fn plan(
    project: &Project,
    co: &Checkout,
    target: &str,
    old: &Tree,
    new: &Tree,
    changed: &BTreeSet<String>,
) -> Result<Plan> {
    if std::env::var_os(DISABLE_ENV).is_some() {
        return Ok(Plan::Fallback(format!("{DISABLE_ENV} is set")));
    }
    if let Some(reason) = config_blocker(&project.repo)? {
        return Ok(Plan::Fallback(reason));
    }
    let mut ops = Vec::new();
    for p in changed {
        if let Some(reason) = unsafe_path(p) {
            return Ok(Plan::Fallback(format!("{p:?}: {reason}")));
        }
        let (Some(o), Some(n)) = (blob_entry(old, p), blob_entry(new, p)) else {
            return Ok(Plan::Fallback(format!("{p:?} is a folder or submodule on one side")));
        };
        ops.push(Op { path: p.clone(), old: o, new: n });
    }
    let lock = match lock_index(project, co, target)? {
        Some(l) => l,
        None => return Ok(Plan::Fallback("the checkout has no index file".into())),
    };
    let data = fs::read(&lock.index).with_context(|| format!("cannot read {}", lock.index.display()))?;
    let index_mtime = fs::metadata(&lock.index).map(|m| (m.mtime(), m.mtime_nsec())).unwrap_or((i64::MAX, 0));
    let index = match RawIndex::parse(data)? {
        Ok(i) => i,
        Err(reason) => return Ok(Plan::Fallback(reason)),
    };
    if index.has_conflicts() {
        return Ok(Plan::Fallback("the index has unmerged entries".into()));
    }
    let paths: Vec<&str> = ops.iter().map(|o| o.path.as_str()).collect();
    if let Some(reason) = super::attributes::blocker(project, co, &index, &paths)? {
        return Ok(Plan::Fallback(reason));
    }
    let mut blocked = Vec::new();
    let mut todo = Vec::new();
    for op in ops {
        let path = Path::new(&op.path);
        let ie = index.get(&op.path);
        if let Some(e) = &ie {
            if e.flags & FLAG_VALID != 0 || e.flags_extended & (FLAG_EXT_INTENT_TO_ADD | FLAG_EXT_SKIP_WORKTREE) != 0 {
                return Ok(Plan::Fallback(format!(
                    "{:?} has an assume-unchanged/skip-worktree/intent-to-add bit",
                    op.path
                )));
            }
        }
        if let Some(reason) = structure_blocker(co, &index, &op.path)? {
            return Ok(Plan::Fallback(reason));
        }
        let file = match fs::symlink_metadata(co.dir.join(path)) {
            Ok(m) if m.is_dir() => return Ok(Plan::Fallback(format!("{:?} is a folder in the checkout", op.path))),
            Ok(m) => Some(m),
            Err(e) if e.kind() == ErrorKind::NotFound => None,
            Err(e) => return Err(e).with_context(|| format!("cannot inspect {}", co.dir.join(path).display())),
        };
        let idx = ie.as_ref().map(|e| (e.id, e.mode));
        let file_is =
            |want: Option<(Oid, u32)>| file_matches(co, &op.path, file.as_ref(), want, ie.as_ref(), index_mtime);
        if idx == op.old && file_is(op.old)? {
            todo.push(op); // clean: move it
        } else if idx == op.new && file_is(op.new)? {
            // already moved (a killed run, or the user staged exactly the incoming change)
        } else if idx == op.old && file_is(op.new)? {
            todo.push(op); // files written by a killed run: identical bytes, nothing to lose
        } else {
            blocked.push(op.path);
        }
    }
    if !blocked.is_empty() {
        return Ok(Plan::Blocked(blocked));
    }
    Ok(Plan::Fast(Box::new(FastMove { co: co.clone(), index, lock, ops: todo, staged: Vec::new(), index_mtime })))
}

/// Whether the file at `rel` (its `lstat`) is `want` as git would judge it.
pub(super) fn file_matches(
    co: &Checkout,
    rel: &str,
    file: Option<&Metadata>,
    want: Option<(Oid, u32)>,
    ie: Option<&Entry>,
    index_mtime: (i64, i64),
) -> Result<bool> {
    let (m, (id, mode)) = match (file, want) {
        (None, None) => return Ok(true),
        (Some(m), Some(w)) => (m, w),
        _ => return Ok(false),
    };
    let is_link = m.file_type().is_symlink();
    if is_link != (mode == MODE_LINK) || (!is_link && !m.is_file()) {
        return Ok(false);
    }
    if !is_link && (m.mode() & 0o100 != 0) != (mode == MODE_EXEC) {
        return Ok(false);
    }
    // git's stat shortcut: the entry's stat data matches and the entry is not racily clean.
    if ie.is_some_and(|e| e.id == id && e.mode == mode && e.stat_matches(m, index_mtime)) {
        return Ok(true);
    }
    let path = co.dir.join(rel);
    let actual = if is_link {
        use std::os::unix::ffi::OsStrExt;
        let target = fs::read_link(&path).with_context(|| format!("cannot read {}", path.display()))?;
        Oid::hash_object(ObjectType::Blob, target.as_os_str().as_bytes())?
    } else {
        Oid::hash_file(ObjectType::Blob, &path).with_context(|| format!("cannot hash {}", path.display()))?
    };
    Ok(actual == id)
}

/// The blob (or symlink) at `path` in `tree`: `Some(None)` when absent, `None` for a folder or
/// a submodule.
pub(super) fn blob_entry(tree: &Tree, path: &str) -> Option<Option<(Oid, u32)>> {
    match tree.get_path(Path::new(path)) {
        Ok(e) => {
            let mode = e.filemode() as u32;
            matches!(mode, MODE_FILE | MODE_EXEC | MODE_LINK).then_some(Some((e.id(), mode)))
        }
        Err(e) if e.code() == git2::ErrorCode::NotFound => {
            // Absent, unless a parent is a file (a file/folder swap): that also falls back.
            let mut p = path;
            while let Some((parent, _)) = p.rsplit_once('/') {
                if tree.get_path(Path::new(parent)).is_ok_and(|e| e.kind() != Some(ObjectType::Tree)) {
                    return None;
                }
                p = parent;
            }
            Some(None)
        }
        Err(_) => None,
    }
}

/// Paths the fast path leaves to git: anything git's path protections look at twice.
fn unsafe_path(p: &str) -> Option<&'static str> {
    if p.contains('\u{fffd}') {
        return Some("not UTF-8");
    }
    if let Err(why) = crate::safe_path::check(p.as_bytes(), false) {
        return Some(why);
    }
    for c in p.split('/') {
        let lower = c.to_ascii_lowercase();
        let bare = lower.trim_end_matches(['.', ' ']);
        if matches!(bare, ".gitattributes" | ".gitmodules") || lower.starts_with("git~") {
            return Some("a .gitattributes or .gitmodules name");
        }
        if !c.is_ascii() && lower.contains('g') {
            return Some("non-ASCII (git's HFS protection ignores some characters)");
        }
        if c.ends_with(['.', ' ']) || c.contains(['\\', ':']) || c.chars().any(|ch| ch.is_control()) {
            return Some("a name git's NTFS protection checks");
        }
    }
    None
}

/// Folders on the way to `rel` must be real folders (or absent) in the checkout and not files
/// in the index; nothing in the index may live below `rel`.
fn structure_blocker(co: &Checkout, index: &RawIndex, rel: &str) -> Result<Option<String>> {
    if index.has_prefix(&format!("{rel}/")) {
        return Ok(Some(format!("the index has entries below {rel:?}")));
    }
    let mut checked_disk = true;
    let mut prefix = String::new();
    let parts: Vec<&str> = rel.split('/').collect();
    for part in &parts[..parts.len() - 1] {
        if !prefix.is_empty() {
            prefix.push('/');
        }
        prefix.push_str(part);
        if index.get(&prefix).is_some() {
            return Ok(Some(format!("{prefix:?} is a file in the index")));
        }
        if checked_disk {
            match fs::symlink_metadata(co.dir.join(&prefix)) {
                Ok(m) if m.is_dir() && fs::symlink_metadata(co.dir.join(&prefix).join(".git")).is_ok() => {
                    return Ok(Some(format!("{prefix:?} is a nested repository")));
                }
                Ok(m) if m.is_dir() => {}
                Ok(_) => return Ok(Some(format!("{prefix:?} is not a folder in the checkout"))),
                Err(e) if e.kind() == ErrorKind::NotFound => checked_disk = false,
                Err(e) => return Err(e).with_context(|| format!("cannot inspect {}", co.dir.join(&prefix).display())),
            }
        }
    }
    Ok(None)
}

fn config_blocker(repo: &Repository) -> Result<Option<String>> {
    if cfg!(not(unix)) {
        return Ok(Some("not a Unix system".into()));
    }
    // Every source git reads (`crate::git::config`); settings given in the environment (`git -c`)
    // are not read, so they fall back.
    let mut configs = match crate::git::config::sources(repo)? {
        Sources::Files(c) => c,
        Sources::Environment => return Ok(Some("configuration given on the git command line".into())),
    };
    for cfg in &mut configs {
        // A snapshot: libgit2 re-reads (stats) every file of a live config on each lookup.
        let cfg = cfg.snapshot().context("cannot read the git configuration")?;
        if let Some(reason) = config_blocker_in(&cfg) {
            return Ok(Some(reason));
        }
    }
    Ok(None)
}

fn config_blocker_in(cfg: &git2::Config) -> Option<String> {
    let s = |k: &str| cfg.get_string(k).ok().map(|v| v.to_ascii_lowercase());
    // `None`: unset; `Some(None)`: set to something that is not a boolean (treated as blocking).
    let on = |k: &str| cfg.get_string(k).ok().map(|_| cfg.get_bool(k).ok());
    let autocrlf = s("core.autocrlf");
    if autocrlf.as_deref().is_some_and(|v| !matches!(v, "false" | "no" | "off" | "0" | "input" | "")) {
        return Some("core.autocrlf".into());
    }
    if s("core.eol").is_some_and(|v| !matches!(v.as_str(), "lf" | "native" | "")) {
        return Some("core.eol".into());
    }
    let defaults = [
        ("core.symlinks", true),
        ("core.filemode", true),
        ("core.ignorecase", false),
        ("core.sparsecheckout", false),
        ("index.sparse", false),
        ("core.splitindex", false),
        ("extensions.worktreeconfig", false),
    ];
    for (key, default) in defaults {
        if on(key).is_some_and(|v| v != Some(default)) {
            return Some(key.into());
        }
    }
    if s("core.fsmonitor").is_some_and(|v| !matches!(v.as_str(), "false" | "no" | "off" | "0" | "")) {
        return Some("core.fsmonitor".into());
    }
    None
}

/// Locks `co`'s index ([`IndexLock`], git's `index.lock`) with the crash note of a landing on
/// `target` in that checkout. `Ok(None)` when the checkout has no index.
pub(super) fn lock_index(project: &Project, co: &Checkout, target: &str) -> Result<Option<IndexLock>> {
    let who = co.git_dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let who = if co.git_dir == project.common_dir { "main".to_string() } else { format!("wt-{who}") };
    let note = crate::names::index_lock_note(&project.state_dir(), &who, target);
    IndexLock::acquire(&co.dir, &co.git_dir, note)
}
