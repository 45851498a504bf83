//! The version log and snapshot names in S3, so that S3 alone can rebuild everything.
//!
//! ```text
//! log/<first>-<last>   CBOR list of the versions first..=last (16 hex digits each)
//! snapshots            CBOR list of (name, version number), sorted by name
//! dropped/<blake3>     CBOR list of version numbers garbage collection dropped
//! ```
//!
//! # Invariant: a published version is whole in S3
//! A version is published only when every chunk queued for S3 before it was made has
//! reached S3 (no S3 queue entry is as old as the version; chunks are queued before
//! the version naming them is committed) and its root node has its S3 bit. Segments
//! are written in order and the published mark (in the metadata database) only grows
//! after the segment is stored; a crash between the two re-publishes an overlapping
//! segment, and readers keep one copy of each version.
//!
//! # Invariant: a dropped version is dropped in S3 before its chunks go
//! Garbage collection records the versions it dropped ([`record_dropped`]) before any
//! pack is deleted or rewritten, so recovery never brings back a version whose chunks
//! are gone.

use std::collections::BTreeMap;
use std::sync::Mutex;

use bytes::Bytes;
use futures::StreamExt;
use fvfs_cas::StoreError;
use fvfs_manifest::meta::TIER_S3;
use fvfs_manifest::{Repo, Version};

use crate::records::{Publishing, Replication};

use super::Bucket;

const LOG_DIR: &str = "log/";
const SNAPSHOTS: &str = "snapshots";
const DROPPED_DIR: &str = "dropped/";
/// Versions per log segment at most (a segment stays a few hundred KiB).
const SEGMENT_MAX: usize = 4096;

fn meta_err(e: fvfs_manifest::ManifestError) -> StoreError {
    StoreError::Unavailable(format!("metadata database: {e}"))
}

fn cbor<T: serde::Serialize>(v: &T) -> Bytes {
    Bytes::from(serde_cbor::ser::to_vec_packed(v).expect("versions always serialize"))
}

/// Publishes new versions and snapshot names to S3.
pub struct LogPublisher {
    bucket: Bucket,
    /// Snapshot names as last written to S3 (`None`: not written by this process yet).
    snapshots: Mutex<Option<Vec<(String, u64)>>>,
}

impl LogPublisher {
    pub fn new(bucket: Bucket) -> Self {
        Self {
            bucket,
            snapshots: Mutex::new(None),
        }
    }

    /// Writes what became whole in S3 since the last call. Cheap when nothing did.
    pub async fn publish(&self, repo: &Repo) -> Result<(), StoreError> {
        let published = repo.published().map_err(meta_err)?;
        let oldest_queued = repo.replication_oldest(TIER_S3).map_err(meta_err)?;
        let mut ready: Vec<Version> = Vec::new();
        let mut newer: Vec<Version> = repo
            .log()
            .take_while(|v| v.as_ref().map_or(true, |v| v.number > published))
            .collect::<Result<_, _>>()
            .map_err(meta_err)?;
        newer.reverse();
        for v in newer {
            let queued_before = oldest_queued.is_some_and(|since| since <= v.time);
            let root_in_s3 = repo
                .chunk_record(&v.root)
                .map_err(meta_err)?
                .is_some_and(|r| r.tiers & TIER_S3 != 0);
            if queued_before || !root_in_s3 {
                break;
            }
            ready.push(v);
        }
        for segment in ready.chunks(SEGMENT_MAX) {
            let (first, last) = (segment[0].number, segment[segment.len() - 1].number);
            self.bucket
                .put_doc(
                    &format!("{LOG_DIR}{first:016x}-{last:016x}"),
                    cbor(&segment),
                )
                .await?;
            repo.set_published(last).map_err(meta_err)?;
        }
        let published = repo.published().map_err(meta_err)?;
        let names: Vec<(String, u64)> = repo
            .snapshots()
            .map_err(meta_err)?
            .into_iter()
            .filter(|(_, n)| *n <= published)
            .collect();
        let unchanged = self
            .snapshots
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .is_some_and(|s| *s == names);
        if !unchanged {
            self.bucket.put_doc(SNAPSHOTS, cbor(&names)).await?;
            *self.snapshots.lock().unwrap_or_else(|p| p.into_inner()) = Some(names);
        }
        Ok(())
    }
}

/// Records in S3 that versions `numbers` were dropped by garbage collection.
pub async fn record_dropped(bucket: &Bucket, numbers: &[u64]) -> Result<(), StoreError> {
    if numbers.is_empty() {
        return Ok(());
    }
    let body = cbor(&numbers);
    // Named by what it says (a retry writes the same object), keyed in an encrypted
    // bucket so the name gives nothing away.
    let name = match bucket.sealer() {
        Some(s) => s.name_of(&body),
        None => blake3::hash(&body).to_hex().to_string(),
    };
    bucket.put_doc(&format!("{DROPPED_DIR}{name}"), body).await
}

/// The version log and snapshot names stored in S3, for recovery: versions by
/// number (one copy each, none that garbage collection dropped), and the snapshot
/// names that name a known version.
pub async fn read(bucket: &Bucket) -> Result<(Vec<Version>, Vec<(String, u64)>), StoreError> {
    let mut versions = BTreeMap::new();
    for (key, bytes) in objects(bucket, LOG_DIR).await? {
        let segment: Vec<Version> = serde_cbor::from_slice(&bytes)
            .map_err(|e| StoreError::Unavailable(format!("version log segment {key}: {e}")))?;
        for v in segment {
            versions.insert(v.number, v);
        }
    }
    for (key, bytes) in objects(bucket, DROPPED_DIR).await? {
        let dropped: Vec<u64> = serde_cbor::from_slice(&bytes)
            .map_err(|e| StoreError::Unavailable(format!("dropped versions {key}: {e}")))?;
        for n in dropped {
            versions.remove(&n);
        }
    }
    let snapshots: Vec<(String, u64)> = match bucket.get_doc(SNAPSHOTS).await? {
        None => Vec::new(),
        Some(bytes) => serde_cbor::from_slice(&bytes)
            .map_err(|e| StoreError::Unavailable(format!("snapshot names: {e}")))?,
    };
    let snapshots = snapshots
        .into_iter()
        .filter(|(_, n)| versions.contains_key(n))
        .collect();
    Ok((versions.into_values().collect(), snapshots))
}

/// Every object under `dir` with its bytes, several GETs in flight (a log of many
/// segments is read in a few round trips, not one per segment).
async fn objects(bucket: &Bucket, dir: &str) -> Result<Vec<(String, Bytes)>, StoreError> {
    let listed = bucket.list(dir).await?;
    let got: Vec<_> = futures::stream::iter(listed)
        .map(|obj| async move {
            let bytes = bucket.get_doc(&obj.key).await?;
            Ok::<_, StoreError>(bytes.map(|b| (obj.key, b)))
        })
        .buffer_unordered(16)
        .collect()
        .await;
    let mut out = Vec::with_capacity(got.len());
    for g in got {
        out.extend(g?);
    }
    Ok(out)
}
