//! Failpoints: named places where a test can make the process die at once, as a
//! power cut or `kill -9` would, to show that every intermediate state on disk is
//! recoverable. `FVFS_FAILPOINT=name` arms the one named; unset, a check costs one
//! cached lookup.

use std::sync::OnceLock;

/// Aborts the process if `FVFS_FAILPOINT` names `name`.
pub fn hit(name: &str) {
    static ARMED: OnceLock<Option<String>> = OnceLock::new();
    let armed = ARMED.get_or_init(|| std::env::var("FVFS_FAILPOINT").ok());
    if armed.as_deref() == Some(name) {
        eprintln!("fvfs: failpoint {name}: aborting");
        std::process::abort();
    }
}
