//! Walks of the mount: read-ahead of a folder's files in batches, the next folders fetched ahead of a reading walk, none for a walk that only lists, large and split directories, a million entries.

use super::*;

/// Requests the daemon answered on `route` with 200, from its metrics.
fn served(d: &Daemon, route: &str) -> u64 {
    let (_, metrics) = d.raw(&fvfs_tests::daemon::request("GET", "/metrics", &[], b""));
    let sample = format!("fvfs_http_requests_total{{route=\"{route}\",status=\"200\"}} ");
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(&sample))
        .map_or(0, |n| n.parse().unwrap())
}

#[test]
fn folders_of_small_files_and_large_files_are_read_ahead_in_batches() {
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    fs::create_dir_all(&src).unwrap();
    let files: Vec<Vec<u8>> = (0..200u64)
        .map(|i| tree::bytes(i, 500 + i as usize * 13, true))
        .collect();
    for (i, c) in files.iter().enumerate() {
        fs::write(src.join(format!("f{i:03}.txt")), c).unwrap();
    }
    fs::create_dir(src.join("large")).unwrap();
    tree::write_big(&src.join("large/big.bin"), 3, 12 << 20);
    let store = Fvfsd::new();
    store.run(["migrate", "--local-src", src.to_str().unwrap()]);
    let d = serve(&store);
    let mut m = mount_in(&d, work.path());
    let (singles, batches) = (served(&d, "chunks"), served(&d, "chunks_read"));
    for (i, c) in files.iter().enumerate() {
        assert_eq!(&fs::read(m.path(&format!("f{i:03}.txt"))).unwrap(), c);
    }
    assert_eq!(served(&d, "chunks_read") - batches, 1);
    // At most one chunk (a tree node the mount had not needed yet) comes on its own.
    assert!(
        served(&d, "chunks") - singles <= 1,
        "{} single-chunk reads",
        served(&d, "chunks") - singles
    );

    // A large file: its chunks come ahead of the reader, in requests that grow as it
    // goes on (a window of 32 chunks at first, doubled by each read up to 256).
    let (singles, batches) = (served(&d, "chunks"), served(&d, "chunks_read"));
    let got = fs::read(m.path("large/big.bin")).unwrap();
    assert_eq!(got, fs::read(src.join("large/big.bin")).unwrap());
    let (singles, batches) = (
        served(&d, "chunks") - singles,
        served(&d, "chunks_read") - batches,
    );
    // About 190 chunks of 64 KiB: the first one, the file's node and its list nodes
    // alone; the rest in batches.
    assert!(singles <= 6, "{singles} single-chunk reads");
    assert!((1..=6).contains(&batches), "{batches} batches");
    assert_eq!(m.unmount(), Some(0));
}

/// A walk that reads every file (tar, cp -r, rsync) finds the folders below the one it
/// lists already fetched: their nodes and first files come in batches ahead of it,
/// not one request per folder and per file.
#[test]
fn a_walk_finds_the_next_folders_fetched_ahead() {
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    let mut folders = 0;
    for a in 0..12 {
        for b in 0..3 {
            let dir = src.join(format!("d{a:02}/s{b}"));
            fs::create_dir_all(&dir).unwrap();
            folders += 1;
            for f in 0..8u64 {
                let seed = (a * 100 + b * 10) as u64 + f;
                fs::write(dir.join(format!("f{f}")), tree::bytes(seed, 3000, true)).unwrap();
            }
        }
        folders += 1;
    }
    let store = Fvfsd::new();
    store.run(["migrate", "--local-src", src.to_str().unwrap()]);
    let d = serve(&store);
    let mut m = mount_in(&d, work.path());
    let singles = served(&d, "chunks");
    fn walk(dir: &Path, local: &Path) -> usize {
        let mut read = 0;
        for e in fs::read_dir(dir).unwrap() {
            let e = e.unwrap();
            let here = local.join(e.file_name());
            if e.file_type().unwrap().is_dir() {
                read += walk(&e.path(), &here);
            } else {
                assert!(fs::read(e.path()).unwrap() == fs::read(&here).unwrap());
                read += 1;
            }
        }
        read
    }
    assert_eq!(walk(&m.path(""), &src), 12 * 3 * 8);
    let singles = served(&d, "chunks") - singles;
    // Without the walk's read-ahead: a request per folder (its node) and one more per
    // folder of files; with it, the few the walk outran.
    println!("{folders} folders, {singles} single-chunk requests");
    assert!(
        singles < folders / 2,
        "{singles} single-chunk requests for {folders} folders"
    );
    assert_eq!(m.unmount(), Some(0));
}

