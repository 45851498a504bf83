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
    check_mode(root, seal)?;
    match seal {
        Some(s) if recorded(root)?.is_none() => {
            platform::create_private_dir(root).map_err(|e| StoreError::io("create", root, e))?;
            record(root, s, false)
        }
        _ => Ok(()),
    }
}

/// Whether the store at `root`, if one is there, is made as `seal` says (sealed under
/// this key, or clear with `None`): each mismatch is [`StoreError::Unavailable`] saying
/// what to do. Touches nothing and opens no index, so it is cheap on a slow share.
pub fn check_mode(root: &Path, seal: Option<&dyn Sealing>) -> Result<(), StoreError> {
    let exists = super::PackStore::exists_at(root);
    let recorded = recorded(root)?;
    if recorded.as_ref().is_some_and(|r| r.converting) {
        return Err(StoreError::Unavailable(format!(
            "{} was being encrypted in place when that stopped: with encrypt = true for \
             its tier, run `fvfsd convert-store` again (while no daemon runs) to finish",
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
        (Some(_), None) => Ok(()),
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
    /// Keys (a clear id, or a sealed name) of records that were neither an intact
    /// clear frame nor sealed under this key: dropped (fsck `--repair` copies them
    /// again from another tier).
    pub damaged: Vec<ChunkId>,
}

/// Index entries handled per page (sorted by place in the segments).
const PAGE: usize = 1 << 20;

/// Seals the clear pack store at `root` in place, under `seal`; `progress(done, total)`
/// follows. Resumable, and crash-safe at every step:
///
/// 1. the store is marked *converting* (it opens neither clear nor sealed until done);
/// 2. a batch at a time, each clear record is written again sealed under its name to a
///    new segment and synced, and only then is the clear record deleted and that synced
///    (a run after a crash tells clear records from sealed ones by opening them);
/// 3. every segment the index no longer names (all the old ones) is removed whole, so a
///    share that cannot punch holes keeps no clear byte;
/// 4. the index is renamed away and rebuilt from the segments, since its database keeps
///    deleted keys (clear ids) in its files for a while; indexes set aside as damaged
///    go too;
/// 5. the mark says sealed.
///
/// A store already sealed under this key is left alone.
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
    // Sealed records go to new segments only (step 3).
    super::lock(&inner.pool).clear();
    super::lock(&inner.active).clear();
    let total = inner.usage().chunks;
    let mut seen = 0u64;
    let mut after: Vec<u8> = Vec::new();
    loop {
        let mut page: Vec<(Loc, ChunkId)> = Vec::new();
        let start = (!after.is_empty()).then_some(after.as_slice());
        for pair in inner.kv.scan_after(&[index::LOC_PREFIX], start).take(PAGE) {
            let (k, v) = pair.map_err(|e| inner.kv_err(e))?;
            after = k.to_vec();
            let key = ChunkId::from_slice(&k[1..]).expect("32-byte key");
            match Loc::decode(&v) {
                Some(loc) => page.push((loc, key)),
                None => {
                    done.damaged.push(key);
                    inner.delete(&key)?;
                }
            }
        }
        if page.is_empty() {
            break;
        }
        page.sort_unstable_by_key(|(loc, _)| (loc.seg, loc.offset));
        for batch in page.chunks(CONVERT_BATCH) {
            seal_batch(&inner, seal, batch, &mut done)?;
            seen += batch.len() as u64;
            progress(seen.min(total), total);
        }
    }
    inner.sync()?;
    let named: std::collections::HashSet<u32> = inner
        .kv
        .scan_prefix(&[index::LOC_PREFIX], false)
        .map(|pair| {
            let (_, v) = pair.map_err(|e| inner.kv_err(e))?;
            Ok(Loc::decode(&v).map(|l| l.seg))
        })
        .filter_map(Result::transpose)
        .collect::<Result<_, StoreError>>()?;
    let segments = inner.segments.clone();
    drop::<Inner>(inner);
    for (seg, path) in super::open::segment_files(&segments)? {
        if !named.contains(&seg) {
            std::fs::remove_file(&path).map_err(|e| StoreError::io("delete", &path, e))?;
        }
    }
    platform::sync_dir(&segments).map_err(|e| StoreError::io("sync", &segments, e))?;
    let index = root.join("index");
    let cleared = root.join("index.cleared");
    std::fs::rename(&index, &cleared).map_err(|e| StoreError::io("rename", &index, e))?;
    platform::sync_dir(root).map_err(|e| StoreError::io("sync", root, e))?;
    for entry in std::fs::read_dir(root).map_err(|e| StoreError::io("list", root, e))? {
        let path = entry.map_err(|e| StoreError::io("list", root, e))?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if name == "index.cleared" || name.starts_with("index.damaged-") {
            std::fs::remove_dir_all(&path).map_err(|e| StoreError::io("delete", &path, e))?;
        }
    }
    drop::<Inner>(super::open::open(root.to_owned(), opts)?);
    record(root, seal, false)?;
    Ok(done)
}

/// Step 2 of [`seal_in_place`] for one batch of records: sealed copies written and
/// synced first, clear records deleted after (a record already sealed is left).
fn seal_batch(
    inner: &Inner,
    seal: &dyn Sealing,
    batch: &[(Loc, ChunkId)],
    done: &mut Sealed,
) -> Result<(), StoreError> {
    let mut gone = Vec::new();
    for &(loc, key) in batch {
        let kept = match inner.read(&key, loc).and_then(|k| k.into_frame(&key)) {
            Ok(kept) => kept,
            Err(StoreError::Corrupt { .. }) => {
                done.damaged.push(key);
                gone.push(key);
                continue;
            }
            Err(e) => return Err(e),
        };
        if seal.open(&seal.id_of(&key), &kept).is_some() {
            continue;
        }
        match verify(&key, Bytes::clone(&kept)) {
            Ok(_) => {
                inner.put(seal.name(&key), &seal.seal(&key, &kept))?;
                done.chunks += 1;
            }
            Err(_) => done.damaged.push(key),
        }
        gone.push(key);
    }
    inner.sync()?;
    for key in &gone {
        inner.delete(key)?;
    }
    inner.sync()
}
