//! Sorted sets of fixed-size records, more of them than memory should hold: the chunks
//! fsck and gc find reachable (millions of 32-byte ids) and the order fsck reads them
//! in.
//!
//! A [`Sorter`] holds at most its [`Spill`]'s budget of records in memory. When that
//! fills up it sorts them and drops duplicates; if that frees less than half, it writes
//! them to a temporary file (a run) and starts again. [`Sorter::finish`] gives a
//! [`Sorted`] set: the records themselves when nothing was written, else one file the
//! runs are merged into (and at most [`MAX_RUNS`] runs are kept apart: more are merged
//! into one first). Either way each record is in it once, in ascending order; it
//! is read front to back any number of times ([`Sorted::iter`]) and asked whether it
//! holds a record ([`Sorted::contains`]: a file by its fences, the first record of
//! each page, reading one page a lookup and keeping the last one).
//!
//! Invariants: memory is bounded by the budget, a read buffer per run while merging
//! and a fence per page, never by the number of records; the temporary files have no
//! name (`O_TMPFILE`), so a crash or a kill leaves nothing behind in the folder.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use fvfs_cas::ChunkId;

/// A record of fixed length, ordered as its values are.
pub trait Record: Copy + Ord + Send + Sync + 'static {
    const LEN: usize;
    fn put(&self, out: &mut Vec<u8>);
    /// The record of `bytes`, exactly [`Record::LEN`] of them.
    fn get(bytes: &[u8]) -> Self;
}

impl Record for ChunkId {
    const LEN: usize = 32;

    fn put(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.as_bytes());
    }

    fn get(bytes: &[u8]) -> Self {
        ChunkId::from_slice(bytes).expect("32 bytes")
    }
}

/// A chunk with a key placed before it (fsck's storage order).
impl Record for (u64, ChunkId) {
    const LEN: usize = 40;

    fn put(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.0.to_le_bytes());
        self.1.put(out);
    }

    fn get(bytes: &[u8]) -> Self {
        let key = u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes"));
        (key, ChunkId::get(&bytes[8..]))
    }
}

/// Where sorted sets that outgrow memory go, and how much memory each may take first.
#[derive(Clone, Debug)]
pub struct Spill {
    dir: PathBuf,
    budget: usize,
}

/// Records per page of a merged file: a lookup reads one page (8 KiB of ids).
const PAGE_RECORDS: usize = 256;
/// Bytes read at once from a run or a merged file, front to back.
const READ_AHEAD: usize = 64 << 10;
/// Runs kept apart at most (each an open file and, while merging, a read buffer):
/// beyond, they are merged into one.
const MAX_RUNS: usize = 64;

impl Spill {
    /// Memory a sorter takes before it writes to disk: a million chunk ids.
    pub const DEFAULT_BUDGET: usize = 32 << 20;

    /// Temporary files in `dir` (the store's data directory: on its disk, not in a
    /// `/tmp` that may be memory), after [`Spill::DEFAULT_BUDGET`] bytes of records.
    pub fn in_dir(dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: dir.into(),
            budget: Self::DEFAULT_BUDGET,
        }
    }

    /// The same folder, after `bytes` of records (at least a few records).
    pub fn with_budget(self, bytes: usize) -> Self {
        Self {
            budget: bytes,
            ..self
        }
    }

    /// An empty sorter of records `R`, its runs in this folder.
    pub fn sorter<R: Record>(&self) -> Sorter<R> {
        Sorter {
            spill: self.clone(),
            cap: (self.budget / R::LEN).max(4),
            buf: Vec::new(),
            runs: Vec::new(),
        }
    }

    fn file(&self) -> io::Result<File> {
        tempfile::tempfile_in(&self.dir).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("a temporary file in {}: {e}", self.dir.display()),
            )
        })
    }
}

/// Gathers records in any order, with duplicates; see the module's doc.
pub struct Sorter<R> {
    spill: Spill,
    cap: usize,
    buf: Vec<R>,
    /// Sorted runs written, each with its record count.
    runs: Vec<(File, u64)>,
}

impl<R: Record> Sorter<R> {
    /// Adds `r`; fails only when a run cannot be written (the folder, a full disk).
    pub fn push(&mut self, r: R) -> io::Result<()> {
        if self.buf.len() == self.cap {
            sort_unique(&mut self.buf);
            if self.buf.len() > self.cap / 2 {
                self.spill_buf()?;
            }
        }
        if self.buf.capacity() == 0 {
            self.buf.reserve_exact(self.cap);
        }
        self.buf.push(r);
        Ok(())
    }

