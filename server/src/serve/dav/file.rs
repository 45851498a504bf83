//! Files opened over WebDAV: a reader that seeks by chunk and fetches ahead of itself
//! (in windows a cold tier answers together), and a writer that chunks
//! what it is sent as it arrives and commits it as one version when flushed.
//!
//! # Invariants
//! - A writer commits only when the bytes it received are all the client announced
//!   (`Content-Length`); a cut-off upload changes nothing.
//! - A reader returns only verified chunks (every store get is verified).

use std::io::SeekFrom;
use std::sync::Arc;

use bytes::Bytes;
use dav_server::fs::{DavFile, DavMetaData, FsError, FsFuture};
use futures::FutureExt;
use fvfs_cas::chunker::Incremental;
use fvfs_manifest::{ChunkRef, Entry, Pending};

use super::meta::Meta;
use super::{fs_error, now_ns};
use crate::serve::files::store_chunk;
use crate::serve::writer::Op;
use crate::serve::State;

pub struct Reader {
    state: Arc<State>,
    meta: Meta,
    chunks: Vec<ChunkRef>,
    /// Where each chunk starts in the file.
    starts: Vec<u64>,
    size: u64,
    pos: u64,
    /// The chunk read last (index, bytes): reads come in small pieces.
    current: Option<(usize, Bytes)>,
    /// The chunks from an index on, fetched ahead in batches (a cold tier answers a
    /// window of neighbours in one request); started again after a seek. (In a
    /// mutex only so that the reader is `Sync`; reads have it by `&mut`.)
    ahead: Option<(usize, std::sync::Mutex<Ahead>)>,
}

type Ahead = futures::stream::BoxStream<'static, Result<Bytes, fvfs_cas::StoreError>>;

impl std::fmt::Debug for Reader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Reader(size {}, at {})", self.size, self.pos)
    }
}

impl Reader {
    pub async fn open(state: Arc<State>, entry: &Entry) -> Result<Self, FsError> {
        let chunks = state
            .repo
            .file_chunks(entry)
            .await
            .map_err(|e| fs_error(e.into()))?;
        let mut starts = Vec::with_capacity(chunks.len());
        let mut at = 0;
        for c in &chunks {
            starts.push(at);
            at += c.len;
        }
        // For a GET that will send the whole file, the first chunk is read now, before
        // the answer starts: a file no tier can give now is answered 503 (or 500), not
        // cut off after a 200. (A HEAD, a range or a 304 do not need it.)
        let current = match chunks.first().filter(|_| super::whole_get()) {
            Some(c) => {
                let data = state.repo.store().get(&c.id).await;
                Some((0, data.map_err(|e| fs_error(e.into()))?.data))
            }
            None => None,
        };
        Ok(Self {
            state,
            meta: Meta::of(entry),
            chunks,
            starts,
            size: at,
            pos: 0,
            current,
            ahead: None,
        })
    }

    async fn chunk(&mut self, index: usize) -> Result<Bytes, FsError> {
        use futures::StreamExt;
        if let Some((i, data)) = &self.current {
            if *i == index {
                return Ok(data.clone());
            }
        }
        let ahead = match self.ahead.take() {
            Some((next, stream)) if next == index => {
                stream.into_inner().unwrap_or_else(|p| p.into_inner())
            }
            _ => {
                let ids = self.chunks[index..].iter().map(|c| c.id).collect();
                fvfs_cas::read_ahead(self.state.repo.store().clone(), ids).boxed()
            }
        };
        let mut ahead = ahead;
        let data = match ahead.next().await {
            Some(Ok(data)) => data,
            Some(Err(e)) => return Err(fs_error(e.into())),
            None => return Err(FsError::GeneralFailure),
        };
        self.ahead = Some((index + 1, std::sync::Mutex::new(ahead)));
        self.current = Some((index, data.clone()));
        Ok(data)
    }
}

