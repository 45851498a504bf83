//! The conformance suite every [`ChunkStore`] passes: memory, directory (local and NAS)
//! and, in the tiering crate, S3. A store's own tests call [`run`] on a fresh, empty store.

use std::collections::HashSet;

use bytes::Bytes;
use futures::StreamExt;

use crate::{frame, ChunkId, ChunkStore, ChunkStoreExt, StoreError};

/// Exercises the whole contract of [`ChunkStore`] on an empty `store`; panics on the
/// first violation with a message naming it.
pub async fn run(store: &dyn ChunkStore) {
    let empty = store.usage().await.expect("usage");
    assert_eq!(empty.chunks, 0, "a fresh store must be empty");
    let (payloads, ids) = puts_and_gets(store).await;
    reads(store, &payloads, &ids).await;
    listing_and_deletes(store, &ids).await;
    concurrent_puts(store).await;
    rewritten(store).await;
}

/// The idle rewrite (`recompress`, which packs chunks into blocks where a store can)
/// of chunks that compress: everything reads back every way after it, deleting some
/// and compacting loses none of the others, and the bytes kept do not grow.
async fn rewritten(store: &dyn ChunkStore) {
    let payloads: Vec<Vec<u8>> = (0..60usize)
        .map(|i| {
            (0..400 + i * 13)
                .map(|j| format!("line {j} of a file like source code, variant {}\n", i % 7))
                .collect::<String>()
                .into_bytes()
        })
        .collect();
    let mut ids = Vec::new();
    for p in &payloads {
        ids.push(store.put_data(p).await.expect("put"));
    }
    store.sync().await.expect("sync");
    let before = store.usage().await.expect("usage");
    store
        .recompress(u64::MAX, 2, None)
        .await
        .expect("recompress");
    let after = store.usage().await.expect("usage");
    assert_eq!(after.chunks, before.chunks, "the rewrite keeps every chunk");
    assert!(after.bytes <= before.bytes, "{after:?} after {before:?}");
    reads(store, &payloads[..4], &ids[..4]).await;
    let mut all: Vec<_> = store.get_many(ids.clone()).collect().await;
    all.sort_by_key(|(id, _)| ids.iter().position(|x| x == id));
    for ((id, got), p) in all.into_iter().zip(&payloads) {
        assert_eq!(
            &got.unwrap_or_else(|e| panic!("{id}: {e}")).data[..],
            &p[..]
        );
    }
    for id in ids.iter().step_by(3) {
        store.delete(id).await.expect("delete");
    }
    store.sync().await.expect("sync");
    store.compact().await.expect("compact");
    for (i, (id, p)) in ids.iter().zip(&payloads).enumerate() {
        match i % 3 {
            0 => assert!(matches!(store.get(id).await, Err(StoreError::NotFound(_)))),
            _ => assert_eq!(&store.get_data(id).await.expect("kept")[..], &p[..]),
        }
    }
    for id in &ids {
        store.delete(id).await.expect("delete");
    }
    store.sync().await.expect("sync");
}

