//! The hostile-client suite (issue 17): every route as a web page would send it (foreign
//! Origin, foreign Host, a form's content type, a cross-site fetch), and with each
//! role's token; a flood of slow connections while a normal client is served; a
//! man in the middle altering content, which `fvfsc cat` refuses to write out.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use fvfs_api::args::{ExportArgs, GcArgs};
use fvfs_api::commit::{CommitOp, CommitRequest};
use fvfs_api::reports::{Ids, Rollback, SnapshotCreate};
use fvfs_api::routes::{call, Call};
use fvfs_tests::daemon::{bare_request, raw, request, split_answer, whole_answer, Daemon};
use fvfs_tests::Fvfsd;

mod forged;
mod network;
mod page;

/// A request, a body its route accepts, and the role the suite expects it to need
/// (`None`: the URL is the credential, as for a download link).
struct Route {
    method: &'static str,
    path: String,
    content_type: &'static str,
    body: Vec<u8>,
    need: Option<Role>,
}

#[derive(Clone, Copy, Debug, PartialEq, PartialOrd)]
enum Role {
    Read,
    Write,
    Admin,
}

/// Every route of the daemon's route table, then WebDAV's.
fn routes(chunk: &str, export_to: &str) -> Vec<Route> {
    let mut all: Vec<Route> = fvfs_api::routes::ROUTES
        .iter()
        .map(|r| api_route(r, chunk, export_to))
        .collect();
    use Role::*;
    let dav = |method, path: &str, body: &[u8], need| Route {
        method,
        path: path.to_owned(),
        content_type: "",
        body: body.to_vec(),
        need: Some(need),
    };
    // WebDAV, as its clients send it (no content type).
    all.extend([
        dav("OPTIONS", "/dav/", b"", Read),
        dav("PROPFIND", "/dav/keep/", b"", Read),
        dav("GET", "/dav/keep/a.txt", b"", Read),
        dav("PUT", "/dav/new-dav.txt", b"dav", Write),
        dav("MKCOL", "/dav/new-dir", b"", Write),
        dav("LOCK", "/dav/keep/a.txt", b"", Write),
        dav("UNLOCK", "/dav/keep/a.txt", b"", Write),
        dav("PROPPATCH", "/dav/keep/a.txt", b"", Write),
        dav("COPY", "/dav/keep/a.txt", b"", Write),
        dav("MOVE", "/dav/keep/a.txt", b"", Write),
        dav("DELETE", "/dav/new-dav.txt", b"", Write),
    ]);
    all
}

/// Route `C`'s JSON body, made from its request type.
fn body_of<C: Call>(request: &C::Request) -> Vec<u8>
where
    C::Request: serde::Serialize,
{
    serde_json::to_vec(request).unwrap()
}

