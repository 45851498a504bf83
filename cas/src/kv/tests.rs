//! The adapter against a real sled: batches, scans, size limits, reopening and the
//! durable flush.

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
}

/// sled's snapshots, `snap.<log position>`: the newest position covered.
fn snapshot_position(dir: &Path) -> Option<u64> {
    std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| {
            let name = e.unwrap().file_name().into_string().ok()?;
            u64::from_str_radix(name.strip_prefix("snap.")?, 16).ok()
        })
        .max()
}

#[test]
fn a_folded_log_is_in_a_newer_snapshot_and_reads_back() {
    let dir = tempfile::tempdir().unwrap();
    let kv = Kv::open(dir.path()).unwrap();
    for i in 0..2000u32 {
        let mut b = Batch::default();
        b.insert(i.to_be_bytes().to_vec(), vec![7u8; 100]);
        kv.apply(b).unwrap();
    }
    kv.flush_durable().unwrap();
    let before = snapshot_position(dir.path());
    drop(kv);
    Kv::fold_log(dir.path()).unwrap();
    let after = snapshot_position(dir.path());
    assert!(after > before, "{before:?} -> {after:?}");
    let kv = Kv::open(dir.path()).unwrap();
    assert_eq!(kv.scan_prefix(b"", false).count(), 2000);
    assert_eq!(
        kv.get(&1999u32.to_be_bytes()).unwrap(),
        Some(vec![7u8; 100])
    );
}

/// A handle folding every 100 operations, what it holds after `n` writes
/// flushed in tens, and the snapshot's position before and after.
fn write_folding(dir: &Path, n: u32) -> (Kv, Option<u64>, Option<u64>) {
    let kv = Kv::open_folding(dir, 100).unwrap();
    let before = snapshot_position(dir);
    for i in 0..n {
        let mut b = Batch::default();
        b.insert(i.to_be_bytes().to_vec(), vec![7u8; 100]);
        kv.apply(b).unwrap();
        if i % 10 == 9 {
            kv.flush_durable().unwrap();
        }
    }
    let after = snapshot_position(dir);
    (kv, before, after)
}

fn copy_tree(from: &Path, to: &Path) {
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            std::fs::create_dir(&target).unwrap();
            copy_tree(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), target).unwrap();
        }
    }
}

#[test]
fn an_open_database_folds_itself_and_keeps_everything() {
    let dir = tempfile::tempdir().unwrap();
    let (kv, before, after) = write_folding(dir.path(), 1000);
    assert!(
        after > before,
        "no fold while open: {before:?} -> {after:?}"
    );
    assert_eq!(kv.scan_prefix(b"", false).count(), 1000);
    // A start after a kill (the handle forgotten, nothing folded at the end)
    // replays only what came after the last fold, and finds everything.
    std::mem::forget(kv);
    // (It still holds sled's lock in this process: the files are opened as a copy.)
    let copy = tempfile::tempdir().unwrap();
    copy_tree(dir.path(), copy.path());
    let kv = Kv::open(copy.path()).unwrap();
    assert_eq!(kv.scan_prefix(b"", false).count(), 1000);
    assert_eq!(kv.get(&999u32.to_be_bytes()).unwrap(), Some(vec![7u8; 100]));
}

#[test]
fn a_live_scan_puts_the_fold_off() {
    let dir = tempfile::tempdir().unwrap();
    let (kv, _, first) = write_folding(dir.path(), 100);
    let scan = kv.scan_after(b"", None);
    for i in 100..300u32 {
        let mut b = Batch::default();
        b.insert(i.to_be_bytes().to_vec(), vec![1u8; 10]);
        kv.apply(b).unwrap();
    }
    assert_eq!(snapshot_position(dir.path()), first, "folded under a scan");
    assert_eq!(scan.count(), 300, "a scan reads the live database");
    kv.apply(Batch::default()).unwrap();
    assert!(snapshot_position(dir.path()) > first);
    assert_eq!(kv.scan_prefix(b"", false).count(), 300);
}

#[test]
fn folds_beside_concurrent_writes_and_reads_lose_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let kv = Kv::open_folding(dir.path(), 50).unwrap();
    let before = snapshot_position(dir.path());
    std::thread::scope(|s| {
        for t in 0..3u32 {
            let kv = kv.clone();
            s.spawn(move || {
                for i in 0..400u32 {
                    let key = [t.to_be_bytes(), i.to_be_bytes()].concat();
                    let mut b = Batch::default();
                    b.insert(key.clone(), key.clone());
                    kv.apply(b).unwrap();
                    assert_eq!(kv.get(&key).unwrap().as_deref(), Some(&key[..]));
                    if i % 7 == 0 {
                        kv.flush_durable().unwrap();
                    }
                    if i % 50 == 0 {
                        let mine = kv.scan_prefix(&t.to_be_bytes(), false).count();
                        assert_eq!(mine, i as usize + 1);
                    }
                }
            });
        }
    });
    kv.flush_durable().unwrap();
    assert!(snapshot_position(dir.path()) > before, "never folded");
    drop(kv);
    let kv = Kv::open(dir.path()).unwrap();
    assert_eq!(kv.scan_prefix(b"", false).count(), 1200);
}

