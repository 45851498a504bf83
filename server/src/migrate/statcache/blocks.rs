//! The stat cache's file format, and the order of its entries.
//!
//! A file is a magic, then blocks `[u32 LE length][32-byte BLAKE3 id][frame]`, each
//! frame (`fvfs_cas::frame`, verified against the id when read) holding entries
//! `[u32 LE path length][path][u32 LE value length][value]`: paths relative to the
//! source folder, in the walk's order ([`walk_cmp`]) across the whole file, so that a
//! run reads it alongside its walk, a block at a time. Reading stops at the first torn
//! or damaged block. A saved file ([`MAGIC`]) holds [`Form::Landed`] values; a journal
//! ([`JOURNAL_MAGIC`], then the records epoch it was written under, u64 LE, see
//! `Repo::records_epoch`) holds [`Form::Whole`] ones, as saved files did before.

use std::cmp::Ordering;
use std::fs::File;
use std::io::{BufReader, Read, Write};
use std::path::{Path, PathBuf};

use fvfs_cas::{frame, platform, ChunkId};

/// A saved file's first bytes.
pub const MAGIC: &[u8; 8] = b"FVFSSTC4";
/// A journal's first bytes, and those of files saved before `FVFSSTC4`. `FVFSSTC2` had
/// no epoch: its entries are read as written under none. `FVFSSTC1` keyed entries by
/// a hash of their path in no order: such a file is read as empty once, then replaced.
pub const JOURNAL_MAGIC: &[u8; 8] = b"FVFSSTC3";
const MAGIC_WITHOUT_EPOCH: &[u8; 8] = b"FVFSSTC2";
/// A block is cut once its entries take this many bytes: what a reader holds.
const BLOCK_BYTES: usize = 256 << 10;
/// An entry larger than this (a file with huge extended attributes) is not kept: that
/// file is read again at each run. Far below `frame::MAX_RAW_LEN`.
pub const ENTRY_MAX: usize = 1 << 20;

/// The order in which `fvfs_walk` meets the files below a folder, as relative paths:
/// a folder's files by name, then each subfolder's whole contents, subfolders by name.
pub fn walk_cmp(a: &[u8], b: &[u8]) -> Ordering {
    let (mut x, mut y) = (a.split(|c| *c == b'/'), b.split(|c| *c == b'/'));
    loop {
        match (x.next(), y.next()) {
            (Some(p), Some(q)) => {
                // A name that ends its path is a file here.
                let (p_file, q_file) = (x.clone().next().is_none(), y.clone().next().is_none());
                match (p_file, q_file) {
                    (true, false) => return Ordering::Less,
                    (false, true) => return Ordering::Greater,
                    _ => match p.cmp(q) {
                        Ordering::Equal => continue,
                        other => return other,
                    },
                }
            }
            (None, None) => return Ordering::Equal,
            (None, Some(_)) => return Ordering::Less,
            (Some(_), None) => return Ordering::Greater,
        }
    }
}

/// What a file's values are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Form {
    /// Whole entries (`StatEntry`), written under a records epoch (none in the format
    /// before): journals, and files saved before `FVFSSTC4`.
    Whole(Option<u64>),
    /// Stats and prints of what landed (`Landed`): saved files.
    Landed,
}

/// Entries read from a file in order, a block at a time.
pub struct Reader {
    pub form: Form,
    file: BufReader<File>,
    path: PathBuf,
    block: Vec<u8>,
    at: usize,
    /// At the end, or at a damaged place: nothing more is read.
    ended: bool,
}

impl Reader {
    /// The file at `path`; `None` if there is none or it is not in this format (both
    /// read as an empty cache; the second is reported).
    pub fn open(path: &Path) -> Option<Self> {
        let mut file = match File::open(path) {
            Ok(f) => BufReader::new(f),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
            Err(e) => {
                tracing::warn!(file = %path.display(), "stat cache unreadable, its source will be read again: {e}");
                return None;
            }
        };
        let mut head = [0u8; 16];
        let form = match file.read_exact(&mut head[..8]) {
            Ok(()) if &head[..8] == MAGIC => Form::Landed,
            Ok(()) if &head[..8] == MAGIC_WITHOUT_EPOCH => Form::Whole(None),
            Ok(()) if &head[..8] == JOURNAL_MAGIC && file.read_exact(&mut head[8..]).is_ok() => {
                Form::Whole(Some(u64::from_le_bytes(
                    head[8..].try_into().expect("8 bytes"),
                )))
            }
            _ => {
                tracing::warn!(file = %path.display(), "not a stat cache of this version: its source will be read again");
                return None;
            }
        };
        Some(Self {
            form,
            file,
            path: path.to_owned(),
            block: Vec::new(),
            at: 0,
            ended: false,
        })
    }

