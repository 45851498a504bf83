//! PROPFIND of a folder or file (Depth 0 or 1) answered directly. Clients list folders
//! again and again, and dav-server's generic writer (an XML element tree per property
//! of each entry, then the xml-rs emitter) took half the time of a 10,000-entry
//! listing. Only what can be answered exactly as dav-server answers is taken here: the
//! live properties dav-server computes from an entry's metadata, asked for by
//! `allprop` (or an empty body) or by name, with no lock on, above or under the path
//! and no dead property on anything listed. (One difference in form: dav-server
//! echoes a client's own `resourcetype` element, prefix and all; this writes
//! `D:resourcetype`, which means the same.) Everything else (`propname`, `include`,
//! other properties, locks, Depth infinity or none, Windows' allprop with its Win32
//! properties) goes to dav-server.
//!
//! # Invariants
//! - The answer lists what dav-server would list, in the same order, with the same
//!   values: hrefs percent-encoded with its set, content types from the name by
//!   `mime_guess`, dates as HTTP dates, only the properties that have a value (as
//!   dav-server, which leaves out those it finds none for). `tests/tests/dav/listings.rs`
//!   compares both answers for the same folders.
//! - Properties fvfs never has a value for here (creation date, quota, display name
//!   and content language without dead properties) are known and left out.

use bytes::Bytes;
use dav_server::fs::{DavFileSystem, DavMetaData};
use dav_server::ls::DavLockSystem;
use dav_server::memls::MemLs;
use futures::stream;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use hyper::http::request::Parts;
use hyper::{Response, StatusCode};
use percent_encoding::{percent_encode, AsciiSet, NON_ALPHANUMERIC};
use xmltree::Element;

use super::fs::FvfsDav;
use super::tree::{dav_path, unlocked};
use crate::serve::http::Body;

const DAV: &str = "DAV:";
const APACHE: &str = "http://apache.org/dav/props/";
/// dav-server's set: everything but letters, digits and `-_.~/`.
const HREF: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~')
    .remove(b'/');
/// Entries rendered per piece of the answer.
const PIECE: usize = 512;

/// A property this module answers.
#[derive(Clone, Copy, PartialEq, Debug)]
enum Prop {
    ContentLength,
    ContentType,
    ETag,
    LastModified,
    LockDiscovery,
    ResourceType,
    SupportedLock,
    Executable,
    /// Known, and never has a value here.
    Never,
}

/// What `allprop` means (dav-server's list, in its order).
const ALLPROP: &[Prop] = &[
    Prop::Never, // creationdate
    Prop::Never, // displayname
    Prop::Never, // getcontentlanguage
    Prop::ContentLength,
    Prop::ContentType,
    Prop::ETag,
    Prop::LastModified,
    Prop::LockDiscovery,
    Prop::ResourceType,
    Prop::SupportedLock,
];

fn prop(namespace: Option<&str>, name: &str) -> Option<Prop> {
    Some(match (namespace?, name) {
        (DAV, "getcontentlength") => Prop::ContentLength,
        (DAV, "getcontenttype") => Prop::ContentType,
        (DAV, "getetag") => Prop::ETag,
        (DAV, "getlastmodified") => Prop::LastModified,
        (DAV, "lockdiscovery") => Prop::LockDiscovery,
        (DAV, "resourcetype") => Prop::ResourceType,
        (DAV, "supportedlock") => Prop::SupportedLock,
        (APACHE, "executable") => Prop::Executable,
        // No creation or change time, no quota (`get_quota` is not offered), and
        // these two are dead properties, which nothing listed has.
        (
            DAV,
            "creationdate"
            | "quota-available-bytes"
            | "quota-used-bytes"
            | "displayname"
            | "getcontentlanguage",
        ) => Prop::Never,
        _ => return None,
    })
}

/// The properties a PROPFIND body asks for, if all are ones answered here.
fn wanted(body: &[u8], agent: &str) -> Option<Vec<Prop>> {
    if body.is_empty() {
        return (!agent.contains("Microsoft")).then(|| ALLPROP.to_vec());
    }
    let root = Element::parse(body).ok()?;
    if root.name != "propfind" || root.namespace.as_deref() != Some(DAV) {
        return None;
    }
    let mut kids = root.children.iter().filter_map(|n| n.as_element());
    if kids
        .clone()
        .any(|e| e.name == "include" || e.name == "includes")
    {
        return None;
    }
    let what = kids.find(|e| matches!(e.name.as_str(), "propname" | "prop" | "allprop"))?;
    match what.name.as_str() {
        "allprop" if !agent.contains("Microsoft") => Some(ALLPROP.to_vec()),
        "prop" => what
            .children
            .iter()
            .filter_map(|n| n.as_element())
            .map(|e| prop(e.namespace.as_deref(), &e.name))
            .collect(),
        _ => None,
    }
}

