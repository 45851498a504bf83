//! Reading a segment front to back without the index: what rebuilding the index,
//! compaction and checking a whole segment do.
//!
//! The scan reads large windows sequentially, skips holes (freed records read as zero
//! bytes, and a record's magic never starts with zero), and after bytes that are not a
//! record it resynchronises on the next header whose checksum holds, reporting the
//! damaged range in between. A record running past the end is reported as damaged too
//! (a torn tail).

use std::fs::File;
use std::io;
use std::ops::ControlFlow;
use std::os::unix::fs::FileExt;
use std::path::Path;

use super::record::{self, Header, HEADER_LEN, MAGIC};
use crate::StoreError;

/// What a scan finds, in file order.
pub enum Found<'a> {
    /// A record whose header is whole; `frame` is its frame as read, and `intact`
    /// whether it matches the header's length and checksum.
    Record {
        offset: u64,
        header: Header,
        frame: &'a [u8],
        intact: bool,
    },
    /// Bytes that are neither a record nor a hole.
    Damaged { offset: u64, len: u64 },
}

const WINDOW: usize = 4 << 20;

/// Bytes of a file, read sequentially through a window.
struct Window<'f> {
    file: &'f File,
    end: u64,
    base: u64,
    buf: Vec<u8>,
}

impl Window<'_> {
    /// At least `n` bytes from `at` (fewer only at the end), as a slice.
    fn get(&mut self, at: u64, n: usize) -> io::Result<&[u8]> {
        let have = self.base + self.buf.len() as u64;
        if at < self.base || at + n as u64 > have {
            let want = (n.max(WINDOW) as u64).min(self.end.saturating_sub(at)) as usize;
            self.buf.resize(want, 0);
            let mut filled = 0;
            while filled < want {
                let got = self
                    .file
                    .read_at(&mut self.buf[filled..], at + filled as u64)?;
                if got == 0 {
                    break;
                }
                filled += got;
            }
            self.buf.truncate(filled);
            self.base = at;
        }
        let from = (at - self.base) as usize;
        Ok(&self.buf[from..(from + n).min(self.buf.len())])
    }
}

/// What a visit of [`scan`] answers: go on, or stop the scan there.
pub type Visited = Result<ControlFlow<()>, StoreError>;

/// Go on scanning.
pub const MORE: Visited = Ok(ControlFlow::Continue(()));

/// Scans `file` (at `path`) from `0` to `end`, calling `visit` for each record and
/// damaged range, until the end or until `visit` answers `Break`.
pub fn scan(
    file: &File,
    path: &Path,
    end: u64,
    mut visit: impl FnMut(Found<'_>) -> Visited,
) -> Result<(), StoreError> {
    let io = |e| StoreError::io("read", path, e);
    let mut w = Window {
        file,
        end,
        base: 0,
        buf: Vec::new(),
    };
    let mut off = 0u64;
    while off < end {
        let head = w.get(off, HEADER_LEN).map_err(io)?;
        if head.is_empty() {
            break;
        }
        if head[0] == 0 {
            let zeros = w.get(off, 64 << 10).map_err(io)?;
            off += zeros.iter().take_while(|b| **b == 0).count() as u64;
            continue;
        }
        if let Some(header) = record::decode_header(head) {
            let rec_end = off + header.record_len();
            if rec_end > end {
                // The last visit either way: what it answers changes nothing.
                let _ = visit(Found::Damaged {
                    offset: off,
                    len: end - off,
                })?;
                break;
            }
            let frame_at = off + HEADER_LEN as u64;
            let frame = w.get(frame_at, header.frame_len as usize).map_err(io)?;
            let intact = record::frame_matches(&header, frame);
            if visit(Found::Record {
                offset: off,
                header,
                frame,
                intact,
            })?
            .is_break()
            {
                break;
            }
            off = rec_end;
            continue;
        }
        let next = resync(&mut w, off + 1).map_err(io)?;
        if visit(Found::Damaged {
            offset: off,
            len: next - off,
        })?
        .is_break()
        {
            break;
        }
        off = next;
    }
    Ok(())
}

/// The first offset at or after `from` where a valid header starts (or the end).
fn resync(w: &mut Window<'_>, mut from: u64) -> io::Result<u64> {
    while from < w.end {
        let bytes = w.get(from, WINDOW)?.to_vec();
        if bytes.is_empty() {
            break;
        }
        for (i, pair) in bytes.windows(MAGIC.len()).enumerate() {
            if pair == MAGIC {
                let at = from + i as u64;
                if record::decode_header(w.get(at, HEADER_LEN)?).is_some() {
                    return Ok(at);
                }
            }
        }
        from += (bytes.len() - MAGIC.len().min(bytes.len()) + 1) as u64;
    }
    Ok(w.end)
}
