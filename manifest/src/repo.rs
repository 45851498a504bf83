//! The repository: a chunk store for content and nodes, plus the metadata database
//! that names versions, snapshots and chunks.
//!
//! # Invariants
//! - **Chunks before names.** A version or a chunk record is written
//!   to the database only after the chunks it refers to were synced to the store
//!   ([`Repo::checkpoint`] and [`HeadLock::commit`] sync first, then apply the chunk
//!   records, then the version and HEAD in one atomic batch, then flush durably). A
//!   crash at any point leaves at worst unreferenced chunks or records, never a name
//!   that points at nothing; the totals always match the records applied.
//! - **One writer of HEAD.** Versions are made only under [`HeadLock`], so each new
//!   version's parent is the HEAD it was built on.
//! - **Versions are immutable.** Snapshots and rollbacks add versions; nothing is
//!   rewritten, so any version stays readable until garbage collection removes it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

mod gc;
mod records;
mod restore;
mod versions;

pub use gc::{CollectionsHeld, Condemned, CopyMark, Evicting, GcSession};
pub use records::RecordChange;
pub use versions::HeadLock;

use bytes::Bytes;
use futures::StreamExt;
use fvfs_cas::{frame, ChunkId, ChunkStore};

use crate::error::{ManifestError, Result};
use crate::kv::{Batch, Kv};
use crate::meta::{self, ChunkRecord, FileRef, Totals, TIER_LOCAL};
use crate::node::{self, ChunkKind, ChunkRef, DirNode, Entry, Node};
use crate::space::RecordIndex;
use crate::upload;

type Records = HashMap<ChunkId, ChunkRecord>;

/// Chunks and records written since the last checkpoint: shared by concurrent writers.
#[derive(Default)]
pub struct Pending {
    records: Mutex<Records>,
}

impl Pending {
    /// Moves everything `other` holds into this one, so that one commit records both.
    pub fn absorb(&self, other: &Pending) {
        let records = other.take();
        self.records
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend(records);
    }

    fn knows(&self, id: &ChunkId) -> bool {
        self.records
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains_key(id)
    }