/// A walk that only lists (find, du, ls -R) gets no file content: fetching it would
/// only compete with the walk. One that reads what it lists gets it all.
#[test]
fn a_walk_that_only_lists_fetches_no_content() {
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    let mut content = 0;
    for a in 0..20u64 {
        let dir = src.join(format!("d{a:02}"));
        fs::create_dir_all(&dir).unwrap();
        for f in 0..30 {
            let data = tree::bytes(a * 100 + f, 4000, false);
            content += data.len() as u64;
            fs::write(dir.join(format!("f{f:02}")), data).unwrap();
        }
    }
    let store = Fvfsd::new();
    store.run(["migrate", "--local-src", src.to_str().unwrap()]);
    let d = serve(&store);
    let mut m = mount_in(&d, work.path());
    fn walk(dir: &Path, read: bool) -> u64 {
        let mut n = 0;
        for e in fs::read_dir(dir).unwrap() {
            let e = e.unwrap();
            n += match e.metadata().unwrap().is_dir() {
                true => walk(&e.path(), read),
                false if read => fs::read(e.path()).unwrap().len() as u64,
                false => e.metadata().unwrap().len(),
            };
        }
        n
    }
    let before = served_bytes(&d);
    assert_eq!(walk(&m.path(""), false), content);
    let listed = served_bytes(&d) - before;
    assert!(
        listed < content / 10,
        "listing {content} bytes of files fetched {listed} bytes"
    );
    assert_eq!(walk(&m.path(""), true), content);
    let read = served_bytes(&d) - before;
    assert!(read >= content, "reading {content} bytes fetched {read}");
    assert_eq!(m.unmount(), Some(0));
}

/// Bytes the daemon has answered with, from its metrics.
fn served_bytes(d: &Daemon) -> u64 {
    let (_, metrics) = d.raw(&fvfs_tests::daemon::request("GET", "/metrics", &[], b""));
    metrics
        .lines()
        .find_map(|l| l.strip_prefix("fvfs_http_bytes_out_total "))
        .map_or(0, |n| n.parse().unwrap())
}

#[test]
fn a_walk_ahead_over_many_tiny_files_asks_only_what_the_daemon_takes() {
    // 40 folders of 40 tiny files below one: what the walk fetches ahead from the top
    // (the first small files of every subfolder, 16 MiB at most) is 1,600 chunks,
    // more than one `POST /v1/chunks/read` may ask for.
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    tree::tiny_files(&src, 40, 40);
    let store = Fvfsd::new();
    store.run(["migrate", "--local-src", src.to_str().unwrap()]);
    let d = serve(&store);
    let mut m = mount_in(&d, work.path());
    let singles = served(&d, "chunks");
    // A file read first makes the walk one that reads: listing the top folder then
    // fetches the first files of every subfolder ahead; each folder is read as tar
    // reads it.
    assert_eq!(fs::read_to_string(m.path("d00/f00")).unwrap(), "0/0");
    let mut folders: Vec<_> = fs::read_dir(m.path(""))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    folders.retain(|p| p.file_name().unwrap().to_string_lossy().starts_with('d'));
    folders.sort();
    assert_eq!(folders.len(), 40);
    for (a, dir) in folders.iter().enumerate() {
        let mut files: Vec<_> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        for (f, file) in files.iter().enumerate() {
            assert_eq!(fs::read_to_string(file).unwrap(), format!("{a}/{f}"));
        }
    }
    let (_, metrics) = d.raw(&fvfs_tests::daemon::request("GET", "/metrics", &[], b""));
    assert!(
        !metrics.contains("route=\"chunks_read\",status=\"413\""),
        "a read-ahead asked for too much: {metrics}"
    );
    let singles = served(&d, "chunks") - singles;
    assert!(
        singles < 40,
        "{singles} single-chunk requests for 1,600 files"
    );
    assert_eq!(m.unmount(), Some(0));
}

