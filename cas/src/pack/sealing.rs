//! A pack store on a medium others can read (an encrypted NAS tier): each chunk is
//! kept under a *name* instead of its id, and its frame *sealed*, so that neither the
//! segments nor the index tell whoever lacks the key what is stored, nor whether a
//! known file is. The cipher lives outside cas (`fvfs_tiering::seal`); the store
//! only applies it at its boundary: everything inside (records, index, scan,
//! compaction, crash recovery) works on names and sealed bytes as it does on ids and
//! frames, and records still carry checksums of what they hold.
//!
//! ```text
//! ROOT/SEALED   "fvfs sealed pack store, key <fingerprint>": written durably before
//!               the store's marker, so a store is sealed from its first record on;
//!               a second line "converting" while a clear store is sealed in place
//! ```
//!
//! # Invariants
//! - A store is opened sealed only under the key it was made with, and a sealed store
//!   is never opened in the clear, nor a clear store as sealed: each is refused with
//!   what to do, before anything is read or written.
//! - A get returns bytes only if they open under the key *for that id* (a record moved
//!   to another name fails) and then decode to the id, as in every store.

use std::path::Path;

use bytes::Bytes;

use super::index::{self, Loc};
use super::{Inner, PackOptions};
use crate::{platform, verify, ChunkId, StoreError};

/// The cipher of a sealed pack store.
pub trait Sealing: Send + Sync {
    /// The name `id` is kept under. A permutation of ids: [`Sealing::id_of`] undoes it.
    fn name(&self, id: &ChunkId) -> ChunkId;
    /// The id kept under `name`.
    fn id_of(&self, name: &ChunkId) -> ChunkId;
    /// `frame` of chunk `id`, sealed.
    fn seal(&self, id: &ChunkId, frame: &[u8]) -> Vec<u8>;
    /// The frame sealed for `id`, or `None` when `sealed` does not open for it (changed,
    /// moved from another chunk, or sealed under another key).
    fn open(&self, id: &ChunkId, sealed: &[u8]) -> Option<Vec<u8>>;
    /// A public name of the key, recorded in the store so another key is refused.
    fn key_fingerprint(&self) -> String;
}

const SEALED: &str = "SEALED";
const PREFIX: &str = "fvfs sealed pack store, key ";
const CONVERTING: &str = "converting";
/// Records sealed between two syncs of a conversion.
const CONVERT_BATCH: usize = 4096;

/// What `ROOT/SEALED` says.
struct Recorded {
    fingerprint: String,
    converting: bool,
}

fn recorded(root: &Path) -> Result<Option<Recorded>, StoreError> {
    let path = root.join(SEALED);
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(StoreError::io("read", &path, e)),
    };
    let mut lines = text.lines();
    match (
        lines.next().and_then(|l| l.strip_prefix(PREFIX)),
        lines.next(),
    ) {
        (Some(fp), second @ (None | Some(CONVERTING))) => Ok(Some(Recorded {
            fingerprint: fp.to_owned(),
            converting: second.is_some(),
        })),
        _ => Err(StoreError::Unavailable(format!(
            "{} is damaged: it should say which key seals the store",
            path.display()
        ))),
    }
}

fn record(root: &Path, seal: &dyn Sealing, converting: bool) -> Result<(), StoreError> {
    let mut text = format!("{PREFIX}{}\n", seal.key_fingerprint());
    if converting {
        text.push_str(CONVERTING);
        text.push('\n');
    }
    platform::write_durably(&root.join(SEALED), text.as_bytes(), 0o600)
        .map_err(|e| StoreError::io("write", root.join(SEALED), e))
}

/// Checks that the store at `root` may be opened with `seal` (or in the clear, with
/// `None`), and makes a new store sealed before its marker exists.
pub(super) fn prepare(root: &Path, seal: Option<&dyn Sealing>) -> Result<(), StoreError> {
    let exists = super::PackStore::exists_at(root);
    let recorded = recorded(root)?;
    if recorded.as_ref().is_some_and(|r| r.converting) {
        return Err(StoreError::Unavailable(format!(
            "{} was being encrypted in place when that stopped: run `fvfsd convert-store` \
             again (while no daemon runs) to finish",
            root.display()
        )));
    }
    match (seal, recorded.map(|r| r.fingerprint)) {
        (None, None) => Ok(()),
        (None, Some(_)) => Err(StoreError::Unavailable(format!(
            "{} is an encrypted pack store: set encrypt = true for its tier (its key is \
             the S3 tier's master key)",
            root.display()
        ))),
        (Some(s), Some(fp)) if fp == s.key_fingerprint() => Ok(()),
        (Some(s), Some(fp)) => Err(other_key(root, &fp, s)),
        (Some(_), None) if exists => Err(StoreError::Unavailable(format!(
            "{} holds chunks in the clear, and its tier is configured with encrypt = true: \
             run `fvfsd convert-store` (while no daemon runs) to seal them in place, or set \
             encrypt = false",
            root.display()
        ))),
        (Some(s), None) => {
            platform::create_private_dir(root).map_err(|e| StoreError::io("create", root, e))?;
            record(root, s, false)
        }
    }
}

