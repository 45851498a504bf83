//! Blocks in a pack store: what the idle rewrite makes of a segment, and how each
//! chunk of a block is read, deleted, moved, checked and found again.

use std::fs;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use super::{text, PackOptions, PackStore};
use crate::pack::{index, open, record, scan};
use crate::{
    block, frame, ChunkId, ChunkStore, ChunkStoreExt, IdFilter, Packed, StoreCheck, StoreError,
};
use futures::StreamExt;

fn opts() -> PackOptions {
    PackOptions {
        segment_bytes: 1 << 20,
        ..PackOptions::default()
    }
}

/// Chunks and their content.
type Chunks = Vec<(ChunkId, Vec<u8>)>;

/// `n` chunks of text in the sizes of a source tree's (2-40 KB), put and synced.
async fn texts(store: &PackStore, n: u32) -> Chunks {
    let mut out = Vec::new();
    for i in 0..n {
        let data = text(i, 2_000 + (i as usize * 997) % 38_000);
        out.push((store.put_data(&data).await.unwrap(), data));
    }
    store.sync().await.unwrap();
    out
}

/// A store of `n` chunks of text rewritten into blocks: its folder (kept while the
/// test runs), its root, the store, the chunks, and each block's members on disk.
async fn rewritten(
    n: u32,
) -> (
    tempfile::TempDir,
    PathBuf,
    PackStore,
    Chunks,
    Vec<Vec<ChunkId>>,
) {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("s");
    let store = PackStore::open(&root, opts()).unwrap();
    let chunks = texts(&store, n).await;
    store.recompress(u64::MAX, 2, None).await.unwrap();
    let blocks = blocks_on_disk(&root);
    (dir, root, store, chunks, blocks)
}

/// The members of every intact block in the segments under `root`, block by block.
fn blocks_on_disk(root: &Path) -> Vec<Vec<ChunkId>> {
    let mut out = Vec::new();
    for (_, path) in open::segment_files(&root.join("segments")).unwrap() {
        let file = fs::File::open(&path).unwrap();
        let end = file.metadata().unwrap().len();
        scan::scan(&file, &path, end, |found| {
            if let scan::Found::Record {
                frame,
                intact: true,
                ..
            } = found
            {
                if let Some(t) = block::table(frame) {
                    out.push(t.members.iter().map(|m| m.0).collect());
                }
            }
            scan::MORE
        })
        .unwrap();
    }
    out
}

/// What `get_packed` answers for every chunk of `chunks`, checked: each id once, as
/// its frame or in a block given once in the stream, whose members all hash to the
/// ids its table names. Returns how many blocks were given.
async fn packed_reads(store: &PackStore, chunks: &[(ChunkId, Vec<u8>)]) -> usize {
    let ids: Vec<ChunkId> = chunks.iter().map(|c| c.0).collect();
    let find = |id: &ChunkId| &chunks.iter().find(|c| c.0 == *id).unwrap().1;
    let answers: Vec<_> = store.get_packed(ids.clone()).collect().await;
    assert_eq!(answers.len(), ids.len());
    let (mut given, mut in_blocks, mut later) = (Vec::new(), Vec::new(), Vec::new());
    for (id, answer) in answers {
        match answer.unwrap() {
            Packed::Frame(f) => assert_eq!(frame::decode(&id, &f).unwrap(), *find(&id)),
            Packed::Block(b) => {
                let d = block::decode(&b).unwrap();
                for (index, (member, _, _)) in d.table.members.iter().enumerate() {
                    let raw = d.member(index as u32, member).unwrap();
                    assert_eq!(ChunkId::of(&raw), *member);
                    in_blocks.push(*member);
                }
                assert!(in_blocks.contains(&id), "the block given for {id} holds it");
                assert!(!given.contains(&b), "a block given twice");
                given.push(b);
            }
            Packed::InBlock => later.push(id),
        }
    }
    for id in later {
        assert!(
            in_blocks.contains(&id),
            "{id} answered as in a block not given"
        );
    }
    given.len()
}

