//! fvfs's tree as dav-server sees it: the live tree at `/`, every snapshot read-only
//! under `/.snapshots/<name>/`. Every change is a commit through the daemon's writer
//! (one version per change, as with the HTTP API); a file copy shares the source's
//! nodes and chunks, so it costs nothing however large the file.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use dav_server::davpath::DavPath;
use dav_server::fs::{
    DavDirEntry, DavFile, DavFileSystem, DavMetaData, DavProp, FsError, FsFuture, FsStream,
    OpenOptions, ReadDirMeta,
};
use futures::{stream, FutureExt, StreamExt};
use fvfs_api::commit::Expect;
use fvfs_cas::ChunkId;
use fvfs_manifest::{lookup, Entry, EntryKind, Pending};
use hyper::StatusCode;

use super::file::{Reader, Writer};
use super::meta::{DirEntry, Meta};
use super::props;
use super::scratch::{is_scratch, MemFile};
use super::{fs_error, now_ns};
use crate::serve::writer::Op;
use crate::serve::State;

/// The folder holding a read-only view of each snapshot.
const SNAPSHOTS: &[u8] = b"/.snapshots";
/// Attempts of a PROPPATCH that others' changes keep overtaking.
const PATCH_TRIES: usize = 5;

/// One request's view of the tree (dav-server is given a new one for each request).
#[derive(Clone)]
pub struct FvfsDav {
    state: Arc<State>,
    /// HEAD's number and tree when last read: a PROPFIND asks for HEAD once per listed
    /// name, and a version record decoded 10,000 times was a tenth of its time.
    head: Arc<std::sync::Mutex<Option<(u64, ChunkId)>>>,
}

/// The folder listed last, by any request: PROPFIND asks for each listed name's
/// properties by path (a lookup from the root for each of 10,000 names would decode
/// their folder 10,000 times), and clients list the same folder again and again. Kept
/// by the tree's root id, which names its content: an entry never goes stale.
#[derive(Default)]
pub struct LastListing(std::sync::Mutex<Option<Arc<Listed>>>);

struct Listed {
    root: Option<ChunkId>,
    dir: Vec<u8>,
    /// Sorted by name, as in the node.
    entries: Vec<Entry>,
}

impl LastListing {
    /// The entries of `dir` in the tree with `root`, if it was the folder listed last.
    fn get(&self, root: Option<ChunkId>, dir: &[u8]) -> Option<Arc<Listed>> {
        let last = self.0.lock().unwrap_or_else(|p| p.into_inner());
        last.as_ref()
            .filter(|l| l.root == root && l.dir == dir)
            .cloned()
    }

    fn set(&self, listed: Arc<Listed>) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = Some(listed);
    }
}

/// What a WebDAV path names.
enum Place {
    /// A path of the live tree (changes allowed).
    Live(Vec<u8>),
    /// `/.snapshots` itself.
    Snapshots,
    /// A path in a snapshot's tree (read-only).
    Snapshot { root: ChunkId, path: Vec<u8> },
}

fn time(secs: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(secs.max(0) as u64)
}

impl FvfsDav {
    pub fn new(state: Arc<State>) -> Self {
        Self {
            state,
            head: Arc::default(),
        }
    }

    /// The entry at `path` from the folder listed last, if that is its folder.
    fn listed_entry(&self, root: Option<ChunkId>, path: &[u8]) -> Option<Result<Entry, FsError>> {
        if path == b"/" {
            return None;
        }
        let cut = path.iter().rposition(|b| *b == b'/')?;
        let (dir, name) = (
            if cut == 0 { &b"/"[..] } else { &path[..cut] },
            &path[cut + 1..],
        );
        let l = self.state.dav.listed.get(root, dir)?;
        let found = l
            .entries
            .binary_search_by(|e| e.name.as_slice().cmp(name))
            .map(|i| l.entries[i].clone());
        Some(found.map_err(|_| FsError::NotFound))
    }