    /// Writes the (sorted) records in memory as a run; at [`MAX_RUNS`], merges the
    /// runs into one.
    fn spill_buf(&mut self) -> io::Result<()> {
        let records = self.buf.drain(..).map(Ok);
        let (file, n, _) = write_sorted(&self.spill, records)?;
        tracing::debug!(
            records = n,
            runs = self.runs.len() + 1,
            "a sort went on disk"
        );
        self.runs.push((file, n));
        if self.runs.len() >= MAX_RUNS {
            let merged = Merge::<R>::new(readers(std::mem::take(&mut self.runs)))?;
            let (file, n, _) = write_sorted(&self.spill, merged)?;
            self.runs.push((file, n));
        }
        Ok(())
    }

    /// Every record pushed, once each, in order.
    pub fn finish(mut self) -> io::Result<Sorted<R>> {
        sort_unique(&mut self.buf);
        if self.runs.is_empty() {
            self.buf.shrink_to_fit();
            return Ok(Sorted::Memory(Arc::new(self.buf)));
        }
        let mut runs = readers(self.runs);
        runs.push(Box::new(std::mem::take(&mut self.buf).into_iter().map(Ok)));
        let (file, len, fences) = write_sorted(&self.spill, Merge::new(runs)?)?;
        Ok(Sorted::File {
            file: Arc::new(file),
            len,
            fences,
            page: Mutex::new(None),
        })
    }
}

fn sort_unique<R: Ord>(v: &mut Vec<R>) {
    v.sort_unstable();
    v.dedup();
}

fn readers<R: Record>(runs: Vec<(File, u64)>) -> Vec<Iter<R>> {
    runs.into_iter()
        .map(|(file, n)| Box::new(Reader::new(Arc::new(file), n)) as Iter<R>)
        .collect()
}

/// Writes `records` (in order) to a new temporary file; returns it, how many records
/// it holds and the first record of each of its pages.
fn write_sorted<R: Record>(
    spill: &Spill,
    records: impl Iterator<Item = io::Result<R>>,
) -> io::Result<(File, u64, Vec<R>)> {
    let file = spill.file()?;
    let mut out = BufWriter::with_capacity(READ_AHEAD, &file);
    let (mut n, mut fences, mut bytes) = (0u64, Vec::new(), Vec::with_capacity(R::LEN));
    for r in records {
        let r = r?;
        if n % PAGE_RECORDS as u64 == 0 {
            fences.push(r);
        }
        bytes.clear();
        r.put(&mut bytes);
        out.write_all(&bytes)?;
        n += 1;
    }
    out.flush()?;
    drop(out);
    Ok((file, n, fences))
}

/// A sorted set of records, each once (see the module's doc).
pub enum Sorted<R> {
    Memory(Arc<Vec<R>>),
    File {
        file: Arc<File>,
        len: u64,
        /// The first record of each page.
        fences: Vec<R>,
        /// The page read last, by number.
        page: Mutex<Option<(usize, Vec<R>)>>,
    },
}

