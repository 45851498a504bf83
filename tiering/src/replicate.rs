//! Replication workers: one per colder tier, draining that tier's queue.
//!
//! A worker takes due chunks in batches, copies their frames from the local store to
//! the tier with bounded concurrency, syncs the tier, and only then sets the tier's bit
//! and unqueues them (`Repo::replication_done`). On failure the tier is marked
//! unavailable, the error is kept for status, and the batch is retried with exponential
//! backoff (1 s doubling to 60 s); writes keep landing on the local tier meanwhile, and
//! the queue, kept in sled, survives crashes and resumes at the next start.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use fvfs_cas::{ChunkStore, StoreError};
use fvfs_manifest::{QueueStatus, Repo};
use tokio::sync::Notify;

/// Chunks copied per batch.
const BATCH: usize = 256;
/// Copies in flight at once.
const CONCURRENCY: usize = 8;
const MAX_BACKOFF_SECS: u64 = 60;

/// A colder tier and the worker that feeds it.
pub struct Replicator {
    pub name: &'static str,
    pub bit: u8,
    store: Arc<dyn ChunkStore>,
    available: AtomicBool,
    last_error: Mutex<Option<String>>,
    /// Wakes the worker (new work, or a flush).
    wake: Notify,
    /// Wakes those waiting for the queue to drain, after every batch.
    progress: Notify,
}

impl Replicator {
    /// Starts the worker copying `repo`'s queued chunks for tier `bit` into `store`.
    pub fn spawn(
        repo: Arc<Repo>,
        name: &'static str,
        bit: u8,
        store: Arc<dyn ChunkStore>,
    ) -> Arc<Self> {
        let r = Arc::new(Self {
            name,
            bit,
            store,
            available: AtomicBool::new(true),
            last_error: Mutex::new(None),
            wake: Notify::new(),
            progress: Notify::new(),
        });
        tokio::spawn(r.clone().run(repo));
        r
    }

    pub fn available(&self) -> bool {
        self.available.load(Ordering::Relaxed)
    }

    pub fn last_error(&self) -> Option<String> {
        self.last_error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Asks the worker to look at its queue now.
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Retries everything queued for this tier now and waits until nothing is left;
    /// fails as soon as the tier fails.
    pub async fn drain(&self, repo: &Repo) -> Result<(), String> {
        repo.replication_retry_now(self.bit)
            .await
            .map_err(|e| e.to_string())?;
        self.available.store(true, Ordering::Relaxed);
        loop {
            let progress = self.progress.notified();
            if repo
                .replication_status(self.bit)
                .map_err(|e| e.to_string())?
                .pending
                == 0
            {
                return Ok(());
            }
            if !self.available() {
                return Err(format!(
                    "{} tier unavailable: {}",
                    self.name,
                    self.last_error().unwrap_or_default()
                ));
            }
            self.wake();
            progress.await;
        }
    }

    pub fn status(&self, repo: &Repo) -> Result<QueueStatus, String> {
        repo.replication_status(self.bit).map_err(|e| e.to_string())
    }

    async fn run(self: Arc<Self>, repo: Arc<Repo>) {
        let mut backoff = 1u64;
        loop {
            let due = match repo.replication_due(self.bit, BATCH) {
                Ok(d) => d,
                Err(e) => {
                    tracing::error!(tier = self.name, "cannot read the replication queue: {e}");
                    Vec::new()
                }
            };
            if due.is_empty() {
                self.progress.notify_waiters();
                let _ = tokio::time::timeout(Duration::from_secs(1), self.wake.notified()).await;
                continue;
            }
            match self.copy(&repo, &due).await {
                Ok(()) => match repo.replication_done(self.bit, &due).await {
                    Ok(()) => {
                        backoff = 1;
                        self.available.store(true, Ordering::Relaxed);
                        *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) = None;
                    }
                    Err(e) => {
                        tracing::error!(tier = self.name, "cannot record replicated chunks: {e}")
                    }
                },
                Err(e) => {
                    let msg = e.to_string();
                    tracing::warn!(tier = self.name, backoff, "replication failed: {msg}");
                    self.available.store(false, Ordering::Relaxed);
                    *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) = Some(msg.clone());
                    let _ = repo
                        .replication_failed(self.bit, &due, &msg, backoff as i64)
                        .await;
                    self.progress.notify_waiters();
                    let _ =
                        tokio::time::timeout(Duration::from_secs(backoff), self.wake.notified())
                            .await;
                    backoff = (backoff * 2).min(MAX_BACKOFF_SECS);
                }
            }
            self.progress.notify_waiters();
        }
    }

    /// Copies the frames of `ids` from the local store to this tier, then syncs it.
    async fn copy(&self, repo: &Repo, ids: &[fvfs_cas::ChunkId]) -> Result<(), StoreError> {
        futures::stream::iter(ids.iter().copied())
            .map(|id| async move {
                let loaded = repo.store().get(&id).await?;
                self.store.put(id, loaded.frame).await
            })
            .buffer_unordered(CONCURRENCY)
            .try_collect::<Vec<()>>()
            .await?;
        self.store.sync().await
    }
}
