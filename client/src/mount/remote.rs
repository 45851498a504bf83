//! What the mount asks the daemon, through the chunk cache: chunks and tree nodes by
//! id (content-addressed, so cached forever and verified on arrival), the roots of HEAD
//! and of snapshots, and commits.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::{FastMap, FastSet};
use bytes::Bytes;
use futures::FutureExt;
use fvfs_api::batch;
use fvfs_api::client::{full, Api, Failure};
use fvfs_api::commit::{CommitOp, Expect};
use fvfs_api::reports::{Ids, Meta, MAX_READ_IDS};
use fvfs_api::routes::Endpoint as E;
use fvfs_api::views::{SnapshotInfo, VersionInfo};
use fvfs_api::ErrorCode;
use fvfs_cas::{frame, ChunkId};
use fvfs_node::{self as node, ChunkRef, DirNode, Entry, Node};
use hyper::StatusCode;
use rustix::io::Errno;

use super::cache::ChunkCache;

/// How long one request to the daemon may take before the mount answers EIO: an
/// unreachable daemon must fail calls quickly, not hang the programs using the mount.
const TIMEOUT: Duration = Duration::from_secs(10);

/// The errno for a failed call to the daemon.
pub fn errno(f: &Failure) -> Errno {
    match f {
        Failure::Refused { error, .. } => match error {
            ErrorCode::NotFound => Errno::NOENT,
            ErrorCode::NotADirectory => Errno::NOTDIR,
            ErrorCode::IsADirectory => Errno::ISDIR,
            ErrorCode::NotEmpty => Errno::NOTEMPTY,
            ErrorCode::Exists => Errno::EXIST,
            ErrorCode::NoSpace => Errno::NOSPC,
            ErrorCode::BadPath => Errno::INVAL,
            ErrorCode::NameTooLong => Errno::NAMETOOLONG,
            _ => Errno::IO,
        },
        _ => Errno::IO,
    }
}

/// Files and bytes a folder's read-ahead looks ahead.
const FOLDER_AHEAD: usize = 256;
const FOLDER_AHEAD_BYTES: u64 = 32 << 20;

/// Bytes of small files, in the subdirectories of a folder being listed, that a
/// walk's read-ahead fetches (see [`Remote::walk_ahead`]); walk read-aheads in flight.
const WALK_AHEAD_BYTES: u64 = 16 << 20;
const WALKS_IN_FLIGHT: usize = 2;

/// Folders listed without a file opened for reading after which a walk is taken for
/// one that only lists (see [`Remote::listing_reads`]): deep enough for the chains of
/// folders without files a reading walk goes down (`a/b/c/d/...`).
const QUIET_LISTINGS: usize = 8;

/// Parts of a large directory asked for in one `POST /v1/chunks/read` (each at most a
/// few hundred KiB: far under the answer's 64 MiB).
const PARTS_PER_REQUEST: usize = 64;

/// Directory entries and chunk refs kept decoded at most (about 150 bytes each: some
/// 40 MB), whatever the size of the directories: they are content-addressed, so never
/// stale; the memo is simply emptied when full.
const MEMO_ITEMS: usize = 256 << 10;

#[derive(Clone)]
pub struct Remote {
    pub api: Api,
    pub cache: Arc<ChunkCache>,
    dirs: Arc<Memo<DirNode>>,
    files: Arc<Memo<Vec<(u64, ChunkRef)>>>,
    /// The entries (start, end) of each folder (or part) a folder read-ahead last
    /// covered.
    asked: Arc<std::sync::Mutex<FastMap<ChunkId, (usize, usize)>>>,
    /// Chunks a read-ahead batch is fetching: a read of one waits for the batch
    /// instead of asking for it again.
    inflight: Arc<std::sync::Mutex<FastMap<ChunkId, Batch>>>,
    walks: Arc<tokio::sync::Semaphore>,
    /// Folders listed since a file was last opened for reading.
    quiet: Arc<AtomicUsize>,
}

