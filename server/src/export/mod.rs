//! `fvfsd export`: write a tree of any version back to a local directory, byte for
//! byte, with modes, mtimes and symlinks.
//!
//! Reads are planned, not made file by file: the tree is walked a window of files at
//! a time ([`MAX_FILES`], [`MAX_CHUNKS`]: memory stays bounded whatever the tree's
//! size), the distinct chunks a window needs are asked of the store in one
//! `get_many_passing` (a cold S3 tier answers by pack, neighbouring frames in one GET,
//! several GETs in flight), and each chunk is written wherever the window's files use
//! it, in whatever order chunks arrive. Small files are never a round trip each.
//!
//! An export passes through the tiers: what it reads from S3 or the NAS is not
//! promoted to the local tier nor counted for eviction (a restore would otherwise
//! write every byte twice and push the working set out); `recover --rehydrate` is
//! the way to bring everything back to the local tier.
//!
//! # Invariants
//! - Everything is written beneath the target folder, whatever the tree holds: every
//!   file system call goes through [`target`], which opens folders without following
//!   links and makes names only in open folders (see there).
//! - Nothing existing is overwritten: a file is written under a new temporary name
//!   beside its own and renamed to it, never over an existing name, once complete and
//!   given its mode and mtime; a file of one chunk (or none) is written without a name
//!   where the target's file system can (`O_TMPFILE`) and linked to its name the same
//!   way. So a name in the export folder is either absent or a whole file of the
//!   version.
//! - A second run into the same folder resumes: a file already there with the size and
//!   mtime it should have is kept; anything else where the tree has a name (a symlink,
//!   another kind of file, a file that differs) is named as not exported and left alone.
//!   A killed run may leave hidden `.fvfs-export-*` temporary files behind (their names
//!   are random, so no later run reuses them), as `rsync` does.
//! - Privilege-bearing metadata (device nodes, setuid/setgid, capabilities,
//!   `security.*`/`trusted.*` attributes, owners other than the exporter) is recreated
//!   only with `--keep-privileged` ([`keep`]).
//! - A name the local file system cannot hold (over 255 bytes, say) is named as not
//!   exported and the export goes on past it.
//! - A chunk that no tier can give whole fails only the files using it: they are named
//!   with the reason (its pack, for S3), everything else is exported, and the exit code
//!   is 1. An unreachable tier stops the export with one line; run it again to finish.
//! - Directories are created writable and get their real mode and mtime last, deepest
//!   first, so read-only directories and their mtimes come out right.

use fvfs_api::args::ExportArgs;
use fvfs_api::reports::Outcome;
use fvfs_engine::jobs::{Job, Jobs};
use fvfs_fsck::Progress;
use std::collections::HashMap;
use std::ffi::OsStr;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result};
use futures::StreamExt;
use fvfs_cas::ChunkId;
use fvfs_manifest::node::Meta;
use fvfs_manifest::{lookup, path, Entry, EntryKind, Repo};
use fvfs_tiering::S3Store;

use crate::localmeta::{self, At};
use keep::Keep;
use target::{Found, Target};
use write::{write_chunks, Pending, Stop, Window};

mod keep;
mod target;
mod write;

/// Files in one window of the plan.
const MAX_FILES: usize = 20_000;
/// Chunk references in one window of the plan (about 6 GiB of content at the average
/// chunk size): large enough that a window reads whole packs.
const MAX_CHUNKS: usize = 100_000;
/// Tasks writing chunks at once, on the blocking pool (creating, writing and renaming
/// files is most of an export's work for small files).
const WRITERS: usize = 4;
/// Most chunks one writing task takes (those read and waiting, up to this many).
const WRITE_BATCH: usize = 32;

/// `fvfsd export` and `POST /v1/admin/export`: one export from the store; `s3` (when
/// the store has that tier) only counts the requests it cost.
pub struct Export {
    pub args: ExportArgs,
    pub s3: Option<Arc<S3Store>>,
}

impl Job for Export {
    const KIND: &'static str = "export";
    type Report = Outcome;
    type Error = anyhow::Error;

    async fn run(&self, store: &Jobs, progress: &Arc<Progress>) -> Result<Outcome> {
        progress.phase("exporting", 0);
        let outcome = run(store.repo(), self.s3.as_deref(), self.args.clone()).await;
        // An export promotes nothing, but a corrupt local copy it replaced from a
        // colder tier is recorded, also when the export stopped.
        if let Some(reads) = store.reads() {
            reads.record_reads(store.repo()).await?;
        }
        outcome
    }

