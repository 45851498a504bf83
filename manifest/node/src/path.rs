//! Paths inside fvfs: absolute, `/`-separated byte strings, normalised on the way in.
//!
//! `//a/./b/` becomes `[a, b]`; `..` is refused outright rather than resolved, so no
//! path handed to fvfs can climb out of the tree it names, whatever its encoding.

use crate::valid_name;

/// Why a path was refused: the path (as text) and the reason.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid path {0:?}: {1}")]
pub struct PathError(pub String, pub &'static str);

/// Splits a path into its components, refusing `..`, NUL bytes and relative paths.
pub fn components(path: &[u8]) -> Result<Vec<&[u8]>, PathError> {
    let show = || String::from_utf8_lossy(path).into_owned();
    if path.first() != Some(&b'/') {
        return Err(PathError(show(), "must start with '/'"));
    }
    if path.contains(&0) {
        return Err(PathError(show(), "contains a NUL byte"));
    }
    let mut out = Vec::new();
    for c in path.split(|&b| b == b'/') {
        match c {
            b"" | b"." => {}
            b".." => return Err(PathError(show(), "'..' is not allowed")),
            c => {
                debug_assert!(valid_name(c));
                out.push(c);
            }
        }
    }
    Ok(out)
}

/// Joins a parent path and a name into an absolute path.
pub fn join(parent: &[u8], name: &[u8]) -> Vec<u8> {
    let mut p = parent.to_vec();
    if p.last() != Some(&b'/') {
        p.push(b'/');
    }
    p.extend_from_slice(name);
    p
}

/// For messages: the path as text, with invalid UTF-8 replaced.
pub fn show(path: &[u8]) -> String {
    String::from_utf8_lossy(path).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises_and_refuses_escapes() {
        assert_eq!(components(b"//a/./b/").unwrap(), vec![&b"a"[..], b"b"]);
        assert!(components(b"/").unwrap().is_empty());
        for bad in [&b"a/b"[..], b"", b"/a/../b", b"/..", b"/a\0b"] {
            assert!(components(bad).is_err(), "{bad:?} accepted");
        }
        assert_eq!(join(b"/", b"x"), b"/x");
        assert_eq!(join(b"/a", b"x"), b"/a/x");
    }
}
