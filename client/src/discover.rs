//! Finding the daemon: `FVFS_URL` (or the original `VFSD_URL`) or the client config
//! when given, else a daemon on this machine, else one announced over mDNS on the LAN
//! within 10 s, else `http://localhost:7734` (which then fails with a clear message).
//!
//! An explicit URL wins over discovery, as in the first fvfs: it is what a user sets
//! precisely when discovery would find the wrong daemon or none.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde::Deserialize;

use fvfs_api::{DEFAULT_PORT, MDNS_SERVICE as SERVICE};

/// `~/.config/fvfs/client.toml`: `url` and `token`, both optional.
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientConfig {
    pub url: Option<String>,
    pub token: Option<String>,
}

impl ClientConfig {
    pub fn load() -> Result<Self> {
        let dir = std::env::var_os("XDG_CONFIG_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")));
        let Some(path) = dir.map(|d| d.join("fvfs/client.toml")) else {
            return Ok(Self::default());
        };
        match std::fs::read_to_string(&path) {
            Ok(text) => toml::from_str(&text)
                .map_err(|e| anyhow::anyhow!("config {}: {}", path.display(), e.message().trim())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
        }
    }
}

/// The daemon's base URL, and how it was found.
pub async fn daemon_url(config: &ClientConfig, mdns_timeout: Duration) -> (String, &'static str) {
    for var in ["FVFS_URL", "VFSD_URL"] {
        if let Some(url) = std::env::var(var).ok().filter(|u| !u.is_empty()) {
            return (url, "environment");
        }
    }
    if let Some(url) = &config.url {
        return (url.clone(), "config");
    }
    let local = SocketAddr::from(([127, 0, 0, 1], DEFAULT_PORT));
    if tokio::time::timeout(
        Duration::from_millis(300),
        tokio::net::TcpStream::connect(local),
    )
    .await
    .is_ok_and(|r| r.is_ok())
    {
        return (format!("http://localhost:{DEFAULT_PORT}"), "local");
    }
    match tokio::task::spawn_blocking(move || browse(mdns_timeout)).await {
        Ok(Some(addr)) => (format!("http://{addr}"), "mdns"),
        _ => (format!("http://localhost:{DEFAULT_PORT}"), "default"),
    }
}

/// The first fvfs daemon resolved over mDNS within `timeout`.
fn browse(timeout: Duration) -> Option<SocketAddr> {
    let daemon = mdns_sd::ServiceDaemon::new().ok()?;
    let events = daemon.browse(SERVICE).ok()?;
    let deadline = Instant::now() + timeout;
    let mut found = None;
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        match events.recv_timeout(left) {
            Ok(mdns_sd::ServiceEvent::ServiceResolved(s)) => {
                let mut addrs: Vec<IpAddr> =
                    s.get_addresses().iter().map(|a| a.to_ip_addr()).collect();
                addrs.sort_by_key(|a| (a.is_ipv6(), a.is_loopback()));
                if let Some(ip) = addrs.first() {
                    found = Some(SocketAddr::new(*ip, s.get_port()));
                    break;
                }
            }
            Ok(_) => {}
            Err(_) => break,
        }
    }
    let _ = daemon.shutdown();
    found
}
