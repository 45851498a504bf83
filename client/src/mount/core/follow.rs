//! Following the live tree: HEAD is polled every [`FOLLOW_EVERY`] by a thread of its
//! own, and when it moved the kernel is told to forget what it caches of the names
//! and inodes that changed. So the kernel may keep what it knows of the live tree for
//! [`LIVE_TTL`] (a walk of a warm tree asks fvfsc nothing) and still sees another
//! device's change about a second after it was committed.
//!
//! # Invariants
//! - The followed root only moves forward (to a higher version number), and every move
//!   bumps a generation.
//! - A reply about the live tree lets the kernel keep it for [`LIVE_TTL`] only if the
//!   generation did not move while the reply was built ([`LiveRoot::ttl`]). The
//!   follower reads the inode table after the bump, so a name filed in it later, from
//!   a reply built on the old root, would be missed: such a reply gets no time to live.
//! - The kernel is told after the root moved, and the follower holds no lock of the
//!   mount while it tells: an invalidation waits for the kernel's requests in flight
//!   in that directory, whose answers may need those locks.
//! - What the kernel was told of is the change from `shown` (at first, the root the
//!   mount's requests followed) to the root followed; a poll that fails is retried
//!   from the same `shown`.
//! - The kernel also learns of this mount's own changes from their replies (and moves
//!   a renamed name's cache itself), in trees the follower never diffs: the paths
//!   those commits touched are forgotten at the next poll, whatever the diff says.
//! - A name is forgotten only when it no longer stands for the inode the kernel has
//!   for it (gone, or another kind now); otherwise only the inode's attributes and
//!   content are. Forgetting a directory's name cuts it off for the processes inside
//!   it (their working directory could no longer be named).
//!
//! What is left to the time to live: a change by another device that is undone
//! within the same poll around one of this mount's commits (the follower compares
//! the trees it polled, not the ones this mount's commits returned).

use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use fvfs_cas::ChunkId;
use fvfs_node::{DirNode, Entry, EntryKind};
use rustix::io::Errno;

use super::inodes::{Inodes, ROOT};
use super::{lock, Kernel};
use crate::mount::remote::{Head, Remote};

/// How long the kernel may keep what it was told of the live tree: a safety net, as
/// the follower tells it of every change.
pub const LIVE_TTL: Duration = Duration::from_secs(60);
/// How often HEAD is polled.
const FOLLOW_EVERY: Duration = Duration::from_secs(1);

/// The live tree's root as this mount follows it, shared by the kernel's requests and
/// the follower.
#[derive(Default)]
pub struct LiveRoot(Mutex<Followed>);

#[derive(Default)]
struct Followed {
    /// HEAD as last seen (`Some(None)`: no version yet); `None` until first read.
    head: Option<Option<Head>>,
    generation: u64,
    /// Paths this mount's commits touched since the follower last looked.
    touched: Vec<Vec<u8>>,
}

impl LiveRoot {
    /// The root followed (`Some(None)`: an empty tree), once HEAD was read.
    pub fn root(&self) -> Option<Option<ChunkId>> {
        lock(&self.0).head.map(|h| h.map(|h| h.root))
    }

    /// Moves whenever the root followed does.
    pub fn generation(&self) -> u64 {
        lock(&self.0).generation
    }

    /// How long the kernel may keep a reply about the live tree built since
    /// generation `since`.
    pub fn ttl(&self, since: u64) -> Duration {
        if self.generation() == since {
            LIVE_TTL
        } else {
            Duration::ZERO
        }
    }

    /// Follows HEAD to `head` unless a newer version is known already: answers to
    /// concurrent commits arrive in any order, and an older one must not bring back a
    /// tree without the other's file. Returns the root now followed.
    pub fn saw(&self, head: Option<Head>) -> Option<ChunkId> {
        let mut followed = lock(&self.0);
        let known = followed.head.flatten();
        let follow = match (known, head) {
            (Some(k), Some(h)) if h.number < k.number => known,
            (Some(_), None) => known,
            _ => head,
        };
        let root = follow.map(|h| h.root);
        if followed.head.map(|h| h.map(|h| h.root)) != Some(root) {
            followed.generation += 1;
        }
        followed.head = Some(follow);
        root
    }

