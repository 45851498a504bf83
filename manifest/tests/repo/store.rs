//! The store beneath the tree: what gc spares, collections and migrations waiting for each other, a missing HEAD, old stat caches, client frames checked.

use super::*;

/// A chunk one writer stored and has not recorded yet is never condemned, even when
/// another writer recorded the same chunk and nothing reaches it; a protected one
/// neither; once recorded and unprotected, it is.
#[tokio::test]
async fn gc_never_condemns_what_a_writer_still_relies_on() {
    let f = fixture();
    let data = b"shared by two writers".as_slice();
    let (a, b) = (Pending::default(), Pending::default());
    let id = f.repo.put_chunk(&a, data, ChunkKind::Data).await.unwrap();
    // B does not know A's pending copy: it stores the same chunk and records it.
    f.repo.put_chunk(&b, data, ChunkKind::Data).await.unwrap();
    f.repo.checkpoint(&b).await.unwrap();
    assert!(f.repo.chunk_record(&id).unwrap().is_some());

    let keep_all = |v: &[Version]| v.iter().map(|v| v.number).collect();
    {
        let lock = f.repo.lock().await;
        let session = f.repo.gc_begin(&lock, keep_all, 0, 0, false).await.unwrap();
        drop(lock);
        let condemned = f.repo.gc_condemn(&session, &[id]).await.unwrap();
        assert!(condemned.chunks.is_empty(), "A still relies on it");
    }
    f.repo.checkpoint(&a).await.unwrap();
    {
        let lock = f.repo.lock().await;
        let session = f.repo.gc_begin(&lock, keep_all, 0, 0, false).await.unwrap();
        drop(lock);
        // A writer asking about it during the collection protects it.
        assert!(f.repo.knows(&Pending::default(), &id).unwrap());
        assert!(f
            .repo
            .gc_condemn(&session, &[id])
            .await
            .unwrap()
            .chunks
            .is_empty());
    }
    let lock = f.repo.lock().await;
    let session = f.repo.gc_begin(&lock, keep_all, 0, 0, false).await.unwrap();
    drop(lock);
    let condemned = f.repo.gc_condemn(&session, &[id]).await.unwrap();
    assert_eq!(condemned.chunks.len(), 1);
    assert!(f.repo.chunk_record(&id).unwrap().is_none());
    f.repo.gc_buried(&[id]).unwrap();
    assert!(!f.repo.gc_interrupted().unwrap());
}

/// A chunk promised to a client (answered "stored", for a commit still to come) is
/// never condemned while its promise holds, whatever the grace period: not by a
/// collection that starts after the answer, nor by the next one; a commit that arrived
/// after the promise and named it keeps it, and then it is garbage like any other. A
/// promise taken back, or older than the in-flight window, protects nothing.
#[tokio::test]
async fn gc_spares_what_a_client_was_promised_until_its_commit() {
    let f = fixture();
    let pending = Pending::default();
    let id = f
        .repo
        .put_chunk(&pending, b"old garbage", ChunkKind::Data)
        .await
        .unwrap();
    f.repo.checkpoint(&pending).await.unwrap();
    let repo = &f.repo;
    let condemn = |in_flight| async move {
        let keep_all = |v: &[Version]| v.iter().map(|v| v.number).collect();
        let lock = repo.lock().await;
        let session = repo
            .gc_begin(&lock, keep_all, 0, in_flight, false)
            .await
            .unwrap();
        drop(lock);
        repo.gc_condemn(&session, &[id]).await.unwrap().chunks.len()
    };
    // Answered while no collection runs: still spared by the two that follow.
    let promise = f.repo.promise(&[id]);
    assert!(f.repo.knows(&Pending::default(), &id).unwrap());
    assert_eq!(condemn(3600).await, 0);
    assert_eq!(condemn(3600).await, 0);
    // A commit that arrived before the promise does not keep it; one after does.
    f.repo.promises_kept(promise - 1, [id].iter());
    assert_eq!(condemn(3600).await, 0);
    let mark = f.repo.promise_mark();
    f.repo.promises_kept(mark, [id].iter());
    // Another promise, taken back (the id was answered "not there"): nothing kept.
    let other = f.repo.promise(&[id]);
    f.repo.unpromise(other - 1, [id].iter());
    assert_eq!(condemn(3600).await, 0, "only its own number takes it back");
    f.repo.unpromise(other, [id].iter());
    assert_eq!(condemn(3600).await, 1);
    f.repo.gc_buried(&[id]).unwrap();
    // And a window of 0 breaks every promise.
    let id = f
        .repo
        .put_chunk(&pending, b"more garbage", ChunkKind::Data)
        .await
        .unwrap();
    f.repo.checkpoint(&pending).await.unwrap();
    f.repo.promise(&[id]);
    let lock = repo.lock().await;
    let keep_all = |v: &[Version]| v.iter().map(|v| v.number).collect();
    let session = repo.gc_begin(&lock, keep_all, 0, 0, false).await.unwrap();
    drop(lock);
    assert_eq!(
        repo.gc_condemn(&session, &[id]).await.unwrap().chunks.len(),
        1
    );
}

