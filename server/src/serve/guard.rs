//! Requests a web page could make the user's browser send are refused before any
//! token or body is looked at.
//!
//! - **Host** must name this daemon: an IP literal, `localhost`, the machine's name
//!   (with or without `.local`), or a name in `[daemon] host_names`. A page that
//!   rebinds its own DNS name to this daemon's address sends its own name: refused.
//! - **Origin**, when sent, must be the origin the request is addressed to, and
//!   **Sec-Fetch-Site**, when sent, must say `same-origin` or `none` (typed by the user).
//! - A request that is not GET, HEAD or OPTIONS must carry a content type a page cannot
//!   send without asking first (anything but the three a plain form or `fetch` may use:
//!   `text/plain`, `application/x-www-form-urlencoded`, `multipart/form-data`, nor a
//!   value that does not parse as an ASCII `type/subtype`, which a browser may still
//!   read as one of them), or the
//!   header `X-Fvfs-Client`, which fvfs's own clients send. A page's cross-origin request
//!   with either is preflighted, and the daemon never approves a preflight.
//!
//! # Invariant
//! - These checks hold on every listen address, loopback included: a browser on the
//!   server itself is as much a way in as one on the LAN.

use std::net::IpAddr;

use fvfs_api::ErrorCode;
use hyper::{Method, Request};

use super::http::ApiError;

/// The header fvfs's clients send on every request.
pub const CLIENT_HEADER: &str = "x-fvfs-client";

/// What a forged browser request looks like, for this daemon.
pub struct Guard {
    /// Host names (lower case, no trailing dot) that name this daemon.
    names: Vec<String>,
}

impl Guard {
    /// `machine`: this machine's names; `configured`: `[daemon] host_names`.
    pub fn new(machine: &[String], configured: &[String]) -> Self {
        let mut names = vec!["localhost".to_owned()];
        for n in machine.iter().chain(configured) {
            let n = normal(n);
            if !n.is_empty() {
                names.push(format!("{n}.local"));
                names.push(n);
            }
        }
        names.sort();
        names.dedup();
        Self { names }
    }

    pub fn check<B>(&self, req: &Request<B>) -> Result<(), ApiError> {
        let headers = req.headers();
        let text = |name: &str| headers.get(name).map(|v| v.to_str().unwrap_or("\u{fffd}"));
        self.check_host(req)?;
        let host = text("host");
        if let Some(origin) = text("origin") {
            let same = host.is_some_and(|h| same_origin(origin, h));
            if !same {
                return Err(forbidden(format!(
                    "cross-origin request from {origin:?} refused"
                )));
            }
        }
        if let Some(site) = text("sec-fetch-site") {
            if !matches!(site, "same-origin" | "none") {
                return Err(forbidden(format!(
                    "request from another site (Sec-Fetch-Site: {site}) refused"
                )));
            }
        }
        // A page can send other methods (PUT, DELETE, WebDAV's) only after a CORS
        // preflight, which this daemon never grants: WebDAV clients, which send no
        // content type on many of them, need no custom header there.
        let dav = super::dav::is_dav(req.uri().path()) && *req.method() != Method::POST;
        let safe = dav || matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS);
        if !safe && !headers.contains_key(CLIENT_HEADER) {
            let formlike = form_like(headers.get("content-type").map(|v| v.as_bytes()));
            if formlike {
                return Err(forbidden(format!(
                    "{} needs a Content-Type such as application/json or \
                     application/octet-stream, or the header X-Fvfs-Client \
                     (a web page can send neither without the daemon's consent)",
                    req.method()
                )));
            }
        }
        Ok(())
    }

    /// Only the Host check: for what holds no data (the web page's files).
    pub fn check_host<B>(&self, req: &Request<B>) -> Result<(), ApiError> {
        match req.headers().get("host") {
            Some(host) => self.host_names_us(host.to_str().unwrap_or("\u{fffd}")),
            None => Ok(()),
        }
    }

    fn host_names_us(&self, host: &str) -> Result<(), ApiError> {
        let name = host_part(host);
        if name.starts_with('[') || name.parse::<IpAddr>().is_ok() {
            return Ok(());
        }
        if self.names.contains(&normal(name)) {
            return Ok(());
        }
        Err(forbidden(format!(
            "Host {host:?} does not name this daemon (a page rebinding its DNS name would \
             send its own); if it is yours, add it to [daemon] host_names"
        )))
    }
}

/// Whether a request with content type `value` (its raw bytes) may have come from a
/// page without a preflight: no type, one of the three a form or a plain `fetch` may
/// send, or anything that does not parse as a plain `type/subtype` in ASCII (a browser
/// reads such a value its own way: `text/plain;a=\xe9` is still text/plain to it).
fn form_like(value: Option<&[u8]>) -> bool {
    let Some(value) = value else {
        return true;
    };
    let essence = value.split(|&b| b == b';').next().unwrap_or_default();
    let Ok(essence) = std::str::from_utf8(essence) else {
        return true;
    };
    let essence = essence.trim_matches([' ', '\t']).to_ascii_lowercase();
    // RFC 9110 token characters.
    let token = |t: &str| {
        !t.is_empty()
            && t.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
    };
    let parses = essence
        .split_once('/')
        .is_some_and(|(t, sub)| token(t) && token(sub));
    !parses
        || matches!(
            essence.as_str(),
            "text/plain" | "application/x-www-form-urlencoded" | "multipart/form-data"
        )
}

