//! Forming fresh nodes into a cluster ready for tests, through the first node's admin
//! API: the nodes connected (and each told the others' addresses for its next start),
//! one storage role per node in a zone of its own (so copies spread over nodes), the
//! layout applied, the key imported, the bucket created and allowed to the key. A
//! single node is a cluster of one.
//!
//! It returns only once every node serves the bucket on its own endpoint; on any error
//! the nodes started so far are stopped (by dropping them).

use std::path::{Path, PathBuf};

use anyhow::{bail, Result};

use crate::envfile::{cluster_env, write_env};
use crate::node::Node;
use crate::state::Secrets;
use crate::wait::{until, Check, Deadline};
use crate::Settings;

/// Starts fresh nodes in `dirs` as one cluster (replication factor: their number), each
/// with its `env` file written.
pub fn start_nodes(dirs: &[PathBuf], settings: &Settings) -> Result<Vec<Node>> {
    if dirs.is_empty() {
        bail!("a cluster needs at least one node");
    }
    let deadline = Deadline::after(settings.start_timeout);
    let secrets = Secrets::random()?;
    let mut nodes = Vec::with_capacity(dirs.len());
    for (k, dir) in dirs.iter().enumerate() {
        let zone = format!("dc{}", k + 1);
        nodes.push(Node::boot(
            dir,
            &secrets,
            zone,
            dirs.len(),
            settings,
            deadline,
        )?);
    }
    if nodes.len() > 1 {
        connect(&mut nodes, deadline)?;
    }
    let first = &nodes[0];
    let roles: Vec<(String, String)> = nodes
        .iter()
        .map(|n| (n.id().to_owned(), n.state.zone.clone()))
        .collect();
    first.admin().apply_roles(&roles)?;
    first.create_key_and_bucket()?;
    for node in &nodes {
        node.wait_serving(deadline, &node.s3())?;
        write_env(node, settings)?;
    }
    Ok(nodes)
}

/// Starts a fresh cluster of `n` nodes in `dir/node1`..`dir/nodeN`, with `dir/env`.
pub fn start_cluster(dir: &Path, n: usize, settings: &Settings) -> Result<Vec<Node>> {
    if dir.join("env").exists() || dir.join("node1").exists() {
        bail!(
            "{} already holds a garage cluster: stop it, and remove the folder for a fresh one",
            dir.display()
        );
    }
    let dirs: Vec<PathBuf> = (1..=n).map(|k| dir.join(format!("node{k}"))).collect();
    let nodes = start_nodes(&dirs, settings)?;
    cluster_env(dir, &nodes, settings)?;
    Ok(nodes)
}

/// Connects the nodes: each one's config names the others as bootstrap peers (read at
/// its next start: a restarted node finds the cluster at once), and the first node
/// dials the others, who learn of each other from it.
fn connect(nodes: &mut [Node], deadline: Deadline) -> Result<()> {
    let ids: Vec<String> = nodes.iter().map(|n| n.id().to_owned()).collect();
    let addrs: Vec<String> = nodes
        .iter()
        .map(|n| format!("{}@127.0.0.1:{}", n.id(), n.state.ports.rpc))
        .collect();
    for (k, node) in nodes.iter_mut().enumerate() {
        node.state.bootstrap_peers = addrs
            .iter()
            .enumerate()
            .filter(|&(j, _)| j != k)
            .map(|(_, a)| a.clone())
            .collect();
        node.save()?;
    }
    let admin = nodes[0].admin();
    until(deadline, "the first node to connect to the others", || {
        let failed = admin.connect(&addrs[1..])?;
        Ok(match failed.is_empty() {
            true => Check::Ready(()),
            false => Check::NotYet(format!("{failed:?}")),
        })
    })?;
    for node in nodes.iter() {
        node.wait_connected(deadline, &ids)?;
    }
    Ok(())
}