    fn place(&self, path: &DavPath) -> Result<Place, FsError> {
        let mut bytes = path.as_bytes().to_vec();
        if !bytes.starts_with(b"/") {
            return Err(FsError::NotFound);
        }
        while bytes.len() > 1 && bytes.ends_with(b"/") {
            bytes.pop();
        }
        if bytes == SNAPSHOTS {
            return Ok(Place::Snapshots);
        }
        let Some(rest) = bytes.strip_prefix(b"/.snapshots/") else {
            return Ok(Place::Live(bytes));
        };
        let (name, inner) = match rest.iter().position(|b| *b == b'/') {
            Some(i) => (&rest[..i], rest[i..].to_vec()),
            None => (rest, b"/".to_vec()),
        };
        let name = std::str::from_utf8(name).map_err(|_| FsError::NotFound)?;
        let known = self
            .state
            .repo
            .snapshots()
            .map_err(|e| fs_error(e.into()))?
            .into_iter()
            .any(|(n, _)| n == name);
        if !known {
            return Err(FsError::NotFound);
        }
        let v = self
            .state
            .repo
            .resolve(name)
            .map_err(|e| fs_error(e.into()))?;
        Ok(Place::Snapshot {
            root: v.root,
            path: inner,
        })
    }

    /// The path of the live tree `path` names, or `Forbidden` for a read-only one.
    pub fn live_path(&self, path: &DavPath) -> Result<Vec<u8>, FsError> {
        match self.place(path)? {
            Place::Live(p) => Ok(p),
            _ => Err(FsError::Forbidden),
        }
    }

    /// The entry at `path` of the tree with `root` (`None`: the store is empty).
    async fn entry_in(&self, root: Option<ChunkId>, path: &[u8]) -> Result<Entry, FsError> {
        if let Some(found) = self.listed_entry(root, path) {
            return found;
        }
        match root {
            Some(root) => lookup(&self.state.repo, root, path)
                .await
                .map_err(|e| fs_error(e.into())),
            None if path == b"/" => Ok(Entry::dir(0o755, 0)),
            None => Err(FsError::NotFound),
        }
    }

    /// The live tree's root now (`None`: the store is empty).
    fn head_root(&self) -> Result<Option<ChunkId>, FsError> {
        let repo = &self.state.repo;
        let Some(n) = repo.head_number().map_err(|e| fs_error(e.into()))? else {
            return Ok(None);
        };
        let mut known = self.head.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((seen, root)) = *known {
            if seen == n {
                return Ok(Some(root));
            }
        }
        let root = repo.version(n).map_err(|e| fs_error(e.into()))?.root;
        *known = Some((n, root));
        Ok(Some(root))
    }

    /// The entry a place names (not `/.snapshots`).
    async fn entry(&self, place: &Place) -> Result<Entry, FsError> {
        match place {
            Place::Live(p) => self.entry_in(self.head_root()?, p).await,
            Place::Snapshot { root, path } => self.entry_in(Some(*root), path).await,
            Place::Snapshots => Err(FsError::Forbidden),
        }
    }

