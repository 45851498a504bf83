//! The manifest against a memory store: path copying, group commit, snapshots,
//! rollback and diff.

use std::collections::HashSet;
use std::sync::Arc;

use fvfs_cas::{ChunkStore, MemoryStore};
use fvfs_manifest::kv::Kv;
use fvfs_manifest::*;

struct Fixture {
    _dir: tempfile::TempDir,
    store: Arc<MemoryStore>,
    /// The repository's database, for records written around it.
    kv: Kv,
    repo: Repo,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(MemoryStore::new());
    let kv = Kv::open(&dir.path().join("meta")).unwrap();
    let repo = Repo::new(
        store.clone() as Arc<dyn ChunkStore>,
        kv.clone(),
        Arc::new(fvfs_manifest::Unindexed),
    );
    Fixture {
        _dir: dir,
        store,
        kv,
        repo,
    }
}

fn file_entry(id: fvfs_cas::ChunkId, size: u64) -> Entry {
    FileRef {
        size,
        node: None,
        chunks: vec![ChunkRef { id, len: size }],
    }
    .entry(0o644, 7)
}

/// Writes `files` (path, content) as one commit on top of HEAD.
async fn write(repo: &Repo, files: &[(&str, &str)]) -> Version {
    let lock = repo.lock().await;
    let pending = Pending::default();
    let mut edit = TreeEdit::open(repo, lock.head().unwrap().map(|v| v.root))
        .await
        .unwrap();
    for (path, content) in files {
        let data = repo
            .put_chunk(&pending, content.as_bytes(), ChunkKind::Data)
            .await
            .unwrap();
        let file = repo
            .put_file(
                &pending,
                vec![ChunkRef {
                    id: data,
                    len: content.len() as u64,
                }],
            )
            .await
            .unwrap();
        edit.insert(
            repo,
            &pending,
            path.as_bytes(),
            file.entry(0o644, 7),
            1,
            Origin::Daemon,
        )
        .await
        .unwrap();
    }
    let (root, bytes) = edit.seal(repo, &pending).await.unwrap();
    lock.commit(&pending, root, bytes, VersionKind::Write, "test")
        .await
        .unwrap()
}

async fn read(repo: &Repo, root: fvfs_cas::ChunkId, path: &str) -> Option<String> {
    let e = lookup(repo, root, path.as_bytes()).await.ok()?;
    let mut out = Vec::new();
    for c in repo.file_chunks(&e).await.unwrap() {
        out.extend_from_slice(
            &fvfs_cas::ChunkStoreExt::get_data(repo.store().as_ref(), &c.id)
                .await
                .unwrap(),
        );
    }
    Some(String::from_utf8(out).unwrap())
}

#[tokio::test]
async fn a_change_at_depth_d_writes_d_plus_one_nodes() {
    let f = fixture();
    write(
        &f.repo,
        &[("/a/b/c/old", "x"), ("/a/other", "y"), ("/z", "w")],
    )
    .await;
    let before = f.store.usage().await.unwrap().chunks;
    write(&f.repo, &[("/a/b/c/new", "fresh content")]).await;
    let after = f.store.usage().await.unwrap().chunks;
    // Depth 4: the root, a, b and c directory nodes, plus the file's one data chunk
    // (a small file's chunk list is inline in c's entry): d + 1 chunks written.
    assert_eq!(after - before, 4 + 1);
}

