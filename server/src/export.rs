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
//! - Nothing existing is overwritten: a file is written under a temporary name beside
//!   its own and renamed to it, never over an existing name, once complete and given
//!   its mode and mtime. So a name in the export folder is either absent or a whole
//!   file of the version.
//! - A second run into the same folder resumes: a file already there with the size and
//!   mtime it should have is kept; any other existing file is a clash and stops the
//!   export. Left-over temporary files of a stopped run are overwritten.
//! - A chunk that no tier can give whole fails only the files using it: they are named
//!   with the reason (its pack, for S3), everything else is exported, and the exit code
//!   is 1. An unreachable tier stops the export with one line; run it again to finish.
//! - Directories are created writable and get their real mode and mtime last, deepest
//!   first, so read-only directories and their mtimes come out right.

use fvfs_api::reports::Outcome;
use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs::{self, File, OpenOptions, Permissions};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use anyhow::{bail, Context, Result};
use futures::StreamExt;
use fvfs_cas::{platform, ChunkId, Loaded, StoreError};
use fvfs_manifest::node::Meta;
use fvfs_manifest::{lookup, path, Entry, EntryKind, Repo};
use fvfs_tiering::S3Store;
use rustix::fs::{AtFlags, Timespec, Timestamps, CWD};

use crate::localmeta;

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

/// What to export. Also the body of `POST /v1/admin/export`.
#[derive(clap::Args, serde::Serialize, serde::Deserialize)]
pub struct Args {
    /// Version number, snapshot name or HEAD~N to export (default: HEAD).
    #[arg(long)]
    version: Option<String>,
    /// Path inside fvfs to export.
    path: PathBuf,
    /// Local directory to write into (created if missing).
    dir: PathBuf,
    /// Keep setuid and setgid bits. By default they are dropped: any client on the
    /// LAN may have set them, and an export by root would make its files run as root.
    #[arg(long)]
    #[serde(default)]
    keep_setid: bool,
}

/// Exports; `s3` (when the store has that tier) only counts the requests it cost.
pub async fn run(repo: &Repo, s3: Option<&S3Store>, args: Args) -> Result<Outcome> {
    let version = repo.resolve(args.version.as_deref().unwrap_or("HEAD"))?;
    let src = args.path.as_os_str().as_bytes();
    let top = lookup(repo, version.root, src).await?;
    fs::create_dir_all(&args.dir)
        .with_context(|| format!("cannot create {}", args.dir.display()))?;
    let requests_before = s3.map(S3Store::requests);
    let mut x = Export {
        repo,
        version: version.number,
        window: Window::default(),
        dirs: Vec::new(),
        done: Done::default(),
        skipped: Vec::new(),
        first_names: HashMap::new(),
        keep_setid: args.keep_setid,
        more_names: Vec::new(),
    };
    match (top.kind, top.id) {
        (EntryKind::Dir, Some(id)) => x.tree(&args.dir, id).await?,
        _ => x.entry(&args.dir, &top).await?,
    }
    x.flush().await?;
    x.link_names()?;
    for (dest, mode, mtime_ns, meta) in x.dirs.iter().rev() {
        set_meta(dest, meta.as_deref());
        fs::set_permissions(dest, Permissions::from_mode(*mode))
            .with_context(|| format!("cannot set mode of {}", dest.display()))?;
        set_mtime(dest, *mtime_ns)?;
    }
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
        version: Some(version.number),
    })
}

struct Export<'a> {
    repo: &'a Repo,
    version: u64,
    window: Window,
    /// Every directory created or found, with the mode and mtime it gets at the end.
    /// Folders to finish at the end: mode, mtime and meta.
    dirs: Vec<(PathBuf, u32, i64, Option<Box<Meta>>)>,
    done: Done,
    /// `path (version N): reason` of each file not exported.
    skipped: Vec<String>,
    /// Files with several names: where the first name met was written, by link id;
    /// the other names, made as hard links of it at the end.
    first_names: HashMap<u64, PathBuf>,
    more_names: Vec<(PathBuf, PathBuf)>,
    /// Whether setuid and setgid bits are written (`--keep-setid`).
    keep_setid: bool,
}

#[derive(Default)]
struct Done {
    files: u64,
    bytes: u64,
    kept: u64,
}

