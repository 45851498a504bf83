//! The namespaced key-value port: the layer above the manifest (tiering: its
//! replication queue, eviction candidates, S3 pack locations and publish mark) keeps
//! its own records in the metadata database through a [`Space`], one namespace of it,
//! without the manifest knowing their layout; and it hears of the chunk records the
//! manifest itself makes or removes through its [`RecordIndex`], so that its entries
//! change in the same atomic batch.
//!
//! # Invariants
//! - A space never reaches a key outside its namespace, and the manifest's own
//!   namespaces (`meta`'s prefixes) are never handed out.
//! - Entries of a space that must change together with chunk records are written in
//!   the batch of a [`RecordChange`](crate::RecordChange) or of a hook below, never
//!   in a batch of their own.

use fvfs_cas::ChunkId;

use crate::error::Result;
use crate::kv::{Batch, Kv};
use crate::meta::ChunkRecord;

/// One namespace of the metadata database: keys are stored behind its byte.
#[derive(Clone)]
pub struct Space {
    kv: Kv,
    ns: u8,
}

impl Space {
    /// Namespace `ns` of `kv`. Panics for a namespace of the manifest's own.
    pub fn new(kv: Kv, ns: u8) -> Self {
        assert!(
            !crate::meta::OWN_PREFIXES.contains(&ns),
            "namespace {:?} is the manifest's own",
            ns as char
        );
        Self { kv, ns }
    }

    fn key(&self, key: &[u8]) -> Vec<u8> {
        let mut k = Vec::with_capacity(1 + key.len());
        k.push(self.ns);
        k.extend_from_slice(key);
        k
    }

    pub fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(self.kv.get(&self.key(key))?)
    }

    pub fn contains(&self, key: &[u8]) -> Result<bool> {
        Ok(self.kv.contains(&self.key(key))?)
    }

    /// The entries whose key starts with `prefix`, in key order, keys without the
    /// namespace byte.
    pub fn scan(
        &self,
        prefix: &[u8],
    ) -> impl Iterator<Item = Result<(Vec<u8>, Vec<u8>)>> + Send + 'static {
        self.kv
            .scan_prefix(&self.key(prefix), false)
            .map(|r| r.map(|(k, v)| (k[1..].to_vec(), v)).map_err(Into::into))
    }

    /// Adds writing `key` to `batch` (applied with whatever else it holds).
    pub fn insert(&self, batch: &mut Batch, key: &[u8], value: impl Into<Vec<u8>>) {
        batch.insert(self.key(key), value);
    }

    /// Adds removing `key` to `batch`.
    pub fn remove(&self, batch: &mut Batch, key: &[u8]) {
        batch.remove(self.key(key));
    }

    /// Applies `batch` (entries of this space only, no chunk record) and, if
    /// `durable`, flushes the database durably.
    pub fn apply(&self, batch: Batch, durable: bool) -> Result<()> {
        self.kv.apply(batch)?;
        if durable {
            self.kv.flush_durable()?;
        }
        Ok(())
    }
}

/// What the layer above keeps beside chunk records and versions, told when the
/// manifest itself records a new chunk (a write's checkpoint or commit), removes one
/// (a collection condemns it) or drops a version (a collection's retention), to add
/// its own entries to the same batch.
pub trait RecordIndex: Send + Sync {
    /// `id` is recorded, as `record`, by `batch`.
    fn recorded(&self, batch: &mut Batch, id: &ChunkId, record: &ChunkRecord);
    /// `id`'s record (`record`, as it was) is removed by `batch`.
    fn removed(&self, batch: &mut Batch, id: &ChunkId, record: &ChunkRecord);
    /// Version `number` is dropped by `batch`.
    fn version_dropped(&self, batch: &mut Batch, number: u64);
}

/// No index: a store with no layer above it (tests of the manifest, benchmarks).
pub struct Unindexed;

impl RecordIndex for Unindexed {
    fn recorded(&self, _: &mut Batch, _: &ChunkId, _: &ChunkRecord) {}
    fn removed(&self, _: &mut Batch, _: &ChunkId, _: &ChunkRecord) {}
    fn version_dropped(&self, _: &mut Batch, _: u64) {}
}
