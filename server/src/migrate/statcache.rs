//! Migrate's stat cache: what each source file's `stat` said when it was imported, and
//! what its content became, so that a file whose `stat` still says the same is reused
//! without being read (a re-run on an unchanged tree reads no file).
//!
//! One file per source folder, `DATA_DIR/statcache/<hash of the folder's path>`,
//! outside the metadata database: kept in sled, these records (a full source path as
//! key, a chunk list as value) were 85% of the manifest's database file for 30% of its
//! live bytes (sled 0.34 writes a small record many times over). Here an entry costs
//! its compressed bytes.
//!
//! A file is a sequence of blocks, each `[u32 LE length][32-byte BLAKE3 id][frame]`,
//! the frame a zstd frame of entries (`fvfs_cas::frame`, verified against the id when
//! read). Checkpoints append a block of the entries finished since the last one, after
//! their chunks were made durable; a run that completes rewrites the file with the
//! entries it met (written aside, synced, renamed), so files gone from the source leave
//! the cache. Reading stops at the first torn or damaged block.
//!
//! The cache is a hint and never a source of truth: an entry is used only when every
//! chunk it names is still recorded ([`Repo::knows_file`]), so a lost, stale or
//! damaged cache costs a read of the source, never a wrong file.
//!
//! [`Repo::knows_file`]: fvfs_manifest::Repo::knows_file

use std::collections::HashMap;
use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use fvfs_cas::{frame, platform, ChunkId};
use fvfs_manifest::node::Meta;
use fvfs_manifest::{meta, FileRef};
use serde::{Deserialize, Serialize};

/// A block is cut once its entries take this many bytes, so that its frame stays far
/// below `frame::MAX_RAW_LEN` (entries carry extended attributes, of any size).
const BLOCK_BYTES: usize = 4 << 20;
/// An entry larger than this (a file with huge extended attributes) is not kept: that
/// file is read again at each run.
const ENTRY_MAX: usize = 1 << 20;
/// The file's first bytes.
const MAGIC: &[u8; 8] = b"FVFSSTC1";

/// What migrate saw of a source file, and its content in the store.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatEntry {
    pub size: u64,
    pub mtime_ns: i64,
    pub ctime_ns: i64,
    pub ino: u64,
    pub file: FileRef,
    /// Owner and extended attributes: unchanged while the ctime is.
    pub meta: Meta,
}

/// A source path's key: the first 16 bytes of its BLAKE3 hash.
type Key = [u8; 16];

fn key(path: &Path) -> Key {
    let id = ChunkId::of(path.as_os_str().as_encoded_bytes());
    id.as_bytes()[..16].try_into().expect("16 of 32 bytes")
}

/// The stat caches of one migration's sources.
pub struct StatCache {
    sources: Vec<Source>,
    /// Every source's entries as the run found them.
    known: HashMap<Key, StatEntry>,
}

struct Source {
    root: PathBuf,
    file: PathBuf,
    /// How many entries its file held.
    loaded: usize,
    /// Files this run found as [`StatCache::known`] has them.
    kept: Mutex<Vec<Key>>,
    /// Files this run read, and how many of them are appended to the file already.
    noted: Mutex<(Vec<(Key, StatEntry)>, usize)>,
}

/// How many entries each source had noted when a checkpoint began.
pub struct Noted(Vec<usize>);

impl StatCache {
    /// Loads the caches of source folders `roots` (absolute paths) from folder `dir`.
    /// A damaged or unreadable cache is reported in the log and counts as empty.
    pub fn load(dir: &Path, roots: &[PathBuf]) -> Self {
        remove_leftovers(dir);
        let mut known = HashMap::new();
        let sources = roots
            .iter()
            .map(|root| {
                let id = ChunkId::of(root.as_os_str().as_encoded_bytes());
                let file = dir.join(hex::encode(&id.as_bytes()[..16]));
                let mut entries = HashMap::new();
                if let Err(e) = read(&file, &mut entries) {
                    tracing::warn!(file = %file.display(), "stat cache unreadable, its source will be read again: {e}");
                }
                let loaded = entries.len();
                known.extend(entries);
                Source {
                    root: root.clone(),
                    file,
                    loaded,
                    kept: Mutex::default(),
                    noted: Mutex::default(),
                }
            })
            .collect();
        Self { sources, known }
    }

