//! File-system helpers with crash-safe semantics.
//!
//! Contract: [`write_atomic`] either leaves the old file or the complete new one, never a torn
//! write: it writes a temporary file in the same directory, syncs it and renames it over the
//! target (rename is atomic on POSIX file systems). [`write_atomic_with`] may skip the sync: the
//! rename alone is already atomic for every reader and survives any process crash (`kill -9`);
//! only a power loss can lose a write that was not synced, see [`git_fsyncs_refs`].

use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result};

/// Writes `data` to `path` atomically (temp file + fsync + rename).
pub fn write_atomic(path: &Path, data: &[u8]) -> Result<()> {
    write_atomic_with(path, data, true)
}

/// Writes `data` to `path` atomically (temp file + rename), syncing the data first when `sync`.
pub fn write_atomic_with(path: &Path, data: &[u8], sync: bool) -> Result<()> {
    let dir = path.parent().context("path has no parent directory")?;
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut tmp = tempfile::Builder::new()
        .prefix(".tmp-")
        .tempfile_in(dir)
        .with_context(|| format!("cannot create a temporary file in {}", dir.display()))?;
    tmp.write_all(data).context("cannot write temporary file")?;
    if sync {
        tmp.as_file().sync_all().context("cannot sync temporary file")?;
    }
    tmp.persist(path).with_context(|| format!("cannot rename into {}", path.display()))?;
    Ok(())
}

/// Whether git itself syncs ref updates to disk under the value of `core.fsync` (`None` when
/// unset): git's default syncs packs and derived metadata but neither refs, the index nor loose
/// objects, so a power loss can lose a fresh commit and the ref naming it. A record of a landing
/// (the ledger) cannot be more durable than the commit it names, so it follows the same switch.
/// Parsed as git does (`parse_fsync_components`): `none` resets, `-x` removes, and every named
/// component is added back at the end, so a positive name wins.
pub fn git_fsyncs_refs(core_fsync: Option<&str>) -> bool {
    let Some(value) = core_fsync else { return false };
    value.split(',').map(str::trim).any(|t| matches!(t, "reference" | "committed" | "added" | "all"))
}

/// The current time as RFC 3339 (UTC, seconds).
pub fn now_rfc3339() -> String {
    humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string()
}

/// Seconds since an RFC 3339 timestamp, if it parses.
pub fn secs_since(ts: &str) -> Option<u64> {
    let t = humantime::parse_rfc3339_weak(ts).ok()?;
    std::time::SystemTime::now().duration_since(t).ok().map(|d| d.as_secs())
}

/// The last non-empty line of a text file, if any.
pub fn last_line(path: &Path) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    text.lines().rev().map(str::trim).find(|l| !l.is_empty()).map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_replaces() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("sub/x.json");
        write_atomic(&p, b"one").unwrap();
        write_atomic(&p, b"two").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"two");
        assert_eq!(std::fs::read_dir(p.parent().unwrap()).unwrap().count(), 1);
    }

    #[test]
    fn ref_fsync_follows_gits_core_fsync() {
        assert!(!git_fsyncs_refs(None), "git's default does not sync refs");
        assert!(!git_fsyncs_refs(Some("objects,index")));
        assert!(!git_fsyncs_refs(Some("none")));
        for v in ["reference", "committed", "added", "all", "none,reference", "all,-reference", " index , committed"] {
            assert!(git_fsyncs_refs(Some(v)), "{v}");
        }
    }
}
