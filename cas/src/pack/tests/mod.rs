use std::fs;
use std::io::Write;
use std::os::unix::fs::MetadataExt;

use super::*;
use crate::ChunkStoreExt;

mod blocks;

fn small() -> PackOptions {
    PackOptions {
        segment_bytes: 256 << 10,
        ..PackOptions::default()
    }
}

/// Incompressible bytes, different for each seed.
fn noise(seed: u32, len: usize) -> Vec<u8> {
    let mut out = vec![0u8; len];
    blake3::Hasher::new()
        .update(&seed.to_le_bytes())
        .finalize_xof()
        .fill(&mut out);
    out
}

#[tokio::test]
async fn passes_conformance() {
    let dir = tempfile::tempdir().unwrap();
    crate::conformance::run(&PackStore::open(dir.path().join("s"), small()).unwrap()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passes_conformance_across_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("s");
    crate::conformance::reopen(|| PackStore::open(&root, small()).unwrap()).await;
}

#[tokio::test]
async fn a_torn_tail_is_cut_and_appending_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("s");
    let store = PackStore::open(&root, small()).unwrap();
    let a = store.put_data(b"first").await.unwrap();
    store.sync().await.unwrap();
    let (seg, _) = store.locate(&a).unwrap().unwrap();
    drop(store);
    // A crash mid-append: half a record, then garbage.
    let rec = record::encode(&ChunkId::of(b"torn"), &crate::frame::encode(b"torn"));
    let mut f = fs::OpenOptions::new().append(true).open(&seg).unwrap();
    f.write_all(&rec[..rec.len() / 2]).unwrap();
    f.write_all(b"\xff\xfe garbage").unwrap();
    let before = fs::metadata(&seg).unwrap().len();
    drop(f);

    let store = PackStore::open(&root, small()).unwrap();
    assert!(fs::metadata(&seg).unwrap().len() < before, "tail cut");
    assert_eq!(&store.get_data(&a).await.unwrap()[..], b"first");
    let b = store.put_data(b"second").await.unwrap();
    store.sync().await.unwrap();
    drop(store);
    let store = PackStore::open(&root, small()).unwrap();
    assert_eq!(&store.get_data(&b).await.unwrap()[..], b"second");
    assert!(store
        .check_store(StoreCheck::new(false))
        .await
        .unwrap()
        .is_empty());
}

/// A store at `root` holding `n` chunks of `len` bytes of noise, synced; their ids.
async fn filled(root: &std::path::Path, n: u32, len: usize) -> (PackStore, Vec<ChunkId>) {
    let store = PackStore::open(root, small()).unwrap();
    let mut ids = Vec::new();
    for i in 0..n {
        ids.push(store.put_data(&noise(i, len)).await.unwrap());
    }
    store.sync().await.unwrap();
    (store, ids)
}