    fn outcome(&self, o: &Outcome) -> (bool, String) {
        (o.skipped.is_empty(), o.summary.clone())
    }
}

/// Exports; `s3` (when the store has that tier) only counts the requests it cost.
async fn run(repo: &Repo, s3: Option<&S3Store>, args: ExportArgs) -> Result<Outcome> {
    let version = repo.resolve(args.version.as_deref().unwrap_or("HEAD"))?;
    let src = args.path.as_os_str().as_bytes();
    let top = lookup(repo, version.root, src).await?;
    let target =
        Target::open(&args.dir).with_context(|| format!("cannot create {}", args.dir.display()))?;
    let requests_before = s3.map(S3Store::requests);
    let mut x = Exporting {
        repo,
        version: version.number,
        target: Arc::new(target),
        keep: Arc::new(Keep::new(args.keep_privileged, args.verbose)),
        window: Window::default(),
        dirs: Vec::new(),
        done: Done::default(),
        skipped: Vec::new(),
        first_names: HashMap::new(),
        more_names: Vec::new(),
    };
    let root = Path::new("");
    match (top.kind, top.id) {
        (EntryKind::Dir, Some(id)) => x.tree(id).await?,
        _ => {
            let dir = x.target.dir(root)?;
            x.entry(&dir, root, &top).await?;
        }
    }
    x.flush().await?;
    x.link_names()?;
    x.finish_dirs()?;
    let d = &x.done;
    let mut summary = format!(
        "exported {} of version {}: {} files, {} directories, {} bytes into {}",
        path::show(src),
        version.number,
        d.files,
        x.dirs.len(),
        d.bytes,
        args.dir.display()
    );
    if d.kept > 0 {
        summary += &format!(" ({} files already there kept)", d.kept);
    }
    if !x.skipped.is_empty() {
        summary += &format!("; {} files not exported", x.skipped.len());
    }
    summary += &x.keep.summary();
    if let (Some(s3), Some(before)) = (s3, requests_before) {
        let used = s3.requests() - before;
        if used.gets > 0 {
            let gib = (d.bytes as f64 / f64::from(1 << 30)).max(1.0 / 1024.0);
            summary += &format!("; S3: {used}, {:.0} GETs per GiB", used.gets as f64 / gib);
        }
    }
    Ok(Outcome {
        summary,
        skipped: x.skipped,
        notes: x.keep.named(),
        version: Some(version.number),
    })
}

struct Exporting<'a> {
    repo: &'a Repo,
    version: u64,
    target: Arc<Target>,
    keep: Arc<Keep>,
    window: Window,
    /// Folders to finish at the end (relative path, mode, mtime and meta).
    dirs: Vec<(PathBuf, u32, i64, Option<Box<Meta>>)>,
    done: Done,
    /// `path (version N): reason` of each file not exported.
    skipped: Vec<String>,
    /// Files with several names: where the first name met was written, by link id;
    /// the other names with their first, made as hard links of it at the end.
    first_names: HashMap<u64, Name>,
    more_names: Vec<(Name, Name)>,
}

/// A name beneath the target: its folder (relative) and the name in it.
type Name = (PathBuf, Vec<u8>);

#[derive(Default)]
struct Done {
    files: u64,
    bytes: u64,
    kept: u64,
}

/// Whether a failure to make one entry is that entry's alone (its name, or what is in
/// its way), so the export names it and goes on; any other stops the export (a full
/// or read-only disk would fail every entry after it).
fn entry_failure(e: &io::Error) -> bool {
    use rustix::io::Errno;
    e.kind() == io::ErrorKind::InvalidInput
        || e.kind() == io::ErrorKind::Other
        || [
            Errno::NAMETOOLONG,
            Errno::LOOP,
            Errno::NOTDIR,
            Errno::EXIST,
            Errno::ILSEQ,
        ]
        .iter()
        .any(|n| e.raw_os_error() == Some(n.raw_os_error()))
}

