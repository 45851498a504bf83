//! The record: how one frame sits in a segment file, self-describing so that a
//! segment can be read, checked and re-indexed without the index.
//!
//! ```text
//! offset  size  field
//! 0       4     magic "FVr1" (first byte never zero: a hole reads as zeros)
//! 4       4     frame length, little endian
//! 8       32    chunk id
//! 40      8     first 8 bytes of BLAKE3(frame)
//! 48      4     first 4 bytes of BLAKE3(bytes 0..48): the header's own checksum
//! 52      ...   the frame
//! ```
//!
//! The header checksum lets a scanner tell a record from garbage (a torn write, bytes
//! of a frame) before trusting its length; the frame checksum tells a whole frame from
//! a torn or damaged one without decompressing it. Freed records are holes: a scan
//! skips zero bytes until the next magic.

use crate::ChunkId;

pub const MAGIC: &[u8; 4] = b"FVr1";
pub const HEADER_LEN: usize = 52;

/// A record's header, decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    pub id: ChunkId,
    pub frame_len: u32,
    pub frame_sum: [u8; 8],
}

impl Header {
    /// Bytes the whole record takes in its segment.
    pub fn record_len(&self) -> u64 {
        HEADER_LEN as u64 + u64::from(self.frame_len)
    }
}

/// The record of `frame` under `id`: header then frame, ready for one write.
pub fn encode(id: &ChunkId, frame: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + frame.len());
    encode_into(&mut out, id, frame);
    out
}

/// [`encode`], appended to `out` (records written together).
pub fn encode_into(out: &mut Vec<u8>, id: &ChunkId, frame: &[u8]) {
    let len = u32::try_from(frame.len()).expect("frames are at most 64 MiB");
    let start = out.len();
    out.reserve(HEADER_LEN + frame.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(id.as_bytes());
    out.extend_from_slice(&frame_sum(frame));
    let check = header_sum(&out[start..]);
    out.extend_from_slice(&check);
    out.extend_from_slice(frame);
}

fn frame_sum(frame: &[u8]) -> [u8; 8] {
    blake3::hash(frame).as_bytes()[..8]
        .try_into()
        .expect("8 bytes")
}

fn header_sum(first48: &[u8]) -> [u8; 4] {
    blake3::hash(first48).as_bytes()[..4]
        .try_into()
        .expect("4 bytes")
}

/// Decodes a header from the first [`HEADER_LEN`] bytes of `bytes`; `None` if they
/// are not a whole, self-consistent header.
pub fn decode_header(bytes: &[u8]) -> Option<Header> {
    let h = bytes.get(..HEADER_LEN)?;
    if &h[..4] != MAGIC || h[48..52] != header_sum(&h[..48]) {
        return None;
    }
    Some(Header {
        frame_len: u32::from_le_bytes(h[4..8].try_into().ok()?),
        id: ChunkId::from_slice(&h[8..40])?,
        frame_sum: h[40..48].try_into().ok()?,
    })
}

/// Whether `frame` is the frame `header` describes (length and checksum).
pub fn frame_matches(header: &Header, frame: &[u8]) -> bool {
    frame.len() == header.frame_len as usize && frame_sum(frame) == header.frame_sum
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_every_damaged_header_byte_is_seen() {
        let id = ChunkId::of(b"x");
        let rec = encode(&id, b"frame bytes");
        let h = decode_header(&rec).unwrap();
        assert_eq!(h.id, id);
        assert_eq!(h.record_len(), rec.len() as u64);
        assert!(frame_matches(&h, &rec[HEADER_LEN..]));
        for i in 0..HEADER_LEN {
            let mut bad = rec.clone();
            bad[i] ^= 0x40;
            assert_eq!(decode_header(&bad), None, "flip at {i}");
        }
        let mut bad = rec.clone();
        *bad.last_mut().unwrap() ^= 1;
        assert!(!frame_matches(&h, &bad[HEADER_LEN..]));
        assert_eq!(decode_header(&[0u8; HEADER_LEN]), None);
        assert_eq!(decode_header(&rec[..HEADER_LEN - 1]), None);
    }
}
