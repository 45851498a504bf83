//! The device's chunk cache: raw chunk bytes on disk in append-only segment files,
//! with an index in memory and a small memory cache in front.
//!
//! One file per chunk cost the kernel more than everything else a cold read does
//! (a mkdir, create, write and rename per chunk: most of fvfsc's system CPU in a cold
//! `tar`), and every warm read of a chunk an open, read and close. A segment takes a
//! chunk with one positioned write, and gives it back with one positioned read on a
//! file kept open.
//!
//! # Invariants
//! - A record is a header (the chunk's id and length) and the chunk's bytes. The
//!   index names a record only once it is written whole; every read is verified
//!   against the id, and a bad record counts as a miss and leaves the index. Nothing
//!   is synced: a record torn by a crash fails that check (the cache is never the
//!   only copy).
//! - Segments are evicted whole, least recently used first (a read touches its
//!   segment), so the disk cache stays within its byte limit and [`MAX_ENTRIES`]
//!   chunks, plus the segment being written; the segment being written is never
//!   evicted. The bound on chunks bounds the index in memory: a tar of 3,000,000
//!   small files through a mount filled a 10 GB cache with about 2.5 million chunks,
//!   and the index took some 175 MB.
//! - The index is keyed by the first 8 bytes of a chunk's id ([`Key`]): 20 bytes an
//!   entry with its location, and 8 in the segments' lists instead of 32 (heaptrack of
//!   a mount's walk of 300,000 small files: 45 MB of index with whole ids, more while
//!   it grew). Two chunks sharing those bytes (about one chance in 10^7 among three
//!   million) cost a miss: the read's check against the whole id fails and the record
//!   leaves the index.
//! - Each process appends to segments of its own (named by pid and number) and indexes
//!   the others' when it starts: two mounts on one device share what was cached
//!   before either started, and each may fill up to the limit before seeing the
//!   other's new segments (one mount per device is the common case).

use std::fs::{self, File};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use super::FastMap;
use bytes::Bytes;
use fvfs_cas::ChunkId;

use super::lru::Lru;

/// Bytes of chunks kept in memory in front of the disk cache.
const MEMORY_BYTES: u64 = 64 << 20;

/// Segment size for large caches; small caches use a sixteenth of their limit, so that
/// evicting one segment frees a small part of the cache.
const SEGMENT_BYTES: u64 = 64 << 20;

/// A record's header: the chunk id and its length (little-endian u32).
const HEADER: usize = 36;

/// Largest record length believed when scanning (tree nodes are the largest chunks:
/// well under a MiB).
const MAX_RECORD: u64 = 16 << 20;

/// Chunks indexed at most, besides those of the segment being written: the index's
/// table stays at 2^21 slots (about 44 MB), with room for a segment of the smallest
/// chunks before it would double. A 10 GB cache of 64 KiB chunks holds 160,000.
const MAX_ENTRIES: usize = 1 << 20;

pub struct ChunkCache {
    dir: PathBuf,
    limit: u64,
    max_entries: usize,
    segment_bytes: u64,
    disk: Mutex<Disk>,
    memory: Mutex<(Lru, FastMap<ChunkId, Bytes>)>,
}

/// Where a chunk's bytes are: segment, offset of the bytes (segments are written up
/// to 64 MiB and a record past it), length.
#[derive(Clone, Copy)]
struct Loc {
    segment: u32,
    at: u32,
    len: u32,
}

/// What the index knows a chunk by: the first 8 bytes of its id, as two words so that
/// an entry is aligned to 4 bytes (20 with its location, not 24).
type Key = [u32; 2];

fn key(id: &ChunkId) -> Key {
    let b = id.as_bytes();
    let word = |i: usize| u32::from_le_bytes(b[i..i + 4].try_into().expect("4 bytes"));
    [word(0), word(4)]
}

struct Segment {
    file: Arc<File>,
    path: PathBuf,
    /// Bytes written or reserved.
    end: u64,
    /// Last use (a higher tick is more recent).
    used: u64,
    /// The keys of its records.
    keys: Vec<Key>,
}