/// While a migration holds collections off, none starts (a clear refusal); a hold
/// asked for while one runs waits for its end.
#[tokio::test]
async fn collections_wait_for_a_migration_and_a_migration_for_a_collection() {
    let f = fixture();
    let repo = &f.repo;
    let keep_all = |v: &[Version]| v.iter().map(|v| v.number).collect::<HashSet<u64>>();
    let held = repo.hold_collections().await;
    {
        let lock = repo.lock().await;
        match repo.gc_begin(&lock, keep_all, 0, 0, false).await {
            Err(ManifestError::Busy(why)) => assert!(why.contains("migration"), "{why}"),
            other => panic!(
                "a collection started during a migration: {:?}",
                other.is_ok()
            ),
        }
    }
    drop(held);
    let lock = repo.lock().await;
    let session = repo.gc_begin(&lock, keep_all, 0, 0, false).await.unwrap();
    drop(lock);
    let mut waiting = Box::pin(repo.hold_collections());
    assert!(
        futures::poll!(waiting.as_mut()).is_pending(),
        "a migration started during a collection"
    );
    drop(session);
    let _held = waiting.await;
}

/// HEAD and its version are read apart (see `Repo::head`), and a read that finds the
/// version gone reads HEAD again; a HEAD that stays on a version the store lacks is
/// damage, reported rather than read again forever.
#[tokio::test]
async fn a_head_naming_a_missing_version_is_reported() {
    let f = fixture();
    let (kv, repo) = (&f.kv, &f.repo);
    let v = write(repo, &[("/a.txt", "a")]).await;
    assert_eq!(repo.head().unwrap().map(|h| h.number), Some(v.number));
    // HEAD's record is `h` and holds a big-endian version number.
    let mut damage = fvfs_manifest::kv::Batch::default();
    damage.insert(b"h".to_vec(), 99u64.to_be_bytes().to_vec());
    kv.apply(damage).unwrap();
    match repo.head() {
        Err(ManifestError::UnknownVersion(n)) => assert_eq!(n, "99"),
        other => panic!("expected an unknown version, got {other:?}"),
    }
}

#[tokio::test]
async fn the_stat_cache_of_old_leaves_the_database_and_nothing_else_does() {
    let f = fixture();
    let (kv, repo) = (&f.kv, &f.repo);
    let v = write(repo, &[("/a", "hello")]).await;
    // Records as migrate wrote them before its stat caches had files of their own:
    // more than one batch of them.
    let mut batch = fvfs_manifest::kv::Batch::default();
    for i in 0..1300 {
        batch.insert(format!("f/src/file{i}").into_bytes(), b"entry".to_vec());
    }
    kv.apply(batch).unwrap();
    let everything = kv.scan_prefix(b"", false).count();
    let totals = repo.totals().unwrap();

    assert_eq!(repo.drop_legacy_stats().unwrap(), 1300);
    assert_eq!(kv.scan_prefix(b"f", false).count(), 0);
    assert_eq!(kv.scan_prefix(b"", false).count(), everything - 1300);
    assert_eq!(repo.head().unwrap(), Some(v));
    assert_eq!(repo.totals().unwrap(), totals);
    assert!(totals.chunks > 0);
    assert_eq!(repo.drop_legacy_stats().unwrap(), 0);
}

/// Frames from a client: stored in one call once each checks out, counted once, and a
/// batch holding one bad frame (wrong content, or a "node" that is not one) stores
/// nothing.
#[tokio::test]
async fn client_frames_are_checked_before_any_is_stored() {
    let f = fixture();
    let pending = Pending::default();
    let framed = |data: &[u8]| {
        (
            fvfs_cas::ChunkId::of(data),
            bytes::Bytes::from(fvfs_cas::frame::encode(data)),
        )
    };
    let (a, fa) = framed(b"first chunk");
    let (b, fb) = framed(b"second chunk");
    let (c, _) = framed(b"third chunk");
    let (d, fd) = framed(b"not a node");
    let refused = f
        .repo
        .put_frames(
            &pending,
            vec![
                (ChunkKind::Data, a, fa.clone()),
                (ChunkKind::Data, c, fb.clone()),
            ],
        )
        .await;
    assert!(matches!(refused, Err(ManifestError::BadFrame { id, .. }) if id == c));
    let not_node = f
        .repo
        .put_frames(&pending, vec![(ChunkKind::Node, d, fd)])
        .await;
    assert!(matches!(not_node, Err(ManifestError::BadFrame { id, .. }) if id == d));
    assert!(
        !f.repo.knows(&pending, &a).unwrap(),
        "nothing of a refused batch is kept"
    );
    let stored = f.repo.put_frames(
        &pending,
        vec![(ChunkKind::Data, a, fa.clone()), (ChunkKind::Data, b, fb)],
    );
    assert_eq!(stored.await.unwrap(), 2);
    let again = f.repo.put_frames(&pending, vec![(ChunkKind::Data, a, fa)]);
    assert_eq!(again.await.unwrap(), 0, "known: not stored again");
    f.repo.checkpoint(&pending).await.unwrap();
    for (id, data) in [(a, &b"first chunk"[..]), (b, b"second chunk")] {
        assert_eq!(f.store.get(&id).await.unwrap().data, data);
        assert!(f.repo.knows(&Pending::default(), &id).unwrap(), "recorded");
    }
}
