//! What garbage collection needs from the repository: the fence that keeps writers'
//! chunks alive while a collection runs, the dropping of versions, and the durable
//! condemnation of chunk records (with tombstones, so an interrupted collection resumes).
//!
//! # Invariant: a chunk a writer relies on is never collected
//! A collection runs in four steps: [`Repo::gc_begin`] (under the HEAD lock: the fence
//! goes up, versions are dropped, the kept versions are fixed), a mark of everything
//! reachable from the kept versions, the sweep ([`Repo::gc_condemn`] then the copies'
//! deletion, then [`Repo::gc_buried`]), and [`GcSession`]'s drop (fence down). Writers
//! reach chunks in three ways, each covered:
//! - **Through [`Repo::knows`]** (dedup before storing, `chunks/missing`, commit checks):
//!   while the fence is up every id asked about is *protected* before the answer is
//!   read, and condemnation skips protected ids under the same lock; so an answer "it
//!   is there" stays true until the collection ends. An id already condemned is
//!   answered "not there", and storing it again waits until its old copies are gone
//!   ([`Repo::gc_wait_buried`]), so a fresh copy is never deleted by mistake.
//! - **Through HEAD's tree** (edits reuse unchanged subtrees): HEAD when the fence went
//!   up is kept and marked, and every later HEAD is made of its subtrees and of nodes
//!   written through `knows`; rollbacks can only reach kept versions, because dropped
//!   ones were deleted under the HEAD lock before it was released.
//! - **Through entries a client names** (a commit of uploaded files, migrate's stat
//!   cache): [`crate::TreeEdit::insert`] checks, under the HEAD lock, that everything
//!   the entry needs is stored, through `knows`; a check before the fence went up is
//!   followed by the version's commit before the fence can go up. A migration's
//!   entries are not checked again ([`crate::TreeEdit::insert_sorted_held`]): it
//!   holds collections off from before it looks their content up (or trusts its stat
//!   cache, [`Repo::records_epoch`]) until its commit.
//!
//! - **Through answers to a client** (`chunks/missing` said "there", or the client
//!   uploaded it, for a commit it sends next): *promised* ([`Repo::promise`]) before
//!   the lookup, and never condemned until a commit that arrived after the promise
//!   names it ([`Repo::promises_kept`]), or for the collection's in-flight window
//!   (`in_flight_secs` of [`Repo::gc_begin`]: a client that never commits). Without it a collection starting between the answer and the commit
//!   takes a chunk the client skipped sending (old garbage it deduplicated against,
//!   or its own upload past the grace), and its commit is refused round after round
//!   while collections run back to back.
//!
//! A chunk a writer stored and has not recorded yet is never condemned, whoever made
//! the record (`staged`: another writer may have recorded the same chunk first, and
//! this one relies on the copy with its own record still pending).
//!
//! Records made before the fence went up and named by no version yet (a long migrate's
//! checkpoints, chunks uploaded for a commit still to come) are protected by the grace
//! period: only records whose `last_access` is older than the collection's start minus
//! the grace are condemned. Without it the insert check would refuse their entries
//! (an error, never a loss).
//!
//! A replication batch never confirms a copy that a collection deleted meanwhile: it
//! holds a [`CopyMark`] from before it read the chunks, and tiering's `replication_done`
//! leaves queued every chunk buried since the mark (a writer may have stored it again
//! with a new record and queue entry; that copy is made afresh). Evictions are fenced
//! the same way ([`Repo::evicting`]): fsck does not claim a copy it found if an
//! eviction deleted it since the mark, or is deleting it (its bit was cleared first).
//!
//! Records go first, then copies: the condemned records are removed and tombstones
//! (`g<id>`, holding the record) written in one durable batch; the copies are deleted;
//! the tombstones removed. A crash leaves tombstones; they are finished
//! ([`Repo::gc_tombstones`]) only where no writer runs (when a process opens the store,
//! and by an offline collection), because a tombstoned chunk has no record: a writer
//! storing it again would find its old file and rely on it while its own record is
//! still pending, out of the fence's sight.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};

use fvfs_cas::ChunkId;

use super::{now, HeadLock, Repo};
use crate::error::{ManifestError, Result};
use crate::kv::Batch;
use crate::meta::{self, ChunkRecord, Version};

/// The fence between a running collection and the writers.
#[derive(Default)]
pub(crate) struct Fence {
    state: Mutex<FenceState>,
    buried: tokio::sync::Notify,
}