impl DavFile for Reader {
    fn metadata(&'_ mut self) -> FsFuture<'_, Box<dyn DavMetaData>> {
        let meta: Box<dyn DavMetaData> = Box::new(self.meta.clone());
        async move { Ok(meta) }.boxed()
    }

    fn write_buf(&'_ mut self, _buf: Box<dyn bytes::Buf + Send>) -> FsFuture<'_, ()> {
        async { Err(FsError::Forbidden) }.boxed()
    }

    fn write_bytes(&'_ mut self, _buf: Bytes) -> FsFuture<'_, ()> {
        async { Err(FsError::Forbidden) }.boxed()
    }

    fn read_bytes(&'_ mut self, count: usize) -> FsFuture<'_, Bytes> {
        async move {
            if self.pos >= self.size || count == 0 {
                return Ok(Bytes::new());
            }
            let index = self.starts.partition_point(|s| *s <= self.pos) - 1;
            let data = self.chunk(index).await?;
            let from = (self.pos - self.starts[index]) as usize;
            let to = data.len().min(from + count);
            self.pos += (to - from) as u64;
            Ok(data.slice(from..to))
        }
        .boxed()
    }

    fn seek(&'_ mut self, pos: SeekFrom) -> FsFuture<'_, u64> {
        async move {
            let to = match pos {
                SeekFrom::Start(n) => Some(n),
                SeekFrom::End(d) => self.size.checked_add_signed(d),
                SeekFrom::Current(d) => self.pos.checked_add_signed(d),
            };
            self.pos = to.ok_or(FsError::GeneralFailure)?;
            Ok(self.pos)
        }
        .boxed()
    }

    fn flush(&'_ mut self) -> FsFuture<'_, ()> {
        async { Ok(()) }.boxed()
    }
}

pub struct Writer {
    state: Arc<State>,
    path: Vec<u8>,
    mode: u32,
    /// The owner, extended attributes and properties of the file replaced, kept.
    meta: Option<Box<fvfs_manifest::node::Meta>>,
    /// What the client announced it sends.
    expected: Option<u64>,
    /// The file must still be absent when committed (`If-None-Match: *`).
    create_new: bool,
    written: u64,
    pending: Pending,
    chunker: Incremental,
    refs: Vec<ChunkRef>,
    /// The entry committed by `flush`.
    committed: Option<Entry>,
}

impl std::fmt::Debug for Writer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Writer({} bytes)", self.written)
    }
}

impl Writer {
    /// A writer of the file at `path`, with the mode and metadata of the file it
    /// replaces (if any).
    pub fn new(
        state: Arc<State>,
        path: Vec<u8>,
        (mode, meta): (u32, Option<Box<fvfs_manifest::node::Meta>>),
        (expected, create_new): (Option<u64>, bool),
    ) -> Self {
        let seed = state.repo.cut_seed();
        Self {
            state,
            path,
            mode,
            meta,
            expected,
            create_new,
            written: 0,
            pending: Pending::default(),
            chunker: Incremental::new(seed),
            refs: Vec::new(),
            committed: None,
        }
    }

    async fn store(&mut self, chunks: Vec<Vec<u8>>) -> Result<(), FsError> {
        for chunk in chunks {
            let r = store_chunk(&self.state.repo, &self.pending, &chunk)
                .await
                .map_err(fs_error)?;
            self.refs.push(r);
        }
        Ok(())
    }

    async fn commit(&mut self) -> Result<(), FsError> {
        if self.committed.is_some() {
            return Ok(());
        }
        if self.expected.is_some_and(|n| n != self.written) {
            // Cut off (or more than announced): nothing is committed.
            return Err(FsError::GeneralFailure);
        }
        let seed = self.state.repo.cut_seed();
        let rest = std::mem::replace(&mut self.chunker, Incremental::new(seed)).finish();
        self.store(rest).await?;
        let state = self.state.clone();
        let file = state
            .repo
            .put_file(&self.pending, std::mem::take(&mut self.refs))
            .await
            .map_err(|e| fs_error(e.into()))?;
        let mut entry = file.entry(self.mode, now_ns());
        entry.meta = self.meta.take();
        let pending = std::mem::take(&mut self.pending);
        let message = format!("dav put {}", fvfs_manifest::path::show(&self.path));
        state
            .writer
            .submit(
                vec![Op::Put {
                    path: self.path.clone(),
                    entry: entry.clone(),
                    expect: self.create_new.then_some(fvfs_api::commit::Expect::Absent),
                }],
                pending,
                message,
            )
            .await
            .map_err(|e| fs_error(e.into()))?;
        self.committed = Some(entry);
        Ok(())
    }
}

impl DavFile for Writer {
    fn metadata(&'_ mut self) -> FsFuture<'_, Box<dyn DavMetaData>> {
        async move {
            let meta: Box<dyn DavMetaData> = match &self.committed {
                Some(e) => Box::new(Meta::of(e)),
                None => Box::new(Meta::pending(self.written)),
            };
            Ok(meta)
        }
        .boxed()
    }

    fn write_buf(&'_ mut self, mut buf: Box<dyn bytes::Buf + Send>) -> FsFuture<'_, ()> {
        let bytes = buf.copy_to_bytes(buf.remaining());
        self.write_bytes(bytes)
    }

    fn write_bytes(&'_ mut self, buf: Bytes) -> FsFuture<'_, ()> {
        async move {
            self.written += buf.len() as u64;
            let chunks = self.chunker.push(&buf);
            self.store(chunks).await
        }
        .boxed()
    }

    fn read_bytes(&'_ mut self, _count: usize) -> FsFuture<'_, Bytes> {
        async { Err(FsError::NotImplemented) }.boxed()
    }

    fn seek(&'_ mut self, pos: SeekFrom) -> FsFuture<'_, u64> {
        // Only where the writer is: partial updates of stored files are not offered.
        let here = self.written;
        async move {
            match pos {
                SeekFrom::Start(n) if n == here => Ok(here),
                SeekFrom::Current(0) => Ok(here),
                _ => Err(FsError::NotImplemented),
            }
        }
        .boxed()
    }

    fn flush(&'_ mut self) -> FsFuture<'_, ()> {
        self.commit().boxed()
    }
}
