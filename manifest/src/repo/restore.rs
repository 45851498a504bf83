//! Recovery from S3, the manifest's part: tree nodes marked as such and the version
//! log, HEAD and snapshot names written back (the chunk records and their S3
//! locations are restored by tiering, through a [`RecordChange`](super::RecordChange)).

use fvfs_cas::ChunkId;

use super::Repo;
use crate::error::Result;
use crate::kv::Batch;
use crate::meta::{self, Totals, Version};
use crate::node::ChunkKind;

impl Repo {
    /// Recovery, step 2: marks chunks reached as tree nodes.
    pub fn restore_mark_nodes(&self, nodes: &[ChunkId]) -> Result<()> {
        let mut totals: Totals = self.totals()?;
        let mut batch = Batch::default();
        for id in nodes {
            if let Some(mut r) = self.chunk_record(id)? {
                if r.kind != ChunkKind::Node {
                    r.kind = ChunkKind::Node;
                    totals.node_chunks += 1;
                    batch.insert(meta::chunk_key(id), meta::encode(&r));
                }
            }
        }
        batch.insert(meta::TOTALS, meta::encode(&totals));
        self.kv.apply(batch)?;
        Ok(())
    }

    /// Recovery, step 3: the version log, HEAD (the newest version) and snapshot names,
    /// with `also` (the layer above's entries, written with them), then a durable
    /// flush of everything restored.
    pub fn restore_versions(
        &self,
        versions: &[Version],
        snapshots: &[(String, u64)],
        also: Batch,
    ) -> Result<()> {
        let mut batch = also;
        let mut head = 0;
        for v in versions {
            batch.insert(meta::version_key(v.number), meta::encode(v));
            head = head.max(v.number);
        }
        if head > 0 {
            batch.insert(meta::HEAD, head.to_be_bytes().to_vec());
        }
        for (name, n) in snapshots {
            batch.insert(
                meta::key(meta::SNAPSHOT_PREFIX, name.as_bytes()),
                n.to_be_bytes().to_vec(),
            );
        }
        self.kv.apply(batch)?;
        self.kv.flush_durable()?;
        Ok(())
    }

    /// Whether the database holds nothing yet (no version, no chunk).
    pub fn is_empty(&self) -> Result<bool> {
        Ok(self.head()?.is_none() && self.totals()?.chunks == 0)
    }
}