    /// What source file `path` was when last imported.
    pub fn get(&self, path: &Path) -> Option<&StatEntry> {
        self.known.get(&key(path))
    }

    /// Remembers that `path` is `entry`, found without reading it: as the cache has it,
    /// or as another name of a file read in this run.
    pub fn keep(&self, path: &Path, entry: StatEntry) {
        let k = key(path);
        if self.known.get(&k) != Some(&entry) {
            return self.note(path, entry);
        }
        if let Some(s) = self.source(path) {
            lock(&self.sources[s].kept).push(k);
        }
    }

    /// Remembers what `path` was read as; appended at the next checkpoint.
    pub fn note(&self, path: &Path, entry: StatEntry) {
        if let Some(s) = self.source(path) {
            lock(&self.sources[s].noted).0.push((key(path), entry));
        }
    }

    /// The source folder `path` is in (the deepest, should two overlap).
    fn source(&self, path: &Path) -> Option<usize> {
        (0..self.sources.len())
            .filter(|&i| path.starts_with(&self.sources[i].root))
            .max_by_key(|&i| self.sources[i].root.as_os_str().len())
    }

    /// Where each source's notes stand: what [`StatCache::append`] appends up to, once
    /// the chunks they name are durable.
    pub fn noted(&self) -> Noted {
        Noted(
            self.sources
                .iter()
                .map(|s| lock(&s.noted).0.len())
                .collect(),
        )
    }

    /// Appends the entries noted before `upto` and not appended yet to their sources'
    /// files. A failure is logged, not returned: the cache only saves reads.
    pub fn append(&self, upto: Noted) {
        for (source, end) in self.sources.iter().zip(upto.0) {
            let entries: Vec<(Key, StatEntry)> = {
                let mut noted = lock(&source.noted);
                let start = std::mem::replace(&mut noted.1, end);
                noted.0[start..end].to_vec()
            };
            if entries.is_empty() {
                continue;
            }
            let refs: Vec<(Key, &StatEntry)> = entries.iter().map(|(k, e)| (*k, e)).collect();
            if let Err(e) = append_blocks(&source.file, &refs) {
                tracing::warn!(file = %source.file.display(), "stat cache not saved: {e}");
            }
        }
    }

    /// Rewrites each source's file with the entries this run met: at the end of a run
    /// that walked its sources whole (files no longer there leave the cache). A file
    /// that already holds just those (nothing read, nothing gone) is left as it is.
    pub fn save(&self) {
        // Two migrations of the same folder in one daemon write the same file.
        static SAVING: Mutex<()> = Mutex::new(());
        let _one = lock(&SAVING);
        for source in &self.sources {
            let kept = lock(&source.kept);
            let noted = lock(&source.noted);
            if noted.0.is_empty() && kept.len() == source.loaded {
                continue;
            }
            let entries: Vec<(Key, &StatEntry)> = kept
                .iter()
                .filter_map(|k| Some((*k, self.known.get(k)?)))
                .chain(noted.0.iter().map(|(k, e)| (*k, e)))
                .collect();
            if let Err(e) = rewrite(&source.file, &entries) {
                tracing::warn!(file = %source.file.display(), "stat cache not saved: {e}");
            }
        }
    }
}

