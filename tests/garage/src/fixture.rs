//! Garage for tests: a node or a cluster in a temporary folder of its own, stopped when
//! dropped (also when the test panics), the folder removed after.
//!
//! The calls block: use them from plain threads, not from inside an async runtime.

use anyhow::{Context, Result};
use tempfile::TempDir;

use crate::node::{stop_nodes, Node};
use crate::{start_cluster, start_nodes, S3Access, Settings};

/// One node.
pub struct Garage {
    // Dropped before the folder: the node stops first.
    node: Node,
    _dir: TempDir,
}

impl Garage {
    /// Starts a fresh node; returns once it serves the bucket.
    pub fn start() -> Result<Self> {
        let settings = Settings::from_env()?;
        let dir = temp_dir()?;
        let mut nodes = start_nodes(&[dir.path().to_path_buf()], &settings)?;
        let node = nodes.pop().expect("one node");
        Ok(Self { node, _dir: dir })
    }

    /// Its S3 endpoint, bucket and key.
    pub fn s3(&self) -> S3Access {
        self.node.s3()
    }

    /// Stops it (SIGTERM, a bounded wait, SIGKILL).
    pub fn stop(&mut self) -> Result<()> {
        self.node.stop()
    }

    /// Starts it again with the same data, address and keys; returns once it serves the
    /// bucket.
    pub fn restart(&mut self) -> Result<()> {
        self.node.restart()
    }
}

/// A cluster of nodes on loopback, replication factor its size; nodes numbered from 1.
pub struct GarageCluster {
    nodes: Vec<Node>,
    _dir: TempDir,
}

impl GarageCluster {
    /// Starts `n` fresh nodes as one cluster; returns once every node serves the bucket.
    pub fn start(n: usize) -> Result<Self> {
        let settings = Settings::from_env()?;
        let dir = temp_dir()?;
        let nodes = start_cluster(dir.path(), n, &settings)?;
        Ok(Self { nodes, _dir: dir })
    }

    /// The first node's S3 endpoint, the bucket and the key.
    pub fn s3(&self) -> S3Access {
        self.node_s3(1)
    }

    /// Node `k`'s S3 endpoint, the bucket and the key.
    pub fn node_s3(&self, k: usize) -> S3Access {
        self.nodes[k - 1].s3()
    }

    /// Stops node `k`.
    pub fn stop_node(&mut self, k: usize) -> Result<()> {
        self.nodes[k - 1].stop()
    }

    /// Starts node `k` again with its data; returns once its own endpoint serves the
    /// bucket.
    pub fn restart_node(&mut self, k: usize) -> Result<()> {
        self.nodes[k - 1].restart()
    }
}

impl Drop for GarageCluster {
    fn drop(&mut self) {
        // All at once rather than one after the other as each node drops.
        if let Err(e) = stop_nodes(&mut self.nodes) {
            eprintln!("fvfs-garage: {e:#}");
        }
    }
}

fn temp_dir() -> Result<TempDir> {
    tempfile::Builder::new()
        .prefix("fvfs-garage.")
        .tempdir()
        .context("create a temporary folder")
}
