//! The S3 store against a real S3 server: Garage, started by `scripts/test.sh`, which
//! exports `FVFS_S3_ENDPOINT`, `FVFS_S3_BUCKET` and the credentials. Each test works
//! under its own key prefix.

use std::sync::Arc;

use bytes::Bytes;
use futures::StreamExt;
use fvfs_cas::{frame, ChunkId, ChunkStore, ChunkStoreExt, StoreError};
use fvfs_tiering::s3::{pack, Locations, MemoryLocations};
use fvfs_tiering::seal::MasterKey;
use fvfs_tiering::{Bucket, S3Settings, S3Store};

fn settings(prefix: &str) -> S3Settings {
    let var = |k: &str| {
        std::env::var(k).unwrap_or_else(|_| {
            panic!("{k} is not set: run the tests with scripts/test.sh, which starts Garage")
        })
    };
    S3Settings {
        bucket: var("FVFS_S3_BUCKET"),
        region: Some("garage".into()),
        prefix: Some(format!("{prefix}-{}", std::process::id())),
        endpoint: Some(var("FVFS_S3_ENDPOINT")),
        storage_class: None,
        max_bytes_per_sec: None,
    }
}

async fn store(prefix: &str) -> S3Store {
    let bucket = Bucket::connect(&settings(prefix)).await;
    S3Store::new(bucket, Arc::new(MemoryLocations::default()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passes_conformance_against_garage() {
    fvfs_cas::conformance::run(&store("conformance").await).await;
}

/// An encrypted store (under a key of its own) on `prefix`.
async fn sealed_store(prefix: &str, key: &MasterKey) -> S3Store {
    let bucket = Bucket::connect(&settings(prefix)).await.with_key(key);
    S3Store::new(bucket, Arc::new(MemoryLocations::default()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passes_conformance_encrypted_and_shows_no_id_or_content() {
    let key = MasterKey::generate();
    let s = sealed_store("sealed", &key).await;
    fvfs_cas::conformance::run(&s).await;
    let data = b"a line that must not be readable in the bucket ".repeat(100);
    let id = s.put_data(&data).await.unwrap();
    s.sync().await.unwrap();
    let mut seen = 0;
    for obj in s.bucket().list("packs/").await.unwrap() {
        let bytes = s.bucket().get(&obj.key).await.unwrap().unwrap();
        assert!(
            !bytes.windows(32).any(|w| w == id.as_bytes()),
            "{} shows an id",
            obj.key
        );
        assert!(
            !bytes.windows(20).any(|w| w == &data[..20]),
            "{} shows content",
            obj.key
        );
        seen += 1;
    }
    assert!(seen > 0);
    // The same key reads it back from the pack indexes alone; another key reads nothing.
    let found = scan(&sealed_store("sealed", &key).await).await;
    assert!(found.iter().any(|f| f.id == id));
    let other = sealed_store("sealed", &MasterKey::generate()).await;
    assert!(scan(&other).await.is_empty());
    // A changed byte in a sealed frame is corrupt, not returned.
    let listed = s.bucket().list("packs/").await.unwrap();
    let holding = found.iter().find(|f| f.id == id).unwrap();
    let key_name = listed
        .iter()
        .find(|o| o.key.ends_with(&hex::encode(holding.loc.pack)))
        .unwrap()
        .key
        .clone();
    let mut object = s.bucket().get(&key_name).await.unwrap().unwrap().to_vec();
    object[holding.loc.offset as usize + 30] ^= 0x01;
    s.bucket()
        .put(&key_name, Bytes::from(object))
        .await
        .unwrap();
    let locs = Arc::new(MemoryLocations::default());
    let bucket = Bucket::connect(&settings("sealed")).await.with_key(&key);
    let fresh = S3Store::new(bucket, locs.clone());
    let found = scan(&fresh).await;
    locs.record(&found.iter().map(|f| (f.id, f.loc)).collect::<Vec<_>>())
        .unwrap();
    match fresh.get(&id).await {
        Err(StoreError::Corrupt { reason, .. }) => {
            assert!(reason.contains("authentication"), "{reason}")
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_chunks_make_one_pack_read_by_block() {
    let s = store("packing").await;
    let chunks: Vec<Vec<u8>> = (0..300u32)
        .map(|i| {
            let mut c = i.to_le_bytes().to_vec();
            c.extend((0..2996u32).map(|j| (i * 7 + j * 13) as u8));
            c
        })
        .collect();
    for c in &chunks {
        s.put_data(c).await.unwrap();
    }
    s.sync().await.unwrap();
    assert_eq!(s.requests().puts, 1, "300 chunks are one pack, one PUT");
    let packs = s.bucket().list("packs/").await.unwrap();
    assert_eq!(packs.len(), 1);

    // A fresh store (new locations) rebuilds them from the pack index alone.
    let fresh = store("packing").await;
    let found = scan(&fresh).await;
    assert_eq!(found.len(), chunks.len());
    // One chunk read takes its block of the pack along: the reads after it (here,
    // of the whole small pack) need no request of their own.
    let before = s.requests();
    for c in chunks.iter().step_by(37) {
        assert_eq!(&s.get_data(&ChunkId::of(c)).await.unwrap()[..], &c[..]);
    }
    assert_eq!((s.requests() - before).gets, 1);

    // Read in bulk by a store that kept nothing yet, the whole pack comes in one GET,
    // each chunk verified; two reads planned at once share it.
    let locs = Arc::new(MemoryLocations::default());
    let found_locs: Vec<_> = found.iter().map(|f| (f.id, f.loc)).collect();
    locs.record(&found_locs).unwrap();
    let fresh = S3Store::new(Bucket::connect(&settings("packing")).await, locs);
    let before = fresh.requests();
    let ids: Vec<ChunkId> = chunks.iter().map(|c| ChunkId::of(c)).collect();
    let (first, second) = ids.split_at(ids.len() / 2);
    let (mut got, more): (Vec<_>, Vec<_>) = futures::join!(
        fresh.get_many(first.to_vec()).collect(),
        fresh.get_many(second.to_vec()).collect()
    );
    got.extend(more);
    assert_eq!((fresh.requests() - before).gets, 1);
    assert_eq!(got.len(), chunks.len());
    for (id, r) in got {
        let data = r.unwrap().data;
        assert_eq!(ChunkId::of(&data), id);
    }
    // Read again, from the blocks kept.
    let before = fresh.requests();
    let again: Vec<_> = fresh.get_many(ids.clone()).collect().await;
    assert!(again.iter().all(|(_, r)| r.is_ok()));
    assert_eq!((fresh.requests() - before).gets, 0);
    let raw: u64 = found.iter().map(|f| u64::from(f.raw_len)).sum();
    assert_eq!(raw, 300 * 3000);
}

/// A read passing through (an export's) keeps nothing its own GETs bring, so an
/// export neither grows by the blocks kept nor pushes out the daemon's; it takes what
/// other reads kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_passing_through_takes_kept_blocks_and_keeps_none() {
    let s = store("passing").await;
    let chunks: Vec<Vec<u8>> = (0..100u32).map(|i| noise(u64::from(i), 5000)).collect();
    for c in &chunks {
        s.put_data(c).await.unwrap();
    }
    s.sync().await.unwrap();
    let found = scan(&s).await;
    let locs = Arc::new(MemoryLocations::default());
    let found_locs: Vec<_> = found.iter().map(|f| (f.id, f.loc)).collect();
    locs.record(&found_locs).unwrap();
    let fresh = S3Store::new(Bucket::connect(&settings("passing")).await, locs);
    let ids: Vec<ChunkId> = chunks.iter().map(|c| ChunkId::of(c)).collect();
    // (passing through, GETs it makes, why)
    for (passing, want, why) in [
        (true, 1, "nothing is kept yet"),
        (true, 1, "nothing was kept by the first"),
        (false, 1, "nothing is kept yet, and this read keeps"),
        (true, 0, "what a read kept is taken"),
    ] {
        let before = fresh.requests();
        let read: Vec<_> = match passing {
            true => fresh.get_many_passing(ids.clone()),
            false => fresh.get_many(ids.clone()),
        }
        .collect()
        .await;
        assert_eq!(read.len(), ids.len());
        for (id, r) in read {
            assert_eq!(ChunkId::of(&r.unwrap().data), id);
        }
        assert_eq!((fresh.requests() - before).gets, want, "{why}");
    }
}

/// Every chunk `s`'s pack indexes name.
async fn scan(s: &S3Store) -> Vec<fvfs_tiering::Recovered> {
    let mut found = Vec::new();
    s.scan_packs(|_| {}, |pack| found.extend(pack))
        .await
        .unwrap();
    found
}

/// Which packs the chunks of `store`'s prefix are in, as its pack indexes say.
async fn packs_of(prefix: &str) -> std::collections::HashMap<ChunkId, [u8; 32]> {
    let found = scan(&store(prefix).await).await;
    found.iter().map(|f| (f.id, f.loc.pack)).collect()
}

/// Asserts that no pack holds both an id of `nodes` and one of `data`, and that both
/// are all in the bucket.
fn kept_apart(
    packs: &std::collections::HashMap<ChunkId, [u8; 32]>,
    nodes: &[ChunkId],
    data: &[ChunkId],
) {
    let of = |ids: &[ChunkId]| -> std::collections::HashSet<[u8; 32]> {
        ids.iter()
            .map(|id| {
                *packs
                    .get(id)
                    .unwrap_or_else(|| panic!("{id} is in no pack"))
            })
            .collect()
    };
    let (node_packs, data_packs) = (of(nodes), of(data));
    assert!(
        node_packs.is_disjoint(&data_packs),
        "{} packs hold nodes and file content",
        node_packs.intersection(&data_packs).count()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tree_nodes_fill_packs_of_their_own_and_compaction_keeps_them_apart() {
    use fvfs_tiering::s3::Packs;
    let locs = Arc::new(MemoryLocations::default());
    let s = S3Store::new(
        Bucket::connect(&settings("apart")).await,
        locs.clone() as Arc<dyn Locations>,
    );
    // Written interleaved, as a replication of files and their folders goes.
    let (mut nodes, mut data) = (Vec::new(), Vec::new());
    for i in 0..400u64 {
        let node = format!("node {i} ").repeat(40).into_bytes();
        let content = noise(i, 50_000);
        for (chunk, ids, put_node) in [(&node, &mut nodes, true), (&content, &mut data, false)] {
            let id = ChunkId::of(chunk);
            let f = Bytes::from(frame::encode(chunk));
            if put_node {
                s.put_node(id, f).await.unwrap();
            } else {
                s.put(id, f).await.unwrap();
            }
            ids.push(id);
        }
    }
    s.sync().await.unwrap();
    let packs = packs_of("apart").await;
    kept_apart(&packs, &nodes, &data);
    let pack_count = |p: &std::collections::HashMap<ChunkId, [u8; 32]>| {
        p.values().collect::<std::collections::HashSet<_>>().len()
    };
    assert!(pack_count(&packs) >= 2, "20 MB of content and the nodes");

    // Half of each dropped: compaction rewrites every pack, still apart.
    for id in nodes.iter().chain(&data).skip(1).step_by(2) {
        s.delete(id).await.unwrap();
    }
    let is_node = |id: &ChunkId| nodes.contains(id);
    let report = Packs::compact(&s, 0.9, false, &is_node, None)
        .await
        .unwrap();
    assert!(report.packs_rewritten > 0, "{report:?}");
    let kept: Vec<ChunkId> = nodes.iter().chain(&data).step_by(2).copied().collect();
    let packs = packs_of("apart").await;
    let (nodes, data): (Vec<ChunkId>, Vec<ChunkId>) =
        kept.iter().partition(|id| nodes.contains(id));
    kept_apart(&packs, &nodes, &data);
    for id in &kept {
        assert!(s.get(id).await.is_ok(), "{id} lost in compaction");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_pack_byte_is_reported_not_returned() {
    let s = store("corrupt").await;
    let data = b"the only copy".repeat(50);
    let id = s.put_data(&data).await.unwrap();
    s.sync().await.unwrap();
    let listed = s.bucket().list("packs/").await.unwrap();
    let key = &listed[0].key;
    let mut object = s.bucket().get(key).await.unwrap().unwrap().to_vec();
    object[frame::HEADER_LEN + 2] ^= 0x55;
    s.bucket().put(key, Bytes::from(object)).await.unwrap();
    assert!(matches!(s.get(&id).await, Err(StoreError::Corrupt { .. })));
    let entries = pack::parse_tail(
        &s.bucket().get(key).await.unwrap().unwrap(),
        listed[0].size,
        None,
    );
    assert!(
        entries.is_ok(),
        "the index is intact, only the frame is bad"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_does_not_answer_is_unavailable_and_loses_nothing() {
    let mut bad = settings("down");
    // A port nobody listens on: connection refused at once.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    bad.endpoint = Some(format!("http://{}", listener.local_addr().unwrap()));
    drop(listener);
    let s = S3Store::new(
        Bucket::connect(&bad).await,
        Arc::new(MemoryLocations::default()),
    );
    let id = s.put_data(b"kept while S3 is down").await.unwrap();
    assert!(matches!(s.sync().await, Err(StoreError::Unavailable(_))));
    assert_eq!(
        &s.get_data(&id).await.unwrap()[..],
        b"kept while S3 is down",
        "the frame waits in the open pack for the next sync"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_bucket_is_a_clear_error() {
    let mut missing = settings("nobucket");
    missing.bucket = "no-such-bucket-fvfs".into();
    let s = S3Store::new(
        Bucket::connect(&missing).await,
        Arc::new(MemoryLocations::default()),
    );
    s.put_data(b"x").await.unwrap();
    let err = s.sync().await.unwrap_err().to_string();
    assert!(err.contains("no-such-bucket-fvfs"), "{err}");
    assert!(err.contains("NoSuchBucket"), "{err}");
}

/// Incompressible bytes, different for each `seed`.
fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Under a limit, the pack uploads running side by side together send at its rate
/// (within 10 % over a 30 s upload), and packs in a storage class are accepted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_uploads_together_hold_the_rate_limit() {
    let rate = 4_000_000.0;
    let paced = S3Settings {
        max_bytes_per_sec: Some(rate),
        storage_class: Some("STANDARD_IA".into()),
        ..settings("paced")
    };
    let s = S3Store::new(
        Bucket::connect(&paced).await,
        Arc::new(MemoryLocations::default()),
    );
    // 120 MiB: three full packs uploaded side by side in the background while the
    // rest fills the open pack, which goes at sync. About 31 s at the limit.
    let chunks: Vec<Vec<u8>> = (0..120u64).map(|i| noise(i, 1 << 20)).collect();
    let started = std::time::Instant::now();
    for c in &chunks {
        s.put_data(c).await.unwrap();
    }
    s.sync().await.unwrap();
    let took = started.elapsed().as_secs_f64();
    let sent = s.requests().put_bytes as f64;
    assert!(sent > 120.0 * f64::from(1 << 20), "{sent} bytes sent");
    let ratio = sent / took / rate;
    eprintln!("{sent} bytes in {took:.2} s: {ratio:.3} of the limit");
    assert!(
        (0.9..=1.1).contains(&ratio),
        "{sent} bytes in {took:.1} s: {ratio:.3} of the limit"
    );
    assert_eq!(s.requests().puts, 4);
}

/// With a flush policy that never syncs on its own, the copies in each pack that
/// filled up (stored in the background) are confirmed as it lands: their S3 bits set
/// and their queue entries gone, while the open pack's chunks wait; a flush then
/// stores that pack and confirms the rest.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copies_are_confirmed_as_their_packs_land_not_only_at_a_flush() {
    use fvfs_manifest::kv::Kv;
    use fvfs_manifest::meta::TIER_S3;
    use fvfs_manifest::{ChunkKind, Pending, Repo};
    use fvfs_tiering::{FlushPolicy, Replication, Replicator, Running, Tier, TierId, TierIndex};

    let dir = tempfile::tempdir().unwrap();
    let kv = Kv::open(&dir.path().join("meta")).unwrap();
    let index = Arc::new(TierIndex::new(&kv, TIER_S3));
    let repo = Arc::new(Repo::new(Arc::new(fvfs_cas::MemoryStore::new()), kv, index));
    // 40 MiB of incompressible chunks: one full pack and part of the next.
    let pending = Pending::default();
    let mut ids = Vec::new();
    for i in 0..160u64 {
        let data = noise(i, 256 << 10);
        ids.push(
            repo.put_chunk(&pending, &data, ChunkKind::Data)
                .await
                .unwrap(),
        );
    }
    repo.checkpoint(&pending).await.unwrap();
    let s3 = Arc::new(store("settle").await);
    let never = FlushPolicy {
        size_bytes: u64::MAX,
        interval: std::time::Duration::from_secs(3600),
    };
    let tier = Tier {
        id: TierId::S3,
        store: s3.clone(),
        run: Running {
            watermarks: None,
            flush: never,
        },
    };
    let r = Replicator::spawn(repo.clone(), &tier, None);
    let on_s3 = |repo: &Repo| {
        ids.iter()
            .filter(|id| repo.chunk_record(id).unwrap().unwrap().tiers & TIER_S3 != 0)
            .count()
    };
    // No signal tells a test that a background upload landed: look until it has.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while on_s3(&repo) == 0 {
        assert!(std::time::Instant::now() < deadline, "nothing confirmed");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let confirmed = on_s3(&repo);
    assert!(confirmed < ids.len(), "the open pack waits for a sync");
    assert_eq!(
        r.status(&repo).unwrap().pending as usize,
        ids.len() - confirmed
    );
    assert_eq!(
        s3.requests().puts,
        1,
        "one full pack stored, the open one not"
    );
    r.drain(&repo).await.unwrap();
    assert_eq!(on_s3(&repo), ids.len());
    assert!(repo.replication_drained(TIER_S3).unwrap());
    assert_eq!(s3.requests().puts, 2);
    r.stop(std::time::Duration::from_secs(10)).await;
}

/// A GET's body cut into pieces as it arrives: every piece full but the last, nothing
/// lost or repeated at the cuts, whatever sizes the connection delivers it in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_read_in_pieces_is_the_object_cut_at_the_piece_size() {
    let bucket = Bucket::connect(&settings("pieces")).await;
    let object: Vec<u8> = (0..(10 << 20) + 123u32).map(|i| (i % 251) as u8).collect();
    bucket
        .put("cut", Bytes::from(object.clone()))
        .await
        .unwrap();
    let piece = 4 << 20;
    let pieces = bucket
        .get_pieces("cut", None, piece)
        .await
        .unwrap()
        .unwrap();
    let lens: Vec<usize> = pieces.iter().map(Bytes::len).collect();
    assert_eq!(lens, [piece, piece, (2 << 20) + 123]);
    assert_eq!(pieces.concat(), object);

    // A range, and a piece size the body is no multiple of.
    let range = Some(format!("bytes={}-{}", 1_000, 5_000_000));
    let pieces = bucket
        .get_pieces("cut", range, 1 << 20)
        .await
        .unwrap()
        .unwrap();
    assert!(pieces[..pieces.len() - 1]
        .iter()
        .all(|p| p.len() == 1 << 20));
    assert_eq!(pieces.concat(), object[1_000..=5_000_000]);
    let whole = bucket.get_range("cut", None).await.unwrap().unwrap();
    assert_eq!(whole, object);
    assert!(bucket
        .get_pieces("none", None, piece)
        .await
        .unwrap()
        .is_none());
}

/// Text that compresses, different for each `seed` (a file of source, a document).
fn text(seed: u64, len: usize) -> Vec<u8> {
    let words = [
        "fn", "let", "match", "store", "block", "pack", "chunk", "read",
    ];
    let mut out = format!("// file {seed}\n").into_bytes();
    let mut x = seed | 1;
    while out.len() < len {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        out.extend_from_slice(words[(x >> 60) as usize % words.len()].as_bytes());
        out.push(if x & 7 == 0 { b'\n' } else { b' ' });
    }
    out.truncate(len);
    out
}

/// Compaction packs what it moves into blocks (issue 47): text frames into blocks,
/// noise as it was stored; every chunk reads back, alone and in bulk, a fresh store
/// finds each member and its share from the pack indexes alone, a second compaction
/// repacks blocks mostly dead, and a damaged byte of a block fails the members it
/// reaches (all of them when sealed), with pack and offset, and no other chunk. Clear
/// and encrypted.
async fn compaction_into_blocks(prefix: &str, key: Option<&MasterKey>) {
    use fvfs_tiering::s3::Packs;
    let connect = || async {
        let b = Bucket::connect(&settings(prefix)).await;
        match key {
            Some(k) => b.with_key(k),
            None => b,
        }
    };
    let locs = Arc::new(MemoryLocations::default());
    let s = S3Store::new(connect().await, locs.clone() as Arc<dyn Locations>);
    let texts: Vec<Vec<u8>> = (0..600)
        .map(|i| text(i, 6000 + i as usize % 3000))
        .collect();
    let noises: Vec<Vec<u8>> = (0..30).map(|i| noise(i, 40_000)).collect();
    for c in texts.iter().chain(&noises) {
        s.put_data(c).await.unwrap();
    }
    s.sync().await.unwrap();
    let bytes_before = s.usage().await.unwrap().bytes;

    // Two thirds dropped: every pack is rewritten.
    let all: Vec<&Vec<u8>> = texts.iter().chain(&noises).collect();
    let (mut live, mut dropped) = (Vec::new(), Vec::new());
    for (i, c) in all.iter().enumerate() {
        match i % 3 {
            0 => live.push(*c),
            _ => dropped.push(*c),
        }
    }
    for c in &dropped {
        s.delete(&ChunkId::of(c)).await.unwrap();
    }
    let report = Packs::compact(&s, 0.9, false, &|_: &ChunkId| false, None)
        .await
        .unwrap();
    assert!(report.packs_rewritten > 0, "{report:?}");
    let where_is: std::collections::HashMap<ChunkId, fvfs_tiering::PackLoc> =
        locs.all().unwrap().into_iter().collect();
    assert_eq!(where_is.len(), live.len());
    for c in &live {
        let loc = where_is[&ChunkId::of(c)];
        let compresses = texts.contains(c);
        assert_eq!(
            loc.member.is_some(),
            compresses,
            "text in blocks, noise as stored"
        );
    }
    // A third of the chunks, text now compressed with context: less than a third.
    let bytes_after = s.usage().await.unwrap().bytes;
    let noise_bytes = |n: usize| (n * (40_000 + frame::HEADER_LEN)) as u64;
    let live_noise = live.iter().filter(|c| noises.contains(c)).count();
    let (text_before, text_after) = (
        bytes_before - noise_bytes(noises.len()),
        bytes_after - noise_bytes(live_noise),
    );
    assert!(
        text_after * 3 * 10 < text_before * 8,
        "text: {text_after} bytes after, {text_before} before"
    );

    let ids: Vec<ChunkId> = live.iter().map(|c| ChunkId::of(c)).collect();
    for c in live.iter().step_by(17) {
        assert_eq!(&s.get_data(&ChunkId::of(c)).await.unwrap()[..], &c[..]);
    }
    for c in dropped.iter().step_by(17) {
        assert!(matches!(
            s.get(&ChunkId::of(c)).await,
            Err(StoreError::NotFound(_))
        ));
    }
    let fresh = S3Store::new(connect().await, locs.clone() as Arc<dyn Locations>);
    let got: Vec<_> = fresh.get_many(ids.clone()).collect().await;
    assert_eq!(got.len(), live.len());
    for (id, r) in got {
        let data = r.unwrap_or_else(|e| panic!("{id}: {e}")).data;
        assert_eq!(ChunkId::of(&data), id);
    }

    // From the pack indexes alone: each live chunk, members with shares summing to
    // their block's bytes (the old packs are gone).
    let found = scan(&fresh).await;
    let mut recovered: std::collections::HashMap<ChunkId, fvfs_tiering::PackLoc> =
        found.iter().map(|f| (f.id, f.loc)).collect();
    assert_eq!(recovered, where_is);
    let mut by_block: std::collections::HashMap<([u8; 32], u64), (u64, u32)> = Default::default();
    for loc in recovered.values().filter(|l| l.member.is_some()) {
        let b = by_block
            .entry((loc.pack, loc.offset))
            .or_insert((0, loc.len));
        b.0 += u64::from(loc.live_len());
    }
    assert!(!by_block.is_empty());
    assert!(by_block.values().all(|(sum, len)| *sum == u64::from(*len)));

    // Most members of every block dropped: the next compaction repacks the rest.
    let (mut keep, mut drop) = (Vec::new(), Vec::new());
    for (i, id) in ids.iter().enumerate() {
        match i % 4 == 0 || where_is[id].member.is_none() {
            true => keep.push(*id),
            false => drop.push(*id),
        }
    }
    for id in &drop {
        s.delete(id).await.unwrap();
        recovered.remove(id);
    }
    Packs::compact(&s, 0.9, false, &|_: &ChunkId| false, None)
        .await
        .unwrap();
    let moved: std::collections::HashMap<ChunkId, fvfs_tiering::PackLoc> =
        locs.all().unwrap().into_iter().collect();
    assert_eq!(moved.len(), keep.len());
    for id in &keep {
        if recovered[id].member.is_some() {
            assert_ne!(moved[id].pack, recovered[id].pack, "{id} repacked");
            assert!(moved[id].member.is_some(), "{id} in a block again");
        }
        let data = s.get_data(id).await.unwrap();
        assert_eq!(ChunkId::of(&data), *id);
    }

    // One byte of a block damaged: its members fail (naming pack and offset), the
    // pack's other chunks read.
    let vloc = *moved.values().find(|l| l.member.is_some()).unwrap();
    let key_of = format!("packs/{}", hex::encode(vloc.pack));
    let mut object = s.bucket().get(&key_of).await.unwrap().unwrap().to_vec();
    object[(vloc.offset + u64::from(vloc.len) / 2) as usize] ^= 0x40;
    s.bucket().put(&key_of, Bytes::from(object)).await.unwrap();
    let fresh = S3Store::new(connect().await, locs.clone() as Arc<dyn Locations>);
    let in_pack: Vec<ChunkId> = moved
        .iter()
        .filter(|(_, l)| l.pack == vloc.pack)
        .map(|(id, _)| *id)
        .collect();
    let got: Vec<_> = fresh.get_many(in_pack).collect().await;
    let mut failed = 0;
    for (id, r) in got {
        let same_block = moved[&id].offset == vloc.offset;
        match r {
            Err(StoreError::Corrupt { reason, .. }) if same_block => {
                assert!(reason.contains(&hex::encode(vloc.pack)), "{reason}");
                assert!(reason.contains(&format!("at {}", vloc.offset)), "{reason}");
                failed += 1;
            }
            Ok(l) if !same_block || key.is_none() => assert_eq!(ChunkId::of(&l.data), id),
            other => panic!(
                "{id} (in the damaged block: {same_block}): {:?}",
                other.map(|_| ())
            ),
        }
    }
    let members = moved
        .values()
        .filter(|l| (l.pack, l.offset) == (vloc.pack, vloc.offset))
        .count();
    // Each member is checked against its id: in the clear, those whose bytes the flip
    // missed are whole and read; sealed, the block opens whole or not at all.
    assert!(failed >= 1);
    if key.is_some() {
        assert_eq!(failed, members);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compaction_packs_moved_chunks_into_blocks() {
    compaction_into_blocks("blocks", None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compaction_packs_moved_chunks_into_sealed_blocks() {
    compaction_into_blocks("sealed-blocks", Some(&MasterKey::generate())).await;
}

/// The S3 tier follows the local blocks (issue 47): once the local tier's idle rewrite
/// packed chunks S3 holds as frames into blocks, each such block is uploaded whole and
/// its members' locations switch to it; a block with a member S3 does not hold yet is
/// left to replication; a second round finds nothing to do; every chunk reads back,
/// a fresh store finds the blocks from the pack indexes, and compaction gives back the
/// frames superseded, taking what it moves from the local tier rather than a GET.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_follows_the_local_blocks() {
    use fvfs_cas::{PackOptions, PackStore};
    use fvfs_tiering::s3::Packs;
    let dir = tempfile::tempdir().unwrap();
    let opts = PackOptions {
        segment_bytes: 1 << 20,
        ..PackOptions::default()
    };
    let local = PackStore::open(dir.path().join("local"), opts).unwrap();
    let locs = Arc::new(MemoryLocations::default());
    let s = S3Store::new(
        Bucket::connect(&settings("follow")).await,
        locs.clone() as Arc<dyn Locations>,
    );
    let mut copied = Vec::new();
    for i in 0..300 {
        copied.push(
            local
                .put_data(&text(i, 2_000 + (i as usize * 997) % 30_000))
                .await
                .unwrap(),
        );
    }
    for i in 0..10 {
        copied.push(local.put_data(&noise(i, 40_000)).await.unwrap());
    }
    local.sync().await.unwrap();
    // Replicated as the replicator does: the frames, as the local tier keeps them.
    let frames: Vec<_> = local.copy_frames(copied.clone()).collect().await;
    for (id, f) in frames {
        s.put(id, f.unwrap()).await.unwrap();
    }
    s.sync().await.unwrap();
    // Written after the copy: not in S3 yet.
    let mut later = Vec::new();
    for i in 300..320 {
        later.push(local.put_data(&text(i, 5_000)).await.unwrap());
    }
    local.sync().await.unwrap();
    let bucket_bytes = |s: &S3Store| {
        let b = s.bucket().clone();
        async move {
            b.list("packs/")
                .await
                .unwrap()
                .iter()
                .map(|o| o.size)
                .sum::<u64>()
        }
    };
    let before = (s.usage().await.unwrap().bytes, bucket_bytes(&s).await);

    let rewritten = local.recompress(u64::MAX, 2, None).await.unwrap();
    assert!(rewritten.rewritten > 0, "{rewritten:?}");
    // Ten chunks taken for tree nodes: they keep their frames (nodes stay in packs of
    // their own).
    let nodes: Vec<ChunkId> = copied[..10].to_vec();
    let is_node = |id: &ChunkId| nodes.contains(id);
    let (followed, next) = s
        .follow_blocks(&local, None, 10_000, &is_node)
        .await
        .unwrap();
    for id in &nodes {
        assert_eq!(
            locs.get(id).unwrap().unwrap().member,
            None,
            "node {id} in a block"
        );
    }
    assert!(followed.blocks >= 2, "{followed:?}");
    assert_eq!(next, None, "every local block looked at");
    let places = local.blocks_after(None, 10_000).await.unwrap();
    assert_eq!(followed.looked, places.len() as u64);

    let mut in_blocks = 0;
    for place in &places {
        let mut copy = local.block_at(*place).await.unwrap().unwrap();
        copy.live.retain(|(id, ..)| !nodes.contains(id));
        let at: Vec<Option<fvfs_tiering::PackLoc>> = copy
            .live
            .iter()
            .map(|(id, ..)| locs.get(id).unwrap())
            .collect();
        if copy.live.iter().any(|(id, ..)| later.contains(id)) {
            // Left to replication: its members S3 has keep their frames.
            assert!(at.iter().flatten().all(|l| l.member.is_none()));
            continue;
        }
        let first = at[0].unwrap();
        for (loc, (_, index, _)) in at.iter().zip(&copy.live) {
            let loc = loc.unwrap();
            assert_eq!(
                (loc.pack, loc.offset),
                (first.pack, first.offset),
                "one S3 block"
            );
            assert_eq!(loc.member.map(|m| m.index), Some(*index));
        }
        in_blocks += copy.live.len() as u64;
    }
    assert_eq!(in_blocks, followed.chunks);

    // Page by page, as the daemon goes: nothing left to do.
    let again = s.follow_all(&local, &is_node).await.unwrap();
    assert_eq!((again.blocks, again.chunks), (0, 0), "{again:?}");
    assert_eq!(again.looked, places.len() as u64);

    // Every chunk S3 holds reads back, from a store that decoded nothing yet.
    let fresh = S3Store::new(
        Bucket::connect(&settings("follow")).await,
        locs.clone() as Arc<dyn Locations>,
    );
    let got: Vec<_> = fresh.get_many(copied.clone()).collect().await;
    assert_eq!(got.len(), copied.len());
    for (id, r) in got {
        assert_eq!(
            ChunkId::of(&r.unwrap_or_else(|e| panic!("{id}: {e}")).data),
            id
        );
    }
    let found: std::collections::HashMap<ChunkId, fvfs_tiering::PackLoc> = scan(&fresh)
        .await
        .into_iter()
        .filter(|f| f.loc.member.is_some())
        .map(|f| (f.id, f.loc))
        .collect();
    for (id, loc) in locs.all().unwrap() {
        if loc.member.is_some() {
            assert_eq!(found.get(&id), Some(&loc), "{id} found in its block");
        }
    }

    // The frames superseded are dead: S3 counts less, and compaction gives it back.
    let after_usage = s.usage().await.unwrap().bytes;
    assert!(
        after_usage * 10 < before.0 * 9,
        "{after_usage} vs {}",
        before.0
    );
    // The local tier holds every live chunk of the packs rewritten: none is read
    // from the bucket (no egress).
    let gets = s.requests().gets;
    let report = Packs::compact(&s, 0.9, false, &is_node, Some(&local))
        .await
        .unwrap();
    assert!(report.packs_rewritten > 0, "{report:?}");
    assert_eq!(s.requests().gets, gets, "{report:?}");
    let after_bucket = bucket_bytes(&s).await;
    assert!(
        after_bucket * 10 < before.1 * 9,
        "{after_bucket} vs {}",
        before.1
    );
    for id in &copied {
        assert_eq!(ChunkId::of(&s.get_data(id).await.unwrap()), *id);
    }
}
