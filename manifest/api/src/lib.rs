//! The API of `fvfsd`, shared by the daemon, `fvfsc` and `fvfsd`'s commands that reach
//! a running daemon: every request and answer type ([`views`], [`commit`],
//! [`reports`]), the [`ErrorCode`]s both sides act on, the protocol's constants, the
//! encodings of paths ([`path`]) and chunk batches ([`batch`]), how answers print for
//! people ([`show`], [`out`]), the one table of routes, roles, query and body types ([`routes`], [`queries`]), the arguments of the administration jobs ([`args`]), behind feature `cli` the commands fvfsd and fvfsc share
//! ([`cli`]) and, behind feature `client`, the HTTP [`client`] and the daemon's notice
//! to clients on its own machine ([`local`]).
//!
//! It depends only on `fvfs-cas` (without the pack store), the node types and the
//! walk's exclude arguments (`fvfs-walk`, part of migrate's arguments), so fvfsc
//! compiles no database.

pub mod args;
pub mod batch;
#[cfg(feature = "cli")]
pub mod cli;
#[cfg(feature = "client")]
pub mod client;
pub mod commit;
mod error;
#[cfg(feature = "client")]
mod failure;
#[cfg(feature = "client")]
mod fingerprint;
#[cfg(feature = "client")]
pub mod local;
pub mod out;
pub mod path;
pub mod queries;
pub mod reports;
pub mod routes;
pub mod show;
#[cfg(feature = "client")]
pub mod tls;
pub mod views;

pub use error::{ErrorBody, ErrorCode};

/// The port the daemon listens on unless configured otherwise.
pub const DEFAULT_PORT: u16 = 7734;

/// The mDNS service type the daemon announces and clients browse for.
pub const MDNS_SERVICE: &str = "_fvfs._tcp.local.";

/// The TXT key of the announcement that carries the daemon's certificate fingerprint.
pub const MDNS_FINGERPRINT: &str = "fp";