#[derive(Default)]
struct Disk {
    index: FastMap<Key, Loc>,
    segments: FastMap<u32, Segment>,
    /// The segment this process appends to, and the number of the next one.
    current: Option<u32>,
    next: u32,
    bytes: u64,
    tick: u64,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl ChunkCache {
    /// Opens (or creates) the cache in `dir`, holding at most `limit` bytes on disk
    /// (plus the segment being written), and indexes the segments there.
    pub fn open(dir: &Path, limit: u64) -> std::io::Result<Self> {
        fs::create_dir_all(dir)?;
        let mut disk = Disk::default();
        let mut found = Vec::new();
        for f in fs::read_dir(dir)? {
            let f = f?;
            let path = f.path();
            if f.file_type()?.is_dir() {
                // The layout of one file per chunk, from before segments.
                fs::remove_dir_all(&path)?;
            } else if path.extension().is_some_and(|e| e == "seg") {
                let modified = f.metadata()?.modified()?;
                found.push((modified, path));
            }
        }
        found.sort();
        for (_, path) in found {
            match scan(&path) {
                Ok((file, records, end)) => {
                    let n = disk.next;
                    disk.next += 1;
                    disk.tick += 1;
                    let mut keys = Vec::with_capacity(records.len());
                    for (id, at, len) in records {
                        disk.index.insert(
                            key(&id),
                            Loc {
                                segment: n,
                                at,
                                len,
                            },
                        );
                        keys.push(key(&id));
                    }
                    disk.bytes += end;
                    let (used, file) = (disk.tick, Arc::new(file));
                    disk.segments.insert(
                        n,
                        Segment {
                            file,
                            path,
                            end,
                            used,
                            keys,
                        },
                    );
                }
                Err(e) => {
                    tracing::warn!("chunk cache: dropping {}: {e}", path.display());
                    let _ = fs::remove_file(&path);
                }
            }
        }
        let cache = Self {
            dir: dir.to_owned(),
            limit,
            max_entries: MAX_ENTRIES,
            segment_bytes: (limit / 16).clamp(64 << 10, SEGMENT_BYTES),
            disk: Mutex::new(disk),
            memory: Mutex::default(),
        };
        cache.shrink(&mut lock(&cache.disk));
        Ok(cache)
    }

    /// Bytes on disk now.
    pub fn disk_bytes(&self) -> u64 {
        lock(&self.disk).bytes
    }

    /// Whether the chunk is cached (without reading it).
    pub fn contains(&self, id: &ChunkId) -> bool {
        lock(&self.memory).1.contains_key(id) || lock(&self.disk).index.contains_key(&key(id))
    }

    /// The chunk's bytes if cached (verified).
    pub fn get(&self, id: &ChunkId) -> Option<Bytes> {
        {
            let mut mem = lock(&self.memory);
            if let Some(b) = mem.1.get(id).cloned() {
                mem.0.touch(*id, b.len() as u64);
                return Some(b);
            }
        }
        let (loc, file) = {
            let mut disk = lock(&self.disk);
            let loc = *disk.index.get(&key(id))?;
            disk.tick += 1;
            let tick = disk.tick;
            let seg = disk.segments.get_mut(&loc.segment)?;
            seg.used = tick;
            (loc, seg.file.clone())
        };
        match fvfs_cas::platform::read_exact_at(&file, loc.at.into(), loc.len as usize) {
            Ok(data) if ChunkId::of(&data) == *id => {
                let data = Bytes::from(data);
                self.remember(*id, data.clone());
                Some(data)
            }
            _ => {
                lock(&self.disk).index.remove(&key(id));
                None
            }
        }
    }

    /// Keeps `data` (already verified to be chunk `id`) in memory and on disk.
    pub fn put(&self, id: ChunkId, data: Bytes) {
        self.remember(id, data.clone());
        let Ok(len) = u32::try_from(data.len()) else {
            return;
        };
        let reserved = {
            let mut disk = lock(&self.disk);
            if disk.index.contains_key(&key(&id)) {
                return;
            }
            self.reserve(&mut disk, HEADER as u64 + u64::from(len))
        };
        let (segment, file, start) = match reserved {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!("chunk cache: cannot keep {id}: {e}");
                return;
            }
        };
        let mut header = [0u8; HEADER];
        header[..32].copy_from_slice(id.as_bytes());
        header[32..].copy_from_slice(&len.to_le_bytes());
        let written = file
            .write_all_at(&header, start)
            .and_then(|()| file.write_all_at(&data, start + HEADER as u64));
        if let Err(e) = written {
            tracing::warn!("chunk cache: cannot keep {id}: {e}");
            return;
        }
        let Ok(at) = u32::try_from(start + HEADER as u64) else {
            return;
        };
        let mut disk = lock(&self.disk);
        // The segment may have been evicted meanwhile: then the record is gone too.
        if let Some(seg) = disk.segments.get_mut(&segment) {
            seg.keys.push(key(&id));
            disk.index.insert(key(&id), Loc { segment, at, len });
        }
    }

