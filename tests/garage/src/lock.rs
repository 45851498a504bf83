//! (Binary.) One command at a time per folder: an exclusive `flock` on `DIR/.lock`,
//! awaited for a bounded time, released when the lock is dropped or the process ends.

use std::fs::{File, OpenOptions};
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use rustix::fs::{flock, FlockOperation};

pub struct DirLock {
    /// Holds the lock while open.
    _file: File,
}

impl DirLock {
    pub fn acquire(dir: &Path, timeout: Duration) -> Result<Self> {
        let path = dir.join(".lock");
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .with_context(|| format!("open {}", path.display()))?;
        let deadline = Instant::now() + timeout;
        while flock(&file, FlockOperation::NonBlockingLockExclusive).is_err() {
            if Instant::now() >= deadline {
                bail!("another fvfs-garage command holds {}", path.display());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(Self { _file: file })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_waits_for_the_first() {
        let dir = tempfile::tempdir().unwrap();
        let first = DirLock::acquire(dir.path(), Duration::ZERO).unwrap();
        let err = DirLock::acquire(dir.path(), Duration::from_millis(200)).err();
        assert!(err.unwrap().to_string().contains("holds"));
        drop(first);
        DirLock::acquire(dir.path(), Duration::ZERO).unwrap();
    }
}
