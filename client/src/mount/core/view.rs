//! Reading the trees a mount shows: the live root (HEAD, followed forward only), the
//! snapshot roots, entries by path, and the attributes the kernel is told.

use std::time::{Duration, SystemTime};

use fvfs_cas::ChunkId;
use fvfs_node::{Entry, EntryKind};
use rustix::io::Errno;

use super::inodes::View;
use super::{dir_entry, lock, Core};

/// The size every folder shows.
const DIR_SIZE: u64 = 4096;

/// Snapshots never change.
const SNAPSHOT_TTL: Duration = Duration::from_secs(24 * 3600);

/// What the kernel is told of an inode (atime and crtime are shown as the mtime).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Attr {
    pub ino: u64,
    pub size: u64,
    pub blocks: u64,
    pub mtime: SystemTime,
    pub ctime: SystemTime,
    pub kind: EntryKind,
    /// Permission bits (with set-id and sticky bits).
    pub perm: u16,
    pub nlink: u32,
    /// Owners as this machine numbers them.
    pub uid: u32,
    pub gid: u32,
    pub rdev: u32,
}

/// Directory nodes [`Core::dir_id`] remembers (about 100 bytes each), emptied when
/// full.
const DIR_IDS: usize = 64 << 10;

impl Core {
    /// How long the kernel may keep a reply about `view` built since the live root's
    /// generation `since` (see [`super::follow`]).
    pub(super) fn ttl(&self, view: &View, since: u64) -> Duration {
        match view {
            View::Live => self.live.ttl(since),
            _ => SNAPSHOT_TTL,
        }
    }

    /// HEAD's root, as the follower keeps it (read here the first time). While the
    /// daemon does not answer, the last root known stays in use, so what is cached
    /// stays readable offline.
    fn live_root(&self) -> Result<Option<ChunkId>, Errno> {
        if let Some(root) = self.live.root() {
            return Ok(root);
        }
        let head = self.block(self.remote.version("HEAD"))?;
        Ok(self.live.saw(head))
    }

    fn snapshot_root(&self, name: &str) -> Result<ChunkId, Errno> {
        if let Some(root) = lock(&self.snapshots).get(name) {
            return Ok(*root);
        }
        let root = self
            .block(self.remote.version(name))?
            .ok_or(Errno::NOENT)?
            .root;
        lock(&self.snapshots).insert(name.to_owned(), root);
        Ok(root)
    }

    /// The directory entry at `path` of `view`.
    pub(super) fn entry(&self, view: &View, path: &[u8]) -> Result<Entry, Errno> {
        if *view == View::Live {
            // Staged here and not committed yet: shown over the tree.
            let shown = lock(&self.commits.overlay)
                .get(path)
                .map(|s| s.map(|(e, new)| (e.clone(), new)));
            match shown {
                Some(None) => return Err(Errno::NOENT),
                // New attributes of a folder the tree has: its content is the tree's.
                Some(Some((mut e, false))) if e.kind == EntryKind::Dir => {
                    if let Ok(tree) = self.tree_entry(view, path) {
                        (e.id, e.links) = (tree.id, tree.links);
                    }
                    return Ok(e);
                }
                Some(Some((e, _))) => return Ok(e),
                None => {}
            }
        }
        self.tree_entry(view, path)
    }

    /// The directory entry at `path` of `view`'s tree (nothing staged).
    fn tree_entry(&self, view: &View, path: &[u8]) -> Result<Entry, Errno> {
        let root = match view {
            View::SnapshotList => return Ok(dir_entry(0o555)),
            View::Live => match self.live_root()? {
                Some(r) => r,
                None if path == b"/" => return Ok(dir_entry(0o755)),
                None => return Err(Errno::NOENT),
            },
            View::Snapshot(name) => self.snapshot_root(name)?,
        };
        let Some(slash) = path
            .iter()
            .rposition(|b| *b == b'/')
            .filter(|_| path != b"/")
        else {
            return Ok(Entry {
                id: Some(root),
                ..dir_entry(0o755)
            });
        };
        let dir = self.dir_id(root, &path[..slash.max(1)])?;
        self.block(self.remote.entry_in(dir, &path[slash + 1..]))?
            .ok_or(Errno::NOENT)
    }