/// A read-ahead batch in flight, shared by the reads waiting for it.
pub type Batch = futures::future::Shared<futures::future::BoxFuture<'static, ()>>;

/// Decoded nodes by id, and the items (entries, chunk refs) they hold in all.
struct Memo<T>(std::sync::Mutex<(FastMap<ChunkId, Arc<T>>, usize)>);

impl<T> Memo<T> {
    fn new() -> Self {
        Self(std::sync::Mutex::default())
    }

    fn get(&self, id: &ChunkId) -> Option<Arc<T>> {
        let m = self.0.lock().unwrap_or_else(|p| p.into_inner());
        m.0.get(id).cloned()
    }

    /// Keeps `value`, which holds `items` entries or refs.
    fn put(&self, id: ChunkId, value: Arc<T>, items: usize) {
        let mut m = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if m.1 + items > MEMO_ITEMS {
            m.0.clear();
            m.1 = 0;
        }
        if items <= MEMO_ITEMS && m.0.insert(id, value).is_none() {
            m.1 += items;
        }
    }
}

impl Remote {
    pub fn new(api: Api, cache: Arc<ChunkCache>) -> Self {
        Self {
            api,
            cache,
            dirs: Arc::new(Memo::new()),
            files: Arc::new(Memo::new()),
            asked: Arc::default(),
            inflight: Arc::default(),
            walks: Arc::new(tokio::sync::Semaphore::new(WALKS_IN_FLIGHT)),
            // A fresh mount has seen no reads: its first listings fetch no content.
            quiet: Arc::new(AtomicUsize::new(QUIET_LISTINGS)),
        }
    }

    /// A file of the tree is being opened for reading.
    pub fn file_opened(&self) {
        self.quiet.store(0, Ordering::Relaxed);
    }

    /// A folder is being listed: whether the walk going on reads what it lists (a file
    /// was opened for reading within the last [`QUIET_LISTINGS`] listings), so that the
    /// content of the folder's small files, and of its subfolders', is worth fetching
    /// ahead ([`Remote::read_ahead_in_folder`], [`Remote::walk_ahead`]). A walk that
    /// reads (tar, cp -r, rsync, grep -r) opens files between its listings; one that
    /// only lists (find, du, ls -R) does not, and the content fetched for it would only
    /// compete with it for the daemon, the link and the cache (a fresh mount's `find`
    /// of 100,000 small files: 3.0 s with content fetched, 0.5 s without).
    pub fn listing_reads(&self) -> bool {
        self.quiet.fetch_add(1, Ordering::Relaxed) < QUIET_LISTINGS
    }

