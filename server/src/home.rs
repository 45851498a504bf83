//! The data directory: where the store lives, and the lock that keeps one process in it.
//!
//! ```text
//! HOME/lock      flock(2)ed by the process using the store; holds its pid
//! HOME/chunks/   the local chunk store (fvfs_cas::DirStore)
//! HOME/meta/     the metadata database (sled)
//! ```
//! sled admits one process per database, so every command takes the lock first and,
//! if another process holds it, says so in one line instead of failing deep inside sled.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use fvfs_cas::{ChunkStore, DirStore};
use fvfs_manifest::kv::Kv;
use fvfs_manifest::Repo;

pub struct Home {
    dir: PathBuf,
    repo: Repo,
    _lock: File,
}

/// `$FVFS_HOME` (given by clap), else `~/.local/share/fvfs`.
fn default_dir() -> Result<PathBuf> {
    let home =
        std::env::var_os("HOME").context("neither FVFS_HOME nor HOME is set: pass --home DIR")?;
    Ok(Path::new(&home).join(".local/share/fvfs"))
}

impl Home {
    pub fn open(dir: Option<PathBuf>) -> Result<Self> {
        let dir = match dir {
            Some(d) => d,
            None => default_dir()?,
        };
        fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create data directory {}", dir.display()))?;
        let lock = lock(&dir)?;
        let store = DirStore::open(dir.join("chunks"))?;
        let kv = Kv::open(&dir.join("meta"))?;
        let repo = Repo::new(Arc::new(store) as Arc<dyn ChunkStore>, kv);
        Ok(Self {
            dir,
            repo,
            _lock: lock,
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn repo(&self) -> &Repo {
        &self.repo
    }
}

fn lock(dir: &Path) -> Result<File> {
    let path = dir.join("lock");
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    if rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive).is_err() {
        let mut pid = String::new();
        let _ = file.read_to_string(&mut pid);
        bail!(
            "the store in {} is in use by another fvfs process (pid {}); stop `fvfsd serve` or wait for that command to finish",
            dir.display(),
            pid.trim()
        );
    }
    file.set_len(0)?;
    file.rewind()?;
    write!(file, "{}", std::process::id())?;
    Ok(file)
}