    async fn live_entry(&self, path: &[u8]) -> Result<Option<Entry>, FsError> {
        match self.entry_in(self.head_root()?, path).await {
            Ok(e) => Ok(Some(e)),
            Err(FsError::NotFound) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The entry `path` names (not `/.snapshots`).
    pub async fn entry_at(&self, path: &DavPath) -> Result<Entry, FsError> {
        self.entry(&self.place(path)?).await
    }

    /// `ops` as one version.
    pub async fn commit(&self, ops: Vec<Op>, message: String) -> Result<(), FsError> {
        self.state
            .writer
            .submit(ops, Pending::default(), message)
            .await
            .map(drop)
            .map_err(|e| fs_error(e.into()))
    }

    async fn open_file(
        &self,
        path: &DavPath,
        options: OpenOptions,
    ) -> Result<Box<dyn DavFile>, FsError> {
        // A client's own file lives in memory, unless the tree has one of that name.
        if let Place::Live(p) = self.place(path)? {
            let kept = self.state.dav.scratch.get(&p);
            let write_kept =
                options.write && is_scratch(&p) && self.live_entry(&p).await?.is_none();
            if let (false, Some(data)) = (options.write, &kept) {
                let file = MemFile::new(self.state.clone(), p, data.to_vec(), false);
                return Ok(Box::new(file));
            }
            if write_kept {
                return Ok(Box::new(MemFile::new(
                    self.state.clone(),
                    p,
                    Vec::new(),
                    true,
                )));
            }
        }
        if !options.write {
            let entry = self.entry(&self.place(path)?).await?;
            return match entry.kind {
                EntryKind::File => Ok(Box::new(Reader::open(self.state.clone(), &entry).await?)),
                EntryKind::Dir => Err(FsError::Forbidden),
                _ => Err(FsError::NotFound),
            };
        }
        let p = self.live_path(path)?;
        if p == b"/" {
            return Err(FsError::Forbidden);
        }
        let existing = self.live_entry(&p).await?;
        let meta = existing.as_ref().and_then(|e| e.meta.clone());
        let mode = match &existing {
            Some(e) if e.kind != EntryKind::File => return Err(FsError::Forbidden),
            Some(_) if options.create_new => return Err(FsError::Exists),
            // A partial update of a stored file is not offered.
            Some(e) if !options.truncate && e.size > 0 => return Err(FsError::NotImplemented),
            Some(e) => e.mode,
            None if !options.create => return Err(FsError::NotFound),
            None => {
                self.parent_is_dir(&p).await?;
                0o644
            }
        };
        Ok(Box::new(Writer::new(
            self.state.clone(),
            p,
            (mode, meta),
            (options.size, options.create_new),
        )))
    }

    /// `NotFound` (409 for MKCOL and PUT) unless `path`'s parent is a directory.
    pub async fn parent_is_dir(&self, path: &[u8]) -> Result<(), FsError> {
        let cut = path.iter().rposition(|b| *b == b'/').unwrap_or(0);
        let parent = if cut == 0 { &b"/"[..] } else { &path[..cut] };
        match self.live_entry(parent).await? {
            Some(e) if e.kind == EntryKind::Dir => Ok(()),
            _ => Err(FsError::NotFound),
        }
    }

    /// `/.snapshots`: a folder per snapshot.
    fn snapshot_folders(&self) -> Result<Vec<DirEntry>, FsError> {
        let mut out = Vec::new();
        for (name, _) in self
            .state
            .repo
            .snapshots()
            .map_err(|e| fs_error(e.into()))?
        {
            let v = self
                .state
                .repo
                .resolve(&name)
                .map_err(|e| fs_error(e.into()))?;
            out.push(DirEntry {
                name: name.into_bytes(),
                meta: Meta::folder(time(v.time)),
                props: false,
            });
        }
        Ok(out)
    }

    /// What the folder at `path` lists, in the order of its node.
    pub async fn listing(&self, path: &DavPath) -> Result<Vec<DirEntry>, FsError> {
        self.list(self.place(path)?).await
    }

    async fn list(&self, place: Place) -> Result<Vec<DirEntry>, FsError> {
        let at_live_root = matches!(&place, Place::Live(p) if p == b"/");
        let (root, dir) = match place {
            Place::Snapshots => return self.snapshot_folders(),
            Place::Live(p) => (self.head_root()?, p),
            Place::Snapshot { root, path } => (Some(root), path),
        };
        let listed = match self.state.dav.listed.get(root, &dir) {
            Some(listed) => listed,
            None => {
                let entry = self.entry_in(root, &dir).await?;
                let entries = match (entry.kind, entry.id) {
                    (EntryKind::Dir, Some(id)) => {
                        self.state
                            .repo
                            .dir(&id)
                            .await
                            .map_err(|e| fs_error(e.into()))?
                            .entries
                    }
                    (EntryKind::Dir, None) => Vec::new(),
                    _ => return Err(FsError::Forbidden),
                };
                let listed = Arc::new(Listed { root, dir, entries });
                self.state.dav.listed.set(listed.clone());
                listed
            }
        };
        let mut out: Vec<DirEntry> = listed
            .entries
            .iter()
            // Symlinks and special files have no WebDAV form; at the root, the
            // snapshots' folder stands where a folder of that name would.
            .filter(|e| matches!(e.kind, EntryKind::File | EntryKind::Dir))
            .filter(|e| !(at_live_root && e.name == SNAPSHOTS[1..]))
            .map(|e| DirEntry {
                name: e.name.clone(),
                meta: Meta::of(e),
                props: props::any(e),
            })
            .collect();
        if at_live_root {
            out.push(DirEntry {
                name: SNAPSHOTS[1..].to_vec(),
                meta: Meta::folder(SystemTime::now()),
                props: false,
            });
        }
        Ok(out)
    }
}

impl DavFileSystem for FvfsDav {
    fn open<'a>(
        &'a self,
        path: &'a DavPath,
        options: OpenOptions,
    ) -> FsFuture<'a, Box<dyn DavFile>> {
        self.open_file(path, options).boxed()
    }

