//! What a pack store (local or NAS tier) holds, read straight from its segment files
//! as they are on disk, without its index: so a test can look while a daemon has the
//! store open, and damage one record the way a bad sector or a torn write would.

use std::collections::BTreeSet;
use std::fs::{self, File};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use fvfs_cas::pack::record::HEADER_LEN;
use fvfs_cas::pack::scan::{scan, Found};
use fvfs_cas::{ChunkId, ChunkStore, PackOptions, PackStore};

/// One intact record found in a segment: a chunk's own, or a block of chunks.
#[derive(Clone, Debug)]
pub struct Record {
    /// The chunk, or for a block the name its header gives it (no chunk's).
    pub id: ChunkId,
    /// The chunks a block holds (empty for a chunk's own record).
    pub members: Vec<ChunkId>,
    pub segment: PathBuf,
    /// Where the record starts in its segment.
    pub offset: u64,
    /// The whole record's length (header and frame).
    pub len: u64,
}

impl Record {
    /// Flips one bit of the record's last byte (its frame): the header still names
    /// the chunk, reading it finds the damage.
    pub fn flip_last_byte(&self) {
        let file = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&self.segment)
            .unwrap();
        let at = self.offset + self.len - 1;
        let mut byte = [0u8];
        file.read_exact_at(&mut byte, at).unwrap();
        file.write_all_at(&[byte[0] ^ 0x01], at).unwrap();
    }

    /// The record's frame, as stored.
    pub fn frame(&self) -> Vec<u8> {
        let mut frame = vec![0u8; (self.len - HEADER_LEN as u64) as usize];
        File::open(&self.segment)
            .unwrap()
            .read_exact_at(&mut frame, self.offset + HEADER_LEN as u64)
            .unwrap();
        frame
    }

    /// Puts this record's chunk into the pack store at `root` (which no process may
    /// have open), durably: a copy no bitmask knows about, as a crash between a copy
    /// and its bit leaves.
    pub fn copy_to(&self, root: &Path) {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(async {
            let store = PackStore::open(root, PackOptions::default()).unwrap();
            store.put(self.id, self.frame().into()).await.unwrap();
            store.sync().await.unwrap();
        });
    }

    /// Overwrites the whole record with zeros: the chunk is gone from the medium
    /// (a lost sector) while the index still names it.
    pub fn wipe(&self) {
        let file = fs::OpenOptions::new()
            .write(true)
            .open(&self.segment)
            .unwrap();
        file.write_all_at(&vec![0u8; self.len as usize], self.offset)
            .unwrap();
    }
}

/// Every intact record in the segments of the store at `root`, largest first. A chunk
/// may appear twice for a moment (while a compaction copies it).
pub fn records(root: &Path) -> Vec<Record> {
    let mut out = Vec::new();
    let dir = root.join("segments");
    let mut segments: Vec<PathBuf> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "seg"))
        .collect();
    segments.sort();
    for segment in segments {
        let file = File::open(&segment).unwrap();
        let end = file.metadata().unwrap().len();
        scan(&file, &segment, end, |found| {
            if let Found::Record {
                offset,
                header,
                frame,
                intact: true,
            } = found
            {
                let members = fvfs_cas::block::table(frame)
                    .map_or_else(Vec::new, |t| t.members.iter().map(|m| m.0).collect());
                out.push(Record {
                    id: header.id,
                    members,
                    segment: segment.clone(),
                    offset,
                    len: header.record_len(),
                });
            }
            fvfs_cas::pack::scan::MORE
        })
        .unwrap();
    }
    out.sort_by(|a, b| b.len.cmp(&a.len).then(a.id.cmp(&b.id)));
    out
}

impl Record {
    /// Whether this record holds chunk `id` (its own, or a block with it).
    pub fn holds(&self, id: &ChunkId) -> bool {
        match self.members.is_empty() {
            true => self.id == *id,
            false => self.members.contains(id),
        }
    }
}

/// The distinct chunks the store at `root` holds intact (in records of their own or
/// in blocks).
pub fn ids(root: &Path) -> BTreeSet<ChunkId> {
    records(root)
        .into_iter()
        .flat_map(|r| match r.members.is_empty() {
            true => vec![r.id],
            false => r.members,
        })
        .collect()
}

/// The records holding chunk `id` in the store at `root` (at least one, or a panic).
pub fn find(root: &Path, id: &ChunkId) -> Vec<Record> {
    let found: Vec<Record> = records(root).into_iter().filter(|r| r.holds(id)).collect();
    assert!(
        !found.is_empty(),
        "{} holds no record of {id}",
        root.display()
    );
    found
}

/// Bytes of the segment files of the pack store at `root` (what the disk holds).
pub fn segment_bytes(root: &Path) -> u64 {
    fs::read_dir(root.join("segments"))
        .map(|dir| {
            dir.filter_map(|e| e.ok()?.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}