#[tokio::test]
async fn group_commit_snapshot_rollback_diff() {
    let f = fixture();
    let v1 = write(
        &f.repo,
        &[
            ("/docs/a.txt", "alpha"),
            ("/docs/b.txt", "beta"),
            ("/photos/x.jpg", "jpeg"),
        ],
    )
    .await;
    assert_eq!(v1.number, 1, "three writes, one version");
    assert_eq!(v1.logical_bytes, 13);

    let snap = f
        .repo
        .lock()
        .await
        .snapshot_create("before-edit")
        .await
        .unwrap();
    assert_eq!(snap.root, v1.root);
    assert!(matches!(
        f.repo.lock().await.snapshot_create("before-edit").await,
        Err(ManifestError::SnapshotExists(_))
    ));
    for bad in ["", "12", ".hidden", "a/b", "HEAD"] {
        assert!(
            f.repo.lock().await.snapshot_create(bad).await.is_err(),
            "{bad:?}"
        );
    }

    let v3 = write(
        &f.repo,
        &[("/docs/a.txt", "ALPHA"), ("/docs/new/c.txt", "gamma")],
    )
    .await;
    {
        let lock = f.repo.lock().await;
        let pending = Pending::default();
        let mut edit = TreeEdit::open(&f.repo, Some(v3.root)).await.unwrap();
        assert!(matches!(
            edit.remove(&f.repo, b"/photos", false).await,
            Err(ManifestError::NotEmpty(_))
        ));
        edit.remove(&f.repo, b"/photos", true).await.unwrap();
        let (root, bytes) = edit.seal(&f.repo, &pending).await.unwrap();
        lock.commit(&pending, root, bytes, VersionKind::Write, "rm")
            .await
            .unwrap();
    }
    let head = f.repo.head().unwrap().unwrap();
    let changes: Vec<(ChangeKind, String)> = diff(&f.repo, v1.root, head.root)
        .await
        .unwrap()
        .into_iter()
        .map(|c| (c.kind, String::from_utf8(c.path).unwrap()))
        .collect();
    assert_eq!(
        changes,
        vec![
            (ChangeKind::Modified, "/docs/a.txt".into()),
            (ChangeKind::Added, "/docs/new".into()),
            (ChangeKind::Added, "/docs/new/c.txt".into()),
            (ChangeKind::Removed, "/photos".into()),
            (ChangeKind::Removed, "/photos/x.jpg".into()),
        ]
    );
    assert!(diff(&f.repo, head.root, head.root)
        .await
        .unwrap()
        .is_empty());

    let target = f.repo.resolve("before-edit").unwrap();
    let rb = f.repo.lock().await.rollback(&target).await.unwrap();
    assert_eq!(
        (rb.kind, rb.root, rb.parent),
        (VersionKind::Rollback, v1.root, Some(head.number))
    );
    assert_eq!(
        read(&f.repo, rb.root, "/docs/a.txt").await.as_deref(),
        Some("alpha")
    );
    assert_eq!(
        read(&f.repo, rb.root, "/photos/x.jpg").await.as_deref(),
        Some("jpeg")
    );
    // The rollback is itself undoable.
    let undo = f.repo.resolve("HEAD~1").unwrap();
    assert_eq!(undo.number, head.number);
    assert_eq!(
        read(&f.repo, undo.root, "/docs/new/c.txt").await.as_deref(),
        Some("gamma")
    );

    let log: Vec<u64> = f.repo.log().map(|v| v.unwrap().number).collect();
    assert_eq!(log, vec![5, 4, 3, 2, 1]);
    assert_eq!(
        f.repo.snapshots().unwrap(),
        vec![("before-edit".to_string(), 2)]
    );
    assert_eq!(
        f.repo.lock().await.snapshot_delete("before-edit").unwrap(),
        2
    );
    assert!(f.repo.resolve("before-edit").is_err());
    assert!(f.repo.resolve("99").is_err());
    assert!(f.repo.resolve("HEAD~9").is_err());
}

