//! What the mount asks the daemon, through the chunk cache: chunks and tree nodes by
//! id (content-addressed, so cached forever and verified on arrival), the roots of HEAD
//! and of snapshots, and commits.

mod ahead;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::FastMap;
use bytes::Bytes;
use fvfs_api::client::{Api, Failure};
use fvfs_api::commit::{CommitOp, Expect};
use fvfs_api::reports::Meta;
use fvfs_api::routes::{call, Call};
use fvfs_api::views::{SnapshotInfo, VersionInfo};
use fvfs_api::ErrorCode;
use fvfs_cas::ChunkId;
use fvfs_node::{self as node, ChunkRef, DirNode, Entry, Node};
use hyper::StatusCode;
use rustix::io::Errno;

use super::cache::ChunkCache;

/// How long one request to the daemon may take before the mount answers EIO: an
/// unreachable daemon must fail calls quickly, not hang the programs using the mount.
const TIMEOUT: Duration = Duration::from_secs(10);

/// A call the daemon did not answer within [`TIMEOUT`]: said in the log, EIO to the
/// caller.
fn timed_out() -> Errno {
    tracing::warn!("the daemon did not answer within {TIMEOUT:?}: EIO");
    Errno::IO
}

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

/// Walk read-aheads in flight (see [`Remote::walk_ahead`]).
const WALKS_IN_FLIGHT: usize = 2;

/// Walk read-aheads waiting for one of those at most: each holds its folder's node
/// until it runs, so a walk that lists faster than they fetch skips the rest (it then
/// fetches what it comes to itself) instead of queueing a node per folder listed.
const WALKS_WAITING: usize = 16;

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
    /// Walk read-aheads in flight or waiting ([`WALKS_IN_FLIGHT`] + [`WALKS_WAITING`]).
    walks_admitted: Arc<tokio::sync::Semaphore>,
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
            walks_admitted: Arc::new(tokio::sync::Semaphore::new(WALKS_IN_FLIGHT + WALKS_WAITING)),
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
            Err(_) => Err(timed_out()),
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
        let to = call::ChunkGet::named(&id.to_hex());
        let data = self.timed(self.api.fetch(to)).await?;
        if ChunkId::of(&data) != id {
            tracing::error!(%id, "the daemon sent bytes that do not match the chunk id");
            return Err(Errno::IO);
        }
        self.cache.put(id, data.clone());
        Ok(data)
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
        let to = call::Version::named(&fvfs_api::path::encode_path(spec.as_bytes()));
        match tokio::time::timeout(TIMEOUT, self.api.ask(to)).await {
            Ok(Ok(v)) => Head::of(&v).map(Some),
            Ok(Err(Failure::Refused { status, .. })) if status == StatusCode::NOT_FOUND => Ok(None),
            Ok(Err(f)) => Err(errno(&f)),
            Err(_) => Err(timed_out()),
        }
    }

    /// What a write that replaces the whole file at `path` may replace: what `path`
    /// holds in the daemon's HEAD now (a mount's view may be a second behind), named
    /// by content (a version number would do only until a collection drops that
    /// version, and then every such write would be a conflict); while the daemon does
    /// not answer, what the mount shows (`shown`).
    pub async fn replacing(&self, path: Vec<u8>, shown: Expect) -> Expect {
        let encoded = fvfs_api::path::encode_path(&path);
        match tokio::time::timeout(TIMEOUT, self.api.ask(call::Meta::at(&encoded))).await {
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

fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
