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

/// The longest name a new entry may have: what local file systems hold (`NAME_MAX`),
/// so that everything stored can be listed through a mount and exported.
pub const MAX_NAME: usize = 255;
/// The longest path a new entry may have (Linux's `PATH_MAX`, its NUL included).
pub const MAX_NEW_PATH: usize = 4095;

/// Why a new name was refused: its name is over [`MAX_NAME`] bytes.
pub const NAME_TOO_LONG: &str = "a name is longer than 255 bytes";
/// Why a new name was refused: its path is over [`MAX_NEW_PATH`] bytes.
pub const PATH_TOO_LONG: &str = "longer than 4,095 bytes";
const HUGE: &str = "longer than 32 KiB";

/// Whether `why` (a [`PathError`]'s reason) says a path or name is too long.
pub fn too_long(why: &str) -> bool {
    [NAME_TOO_LONG, PATH_TOO_LONG, HUGE].contains(&why)
}

impl PathError {
    /// Whether the path or one of its names is too long.
    pub fn is_too_long(&self) -> bool {
        too_long(self.1)
    }
}

/// [`components`] of a path where something is to be made: also refuses a name over
/// [`MAX_NAME`] bytes or a path over [`MAX_NEW_PATH`] (counted normalised). Paths
/// that only read or remove what a tree holds keep [`components`], so a tree stored
/// before these limits can still be read and tidied.
pub fn new_components(path: &[u8]) -> Result<Vec<&[u8]>, PathError> {
    let comps = components(path)?;
    let show = || String::from_utf8_lossy(&path[..path.len().min(200)]).into_owned();
    if comps.iter().any(|c| c.len() > MAX_NAME) {
        return Err(PathError(show(), NAME_TOO_LONG));
    }
    if comps.iter().map(|c| c.len() + 1).sum::<usize>() > MAX_NEW_PATH {
        return Err(PathError(show(), PATH_TOO_LONG));
    }
    Ok(comps)
}

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
        return Err(PathError(show(), HUGE));
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
    fn new_names_are_at_most_255_bytes_and_new_paths_4095() {
        let name = |n: usize| format!("/{}", "x".repeat(n));
        assert!(new_components(name(255).as_bytes()).is_ok());
        let e = new_components(name(256).as_bytes()).unwrap_err();
        assert!(e.is_too_long() && e.1 == NAME_TOO_LONG, "{e}");
        assert!(new_components(name(4096).as_bytes())
            .unwrap_err()
            .is_too_long());
        // 15 names of 255 bytes and one of 254, each with its slash: 4,095 bytes.
        let deep = format!(
            "{}/{}",
            format!("/{}", "y".repeat(255)).repeat(15),
            "y".repeat(254)
        );
        assert_eq!(deep.len(), MAX_NEW_PATH);
        assert!(new_components(deep.as_bytes()).is_ok());
        let deeper = format!("{deep}/z");
        assert_eq!(
            new_components(deeper.as_bytes()).unwrap_err().1,
            PATH_TOO_LONG
        );
        // Redundant slashes do not count.
        let slashes = format!("{}/a", "/".repeat(5000));
        assert_eq!(new_components(slashes.as_bytes()).unwrap(), vec![&b"a"[..]]);
        // Reading keeps the old limits.
        assert!(components(name(4096).as_bytes()).is_ok());
    }

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
