//! TLS with a pinned identity (feature `client`): beyond loopback fvfsd speaks HTTPS
//! with a self-signed certificate, and a client trusts exactly the certificate whose
//! SHA-256 fingerprint it pinned (from `fvfsd pair`, from the first contact, or from
//! the mDNS announcement of a daemon it already knows). No certificate authority and
//! no host name enter into it: the fingerprint is the daemon's identity.
//!
//! # Invariants
//! - A connection completes only when the certificate's fingerprint is the pinned one
//!   and the handshake is signed by that certificate's key (the signature checks are
//!   rustls's own); nothing goes out before.
//! - [`probe`] is the only way to accept an unknown certificate, and it sends no
//!   request: it learns the fingerprint, which the caller pins or compares.

use std::sync::{Arc, Mutex};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};

use crate::failure::Failure;
pub use crate::fingerprint::Fingerprint;

pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// Accepts the pinned certificate only (with no pin, none; [`probe`] accepts any), and
/// keeps what the server presented so that a refusal can say what it saw.
#[derive(Debug)]
pub(crate) struct Verifier {
    pin: Option<Fingerprint>,
    accept_any: bool,
    presented: Mutex<Option<Fingerprint>>,
    provider: Arc<CryptoProvider>,
}

impl Verifier {
    pub(crate) fn new(pin: Option<Fingerprint>) -> Arc<Self> {
        Arc::new(Self {
            pin,
            accept_any: false,
            presented: Mutex::new(None),
            provider: provider(),
        })
    }

    fn any() -> Arc<Self> {
        Arc::new(Self {
            pin: None,
            accept_any: true,
            presented: Mutex::new(None),
            provider: provider(),
        })
    }

    fn presented(&self) -> Option<Fingerprint> {
        *self.presented.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A client configuration trusting what this verifier trusts (no ALPN: the HTTP
    /// connector sets its own).
    pub(crate) fn client_config(self: &Arc<Self>) -> rustls::ClientConfig {
        rustls::ClientConfig::builder_with_provider(self.provider.clone())
            .with_safe_default_protocol_versions()
            .expect("the default provider supports the default versions")
            .dangerous()
            .with_custom_certificate_verifier(self.clone())
            .with_no_client_auth()
    }
}

impl ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let seen = Fingerprint::of(end_entity);
        *self.presented.lock().unwrap_or_else(|p| p.into_inner()) = Some(seen);
        match self.pin {
            Some(pin) if pin == seen => Ok(ServerCertVerified::assertion()),
            None if self.accept_any => Ok(ServerCertVerified::assertion()),
            Some(pin) => Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::Other(rustls::OtherError(Arc::new(NotPinned {
                    presented: seen,
                    pinned: pin,
                }))),
            )),
            None => Err(rustls::Error::General(format!(
                "certificate {seen} is not pinned on this device (`fvfsc pair URL`)"
            ))),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// Host and port of an `http(s)://` URL, and whether it is HTTPS.
pub fn authority(url: &str) -> Result<(String, u16, bool), Failure> {
    let uri: hyper::Uri = url
        .parse()
        .map_err(|e| Failure::Protocol(format!("bad URL {url:?}: {e}")))?;
    let https = match uri.scheme_str() {
        Some("https") => true,
        Some("http") => false,
        _ => {
            return Err(Failure::Protocol(format!(
                "bad URL {url:?}: it starts with http:// or https://"
            )))
        }
    };
    let host = uri
        .host()
        .ok_or_else(|| Failure::Protocol(format!("bad URL {url:?}: no host")))?;
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    let port = uri.port_u16().unwrap_or(crate::DEFAULT_PORT);
    Ok((host, port, https))
}

/// Whether `host` is this machine: a token may travel in plain HTTP only there.
pub fn is_local(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback() || ip.is_unspecified())
}

/// The fingerprint of the certificate the daemon at `url` (https) presents: a
/// handshake and nothing else, so no token and no request reach it.
/// A certificate refused for not being the pinned one: carried inside the handshake's
/// error, so only the request whose handshake it failed reports it.
#[derive(Debug, thiserror::Error)]
#[error("certificate {presented} is not the pinned {pinned}")]
pub(crate) struct NotPinned {
    pub presented: Fingerprint,
    pub pinned: Fingerprint,
}

/// The refusal somewhere in the causes of `e` (through I/O errors, which do not list
/// the error they wrap among their sources), if a pinned certificate was not presented.
pub(crate) fn not_pinned<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a NotPinned> {
    let mut cause = Some(e);
    while let Some(e) = cause {
        if let Some(rustls::Error::InvalidCertificate(rustls::CertificateError::Other(other))) =
            e.downcast_ref::<rustls::Error>()
        {
            return other.0.downcast_ref::<NotPinned>();
        }
        if let Some(inner) = e
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
        {
            if let Some(found) = not_pinned(inner) {
                return Some(found);
            }
        }
        cause = e.source();
    }
    None
}

pub async fn probe(url: &str) -> Result<Fingerprint, Failure> {
    let (host, port, _) = authority(url)?;
    let unreachable = |detail: String| Failure::Unreachable {
        url: url.to_owned(),
        detail,
    };
    let verifier = Verifier::any();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(verifier.client_config()));
    let name = ServerName::try_from(host.clone()).map_err(|e| unreachable(e.to_string()))?;
    let tcp = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        tokio::net::TcpStream::connect((host.as_str(), port)),
    )
    .await
    .map_err(|_| unreachable("no answer within 10 s".into()))?
    .map_err(|e| unreachable(e.to_string()))?;
    tokio::time::timeout(
        std::time::Duration::from_secs(10),
        connector.connect(name, tcp),
    )
    .await
    .map_err(|_| unreachable("no TLS handshake within 10 s".into()))?
    .map_err(|e| unreachable(format!("TLS handshake failed: {e}")))?;
    verifier
        .presented()
        .ok_or_else(|| unreachable("no certificate presented".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_read_back_in_every_spelling() {
        let f = Fingerprint::of(b"certificate");
        let shown = f.to_string();
        assert_eq!(shown.len(), 7 + 64);
        let upper_colons: String = shown.as_bytes()[7..]
            .chunks(2)
            .map(|p| std::str::from_utf8(p).unwrap().to_uppercase())
            .collect::<Vec<_>>()
            .join(":");
        for s in [
            shown.clone(),
            shown[7..].to_owned(),
            format!("sha256 Fingerprint={upper_colons}"),
        ] {
            assert_eq!(s.parse::<Fingerprint>(), Ok(f), "{s}");
        }
        assert!("sha256:abc".parse::<Fingerprint>().is_err());
        assert!(format!("{}zz", &shown[..shown.len() - 2])
            .parse::<Fingerprint>()
            .is_err());
    }

    #[test]
    fn only_this_machine_is_local() {
        for h in ["localhost", "127.0.0.1", "::1", "0.0.0.0", "127.8.9.1"] {
            assert!(is_local(h), "{h}");
        }
        for h in ["10.0.0.1", "nas.local", "example.com", "::ffff:10.0.0.1"] {
            assert!(!is_local(h), "{h}");
        }
    }
}
