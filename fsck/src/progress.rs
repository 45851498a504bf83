//! Progress of a running fsck or gc, shared with whoever shows it: a progress bar on
//! the command line, the daemon's status. Updates are atomic counters, so the checking
//! tasks never wait for a reader.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use fvfs_api::reports::TaskProgress;

pub struct Progress {
    task: &'static str,
    phase: Mutex<(String, u64)>,
    done: AtomicU64,
    bytes: AtomicU64,
}

impl Progress {
    pub fn new(task: &'static str) -> Self {
        Self {
            task,
            phase: Mutex::new((String::from("starting"), 0)),
            done: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
        }
    }

    /// A new phase of `total` items (0 if unknown); its count starts again.
    pub fn phase(&self, name: &str, total: u64) {
        tracing::debug!(task = self.task, total, "{name}");
        *self.phase.lock().unwrap_or_else(|p| p.into_inner()) = (name.to_owned(), total);
        self.done.store(0, Ordering::Relaxed);
    }

    pub fn add(&self, items: u64, bytes: u64) {
        self.done.fetch_add(items, Ordering::Relaxed);
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> TaskProgress {
        let (phase, total) = self.phase.lock().unwrap_or_else(|p| p.into_inner()).clone();
        TaskProgress {
            task: self.task.to_owned(),
            phase,
            done: self.done.load(Ordering::Relaxed),
            total,
            bytes: self.bytes.load(Ordering::Relaxed),
        }
    }
}
