//! A thin client for one bucket and key prefix: the few S3 calls the tier makes, with
//! settings that work on AWS and on S3-compatible servers (Garage, MinIO...).
//!
//! Path-style addressing is forced when an endpoint is given, and checksums are computed
//! and validated only "when required", which third-party servers need. Every call has
//! a connect timeout and an attempt timeout, and is retried three times by the SDK, so a
//! slow or failing server turns into an [`StoreError::Unavailable`] within a bounded
//! time instead of a hang. Credentials come from the standard AWS chain (environment,
//! profile files...), so `AWS_ACCESS_KEY_ID` and `AWS_SECRET_ACCESS_KEY` work.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_s3::config::retry::RetryConfig;
use aws_sdk_s3::config::timeout::TimeoutConfig;
use aws_sdk_s3::config::{
    BehaviorVersion, Region, RequestChecksumCalculation, ResponseChecksumValidation,
};
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_s3::types::StorageClass;
use aws_sdk_s3::Client;
use bytes::{Bytes, BytesMut};
use fvfs_cas::{ChunkId, Loaded, StoreError};

use super::pace::{self, Pace};
use crate::seal::{MasterKey, Sealer};

/// The context every block is sealed with.
const BLOCK_CONTEXT: &[u8] = b"fvfs block v1";

/// Most bytes a GET's buffers are sized for before they arrive (a whole pack, with its
/// index, is less): a body declared larger grows as it comes.
const PREALLOC_MAX: usize = 64 << 20;

/// Where the S3 tier lives (`[tiers.s3]` of the config).
#[derive(Clone, Debug, Default)]
pub struct S3Settings {
    pub bucket: String,
    pub region: Option<String>,
    /// Prepended to every key; `photos` and `photos/` mean the same.
    pub prefix: Option<String>,
    /// For S3-compatible servers, e.g. `http://127.0.0.1:3900`.
    pub endpoint: Option<String>,
    /// The storage class of packs (`STANDARD_IA`, `GLACIER_IR`...; the server's
    /// default when `None`). The version log and snapshot names stay in the default
    /// class: recovery reads them all.
    pub storage_class: Option<String>,
    /// The most bytes per second sent, over all uploads together (`None`: no limit).
    pub max_bytes_per_sec: Option<f64>,
}

/// Requests sent, by kind (clones of a bucket share them).
#[derive(Default)]
struct Counters {
    puts: AtomicU64,
    gets: AtomicU64,
    put_bytes: AtomicU64,
    get_bytes: AtomicU64,
}

/// Requests sent to a bucket so far, and the bytes they carried.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Requests {
    pub puts: u64,
    pub gets: u64,
    /// Bytes sent in PUT bodies.
    pub put_bytes: u64,
    /// Bytes received in GET bodies.
    pub get_bytes: u64,
}

impl std::ops::Sub for Requests {
    type Output = Requests;
    fn sub(self, before: Requests) -> Requests {
        Requests {
            puts: self.puts - before.puts,
            gets: self.gets - before.gets,
            put_bytes: self.put_bytes - before.put_bytes,
            get_bytes: self.get_bytes - before.get_bytes,
        }
    }
}

impl std::fmt::Display for Requests {
    /// `N GETs (X MiB)`, and the same for PUTs when there were any.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mib = |b: u64| b as f64 / f64::from(1 << 20);
        write!(f, "{} GETs ({:.1} MiB)", self.gets, mib(self.get_bytes))?;
        if self.puts > 0 {
            write!(f, ", {} PUTs ({:.1} MiB)", self.puts, mib(self.put_bytes))?;
        }
        Ok(())
    }
}

#[derive(Clone)]
pub struct Bucket {
    client: Client,
    bucket: String,
    prefix: String,
    counters: Arc<Counters>,
    pack_class: Option<StorageClass>,
    pace: Option<Arc<Pace>>,
    /// Seals frames, pack indexes and documents, in an encrypted bucket.
    sealer: Option<Arc<Sealer>>,
}

/// An object listed under a prefix.
pub struct Listed {
    /// The key without the bucket prefix.
    pub key: String,
    pub size: u64,
}