#[tokio::test]
async fn a_damaged_record_is_corrupt_and_the_rest_reads() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("s");
    // Enough chunks that a read of all of them goes in several pieces (bulk.rs).
    let (store, ids) = filled(&root, 300, 3000).await;
    // A flipped bit in one frame, another in one header.
    let (seg, off) = store.locate(&ids[7]).unwrap().unwrap();
    let (seg9, off9) = store.locate(&ids[9]).unwrap().unwrap();
    assert_eq!(seg, seg9, "one writer, one segment");
    let mut bytes = fs::read(&seg).unwrap();
    bytes[off as usize + record::HEADER_LEN + 100] ^= 0x10;
    bytes[off9 as usize + 20] ^= 0x10;
    fs::write(&seg, &bytes).unwrap();
    for bad in [7, 9] {
        assert!(matches!(
            store.get(&ids[bad]).await,
            Err(StoreError::Corrupt { .. })
        ));
    }
    for (i, id) in ids.iter().enumerate().filter(|(i, _)| ![7, 9].contains(i)) {
        assert_eq!(store.get_data(id).await.unwrap(), noise(i as u32, 3000));
    }
    // A read of many (neighbours in one read) answers each as a read of one does.
    let missing = ChunkId::of(b"never stored");
    let mut asked = ids.clone();
    asked.push(missing);
    let answers: HashMap<ChunkId, Result<Loaded, StoreError>> =
        store.get_many(asked).collect().await;
    assert_eq!(answers.len(), ids.len() + 1);
    for (i, id) in ids.iter().enumerate() {
        match &answers[id] {
            Ok(l) => assert_eq!(l.data[..], noise(i as u32, 3000)[..], "chunk {i}"),
            Err(StoreError::Corrupt { .. }) if [7, 9].contains(&i) => {}
            Err(e) => panic!("chunk {i}: {e}"),
        }
    }
    assert!(matches!(answers[&missing], Err(StoreError::NotFound(_))));
    // Frames for a copy are checked by their records, not decoded: the same frames,
    // the same damage found.
    let frames: HashMap<ChunkId, Result<Bytes, StoreError>> =
        store.copy_frames(ids.clone()).collect().await;
    for (i, id) in ids.iter().enumerate() {
        match (&frames[id], &answers[id]) {
            (Ok(frame), Ok(l)) => assert_eq!(frame, &l.frame, "chunk {i}"),
            (Err(StoreError::Corrupt { .. }), Err(StoreError::Corrupt { .. })) => {}
            (f, a) => panic!("chunk {i}: {f:?} against {a:?}"),
        }
    }
    // The index check reads headers: it names the chunk whose header is damaged.
    let problems = store.check_store(StoreCheck::new(false)).await.unwrap();
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert_eq!(problems[0].chunk, Some(ids[9]), "{problems:?}");
    assert!(problems[0].what.contains(&ids[9].to_hex()));
    // Headers of records the caller reads whole (fsck --read-data) are not read
    // again: that read found the damage above. Every other header still is.
    let leaving = |read: HashSet<ChunkId>| StoreCheck {
        repair: false,
        read_by_caller: Some(Arc::new(move |id: &ChunkId| read.contains(id))),
    };
    let others = ids.iter().copied().filter(|id| *id != ids[9]).collect();
    let problems = store.check_store(leaving(others)).await.unwrap();
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert_eq!(problems[0].chunk, Some(ids[9]), "{problems:?}");
    let all = ids.iter().copied().collect();
    assert!(store.check_store(leaving(all)).await.unwrap().is_empty());
    assert!(matches!(answers[&ids[9]], Err(StoreError::Corrupt { .. })));
    // Repair rebuilds the index from the segments: entries naming damage go (fsck
    // then copies those chunks again from another tier), the rest stays.
    let repaired = store.check_store(StoreCheck::new(true)).await.unwrap();
    assert!(repaired.len() >= 2, "{repaired:?}");
    for bad in [7, 9] {
        assert!(matches!(
            store.get(&ids[bad]).await,
            Err(StoreError::NotFound(_))
        ));
    }
    assert!(store
        .check_store(StoreCheck::new(false))
        .await
        .unwrap()
        .is_empty());
    for (i, id) in ids.iter().enumerate().filter(|(i, _)| ![7, 9].contains(i)) {
        assert_eq!(store.get_data(id).await.unwrap(), noise(i as u32, 3000));
    }
}

#[tokio::test]
async fn a_deleted_index_is_rebuilt_from_the_segments() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("s");
    let (store, ids) = filled(&root, 300, 2000).await;
    let usage = store.usage().await.unwrap();
    drop(store);
    fs::remove_dir_all(root.join("index")).unwrap();
    let store = PackStore::open(&root, small()).unwrap();
    for (i, id) in ids.iter().enumerate() {
        assert_eq!(store.get_data(id).await.unwrap(), noise(i as u32, 2000));
    }
    assert_eq!(store.usage().await.unwrap(), usage);
}

