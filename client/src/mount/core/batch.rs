//! Write-backs committed in batches: every one closed within a short window
//! ([`WINDOW`] after the first, sooner once [`BATCH_BYTES`] or [`BATCH_FILES`] wait)
//! is uploaded in one stream and committed in one request, so an untar of thousands
//! of files makes a handful of versions, and `close()` waits for none of it.
//!
//! # Invariants
//! - One batch at a time (`batching`). It uploads holding no lock of the mount; then,
//!   for the commit alone, it takes its write-backs' locks, the namespace lock shared
//!   and the inode table, in the order every commit does (see [`super::namespace`]).
//! - A write-back changed since its upload (its `gen` moved) is left for a later batch;
//!   one whose inode is no path any more is dropped, journal record and all.
//! - The batch's commit is all or nothing: when the daemon refuses it because a file
//!   changed elsewhere, each file is committed on its own under the conflict rule.
//! - Write-backs whose batch failed (the daemon down) stay queued and are tried again
//!   every [`RETRY`]; the mount's state file names them for `fvfsc status`.
//! - Before its first batch, a mount commits what mounts no longer running left in the
//!   journal ([`crate::mount::journal`]); when the mount ends, one last batch.

use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use fvfs_api::client::Failure;
use fvfs_api::commit::{CommitOp, Expect};
use fvfs_cas::ChunkId;
use fvfs_node::path as fpath;

use super::commit::{link_ops, refused_as_conflict, Committer};
use super::inodes::View;
use super::writeback::WriteBack;
use super::{block_on, lock};
use crate::mount::journal::{self, Leftover};
use crate::mount::overlay;
use crate::mount::waiting::{MountState, Waiting};
use crate::put::{commit, place, upload_files, Staged};

/// How long a batch waits after the first write-back queued for others to join it.
pub const WINDOW: Duration = Duration::from_millis(250);
/// How often write-backs that could not be committed are tried again.
pub const RETRY: Duration = Duration::from_secs(2);
/// A batch is cut at so many bytes or files (the rest follow at once).
const BATCH_BYTES: u64 = 256 << 20;
const BATCH_FILES: usize = 4096;

/// What wakes the batcher: write-backs queued, or the end of the mount.
#[derive(Default)]
pub struct Wake {
    state: Mutex<Due>,
    cv: Condvar,
}

#[derive(Default)]
struct Due {
    /// When the first write-back since the last batch was queued.
    first: Option<Instant>,
    bytes: u64,
    files: usize,
    stop: bool,
}

impl Due {
    fn full(&self) -> bool {
        self.bytes >= BATCH_BYTES || self.files >= BATCH_FILES
    }
}

impl Wake {
    /// A write-back of `bytes` was queued.
    pub fn queued(&self, bytes: u64) {
        let mut due = lock(&self.state);
        due.first.get_or_insert_with(Instant::now);
        due.bytes += bytes;
        due.files += 1;
        if due.files == 1 || due.full() {
            self.cv.notify_all();
        }
    }

    /// The mount ended: one last batch.
    pub fn stop(&self) {
        lock(&self.state).stop = true;
        self.cv.notify_all();
    }

    /// Waits until a batch is due: [`WINDOW`] after the first write-back queued since
    /// the last one, sooner when the batch is full, [`RETRY`] when nothing is queued.
    /// Returns whether the mount ended.
    fn wait(&self) -> bool {
        let started = Instant::now();
        let mut due = lock(&self.state);
        loop {
            if due.stop {
                return true;
            }
            let until = match due.first {
                Some(_) if due.full() => break,
                Some(first) => first + WINDOW,
                None => started + RETRY,
            };
            let now = Instant::now();
            if now >= until {
                break;
            }
            due = (self.cv.wait_timeout(due, until - now))
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        *due = Due::default();
        false
    }
}

/// What earlier mounts left that is not committed yet.
pub struct Left {
    /// Their changes to folders and attributes are (they go before their files).
    ops_adopted: bool,
    /// Their files, each with why it is not committed yet.
    files: Vec<(Leftover, String)>,
}

impl Left {
    /// How many writes wait (`None`: some changes to folders, at least).
    pub fn waiting(&self) -> Option<usize> {
        self.ops_adopted.then_some(self.files.len())
    }
}

/// A write-back in a batch, as it was when taken.
struct Pending {
    ino: u64,
    wb: Arc<Mutex<WriteBack>>,
    gen: u64,
    since: SystemTime,
    staged: Staged,
}

impl Committer {
    /// What mounts no longer running left in the journal, committed as one batch
    /// (before this mount serves, so what it shows includes them); returns those
    /// that could not be committed yet, with why, for [`Self::run`] to retry.
    pub fn adopt_leftovers(&self) -> Left {
        let ops_adopted = self.adopt_ops();
        let files = match journal::leftovers(&self.staging) {
            Ok(left) => left.into_iter().map(|l| (l, String::new())).collect(),
            Err(e) => {
                tracing::error!("cannot read the journal in {}: {e}", self.staging.display());
                Vec::new()
            }
        };
        let files = match ops_adopted {
            true => self.adopt(files),
            false => files,
        };
        Left { ops_adopted, files }
    }