/// A request to `route` that its handler accepts, with the role this suite expects it
/// to need (written here, not read from the table: a route added to the table without
/// a case here does not compile). Its body is of the type the table gives the route,
/// with the content type that goes with it.
fn api_route(route: &fvfs_api::routes::Route, chunk: &str, export_to: &str) -> Route {
    use fvfs_api::routes::{Endpoint as E, Tail};
    use Role::*;
    let ids = || Ids {
        ids: vec![chunk.parse().unwrap()],
    };
    // What follows the route's path (a query for a route without a tail).
    let (at, body, need): (&str, Vec<u8>, Option<Role>) = match route.endpoint {
        E::FileGet => ("/keep/a.txt", vec![], Some(Read)),
        E::FilePut => ("/new.txt", b"new".to_vec(), Some(Write)),
        E::FileDelete => ("/new.txt", vec![], Some(Write)),
        E::Meta => ("/keep/a.txt", vec![], Some(Read)),
        E::Ls | E::Du => ("/keep", vec![], Some(Read)),
        E::ChunksBatch => ("", vec![], Some(Write)),
        E::ChunksRead => ("", body_of::<call::ChunksRead>(&ids()), Some(Read)),
        E::ChunksMissing => ("", body_of::<call::ChunksMissing>(&ids()), Some(Read)),
        E::ChunkGet | E::ChunkHead | E::Node => (chunk, vec![], Some(Read)),
        E::ChunkPut => (chunk, b"kept a".to_vec(), Some(Write)),
        E::Versions | E::Snapshots => ("", vec![], Some(Read)),
        E::Version => ("HEAD", vec![], Some(Read)),
        E::SnapshotCreate => {
            let named = SnapshotCreate { name: "s1".into() };
            ("", body_of::<call::SnapshotCreate>(&named), Some(Write))
        }
        E::SnapshotDelete => ("s1", vec![], Some(Admin)),
        E::Rollback => {
            let to = Rollback { to: "1".into() };
            ("", body_of::<call::Rollback>(&to), Some(Write))
        }
        E::Diff => ("?a=1&b=HEAD", vec![], Some(Read)),
        E::History => ("/keep/a.txt", vec![], Some(Read)),
        E::Commit => {
            let mkdir = CommitOp::Mkdir {
                path: "/d".into(),
                mode: 0o755,
                mtime_ns: 0,
                meta: None,
            };
            let request = CommitRequest {
                message: String::new(),
                ops: vec![mkdir],
            };
            ("", body_of::<call::Commit>(&request), Some(Write))
        }
        E::DownloadLinks => ("/keep/a.txt", vec![], Some(Read)),
        E::Download => ("no-such-link", vec![], None),
        E::Status | E::StatusHistory | E::Whoami | E::Devices | E::Metrics => {
            ("", vec![], Some(Read))
        }
        E::AdminWal => ("", vec![], Some(Read)),
        E::AdminFlush => ("", vec![], Some(Write)),
        E::AdminEvict | E::AdminFsck => ("", vec![], Some(Admin)),
        E::AdminGc => {
            let args = GcArgs {
                grace_secs: Some(0),
                ..GcArgs::default()
            };
            ("", body_of::<call::AdminGc>(&args), Some(Admin))
        }
        E::AdminExport => {
            let args = ExportArgs {
                version: None,
                path: "/keep".into(),
                dir: export_to.into(),
                keep_privileged: false,
                verbose: false,
            };
            ("", body_of::<call::AdminExport>(&args), Some(Admin))
        }
        // No source: refused as a request, after the role.
        E::AdminMigrate => ("", b"{}".to_vec(), Some(Admin)),
    };
    let content_type = match route.request {
        "()" => "",
        "Raw" => "application/octet-stream",
        _ => "application/json",
    };
    let target = match route.tail {
        Tail::Bare => route.endpoint.plain().query(at),
        Tail::Path => route.endpoint.at(at),
        Tail::Name => route.endpoint.named(at),
    };
    Route {
        method: route.verb.as_str(),
        path: target.path,
        content_type,
        body,
        need,
    }
}

/// Sends `route` with exactly `headers`; returns the status and body.
fn send(addr: &str, route: &Route, headers: &[String], body: &[u8]) -> (u16, String) {
    raw(
        addr,
        &bare_request(route.method, &route.path, headers, body),
    )
}

/// The headers fvfs's own clients send, with `token` when given.
fn client(route: &Route, token: Option<&str>) -> Vec<String> {
    let mut h = vec![
        "Host: 127.0.0.1".to_owned(),
        "X-Fvfs-Client: test".to_owned(),
    ];
    if !route.content_type.is_empty() {
        h.push(format!("Content-Type: {}", route.content_type));
    }
    if let Some(t) = token {
        h.push(format!("Authorization: Bearer {t}"));
    }
    h
}

/// What the tree and its history are, to show that refused requests changed nothing.
fn state(d: &Daemon) -> String {
    let (_, versions) = d.raw(&request("GET", "/v1/versions", &[], b""));
    let (_, snapshots) = d.raw(&request("GET", "/v1/snapshots", &[], b""));
    let (_, tree) = d.raw(&request("GET", "/v1/ls/", &[], b""));
    format!("{versions}\n{snapshots}\n{tree}")
}
