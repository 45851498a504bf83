//! Changes of chunk records made by the layer above (tiering: a tier's bit set after
//! a copy, cleared by eviction, access statistics, records restored from S3), one at a
//! time with every other change of records and totals, applied in one batch with the
//! entries of its own spaces.
//!
//! # Invariants
//! - A change holds the repository's persisting lock from start to commit, so the
//!   totals it read are still current when it writes them.
//! - Records, totals and space entries of a change (or of one part of it) are applied
//!   all together or not at all.

use fvfs_cas::ChunkId;

use super::Repo;
use crate::error::Result;
use crate::kv::Batch;
use crate::meta::{self, ChunkRecord, Totals};
use crate::space::Space;

/// A change of chunk records in progress; nothing is written before
/// [`RecordChange::commit`] (or [`RecordChange::apply_part`]).
pub struct RecordChange<'a> {
    repo: &'a Repo,
    _one_at_a_time: tokio::sync::MutexGuard<'a, ()>,
    /// Everything to apply together: records, and entries of any [`Space`].
    pub batch: Batch,
    /// The totals, kept current by the change; written with it.
    pub totals: Totals,
}

impl Repo {
    /// Starts a change of chunk records.
    pub async fn change_records(&self) -> Result<RecordChange<'_>> {
        let lock = self.persisting.lock().await;
        Ok(RecordChange {
            repo: self,
            _one_at_a_time: lock,
            batch: Batch::default(),
            totals: self.totals()?,
        })
    }

    /// The namespace `ns` of the metadata database, for the layer above. Panics for a
    /// namespace of the manifest's own.
    pub fn space(&self, ns: u8) -> Space {
        Space::new(self.kv.clone(), ns)
    }
}

impl RecordChange<'_> {
    /// `id`'s record as the database holds it (not as this change left it).
    pub fn record(&self, id: &ChunkId) -> Result<Option<ChunkRecord>> {
        self.repo.chunk_record(id)
    }

    /// Writes `record` as `id`'s.
    pub fn set(&mut self, id: &ChunkId, record: &ChunkRecord) {
        self.batch.insert(meta::chunk_key(id), meta::encode(record));
    }

    /// Applies what the change holds so far, with the totals (for changes too large
    /// for one batch: each part is consistent on its own).
    pub fn apply_part(&mut self) -> Result<()> {
        let mut batch = std::mem::take(&mut self.batch);
        batch.insert(meta::TOTALS, meta::encode(&self.totals));
        self.repo.kv.apply(batch)?;
        Ok(())
    }

    /// Applies the change and, if `durable`, flushes the database durably.
    pub fn commit(mut self, durable: bool) -> Result<()> {
        self.apply_part()?;
        if durable {
            self.repo.kv.flush_durable()?;
        }
        Ok(())
    }
}
