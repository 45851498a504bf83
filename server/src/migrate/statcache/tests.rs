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
        let read = found.is_some() && found.as_ref() != had.as_ref().map(|c| &c.entry);
        let path = format!("/src/{name}");
        cache.met(seq as u64, Path::new(&path), found.as_ref(), read);
    }
    cache.sync();
    if save {
        cache.save();
    }
    seen
}

/// [`run_at`] under [`EPOCH`], returning the entries found.
fn run(dir: &Path, files: &[(&str, Option<StatEntry>)], save: bool) -> Vec<Option<StatEntry>> {
    let seen = run_at(dir, EPOCH, files, save);
    seen.into_iter().map(|c| c.map(|c| c.entry)).collect()
}

/// Whether each file was found, and found [`Cached::recorded`].
fn recorded(seen: &[Option<Cached>]) -> Vec<Option<bool>> {
    seen.iter()
        .map(|c| c.as_ref().map(|c| c.recorded))
        .collect()
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
    assert_eq!(second, vec![Some(entry(1)), None, Some(entry(4))]);
    let third = run(
        dir.path(),
        &[("a", None), ("b", None), ("c", None), ("d/x", None)],
        false,
    );
    assert_eq!(
        third,
        vec![Some(entry(1)), None, Some(entry(3)), Some(entry(5))]
    );
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
    assert_eq!(last, vec![Some(entry(1)), None]);
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
    assert_eq!(next, vec![Some(entry(9)), Some(entry(2)), None]);
    assert_eq!(files_in(dir.path()), 1, "the journals became the file");
    let last = run(dir.path(), &[("a", None), ("b", None), ("c", None)], false);
    assert_eq!(last, vec![Some(entry(9)), Some(entry(2)), Some(entry(3))]);
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
    assert_eq!(back, vec![Some(with_xattrs(200 << 10, 42)), None]);
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
    assert_eq!(only_b.lookup(Path::new("/b/y")).unwrap().entry, entry(2));
    only_b.met(0, Path::new("/b/y"), Some(&entry(2)), false);
    only_b.save();
    let only_a = StatCache::load(dir.path(), std::slice::from_ref(&a), EPOCH);
    assert_eq!(only_a.lookup(Path::new("/a/x")).unwrap().entry, entry(1));
}

#[test]
fn a_torn_or_damaged_block_ends_the_reading_and_nothing_wrong_is_read() {
    let dir = tempfile::tempdir().unwrap();
    // Two blocks: a checkpoint between the entries.
    let cache = StatCache::load(dir.path(), &[PathBuf::from("/src")], EPOCH);
    cache.met(0, Path::new("/src/a"), Some(&entry(1)), true);
    cache.sync();
    cache.met(1, Path::new("/src/b"), Some(&entry(2)), true);
    cache.save();
    let file = cache.sources[0].file.clone();
    let whole = std::fs::read(&file).unwrap();
    let both = || run(dir.path(), &[("a", None), ("b", None)], false);

    // A tail cut by a power cut: the blocks before it are read.
    std::fs::write(&file, &whole[..whole.len() - 3]).unwrap();
    assert_eq!(both(), vec![Some(entry(1)), None]);

    // A flipped byte in the last block's frame: that block is not read.
    let mut flipped = whole.clone();
    *flipped.last_mut().unwrap() ^= 0x40;
    std::fs::write(&file, &flipped).unwrap();
    assert_eq!(both(), vec![Some(entry(1)), None]);

    // Not a cache of this version (the one before, or anything): nothing read.
    let mut older = whole;
    older[..8].copy_from_slice(b"FVFSSTC1");
    std::fs::write(&file, &older).unwrap();
    assert_eq!(both(), vec![None, None]);
}

#[test]
fn only_a_file_saved_under_the_epoch_in_force_vouches_for_its_records() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (("a", Some(entry(1))), ("b", Some(entry(2))));
    run_at(dir.path(), 1, std::slice::from_ref(&a), true);
    assert_eq!(
        recorded(&run_at(dir.path(), 1, std::slice::from_ref(&a), true)),
        [Some(true)]
    );

    // A killed run's journal may name chunks its last checkpoint did not record.
    run_at(dir.path(), 1, &[a.clone(), b.clone()], false);
    let after_kill = run_at(dir.path(), 1, &[a.clone(), b.clone()], true);
    assert_eq!(recorded(&after_kill), [Some(false), Some(false)]);
    assert_eq!(
        recorded(&run_at(dir.path(), 1, &[a.clone(), b.clone()], true)),
        [Some(true), Some(true)]
    );

    // A collection removed records since: the entries are looked up once more, and
    // the run that did (reading nothing, missing nothing) saves under its epoch.
    let after_gc = run_at(dir.path(), 2, &[a.clone(), b.clone()], true);
    assert_eq!(recorded(&after_gc), [Some(false), Some(false)]);
    assert_eq!(
        recorded(&run_at(dir.path(), 2, &[a, b], true)),
        [Some(true), Some(true)]
    );
}

#[test]
fn a_file_of_the_format_without_an_epoch_is_read_and_its_records_looked_up() {
    let dir = tempfile::tempdir().unwrap();
    run(dir.path(), &[("a", Some(entry(1)))], true);
    let file = StatCache::load(dir.path(), &[PathBuf::from("/src")], EPOCH).sources[0]
        .file
        .clone();
    let now = std::fs::read(&file).unwrap();
    let mut before = b"FVFSSTC2".to_vec();
    before.extend_from_slice(&now[16..]);
    std::fs::write(&file, before).unwrap();
    let seen = run_at(dir.path(), EPOCH, &[("a", Some(entry(1)))], true);
    assert_eq!(
        seen,
        [Some(Cached {
            entry: entry(1),
            recorded: false
        })]
    );
    assert_eq!(
        recorded(&run_at(dir.path(), EPOCH, &[("a", None)], false)),
        [Some(true)]
    );
}
