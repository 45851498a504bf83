//! Tiers under injected faults (`fvfs_cas::faults::FaultyStore`): reads fall back to the
//! next tier when a copy is corrupt, unreadable or slow, replication retries a tier that
//! fails and reports why meanwhile, and nothing acknowledged is lost.

use std::sync::Arc;
use std::time::Duration;

use fvfs_cas::faults::{Fault, FaultyStore, Op};
use fvfs_cas::{ChunkStore, ChunkStoreExt, MemoryStore};
use fvfs_manifest::kv::Kv;
use fvfs_manifest::meta::TIER_NAS;
use fvfs_manifest::{ChunkKind, Pending, Repo};
use fvfs_tiering::{Replicator, Running, Tier, TierId, TieredStore};

#[tokio::test]
async fn reads_fall_back_past_corrupt_failing_and_slow_copies() {
    let local = Arc::new(FaultyStore::new(MemoryStore::new()));
    let nas = Arc::new(FaultyStore::new(MemoryStore::new()));
    let s3 = Arc::new(MemoryStore::new());
    let t = TieredStore::new(
        local.clone(),
        vec![
            ("nas", nas.clone() as Arc<dyn ChunkStore>),
            ("s3", s3.clone()),
        ],
    );
    let data = b"family photo".repeat(1000);
    for store in [&*local as &dyn ChunkStore, &*nas, &*s3] {
        store.put_data(&data).await.unwrap();
    }
    let id = fvfs_cas::ChunkId::of(&data);

    // A corrupt local copy: served from the NAS, the local copy replaced and counted.
    local.schedule(Op::Get, Fault::Corrupt, 1);
    assert_eq!(&t.get_data(&id).await.unwrap()[..], &data[..]);
    assert_eq!(t.repaired(), 1);
    // A local disk that fails reads, and a NAS that is corrupt too: S3 answers.
    local.schedule(Op::Get, Fault::Fail, 1);
    nas.schedule(Op::Get, Fault::Corrupt, 1);
    assert_eq!(&t.get_data(&id).await.unwrap()[..], &data[..]);
    // A local disk that cannot take the promoted copy: the read still succeeds.
    local.schedule(Op::Get, Fault::Fail, 1);
    local.schedule(Op::Put, Fault::Fail, 1);
    assert_eq!(&t.get_data(&id).await.unwrap()[..], &data[..]);
    // A slow tier is waited for.
    local.schedule(Op::Get, Fault::Fail, 1);
    nas.schedule(Op::Get, Fault::Delay(Duration::from_millis(200)), 1);
    assert_eq!(&t.get_data(&id).await.unwrap()[..], &data[..]);
    // Every tier failing: the local error is reported.
    local.schedule(Op::Get, Fault::Fail, 1);
    nas.schedule(Op::Get, Fault::Fail, 1);
    s3.delete(&id).await.unwrap();
    let err = t.get(&id).await.unwrap_err().to_string();
    assert!(err.contains("injected Get failure"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replication_retries_a_failing_tier_reports_it_and_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let kv = Kv::open(&dir.path().join("meta")).unwrap();
    let index = Arc::new(fvfs_tiering::TierIndex::new(&kv, TIER_NAS));
    let repo = Arc::new(Repo::new(Arc::new(MemoryStore::new()), kv, index));
    let pending = Pending::default();
    let mut ids = Vec::new();
    for i in 0..20u32 {
        let data = format!("chunk {i}").repeat(100);
        ids.push(
            repo.put_chunk(&pending, data.as_bytes(), ChunkKind::Data)
                .await
                .unwrap(),
        );
    }
    repo.checkpoint(&pending).await.unwrap();

    let nas = Arc::new(FaultyStore::new(MemoryStore::new()));
    nas.schedule(Op::Put, Fault::Fail, 3);
    nas.schedule(Op::Sync, Fault::Fail, 1);
    let tier = Tier {
        id: TierId::Nas,
        store: nas.clone(),
        run: Running::PLAIN,
    };
    let r = Replicator::spawn(repo.clone(), &tier, None);
    // The first attempts fail: a flush says so, with the reason; the queue keeps all.
    let err = r.drain(&repo).await.unwrap_err();
    assert!(err.contains("injected"), "{err}");
    let status = r.status(&repo).unwrap();
    assert_eq!(status.pending, 20);
    assert!(status.last_error.unwrap().contains("injected"));
    // Flushing again retries at once until the faults are spent: everything lands.
    let mut tries = 0;
    while let Err(e) = r.drain(&repo).await {
        tries += 1;
        assert!(tries < 10, "still failing: {e}");
    }
    assert_eq!(r.status(&repo).unwrap().pending, 0);
    for id in &ids {
        assert!(nas.has(&[*id]).await.unwrap()[0]);
        assert!(repo.chunk_record(id).unwrap().unwrap().tiers & TIER_NAS != 0);
    }
}
