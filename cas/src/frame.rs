//! Chunk frames: how a chunk is laid out on every store.
//!
//! ```text
//! offset  size  field
//! 0       2     magic "FV"
//! 2       1     format version (1)
//! 3       1     codec: 0 = raw, 1 = zstd
//! 4       4     raw length, little endian
//! 8       ...   payload
//! ```
//!
//! The payload is zstd-compressed unless compression does not shrink it. A frame does
//! not carry its id: stores name frames by id and [`decode`] checks that the decoded
//! bytes hash to the id they were asked for, so a frame can never be served under
//! the wrong name. Decoding is bounded: a hostile header cannot make it allocate more
//! than [`MAX_RAW_LEN`].

use crate::ChunkId;

const MAGIC: &[u8; 2] = b"FV";
const VERSION: u8 = 1;
const CODEC_RAW: u8 = 0;
const CODEC_ZSTD: u8 = 1;
/// Bytes before the payload.
pub const HEADER_LEN: usize = 8;
/// Largest raw chunk a frame may hold: data chunks are at most 256 KiB, but tree nodes
/// of huge directories can be larger.
pub const MAX_RAW_LEN: usize = 64 << 20;
/// zstd level: level 3 costs about 15% more CPU than level 1 on the measured data
/// and stores a few percent less.
const ZSTD_LEVEL: i32 = 3;
/// zstd level of [`encode_dense`]. On every 30th chunk of a Rust sysroot (83 MB raw,
/// one core), compressed to: level 3 0.288 of the raw size at 361 MB/s, level 9 0.270
/// at 77 MB/s, level 15 0.257 at 11 MB/s, level 19 0.254 at 4 MB/s (benches/README.md,
/// 2026-12-04, thirteenth session).
pub const DENSE_LEVEL: i32 = 15;

/// Why a frame was rejected.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FrameError {
    #[error("frame is shorter than its header")]
    Truncated,
    #[error("bad magic bytes")]
    BadMagic,
    #[error("unsupported frame version {0}")]
    UnsupportedVersion(u8),
    #[error("unknown codec {0}")]
    UnknownCodec(u8),
    #[error("raw length {0} exceeds the {MAX_RAW_LEN}-byte limit")]
    TooLarge(usize),
    #[error("payload does not decode to the declared {0} bytes")]
    BadPayload(usize),
    #[error("content hashes to {actual}, not {expected}")]
    HashMismatch { expected: ChunkId, actual: ChunkId },
}

/// Encodes `raw` as a frame, compressing it when that makes it smaller.
///
/// # Panics
/// If `raw` is larger than [`MAX_RAW_LEN`]; callers chunk data well below it.
pub fn encode(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    encode_into(&mut out, raw);
    out.shrink_to_fit();
    out
}

/// [`encode`], appended to `out`: compressed in place, without an allocation of its
/// own when `out` has room for [`max_len`] more bytes (a client framing a batch).
///
/// # Panics
/// As [`encode`].
pub fn encode_into(out: &mut Vec<u8>, raw: &[u8]) {
    thread_local! {
        // Creating a zstd context costs as much as compressing a small chunk: keep one per thread.
        static FAST: Compressor = compressor(ZSTD_LEVEL);
    }
    encode_with(out, raw, &FAST)
}

/// The most bytes the frame of `raw_len` bytes can take.
pub fn max_len(raw_len: usize) -> usize {
    HEADER_LEN + zstd::zstd_safe::compress_bound(raw_len).max(raw_len)
}

/// [`encode`] at [`DENSE_LEVEL`]: about 10% smaller on source trees, at a thirtieth of
/// the speed; decodes as fast. For frames rewritten while the machine is idle.
///
/// # Panics
/// As [`encode`].
pub fn encode_dense(raw: &[u8]) -> Vec<u8> {
    thread_local! {
        static DENSE: Compressor = compressor(DENSE_LEVEL);
    }
    let mut out = Vec::new();
    encode_with(&mut out, raw, &DENSE);
    out.shrink_to_fit();
    out
}

/// Whether `frame` holds its content uncompressed (compression did not shrink it).
pub fn is_raw(frame: &[u8]) -> bool {
    frame.get(3) == Some(&CODEC_RAW)
}

