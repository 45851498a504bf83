//! The daemon's TLS identity and the one port that speaks both HTTP and HTTPS.
//!
//! At first start the daemon makes a self-signed certificate (ECDSA P-256, rcgen) and
//! keeps it with its key in `DATA_DIR/tls.pem` (0600). Its SHA-256 fingerprint is the
//! daemon's identity: announced over mDNS, printed by `fvfsd pair`, pinned by clients.
//!
//! # Invariants
//! - The identity never changes once made: two processes making it at once keep the
//!   first one written (created under a temporary name, renamed without replacing),
//!   and a damaged or world-readable file is refused, never silently replaced (that
//!   would lock out every paired device).
//! - A connection is TLS when its first byte opens a TLS record (handshake, 0x16), else
//!   plain HTTP; beyond loopback only TLS connections are served ([`super::handle`]).

use std::path::Path;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use fvfs_api::tls::Fingerprint;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;

const FILE: &str = "tls.pem";

/// The first byte of a TLS handshake record.
pub const HANDSHAKE: u8 = 0x16;

pub struct Identity {
    cert: CertificateDer<'static>,
    key: PrivateKeyDer<'static>,
    pub fingerprint: Fingerprint,
}

impl Identity {
    /// The identity kept in `dir`, made if there is none.
    pub fn load_or_create(dir: &Path) -> Result<Self> {
        let path = dir.join(FILE);
        if !path.exists() {
            create(dir, &path)?;
        }
        Self::load(dir)
    }

    /// The identity kept in `dir`.
    pub fn load(dir: &Path) -> Result<Self> {
        let path = dir.join(FILE);
        super::auth::check_private(&path)?;
        let pem =
            std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
        let damaged = |what: &str| {
            anyhow::anyhow!(
                "{} holds no valid {what}: restore it from a backup, or delete it to make a \
                 new identity (every paired device must then pair again)",
                path.display()
            )
        };
        let cert = CertificateDer::pem_slice_iter(&pem)
            .next()
            .and_then(|c| c.ok())
            .ok_or_else(|| damaged("certificate"))?;
        let key = PrivateKeyDer::from_pem_slice(&pem).map_err(|_| damaged("private key"))?;
        Ok(Self {
            fingerprint: Fingerprint::of(&cert),
            cert,
            key,
        })
    }

    /// Accepts TLS connections with this identity (HTTP/1.1).
    pub fn acceptor(&self) -> Result<TlsAcceptor> {
        let mut config = rustls::ServerConfig::builder_with_provider(fvfs_api::tls::provider())
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(vec![self.cert.clone()], self.key.clone_key())
            .context("the TLS identity's key does not match its certificate")?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(TlsAcceptor::from(Arc::new(config)))
    }
}

/// `fvfsd pair`: the command a device runs to trust this daemon, for each address it
/// can be reached at (`listen`, or every interface's when it listens everywhere), and
/// with `name` a new token of `role` for that device.
pub fn pair_command(
    dir: &Path,
    listen: std::net::SocketAddr,
    name: Option<&str>,
    role: super::Role,
) -> Result<()> {
    let identity = Identity::load_or_create(dir)?;
    // A running daemon's own address wins over the config's default.
    let listen = std::fs::read_to_string(dir.join(fvfs_engine::DAEMON_INFO))
        .ok()
        .and_then(|u| u.trim().rsplit("://").next()?.parse().ok())
        .unwrap_or(listen);
    let ips: Vec<std::net::IpAddr> = if listen.ip().is_unspecified() {
        if_addrs::get_if_addrs()
            .unwrap_or_default()
            .into_iter()
            .map(|i| i.ip())
            // 0.0.0.0 serves IPv4 only, [::] both; link-local addresses need a scope
            // a URL cannot carry.
            .filter(|ip| !ip.is_loopback() && (ip.is_ipv4() || listen.is_ipv6()))
            .filter(|ip| !matches!(ip, std::net::IpAddr::V6(v6) if v6.is_unicast_link_local()))
            .collect()
    } else {
        vec![listen.ip()]
    };
    let token = name
        .map(|n| super::auth::create(dir, n, role))
        .transpose()?;
    fvfs_api::outln!("certificate: {}", identity.fingerprint);
    if ips.iter().all(|ip| ip.is_loopback()) && !listen.ip().is_unspecified() {
        fvfs_api::outln!(
            "this daemon listens on {listen} only: set [daemon] listen = \"0.0.0.0:{}\" to serve the LAN",
            listen.port()
        );
    }
    if ips.is_empty() {
        fvfs_api::outln!("this machine has no network address besides loopback");
    }
    fvfs_api::outln!("on the device, run:");
    for ip in ips.iter().filter(|ip| !ip.is_loopback()) {
        let url = format!("https://{}", std::net::SocketAddr::new(*ip, listen.port()));
        fvfs_api::outln!("  fvfsc pair {url} --fingerprint {}", identity.fingerprint);
    }
    if let (Some(name), Some(token)) = (name, token) {
        fvfs_api::outln!("and give fvfsc the token made for {name:?} ({role}; shown only now):");
        fvfs_api::outln!("  export FVFS_TOKEN={token}");
    }
    Ok(())
}

fn create(dir: &Path, path: &Path) -> Result<()> {
    let mut names = vec!["fvfsd".to_owned(), "localhost".to_owned()];
    // rcgen takes ASCII names only; the certificate is pinned, its names are a courtesy.
    names.extend(
        crate::mdns::machine_names()
            .into_iter()
            .filter(|n| !n.is_empty() && n.is_ascii()),
    );
    names.dedup();
    let key = rcgen::KeyPair::generate().context("cannot make a TLS key")?;
    let mut params = rcgen::CertificateParams::new(names).context("bad certificate names")?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "fvfsd");
    // A pinned certificate does not expire in practice: the pin is what is trusted.
    params.not_before = rcgen::date_time_ymd(2024, 1, 1);
    params.not_after = rcgen::date_time_ymd(4000, 1, 1);
    let cert = params
        .self_signed(&key)
        .context("cannot make a TLS certificate")?;
    let pem = format!("{}{}", cert.pem(), key.serialize_pem());
    let tmp = dir.join(format!("{FILE}.new{}", std::process::id()));
    fvfs_cas::platform::write_durably(&tmp, pem.as_bytes(), 0o600)
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    match fvfs_cas::platform::rename_new(&tmp, path) {
        Ok(()) => {
            fvfs_cas::platform::sync_dir(dir)?;
            tracing::info!("made the TLS identity {}", path.display());
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            let _ = std::fs::remove_file(&tmp);
            Ok(())
        }
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            bail!("cannot create {}: {e}", path.display())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_identity_is_made_once_and_kept_private() {
        let dir = tempfile::tempdir().unwrap();
        let first = Identity::load_or_create(dir.path()).unwrap();
        let again = Identity::load_or_create(dir.path()).unwrap();
        assert_eq!(first.fingerprint, again.fingerprint);
        first.acceptor().unwrap();
        use std::os::unix::fs::PermissionsExt;
        let path = dir.path().join(FILE);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        // A damaged file is refused with what to do, never replaced.
        std::fs::write(&path, "-----BEGIN CERTIFICATE-----\nAAAA\n").unwrap();
        let e = Identity::load_or_create(dir.path())
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("delete it to make a new identity"), "{e}");
        assert!(std::fs::read_to_string(&path).unwrap().contains("AAAA"));
    }
}