#[derive(Default)]
struct FenceState {
    active: bool,
    /// Migrations running ([`Repo::hold_collections`]): no collection starts.
    holds: u32,
    /// Ids a writer asked about while the collection runs: never condemned.
    protected: HashSet<ChunkId>,
    /// Ids whose records are gone and whose copies are being deleted.
    condemned: HashSet<ChunkId>,
    /// Ids promised to clients ([`Repo::promise`]): by which promise (a sequence),
    /// and when.
    promised: HashMap<ChunkId, (u64, i64)>,
    promises: u64,
    /// Ids stored by writers and not yet recorded (how many writers): never condemned,
    /// because a writer relies on the copy whatever record another writer made. Kept
    /// whether or not a collection runs; a writer that gives up leaves its count (a
    /// chunk kept until restart, never one lost).
    staged: HashMap<ChunkId, u32>,
    /// Burials so far, and after which burial each id's copies were last deleted: kept
    /// only while a replication batch that began before it is in flight.
    burials: u64,
    buried_at: HashMap<ChunkId, u64>,
    /// Replication batches in flight, by the burial count when each began.
    copying: BTreeMap<u64, usize>,
    /// Ids whose copies an eviction is deleting (how many evictions at once).
    evicting: HashMap<ChunkId, u32>,
    /// After which burial count each id's last eviction ended (every eviction counts
    /// as a burial): kept, as `buried_at`, only while a mark older than it is held.
    evicted_at: HashMap<ChunkId, u64>,
}

impl FenceState {
    /// Whether a collection must leave `id` alone: a writer asked about it while the
    /// fence is up, stores it, or was promised it (and the promise holds).
    fn spares(&self, id: &ChunkId, session: &GcSession<'_>) -> bool {
        self.protected.contains(id)
            || self.staged.contains_key(id)
            || self
                .promised
                .get(id)
                .is_some_and(|(_, at)| *at > session.promised_before)
    }
}

/// A replication batch in flight, taken before it reads the chunks it copies: what a
/// collection buries afterwards is not confirmed by it (see the module's invariant).
pub struct CopyMark {
    fence: Arc<Fence>,
    at: u64,
}

impl Drop for CopyMark {
    fn drop(&mut self) {
        let mut s = self.fence.state();
        if let Some(n) = s.copying.get_mut(&self.at) {
            *n -= 1;
            if *n == 0 {
                s.copying.remove(&self.at);
            }
        }
        match s.copying.keys().next().copied() {
            None => {
                s.buried_at.clear();
                s.evicted_at.clear();
            }
            Some(oldest) => {
                s.buried_at.retain(|_, b| *b > oldest);
                s.evicted_at.retain(|_, b| *b > oldest);
            }
        }
    }
}

/// An eviction in progress, from before it clears the tier bits of `ids` to after it
/// deleted their copies ([`Repo::evicting`]).
pub struct Evicting {
    fence: Arc<Fence>,
    ids: Vec<ChunkId>,
}

impl Drop for Evicting {
    fn drop(&mut self) {
        let mut s = self.fence.state();
        s.burials += 1;
        let (marked, at) = (!s.copying.is_empty(), s.burials);
        for id in &self.ids {
            if let Some(n) = s.evicting.get_mut(id) {
                *n -= 1;
                if *n == 0 {
                    s.evicting.remove(id);
                }
            }
            if marked {
                s.evicted_at.insert(*id, at);
            }
        }
    }
}

impl CopyMark {
    /// Whether a collection deleted `id`'s copies since this mark was taken.
    pub fn buried_since(&self, id: &ChunkId) -> bool {
        self.fence
            .state()
            .buried_at
            .get(id)
            .is_some_and(|b| *b > self.at)
    }

    /// Whether an eviction is deleting `id`'s copies, or deleted them since this mark
    /// was taken: a copy of it seen since may be gone.
    pub fn evicted_since(&self, id: &ChunkId) -> bool {
        let s = self.fence.state();
        s.evicting.contains_key(id) || s.evicted_at.get(id).is_some_and(|e| *e > self.at)
    }
}

impl Fence {
    fn state(&self) -> std::sync::MutexGuard<'_, FenceState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Called before a writer looks `id` up.
    pub(crate) fn protect(&self, id: &ChunkId) {
        let mut s = self.state();
        if s.active {
            s.protected.insert(*id);
        }
    }

