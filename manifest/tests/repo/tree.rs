//! The versioned tree: nodes written per change, group commits, snapshots, rollback, diff, bad paths, large files, split directories.

use super::*;

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
    // A migration's fold, its content found while holding collections: the same tree.
    let held = {
        let held = f.repo.hold_collections().await;
        let mut edit = TreeEdit::open(&f.repo, Some(v.root)).await.unwrap();
        let failed = edit
            .insert_sorted_held(&f.repo, &held, entries.clone(), 5)
            .await;
        assert_eq!(failed.len(), 1, "{failed:?}");
        edit.seal(&f.repo, &pending).await.unwrap()
    };
    assert_eq!(together, held);
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

/// A large file is known only when its file node, and the chunks and lists the node
/// names, are all stored: a node that outlived a chunk of its own is not enough.
#[tokio::test]
async fn a_file_is_known_only_when_what_its_node_names_is() {
    let f = fixture();
    let pending = Pending::default();
    let put = |data: Vec<u8>, kind| {
        let (repo, pending) = (&f.repo, &pending);
        async move { repo.put_chunk(pending, &data, kind).await.unwrap() }
    };
    let stored = put(b"stored".to_vec(), ChunkKind::Data).await;
    let never = fvfs_cas::ChunkId::of(b"never stored");
    let refs = |ids: &[fvfs_cas::ChunkId]| -> Vec<ChunkRef> {
        ids.iter().map(|&id| ChunkRef { id, len: 6 }).collect()
    };
    let list = |ids| Node::List(node::ListNode { chunks: refs(ids) }).encode();
    let (good_list, bad_list) = (
        put(list(&[stored]), ChunkKind::Node).await,
        put(list(&[stored, never]), ChunkKind::Node).await,
    );
    // Lists with the bytes they hold.
    for (chunks, lists, known) in [
        (vec![stored], vec![], true),
        (vec![stored, never], vec![], false),
        (vec![], vec![(good_list, 6)], true),
        (vec![], vec![(bad_list, 12)], false),
        (vec![], vec![(never, 6)], false),
    ] {
        let lists: Vec<ChunkRef> = lists
            .iter()
            .map(|&(id, len)| ChunkRef { id, len })
            .collect();
        let chunks = refs(&chunks);
        let size = chunks.iter().chain(&lists).map(|c| c.len).sum();
        let node = Node::File(FileNode {
            size,
            chunks: chunks.clone(),
            lists: lists.clone(),
        });
        let file = FileRef {
            size,
            node: Some(put(node.encode(), ChunkKind::Node).await),
            chunks: Vec::new(),
        };
        let found = f.repo.knows_file(&pending, &file).await.unwrap();
        assert_eq!(found, known, "chunks {chunks:?}, lists {lists:?}");
    }
}

#[tokio::test]
async fn lookups_that_keep_nodes_answer_as_lookup_does() {
    let f = fixture();
    let mut files: Vec<(String, String)> = (0..10_000)
        .map(|i| (format!("/big/n{i:05}"), format!("{i}")))
        .collect();
    files.extend([
        ("/a/b/c/deep".into(), "d".into()),
        ("/a/b/x".into(), "x".into()),
        ("/a/f".into(), "f".into()),
    ]);
    let pairs: Vec<(&str, &str)> = files.iter().map(|(p, c)| (&p[..], &c[..])).collect();
    let v = write(&f.repo, &pairs).await;
    let big = lookup(&f.repo, v.root, b"/big").await.unwrap().id.unwrap();
    assert!(
        matches!(f.repo.node(&big).await.unwrap(), Node::DirIndex(_)),
        "a directory split in parts"
    );
    let mut paths: Vec<String> = files.iter().step_by(7).map(|(p, _)| p.clone()).collect();
    // Missing names (before, between and after the parts), a file taken for a
    // folder, folders, the root, and paths a client may send.
    paths.extend(
        [
            "/big/a",
            "/big/n04999x",
            "/big/z",
            "/a/f/under",
            "/a/b",
            "/a",
            "/",
            "/nope/x",
            "/big/n00007/",
            "//a//b/x",
        ]
        .map(String::from),
    );
    let shown = |r: Result<Entry, ManifestError>| match r {
        Ok(e) => format!("{e:?}"),
        Err(e) => format!("{:?}", std::mem::discriminant(&e)),
    };
    let lookups = Lookups::new(&f.repo, v.root, 3);
    for (path, content) in &files {
        let e = lookups.entry(path.as_bytes()).await.unwrap();
        assert_eq!(e.name, path.rsplit('/').next().unwrap().as_bytes());
        assert_eq!(e.size, content.len() as u64, "{path}");
    }
    assert!(matches!(
        lookups.entry(b"/a/f/under").await,
        Err(ManifestError::NotADirectory(_))
    ));
    for missing in ["/big/n04999x", "/nope/x", "/a/b/c/none"] {
        let found = lookups.entry(missing.as_bytes()).await;
        assert!(
            matches!(found, Err(ManifestError::NotFound(_))),
            "{missing}"
        );
    }
    for keep in [3, 64] {
        let lookups = Lookups::new(&f.repo, v.root, keep);
        for path in paths.iter().chain(paths.iter().rev()) {
            assert_eq!(
                shown(lookups.entry(path.as_bytes()).await),
                shown(lookup(&f.repo, v.root, path.as_bytes()).await),
                "{path}, keeping {keep} nodes"
            );
        }
    }
}
