//! Pack compaction: giving back the S3 space of chunks garbage collection dropped.
//!
//! A pack is immutable, so dropping a chunk only forgets its location; its bytes stay
//! until the pack goes. [`S3Store::compact`] deletes packs no location names any more,
//! and rewrites packs whose live share fell under a threshold: their live chunks go
//! into new packs (through the open packs, as replication does: tree nodes, as the
//! caller tells them apart, into packs of nodes), then the old pack is deleted.
//!
//! A pack to rewrite is not read from the bucket when the local tier holds every
//! live chunk of it whole: those copies are moved instead (a GET of the pack would
//! cost egress, paid by the byte on most clouds, for bytes the house has).
//!
//! What moves is rewritten with context where it pays (issue 47), since it was read
//! whole anyway: frames that compress, and the live members of blocks that are
//! mostly dead, are packed in pack order into blocks of about
//! [`block::BLOCK_RAW`] raw bytes at the dense level (sealed whole in an encrypted
//! bucket); frames that do not compress (photos) move as stored, and a block still
//! mostly live moves as stored with its live members.
//!
//! # Invariants
//! - **A pack is deleted only when no location names it**, checked while no upload is
//!   in flight (all upload permits held), so a pack whose locations are about to be
//!   recorded is never taken for an empty one.
//! - **Moved frames never have a gap.** A live frame is re-added to the open pack
//!   without forgetting its old location (reads are served from memory, then from the
//!   new pack once its location replaces the old one); the old pack is deleted only
//!   after the new locations are recorded. A failed upload leaves the old locations,
//!   and so the old pack, in place.

use std::collections::{HashMap, HashSet};

use crate::records::PackLoc;
use bytes::Bytes;
use fvfs_api::reports::{Compaction, Followed};
use fvfs_cas::block;
use fvfs_cas::{ChunkId, ChunkStore, StoreError};

use super::{Holds, S3Store, UPLOADS};

/// Live bytes and locations of one pack.
#[derive(Default)]
struct PackUse {
    live_bytes: u64,
    chunks: Vec<(ChunkId, PackLoc)>,
}

impl S3Store {
    /// Live locations grouped by pack.
    fn pack_uses(&self) -> Result<HashMap<[u8; 32], PackUse>, StoreError> {
        let mut uses: HashMap<[u8; 32], PackUse> = HashMap::new();
        for (id, loc) in self.locs.all()? {
            let u = uses.entry(loc.pack).or_default();
            u.live_bytes += u64::from(loc.live_len());
            u.chunks.push((id, loc));
        }
        Ok(uses)
    }

