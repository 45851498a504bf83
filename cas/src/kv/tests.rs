//! The adapter against the real engine: batches, scans, size limits, one process per
//! database, reopening (right after a drop, too), and databases sled wrote converted
//! (also after a crash midway).

use super::*;

#[test]
fn batches_scans_and_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let kv = Kv::open(dir.path()).unwrap();
    let mut b = Batch::default();
    for k in [b"v1", b"v3", b"v2", b"x1"] {
        b.insert(&k[..], &k[..]);
    }
    b.remove(&b"v3"[..]);
    kv.apply(b).unwrap();
    kv.flush_durable().unwrap();
    assert!(
        Kv::open(dir.path()).is_err(),
        "a second open of the same folder must fail"
    );
    drop(kv);
    let kv = Kv::open(dir.path()).unwrap();
    let keys: Vec<_> = kv.scan_prefix(b"v", true).map(|r| r.unwrap().0).collect();
    assert_eq!(keys, vec![b"v2".to_vec(), b"v1".to_vec()]);
    assert_eq!(kv.get(b"x1").unwrap().as_deref(), Some(&b"x1"[..]));
    assert!(!kv.contains(b"v3").unwrap());
    let after: Vec<_> = kv
        .scan_after(b"v", Some(b"v1"))
        .map(|r| r.unwrap().0)
        .collect();
    assert_eq!(after, vec![b"v2".to_vec()]);
}

/// A drop hands the close to a thread of its own; an open of the same folder right
/// after waits for it (the lock would be held otherwise) and leaves nothing closing.
#[test]
fn an_open_right_after_a_drop_waits_for_the_close() {
    let dir = tempfile::tempdir().unwrap();
    for round in 0u32..5 {
        let kv = Kv::open(dir.path()).unwrap();
        assert_eq!(kv.scan_prefix(b"r", false).count(), round as usize);
        let mut b = Batch::default();
        b.insert(format!("r{round}").into_bytes(), vec![1]);
        kv.apply(b).unwrap();
        drop(kv);
    }
    let kv = Kv::open(dir.path()).unwrap();
    assert_eq!(kv.scan_prefix(b"r", false).count(), 5);
    let closing = CLOSING.lock().unwrap();
    assert!(!closing.iter().any(|(p, _)| p == dir.path()));
}

#[test]
#[should_panic(expected = "metadata value of")]
fn a_large_value_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let kv = Kv::open(dir.path()).unwrap();
    let mut b = Batch::default();
    b.insert(&b"k"[..], vec![0u8; MAX_VALUE_LEN + 1]);
    let _ = kv.apply(b);
}

/// `n` keys of 33 bytes, as chunk records are, and their values.
fn pairs(n: u32) -> Vec<Pair> {
    (0..n)
        .map(|i| {
            let mut k = vec![b'c'];
            k.extend_from_slice(blake3::hash(&i.to_le_bytes()).as_bytes());
            (k, i.to_be_bytes().to_vec())
        })
        .collect()
}

/// A database in `dir` written by sled, holding `pairs`.
fn write_with_sled(dir: &Path, pairs: &[Pair]) {
    let db = sled::Config::new().path(dir).open().unwrap();
    for chunk in pairs.chunks(1000) {
        let mut b = sled::Batch::default();
        for (k, v) in chunk {
            b.insert(&k[..], &v[..]);
        }
        db.apply_batch(b).unwrap();
    }
    db.flush().unwrap();
    drop(db);
    // sled's flusher thread keeps the database, and the `flock` on its `db` file, until
    // its next round after the last handle goes: an open right away found it locked.
    let file = std::fs::File::open(dir.join("db")).unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !crate::platform::lock_exclusive(&file).unwrap() {
        assert!(
            std::time::Instant::now() < deadline,
            "sled never let its lock go"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

fn holds_exactly(kv: &Kv, pairs: &[Pair]) {
    let mut want = pairs.to_vec();
    want.sort();
    let got: Vec<Pair> = kv.scan_prefix(b"", false).map(|r| r.unwrap()).collect();
    assert_eq!(got.len(), want.len());
    assert!(got == want, "the pairs differ");
}

#[test]
fn a_database_sled_wrote_is_converted_at_its_first_open() {
    let top = tempfile::tempdir().unwrap();
    let dir = top.path().join("meta");
    let pairs = pairs(40_000);
    write_with_sled(&dir, &pairs);
    let kv = Kv::open(&dir).unwrap();
    holds_exactly(&kv, &pairs);
    assert!(!is_sled(&dir), "sled's files are gone");
    let names: Vec<_> = std::fs::read_dir(top.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, vec!["meta"], "nothing left beside it");
    drop(kv);
    holds_exactly(&Kv::open(&dir).unwrap(), &pairs);
}

#[test]
fn a_conversion_cut_short_is_redone_or_finished() {
    let pairs = pairs(5_000);
    // Cut while copying: a partial new database beside sled's.
    let top = tempfile::tempdir().unwrap();
    let dir = top.path().join("index");
    write_with_sled(&dir, &pairs);
    {
        let (keyspace, part) = open_engine(&beside(&dir, "fjall-new")).unwrap();
        part.insert(b"stale", b"half a copy").unwrap();
        keyspace.persist(PersistMode::SyncAll).unwrap();
    }
    holds_exactly(&Kv::open(&dir).unwrap(), &pairs);

    // Cut between the two renames: sled's folder moved aside, the new one beside it.
    let top = tempfile::tempdir().unwrap();
    let dir = top.path().join("index");
    write_with_sled(&dir, &pairs);
    copy_from_sled(&dir, &beside(&dir, "fjall-new")).unwrap();
    std::fs::rename(&dir, beside(&dir, "sled-old")).unwrap();
    let kv = Kv::open(&dir).unwrap();
    holds_exactly(&kv, &pairs);
    assert!(!beside(&dir, "sled-old").exists() && !beside(&dir, "fjall-new").exists());
}

#[test]
fn concurrent_writes_and_reads_lose_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let kv = Kv::open(dir.path()).unwrap();
    let all = pairs(60_000);
    std::thread::scope(|s| {
        for part in all.chunks(30_000) {
            let kv = kv.clone();
            s.spawn(move || {
                for chunk in part.chunks(512) {
                    let mut b = Batch::default();
                    for (k, v) in chunk {
                        b.insert(k.clone(), v.clone());
                    }
                    kv.apply(b).unwrap();
                    let (k, v) = &chunk[0];
                    assert_eq!(kv.get(k).unwrap().as_ref(), Some(v));
                }
            });
        }
    });
    kv.flush_durable().unwrap();
    drop(kv);
    holds_exactly(&Kv::open(dir.path()).unwrap(), &all);
}