/// A tree the idle rewrite packed into blocks comes to a mount a block at a time: each
/// block whole and compressed, once (the daemon sends far fewer bytes than the files
/// hold, where members sent one by one would be raw), every member checked and kept
/// by the mount, so the large file written beside the small ones needs no block again.
#[test]
fn a_rewritten_tree_comes_to_the_mount_in_whole_compressed_blocks() {
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    fs::create_dir_all(src.join("sub")).unwrap();
    let mut files: Vec<(String, Vec<u8>)> = (0..300u64)
        .map(|i| {
            let dir = if i % 3 == 0 { "sub/" } else { "" };
            (
                format!("{dir}f{i:03}.rs"),
                tree::code(i, 2_000 + i as usize * 37),
            )
        })
        .collect();
    files.push(("sub/large.rs".into(), tree::code(1_000, 3 << 20)));
    for (name, data) in &files {
        fs::write(src.join(name), data).unwrap();
    }
    // Segments of 1 MiB: the rewrite leaves the one being written alone.
    let config = work.path().join("fvfs.toml");
    fs::write(&config, "[tiers.local]\nsegment_mb = 1\n").unwrap();
    let global = ["--config", config.to_str().unwrap()];
    let store = Fvfsd::new();
    store.run(
        global
            .iter()
            .chain(&["migrate", "--local-src", src.to_str().unwrap()]),
    );
    let rewrite = store.run(global.iter().chain(&["gc", "--recompress"]));
    assert!(
        rewrite.contains("segments recompressed") && !rewrite.contains(": 0 rewritten"),
        "{rewrite}"
    );
    let d = Daemon::start_with(&store, &global, "127.0.0.1:0", &["--no-mdns"]);
    let mut m = mount_in(&d, work.path());
    let (sent, batches, singles) = (
        served_bytes(&d),
        served(&d, "chunks_read"),
        served(&d, "chunks"),
    );
    for (name, data) in &files {
        assert!(fs::read(m.path(name)).unwrap() == *data, "{name} differs");
    }
    let raw: usize = files.iter().map(|f| f.1.len()).sum();
    let sent = served_bytes(&d) - sent;
    let singles = served(&d, "chunks") - singles;
    // Lines shared between files: blocks keep about a tenth of them, where members sent
    // raw would be all of it (a few chunks a loaded machine's reads outrun their
    // read-ahead for come alone, raw: room for them).
    assert!(
        sent * 3 < raw as u64,
        "{sent} bytes sent for {raw} ({singles} chunks alone)"
    );
    let batches = served(&d, "chunks_read") - batches;
    assert!(batches <= 12, "{batches} batches");
    assert_eq!(m.unmount(), Some(0));
    d.assert_fsck_clean("after a mount read blocks");
}

