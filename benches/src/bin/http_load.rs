//! Load against a running `fvfsd serve`: chunk PUT and GET throughput for 64 KiB
//! chunks with 1, 4 and 16 concurrent clients, the missing-ids question for 10,000
//! ids, and the listing of a 10,000-entry directory. Prints medians.
//!
//! Usage: http-load URL   (a fresh daemon: it writes chunks and a /bench-ls directory)

use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt;
use fvfs_api::client::{full, Api};
use fvfs_api::commit::{CommitOp, CommitRequest};
use fvfs_api::reports::Ids;
use fvfs_api::routes::{call, Call};
use fvfs_cas::ChunkId;

const CHUNK: usize = 64 << 10;
const CHUNKS: usize = 2048;

fn chunk(i: usize) -> Bytes {
    let mut x = (i as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    Bytes::from(
        (0..CHUNK)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect::<Vec<u8>>(),
    )
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

async fn throughput(api: &Api, chunks: &[(ChunkId, Bytes)], concurrency: usize, put: bool) -> f64 {
    let start = Instant::now();
    futures::stream::iter(chunks.iter().cloned())
        .map(|(id, data)| async move {
            if put {
                let to = call::ChunkPut::named(&id.to_hex());
                api.ask_raw(to, full(data), "application/octet-stream")
                    .await
                    .expect("PUT");
            } else {
                let got = api
                    .fetch(call::ChunkGet::named(&id.to_hex()))
                    .await
                    .expect("GET");
                assert_eq!(got.len(), CHUNK);
            }
        })
        .buffer_unordered(concurrency)
        .collect::<Vec<()>>()
        .await;
    (chunks.len() * CHUNK) as f64 / start.elapsed().as_secs_f64() / 1e6
}

#[tokio::main]
async fn main() {
    let url = std::env::args().nth(1).expect("usage: http-load URL");
    let pin = std::env::var("FVFS_FINGERPRINT")
        .ok()
        .and_then(|f| f.parse().ok());
    let api = Api::new(url, std::env::var("FVFS_TOKEN").ok(), "http-load", pin);
    println!("| clients | PUT MB/s | GET MB/s |\n|---|---|---|");
    for (round, concurrency) in [1usize, 4, 16].into_iter().enumerate() {
        // Distinct chunks per round, so every PUT stores a new chunk.
        let chunks: Vec<(ChunkId, Bytes)> = (0..CHUNKS)
            .map(|i| chunk(round * CHUNKS + i))
            .map(|c| (ChunkId::of(&c), c))
            .collect();
        let put = throughput(&api, &chunks, concurrency, true).await;
        let get = throughput(&api, &chunks, concurrency, false).await;
        println!("| {concurrency} | {put:.0} | {get:.0} |");
    }

    let ids = Ids {
        ids: (0..10_000)
            .map(|i| ChunkId::of(format!("probe {i}").as_bytes()))
            .collect(),
    };
    let mut times = Vec::new();
    for _ in 0..21 {
        let t = Instant::now();
        let answer = api
            .ask_with(call::ChunksMissing::plain(), &ids)
            .await
            .expect("missing");
        times.push(t.elapsed());
        assert_eq!(answer.missing.len(), 10_000);
    }
    println!(
        "\nmissing-ids question, 10,000 ids: median {:.1} ms",
        median(times).as_secs_f64() * 1e3
    );

    let data = chunk(999_999);
    let id = ChunkId::of(&data);
    let to = call::ChunkPut::named(&id.to_hex());
    api.ask_raw(to, full(data), "application/octet-stream")
        .await
        .expect("PUT");
    let ops = (0..10_000)
        .map(|i| CommitOp::File {
            path: format!("/bench-ls/file-{i:05}"),
            mode: 0o644,
            mtime_ns: 0,
            size: CHUNK as u64,
            node: None,
            chunks: vec![(id.to_hex(), CHUNK as u64)],
            meta: None,
            link: None,
            expect: None,
        })
        .collect();
    let commit = CommitRequest {
        message: "bench".into(),
        ops,
    };
    api.ask_with(call::Commit::plain(), &commit)
        .await
        .expect("commit");
    let mut times = Vec::new();
    for _ in 0..21 {
        let t = Instant::now();
        let listing = api.ask(call::Ls::at("/bench-ls")).await.expect("ls");
        times.push(t.elapsed());
        assert_eq!(listing.entries.len(), 10_000);
    }
    println!(
        "GET /v1/ls of a 10,000-entry directory: median {:.1} ms",
        median(times).as_secs_f64() * 1e3
    );
}
