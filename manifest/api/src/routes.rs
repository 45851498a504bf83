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
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, clap::ValueEnum,
)]
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

/// One route: how it is called, who may call it, what it takes and answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Route {
    pub endpoint: Endpoint,
    pub verb: Verb,
    pub path: &'static str,
    pub tail: Tail,
    pub access: Access,
    /// The label requests to it are counted under (`/metrics`).
    pub label: &'static str,
    /// Its query string, as its [`Call::Query`] is written: `()` for none.
    pub query: &'static str,
    /// The body it takes, as its [`Call::Request`] is written: `()` for none, `Raw`
    /// for bytes that are not JSON, else the JSON type.
    pub request: &'static str,
    /// The answer's body, as its [`Call::Answer`] is written.
    pub answer: &'static str,
}

/// A route's body types, tied to its row of the table: `Self` is the route's marker
/// type in [`call`]. The client asks through them ([`To`]) and the daemon's handlers
/// answer with them, so both sides are checked against the table by the compiler.
pub trait Call: Sized {
    const ENDPOINT: Endpoint;
    /// The query string's parameters ([`crate::queries`]): `()` for none.
    type Query;
    /// The request's body: `()` for none, [`Raw`] for bytes that are not JSON.
    type Request;
    /// The answer's body: [`Raw`] for bytes that are not JSON (files, chunks, text).
    type Answer;

    /// The request of a route without a tail (`?query` may follow).
    fn plain() -> To<Self> {
        To::new(Self::ENDPOINT.plain())
    }

    /// The request of a route taking a file system path (see [`Endpoint::at`]).
    fn at(encoded: &str) -> To<Self> {
        To::new(Self::ENDPOINT.at(encoded))
    }

    /// The request of a route taking one name (see [`Endpoint::named`]).
    fn named(name: &str) -> To<Self> {
        To::new(Self::ENDPOINT.named(name))
    }
}

/// A body that is not JSON: file contents, chunk frames, a node, the metrics' text.
#[derive(Clone, Copy, Debug)]
pub struct Raw;

/// A request of route `C`, made from the table.
#[derive(Clone, Debug)]
pub struct To<C> {
    pub target: Target,
    call: std::marker::PhantomData<C>,
}

impl<C> To<C> {
    fn new(target: Target) -> Self {
        Self {
            target,
            call: std::marker::PhantomData,
        }
    }
}

impl<C: Call> To<C>
where
    C::Query: serde::Serialize,
{
    /// The same request with route `C`'s query string (none when `q` says nothing).
    pub fn with(self, q: &C::Query) -> Self {
        match crate::queries::write(q) {
            text if text.is_empty() => self,
            text => Self::new(self.target.query(&format!("?{text}"))),
        }
    }
}

