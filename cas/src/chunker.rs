//! Content-defined chunking with FastCDC v2020.
//!
//! Cut points depend only on the content (a rolling gear hash), so an insertion in the
//! middle of a file changes the chunks around it and nothing else: the rest of the file
//! deduplicates against the previous version. The sizes are fixed for the life of a
//! store (changing them would stop new data from deduplicating with old data), and the
//! `fastcdc` crate is pinned to an exact version because its cut points may change
//! between majors; the golden vectors below fail loudly if they ever do.
//!
//! Every function takes the store's `seed`: 0 cuts with fastcdc's own gear table (a
//! store without an encrypted tier), anything else with that table XORed with the seed
//! (fastcdc's seeded constructor), which a store with an encrypted tier derives from
//! its master key, so that the sizes of its sealed frames do not follow a known file's
//! public cut points.

use std::io::Read;

/// Smallest chunk FastCDC emits, except for the last chunk of a file.
pub const MIN_SIZE: usize = 16 * 1024;
/// Target average chunk size.
pub const AVG_SIZE: usize = 64 * 1024;
/// Largest chunk; FastCDC cuts here whatever the content.
pub const MAX_SIZE: usize = 256 * 1024;

/// Cuts a stream into content-defined chunks, yielding each chunk's bytes in order.
///
/// Holds one `MAX_SIZE` buffer, whatever the length of the stream. An empty stream
/// yields no chunk.
pub fn chunks<R: Read>(reader: R, seed: u64) -> impl Iterator<Item = std::io::Result<Vec<u8>>> {
    use fastcdc::v2020::{Normalization, StreamCDC};
    let level = Normalization::Level1;
    StreamCDC::with_level_and_seed(reader, MIN_SIZE, AVG_SIZE, MAX_SIZE, level, seed).map(|r| {
        r.map(|c| c.data).map_err(|e| match e {
            fastcdc::v2020::Error::IoError(io) => io,
            other => std::io::Error::other(other.to_string()),
        })
    })
}

/// [`chunks`] of a stream expected to hold `size` bytes (a file's length when it was
/// stat'ed), with the same chunks whatever it really holds. A stream of at most
/// `MAX_SIZE` bytes is read whole into a buffer of its own length and cut in memory:
/// most files of a tree are small, and a zeroed `MAX_SIZE` buffer per file cost more
/// (allocation, page faults) than hashing them. A longer one is streamed.
pub fn chunks_sized<'a, R: Read + 'a>(
    mut reader: R,
    size: u64,
    seed: u64,
) -> Box<dyn Iterator<Item = std::io::Result<Vec<u8>>> + 'a> {
    if size > MAX_SIZE as u64 {
        return Box::new(chunks(reader, seed));
    }
    let mut head = Vec::with_capacity(size as usize + 1);
    if let Err(e) = (&mut reader)
        .take(MAX_SIZE as u64 + 1)
        .read_to_end(&mut head)
    {
        return Box::new(std::iter::once(Err(e)));
    }
    if head.len() > MAX_SIZE {
        // It grew since its size was taken: stream what was read, then the rest.
        return Box::new(chunks(std::io::Cursor::new(head).chain(reader), seed));
    }
    let lens = cut_lengths(&head, seed);
    if lens.len() == 1 {
        return Box::new(std::iter::once(Ok(head)));
    }
    let mut start = 0;
    let pieces: Vec<_> = lens
        .into_iter()
        .map(|len| {
            start += len;
            Ok(head[start - len..start].to_vec())
        })
        .collect();
    Box::new(pieces.into_iter())
}

/// Chunks a stream that arrives in pieces (an HTTP body), with the same cut points as
/// [`chunks`] over the whole stream, holding at most about two `MAX_SIZE` of it.
///
/// A chunk's cut point depends only on the `MAX_SIZE` bytes from its start, so a chunk
/// is final as soon as that many bytes past its start have arrived.
pub struct Incremental {
    buf: Vec<u8>,
    seed: u64,
}

impl Incremental {
    pub fn new(seed: u64) -> Self {
        Self {
            buf: Vec::new(),
            seed,
        }
    }

    /// Adds `data`; returns the chunks it completed, in order.
    pub fn push(&mut self, data: &[u8]) -> Vec<Vec<u8>> {
        self.buf.extend_from_slice(data);
        let mut out = Vec::new();
        let mut start = 0;
        while self.buf.len() - start >= MAX_SIZE {
            let len = cut_lengths(&self.buf[start..start + MAX_SIZE], self.seed)[0];
            out.push(self.buf[start..start + len].to_vec());
            start += len;
        }
        self.buf.drain(..start);
        out
    }

    /// The chunks of what is left once the stream has ended.
    pub fn finish(self) -> Vec<Vec<u8>> {
        let mut start = 0;
        cut_lengths(&self.buf, self.seed)
            .into_iter()
            .map(|len| {
                start += len;
                self.buf[start - len..start].to_vec()
            })
            .collect()
    }
}

/// Cut points (chunk lengths) of an in-memory buffer, without copying it.
pub fn cut_lengths(data: &[u8], seed: u64) -> Vec<usize> {
    use fastcdc::v2020::{FastCDC, Normalization};
    let level = Normalization::Level1;
    FastCDC::with_level_and_seed(data, MIN_SIZE, AVG_SIZE, MAX_SIZE, level, seed)
        .map(|c| c.length)
        .collect()
}