    /// A writer stores `id`; it stays safe from condemnation until [`Fence::recorded`].
    pub(crate) fn staging(&self, id: &ChunkId) {
        *self.state().staged.entry(*id).or_insert(0) += 1;
    }

    /// Writers' staged `ids` are recorded now.
    pub(crate) fn recorded<'a>(&self, ids: impl Iterator<Item = &'a ChunkId>) {
        let mut s = self.state();
        for id in ids {
            if let Some(n) = s.staged.get_mut(id) {
                *n -= 1;
                if *n == 0 {
                    s.staged.remove(id);
                }
            }
        }
    }

    pub(crate) fn protect_all<'a>(&self, ids: impl Iterator<Item = &'a ChunkId>) {
        let mut s = self.state();
        if s.active {
            s.protected.extend(ids);
        }
    }
}

/// A running collection: the fence is up until it is dropped.
pub struct GcSession<'a> {
    repo: &'a Repo,
    /// The kept versions, HEAD first.
    pub kept: Vec<Version>,
    /// The versions dropped (numbers), oldest first.
    pub dropped: Vec<u64>,
    /// Records whose `last_access` is after this are kept (the grace period).
    pub condemn_before: i64,
    /// Promises made after this are kept (the in-flight window).
    promised_before: i64,
}

impl Drop for GcSession<'_> {
    fn drop(&mut self) {
        let mut s = self.repo.fence.state();
        s.active = false;
        s.protected.clear();
        s.condemned.clear();
        drop(s);
        self.repo.fence.buried.notify_waiters();
    }
}

/// No collection starts while this is held ([`Repo::hold_collections`]).
pub struct CollectionsHeld {
    fence: Arc<Fence>,
}

impl CollectionsHeld {
    /// Whether this holds `repo`'s collections.
    pub fn holds(&self, repo: &Repo) -> bool {
        Arc::ptr_eq(&self.fence, &repo.fence)
    }
}

impl Drop for CollectionsHeld {
    fn drop(&mut self) {
        self.fence.state().holds -= 1;
    }
}

/// Chunks condemned: their records are gone, their copies are to be deleted.
pub struct Condemned {
    pub chunks: Vec<(ChunkId, ChunkRecord)>,
}

/// A records epoch no store had: random (std's hasher keys come from the system's
/// random source), so that a database made anew (a recovery, a lost folder) does not
/// meet the epoch a stat cache beside it kept.
fn new_epoch() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    let since = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
    h.write_u128(since.map_or(0, |d| d.as_nanos()));
    h.finish()
}

fn tombstone_key(id: &ChunkId) -> Vec<u8> {
    meta::key(meta::TOMBSTONE_PREFIX, id.as_bytes())
}

