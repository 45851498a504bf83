//! A limit on the rate of bytes sent to S3 (`[upload] max_mbps`), shared by every
//! upload of a bucket: a PUT body goes out in pieces of [`PIECE`] bytes, each when the
//! limit allows, so the total rate holds however many uploads run at once, and a home
//! uplink is never flooded by a burst.
//!
//! Invariant: pieces are given start times back to back at the rate, across all
//! uploads; time nobody used is not saved up, so over any span `t` at most
//! `rate * t + PIECE` bytes leave (plus what uploads in flight retry).

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{ready, Context, Poll};
use std::time::Duration;

use aws_sdk_s3::primitives::{ByteStream, SdkBody};
use bytes::Bytes;
use http_body::{Frame, SizeHint};
use tokio::time::{Instant, Sleep};

/// Bytes sent at once under a limit.
const PIECE: usize = 64 << 10;

/// The shared limit.
#[derive(Debug)]
pub struct Pace {
    bytes_per_sec: f64,
    /// When the next piece may start.
    next: Mutex<Instant>,
}

impl Pace {
    /// A limit of `bytes_per_sec` (`None` for no limit, or one not above zero).
    pub fn new(bytes_per_sec: Option<f64>) -> Option<Arc<Self>> {
        let rate = bytes_per_sec.filter(|r| r.is_finite() && *r > 0.0)?;
        Some(Arc::new(Self {
            bytes_per_sec: rate,
            next: Mutex::new(Instant::now()),
        }))
    }

    /// When `n` more bytes may start.
    fn reserve(&self, n: usize) -> Instant {
        let mut next = self.next.lock().unwrap_or_else(|p| p.into_inner());
        let start = (*next).max(Instant::now());
        *next = start + Duration::from_secs_f64(n as f64 / self.bytes_per_sec);
        start
    }
}

/// A body sent in paced pieces.
struct Paced {
    body: Bytes,
    sent: usize,
    pace: Arc<Pace>,
    /// The wait before the next piece, once reserved.
    wait: Option<Pin<Box<Sleep>>>,
}

impl http_body::Body for Paced {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        let n = PIECE.min(this.body.len() - this.sent);
        if n == 0 {
            return Poll::Ready(None);
        }
        let pace = &this.pace;
        let wait = this
            .wait
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(pace.reserve(n))));
        ready!(wait.as_mut().poll(cx));
        this.wait = None;
        let piece = this.body.slice(this.sent..this.sent + n);
        this.sent += n;
        Poll::Ready(Some(Ok(Frame::data(piece))))
    }

    fn is_end_stream(&self) -> bool {
        self.sent == self.body.len()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact((self.body.len() - self.sent) as u64)
    }
}

/// The body of a PUT: `body` whole, or under `pace` in pieces (sent again whole, and
/// paced again, if the SDK retries).
pub fn body(body: Bytes, pace: Option<&Arc<Pace>>) -> ByteStream {
    let Some(pace) = pace.cloned() else {
        return ByteStream::from(body);
    };
    ByteStream::new(SdkBody::retryable(move || {
        SdkBody::from_body_1_x(Paced {
            body: body.clone(),
            sent: 0,
            pace: pace.clone(),
            wait: None,
        })
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn pieces_of_parallel_bodies_share_one_rate() {
        use http_body_util::BodyExt;
        let pace = Pace::new(Some(1_000_000.0)).unwrap();
        let started = Instant::now();
        let send = |len: usize| {
            let pace = pace.clone();
            async move {
                let mut b = Paced {
                    body: Bytes::from(vec![7u8; len]),
                    sent: 0,
                    pace,
                    wait: None,
                };
                let mut got = 0;
                while let Some(frame) = b.frame().await {
                    got += frame.unwrap().into_data().unwrap().len();
                }
                got
            }
        };
        // 3 MB in three bodies at 1 MB/s: done after 3 s less the last piece's time.
        let (a, b, c) = tokio::join!(send(1_000_000), send(1_000_000), send(1_000_000));
        assert_eq!(a + b + c, 3_000_000);
        let took = started.elapsed().as_secs_f64();
        let last_piece = PIECE as f64 / 1e6;
        assert!(took >= 3.0 - 2.0 * last_piece && took <= 3.0, "{took}");
        assert!(Pace::new(Some(0.0)).is_none() && Pace::new(None).is_none());
    }
}
