//! The web page at `/`: a status board, a file browser of the live tree and of every
//! version, one path's history with restore, snapshots, versions with diff and rollback.
//! Its files are compiled into the binary (no build step, nothing to install), beside
//! one written from the route table (`/ui/routes.js`: each route's method and path by
//! its name, which is all the page's script knows of them); the page is a client of
//! the JSON API like fvfsc, so it can do only what the token it is given may do.
//!
//! # Invariants
//! - The page's files hold no data, so they are served to anyone who names the daemon
//!   (the Host check still applies); every byte of the store reaches the page through
//!   the API, under the same guard and roles as any client.
//! - The page runs under a Content-Security-Policy that allows only its own script and
//!   style and connections to this daemon, and it may not be framed.

pub mod links;

use std::sync::LazyLock;

use fvfs_api::routes::ROUTES;
use hyper::{Method, Response, StatusCode};

use super::http::{full, ApiError, Body};

/// `(URL path, content type, bytes)` of the page's files.
const FILES: &[(&str, &str, &str)] = &[
    (
        "/",
        "text/html; charset=utf-8",
        include_str!("assets/index.html"),
    ),
    (
        "/ui/app.js",
        "text/javascript; charset=utf-8",
        include_str!("assets/app.js"),
    ),
    (
        "/ui/app.css",
        "text/css; charset=utf-8",
        include_str!("assets/app.css"),
    ),
    (
        "/ui/icon.svg",
        "image/svg+xml",
        include_str!("assets/icon.svg"),
    ),
];

const POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
    img-src 'self' data: blob:; connect-src 'self'; base-uri 'none'; form-action 'none'; \
    frame-ancestors 'none'";

/// The route table as the page's script reads it: `ROUTES.Ls = {method, path}`, one
/// entry per [`fvfs_api::routes::Endpoint`], named as it.
static ROUTES_JS: LazyLock<String> = LazyLock::new(|| {
    let mut js = String::from("\"use strict\";\n// Written by fvfsd from its route table.\nconst ROUTES = Object.freeze({\n");
    for r in ROUTES {
        js += &format!(
            "  {:?}: Object.freeze({{ method: {:?}, path: {:?} }}),\n",
            r.endpoint,
            r.verb.as_str(),
            r.path
        );
    }
    js + "});\n"
});

/// `(content type, bytes)` of the page's file at `path`.
fn file(path: &str) -> Option<(&'static str, &'static str)> {
    if path == "/ui/routes.js" {
        return Some(("text/javascript; charset=utf-8", ROUTES_JS.as_str()));
    }
    let (_, kind, text) = FILES.iter().find(|(p, ..)| *p == path)?;
    Some((kind, text))
}

/// Whether `path` is one of the page's (`/` or below `/ui/`).
pub fn is_page(path: &str) -> bool {
    path == "/" || path.starts_with("/ui/")
}

pub fn serve(method: &Method, path: &str) -> Result<Response<Body>, ApiError> {
    let Some((kind, text)) = file(path) else {
        return Err(ApiError::not_found(format!("no page file {path}")));
    };
    if !matches!(*method, Method::GET | Method::HEAD) {
        return Err(ApiError::new(
            fvfs_api::ErrorCode::MethodNotAllowed,
            format!("{method} is not allowed on {path}"),
        ));
    }
    let body = if *method == Method::HEAD { "" } else { text };
    Ok(Response::builder()
        .status(StatusCode::OK)
        .header("content-type", kind)
        .header("content-length", text.len())
        .header("cache-control", "no-cache")
        .header("content-security-policy", POLICY)
        .header("x-content-type-options", "nosniff")
        .header("x-frame-options", "DENY")
        .header("referrer-policy", "no-referrer")
        .body(full(body))
        .expect("valid response"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_files_are_served_with_their_policy_and_nothing_else() {
        for (path, kind, text) in FILES {
            assert!(is_page(path));
            let r = serve(&Method::GET, path).unwrap();
            assert_eq!(r.headers()["content-type"], *kind);
            assert_eq!(
                r.headers()["content-length"],
                text.len().to_string().as_str()
            );
            assert!(r.headers()["content-security-policy"]
                .to_str()
                .unwrap()
                .contains("frame-ancestors 'none'"));
        }
        assert!(serve(&Method::GET, "/ui/../v1/status").is_err());
        let (_, routes) = file("/ui/routes.js").unwrap();
        assert!(routes.contains("  Ls: Object.freeze({ method: \"GET\", path: \"/v1/ls\" }),"));
        assert_eq!(routes.matches("method:").count(), ROUTES.len());
        assert!(serve(&Method::POST, "/").is_err());
        assert!(!is_page("/v1/status") && !is_page("/dav/"));
    }
}
