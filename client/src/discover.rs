//! Finding the daemon, and which certificate to trust: `FVFS_URL` (or the original
//! `VFSD_URL`) or the client config when given, else a daemon on this machine (plain
//! HTTP on loopback), else one announced over mDNS on the LAN within 10 s (HTTPS, with
//! the fingerprint it announces; once this device has paired, only a daemon it paired
//! with, else an error naming the daemons it ignored), else `http://localhost:7734`
//! (which then fails with a clear message). A daemon on this machine that left a notice
//! ([`fvfs_api::local`]) is reached over HTTPS on loopback, trusting the certificate
//! the notice names.
//!
//! An explicit URL wins over discovery, as in the first fvfs: it is what a user sets
//! precisely when discovery would find the wrong daemon or none.
//!
//! Trust ([`pin_for`]): an explicit fingerprint (`FVFS_FINGERPRINT`, the config's
//! `fingerprint`), else the local daemon's notice, else the pin of the daemon's node id or URL ([`crate::pins`]), else
//! the first contact pins what the daemon presents (which must be what it announced).

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use fvfs_api::tls::Fingerprint;
use serde::Deserialize;

use crate::pins::Pins;
use fvfs_api::{DEFAULT_PORT, MDNS_FINGERPRINT, MDNS_SERVICE as SERVICE};

/// `~/.config/fvfs/client.toml`: `url`, `token` and `fingerprint`, all optional.
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientConfig {
    pub url: Option<String>,
    pub token: Option<String>,
    /// The certificate to trust at `url` (what `fvfsd pair` prints).
    pub fingerprint: Option<String>,
}

