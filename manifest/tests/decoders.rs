//! Property-based fuzzing of every decoder that takes untrusted bytes from the network
//! or the disk: tree nodes, the chunk batch wire format, fvfs paths, percent-encoded
//! paths and chunk ids. (Frames and pack indexes are fuzzed beside their code in `cas`
//! and `tiering`.) cargo-fuzz needs a nightly toolchain this project does not have, so
//! these run under proptest, bounded by `PROPTEST_CASES` (default 256 per property);
//! proptest keeps failing seeds in `proptest-regressions/` next to this file.

use fvfs_api::batch;
use fvfs_api::path::{decode_path, encode_path};
use fvfs_cas::{frame, ChunkId};
use fvfs_manifest::node::{self, ChunkRef, DirNode, Entry, EntryKind, Node};
use fvfs_manifest::{path, ChunkKind};
use proptest::prelude::*;

/// Any valid name: arbitrary bytes with `/` and NUL replaced, `.` and `..` extended.
fn name() -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(any::<u8>(), 1..40).prop_map(|mut n| {
        for b in n.iter_mut().filter(|b| **b == b'/' || **b == 0) {
            *b = b'_';
        }
        if n == b"." || n == b".." {
            n.push(b'x');
        }
        n
    })
}

fn entry() -> impl Strategy<Value = Entry> {
    (
        name(),
        0u32..0o7777,
        any::<i64>(),
        0usize..3,
        any::<[u8; 8]>(),
    )
        .prop_map(|(name, mode, mtime_ns, kind, seed)| {
            let id = ChunkId::of(&seed);
            match kind {
                0 => Entry {
                    name,
                    kind: EntryKind::Dir,
                    mode,
                    mtime_ns,
                    size: 0,
                    id: Some(id),
                    chunks: vec![],
                    target: vec![],
                    meta: None,
                    links: 0,
                    link: None,
                },
                1 => Entry {
                    name,
                    kind: EntryKind::File,
                    mode,
                    mtime_ns,
                    size: 7,
                    id: None,
                    chunks: vec![ChunkRef { id, len: 7 }],
                    target: vec![],
                    meta: None,
                    links: 0,
                    link: None,
                },
                _ => Entry {
                    name,
                    kind: EntryKind::Symlink,
                    mode,
                    mtime_ns,
                    size: 0,
                    id: None,
                    chunks: vec![],
                    target: seed.to_vec(),
                    meta: None,
                    links: 0,
                    link: None,
                },
            }
        })
}

fn dir() -> impl Strategy<Value = DirNode> {
    proptest::collection::btree_map(name(), entry(), 0..12).prop_map(|m| DirNode {
        entries: m
            .into_iter()
            .map(|(n, mut e)| {
                e.name = n;
                e
            })
            .collect(),
    })
}

proptest! {
    #[test]
    fn nodes_round_trip_and_garbage_never_panics(d in dir(), garbage in proptest::collection::vec(any::<u8>(), 0..600)) {
        let encoded = Node::Dir(d.clone()).encode();
        prop_assert_eq!(node::decode(&encoded).unwrap(), Node::Dir(d));
        let _ = node::decode(&garbage);
    }

    #[test]
    fn mutated_nodes_never_panic(d in dir(), flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..6)) {
        let mut bytes = Node::Dir(d).encode();
        for (at, x) in flips {
            let n = bytes.len();
            bytes[at % n] ^= x;
        }
        if let Ok(n) = node::decode(&bytes) {
            // Whatever decodes is a valid node: encoding it again decodes to the same.
            prop_assert_eq!(node::decode(&n.encode()).unwrap(), n);
        }
    }

    #[test]
    fn batches_parse_the_same_in_any_pieces(
        chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..3000), 0..6),
        piece in 1usize..5000,
        garbage in proptest::collection::vec(any::<u8>(), 0..300),
    ) {
        let mut body = Vec::new();
        for c in &chunks {
            batch::push(&mut body, ChunkKind::Data, &ChunkId::of(c), &frame::encode(c));
        }
        let mut p = batch::Parser::default();
        let mut got = Vec::new();
        for part in body.chunks(piece) {
            got.extend(p.push(part).unwrap());
        }
        prop_assert!(p.finished());
        prop_assert_eq!(got.len(), chunks.len());
        for ((_, id, f), c) in got.iter().zip(&chunks) {
            prop_assert_eq!(*id, ChunkId::of(c));
            prop_assert_eq!(&frame::decode(id, f).unwrap(), c);
        }
        let mut p = batch::Parser::default();
        let _ = p.push(&garbage);
    }

    #[test]
    fn paths_never_escape(raw in proptest::collection::vec(prop_oneof![Just(b'/'), Just(b'.'), Just(0u8), any::<u8>()], 0..400)) {
        if let Ok(comps) = path::components(&raw) {
            for c in comps {
                prop_assert!(!c.is_empty() && c != b"." && c != b"..");
                prop_assert!(!c.contains(&b'/') && !c.contains(&0));
            }
        }
        prop_assert_eq!(decode_path(&encode_path(&raw)), raw);
    }

    #[test]
    fn ids_parse_or_refuse(s in "\\PC{0,70}", raw in any::<[u8; 32]>()) {
        let _ = s.parse::<ChunkId>();
        let id = ChunkId::from_slice(&raw).unwrap();
        prop_assert_eq!(id.to_hex().parse::<ChunkId>().unwrap(), id);
    }
}