/// Where a chunk goes: (index in [`Window::files`], offset in that file) for each use.
type Places = Vec<(usize, u64)>;

/// Files being written and the chunks they wait for.
#[derive(Default)]
struct Window {
    files: Vec<Pending>,
    /// Where each chunk goes.
    uses: HashMap<ChunkId, Places>,
    chunks: usize,
}

/// A file of the window, shared with the tasks writing its chunks.
struct Pending {
    dest: PathBuf,
    tmp: PathBuf,
    mode: u32,
    mtime_ns: i64,
    meta: Option<Box<Meta>>,
    size: u64,
    /// Chunk references not yet written: the writer that brings it to 0 completes it.
    left: AtomicUsize,
    /// Why it cannot be completed.
    failed: Mutex<Option<String>>,
}

impl Pending {
    fn fail(&self, why: String) {
        self.failed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get_or_insert(why);
    }

    fn failure(&self) -> Option<String> {
        self.failed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

/// What a writer task completed.
#[derive(Default)]
struct Written {
    files: u64,
    bytes: u64,
}

/// Why a window stopped: the store became unreachable, or writing failed.
enum Stop {
    Unavailable(String),
    Failed(anyhow::Error),
}

impl Export<'_> {
    /// The mode `e` is written with: setuid and setgid dropped unless kept.
    fn mode(&self, e: &Entry) -> u32 {
        if self.keep_setid {
            e.mode
        } else {
            e.mode & !0o6000
        }
    }

    /// Everything below directory node `id`, into the existing folder `dir`.
    async fn tree(&mut self, dir: &Path, id: ChunkId) -> Result<()> {
        let mut stack = vec![(dir.to_path_buf(), id)];
        while let Some((dir, id)) = stack.pop() {
            let node = match self.repo.dir(&id).await {
                Ok(node) => node,
                Err(e) => {
                    self.skip(&dir, &format!("its directory node cannot be read: {e}"));
                    continue;
                }
            };
            for e in node.entries {
                let dest = dir.join(OsStr::from_bytes(&e.name));
                match (e.kind, e.id) {
                    (EntryKind::Dir, Some(child)) => {
                        make_dir(&dest)?;
                        self.dirs
                            .push((dest.clone(), self.mode(&e), e.mtime_ns, e.meta.clone()));
                        stack.push((dest, child));
                    }
                    _ => self.entry(&dir, &e).await?,
                }
            }
        }
        Ok(())
    }

    /// A file or symlink (or an empty directory) named `e.name` in folder `dir`.
    async fn entry(&mut self, dir: &Path, e: &Entry) -> Result<()> {
        let dest = dir.join(OsStr::from_bytes(&e.name));
        if let Some(link) = e.link {
            match self.first_names.get(&link.id) {
                Some(first) => {
                    self.more_names.push((dest, first.clone()));
                    return Ok(());
                }
                None => {
                    self.first_names.insert(link.id, dest.clone());
                }
            }
        }
        match e.kind {
            EntryKind::Dir => {
                make_dir(&dest)?;
                self.dirs
                    .push((dest, self.mode(e), e.mtime_ns, e.meta.clone()));
            }
            EntryKind::Symlink => {
                let target = OsStr::from_bytes(&e.target);
                match fs::read_link(&dest) {
                    Ok(t) if t == target => {}
                    Ok(_) => bail!(
                        "cannot create symlink {}: it already exists",
                        dest.display()
                    ),
                    Err(_) => std::os::unix::fs::symlink(target, &dest)
                        .with_context(|| format!("cannot create symlink {}", dest.display()))?,
                }
                set_meta(&dest, e.meta.as_deref());
                set_mtime(&dest, e.mtime_ns)?;
            }
            kind @ (EntryKind::Fifo
            | EntryKind::Socket
            | EntryKind::CharDevice
            | EntryKind::BlockDevice) => {
                let rdev = e.meta.as_ref().map_or(0, |m| m.rdev);
                match fs::symlink_metadata(&dest) {
                    Ok(m) if localmeta::special_kind(&m) == Some(kind) => {}
                    Ok(_) => bail!("cannot create {}: it already exists", dest.display()),
                    Err(_) => {
                        if let Err(err) = localmeta::make_special(&dest, kind, self.mode(e), rdev) {
                            // Devices need root: named as not exported, the rest goes on.
                            self.skip(&dest, &format!("cannot create it: {err}"));
                            return Ok(());
                        }
                    }
                }
                set_meta(&dest, e.meta.as_deref());
                fs::set_permissions(&dest, Permissions::from_mode(self.mode(e)))
                    .with_context(|| format!("cannot set mode of {}", dest.display()))?;
                set_mtime(&dest, e.mtime_ns)?;
            }
            EntryKind::File => self.file(dest, e).await?,
        }
        Ok(())
    }

    async fn file(&mut self, dest: PathBuf, e: &Entry) -> Result<()> {
        if let Ok(meta) = fs::symlink_metadata(&dest) {
            if meta.is_file() && meta.len() == e.size && mtime_ns(&meta) == e.mtime_ns {
                self.done.kept += 1;
                return Ok(());
            }
            bail!("cannot create {}: it already exists", dest.display());
        }
        let chunks = match self.repo.file_chunks(e).await {
            Ok(c) => c,
            Err(err) => {
                self.skip(&dest, &err.to_string());
                return Ok(());
            }
        };
        let pending = Pending {
            tmp: temp_name(&dest),
            dest,
            mode: self.mode(e),
            mtime_ns: e.mtime_ns,
            meta: e.meta.clone(),
            size: e.size,
            left: AtomicUsize::new(chunks.len()),
            failed: Mutex::new(None),
        };
        if chunks.is_empty() {
            complete(&pending, open_temp(&pending.tmp)?)?;
            self.done.files += 1;
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
            writers.spawn_blocking(move || write_chunks(&files, work, &halt));
        }
        // Writers still running stop before their next chunk, and every one has ended
        // before the temporary files of unfinished files are removed (a writer going on
        // would make one again, or complete a file around a removed chunk).
        halt.store(stopped.is_some(), Ordering::Release);
        drop(answers);
        while let Some(done) = writers.join_next().await {
            self.note(done, &mut stopped);
        }
        if let Some(stop) = stopped {
            remove_temps(&files);
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
                let _ = fs::remove_file(&p.tmp);
                self.skip(&p.dest, &why);
            }
        }
        Ok(())
    }