type Compressor = std::cell::RefCell<Option<zstd::bulk::Compressor<'static>>>;

fn compressor(level: i32) -> Compressor {
    std::cell::RefCell::new(zstd::bulk::Compressor::new(level).ok())
}

/// Appends the frame of `raw` to `out`: the payload compressed straight after its
/// header, or, when that does not shrink it, `raw` as it is.
fn encode_with(
    out: &mut Vec<u8>,
    raw: &[u8],
    compressor: &'static std::thread::LocalKey<Compressor>,
) {
    assert!(
        raw.len() <= MAX_RAW_LEN,
        "chunk of {} bytes is too large",
        raw.len()
    );
    let start = out.len();
    out.reserve(max_len(raw.len()));
    push_header(out, CODEC_ZSTD, raw.len());
    let mut payload = std::io::Cursor::new(&mut *out);
    payload.set_position((start + HEADER_LEN) as u64);
    let compressed = compressor.with(|c| {
        let mut c = c.borrow_mut();
        c.as_mut()?.compress_to_buffer(raw, &mut payload).ok()
    });
    if compressed.is_none_or(|n| n >= raw.len()) {
        out.truncate(start);
        push_header(out, CODEC_RAW, raw.len());
        out.extend_from_slice(raw);
    }
}

/// Appends a frame's header for `raw_len` bytes under `codec`.
fn push_header(out: &mut Vec<u8>, codec: u8, raw_len: usize) {
    out.extend_from_slice(MAGIC);
    out.push(VERSION);
    out.push(codec);
    out.extend_from_slice(&(raw_len as u32).to_le_bytes());
}

/// The frame of `raw` uncompressed: for bytes served as they are (a member of a
/// block, decoded already).
///
/// # Panics
/// As [`encode`].
pub fn encode_raw(raw: &[u8]) -> Vec<u8> {
    assert!(
        raw.len() <= MAX_RAW_LEN,
        "chunk of {} bytes is too large",
        raw.len()
    );
    let mut out = Vec::with_capacity(HEADER_LEN + raw.len());
    push_header(&mut out, CODEC_RAW, raw.len());
    out.extend_from_slice(raw);
    out
}

/// The raw length a frame declares, after checking its header.
pub fn raw_len(frame: &[u8]) -> Result<usize, FrameError> {
    let header = frame.get(..HEADER_LEN).ok_or(FrameError::Truncated)?;
    if &header[..2] != MAGIC {
        return Err(FrameError::BadMagic);
    }
    if header[2] != VERSION {
        return Err(FrameError::UnsupportedVersion(header[2]));
    }
    if header[3] > CODEC_ZSTD {
        return Err(FrameError::UnknownCodec(header[3]));
    }
    let len = u32::from_le_bytes(header[4..8].try_into().expect("4 bytes")) as usize;
    if len > MAX_RAW_LEN {
        return Err(FrameError::TooLarge(len));
    }
    Ok(len)
}

/// `payload` decompressed, if it is a zstd frame of at most `len` bytes.
fn decompress(payload: &[u8], len: usize) -> Option<Vec<u8>> {
    thread_local! {
        // Creating a context costs more than decompressing a small chunk (fsck and
        // every read decode one frame after another): keep one per thread.
        static DECOMPRESSOR: std::cell::RefCell<Option<zstd::bulk::Decompressor<'static>>> =
            std::cell::RefCell::new(zstd::bulk::Decompressor::new().ok());
    }
    DECOMPRESSOR.with(|d| match d.borrow_mut().as_mut() {
        Some(d) => d.decompress(payload, len).ok(),
        None => zstd::bulk::decompress(payload, len).ok(),
    })
}