    /// This mount committed `head`, which changed `paths`.
    pub fn committed(
        &self,
        head: Head,
        paths: impl IntoIterator<Item = Vec<u8>>,
    ) -> Option<ChunkId> {
        // Followed first: a path the follower takes is in the root it then reads.
        let root = self.saw(Some(head));
        self.touch(paths);
        root
    }

    fn touch(&self, paths: impl IntoIterator<Item = Vec<u8>>) {
        lock(&self.0).touched.extend(paths);
    }

    fn take_touched(&self) -> Vec<Vec<u8>> {
        std::mem::take(&mut lock(&self.0).touched)
    }
}

/// What the kernel is told to forget.
#[derive(Debug, PartialEq, Eq)]
enum Forget {
    /// A name in a directory (it may stand for another inode now, or none).
    Name(u64, Vec<u8>),
    /// An inode's attributes and cached content (or listing).
    Inode(u64),
}

pub struct Follower {
    remote: Remote,
    live: Arc<LiveRoot>,
    inodes: Arc<Mutex<Inodes>>,
    /// The root whose tree the kernel knows (`Some(None)`: an empty tree), once
    /// polled.
    shown: Option<Option<ChunkId>>,
}

impl Follower {
    pub fn new(remote: Remote, live: Arc<LiveRoot>, inodes: Arc<Mutex<Inodes>>) -> Self {
        Self {
            remote,
            live,
            inodes,
            shown: None,
        }
    }

    /// Polls HEAD and tells `kernel` what changed, until `stop` is sent to or dropped.
    pub fn run(mut self, rt: &tokio::runtime::Handle, kernel: &dyn Kernel, stop: &Receiver<()>) {
        while let Err(RecvTimeoutError::Timeout) = stop.recv_timeout(FOLLOW_EVERY) {
            match rt.block_on(self.poll()) {
                Ok(forget) => tell(kernel, &forget),
                Err(e) => tracing::debug!("following HEAD: {e:?}"),
            }
        }
    }

    /// Follows HEAD; what the kernel must forget of the tree it knew.
    async fn poll(&mut self) -> Result<Vec<Forget>, Errno> {
        let head = self.remote.version("HEAD").await?;
        // At first, the kernel knows the tree the mount's requests followed so far.
        let known = self.shown.or_else(|| self.live.root());
        let now = self.live.saw(head);
        let mut forget = match known {
            Some(known) => self.changes(known, now).await?,
            None => Vec::new(),
        };
        // Paths committed since `now` was read are in the root followed after them.
        let touched = self.live.take_touched();
        let latest = self.live.root().unwrap_or(now);
        for (i, path) in touched.iter().enumerate() {
            match self.touched(latest, path).await {
                Ok(f) => forget.extend(f),
                Err(e) => {
                    // Nothing was told: the next poll starts from the same place.
                    self.live.touch(touched[i..].iter().cloned());
                    return Err(e);
                }
            }
        }
        self.shown = Some(now);
        Ok(forget)
    }

    /// What the kernel must forget from tree `from` to tree `to`: descends only into
    /// directories that changed and that the inode table (so the kernel) knows.
    async fn changes(
        &self,
        from: Option<ChunkId>,
        to: Option<ChunkId>,
    ) -> Result<Vec<Forget>, Errno> {
        let mut out = Vec::new();
        let mut stack = vec![(ROOT, from, to)];
        while let Some((dir, a, b)) = stack.pop() {
            if a == b {
                continue;
            }
            out.push(Forget::Inode(dir));
            let (a, b) = (self.listing(a).await?, self.listing(b).await?);
            for (name, x, y) in differing(&a.entries, &b.entries) {
                let Some(ino) = lock(&self.inodes).known(dir, name) else {
                    continue;
                };
                let kept = self.forget(dir, name, ino, y, &mut out);
                if let Some(y) = y.filter(|y| kept && y.kind == EntryKind::Dir) {
                    let x = x.filter(|x| x.kind == EntryKind::Dir).and_then(|x| x.id);
                    stack.push((ino, x, y.id));
                }
            }
        }
        Ok(out)
    }