    /// Room for `n` bytes at the end of this process's segment (a new one when it is
    /// full): the segment, its file and where the room starts. Evicts what the limit
    /// asks.
    fn reserve(&self, disk: &mut Disk, n: u64) -> std::io::Result<(u32, Arc<File>, u64)> {
        let full = |d: &Disk| {
            d.current
                .and_then(|c| d.segments.get(&c))
                .is_none_or(|s| s.end >= self.segment_bytes)
        };
        if full(disk) {
            let n = disk.next;
            disk.next += 1;
            let path = self.dir.join(format!("{}-{n}.seg", std::process::id()));
            let file = File::options()
                .read(true)
                .write(true)
                .create(true)
                .truncate(true)
                .open(&path)?;
            disk.tick += 1;
            let segment = Segment {
                file: Arc::new(file),
                path,
                end: 0,
                used: disk.tick,
                keys: Vec::new(),
            };
            disk.segments.insert(n, segment);
            disk.current = Some(n);
        }
        let current = disk.current.expect("made above");
        disk.tick += 1;
        let tick = disk.tick;
        let seg = disk.segments.get_mut(&current).expect("current");
        let start = seg.end;
        seg.end += n;
        seg.used = tick;
        let file = seg.file.clone();
        disk.bytes += n;
        self.shrink(disk);
        Ok((current, file, start))
    }

    fn remember(&self, id: ChunkId, data: Bytes) {
        let mut mem = lock(&self.memory);
        mem.0.touch(id, data.len() as u64);
        mem.1.insert(id, data);
        while mem.0.bytes() > MEMORY_BYTES {
            let Some(old) = mem.0.pop_oldest() else { break };
            mem.1.remove(&old);
        }
    }

    /// Deletes least recently used segments (never the one being written) until the
    /// disk cache is under its limits.
    fn shrink(&self, disk: &mut Disk) {
        while disk.bytes > self.limit || disk.index.len() > self.max_entries {
            let oldest = disk
                .segments
                .iter()
                .filter(|(n, _)| Some(**n) != disk.current)
                .min_by_key(|(_, s)| s.used)
                .map(|(n, _)| *n);
            let Some(n) = oldest else { break };
            let seg = disk.segments.remove(&n).expect("found");
            for k in &seg.keys {
                if disk.index.get(k).is_some_and(|l| l.segment == n) {
                    disk.index.remove(k);
                }
            }
            disk.bytes -= seg.end;
            let _ = fs::remove_file(&seg.path);
        }
    }
}

/// Records found in a segment: id, offset of the bytes, length.
type Records = Vec<(ChunkId, u32, u32)>;