#[tokio::test]
async fn a_damaged_index_is_set_aside_and_rebuilt_from_the_segments() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("s");
    let (store, ids) = filled(&root, 300, 2000).await;
    drop(store);
    // Garbage over the database's files (journals, tables), as a dying disk leaves
    // them.
    let mut damaged = 0;
    for dir in ["index/journals", "index/partitions/kv/segments"] {
        for file in fs::read_dir(root.join(dir)).unwrap() {
            let path = file.unwrap().path();
            let len = fs::metadata(&path).unwrap().len() as usize;
            fs::write(&path, vec![0x5a; len.max(4096)]).unwrap();
            damaged += 1;
        }
    }
    assert!(damaged > 0);
    let store = PackStore::open(&root, small()).unwrap();
    for (i, id) in ids.iter().enumerate() {
        assert_eq!(store.get_data(id).await.unwrap(), noise(i as u32, 2000));
    }
    let aside: Vec<_> = fs::read_dir(&root)
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.starts_with("index.damaged-"))
        .collect();
    // The engine may report the damage (the index is set aside) or come back empty
    // (the index is rebuilt in place): either way every chunk reads back.
    assert!(aside.len() <= 1, "{aside:?}");
}

#[tokio::test]
async fn deleting_punches_a_hole_and_compaction_removes_sparse_segments() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("s");
    let (store, ids) = filled(&root, 400, 8000).await;
    let full = allocated(&root);
    for id in &ids[..300] {
        store.delete(id).await.unwrap();
    }
    store.sync().await.unwrap();
    let punched = allocated(&root);
    assert!(
        punched < full / 2,
        "holes punched: {full} -> {punched} blocks"
    );
    let segments = open::segment_files(&root.join("segments")).unwrap().len();
    let done = store.compact().await.unwrap();
    assert!(done.segments > 0);
    assert!(open::segment_files(&root.join("segments")).unwrap().len() < segments);
    for (i, id) in ids.iter().enumerate().skip(300) {
        assert_eq!(store.get_data(id).await.unwrap(), noise(i as u32, 8000));
    }
    assert!(store
        .check_store(StoreCheck::new(false))
        .await
        .unwrap()
        .is_empty());
}

/// Puts `raws` framed, all at once, and syncs; their ids, in order.
async fn put_synced(store: &PackStore, raws: impl Iterator<Item = Vec<u8>>) -> Vec<ChunkId> {
    let frames: Vec<(ChunkId, Bytes)> = raws
        .map(|raw| (ChunkId::of(&raw), Bytes::from(crate::frame::encode(&raw))))
        .collect();
    let ids = frames.iter().map(|(id, _)| *id).collect();
    for put in store.put_many(frames).await {
        put.unwrap();
    }
    store.sync().await.unwrap();
    ids
}

/// Blocks of 512 bytes the segments of the store at `root` occupy on disk.
fn allocated(root: &Path) -> u64 {
    fs::read_dir(root.join("segments"))
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().blocks())
        .sum()
}

/// A sync a delete forces punches nothing; the next sync asked for punches every range
/// noted since, neighbours merged: records smaller than a file system block, deleted
/// every other one in each forced sync, are freed only merged (punched sync by sync,
/// no range covered a whole block and a collection of 3,000,000 files took 4x longer).
#[tokio::test]
async fn ranges_freed_by_forced_syncs_are_punched_merged_by_the_next_sync() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("s");
    let store = PackStore::open(&root, PackOptions::default()).unwrap();
    let bound = sync::MAX_DELETING;
    let ids = put_synced(&store, (0..2 * bound as u32).map(|i| noise(i, 300))).await;
    let full = allocated(&root);
    let noted = || {
        store
            .inner
            .kv
            .scan_prefix(&[index::FREE_PREFIX], false)
            .count()
    };
    for id in ids.iter().step_by(2) {
        store.delete(id).await.unwrap();
    }
    assert_eq!(lock(&store.inner.state).deleting.len(), 0, "forced sync");
    assert_eq!(noted(), bound, "every other record noted, none touching");
    assert_eq!(allocated(&root), full, "nothing punched by a forced sync");
    for id in ids.iter().skip(1).step_by(2) {
        store.delete(id).await.unwrap();
    }
    assert_eq!(allocated(&root), full, "nothing punched by a forced sync");
    store.sync().await.unwrap();
    assert_eq!(noted(), 0, "every range punched and forgotten");
    let left = allocated(&root);
    assert!(
        left < full / 10,
        "touching ranges punched as one: {full} -> {left} blocks"
    );
}