/// Puts and gets of four payloads (the empty chunk and an incompressible one among
/// them), a second put of one; returns the payloads and their ids.
async fn puts_and_gets(store: &dyn ChunkStore) -> (Vec<Vec<u8>>, Vec<ChunkId>) {
    // put / get round trip, including the empty chunk and an incompressible one.
    let payloads: Vec<Vec<u8>> = vec![
        Vec::new(),
        b"hello fvfs".to_vec(),
        b"compressible ".repeat(5000),
        (0..200_000u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect(),
    ];
    let mut ids = Vec::new();
    for p in &payloads {
        let id = store.put_data(p).await.expect("put");
        assert_eq!(id, ChunkId::of(p));
        let got = store.get(&id).await.expect("get after put");
        assert_eq!(&got.data[..], &p[..], "get returns what was put");
        assert_eq!(
            frame::decode(&id, &got.frame).unwrap(),
            *p,
            "frame is usable as is"
        );
        ids.push(id);
    }

    // put is idempotent and create-only.
    store
        .put_data(&payloads[1])
        .await
        .expect("second put of the same chunk");
    store.sync().await.expect("sync");
    assert_eq!(
        store.get_data(&ids[1]).await.unwrap(),
        Bytes::from(payloads[1].clone())
    );

    (payloads, ids)
}

/// `has`, `get_many` and `copy_frames` over stored and missing ids; a missing id and a
/// mislabelled frame on `get`.
async fn reads(store: &dyn ChunkStore, payloads: &[Vec<u8>], ids: &[ChunkId]) {
    // has answers in order, for present and missing ids alike.
    let missing = ChunkId::of(b"never stored");
    let mut query = ids.to_vec();
    query.insert(1, missing);
    let answer = store.has(&query).await.expect("has");
    assert_eq!(answer, vec![true, false, true, true, true]);
    assert!(store.has(&[]).await.expect("has of nothing").is_empty());

    // get_many answers every id once, in any order, with what get answers.
    let mut answers: Vec<_> = store.get_many(query.clone()).collect().await;
    answers.sort_by_key(|(id, _)| *id);
    let mut asked = query.clone();
    asked.sort_unstable();
    assert_eq!(
        answers.iter().map(|(id, _)| *id).collect::<Vec<_>>(),
        asked,
        "get_many answers each id once"
    );
    for (id, answer) in answers {
        match payloads.iter().find(|p| ChunkId::of(p) == id) {
            Some(p) => assert_eq!(
                &answer.expect("get_many of a stored chunk").data[..],
                &p[..]
            ),
            None => assert!(
                matches!(answer, Err(StoreError::NotFound(m)) if m == missing),
                "get_many of a missing chunk"
            ),
        }
    }
    assert!(store.get_many(Vec::new()).next().await.is_none());

    // copy_frames answers every id once, with frames that decode to the chunk.
    let mut frames: Vec<_> = store.copy_frames(query.clone()).collect().await;
    frames.sort_by_key(|(id, _)| *id);
    assert_eq!(
        frames.iter().map(|(id, _)| *id).collect::<Vec<_>>(),
        asked,
        "copy_frames answers each id once"
    );
    for (id, frame) in frames {
        match payloads.iter().find(|p| ChunkId::of(p) == id) {
            Some(p) => {
                let frame = frame.expect("copy_frames of a stored chunk");
                assert_eq!(frame::decode(&id, &frame).expect("a whole frame"), &p[..]);
            }
            None => assert!(frame.is_err(), "copy_frames of a missing chunk"),
        }
    }

    // missing and mislabelled chunks.
    assert!(
        matches!(store.get(&missing).await, Err(StoreError::NotFound(id)) if id == missing),
        "get of a missing id is NotFound"
    );
    let liar = ChunkId::of(b"the id says this");
    store
        .put(liar, Bytes::from(frame::encode(b"but the frame says that")))
        .await
        .expect("put does not have to verify");
    assert!(
        matches!(store.get(&liar).await, Err(StoreError::Corrupt { .. })),
        "get verifies the content against the id"
    );
    store.delete(&liar).await.expect("delete");
}

/// `list` and `usage` see exactly what is there; `delete` is idempotent.
async fn listing_and_deletes(store: &dyn ChunkStore, ids: &[ChunkId]) {
    // list and usage see exactly what is there.
    store.sync().await.expect("sync");
    let listed: HashSet<ChunkId> = store
        .list()
        .map(|r| r.expect("list"))
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect();
    assert_eq!(
        listed,
        ids.iter().copied().collect(),
        "list returns every id once"
    );
    let usage = store.usage().await.expect("usage");
    assert_eq!(usage.chunks, ids.len() as u64);
    assert!(usage.bytes > 0);

    // delete, idempotently.
    store.delete(&ids[2]).await.expect("delete");
    store
        .delete(&ids[2])
        .await
        .expect("delete of a missing id succeeds");
    store.sync().await.expect("sync");
    assert!(matches!(
        store.get(&ids[2]).await,
        Err(StoreError::NotFound(_))
    ));
    assert_eq!(store.has(ids).await.unwrap(), vec![true, true, false, true]);
}

/// Concurrent puts of the same and of different chunks, and `put_many` beside a put.
async fn concurrent_puts(store: &dyn ChunkStore) {
    // concurrent puts of the same and of different chunks.
    let many: Vec<Vec<u8>> = (0..64u32)
        .map(|i| format!("chunk {}", i % 16).into_bytes())
        .collect();
    futures::future::join_all(many.iter().map(|d| store.put_data(d)))
        .await
        .into_iter()
        .for_each(|r| {
            r.expect("concurrent put");
        });
    store.sync().await.expect("sync");
    for d in &many[..16] {
        assert_eq!(&store.get_data(&ChunkId::of(d)).await.unwrap()[..], &d[..]);
    }
    assert_eq!(store.usage().await.unwrap().chunks, 3 + 16);

    // put_many answers each frame in order, as put would: new ones, one already
    // there, one given twice (stored once), and concurrent with puts of the same.
    let batch: Vec<Vec<u8>> = (0..40u32)
        .map(|i| {
            format!("batch {i} ")
                .repeat(i as usize * 50 + 50)
                .into_bytes()
        })
        .chain([many[0].clone(), b"batch 7 ".repeat(400)])
        .collect();
    let frames = |b: &[Vec<u8>]| -> Vec<(ChunkId, Bytes)> {
        b.iter()
            .map(|d| (ChunkId::of(d), Bytes::from(frame::encode(d))))
            .collect()
    };
    let (answers, alone) =
        futures::join!(store.put_many(frames(&batch)), store.put_data(&batch[3]));
    alone.expect("put beside put_many");
    assert_eq!(answers.len(), batch.len(), "put_many answers each frame");
    assert!(answers.iter().all(Result::is_ok), "put_many: {answers:?}");
    assert!(store.put_many(Vec::new()).await.is_empty());
    store.sync().await.expect("sync");
    for d in &batch {
        assert_eq!(&store.get_data(&ChunkId::of(d)).await.unwrap()[..], &d[..]);
    }
    assert_eq!(store.usage().await.unwrap().chunks, 3 + 16 + 40);
}

/// The contract across reopening, for stores that persist: `open` opens the same
/// store again each time (the previous handle is dropped first). What was synced
/// survives; what was put and never synced may be lost but never half there; a
/// store whose deleted chunks were compacted away reopens with exactly the rest.
pub async fn reopen<S: ChunkStore>(open: impl Fn() -> S) {
    let store = open();
    let kept: Vec<Vec<u8>> = (0..200u32)
        .map(|i| {
            format!("kept {i} ")
                .repeat(1 + i as usize % 50)
                .into_bytes()
        })
        .collect();
    for d in &kept {
        store.put_data(d).await.expect("put");
    }
    store.sync().await.expect("sync");
    // Put and never synced: a crash may keep it or not, but whole or not at all.
    let unsynced = store.put_data(b"never synced").await.expect("put");
    drop(store);

    let store = open();
    for d in &kept {
        assert_eq!(
            &store
                .get_data(&ChunkId::of(d))
                .await
                .expect("synced survives")[..],
            &d[..]
        );
    }
    match store.get(&unsynced).await {
        Ok(l) => assert_eq!(&l.data[..], b"never synced"),
        Err(StoreError::NotFound(_)) => {}
        Err(e) => panic!("an unsynced put came back damaged: {e}"),
    }
    store
        .put_data(b"after reopen")
        .await
        .expect("put after reopen");
    // Delete most, compact, reopen: the rest reads back, the deleted stay gone.
    for d in &kept[..150] {
        store.delete(&ChunkId::of(d)).await.expect("delete");
    }
    store.sync().await.expect("sync");
    store.compact().await.expect("compact");
    let after = store.usage().await.expect("usage");
    drop(store);

    let store = open();
    assert_eq!(
        store.usage().await.expect("usage"),
        after,
        "usage survives reopen"
    );
    for d in &kept[..150] {
        assert!(matches!(
            store.get(&ChunkId::of(d)).await,
            Err(StoreError::NotFound(_))
        ));
    }
    for d in &kept[150..] {
        assert_eq!(
            &store.get_data(&ChunkId::of(d)).await.expect("kept")[..],
            &d[..]
        );
    }
    assert_eq!(
        &store.get_data(&ChunkId::of(b"after reopen")).await.unwrap()[..],
        b"after reopen"
    );
}
