//! The mount's read-ahead, through the chunk cache: a folder's small files fetched in
//! batches from the first one read (in the order tar, cp and builds read a folder), a
//! walk's next folders' small files while it lists, and the batches themselves
//! (`POST /v1/chunks/read`), each chunk verified as it arrives. The daemon sends a
//! block of its cold data whole, once, for all the chunks asked for that it holds:
//! each member is checked against its id and kept, the ones not asked for too (a
//! folder's large files are read after its small ones, from the same blocks).

use std::sync::Arc;

use bytes::Bytes;
use futures::FutureExt;
use fvfs_api::batch::{self, Answer};
use fvfs_api::queries::ReadAs;
use fvfs_api::reports::{Ids, MAX_READ_IDS};
use fvfs_api::routes::{call, Call};
use fvfs_cas::{block, frame, ChunkId};
use fvfs_node::{self as node, DirNode, Entry, Node};
use rustix::io::Errno;

use super::super::FastSet;
use super::{lock, Batch, Remote, MEMO_ITEMS, PARTS_PER_REQUEST};

/// Files and bytes a folder's read-ahead looks ahead.
const FOLDER_AHEAD: usize = 256;
const FOLDER_AHEAD_BYTES: u64 = 32 << 20;

/// Bytes of small files, in the subdirectories of a folder being listed, that a
/// walk's read-ahead fetches (see [`Remote::walk_ahead`]).
const WALK_AHEAD_BYTES: u64 = 16 << 20;

impl Remote {
    /// A file named `name` of folder `dir` is being opened (or the folder listed, from
    /// its first small file): the small files from it on in the folder's order (the
    /// order in which tar, cp, rsync and builds read a folder) are fetched ahead in
    /// batches (run by whoever waits for them with [`Remote::settled`]), so that a folder of small files costs a request per
    /// [`FOLDER_AHEAD`] / 2 files, and a cold S3 tier behind the daemon a few GETs by
    /// pack, instead of one of each per file. Returns the window's small files and
    /// their chunks. When
    /// the files from `name` on were asked for lately, nothing is fetched, and no
    /// window is returned unless the folder is being `listed` (an open is not worth
    /// the scan); a failed batch only means the files are read one by one.
    pub async fn read_ahead_in_folder(
        &self,
        dir: ChunkId,
        name: &[u8],
        listed: bool,
    ) -> Option<(Vec<Entry>, Vec<ChunkId>)> {
        // In a large directory, the part holding `name`: read-ahead stops at its end.
        let (leaf, node) = self.leaf(dir, name).await.ok()??;
        let from = node.entries.partition_point(|e| e.name.as_slice() < name);
        let due = {
            // A reader well inside the files asked for last time needs no new batch.
            let mut asked = lock(&self.asked);
            let inside = asked
                .get(&leaf)
                .is_some_and(|(start, end)| *start <= from && from + FOLDER_AHEAD / 2 < *end);
            if !inside {
                if asked.len() >= MEMO_ITEMS / FOLDER_AHEAD {
                    asked.clear();
                }
                asked.insert(leaf, (from, from + FOLDER_AHEAD));
            }
            !inside
        };
        if !due && !listed {
            return None;
        }
        let mut bytes = 0;
        let files: Vec<Entry> = node.entries[from..]
            .iter()
            .take(FOLDER_AHEAD)
            .filter(|e| is_small_file(e))
            .take_while(|e| {
                bytes += e.size;
                bytes <= FOLDER_AHEAD_BYTES
            })
            .cloned()
            .collect();
        let ids: Vec<ChunkId> = files.iter().flat_map(|e| &e.chunks).map(|c| c.id).collect();
        if due {
            // Run by whoever waits for the window's chunks (`Remote::settled`).
            drop(self.fetch(&ids, false, usize::MAX));
        }
        Some((files, ids))
    }

    /// The name of the first small file of a folder (where its read-ahead starts
    /// when it is listed).
    pub fn first_small_file(dir: &DirNode) -> Option<&[u8]> {
        dir.entries
            .iter()
            .find(|e| is_small_file(e))
            .map(|e| e.name.as_slice())
    }

