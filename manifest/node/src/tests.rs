//! The encoding pinned by golden hashes, round trips, and the nodes `decode` refuses.

use super::*;

#[test]
fn times_outside_the_i64_range_saturate_and_negative_ones_stay_before_1970() {
    assert_eq!(unix_ns(1, 5), 1_000_000_005);
    assert_eq!(unix_ns(-1, 500_000_000), -500_000_000);
    // 2300-01-01 and 1600-01-01.
    assert_eq!(unix_ns(10_413_792_000, 0), i64::MAX);
    assert_eq!(unix_ns(-11_676_096_000, 0), i64::MIN);
    assert_eq!(
        system_time(-1_500_000_000),
        UNIX_EPOCH - Duration::from_millis(1500)
    );
    assert_eq!(system_time(2_000_000_001), UNIX_EPOCH + Duration::new(2, 1));
    for ns in [0, 1, -1, -1_500_000_000, 1 << 62, i64::MAX, i64::MIN + 1] {
        assert_eq!(time_ns(system_time(ns)), ns);
    }
    let far = UNIX_EPOCH + Duration::from_secs(10_413_792_000);
    assert_eq!(time_ns(far), i64::MAX);
    let last = system_time(i64::MAX).duration_since(UNIX_EPOCH).unwrap();
    assert_eq!(last.as_secs() / (365 * 86_400), 292, "2262, not 1901");
}

fn sample_dir() -> Node {
    let file = ChunkId::of(b"file node");
    Node::Dir(DirNode {
        entries: vec![
            Entry {
                name: b"a.txt".to_vec(),
                kind: EntryKind::File,
                mode: 0o644,
                mtime_ns: 1_700_000_000_123_456_789,
                size: 5,
                id: Some(file),
                chunks: vec![],
                target: vec![],
                meta: None,
                links: 0,
                link: None,
            },
            Entry {
                name: b"inline".to_vec(),
                kind: EntryKind::File,
                mode: 0o600,
                mtime_ns: 3,
                size: 9,
                id: None,
                chunks: vec![ChunkRef {
                    id: ChunkId::of(b"nine bytes"),
                    len: 9,
                }],
                target: vec![],
                meta: None,
                links: 0,
                link: None,
            },
            Entry {
                name: b"link".to_vec(),
                kind: EntryKind::Symlink,
                mode: 0o777,
                mtime_ns: -5,
                size: 0,
                id: None,
                chunks: vec![],
                target: b"a.txt".to_vec(),
                meta: None,
                links: 0,
                link: None,
            },
            Entry {
                name: vec![b's', 0xff, 0xfe],
                kind: EntryKind::Dir,
                mode: 0o755,
                mtime_ns: 0,
                size: 0,
                id: Some(ChunkId::of(b"dir node")),
                chunks: vec![],
                target: vec![],
                meta: None,
                links: 0,
                link: None,
            },
        ],
    })
}

fn sample_file() -> Node {
    Node::File(FileNode {
        size: 70_000,
        chunks: vec![
            ChunkRef {
                id: ChunkId::of(b"one"),
                len: 65_536,
            },
            ChunkRef {
                id: ChunkId::of(b"two"),
                len: 4_464,
            },
        ],
        lists: vec![],
    })
}

/// Pins the encoding: if these change, every existing store stops deduplicating.
#[test]
fn golden_hashes() {
    assert_eq!(ChunkId::of(&sample_dir().encode()).to_hex(), GOLDEN_DIR);
    assert_eq!(ChunkId::of(&sample_file().encode()).to_hex(), GOLDEN_FILE);
    assert_eq!(
        ChunkId::of(&Node::Dir(DirNode::default()).encode()).to_hex(),
        GOLDEN_EMPTY_DIR
    );
}

const GOLDEN_DIR: &str = "6395a1a75dc0a525b93e82a502f2137edbe163cd6568709a18a1810bbacd4fb2";
const GOLDEN_FILE: &str = "899719e926109ad3c5871fb41375578755114bf6ba71fce52ac63fa061800bc9";
const GOLDEN_EMPTY_DIR: &str = "49dfbbfb140cfc23f4274002a989606a0c51edc1995ec1f280a35d29205641a2";

#[test]
fn round_trip() {
    for n in [sample_dir(), sample_file(), Node::List(ListNode::default())] {
        assert_eq!(decode(&n.encode()).unwrap(), n);
    }
}

#[test]
fn rejects_invalid_nodes() {
    let Node::Dir(mut d) = sample_dir() else {
        unreachable!()
    };
    d.entries.swap(0, 1);
    assert!(matches!(
        decode(&Node::Dir(d.clone()).encode()),
        Err(NodeError::Unsorted(_))
    ));
    d.entries.swap(0, 1);
    for bad in [&b".."[..], b"", b"a/b", b"nul\0"] {
        let mut d = d.clone();
        d.entries[0].name = bad.to_vec();
        assert!(decode(&Node::Dir(d).encode()).is_err(), "{bad:?} accepted");
    }
    let mut d2 = d.clone();
    d2.entries[1].id = Some(ChunkId::of(b"x"));
    assert!(matches!(
        decode(&Node::Dir(d2).encode()),
        Err(NodeError::BadEntry(..))
    ));
    let Node::File(mut f) = sample_file() else {
        unreachable!()
    };
    f.size += 1;
    assert!(matches!(
        decode(&Node::File(f).encode()),
        Err(NodeError::BadSize)
    ));
    assert!(decode(b"\xff\x00garbage").is_err());
}
