//! Content-addressed storage for fvfs.
//!
//! Everything fvfs stores, file content and tree nodes alike, is a *chunk*: a byte
//! string named by its BLAKE3-256 hash ([`ChunkId`]). This crate cuts files into chunks
//! ([`chunker`]), turns chunks into self-describing compressed [`frame`]s, and keeps
//! frames in [`ChunkStore`]s: a [`MemoryStore`] for tests and a [`PackStore`] for local
//! disks and NAS mounts (feature `pack`, with [`kv`], the small durable database both
//! the pack store's index and the manifest use); [`platform`] holds the OS calls
//! durability rests on. Every read is verified against the id, so a store can lose a
//! chunk but never hand back wrong bytes.

pub mod block;
pub mod chunker;
#[cfg(feature = "conformance")]
pub mod conformance;
mod error;
pub mod failpoint;
#[cfg(feature = "faults")]
pub mod faults;
mod filter;
pub mod frame;
mod id;
#[cfg(feature = "pack")]
pub mod kv;
mod memory;
#[cfg(feature = "pack")]
pub mod pack;
pub mod platform;
mod store;

pub use error::StoreError;
pub use filter::IdFilter;
pub use id::{ChunkId, ParseIdError};
pub use memory::MemoryStore;
#[cfg(feature = "pack")]
pub use pack::{PackOptions, PackStore};
pub use store::{
    read_ahead, verify, BlockCopy, BlockPlace, ChunkStore, ChunkStoreExt, ChunkStream, Compacted,
    FrameStream, Loaded, Packed, PackedStream, ReadByCaller, Recompressed, StoreCheck, StoreFault,
    Usage, READ_AHEAD,
};