/// A collection deleting millions of chunks does not hold them all until a sync: the
/// delete that reaches [`sync::MAX_DELETING`] makes those held durable, as a sync would.
#[tokio::test]
async fn deletions_held_past_the_bound_are_synced_by_the_delete_that_reaches_it() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("s");
    let store = PackStore::open(&root, PackOptions::default()).unwrap();
    let bound = sync::MAX_DELETING;
    let raws = (0..bound as u64 + 10).map(|i| i.to_le_bytes().to_vec());
    let ids = put_synced(&store, raws).await;
    for id in &ids[..bound - 1] {
        store.delete(id).await.unwrap();
    }
    let held = || lock(&store.inner.state).deleting.len();
    assert_eq!(held(), bound - 1, "held until the bound");
    store.delete(&ids[bound - 1]).await.unwrap();
    assert_eq!(held(), 0, "synced at the bound");
    // Durable without a sync asked for: a store opened again (after a crash, say) has
    // forgotten them and kept the others.
    drop(store);
    let store = PackStore::open(&root, PackOptions::default()).unwrap();
    let has = store.has(&ids).await.unwrap();
    assert!(has[..bound].iter().all(|h| !h), "deleted before the reopen");
    assert!(has[bound..].iter().all(|h| *h), "the others kept");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_writers_use_their_own_segments() {
    let dir = tempfile::tempdir().unwrap();
    let store = PackStore::open(dir.path().join("s"), PackOptions::default()).unwrap();
    let tasks: Vec<_> = (0..8u32)
        .map(|t| {
            let s = store.clone();
            tokio::spawn(async move {
                for i in 0..100 {
                    s.put_data(&noise(t * 1000 + i, 5000)).await.unwrap();
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    store.sync().await.unwrap();
    assert_eq!(store.usage().await.unwrap().chunks, 800);
    let listed = store.list().count().await;
    assert_eq!(listed, 800);
    for t in 0..8u32 {
        for i in 0..100 {
            let d = noise(t * 1000 + i, 5000);
            assert_eq!(store.get_data(&ChunkId::of(&d)).await.unwrap(), d);
        }
    }
}

#[tokio::test]
async fn a_chunk_file_store_is_refused_then_converted() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("s");
    fs::create_dir_all(&root).unwrap();
    fs::write(root.join("FVFS-STORE"), "fvfs chunk store, format 1\n").unwrap();
    let mut ids = Vec::new();
    for i in 0..50 {
        let data = noise(i, 1000);
        let id = ChunkId::of(&data);
        let shard = root.join(&id.to_hex()[..2]);
        fs::create_dir_all(&shard).unwrap();
        fs::write(shard.join(id.to_hex()), crate::frame::encode(&data)).unwrap();
        ids.push(id);
    }
    // One damaged chunk file, one never-synced temporary.
    let bad = ids[3];
    let bad_path = root.join(&bad.to_hex()[..2]).join(bad.to_hex());
    fs::write(&bad_path, b"FV\x01\x00garbage").unwrap();
    fs::write(bad_path.with_extension("7.tmp"), b"x").unwrap();

    let err = PackStore::open(&root, small()).err().expect("refused");
    assert!(err.to_string().contains("fvfsd convert-store"), "{err}");
    let converted = convert_legacy(&root, small(), |_, _| {}).unwrap();
    assert_eq!(converted.chunks, 49);
    assert_eq!(converted.damaged, vec![bad]);
    let store = PackStore::open(&root, small()).unwrap();
    for (i, id) in ids.iter().enumerate().filter(|(i, _)| *i != 3) {
        assert_eq!(store.get_data(id).await.unwrap(), noise(i as u32, 1000));
    }
    assert!(root.join("damaged").join(bad.to_hex()).exists());
    assert!(!root.join("FVFS-STORE").exists());
}

#[test]
fn refuses_a_foreign_non_empty_directory() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("holiday.jpg"), b"jpeg").unwrap();
    assert!(matches!(
        PackStore::open(dir.path(), small()),
        Err(StoreError::Unavailable(_))
    ));
    assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
}

#[tokio::test]
async fn many_frames_put_at_once_fill_segments_to_their_size_and_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("s");
    let store = PackStore::open(&root, small()).unwrap();
    // 40 incompressible chunks of 20 KiB: about three segments of 256 KiB.
    let data: Vec<Vec<u8>> = (0..40).map(|i| noise(i, 20 << 10)).collect();
    let frames: Vec<(ChunkId, Bytes)> = data
        .iter()
        .map(|d| (ChunkId::of(d), Bytes::from(crate::frame::encode(d))))
        .collect();
    let answers = store.put_many(frames.clone()).await;
    assert!(answers.iter().all(Result::is_ok), "{answers:?}");
    store.sync().await.unwrap();
    let mut segments: Vec<u64> = fs::read_dir(root.join("segments"))
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .collect();
    segments.sort_unstable();
    assert!(segments.len() >= 3, "{segments:?}");
    let record = (record::HEADER_LEN + frames[0].1.len()) as u64;
    assert!(
        segments
            .iter()
            .all(|len| *len < small().segment_bytes + record),
        "a segment takes records only while under its size: {segments:?}"
    );
    drop(store);
    let store = PackStore::open(&root, small()).unwrap();
    for d in &data {
        assert_eq!(&store.get_data(&ChunkId::of(d)).await.unwrap()[..], &d[..]);
    }
    assert_eq!(store.usage().await.unwrap().chunks, 40);
}

/// Compressible bytes, different for each seed: lines of this crate's sources.
fn text(seed: u32, len: usize) -> Vec<u8> {
    let mut out = format!("chunk {seed}\n").into_bytes();
    let source = include_str!("mod.rs").lines().collect::<Vec<_>>();
    let mut i = seed as usize * 7;
    while out.len() < len {
        out.extend_from_slice(source[i % source.len()].as_bytes());
        out.push(b'\n');
        i += 1 + seed as usize % 3;
    }
    out.truncate(len);
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recompression_shrinks_segments_and_everything_reads_back() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("s");
    let store = PackStore::open(&root, small()).unwrap();
    let mut ids = Vec::new();
    for i in 0..120 {
        ids.push(store.put_data(&text(i, 40_000)).await.unwrap());
    }
    store.sync().await.unwrap();
    // Deleted but not synced yet: copied, then found dead when the copy is switched in.
    for id in &ids[..10] {
        store.delete(id).await.unwrap();
    }
    let before = store.usage().await.unwrap();
    let done = store.recompress(u64::MAX, 2, None).await.unwrap();
    assert!(done.rewritten >= 2, "{done:?}");
    assert_eq!(done.remaining, 0);
    assert!(done.after_bytes < done.before_bytes, "{done:?}");
    let after = store.usage().await.unwrap();
    assert_eq!(after.chunks, before.chunks);
    assert_eq!(
        after.bytes,
        before.bytes - (done.before_bytes - done.after_bytes)
    );
    let check = |store: PackStore, ids: Vec<ChunkId>| async move {
        for (i, id) in ids.iter().enumerate() {
            match i < 10 {
                true => assert!(matches!(
                    store.get_data(id).await,
                    Err(StoreError::NotFound(_))
                )),
                false => assert_eq!(store.get_data(id).await.unwrap(), text(i as u32, 40_000)),
            }
        }
        assert!(store
            .check_store(StoreCheck::new(false))
            .await
            .unwrap()
            .is_empty());
    };
    check(store.clone(), ids.clone()).await;
    // Nothing left to do; and the same after a reopen (the marks are kept).
    let again = store.recompress(u64::MAX, 2, None).await.unwrap();
    assert_eq!((again.rewritten, again.kept, again.remaining), (0, 0, 0));
    store.sync().await.unwrap();
    drop(store);
    let store = PackStore::open(&root, small()).unwrap();
    assert_eq!(store.usage().await.unwrap(), after);
    let again = store.recompress(u64::MAX, 2, None).await.unwrap();
    assert_eq!((again.rewritten, again.remaining), (0, 0));
    check(store, ids).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn segments_that_would_not_shrink_are_only_marked() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("s");
    let (store, ids) = filled(&root, 200, 8000).await;
    let files = || open::segment_files(&root.join("segments")).unwrap();
    let was = files();
    // A limit of one byte still visits one segment.
    let first = store.recompress(1, 2, None).await.unwrap();
    assert_eq!((first.rewritten, first.kept), (0, 1), "{first:?}");
    assert!(first.remaining > 0);
    let rest = store.recompress(u64::MAX, 2, None).await.unwrap();
    assert_eq!(rest.rewritten, 0);
    assert_eq!(rest.kept, first.remaining);
    assert_eq!(files(), was);
    assert_eq!(store.recompress(u64::MAX, 2, None).await.unwrap().kept, 0);
    for (i, id) in ids.iter().enumerate() {
        assert_eq!(store.get_data(id).await.unwrap(), noise(i as u32, 8000));
    }
}

#[tokio::test]
async fn an_unfinished_recompression_is_removed_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("s");
    let (store, ids) = filled(&root, 10, 1000).await;
    drop(store);
    let leftover = root.join("segments").join("00000009.seg.new");
    fs::write(&leftover, b"half a rewrite").unwrap();
    let store = PackStore::open(&root, small()).unwrap();
    assert!(!leftover.exists());
    assert_eq!(store.get_data(&ids[3]).await.unwrap(), noise(3, 1000));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 3)]
