//! Paths inside fvfs: absolute, `/`-separated byte strings, normalised on the way in.
//!
//! `//a/./b/` becomes `[a, b]`; `..` is refused outright rather than resolved, so no
//! path handed to fvfs can climb out of the tree it names, whatever its encoding.

use crate::valid_name;

/// Why a path was refused: the path (as text) and the reason.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid path {0:?}: {1}")]
pub struct PathError(pub String, pub &'static str);

/// The most components a path may have: deeper than any tree people keep, and shallow
/// enough for the walks that recurse per level (sealing a tree, dropping it) to stay
/// well within a thread's stack.
pub const MAX_DEPTH: usize = 512;
/// The longest path, in bytes (Windows' long paths stop at 32,767 characters).
pub const MAX_PATH: usize = 32 << 10;

/// Splits a path into its components, refusing `..`, NUL bytes, relative paths, and
/// paths longer than [`MAX_PATH`] or deeper than [`MAX_DEPTH`].
pub fn components(path: &[u8]) -> Result<Vec<&[u8]>, PathError> {
    // Messages quote at most the start of a path a hostile client made huge.
    let show = || {
        let start = &path[..path.len().min(200)];
        let more = if path.len() > start.len() { "..." } else { "" };
        format!("{}{more}", String::from_utf8_lossy(start))
    };
    if path.len() > MAX_PATH {
        return Err(PathError(show(), "longer than 32 KiB"));
    }
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
        if out.len() > MAX_DEPTH {
            return Err(PathError(show(), "more than 512 levels deep"));
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

    #[test]
    fn huge_and_deep_paths_are_refused_with_a_short_message() {
        let deepest = "/a".repeat(MAX_DEPTH);
        assert_eq!(components(deepest.as_bytes()).unwrap().len(), MAX_DEPTH);
        let deeper = format!("{deepest}/a");
        let e = components(deeper.as_bytes()).unwrap_err();
        assert!(e.to_string().contains("512 levels"), "{e}");
        let long = format!("/{}", "x".repeat(MAX_PATH));
        let e = components(long.as_bytes()).unwrap_err().to_string();
        assert!(e.contains("32 KiB") && e.len() < 300, "{e}");
    }
}
