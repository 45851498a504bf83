//! Whole folders at once: COPY of a folder shares its tree (one commit, whatever its
//! size) and DELETE of a folder removes it in one commit, where dav-server would walk
//! it one file at a time. Only the plain cases are taken here: a conditional request
//! (`If`, `If-Match` and the like), a lock in the way, a shallow copy, or a destination inside the source goes
//! to dav-server, which answers those as RFC 4918 says.

use dav_server::davpath::DavPath;
use dav_server::fs::DavFileSystem;
use dav_server::ls::DavLockSystem;
use dav_server::memls::MemLs;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};

use super::fs::FvfsDav;
use super::PREFIX;
use crate::serve::http::{full, Body};
use crate::serve::writer::Op;

pub(super) fn dav_path(url_path: &str) -> Option<DavPath> {
    let mut p = DavPath::new(url_path).ok()?;
    p.set_prefix(PREFIX).ok()?;
    Some(p)
}

fn header<'a>(req: &'a Request<Incoming>, name: &str) -> Option<&'a str> {
    req.headers().get(name).and_then(|v| v.to_str().ok())
}

/// An answer with `status` and no body.
pub(super) fn answer(status: StatusCode) -> Response<Body> {
    Response::builder()
        .status(status)
        .body(full(""))
        .expect("a valid response")
}

/// Whether nobody's lock covers `path` or anything below it.
pub(super) async fn unlocked(locks: &MemLs, path: &DavPath) -> bool {
    locks.check(path, None, false, true, &[]).await.is_ok()
}

/// The answer to a whole-folder COPY or DELETE, or `None` to leave it to dav-server.
pub async fn shortcut(
    fs: &FvfsDav,
    locks: &MemLs,
    req: &Request<Incoming>,
) -> Option<Response<Body>> {
    let copy = *req.method() == Method::from_bytes(b"COPY").ok()?;
    let conditional = [
        "if",
        "if-match",
        "if-none-match",
        "if-modified-since",
        "if-unmodified-since",
    ];
    if !(copy || *req.method() == Method::DELETE)
        || conditional.iter().any(|h| header(req, h).is_some())
    {
        return None;
    }
    let depth = header(req, "depth").unwrap_or("infinity");
    if !depth.eq_ignore_ascii_case("infinity") {
        return None;
    }
    let from = dav_path(req.uri().path())?;
    if !fs.metadata(&from).await.ok()?.is_dir() || from.as_bytes() == b"/" {
        return None;
    }
    if !copy {
        if !unlocked(locks, &from).await {
            return None;
        }
        let path = fs.live_path(&from).ok()?;
        let message = format!("dav rm -r {}", fvfs_manifest::path::show(&path));
        let op = Op::Remove {
            path,
            recursive: true,
        };
        return Some(match fs.commit(vec![op], message).await {
            Ok(()) => {
                let _ = locks.delete(&from).await;
                answer(StatusCode::NO_CONTENT)
            }
            Err(e) => answer(super::status_of(e)),
        });
    }
    let dest = header(req, "destination")?;
    let dest = match dest.parse::<hyper::Uri>() {
        Ok(uri) => dav_path(uri.path())?,
        Err(_) => return None,
    };
    let (src, to) = (from.as_bytes(), dest.as_bytes());
    let inside = to.starts_with(src) && to.get(src.len()).is_none_or(|b| *b == b'/');
    if inside || !unlocked(locks, &dest).await {
        return None;
    }
    let overwrite = !header(req, "overwrite").is_some_and(|o| o.eq_ignore_ascii_case("F"));
    let existed = fs.metadata(&dest).await.is_ok();
    if existed && !overwrite {
        return Some(answer(StatusCode::PRECONDITION_FAILED));
    }
    let Ok(to_path) = fs.live_path(&dest) else {
        return Some(answer(StatusCode::FORBIDDEN));
    };
    let result = async {
        let mut entry = fs.entry_at(&from).await?;
        fs.parent_is_dir(&to_path).await?;
        entry.name = to_path
            .rsplit(|b| *b == b'/')
            .next()
            .unwrap_or_default()
            .to_vec();
        let mut ops = Vec::new();
        if existed {
            ops.push(Op::Remove {
                path: to_path.clone(),
                recursive: true,
            });
        }
        let message = format!("dav copy -r to {}", fvfs_manifest::path::show(&to_path));
        // Overwrite: F holds at the commit too: nobody may have put something there.
        let expect = (!overwrite).then_some(fvfs_api::commit::Expect::Absent);
        ops.push(Op::Put {
            path: to_path,
            entry,
            expect,
        });
        fs.commit(ops, message).await
    }
    .await;
    Some(match result {
        Ok(()) if existed => answer(StatusCode::NO_CONTENT),
        Ok(()) => answer(StatusCode::CREATED),
        // A missing parent of the destination is a conflict (RFC 4918, 9.8.5).
        Err(dav_server::fs::FsError::NotFound) => answer(StatusCode::CONFLICT),
        Err(dav_server::fs::FsError::Exists) => answer(StatusCode::PRECONDITION_FAILED),
        Err(e) => answer(super::status_of(e)),
    })
}
