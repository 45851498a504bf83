//! Throughput of each ingest stage on 32 MiB of half-text, half-noise data:
//! FastCDC chunking, BLAKE3 per chunk, frame encoding (zstd-3) and decoding, and
//! the three ingest stages together.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use fvfs_cas::{chunker, frame, ChunkId};

fn data(len: usize) -> Vec<u8> {
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    (0..len)
        .map(|i| {
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            let b = (x.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 56) as u8;
            // Alternate 1 MiB of text-like bytes and 1 MiB of noise.
            if (i >> 20) % 2 == 0 {
                b"etaoin shrdlu\n"[(b % 14) as usize]
            } else {
                b
            }
        })
        .collect()
}

fn pipeline(c: &mut Criterion) {
    let input = data(32 << 20);
    let lens = chunker::cut_lengths(&input, 0);
    let chunks: Vec<&[u8]> = {
        let mut off = 0;
        lens.iter()
            .map(|l| {
                off += l;
                &input[off - l..off]
            })
            .collect()
    };
    let frames: Vec<(ChunkId, Vec<u8>)> = chunks
        .iter()
        .map(|c| (ChunkId::of(c), frame::encode(c)))
        .collect();

    let mut g = c.benchmark_group("ingest");
    g.throughput(Throughput::Bytes(input.len() as u64));
    g.sample_size(10);
    g.bench_function("fastcdc_chunking", |b| {
        b.iter(|| chunker::cut_lengths(&input, 0).len())
    });
    g.bench_function("blake3_per_chunk", |b| {
        b.iter(|| chunks.iter().map(|c| ChunkId::of(c)).collect::<Vec<_>>())
    });
    g.bench_function("frame_encode_zstd3", |b| {
        b.iter(|| chunks.iter().map(|c| frame::encode(c).len()).sum::<usize>())
    });
    g.bench_function("frame_decode_verify", |b| {
        b.iter(|| {
            frames
                .iter()
                .map(|(id, f)| frame::decode(id, f).unwrap().len())
                .sum::<usize>()
        })
    });
    g.bench_function("chunk_hash_encode", |b| {
        b.iter(|| {
            chunker::chunks(&input[..], 0)
                .map(|c| {
                    let c = c.unwrap();
                    (ChunkId::of(&c), frame::encode(&c).len())
                })
                .count()
        })
    });
    g.finish();
}

criterion_group!(benches, pipeline);
criterion_main!(benches);
