//! WebDAV's dead properties (PROPPATCH), kept with the entry they belong to as extended
//! attributes named `user.dav:<namespace> <name>`: they travel with the file through
//! renames, copies, snapshots and exports, and the mount shows them.

use dav_server::fs::{DavProp, FsError};
use fvfs_manifest::node::Meta;
use fvfs_manifest::Entry;
use hyper::StatusCode;
use serde::{Deserialize, Serialize};

const PREFIX: &[u8] = b"user.dav:";

/// What an attribute holds of a property (its name is in the attribute's name).
#[derive(Serialize, Deserialize)]
struct Stored {
    prefix: Option<String>,
    namespace: Option<String>,
    name: String,
    xml: Option<String>,
}

fn key(namespace: Option<&str>, name: &str) -> Vec<u8> {
    let mut k = PREFIX.to_vec();
    k.extend_from_slice(namespace.unwrap_or("").as_bytes());
    k.push(b' ');
    k.extend_from_slice(name.as_bytes());
    k
}

/// The properties stored on `entry` (values only with `content`).
pub fn get(entry: &Entry, content: bool) -> Vec<DavProp> {
    let Some(meta) = &entry.meta else {
        return Vec::new();
    };
    meta.xattrs
        .iter()
        .filter(|x| x.name.starts_with(PREFIX))
        .filter_map(|x| serde_json::from_slice::<Stored>(&x.value).ok())
        .map(|s| DavProp {
            name: s.name,
            prefix: s.prefix,
            namespace: s.namespace,
            xml: s.xml.filter(|_| content).map(String::into_bytes),
        })
        .collect()
}

/// Whether `entry` holds any property.
pub fn any(entry: &Entry) -> bool {
    entry
        .meta
        .as_ref()
        .is_some_and(|m| m.xattrs.iter().any(|x| x.name.starts_with(PREFIX)))
}

/// The value of property `prop` on `entry`.
pub fn get_one(entry: &Entry, prop: &DavProp) -> Result<Vec<u8>, FsError> {
    let raw = entry
        .meta
        .as_ref()
        .and_then(|m| m.xattr(&key(prop.namespace.as_deref(), &prop.name)))
        .ok_or(FsError::NotFound)?;
    let stored: Stored = serde_json::from_slice(raw).map_err(|_| FsError::NotFound)?;
    stored.xml.map(String::into_bytes).ok_or(FsError::NotFound)
}

/// Applies `patch` (set or remove each) to `entry`; each property's status.
pub fn patch(entry: &mut Entry, patch: Vec<(bool, DavProp)>) -> Vec<(StatusCode, DavProp)> {
    let meta = entry.meta.get_or_insert_with(|| Box::new(Meta::default()));
    patch
        .into_iter()
        .map(|(set, p)| {
            let k = key(p.namespace.as_deref(), &p.name);
            let status = match (set, &p.xml) {
                (false, _) => {
                    meta.set_xattr(&k, None);
                    StatusCode::OK
                }
                (true, xml) => match xml.clone().map(String::from_utf8).transpose() {
                    Ok(xml) => {
                        let stored = Stored {
                            prefix: p.prefix.clone(),
                            namespace: p.namespace.clone(),
                            name: p.name.clone(),
                            xml,
                        };
                        let value = serde_json::to_vec(&stored).expect("a property serialises");
                        meta.set_xattr(&k, Some(value));
                        StatusCode::OK
                    }
                    Err(_) => StatusCode::UNPROCESSABLE_ENTITY,
                },
            };
            let answered = DavProp { xml: None, ..p };
            (status, answered)
        })
        .collect()
}