async fn recompression_beside_puts_and_deletes_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("s");
    let store = PackStore::open(&root, small()).unwrap();
    let mut ids = Vec::new();
    for i in 0..150 {
        ids.push(store.put_data(&text(i, 40_000)).await.unwrap());
    }
    store.sync().await.unwrap();
    let busy = {
        let (store, doomed) = (store.clone(), ids[20..80].to_vec());
        tokio::spawn(async move {
            let mut added = Vec::new();
            for (i, id) in doomed.iter().enumerate() {
                store.delete(id).await.unwrap();
                added.push(
                    store
                        .put_data(&text(1000 + i as u32, 40_000))
                        .await
                        .unwrap(),
                );
                store.sync().await.unwrap();
            }
            added
        })
    };
    let mut done = store.recompress(u64::MAX, 2, None).await.unwrap();
    let added = busy.await.unwrap();
    done.add(store.recompress(u64::MAX, 2, None).await.unwrap());
    assert!(done.rewritten >= 2, "{done:?}");
    let check = |store: PackStore| {
        let (ids, added) = (ids.clone(), added.clone());
        async move {
            for (i, id) in ids.iter().enumerate() {
                match (20..80).contains(&i) {
                    true => assert!(store.get_data(id).await.is_err()),
                    false => {
                        assert_eq!(store.get_data(id).await.unwrap(), text(i as u32, 40_000))
                    }
                }
            }
            for (i, id) in added.iter().enumerate() {
                assert_eq!(
                    store.get_data(id).await.unwrap(),
                    text(1000 + i as u32, 40_000)
                );
            }
            assert!(store
                .check_store(StoreCheck::new(false))
                .await
                .unwrap()
                .is_empty());
            store.usage().await.unwrap()
        }
    };
    let usage = check(store.clone()).await;
    assert_eq!(usage.chunks, 150);
    drop(store);
    let store = PackStore::open(&root, small()).unwrap();
    assert_eq!(check(store).await, usage);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_segment_that_does_not_shrink_is_given_up_and_kept_whole() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("s");
    let opts = PackOptions {
        segment_bytes: 64 << 20,
        ..PackOptions::default()
    };
    let store = PackStore::open(&root, opts).unwrap();
    let mut ids = Vec::new();
    for i in 0..160 {
        ids.push(store.put_data(&noise(i, 128 << 10)).await.unwrap());
    }
    store.sync().await.unwrap();
    let was = open::segment_files(&root.join("segments")).unwrap();
    let done = store.recompress(u64::MAX, 2, None).await.unwrap();
    assert_eq!((done.rewritten, done.kept), (0, 1), "{done:?}");
    assert_eq!(open::segment_files(&root.join("segments")).unwrap(), was);
    for (i, id) in ids.iter().enumerate() {
        assert_eq!(
            store.get_data(id).await.unwrap(),
            noise(i as u32, 128 << 10)
        );
    }
}