#[tokio::test]
async fn edits_refuse_bad_paths_and_type_clashes() {
    let f = fixture();
    let v = write(&f.repo, &[("/file", "x"), ("/dir/inner", "y")]).await;
    let mut edit = TreeEdit::open(&f.repo, Some(v.root)).await.unwrap();
    let e = file_entry(fvfs_cas::ChunkId::of(b"n"), 1);
    assert!(matches!(
        edit.insert(
            &f.repo,
            &Pending::default(),
            b"/file/below",
            e.clone(),
            0,
            Origin::Daemon
        )
        .await,
        Err(ManifestError::NotADirectory(_))
    ));
    assert!(matches!(
        edit.insert(
            &f.repo,
            &Pending::default(),
            b"/dir",
            e.clone(),
            0,
            Origin::Daemon
        )
        .await,
        Err(ManifestError::IsADirectory(_))
    ));
    assert!(matches!(
        edit.insert(
            &f.repo,
            &Pending::default(),
            b"/a/../etc",
            e.clone(),
            0,
            Origin::Daemon
        )
        .await,
        Err(ManifestError::InvalidPath(..))
    ));
    // Content that is not stored cannot be named: the entry is refused with its ids.
    match edit
        .insert(
            &f.repo,
            &Pending::default(),
            b"/new",
            e.clone(),
            0,
            Origin::Daemon,
        )
        .await
    {
        Err(ManifestError::ContentGone { path, missing }) => {
            assert_eq!(path, "/new");
            assert_eq!(missing, vec![fvfs_cas::ChunkId::of(b"n")]);
        }
        other => panic!("expected ContentGone, got {other:?}"),
    }
    assert!(matches!(
        edit.remove(&f.repo, b"/missing", true).await,
        Err(ManifestError::NotFound(_))
    ));
    assert!(matches!(
        lookup(&f.repo, v.root, b"/file/x").await,
        Err(ManifestError::NotADirectory(_))
    ));
}

#[tokio::test]
async fn large_files_become_trees_of_list_nodes() {
    let f = fixture();
    let pending = Pending::default();
    let n = node::LIST_FANOUT * 2 + 3;
    let mut chunks = Vec::new();
    for i in 0..n {
        let data = format!("chunk {i}");
        let id = f
            .repo
            .put_chunk(&pending, data.as_bytes(), ChunkKind::Data)
            .await
            .unwrap();
        chunks.push(ChunkRef {
            id,
            len: data.len() as u64,
        });
    }
    let file = f.repo.put_file(&pending, chunks.clone()).await.unwrap();
    assert_eq!(file.size, chunks.iter().map(|c| c.len).sum::<u64>());
    let Node::File(node) = f.repo.node(&file.node.unwrap()).await.unwrap() else {
        panic!("not a file node")
    };
    assert_eq!(node.lists.len(), 3);
    assert_eq!(
        f.repo
            .file_chunks(&file.clone().entry(0o644, 0))
            .await
            .unwrap(),
        chunks
    );
    // Small files list their chunks inline: no node of their own.
    let small = f
        .repo
        .put_file(&pending, chunks[..16].to_vec())
        .await
        .unwrap();
    assert_eq!((small.node, small.chunks.len()), (None, 16));
}

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