impl<R: Record> Sorted<R> {
    pub fn len(&self) -> u64 {
        match self {
            Sorted::Memory(v) => v.len() as u64,
            Sorted::File { len, .. } => *len,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The records in order, from the first.
    pub fn iter(&self) -> Iter<R> {
        match self {
            Sorted::Memory(v) => Box::new(MemoryIter {
                records: v.clone(),
                at: 0,
            }),
            Sorted::File { file, len, .. } => Box::new(Reader::new(file.clone(), *len)),
        }
    }

    /// A cursor at the first record.
    pub fn cursor(&self) -> io::Result<Cursor<R>> {
        let mut iter = self.iter();
        let next = iter.next().transpose()?;
        Ok(Cursor { iter, next })
    }

    /// Whether the set holds `r`, asked in any order.
    pub fn contains(&self, r: &R) -> io::Result<bool> {
        let (file, len, fences, page) = match self {
            Sorted::Memory(v) => return Ok(v.binary_search(r).is_ok()),
            Sorted::File {
                file,
                len,
                fences,
                page,
            } => (file, *len, fences, page),
        };
        let Some(n) = fences.partition_point(|f| f <= r).checked_sub(1) else {
            return Ok(false);
        };
        let mut page = page.lock().unwrap_or_else(|p| p.into_inner());
        if page.as_ref().is_none_or(|(at, _)| *at != n) {
            let first = (n * PAGE_RECORDS) as u64;
            let count = (len - first).min(PAGE_RECORDS as u64) as usize;
            let mut bytes = vec![0u8; count * R::LEN];
            file.read_exact_at(&mut bytes, first * R::LEN as u64)?;
            *page = Some((n, bytes.chunks_exact(R::LEN).map(R::get).collect()));
        }
        let (_, records) = page.as_ref().expect("just read");
        Ok(records.binary_search(r).is_ok())
    }
}

/// A set read front to back, asked about records in ascending order (a merge of two
/// sorted sequences: gc's sweep of the chunk records against what is reachable).
pub struct Cursor<R> {
    iter: Iter<R>,
    next: Option<R>,
}

impl<R: Record> Cursor<R> {
    /// Whether the set holds `r`; `r` is not below any record asked about before.
    pub fn holds(&mut self, r: &R) -> io::Result<bool> {
        while self.next.as_ref().is_some_and(|n| n < r) {
            self.next = self.iter.next().transpose()?;
        }
        Ok(self.next.as_ref() == Some(r))
    }
}

/// Records read front to back; owns what it reads from, so it can go to another task.
pub type Iter<R> = Box<dyn Iterator<Item = io::Result<R>> + Send>;

struct MemoryIter<R> {
    records: Arc<Vec<R>>,
    at: usize,
}

impl<R: Copy> Iterator for MemoryIter<R> {
    type Item = io::Result<R>;

    fn next(&mut self) -> Option<Self::Item> {
        let r = *self.records.get(self.at)?;
        self.at += 1;
        Some(Ok(r))
    }
}

/// The `len` records of a file, read [`READ_AHEAD`] bytes at a time by offset (so
/// readers of one file do not share a position).
struct Reader<R> {
    file: Arc<File>,
    left: u64,
    offset: u64,
    buf: Vec<u8>,
    at: usize,
    _records: std::marker::PhantomData<R>,
}

impl<R: Record> Reader<R> {
    fn new(file: Arc<File>, len: u64) -> Self {
        Self {
            file,
            left: len,
            offset: 0,
            buf: Vec::new(),
            at: 0,
            _records: std::marker::PhantomData,
        }
    }

    fn refill(&mut self) -> io::Result<()> {
        let per_read = (READ_AHEAD / R::LEN) as u64;
        let count = self.left.min(per_read) as usize;
        self.buf.resize(count * R::LEN, 0);
        self.file.read_exact_at(&mut self.buf, self.offset)?;
        self.offset += self.buf.len() as u64;
        self.at = 0;
        Ok(())
    }
}

impl<R: Record> Iterator for Reader<R> {
    type Item = io::Result<R>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.at == self.buf.len() {
            if self.left == 0 {
                return None;
            }
            if let Err(e) = self.refill() {
                self.left = 0;
                return Some(Err(e));
            }
        }
        let r = R::get(&self.buf[self.at..self.at + R::LEN]);
        self.at += R::LEN;
        self.left -= 1;
        Some(Ok(r))
    }
}

/// Sorted runs merged into one order, each record once.
struct Merge<R> {
    runs: Vec<Iter<R>>,
    /// Each run's next record, by run.
    heads: BinaryHeap<Reverse<(R, usize)>>,
    last: Option<R>,
}

impl<R: Record> Merge<R> {
    fn new(mut runs: Vec<Iter<R>>) -> io::Result<Self> {
        let mut heads = BinaryHeap::with_capacity(runs.len());
        for (n, run) in runs.iter_mut().enumerate() {
            if let Some(r) = run.next() {
                heads.push(Reverse((r?, n)));
            }
        }
        Ok(Self {
            runs,
            heads,
            last: None,
        })
    }
}

impl<R: Record> Iterator for Merge<R> {
    type Item = io::Result<R>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let Reverse((r, n)) = self.heads.pop()?;
            match self.runs[n].next() {
                Some(Ok(next)) => self.heads.push(Reverse((next, n))),
                Some(Err(e)) => return Some(Err(e)),
                None => {}
            }
            if self.last != Some(r) {
                self.last = Some(r);
                return Some(Ok(r));
            }
        }
    }
}

#[cfg(test)]
mod tests;