/// The answer to a PROPFIND, or `None` to leave it to dav-server.
pub async fn answer(
    fs: &FvfsDav,
    locks: &MemLs,
    req: &Parts,
    body: &[u8],
) -> Option<Response<Body>> {
    if req.headers.get_all("depth").iter().count() != 1 {
        return None;
    }
    let depth_one = match req.headers.get("depth")?.as_bytes() {
        b"0" => false,
        b"1" => true,
        _ => return None,
    };
    let agent = req
        .headers
        .get(hyper::header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let props = wanted(body, agent)?;
    let path = dav_path(req.uri.path())?;
    // No lock under the path, none above it that covers it, and none at all above
    // it (dav-server lists a parent's Depth 0 lock in `lockdiscovery` too).
    if !unlocked(locks, &path).await || !locks.discover(&path).await.is_empty() {
        return None;
    }
    let meta = fs.metadata(&path).await.ok()?;
    if !fs.get_props(&path, false).await.ok()?.is_empty() {
        return None;
    }
    let entries = if depth_one && meta.is_dir() {
        let entries = fs.listing(&path).await.ok()?;
        if entries.iter().any(|e| e.props) {
            return None;
        }
        entries
    } else {
        Vec::new()
    };

    let mut href = path.with_prefix().as_url_string();
    let moved = meta.is_dir() && !href.ends_with('/');
    if moved {
        href.push('/');
    }
    let mut resp = Response::builder()
        .status(StatusCode::MULTI_STATUS)
        .header("cache-control", "no-cache")
        .header("pragma", "no-cache")
        .header("content-type", "application/xml; charset=utf-8");
    if moved {
        resp = resp.header("content-location", href.as_str());
    }
    let name = path.file_name_bytes().to_vec();
    let mut out = Writer {
        props,
        buf: Vec::new(),
    };
    out.start();
    out.response(&href, &name, meta.as_ref());
    let mut entries = entries.into_iter().peekable();
    let mut first = Some(out.take());
    let pieces = std::iter::from_fn(move || {
        let mut piece = first.take()?;
        for e in entries.by_ref().take(PIECE) {
            let mut child = format!("{href}{}", percent_encode(&e.name, HREF));
            if e.meta.is_dir() {
                child.push('/');
            }
            out.response(&child, &e.name, &e.meta);
        }
        piece.extend_from_slice(&out.take());
        if entries.peek().is_some() {
            first = Some(Vec::new());
        } else {
            piece.extend_from_slice(b"</D:multistatus>");
        }
        Some(Ok::<_, std::io::Error>(Frame::data(Bytes::from(piece))))
    });
    let body = StreamBody::new(stream::iter(pieces)).boxed_unsync();
    resp.body(body).ok()
}

/// The multistatus, one response at a time.
struct Writer {
    props: Vec<Prop>,
    buf: Vec<u8>,
}

impl Writer {
    fn take(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.buf)
    }

    fn start(&mut self) {
        self.buf
            .extend_from_slice(br#"<?xml version="1.0" encoding="utf-8"?><D:multistatus"#);
        if self.props.contains(&Prop::Executable) {
            self.buf.extend_from_slice(br#" xmlns:A=""#);
            self.buf.extend_from_slice(APACHE.as_bytes());
            self.buf.push(b'"');
        }
        self.buf.extend_from_slice(br#" xmlns:D="DAV:">"#);
    }

    fn text(&mut self, tag: &str, text: &str) {
        let b = &mut self.buf;
        b.push(b'<');
        b.extend_from_slice(tag.as_bytes());
        b.push(b'>');
        for c in text.bytes() {
            match c {
                b'&' => b.extend_from_slice(b"&amp;"),
                b'<' => b.extend_from_slice(b"&lt;"),
                b'>' => b.extend_from_slice(b"&gt;"),
                c => b.push(c),
            }
        }
        b.extend_from_slice(b"</");
        b.extend_from_slice(tag.as_bytes());
        b.push(b'>');
    }

    /// One `D:response`: `href` already encoded, `name` the entry's last segment.
    fn response(&mut self, href: &str, name: &[u8], meta: &dyn DavMetaData) {
        self.buf.extend_from_slice(b"<D:response>");
        self.text("D:href", href);
        let mark = self.buf.len();
        self.buf.extend_from_slice(b"<D:propstat><D:prop>");
        let start = self.buf.len();
        for i in 0..self.props.len() {
            self.prop(self.props[i], name, meta);
        }
        if self.buf.len() == start {
            // Nothing had a value: dav-server writes no propstat at all.
            self.buf.truncate(mark);
        } else {
            self.buf
                .extend_from_slice(b"</D:prop><D:status>HTTP/1.1 200 OK</D:status></D:propstat>");
        }
        self.buf.extend_from_slice(b"</D:response>");
    }

    fn prop(&mut self, p: Prop, name: &[u8], meta: &dyn DavMetaData) {
        let dir = meta.is_dir();
        match p {
            Prop::ContentLength if !dir => self.text("D:getcontentlength", &meta.len().to_string()),
            Prop::ContentType => self.text("D:getcontenttype", &content_type(dir, name)),
            Prop::ETag => {
                if let Some(tag) = meta.etag() {
                    self.text("D:getetag", &tag);
                }
            }
            Prop::LastModified => {
                if let Ok(t) = meta.modified() {
                    self.text("D:getlastmodified", &httpdate::fmt_http_date(t));
                }
            }
            Prop::LockDiscovery => self.text("D:lockdiscovery", ""),
            Prop::ResourceType if dir => self.buf.extend_from_slice(
                b"<D:resourcetype><D:collection></D:collection></D:resourcetype>",
            ),
            Prop::ResourceType => self.text("D:resourcetype", ""),
            Prop::SupportedLock => self.buf.extend_from_slice(SUPPORTED_LOCK),
            Prop::Executable => {
                if let Ok(x) = meta.executable() {
                    self.text("A:executable", if x { "T" } else { "F" });
                }
            }
            Prop::ContentLength | Prop::Never => {}
        }
    }
}

/// Exclusive and shared write locks (what `MemLs` offers).
const SUPPORTED_LOCK: &[u8] = b"<D:supportedlock>\
<D:lockentry><D:lockscope><D:exclusive></D:exclusive></D:lockscope><D:locktype><D:write></D:write></D:locktype></D:lockentry>\
<D:lockentry><D:lockscope><D:shared></D:shared></D:lockscope><D:locktype><D:write></D:write></D:locktype></D:lockentry>\
</D:supportedlock>";

/// dav-server's content type: a folder's, else by the extension after the last dot.
fn content_type(dir: bool, name: &[u8]) -> String {
    if dir {
        return "httpd/unix-directory".into();
    }
    let ext = name
        .iter()
        .rposition(|b| *b == b'.')
        .and_then(|i| std::str::from_utf8(&name[i + 1..]).ok());
    ext.and_then(|e| mime_guess::from_ext(e).first_raw())
        .unwrap_or("application/octet-stream")
        .into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_are_read_as_dav_server_reads_them() {
        let all = Some(ALLPROP.to_vec());
        assert_eq!(wanted(b"", "davfs2"), all);
        assert_eq!(wanted(b"  \n", "davfs2"), None, "dav-server refuses it");
        assert_eq!(wanted(b"", "Microsoft-WebDAV-MiniRedir"), None);
        let allprop =
            br#"<?xml version="1.0"?><D:propfind xmlns:D="DAV:"><D:allprop/></D:propfind>"#;
        assert_eq!(wanted(allprop, "x"), all);
        let include = br#"<propfind xmlns="DAV:"><allprop/><include><foo/></include></propfind>"#;
        assert_eq!(wanted(include, "x"), None);
        let names = br#"<propfind xmlns="DAV:"><propname/></propfind>"#;
        assert_eq!(wanted(names, "x"), None);
        let some = br#"<a:propfind xmlns:a="DAV:" xmlns:A="http://apache.org/dav/props/"><a:prop><a:getetag/><A:executable/><a:quota-used-bytes/></a:prop></a:propfind>"#;
        assert_eq!(
            wanted(some, "x"),
            Some(vec![Prop::ETag, Prop::Executable, Prop::Never])
        );
        let other =
            br#"<propfind xmlns="DAV:"><prop><getetag/><x:y xmlns:x="urn:x"/></prop></propfind>"#;
        assert_eq!(wanted(other, "x"), None);
        assert_eq!(wanted(b"<propfind>", "x"), None, "not XML");
        assert_eq!(wanted(b"<propfind/>", "x"), None, "not in DAV:");
    }

    #[test]
    fn content_types_follow_the_last_extension() {
        assert_eq!(content_type(true, b"a.txt"), "httpd/unix-directory");
        assert_eq!(content_type(false, b"a.tar.gz"), "application/gzip");
        assert_eq!(content_type(false, b"notes"), "application/octet-stream");
        assert_eq!(content_type(false, b".bashrc"), "application/octet-stream");
        assert_eq!(content_type(false, b"x.\xff"), "application/octet-stream");
    }
}
