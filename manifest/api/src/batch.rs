//! The body of `POST /v1/chunks`: many chunks, already framed (compressed) by the
//! client, in one request. Each record is `kind` (0 data, 1 tree node), the 32-byte
//! id, the frame's length (u32, little endian), then the frame.
//!
//! The answer of `POST /v1/chunks/read` has the same records; asked with
//! `?blocks=true`, it may also hold records of kind 2: a whole block of the pack
//! store (`fvfs_cas::block` format, at most [`MAX_BLOCK`] bytes) holding the
//! chunk the id names and others asked for in the same request, which get no record
//! of their own. The reader decodes the block and checks each member against its id.

use bytes::Bytes;
use fvfs_cas::{frame, ChunkId};

use fvfs_node::ChunkKind;

const HEADER: usize = 1 + 32 + 4;
const KIND_BLOCK: u8 = 2;
/// Largest frame a data record may carry: a frame never exceeds its raw chunk (it is
/// stored raw when compressing would not make it smaller).
pub const MAX_DATA_FRAME: usize = frame::HEADER_LEN + fvfs_cas::chunker::MAX_SIZE;
/// Largest frame a tree node's record may carry (a client sends file and list nodes
/// only).
pub const MAX_NODE_FRAME: usize = frame::HEADER_LEN + fvfs_node::MAX_UPLOAD_NODE;
/// Largest block a read's answer may carry.
pub const MAX_BLOCK: usize = fvfs_cas::block::MAX_LEN;

/// Appends one record to `out`.
pub fn push(out: &mut Vec<u8>, kind: ChunkKind, id: &ChunkId, framed: &[u8]) {
    out.push(u8::from(kind == ChunkKind::Node));
    out.extend_from_slice(id.as_bytes());
    out.extend_from_slice(&(framed.len() as u32).to_le_bytes());
    out.extend_from_slice(framed);
}

/// Appends one record of `raw`, framed (compressed) in place: [`push`] without a frame
/// of its own; no allocation when `out` has room for [`record_max_len`] more bytes.
pub fn push_raw(out: &mut Vec<u8>, kind: ChunkKind, id: &ChunkId, raw: &[u8]) {
    out.push(u8::from(kind == ChunkKind::Node));
    out.extend_from_slice(id.as_bytes());
    let len_at = out.len();
    out.extend_from_slice(&[0; 4]);
    frame::encode_into(out, raw);
    let len = (out.len() - len_at - 4) as u32;
    out[len_at..len_at + 4].copy_from_slice(&len.to_le_bytes());
}

/// The most bytes [`push_raw`] of `raw_len` bytes appends.
pub fn record_max_len(raw_len: usize) -> usize {
    HEADER + frame::max_len(raw_len)
}

/// Appends a record of `block`, holding the chunk `id` (a read's answer).
pub fn push_block(out: &mut Vec<u8>, id: &ChunkId, block: &[u8]) {
    out.push(KIND_BLOCK);
    out.extend_from_slice(id.as_bytes());
    out.extend_from_slice(&(block.len() as u32).to_le_bytes());
    out.extend_from_slice(block);
}

/// A record of a read's answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Answer {
    /// A chunk's frame.
    Frame(ChunkId, Bytes),
    /// A block holding one or more of the chunks asked for.
    Block(Bytes),
}

/// Splits a body arriving in pieces into records, holding at most one record.
#[derive(Default)]
pub struct Parser {
    buf: Vec<u8>,
    blocks: bool,
}

impl Parser {
    /// A parser of a read's answer asked with `?blocks=true` (the default parser
    /// refuses block records).
    pub fn answer() -> Self {
        Self {
            buf: Vec::new(),
            blocks: true,
        }
    }

    /// The records `data` completed; an error for a malformed one.
    pub fn push(&mut self, data: &[u8]) -> Result<Vec<(ChunkKind, ChunkId, Bytes)>, String> {
        self.records(data)?
            .into_iter()
            .map(|(kind, id, frame)| match kind {
                0 => Ok((ChunkKind::Data, id, frame)),
                1 => Ok((ChunkKind::Node, id, frame)),
                _ => Err(format!(
                    "record for {id}: a block where chunks were expected"
                )),
            })
            .collect()
    }

    /// The records of a read's answer `data` completed; an error for a malformed one.
    pub fn push_answer(&mut self, data: &[u8]) -> Result<Vec<Answer>, String> {
        Ok(self
            .records(data)?
            .into_iter()
            .map(|(kind, id, frame)| match kind {
                KIND_BLOCK => Answer::Block(frame),
                _ => Answer::Frame(id, frame),
            })
            .collect())
    }

