//! `fvfsc put -r`: a local tree uploaded as it is walked and committed in pieces as it
//! goes, so that what the client holds, and what the daemon holds for it, follows a
//! piece and the files being read, not the tree.
//!
//! # Invariants
//! - A piece is committed only once every chunk its files name is on the daemon: the
//!   uploader is handed a barrier after those files' chunks and answers it once they
//!   are stored ([`super::Upload::Barrier`]).
//! - Pieces are committed one at a time, in order; the next fills while one commits.
//! - A folder's operation is made before the files in it are read (the walk lists a
//!   folder before what it holds); the daemon makes missing parents anyway, and a
//!   folder's operation sets its mode and time whenever it comes.
//! - The other names of a file with several (hard links) are links to its first name,
//!   in the last piece, after every file.

use std::collections::{HashMap, HashSet};
use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use anyhow::{bail, Context, Result};
use futures::StreamExt;

use fvfs_api::client::Api;
use fvfs_api::commit::CommitOp;
use fvfs_api::path::encode_path;
use fvfs_api::views::VersionInfo;
use fvfs_walk::{Event, Found, Kind, Rules, ToRead};

use super::{
    chunk_files, commit, cut_seed, file_op, resend_if_collected, uploader, Attrs, ReadBatch, Seen,
    ToUploader, Upload,
};

/// What a tree upload did.
pub struct Summary {
    pub files: u64,
    pub bytes: u64,
    pub sent_bytes: u64,
    pub skipped: Vec<(PathBuf, String)>,
    /// Entries the exclude rules left out (a folder counts once).
    pub excluded: u64,
    pub version: VersionInfo,
}

/// Uploads the tree `src` to `dest`, leaving out what `rules` exclude, and commits it
/// in pieces as it goes (one version if it fits in one). Files are read on one thread
/// per core; one uploader sends what the daemon lacks.
pub async fn put_tree(api: &Api, src: &Path, dest: &[u8], rules: &Rules) -> Result<Summary> {
    resend_if_collected(|| put_tree_once(api, src, dest, rules)).await
}

/// A file the walk found.
struct LocalFile {
    file: ToRead,
    at: Vec<u8>,
    meta: fs::Metadata,
}

/// What the walk hands on, in the order it found it.
enum Listed {
    /// Folders and symbolic links.
    Ops(Vec<CommitOp>),
    /// Files to read together.
    Files(Vec<LocalFile>),
}

/// What the walk found besides what it handed on.
#[derive(Default)]
struct Walked {
    skipped: Vec<(PathBuf, String)>,
    excluded: u64,
    /// The other names of files with several: (first name, this name, local path).
    more_names: Vec<(Vec<u8>, Vec<u8>, PathBuf)>,
}

/// Folder and link operations handed on at once, at most.
const OPS_AT_ONCE: usize = 1024;
/// What the walk may have handed on ahead of the readers.
const LISTED_AHEAD: usize = 4;

/// The walk's side: what it found, grouped and handed on.
struct Walker {
    tx: tokio::sync::mpsc::Sender<Listed>,
    ops: Vec<CommitOp>,
    files: ReadBatch<LocalFile>,
    first_names: HashMap<(u64, u64), Vec<u8>>,
    walked: Walked,
    /// The other side stopped listening: the rest of the walk is for nothing.
    stopped: bool,
}

impl Walker {
    fn found(&mut self, event: Event) {
        let Found {
            src,
            folder,
            dest,
            meta,
            kind,
        } = match event {
            Event::Skipped { src, reason } => return self.walked.skipped.push((src, reason)),
            Event::Found(found) => *found,
        };
        let (mode, mtime_ns) = (meta.mode() & 0o7777, mtime_ns(&meta));
        match kind {
            Kind::Dir => self.op(CommitOp::Mkdir {
                path: encode_path(&dest),
                mode,
                mtime_ns,
                meta: None,
            }),
            Kind::Symlink(target) => self.op(CommitOp::Symlink {
                path: encode_path(&dest),
                target: encode_path(&target),
                mode,
                mtime_ns,
                meta: None,
                link: None,
            }),
            Kind::File => self.file(LocalFile {
                file: ToRead::new(src, folder),
                at: dest,
                meta,
            }),
            Kind::Special => {
                let t = meta.file_type();
                let kind = if t.is_socket() {
                    "socket"
                } else if t.is_fifo() {
                    "named pipe"
                } else {
                    "device"
                };
                let why = format!("special file ({kind}) is not uploaded");
                self.walked.skipped.push((src, why));
            }
        }
    }

