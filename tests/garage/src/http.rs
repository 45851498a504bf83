//! Blocking HTTP/1 requests to loopback (the admin API and S3), over hyper on a runtime
//! of the request's own: no connection outlives its request, so a node stopped and
//! restarted is never reached through a stale pooled connection.
//!
//! Blocking: call it from plain threads, not from inside an async runtime.

use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

/// How long one request may take, answer included.
const TIMEOUT: Duration = Duration::from_secs(10);

/// An HTTP answer: its status and whole body.
#[derive(Clone, Debug)]
pub struct Answer {
    pub status: u16,
    pub body: Vec<u8>,
}

impl Answer {
    pub fn ok(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The body as text, for error messages.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Sends `req`; an error when no answer came (refused, reset, timed out).
pub fn send(req: Request<Full<Bytes>>) -> Result<Answer> {
    let uri = req.uri().clone();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("tokio runtime")?;
    rt.block_on(async {
        let client = Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(0)
            .build_http();
        let exchange = async {
            let resp = client.request(req).await?;
            let status = resp.status().as_u16();
            let body = resp.into_body().collect().await?.to_bytes().to_vec();
            Ok::<_, anyhow::Error>(Answer { status, body })
        };
        tokio::time::timeout(TIMEOUT, exchange)
            .await
            .map_err(|_| anyhow!("no answer within {TIMEOUT:?}"))?
    })
    .with_context(|| format!("{uri}"))
}