impl Bucket {
    /// Builds the client. Nothing is sent until the first call, so a daemon starts
    /// (and keeps working on its local tier) while S3 is unreachable.
    pub async fn connect(s: &S3Settings) -> Self {
        let mut loader = aws_config::defaults(BehaviorVersion::latest());
        if let Some(region) = &s.region {
            loader = loader.region(Region::new(region.clone()));
        }
        let shared = loader.load().await;
        let mut conf = aws_sdk_s3::config::Builder::from(&shared)
            .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
            .response_checksum_validation(ResponseChecksumValidation::WhenRequired)
            .retry_config(
                RetryConfig::standard()
                    .with_max_attempts(3)
                    .with_initial_backoff(Duration::from_millis(200)),
            )
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(Duration::from_secs(5))
                    .operation_attempt_timeout(Duration::from_secs(120))
                    .build(),
            );
        if shared.region().is_none() {
            conf = conf.region(Region::new("us-east-1"));
        }
        if let Some(endpoint) = &s.endpoint {
            conf = conf.endpoint_url(endpoint).force_path_style(true);
        }
        let prefix = match s.prefix.as_deref().map(|p| p.trim_matches('/')) {
            None | Some("") => String::new(),
            Some(p) => format!("{p}/"),
        };
        Self {
            client: Client::from_conf(conf.build()),
            bucket: s.bucket.clone(),
            prefix,
            counters: Arc::default(),
            pack_class: s.storage_class.as_deref().map(StorageClass::from),
            pace: Pace::new(s.max_bytes_per_sec),
            sealer: None,
        }
    }

    /// This bucket, encrypted under `master`: what is written from now on is sealed,
    /// and what is read must open.
    pub fn with_key(mut self, master: &MasterKey) -> Self {
        self.sealer = Some(Arc::new(Sealer::new(master)));
        self
    }

    /// The sealer of an encrypted bucket.
    pub fn sealer(&self) -> Option<&Sealer> {
        self.sealer.as_deref()
    }

    /// A frame as stored: sealed with its id as context in an encrypted bucket.
    pub fn seal_frame(&self, id: &ChunkId, frame: &[u8]) -> Bytes {
        match &self.sealer {
            Some(s) => Bytes::from(s.seal(id.as_bytes(), frame)),
            None => Bytes::copy_from_slice(frame),
        }
    }

    /// A frame as stored, opened and verified against `id`.
    pub fn open_frame(&self, id: &ChunkId, stored: Bytes) -> Result<Loaded, StoreError> {
        let frame =
            match &self.sealer {
                Some(s) => Bytes::from(s.open(id.as_bytes(), &stored).map_err(|e| {
                    StoreError::Corrupt {
                        id: *id,
                        reason: e.to_string(),
                    }
                })?),
                None => stored,
            };
        fvfs_cas::verify(id, frame)
    }

    /// A block (chunks compressed together) as stored: sealed whole in an encrypted
    /// bucket, under a fixed context, since its reader knows no hash of it (each
    /// member is checked against its table entry and its id once it opens).
    pub fn seal_block(&self, block: &[u8]) -> Bytes {
        match &self.sealer {
            Some(s) => Bytes::from(s.seal(BLOCK_CONTEXT, block)),
            None => Bytes::copy_from_slice(block),
        }
    }

    /// A block as stored, opened; the error says why it does not.
    pub fn open_block(&self, stored: Bytes) -> Result<Bytes, String> {
        match &self.sealer {
            Some(s) => s
                .open(BLOCK_CONTEXT, &stored)
                .map(Bytes::from)
                .map_err(|e| e.to_string()),
            None => Ok(stored),
        }
    }

    /// Stores a small metadata object (log segment, snapshot names...), sealed with its
    /// key as context in an encrypted bucket.
    pub async fn put_doc(&self, key: &str, plain: Bytes) -> Result<(), StoreError> {
        let body = match &self.sealer {
            Some(s) => Bytes::from(s.seal(key.as_bytes(), &plain)),
            None => plain,
        };
        self.put(key, body).await
    }

    /// A metadata object stored by [`Bucket::put_doc`], opened; a sealed one that does
    /// not open is an error naming it.
    pub async fn get_doc(&self, key: &str) -> Result<Option<Bytes>, StoreError> {
        let Some(stored) = self.get(key).await? else {
            return Ok(None);
        };
        match &self.sealer {
            Some(s) => s
                .open(key.as_bytes(), &stored)
                .map(|b| Some(Bytes::from(b)))
                .map_err(|e| StoreError::Unavailable(format!("S3 object {}: {e}", self.key(key)))),
            None => Ok(Some(stored)),
        }
    }

    /// Requests sent so far (for metrics, summaries and benchmarks).
    pub fn requests(&self) -> Requests {
        let c = &self.counters;
        Requests {
            puts: c.puts.load(Ordering::Relaxed),
            gets: c.gets.load(Ordering::Relaxed),
            put_bytes: c.put_bytes.load(Ordering::Relaxed),
            get_bytes: c.get_bytes.load(Ordering::Relaxed),
        }
    }

    fn key(&self, key: &str) -> String {
        format!("{}{key}", self.prefix)
    }

    fn fail<E, R>(&self, op: &str, key: &str, e: SdkError<E, R>) -> StoreError
    where
        E: std::error::Error + ProvideErrorMetadata + Send + Sync + 'static,
        R: std::fmt::Debug,
    {
        let detail = match e.as_service_error().and_then(|s| s.code()) {
            Some(code) => format!(
                "{code}: {}",
                e.as_service_error()
                    .and_then(|s| s.message())
                    .unwrap_or_default()
            ),
            None => DisplayErrorContext(&e).to_string(),
        };
        StoreError::Unavailable(format!(
            "S3 {op} s3://{}/{}: {detail}",
            self.bucket,
            self.key(key)
        ))
    }

    /// Stores an object; returns once the server acknowledged it (durable there).
    pub async fn put(&self, key: &str, body: Bytes) -> Result<(), StoreError> {
        self.put_as(key, body, None).await
    }

    /// Stores a pack, in the packs' storage class.
    pub async fn put_pack(&self, key: &str, body: Bytes) -> Result<(), StoreError> {
        self.put_as(key, body, self.pack_class.clone()).await
    }

    async fn put_as(
        &self,
        key: &str,
        body: Bytes,
        class: Option<StorageClass>,
    ) -> Result<(), StoreError> {
        self.counters.puts.fetch_add(1, Ordering::Relaxed);
        self.counters
            .put_bytes
            .fetch_add(body.len() as u64, Ordering::Relaxed);
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(self.key(key))
            .set_storage_class(class)
            .content_length(body.len() as i64)
            .body(pace::body(body, self.pace.as_ref()))
            .send()
            .await
            .map_err(|e| self.fail("PUT", key, e))?;
        Ok(())
    }

    /// The whole object, or `None` if there is none under `key`.
    pub async fn get(&self, key: &str) -> Result<Option<Bytes>, StoreError> {
        self.get_range(key, None).await
    }

    /// Bytes of an object: `range` is an HTTP range spec (`bytes=0-99`, `bytes=-4096`).
    pub async fn get_range(
        &self,
        key: &str,
        range: Option<String>,
    ) -> Result<Option<Bytes>, StoreError> {
        let pieces = self.get_pieces(key, range, usize::MAX).await?;
        Ok(pieces.map(|mut p| p.pop().unwrap_or_default()))
    }

    /// [`Self::get_range`], its body cut into pieces of `piece` bytes (the last may be
    /// shorter), each copied once out of the connection's buffers and held by nothing
    /// else: a reader keeping one piece keeps no other.
    pub async fn get_pieces(
        &self,
        key: &str,
        range: Option<String>,
        piece: usize,
    ) -> Result<Option<Vec<Bytes>>, StoreError> {
        self.counters.gets.fetch_add(1, Ordering::Relaxed);
        let out = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(self.key(key))
            .set_range(range)
            .send()
            .await;
        let out = match out {
            Ok(out) => out,
            Err(e) if e.as_service_error().is_some_and(|s| s.is_no_such_key()) => return Ok(None),
            Err(e) => return Err(self.fail("GET", key, e)),
        };
        // What the server declares sizes the buffers, up to a pack: not trusted further.
        let mut left = out
            .content_length()
            .and_then(|n| usize::try_from(n).ok())
            .unwrap_or(0)
            .min(PREALLOC_MAX);
        let mut body = out.body;
        let (mut pieces, mut cur) = (Vec::new(), BytesMut::with_capacity(piece.min(left)));
        let mut total = 0;
        while let Some(data) = body.next().await {
            let mut data = data.map_err(|e| {
                StoreError::Unavailable(format!("S3 GET {}: reading the body: {e}", self.key(key)))
            })?;
            total += data.len();
            while !data.is_empty() {
                let take = (piece - cur.len()).min(data.len());
                cur.extend_from_slice(&data.split_to(take));
                if cur.len() == piece {
                    pieces.push(cur.split().freeze());
                    left = left.saturating_sub(piece);
                    cur.reserve(piece.min(left));
                }
            }
        }
        if !cur.is_empty() || pieces.is_empty() {
            pieces.push(cur.freeze());
        }
        self.counters
            .get_bytes
            .fetch_add(total as u64, Ordering::Relaxed);
        Ok(Some(pieces))
    }

    /// Every object under `dir` (a key prefix below the bucket prefix).
    pub async fn list(&self, dir: &str) -> Result<Vec<Listed>, StoreError> {
        let mut pages = self
            .client
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(self.key(dir))
            .into_paginator()
            .send();
        let mut out = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| self.fail("LIST", dir, e))?;
            for o in page.contents() {
                if let Some(key) = o.key().and_then(|k| k.strip_prefix(&self.prefix)) {
                    out.push(Listed {
                        key: key.to_owned(),
                        size: o.size().unwrap_or(0).max(0) as u64,
                    });
                }
            }
        }
        Ok(out)
    }

    pub async fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.client
            .delete_object()
            .bucket(&self.bucket)
            .key(self.key(key))
            .send()
            .await
            .map_err(|e| self.fail("DELETE", key, e))?;
        Ok(())
    }
}
