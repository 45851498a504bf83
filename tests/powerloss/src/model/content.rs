//! A regular file's bytes, twice: the *current* content every read sees and the
//! *durable* content a power cut goes back to.
//!
//! Both are maps of fixed-size pages ([`PAGE`] bytes) shared copy-on-write (`Arc`), each
//! with its own size. A page absent from a map is a hole and reads as zeros.
//!
//! # Invariants
//! - Every page index not in `dirty` maps to the *same* `Arc` (or to nothing) in both
//!   maps. Hence [`Content::sync`] and [`Content::cut`] cost one step per dirty page,
//!   never one per page of the file, and the two states share their unchanged pages.
//! - In each map, the bytes of a page at or past that state's size are zero, so growing
//!   a file (by `set_size` or `allocate`) exposes zeros without touching any page.
//! - `dirty` holds every page index whose current and durable pages may differ.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

/// Bytes per page: the unit of copy-on-write and of what a cut drops.
pub const PAGE: usize = 4096;
const PAGE_U64: u64 = PAGE as u64;

type Page = Arc<[u8; PAGE]>;

fn zero_page() -> Page {
    Arc::new([0; PAGE])
}

/// A file's current and durable content.
#[derive(Clone, Debug, Default)]
pub struct Content {
    pages: BTreeMap<u64, Page>,
    size: u64,
    durable_pages: BTreeMap<u64, Page>,
    durable_size: u64,
    dirty: BTreeSet<u64>,
}

/// What [`Content::cut`] threw away.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Dropped {
    /// Pages whose current bytes differed (or may have) from the durable ones.
    pub pages: u64,
    /// Whether the size went back.
    pub size_changed: bool,
}

impl Content {
    /// An empty file, durably empty.
    pub fn new() -> Self {
        Self::default()
    }

    /// The current size.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The size a cut would go back to.
    pub fn durable_size(&self) -> u64 {
        self.durable_size
    }

    /// Pages changed since the last sync.
    pub fn dirty_pages(&self) -> u64 {
        self.dirty.len() as u64
    }

    /// Pages holding memory in the current state (holes excluded).
    pub fn allocated_pages(&self) -> u64 {
        self.pages.len() as u64
    }

    /// Writes `data` at `offset`, growing the file if it ends past the end.
    pub fn write(&mut self, offset: u64, data: &[u8]) {
        if data.is_empty() {
            return;
        }
        let mut pos = offset;
        let mut rest = data;
        while !rest.is_empty() {
            let idx = pos / PAGE_U64;
            let within = (pos % PAGE_U64) as usize;
            let n = rest.len().min(PAGE - within);
            let page = self.pages.entry(idx).or_insert_with(zero_page);
            // Copies the page first if the durable state shares it.
            Arc::make_mut(page)[within..within + n].copy_from_slice(&rest[..n]);
            self.dirty.insert(idx);
            pos += n as u64;
            rest = &rest[n..];
        }
        self.size = self.size.max(pos);
    }

    /// Up to `len` bytes from `offset`, fewer at the end of the file.
    pub fn read(&self, offset: u64, len: usize) -> Vec<u8> {
        let end = self.size.min(offset.saturating_add(len as u64));
        if offset >= end {
            return Vec::new();
        }
        let mut out = vec![0; (end - offset) as usize];
        let first = offset / PAGE_U64;
        let last = (end - 1) / PAGE_U64;
        for (&idx, page) in self.pages.range(first..=last) {
            let page_start = idx * PAGE_U64;
            let from = offset.max(page_start);
            let to = end.min(page_start + PAGE_U64);
            let src = &page[(from - page_start) as usize..(to - page_start) as usize];
            let dst = (from - offset) as usize;
            out[dst..dst + src.len()].copy_from_slice(src);
        }
        out
    }

    /// Truncates or extends (with zeros) to `size`.
    pub fn set_size(&mut self, size: u64) {
        if size < self.size {
            self.zero(size, self.size);
        }
        self.size = size;
    }

    /// Zeroes `offset..offset + len` within the file; the size is unchanged. Whole pages
    /// become holes.
    pub fn punch_hole(&mut self, offset: u64, len: u64) {
        let end = self.size.min(offset.saturating_add(len));
        if offset < end {
            self.zero(offset, end);
        }
    }

    /// Zeroes `offset..offset + len`, extending the file unless `keep_size`.
    pub fn zero_range(&mut self, offset: u64, len: u64, keep_size: bool) {
        self.punch_hole(offset, len);
        self.allocate(offset, len, keep_size);
    }

    /// Reserves `offset..offset + len`: holes already read as zeros, so only the size
    /// may change (grows to the end of the range unless `keep_size`).
    pub fn allocate(&mut self, offset: u64, len: u64, keep_size: bool) {
        if !keep_size {
            self.size = self.size.max(offset.saturating_add(len));
        }
    }