/// Removes the temporary files of rewrites a killed process left (`<file>.tmp<pid>`,
/// never read). The data directory's lock makes this process the only one writing
/// here; its own (another migration in this daemon saving) are left alone.
fn remove_leftovers(dir: &Path) {
    let own = format!(".tmp{}", std::process::id());
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.contains(".tmp") && !name.ends_with(&own) {
            if let Err(e) = std::fs::remove_file(entry.path()) {
                tracing::warn!(file = %entry.path().display(), "stat cache leftover not removed: {e}");
            }
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The blocks of `entries`, as they are written to a file.
fn blocks(entries: &[(Key, &StatEntry)]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut raw = Vec::new();
    let mut cut = |raw: &mut Vec<u8>| {
        if raw.is_empty() {
            return;
        }
        let id = ChunkId::of(raw);
        let framed = frame::encode(raw);
        out.extend_from_slice(&(framed.len() as u32).to_le_bytes());
        out.extend_from_slice(id.as_bytes());
        out.extend_from_slice(&framed);
        raw.clear();
    };
    for (k, e) in entries {
        let value = meta::encode(e);
        if value.len() > ENTRY_MAX {
            continue;
        }
        raw.extend_from_slice(k);
        raw.extend_from_slice(&(value.len() as u32).to_le_bytes());
        raw.extend_from_slice(&value);
        if raw.len() >= BLOCK_BYTES {
            cut(&mut raw);
        }
    }
    cut(&mut raw);
    out
}

fn append_blocks(file: &Path, entries: &[(Key, &StatEntry)]) -> std::io::Result<()> {
    let bytes = blocks(entries);
    let dir = file.parent().expect("a file in the cache folder");
    platform::create_private_dir(dir)?;
    let mut f = File::options().append(true).create(true).open(file)?;
    if f.metadata()?.len() == 0 {
        f.write_all(MAGIC)?;
        platform::sync_dir(dir)?;
    }
    f.write_all(&bytes)?;
    platform::sync_data(&f)
}

fn rewrite(file: &Path, entries: &[(Key, &StatEntry)]) -> std::io::Result<()> {
    let mut bytes = MAGIC.to_vec();
    bytes.extend(blocks(entries));
    platform::create_private_dir(file.parent().expect("a file in the cache folder"))?;
    platform::write_durably(file, &bytes, 0o600)
}

/// Reads the entries of `file` into `into` (later blocks win). A missing file is an
/// empty cache; a torn or damaged block ends the reading (the entries before it are
/// kept) and is reported.
fn read(file: &Path, into: &mut HashMap<Key, StatEntry>) -> Result<(), String> {
    let mut bytes = Vec::new();
    match File::open(file) {
        Ok(mut f) => f.read_to_end(&mut bytes).map_err(|e| e.to_string())?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e.to_string()),
    };
    let Some(mut rest) = bytes.strip_prefix(MAGIC.as_slice()) else {
        return Err("not a stat cache".into());
    };
    while !rest.is_empty() {
        let (raw, after) = next_block(rest).ok_or("a torn or damaged block")?;
        entries(&raw, into).ok_or("a damaged entry")?;
        rest = after;
    }
    Ok(())
}

/// The first block of `bytes`, verified and decompressed, and what follows it.
fn next_block(bytes: &[u8]) -> Option<(Vec<u8>, &[u8])> {
    let len = u32::from_le_bytes(bytes.get(..4)?.try_into().ok()?) as usize;
    let id = ChunkId::from_slice(bytes.get(4..36)?)?;
    let framed = bytes.get(36..36 + len)?;
    let raw = frame::decode(&id, framed).ok()?;
    Some((raw, &bytes[36 + len..]))
}

fn entries(mut raw: &[u8], into: &mut HashMap<Key, StatEntry>) -> Option<()> {
    while !raw.is_empty() {
        let k: Key = raw.get(..16)?.try_into().ok()?;
        let len = u32::from_le_bytes(raw.get(16..20)?.try_into().ok()?) as usize;
        let e: StatEntry = meta::decode(raw.get(20..20 + len)?).ok()?;
        into.insert(k, e);
        raw = &raw[20 + len..];
    }
    Some(())
}

#[cfg(test)]
mod tests {
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

    #[test]
    fn checkpointed_entries_read_back_and_a_completed_run_keeps_only_what_it_met() {
        let dir = tempfile::tempdir().unwrap();
        let root = PathBuf::from("/src");
        let cache = StatCache::load(dir.path(), std::slice::from_ref(&root));
        assert!(cache.get(Path::new("/src/a")).is_none());
        cache.note(Path::new("/src/a"), entry(1));
        cache.note(Path::new("/src/b"), entry(2));
        cache.append(cache.noted());
        // Appended once only.
        let once = std::fs::read(&cache.sources[0].file).unwrap();
        cache.append(cache.noted());
        assert_eq!(std::fs::read(&cache.sources[0].file).unwrap(), once);

        // An interrupted run: the next one finds what the checkpoint appended.
        let next = StatCache::load(dir.path(), std::slice::from_ref(&root));
        assert_eq!(next.get(Path::new("/src/a")), Some(&entry(1)));
        assert_eq!(next.get(Path::new("/src/b")), Some(&entry(2)));
        // It meets `a` unchanged, `c` new, and no `b` (deleted from the source).
        next.keep(Path::new("/src/a"), entry(1));
        next.note(Path::new("/src/c"), entry(3));
        next.save();

        let last = StatCache::load(dir.path(), std::slice::from_ref(&root));
        assert_eq!(last.get(Path::new("/src/a")), Some(&entry(1)));
        assert_eq!(last.get(Path::new("/src/b")), None);
        assert_eq!(last.get(Path::new("/src/c")), Some(&entry(3)));
    }

    #[test]
    fn a_run_that_read_nothing_and_missed_nothing_leaves_the_file_alone() {
        let dir = tempfile::tempdir().unwrap();
        let root = PathBuf::from("/src");
        let first = StatCache::load(dir.path(), std::slice::from_ref(&root));
        first.note(Path::new("/src/a"), entry(1));
        first.note(Path::new("/src/b"), entry(2));
        first.save();
        let file = first.sources[0].file.clone();
        // A marker after the blocks (read as a torn tail) shows whether it is rewritten.
        let mut marked = std::fs::read(&file).unwrap();
        marked.extend_from_slice(b"tail");
        std::fs::write(&file, &marked).unwrap();

        let unchanged = StatCache::load(dir.path(), std::slice::from_ref(&root));
        assert_eq!(unchanged.sources[0].loaded, 2);
        unchanged.keep(Path::new("/src/a"), entry(1));
        unchanged.keep(Path::new("/src/b"), entry(2));
        unchanged.save();
        assert_eq!(std::fs::read(&file).unwrap(), marked);

        let one_gone = StatCache::load(dir.path(), std::slice::from_ref(&root));
        one_gone.keep(Path::new("/src/a"), entry(1));
        one_gone.save();
        assert!(!std::fs::read(&file).unwrap().ends_with(b"tail"));
        let last = StatCache::load(dir.path(), std::slice::from_ref(&root));
        assert_eq!(last.sources[0].loaded, 1);
        assert_eq!(last.get(Path::new("/src/a")), Some(&entry(1)));
    }

    #[test]
    fn entries_with_large_attributes_are_cut_into_blocks_and_a_huge_one_is_left_out() {
        let dir = tempfile::tempdir().unwrap();
        let root = PathBuf::from("/src");
        let cache = StatCache::load(dir.path(), std::slice::from_ref(&root));
        let with_xattrs = |size: usize, n: u64| {
            let mut e = entry(n);
            e.meta.xattrs = vec![fvfs_manifest::node::Xattr {
                name: b"user.big".to_vec(),
                value: vec![n as u8; size],
            }];
            e
        };
        // 400 entries of 200 KiB (80 MB in all: more than one frame may hold) and one
        // of 2 MiB.
        for n in 0..400 {
            cache.note(Path::new(&format!("/src/f{n}")), with_xattrs(200 << 10, n));
        }
        cache.note(Path::new("/src/huge"), with_xattrs(2 << 20, 7));
        cache.save();
        let back = StatCache::load(dir.path(), std::slice::from_ref(&root));
        assert_eq!(back.sources[0].loaded, 400);
        assert_eq!(
            back.get(Path::new("/src/f42")),
            Some(&with_xattrs(200 << 10, 42))
        );
        assert_eq!(back.get(Path::new("/src/huge")), None);
    }

    #[test]
    fn a_killed_rewrite_leaves_nothing_behind_for_long() {
        let dir = tempfile::tempdir().unwrap();
        let root = PathBuf::from("/src");
        let cache = StatCache::load(dir.path(), std::slice::from_ref(&root));
        cache.note(Path::new("/src/a"), entry(1));
        cache.save();
        let file = cache.sources[0].file.clone();
        let aside = |pid: u32| PathBuf::from(format!("{}.tmp{pid}", file.display()));
        // Pid 1 is never this test: a rewrite another process was killed in.
        std::fs::write(aside(1), b"torn").unwrap();
        std::fs::write(aside(std::process::id()), b"being written").unwrap();
        let next = StatCache::load(dir.path(), std::slice::from_ref(&root));
        assert_eq!(next.get(Path::new("/src/a")), Some(&entry(1)));
        assert!(!aside(1).exists(), "a dead process's leftover is removed");
        assert!(
            aside(std::process::id()).exists(),
            "this process's own is kept"
        );
    }

    #[test]
    fn each_source_folder_has_its_own_file() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (PathBuf::from("/a"), PathBuf::from("/b"));
        let both = StatCache::load(dir.path(), &[a.clone(), b.clone()]);
        both.note(Path::new("/a/x"), entry(1));
        both.note(Path::new("/b/y"), entry(2));
        both.note(Path::new("/elsewhere/z"), entry(3));
        both.save();
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 2);

        // A later run of `b` alone neither sees nor drops `a`'s entries.
        let only_b = StatCache::load(dir.path(), std::slice::from_ref(&b));
        assert_eq!(only_b.get(Path::new("/a/x")), None);
        assert_eq!(only_b.get(Path::new("/b/y")), Some(&entry(2)));
        only_b.save();
        let only_a = StatCache::load(dir.path(), std::slice::from_ref(&a));
        assert_eq!(only_a.get(Path::new("/a/x")), Some(&entry(1)));
    }

    #[test]
    fn a_torn_or_damaged_block_ends_the_reading_and_nothing_wrong_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let root = PathBuf::from("/src");
        let cache = StatCache::load(dir.path(), std::slice::from_ref(&root));
        cache.note(Path::new("/src/a"), entry(1));
        cache.append(cache.noted());
        cache.note(Path::new("/src/b"), entry(2));
        cache.append(cache.noted());
        let file = cache.sources[0].file.clone();
        let whole = std::fs::read(&file).unwrap();

        // A tail cut by a power cut: the blocks before it are read.
        std::fs::write(&file, &whole[..whole.len() - 3]).unwrap();
        let torn = StatCache::load(dir.path(), std::slice::from_ref(&root));
        assert_eq!(torn.get(Path::new("/src/a")), Some(&entry(1)));
        assert_eq!(torn.get(Path::new("/src/b")), None);

        // A flipped byte in the last block's frame: that block is not read.
        let mut flipped = whole.clone();
        *flipped.last_mut().unwrap() ^= 0x40;
        std::fs::write(&file, &flipped).unwrap();
        let damaged = StatCache::load(dir.path(), std::slice::from_ref(&root));
        assert_eq!(damaged.get(Path::new("/src/a")), Some(&entry(1)));
        assert_eq!(damaged.get(Path::new("/src/b")), None);

        // Not a cache at all: nothing read.
        let mut foreign = whole;
        foreign[..8].copy_from_slice(b"NOTCACHE");
        std::fs::write(&file, &foreign).unwrap();
        let foreign = StatCache::load(dir.path(), std::slice::from_ref(&root));
        assert!(foreign.known.is_empty());
    }
}
