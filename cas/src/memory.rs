//! An in-memory chunk store: the reference implementation of the contract, for tests
//! and as the fastest possible tier in benchmarks. Everything is "durable" at once.

use std::collections::HashMap;
use std::sync::Mutex;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::{self, BoxStream, StreamExt};

use crate::store::verify;
use crate::{ChunkId, ChunkStore, Loaded, StoreError, Usage};

#[derive(Default)]
pub struct MemoryStore {
    frames: Mutex<HashMap<ChunkId, Bytes>>,
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    fn frames(&self) -> std::sync::MutexGuard<'_, HashMap<ChunkId, Bytes>> {
        self.frames.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[async_trait]
impl ChunkStore for MemoryStore {
    async fn put(&self, id: ChunkId, frame: Bytes) -> Result<(), StoreError> {
        self.frames().entry(id).or_insert(frame);
        Ok(())
    }

    async fn get(&self, id: &ChunkId) -> Result<Loaded, StoreError> {
        let frame = self.frames().get(id).cloned();
        verify(id, frame.ok_or(StoreError::NotFound(*id))?)
    }

    async fn has(&self, ids: &[ChunkId]) -> Result<Vec<bool>, StoreError> {
        let frames = self.frames();
        Ok(ids.iter().map(|id| frames.contains_key(id)).collect())
    }

    async fn delete(&self, id: &ChunkId) -> Result<(), StoreError> {
        self.frames().remove(id);
        Ok(())
    }

    fn list(&self) -> BoxStream<'_, Result<ChunkId, StoreError>> {
        let ids: Vec<_> = self.frames().keys().copied().map(Ok).collect();
        stream::iter(ids).boxed()
    }

    async fn usage(&self) -> Result<Usage, StoreError> {
        let frames = self.frames();
        Ok(Usage {
            chunks: frames.len() as u64,
            bytes: frames.values().map(|f| f.len() as u64).sum(),
        })
    }

    async fn sync(&self) -> Result<(), StoreError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn passes_conformance() {
        crate::conformance::run(&super::MemoryStore::new()).await;
    }
}
