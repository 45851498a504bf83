//! Converting a store in the chunk-file layout of earlier versions (`ROOT/ab/abcd…`,
//! one file per chunk, marker `FVFS-STORE`) into a pack store, in place.
//!
//! Resumable: a shard's files are deleted only after the records made from them are
//! synced and indexed, and the old marker goes last, so an interrupted conversion
//! simply runs again (chunks already moved are skipped by `put`). Every frame is
//! verified on the way: a damaged one is moved to `ROOT/damaged/` and reported (fsck
//! then repairs it from another tier), never copied into a segment.

use std::fs;
use std::path::Path;

use bytes::Bytes;

use super::{Inner, PackOptions};
use crate::{platform, verify, ChunkId, StoreError};

const LEGACY_MARKER: &str = "FVFS-STORE";

/// Whether `root` holds a store in the chunk-file layout (or one half converted).
pub fn is_legacy(root: &Path) -> bool {
    root.join(LEGACY_MARKER).is_file()
}

/// What a conversion did.
#[derive(Debug, Default)]
pub struct Converted {
    pub chunks: u64,
    pub bytes: u64,
    /// Chunk files whose frame did not decode to their name, moved to `ROOT/damaged/`.
    pub damaged: Vec<ChunkId>,
}

/// Converts the chunk-file store at `root` into a pack store; `progress(done, total)`
/// is called after each shard (256 in all). A store already converted is left alone.
pub fn convert_legacy(
    root: &Path,
    opts: PackOptions,
    progress: impl Fn(u64, u64),
) -> Result<Converted, StoreError> {
    let mut done = Converted::default();
    if !is_legacy(root) {
        return Ok(done);
    }
    let inner = super::open::open(root.to_owned(), opts)?;
    let damaged_dir = root.join("damaged");
    for shard in 0..=255u8 {
        let dir = root.join(hex::encode([shard]));
        if !dir.is_dir() {
            progress(u64::from(shard) + 1, 256);
            continue;
        }
        let mut converted = Vec::new();
        for entry in fs::read_dir(&dir).map_err(|e| StoreError::io("list", &dir, e))? {
            let path = entry.map_err(|e| StoreError::io("list", &dir, e))?.path();
            let id: Option<ChunkId> = path.file_name().and_then(|n| n.to_str()?.parse().ok());
            let Some(id) = id else {
                // A `.tmp` frame was never synced: nothing relies on it.
                converted.push(path);
                continue;
            };
            let frame = fs::read(&path).map_err(|e| StoreError::io("read", &path, e))?;
            match verify(&id, Bytes::from(frame)) {
                Ok(loaded) => {
                    done.chunks += 1;
                    done.bytes += loaded.frame.len() as u64;
                    inner.put(id, &loaded.frame)?;
                    converted.push(path);
                }
                Err(_) => {
                    fs::create_dir_all(&damaged_dir)
                        .map_err(|e| StoreError::io("create", &damaged_dir, e))?;
                    let to = damaged_dir.join(id.to_hex());
                    fs::rename(&path, &to).map_err(|e| StoreError::io("rename", &to, e))?;
                    done.damaged.push(id);
                }
            }
        }
        inner.sync()?;
        for path in converted {
            fs::remove_file(&path).map_err(|e| StoreError::io("delete", &path, e))?;
        }
        fs::remove_dir(&dir).map_err(|e| StoreError::io("delete", &dir, e))?;
        platform::sync_dir(root).map_err(|e| StoreError::io("sync", root, e))?;
        progress(u64::from(shard) + 1, 256);
    }
    drop::<Inner>(inner);
    for name in ["OPEN", LEGACY_MARKER] {
        let path = root.join(name);
        if path.exists() {
            fs::remove_file(&path).map_err(|e| StoreError::io("delete", &path, e))?;
        }
    }
    platform::sync_dir(root).map_err(|e| StoreError::io("sync", root, e))?;
    Ok(done)
}