fn forbidden(detail: String) -> ApiError {
    ApiError::new(ErrorCode::Forbidden, detail)
}

/// Lower case, without a trailing dot.
fn normal(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

/// The host of `host[:port]` (an IPv6 literal keeps its brackets).
fn host_part(authority: &str) -> &str {
    if let Some(end) = authority.strip_prefix('[').and_then(|r| r.find(']')) {
        return &authority[..end + 2];
    }
    match authority.rsplit_once(':') {
        Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => authority,
    }
}

/// Whether `origin` (`scheme://host[:port]`) is the origin of a request sent to `host`.
fn same_origin(origin: &str, host: &str) -> bool {
    let Some((scheme, authority)) = origin.split_once("://") else {
        return false;
    };
    let default_port = match scheme.to_ascii_lowercase().as_str() {
        "http" => ":80",
        "https" => ":443",
        _ => return false,
    };
    let canonical = |a: &str| {
        let a = a.to_ascii_lowercase();
        match a.strip_suffix(default_port) {
            Some(bare) => bare.to_owned(),
            None => a,
        }
    };
    canonical(authority) == canonical(host)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(method: &str, headers: &[(&str, &str)]) -> Request<()> {
        let mut r = Request::builder().method(method).uri("/v1/commit");
        for (k, v) in headers {
            r = r.header(*k, *v);
        }
        r.body(()).unwrap()
    }

    #[test]
    fn hosts_that_name_the_daemon_pass_and_others_do_not() {
        let g = Guard::new(&["Server".into()], &["nas.home.arpa".into()]);
        for ok in [
            "127.0.0.1:7734",
            "localhost:7734",
            "LOCALHOST.",
            "[::1]:7734",
            "192.168.1.5",
            "server:7734",
            "server.local.:7734",
            "nas.home.arpa",
        ] {
            assert!(g.check(&req("GET", &[("host", ok)])).is_ok(), "{ok}");
        }
        for bad in ["evil.example:7734", "server.evil.example", "local", ""] {
            let e = g.check(&req("GET", &[("host", bad)])).unwrap_err();
            assert_eq!(e.code, ErrorCode::Forbidden, "{bad}");
        }
    }

    #[test]
    fn origins_other_than_the_requests_own_are_refused() {
        let g = Guard::new(&[], &[]);
        let h = ("host", "127.0.0.1:7734");
        let ok = [("origin", "http://127.0.0.1:7734")];
        assert!(g.check(&req("GET", &[h, ok[0]])).is_ok());
        assert!(g
            .check(&req(
                "GET",
                &[("host", "localhost"), ("origin", "http://localhost:80")]
            ))
            .is_ok());
        for bad in [
            "http://evil.example",
            "http://127.0.0.1:8080",
            "null",
            "https://127.0.0.1:7734x",
            "file://",
        ] {
            assert!(
                g.check(&req("GET", &[h, ("origin", bad)])).is_err(),
                "{bad}"
            );
        }
        assert!(g.check(&req("GET", &[("origin", "http://x")])).is_err());
        assert!(g
            .check(&req("GET", &[h, ("sec-fetch-site", "cross-site")]))
            .is_err());
        assert!(g
            .check(&req("GET", &[h, ("sec-fetch-site", "same-site")]))
            .is_err());
        assert!(g
            .check(&req("GET", &[h, ("sec-fetch-site", "none")]))
            .is_ok());
    }

    #[test]
    fn changes_need_a_content_type_a_form_cannot_send_or_the_client_header() {
        let g = Guard::new(&[], &[]);
        for ct in [
            "text/plain",
            "Text/Plain; charset=utf-8",
            "multipart/form-data; b=x",
        ] {
            assert!(
                g.check(&req("POST", &[("content-type", ct)])).is_err(),
                "{ct}"
            );
        }
        assert!(g.check(&req("DELETE", &[])).is_err());
        // What does not parse as a plain type/subtype in ASCII is form-like too.
        for ct in [
            &b"text/plain;a=\xe9"[..],
            b"text/plain\xe9",
            b"\xe9/json",
            b"application",
            b"/json",
            b"text/ plain",
            b"",
            b"  ; x=y",
        ] {
            assert!(form_like(Some(ct)), "{}", String::from_utf8_lossy(ct));
        }
        assert!(!form_like(Some(b"application/json;charset=\xe9")));
        let odd = Request::builder()
            .method("PUT")
            .uri("/v1/files/x")
            .header(
                "content-type",
                hyper::header::HeaderValue::from_bytes(b"text/plain;a=\xe9").unwrap(),
            )
            .body(())
            .unwrap();
        assert!(g.check(&odd).is_err());
        assert!(!form_like(Some(b" Application/Vnd.Fvfs+CBOR ")));
        assert!(g
            .check(&req("POST", &[("content-type", "application/json")]))
            .is_ok());
        assert!(g
            .check(&req("PUT", &[("content-type", "application/octet-stream")]))
            .is_ok());
        assert!(g.check(&req("DELETE", &[(CLIENT_HEADER, "fvfsc")])).is_ok());
        assert!(g.check(&req("GET", &[])).is_ok());
    }
}
