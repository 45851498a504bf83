//! A throwaway Garage S3 server for tests and benches: one node, or a cluster of nodes
//! on loopback, each in a folder of its own.
//!
//! Tests use [`Garage`] and [`GarageCluster`], which start their nodes in a temporary
//! folder and stop them when dropped (also when a test panics). Shell scripts use the
//! `fvfs-garage` binary, whose `start DIR` leaves the node running and prints an env
//! file to `source` (see `main.rs`).
//!
//! Garage is driven through its admin API v2 (JSON over HTTP with a bearer token: node
//! id, cluster status, connections, layout, key, bucket, permissions), never through the
//! CLI's human output. A node counts as serving once a SigV4-signed HeadBucket on its
//! own S3 endpoint succeeds.
//!
//! # Invariants
//! - A node's folder holds `state.json` (ports, secrets, key, node id), from which its
//!   `garage.toml` is written at every launch; a restart reads it back, so the node
//!   keeps its data, addresses and keys.
//! - The garage process gets none of the caller's `GARAGE_*` variables, which would
//!   override its configuration.
//! - A [`Node`] stops the process it launched when dropped (SIGTERM, a bounded wait,
//!   SIGKILL) unless it was detached; so a failed start leaves nothing running, and a
//!   test's nodes end with it.
//! - Every wait is bounded by a deadline; a timeout names the node's log file and
//!   quotes its last lines.
//!
//! The binary's own modules (`main.rs`, `install.rs`, `lock.rs`) sit beside the
//! library's.

mod admin;
mod config;
mod envfile;
mod fixture;
mod form;
mod http;
mod log;
mod node;
mod ports;
mod process;
mod s3;
mod settings;
mod state;
mod wait;

pub use envfile::write_env;
pub use fixture::{Garage, GarageCluster};
pub use form::{start_cluster, start_nodes};
pub use node::{stop_nodes, Node};
pub use s3::{Answer, S3Access};
pub use settings::Settings;

/// The S3 region Garage is configured with.
pub const REGION: &str = "garage";
/// The bucket created at start, readable and writable by the key.
pub const BUCKET: &str = "fvfs-test";
/// The name the key is imported under.
pub const KEY_NAME: &str = "fvfs-key";