    async fn timed<T>(
        &self,
        call: impl std::future::Future<Output = Result<T, Failure>>,
    ) -> Result<T, Errno> {
        match tokio::time::timeout(TIMEOUT, call).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(f)) => {
                tracing::debug!("daemon: {f}");
                Err(errno(&f))
            }
            Err(_) => Err(Errno::IO),
        }
    }

    /// A chunk's raw bytes, from the cache or the daemon (then cached), verified.
    pub async fn chunk(&self, id: ChunkId) -> Result<Bytes, Errno> {
        if let Some(data) = self.cache.get(&id) {
            return Ok(data);
        }
        let batch = lock(&self.inflight).get(&id).cloned();
        if let Some(batch) = batch {
            batch.await;
            if let Some(data) = self.cache.get(&id) {
                return Ok(data);
            }
        }
        let to = E::ChunkGet.named(&id.to_hex());
        let data = self
            .timed(self.api.bytes(&to, full(Bytes::new()), None))
            .await?;
        if ChunkId::of(&data) != id {
            tracing::error!(%id, "the daemon sent bytes that do not match the chunk id");
            return Err(Errno::IO);
        }
        self.cache.put(id, data.clone());
        Ok(data)
    }

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
    pub fn walk_ahead(
        &self,
        dir: Arc<DirNode>,
        after: Option<(ChunkId, Vec<u8>)>,
        files: bool,
    ) -> impl std::future::Future<Output = ()> {
        let me = self.clone();
        async move {
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
        }
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
    async fn read_many(&self, ids: &[ChunkId]) -> Result<(), Errno> {
        let ids = Ids { ids: ids.to_vec() };
        let body = serde_json::to_vec(&ids).map_err(|_| Errno::IO)?;
        let answer = self
            .timed(
                self.api
                    .bytes(&E::ChunksRead.plain(), full(body), Some("application/json")),
            )
            .await?;
        let mut parser = batch::Parser::default();
        let records = parser.push(&answer).map_err(|_| Errno::IO)?;
        for (_, id, framed) in records {
            match frame::decode(&id, &framed) {
                Ok(raw) => self.cache.put(id, Bytes::from(raw)),
                Err(e) => tracing::error!(%id, "the daemon sent a bad frame: {e}"),
            }
        }
        Ok(())
    }

    pub async fn node(&self, id: ChunkId) -> Result<Node, Errno> {
        let raw = self.chunk(id).await?;
        node::decode(&raw).map_err(|e| {
            tracing::error!(%id, "bad tree node: {e}");
            Errno::IO
        })
    }

    /// A directory (one node, or the parts of a large one, each level fetched in
    /// batches), decoded once and shared.
    pub async fn dir(&self, id: ChunkId) -> Result<Arc<DirNode>, Errno> {
        if let Some(d) = self.dirs.get(&id) {
            return Ok(d);
        }
        let top = self.node(id).await?;
        let d = Arc::new(
            node::dir::assemble(id, top, |ids| self.nodes(ids))
                .await
                .map_err(|e: MountError| e.0)?,
        );
        self.dirs.put(id, d.clone(), d.entries.len());
        Ok(d)
    }

    /// The entry named `name` in the directory whose top node is `id` (a lookup never
    /// assembles a large directory's listing).
    pub async fn entry_in(&self, id: ChunkId, name: &[u8]) -> Result<Option<Entry>, Errno> {
        let Some((_, d)) = self.leaf(id, name).await? else {
            return Ok(None);
        };
        let at = d.entries.binary_search_by(|e| e.name.as_slice().cmp(name));
        Ok(at.ok().map(|i| d.entries[i].clone()))
    }

    /// The directory node that holds `name` if the directory whose top node is `id`
    /// has it: the directory itself, or in a large one the part read down to through
    /// one index node per level. Memoised.
    async fn leaf(
        &self,
        id: ChunkId,
        name: &[u8],
    ) -> Result<Option<(ChunkId, Arc<DirNode>)>, Errno> {
        let mut at = id;
        loop {
            if let Some(d) = self.dirs.get(&at) {
                return Ok(Some((at, d)));
            }
            match self.node(at).await? {
                Node::Dir(d) => {
                    let items = d.entries.len();
                    let d = Arc::new(d);
                    self.dirs.put(at, d.clone(), items);
                    return Ok(Some((at, d)));
                }
                Node::DirIndex(ix) => {
                    let i = ix.parts.partition_point(|p| p.first.as_slice() <= name);
                    match i.checked_sub(1) {
                        Some(i) => at = ix.parts[i].id,
                        None => return Ok(None),
                    }
                }
                _ => return Err(Errno::IO),
            }
        }
    }

    /// The nodes `ids`, in their order, fetched [`PARTS_PER_REQUEST`] to a request.
    async fn nodes(&self, ids: Vec<ChunkId>) -> Result<Vec<Node>, MountError> {
        let mut out = Vec::with_capacity(ids.len());
        for batch in ids.chunks(PARTS_PER_REQUEST) {
            self.read_many(batch).await?;
            for id in batch {
                out.push(self.node(*id).await?);
            }
        }
        Ok(out)
    }

    /// A file's chunks with the offset each starts at (memoised for large files).
    pub async fn file_chunks(&self, entry: &Entry) -> Result<Arc<Vec<(u64, ChunkRef)>>, Errno> {
        if let Some(known) = entry.id.and_then(|id| self.files.get(&id)) {
            return Ok(known);
        }
        let fetch = |id| async move { self.node(id).await.map_err(MountError) };
        let chunks = node::file_chunks(entry, fetch).await.map_err(|e| e.0)?;
        let mut at = 0;
        let placed: Arc<Vec<(u64, ChunkRef)>> = Arc::new(
            chunks
                .into_iter()
                .map(|c| {
                    let start = at;
                    at += c.len;
                    (start, c)
                })
                .collect(),
        );
        if let Some(id) = entry.id {
            self.files.put(id, placed.clone(), placed.len());
        }
        Ok(placed)
    }

    /// The root of a version (`HEAD`, a number or a snapshot name); `None` for an
    /// empty store.
    pub async fn version(&self, spec: &str) -> Result<Option<Head>, Errno> {
        let to = E::Version.named(&fvfs_api::path::encode_path(spec.as_bytes()));
        match tokio::time::timeout(TIMEOUT, self.api.call::<VersionInfo>(to)).await {
            Ok(Ok(v)) => Head::of(&v).map(Some),
            Ok(Err(Failure::Refused { status, .. })) if status == StatusCode::NOT_FOUND => Ok(None),
            Ok(Err(f)) => Err(errno(&f)),
            Err(_) => Err(Errno::IO),
        }
    }

    /// What a write that replaces the whole file at `path` may replace: what `path`
    /// holds in the daemon's HEAD now (a mount's view may be a second behind), named
    /// by content (a version number would do only until a collection drops that
    /// version, and then every such write would be a conflict); while the daemon does
    /// not answer, what the mount shows (`shown`).
    pub async fn replacing(&self, path: Vec<u8>, shown: Expect) -> Expect {
        let encoded = fvfs_api::path::encode_path(&path);
        match tokio::time::timeout(TIMEOUT, self.api.call::<Meta>(E::Meta.at(&encoded))).await {
            Ok(Ok(Meta {
                content: Some(c), ..
            })) => Expect::Content(fvfs_node::content_key(c.id, &c.chunks).to_hex()),
            // A folder, a link or a special file: it must stay what it is.
            Ok(Ok(meta)) => Expect::Unchanged {
                since: meta.version,
                path: encoded,
            },
            Ok(Err(Failure::Refused { status, .. })) if status == StatusCode::NOT_FOUND => {
                Expect::Absent
            }
            _ => shown,
        }
    }

    pub async fn snapshots(&self) -> Result<Vec<SnapshotInfo>, Errno> {
        self.timed(self.api.snapshots()).await
    }

    /// Commits `ops`; returns the new HEAD.
    pub async fn commit(&self, message: String, ops: Vec<CommitOp>) -> Result<Head, Errno> {
        let v = self
            .timed(crate::put::commit(&self.api, message, ops))
            .await?;
        Head::of(&v)
    }
}

/// A version as the mount follows it: its number orders what answers bring.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Head {
    pub number: u64,
    pub root: ChunkId,
}

impl Head {
    pub fn of(v: &VersionInfo) -> Result<Self, Errno> {
        Ok(Self {
            number: v.number,
            root: v.root.parse().map_err(|_| Errno::IO)?,
        })
    }
}

/// An errno that converts from a damaged tree (EIO).
pub struct MountError(pub Errno);

impl From<Errno> for MountError {
    fn from(e: Errno) -> Self {
        Self(e)
    }
}

impl From<fvfs_node::DamagedNode> for MountError {
    fn from(_: fvfs_node::DamagedNode) -> Self {
        Self(Errno::IO)
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

fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
