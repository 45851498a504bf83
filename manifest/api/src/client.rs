//! The HTTP client of the daemon's API (feature `client`): requests with the token and
//! a user agent, and errors a script can act on (the daemon's `{"error", "detail"}`,
//! or no daemon at all). Used by fvfsc, and by fvfsd commands when a daemon holds the
//! store.

use std::convert::Infallible;

use bytes::Bytes;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde::de::DeserializeOwned;
use serde::Serialize;

pub use crate::failure::Failure;
use crate::path::encode_path;
use crate::queries::{Between, Limit};
use crate::reports::{Rollback, SnapshotCreate, Status};
use crate::routes::{call, Call, Raw, To};
use crate::tls::{self, Fingerprint, Verifier};
use crate::views::{ChangeInfo, PathChange, SnapshotInfo, VersionInfo};
use crate::{ErrorBody, ErrorCode};

pub type Body = UnsyncBoxBody<Bytes, std::io::Error>;

/// Sent on every request: a web page cannot send it without the daemon's consent, so the
/// daemon accepts changes that carry it whatever their content type.
pub const CLIENT_HEADER: &str = "x-fvfs-client";

/// Largest answer read whole (JSON answers, error bodies, tree nodes); bodies that can be
/// larger are streamed by their callers.
pub const MAX_ANSWER: usize = 256 << 20;

pub fn full(data: impl Into<Bytes>) -> Body {
    Full::new(data.into())
        .map_err(|e: Infallible| match e {})
        .boxed_unsync()
}

#[derive(Clone)]
pub struct Api {
    pub base: String,
    token: Option<String>,
    /// A token may go out on this connection: HTTPS, or plain HTTP to this machine.
    private: bool,
    agent: String,
    client: Client<HttpsConnector<HttpConnector>, Body>,
}

impl Api {
    /// A client of the daemon at `base`; `program` names the caller in the user agent.
    /// Over HTTPS the daemon must present the certificate `pin` names (none: every
    /// connection is refused).
    pub fn new(
        base: String,
        token: Option<String>,
        program: &str,
        pin: Option<Fingerprint>,
    ) -> Self {
        let host = rustix::system::uname()
            .nodename()
            .to_string_lossy()
            .into_owned();
        let base = base.trim_end_matches('/').to_owned();
        let private =
            tls::authority(&base).is_ok_and(|(host, _, https)| https || tls::is_local(&host));
        let verifier = Verifier::new(pin);
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        // Requests stream in pieces too (batches of chunks being uploaded).
        http.set_nodelay(true);
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(verifier.client_config())
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        Self {
            base,
            token,
            private,
            agent: format!("{program}/{} ({host})", env!("CARGO_PKG_VERSION")),
            // Idle connections are dropped well before the daemon's idle timeout (30 s
            // by default) closes them, so a request never goes out on a closing one.
            client: Client::builder(TokioExecutor::new())
                .pool_idle_timeout(std::time::Duration::from_secs(10))
                .build(connector),
        }
    }

    /// Sends a request made from the route table; a non-2xx answer becomes
    /// [`Failure::Refused`].
    pub async fn send<C>(
        &self,
        to: &To<C>,
        body: Body,
        content_type: Option<&str>,
    ) -> Result<Response<Incoming>, Failure> {
        let to = &to.target;
        let url = format!("{}{}", self.base, to.path);
        let mut req = Request::builder()
            .method(to.verb.as_str())
            .uri(&url)
            .header("user-agent", &self.agent)
            .header(CLIENT_HEADER, "fvfs");
        if let Some(t) = &self.token {
            if !self.private {
                return Err(Failure::Insecure {
                    url: self.base.clone(),
                });
            }
            req = req.header("authorization", format!("Bearer {t}"));
        }
        if let Some(ct) = content_type {
            req = req.header("content-type", ct);
        }
        let req = req
            .body(body)
            .map_err(|e| Failure::Protocol(e.to_string()))?;
        let resp = self.client.request(req).await.map_err(|e| {
            if let Some(refused) = tls::not_pinned(&e) {
                return Failure::Identity {
                    url: self.base.clone(),
                    pinned: refused.pinned,
                    presented: refused.presented,
                };
            }
            let mut detail = e.to_string();
            let mut source = std::error::Error::source(&e);
            while let Some(s) = source {
                detail = format!("{detail}: {s}");
                source = s.source();
            }
            Failure::Unreachable {
                url: self.base.clone(),
                detail,
            }
        })?;
        if resp.status().is_success() {
            return Ok(resp);
        }
        let status = resp.status();
        let raw = http_body_util::Limited::new(resp.into_body(), 1 << 20)
            .collect()
            .await
            .map(|c| c.to_bytes())
            .unwrap_or_default();
        Err(match serde_json::from_slice::<ErrorBody>(&raw) {
            Ok(e) => Failure::Refused {
                status,
                error: e.error,
                detail: e.detail,
            },
            Err(_) => Failure::Refused {
                status,
                error: ErrorCode::Unknown,
                detail: format!("HTTP {status}"),
            },
        })
    }