    /// Folder `dir` is being listed: a walk goes down into its subdirectories next,
    /// then on to the folders after it in its parent (`after`: the parent's node id and
    /// the folder's name), and one that reads (`files`, see [`Remote::listing_reads`]:
    /// tar, cp -r, rsync, a build) reads their files too. So the nodes of its
    /// subdirectories, and for a reading walk the small files of the folders it visits
    /// next, subfolders first ([`WALK_AHEAD_BYTES`] in all, counting what is cached or
    /// being fetched without fetching it again), are fetched now, in the background.
    /// Each listing of a reading walk moves that window on by the folder it entered,
    /// so the walk finds the folders it comes to cached, and a cold tier behind the
    /// daemon serves them by pack. A failure only means the walk fetches them itself.
    ///
    /// The read-ahead to run (in the background), or `None` when `WALKS_WAITING`
    /// already wait for one of the `WALKS_IN_FLIGHT` (shared by the mount's walks):
    /// the walk is ahead of its read-aheads, and each waiting one would hold a
    /// folder's node.
    pub fn walk_ahead(
        &self,
        dir: Arc<DirNode>,
        after: Option<(ChunkId, Vec<u8>)>,
        files: bool,
    ) -> Option<impl std::future::Future<Output = ()>> {
        let admitted = self.walks_admitted.clone().try_acquire_owned().ok()?;
        let me = self.clone();
        Some(async move {
            let _admitted = admitted;
            let Ok(_walking) = me.walks.clone().acquire_owned().await else {
                return;
            };
            let mut next = subdir_ids(&dir.entries);
            for ids in next.chunks(PARTS_PER_REQUEST) {
                if let Some(batch) = me.read_ahead(ids) {
                    batch.await;
                }
            }
            if !files {
                return;
            }
            if let Some((parent, name)) = after {
                // A parent in one node: a large folder, split in parts, is not
                // assembled for this.
                if let Ok(Node::Dir(p)) = me.node(parent).await {
                    let from = p.entries.partition_point(|e| e.name <= name);
                    next.extend(
                        subdir_ids(&p.entries[from..])
                            .into_iter()
                            .take(FOLDER_AHEAD),
                    );
                }
            }
            let mut bytes = 0;
            let mut ahead = Vec::new();
            'folders: for sub in next {
                let Ok(Node::Dir(d)) = me.node(sub).await else {
                    continue;
                };
                for e in d
                    .entries
                    .iter()
                    .filter(|e| is_small_file(e))
                    .take(FOLDER_AHEAD)
                {
                    for c in &e.chunks {
                        bytes += c.len;
                        if bytes > WALK_AHEAD_BYTES {
                            break 'folders;
                        }
                        ahead.push(c.id);
                    }
                }
            }
            for batch in me.fetch(&ahead, false, usize::MAX) {
                batch.await;
            }
        })
    }

    /// A sequential reader's next chunks (`ahead`, in file order): when at least half
    /// of them are neither cached nor being fetched, those are fetched in one request,
    /// so that a cold tier behind the daemon serves them by pack. Returns the batch to
    /// run, if one is due.
    pub fn read_ahead(&self, ahead: &[ChunkId]) -> Option<Batch> {
        self.fetch(ahead, true, usize::MAX).pop()
    }

    /// [`Remote::read_ahead`] of a file's next chunks, in requests of at most `per`
    /// chunks (each its own batch, run as the caller sees fit): a wide window stays
    /// small per answer and a reader waits only for the piece holding its chunk.
    pub fn read_ahead_in(&self, ahead: &[ChunkId], per: usize) -> Vec<Batch> {
        self.fetch(ahead, true, per)
    }

    /// Waits until none of `ids` is being fetched (each is then cached, or its fetch
    /// failed).
    pub async fn settled(&self, ids: &[ChunkId]) {
        let batches: Vec<Batch> = {
            let inflight = lock(&self.inflight);
            ids.iter()
                .filter_map(|id| inflight.get(id).cloned())
                .collect()
        };
        // A batch several of them wait for is done after its first wait.
        for batch in batches {
            batch.await;
        }
    }

    /// The batches fetching those of `ids` neither cached nor being fetched, `per` to
    /// a batch, if there are any (and, with `half`, at least half of `ids`).
    fn fetch(&self, ids: &[ChunkId], half: bool, per: usize) -> Vec<Batch> {
        let mut inflight = lock(&self.inflight);
        // In the order asked (a file's pieces in file order), each once.
        let mut seen = FastSet::default();
        let wanted: Vec<ChunkId> = ids
            .iter()
            .filter(|id| !inflight.contains_key(id) && !self.cache.contains(id))
            .filter(|id| seen.insert(**id))
            .copied()
            .collect();
        if wanted.is_empty() || (half && wanted.len() * 2 < ids.len()) {
            return Vec::new();
        }
        let mut batches = Vec::new();
        for piece in wanted.chunks(per) {
            let (me, ids) = (self.clone(), piece.to_vec());
            let batch: Batch = async move {
                // In requests the daemon takes (a walk ahead can want more).
                for some in ids.chunks(MAX_READ_IDS) {
                    if let Err(e) = me.read_many(some).await {
                        tracing::debug!("read-ahead failed: {e:?}");
                    }
                }
                let mut inflight = lock(&me.inflight);
                for id in &ids {
                    inflight.remove(id);
                }
            }
            .boxed()
            .shared();
            for id in piece {
                inflight.insert(*id, batch.clone());
            }
            batches.push(batch);
        }
        batches
    }

    /// Chunks fetched in one `POST /v1/chunks/read`, each verified, into the cache.
    pub(super) async fn read_many(&self, ids: &[ChunkId]) -> Result<(), Errno> {
        let ids = Ids { ids: ids.to_vec() };
        let to = call::ChunksRead::plain().with(&ReadAs { blocks: true });
        let answer = self.timed(self.api.fetch_with(to, &ids)).await?;
        // Decoding and hashing (a block is a MiB or more) off the runtime's threads.
        let me = self.clone();
        tokio::task::spawn_blocking(move || me.keep_answer(&answer))
            .await
            .map_err(|_| Errno::IO)?
    }

    /// Each chunk of a read's answer, checked against its id, into the cache.
    fn keep_answer(&self, answer: &[u8]) -> Result<(), Errno> {
        let mut parser = batch::Parser::answer();
        for record in parser.push_answer(answer).map_err(|_| Errno::IO)? {
            match record {
                Answer::Frame(id, framed) => match frame::decode(&id, &framed) {
                    Ok(raw) => self.cache.put(id, Bytes::from(raw)),
                    Err(e) => tracing::error!(%id, "the daemon sent a bad frame: {e}"),
                },
                Answer::Block(b) => self.keep_block(&b),
            }
        }
        Ok(())
    }

    /// Each member of `block` the cache lacks, once checked against its id.
    fn keep_block(&self, block: &[u8]) {
        let Some(decoded) = block::decode(block) else {
            tracing::error!("the daemon sent a block that does not decode");
            return;
        };
        for (index, (id, _, _)) in decoded.table.members.iter().enumerate() {
            if self.cache.contains(id) {
                continue;
            }
            match decoded.member(index as u32, id) {
                // A copy: a slice would hold the whole block in the memory cache.
                Some(raw) if ChunkId::of(&raw) == *id => {
                    self.cache.put(*id, Bytes::copy_from_slice(&raw));
                }
                _ => tracing::error!(%id, "the daemon sent a block whose member is damaged"),
            }
        }
    }
}

