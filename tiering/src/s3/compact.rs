//! Pack compaction: giving back the S3 space of chunks garbage collection dropped.
//!
//! A pack is immutable, so dropping a chunk only forgets its location; its bytes stay
//! until the pack goes. [`S3Store::compact`] deletes packs no location names any more,
//! and rewrites packs whose live share fell under a threshold: their live frames go
//! into new packs (through the open packs, as replication does: tree nodes, as the
//! caller tells them apart, into packs of nodes), then the old pack is deleted.
//!
//! # Invariants
//! - **A pack is deleted only when no location names it**, checked while no upload is
//!   in flight (all upload permits held), so a pack whose locations are about to be
//!   recorded is never taken for an empty one.
//! - **Moved frames never have a gap.** A live frame is re-added to the open pack
//!   without forgetting its old location (reads are served from memory, then from the
//!   new pack once its location replaces the old one); the old pack is deleted only
//!   after the new locations are recorded. A failed upload leaves the old locations,
//!   and so the old pack, in place.

use std::collections::{HashMap, HashSet};

use crate::records::PackLoc;
use fvfs_api::reports::Compaction;
use fvfs_cas::{ChunkId, StoreError};

use super::{Holds, S3Store, UPLOADS};
use fvfs_cas::ChunkStore;

/// Live bytes and locations of one pack.
#[derive(Default)]
struct PackUse {
    live_bytes: u64,
    chunks: Vec<(ChunkId, PackLoc)>,
}

impl S3Store {
    /// Live locations grouped by pack.
    fn pack_uses(&self) -> Result<HashMap<[u8; 32], PackUse>, StoreError> {
        let mut uses: HashMap<[u8; 32], PackUse> = HashMap::new();
        for (id, loc) in self.locs.all()? {
            let u = uses.entry(loc.pack).or_default();
            u.live_bytes += u64::from(loc.len);
            u.chunks.push((id, loc));
        }
        Ok(uses)
    }

    /// Deletes packs with nothing live and rewrites those whose live share is under
    /// `min_live` (0..1), the chunks `is_node` names into packs of nodes. With
    /// `dry_run`, only counts.
    async fn compact_packs(
        &self,
        min_live: f64,
        dry_run: bool,
        is_node: &IsNode<'_>,
    ) -> Result<Compaction, StoreError> {
        let mut report = Compaction::default();
        let mut rewrite: Vec<(String, u64, PackUse)> = Vec::new();
        {
            let _quiet = self.quiet().await?;
            let mut uses = self.pack_uses()?;
            for obj in self.bucket.list("packs/").await? {
                report.packs += 1;
                report.pack_bytes += obj.size;
                let Some(name) = pack_name(&obj.key) else {
                    continue;
                };
                match uses.remove(&name) {
                    None => {
                        if !dry_run {
                            self.bucket.delete(&obj.key).await?;
                        }
                        report.packs_deleted += 1;
                        report.bytes_freed += obj.size;
                    }
                    Some(u) if (u.live_bytes as f64) < min_live * obj.size as f64 => {
                        rewrite.push((obj.key, obj.size, u));
                    }
                    Some(_) => {}
                }
            }
        }
        if dry_run {
            for (_, size, u) in &rewrite {
                report.packs_rewritten += 1;
                report.bytes_freed += size;
                report.bytes_moved += u.live_bytes;
            }
            return Ok(report);
        }
        let mut moved = Vec::new();
        for (key, size, u) in rewrite {
            let Some(object) = self.bucket.get(&key).await? else {
                continue;
            };
            let mut whole = true;
            for (id, loc) in &u.chunks {
                let range = loc.offset as usize..(loc.offset + u64::from(loc.len)) as usize;
                // Checked, then moved as stored: a sealed frame opens in any pack.
                let checked = object.get(range).map(|f| {
                    let stored = object.slice_ref(f);
                    let raw_len = self.bucket.open_frame(id, stored.clone())?.data.len();
                    Ok::<_, StoreError>((stored, raw_len as u32))
                });
                match checked {
                    Some(Ok((stored, raw_len))) => {
                        let holds = if is_node(id) {
                            Holds::Nodes
                        } else {
                            Holds::Data
                        };
                        // Pushed even though a location names it already.
                        let full = self.mem().push(holds, *id, &stored, raw_len);
                        if full {
                            self.seal(holds).await?;
                        }
                        report.bytes_moved += u64::from(loc.len);
                    }
                    _ => {
                        tracing::error!(pack = key, chunk = %id, "damaged frame left in place for fsck");
                        whole = false;
                    }
                }
            }
            if whole {
                moved.push((key, size));
            }
        }
        self.sync().await?;
        let _quiet = self.quiet().await?;
        let uses = self.pack_uses()?;
        for (key, size) in moved {
            if pack_name(&key).is_some_and(|n| !uses.contains_key(&n)) {
                self.bucket.delete(&key).await?;
                report.packs_rewritten += 1;
                report.bytes_freed += size;
            }
        }
        Ok(report)
    }

    /// Holds every upload permit: no pack is being uploaded meanwhile.
    async fn quiet(&self) -> Result<tokio::sync::SemaphorePermit<'_>, StoreError> {
        self.uploads
            .acquire_many(UPLOADS)
            .await
            .map_err(|_| StoreError::Unavailable("S3 store closed".into()))
    }
}

/// The pack name in an object key `packs/<hex>`.
pub(super) fn pack_name(key: &str) -> Option<[u8; 32]> {
    key.strip_prefix("packs/")
        .and_then(|h| hex::decode(h).ok())
        .and_then(|h| <[u8; 32]>::try_from(h).ok())
}

/// Whether a chunk is a tree node (asked of the store's records by whoever compacts).
pub type IsNode<'a> = dyn Fn(&ChunkId) -> bool + Send + Sync + 'a;

/// What fsck and gc ask of a tier that keeps chunks in packs (S3), without reaching
/// into the store itself.
#[async_trait::async_trait]
pub trait Packs: Send + Sync {
    /// The names of the packs the tier holds (one listing).
    async fn pack_names(&self) -> Result<HashSet<[u8; 32]>, StoreError>;
    /// Rewrites the packs whose live share is under `min_live`, keeping their live
    /// frames (those `is_node` names in packs of nodes); `dry_run` only counts.
    async fn compact(
        &self,
        min_live: f64,
        dry_run: bool,
        is_node: &IsNode<'_>,
    ) -> Result<Compaction, StoreError>;
    /// Tells the tier's version log that versions `numbers` were dropped.
    async fn record_dropped(&self, numbers: &[u64]) -> Result<(), StoreError>;
}

#[async_trait::async_trait]
impl Packs for S3Store {
    async fn pack_names(&self) -> Result<HashSet<[u8; 32]>, StoreError> {
        Ok(self
            .bucket
            .list("packs/")
            .await?
            .iter()
            .filter_map(|o| pack_name(&o.key))
            .collect())
    }

    async fn compact(
        &self,
        min_live: f64,
        dry_run: bool,
        is_node: &IsNode<'_>,
    ) -> Result<Compaction, StoreError> {
        self.compact_packs(min_live, dry_run, is_node).await
    }

    async fn record_dropped(&self, numbers: &[u64]) -> Result<(), StoreError> {
        super::log::record_dropped(&self.bucket, numbers).await
    }
}
