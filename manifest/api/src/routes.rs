//! The HTTP API's one route table: each route's method, path, what may call it and the
//! label it is counted under. The daemon's router finds a request's route here
//! ([`find`]) and takes its role from it, clients make their requests from it
//! ([`Endpoint::at`] and friends), and the security suite walks it ([`ROUTES`]): no
//! path or role of the API is written anywhere else.
//!
//! # Invariants
//! - `ROUTES[e as usize].endpoint == e` for every [`Endpoint`] (a unit test checks it),
//!   so a route is found by its endpoint without a search.
//! - A request names at most one route: a route without a tail is matched first, on
//!   its whole path; only if none has that path are the routes taking a tail tried.
//!   A path that matches and a method that does not is [`Found::WrongMethod`], not a
//!   route of another shape.
//! - A request that names no route needs the role its method implies
//!   ([`fallback_role`]: read for GET and HEAD, write otherwise), so it is authorised
//!   before it learns whether the route exists.

use serde::{Deserialize, Serialize};

/// What a token may do; each role includes the ones before it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Read files, versions, snapshots, status.
    Read,
    /// Also change the live tree, make snapshots, roll back.
    Write,
    /// Also gc, delete snapshots, migrate, export, fsck, evict.
    Admin,
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Role::Read => "read",
            Role::Write => "write",
            Role::Admin => "admin",
        })
    }
}

/// Who may call a route.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// A caller with at least this role.
    Token(Role),
    /// Anyone holding the URL: the link in it is the credential (made with a token).
    Link,
}

/// The HTTP methods of the API.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verb {
    Get,
    Head,
    Put,
    Post,
    Delete,
}

impl Verb {
    pub fn as_str(self) -> &'static str {
        match self {
            Verb::Get => "GET",
            Verb::Head => "HEAD",
            Verb::Put => "PUT",
            Verb::Post => "POST",
            Verb::Delete => "DELETE",
        }
    }
}

/// What follows a route's path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tail {
    /// Nothing: the path is the whole route.
    Bare,
    /// A file system path, percent-encoded: `/v1/files/a/b.txt` (none for the root).
    Path,
    /// One name: a chunk id, a version, a snapshot name, a link.
    Name,
}

/// Every route of the API, one variant each, in the order of [`ROUTES`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Endpoint {
    FileGet,
    FilePut,
    FileDelete,
    Meta,
    Ls,
    Du,
    ChunksBatch,
    ChunksRead,
    ChunksMissing,
    ChunkGet,
    ChunkHead,
    ChunkPut,
    Node,
    Versions,
    Version,
    Snapshots,
    SnapshotCreate,
    SnapshotDelete,
    Rollback,
    Diff,
    History,
    Commit,
    DownloadLinks,
    Download,
    Status,
    StatusHistory,
    Whoami,
    Devices,
    AdminFlush,
    AdminEvict,
    AdminWal,
    AdminFsck,
    AdminGc,
    AdminMigrate,
    AdminExport,
    Metrics,
}

/// One route: how it is called and who may call it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Route {
    pub endpoint: Endpoint,
    pub verb: Verb,
    pub path: &'static str,
    pub tail: Tail,
    pub access: Access,
    /// The label requests to it are counted under (`/metrics`).
    pub label: &'static str,
}

const fn route(
    endpoint: Endpoint,
    verb: Verb,
    path: &'static str,
    tail: Tail,
    access: Access,
    label: &'static str,
) -> Route {
    Route {
        endpoint,
        verb,
        path,
        tail,
        access,
        label,
    }
}

use Access::{Link, Token};
use Endpoint as E;
use Role::{Admin, Read, Write};
use Tail::{Bare, Name, Path};
use Verb::{Delete, Get, Head, Post, Put};