    /// Commits batches until the mount ends (`stop`), then one last, retrying `left`
    /// (from [`Self::adopt_leftovers`]) as it goes; records what waits after each pass
    /// in the mount's state file.
    pub fn run(&self, state: &MountState, mut left: Left) {
        for passes in 1.. {
            let ended = self.wake.wait();
            left.ops_adopted = left.ops_adopted || self.adopt_ops();
            if left.ops_adopted {
                left.files = self.adopt(std::mem::take(&mut left.files));
            }
            let _ = self.commit_queued();
            if let Err(e) = state.write(&self.waiting(&left.files), passes, ended) {
                tracing::warn!("cannot record the writes waiting: {e}");
            }
            if ended {
                return;
            }
        }
    }

    /// Ends [`Self::run`] after one last batch.
    pub fn stop(&self) {
        self.wake.stop();
    }

    /// Commits `left` as one batch, each on its own under the conflict rule if the
    /// batch meets a change; returns those that failed, with why.
    fn adopt(&self, left: Vec<(Leftover, String)>) -> Vec<(Leftover, String)> {
        if left.is_empty() {
            return left;
        }
        let staged = left.iter().map(|(l, _)| l.staged.clone()).collect();
        let uploaded = match block_on(&self.rt, upload_files(&self.remote.api, staged)) {
            Ok(uploaded) => uploaded,
            Err(e) => {
                return left
                    .into_iter()
                    .map(|(l, _)| (l, format!("{e:#}")))
                    .collect()
            }
        };
        let (mut ops, mut placed, mut failed) = (Vec::new(), Vec::new(), Vec::new());
        for ((l, _), up) in left.into_iter().zip(uploaded) {
            match up {
                Ok((mut op, _)) => {
                    place(&mut op, &l.path);
                    ops.push(op);
                    placed.push(l);
                }
                Err(e) => failed.push((l, e.to_string())),
            }
        }
        let done = |l: &Leftover| {
            journal::remove(&l.staged.local);
            let _ = std::fs::remove_file(&l.staged.local);
        };
        // Names given to files before they were committed, linked in the same version.
        for l in &placed {
            ops.extend(link_ops(&l.also, &l.path, &l.staged.attrs));
        }
        let message = format!("{} writes left by an earlier mount", placed.len());
        match block_on(&self.rt, commit(&self.remote.api, message, ops.clone())) {
            Ok(version) => {
                placed.iter().for_each(done);
                if let Err(e) = self.settled(&version, touched(&ops)) {
                    tracing::warn!("{e:#}");
                }
                tracing::info!("committed {} writes left by an earlier mount", placed.len());
            }
            Err(e) if refused_as_conflict(&e) => {
                for l in placed {
                    match self.put_here(&l.staged, &l.path) {
                        Ok((version, touched, key)) => {
                            let _ = self.settled(&version, touched);
                            let links = link_ops(&l.also, &l.path, &l.staged.attrs);
                            if key.is_some() {
                                let what = format!("link {}", fpath::show(&l.path));
                                self.commit_ops(what, &links, |_| {});
                            }
                            done(&l);
                        }
                        Err(e) => failed.push((l, format!("{e:#}"))),
                    }
                }
            }
            Err(e) => failed.extend(placed.into_iter().map(|l| (l, e.to_string()))),
        }
        failed
    }

    /// Commits what is staged and every queued write-back, a batch at a time;
    /// whether all were.
    pub fn commit_queued(&self) -> bool {
        let _one = lock(&self.batching);
        loop {
            let (batch, cut) = self.due();
            if batch.is_empty() && lock(&self.overlay).is_empty() {
                return true;
            }
            if !self.commit_batch(batch) {
                return false;
            }
            if !cut {
                return true;
            }
        }
    }