    /// The node of directory `path` of the tree whose root is `root`: trees never
    /// change, so a directory's node is looked up once, not once per component of
    /// every path below it (a walk resolves each of its paths).
    fn dir_id(&self, root: ChunkId, path: &[u8]) -> Result<ChunkId, Errno> {
        if path == b"/" {
            return Ok(root);
        }
        let key = (root, Box::<[u8]>::from(path));
        if let Some(id) = lock(&self.dir_ids).get(&key) {
            return Ok(*id);
        }
        let slash = path.iter().rposition(|b| *b == b'/').ok_or(Errno::INVAL)?;
        let parent = self.dir_id(root, &path[..slash.max(1)])?;
        let entry = self
            .block(self.remote.entry_in(parent, &path[slash + 1..]))?
            .ok_or(Errno::NOENT)?;
        let id = match (entry.kind, entry.id) {
            (EntryKind::Dir, Some(id)) => id,
            (EntryKind::Dir, None) => return Err(Errno::IO),
            _ => return Err(Errno::NOTDIR),
        };
        let mut ids = lock(&self.dir_ids);
        if ids.len() >= DIR_IDS {
            ids.clear();
        }
        ids.insert(key, id);
        Ok(id)
    }

    /// The view and path inode `ino` stands for now (ENOENT once it is no path).
    pub(super) fn locate(&self, ino: u64) -> Result<(View, Vec<u8>), Errno> {
        lock(&self.inodes).locate(ino).ok_or(Errno::NOENT)
    }

    pub(super) fn attr(&self, ino: u64, view: &View, entry: &Entry) -> Attr {
        let nlink = match (entry.kind, entry.link) {
            (EntryKind::Dir, _) => 2,
            (_, Some(l)) => l.nlink,
            _ => 1,
        };
        let mut perm = (entry.mode & 0o7777) as u16;
        if *view != View::Live || self.read_only {
            perm &= !0o222;
        }
        let size = match entry.kind {
            EntryKind::Symlink => entry.target.len() as u64,
            // One size for every folder, as ext4 shows a small one: what the tree
            // keeps for a folder is not known for one staged here, and a size that
            // moves when a batch is committed tells tar the folder changed under it.
            EntryKind::Dir => DIR_SIZE,
            _ => entry.size,
        };
        let t = fvfs_node::system_time(entry.mtime_ns);
        // Entries written without meta show the mounting user as owner.
        let meta = entry.meta.as_deref();
        let owner = meta.map_or((self.uid, self.gid), |m| self.ids.local((m.uid, m.gid)));
        let ctime = meta
            .filter(|m| m.ctime_ns != 0)
            .map_or(t, |m| fvfs_node::system_time(m.ctime_ns));
        Attr {
            ino,
            size,
            blocks: size.div_ceil(512),
            mtime: t,
            ctime,
            kind: entry.kind,
            perm,
            nlink,
            uid: owner.0,
            gid: owner.1,
            rdev: meta.map_or(0, |m| m.rdev as u32),
        }
    }

    /// Attributes of `ino`: of its write-back if it is being written here (an unlinked
    /// one has no links), else of its entry in the tree.
    pub(super) fn stat(&self, ino: u64) -> Result<Attr, Errno> {
        if let Some(entry) = self.written_entry(ino)? {
            let mut attr = self.attr(ino, &View::Live, &entry);
            if lock(&self.inodes).locate(ino).is_none() {
                attr.nlink = 0;
            }
            return Ok(attr);
        }
        let (view, path) = self.locate(ino)?;
        let entry = self.entry(&view, &path)?;
        Ok(self.attr(ino, &view, &entry))
    }

    /// The entry `ino`'s write-back stands for, if it is being written here. One
    /// dropped since it was found (its batch committed it while this waited for it)
    /// has an emptied file: the tree holds what it committed.
    fn written_entry(&self, ino: u64) -> Result<Option<Entry>, Errno> {
        let Some(wb) = self.writing.get(ino) else {
            return Ok(None);
        };
        let w = lock(&wb);
        if w.dropped {
            return Ok(None);
        }
        Ok(Some(Entry {
            kind: EntryKind::File,
            mode: w.attrs.mode,
            mtime_ns: w.attrs.mtime_ns,
            size: w.size().map_err(|_| Errno::IO)?,
            meta: w.attrs.meta.clone().map(Box::new),
            link: w.attrs.link,
            ..dir_entry(0)
        }))
    }
}