    /// Deletes packs with nothing live and rewrites those whose live share is under
    /// `min_live` (0..1), the chunks `is_node` names into packs of nodes, taking
    /// them from `local` when it holds them all. With `dry_run`, only counts.
    async fn compact_packs(
        &self,
        min_live: f64,
        dry_run: bool,
        is_node: &IsNode<'_>,
        local: Option<&dyn ChunkStore>,
    ) -> Result<Compaction, StoreError> {
        let mut report = Compaction::default();
        let mut rewrite: Vec<(String, u64, PackUse)> = Vec::new();
        {
            let _quiet = self.quiet().await?;
            let mut uses = self.pack_uses()?;
            for obj in self.bucket.list("packs/").await? {
                report.packs += 1;
                report.pack_bytes += obj.size;
                let Some(name) = pack_name(&obj.key) else {
                    continue;
                };
                match uses.remove(&name) {
                    None => {
                        if !dry_run {
                            self.bucket.delete(&obj.key).await?;
                        }
                        report.packs_deleted += 1;
                        report.bytes_freed += obj.size;
                    }
                    Some(u) if (u.live_bytes as f64) < min_live * obj.size as f64 => {
                        rewrite.push((obj.key, obj.size, u));
                    }
                    Some(_) => {}
                }
            }
        }
        if dry_run {
            for (_, size, u) in &rewrite {
                report.packs_rewritten += 1;
                report.bytes_freed += size;
                report.bytes_moved += u.live_bytes;
            }
            return Ok(report);
        }
        let mut moved = Vec::new();
        let mut packer = Packer::default();
        for (key, size, mut u) in rewrite {
            // In pack order: one file's chunks stay together in the blocks made.
            u.chunks
                .sort_unstable_by_key(|(_, l)| (l.offset, l.member.map(|m| m.index)));
            if let Some(local) = local {
                if self
                    .move_from_local(local, &u.chunks, is_node, &mut packer)
                    .await?
                {
                    report.bytes_moved += u.live_bytes;
                    moved.push((key, size));
                    continue;
                }
            }
            let Some(object) = self.bucket.get(&key).await? else {
                continue;
            };
            let mut whole = true;
            for group in u
                .chunks
                .chunk_by(|(_, a), (_, b)| a.offset == b.offset && b.member.is_some())
            {
                let (id, loc) = group[0];
                let holds = Holds::of(&id, is_node);
                let range = loc.offset as usize..(loc.offset + u64::from(loc.len)) as usize;
                let Some(stored) = object.get(range).map(|f| object.slice_ref(f)) else {
                    tracing::error!(pack = key, chunk = %id, "pack shorter than its index: left in place for fsck");
                    whole = false;
                    continue;
                };
                let moves = match loc.member {
                    None => self.move_frame(id, stored, holds, &mut packer).await,
                    Some(_) => self.move_block(group, stored, holds, &mut packer).await,
                };
                match moves {
                    Ok(()) => {
                        report.bytes_moved += group
                            .iter()
                            .map(|(_, l)| u64::from(l.live_len()))
                            .sum::<u64>()
                    }
                    Err(why) => {
                        tracing::error!(
                            pack = key,
                            offset = loc.offset,
                            chunks = group.len(),
                            "{why}: left in place for fsck"
                        );
                        whole = false;
                    }
                }
            }
            if whole {
                moved.push((key, size));
            }
        }
        for holds in Holds::ALL {
            self.flush_packer(&mut packer, holds, true).await?;
        }
        self.sync().await?;
        // Moved and located anew; the old packs not deleted yet.
        fvfs_cas::failpoint::hit("s3-compact-moved");
        let _quiet = self.quiet().await?;
        let uses = self.pack_uses()?;
        for (key, size) in moved {
            if pack_name(&key).is_some_and(|n| !uses.contains_key(&n)) {
                self.bucket.delete(&key).await?;
                report.packs_rewritten += 1;
                report.bytes_freed += size;
            }
        }
        Ok(report)
    }

    /// Moves `chunks` (the live ones of a pack, in pack order) from `local`'s copies,
    /// if it holds every one whole (each checked against its id before any moves);
    /// answers whether it did.
    async fn move_from_local(
        &self,
        local: &dyn ChunkStore,
        chunks: &[(ChunkId, PackLoc)],
        is_node: &IsNode<'_>,
        packer: &mut Packer,
    ) -> Result<bool, StoreError> {
        use futures::StreamExt;
        let ids: Vec<ChunkId> = chunks.iter().map(|(id, _)| *id).collect();
        let mut copies: HashMap<ChunkId, Bytes> = HashMap::with_capacity(ids.len());
        let mut frames = local.copy_frames(ids);
        while let Some((id, frame)) = frames.next().await {
            match frame {
                Ok(f) => copies.insert(id, f),
                Err(_) => return Ok(false),
            };
        }
        drop(frames);
        let mut moves = Vec::with_capacity(chunks.len());
        for (id, _) in chunks {
            let Some(frame) = copies.remove(id) else {
                return Ok(false);
            };
            let holds = Holds::of(id, is_node);
            let moving = match block::worth(id, &frame) {
                Some(raw) => Move::Raw(raw),
                None => match fvfs_cas::verify(id, frame) {
                    Ok(l) => Move::Frame(l.frame, l.data.len() as u32),
                    Err(_) => return Ok(false),
                },
            };
            moves.push((*id, holds, moving));
        }
        for (id, holds, moving) in moves {
            match moving {
                Move::Raw(raw) => self.pack(packer, holds, id, raw).await?,
                Move::Frame(frame, raw_len) => {
                    let stored = self.bucket.seal_frame(&id, &frame);
                    self.push_frame(holds, id, &stored, raw_len).await?;
                }
            }
        }
        Ok(true)
    }

    /// Moves frame `stored` of `id`: its raw bytes to the packer if they compress, else
    /// as stored. The error says why it is left in place.
    async fn move_frame(
        &self,
        id: ChunkId,
        stored: Bytes,
        holds: Holds,
        packer: &mut Packer,
    ) -> Result<(), String> {
        let loaded = self
            .bucket
            .open_frame(&id, stored.clone())
            .map_err(|e| format!("damaged frame ({e})"))?;
        match block::worth(&id, &loaded.frame) {
            Some(raw) => self.pack(packer, holds, id, raw).await,
            // Pushed even though a location names it already.
            None => {
                let raw_len = loaded.data.len() as u32;
                self.push_frame(holds, id, &stored, raw_len).await
            }
        }
        .map_err(|e| e.to_string())
    }