    /// What the kernel must forget of `path`, which this mount's own commits changed
    /// (the kernel learnt of those from their replies) and tree `root` now has.
    async fn touched(&self, root: Option<ChunkId>, path: &[u8]) -> Result<Vec<Forget>, Errno> {
        let mut out = Vec::new();
        let (mut dir, mut node) = (ROOT, root);
        let mut names = path
            .split(|b| *b == b'/')
            .filter(|n| !n.is_empty())
            .peekable();
        while let Some(name) = names.next() {
            let Some(ino) = lock(&self.inodes).known(dir, name) else {
                break;
            };
            let entry = match node {
                Some(id) => self.remote.entry_in(id, name).await?,
                None => None,
            };
            if names.peek().is_none() {
                self.forget(dir, name, ino, entry.as_ref(), &mut out);
                break;
            }
            match entry {
                Some(e) if e.kind == EntryKind::Dir => (dir, node) = (ino, e.id),
                // What is above it changed: the diff tells of that.
                _ => break,
            }
        }
        Ok(out)
    }

    /// The kernel must forget what it caches of inode `ino`, `name` in `dir`, which
    /// now holds `entry`; and the name itself unless it still stands for that inode
    /// (forgetting a directory's name cuts it off for those inside it: a shell there
    /// could not tell where it is any more). Whether the name stays.
    fn forget(
        &self,
        dir: u64,
        name: &[u8],
        ino: u64,
        entry: Option<&Entry>,
        out: &mut Vec<Forget>,
    ) -> bool {
        let stays = entry.is_some_and(|e| lock(&self.inodes).stands_for(ino, e.kind));
        if !stays {
            out.push(Forget::Name(dir, name.to_vec()));
        }
        out.push(Forget::Inode(ino));
        stays
    }

    async fn listing(&self, id: Option<ChunkId>) -> Result<Arc<DirNode>, Errno> {
        match id {
            Some(id) => self.remote.dir(id).await,
            None => Ok(Arc::default()),
        }
    }
}

/// The names whose entries differ between two sorted listings, with both entries.
fn differing<'a>(
    a: &'a [Entry],
    b: &'a [Entry],
) -> impl Iterator<Item = (&'a [u8], Option<&'a Entry>, Option<&'a Entry>)> {
    fvfs_node::pair_by_name(a, b).filter_map(|pair| {
        let (x, y) = pair.sides();
        let name = x.or(y)?.name.as_slice();
        (x != y).then_some((name, x, y))
    })
}

/// Tells the kernel; what it does not cache (ENOENT) needs no telling.
fn tell(kernel: &dyn Kernel, forget: &[Forget]) {
    for f in forget {
        let told = match f {
            Forget::Name(dir, name) => kernel.forget_name(*dir, name),
            // From offset 0 to the end: attributes and every cached page.
            Forget::Inode(ino) => kernel.forget_inode(*ino),
        };
        match told {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                tracing::debug!("telling the kernel to forget {f:?}: {e}");
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(name: &str, size: u64) -> Entry {
        Entry {
            name: name.into(),
            kind: EntryKind::File,
            size,
            ..Entry::dir(0o644, 0)
        }
    }

    #[test]
    fn only_names_whose_entries_differ_are_named() {
        let a = [file("a", 1), file("b", 2), file("d", 4)];
        let b = [file("b", 3), file("c", 1), file("d", 4)];
        let names: Vec<&[u8]> = differing(&a, &b).map(|d| d.0).collect();
        assert_eq!(names, [&b"a"[..], b"b", b"c"]);
        assert_eq!(differing(&a, &a).count(), 0);
    }

    #[test]
    fn the_generation_moves_with_the_root_and_only_forward() {
        let live = LiveRoot::default();
        assert_eq!(live.root(), None);
        let head = |number, byte| Head {
            number,
            root: ChunkId::from_bytes([byte; 32]),
        };
        live.saw(Some(head(2, 2)));
        let g = live.generation();
        assert_eq!(live.ttl(g), LIVE_TTL);
        // An older answer arriving late changes nothing.
        live.saw(Some(head(1, 1)));
        assert_eq!(live.root(), Some(Some(ChunkId::from_bytes([2; 32]))));
        assert_eq!(live.ttl(g), LIVE_TTL);
        live.saw(Some(head(3, 3)));
        assert_eq!(live.ttl(g), Duration::ZERO);
    }
}
