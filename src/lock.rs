//! Cross-process locks that survive crashes.
//!
//! Contract: a [`FileLock`] is an advisory `flock` on a file under the common git directory.
//! The kernel releases it when the holder exits for any reason, `kill -9` included, so a lock
//! is never stale: a lock file left on disk by a dead process is simply acquired again. The
//! holder's pid is written into the file only to name it in "busy" messages.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use crate::error::HybridError;

/// A held lock; released on drop (or when the process dies).
#[derive(Debug)]
pub struct FileLock {
    file: File,
    path: PathBuf,
}

impl FileLock {
    fn open(path: &Path) -> Result<File> {
        let open = || OpenOptions::new().read(true).write(true).create(true).truncate(false).open(path);
        let dir = path.parent().unwrap_or(Path::new("."));
        crate::fsutil::in_made_dir(dir, open).with_context(|| format!("cannot open lock file {}", path.display()))
    }

    /// Waits until the lock is free, then takes it.
    pub fn acquire(path: &Path) -> Result<FileLock> {
        let file = Self::open(path)?;
        file.lock().with_context(|| format!("cannot lock {}", path.display()))?;
        let mut lock = FileLock { file, path: path.to_path_buf() };
        lock.write_pid();
        Ok(lock)
    }

    /// Takes the lock; while a live process holds it, says once on stderr
    /// (`git-hybrid: waiting for <what> by pid N`) and waits, at most `wait` (`None`: as long as
    /// it takes). When the wait runs out: [`HybridError::Busy`] (exit 4) naming the holder.
    pub fn acquire_waiting(path: &Path, what: &str, wait: Option<Duration>) -> Result<FileLock> {
        if let Some(lock) = Self::try_acquire(path)? {
            return Ok(lock);
        }
        let holder = || Self::holder_pid(path).map_or_else(|| "another process".to_string(), |p| format!("pid {p}"));
        match wait {
            Some(w) => eprintln!("git-hybrid: waiting for {what} by {} (up to {} s)", holder(), w.as_secs()),
            None => eprintln!("git-hybrid: waiting for {what} by {}", holder()),
        }
        let Some(wait) = wait else { return Self::acquire(path) };
        let deadline = Instant::now() + wait;
        loop {
            if let Some(lock) = Self::try_acquire(path)? {
                return Ok(lock);
            }
            if Instant::now() >= deadline {
                return Err(HybridError::Busy(format!(
                    "gave up waiting for {what} by {} after {} s; nothing was changed. Re-run when it is done, or \
                     wait longer with --wait SECONDS",
                    holder(),
                    wait.as_secs()
                ))
                .into());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Takes the lock if it is free; `Ok(None)` when a live process holds it.
    pub fn try_acquire(path: &Path) -> Result<Option<FileLock>> {
        let file = Self::open(path)?;
        match file.try_lock() {
            Ok(()) => {
                let mut lock = FileLock { file, path: path.to_path_buf() };
                lock.write_pid();
                Ok(Some(lock))
            }
            Err(TryLockError::WouldBlock) => Ok(None),
            Err(TryLockError::Error(e)) => Err(e).with_context(|| format!("cannot lock {}", path.display())),
        }
    }

    /// The pid recorded by the current (or last) holder of a lock file.
    pub fn holder_pid(path: &Path) -> Option<u32> {
        let mut s = String::new();
        File::open(path).ok()?.read_to_string(&mut s).ok()?;
        s.trim().parse().ok()
    }

    fn write_pid(&mut self) {
        // Best effort: the pid is only used in messages. Written over the old one at a fixed
        // width instead of truncating first: freeing a file's blocks is a metadata write (with
        // `discard` mounts, a device round trip) on every lock taken.
        // One write of the whole line (`writeln!` on the file itself writes each padding space).
        let line = format!("{:<10}\n", std::process::id());
        let _ = self.file.seek(SeekFrom::Start(0));
        let _ = self.file.write_all(line.as_bytes());
    }

    /// The lock file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for FileLock {
    fn drop(&mut self) {
        let _ = self.file.unlock();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_try_fails_while_held() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("x.lock");
        let a = FileLock::acquire(&p).unwrap();
        assert!(FileLock::try_acquire(&p).unwrap().is_none());
        assert_eq!(FileLock::holder_pid(&p), Some(std::process::id()));
        drop(a);
        assert!(FileLock::try_acquire(&p).unwrap().is_some());
    }
}