#[test]
fn a_split_directory_lists_reads_and_takes_new_files_through_the_mount() {
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    let big = src.join("big");
    fs::create_dir_all(&big).unwrap();
    // Past the 4,096 entries a directory node holds: stored as an index and parts.
    for i in 0..9_000 {
        fs::write(big.join(format!("f{i:05}")), format!("{i}")).unwrap();
    }
    let store = Fvfsd::new();
    store.run(["migrate", "--local-src", src.to_str().unwrap()]);
    let d = serve(&store);
    let m = mount_in(&d, work.path());
    tree::assert_same(&big, &m.path("big"));
    fs::write(m.path("big/f04500x"), b"between").unwrap();
    fs::remove_file(m.path("big/f08999")).unwrap();
    let names: Vec<String> = fs::read_dir(m.path("big"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(names.len(), 9_000);
    assert!(names.contains(&"f04500x".to_owned()) && !names.contains(&"f08999".to_owned()));
    assert_eq!(fs::read(m.path("big/f04500x")).unwrap(), b"between");
    assert_eq!(fs::read(m.path("big/f00042")).unwrap(), b"42");
}

/// A walk that stats every one of 1,001,000 entries keeps the mount's memory bounded:
/// inodes the kernel forgets are dropped, and decoded directories are kept by size.
#[test]
fn a_walk_of_a_million_entries_keeps_the_mount_small() {
    const DIRS: usize = 1000;
    const FILES: usize = 1000;
    let work = tempfile::tempdir().unwrap();
    let store = Fvfsd::new();
    let d = serve(&store);
    // One folder of empty files, then copies of it (each O(1): they share its node),
    // each made distinct by a file of its own.
    let file = |path: String| serde_json::json!({"op": "file", "path": path, "mode": 0o644, "mtime_ns": 0, "size": 0});
    d.commit(
        (0..FILES)
            .map(|f| file(format!("/t/d0000/f{f:04}")))
            .collect(),
    );
    let mut ops = Vec::new();
    for dir in 1..DIRS {
        ops.push(
            serde_json::json!({"op": "copy", "from": "/t/d0000", "to": format!("/t/d{dir:04}")}),
        );
        ops.push(file(format!("/t/d{dir:04}/own")));
    }
    d.commit(ops);
    // A budget above the tree: what is checked here is that the table follows the
    // kernel's forgets (the budget is the next test's).
    let m = Mount::start(
        &d,
        &work.path().join("mnt"),
        &work.path().join("cache"),
        &["--max-inodes", "2000000"],
    );
    let pid = m.pid().unwrap();
    let walk = || {
        let mut seen = 0usize;
        for dir in fs::read_dir(m.path("t")).unwrap() {
            let dir = dir.unwrap().path();
            for f in fs::read_dir(&dir).unwrap() {
                let meta = fs::symlink_metadata(f.unwrap().path()).unwrap();
                assert!(meta.is_file());
                seen += 1;
            }
        }
        seen
    };
    // Peak RSS while `work` runs (sampled: memory has no event to wait for).
    let sampled = |work: &dyn Fn() -> usize| {
        let done = std::sync::atomic::AtomicBool::new(false);
        std::thread::scope(|s| {
            let sampler = s.spawn(|| {
                let mut peak = 0;
                while !done.load(std::sync::atomic::Ordering::Relaxed) {
                    peak = peak.max(fvfs_tests::rss(pid));
                    std::thread::sleep(std::time::Duration::from_millis(100));
                }
                peak.max(fvfs_tests::rss(pid))
            });
            // The sampler stops also when `work` panics (the scope waits for it).
            struct Done<'a>(&'a std::sync::atomic::AtomicBool);
            impl Drop for Done<'_> {
                fn drop(&mut self) {
                    self.0.store(true, std::sync::atomic::Ordering::Relaxed);
                }
            }
            let n = {
                let _done = Done(&done);
                work()
            };
            (sampler.join().unwrap(), n)
        })
    };
    let (peak, seen) = sampled(&walk);
    // Names that do not exist cost nothing once answered.
    let (peak_missing, _) = sampled(&|| {
        for i in 0..300_000 {
            let missing = fs::symlink_metadata(m.path(&format!("t/d0001/missing-{i}")));
            assert!(missing.is_err());
        }
        0
    });
    // The kernel forgets its inodes (as under memory pressure) and the tree is walked
    // again, twice: the table empties and fills again, and the third walk needs no
    // more than the second (the first, whose names the kernel never forgot, can need
    // less: memory freed by the forgets stays with the allocator).
    let forgot_and_walked = || {
        fs::write("/proc/sys/vm/drop_caches", "2").unwrap();
        let (peak, seen_again) = sampled(&walk);
        assert_eq!(seen_again, seen);
        peak
    };
    let (peak_again, peak_third) = (forgot_and_walked(), forgot_and_walked());
    eprintln!(
        "mount RSS: walk of {seen} entries {} MiB; 300,000 missing names {} MiB; after the kernel forgot, walk again {} MiB, and again {} MiB",
        peak >> 20,
        peak_missing >> 20,
        peak_again >> 20,
        peak_third >> 20,
    );
    for (what, p, before) in [
        ("missing names", peak_missing, peak),
        ("a third walk", peak_third, peak_again),
    ] {
        assert!(
            p <= before + (before >> 3),
            "{what}: {} MiB after {} MiB",
            p >> 20,
            before >> 20
        );
    }
    assert_eq!(seen, DIRS * FILES + DIRS - 1);
    let most = peak.max(peak_again).max(peak_third);
    assert!(most < 300 << 20, "the mount grew to {} MiB", most >> 20);
}