/// Decodes a frame and checks that its content hashes to `id`.
pub fn decode(id: &ChunkId, frame: &[u8]) -> Result<Vec<u8>, FrameError> {
    let len = raw_len(frame)?;
    let payload = &frame[HEADER_LEN..];
    let raw = match frame[3] {
        CODEC_RAW => payload.to_vec(),
        _ => decompress(payload, len).ok_or(FrameError::BadPayload(len))?,
    };
    if raw.len() != len {
        return Err(FrameError::BadPayload(len));
    }
    let actual = ChunkId::of(&raw);
    if actual != *id {
        return Err(FrameError::HashMismatch {
            expected: *id,
            actual,
        });
    }
    Ok(raw)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn compressible_data_is_compressed_and_noise_is_not() {
        let text = b"fvfs ".repeat(10_000);
        let f = encode(&text);
        assert_eq!(f[3], CODEC_ZSTD);
        assert!(f.len() < text.len() / 10);
        let noise = crate::chunker::test_noise(9, 70_000);
        let f = encode(&noise);
        assert_eq!(f[3], CODEC_RAW);
        assert_eq!(f.len(), noise.len() + HEADER_LEN);
    }

    #[test]
    fn frames_appended_in_place_follow_what_was_there() {
        let text = b"fvfs ".repeat(10_000);
        let noise = crate::chunker::test_noise(9, 70_000);
        let mut out = b"before".to_vec();
        for raw in [&text, &noise] {
            let start = out.len();
            encode_into(&mut out, raw);
            assert_eq!(out[start..], encode(raw));
            assert!(out.len() - start <= max_len(raw.len()));
        }
        assert_eq!(out[..6], *b"before");
    }

    #[test]
    fn dense_frames_are_smaller_and_decode_the_same() {
        let text = include_bytes!("pack/mod.rs").to_vec();
        let (fast, dense) = (encode(&text), encode_dense(&text));
        assert!(
            dense.len() < fast.len(),
            "{} vs {}",
            dense.len(),
            fast.len()
        );
        assert_eq!(decode(&ChunkId::of(&text), &dense).unwrap(), text);
        let noise = crate::chunker::test_noise(3, 10_000);
        assert!(is_raw(&encode_dense(&noise)) && !is_raw(&dense));
    }

    #[test]
    fn golden_frame_header() {
        let f = encode(b"");
        assert_eq!(f, [b'F', b'V', 1, 0, 0, 0, 0, 0]);
        assert_eq!(decode(&ChunkId::of(b""), &f).unwrap(), b"");
    }

    #[test]
    fn corrupt_frames_are_rejected() {
        let data = b"some file content ".repeat(100);
        let id = ChunkId::of(&data);
        let good = encode(&data);
        let flip = |i: usize| {
            let mut f = good.clone();
            f[i] ^= 0x40;
            decode(&id, &f)
        };
        assert_eq!(flip(0), Err(FrameError::BadMagic));
        assert_eq!(flip(2), Err(FrameError::UnsupportedVersion(65)));
        assert_eq!(flip(3), Err(FrameError::UnknownCodec(65)));
        assert!(flip(4).is_err());
        assert!(flip(good.len() - 1).is_err());
        assert_eq!(decode(&id, &good[..5]), Err(FrameError::Truncated));
        let mut huge = good.clone();
        huge[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(decode(&id, &huge), Err(FrameError::TooLarge(_))));
        let other = ChunkId::of(b"other");
        assert!(matches!(
            decode(&other, &good),
            Err(FrameError::HashMismatch { .. })
        ));
    }

    proptest! {
        #[test]
        fn round_trip(data in proptest::collection::vec(any::<u8>(), 0..100_000), rep in 1usize..4) {
            let data = data.repeat(rep);
            let id = ChunkId::of(&data);
            prop_assert_eq!(decode(&id, &encode(&data)).unwrap(), data);
        }

        #[test]
        fn decoding_garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = decode(&ChunkId::of(b"x"), &bytes);
        }

        #[test]
        fn mutated_frames_never_panic_nor_pass(
            data in proptest::collection::vec(any::<u8>(), 0..5000),
            flips in proptest::collection::vec((any::<usize>(), 1u8..), 1..6),
        ) {
            let mut f = encode(&data);
            for (at, x) in flips {
                let n = f.len();
                f[at % n] ^= x;
            }
            // Whatever still decodes is the original chunk: the hash is checked.
            if let Ok(d) = decode(&ChunkId::of(&data), &f) {
                prop_assert_eq!(d, data);
            }
        }
    }
}
