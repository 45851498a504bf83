use super::*;

fn entry(size: u64) -> StatEntry {
    StatEntry {
        size,
        mtime_ns: 1,
        ctime_ns: 2,
        ino: 3,
        file: FileRef {
            size,
            node: Some(ChunkId::of(&size.to_le_bytes())),
            chunks: Vec::new(),
        },
        meta: Meta {
            uid: 1000,
            ..Meta::default()
        },
    }
}

/// The records epoch of most tests' runs.
const EPOCH: u64 = 7;

/// A run over `files` (in walk order) of source `/src` under records `epoch`: each
/// looked up, then met as `found` says (read when it differs from what the cache had);
/// saved if `save`.
fn run_at(
    dir: &Path,
    epoch: u64,
    files: &[(&str, Option<StatEntry>)],
    save: bool,
) -> Vec<Option<Cached>> {
    let cache = StatCache::load(dir, &[PathBuf::from("/src")], epoch);
    let seen: Vec<Option<Cached>> = files
        .iter()
        .map(|(name, _)| cache.lookup(Path::new(&format!("/src/{name}"))))
        .collect();
    // Met in reverse: the journal puts them back in order.
    for (seq, ((name, found), had)) in files.iter().zip(&seen).enumerate().rev() {
        let read =
            found.is_some() && found.as_ref().map(StatEntry::landed) != had.as_ref().map(print_of);
        let path = format!("/src/{name}");
        cache.met(seq as u64, Path::new(&path), found.as_ref(), read);
    }
    cache.sync();
    if save {
        cache.save();
    }
    seen
}

/// What the cache had for a file, as a print (whole entries too).
fn print_of(c: &Cached) -> Landed {
    match c {
        Cached::Whole { entry, .. } => entry.landed(),
        Cached::Landed(landed) => *landed,
    }
}

/// [`run_at`] under [`EPOCH`], returning what was found as prints.
fn run(dir: &Path, files: &[(&str, Option<StatEntry>)], save: bool) -> Vec<Option<Landed>> {
    let seen = run_at(dir, EPOCH, files, save);
    seen.iter().map(|c| c.as_ref().map(print_of)).collect()
}

/// The print of [`entry`]`(size)`, as a run finds it.
fn found(size: u64) -> Option<Landed> {
    Some(entry(size).landed())
}

/// Whether each file was found whole, and then whether trusted to be recorded.
fn recorded(seen: &[Option<Cached>]) -> Vec<Option<bool>> {
    seen.iter()
        .map(|c| match c {
            Some(Cached::Whole { recorded, .. }) => Some(*recorded),
            _ => None,
        })
        .collect()
}

/// Source `/src`'s file saved as a version before prints did, under `epoch` (`None`:
/// the format without one), holding `files` whole.
fn save_whole(dir: &Path, epoch: Option<u64>, files: &[(&str, StatEntry)]) {
    let file = StatCache::load(dir, &[PathBuf::from("/src")], EPOCH).sources[0]
        .file
        .clone();
    let _ = std::fs::remove_file(&file);
    let mut w = Writer::journal(&file, epoch.unwrap_or(0)).unwrap();
    for (name, e) in files {
        w.push(name.as_bytes(), &meta::encode(e)).unwrap();
    }
    w.sync().unwrap();
    drop(w);
    if epoch.is_none() {
        let now = std::fs::read(&file).unwrap();
        let mut before = b"FVFSSTC2".to_vec();
        before.extend_from_slice(&now[16..]);
        std::fs::write(&file, before).unwrap();
    }
}

fn files_in(dir: &Path) -> usize {
    std::fs::read_dir(dir).map_or(0, |d| d.count())
}

#[test]
fn what_a_run_met_is_found_by_the_next_and_files_gone_leave_the_cache() {
    let dir = tempfile::tempdir().unwrap();
    let first = run(
        dir.path(),
        &[
            ("a", Some(entry(1))),
            ("b", Some(entry(2))),
            ("d/x", Some(entry(4))),
        ],
        true,
    );
    assert_eq!(first, vec![None, None, None]);
    // `a` unchanged, `b` gone, `c` new, `d/x` changed.
    let second = run(
        dir.path(),
        &[
            ("a", Some(entry(1))),
            ("c", Some(entry(3))),
            ("d/x", Some(entry(5))),
        ],
        true,
    );
    assert_eq!(second, vec![found(1), None, found(4)]);
    let third = run(
        dir.path(),
        &[("a", None), ("b", None), ("c", None), ("d/x", None)],
        false,
    );
    assert_eq!(third, vec![found(1), None, found(3), found(5)]);
}

