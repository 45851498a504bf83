//! Tiering's records in the store's metadata database, through the manifest's
//! namespaced port: the replication queue, eviction candidates, S3 locations and the
//! publish log follow the chunk records the manifest makes and removes, in the same
//! batches, under the same keys as before they moved out of the manifest.

use std::sync::Arc;

use fvfs_cas::{ChunkId, MemoryStore};
use fvfs_manifest::kv::Kv;
use fvfs_manifest::meta::{TIER_LOCAL, TIER_NAS, TIER_S3};
use fvfs_manifest::{ChunkKind, Pending, Repo, Version, VersionKind};
use fvfs_tiering::{Eviction, PackLoc, Publishing, Recovered, Replication, TierIndex};

struct Fixture {
    _dir: tempfile::TempDir,
    kv: Kv,
    repo: Repo,
}

/// A store whose new chunks are queued for the tiers in `replicas`.
fn fixture(replicas: u8) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let kv = Kv::open(&dir.path().join("meta")).unwrap();
    let index = Arc::new(TierIndex::new(&kv, replicas));
    let repo = Repo::new(Arc::new(MemoryStore::new()), kv.clone(), index);
    Fixture {
        _dir: dir,
        kv,
        repo,
    }
}

/// Stores and records `data` as a chunk.
async fn record(f: &Fixture, data: &[u8]) -> ChunkId {
    let p = Pending::default();
    let id = f.repo.put_chunk(&p, data, ChunkKind::Data).await.unwrap();
    f.repo.checkpoint(&p).await.unwrap();
    id
}

/// Drops every version but HEAD and condemns `ids` (no grace); returns the versions
/// dropped.
async fn collect(f: &Fixture, ids: &[ChunkId]) -> Vec<u64> {
    let lock = f.repo.lock().await;
    let keep_none = |_: &[Version]| Default::default();
    let session = f
        .repo
        .gc_begin(&lock, keep_none, 0, 0, false)
        .await
        .unwrap();
    drop(lock);
    let condemned = f.repo.gc_condemn(&session, ids).await.unwrap();
    assert_eq!(condemned.chunks.len(), ids.len());
    f.repo.gc_buried(ids).unwrap();
    f.repo.dropped_unpublished().unwrap()
}

#[tokio::test]
async fn a_condemned_chunk_leaves_the_queue_the_candidates_and_the_pack_locations() {
    let f = fixture(TIER_NAS | TIER_S3);
    let id = record(&f, b"replicated, then collected").await;
    assert_eq!(f.repo.replication_status(TIER_NAS).unwrap().pending, 1);
    assert_eq!(f.repo.replication_status(TIER_S3).unwrap().pending, 1);
    assert!(!f.repo.replication_drained(TIER_S3).unwrap());
    // S3 confirms it: it leaves S3's queue and becomes an eviction candidate locally.
    let loc = PackLoc::frame([7; 32], 0, 30);
    f.repo.pack_locs().record(&[(id, loc)]).unwrap();
    f.repo
        .replication_done(TIER_S3, &[id], &f.repo.copy_mark())
        .await
        .unwrap();
    assert_eq!(f.repo.replication_status(TIER_S3).unwrap().pending, 0);
    assert!(f.repo.replication_drained(TIER_S3).unwrap());
    assert!(
        !f.repo.replication_drained(TIER_NAS).unwrap(),
        "the other tier's queue is its own"
    );
    assert_eq!(f.repo.eviction_candidates(TIER_LOCAL, 10).unwrap().len(), 1);
    assert_eq!(f.repo.pack_locs().get(&id).unwrap(), Some(loc));
    // Two versions, so that a collection keeping HEAD only drops one.
    for n in 0..2 {
        let lock = f.repo.lock().await;
        let p = Pending::default();
        let root = f.repo.empty_root(&p).await.unwrap();
        let message = format!("v{n}");
        lock.commit(&p, root, 0, VersionKind::Write, &message)
            .await
            .unwrap();
    }

    let due = |f: &Fixture| f.repo.replication_still_due(TIER_NAS, &[id]).unwrap();
    assert_eq!(due(&f), [id]);
    let dropped = collect(&f, &[id]).await;
    assert!(due(&f).is_empty(), "a condemned chunk is never copied");
    assert!(f
        .repo
        .eviction_candidates(TIER_LOCAL, 10)
        .unwrap()
        .is_empty());
    assert_eq!(f.repo.pack_locs().get(&id).unwrap(), None);
    assert_eq!(
        dropped,
        [1],
        "the dropped version waits to be marked so in S3's log"
    );
    f.repo.dropped_published(&dropped).unwrap();
    assert!(f.repo.dropped_unpublished().unwrap().is_empty());
}