/// The table: one row per route makes its [`Endpoint`] variant, its [`ROUTES`] entry
/// and its marker type in [`call`].
macro_rules! table {
    ($($(#[$doc:meta])* $name:ident: $verb:ident $path:literal $tail:ident $access:expr, $label:literal, $query:ty, $req:ty => $ans:ty;)*) => {
        /// Every route of the API, one variant each, in the order of [`ROUTES`].
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub enum Endpoint {
            $($name,)*
        }

        /// The API, in the order of [`Endpoint`].
        pub const ROUTES: &[Route] = &[$(Route {
            endpoint: Endpoint::$name,
            verb: Verb::$verb,
            path: $path,
            tail: Tail::$tail,
            access: $access,
            label: $label,
            query: stringify!($query),
            request: stringify!($req),
            answer: stringify!($ans),
        },)*];

        /// Each route's marker type, named as its [`Endpoint`]: what it takes and
        /// answers ([`Call`]).
        pub mod call {
            use super::{Call, Endpoint, Raw};
            use crate::args::{ExportArgs, FsckArgs, GcArgs, MigrateArgs};
            use crate::commit::CommitRequest;
            use crate::queries as q;
            use crate::reports as r;
            use crate::views::{ChangeInfo, PathChange, SnapshotInfo, VersionInfo};

            $($(#[$doc])*
            #[derive(Clone, Copy, Debug)]
            pub struct $name;

            impl Call for $name {
                const ENDPOINT: Endpoint = Endpoint::$name;
                type Query = $query;
                type Request = $req;
                type Answer = $ans;
            })*
        }
    };
}

use Access::{Link, Token};
use Role::{Admin, Read, Write};

// Each row: name, method, path, tail, who may call, metrics label, query, request
// body => answer body.
#[rustfmt::skip]
table! {
    FileGet:        Get    "/v1/files"          Path Token(Read),  "files",          q::AtVersion,  ()                => Raw;
    FilePut:        Put    "/v1/files"          Path Token(Write), "files",          q::FileAttrs,  Raw               => r::Written;
    FileDelete:     Delete "/v1/files"          Path Token(Write), "files",          q::Removal,    ()                => r::Written;
    Meta:           Get    "/v1/meta"           Path Token(Read),  "meta",           q::AtVersion,  ()                => r::Meta;
    Ls:             Get    "/v1/ls"             Path Token(Read),  "ls",             q::AtVersion,  ()                => r::Listing;
    Du:             Get    "/v1/du"             Path Token(Read),  "du",             (),            ()                => r::DiskUsage;
    /// Frames of chunks ([`crate::batch`]).
    ChunksBatch:    Post   "/v1/chunks"         Bare Token(Write), "chunks_batch",   (),            Raw               => r::BatchStored;
    /// The chunks asked for, as frames (and blocks, when asked: [`crate::batch`]).
    ChunksRead:     Post   "/v1/chunks/read"    Bare Token(Read),  "chunks_read",    q::ReadAs,     r::Ids            => Raw;
    /// Asking which chunks are missing only reads (fvfsc's dry runs with a read token).
    ChunksMissing:  Post   "/v1/chunks/missing" Bare Token(Read),  "chunks_missing", (),            r::Ids            => r::Missing;
    ChunkGet:       Get    "/v1/chunks"         Name Token(Read),  "chunks",         (),            ()                => Raw;
    ChunkHead:      Head   "/v1/chunks"         Name Token(Read),  "chunks",         (),            ()                => ();
    ChunkPut:       Put    "/v1/chunks"         Name Token(Write), "chunks",         q::ChunkPut,   Raw               => r::ChunkStored;
    Node:           Get    "/v1/nodes"          Name Token(Read),  "nodes",          (),            ()                => Raw;
    Versions:       Get    "/v1/versions"       Bare Token(Read),  "versions",       q::Limit,      ()                => Vec<VersionInfo>;
    Version:        Get    "/v1/versions"       Name Token(Read),  "versions",       (),            ()                => VersionInfo;
    Snapshots:      Get    "/v1/snapshots"      Bare Token(Read),  "snapshots",      (),            ()                => Vec<SnapshotInfo>;
    SnapshotCreate: Post   "/v1/snapshots"      Bare Token(Write), "snapshots",      (),            r::SnapshotCreate => VersionInfo;
    SnapshotDelete: Delete "/v1/snapshots"      Name Token(Admin), "snapshots",      (),            ()                => r::SnapshotDeleted;
    Rollback:       Post   "/v1/rollback"       Bare Token(Write), "rollback",       (),            r::Rollback       => VersionInfo;
    Diff:           Get    "/v1/diff"           Bare Token(Read),  "diff",           q::Between,    ()                => Vec<ChangeInfo>;
    History:        Get    "/v1/history"        Path Token(Read),  "history",        q::Limit,      ()                => Vec<PathChange>;
    Commit:         Post   "/v1/commit"         Bare Token(Write), "commit",         (),            CommitRequest     => VersionInfo;
    /// A link gives what its maker could read, to whoever holds it.
    DownloadLinks:  Post   "/v1/download-links" Path Token(Read),  "download_links", q::AtVersion,  ()                => r::DownloadLink;
    Download:       Get    "/v1/download"       Name Link,         "download",       (),            ()                => Raw;
    Status:         Get    "/v1/status"         Bare Token(Read),  "status",         (),            ()                => r::Status;
    StatusHistory:  Get    "/v1/status/history" Bare Token(Read),  "status_history", (),            ()                => r::UsageHistory;
    Whoami:         Get    "/v1/whoami"         Bare Token(Read),  "whoami",         (),            ()                => r::Whoami;
    Devices:        Get    "/v1/devices"        Bare Token(Read),  "devices",        (),            ()                => r::Devices;
    /// Whoever may write may make what they wrote durable in every tier now.
    AdminFlush:     Post   "/v1/admin/flush"    Bare Token(Write), "admin_flush",    (),            ()                => r::Flushed;
    AdminEvict:     Post   "/v1/admin/evict"    Bare Token(Admin), "admin_evict",    (),            ()                => r::Eviction;
    AdminWal:       Get    "/v1/admin/wal"      Bare Token(Read),  "admin_wal",      (),            ()                => r::Backlog;
    /// An empty body is the defaults.
    AdminFsck:      Post   "/v1/admin/fsck"     Bare Token(Admin), "admin_fsck",     (),            FsckArgs          => r::FsckReport;
    /// An empty body is the defaults.
    AdminGc:        Post   "/v1/admin/gc"       Bare Token(Admin), "admin_gc",       (),            GcArgs            => r::GcReport;
    AdminMigrate:   Post   "/v1/admin/migrate"  Bare Token(Admin), "admin_migrate",  (),            MigrateArgs       => r::Outcome;
    AdminExport:    Post   "/v1/admin/export"   Bare Token(Admin), "admin_export",   (),            ExportArgs        => r::Outcome;
    /// Prometheus' text format.
    Metrics:        Get    "/metrics"           Bare Token(Read),  "metrics",        (),            ()                => Raw;
}

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
    use super::Endpoint as E;
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
        let limit = crate::queries::Limit { limit: Some(2) };
        let typed = call::History::at("/a").with(&limit).target;
        assert_eq!(
            (typed.verb, typed.path.as_str()),
            (Verb::Get, "/v1/history/a?limit=2")
        );
    }

    #[test]
    fn each_row_names_the_body_types_its_marker_carries() {
        fn row<C: Call>() -> (&'static str, &'static str) {
            let r = C::ENDPOINT.route();
            (r.request, r.answer)
        }
        assert_eq!(row::<call::Commit>(), ("CommitRequest", "VersionInfo"));
        assert_eq!(row::<call::FileGet>(), ("()", "Raw"));
        assert_eq!(row::<call::AdminGc>(), ("GcArgs", "r::GcReport"));
        // Only PUT and POST carry a body (proxies may drop a GET's or DELETE's).
        for r in ROUTES.iter().filter(|r| r.request != "()") {
            assert!(matches!(r.verb, Verb::Put | Verb::Post), "{:?}", r.endpoint);
        }
    }
}
