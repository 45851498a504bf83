//! A node's `garage.toml`, written from its state before every launch (never read
//! back: the state file is the source of truth).

use std::fmt::Write;
use std::path::Path;

use crate::state::NodeState;
use crate::REGION;

/// The configuration of the node in `dir` (an absolute path) with `state`.
pub fn render(dir: &Path, state: &NodeState) -> String {
    let path = |name: &str| quoted(&dir.join(name).to_string_lossy());
    let rpc = quoted(&format!("127.0.0.1:{}", state.ports.rpc));
    let peers: Vec<String> = state.bootstrap_peers.iter().map(|p| quoted(p)).collect();
    format!(
        "# written by fvfs-garage from state.json\n\
         metadata_dir = {meta}\n\
         data_dir = {data}\n\
         db_engine = \"sqlite\"\n\
         replication_factor = {rf}\n\
         rpc_bind_addr = {rpc}\n\
         rpc_public_addr = {rpc}\n\
         rpc_secret = {secret}\n\
         bootstrap_peers = [{peers}]\n\
         \n\
         [s3_api]\n\
         s3_region = {region}\n\
         api_bind_addr = \"127.0.0.1:{s3}\"\n\
         \n\
         [admin]\n\
         api_bind_addr = \"127.0.0.1:{admin}\"\n\
         admin_token = {token}\n",
        meta = path("meta"),
        data = path("data"),
        rf = state.replication_factor,
        secret = quoted(&state.secrets.rpc_secret),
        peers = peers.join(", "),
        region = quoted(REGION),
        s3 = state.ports.s3,
        admin = state.ports.admin,
        token = quoted(&state.secrets.admin_token),
    )
}

/// `s` as a TOML basic string.
fn quoted(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04X}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::{Ports, Secrets};

    fn state(peers: &[&str]) -> NodeState {
        NodeState {
            ports: Ports {
                rpc: 3901,
                s3: 3900,
                admin: 3903,
            },
            secrets: Secrets::random().unwrap(),
            replication_factor: 3,
            zone: "dc1".into(),
            bootstrap_peers: peers.iter().map(|p| p.to_string()).collect(),
            node_id: None,
        }
    }

    /// The configuration parsed by a real TOML parser.
    fn parsed(dir: &Path, state: &NodeState) -> toml::Table {
        toml::from_str(&render(dir, state)).expect("valid TOML")
    }

    #[test]
    fn the_config_says_what_the_state_says() {
        let state = state(&["aa@127.0.0.1:1", "bb@127.0.0.1:2"]);
        let t = parsed(Path::new("/n"), &state);
        assert_eq!(t["metadata_dir"].as_str(), Some("/n/meta"));
        assert_eq!(t["data_dir"].as_str(), Some("/n/data"));
        assert_eq!(t["replication_factor"].as_integer(), Some(3));
        assert_eq!(t["rpc_bind_addr"].as_str(), Some("127.0.0.1:3901"));
        assert_eq!(t["rpc_public_addr"].as_str(), Some("127.0.0.1:3901"));
        assert_eq!(
            t["rpc_secret"].as_str(),
            Some(state.secrets.rpc_secret.as_str())
        );
        let peers: Vec<_> = t["bootstrap_peers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p.as_str().unwrap())
            .collect();
        assert_eq!(peers, ["aa@127.0.0.1:1", "bb@127.0.0.1:2"]);
        assert_eq!(t["s3_api"]["s3_region"].as_str(), Some("garage"));
        assert_eq!(
            t["s3_api"]["api_bind_addr"].as_str(),
            Some("127.0.0.1:3900")
        );
        assert_eq!(t["admin"]["api_bind_addr"].as_str(), Some("127.0.0.1:3903"));
        assert_eq!(
            t["admin"]["admin_token"].as_str(),
            Some(state.secrets.admin_token.as_str())
        );
    }

    #[test]
    fn a_single_node_has_no_peers() {
        let t = parsed(Path::new("/n"), &state(&[]));
        assert!(t["bootstrap_peers"].as_array().unwrap().is_empty());
    }

    #[test]
    fn paths_with_quotes_backslashes_and_controls_survive() {
        let dir = Path::new("/tmp/a \"b\" \\c\td\u{7f}é");
        let t = parsed(dir, &state(&[]));
        assert_eq!(
            t["metadata_dir"].as_str(),
            Some("/tmp/a \"b\" \\c\td\u{7f}é/meta")
        );
    }
}