/// Every chunk reads back by `get`, `get_many`, `get_packed` and `copy_frames` (a
/// copy's frame is compressed where the chunk compresses, not the raw bytes a read is
/// served), `has` and `list` see them all, and the store's check finds nothing.
async fn reads_every_way(store: &PackStore, chunks: &[(ChunkId, Vec<u8>)]) {
    packed_reads(store, chunks).await;
    for (id, data) in chunks {
        assert_eq!(store.get_data(id).await.unwrap()[..], data[..]);
    }
    let ids: Vec<ChunkId> = chunks.iter().map(|c| c.0).collect();
    let find = |id: &ChunkId| &chunks.iter().find(|c| c.0 == *id).unwrap().1;
    let many: Vec<_> = store.get_many(ids.clone()).collect().await;
    assert_eq!(many.len(), ids.len());
    for (id, got) in many {
        assert_eq!(got.unwrap().data[..], find(&id)[..]);
    }
    let frames: Vec<_> = store.copy_frames(ids.clone()).collect().await;
    assert_eq!(frames.len(), ids.len());
    for (id, f) in frames {
        let f = f.unwrap();
        let compresses = !frame::is_raw(&frame::encode(find(&id)));
        assert_eq!(
            !frame::is_raw(&f),
            compresses,
            "a copy of {id} is compressed"
        );
        assert_eq!(frame::decode(&id, &f).unwrap(), *find(&id));
    }
    assert!(store.has(&ids).await.unwrap().iter().all(|h| *h));
    let listed = store.list().count().await;
    assert_eq!(listed, ids.len());
    let faults = store.check_store(StoreCheck::new(false)).await.unwrap();
    assert!(faults.is_empty(), "{faults:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_idle_rewrite_packs_chunks_into_blocks_that_read_every_way() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("s");
    let store = PackStore::open(&root, opts()).unwrap();
    let chunks = texts(&store, 300).await;
    let before = store.usage().await.unwrap();
    let done = store.recompress(u64::MAX, 2, None).await.unwrap();
    assert!(done.rewritten >= 2 && done.remaining == 0, "{done:?}");
    let blocks = blocks_on_disk(&root);
    let members: usize = blocks.iter().map(Vec::len).sum();
    assert!(
        blocks.len() >= 2 && members >= 290,
        "{} blocks, {members} members",
        blocks.len()
    );
    // Text shares lines between chunks: far less than frames of each alone.
    assert!(
        (done.after_bytes as f64) < 0.8 * done.before_bytes as f64,
        "{done:?}"
    );
    let after = store.usage().await.unwrap();
    assert_eq!(after.chunks, before.chunks);
    assert_eq!(
        after.bytes,
        before.bytes - (done.before_bytes - done.after_bytes)
    );
    reads_every_way(&store, &chunks).await;
    // A reader that decodes itself is given each block once, for all its members.
    assert_eq!(packed_reads(&store, &chunks).await, blocks.len());
    // Nothing more to do, and the same once reopened.
    let again = store.recompress(u64::MAX, 2, None).await.unwrap();
    assert_eq!((again.rewritten, again.kept, again.remaining), (0, 0, 0));
    drop(store);
    let store = PackStore::open(&root, opts()).unwrap();
    assert_eq!(store.usage().await.unwrap(), after);
    reads_every_way(&store, &chunks).await;
    // The index rebuilt from the segments alone finds every member, with the same
    // statistics.
    drop(store);
    fs::remove_dir_all(PackStore::index_dir(&root)).unwrap();
    let store = PackStore::open(&root, opts()).unwrap();
    assert_eq!(store.usage().await.unwrap(), after);
    reads_every_way(&store, &chunks).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_newest_versions_chunks_are_packed_apart_from_the_others() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("s");
    let store = PackStore::open(&root, opts()).unwrap();
    let chunks = texts(&store, 300).await;
    // Every third chunk is the newest version's; the filter also says "maybe" of a
    // few others, which then go with them.
    let mut newest = IdFilter::for_ids(100);
    for (id, _) in chunks.iter().step_by(3) {
        newest.insert(id);
    }
    store.recompress(u64::MAX, 2, Some(&newest)).await.unwrap();
    let blocks = blocks_on_disk(&root);
    let members: usize = blocks.iter().map(Vec::len).sum();
    assert!(members >= 290, "{members} members");
    let (mut theirs, mut others) = (0, 0);
    for b in &blocks {
        let held = b.iter().filter(|id| newest.may_hold(id)).count();
        assert!(
            held == 0 || held == b.len(),
            "a block mixes: {held} of {}",
            b.len()
        );
        if held == 0 {
            others += 1
        } else {
            theirs += 1
        }
    }
    assert!(
        theirs >= 1 && others >= 2,
        "{theirs} blocks of the newest, {others} others"
    );
    reads_every_way(&store, &chunks).await;
}

/// A block holding a deleted member (being deleted, or deleted and synced) is never
/// given whole: its live members come as frames, so gc's freed data stays unreadable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_block_holding_a_deleted_member_is_not_given_whole() {
    let (_dir, _, store, chunks, blocks) = rewritten(300).await;
    let (first, rest) = (&blocks[0], &blocks[1..]);
    let live: Vec<(ChunkId, Vec<u8>)> =
        chunks.iter().filter(|c| c.0 != first[0]).cloned().collect();
    store.delete(&first[0]).await.unwrap();
    for synced in [false, true] {
        if synced {
            store.sync().await.unwrap();
        }
        // The other blocks come whole, the first one's live members as frames.
        assert_eq!(
            packed_reads(&store, &live).await,
            rest.len(),
            "synced: {synced}"
        );
        let answers: Vec<_> = store.get_packed(first[1..].to_vec()).collect().await;
        for (id, answer) in answers {
            assert!(
                matches!(answer, Ok(Packed::Frame(_))),
                "{id}, synced: {synced}: {answer:?}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_block_is_freed_with_its_last_member_and_compaction_moves_it_whole() {
    let (_dir, root, store, chunks, blocks) = rewritten(300).await;
    let (first, second) = (&blocks[0], &blocks[1]);
    // All members of the first block but one: the block stays, that one reads.
    for id in &first[1..] {
        store.delete(id).await.unwrap();
    }
    store.sync().await.unwrap();
    assert_eq!(blocks_on_disk(&root).len(), blocks.len());
    let data = |id: &ChunkId| chunks.iter().find(|c| c.0 == *id).unwrap().1.clone();
    assert_eq!(
        store.get_data(&first[0]).await.unwrap()[..],
        data(&first[0])[..]
    );
    assert!(matches!(
        store.get(&first[1]).await,
        Err(StoreError::NotFound(_))
    ));
    // The last one: the block's bytes go (punched; a scan finds it no more).
    store.delete(&first[0]).await.unwrap();
    store.sync().await.unwrap();
    assert_eq!(blocks_on_disk(&root).len(), blocks.len() - 1);
    // Everything but two members of the second block: its segment is sparse,
    // compaction moves the block whole and those two read from where it went.
    let keep = &second[..2];
    for (id, _) in chunks
        .iter()
        .filter(|c| !first.contains(&c.0) && !keep.contains(&c.0))
    {
        store.delete(id).await.unwrap();
    }
    store.sync().await.unwrap();
    let (was, _) = store.locate(&keep[0]).unwrap().unwrap();
    let compacted = store.compact().await.unwrap();
    assert!(compacted.segments >= 1, "{compacted:?}");
    let (now, _) = store.locate(&keep[0]).unwrap().unwrap();
    assert_ne!(was, now, "the block moved");
    let usage = store.usage().await.unwrap();
    assert_eq!(usage.chunks, 2);
    let rest: Vec<(ChunkId, Vec<u8>)> = chunks
        .iter()
        .filter(|c| keep.contains(&c.0))
        .cloned()
        .collect();
    reads_every_way(&store, &rest).await;
    drop(store);
    let store = PackStore::open(&root, opts()).unwrap();
    assert_eq!(store.usage().await.unwrap(), usage);
    // The moved block still counts its two members: deleting both frees it.
    for id in keep {
        store.delete(id).await.unwrap();
    }
    store.sync().await.unwrap();
    assert!(!blocks_on_disk(&root).iter().any(|b| b == second));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_block_names_every_chunk_it_hides() {
    let (_dir, _, store, chunks, mut blocks) = rewritten(120).await;
    let hidden = blocks.remove(0);
    let (path, offset) = store.locate(&hidden[0]).unwrap().unwrap();
    // One byte of the payload, past the header and the table.
    let at = offset
        + (record::HEADER_LEN + block::HEAD_LEN + block::ENTRY_LEN * hidden.len()) as u64
        + 100;
    let file = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
        .unwrap();
    let mut byte = [0u8];
    file.read_exact_at(&mut byte, at).unwrap();
    file.write_all_at(&[byte[0] ^ 0x5a], at).unwrap();
    drop(file);
    for (id, data) in &chunks {
        match hidden.contains(id) {
            true => assert!(
                matches!(store.get(id).await, Err(StoreError::Corrupt { .. })),
                "{id} is in the damaged block"
            ),
            false => assert_eq!(store.get_data(id).await.unwrap()[..], data[..]),
        }
    }
    // Nor is the damaged block given whole to a reader that decodes it itself.
    let packed: Vec<_> = store.get_packed(hidden.clone()).collect().await;
    assert_eq!(packed.len(), hidden.len());
    for (id, answer) in packed {
        assert!(
            matches!(answer, Err(StoreError::Corrupt { .. })),
            "{id}: {answer:?}"
        );
    }
    // The repair names each of them, and forgets them: another tier gives them back.
    let faults = store.check_store(StoreCheck::new(true)).await.unwrap();
    for id in &hidden {
        assert!(
            faults.iter().any(|f| f.chunk == Some(*id)),
            "{id} not named in {faults:?}"
        );
        assert!(matches!(store.get(id).await, Err(StoreError::NotFound(_))));
    }
    let (id, data) = chunks.iter().find(|c| c.0 == hidden[0]).unwrap();
    store.put_data(data).await.unwrap();
    store.sync().await.unwrap();
    assert_eq!(store.get_data(id).await.unwrap()[..], data[..]);
    let faults = store.check_store(StoreCheck::new(false)).await.unwrap();
    assert!(faults.is_empty(), "{faults:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn segments_recompressed_before_blocks_are_packed_once_more() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("s");
    let store = PackStore::open(&root, opts()).unwrap();
    let chunks = texts(&store, 200).await;
    // The mark of a version before blocks (its frames rewritten one by one) on every
    // segment, as such a version leaves a store.
    let segs: Vec<u32> = super::lock(&store.inner.state)
        .stats
        .keys()
        .copied()
        .collect();
    let mut marks = crate::kv::Batch::default();
    for seg in segs {
        marks.insert(index::dense_key(seg), Vec::new());
    }
    store.inner.kv.apply(marks).unwrap();
    let done = store.recompress(u64::MAX, 2, None).await.unwrap();
    assert!(done.rewritten >= 1, "{done:?}");
    assert!(!blocks_on_disk(&root).is_empty());
    reads_every_way(&store, &chunks).await;
    let again = store.recompress(u64::MAX, 2, None).await.unwrap();
    assert_eq!((again.rewritten, again.kept), (0, 0));
}

/// A member promoted from a colder tier arrives as a raw frame (as a block's member
/// is served): the rewrite packs it too, when it compresses; noise stays a frame.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_frames_that_compress_are_packed_and_noise_is_not() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("s");
    let store = PackStore::open(&root, opts()).unwrap();
    let mut chunks = Vec::new();
    for i in 0..60u32 {
        let data = match i % 2 {
            0 => text(i, 20_000),
            _ => super::noise(i, 20_000),
        };
        let id = ChunkId::of(&data);
        store
            .put(id, frame::encode_raw(&data).into())
            .await
            .unwrap();
        chunks.push((id, data));
    }
    store.sync().await.unwrap();
    store.recompress(u64::MAX, 2, None).await.unwrap();
    let packed: Vec<ChunkId> = blocks_on_disk(&root).concat();
    for (i, (id, _)) in chunks.iter().enumerate() {
        assert_eq!(packed.contains(id), i % 2 == 0, "chunk {i}");
    }
    reads_every_way(&store, &chunks).await;
}

/// A colder tier can take the blocks whole: they are listed in segment order, page by
/// page, each with its frame (a valid block) and the members still located in it; a
/// deleted member is not offered, and a place with no block any more is `None`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocks_are_listed_and_read_whole_with_their_live_members() {
    let dir = tempfile::tempdir().unwrap();
    let store = PackStore::open(dir.path().join("s"), opts()).unwrap();
    let chunks = texts(&store, 300).await;
    assert!(store.blocks_after(None, 100).await.unwrap().is_empty());
    store.recompress(u64::MAX, 2, None).await.unwrap();
    let all = store.blocks_after(None, 10_000).await.unwrap();
    assert!(all.len() >= 2, "{all:?}");
    assert!(all.windows(2).all(|w| w[0] < w[1]), "in order");
    let first_page = store.blocks_after(None, 1).await.unwrap();
    assert_eq!(first_page, all[..1]);
    assert_eq!(
        store.blocks_after(Some(all[0]), 10_000).await.unwrap(),
        all[1..]
    );

    let mut offered = 0;
    for place in &all {
        let copy = store.block_at(*place).await.unwrap().unwrap();
        assert_eq!(copy.place, *place);
        let d = block::decode(&copy.frame).unwrap();
        for (id, index, raw_len) in &copy.live {
            let raw = d.member(*index, id).unwrap();
            assert_eq!(raw.len() as u32, *raw_len);
            assert_eq!(ChunkId::of(&raw), *id);
        }
        offered += copy.live.len();
    }
    let in_blocks = offered;
    assert!(in_blocks >= 290 && in_blocks <= chunks.len(), "{in_blocks}");

    // One member deleted: no longer offered; the others are.
    let place = all[0];
    let before = store.block_at(place).await.unwrap().unwrap().live;
    store.delete(&before[0].0).await.unwrap();
    let after = store.block_at(place).await.unwrap().unwrap().live;
    assert_eq!(after, before[1..]);
    // Every member deleted: the block is freed, and gone.
    for (id, ..) in &after {
        store.delete(id).await.unwrap();
    }
    store.sync().await.unwrap();
    assert!(store.block_at(place).await.unwrap().is_none());
    assert!(!store
        .blocks_after(None, 10_000)
        .await
        .unwrap()
        .contains(&place));
}
