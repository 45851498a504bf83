//! Tiers of fvfs: local disk (hot), NAS (warm) and S3 (cold, the source of truth).
//!
//! Here so far: the [`NasStore`], the [`Replicator`] that drains the crash-safe
//! replication queue into a tier, and the [`TieredStore`] that reads through the tiers
//! and promotes. To come (the tiering issue): the S3 chunk store with its packs and
//! watermark eviction. The per-chunk tier bitmask they drive is part of the data model and lives
//! with the chunk record in `fvfs_manifest::meta` (`TIER_LOCAL`, `TIER_NAS`,
//! `TIER_S3`), so that the manifest can record where every chunk is without depending
//! on this crate.

mod nas;
mod replicate;
mod tiered;

pub use nas::{prepare as prepare_nas, NasStore};
pub use replicate::Replicator;
pub use tiered::TieredStore;
