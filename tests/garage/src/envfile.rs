//! The env files shell scripts `source`: `DIR/env` describes the node in DIR (S3 address
//! and credentials for fvfs and the AWS tools, pid, config, admin API), and a cluster's
//! `DIR/env` is its first node's plus `GARAGE_CLUSTER_DIR`, `GARAGE_CLUSTER_NODES` and
//! `GARAGE_CLUSTER_S3_ENDPOINTS` (every node's S3 URL, space-separated).
//!
//! Every value is single-quoted, so no value is expanded by the shell that sources it.

use std::path::{Path, PathBuf};

use anyhow::Result;

use crate::node::Node;
use crate::state::{write_private, NodeState};
use crate::{Settings, BUCKET, REGION};

type Vars = Vec<(&'static str, String)>;

/// The variables describing the node in `dir`.
fn node_vars(dir: &Path, state: &NodeState, pid: Option<u32>, bin: &Path) -> Vars {
    let s = &state.secrets;
    vec![
        ("AWS_ACCESS_KEY_ID", s.key_id.clone()),
        ("AWS_SECRET_ACCESS_KEY", s.secret.clone()),
        ("AWS_REGION", REGION.into()),
        ("AWS_DEFAULT_REGION", REGION.into()),
        (
            "FVFS_S3_ENDPOINT",
            format!("http://127.0.0.1:{}", state.ports.s3),
        ),
        ("FVFS_S3_BUCKET", BUCKET.into()),
        ("GARAGE_PID", pid.map(|p| p.to_string()).unwrap_or_default()),
        (
            "GARAGE_CONFIG",
            Node::config_path(dir).display().to_string(),
        ),
        ("GARAGE_DIR", dir.display().to_string()),
        ("GARAGE_BIN", bin.display().to_string()),
        (
            "GARAGE_ADMIN_ENDPOINT",
            format!("http://127.0.0.1:{}", state.ports.admin),
        ),
        ("GARAGE_ADMIN_TOKEN", s.admin_token.clone()),
    ]
}

/// The cluster's variables besides its first node's.
fn cluster_vars(dir: &Path, endpoints: &[String]) -> Vars {
    vec![
        ("GARAGE_CLUSTER_DIR", dir.display().to_string()),
        ("GARAGE_CLUSTER_NODES", endpoints.len().to_string()),
        ("GARAGE_CLUSTER_S3_ENDPOINTS", endpoints.join(" ")),
    ]
}

fn render(vars: &Vars) -> String {
    let mut text = String::from("# written by fvfs-garage; source this file\n");
    for (name, value) in vars {
        text.push_str(&format!("export {name}={}\n", single_quoted(value)));
    }
    text
}

fn single_quoted(value: &str) -> String {
    format!("'{}'", value.replace('\'', r"'\''"))
}

/// Writes `DIR/env` for `node`; its path.
pub fn write_env(node: &Node, settings: &Settings) -> Result<PathBuf> {
    let vars = node_vars(&node.dir, &node.state, node.pid(), &settings.bin);
    let path = node.dir.join("env");
    write_private(&path, render(&vars).as_bytes())?;
    Ok(path)
}

/// Writes the env file of the cluster of `nodes` in `dir`; its path.
pub fn cluster_env(dir: &Path, nodes: &[Node], settings: &Settings) -> Result<PathBuf> {
    let first = nodes.first().expect("a cluster has nodes");
    let mut vars = node_vars(&first.dir, &first.state, first.pid(), &settings.bin);
    let endpoints: Vec<String> = nodes.iter().map(|n| n.s3().endpoint).collect();
    vars.extend(cluster_vars(dir, &endpoints));
    let path = dir.join("env");
    write_private(&path, render(&vars).as_bytes())?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::{Ports, Secrets};
    use std::process::Command;

    fn state() -> NodeState {
        NodeState {
            ports: Ports {
                rpc: 1,
                s3: 2,
                admin: 3,
            },
            secrets: Secrets::random().unwrap(),
            replication_factor: 1,
            zone: "dc1".into(),
            bootstrap_peers: vec![],
            node_id: None,
        }
    }

    /// `$NAME` after bash sources `text`.
    fn sourced(text: &str, name: &str) -> String {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("env");
        std::fs::write(&file, text).unwrap();
        let out = Command::new("bash")
            .arg("-c")
            .arg(format!("source \"$1\" && printf %s \"${name}\""))
            .arg("bash")
            .arg(&file)
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        String::from_utf8(out.stdout).unwrap()
    }

    #[test]
    fn bash_reads_back_every_value() {
        let state = state();
        let dir = Path::new("/tmp/it's a \"dir\" $HOME `x`");
        let text = render(&node_vars(dir, &state, Some(42), Path::new("/g")));
        assert_eq!(sourced(&text, "AWS_ACCESS_KEY_ID"), state.secrets.key_id);
        assert_eq!(
            sourced(&text, "AWS_SECRET_ACCESS_KEY"),
            state.secrets.secret
        );
        assert_eq!(sourced(&text, "AWS_REGION"), "garage");
        assert_eq!(sourced(&text, "FVFS_S3_ENDPOINT"), "http://127.0.0.1:2");
        assert_eq!(sourced(&text, "FVFS_S3_BUCKET"), BUCKET);
        assert_eq!(sourced(&text, "GARAGE_PID"), "42");
        assert_eq!(sourced(&text, "GARAGE_DIR"), dir.to_str().unwrap());
        assert_eq!(
            sourced(&text, "GARAGE_CONFIG"),
            dir.join("garage.toml").to_str().unwrap()
        );
        assert_eq!(
            sourced(&text, "GARAGE_ADMIN_ENDPOINT"),
            "http://127.0.0.1:3"
        );
        assert_eq!(
            sourced(&text, "GARAGE_ADMIN_TOKEN"),
            state.secrets.admin_token
        );
    }

    #[test]
    fn a_cluster_lists_every_endpoint() {
        let endpoints = ["http://127.0.0.1:1".to_owned(), "http://127.0.0.1:2".into()];
        let text = render(&cluster_vars(Path::new("/c"), &endpoints));
        assert_eq!(sourced(&text, "GARAGE_CLUSTER_DIR"), "/c");
        assert_eq!(sourced(&text, "GARAGE_CLUSTER_NODES"), "2");
        assert_eq!(
            sourced(&text, "GARAGE_CLUSTER_S3_ENDPOINTS"),
            "http://127.0.0.1:1 http://127.0.0.1:2"
        );
    }
}
