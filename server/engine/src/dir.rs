//! The data directory: where the store lives, and the lock that keeps one process in it.
//!
//! ```text
//! HOME/lock               flock(2)ed by the process using the store; holds its pid
//! HOME/chunks/            the local chunk store (fvfs_cas::PackStore)
//! HOME/meta/              the metadata database (fvfs_cas::kv)
//! HOME/maintenance.json   how the last fsck and gc ended (crate::jobs)
//! HOME/daemon.url         where the running daemon answers
//! ```
//! A database admits one process, so every command takes the lock first and, if
//! another process holds it, says so in one line instead of failing deep inside it.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

/// Another process holds the store.
#[derive(Debug)]
pub struct Busy {
    pub dir: PathBuf,
    pub pid: String,
}

impl std::fmt::Display for Busy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the store in {} is in use by another fvfs process (pid {}) and no running daemon answers for it; wait for that command to finish",
            self.dir.display(),
            self.pid
        )
    }
}

impl std::error::Error for Busy {}

/// File in the data directory holding the URL of the daemon using it.
pub const DAEMON_INFO: &str = "daemon.url";

/// Where how the last fsck and gc ended is kept, whoever ran them.
pub const MAINTENANCE: &str = "maintenance.json";

/// Takes the data directory's lock (see the module's doc), or says who holds it.
/// Creates the data directory 0700; one that others can enter (made by an older fvfsd
/// under the umask) is made 0700, since tokens, the store and its database live there.
pub fn create_dir(dir: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    fvfs_cas::platform::create_private_dir(dir)
        .with_context(|| format!("cannot create data directory {}", dir.display()))?;
    let mode = fs::metadata(dir)?.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        fs::set_permissions(dir, fs::Permissions::from_mode(mode & 0o700))
            .with_context(|| format!("cannot make {} private (chmod 700)", dir.display()))?;
        tracing::info!(
            "{} was open to others (mode {mode:o}): now {:o}",
            dir.display(),
            mode & 0o700
        );
    }
    Ok(())
}

pub fn lock(dir: &Path) -> Result<File> {
    let path = dir.join("lock");
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    if !fvfs_cas::platform::lock_exclusive(&file).unwrap_or(false) {
        let mut pid = String::new();
        let _ = file.read_to_string(&mut pid);
        return Err(Busy {
            dir: dir.to_owned(),
            pid: pid.trim().to_owned(),
        }
        .into());
    }
    file.set_len(0)?;
    file.rewind()?;
    write!(file, "{}", std::process::id())?;
    Ok(file)
}
