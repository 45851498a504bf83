//! What tiering keeps in the store's metadata database, in namespaces of its own
//! ([`fvfs_manifest::Space`]): the replication queue and which tiers were initialised
//! ([`queue`]), eviction candidates and access statistics ([`evict`]), and the S3 tier's
//! pack locations and publish log ([`s3`]). The chunk records and their tier bits stay
//! the manifest's; these change them through a [`RecordChange`](fvfs_manifest::RecordChange),
//! in the same batch as their own entries.
//!
//! [`TierIndex`] is what the manifest tells of the records it makes and removes itself:
//! a new chunk is queued for every replica tier in the batch that records it; a
//! condemned chunk leaves the queue, the candidate lists and the pack locations in the
//! batch that removes its record; a dropped version is noted for S3's log.
//!
//! The namespace bytes are those the manifest used for the same entries before they
//! moved here, so a store's database reads the same.

pub mod evict;
pub mod queue;
pub mod s3;

use std::sync::atomic::{AtomicU8, Ordering};

use fvfs_cas::ChunkId;
use fvfs_manifest::kv::Batch;
use fvfs_manifest::meta::{TIER_LOCAL, TIER_NAS, TIER_S3};
use fvfs_manifest::{ChunkRecord, ManifestError, Space};

pub use evict::{recent_accesses, Eviction};
pub use queue::{QueueEntry, QueueStatus, Replication};
pub use s3::{PackLoc, PackLocs, PackMember, Publishing, Recovered};

/// `q <tier> <id>`: [`QueueEntry`], a chunk waiting to be copied to a colder tier.
const QUEUE: u8 = b'q';
/// `t <tier>`: the tier was initialised once (so a vanished mount is never re-created).
const INITIALISED: u8 = b't';
/// `e <tier> <u64 BE last access> <id>`: an eviction candidate of a tier, a chunk it
/// holds that S3 holds too, ordered by last access (empty value).
const CANDIDATES: u8 = b'e';
/// `p <id>`: [`PackLoc`], where the S3 tier keeps the chunk.
const PACKS: u8 = b'p';
/// `l`: the newest version number published to S3 (u64 BE).
const PUBLISHED: u8 = b'l';
/// `d <u64 BE>`: a version a collection dropped, not yet marked dropped in S3's log.
const DROPPED: u8 = b'd';

/// Tiers that evict (S3 never does).
const EVICTING: [u8; 2] = [TIER_LOCAL, TIER_NAS];

fn bad(key: &str, reason: impl ToString) -> ManifestError {
    ManifestError::BadRecord {
        key: key.into(),
        reason: reason.to_string(),
    }
}

/// Tiering's part of every change of chunk records the manifest makes itself.
pub struct TierIndex {
    /// Tiers (bits) every new chunk is queued for.
    replicas: AtomicU8,
    queue: Space,
    candidates: Space,
    packs: Space,
    dropped: Space,
}

impl TierIndex {
    /// The index of the database `kv`, queueing new chunks for the tiers in `replicas`
    /// (`TIER_*` bits; the local tier is never queued).
    pub fn new(kv: &fvfs_manifest::kv::Kv, replicas: u8) -> Self {
        Self {
            replicas: AtomicU8::new(replicas & (TIER_NAS | TIER_S3)),
            queue: Space::new(kv.clone(), QUEUE),
            candidates: Space::new(kv.clone(), CANDIDATES),
            packs: Space::new(kv.clone(), PACKS),
            dropped: Space::new(kv.clone(), DROPPED),
        }
    }
}

impl fvfs_manifest::RecordIndex for TierIndex {
    fn recorded(&self, batch: &mut Batch, id: &ChunkId, _: &ChunkRecord) {
        let replicas = self.replicas.load(Ordering::Relaxed);
        let queued = QueueEntry::new();
        for bit in [TIER_NAS, TIER_S3]
            .into_iter()
            .filter(|b| replicas & b != 0)
        {
            queue::enqueue(&self.queue, batch, bit, id, &queued);
        }
    }

    fn removed(&self, batch: &mut Batch, id: &ChunkId, record: &ChunkRecord) {
        for bit in [TIER_NAS, TIER_S3] {
            self.queue.remove(batch, &queue::key(bit, id));
        }
        evict::remove_candidates(&self.candidates, batch, id, record);
        self.packs.remove(batch, id.as_bytes());
    }

    fn version_dropped(&self, batch: &mut Batch, number: u64) {
        if self.replicas.load(Ordering::Relaxed) & TIER_S3 != 0 {
            self.dropped
                .insert(batch, &number.to_be_bytes(), Vec::new());
        }
    }
}