/// Intact records in the segment files under `root`.
fn intact_records(root: &Path) -> usize {
    let mut n = 0;
    for (_, path) in open::segment_files(&root.join("segments")).unwrap() {
        let file = fs::File::open(&path).unwrap();
        let end = file.metadata().unwrap().len();
        scan::scan(&file, &path, end, |found| {
            n += usize::from(matches!(found, scan::Found::Record { intact: true, .. }));
            scan::MORE
        })
        .unwrap();
    }
    n
}

/// A sync killed between the batch removing deleted chunks' locations and the one
/// recording their freed ranges leaves their records intact and named by nothing (a
/// leak, never a loss). Its segment, short of `segment_bytes`, is reopened for
/// appending at every open: compaction still rewrites it once it is sparse, so the
/// leaked records go.
#[tokio::test]
async fn records_a_crash_left_unfreed_go_at_the_next_compaction() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("s");
    let opts = PackOptions {
        segment_bytes: 64 << 20,
        ..small()
    };
    let store = PackStore::open(&root, opts).unwrap();
    let mut ids = Vec::new();
    for i in 0..100 {
        ids.push(store.put_data(&noise(i, 3000)).await.unwrap());
    }
    store.sync().await.unwrap();
    drop(store);
    // What the kill leaves: the update marker, 90 locations gone, no freed range.
    let kv = crate::kv::Kv::open(&PackStore::index_dir(&root)).unwrap();
    let mut batch = crate::kv::Batch::default();
    batch.insert(UPDATING.to_vec(), Vec::new());
    for id in &ids[..90] {
        batch.remove(index::loc_key(id).to_vec());
    }
    kv.apply(batch).unwrap();
    kv.flush_durable().unwrap();
    drop(kv);
    let store = PackStore::open(&root, opts).unwrap();
    assert_eq!(store.usage().await.unwrap().chunks, 10);
    assert_eq!(intact_records(&root), 100, "the leak");
    let done = store.compact().await.unwrap();
    assert_eq!(done.segments, 1, "{done:?}");
    assert_eq!(intact_records(&root), 10);
    for (i, id) in ids.iter().enumerate().skip(90) {
        assert_eq!(store.get_data(id).await.unwrap(), noise(i as u32, 3000));
    }
    // The next puts go on into a segment of their own.
    let more = store.put_data(&noise(500, 3000)).await.unwrap();
    store.sync().await.unwrap();
    assert_eq!(store.get_data(&more).await.unwrap(), noise(500, 3000));
}