/// The API, in the order of [`Endpoint`].
#[rustfmt::skip]
pub const ROUTES: &[Route] = &[
    route(E::FileGet,        Get,    "/v1/files",          Path, Token(Read),  "files"),
    route(E::FilePut,        Put,    "/v1/files",          Path, Token(Write), "files"),
    route(E::FileDelete,     Delete, "/v1/files",          Path, Token(Write), "files"),
    route(E::Meta,           Get,    "/v1/meta",           Path, Token(Read),  "meta"),
    route(E::Ls,             Get,    "/v1/ls",             Path, Token(Read),  "ls"),
    route(E::Du,             Get,    "/v1/du",             Path, Token(Read),  "du"),
    route(E::ChunksBatch,    Post,   "/v1/chunks",         Bare, Token(Write), "chunks_batch"),
    route(E::ChunksRead,     Post,   "/v1/chunks/read",    Bare, Token(Read),  "chunks_read"),
    // Asking which chunks are missing only reads (fvfsc's dry runs with a read token).
    route(E::ChunksMissing,  Post,   "/v1/chunks/missing", Bare, Token(Read),  "chunks_missing"),
    route(E::ChunkGet,       Get,    "/v1/chunks",         Name, Token(Read),  "chunks"),
    route(E::ChunkHead,      Head,   "/v1/chunks",         Name, Token(Read),  "chunks"),
    route(E::ChunkPut,       Put,    "/v1/chunks",         Name, Token(Write), "chunks"),
    route(E::Node,           Get,    "/v1/nodes",          Name, Token(Read),  "nodes"),
    route(E::Versions,       Get,    "/v1/versions",       Bare, Token(Read),  "versions"),
    route(E::Version,        Get,    "/v1/versions",       Name, Token(Read),  "versions"),
    route(E::Snapshots,      Get,    "/v1/snapshots",      Bare, Token(Read),  "snapshots"),
    route(E::SnapshotCreate, Post,   "/v1/snapshots",      Bare, Token(Write), "snapshots"),
    route(E::SnapshotDelete, Delete, "/v1/snapshots",      Name, Token(Admin), "snapshots"),
    route(E::Rollback,       Post,   "/v1/rollback",       Bare, Token(Write), "rollback"),
    route(E::Diff,           Get,    "/v1/diff",           Bare, Token(Read),  "diff"),
    route(E::History,        Get,    "/v1/history",        Path, Token(Read),  "history"),
    route(E::Commit,         Post,   "/v1/commit",         Bare, Token(Write), "commit"),
    // A link gives what its maker could read, to whoever holds it.
    route(E::DownloadLinks,  Post,   "/v1/download-links", Path, Token(Read),  "download_links"),
    route(E::Download,       Get,    "/v1/download",       Name, Link,         "download"),
    route(E::Status,         Get,    "/v1/status",         Bare, Token(Read),  "status"),
    route(E::StatusHistory,  Get,    "/v1/status/history", Bare, Token(Read),  "status_history"),
    route(E::Whoami,         Get,    "/v1/whoami",         Bare, Token(Read),  "whoami"),
    route(E::Devices,        Get,    "/v1/devices",        Bare, Token(Read),  "devices"),
    // Whoever may write may make what they wrote durable in every tier now.
    route(E::AdminFlush,     Post,   "/v1/admin/flush",    Bare, Token(Write), "admin_flush"),
    route(E::AdminEvict,     Post,   "/v1/admin/evict",    Bare, Token(Admin), "admin_evict"),
    route(E::AdminWal,       Get,    "/v1/admin/wal",      Bare, Token(Read),  "admin_wal"),
    route(E::AdminFsck,      Post,   "/v1/admin/fsck",     Bare, Token(Admin), "admin_fsck"),
    route(E::AdminGc,        Post,   "/v1/admin/gc",       Bare, Token(Admin), "admin_gc"),
    route(E::AdminMigrate,   Post,   "/v1/admin/migrate",  Bare, Token(Admin), "admin_migrate"),
    route(E::AdminExport,    Post,   "/v1/admin/export",   Bare, Token(Admin), "admin_export"),
    route(E::Metrics,        Get,    "/metrics",           Bare, Token(Read),  "metrics"),
];

impl Endpoint {
    pub fn route(self) -> &'static Route {
        &ROUTES[self as usize]
    }

    pub fn verb(self) -> Verb {
        self.route().verb
    }

    /// The request of a route without a tail (`?query` may follow).
    pub fn plain(self) -> Target {
        debug_assert_eq!(self.route().tail, Tail::Bare, "{self:?} takes a tail");
        Target::new(self, self.route().path.to_owned())
    }

    /// The request of a route taking a file system path, `encoded` by
    /// [`crate::path::encode_path`] (it starts with `/`; empty names the root).
    pub fn at(self, encoded: &str) -> Target {
        debug_assert_eq!(self.route().tail, Tail::Path, "{self:?} takes no path");
        Target::new(self, format!("{}{encoded}", self.route().path))
    }

    /// The request of a route taking one name, already percent-encoded where it may
    /// hold more than hex.
    pub fn named(self, name: &str) -> Target {
        debug_assert_eq!(self.route().tail, Tail::Name, "{self:?} takes no name");
        Target::new(self, format!("{}/{name}", self.route().path))
    }
}

/// A request made from the table: its method and URL path (with any query).
#[derive(Clone, Debug)]
pub struct Target {
    pub verb: Verb,
    pub path: String,
}

impl Target {
    fn new(endpoint: Endpoint, path: String) -> Self {
        Self {
            verb: endpoint.verb(),
            path,
        }
    }

    /// The same request with a query string (`q` starts with `?`, or is empty).
    pub fn query(mut self, q: &str) -> Self {
        self.path.push_str(q);
        self
    }
}