/// Deterministic pseudo-random bytes (xorshift64*), so golden vectors and tests need no
/// fixture files.
#[cfg(test)]
pub(crate) fn test_noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            (x.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 56) as u8
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    use super::test_noise as noise;

    #[test]
    fn golden_cut_points() {
        let data = noise(42, 1 << 20);
        assert_eq!(cut_lengths(&data, 0), GOLDEN_1MIB_SEED42);
        assert_eq!(cut_lengths(&data, KEYED), GOLDEN_1MIB_SEED42_KEYED);
    }

    /// A seed as a store with an encrypted tier derives one.
    const KEYED: u64 = 0x9e37_79b9_7f4a_7c15;

    #[test]
    fn keyed_cut_points_differ_and_keep_their_bounds() {
        let data = noise(5, 4 << 20);
        let plain = cut_lengths(&data, 0);
        for seed in [KEYED, 1, u64::MAX] {
            let keyed = cut_lengths(&data, seed);
            assert_ne!(keyed, plain, "seed {seed:x}");
            assert_eq!(keyed.iter().sum::<usize>(), data.len());
            let streamed: Vec<usize> = chunks(&data[..], seed).map(|c| c.unwrap().len()).collect();
            assert_eq!(streamed, keyed);
        }
    }

    const GOLDEN_1MIB_SEED42: [usize; 11] = [
        80107, 137932, 51263, 102722, 40242, 176227, 71158, 156174, 78071, 144413, 10267,
    ];
    const GOLDEN_1MIB_SEED42_KEYED: [usize; 13] = [
        89639, 127319, 71035, 61599, 75351, 81747, 86594, 106181, 116054, 72181, 52335, 66705,
        41836,
    ];

    #[test]
    fn stream_and_slice_agree_and_cover_input() {
        let data = noise(7, 3 << 20);
        let streamed: Vec<Vec<u8>> = chunks(&data[..], 0).map(Result::unwrap).collect();
        let lens: Vec<usize> = streamed.iter().map(Vec::len).collect();
        assert_eq!(lens, cut_lengths(&data, 0));
        assert_eq!(streamed.concat(), data);
        assert!(chunks(&[][..], 0).next().is_none());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]

        /// Pieces of any size give the same chunks as the whole stream.
        #[test]
        fn incremental_matches_whole_stream(seed in any::<u64>(), len in 0usize..1_500_000, piece in 1usize..300_000, keyed in any::<bool>()) {
            let data = noise(seed, len);
            let cut = if keyed { KEYED } else { 0 };
            let mut inc = Incremental::new(cut);
            let mut got: Vec<Vec<u8>> = Vec::new();
            for p in data.chunks(piece) {
                got.extend(inc.push(p));
                prop_assert!(inc.buf.len() < MAX_SIZE + piece);
            }
            got.extend(inc.finish());
            let lens: Vec<usize> = got.iter().map(Vec::len).collect();
            prop_assert_eq!(lens, cut_lengths(&data, cut));
            prop_assert_eq!(got.concat(), data);
        }

        /// Whatever size the caller expected, the same chunks as streaming.
        #[test]
        fn sized_matches_stream(seed in any::<u64>(), len in 0usize..700_000, hint in 0u64..700_000, keyed in any::<bool>()) {
            let data = noise(seed, len);
            let cut = if keyed { KEYED } else { 0 };
            let sized: Vec<Vec<u8>> = chunks_sized(&data[..], hint, cut).map(Result::unwrap).collect();
            let streamed: Vec<Vec<u8>> = chunks(&data[..], cut).map(Result::unwrap).collect();
            prop_assert_eq!(sized, streamed);
        }

        /// Every chunk is within bounds (the last may be short) and the chunks cover the input.
        #[test]
        fn chunks_respect_bounds(seed in any::<u64>(), len in 0usize..2_000_000) {
            let data = noise(seed, len);
            let lens = cut_lengths(&data, 0);
            prop_assert_eq!(lens.iter().sum::<usize>(), len);
            for (i, l) in lens.iter().enumerate() {
                prop_assert!(*l <= MAX_SIZE);
                prop_assert!(*l >= MIN_SIZE || i + 1 == lens.len());
            }
        }

        /// Inserting bytes in the middle changes only chunks near the insertion: cut
        /// points re-synchronise, so most chunks of the edited file are reused.
        #[test]
        fn cut_points_resynchronise_after_insert(seed in any::<u64>(), at in 0.3f64..0.7, ins in 1usize..5000) {
            let data = noise(seed, 4 << 20);
            let pos = (data.len() as f64 * at) as usize;
            let mut edited = data[..pos].to_vec();
            edited.extend(noise(seed ^ 0xdead, ins));
            edited.extend_from_slice(&data[pos..]);
            let ids = |d: &[u8]| -> std::collections::HashSet<crate::ChunkId> {
                let mut off = 0;
                cut_lengths(d, KEYED).into_iter().map(|l| { off += l; crate::ChunkId::of(&d[off - l..off]) }).collect()
            };
            let (a, b) = (ids(&data), ids(&edited));
            let changed = b.difference(&a).count();
            // A few chunks around the edit change (the insertion, and cut points that the
            // minimum-size skip moves); everything after it is shared again.
            prop_assert!(changed <= 8, "{} of {} chunks changed", changed, b.len());
        }
    }
}