    /// Zeroes `from..to` (`to` at most one past the last page): pages wholly inside
    /// become holes, partly covered ones are zeroed in that part.
    fn zero(&mut self, from: u64, to: u64) {
        let first = from / PAGE_U64;
        let last = (to - 1) / PAGE_U64;
        let touched: Vec<u64> = self.pages.range(first..=last).map(|(&i, _)| i).collect();
        for idx in touched {
            let page_start = idx * PAGE_U64;
            let a = from.max(page_start) - page_start;
            let b = to.min(page_start + PAGE_U64) - page_start;
            if a == 0 && b == PAGE_U64 {
                self.pages.remove(&idx);
            } else if let Some(page) = self.pages.get_mut(&idx) {
                Arc::make_mut(page)[a as usize..b as usize].fill(0);
            }
            self.dirty.insert(idx);
        }
    }

    /// fsync/fdatasync: the current content and size become durable. Returns the pages
    /// made durable (what this cost).
    pub fn sync(&mut self) -> u64 {
        let n = self.dirty.len() as u64;
        for idx in std::mem::take(&mut self.dirty) {
            match self.pages.get(&idx) {
                Some(page) => self.durable_pages.insert(idx, page.clone()),
                None => self.durable_pages.remove(&idx),
            };
        }
        self.durable_size = self.size;
        n
    }

    /// A power cut: the current content and size go back to the durable ones.
    pub fn cut(&mut self) -> Dropped {
        let pages = self.dirty.len() as u64;
        for idx in std::mem::take(&mut self.dirty) {
            match self.durable_pages.get(&idx) {
                Some(page) => self.pages.insert(idx, page.clone()),
                None => self.pages.remove(&idx),
            };
        }
        let size_changed = self.size != self.durable_size;
        self.size = self.durable_size;
        Dropped {
            pages,
            size_changed,
        }
    }

    /// Whether the current and durable states share every page not marked dirty (the
    /// invariant that keeps sync and cut cheap); for tests.
    pub fn check_invariants(&self) -> bool {
        let clean = |map: &BTreeMap<u64, Page>| -> Vec<(u64, *const [u8; PAGE])> {
            map.iter()
                .filter(|(i, _)| !self.dirty.contains(i))
                .map(|(&i, p)| (i, Arc::as_ptr(p)))
                .collect()
        };
        let tail_zero = |map: &BTreeMap<u64, Page>, size: u64| {
            map.iter().all(|(&i, p)| {
                let start = i * PAGE_U64;
                let from = size.saturating_sub(start).min(PAGE_U64) as usize;
                p[from..].iter().all(|&b| b == 0)
            })
        };
        clean(&self.pages) == clean(&self.durable_pages)
            && tail_zero(&self.pages, self.size)
            && tail_zero(&self.durable_pages, self.durable_size)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unsynced_writes_vanish_at_a_cut() {
        let mut c = Content::new();
        c.write(0, b"hello");
        assert_eq!(c.sync(), 1);
        c.write(3, b"p me, world");
        assert_eq!(c.read(0, 100), b"help me, world");
        let dropped = c.cut();
        assert_eq!(dropped.pages, 1);
        assert!(dropped.size_changed);
        assert_eq!(c.read(0, 100), b"hello");
        assert!(c.check_invariants());
    }

    #[test]
    fn holes_read_as_zeros_and_take_no_memory() {
        let mut c = Content::new();
        c.write(10 * PAGE_U64 + 1, b"x");
        assert_eq!(c.allocated_pages(), 1);
        assert_eq!(c.size(), 10 * PAGE_U64 + 2);
        let all = c.read(0, usize::MAX);
        assert_eq!(all.len() as u64, c.size());
        assert!(all[..all.len() - 1].iter().all(|&b| b == 0));
    }

    #[test]
    fn truncate_then_extend_reads_zeros() {
        let mut c = Content::new();
        c.write(0, &[7; 3 * PAGE]);
        c.sync();
        c.set_size(100);
        c.set_size(3 * PAGE_U64);
        let all = c.read(0, 3 * PAGE);
        assert!(all[..100].iter().all(|&b| b == 7));
        assert!(all[100..].iter().all(|&b| b == 0));
        assert!(c.check_invariants());
        c.cut();
        assert_eq!(c.read(0, 3 * PAGE), vec![7; 3 * PAGE]);
    }

    #[test]
    fn punch_keeps_the_size_and_frees_whole_pages() {
        let mut c = Content::new();
        c.write(0, &[1; 4 * PAGE]);
        c.sync();
        c.punch_hole(PAGE_U64 / 2, 2 * PAGE_U64);
        assert_eq!(c.size(), 4 * PAGE_U64);
        assert_eq!(c.allocated_pages(), 3);
        let all = c.read(0, 4 * PAGE);
        assert!(all[..PAGE / 2].iter().all(|&b| b == 1));
        assert!(all[PAGE / 2..PAGE / 2 + 2 * PAGE].iter().all(|&b| b == 0));
        assert!(all[PAGE / 2 + 2 * PAGE..].iter().all(|&b| b == 1));
        c.cut();
        assert_eq!(c.read(0, 4 * PAGE), vec![1; 4 * PAGE]);
    }

    #[test]
    fn sync_costs_the_dirty_pages_only() {
        let mut c = Content::new();
        c.write(0, &vec![3; 1000 * PAGE]);
        assert_eq!(c.sync(), 1000);
        c.write(500 * PAGE_U64 + 7, b"abc");
        assert_eq!(c.sync(), 1);
        assert_eq!(c.sync(), 0);
        assert!(c.check_invariants());
    }
}