    /// Moves the live `members` of block `stored`: as stored if they are at least half
    /// of it, else their raw bytes to the packer. Every member is checked first; the
    /// error says why none moves.
    async fn move_block(
        &self,
        members: &[(ChunkId, PackLoc)],
        stored: Bytes,
        holds: Holds,
        packer: &mut Packer,
    ) -> Result<(), String> {
        let block = self.bucket.open_block(stored.clone())?;
        let decoded = block::decode(&block).ok_or("damaged block (does not decode)")?;
        let mut live = Vec::with_capacity(members.len());
        for (id, loc) in members {
            let index = loc.member.map_or(u32::MAX, |m| m.index);
            match decoded.member(index, id) {
                Some(raw) if ChunkId::of(&raw) == *id => live.push((*id, index, raw)),
                _ => return Err(format!("damaged block (member {id} at entry {index})")),
            }
        }
        let live_raw: usize = live.iter().map(|(.., raw)| raw.len()).sum();
        if live_raw * 2 >= decoded.table.raw_len {
            let listed: Vec<(ChunkId, u32, u32)> = live
                .iter()
                .map(|(id, index, raw)| (*id, *index, raw.len() as u32))
                .collect();
            let full = self.mem().push_block(holds, &stored, &listed);
            return self.seal_if(full, holds).await.map_err(|e| e.to_string());
        }
        // A block at a time (blocks stay near their size whatever is added).
        for (id, _, raw) in live {
            let packed = self.pack(packer, holds, id, raw.to_vec()).await;
            packed.map_err(|e| e.to_string())?;
        }
        Ok(())
    }

    /// Gives `raw` of `id` to the packer, and pushes the block it completes, if any.
    async fn pack(
        &self,
        packer: &mut Packer,
        holds: Holds,
        id: ChunkId,
        raw: Vec<u8>,
    ) -> Result<(), StoreError> {
        packer.add(holds, id, raw);
        self.flush_packer(packer, holds, false).await
    }

    /// Compresses what the packer holds for `holds` into blocks at the dense level and
    /// pushes them (sealed whole): every full block, and with `last` the rest too (a
    /// lone chunk as a frame).
    async fn flush_packer(
        &self,
        packer: &mut Packer,
        holds: Holds,
        last: bool,
    ) -> Result<(), StoreError> {
        while let Some(members) = packer.take(holds, last) {
            let (members, dense, whole) = tokio::task::spawn_blocking(move || {
                let refs: Vec<(ChunkId, &[u8])> =
                    members.iter().map(|(id, r)| (*id, &r[..])).collect();
                let dense = block::dense(&refs);
                let listed: Vec<(ChunkId, u32)> =
                    (0..).zip(&members).map(|(i, (id, _))| (*id, i)).collect();
                let whole = block::gives_back(&dense, &listed);
                (members, dense, whole)
            })
            .await
            .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()));
            if !whole {
                // Nothing moved yet for these: their old copies stay named.
                return Err(StoreError::Unavailable(
                    "a block just compressed does not give its chunks back (memory?)".into(),
                ));
            }
            let full = match &members[..] {
                [(id, raw)] => {
                    let stored = self.bucket.seal_frame(id, &dense);
                    self.mem().push(holds, *id, &stored, raw.len() as u32)
                }
                _ => {
                    let stored = self.bucket.seal_block(&dense);
                    let listed: Vec<(ChunkId, u32, u32)> = members
                        .iter()
                        .enumerate()
                        .map(|(i, (id, raw))| (*id, i as u32, raw.len() as u32))
                        .collect();
                    self.mem().push_block(holds, &stored, &listed)
                }
            };
            self.seal_if(full, holds).await?;
        }
        Ok(())
    }

    /// Holds every upload permit: no pack is being uploaded meanwhile.
    async fn quiet(&self) -> Result<tokio::sync::SemaphorePermit<'_>, StoreError> {
        self.uploads
            .acquire_many(UPLOADS)
            .await
            .map_err(|_| StoreError::Unavailable("S3 store closed".into()))
    }
}

/// How a chunk taken from the local tier moves: its raw bytes into a block, or its
/// frame as it is (with its raw length).
enum Move {
    Raw(Vec<u8>),
    Frame(Bytes, u32),
}