#[tokio::test]
async fn tiering_keeps_its_records_under_the_keys_the_manifest_used() {
    let f = fixture(TIER_NAS);
    let id = record(&f, b"queued").await;
    let mut old_queue_key = vec![b'q', TIER_NAS];
    old_queue_key.extend_from_slice(id.as_bytes());
    assert!(f.kv.contains(&old_queue_key).unwrap());
    f.repo.set_published(9).unwrap();
    assert_eq!(f.kv.get(b"l").unwrap(), Some(9u64.to_be_bytes().to_vec()));
    let loc = PackLoc::frame([1; 32], 5, 6);
    f.repo.pack_locs().record(&[(id, loc)]).unwrap();
    let mut old_pack_key = vec![b'p'];
    old_pack_key.extend_from_slice(id.as_bytes());
    assert_eq!(
        f.kv.get(&old_pack_key).unwrap(),
        Some(loc.encode().to_vec())
    );
}

#[test]
#[should_panic(expected = "is the manifest's own")]
fn a_space_never_reaches_the_manifests_own_records() {
    let f = fixture(0);
    let _ = f.repo.space(b'c');
}

/// A replication batch that copied a chunk before a collection deleted its copies on
/// every tier must not set the tier's bit on the record a writer made by storing the
/// chunk again: the copy it confirms is gone. The chunk stays queued, copied afresh.
#[tokio::test]
async fn a_copy_a_collection_deleted_is_never_confirmed() {
    let f = fixture(TIER_NAS);
    let data = b"copied, collected, stored again".as_slice();
    let p = Pending::default();
    let id = f.repo.put_chunk(&p, data, ChunkKind::Data).await.unwrap();
    f.repo.checkpoint(&p).await.unwrap();
    let nas_bit = |f: &Fixture| f.repo.chunk_record(&id).unwrap().unwrap().tiers & TIER_NAS;
    let queued = |f: &Fixture| f.repo.replication_status(TIER_NAS).unwrap().pending;

    // The replicator's batch begins (and copies the chunk to the NAS).
    let copying = f.repo.copy_mark();
    {
        let lock = f.repo.lock().await;
        let keep_all = |v: &[Version]| v.iter().map(|v| v.number).collect();
        let session = f.repo.gc_begin(&lock, keep_all, 0, 0, false).await.unwrap();
        drop(lock);
        let condemned = f.repo.gc_condemn(&session, &[id]).await.unwrap();
        assert_eq!(condemned.chunks.len(), 1);
        // ... its copies are deleted, the NAS one among them ...
        f.repo.gc_buried(&[id]).unwrap();
    }
    // A writer stores it again: a new record, queued for the NAS again.
    let p = Pending::default();
    f.repo.put_chunk(&p, data, ChunkKind::Data).await.unwrap();
    f.repo.checkpoint(&p).await.unwrap();
    assert_eq!(queued(&f), 1);

    f.repo
        .replication_done(TIER_NAS, &[id], &copying)
        .await
        .unwrap();
    assert_eq!(nas_bit(&f), 0, "a deleted copy was confirmed");
    assert_eq!(queued(&f), 1, "the chunk must be copied again");
    drop(copying);

    // A batch that began after the collection confirms its copy.
    let copying = f.repo.copy_mark();
    f.repo
        .replication_done(TIER_NAS, &[id], &copying)
        .await
        .unwrap();
    assert_ne!(nas_bit(&f), 0);
    assert_eq!(queued(&f), 0);
}

#[tokio::test]
async fn reads_of_many_chunks_back_from_s3_are_noted_in_parts_and_all_of_them() {
    let f = fixture(TIER_S3);
    // More chunks than one batch of the database takes (about 4,096 operations).
    let found: Vec<Recovered> = (0..5_000u32)
        .map(|i| Recovered {
            id: ChunkId::of(&i.to_le_bytes()),
            loc: PackLoc::frame([7; 32], u64::from(i) * 100, 100),
            raw_len: 4,
        })
        .collect();
    f.repo.restore_locations(&found).unwrap();
    f.repo.restore_chunks(&found).await.unwrap();
    assert_eq!(f.repo.totals().unwrap().evicted_chunks, 5_000);
    let ids: Vec<ChunkId> = found.iter().map(|r| r.id).collect();
    let reads: Vec<(ChunkId, u32)> = ids.iter().map(|id| (*id, 1)).collect();
    f.repo.note_reads(&reads, &ids).await.unwrap();
    for id in &ids {
        let r = f.repo.chunk_record(id).unwrap().unwrap();
        assert_eq!(r.tiers, TIER_LOCAL | TIER_S3, "{id} is local again");
        assert!(r.accesses >= 1.0 && r.last_access > 0);
    }
    assert_eq!(f.repo.totals().unwrap().evicted_chunks, 0);
    let candidates = f.repo.eviction_candidates(TIER_LOCAL, 10_000).unwrap();
    assert_eq!(candidates.len(), 5_000, "each chunk a candidate once");
    assert!(f.repo.eviction_candidates(TIER_NAS, 10).unwrap().is_empty());
}