    /// Counts what a writer task completed; keeps the first reason to stop.
    fn note(
        &mut self,
        done: Result<(Written, Option<Stop>), tokio::task::JoinError>,
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
        for (dest, first) in std::mem::take(&mut self.more_names) {
            let same =
                |a: &fs::Metadata, b: &fs::Metadata| (a.dev(), a.ino()) == (b.dev(), b.ino());
            match (fs::symlink_metadata(&dest), fs::symlink_metadata(&first)) {
                (Ok(d), Ok(f)) if same(&d, &f) => self.done.kept += 1,
                (Ok(_), _) => bail!("cannot create {}: it already exists", dest.display()),
                (Err(_), Err(_)) => {
                    let why = format!("its other name {} was not exported", first.display());
                    self.skip(&dest, &why);
                }
                (Err(_), Ok(_)) => fs::hard_link(&first, &dest).with_context(|| {
                    format!("cannot link {} to {}", dest.display(), first.display())
                })?,
            }
        }
        Ok(())
    }

    fn skip(&mut self, dest: &Path, why: &str) {
        self.skipped.push(format!(
            "{} (version {}): {why}",
            dest.display(),
            self.version
        ));
    }
}

/// Writes each chunk read wherever its places say; a chunk that could not be read
/// fails the files using it. Stops before the next chunk once `halt` is set, or when
/// the store is unreachable or writing fails; returns what it completed either way.
fn write_chunks(
    files: &[Pending],
    work: Vec<(Result<Loaded, StoreError>, Places)>,
    halt: &AtomicBool,
) -> (Written, Option<Stop>) {
    let mut done = Written::default();
    for (answer, places) in work {
        if halt.load(Ordering::Acquire) {
            break;
        }
        match answer {
            Ok(loaded) => {
                if let Err(e) = write_chunk(files, &loaded.data, &places, &mut done) {
                    return (done, Some(Stop::Failed(e)));
                }
            }
            Err(StoreError::Unavailable(why)) => return (done, Some(Stop::Unavailable(why))),
            Err(e) => {
                for (f, _) in places {
                    files[f].fail(e.to_string());
                }
            }
        }
    }
    (done, None)
}