#[test]
fn a_run_that_read_nothing_and_missed_nothing_leaves_the_file_alone() {
    let dir = tempfile::tempdir().unwrap();
    let both = [("a", Some(entry(1))), ("b", Some(entry(2)))];
    run(dir.path(), &both, true);
    let file = StatCache::load(dir.path(), &[PathBuf::from("/src")], EPOCH).sources[0]
        .file
        .clone();
    // A marker after the blocks (read as a torn tail) shows whether it is rewritten.
    let mut marked = std::fs::read(&file).unwrap();
    marked.extend_from_slice(b"tail");
    std::fs::write(&file, &marked).unwrap();
    run(dir.path(), &both, true);
    assert_eq!(std::fs::read(&file).unwrap(), marked);
    assert_eq!(files_in(dir.path()), 1, "no journal left");

    run(dir.path(), &[("a", Some(entry(1)))], true);
    assert!(!std::fs::read(&file).unwrap().ends_with(b"tail"));
    let last = run(dir.path(), &[("a", None), ("b", None)], false);
    assert_eq!(last, vec![found(1), None]);
}

#[test]
fn a_killed_runs_journal_is_read_by_the_next_which_removes_it_once_saved() {
    let dir = tempfile::tempdir().unwrap();
    run(dir.path(), &[("a", Some(entry(1)))], true);
    // Killed after its checkpoint: `b` and a changed `a` are in its journal only.
    run(
        dir.path(),
        &[("a", Some(entry(9))), ("b", Some(entry(2)))],
        false,
    );
    assert_eq!(files_in(dir.path()), 2);
    let next = run(
        dir.path(),
        &[
            ("a", Some(entry(9))),
            ("b", Some(entry(2))),
            ("c", Some(entry(3))),
        ],
        true,
    );
    assert_eq!(next, vec![found(9), found(2), None]);
    assert_eq!(files_in(dir.path()), 1, "the journals became the file");
    let last = run(dir.path(), &[("a", None), ("b", None), ("c", None)], false);
    assert_eq!(last, vec![found(9), found(2), found(3)]);
}

#[test]
fn entries_with_large_attributes_are_cut_into_blocks_and_a_huge_one_is_left_out() {
    let dir = tempfile::tempdir().unwrap();
    let with_xattrs = |size: usize, n: u64| {
        let mut e = entry(n);
        e.meta.xattrs = vec![fvfs_manifest::node::Xattr {
            name: b"user.big".to_vec(),
            value: vec![n as u8; size],
        }];
        e
    };
    // 400 entries of 200 KiB (80 MB in all: more than one frame may hold) and one of
    // 2 MiB.
    let names: Vec<String> = (0..400).map(|n| format!("f{n:03}")).collect();
    let mut files: Vec<(&str, Option<StatEntry>)> = names
        .iter()
        .enumerate()
        .map(|(n, name)| (name.as_str(), Some(with_xattrs(200 << 10, n as u64))))
        .collect();
    files.push(("huge", Some(with_xattrs(2 << 20, 7))));
    run(dir.path(), &files, true);
    let back = run(dir.path(), &[("f042", None), ("huge", None)], false);
    assert_eq!(back, vec![Some(with_xattrs(200 << 10, 42).landed()), None]);
}

#[test]
fn each_source_folder_has_its_own_file() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (PathBuf::from("/a"), PathBuf::from("/b"));
    let both = StatCache::load(dir.path(), &[a.clone(), b.clone()], EPOCH);
    both.met(0, Path::new("/a/x"), Some(&entry(1)), true);
    both.met(1, Path::new("/b/y"), Some(&entry(2)), true);
    both.met(2, Path::new("/elsewhere/z"), Some(&entry(3)), true);
    both.save();
    assert_eq!(files_in(dir.path()), 2);

    // A later run of `b` alone neither sees nor drops `a`'s entries.
    let only_b = StatCache::load(dir.path(), std::slice::from_ref(&b), EPOCH);
    assert_eq!(only_b.lookup(Path::new("/a/x")), None);
    assert_eq!(
        only_b.lookup(Path::new("/b/y")),
        Some(Cached::Landed(entry(2).landed()))
    );
    only_b.met(0, Path::new("/b/y"), Some(&entry(2)), false);
    only_b.save();
    let only_a = StatCache::load(dir.path(), std::slice::from_ref(&a), EPOCH);
    assert_eq!(
        only_a.lookup(Path::new("/a/x")),
        Some(Cached::Landed(entry(1).landed()))
    );
}

#[test]
fn a_torn_or_damaged_block_ends_the_reading_and_nothing_wrong_is_read() {
    let dir = tempfile::tempdir().unwrap();
    // A killed run's journal of two blocks: a checkpoint between the entries.
    let cache = StatCache::load(dir.path(), &[PathBuf::from("/src")], EPOCH);
    cache.met(0, Path::new("/src/a"), Some(&entry(1)), true);
    cache.sync();
    cache.met(1, Path::new("/src/b"), Some(&entry(2)), true);
    cache.sync();
    drop(cache);
    let file = std::fs::read_dir(dir.path())
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let whole = std::fs::read(&file).unwrap();
    let both = || run(dir.path(), &[("a", None), ("b", None)], false);

    // A tail cut by a power cut: the blocks before it are read.
    std::fs::write(&file, &whole[..whole.len() - 3]).unwrap();
    assert_eq!(both(), vec![found(1), None]);

    // A flipped byte in the last block's frame: that block is not read.
    let mut flipped = whole.clone();
    *flipped.last_mut().unwrap() ^= 0x40;
    std::fs::write(&file, &flipped).unwrap();
    assert_eq!(both(), vec![found(1), None]);

    // Not a cache of this version (an old one, or anything): nothing read.
    let mut older = whole;
    older[..8].copy_from_slice(b"FVFSSTC1");
    std::fs::write(&file, &older).unwrap();
    assert_eq!(both(), vec![None, None]);
}

