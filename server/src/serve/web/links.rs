//! Download links for the page. A browser saves a file to disk as it streams only from
//! a URL it navigates to, and a navigation carries no token; fetching the file with the
//! token and handing it over as a blob held the whole file in the browser's memory. So
//! the page asks, with its token, for a link to one file of one version
//! (`POST /v1/download-links/PATH?version=V`, read role), and the link is the
//! credential: `GET /v1/download/LINK`, without a token, streams the file once.
//!
//! # Invariants
//! - A link is 256 random bits, good for one GET within [`TTL`]; it is gone once a
//!   download started or once expired, and at most [`PENDING`] wait. A request the
//!   guard refuses (another site, a foreign Host), or one that fails before the file
//!   starts (a tier not answering), does not use it up.
//! - A link names the version it was made for (HEAD's number at that moment), so it
//!   downloads what the page showed even if the tree moved meanwhile.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fvfs_api::queries::AtVersion;
use fvfs_api::reports::DownloadLink;
use fvfs_api::routes::{call, Call};
use fvfs_api::ErrorCode;
use hyper::header::{HeaderValue, CACHE_CONTROL, CONTENT_DISPOSITION};
use hyper::Response;
use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};

use crate::serve::files;
use crate::serve::http::{ApiError, Body};
use crate::serve::State;

/// How long a link can wait for its download.
pub const TTL: Duration = Duration::from_secs(60);
/// Links waiting at most.
const PENDING: usize = 1024;

/// The links made and not yet used.
#[derive(Default)]
pub struct Links(Mutex<HashMap<String, Link>>);

struct Link {
    version: u64,
    path: Vec<u8>,
    made: Instant,
}

impl Links {
    fn issue(&self, version: u64, path: Vec<u8>) -> Result<String, ApiError> {
        let mut links = self.0.lock().unwrap_or_else(|p| p.into_inner());
        links.retain(|_, l| l.made.elapsed() < TTL);
        if links.len() >= PENDING {
            return Err(ApiError::new(
                ErrorCode::Busy,
                format!("{PENDING} download links are waiting to be used: try again in a minute"),
            ));
        }
        let id = crate::serve::auth::random_token()
            .map_err(|e| ApiError::new(ErrorCode::Internal, format!("{e:#}")))?;
        let made = Instant::now();
        links.insert(
            id.clone(),
            Link {
                version,
                path,
                made,
            },
        );
        Ok(id)
    }

    /// Link `id`, which is then gone (until [`Links::give_back`]).
    fn redeem(&self, id: &str) -> Option<Link> {
        let mut links = self.0.lock().unwrap_or_else(|p| p.into_inner());
        links.remove(id).filter(|l| l.made.elapsed() < TTL)
    }

    /// Link `id` again, after a download that could not start (a tier not answering).
    fn give_back(&self, id: &str, link: Link) {
        let mut links = self.0.lock().unwrap_or_else(|p| p.into_inner());
        links.insert(id.to_owned(), link);
    }
}

/// `POST /v1/download-links/PATH?version=V`: a link to that file as it is in that
/// version (HEAD without one).
pub async fn make(
    state: &Arc<State>,
    path: Vec<u8>,
    at: &AtVersion,
) -> Result<DownloadLink, ApiError> {
    let (v, entry) = files::entry_at(state, &path, at).await?;
    files::readable(&entry, &path)?;
    let id = state.links.issue(v.number, path)?;
    Ok(DownloadLink {
        url: call::Download::named(&id).target.path,
        expires_in_secs: TTL.as_secs(),
    })
}

/// `GET /v1/download/LINK`: the file, once, as an attachment named as it is (and, like
/// every stored file served from this origin, never run as a page of it).
pub async fn download(state: &Arc<State>, id: &str) -> Result<Response<Body>, ApiError> {
    let link = state.links.redeem(id).ok_or_else(|| {
        ApiError::not_found(
            "this download link was used or has expired: download again from the page",
        )
    })?;
    let started = async {
        let v = state.repo.version(link.version)?;
        let entry = fvfs_manifest::lookup(&state.repo, v.root, &link.path).await?;
        files::send(state, &v, &link.path, entry).await
    };
    let mut resp = match started.await {
        Ok(resp) => resp,
        Err(e) => {
            // It may work in a moment: the link stays good for the rest of its time.
            state.links.give_back(id, link);
            return Err(e);
        }
    };
    let name = link.path.rsplit(|b| *b == b'/').next().unwrap_or_default();
    let h = resp.headers_mut();
    if let Ok(value) = HeaderValue::from_str(&attachment(name)) {
        h.insert(CONTENT_DISPOSITION, value);
    }
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    crate::serve::dav::confine(&mut resp);
    Ok(resp)
}

/// `Content-Disposition` for a file named `name` (RFC 6266): an ASCII stand-in for old
/// browsers, the exact name in UTF-8 for the others.
fn attachment(name: &[u8]) -> String {
    let name = String::from_utf8_lossy(name);
    let plain: String = name
        .chars()
        .map(|c| match c {
            ' '..='~' if c != '"' && c != '\\' => c,
            _ => '_',
        })
        .collect();
    let exact = utf8_percent_encode(&name, NON_ALPHANUMERIC);
    format!("attachment; filename=\"{plain}\"; filename*=UTF-8''{exact}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_link_works_once() {
        let links = Links::default();
        let id = links.issue(3, b"/a.txt".to_vec()).unwrap();
        assert_eq!(id.len(), 64);
        assert_ne!(id, links.issue(3, b"/a.txt".to_vec()).unwrap());
        let link = links.redeem(&id).unwrap();
        assert_eq!((link.version, link.path.as_slice()), (3, &b"/a.txt"[..]));
        assert!(links.redeem(&id).is_none());
        links.give_back(&id, link);
        assert!(
            links.redeem(&id).is_some(),
            "given back after a failed start"
        );
        assert!(links.redeem("made-up").is_none());
    }

    #[test]
    fn an_expired_link_is_gone() {
        let links = Links::default();
        let id = links.issue(1, b"/x".to_vec()).unwrap();
        links.0.lock().unwrap().get_mut(&id).unwrap().made -= TTL;
        assert!(links.redeem(&id).is_none());
    }

    #[test]
    fn waiting_links_are_bounded() {
        let links = Links::default();
        for _ in 0..PENDING {
            links.issue(1, b"/x".to_vec()).unwrap();
        }
        assert!(links.issue(1, b"/x".to_vec()).is_err());
        for l in links.0.lock().unwrap().values_mut() {
            l.made -= TTL;
        }
        assert!(
            links.issue(1, b"/x".to_vec()).is_ok(),
            "expired ones make room"
        );
    }

    #[test]
    fn names_go_in_the_header_exactly_and_safely() {
        assert_eq!(
            attachment("été \"1\".txt".as_bytes()),
            "attachment; filename=\"_t_ _1_.txt\"; \
             filename*=UTF-8''%C3%A9t%C3%A9%20%221%22%2Etxt"
        );
        assert!(HeaderValue::from_str(&attachment(b"a\r\nb\x00")).is_ok());
    }
}