impl Repo {
    /// Starts a collection: raises the fence and, with `dry_run` false, drops the
    /// versions `keep` does not keep (durably, with notes of which to drop from S3's
    /// log). `keep` sees every version, newest first, and HEAD is always kept.
    /// Records written or read in the last `grace_secs`, and chunks promised to
    /// clients in the last `in_flight_secs`, are spared. Fails if a collection already
    /// runs.
    pub async fn gc_begin(
        &self,
        lock: &HeadLock<'_>,
        keep: impl FnOnce(&[Version]) -> HashSet<u64>,
        grace_secs: i64,
        in_flight_secs: i64,
        dry_run: bool,
    ) -> Result<GcSession<'_>> {
        {
            let mut s = self.fence.state();
            if s.active {
                return Err(ManifestError::Busy(
                    "a garbage collection is already running",
                ));
            }
            if s.holds > 0 {
                return Err(ManifestError::Busy(
                    "a migration is running; collect once it is done",
                ));
            }
            s.active = true;
        }
        let session_start = now();
        let mut session = GcSession {
            repo: self,
            kept: Vec::new(),
            dropped: Vec::new(),
            condemn_before: session_start.saturating_sub(grace_secs.max(0)),
            promised_before: session_start.saturating_sub(in_flight_secs.max(0)),
        };
        if !dry_run {
            // Promises older than the window are broken: their commits are not coming.
            let mut s = self.fence.state();
            s.promised
                .retain(|_, (_, at)| *at > session.promised_before);
        }
        let versions: Vec<Version> = self.log().collect::<Result<_>>()?;
        let mut keep = keep(&versions);
        if let Some(head) = lock.head()? {
            keep.insert(head.number);
        }
        let mut batch = Batch::default();
        for v in versions {
            if keep.contains(&v.number) {
                session.kept.push(v);
            } else {
                session.dropped.push(v.number);
                batch.remove(meta::version_key(v.number));
                self.index.version_dropped(&mut batch, v.number);
            }
        }
        session.dropped.reverse();
        if !dry_run && !batch.is_empty() {
            self.kv.apply(batch)?;
            self.kv.flush_durable()?;
        }
        Ok(session)
    }

    /// Every chunk record, in id order, from `after` on (exclusive), at most `limit`.
    pub fn chunk_records_after(
        &self,
        after: Option<&ChunkId>,
        limit: usize,
    ) -> Result<Vec<(ChunkId, ChunkRecord)>> {
        let mut out = Vec::new();
        let after = after.map(meta::chunk_key);
        for item in self.kv.scan_after(&[meta::CHUNK_PREFIX], after.as_deref()) {
            let (k, v) = item?;
            let id = ChunkId::from_slice(&k[1..]).ok_or_else(|| ManifestError::BadRecord {
                key: "chunk".into(),
                reason: "bad id".into(),
            })?;
            let r: ChunkRecord = meta::decode(&v).map_err(|e| ManifestError::BadRecord {
                key: format!("chunk {id}"),
                reason: e.to_string(),
            })?;
            out.push((id, r));
            if out.len() >= limit {
                break;
            }
        }
        Ok(out)
    }

    /// Removes the records of `ids` that no writer protected, that still exist and
    /// that are older than the grace period, with what the index keeps beside them
    /// (queue entries, eviction candidates, S3 locations), writing tombstones in the
    /// same durable batch;
    /// returns what was condemned (the caller deletes the copies, then calls
    /// [`Repo::gc_buried`]).
    pub async fn gc_condemn(&self, session: &GcSession<'_>, ids: &[ChunkId]) -> Result<Condemned> {
        let _one_at_a_time = self.persisting.lock().await;
        let mut totals = self.totals()?;
        let mut batch = Batch::default();
        let mut chunks = Vec::new();
        let mut fence = self.fence.state();
        for id in ids {
            if fence.spares(id, session) {
                continue;
            }
            let Some(r) = self.chunk_record(id)? else {
                continue;
            };
            if r.last_access > session.condemn_before {
                continue;
            }
            batch.remove(meta::chunk_key(id));
            self.index.removed(&mut batch, id, &r);
            batch.insert(tombstone_key(id), meta::encode(&r));
            totals.remove(&r);
            chunks.push((*id, r));
        }
        if chunks.is_empty() {
            return Ok(Condemned { chunks });
        }
        batch.insert(meta::TOTALS, meta::encode(&totals));
        batch.insert(meta::RECORDS_EPOCH, new_epoch().to_le_bytes().to_vec());
        self.kv.apply(batch)?;
        self.kv.flush_durable()?;
        fence.condemned.extend(chunks.iter().map(|(id, _)| *id));
        Ok(Condemned { chunks })
    }

    /// The records epoch: a number that stays the same for as long as no chunk record
    /// is removed (condemnation replaces it, in the batch that removes the records), so
    /// ids found recorded under an epoch still are while it holds. Read while
    /// collections are held ([`Repo::hold_collections`]), it holds until they are
    /// let go. A store without one gets one, durably, at its first asking.
    pub async fn records_epoch(&self) -> Result<u64> {
        let _one_at_a_time = self.persisting.lock().await;
        if let Some(epoch) = self.u64_record(meta::RECORDS_EPOCH, "an epoch")? {
            return Ok(epoch);
        }
        let epoch = new_epoch();
        self.put_u64_durably(meta::RECORDS_EPOCH, epoch)?;
        Ok(epoch)
    }

    /// Whether an interrupted collection left tombstones.
    pub fn gc_interrupted(&self) -> Result<bool> {
        Ok(self
            .kv
            .scan_prefix(&[meta::TOMBSTONE_PREFIX], false)
            .next()
            .transpose()?
            .is_some())
    }

    /// Tombstones left by an interrupted collection whose chunk was not stored again:
    /// condemned anew in `session` (their copies are to be deleted, then buried).
    /// Tombstones of chunks stored again since are simply removed.
    pub fn gc_tombstones(&self, session: &GcSession<'_>) -> Result<Condemned> {
        let mut chunks = Vec::new();
        let mut stale = Batch::default();
        let mut fence = self.fence.state();
        for item in self.kv.scan_prefix(&[meta::TOMBSTONE_PREFIX], false) {
            let (k, v) = item?;
            let Some(id) = ChunkId::from_slice(&k[1..]) else {
                stale.remove(k);
                continue;
            };
            if self.kv.contains(&meta::chunk_key(&id))? || fence.spares(&id, session) {
                stale.remove(k);
                continue;
            }
            let r: ChunkRecord = meta::decode(&v).map_err(|e| ManifestError::BadRecord {
                key: format!("tombstone {id}"),
                reason: e.to_string(),
            })?;
            fence.condemned.insert(id);
            chunks.push((id, r));
        }
        self.kv.apply(stale)?;
        Ok(Condemned { chunks })
    }

    /// The copies of `ids` are deleted from every tier: tombstones go, and writers
    /// waiting to store them again go on.
    pub fn gc_buried(&self, ids: &[ChunkId]) -> Result<()> {
        let mut batch = Batch::default();
        for id in ids {
            batch.remove(tombstone_key(id));
        }
        self.kv.apply(batch)?;
        let mut fence = self.fence.state();
        fence.burials += 1;
        let (copying, burial) = (!fence.copying.is_empty(), fence.burials);
        for id in ids {
            fence.condemned.remove(id);
            if copying {
                fence.buried_at.insert(*id, burial);
            }
        }
        drop(fence);
        self.fence.buried.notify_waiters();
        Ok(())
    }

    /// Promises `ids` to a client, before it is told which of them are stored (or
    /// once it uploaded them): none is condemned until a commit naming it arrives
    /// after this (see the module's invariant). Returns the promise's number.
    pub fn promise(&self, ids: &[ChunkId]) -> u64 {
        let mut s = self.fence.state();
        s.promises += 1;
        let promise = (s.promises, now());
        for id in ids {
            s.promised.insert(*id, promise);
        }
        promise.0
    }

    /// Takes back promise `number` of `ids` (they are not stored: nothing to keep),
    /// where no later promise replaced it.
    pub fn unpromise<'a>(&self, number: u64, ids: impl Iterator<Item = &'a ChunkId>) {
        let mut s = self.fence.state();
        for id in ids {
            if s.promised.get(id).is_some_and(|(n, _)| *n == number) {
                s.promised.remove(id);
            }
        }
    }

    /// Where the promises stand when a commit arrives: give it to
    /// [`Repo::promises_kept`] once the commit is made.
    pub fn promise_mark(&self) -> u64 {
        self.fence.state().promises
    }

    /// A commit that arrived at `mark` made versions naming `ids`: their promises made
    /// before it are kept (later ones are for commits still to come).
    pub fn promises_kept<'a>(&self, mark: u64, ids: impl Iterator<Item = &'a ChunkId>) {
        let mut s = self.fence.state();
        for id in ids {
            if s.promised.get(id).is_some_and(|(n, _)| *n <= mark) {
                s.promised.remove(id);
            }
        }
    }

    /// Marks the start of a replication batch: take it before reading the chunks.
    pub fn copy_mark(&self) -> CopyMark {
        let mut s = self.fence.state();
        let at = s.burials;
        *s.copying.entry(at).or_insert(0) += 1;
        CopyMark {
            fence: self.fence.clone(),
            at,
        }
    }

    /// Marks an eviction of `ids`' copies from a tier: take it before clearing their
    /// bits, drop it once the copies are deleted.
    pub fn evicting(&self, ids: &[ChunkId]) -> Evicting {
        let mut s = self.fence.state();
        for id in ids {
            *s.evicting.entry(*id).or_insert(0) += 1;
        }
        Evicting {
            fence: self.fence.clone(),
            ids: ids.to_vec(),
        }
    }

    /// Keeps collections from starting until the answer is dropped, once the one
    /// running (if any) ended: for a migration, whose folders, written as it goes and
    /// named by no version until its commit, and whose deduplicated chunks would
    /// otherwise be sure only under the grace period.
    pub async fn hold_collections(&self) -> CollectionsHeld {
        loop {
            let ended = self.fence.buried.notified();
            {
                let mut s = self.fence.state();
                if !s.active {
                    s.holds += 1;
                    return CollectionsHeld {
                        fence: self.fence.clone(),
                    };
                }
            }
            ended.await;
        }
    }

    /// Waits while `id`'s old copies are being deleted, so a new copy is not.
    pub(crate) async fn gc_wait_buried(&self, id: &ChunkId) {
        loop {
            let notified = self.fence.buried.notified();
            if !self.fence.state().condemned.contains(id) {
                return;
            }
            notified.await;
        }
    }
}