    fn read_dir<'a>(
        &'a self,
        path: &'a DavPath,
        _meta: ReadDirMeta,
    ) -> FsFuture<'a, FsStream<Box<dyn DavDirEntry>>> {
        async move {
            let entries = self.listing(path).await?;
            let s: FsStream<Box<dyn DavDirEntry>> = stream::iter(
                entries
                    .into_iter()
                    .map(|e| Ok(Box::new(e) as Box<dyn DavDirEntry>)),
            )
            .boxed();
            Ok(s)
        }
        .boxed()
    }

    fn metadata<'a>(&'a self, path: &'a DavPath) -> FsFuture<'a, Box<dyn DavMetaData>> {
        async move {
            let meta = match self.place(path)? {
                Place::Snapshots => Meta::folder(SystemTime::now()),
                Place::Live(p) if self.state.dav.scratch.get(&p).is_some() => {
                    let len = self.state.dav.scratch.get(&p).map_or(0, |d| d.len());
                    Meta::pending(len as u64)
                }
                place => {
                    let e = self.entry(&place).await?;
                    if !matches!(e.kind, EntryKind::File | EntryKind::Dir) {
                        // Symlinks and special files have no WebDAV form.
                        return Err(FsError::NotFound);
                    }
                    Meta::of(&e)
                }
            };
            Ok(Box::new(meta) as Box<dyn DavMetaData>)
        }
        .boxed()
    }

    fn create_dir<'a>(&'a self, path: &'a DavPath) -> FsFuture<'a, ()> {
        async move {
            let p = self.live_path(path)?;
            if self.live_entry(&p).await?.is_some() {
                return Err(FsError::Exists);
            }
            self.parent_is_dir(&p).await?;
            let message = format!("dav mkdir {}", fvfs_manifest::path::show(&p));
            let op = Op::Mkdir {
                path: p,
                mode: 0o755,
                mtime_ns: now_ns(),
                meta: None,
            };
            self.commit(vec![op], message).await
        }
        .boxed()
    }

    fn remove_dir<'a>(&'a self, path: &'a DavPath) -> FsFuture<'a, ()> {
        self.remove(path).boxed()
    }

    fn remove_file<'a>(&'a self, path: &'a DavPath) -> FsFuture<'a, ()> {
        self.remove(path).boxed()
    }

    fn rename<'a>(&'a self, from: &'a DavPath, to: &'a DavPath) -> FsFuture<'a, ()> {
        async move {
            let (from, to) = (self.live_path(from)?, self.live_path(to)?);
            if let Some(data) = self.state.dav.scratch.get(&from) {
                // Between a client's own names only: into the tree is not what they
                // are for.
                if !is_scratch(&to) || self.live_entry(&to).await?.is_some() {
                    return Err(FsError::Forbidden);
                }
                self.state.dav.scratch.put(&to, data);
                self.state.dav.scratch.remove(&from);
                return Ok(());
            }
            let message = format!(
                "dav move {} to {}",
                fvfs_manifest::path::show(&from),
                fvfs_manifest::path::show(&to)
            );
            let op = Op::Rename {
                from,
                to,
                ctime_ns: None,
            };
            self.commit(vec![op], message).await
        }
        .boxed()
    }

    fn copy<'a>(&'a self, from: &'a DavPath, to: &'a DavPath) -> FsFuture<'a, ()> {
        async move {
            // From anywhere (a snapshot too: that is a restore) into the live tree.
            let source = self.entry(&self.place(from)?).await?;
            let to = self.live_path(to)?;
            self.parent_is_dir(&to).await?;
            let mut entry = source;
            entry.name = to
                .rsplit(|b| *b == b'/')
                .next()
                .unwrap_or_default()
                .to_vec();
            let message = format!("dav copy to {}", fvfs_manifest::path::show(&to));
            let op = Op::Put {
                path: to,
                entry,
                expect: None,
            };
            self.commit(vec![op], message).await
        }
        .boxed()
    }

    fn have_props<'a>(
        &'a self,
        _path: &'a DavPath,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = bool> + Send + 'a>> {
        async { true }.boxed()
    }

    fn patch_props<'a>(
        &'a self,
        path: &'a DavPath,
        patch: Vec<(bool, DavProp)>,
    ) -> FsFuture<'a, Vec<(StatusCode, DavProp)>> {
        async move {
            let p = self.live_path(path)?;
            if p == b"/" {
                return Err(FsError::Forbidden);
            }
            // The whole entry is written back: only if nobody changed what it holds
            // meanwhile (a folder's files included), else read again and retry.
            for _ in 0..PATCH_TRIES {
                let head = self.state.repo.head().map_err(|e| fs_error(e.into()))?;
                let mut entry = self.entry_in(head.as_ref().map(|v| v.root), &p).await?;
                let answers = props::patch(&mut entry, patch.clone());
                if !answers.iter().all(|(s, _)| s.is_success()) {
                    return Ok(answers);
                }
                let expect = head.map(|v| Expect::Unchanged {
                    since: v.number,
                    path: fvfs_api::path::encode_path(&p),
                });
                let message = format!("dav proppatch {}", fvfs_manifest::path::show(&p));
                let op = Op::Put {
                    path: p.clone(),
                    entry,
                    expect,
                };
                match self
                    .state
                    .writer
                    .submit(vec![op], Pending::default(), message)
                    .await
                {
                    Ok(_) => return Ok(answers),
                    Err(fvfs_manifest::ManifestError::Conflict(_)) => continue,
                    Err(e) => return Err(fs_error(e.into())),
                }
            }
            Err(FsError::GeneralFailure)
        }
        .boxed()
    }

    fn get_props<'a>(&'a self, path: &'a DavPath, do_content: bool) -> FsFuture<'a, Vec<DavProp>> {
        async move {
            match self.place(path)? {
                Place::Snapshots => Ok(Vec::new()),
                Place::Live(p) if self.state.dav.scratch.get(&p).is_some() => Ok(Vec::new()),
                place => Ok(props::get(&self.entry(&place).await?, do_content)),
            }
        }
        .boxed()
    }

    fn get_prop<'a>(&'a self, path: &'a DavPath, prop: DavProp) -> FsFuture<'a, Vec<u8>> {
        async move {
            match self.place(path)? {
                Place::Snapshots => Err(FsError::NotFound),
                place => props::get_one(&self.entry(&place).await?, &prop),
            }
        }
        .boxed()
    }
}

impl FvfsDav {
    async fn remove(&self, path: &DavPath) -> Result<(), FsError> {
        let p = self.live_path(path)?;
        if self.state.dav.scratch.remove(&p) {
            return Ok(());
        }
        if p == b"/" {
            return Err(FsError::Forbidden);
        }
        let message = format!("dav rm {}", fvfs_manifest::path::show(&p));
        self.commit(
            vec![Op::Remove {
                path: p,
                recursive: false,
            }],
            message,
        )
        .await
    }
}
