//! The S3 tier following the local blocks (issue 47): once the idle rewrite has packed
//! cold chunks into blocks on the local tier, the S3 tier still holds them as it got
//! them, a frame per chunk at the fast level. Following uploads each such block as
//! it is (sealed whole in an encrypted bucket) and switches its members' locations to
//! it; the frames it supersedes are dead bytes of their packs, which compaction gives
//! back (a pack left with nothing live is deleted by the next `compact`).
//!
//! The local rewrite packs chunks in the order they were written, a folder's node
//! beside its files, but the bucket keeps tree nodes in packs of their own (a walk of
//! the trees reads those only): a block goes to a pack of file content, and only its
//! members that are file content are listed and located in it; its nodes keep their
//! frames (their bytes in the block are a small dead share).
//!
//! # Invariants
//! - A block is uploaded only once it decoded and gave back each member it lists
//!   (checked here: the local rewrite wrote it, nobody read it since), and only when
//!   the members it lists hold half its raw bytes at least.
//! - A block is uploaded only when S3 holds every live member already (as frames or
//!   in other blocks): a member not there yet is replication's to copy, and a block
//!   whose members all sit in one S3 block is done. So a follow never adds a chunk to
//!   S3 that its queue does not know of, and a block is not uploaded twice.
//! - The members' locations switch only once the pack holding the block is stored
//!   (the upload records them, as for any pack), in one durable batch: until then,
//!   and if the upload fails, they name their old frames, which stay readable.

use fvfs_api::reports::Followed;
use fvfs_cas::block;
use fvfs_cas::{BlockCopy, BlockPlace, ChunkId, ChunkStore, StoreError};

use super::{Holds, IsNode, S3Store};

/// Local blocks looked at per call of [`S3Store::follow_blocks`] by those who go through
/// all of them a call at a time (a call syncs once at its end).
pub const FOLLOW_BATCH: usize = 256;

impl S3Store {
    /// Looks at up to `limit` of `local`'s blocks after `after` and uploads those S3
    /// should follow (see the module doc), then syncs: when it returns, the members
    /// of every block uploaded are located in it, durably. Also answers the place to
    /// go on after, `None` once every local block was looked at.
    pub async fn follow_blocks(
        &self,
        local: &dyn ChunkStore,
        after: Option<BlockPlace>,
        limit: usize,
        is_node: &IsNode<'_>,
    ) -> Result<(Followed, Option<BlockPlace>), StoreError> {
        let places = local.blocks_after(after, limit).await?;
        let next = (places.len() == limit)
            .then(|| places.last().copied())
            .flatten();
        let mut done = Followed::default();
        for place in places {
            done.looked += 1;
            let mut copy = match local.block_at(place).await {
                Ok(Some(copy)) => copy,
                Ok(None) => continue,
                // Left for fsck to repair; the other blocks go on.
                Err(e @ StoreError::Corrupt { .. }) => {
                    tracing::error!(?place, "a local block not followed: {e}");
                    continue;
                }
                Err(e) => return Err(e),
            };
            copy.live.retain(|(id, ..)| !is_node(id));
            if !mostly_live(&copy) {
                continue;
            }
            match self.should_follow(&copy.live)? {
                Follow::Yes => {}
                Follow::Done => continue,
                Follow::NotYet => {
                    done.waiting += 1;
                    continue;
                }
            }
            // Checked before it replaces the frames S3 holds.
            let (copy, whole) = tokio::task::spawn_blocking(move || {
                let listed: Vec<(ChunkId, u32)> = copy
                    .live
                    .iter()
                    .map(|(id, index, _)| (*id, *index))
                    .collect();
                let whole = block::gives_back(&copy.frame, &listed);
                (copy, whole)
            })
            .await
            .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()));
            if !whole {
                tracing::error!(
                    ?place,
                    "a local block does not give its chunks back: not followed"
                );
                continue;
            }
            let stored = self.bucket.seal_block(&copy.frame);
            done.blocks += 1;
            done.chunks += copy.live.len() as u64;
            done.bytes += stored.len() as u64;
            let full = self.mem().push_block(Holds::Data, &stored, &copy.live);
            self.seal_if(full, Holds::Data).await?;
        }
        self.sync().await?;
        Ok((done, next))
    }

    /// [`Self::follow_blocks`] over every local block.
    pub async fn follow_all(
        &self,
        local: &dyn ChunkStore,
        is_node: &IsNode<'_>,
    ) -> Result<Followed, StoreError> {
        let (mut total, mut after) = (Followed::default(), None);
        loop {
            let (done, next) = self
                .follow_blocks(local, after, FOLLOW_BATCH, is_node)
                .await?;
            total.add(&done);
            if next.is_none() {
                return Ok(total);
            }
            after = next;
        }
    }

    /// Whether a block of `live` members is to be uploaded: S3 holds every one
    /// (stored already), not all in one block.
    fn should_follow(&self, live: &[(ChunkId, u32, u32)]) -> Result<Follow, StoreError> {
        let mut blocks = std::collections::HashSet::new();
        for (id, ..) in live {
            if self.mem().holds(id) {
                return Ok(Follow::NotYet);
            }
            match self.locs.get(id)? {
                None => return Ok(Follow::NotYet),
                Some(loc) => {
                    let block = loc.member.map(|_| (loc.pack, loc.offset));
                    blocks.insert(block);
                }
            }
        }
        Ok(match blocks.len() == 1 && !blocks.contains(&None) {
            true => Follow::Done,
            // No live member: nothing to upload.
            false if live.is_empty() => Follow::Done,
            false => Follow::Yes,
        })
    }
}

/// Whether the members of `copy` to be listed hold at least half of its raw bytes: a
/// block mostly dead here is not worth uploading in place of their frames.
fn mostly_live(copy: &BlockCopy) -> bool {
    let live: u64 = copy.live.iter().map(|(.., raw)| u64::from(*raw)).sum();
    block::table(&copy.frame).is_some_and(|t| live * 2 >= t.raw_len as u64)
}

/// What is to be done with one local block.
enum Follow {
    Yes,
    /// S3 holds its members in one block already (or it has none live).
    Done,
    /// S3 does not hold all its members yet.
    NotYet,
}
