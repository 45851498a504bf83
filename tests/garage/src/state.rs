//! A node's state, kept in `DIR/state.json`: its ports, the cluster's secrets, its key
//! and bucket, its zone and peers, and its node id once known. Everything a restart
//! needs is here; `garage.toml` is written from it.
//!
//! Files holding secrets are written private (0600) under a temporary name and renamed
//! into place, so a reader never sees half of one.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

/// What every node of a cluster shares.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Secrets {
    /// Shared by the nodes' RPC (32 bytes, hex).
    pub rpc_secret: String,
    /// The admin API's bearer token.
    pub admin_token: String,
    /// The S3 key, imported at start: `GK` + 24 hex digits, as Garage makes them.
    pub key_id: String,
    /// Its secret: 64 hex digits.
    pub secret: String,
}

impl Secrets {
    pub fn random() -> Result<Self> {
        Ok(Self {
            rpc_secret: random_hex(32)?,
            admin_token: random_hex(32)?,
            key_id: format!("GK{}", random_hex(12)?),
            secret: random_hex(32)?,
        })
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ports {
    pub rpc: u16,
    pub s3: u16,
    pub admin: u16,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeState {
    pub ports: Ports,
    pub secrets: Secrets,
    /// How many copies of each object the cluster keeps (its size).
    pub replication_factor: usize,
    /// The node's zone in the layout (each node its own, so copies spread over nodes).
    pub zone: String,
    /// `id@127.0.0.1:port` of the other nodes, dialled at start: a restarted node finds
    /// the cluster at once instead of after the others' reconnect backoff.
    pub bootstrap_peers: Vec<String>,
    /// The node's full id (64 hex digits), known after its first start.
    pub node_id: Option<String>,
}

impl NodeState {
    pub fn read(path: &Path) -> Result<Self> {
        let text = std::fs::read(path).with_context(|| format!("read {}", path.display()))?;
        serde_json::from_slice(&text).with_context(|| format!("parse {}", path.display()))
    }

    pub fn write(&self, path: &Path) -> Result<()> {
        let json = serde_json::to_vec_pretty(self).expect("state serializes");
        write_private(path, &json)
    }
}

/// `n` random bytes in hex.
fn random_hex(n: usize) -> Result<String> {
    let mut bytes = vec![0; n];
    getrandom::fill(&mut bytes).map_err(|e| anyhow::anyhow!("getrandom: {e}"))?;
    Ok(hex::encode(bytes))
}

/// Writes `bytes` to `path`, readable by its owner only, replacing it whole.
pub fn write_private(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = Path::new(&tmp);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(tmp)
        .with_context(|| format!("create {}", tmp.display()))?;
    file.write_all(bytes)
        .with_context(|| format!("write {}", tmp.display()))?;
    std::fs::rename(tmp, path).with_context(|| format!("rename to {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn state() -> NodeState {
        NodeState {
            ports: Ports {
                rpc: 1,
                s3: 2,
                admin: 3,
            },
            secrets: Secrets::random().unwrap(),
            replication_factor: 3,
            zone: "dc2".into(),
            bootstrap_peers: vec!["ab@127.0.0.1:4".into()],
            node_id: Some("cd".into()),
        }
    }

    #[test]
    fn state_reads_back_as_written_and_stays_private() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        let state = state();
        state.write(&path).unwrap();
        assert_eq!(NodeState::read(&path).unwrap(), state);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert!(!dir.path().join("state.json.tmp").exists());
    }

    #[test]
    fn secrets_have_garages_formats_and_differ() {
        let (a, b) = (Secrets::random().unwrap(), Secrets::random().unwrap());
        assert_ne!(a, b);
        let hex = |s: &str| s.chars().all(|c| c.is_ascii_hexdigit());
        assert!(a.key_id.starts_with("GK") && a.key_id.len() == 26 && hex(&a.key_id[2..]));
        assert!(a.secret.len() == 64 && hex(&a.secret));
        assert!(a.rpc_secret.len() == 64 && hex(&a.rpc_secret));
    }

    #[test]
    fn a_damaged_state_file_is_named_in_the_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        std::fs::write(&path, "{").unwrap();
        let err = format!("{:#}", NodeState::read(&path).unwrap_err());
        assert!(err.contains("state.json"), "{err}");
    }
}