    /// The next entry, path and value; `None` at the end or at a torn or damaged
    /// block (reported).
    pub fn next_entry(&mut self) -> Option<(Vec<u8>, Vec<u8>)> {
        if self.ended {
            return None;
        }
        if self.at == self.block.len() {
            match self.next_block() {
                Some(block) => (self.block, self.at) = (block, 0),
                None => {
                    self.ended = true;
                    return None;
                }
            }
        }
        let entry = entry_at(&self.block, &mut self.at);
        if entry.is_none() {
            tracing::warn!(file = %self.path.display(), "stat cache: a damaged entry ends the reading");
            self.ended = true;
        }
        entry
    }

    fn next_block(&mut self) -> Option<Vec<u8>> {
        let mut head = [0u8; 36];
        // The end of the file, where a block would start: the end of the cache.
        self.file.read_exact(&mut head[..1]).ok()?;
        let whole = self.file.read_exact(&mut head[1..]).ok().and_then(|()| {
            let len = u32::from_le_bytes(head[..4].try_into().ok()?) as usize;
            let id = ChunkId::from_slice(&head[4..36])?;
            if len > frame::MAX_RAW_LEN + 1024 {
                return None;
            }
            let mut framed = vec![0u8; len];
            self.file.read_exact(&mut framed).ok()?;
            frame::decode(&id, &framed).ok()
        });
        if whole.is_none() {
            tracing::warn!(file = %self.path.display(), "stat cache: a torn or damaged block ends the reading");
        }
        whole
    }
}

fn entry_at(raw: &[u8], at: &mut usize) -> Option<(Vec<u8>, Vec<u8>)> {
    let mut take = |n: usize| -> Option<&[u8]> {
        let s = raw.get(*at..*at + n)?;
        *at += n;
        Some(s)
    };
    let plen = u32::from_le_bytes(take(4)?.try_into().ok()?) as usize;
    let path = take(plen)?.to_vec();
    let vlen = u32::from_le_bytes(take(4)?.try_into().ok()?) as usize;
    let value = take(vlen)?.to_vec();
    Some((path, value))
}

/// A file written in order, a block at a time.
pub struct Writer {
    file: File,
    path: PathBuf,
    raw: Vec<u8>,
}

impl Writer {
    /// A new journal at `path` (which must not exist), written under records `epoch`.
    pub fn journal(path: &Path, epoch: u64) -> std::io::Result<Self> {
        let mut head = JOURNAL_MAGIC.to_vec();
        head.extend_from_slice(&epoch.to_le_bytes());
        Self::create(path, &head)
    }

    /// A new file to save at `path` (which must not exist).
    pub fn landed(path: &Path) -> std::io::Result<Self> {
        Self::create(path, MAGIC)
    }

    fn create(path: &Path, head: &[u8]) -> std::io::Result<Self> {
        let dir = path.parent().expect("a file in the cache folder");
        platform::create_private_dir(dir)?;
        let mut file = File::options().write(true).create_new(true).open(path)?;
        file.write_all(head)?;
        platform::sync_dir(dir)?;
        Ok(Self {
            file,
            path: path.to_owned(),
            raw: Vec::new(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Adds an entry (after those added before it in the walk's order); one larger
    /// than [`ENTRY_MAX`] is left out.
    pub fn push(&mut self, path: &[u8], value: &[u8]) -> std::io::Result<()> {
        if path.len() + value.len() > ENTRY_MAX {
            return Ok(());
        }
        self.raw
            .extend_from_slice(&(path.len() as u32).to_le_bytes());
        self.raw.extend_from_slice(path);
        self.raw
            .extend_from_slice(&(value.len() as u32).to_le_bytes());
        self.raw.extend_from_slice(value);
        if self.raw.len() >= BLOCK_BYTES {
            self.cut()?;
        }
        Ok(())
    }

    /// Writes what was added as a block.
    pub fn cut(&mut self) -> std::io::Result<()> {
        if self.raw.is_empty() {
            return Ok(());
        }
        let id = ChunkId::of(&self.raw);
        let framed = frame::encode(&self.raw);
        let mut block = Vec::with_capacity(36 + framed.len());
        block.extend_from_slice(&(framed.len() as u32).to_le_bytes());
        block.extend_from_slice(id.as_bytes());
        block.extend_from_slice(&framed);
        self.file.write_all(&block)?;
        self.raw.clear();
        Ok(())
    }

    /// Writes what was added, and makes the file durable.
    pub fn sync(&mut self) -> std::io::Result<()> {
        self.cut()?;
        platform::sync_data(&self.file)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_walk_order_puts_a_folders_files_before_its_subfolders() {
        let mut paths: Vec<&[u8]> = vec![
            b"b/z", b"a", b"b/a/x", b"c", b"b-c", b"b/b", b"a/y", b"b/a/w", b"a.txt",
        ];
        paths.sort_by(|a, b| walk_cmp(a, b));
        let expected: Vec<&[u8]> = vec![
            b"a", b"a.txt", b"b-c", b"c", b"a/y", b"b/b", b"b/z", b"b/a/w", b"b/a/x",
        ];
        assert_eq!(paths, expected);
        assert_eq!(walk_cmp(b"d/e", b"d/e"), Ordering::Equal);
    }
}