/// The node ids of the folders among `entries`, in order.
fn subdir_ids(entries: &[Entry]) -> Vec<ChunkId> {
    entries
        .iter()
        .filter(|e| e.kind == node::EntryKind::Dir)
        .filter_map(|e| e.id)
        .collect()
}

/// A file whose chunks its entry lists (no file node to fetch first).
fn is_small_file(e: &Entry) -> bool {
    e.kind == node::EntryKind::File && e.id.is_none() && !e.chunks.is_empty()
}

#[cfg(test)]
mod tests {
    use super::super::{WALKS_IN_FLIGHT, WALKS_WAITING};
    use super::*;
    use crate::mount::cache::ChunkCache;
    use fvfs_api::client::Api;

    /// A walk that lists faster than its read-aheads fetch gets at most
    /// [`WALKS_IN_FLIGHT`] + [`WALKS_WAITING`] of them, each holding its folder's
    /// node; the others are skipped, and a slot is taken again once one ends.
    #[test]
    fn walk_read_aheads_queue_no_more_than_their_bound() {
        let cache_dir = tempfile::tempdir().unwrap();
        let cache = Arc::new(ChunkCache::open(cache_dir.path(), 1 << 20).unwrap());
        // Nothing is asked of it: the read-aheads are made, never run.
        let api = Api::new("http://127.0.0.1:9".into(), None, "test", None);
        let remote = Remote::new(api, cache);
        let mut sub = Entry::dir(0o755, 0);
        sub.name = b"sub".to_vec();
        sub.id = Some(ChunkId::of(b"a folder"));
        let dir = Arc::new(DirNode { entries: vec![sub] });
        let admitted: Vec<_> = (0..100)
            .filter_map(|_| remote.walk_ahead(dir.clone(), None, true))
            .collect();
        assert_eq!(admitted.len(), WALKS_IN_FLIGHT + WALKS_WAITING);
        assert_eq!(Arc::strong_count(&dir), 1 + admitted.len());
        drop(admitted);
        assert_eq!(Arc::strong_count(&dir), 1);
        assert!(remote.walk_ahead(dir.clone(), None, true).is_some());
    }
}