    /// How many chunk records wait to be recorded.
    pub fn len(&self) -> usize {
        self.records.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Whether nothing waits to be recorded.
    pub fn is_empty(&self) -> bool {
        self.records
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_empty()
    }

    fn take(&self) -> Records {
        std::mem::take(&mut *self.records.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

pub struct Repo {
    store: Arc<dyn ChunkStore>,
    kv: Kv,
    head: tokio::sync::Mutex<()>,
    persisting: tokio::sync::Mutex<()>,
    /// What the layer above keeps beside chunk records (see [`RecordIndex`]).
    index: Arc<dyn RecordIndex>,
    /// Keeps writers' chunks alive while a garbage collection runs.
    fence: Arc<gc::Fence>,
    /// The seed of this store's chunk cut points ([`Repo::adopt_cut_seed`]).
    cut_seed: std::sync::atomic::AtomicU64,
}

/// The time now, in Unix seconds (0 if the clock is before 1970).
pub fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

impl Repo {
    /// A repository of `store`, named in `kv`; `index` hears of the chunk records it
    /// makes and removes.
    pub fn new(store: Arc<dyn ChunkStore>, kv: Kv, index: Arc<dyn RecordIndex>) -> Self {
        Self {
            store,
            kv,
            head: tokio::sync::Mutex::new(()),
            persisting: tokio::sync::Mutex::new(()),
            index,
            fence: Arc::default(),
            cut_seed: Default::default(),
        }
    }

    /// The seed every chunker of this store cuts with (`fvfs_cas::chunker`): 0, fastcdc's
    /// own cut points, unless the store recorded another.
    pub fn cut_seed(&self) -> u64 {
        self.cut_seed.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Takes the seed recorded with the store; where none is, records `derived` (a
    /// store with an encrypted tier derives one from its master key) durably, so that
    /// every later open cuts the same way whatever the configuration says. Returns the
    /// seed in force.
    pub fn adopt_cut_seed(&self, derived: Option<u64>) -> Result<u64> {
        let seed = match self.u64_record(meta::CUT_SEED, "a cut seed")? {
            Some(seed) => seed,
            None => match derived {
                Some(seed) => {
                    self.put_u64_durably(meta::CUT_SEED, seed)?;
                    seed
                }
                None => 0,
            },
        };
        self.cut_seed
            .store(seed, std::sync::atomic::Ordering::Relaxed);
        Ok(seed)
    }

    /// The number (8 bytes, little endian) kept at `key`, if any; `what` names it in
    /// the error a damaged one gives.
    pub(crate) fn u64_record(&self, key: &[u8], what: &str) -> Result<Option<u64>> {
        let Some(v) = self.kv.get(key)? else {
            return Ok(None);
        };
        let bytes = v
            .as_slice()
            .try_into()
            .map_err(|_| ManifestError::BadRecord {
                key: String::from_utf8_lossy(key).into_owned(),
                reason: format!("{what} of {} bytes", v.len()),
            })?;
        Ok(Some(u64::from_le_bytes(bytes)))
    }

    /// Keeps `value` at `key` ([`Repo::u64_record`]), durably.
    pub(crate) fn put_u64_durably(&self, key: &[u8], value: u64) -> Result<()> {
        let mut batch = Batch::default();
        batch.insert(key.to_vec(), value.to_le_bytes().to_vec());
        self.kv.apply(batch)?;
        self.kv.flush_durable()?;
        Ok(())
    }

    pub fn store(&self) -> &Arc<dyn ChunkStore> {
        &self.store
    }

    /// Whether chunk `id` is already stored (or pending in `pending`). While a garbage
    /// collection runs, a "yes" stays true until it ends (see `repo/gc.rs`).
    pub fn knows(&self, pending: &Pending, id: &ChunkId) -> Result<bool> {
        self.fence.protect(id);
        Ok(pending.knows(id) || self.kv.contains(&meta::chunk_key(id))?)
    }

    /// Stores `data` as a chunk of `kind` unless it is already stored; returns its id.
    /// Durable, and recorded, at the next checkpoint or commit.
    pub async fn put_chunk(
        &self,
        pending: &Pending,
        data: &[u8],
        kind: ChunkKind,
    ) -> Result<ChunkId> {
        let id = ChunkId::of(data);
        if !self.knows(pending, &id)? {
            self.put_hashed_chunks(pending, &[(id, data)], kind).await?;
        }
        Ok(id)
    }

    /// Compresses and stores `chunks`, whose ids the caller has just computed from them
    /// (and found unknown with [`Repo::knows`]): [`Repo::put_chunk`] without hashing
    /// and looking up a second time, and many chunks in one call to the store (one
    /// write of their records instead of one each).
    pub async fn put_hashed_chunks(
        &self,
        pending: &Pending,
        chunks: &[(ChunkId, impl AsRef<[u8]>)],
        kind: ChunkKind,
    ) -> Result<()> {
        let frames = chunks
            .iter()
            .map(|(id, data)| {
                let data = data.as_ref();
                debug_assert_eq!(*id, ChunkId::of(data));
                (*id, Bytes::from(frame::encode(data)), data.len(), kind)
            })
            .collect();
        self.store_frames(pending, frames).await
    }

    /// Stores frames encoded elsewhere (by a client), after checking that each declares
    /// no more than its kind may hold, decodes to its id, and (a tree node) decodes as
    /// a file or list node ([`crate::upload`]); they go to the store in one call (a
    /// call per chunk handed the daemon's worker thread over each time). Decoding runs
    /// on the blocking pool within the shared budget. Returns how many were new.
    /// Nothing is stored if one frame is refused.
    pub async fn put_frames(
        &self,
        pending: &Pending,
        frames: Vec<(ChunkKind, ChunkId, Bytes)>,
    ) -> Result<u64> {
        let mut unknown = Vec::with_capacity(frames.len());
        let mut most = 0;
        for (kind, id, framed) in frames {
            if self.knows(pending, &id)? {
                continue;
            }
            let declared = upload::check_declared(kind, &id, &framed)?;
            most = most.max(upload::cost(kind, declared));
            unknown.push((kind, id, framed));
        }
        if unknown.is_empty() {
            return Ok(0);
        }
        // Decoded one at a time: the largest is what they take at once.
        let budget = upload::reserve(most).await;
        let checked = tokio::task::spawn_blocking(move || {
            unknown
                .into_iter()
                .map(|(kind, id, framed)| {
                    let raw = frame::decode(&id, &framed).map_err(|e| ManifestError::BadFrame {
                        id,
                        reason: e.to_string(),
                    })?;
                    if kind == ChunkKind::Node {
                        upload::client_node(&id, &raw)?;
                    }
                    Ok((id, framed, raw.len(), kind))
                })
                .collect::<Result<Vec<_>>>()
        })
        .await
        .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))?;
        drop(budget);
        let count = checked.len() as u64;
        self.store_frames(pending, checked).await?;
        Ok(count)
    }

    /// Stores `frames` (id, frame, raw length, kind) and stages their records.
    async fn store_frames(
        &self,
        pending: &Pending,
        frames: Vec<(ChunkId, Bytes, usize, ChunkKind)>,
    ) -> Result<()> {
        let mut records = Vec::with_capacity(frames.len());
        let mut puts = Vec::with_capacity(frames.len());
        for (id, framed, raw_len, kind) in frames {
            self.gc_wait_buried(&id).await;
            self.fence.staging(&id);
            records.push(ChunkRecord {
                kind,
                tiers: TIER_LOCAL,
                raw_len: raw_len as u32,
                stored_len: framed.len() as u32,
                last_access: now(),
                accesses: 0.0,
            });
            puts.push((id, framed));
        }
        let ids: Vec<ChunkId> = puts.iter().map(|(id, _)| *id).collect();
        let written = self.store.put_many(puts).await;
        let mut failed = None;
        let mut staged = pending.records.lock().unwrap_or_else(|p| p.into_inner());
        for ((id, record), written) in ids.into_iter().zip(records).zip(written) {
            let counted_once = match written {
                Ok(()) => staged.insert(id, record).is_some(),
                Err(e) => {
                    failed.get_or_insert(e);
                    true
                }
            };
            if counted_once {
                // Failed, or stored twice through one pending set: not staged again.
                self.fence.recorded([id].iter());
            }
        }
        failed.map_or(Ok(()), |e| Err(e.into()))
    }

    pub async fn put_node(&self, pending: &Pending, node: &Node) -> Result<ChunkId> {
        self.put_chunk(pending, &node.encode(), ChunkKind::Node)
            .await
    }

    /// Records a file's chunk list: inline for a small file, else in a file node (plus
    /// list nodes when it is long). Returns what its directory entry holds.
    pub async fn put_file(&self, pending: &Pending, chunks: Vec<ChunkRef>) -> Result<FileRef> {
        let size = chunks.iter().map(|c| c.len).sum();
        match node::file_layout(chunks) {
            node::FileLayout::Inline(chunks) => Ok(FileRef {
                size,
                node: None,
                chunks,
            }),
            node::FileLayout::Nodes { file, lists } => {
                for list in &lists {
                    self.put_node(pending, list).await?;
                }
                let node = self.put_node(pending, &file).await?;
                Ok(FileRef {
                    size,
                    node: Some(node),
                    chunks: Vec::new(),
                })
            }
        }
    }

    /// Whether everything `file` refers to (its chunks, or its file node with the
    /// node's lists and chunks) is stored (or pending).
    pub async fn knows_file(&self, pending: &Pending, file: &FileRef) -> Result<bool> {
        let missing = self.file_missing(pending, file.node.as_ref(), &file.chunks);
        Ok(missing.await?.is_empty())
    }

    /// What `entry` names (file node, list nodes, data chunks) that is neither stored
    /// nor in `pending`: empty when the entry can be committed. Asked through
    /// [`Repo::knows`], so what is found stays stored while a garbage collection runs.
    pub async fn entry_missing(&self, pending: &Pending, entry: &Entry) -> Result<Vec<ChunkId>> {
        match entry.kind {
            node::EntryKind::File => {
                self.file_missing(pending, entry.id.as_ref(), &entry.chunks)
                    .await
            }
            _ => self.unknown(
                pending,
                entry.id.iter().chain(entry.chunks.iter().map(|c| &c.id)),
            ),
        }
    }

    /// Which of `ids` are neither stored nor in `pending`.
    fn unknown<'a>(
        &self,
        pending: &Pending,
        ids: impl Iterator<Item = &'a ChunkId>,
    ) -> Result<Vec<ChunkId>> {
        let mut missing = Vec::new();
        for id in ids {
            if !self.knows(pending, id)? {
                missing.push(*id);
            }
        }
        Ok(missing)
    }

    /// [`Repo::entry_missing`] of a file's content: its file `node` (then the node's
    /// lists and chunks too) or its `chunks`.
    async fn file_missing(
        &self,
        pending: &Pending,
        node: Option<&ChunkId>,
        chunks: &[ChunkRef],
    ) -> Result<Vec<ChunkId>> {
        let missing = self.unknown(
            pending,
            node.into_iter().chain(chunks.iter().map(|c| &c.id)),
        )?;
        let (Some(&id), true) = (node, missing.is_empty()) else {
            return Ok(missing);
        };
        let Node::File(file) = self.node(&id).await? else {
            return Err(ManifestError::BadNode {
                id,
                reason: "expected a file node".into(),
            });
        };
        let mut missing = self.unknown(
            pending,
            file.chunks.iter().chain(&file.lists).map(|c| &c.id),
        )?;
        let lists: Vec<ChunkId> = file
            .lists
            .iter()
            .map(|l| l.id)
            .filter(|id| !missing.contains(id))
            .collect();
        for id in lists {
            if let Node::List(l) = self.node(&id).await? {
                missing.extend(self.unknown(pending, l.chunks.iter().map(|c| &c.id))?);
            }
        }
        Ok(missing)
    }

    /// Reads and decodes tree node `id`.
    pub async fn node(&self, id: &ChunkId) -> Result<Node> {
        let bytes = self.store.get(id).await?.data;
        node::decode(&bytes).map_err(|e| ManifestError::BadNode {
            id: *id,
            reason: e.to_string(),
        })
    }

    /// The whole directory whose top node is `id`: one node, or the parts of a large
    /// directory, each level read in one `get_many`.
    pub async fn dir(&self, id: &ChunkId) -> Result<DirNode> {
        let top = self.node(id).await?;
        node::dir::assemble(*id, top, |ids| self.nodes(ids)).await
    }

    /// Reads and decodes the tree nodes `ids`, in their order, in one bulk read.
    pub(crate) async fn nodes(&self, ids: Vec<ChunkId>) -> Result<Vec<Node>> {
        let mut found: HashMap<ChunkId, Node> = HashMap::with_capacity(ids.len());
        let mut answers = self.store.get_many(ids.clone());
        while let Some((id, answer)) = answers.next().await {
            let node = node::decode(&answer?.data).map_err(|e| ManifestError::BadNode {
                id,
                reason: e.to_string(),
            })?;
            found.insert(id, node);
        }
        ids.iter()
            .map(|id| {
                found
                    .get(id)
                    .cloned()
                    .ok_or(ManifestError::Store(fvfs_cas::StoreError::NotFound(*id)))
            })
            .collect()
    }

    /// The ordered data chunks of a file entry: inline, or from its file node and the
    /// list nodes below it.
    pub async fn file_chunks(&self, entry: &Entry) -> Result<Vec<ChunkRef>> {
        crate::node::file_chunks(entry, |id| async move { self.node(&id).await }).await
    }

    /// Makes everything in `pending` durable and recorded, without making a version:
    /// migrate calls this periodically so an interrupted run resumes where it stopped.
    pub async fn checkpoint(&self, pending: &Pending) -> Result<()> {
        self.persist(pending).await?;
        self.kv.flush_durable()?;
        Ok(())
    }

    /// Syncs the store, then records `pending`: chunk records not yet known (with the
    /// totals they change). Applied in batches of bounded size (a batch is held whole
    /// in memory until it is applied); each batch is consistent on its own (its
    /// records and the totals including them).
    ///
    /// Records stay in `pending` until they are in the database, so [`Repo::knows`]
    /// never misses a chunk that is on its way; persists run one at a time, so the
    /// totals are never updated by two at once.
    async fn persist(&self, pending: &Pending) -> Result<()> {
        const BATCH_OPS: usize = 4096;
        let _one_at_a_time = self.persisting.lock().await;
        let records: Vec<(ChunkId, ChunkRecord)> = pending
            .records
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(id, r)| (*id, *r))
            .collect();
        self.fence.protect_all(records.iter().map(|(id, _)| id));
        self.store.sync().await?;
        let mut totals = self.totals()?;
        let mut batch = Batch::default();
        for (id, record) in &records {
            let key = meta::chunk_key(id);
            if !self.kv.contains(&key)? {
                totals.add(record);
                batch.insert(key, meta::encode(record));
                self.index.recorded(&mut batch, id, record);
            }
            if batch.len() >= BATCH_OPS {
                batch.insert(meta::TOTALS, meta::encode(&totals));
                self.kv.apply(std::mem::take(&mut batch))?;
            }
        }
        batch.insert(meta::TOTALS, meta::encode(&totals));
        self.kv.apply(batch)?;
        let mut map = pending.records.lock().unwrap_or_else(|p| p.into_inner());
        for (id, _) in &records {
            map.remove(id);
        }
        self.fence.recorded(records.iter().map(|(id, _)| id));
        Ok(())
    }

    fn record<T: serde::de::DeserializeOwned>(&self, key: &[u8]) -> Result<Option<T>> {
        let Some(bytes) = self.kv.get(key)? else {
            return Ok(None);
        };
        meta::decode(&bytes)
            .map(Some)
            .map_err(|e| ManifestError::BadRecord {
                key: String::from_utf8_lossy(key).into_owned(),
                reason: e.to_string(),
            })
    }

    pub fn totals(&self) -> Result<Totals> {
        Ok(self.record(meta::TOTALS)?.unwrap_or_default())
    }

    pub fn chunk_record(&self, id: &ChunkId) -> Result<Option<ChunkRecord>> {
        self.record(&meta::chunk_key(id))
    }

    /// Removes the stat cache's records that migrate kept in this database before it
    /// had files of its own (`statcache` in fvfsd); returns how many. Nothing relies on
    /// them: a source they described is read once more.
    pub fn drop_legacy_stats(&self) -> Result<usize> {
        const BATCH_OPS: usize = 512;
        let mut dropped = 0;
        loop {
            let mut batch = Batch::default();
            for pair in self
                .kv
                .scan_prefix(&[meta::STAT_PREFIX], false)
                .take(BATCH_OPS)
            {
                batch.remove(pair?.0);
            }
            if batch.is_empty() {
                return Ok(dropped);
            }
            dropped += batch.len();
            self.kv.apply(batch)?;
        }
    }

    /// The id of the empty directory, stored so that an empty tree is a valid root.
    pub async fn empty_root(&self, pending: &Pending) -> Result<ChunkId> {
        self.put_node(pending, &Node::Dir(DirNode::default())).await
    }
}
