//! Content-addressed storage for fvfs.
//!
//! Everything fvfs stores, file content and tree nodes alike, is a *chunk*: a byte
//! string named by its BLAKE3-256 hash ([`ChunkId`]). This crate cuts files into chunks
//! ([`chunker`]), turns chunks into self-describing compressed [`frame`]s, and keeps
//! frames in [`ChunkStore`]s: a [`MemoryStore`] for tests and a [`DirStore`] for local
//! disks and NAS mounts. Every read is verified against the id, so a store can lose a
//! chunk but never hand back wrong bytes.

pub mod chunker;
#[cfg(feature = "conformance")]
pub mod conformance;
mod dir;
mod error;
#[cfg(feature = "faults")]
pub mod faults;
pub mod frame;
mod id;
mod memory;
mod store;

pub use dir::DirStore;
pub use error::StoreError;
pub use id::{ChunkId, ParseIdError};
pub use memory::MemoryStore;
pub use store::{read_ahead, verify, ChunkStore, ChunkStoreExt, Loaded, Usage, READ_AHEAD};