    fn op(&mut self, op: CommitOp) {
        self.ops.push(op);
        if self.ops.len() >= OPS_AT_ONCE {
            self.hand_on(false);
        }
    }

    /// A file to read, unless it is another name of a file found before (then a link
    /// to that one's first name).
    fn file(&mut self, file: LocalFile) {
        let meta = &file.meta;
        if meta.nlink() > 1 {
            match self.first_names.entry((meta.dev(), meta.ino())) {
                std::collections::hash_map::Entry::Occupied(first) => {
                    let first = first.get().clone();
                    return self
                        .walked
                        .more_names
                        .push((first, file.at, file.file.path));
                }
                std::collections::hash_map::Entry::Vacant(v) => {
                    v.insert(file.at.clone());
                }
            }
        }
        let len = meta.len();
        if let Some(batch) = self.files.add(file, len) {
            self.hand_on(false);
            self.send(Listed::Files(batch));
        }
    }

    /// Hands on the operations so far, and the files so far if `all`.
    fn hand_on(&mut self, all: bool) {
        if !self.ops.is_empty() {
            let ops = std::mem::take(&mut self.ops);
            self.send(Listed::Ops(ops));
        }
        if let Some(batch) = all.then(|| self.files.take()).flatten() {
            self.send(Listed::Files(batch));
        }
    }

    fn send(&mut self, listed: Listed) {
        self.stopped = self.stopped || self.tx.blocking_send(listed).is_err();
    }
}

/// Walks `src` (on a blocking thread), handing what it finds to `tx`.
fn walk(src: &Path, dest: &[u8], rules: &Rules, tx: tokio::sync::mpsc::Sender<Listed>) -> Walked {
    let mut w = Walker {
        tx,
        ops: Vec::new(),
        files: ReadBatch::default(),
        first_names: HashMap::new(),
        walked: Walked::default(),
        stopped: false,
    };
    let excluded = fvfs_walk::walk(src, dest, rules, &mut |event| {
        if !w.stopped {
            w.found(event)
        }
    });
    w.hand_on(true);
    Walked {
        excluded,
        ..w.walked
    }
}

fn mtime_ns(m: &fs::Metadata) -> i64 {
    fvfs_node::unix_ns(m.mtime(), m.mtime_nsec())
}

/// What one commit of `put -r` holds at most: a sixteenth of what the daemon takes, so
/// that what the daemon holds while it applies one (the request, its entries, the
/// edit) stays far below what a whole home would take.
const PIECE_BYTES: usize = fvfs_api::commit::MAX_COMMIT_BODY / 16;

/// The operations of a tree upload, committed a piece at a time.
struct Pieces {
    api: Api,
    message: String,
    ops: Vec<CommitOp>,
    bytes: usize,
    /// Pieces committed or being committed.
    count: usize,
    committing: Option<tokio::task::JoinHandle<Result<VersionInfo>>>,
}

impl Pieces {
    /// Adds `op`; the piece so far is committed first if `op` would not fit in it.
    async fn push(&mut self, op: CommitOp, tx: &ToUploader) -> Result<()> {
        let n = serde_json::to_vec(&op).map_or(0, |v| v.len() + 1);
        if self.bytes + n > PIECE_BYTES && !self.ops.is_empty() {
            self.cut(tx, false).await?;
        }
        self.bytes += n;
        self.ops.push(op);
        Ok(())
    }

    /// Commits the piece so far, once the uploader stored every chunk handed to it
    /// before now, after the piece before it; `last` names it so.
    async fn cut(&mut self, tx: &ToUploader, last: bool) -> Result<()> {
        let (barrier, stored) = tokio::sync::oneshot::channel();
        let stopped = || anyhow::anyhow!("upload stopped");
        tx.send(Upload::Barrier(barrier))
            .await
            .map_err(|_| stopped())?;
        if let Some(before) = self.committing.take() {
            before.await??;
        }
        self.count += 1;
        let message = match (last, self.count) {
            (true, 1) => self.message.clone(),
            (true, n) => format!("{} (part {n}, the last)", self.message),
            (false, n) => format!("{} (part {n})", self.message),
        };
        let (api, ops) = (self.api.clone(), std::mem::take(&mut self.ops));
        self.bytes = 0;
        self.committing = Some(tokio::spawn(async move {
            stored.await.map_err(|_| stopped())?;
            Ok(commit(&api, message, ops).await?)
        }));
        Ok(())
    }