/// Chunks and their raw bytes, in order.
type Raws = Vec<(ChunkId, Vec<u8>)>;

/// Raw chunks waiting to be compressed together, for each [`Holds`], in the order given
/// (with their raw bytes summed).
#[derive(Default)]
struct Packer {
    waiting: [(Raws, usize); 2],
}

impl Packer {
    fn add(&mut self, holds: Holds, id: ChunkId, raw: Vec<u8>) {
        let (members, bytes) = &mut self.waiting[holds as usize];
        *bytes += raw.len();
        members.push((id, raw));
    }

    /// The members of the next block of `holds`: once they reach [`block::BLOCK_RAW`]
    /// raw bytes, or with `last` whatever waits.
    fn take(&mut self, holds: Holds, last: bool) -> Option<Raws> {
        let (members, bytes) = &mut self.waiting[holds as usize];
        if members.is_empty() || (*bytes < block::BLOCK_RAW && !last) {
            return None;
        }
        *bytes = 0;
        Some(std::mem::take(members))
    }
}

/// The pack name in an object key `packs/<hex>`.
pub(super) fn pack_name(key: &str) -> Option<[u8; 32]> {
    key.strip_prefix("packs/")
        .and_then(|h| hex::decode(h).ok())
        .and_then(|h| <[u8; 32]>::try_from(h).ok())
}

/// Whether a chunk is a tree node (asked of the store's records by whoever compacts).
pub type IsNode<'a> = dyn Fn(&ChunkId) -> bool + Send + Sync + 'a;

/// What fsck and gc ask of a tier that keeps chunks in packs (S3), without reaching
/// into the store itself.
#[async_trait::async_trait]
pub trait Packs: Send + Sync {
    /// The names of the packs the tier holds (one listing).
    async fn pack_names(&self) -> Result<HashSet<[u8; 32]>, StoreError>;
    /// Rewrites the packs whose live share is under `min_live`, keeping their live
    /// frames (those `is_node` names in packs of nodes, taken from `local` when it
    /// holds all of a pack's); `dry_run` only counts.
    async fn compact(
        &self,
        min_live: f64,
        dry_run: bool,
        is_node: &IsNode<'_>,
        local: Option<&dyn ChunkStore>,
    ) -> Result<Compaction, StoreError>;
    /// Tells the tier's version log that versions `numbers` were dropped.
    async fn record_dropped(&self, numbers: &[u64]) -> Result<(), StoreError>;
    /// Waits until no other holder collects from the tier, and holds it until the
    /// guard is dropped: gc holds it from before its sweep forgets locations until its
    /// compaction is done, and a compaction outside gc (after a follow) holds it
    /// around its check that S3's log knows every dropped version, so no pack goes
    /// before the log learns of the versions whose chunks it held.
    async fn collecting(&self) -> tokio::sync::OwnedMutexGuard<()>;
    /// Uploads the blocks of `local` whose members (those `is_node` does not name)
    /// the tier holds as frames (see `S3Store::follow_blocks`), every one of them.
    async fn follow(
        &self,
        local: &dyn fvfs_cas::ChunkStore,
        is_node: &IsNode<'_>,
    ) -> Result<Followed, StoreError>;
}

#[async_trait::async_trait]
impl Packs for S3Store {
    async fn pack_names(&self) -> Result<HashSet<[u8; 32]>, StoreError> {
        Ok(self
            .bucket
            .list("packs/")
            .await?
            .iter()
            .filter_map(|o| pack_name(&o.key))
            .collect())
    }

    async fn compact(
        &self,
        min_live: f64,
        dry_run: bool,
        is_node: &IsNode<'_>,
        local: Option<&dyn ChunkStore>,
    ) -> Result<Compaction, StoreError> {
        self.compact_packs(min_live, dry_run, is_node, local).await
    }

    async fn record_dropped(&self, numbers: &[u64]) -> Result<(), StoreError> {
        super::log::record_dropped(&self.bucket, numbers).await
    }

    async fn collecting(&self) -> tokio::sync::OwnedMutexGuard<()> {
        self.collecting.clone().lock_owned().await
    }

    async fn follow(
        &self,
        local: &dyn fvfs_cas::ChunkStore,
        is_node: &IsNode<'_>,
    ) -> Result<Followed, StoreError> {
        self.follow_all(local, is_node).await
    }
}