    /// The queued write-backs unchanged since their close, oldest first, up to a
    /// batch's bounds; and whether some were left for the next.
    fn due(&self) -> (Vec<Pending>, bool) {
        let mut all = Vec::new();
        for (ino, wb) in self.writing.all() {
            let mut w = lock(&wb);
            let Some(q) = w.queued.filter(|q| w.dirty && q.gen == w.gen) else {
                continue;
            };
            // Queued, so fetched (its hash was journaled): nothing to fetch here.
            let (staged, len) = match (w.staged(), w.size()) {
                (Ok(staged), Ok(len)) => (staged, len),
                (Err(e), _) | (_, Err(e)) => {
                    tracing::warn!("write-back {ino} left for the next batch: {e}");
                    continue;
                }
            };
            drop(w);
            let (gen, since) = (q.gen, q.since);
            all.push((
                len,
                Pending {
                    ino,
                    wb,
                    gen,
                    since,
                    staged,
                },
            ));
        }
        all.sort_by_key(|(_, p)| (p.since, p.ino));
        let (mut batch, mut bytes) = (Vec::new(), 0);
        let total = all.len();
        for (len, p) in all {
            if !batch.is_empty() && (bytes + len > BATCH_BYTES || batch.len() >= BATCH_FILES) {
                break;
            }
            bytes += len;
            batch.push(p);
        }
        let cut = batch.len() < total;
        (batch, cut)
    }

    /// Uploads `batch` and commits it, after what is staged, as one version; returns
    /// whether it was committed.
    fn commit_batch(&self, batch: Vec<Pending>) -> bool {
        let uploaded = match batch.is_empty() {
            true => Ok(Vec::new()),
            false => {
                let staged = batch.iter().map(|p| p.staged.clone()).collect();
                block_on(&self.rt, upload_files(&self.remote.api, staged))
            }
        };
        let mut guards: Vec<_> = batch.iter().map(|p| lock(&p.wb)).collect();
        let names = self.names.read().unwrap_or_else(|p| p.into_inner());
        let committed = match uploaded {
            Ok(uploaded) => self.commit_uploaded(&batch, &mut guards, uploaded),
            Err(e) => {
                for (p, w) in batch.iter().zip(&mut guards) {
                    let path = lock(&self.inodes).locate(p.ino).map(|(_, path)| path);
                    w.fail(&path.unwrap_or_default(), &e);
                }
                false
            }
        };
        drop(names);
        drop(guards);
        for p in &batch {
            self.drop_if_done(p.ino, &p.wb);
        }
        committed
    }