    /// Commits the last piece: the version it made.
    async fn finish(mut self, tx: &ToUploader) -> Result<VersionInfo> {
        self.cut(tx, true).await?;
        let last = self
            .committing
            .take()
            .expect("the last piece is committing");
        last.await?
    }
}

async fn put_tree_once(api: &Api, src: &Path, dest: &[u8], rules: &Rules) -> Result<Summary> {
    let meta = fs::metadata(src).with_context(|| format!("{}", src.display()))?;
    if !meta.is_dir() {
        bail!(
            "{} is not a directory (use --from FILE for one file)",
            src.display()
        );
    }
    let seed = cut_seed(api).await?;
    let (listed_tx, listed_rx) = tokio::sync::mpsc::channel(LISTED_AHEAD);
    let walking = {
        let (src, dest, rules) = (src.to_owned(), dest.to_vec(), rules.clone());
        tokio::task::spawn_blocking(move || walk(&src, &dest, &rules, listed_tx))
    };
    let (tx, rx) = tokio::sync::mpsc::channel(8);
    let upload = uploader(api, rx);
    let mut pieces = Pieces {
        api: api.clone(),
        message: format!(
            "put -r {} -> {}",
            src.display(),
            String::from_utf8_lossy(dest)
        ),
        ops: Vec::new(),
        bytes: 0,
        count: 0,
        committing: None,
    };
    if dest != b"/" {
        let top = CommitOp::Mkdir {
            path: encode_path(dest),
            mode: meta.mode() & 0o7777,
            mtime_ns: mtime_ns(&meta),
            meta: None,
        };
        pieces.push(top, &tx).await?;
    }
    let readers = std::thread::available_parallelism().map_or(2, |n| n.get());
    let seen = Arc::new(Mutex::new(Seen::default()));
    let read_all = async move {
        let mut listed_rx = listed_rx;
        let listed = futures::stream::poll_fn(move |cx| listed_rx.poll_recv(cx));
        let mut results = listed
            .map(|listed| {
                let (seen, tx) = (seen.clone(), tx.clone());
                async move {
                    match listed {
                        Listed::Ops(ops) => (ops, Vec::new()),
                        Listed::Files(batch) => {
                            let paths = batch.iter().map(|f| f.file.clone()).collect();
                            let read = chunk_files(paths, (seen, seed), tx).await;
                            (Vec::new(), read.into_iter().zip(batch).collect())
                        }
                    }
                }
            })
            .buffer_unordered(readers);
        let (mut files, mut bytes, mut unreadable) = (0u64, 0u64, Vec::new());
        while let Some((ops, read)) = results.next().await {
            for op in ops {
                pieces.push(op, &tx).await?;
            }
            for (refs, f) in read {
                let refs = match refs {
                    Ok(refs) => refs,
                    Err(e) => {
                        unreadable.push((f.file.path, format!("cannot read: {e}"), f.at));
                        continue;
                    }
                };
                bytes += refs.iter().map(|r| r.len).sum::<u64>();
                files += 1;
                let attrs = Attrs {
                    mode: f.meta.mode() & 0o7777,
                    mtime_ns: mtime_ns(&f.meta),
                    meta: None,
                    link: None,
                };
                let (op, _) = file_op(&f.at, &attrs, refs, None, &tx).await?;
                pieces.push(op, &tx).await?;
            }
        }
        drop(results);
        let mut walked = walking.await?;
        let unread: HashSet<&[u8]> = unreadable.iter().map(|(_, _, at)| at.as_slice()).collect();
        for (first, at, path) in std::mem::take(&mut walked.more_names) {
            if unread.contains(first.as_slice()) {
                let why = "another name of this file could not be read";
                walked.skipped.push((path, why.into()));
                continue;
            }
            files += 1;
            let link = CommitOp::Link {
                from: encode_path(&first),
                to: encode_path(&at),
                replace: true,
                ctime_ns: None,
            };
            pieces.push(link, &tx).await?;
        }
        let skipped = unreadable.into_iter().map(|(path, why, _)| (path, why));
        walked.skipped.extend(skipped);
        if pieces.count == 0 && pieces.ops.is_empty() {
            bail!("{} is empty: nothing to upload", src.display());
        }
        let version = pieces.finish(&tx).await?;
        Ok::<_, anyhow::Error>((files, bytes, walked, version))
    };
    let ((files, bytes, walked, version), sent_bytes) = futures::try_join!(read_all, upload)?;
    Ok(Summary {
        files,
        bytes,
        sent_bytes,
        skipped: walked.skipped,
        excluded: walked.excluded,
        version,
    })
}