    /// The records `data` completed, each with its kind byte (checked).
    fn records(&mut self, data: &[u8]) -> Result<Vec<(u8, ChunkId, Bytes)>, String> {
        self.buf.extend_from_slice(data);
        let mut out = Vec::new();
        let mut at = 0;
        while self.buf.len() - at >= HEADER {
            let h = &self.buf[at..at + HEADER];
            let kind = h[0];
            let id = ChunkId::from_slice(&h[1..33]).expect("32 bytes");
            let len = u32::from_le_bytes(h[33..37].try_into().expect("4 bytes")) as usize;
            let max = match kind {
                0 => MAX_DATA_FRAME,
                1 => MAX_NODE_FRAME,
                KIND_BLOCK if self.blocks => MAX_BLOCK,
                k => return Err(format!("record {}: unknown kind {k}", out.len())),
            };
            if len > max {
                return Err(format!(
                    "record for {id}: frame of {len} bytes is too large"
                ));
            }
            if self.buf.len() - at - HEADER < len {
                break;
            }
            out.push((
                kind,
                id,
                Bytes::copy_from_slice(&self.buf[at + HEADER..at + HEADER + len]),
            ));
            at += HEADER + len;
        }
        self.buf.drain(..at);
        Ok(out)
    }

    /// Whether the body ended on a record boundary.
    pub fn finished(&self) -> bool {
        self.buf.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_in_any_pieces_and_garbage_is_refused() {
        let mut body = Vec::new();
        let items: Vec<Vec<u8>> = (0..5u8).map(|i| vec![i; 1000 * i as usize]).collect();
        for (i, d) in items.iter().enumerate() {
            let kind = if i == 2 {
                ChunkKind::Node
            } else {
                ChunkKind::Data
            };
            push(&mut body, kind, &ChunkId::of(d), &frame::encode(d));
        }
        // Framed in place, the same bytes, in the room reserved for them.
        let most = items.iter().map(|d| record_max_len(d.len())).sum();
        let mut in_place = Vec::with_capacity(most);
        for (i, d) in items.iter().enumerate() {
            let kind = if i == 2 {
                ChunkKind::Node
            } else {
                ChunkKind::Data
            };
            push_raw(&mut in_place, kind, &ChunkId::of(d), d);
        }
        assert_eq!(in_place, body);
        assert_eq!(in_place.capacity(), most, "no allocation of its own");
        for piece in [1, 7, 100, body.len()] {
            let mut p = Parser::default();
            let mut got = Vec::new();
            for part in body.chunks(piece) {
                got.extend(p.push(part).unwrap());
            }
            assert!(p.finished());
            assert_eq!(got.len(), 5);
            for ((kind, id, f), d) in got.iter().zip(&items) {
                assert_eq!(frame::decode(id, f).unwrap(), *d);
                assert_eq!(*kind == ChunkKind::Node, d.len() == 2000);
            }
        }
        let mut p = Parser::default();
        assert!(p.push(&[9; 40]).is_err());
        let mut p = Parser::default();
        let mut huge = vec![0u8; 33];
        huge.extend_from_slice(&u32::MAX.to_le_bytes());
        assert!(p.push(&huge).is_err());
        // A data record is bounded by the largest chunk; a node's by the frame limit.
        let over = (MAX_DATA_FRAME as u32 + 1).to_le_bytes();
        let mut data = vec![0u8; 33];
        data.extend_from_slice(&over);
        let err = Parser::default().push(&data).unwrap_err();
        assert!(err.contains("too large"), "{err}");
        let mut node = vec![1u8; 1];
        node.extend_from_slice(&[0u8; 32]);
        node.extend_from_slice(&over);
        assert!(Parser::default().push(&node).unwrap().is_empty());
        let mut p = Parser::default();
        p.push(&body[..body.len() - 1]).unwrap();
        assert!(!p.finished(), "a truncated body is noticed");
    }

    #[test]
    fn blocks_come_only_in_answers_that_asked_for_them() {
        let members: Vec<(ChunkId, Vec<u8>)> = (0..3u8)
            .map(|i| vec![i; 5000])
            .map(|d| (ChunkId::of(&d), d))
            .collect();
        let refs: Vec<(ChunkId, &[u8])> = members.iter().map(|(id, d)| (*id, &d[..])).collect();
        let block = fvfs_cas::block::encode(&refs, 3);
        let lone = vec![7u8; 3000];
        let mut body = Vec::new();
        push(
            &mut body,
            ChunkKind::Data,
            &ChunkId::of(&lone),
            &frame::encode(&lone),
        );
        push_block(&mut body, &members[1].0, &block);
        for piece in [1, 50, body.len()] {
            let mut p = Parser::answer();
            let mut got = Vec::new();
            for part in body.chunks(piece) {
                got.extend(p.push_answer(part).unwrap());
            }
            assert!(p.finished());
            assert_eq!(
                got,
                [
                    Answer::Frame(ChunkId::of(&lone), Bytes::from(frame::encode(&lone))),
                    Answer::Block(Bytes::from(block.clone())),
                ]
            );
        }
        // An upload, or an answer that did not ask, holds none.
        let err = Parser::default().push(&body).unwrap_err();
        assert!(err.contains("unknown kind 2"), "{err}");
        let err = Parser::answer().push(&body).unwrap_err();
        assert!(err.contains("a block where chunks were expected"), "{err}");
        // A block record is bounded by the largest block.
        let mut huge = vec![2u8; 33];
        huge.extend_from_slice(&(MAX_BLOCK as u32 + 1).to_le_bytes());
        let err = Parser::answer().push_answer(&huge).unwrap_err();
        assert!(err.contains("too large"), "{err}");
    }
}