    /// [`Self::commit_batch`] once uploaded, under the write-backs' and the namespace
    /// locks.
    fn commit_uploaded(
        &self,
        batch: &[Pending],
        guards: &mut [MutexGuard<'_, WriteBack>],
        uploaded: Vec<std::io::Result<(CommitOp, ChunkId)>>,
    ) -> bool {
        let (mut ops, mut placed) = (Vec::new(), Vec::new());
        for (i, (p, up)) in batch.iter().zip(uploaded).enumerate() {
            let w = &mut guards[i];
            // Changed since the upload, or committed meanwhile (an fsync, a link):
            // what was uploaded is not what to commit.
            if w.gen != p.gen || !w.dirty || w.queued.is_none_or(|q| q.gen != p.gen) {
                continue;
            }
            let Some((View::Live, path)) = lock(&self.inodes).locate(p.ino) else {
                w.committed(p.gen);
                continue;
            };
            match up {
                Ok((mut op, key)) => {
                    place(&mut op, &path);
                    ops.push(op);
                    if w.made_here {
                        // Names given to it here, linked once it is there.
                        let names = lock(&self.inodes).alias_paths(p.ino);
                        ops.extend(link_ops(&names, &path, &p.staged.attrs));
                    }
                    placed.push((i, path, key));
                }
                Err(e) => w.fail(&path, &e.into()),
            }
        }
        let staged = lock(&self.overlay).ops();
        let message = match (placed.as_slice(), staged.len()) {
            ([], 0) => return true,
            ([], n) => format!("{n} changes to folders and attributes"),
            ([(_, path, _)], _) => format!("write {}", fpath::show(path)),
            ([(_, path, _), more @ ..], _) => {
                format!("write {} and {} more files", fpath::show(path), more.len())
            }
        };
        let n = staged.len();
        let all_ops: Vec<CommitOp> = staged.into_iter().chain(ops).collect();
        match block_on(&self.rt, commit(&self.remote.api, message, all_ops.clone())) {
            Ok(version) => {
                let touched = touched(&all_ops);
                for (i, _, key) in placed {
                    guards[i].base = Some(Expect::Content(key.to_hex()));
                    guards[i].committed(batch[i].gen);
                    lock(&self.inodes).content_unknown(batch[i].ino);
                }
                let settled = self.settled(&version, touched);
                lock(&self.overlay).committed(n);
                settled.is_ok()
            }
            Err(e @ Failure::Refused { .. }) => {
                // One of the files changed elsewhere (or the daemon refused a change):
                // what is staged first, then each file on its own, under the conflict
                // rule.
                tracing::info!(
                    "a batch of {} changes, refused ({e}): one by one",
                    n + placed.len()
                );
                if !self.commit_staged() {
                    return false;
                }
                for (i, path, _) in placed {
                    let w = &mut guards[i];
                    match self.put_here(&batch[i].staged, &path) {
                        Ok((version, touched, key)) => {
                            let _ = self.settled(&version, touched);
                            if let Some(key) = key {
                                w.base = Some(Expect::Content(key.to_hex()));
                                if w.made_here {
                                    let attrs = &batch[i].staged.attrs;
                                    if let Err(e) = self.link_names(batch[i].ino, &path, attrs) {
                                        tracing::warn!("{e:#}");
                                    }
                                }
                            }
                            w.committed(batch[i].gen);
                        }
                        Err(e) => w.fail(&path, &e),
                    }
                }
                true
            }
            Err(e) => {
                tracing::warn!("a batch of {} changes: {e}", n + placed.len());
                let e = anyhow::Error::from(e);
                for (i, path, _) in placed {
                    guards[i].fail(&path, &e);
                }
                false
            }
        }
    }

    /// Commits what is staged on its own; whether it was.
    fn commit_staged(&self) -> bool {
        let ops = lock(&self.overlay).ops();
        let what = format!("{} changes to folders and attributes", ops.len());
        self.commit_ops(what, &ops, |n| lock(&self.overlay).committed(n))
    }

    /// Commits `ops` as one version, telling `done` how many of the first ones are
    /// in (or left out); whether all were. When the daemon refuses them (a folder where
    /// another device put a file meanwhile, say), each is tried on its own and one it
    /// refuses is left out, named in the log, so the rest is not held back for good.
    pub(super) fn commit_ops(
        &self,
        what: String,
        ops: &[CommitOp],
        mut done: impl FnMut(usize),
    ) -> bool {
        if ops.is_empty() {
            return true;
        }
        match block_on(&self.rt, commit(&self.remote.api, what, ops.to_vec())) {
            Ok(version) => {
                let _ = self.settled(&version, touched(ops));
                done(ops.len());
                return true;
            }
            Err(Failure::Refused { .. }) => {}
            Err(_) => return false,
        }
        for op in ops {
            let what = "a change to a folder or attributes".to_owned();
            match block_on(&self.rt, commit(&self.remote.api, what, vec![op.clone()])) {
                Ok(version) => {
                    let _ = self.settled(&version, touched(std::slice::from_ref(op)));
                }
                Err(e @ Failure::Refused { .. }) => {
                    tracing::error!("left out, refused by the daemon: {op:?}: {e}");
                }
                Err(_) => return false,
            }
            done(1);
        }
        true
    }

    /// Commits the ops mounts no longer running staged and did not commit, before their
    /// files (which may be in folders those made); whether none is left.
    fn adopt_ops(&self) -> bool {
        let mine = lock(&self.overlay).journal().to_owned();
        let found = match overlay::leftover_ops(&self.staging, &mine) {
            Ok(found) => found,
            Err(e) => {
                tracing::error!("cannot read the journal in {}: {e}", self.staging.display());
                return false;
            }
        };
        for (journal, ops) in found {
            let what = format!("{} changes left by an earlier mount", ops.len());
            if !self.commit_ops(what, &ops, |_| {}) {
                return false;
            }
            let _ = std::fs::remove_file(&journal);
        }
        true
    }

    /// What waits to be committed, for `fvfsc status`: write-backs whose commit failed
    /// or that wait for a batch, what earlier mounts left and could not be committed
    /// yet, and what was kept aside as not whole.
    fn waiting(&self, left: &[(Leftover, String)]) -> Vec<Waiting> {
        let mut out = Vec::new();
        for (ino, wb) in self.writing.all() {
            let w = lock(&wb);
            if let Some(f) = &w.failed {
                out.push(Waiting::new(&f.path, f.since, &f.error, w.local()));
            } else if let Some(q) = w.queued.filter(|_| w.dirty) {
                let path = lock(&self.inodes).locate(ino).map(|(_, p)| p);
                let path = path.unwrap_or_default();
                out.push(Waiting::new(
                    &path,
                    q.since,
                    "waiting for a batch",
                    w.local(),
                ));
            }
        }
        let staged = {
            let overlay = lock(&self.overlay);
            overlay.waiting().map(|w| (w, overlay.journal().to_owned()))
        };
        if let Some(((n, since), journal)) = staged {
            let what = format!("{n} changes to folders and attributes wait for a batch");
            out.push(Waiting::new(b"/", since, &what, &journal));
        }
        for (l, error) in left {
            let since = std::time::UNIX_EPOCH + Duration::from_secs(l.since.max(0) as u64);
            out.push(Waiting::new(&l.path, since, error, &l.staged.local));
        }
        out.extend(journal::damaged(&self.staging));
        out
    }
}

/// The paths `ops` change.
fn touched(ops: &[CommitOp]) -> Vec<Vec<u8>> {
    (ops.iter().flat_map(CommitOp::paths))
        .map(fvfs_api::path::decode_path)
        .collect()
}