    /// A request and its whole answer (at most [`MAX_ANSWER`] bytes).
    pub async fn bytes<C>(
        &self,
        to: &To<C>,
        body: Body,
        content_type: Option<&str>,
    ) -> Result<Bytes, Failure> {
        let resp = self.send(to, body, content_type).await?;
        http_body_util::Limited::new(resp.into_body(), MAX_ANSWER)
            .collect()
            .await
            .map(|c| c.to_bytes())
            .map_err(|e| Failure::Protocol(format!("{}: {e}", to.target.path)))
    }

    /// Route `C`'s answer of bytes (a chunk, a node) to a request without a body.
    pub async fn fetch<C: Call<Request = (), Answer = Raw>>(
        &self,
        to: To<C>,
    ) -> Result<Bytes, Failure> {
        self.bytes(&to, full(Bytes::new()), None).await
    }

    /// Route `C`'s answer of bytes (chunk frames) to a request with `body`.
    pub async fn fetch_with<C: Call<Answer = Raw>>(
        &self,
        to: To<C>,
        body: &C::Request,
    ) -> Result<Bytes, Failure>
    where
        C::Request: Serialize,
    {
        self.bytes(&to, json_body(body)?, Some("application/json"))
            .await
    }

    /// Route `C`'s answer to a request without a body.
    pub async fn ask<C: Call<Request = ()>>(&self, to: To<C>) -> Result<C::Answer, Failure>
    where
        C::Answer: DeserializeOwned,
    {
        let raw = self.bytes(&to, full(Bytes::new()), None).await?;
        decode(&to.target.path, &raw)
    }

    /// Route `C`'s answer to a request whose body is bytes (file contents, chunk frames).
    pub async fn ask_raw<C: Call<Request = Raw>>(
        &self,
        to: To<C>,
        body: Body,
        content_type: &str,
    ) -> Result<C::Answer, Failure>
    where
        C::Answer: DeserializeOwned,
    {
        let raw = self.bytes(&to, body, Some(content_type)).await?;
        decode(&to.target.path, &raw)
    }

    /// Route `C`'s answer to a request with `body`.
    pub async fn ask_with<C: Call>(
        &self,
        to: To<C>,
        body: &C::Request,
    ) -> Result<C::Answer, Failure>
    where
        C::Request: Serialize,
        C::Answer: DeserializeOwned,
    {
        let raw = self
            .bytes(&to, json_body(body)?, Some("application/json"))
            .await?;
        decode(&to.target.path, &raw)
    }
}

fn json_body<T: Serialize>(body: &T) -> Result<Body, Failure> {
    let raw = serde_json::to_vec(body).map_err(|e| Failure::Protocol(e.to_string()))?;
    Ok(full(raw))
}

fn decode<T: DeserializeOwned>(path: &str, raw: &[u8]) -> Result<T, Failure> {
    serde_json::from_slice(raw).map_err(|e| Failure::Protocol(format!("{path}: {e}")))
}

/// The typed calls that both fvfsc and fvfsd (through a running daemon) make.
impl Api {
    pub async fn snapshot_create(&self, name: &str) -> Result<VersionInfo, Failure> {
        let body = SnapshotCreate { name: name.into() };
        self.ask_with(call::SnapshotCreate::plain(), &body).await
    }

    pub async fn snapshots(&self) -> Result<Vec<SnapshotInfo>, Failure> {
        self.ask(call::Snapshots::plain()).await
    }

    /// Deletes a snapshot name; returns the version it named.
    pub async fn snapshot_delete(&self, name: &str) -> Result<u64, Failure> {
        let to = call::SnapshotDelete::named(&encode_path(name.as_bytes()));
        let gone = self.ask(to).await?;
        Ok(gone.version)
    }

