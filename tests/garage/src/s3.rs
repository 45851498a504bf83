//! Where a node serves S3 and the key for it, and SigV4-signed requests with that key:
//! HeadBucket (the readiness check), and the object calls tests need.

use std::time::SystemTime;

use anyhow::{bail, Context, Result};
use aws_credential_types::Credentials;
use aws_sigv4::http_request::{
    sign, PayloadChecksumKind, PercentEncodingMode, SignableBody, SignableRequest, SigningSettings,
    UriPathNormalizationMode,
};
use aws_sigv4::sign::v4;
use bytes::Bytes;
use http_body_util::Full;
use hyper::Request;

pub use crate::http::Answer;
use crate::REGION;

/// An S3 endpoint, a bucket on it, and a key allowed to read and write it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct S3Access {
    /// `http://127.0.0.1:PORT`
    pub endpoint: String,
    pub bucket: String,
    pub key_id: String,
    pub secret: String,
}

impl S3Access {
    /// A signed request on the bucket: `path_and_query` follows the bucket's name
    /// (`/key`, `/?list-type=2`, or empty for the bucket itself). An error only when no
    /// answer came; any status is an answer.
    pub fn send(&self, method: &str, path_and_query: &str, body: &[u8]) -> Result<Answer> {
        let url = format!("{}/{}{path_and_query}", self.endpoint, self.bucket);
        let mut req = Request::builder()
            .method(method)
            .uri(&url)
            .body(Full::new(Bytes::copy_from_slice(body)))?;
        self.sign(&mut req, body)
            .with_context(|| format!("sign {method} {url}"))?;
        crate::http::send(req)
    }

    /// The status of a HeadBucket: 200 once the node serves the bucket to this key.
    pub fn head_bucket(&self) -> Result<u16> {
        Ok(self.send("HEAD", "", &[])?.status)
    }

    /// The bytes of object `key`.
    pub fn object(&self, key: &str) -> Result<Vec<u8>> {
        Ok(self.expect_ok("GET", key, &[])?.body)
    }

    /// Stores `bytes` as object `key`.
    pub fn put_object(&self, key: &str, bytes: &[u8]) -> Result<()> {
        self.expect_ok("PUT", key, bytes).map(drop)
    }

    fn expect_ok(&self, method: &str, key: &str, body: &[u8]) -> Result<Answer> {
        let answer = self.send(method, &format!("/{key}"), body)?;
        if !answer.ok() {
            bail!(
                "S3 {method} {key}: HTTP {}: {}",
                answer.status,
                answer.text()
            );
        }
        Ok(answer)
    }

    /// Adds SigV4 headers (with `x-amz-content-sha256`) to `req`, whose body is `body`.
    fn sign(&self, req: &mut Request<Full<Bytes>>, body: &[u8]) -> Result<()> {
        let identity =
            Credentials::new(&self.key_id, &self.secret, None, None, "fvfs-garage").into();
        // As S3 wants it: the payload's hash sent, the path neither re-encoded nor
        // normalized.
        let mut settings = SigningSettings::default();
        settings.payload_checksum_kind = PayloadChecksumKind::XAmzSha256;
        settings.percent_encoding_mode = PercentEncodingMode::Single;
        settings.uri_path_normalization_mode = UriPathNormalizationMode::Disabled;
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region(REGION)
            .name("s3")
            .time(SystemTime::now())
            .settings(settings)
            .build()?
            .into();
        let uri = req.uri().to_string();
        let signable = SignableRequest::new(
            req.method().as_str(),
            &uri,
            std::iter::empty(),
            SignableBody::Bytes(body),
        )?;
        let (instructions, _) = sign(signable, &params)?.into_parts();
        instructions.apply_to_request_http1x(req);
        Ok(())
    }
}