impl ClientConfig {
    pub fn load() -> Result<Self> {
        let Some(path) = crate::paths::client_config() else {
            return Ok(Self::default());
        };
        match std::fs::read_to_string(&path) {
            Ok(text) => toml::from_str(&text)
                .map_err(|e| anyhow::anyhow!("config {}: {}", path.display(), e.message().trim())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
        }
    }

    /// The token: `FVFS_TOKEN`, else the config's.
    pub fn token(&self) -> Option<String> {
        std::env::var("FVFS_TOKEN")
            .ok()
            .filter(|t| !t.is_empty())
            .or_else(|| self.token.clone())
    }

    /// The fingerprint given outright: `FVFS_FINGERPRINT`, else the config's.
    fn fingerprint(&self) -> Result<Option<Fingerprint>> {
        let given = std::env::var("FVFS_FINGERPRINT")
            .ok()
            .filter(|f| !f.is_empty())
            .or_else(|| self.fingerprint.clone());
        given
            .map(|f| f.parse().map_err(anyhow::Error::msg))
            .transpose()
    }
}

/// A daemon found: its base URL, and what its announcement said.
pub struct Found {
    pub url: String,
    pub node_id: Option<String>,
    pub announced: Option<Fingerprint>,
    /// The certificate the daemon's own notice on this machine names.
    pub noticed: Option<Fingerprint>,
}

impl Found {
    pub fn at(url: String) -> Self {
        Self {
            url,
            node_id: None,
            announced: None,
            noticed: None,
        }
    }
}

/// The daemon to talk to; over mDNS only one this device has pinned, or any when it
/// has pinned none.
pub async fn daemon(config: &ClientConfig, pins: &Pins, mdns_timeout: Duration) -> Result<Found> {
    for var in ["FVFS_URL", "VFSD_URL"] {
        if let Some(url) = std::env::var(var).ok().filter(|u| !u.is_empty()) {
            return Ok(Found::at(url));
        }
    }
    if let Some(url) = &config.url {
        return Ok(Found::at(url.clone()));
    }
    let local = SocketAddr::from(([127, 0, 0, 1], DEFAULT_PORT));
    if tokio::time::timeout(
        Duration::from_millis(300),
        tokio::net::TcpStream::connect(local),
    )
    .await
    .is_ok_and(|r| r.is_ok())
    {
        // A daemon that left a notice is reached over HTTPS and must present the
        // certificate it names: whoever else holds the port gets no token.
        if let Some((notice, fingerprint)) = fvfs_api::local::trusted(DEFAULT_PORT) {
            return Ok(Found {
                url: notice.url,
                node_id: Some(notice.node_id),
                announced: None,
                noticed: Some(fingerprint),
            });
        }
        return Ok(Found::at(format!("http://localhost:{DEFAULT_PORT}")));
    }
    // With no pin at all, the first daemon found is met for the first time.
    let pinned = (!pins.is_empty()).then(|| pins.known());
    let seen = tokio::task::spawn_blocking(move || browse(mdns_timeout, pinned.as_ref()))
        .await
        .unwrap_or_default();
    match seen.chosen {
        Some(found) => Ok(found),
        None if !seen.unpaired.is_empty() => bail!(
            "no daemon this device has paired with answered over mDNS; found {}. \
             Pair with one on purpose: `fvfsd pair` on it prints the command to run here",
            seen.unpaired.join(", ")
        ),
        None => Ok(Found::at(format!("http://localhost:{DEFAULT_PORT}"))),
    }
}

#[derive(Default)]
struct Seen {
    chosen: Option<Found>,
    /// Daemons announced but not usable: not pinned, or announcing no certificate.
    unpaired: Vec<String>,
}

/// The first fvfs daemon resolved over mDNS within `timeout` that announces a
/// certificate and, when this device has pinned daemons (`pinned`: node ids and
/// fingerprints), is one of them.
fn browse(timeout: Duration, pinned: Option<&(Vec<String>, Vec<Fingerprint>)>) -> Seen {
    let mut seen = Seen::default();
    let Ok(daemon) = mdns_sd::ServiceDaemon::new() else {
        return seen;
    };
    let Ok(events) = daemon.browse(SERVICE) else {
        return seen;
    };
    let deadline = Instant::now() + timeout;
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        let Ok(event) = events.recv_timeout(left) else {
            break;
        };
        let mdns_sd::ServiceEvent::ServiceResolved(s) = event else {
            continue;
        };
        let mut addrs: Vec<IpAddr> = s.get_addresses().iter().map(|a| a.to_ip_addr()).collect();
        addrs.sort_by_key(|a| (a.is_ipv6(), a.is_loopback()));
        let Some(ip) = addrs.first() else {
            continue;
        };
        let addr = SocketAddr::new(*ip, s.get_port());
        let node_id = s.get_property_val_str("node_id").map(str::to_owned);
        let announced = s
            .get_property_val_str(MDNS_FINGERPRINT)
            .and_then(|f| f.parse::<Fingerprint>().ok());
        let usable = match pinned {
            None => true,
            Some((ids, prints)) => {
                node_id.as_ref().is_some_and(|n| ids.contains(n))
                    || announced.is_some_and(|f| prints.contains(&f))
            }
        };
        match announced {
            Some(fp) if usable => {
                seen.chosen = Some(Found {
                    url: format!("https://{addr}"),
                    node_id,
                    announced: Some(fp),
                    noticed: None,
                });
                break;
            }
            Some(fp) => seen
                .unpaired
                .push(format!("{} at {addr} (certificate {fp})", s.get_fullname())),
            None => seen.unpaired.push(format!(
                "{} at {addr} (announces no certificate)",
                s.get_fullname()
            )),
        }
    }
    let _ = daemon.shutdown();
    seen
}

/// The certificate to trust at `found.url`: none for plain HTTP (the client then sends
/// a token only to this machine), else see the module's doc. A first contact is pinned
/// and said on stderr.
pub async fn pin_for(
    found: &Found,
    config: &ClientConfig,
    pins: &mut Pins,
) -> Result<Option<Fingerprint>> {
    let (_, _, https) = fvfs_api::tls::authority(&found.url)?;
    if !https {
        return Ok(None);
    }
    if let Some(fp) = config.fingerprint()?.or(found.noticed) {
        return Ok(Some(fp));
    }
    let pinned = found
        .node_id
        .as_deref()
        .and_then(|n| pins.for_node(n))
        .or(found.announced.filter(|f| pins.has(*f)))
        .or_else(|| pins.for_url(&found.url));
    if pinned.is_some() {
        return Ok(pinned);
    }
    let seen = fvfs_api::tls::probe(&found.url).await?;
    if let Some(announced) = found.announced.filter(|a| *a != seen) {
        bail!(
            "the daemon at {} announced certificate {announced} but presents {seen}: not trusting it",
            found.url
        );
    }
    pins.pin(seen, found.node_id.as_deref(), &found.url)?;
    eprintln!(
        "fvfsc: first contact with the daemon at {}: pinned its certificate {seen} \
         (compare with what `fvfsd pair` prints on it)",
        found.url
    );
    Ok(Some(seen))
}