/// The `--max-inodes` of the budget tests.
const BUDGET: u64 = 300;

/// Ten times [`BUDGET`] files of 0.2-3.2 KB (their paths and contents), 100 to a
/// folder, migrated into a new store (kept as long as its daemon serves it), and
/// its daemon.
fn ten_budgets_of_files(work: &Path) -> (Vec<(String, Vec<u8>)>, Fvfsd, Daemon) {
    let src = work.join("src");
    let mut files = Vec::new();
    for i in 0..10 * BUDGET {
        let rel = format!("d{:02}/f{i:04}", i / 100);
        if i % 100 == 0 {
            fs::create_dir_all(src.join(format!("d{:02}", i / 100))).unwrap();
        }
        let bytes = tree::bytes(i, 200 + (i as usize * 37) % 3000, i % 2 == 0);
        fs::write(src.join(&rel), &bytes).unwrap();
        files.push((rel, bytes));
    }
    let store = Fvfsd::new();
    store.run(["migrate", "--local-src", src.to_str().unwrap()]);
    let d = serve(&store);
    (files, store, d)
}

/// Once the table holds its budget, a walk that only lists (find, `ls` without
/// `-l`) gets every name with its type and inode number, and neither the kernel nor
/// the table makes an inode for the files listed (readdirplus entries linked to no
/// node): the table stays within the budget plus the folders, where linking every
/// listed name took it past ten times the budget until the rounds trimmed it. A name
/// only listed is looked up when used, under the number it was listed with.
#[test]
fn a_listing_past_the_inode_budget_makes_no_inode_for_what_it_lists() {
    use std::os::unix::fs::{DirEntryExt, MetadataExt};
    let work = tempfile::tempdir().unwrap();
    let (files, _store, d) = ten_budgets_of_files(work.path());
    let budget = BUDGET.to_string();
    let m = Mount::start(
        &d,
        &work.path().join("mnt"),
        &work.path().join("cache"),
        &["--max-inodes", &budget],
    );
    // The table filled past its budget by lookups.
    for (rel, _) in files.iter().take(BUDGET as usize + 100) {
        fs::symlink_metadata(m.path(rel)).unwrap();
    }
    let filled = wait_held(&m, |n| n > BUDGET);
    // Every folder listed, nothing in it used.
    let mut listed = Vec::new();
    for dir in 0..files.len() / 100 {
        for f in fs::read_dir(m.path(&format!("d{dir:02}"))).unwrap() {
            let f = f.unwrap();
            assert!(f.file_type().unwrap().is_file(), "{:?}", f.path());
            assert_ne!(f.ino(), 0, "{:?} listed with inode 0", f.path());
            listed.push((f.path(), f.ino()));
        }
    }
    assert_eq!(listed.len(), files.len());
    // Every count the rounds report from now on, until the table is back within the
    // budget (one name looked up, so that the count moves even if no round trims; a
    // round reports each count for a second, and a linked name is not trimmed before
    // its second round): the files listed are never among them.
    // (Less a little: the kernel stamps files by a coarse clock.)
    let listed_at = std::time::SystemTime::now() - std::time::Duration::from_millis(50);
    fs::symlink_metadata(&listed.last().unwrap().0).unwrap();
    let most = std::cell::Cell::new(0);
    wait_held_since(&m, listed_at, |n| {
        most.set(most.get().max(n));
        n <= BUDGET
    });
    let folders = files.len() as u64 / 100 + 2;
    assert!(
        most.get() <= filled + folders + 1,
        "the table held {} inodes after the listing, {filled} before",
        most.get()
    );
    // Each name listed, looked up, is the inode it was listed as; and it was a lookup
    // (the kernel had linked nothing): the table holds them once more.
    for (path, ino) in &listed {
        assert_eq!(fs::symlink_metadata(path).unwrap().ino(), *ino, "{path:?}");
    }
    wait_held(&m, |n| n > BUDGET);
}

