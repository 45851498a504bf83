//! The migration's checkpointer: a thread of its own that makes what the workers read
//! durable ([`Ingest::checkpoint`]) every few seconds, and at once when the chunk
//! records waiting reach half of [`PENDING_CAP`]; workers wait while they are at the
//! cap.
//!
//! A checkpoint of a few thousand small files is mostly database work on one core. Run
//! by the collector it stopped every worker behind a full queue for its whole length;
//! beside the workers, it bounds the pace of a first import of small files, so without
//! the cap the records waiting grew with the tree. At 16,384 a 300,000-file migrate
//! (on sled, the engine then) peaked where it did before and took 2-5% less time;
//! 32,768 took CI's 100,000-file test over its bound, 8,192 was slower
//! (benches/README.md). Until the twenty-seventh session nothing woke the checkpointer
//! at half the cap, so each checkpoint began only when the workers stopped at it and
//! held them for its whole length (50-200 ms, mostly the packs' fsync): woken at half,
//! the same migrate took 6.8 s instead of 7.8.
//!
//! # Invariants
//! - Each checkpoint's outcome is sent to the collector, which folds after it; the
//!   thread ends after a failed one (the migration stops), when the migration aborts,
//!   or when [`Checkpoints::stop`] is called, never with a checkpoint half told.
//! - A worker never waits for a checkpointer that has ended.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use fvfs_manifest::ManifestError;

use super::ingest::Ingest;

/// Chunk records waiting to be made durable at which workers wait for a checkpoint.
pub const PENDING_CAP: usize = 16_384;

/// What a checkpoint tells the collector: the files finished when it started, and
/// whether it saved them.
pub type Told = (u64, Result<(), ManifestError>);

#[derive(Default)]
pub struct Checkpoints {
    /// Whether the checkpointer has ended (or must).
    ended: Mutex<bool>,
    changed: Condvar,
}

impl Checkpoints {
    /// The checkpointer's loop; `told` hears each outcome.
    pub fn run(
        &self,
        ingest: &Ingest<'_>,
        every: Duration,
        abort: &AtomicBool,
        told: &tokio::sync::mpsc::Sender<Told>,
    ) {
        let mut last = Instant::now();
        while self.due(ingest, every, last, abort) {
            let files = ingest.counters.files.load(Ordering::Relaxed);
            let saved = ingest.handle.block_on(ingest.checkpoint());
            last = Instant::now();
            let failed = saved.is_err();
            self.wake();
            if told.blocking_send((files, saved)).is_err() || failed {
                break;
            }
        }
        self.stop();
    }

    /// Waits until a checkpoint is due (true) or the checkpointer must end (false).
    fn due(&self, ingest: &Ingest<'_>, every: Duration, last: Instant, abort: &AtomicBool) -> bool {
        let mut ended = self.lock();
        loop {
            if *ended || abort.load(Ordering::Relaxed) {
                return false;
            }
            let waited = last.elapsed();
            if waited >= every || ingest.pending.len() >= PENDING_CAP / 2 {
                return true;
            }
            ended = self
                .changed
                .wait_timeout(ended, every - waited)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    /// Called by a worker after each batch: wakes the checkpointer once half of
    /// [`PENDING_CAP`] records are waiting, and waits while all of them are (until a
    /// checkpoint took some or the checkpointer ended).
    pub fn hold(&self, ingest: &Ingest<'_>, abort: &AtomicBool) {
        let waiting = || ingest.pending.len();
        if waiting() < PENDING_CAP / 2 || abort.load(Ordering::Relaxed) {
            return;
        }
        let mut ended = self.lock();
        self.changed.notify_all();
        while waiting() >= PENDING_CAP && !abort.load(Ordering::Relaxed) && !*ended {
            ended = self.changed.wait(ended).unwrap_or_else(|p| p.into_inner());
        }
    }

    /// Ends the checkpointer after the checkpoint in progress, if any.
    pub fn stop(&self) {
        *self.lock() = true;
        self.changed.notify_all();
    }

    /// Wakes every waiter, after any that checked the records under the lock went to
    /// sleep (so none misses what changed).
    fn wake(&self) {
        drop(self.lock());
        self.changed.notify_all();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, bool> {
        self.ended.lock().unwrap_or_else(|p| p.into_inner())
    }
}
