//! File-system helpers with crash-safe semantics.
//!
//! Contract: [`write_atomic`] either leaves the old file or the complete new one, never a torn
//! write: it writes a temporary file in the same directory, syncs it and renames it over the
//! target (rename is atomic on POSIX file systems). [`write_atomic_with`] may skip the sync: the
//! rename alone is already atomic for every reader and survives any process crash (`kill -9`);
//! only a power loss can lose a write that was not synced, see [`git_fsyncs_refs`].
//! [`write_atomic_as`] is the one writer behind them, also choosing the temporary file's prefix
//! and the file's mode (hooks, pack files). [`in_made_dir`] makes a missing folder on first use.

use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result};

/// Writes `data` to `path` atomically (temp file + fsync + rename).
pub fn write_atomic(path: &Path, data: &[u8]) -> Result<()> {
    write_atomic_with(path, data, true)
}

/// Writes `data` to `path` atomically (temp file + rename), syncing the data first when `sync`.
pub fn write_atomic_with(path: &Path, data: &[u8], sync: bool) -> Result<()> {
    write_atomic_as(path, data, Atomic { temp_prefix: ".tmp-", mode: None, sync })
}

/// How [`write_atomic_as`] writes a file.
#[derive(Debug, Clone, Copy)]
pub struct Atomic<'a> {
    /// The temporary file's name prefix (what a kill leaves beside the target).
    pub temp_prefix: &'a str,
    /// The file's permission bits (`None`: the temporary file's own, 0600).
    pub mode: Option<u32>,
    /// Sync the data to disk before the rename.
    pub sync: bool,
}

/// Writes `data` to `path` through a temporary file in the same folder (made if missing),
/// renamed over `path`: readers see the old file or the complete new one.
pub fn write_atomic_as(path: &Path, data: &[u8], how: Atomic<'_>) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let dir = path.parent().context("path has no parent directory")?;
    let mut tmp = in_made_dir(dir, || tempfile::Builder::new().prefix(how.temp_prefix).tempfile_in(dir))
        .with_context(|| format!("cannot create a temporary file in {}", dir.display()))?;
    tmp.write_all(data).with_context(|| format!("cannot write a temporary file for {}", path.display()))?;
    if let Some(mode) = how.mode {
        tmp.as_file()
            .set_permissions(std::fs::Permissions::from_mode(mode))
            .with_context(|| format!("cannot set the mode of {}", path.display()))?;
    }
    if how.sync {
        tmp.as_file().sync_all().context("cannot sync temporary file")?;
    }
    tmp.persist(path).with_context(|| format!("cannot rename into {}", path.display()))?;
    Ok(())
}

/// Runs `create` (which makes a file in `dir`); when it finds `dir` missing, makes `dir` and
/// runs it once more. Folders are made on first use only, not with a `mkdir` before every file.
pub fn in_made_dir<T>(dir: &Path, create: impl Fn() -> std::io::Result<T>) -> std::io::Result<T> {
    match create() {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(dir)?;
            create()
        }
        r => r,
    }
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

/// Largest configuration or plan file git-hybrid reads (1 MiB): `hybrid.toml`, plan files and
/// prompt files are short text, and a file an agent planted must not make a command read
/// without bound.
pub const MAX_CONFIG_BYTES: u64 = 1 << 20;

/// Why [`read_regular_capped`] refused a file.
#[derive(Debug)]
pub enum CappedReadError {
    /// The file does not exist.
    NotFound,
    /// Not a regular file (a directory, a device, a FIFO, a socket), after following symlinks.
    NotRegular(&'static str),
    /// Larger than the cap.
    TooLarge(u64),
    /// Any other I/O error.
    Io(std::io::Error),
}

impl std::fmt::Display for CappedReadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CappedReadError::NotFound => write!(f, "no such file"),
            CappedReadError::NotRegular(kind) => write!(f, "it is a {kind}, not a regular file"),
            CappedReadError::TooLarge(cap) => write!(f, "it is larger than {cap} bytes"),
            CappedReadError::Io(e) => write!(f, "{e}"),
        }
    }
}

/// Reads a file that must be a regular file (symlinks followed) of at most `cap` bytes.
///
/// Opened without blocking (a FIFO would otherwise block the open), checked on the open
/// descriptor (no race with a swap of the path), and read through `take(cap + 1)` so a file
/// that grows while it is read is still refused rather than read without bound.
pub fn read_regular_capped(path: &Path, cap: u64) -> std::result::Result<Vec<u8>, CappedReadError> {
    use std::io::Read;
    use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
    let file =
        std::fs::OpenOptions::new().read(true).custom_flags(libc::O_NONBLOCK).open(path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => CappedReadError::NotFound,
            _ => CappedReadError::Io(e),
        });
    let file = match file {
        Ok(f) => f,
        // Opening a directory for reading works on Linux; on others it may fail: say what it is.
        Err(e) => {
            return Err(match std::fs::metadata(path) {
                Ok(m) if m.is_dir() => CappedReadError::NotRegular("directory"),
                _ => e,
            })
        }
    };
    let meta = file.metadata().map_err(CappedReadError::Io)?;
    let ft = meta.file_type();
    if !ft.is_file() {
        let kind = if ft.is_dir() {
            "directory"
        } else if ft.is_char_device() || ft.is_block_device() {
            "device"
        } else if ft.is_fifo() {
            "FIFO"
        } else if ft.is_socket() {
            "socket"
        } else {
            "special file"
        };
        return Err(CappedReadError::NotRegular(kind));
    }
    if meta.len() > cap {
        return Err(CappedReadError::TooLarge(cap));
    }
    let mut out = Vec::with_capacity(meta.len() as usize);
    file.take(cap + 1).read_to_end(&mut out).map_err(CappedReadError::Io)?;
    if out.len() as u64 > cap {
        return Err(CappedReadError::TooLarge(cap));
    }
    Ok(out)
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
    fn capped_reads_refuse_devices_directories_and_big_files() {
        let d = tempfile::tempdir().unwrap();
        let small = d.path().join("small");
        std::fs::write(&small, b"ok").unwrap();
        assert_eq!(read_regular_capped(&small, 10).unwrap(), b"ok");
        assert!(matches!(read_regular_capped(&small, 1), Err(CappedReadError::TooLarge(1))));
        assert!(matches!(read_regular_capped(d.path(), 10), Err(CappedReadError::NotRegular("directory"))));
        assert!(matches!(read_regular_capped(Path::new("/dev/zero"), 10), Err(CappedReadError::NotRegular("device"))));
        assert!(matches!(read_regular_capped(&d.path().join("none"), 10), Err(CappedReadError::NotFound)));
        let link = d.path().join("link");
        std::os::unix::fs::symlink(&small, &link).unwrap();
        assert_eq!(read_regular_capped(&link, 10).unwrap(), b"ok", "a symlink to a regular file is read");
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