impl Exporting<'_> {
    /// `rel` as the user sees it.
    fn show(&self, rel: &Path) -> PathBuf {
        self.target.show(rel)
    }

    /// Names `rel` as not exported when `e` is its own failure; else the error.
    fn skip_or_stop(&mut self, rel: &Path, e: io::Error) -> Result<()> {
        if entry_failure(&e) {
            self.skip(rel, &e.to_string());
            return Ok(());
        }
        Err(e).with_context(|| format!("cannot create {}", self.show(rel).display()))
    }

    /// Names `rel` as left alone: `found` holds its name.
    fn in_the_way(&mut self, rel: &Path, found: Found) {
        let why = format!("{} is in its place, left alone", found.describe());
        self.skip(rel, &why);
    }

    /// Everything below directory node `id`, into the target.
    async fn tree(&mut self, id: ChunkId) -> Result<()> {
        let mut stack = vec![(PathBuf::new(), id)];
        while let Some((rel, id)) = stack.pop() {
            let node = match self.repo.dir(&id).await {
                Ok(node) => node,
                Err(e) => {
                    self.skip(&rel, &format!("its directory node cannot be read: {e}"));
                    continue;
                }
            };
            // Opened again, not kept: a wide tree would hold a descriptor per folder.
            let dir = match self.target.dir(&rel) {
                Ok(dir) => dir,
                Err(e) => {
                    self.skip_or_stop(&rel, e)?;
                    continue;
                }
            };
            for e in node.entries {
                match (e.kind, e.id) {
                    (EntryKind::Dir, Some(child)) => {
                        if self.make_dir(&dir, &rel, &e)? {
                            stack.push((rel.join(OsStr::from_bytes(&e.name)), child));
                        }
                    }
                    _ => self.entry(&dir, &rel, &e).await?,
                }
            }
        }
        Ok(())
    }

    /// Folder `e` in open folder `dir` (at `rel`), recorded to be finished at the end:
    /// whether it is there to fill.
    fn make_dir(&mut self, dir: &OwnedFd, rel: &Path, e: &Entry) -> Result<bool> {
        let at = rel.join(OsStr::from_bytes(&e.name));
        match target::make_dir(dir, &e.name) {
            Ok(Ok(_)) => {
                let mode = self.keep.mode(&self.show(&at), e.mode);
                self.dirs.push((at, mode, e.mtime_ns, e.meta.clone()));
                Ok(true)
            }
            Ok(Err(found)) => {
                self.in_the_way(&at, found);
                Ok(false)
            }
            Err(err) => self.skip_or_stop(&at, err).map(|()| false),
        }
    }

    /// A file, symlink or special file (or an empty directory) named `e.name` in open
    /// folder `dir` (at `rel`).
    async fn entry(&mut self, dir: &OwnedFd, rel: &Path, e: &Entry) -> Result<()> {
        let at = rel.join(OsStr::from_bytes(&e.name));
        if let Some(link) = e.link {
            let here = (rel.to_owned(), e.name.clone());
            match self.first_names.get(&link.id) {
                Some(first) => {
                    self.more_names.push((here, first.clone()));
                    return Ok(());
                }
                None => {
                    self.first_names.insert(link.id, here);
                }
            }
        }
        let made = match e.kind {
            EntryKind::Dir => return self.make_dir(dir, rel, e).map(|_| ()),
            EntryKind::File => return self.file(dir, rel, e).await,
            EntryKind::Symlink => target::make_symlink(dir, &e.name, &e.target),
            kind => {
                let device = matches!(kind, EntryKind::CharDevice | EntryKind::BlockDevice);
                if device && !self.keep.device(&self.show(&at)) {
                    return Ok(());
                }
                let rdev = e.meta.as_ref().map_or(0, |m| m.rdev);
                let file_type = localmeta::special_type(kind).expect("a special kind");
                let mode = self.keep.mode(&self.show(&at), e.mode);
                match target::make_special(dir, &e.name, file_type, mode, rdev) {
                    Ok(Ok(())) => target::chmod_special(dir, &e.name, mode).map(Ok),
                    // Devices need root: named as not exported, the rest goes on.
                    Err(err)
                        if err.raw_os_error() == Some(rustix::io::Errno::PERM.raw_os_error()) =>
                    {
                        self.skip(&at, &format!("cannot create it: {err}"));
                        return Ok(());
                    }
                    other => other,
                }
            }
        };
        match made {
            Ok(Ok(())) => {
                self.set_meta(At::Name(dir.as_fd(), &e.name), &at, e.meta.as_deref());
                target::set_mtime_at(dir, &e.name, e.mtime_ns)
                    .with_context(|| format!("cannot set mtime of {}", self.show(&at).display()))
            }
            Ok(Err(found)) => {
                self.in_the_way(&at, found);
                Ok(())
            }
            Err(err) => self.skip_or_stop(&at, err),
        }
    }

    /// Sets what `keep` allows of `meta` on `at` (named `rel`); what cannot be set is
    /// warned about, not fatal (a target file system may lack attributes).
    fn set_meta(&self, at: At<'_>, rel: &Path, meta: Option<&Meta>) {
        set_meta(&self.keep, at, &self.show(rel), meta);
    }

    async fn file(&mut self, dir: &OwnedFd, rel: &Path, e: &Entry) -> Result<()> {
        let at = rel.join(OsStr::from_bytes(&e.name));
        match target::look(dir, &e.name) {
            Ok(Found::Absent) => {}
            Ok(Found::File { size, mtime_ns, .. }) if size == e.size && mtime_ns == e.mtime_ns => {
                self.done.kept += 1;
                return Ok(());
            }
            Ok(found) => {
                self.in_the_way(&at, found);
                return Ok(());
            }
            Err(err) => return self.skip_or_stop(&at, err),
        }
        let chunks = match self.repo.file_chunks(e).await {
            Ok(c) => c,
            Err(err) => {
                self.skip(&at, &err.to_string());
                return Ok(());
            }
        };
        let pending = Pending {
            dir: rel.to_owned(),
            name: e.name.clone(),
            shown: self.show(&at),
            temp: Mutex::new(None),
            whole: chunks.len() <= 1,
            mode: self.keep.mode(&self.show(&at), e.mode),
            mtime_ns: e.mtime_ns,
            meta: e.meta.clone(),
            size: e.size,
            left: AtomicUsize::new(chunks.len()),
            failed: Mutex::new(None),
        };
        if chunks.is_empty() {
            let file = match pending.open(&self.target, dir) {
                Ok(file) => file,
                Err(err) => return self.skip_or_stop(&at, err),
            };
            match pending.complete(&self.keep, dir, file) {
                Ok(()) => self.done.files += 1,
                Err(err) => self.skip(&at, &format!("{err:#}")),
            }
            return Ok(());
        }
        let w = &mut self.window;
        let mut offset = 0;
        for c in &chunks {
            w.uses
                .entry(c.id)
                .or_default()
                .push((w.files.len(), offset));
            offset += c.len;
        }
        w.chunks += chunks.len();
        w.files.push(pending);
        if w.files.len() >= MAX_FILES || w.chunks >= MAX_CHUNKS {
            self.flush().await?;
        }
        Ok(())
    }

    /// Reads every chunk the window waits for and completes its files; chunks are
    /// written by [`WRITERS`] tasks on the blocking pool as they arrive.
    async fn flush(&mut self) -> Result<()> {
        let Window {
            files, mut uses, ..
        } = std::mem::take(&mut self.window);
        let files = Arc::new(files);
        let ids: Vec<ChunkId> = uses.keys().copied().collect();
        let store = self.repo.store().clone();
        // Chunks already there go to one blocking task together: a task per chunk
        // costs more in thread wake-ups than writing a small file does.
        let mut answers = store.get_many_passing(ids).ready_chunks(WRITE_BATCH);
        let mut writers = tokio::task::JoinSet::new();
        let halt = Arc::new(AtomicBool::new(false));
        let mut stopped = None;
        while stopped.is_none() {
            if writers.len() >= WRITERS {
                let done = writers.join_next().await.expect("a writer is running");
                self.note(done, &mut stopped);
                continue;
            }
            let Some(batch) = answers.next().await else {
                break;
            };
            let work: Vec<_> = batch
                .into_iter()
                .map(|(id, answer)| (answer, uses.remove(&id).unwrap_or_default()))
                .collect();
            let (files, halt) = (files.clone(), halt.clone());
            let (target, keep) = (self.target.clone(), self.keep.clone());
            writers.spawn_blocking(move || write_chunks(&target, &keep, &files, work, &halt));
        }
        // Writers still running stop before their next chunk, and every one has ended
        // before the temporary files of unfinished files are removed (a writer going on
        // would complete a file around a removed chunk).
        halt.store(stopped.is_some(), Ordering::Release);
        drop(answers);
        while let Some(done) = writers.join_next().await {
            self.note(done, &mut stopped);
        }
        if let Some(stop) = stopped {
            for p in files.iter() {
                p.remove_temp(&self.target);
            }
            return Err(match stop {
                Stop::Failed(e) => e,
                Stop::Unavailable(why) => anyhow::anyhow!(
                    "{why}\nexport stopped: {} files written so far are kept; run the same export again to finish",
                    self.done.files
                ),
            });
        }
        for p in files.iter() {
            if p.left.load(Ordering::Acquire) > 0 {
                let why = p
                    .failure()
                    .unwrap_or_else(|| "the store did not answer for a chunk".into());
                p.remove_temp(&self.target);
                self.skip(&p.dir.join(OsStr::from_bytes(&p.name)), &why);
            }
        }
        Ok(())
    }

    /// Counts what a writer task completed, names the files it could not; keeps the
    /// first reason to stop.
    fn note(
        &mut self,
        done: Result<(write::Written, Option<Stop>), tokio::task::JoinError>,
        stopped: &mut Option<Stop>,
    ) {
        let (written, stop) = done.unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()));
        self.done.files += written.files;
        self.done.bytes += written.bytes;
        if let Some(stop) = stop {
            stopped.get_or_insert(stop);
        }
    }

    /// Makes the other names of files with several as hard links of the first (once
    /// every file is written).
    fn link_names(&mut self) -> Result<()> {
        for ((dir, name), (first_dir, first)) in std::mem::take(&mut self.more_names) {
            let at = dir.join(OsStr::from_bytes(&name));
            let first_at = first_dir.join(OsStr::from_bytes(&first));
            let (d, f) = match (self.target.dir(&dir), self.target.dir(&first_dir)) {
                (Ok(d), Ok(f)) => (d, f),
                (Err(e), _) | (_, Err(e)) => {
                    self.skip_or_stop(&at, e)?;
                    continue;
                }
            };
            let found = (target::look(&d, &name), target::look(&f, &first));
            match found {
                (Ok(Found::File { id: a, .. }), Ok(Found::File { id: b, .. })) if a == b => {
                    self.done.kept += 1
                }
                (Ok(Found::Absent), Ok(Found::Absent)) => {
                    let why = format!(
                        "its other name {} was not exported",
                        self.show(&first_at).display()
                    );
                    self.skip(&at, &why);
                }
                (Ok(Found::Absent), Ok(_)) => {
                    if let Err(e) = target::link(&f, &first, &d, &name) {
                        self.skip_or_stop(&at, e)?;
                    }
                }
                (Err(e), _) | (_, Err(e)) => self.skip_or_stop(&at, e)?,
                (Ok(found), _) => self.in_the_way(&at, found),
            }
        }
        Ok(())
    }

    /// Gives every folder its meta, mode and mtime, deepest first (so read-only
    /// folders are filled before they close, and no mtime moves after it is set).
    fn finish_dirs(&mut self) -> Result<()> {
        for i in (0..self.dirs.len()).rev() {
            let (rel, mode, mtime_ns, meta) = &self.dirs[i];
            let shown = self.show(rel);
            let fd = match self.target.dir(rel) {
                Ok(fd) => fd,
                Err(e) => {
                    let (rel, why) = (rel.clone(), format!("cannot finish it: {e}"));
                    self.skip(&rel, &why);
                    continue;
                }
            };
            set_meta(&self.keep, At::Open(fd.as_fd()), &shown, meta.as_deref());
            rustix::fs::fchmod(&fd, rustix::fs::Mode::from_raw_mode(*mode))
                .with_context(|| format!("cannot set mode of {}", shown.display()))?;
            target::set_mtime(fd.as_fd(), *mtime_ns)
                .with_context(|| format!("cannot set mtime of {}", shown.display()))?;
        }
        Ok(())
    }

    fn skip(&mut self, rel: &Path, why: &str) {
        self.skipped.push(format!(
            "{} (version {}): {why}",
            self.show(rel).display(),
            self.version
        ));
    }
}

/// Sets what `keep` allows of `meta` on `at` (shown as `shown`); what cannot be set is
/// warned about, not fatal (a target file system may lack attributes).
fn set_meta(keep: &Keep, at: At<'_>, shown: &Path, meta: Option<&Meta>) {
    let Some(meta) = meta else {
        return;
    };
    let owner = keep.owner(shown, meta);
    let xattrs = keep.xattrs(shown, meta);
    for problem in localmeta::apply(at, owner, &xattrs) {
        tracing::warn!("{}: {problem}", shown.display());
    }
}

#[cfg(test)]
mod tests;