/// Writes `data` wherever `places` say, completing each file it was the last chunk of
/// (counted in `w`).
fn write_chunk(
    files: &[Pending],
    data: &[u8],
    places: &[(usize, u64)],
    w: &mut Written,
) -> Result<()> {
    for &(f, offset) in places {
        let p = &files[f];
        if p.failure().is_some() {
            continue;
        }
        let file = open_temp(&p.tmp)?;
        file.write_all_at(data, offset)
            .with_context(|| format!("cannot write {}", p.tmp.display()))?;
        if p.left.fetch_sub(1, Ordering::AcqRel) == 1 {
            complete(p, file)?;
            w.files += 1;
            w.bytes += p.size;
        }
    }
    Ok(())
}

/// A file whose bytes are all written (`file` is its temporary copy, open): cut to
/// its size (a stopped run may have left a longer one), with its owner and
/// attributes, mode and, once closed, mtime (a rename keeps them), into place. On
/// failure the temporary copy is removed.
fn complete(p: &Pending, file: File) -> Result<()> {
    let finish = || -> Result<()> {
        let cannot = || format!("cannot finish {}", p.tmp.display());
        file.set_len(p.size).with_context(cannot)?;
        // Ownership first: a chown clears setuid and setgid bits.
        set_meta(&p.tmp, p.meta.as_deref());
        file.set_permissions(Permissions::from_mode(p.mode))
            .with_context(cannot)?;
        // The mtime after the close: a file system that writes back on close would
        // otherwise move it.
        drop(file);
        set_mtime(&p.tmp, p.mtime_ns)?;
        platform::rename_new(&p.tmp, &p.dest)
            .with_context(|| format!("cannot create {}", p.dest.display()))
    };
    finish().inspect_err(|_| {
        let _ = fs::remove_file(&p.tmp);
    })
}

/// Sets `meta` (owner when run as root, extended attributes) on `dest`; what cannot
/// be set is warned about, not fatal (a target file system may lack attributes).
fn set_meta(dest: &Path, meta: Option<&Meta>) {
    let Some(meta) = meta else {
        return;
    };
    let as_root = rustix::process::geteuid().is_root();
    for problem in localmeta::apply(dest, meta, as_root) {
        tracing::warn!("{}: {problem}", dest.display());
    }
}

fn make_dir(dest: &Path) -> Result<()> {
    match fs::create_dir(dest) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && dest.is_dir() => Ok(()),
        Err(e) => Err(e).with_context(|| format!("cannot create {}", dest.display())),
    }
}

/// Where `dest` is written until it is complete: beside it, hidden, and the same for
/// every run (so a stopped run's leftover is overwritten, and names stay short).
fn temp_name(dest: &Path) -> PathBuf {
    let name = dest.file_name().unwrap_or_default().as_bytes();
    let tag = ChunkId::of(name).to_string();
    dest.with_file_name(format!(".fvfs-export-{}", &tag[..16]))
}

fn remove_temps(files: &[Pending]) {
    for p in files {
        if p.left.load(Ordering::Acquire) > 0 {
            let _ = fs::remove_file(&p.tmp);
        }
    }
}

/// A file's temporary copy, created if it is not there yet (by whichever of its
/// chunks is written first).
fn open_temp(tmp: &Path) -> Result<File> {
    OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(tmp)
        .with_context(|| format!("cannot create {}", tmp.display()))
}

fn mtime_ns(meta: &fs::Metadata) -> i64 {
    use std::os::unix::fs::MetadataExt;
    fvfs_manifest::node::unix_ns(meta.mtime(), meta.mtime_nsec())
}

fn set_mtime(dest: &Path, mtime_ns: i64) -> Result<()> {
    let t = Timespec {
        tv_sec: mtime_ns.div_euclid(1_000_000_000),
        tv_nsec: mtime_ns.rem_euclid(1_000_000_000),
    };
    let times = Timestamps {
        last_access: t,
        last_modification: t,
    };
    rustix::fs::utimensat(CWD, dest, &times, AtFlags::SYMLINK_NOFOLLOW)
        .with_context(|| format!("cannot set mtime of {}", dest.display()))
}