/// The inodes a mount's state file says it holds, once `done` accepts the count.
fn wait_held(m: &Mount, done: impl Fn(u64) -> bool) -> u64 {
    wait_held_since(m, std::time::UNIX_EPOCH, done)
}

/// [`wait_held`] of the counts written after `since` (the file is rewritten when the
/// count changes).
fn wait_held_since(m: &Mount, since: std::time::SystemTime, done: impl Fn(u64) -> bool) -> u64 {
    let file = m.cache.join(format!("mounts/{}.json", m.pid().unwrap()));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let written = fs::metadata(&file).unwrap().modified().unwrap();
        let state: serde_json::Value = serde_json::from_slice(&fs::read(&file).unwrap()).unwrap();
        assert_eq!(state["max_inodes"], 300);
        let held = state["inodes"].as_u64().filter(|_| written > since);
        if let Some(held) = held.filter(|n| done(*n)) {
            return held;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "after a minute, the mount holds {} inodes",
            state["inodes"]
        );
        // The count is rewritten once a second at most: no event to wait for.
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}

/// A walk of ten times `--max-inodes` files: the mount asks the kernel to forget the
/// files it did not use lately until its table (and the kernel's inodes of it) is
/// back within the budget; files kept open stay readable meanwhile, and every file is
/// then found again under the same inode number (tar relies on it) with its content.
#[test]
fn a_walk_past_the_inode_budget_is_forgotten_down_to_it_and_found_again() {
    const OPEN: usize = 400;
    let work = tempfile::tempdir().unwrap();
    let (files, _store, d) = ten_budgets_of_files(work.path());
    let budget = BUDGET.to_string();
    let m = Mount::start(
        &d,
        &work.path().join("mnt"),
        &work.path().join("cache"),
        &["--max-inodes", &budget],
    );
    use std::os::unix::fs::MetadataExt;
    let walk = || -> Vec<u64> {
        (files.iter())
            .map(|(rel, bytes)| {
                assert_eq!(&fs::read(m.path(rel)).unwrap(), bytes, "{rel}");
                fs::symlink_metadata(m.path(rel)).unwrap().ino()
            })
            .collect()
    };
    let numbers = walk();
    // Open files keep their inodes (the kernel holds them until closed) past the
    // budget, whatever it forgets of their names.
    let mut open: Vec<fs::File> = (files.iter().take(OPEN))
        .map(|(rel, _)| fs::File::open(m.path(rel)).unwrap())
        .collect();
    // The rest is forgotten (the folders stay), while these stay.
    let open_and_folders = OPEN as u64..=OPEN as u64 + 40;
    wait_held(&m, |n| open_and_folders.contains(&n));
    for (f, (rel, bytes)) in open.iter_mut().zip(&files) {
        let mut read = Vec::new();
        std::io::Read::read_to_end(f, &mut read).unwrap();
        assert_eq!(&read, bytes, "{rel}, open across the rounds of the budget");
    }
    drop(open);
    // Closed, they go too: the table comes back within the budget.
    wait_held(&m, |n| n <= BUDGET);
    assert_eq!(walk(), numbers, "the same inode numbers once forgotten");
    let shown = Command::new(fvfs_tests::bin("fvfsc"))
        .env("FVFS_URL", &d.url)
        .args(["status", "--cache-dir", m.cache.to_str().unwrap()])
        .output()
        .unwrap();
    let shown = String::from_utf8_lossy(&shown.stdout);
    assert!(
        shown.contains(&format!("(at most {BUDGET})")),
        "fvfsc status shows the budget: {shown}"
    );
}
