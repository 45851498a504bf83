//! The state file of a mount (`<cache>/mounts/<pid>.json`): its mount point and the
//! writes it could not commit yet, so that `fvfsc status` on this device shows them
//! (also when the daemon is down, or the mount ended with some still waiting: their
//! content is then kept in the named staging files).
//!
//! A file is written whole to a temporary name and renamed over the old one, so a
//! reader never sees half of one; a mount that ends with nothing waiting removes its
//! file.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// A write not committed yet.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Waiting {
    /// Where it is to be committed (bytes that are not UTF-8 replaced).
    pub path: String,
    /// When its first commit failed (Unix seconds).
    pub since: i64,
    pub error: String,
    /// The local file holding its content.
    pub local: PathBuf,
}

impl Waiting {
    pub fn new(path: &[u8], since: SystemTime, error: &str, local: &Path) -> Self {
        Self {
            path: String::from_utf8_lossy(path).into_owned(),
            since: unix_secs(since),
            error: error.to_owned(),
            local: local.to_owned(),
        }
    }
}

/// Unix seconds of `t`.
pub fn unix_secs(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// Whether process `pid` runs (on this machine).
pub fn runs(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// Whether files named by process `pid` belong to a process still running other than
/// this one (a number this process has is an earlier process's).
pub fn another_runs(pid: u32) -> bool {
    pid != std::process::id() && runs(pid)
}

/// What a mount's state file says.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MountRecord {
    pub mountpoint: PathBuf,
    pub pid: u32,
    /// The mount ended (unmounted) with these writes still waiting.
    pub ended: bool,
    /// Retry passes done so far: one that started after a change shows its effect.
    #[serde(default)]
    pub passes: u64,
    pub waiting: Vec<Waiting>,
    /// Inodes its table holds (as the kernel does), and its budget (`--max-inodes`).
    #[serde(default)]
    pub inodes: u64,
    #[serde(default)]
    pub max_inodes: u64,
}

/// The state file of this process's mount, written by the batches of write-backs and
/// by the inode budget's rounds (each changes its part of the one record).
pub struct MountState {
    file: PathBuf,
    record: Mutex<MountRecord>,
}

fn dir(cache_dir: &Path) -> PathBuf {
    cache_dir.join("mounts")
}

impl MountState {
    pub fn new(cache_dir: &Path, mountpoint: &Path, max_inodes: usize) -> io::Result<Self> {
        let dir = dir(cache_dir);
        std::fs::create_dir_all(&dir)?;
        let state = Self {
            file: dir.join(format!("{}.json", std::process::id())),
            record: Mutex::new(MountRecord {
                mountpoint: mountpoint.canonicalize()?,
                pid: std::process::id(),
                ended: false,
                passes: 0,
                waiting: Vec::new(),
                inodes: 0,
                max_inodes: max_inodes as u64,
            }),
        };
        state.write(&[], 0, false)?;
        Ok(state)
    }

    /// Records `waiting` after `passes` retry passes; once the mount `ended`, the file
    /// stays only if some wait.
    pub fn write(&self, waiting: &[Waiting], passes: u64, ended: bool) -> io::Result<()> {
        let mut record = self.record.lock().unwrap_or_else(|p| p.into_inner());
        record.waiting = waiting.to_vec();
        record.passes = passes;
        record.ended = ended;
        if ended && waiting.is_empty() {
            return match std::fs::remove_file(&self.file) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
                _ => Ok(()),
            };
        }
        self.save(&record)
    }

    /// Records that the inode table holds `inodes` (written only when it changed, and
    /// not once the mount ended).
    pub fn held(&self, inodes: usize) -> io::Result<()> {
        let mut record = self.record.lock().unwrap_or_else(|p| p.into_inner());
        if record.ended || record.inodes == inodes as u64 {
            return Ok(());
        }
        record.inodes = inodes as u64;
        self.save(&record)
    }

    fn save(&self, record: &MountRecord) -> io::Result<()> {
        let next = self.file.with_extension("next");
        std::fs::write(&next, serde_json::to_vec_pretty(record)?)?;
        std::fs::rename(&next, &self.file)
    }
}

/// The state of this device's mounts that use `cache_dir`, by mount point. A mount
/// whose process is gone without saying it ended is shown as ended.
pub fn read_all(cache_dir: &Path) -> Vec<MountRecord> {
    let Ok(files) = std::fs::read_dir(dir(cache_dir)) else {
        return Vec::new();
    };
    let mut records: Vec<MountRecord> = files
        .filter_map(|f| {
            let path = f.ok()?.path();
            if path.extension()? != "json" {
                return None;
            }
            let mut r: MountRecord = serde_json::from_slice(&std::fs::read(&path).ok()?).ok()?;
            r.ended |= !runs(r.pid);
            (!r.ended || !r.waiting.is_empty()).then_some(r)
        })
        .collect();
    records.sort_by(|a, b| a.mountpoint.cmp(&b.mountpoint));
    records
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mount_records_what_waits_and_removes_its_file_when_done() {
        let cache = tempfile::tempdir().unwrap();
        let mountpoint = tempfile::tempdir().unwrap();
        let state = MountState::new(cache.path(), mountpoint.path(), 100).unwrap();
        let shown = read_all(cache.path());
        assert_eq!(shown.len(), 1);
        assert!(shown[0].waiting.is_empty() && !shown[0].ended);
        let w = Waiting::new(b"/a.txt", SystemTime::now(), "daemon down", Path::new("/x"));
        state.write(std::slice::from_ref(&w), 1, false).unwrap();
        assert_eq!(read_all(cache.path())[0].waiting, std::slice::from_ref(&w));
        assert_eq!(read_all(cache.path())[0].passes, 1);
        // The inode budget's count is kept beside the writes, and they beside it.
        state.held(42).unwrap();
        let shown = &read_all(cache.path())[0];
        assert_eq!((shown.inodes, shown.max_inodes), (42, 100));
        assert_eq!(shown.waiting, std::slice::from_ref(&w));
        // Ended with a write waiting: still shown, as ended.
        state.write(std::slice::from_ref(&w), 2, true).unwrap();
        assert!(read_all(cache.path())[0].ended);
        state.write(&[], 3, true).unwrap();
        assert!(read_all(cache.path()).is_empty());
        // A round of the budget after the end brings nothing back.
        state.held(7).unwrap();
        assert!(read_all(cache.path()).is_empty());
    }
}
