//! Replication workers: one per colder tier, draining that tier's queue.
//!
//! A worker takes due chunks in large batches and copies their frames (read through
//! the tiers in bulk, in the local tier's order) to its tier. A copy is confirmed (the
//! tier's bit set, the chunk unqueued: `Replication::replication_done`,
//! `records/queue.rs`) only once the tier holds it durably: as soon as the tier says
//! so on its own (`ChunkStore::durable`: the S3 store's full packs, stored in the
//! background), or after the sync its [`FlushPolicy`] calls for (every batch for the
//! NAS; for S3 once `flush_size_mb` waits, `flush_interval_secs` passed, or a flush
//! was asked for, which stores the partly filled pack). Then the tier's epilogue runs
//! (S3 publishes the version log). On failure the tier is
//! marked unavailable, the error is kept for status, and the chunks are retried with
//! exponential backoff (1 s doubling to 60 s); writes keep landing on the local tier
//! meanwhile, and the queue, kept in the metadata database, survives crashes and
//! resumes at the next start.

use std::collections::{HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use fvfs_cas::{ChunkId, ChunkStore, StoreError};
use fvfs_manifest::{ChunkKind, CopyMark, Repo};

use crate::records::{Publishing, QueueStatus, Replication};
use tokio::sync::Notify;

use crate::s3::log::LogPublisher;
use crate::Tier;

/// Chunks copied per round.
const BATCH: usize = 4096;
/// Due chunks taken from the queue at once and put in the local tier's order. The
/// queue is in id order, which is no order on disk; copying in the order chunks were
/// written reads the local segments front to back and keeps neighbours (the chunks of
/// one file, the files of one folder) together in the colder tier's packs, so that
/// reading them back is a few large GETs.
const BACKLOG: usize = 1 << 20;
const MAX_BACKOFF_SECS: u64 = 60;

/// When a worker syncs its tier and confirms what it copied.
#[derive(Clone, Copy, Debug)]
pub struct FlushPolicy {
    /// Sync once this many bytes of frames wait unconfirmed (0: after every batch).
    pub size_bytes: u64,
    /// Sync once the oldest unconfirmed copy is this old.
    pub interval: Duration,
}

impl FlushPolicy {
    /// Sync after every batch (a directory store: syncing is cheap, packs do not exist).
    pub const EVERY_BATCH: FlushPolicy = FlushPolicy {
        size_bytes: 0,
        interval: Duration::ZERO,
    };
}

/// A colder tier and the worker that feeds it.
pub struct Replicator {
    pub name: &'static str,
    pub bit: u8,
    store: Arc<dyn ChunkStore>,
    policy: FlushPolicy,
    epilogue: Option<Arc<LogPublisher>>,
    available: AtomicBool,
    /// A flush is waiting: sync as soon as nothing more is due.
    flush: AtomicBool,
    last_error: Mutex<Option<String>>,
    /// Wakes the worker (new work, or a flush).
    wake: Notify,
    /// Wakes those waiting for the queue to drain, after every batch.
    progress: Notify,
    /// Asked to stop: the worker returns at the top of its next round.
    stopping: AtomicBool,
    /// The worker, until [`Replicator::stop`] waits for it.
    task: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

/// Copies made but not yet confirmed.
#[derive(Default)]
struct Unconfirmed {
    /// In the order they were copied, each with its frame's length and when.
    ids: VecDeque<(ChunkId, u64, Instant)>,
    set: HashSet<ChunkId>,
    bytes: u64,
    /// Taken before the first of these copies read its chunk.
    mark: Option<Arc<CopyMark>>,
}

/// Copies the tier holds durably, being confirmed while the next ones are copied;
/// they stay in [`Unconfirmed::set`] (not taken from the queue again) until it ends.
struct Settling {
    ids: Vec<ChunkId>,
    task: tokio::task::JoinHandle<Result<(), fvfs_manifest::ManifestError>>,
}

type Failure = (StoreError, Vec<ChunkId>);

/// Waits for the confirmation in flight, if any. When it failed, its chunks stay
/// queued and are copied (found there already) and confirmed again later.
async fn joined(settling: &mut Option<Settling>, pending: &mut Unconfirmed) -> Result<(), Failure> {
    let Some(Settling { ids, task }) = settling.take() else {
        return Ok(());
    };
    let done = match task.await {
        Ok(done) => done,
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    };
    for id in &ids {
        pending.set.remove(id);
    }
    if pending.ids.is_empty() {
        *pending = Unconfirmed::default();
    }
    done.map_err(|e| {
        (
            StoreError::Unavailable(format!("metadata database: {e}")),
            Vec::new(),
        )
    })
}

/// Due chunks in the local tier's order, taken from the queue in one scan and copied
/// a batch at a time (each batch checked against the queue again).
#[derive(Default)]
struct Backlog(Vec<ChunkId>);

impl Backlog {
    /// The next batch still due; rescans the queue when the backlog is used up.
    fn next(
        &mut self,
        repo: &Repo,
        bit: u8,
        skip: &HashSet<ChunkId>,
    ) -> Result<Vec<ChunkId>, String> {
        let err = |e: fvfs_manifest::ManifestError| e.to_string();
        loop {
            if self.0.is_empty() {
                let mut due = repo
                    .replication_due_except(bit, BACKLOG, skip)
                    .map_err(err)?;
                if due.is_empty() {
                    return Ok(due);
                }
                // Reversed, so that the batches are taken from the end.
                due.sort_by_cached_key(|id| std::cmp::Reverse(repo.store().read_order(id)));
                self.0 = due;
            }
            let taken = self.0.split_off(self.0.len().saturating_sub(BATCH));
            let mut taken: Vec<ChunkId> = taken
                .into_iter()
                .rev()
                .filter(|id| !skip.contains(id))
                .collect();
            taken = repo.replication_still_due(bit, &taken).map_err(err)?;
            if !taken.is_empty() {
                return Ok(taken);
            }
        }
    }
}

impl Replicator {
    /// Starts the worker copying `repo`'s queued chunks for `tier` into its store,
    /// syncing by its flush policy, running `epilogue` after every confirmed sync.
    pub fn spawn(repo: Arc<Repo>, tier: &Tier, epilogue: Option<Arc<LogPublisher>>) -> Arc<Self> {
        let r = Arc::new(Self {
            name: tier.id.name(),
            bit: tier.id.bit(),
            store: tier.store.clone(),
            policy: tier.run.flush,
            epilogue,
            available: AtomicBool::new(true),
            flush: AtomicBool::new(false),
            last_error: Mutex::new(None),
            wake: Notify::new(),
            progress: Notify::new(),
            stopping: AtomicBool::new(false),
            task: Mutex::new(None),
        });
        let task = tokio::spawn(r.clone().run(repo));
        *r.task.lock().unwrap_or_else(|p| p.into_inner()) = Some(task);
        r
    }

    /// Stops the worker after the round it is in (what it copied that the tier does not
    /// hold durably yet stays queued) and waits for it, at most `limit`: a runtime shutting down under a
    /// worker that is still copying would fail its next timer.
    pub async fn stop(&self, limit: Duration) {
        self.stopping.store(true, Ordering::Relaxed);
        self.wake();
        let task = self.task.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(task) = task {
            if tokio::time::timeout(limit, task).await.is_err() {
                tracing::warn!(tier = self.name, "replication still busy; stopping anyway");
            }
        }
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

    /// Retries everything queued for this tier now, syncs, and waits until nothing is
    /// left and (for S3) the version log up to the current HEAD is published; fails as
    /// soon as the tier fails.
    pub async fn drain(&self, repo: &Repo) -> Result<(), String> {
        let err = |e: fvfs_manifest::ManifestError| e.to_string();
        let head = repo.head().map_err(err)?.map_or(0, |v| v.number);
        repo.replication_retry_now(self.bit).await.map_err(err)?;
        self.available.store(true, Ordering::Relaxed);
        loop {
            let progress = self.progress.notified();
            // One look, not a count: a flush of a large upload wakes here per batch.
            let drained = repo.replication_drained(self.bit).map_err(err)?;
            let published = self.epilogue.is_none() || repo.published().map_err(err)? >= head;
            if drained && published {
                return Ok(());
            }
            if !self.available() {
                return Err(format!(
                    "{} tier unavailable: {}",
                    self.name,
                    self.last_error().unwrap_or_default()
                ));
            }
            self.flush.store(true, Ordering::Relaxed);
            self.wake();
            progress.await;
        }
    }

    pub fn status(&self, repo: &Repo) -> Result<QueueStatus, String> {
        repo.replication_status(self.bit).map_err(|e| e.to_string())
    }

    fn failed(&self, msg: String) {
        self.available.store(false, Ordering::Relaxed);
        *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) = Some(msg);
    }

    async fn run(self: Arc<Self>, repo: Arc<Repo>) {
        let mut backoff = 1u64;
        let mut pending = Unconfirmed::default();
        let mut backlog = Backlog::default();
        let mut settling = None;
        while !self.stopping.load(Ordering::Relaxed) {
            let due = match backlog.next(&repo, self.bit, &pending.set) {
                Ok(d) => d,
                Err(e) => {
                    tracing::error!(tier = self.name, "cannot read the replication queue: {e}");
                    Vec::new()
                }
            };
            let mut result = Ok(());
            if !due.is_empty() {
                pending
                    .mark
                    .get_or_insert_with(|| Arc::new(repo.copy_mark()));
                match self.copy(&repo, &due).await {
                    Ok(copied) => {
                        let now = Instant::now();
                        pending.bytes += copied.iter().map(|(_, len)| len).sum::<u64>();
                        pending.set.extend(copied.iter().map(|(id, _)| *id));
                        pending
                            .ids
                            .extend(copied.into_iter().map(|(id, len)| (id, len, now)));
                    }
                    Err(e) => result = Err((e, due.clone())),
                }
            }
            if result.is_ok() && !pending.ids.is_empty() {
                result = self.settle(&repo, &mut pending, &mut settling).await;
            }
            if due.is_empty() || result.is_err() {
                let done = joined(&mut settling, &mut pending).await;
                result = result.and(done);
            }
            let flush_asked = self.flush.load(Ordering::Relaxed) && due.is_empty();
            let time_to_sync = !pending.ids.is_empty()
                && (pending.bytes >= self.policy.size_bytes
                    || pending
                        .ids
                        .front()
                        .is_some_and(|(_, _, at)| at.elapsed() >= self.policy.interval)
                    || flush_asked);
            if result.is_ok() && time_to_sync {
                result = joined(&mut settling, &mut pending).await;
            }
            if result.is_ok() && time_to_sync {
                let Unconfirmed { ids, mark, .. } = std::mem::take(&mut pending);
                let ids: Vec<ChunkId> = ids.into_iter().map(|(id, ..)| id).collect();
                let mark = mark.unwrap_or_else(|| Arc::new(repo.copy_mark()));
                result = self.confirm(&repo, &ids, &mark).await.map_err(|e| (e, ids));
            }
            if result.is_ok() && due.is_empty() && pending.ids.is_empty() {
                self.flush.store(false, Ordering::Relaxed);
                if let Some(epilogue) = &self.epilogue {
                    result = epilogue.publish(&repo).await.map_err(|e| (e, Vec::new()));
                }
            }
            match result {
                Ok(()) => {
                    if backoff > 1 || !self.available() {
                        tracing::info!(tier = self.name, "tier available again");
                    }
                    backoff = 1;
                    self.available.store(true, Ordering::Relaxed);
                    *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) = None;
                    self.progress.notify_waiters();
                    if due.is_empty() {
                        let _ = tokio::time::timeout(Duration::from_secs(1), self.wake.notified())
                            .await;
                    }
                }
                Err((e, mut ids)) => {
                    // What was copied and not confirmed is tried again too.
                    ids.extend(
                        std::mem::take(&mut pending)
                            .ids
                            .into_iter()
                            .map(|(id, ..)| id),
                    );
                    self.round_failed(&repo, e.to_string(), &ids, backoff).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF_SECS);
                }
            }
        }
        // So that a stop returns once what was confirmed is recorded.
        if let Err((e, _)) = joined(&mut settling, &mut pending).await {
            tracing::warn!(tier = self.name, "confirming copies at stop: {e}");
        }
    }

    /// A round failed with `msg`: `ids` are put back in the queue with the failure
    /// noted (retried after `backoff` seconds), and the loop waits that long or until
    /// woken.
    async fn round_failed(&self, repo: &Repo, msg: String, ids: &[ChunkId], backoff: u64) {
        tracing::warn!(tier = self.name, backoff, "replication failed: {msg}");
        self.failed(msg.clone());
        if let Err(e) = repo
            .replication_failed(self.bit, ids, &msg, backoff as i64)
            .await
        {
            tracing::error!(tier = self.name, "cannot record the failure: {e}");
        }
        self.progress.notify_waiters();
        let _ = tokio::time::timeout(Duration::from_secs(backoff), self.wake.notified()).await;
    }

    /// Copies the frames of `ids` (read through the tiers, in bulk, passing: a copy
    /// is not a use, so it neither counts for eviction, which would rewrite every
    /// new chunk's record once more, nor promotes; checked by the local tier's record
    /// checksums, not decoded: `ChunkStore::copy_frames`) to this tier, tree nodes as
    /// nodes (`ChunkStore::put_node`); returns what it copied, in the order it did,
    /// with each frame's length.
    async fn copy(&self, repo: &Repo, ids: &[ChunkId]) -> Result<Vec<(ChunkId, u64)>, StoreError> {
        let mut copied = Vec::with_capacity(ids.len());
        let mut frames = repo.store().copy_frames(ids.to_vec());
        while let Some((id, frame)) = frames.next().await {
            let frame = frame?;
            copied.push((id, frame.len() as u64));
            let record = repo
                .chunk_record(&id)
                .map_err(|e| StoreError::Unavailable(format!("metadata database: {e}")))?;
            if record.is_some_and(|r| r.kind == ChunkKind::Node) {
                self.store.put_node(id, frame).await?;
            } else {
                self.store.put(id, frame).await?;
            }
        }
        Ok(copied)
    }

    /// Confirms, oldest first, the copies the tier made durable on its own (the S3
    /// store's packs stored in the background as they fill), so that they leave the
    /// queue as they land rather than at the next sync, and a flush finds little left.
    /// The confirmation runs beside the copies that follow (once the one before it
    /// ended), on another core.
    async fn settle(
        &self,
        repo: &Arc<Repo>,
        pending: &mut Unconfirmed,
        settling: &mut Option<Settling>,
    ) -> Result<(), Failure> {
        /// Copies asked about at once; the first not yet durable ends the look.
        const LOOK: usize = 256;
        let mut n = 0;
        while n < pending.ids.len() {
            let look: Vec<ChunkId> = pending
                .ids
                .iter()
                .skip(n)
                .take(LOOK)
                .map(|(id, ..)| *id)
                .collect();
            let durable = self
                .store
                .durable(&look)
                .await
                .map_err(|e| (e, Vec::new()))?;
            let k = durable.iter().take_while(|d| **d).count();
            n += k;
            if k < look.len() {
                break;
            }
        }
        if n == 0 {
            return Ok(());
        }
        joined(settling, pending).await?;
        let ids: Vec<ChunkId> = pending
            .ids
            .drain(..n)
            .map(|(id, len, _)| {
                pending.bytes -= len;
                id
            })
            .collect();
        let mark = pending
            .mark
            .get_or_insert_with(|| Arc::new(repo.copy_mark()))
            .clone();
        let (repo, bit, confirmed) = (repo.clone(), self.bit, ids.clone());
        let task = tokio::spawn(async move { repo.replication_done(bit, &confirmed, &mark).await });
        *settling = Some(Settling { ids, task });
        Ok(())
    }

    /// Syncs the tier, then sets the bits of `ids` (copied since `mark`) and unqueues them.
    async fn confirm(
        &self,
        repo: &Repo,
        ids: &[ChunkId],
        mark: &CopyMark,
    ) -> Result<(), StoreError> {
        self.store.sync().await?;
        repo.replication_done(self.bit, ids, mark)
            .await
            .map_err(|e| StoreError::Unavailable(format!("metadata database: {e}")))
    }
}
