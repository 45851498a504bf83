//! The tiers of one store, built once from its configuration: which exist, each one's
//! own store, and how it is run (watermarks, flush policy). Reads through the tiers,
//! replication, eviction, fsck and gc, and status take them from here, warmest first,
//! so a tier's name and bit are written in one place ([`TierId`]).
//!
//! # Invariants
//! - The local tier is always there and first; the NAS tier comes before the S3 tier.
//! - With a colder tier, the store the repository uses reads through the tiers
//!   ([`TieredStore`], in the same order); without one, it is the local store itself.

use std::sync::Arc;

use fvfs_cas::ChunkStore;
use fvfs_manifest::meta::{TIER_LOCAL, TIER_NAS, TIER_S3};
use fvfs_manifest::Repo;

use crate::evict::EvictTier;
use crate::s3::log::LogPublisher;
use crate::{FlushPolicy, NasStore, Replicator, S3Store, TieredStore};

/// A tier.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TierId {
    Local,
    Nas,
    S3,
}

impl TierId {
    /// Every tier, warmest first.
    pub const ALL: [TierId; 3] = [TierId::Local, TierId::Nas, TierId::S3];

    /// Its name in config, status, metrics and logs.
    pub fn name(self) -> &'static str {
        match self {
            TierId::Local => "local",
            TierId::Nas => "nas",
            TierId::S3 => "s3",
        }
    }

    /// Its bit in a chunk record's tier mask.
    pub fn bit(self) -> u8 {
        match self {
            TierId::Local => TIER_LOCAL,
            TierId::Nas => TIER_NAS,
            TierId::S3 => TIER_S3,
        }
    }
}

/// How a tier is run.
#[derive(Clone, Copy, Debug)]
pub struct Running {
    /// Eviction frees the tier down to the second (bytes) once it holds more than the
    /// first.
    pub watermarks: Option<(u64, u64)>,
    /// When replication to it syncs and confirms what it copied (a colder tier).
    pub flush: FlushPolicy,
}

impl Running {
    /// Never evicted; replicated to with a sync after every batch.
    pub const PLAIN: Running = Running {
        watermarks: None,
        flush: FlushPolicy::EVERY_BATCH,
    };
}

/// A tier with its own store.
#[derive(Clone)]
pub struct Tier {
    pub id: TierId,
    pub store: Arc<dyn ChunkStore>,
    pub run: Running,
}

/// The tiers of a store.
pub struct TierSet {
    /// Warmest first, the local tier always first.
    tiers: Vec<Tier>,
    nas: Option<Arc<NasStore>>,
    s3: Option<Arc<S3Store>>,
    reads: Option<Arc<TieredStore>>,
}

impl TierSet {
    pub fn new(
        local: (Arc<dyn ChunkStore>, Running),
        nas: Option<(Arc<NasStore>, Running)>,
        s3: Option<(Arc<S3Store>, Running)>,
    ) -> Self {
        let tier = |id, store, run| Tier { id, store, run };
        let mut tiers = vec![tier(TierId::Local, local.0, local.1)];
        if let Some((store, run)) = &nas {
            tiers.push(tier(TierId::Nas, store.clone(), *run));
        }
        if let Some((store, run)) = &s3 {
            tiers.push(tier(TierId::S3, store.clone(), *run));
        }
        let colder: Vec<(&'static str, Arc<dyn ChunkStore>)> = tiers[1..]
            .iter()
            .map(|t| (t.id.name(), t.store.clone()))
            .collect();
        let reads = (!colder.is_empty())
            .then(|| Arc::new(TieredStore::new(tiers[0].store.clone(), colder)));
        Self {
            tiers,
            nas: nas.map(|n| n.0),
            s3: s3.map(|s| s.0),
            reads,
        }
    }

    /// Every tier, warmest first.
    pub fn all(&self) -> &[Tier] {
        &self.tiers
    }

    /// The tiers every chunk is copied to, warmest first.
    pub fn colder(&self) -> &[Tier] {
        &self.tiers[1..]
    }

    /// The bits of the colder tiers.
    pub fn replicas(&self) -> u8 {
        self.colder().iter().fold(0, |bits, t| bits | t.id.bit())
    }

    /// The NAS tier's own store (to prepare it, to tell an absent share), if any.
    pub fn nas(&self) -> Option<&Arc<NasStore>> {
        self.nas.as_ref()
    }

    /// The S3 tier's own store (its packs, log and request counters), if any.
    pub fn s3(&self) -> Option<&Arc<S3Store>> {
        self.s3.as_ref()
    }

    /// The read-through store, when there are colder tiers (its counters, promotions
    /// to record).
    pub fn reads(&self) -> Option<&Arc<TieredStore>> {
        self.reads.as_ref()
    }

    /// What the repository reads and writes through.
    pub fn store(&self) -> Arc<dyn ChunkStore> {
        match &self.reads {
            Some(reads) => reads.clone(),
            None => self.tiers[0].store.clone(),
        }
    }

    /// Starts one replication worker per colder tier (the S3 one publishes the version
    /// log after each upload).
    pub fn spawn_replicators(&self, repo: &Arc<Repo>) -> Vec<Arc<Replicator>> {
        self.colder()
            .iter()
            .map(|t| {
                let log = match (t.id, &self.s3) {
                    (TierId::S3, Some(s3)) => {
                        Some(Arc::new(LogPublisher::new(s3.bucket().clone())))
                    }
                    _ => None,
                };
                Replicator::spawn(repo.clone(), t, log)
            })
            .collect()
    }

    /// The tiers eviction keeps under their watermarks.
    pub fn evicted(&self) -> Vec<EvictTier> {
        self.tiers
            .iter()
            .filter_map(|t| {
                Some(EvictTier {
                    id: t.id,
                    store: t.store.clone(),
                    marks: t.run.watermarks?,
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_bits_are_distinct_and_in_order() {
        let bits: Vec<u8> = TierId::ALL.iter().map(|t| t.bit()).collect();
        assert_eq!(bits, [TIER_LOCAL, TIER_NAS, TIER_S3]);
        let names: Vec<&str> = TierId::ALL.iter().map(|t| t.name()).collect();
        assert_eq!(names, ["local", "nas", "s3"]);
    }

    #[test]
    fn a_local_tier_alone_reads_directly_and_replicates_nowhere() {
        let local: Arc<dyn ChunkStore> = Arc::new(fvfs_cas::MemoryStore::default());
        let set = TierSet::new((local.clone(), Running::PLAIN), None, None);
        assert_eq!(set.all().len(), 1);
        assert!(set.colder().is_empty());
        assert_eq!(set.replicas(), 0);
        assert!(set.reads().is_none());
        assert!(Arc::ptr_eq(&set.store(), &local));
        assert!(set.evicted().is_empty());
    }
}