    pub async fn log(&self, limit: Option<usize>) -> Result<Vec<VersionInfo>, Failure> {
        self.ask(call::Versions::plain().with(&Limit { limit }))
            .await
    }

    pub async fn version(&self, spec: &str) -> Result<VersionInfo, Failure> {
        self.ask(call::Version::named(&encode_path(spec.as_bytes())))
            .await
    }

    pub async fn rollback(&self, to: &str) -> Result<VersionInfo, Failure> {
        let body = Rollback { to: to.into() };
        self.ask_with(call::Rollback::plain(), &body).await
    }

    pub async fn diff(&self, a: &str, b: &str) -> Result<Vec<ChangeInfo>, Failure> {
        let (a, b) = (a.to_owned(), b.to_owned());
        self.ask(call::Diff::plain().with(&Between { a, b })).await
    }

    /// The versions in which `path` changed, newest first.
    pub async fn path_log(
        &self,
        path: &[u8],
        limit: Option<usize>,
    ) -> Result<Vec<PathChange>, Failure> {
        let to = call::History::at(&encode_path(path)).with(&Limit { limit });
        self.ask(to).await
    }

    pub async fn status(&self) -> Result<Status, Failure> {
        self.ask(call::Status::plain()).await
    }
}

/// The history commands through a daemon: its typed calls above.
#[cfg(feature = "cli")]
#[async_trait::async_trait]
impl crate::cli::History for Api {
    async fn snapshot_create(&self, name: &str) -> anyhow::Result<VersionInfo> {
        Ok(Api::snapshot_create(self, name).await?)
    }

    async fn snapshots(&self) -> anyhow::Result<Vec<SnapshotInfo>> {
        Ok(Api::snapshots(self).await?)
    }

    async fn snapshot_delete(&self, name: &str) -> anyhow::Result<u64> {
        Ok(Api::snapshot_delete(self, name).await?)
    }

    async fn log(&self, limit: Option<usize>) -> anyhow::Result<Vec<VersionInfo>> {
        Ok(Api::log(self, limit).await?)
    }

    async fn path_log(&self, path: &[u8], limit: Option<usize>) -> anyhow::Result<Vec<PathChange>> {
        Ok(Api::path_log(self, path, limit).await?)
    }

    async fn version(&self, spec: &str) -> anyhow::Result<VersionInfo> {
        Ok(Api::version(self, spec).await?)
    }

    async fn rollback(&self, spec: &str) -> anyhow::Result<VersionInfo> {
        Ok(Api::rollback(self, spec).await?)
    }

    async fn diff(&self, a: &str, b: &str) -> anyhow::Result<Vec<ChangeInfo>> {
        Ok(Api::diff(self, a, b).await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    /// A TLS server on loopback with a certificate of its own, completing handshakes
    /// and answering nothing; its fingerprint.
    async fn tls_server() -> (
        std::net::SocketAddr,
        Fingerprint,
        tokio::task::JoinHandle<()>,
    ) {
        let made = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
        let der = made.cert.der().clone();
        let fingerprint = Fingerprint::of(&der);
        let key = rustls::pki_types::PrivateKeyDer::Pkcs8(made.signing_key.serialize_der().into());
        let config = rustls::ServerConfig::builder_with_provider(tls::provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![der], key)
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let _ = acceptor.accept(tcp).await;
            }
        });
        (addr, fingerprint, server)
    }

    #[tokio::test]
    async fn a_refused_certificate_is_reported_by_the_requests_it_failed_only() {
        let (addr, presented, server) = tls_server().await;
        let pinned = Fingerprint::of(b"another certificate");
        let api = Api::new(format!("https://{addr}"), None, "test", Some(pinned));
        let status = call::Status::plain();
        match api.send(&status, full(""), None).await {
            Err(Failure::Identity {
                presented: p,
                pinned: q,
                ..
            }) => assert_eq!((p, q), (presented, pinned)),
            other => panic!("{other:?}"),
        }
        // The daemon goes away: the same client now says so, not "someone else".
        server.abort();
        let _ = server.await;
        match api.send(&status, full(""), None).await {
            Err(Failure::Unreachable { .. }) => {}
            other => panic!("{other:?}"),
        }
    }
}