/// The records of segment file `path` whose header and bytes are all there (a torn
/// tail is cut off); the file and its length.
fn scan(path: &Path) -> std::io::Result<(File, Records, u64)> {
    let file = File::options().read(true).write(true).open(path)?;
    let size = file.metadata()?.len();
    let mut records = Vec::new();
    let mut at = 0u64;
    let mut header = [0u8; HEADER];
    while at + HEADER as u64 <= size {
        file.read_exact_at(&mut header, at)?;
        let len = u32::from_le_bytes(header[32..].try_into().expect("4 bytes"));
        let end = at + HEADER as u64 + u64::from(len);
        // No segment this cache writes reaches 4 GiB.
        let Ok(start) = u32::try_from(at + HEADER as u64) else {
            break;
        };
        // No chunk is empty: zeros are a tail a power cut left unwritten.
        if len == 0 || u64::from(len) > MAX_RECORD || end > size {
            break;
        }
        let id = ChunkId::from_bytes(header[..32].try_into().expect("32 bytes"));
        records.push((id, start, len));
        at = end;
    }
    if at < size {
        file.set_len(at)?;
    }
    Ok((file, records, at))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chunk_sharing_the_first_bytes_of_an_id_is_a_miss_not_wrong_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let data = vec![9u8; 5000];
        let id = ChunkId::of(&data);
        let mut alike = *id.as_bytes();
        alike[31] ^= 1;
        let alike = ChunkId::from_bytes(alike);
        {
            let c = ChunkCache::open(dir.path(), 1 << 20).unwrap();
            c.put(id, Bytes::from(data.clone()));
        }
        // Reopened: nothing in memory, the disk index alone answers.
        let c = ChunkCache::open(dir.path(), 1 << 20).unwrap();
        assert!(c.contains(&alike), "the index knows the first 8 bytes only");
        assert!(
            c.get(&alike).is_none(),
            "bytes of another chunk were returned"
        );
        assert!(c.get(&id).is_none(), "the record left the index");
        c.put(id, Bytes::from(data.clone()));
        assert_eq!(c.get(&id).as_deref(), Some(&data[..]));
    }

    #[test]
    fn keeps_under_its_limit_survives_reopen_and_drops_bad_records() {
        let dir = tempfile::tempdir().unwrap();
        let chunks: Vec<Vec<u8>> = (0..200u32)
            .map(|i| vec![i as u8; 1000 + i as usize])
            .collect();
        let limit = 100_000;
        let held = |c: &ChunkCache, d: &[u8]| c.get(&ChunkId::of(d)).is_some();
        {
            let c = ChunkCache::open(dir.path(), limit).unwrap();
            for data in &chunks {
                c.put(ChunkId::of(data), Bytes::from(data.clone()));
                assert!(c.disk_bytes() <= limit + c.segment_bytes + 2000);
            }
        }
        let c = ChunkCache::open(dir.path(), limit).unwrap();
        assert!(c.disk_bytes() <= limit + c.segment_bytes + 2000);
        assert!(held(&c, &chunks[199]), "the newest survive a restart");
        assert!(!held(&c, &chunks[0]), "the oldest went first");
        // A damaged record is never returned, and a torn tail is cut off.
        let newest = ChunkId::of(&chunks[199]);
        let (seg, at) = {
            let disk = lock(&c.disk);
            let loc = disk.index[&key(&newest)];
            (disk.segments[&loc.segment].path.clone(), loc.at)
        };
        drop(c);
        let f = File::options().write(true).open(&seg).unwrap();
        f.write_all_at(b"garbage", at.into()).unwrap();
        f.write_all_at(&[7; 20], f.metadata().unwrap().len())
            .unwrap();
        let c = ChunkCache::open(dir.path(), limit).unwrap();
        assert!(!held(&c, &chunks[199]));
        assert!(held(&c, &chunks[198]));
        // A power cut can leave an unsynced tail as zeros: cut off, nothing indexed.
        drop(c);
        let end = f.metadata().unwrap().len();
        f.write_all_at(&[0; 4096], end).unwrap();
        let c = ChunkCache::open(dir.path(), limit).unwrap();
        assert_eq!(f.metadata().unwrap().len(), end);
        assert!(held(&c, &chunks[198]));
    }

    #[test]
    fn keeps_under_its_limit_of_chunks_whatever_their_size() {
        let dir = tempfile::tempdir().unwrap();
        let chunks: Vec<Vec<u8>> = (0..1000u32).map(|i| i.to_le_bytes().repeat(250)).collect();
        let per_segment = (64 << 10) / (1000 + HEADER) + 1;
        let indexed = |c: &ChunkCache| lock(&c.disk).index.len();
        {
            let mut c = ChunkCache::open(dir.path(), 1 << 30).unwrap();
            (c.max_entries, c.segment_bytes) = (100, 64 << 10);
            for data in &chunks {
                c.put(ChunkId::of(data), Bytes::from(data.clone()));
                assert!(indexed(&c) <= 100 + per_segment, "{}", indexed(&c));
            }
            assert!(
                c.disk_bytes() < 200 * 1000,
                "segments evicted from the disk"
            );
        }
        // What is left on disk, indexed again: the newest, not the oldest.
        let c = ChunkCache::open(dir.path(), 1 << 30).unwrap();
        let left = indexed(&c);
        assert!(
            left > 100 - per_segment && left <= 100 + per_segment,
            "{left}"
        );
        assert!(c.get(&ChunkId::of(&chunks[999])).is_some());
        assert!(c.get(&ChunkId::of(&chunks[0])).is_none());
    }

    #[test]
    fn concurrent_puts_and_gets_agree() {
        let dir = tempfile::tempdir().unwrap();
        let c = Arc::new(ChunkCache::open(dir.path(), 1 << 30).unwrap());
        let threads: Vec<_> = (0..4u8)
            .map(|t| {
                let c = c.clone();
                std::thread::spawn(move || {
                    for i in 0..500u32 {
                        let data = format!("thread {t} chunk {i}").repeat(50).into_bytes();
                        let id = ChunkId::of(&data);
                        c.put(id, Bytes::from(data.clone()));
                        assert_eq!(c.get(&id).as_deref(), Some(&data[..]));
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        // From disk, with the memory cache cold.
        let c = ChunkCache::open(dir.path(), 1 << 30).unwrap();
        for t in 0..4u8 {
            let data = format!("thread {t} chunk 499").repeat(50).into_bytes();
            assert_eq!(c.get(&ChunkId::of(&data)).as_deref(), Some(&data[..]));
        }
    }
}