/// Edits of a directory large enough to be split, over several commits: after each,
/// the directory's id is the one a fresh encoding of the expected entries gives (the
/// lazy, part-at-a-time edit is canonical), and it reads back whole.
#[tokio::test]
async fn a_split_directory_edited_part_by_part_stays_canonical() {
    use std::collections::BTreeMap;

    let f = fixture();
    let repo = &f.repo;
    let pending = Pending::default();
    let data = repo
        .put_chunk(&pending, b"x", ChunkKind::Data)
        .await
        .unwrap();
    let mut model: BTreeMap<String, Entry> = BTreeMap::new();
    let mut rng = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    for round in 0..8 {
        let lock = repo.lock().await;
        let mut edit = TreeEdit::open(repo, lock.head().unwrap().map(|v| v.root))
            .await
            .unwrap();
        // First a big fill, then a few scattered edits per round; round 6 removes
        // enough to shrink the directory back into one node, round 7 grows it again.
        let (adds, removes) = match round {
            0 => (12_000, 0),
            6 => (0, model.len() - 3_000),
            7 => (2_000, 10),
            _ => (30, 300),
        };
        for _ in 0..adds {
            let name = format!("n{:08}", next() % 100_000_000);
            let mut e = file_entry(data, 1);
            e.mtime_ns = (next() % 1000) as i64;
            edit.insert(
                repo,
                &pending,
                format!("/big/{name}").as_bytes(),
                e.clone(),
                1,
                Origin::Daemon,
            )
            .await
            .unwrap();
            e.name = name.clone().into_bytes();
            model.insert(name, e);
        }
        for _ in 0..removes {
            let i = (next() % model.len() as u64) as usize;
            let name = model.keys().nth(i).unwrap().clone();
            edit.remove(repo, format!("/big/{name}").as_bytes(), false)
                .await
                .unwrap();
            model.remove(&name);
        }
        if round > 0 && round < 6 {
            // A rename inside the directory, and one out of it.
            let name = model.keys().nth(model.len() / 2).unwrap().clone();
            let to = format!("{name}-moved");
            edit.rename(
                repo,
                format!("/big/{name}").as_bytes(),
                format!("/big/{to}").as_bytes(),
                None,
            )
            .await
            .unwrap();
            let mut e = model.remove(&name).unwrap();
            e.name = to.clone().into_bytes();
            model.insert(to, e);
            let name = model.keys().next().unwrap().clone();
            edit.rename(
                repo,
                format!("/big/{name}").as_bytes(),
                format!("/out-{round}").as_bytes(),
                None,
            )
            .await
            .unwrap();
            model.remove(&name);
        }
        let (root, bytes) = edit.seal(repo, &pending).await.unwrap();
        let v = lock
            .commit(&pending, root, bytes, VersionKind::Write, "edit")
            .await
            .unwrap();
        let big = lookup(repo, v.root, b"/big").await.unwrap();
        let expected: Vec<Entry> = model.values().cloned().collect();
        let mut out = Vec::new();
        let id = fvfs_manifest::node::dir::encode_dir(expected.clone(), &mut out);
        assert_eq!(big.id, Some(id), "round {round}: not the canonical id");
        assert_eq!(big.size, model.len() as u64, "round {round}: size");
        assert_eq!(
            repo.dir(&id).await.unwrap().entries,
            expected,
            "round {round}"
        );
    }
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

#[tokio::test]
async fn entries_put_together_by_directory_land_as_one_at_a_time_would_put_them() {
    let f = fixture();
    let v = write(&f.repo, &[("/a/old", "kept"), ("/f", "a file")]).await;
    let pending = Pending::default();
    let mut entries = Vec::new();
    for (path, content) in [
        ("/a/x", "ex"),
        ("/a/y", "why"),
        ("/a/sub/deep/z", "zed"),
        ("/b/w", "double"),
        ("/f/child", "under a file"),
        ("/f2", "top"),
        ("/b//odd/./v/", "an unusual spelling"),
    ] {
        let id = f
            .repo
            .put_chunk(&pending, content.as_bytes(), ChunkKind::Data)
            .await
            .unwrap();
        entries.push((
            path.as_bytes().to_vec(),
            file_entry(id, content.len() as u64),
        ));
    }
    entries.sort_by(|a, b| a.0.cmp(&b.0));

    let together = {
        let mut edit = TreeEdit::open(&f.repo, Some(v.root)).await.unwrap();
        let failed = edit
            .insert_sorted(&f.repo, &pending, entries.clone(), 5, Origin::Daemon)
            .await;
        let failed: Vec<(String, String)> = failed
            .into_iter()
            .map(|(p, e)| (String::from_utf8(p).unwrap(), e.to_string()))
            .collect();
        assert_eq!(failed.len(), 1, "{failed:?}");
        assert_eq!(failed[0].0, "/f/child");
        assert!(failed[0].1.contains("not a directory"), "{failed:?}");
        edit.seal(&f.repo, &pending).await.unwrap()
    };
    let one_by_one = {
        let mut edit = TreeEdit::open(&f.repo, Some(v.root)).await.unwrap();
        for (path, entry) in entries {
            let put = edit
                .insert(&f.repo, &pending, &path, entry, 5, Origin::Daemon)
                .await;
            assert_eq!(put.is_err(), path == b"/f/child");
        }
        edit.seal(&f.repo, &pending).await.unwrap()
    };
    assert_eq!(together, one_by_one);
    for path in ["/a/old", "/a/x", "/a/sub/deep/z", "/b/w", "/f2", "/b/odd/v"] {
        assert!(
            lookup(&f.repo, together.0, path.as_bytes()).await.is_ok(),
            "{path}"
        );
    }
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
