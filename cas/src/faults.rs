//! A chunk store that fails, delays or corrupts operations on a schedule, for tests
//! that show the layers above falling back, retrying and reporting: a flaky NAS, a
//! dying disk, a slow S3 server.

use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;

use crate::{ChunkId, ChunkStore, Loaded, StoreCheck, StoreError, StoreFault, Usage};

/// The operations a schedule can target.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    Put,
    Get,
    Sync,
}

/// What happens to a targeted call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// The call fails as an unavailable store would.
    Fail,
    /// A get returns a frame with one byte flipped (its verification fails).
    Corrupt,
    /// The call waits this long, then runs.
    Delay(Duration),
}

/// Wraps a store; the next calls of each scheduled operation meet their fault.
pub struct FaultyStore<S> {
    inner: S,
    plan: Mutex<Vec<(Op, Fault, u32)>>,
}

impl<S: ChunkStore> FaultyStore<S> {
    pub fn new(inner: S) -> Self {
        Self {
            inner,
            plan: Mutex::new(Vec::new()),
        }
    }

    /// The next `times` calls of `op` meet `fault`.
    pub fn schedule(&self, op: Op, fault: Fault, times: u32) {
        self.plan
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((op, fault, times));
    }

    /// Takes the fault waiting for a call of `op`, if any.
    fn fault(&self, op: Op) -> Option<Fault> {
        let mut plan = self.plan.lock().unwrap_or_else(|p| p.into_inner());
        let at = plan.iter().position(|(o, _, n)| *o == op && *n > 0)?;
        plan[at].2 -= 1;
        Some(plan[at].1)
    }

    async fn before(&self, op: Op) -> Result<Option<Fault>, StoreError> {
        match self.fault(op) {
            Some(Fault::Fail) => Err(StoreError::Unavailable(format!("injected {op:?} failure"))),
            Some(Fault::Delay(d)) => {
                tokio::time::sleep(d).await;
                Ok(None)
            }
            other => Ok(other),
        }
    }
}

#[async_trait]
impl<S: ChunkStore> ChunkStore for FaultyStore<S> {
    async fn put(&self, id: ChunkId, frame: Bytes) -> Result<(), StoreError> {
        self.before(Op::Put).await?;
        self.inner.put(id, frame).await
    }

    async fn get(&self, id: &ChunkId) -> Result<Loaded, StoreError> {
        let corrupt = self.before(Op::Get).await? == Some(Fault::Corrupt);
        let loaded = self.inner.get(id).await?;
        if !corrupt {
            return Ok(loaded);
        }
        let mut bad = loaded.frame.to_vec();
        if let Some(last) = bad.last_mut() {
            *last ^= 0x01;
        }
        crate::verify(id, Bytes::from(bad))
    }

    async fn has(&self, ids: &[ChunkId]) -> Result<Vec<bool>, StoreError> {
        self.inner.has(ids).await
    }

    async fn delete(&self, id: &ChunkId) -> Result<(), StoreError> {
        self.inner.delete(id).await
    }

    fn list(&self) -> BoxStream<'_, Result<ChunkId, StoreError>> {
        self.inner.list()
    }

    async fn usage(&self) -> Result<Usage, StoreError> {
        self.inner.usage().await
    }

    async fn sync(&self) -> Result<(), StoreError> {
        self.before(Op::Sync).await?;
        self.inner.sync().await
    }

    fn read_order(&self, id: &ChunkId) -> u64 {
        self.inner.read_order(id)
    }

    async fn check_store(&self, check: StoreCheck) -> Result<Vec<StoreFault>, StoreError> {
        self.inner.check_store(check).await
    }

    async fn compact(&self) -> Result<crate::Compacted, StoreError> {
        self.inner.compact().await
    }
}