/// What the table says of a request's method and path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Found<'a> {
    /// The route, and what followed its path (without the `/` between them).
    Route(&'static Route, &'a str),
    /// Routes have this path, none this method; the label of the first.
    WrongMethod(&'static str),
    NotFound,
}

impl Found<'_> {
    /// Who may make the request: the route's access, or [`fallback_role`].
    pub fn access(&self, method: &str) -> Access {
        match self {
            Found::Route(r, _) => r.access,
            _ => Access::Token(fallback_role(method)),
        }
    }
}

/// The role a request that names no route needs: read for GET and HEAD, else write.
pub fn fallback_role(method: &str) -> Role {
    match method {
        "GET" | "HEAD" => Role::Read,
        _ => Role::Write,
    }
}

/// The route `method` and `path` (without the query) name.
pub fn find<'p>(method: &str, path: &'p str) -> Found<'p> {
    let exact = |r: &&Route| r.tail == Tail::Bare && r.path == path;
    if let Some(found) = pick(method, ROUTES.iter().filter(exact), |_| "") {
        return found;
    }
    // The rest after `route.path`, if this route takes it.
    let tail_of = |r: &Route| -> Option<&'p str> {
        let rest = path.strip_prefix(r.path)?;
        match (r.tail, rest) {
            (Tail::Bare, _) => None,
            (Tail::Path, "") => Some(""),
            (Tail::Path, rest) => rest.strip_prefix('/'),
            (Tail::Name, rest) => rest.strip_prefix('/').filter(|t| !t.is_empty()),
        }
    };
    let tailed = ROUTES.iter().filter(|r| tail_of(r).is_some());
    pick(method, tailed, |r| tail_of(r).unwrap_or("")).unwrap_or(Found::NotFound)
}

/// Among `routes` (all of one path), the one for `method`; `None` if there are none.
fn pick<'p>(
    method: &str,
    mut routes: impl Iterator<Item = &'static Route>,
    tail: impl Fn(&Route) -> &'p str,
) -> Option<Found<'p>> {
    let first = routes.next()?;
    std::iter::once(first)
        .chain(routes)
        .find(|r| r.verb.as_str() == method)
        .map(|r| Found::Route(r, tail(r)))
        .or(Some(Found::WrongMethod(first.label)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_endpoint_is_at_its_index() {
        for (i, r) in ROUTES.iter().enumerate() {
            assert_eq!(r.endpoint as usize, i, "{:?}", r.endpoint);
        }
    }

    #[test]
    fn an_exact_path_wins_over_a_tail_and_a_wrong_method_is_told() {
        let route = |m, p| match find(m, p) {
            Found::Route(r, tail) => Some((r.endpoint, tail)),
            _ => None,
        };
        assert_eq!(route("POST", "/v1/chunks"), Some((E::ChunksBatch, "")));
        assert_eq!(route("POST", "/v1/chunks/read"), Some((E::ChunksRead, "")));
        assert_eq!(
            find("GET", "/v1/chunks/read"),
            Found::WrongMethod("chunks_read")
        );
        assert_eq!(route("GET", "/v1/chunks/ab12"), Some((E::ChunkGet, "ab12")));
        assert_eq!(route("GET", "/v1/files"), Some((E::FileGet, "")));
        assert_eq!(route("GET", "/v1/files/a/b"), Some((E::FileGet, "a/b")));
        assert_eq!(route("GET", "/v1/ls/"), Some((E::Ls, "")));
        assert_eq!(route("GET", "/v1/versions"), Some((E::Versions, "")));
        assert_eq!(
            route("GET", "/v1/versions/HEAD"),
            Some((E::Version, "HEAD"))
        );
        assert_eq!(
            route("GET", "/v1/status/history"),
            Some((E::StatusHistory, ""))
        );
        assert_eq!(find("PUT", "/v1/meta/a"), Found::WrongMethod("meta"));
        assert_eq!(find("GET", "/v1/chunks/"), Found::NotFound);
        assert_eq!(find("GET", "/v1/filesx"), Found::NotFound);
        assert_eq!(find("GET", "/v1/admin/nothing"), Found::NotFound);
        assert_eq!(
            find("POST", "/nothing").access("POST"),
            Access::Token(Role::Write)
        );
    }

    #[test]
    fn targets_are_made_from_the_table() {
        assert_eq!(E::Commit.plain().path, "/v1/commit");
        assert_eq!(E::FileGet.at("/a%20b").path, "/v1/files/a%20b");
        let t = E::ChunkPut.named("ab").query("?x=1");
        assert_eq!((t.verb, t.path.as_str()), (Verb::Put, "/v1/chunks/ab?x=1"));
    }
}