fn other_key(root: &Path, fp: &str, seal: &dyn Sealing) -> StoreError {
    StoreError::Unavailable(format!(
        "{} is sealed under key {fp}, not under this store's key {}: it belongs to \
         another fvfs store",
        root.display(),
        seal.key_fingerprint()
    ))
}

/// What [`seal_in_place`] did.
#[derive(Debug, Default)]
pub struct Sealed {
    /// Records sealed by this run.
    pub chunks: u64,
    /// Records that were neither an intact clear frame nor sealed under this key:
    /// dropped (fsck `--repair` copies them again from another tier).
    pub damaged: Vec<ChunkId>,
}

/// Seals the clear pack store at `root` in place, under `seal`: every record is
/// written again under its name and sealed, then the clear one deleted; `progress(done,
/// total)` follows. Resumable: the store is marked *converting* before the first
/// record changes, every batch is synced before the next, and a run after a crash
/// tells clear records from sealed ones by opening them. A store already sealed under
/// this key is left alone.
pub fn seal_in_place(
    root: &Path,
    opts: PackOptions,
    seal: &dyn Sealing,
    progress: impl Fn(u64, u64),
) -> Result<Sealed, StoreError> {
    let mut done = Sealed::default();
    match recorded(root)? {
        Some(r) if r.fingerprint != seal.key_fingerprint() => {
            return Err(other_key(root, &r.fingerprint, seal));
        }
        Some(r) if !r.converting => return Ok(done),
        _ => {}
    }
    if !super::PackStore::exists_at(root) {
        return Err(StoreError::Unavailable(format!(
            "{} holds no pack store to encrypt",
            root.display()
        )));
    }
    record(root, seal, true)?;
    let inner = super::open::open(root.to_owned(), opts)?;
    // Sealed records go to new segments only, so that once the clear ones are deleted
    // compaction removes every old segment whole: a share that cannot punch holes
    // keeps no clear bytes.
    super::lock(&inner.pool).clear();
    super::lock(&inner.active).clear();
    // Every record, in file order (reads stream through the segments).
    let mut all: Vec<(Loc, ChunkId)> = Vec::new();
    for pair in inner.kv.scan_prefix(&[index::LOC_PREFIX], false) {
        let (k, v) = pair.map_err(|e| inner.kv_err(e))?;
        let key = ChunkId::from_slice(&k[1..]).expect("32-byte key");
        if let Some(loc) = Loc::decode(&v) {
            all.push((loc, key));
        }
    }
    all.sort_unstable_by_key(|(loc, _)| (loc.seg, loc.offset));
    let total = all.len() as u64;
    for (n, (loc, key)) in all.into_iter().enumerate() {
        seal_one(&inner, seal, key, loc, &mut done)?;
        if (n + 1) % CONVERT_BATCH == 0 {
            inner.sync()?;
            progress(n as u64 + 1, total);
        }
    }
    inner.sync()?;
    super::compact::compact(&inner)?;
    drop::<Inner>(inner);
    // The index's database keeps deleted keys (clear ids) in its files for a while: it
    // is made again from the segments, which now hold sealed records only.
    let index = root.join("index");
    std::fs::remove_dir_all(&index).map_err(|e| StoreError::io("delete", &index, e))?;
    platform::sync_dir(root).map_err(|e| StoreError::io("sync", root, e))?;
    drop::<Inner>(super::open::open(root.to_owned(), opts)?);
    progress(total, total);
    record(root, seal, false)?;
    Ok(done)
}

/// Seals the record of `key` at `loc` if it is clear (a record already sealed is left).
fn seal_one(
    inner: &Inner,
    seal: &dyn Sealing,
    key: ChunkId,
    loc: Loc,
    done: &mut Sealed,
) -> Result<(), StoreError> {
    let kept = match inner.read(&key, loc) {
        Ok(kept) => kept,
        Err(StoreError::Corrupt { .. }) => {
            done.damaged.push(key);
            return inner.delete(&key);
        }
        Err(e) => return Err(e),
    };
    if seal.open(&seal.id_of(&key), &kept).is_some() {
        return Ok(());
    }
    match verify(&key, Bytes::clone(&kept)) {
        Ok(_) => {
            inner.put(seal.name(&key), &seal.seal(&key, &kept))?;
            done.chunks += 1;
        }
        Err(_) => done.damaged.push(key),
    }
    inner.delete(&key)
}

/// Whether the store at `root` is sealed (by any key).
pub fn is_sealed(root: &Path) -> bool {
    root.join(SEALED).is_file()
}