#[test]
fn a_saved_file_keeps_prints_of_content_and_owner_and_a_quarter_of_the_bytes() {
    let dir = tempfile::tempdir().unwrap();
    // Files of a few chunks each, as small files are: the chunk ids are most of a
    // whole entry.
    let full = |n: u64| {
        let mut e = entry(n);
        e.file.node = None;
        e.file.chunks = (0..2)
            .map(|i| fvfs_manifest::ChunkRef {
                id: ChunkId::of(&(n * 2 + i).to_le_bytes()),
                len: n,
            })
            .collect();
        e
    };
    let names: Vec<String> = (0..2000)
        .map(|n| format!("d{:02}/f{n:04}", n / 100))
        .collect();
    let files: Vec<(&str, Option<StatEntry>)> = names
        .iter()
        .enumerate()
        .map(|(n, name)| (name.as_str(), Some(full(n as u64))))
        .collect();
    let cache = StatCache::load(dir.path(), &[PathBuf::from("/src")], EPOCH);
    for (seq, (name, e)) in files.iter().enumerate() {
        cache.met(
            seq as u64,
            Path::new(&format!("/src/{name}")),
            e.as_ref(),
            true,
        );
    }
    cache.sync();
    let journal = lock(&cache.sources[0].journal);
    let Journal::Open(w) = &*journal else {
        panic!("a journal is open")
    };
    let journal_bytes = std::fs::metadata(w.path()).unwrap().len();
    drop(journal);
    cache.save();
    let file = cache.sources[0].file.clone();
    let saved_bytes = std::fs::metadata(&file).unwrap().len();
    assert!(
        saved_bytes * 4 < journal_bytes,
        "saved {saved_bytes} bytes, journal {journal_bytes}"
    );
    assert_eq!(files_in(dir.path()), 1, "the journal is gone");

    let again = StatCache::load(dir.path(), &[PathBuf::from("/src")], EPOCH);
    let at = |n: usize| again.lookup(Path::new(&format!("/src/{}", names[n])));
    assert_eq!(at(7), Some(Cached::Landed(full(7).landed())));
    assert_eq!(at(1999), Some(Cached::Landed(full(1999).landed())));
    // The print tells content, owner and attributes apart.
    let mut other = full(7);
    assert_eq!(print(&other.file, &other.meta), full(7).landed().print);
    other.file.chunks[1].id = ChunkId::of(b"other");
    assert_ne!(print(&other.file, &other.meta), full(7).landed().print);
    let mut owner = full(7);
    owner.meta.uid += 1;
    assert_ne!(print(&owner.file, &owner.meta), full(7).landed().print);
}

#[test]
fn a_file_saved_before_prints_is_trusted_under_the_epoch_in_force_then_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (("a", entry(1)), ("b", entry(2)));
    save_whole(dir.path(), Some(1), &[a.clone(), b.clone()]);
    let lookups = [("a", None), ("b", None)];
    assert_eq!(
        recorded(&run_at(dir.path(), 1, &lookups, false)),
        [Some(true), Some(true)]
    );
    // A collection removed records since: the entries are looked up.
    assert_eq!(
        recorded(&run_at(dir.path(), 2, &lookups, false)),
        [Some(false), Some(false)]
    );

    // A run that met it (reading nothing, missing nothing) saves prints.
    let met = [("a", Some(a.1.clone())), ("b", Some(b.1.clone()))];
    run_at(dir.path(), 1, &met, true);
    let seen = run_at(dir.path(), 1, &lookups, false);
    assert_eq!(
        seen,
        [
            Some(Cached::Landed(a.1.landed())),
            Some(Cached::Landed(b.1.landed()))
        ]
    );
}

#[test]
fn a_killed_runs_journal_is_never_trusted() {
    let dir = tempfile::tempdir().unwrap();
    // A journal may name chunks its last checkpoint did not record.
    run_at(dir.path(), EPOCH, &[("a", Some(entry(1)))], false);
    assert_eq!(
        recorded(&run_at(dir.path(), EPOCH, &[("a", Some(entry(1)))], true)),
        [Some(false)]
    );
}

#[test]
fn a_file_of_the_format_without_an_epoch_is_read_and_its_records_looked_up() {
    let dir = tempfile::tempdir().unwrap();
    save_whole(dir.path(), None, &[("a", entry(1))]);
    let seen = run_at(dir.path(), EPOCH, &[("a", Some(entry(1)))], true);
    assert_eq!(
        seen,
        [Some(Cached::Whole {
            entry: entry(1),
            recorded: false
        })]
    );
    assert_eq!(
        run(dir.path(), &[("a", None)], false),
        [found(1)],
        "saved again, as prints"
    );
}
