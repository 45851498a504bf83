//! Tiers of fvfs: local disk (hot), NAS (warm) and S3 (cold, the source of truth).
//!
//! The [`TierSet`] of a store (which tiers, their stores, how each is run), the
//! [`NasStore`] and the [`S3Store`] (with its packs and version log), the
//! [`Replicator`] that drains the crash-safe replication queue into a tier, the
//! [`TieredStore`] that reads through the tiers and promotes, and the watermark
//! [`evict`]ion ([`Evictor`]), and what they keep in the store's metadata database in
//! namespaces of their own ([`records`]: the replication queue, eviction candidates,
//! S3 pack locations and publish log). The per-chunk tier bitmask they drive is part
//! of the data model and lives with the chunk record in `fvfs_manifest::meta`
//! (`TIER_LOCAL`, `TIER_NAS`, `TIER_S3`), so that the manifest can record where every
//! chunk is without depending on this crate.

pub mod evict;
mod nas;
pub mod records;
mod replicate;
pub mod s3;
pub mod seal;
mod tiered;
pub mod tierset;

pub use evict::Evictor;
pub use nas::{prepare as prepare_nas, NasStore};
pub use records::{
    Eviction, PackLoc, PackLocs, PackMember, Publishing, QueueStatus, Recovered, Replication,
    TierIndex,
};
pub use replicate::{FlushPolicy, Replicator};
pub use s3::{Bucket, S3Settings, S3Store};
pub use tiered::TieredStore;
pub use tierset::{Running, Tier, TierId, TierSet};