#[test]
fn a_database_whose_folder_went_away_keeps_its_handle_and_creates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (home, moved) = (dir.path().join("index"), dir.path().join("moved"));
    let (kv, _, _) = write_folding(&home, 100);
    // What an unmounted share leaves: nothing where the database was.
    std::fs::rename(&home, &moved).unwrap();
    let first = snapshot_position(&moved);
    for i in 100..350u32 {
        let mut b = Batch::default();
        b.insert(i.to_be_bytes().to_vec(), vec![2u8; 10]);
        kv.apply(b).unwrap();
    }
    assert!(!home.exists(), "a fold made a new database in its place");
    assert_eq!(snapshot_position(&moved), first);
    assert_eq!(kv.scan_prefix(b"", false).count(), 350);
    // Back where it was: the next apply folds it.
    std::fs::rename(&moved, &home).unwrap();
    kv.apply(Batch::default()).unwrap();
    assert!(snapshot_position(&home) > first);
    kv.flush_durable().unwrap();
    drop(kv);
    assert_eq!(
        Kv::open(&home).unwrap().scan_prefix(b"", false).count(),
        350
    );
}

#[test]
fn folding_where_no_database_is_creates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let gone = dir.path().join("index");
    Kv::fold_log(&gone).unwrap();
    assert!(!gone.exists());
    std::fs::create_dir(&gone).unwrap();
    Kv::fold_log(&gone).unwrap();
    assert_eq!(std::fs::read_dir(&gone).unwrap().count(), 0);
}

/// A key of the filtered prefix: `b'c'` and the hash of `n`.
fn hashed(n: u64) -> Vec<u8> {
    [&b"c"[..], blake3::hash(&n.to_le_bytes()).as_bytes()].concat()
}

fn put_all(kv: &Kv, keys: impl Iterator<Item = Vec<u8>>) {
    let mut b = Batch::default();
    for k in keys {
        b.insert(k.clone(), k);
        if b.len() == 5000 {
            kv.apply(std::mem::take(&mut b)).unwrap();
        }
    }
    kv.apply(b).unwrap();
}

#[test]
fn the_presence_filter_never_hides_a_held_key() {
    let dir = tempfile::tempdir().unwrap();
    let kv = Kv::open_folding(dir.path(), 20_000).unwrap();
    // More than one step of the filter's scan, held before it is installed.
    put_all(&kv, (0..70_000).map(hashed));
    let mut b = Batch::default();
    b.insert(&b"c-not-a-hash"[..], &b"1"[..]);
    b.remove(hashed(5));
    kv.apply(b).unwrap();
    kv.flush_durable().unwrap();
    drop(kv);
    let kv = Kv::open_folding(dir.path(), 20_000).unwrap();
    kv.keep_presence(b'c');
    kv.keep_presence(b'l'); // ignored: one filter per database
    assert!(kv.contains(&hashed(1)).unwrap(), "no filter before a write");
    // Installed once PRESENCE_AFTER keys were written; the rest are written while its
    // scan runs (folds included), from two threads: noted as they are applied.
    std::thread::scope(|s| {
        for part in [100_000..115_000, 115_000..130_000] {
            let writer = kv.clone();
            s.spawn(move || put_all(&writer, part.map(hashed)));
        }
    });
    kv.presence_scanned();
    let filter = kv.shared.presence.get().expect("installed by the writes");
    assert!(
        !filter.may_hold(&hashed(400_000)),
        "the filter answers once scanned"
    );
    put_all(&kv, (200_000..200_010).map(hashed));
    for n in (0..70_000).chain(100_000..130_000).chain(200_000..200_010) {
        let held = n != 5;
        assert_eq!(kv.contains(&hashed(n)).unwrap(), held, "key {n}");
        assert_eq!(kv.get(&hashed(n)).unwrap().is_some(), held, "key {n}");
    }
    assert!((300_000..310_000).all(|n| !kv.contains(&hashed(n)).unwrap()));
    assert!(kv.contains(b"c-not-a-hash").unwrap());
    // Removed then written again.
    put_all(&kv, std::iter::once(hashed(5)));
    assert!(kv.contains(&hashed(5)).unwrap());
}
