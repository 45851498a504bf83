//! Where fvfsc keeps its own files: the config folder (`$XDG_CONFIG_HOME`, else
//! `~/.config`) and, in its `fvfs/`, the client config and the pinned daemons.

use std::path::PathBuf;

/// `$XDG_CONFIG_HOME`, else `~/.config` (`None`: neither is set).
fn config_dir() -> Option<PathBuf> {
    std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))
}

/// The client config, `fvfs/client.toml` ([`crate::discover`]).
pub fn client_config() -> Option<PathBuf> {
    config_dir().map(|d| d.join("fvfs/client.toml"))
}

/// The pinned daemons, `fvfs/pinned.json` ([`crate::pins`]).
pub fn pinned() -> Option<PathBuf> {
    config_dir().map(|d| d.join("fvfs/pinned.json"))
}
