//! The pack object format of the S3 tier: many chunk frames in one object, with their
//! index at the end, so a TiB costs thousands of requests and one chunk is one ranged GET.
//!
//! ```text
//! pack    = (frame | block)* index trailer
//! index   = "FVPI" version:u8 count:u32 entry*            (little endian)
//! entry   = id:[u8; 32] offset:u64 len:u32 raw_len:u32    (48 bytes, by offset; v1)
//!         | id:[u8; 32] offset:u64 len:u32 raw_len:u32 member:u32  (52 bytes; v2)
//! trailer = index_len:u32 index_hash:[u8; 32] "FVPACK1\0"  (44 bytes)
//! ```
//! A block (`fvfs_cas::block`: chunks compressed together, issue 47) has one
//! entry per member, each with the whole block's range and the member's place in the
//! block's table (`member`; `u32::MAX` in a v2 entry is a frame of its own). The
//! members must be listed here, not read from the block: its table is inside it, sealed
//! in an encrypted bucket. An index is written as v2 only when its pack holds a block,
//! so packs of frames stay readable by binaries that know only v1.
//! A pack is named by the BLAKE3 hash of all its bytes. The index lets `fvfsd recover`
//! find every chunk from S3 alone with one suffix-range GET per pack; its hash in the
//! trailer catches a damaged index before anything trusts its offsets, and every frame
//! is verified against its id when read anyway. [`parse_tail`] is a decoder of
//! untrusted bytes: it bounds every length and never panics.
//!
//! In an encrypted bucket (trailer magic `FVPACK2\0`) every frame is sealed on its own
//! (its chunk id as context, so a single frame is still one ranged GET) and so is the
//! whole index (see [`crate::seal`]): the pack shows only lengths. A block is sealed
//! whole (`Bucket::seal_block`). A clear pack in an encrypted bucket, or the reverse,
//! is refused.

use fvfs_cas::block;
use fvfs_cas::{frame, ChunkId};

use crate::records::{PackLoc, PackMember};
use crate::seal::Sealer;

const INDEX_MAGIC: &[u8; 4] = b"FVPI";
const INDEX_VERSION: u8 = 1;
/// The version of an index that lists members of blocks.
const INDEX_VERSION_BLOCKS: u8 = 2;
/// A v2 entry's `member` of a frame of its own.
const NOT_A_MEMBER: u32 = u32::MAX;
const TRAILER_MAGIC: &[u8; 8] = b"FVPACK1\0";
const SEALED_MAGIC: &[u8; 8] = b"FVPACK2\0";
/// The context a pack's index is sealed with.
const INDEX_CONTEXT: &[u8] = b"fvfs pack index";
const ENTRY_LEN: usize = 48;
const ENTRY_LEN_BLOCKS: usize = 52;
const INDEX_HEADER_LEN: usize = 9;
pub const TRAILER_LEN: usize = 44;
/// Bytes read from a pack's end to find its index in one request, for typical packs.
pub const TAIL_GUESS: u64 = 256 * 1024;

/// One chunk's place in a pack: its frame's range, or its block's and its place in it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Entry {
    pub id: ChunkId,
    pub offset: u64,
    pub len: u32,
    pub raw_len: u32,
    /// Its index in the table of the block at `offset`, for a block's member.
    pub member: Option<u32>,
}

/// A pack being filled.
#[derive(Default)]
pub struct Builder {
    buf: Vec<u8>,
    entries: Vec<Entry>,
}

impl Builder {
    /// Appends a frame for `id` as stored (sealed in an encrypted bucket) of a chunk
    /// of `raw_len` bytes.
    pub fn push(&mut self, id: ChunkId, stored: &[u8], raw_len: u32) -> Entry {
        let entry = Entry {
            id,
            offset: self.buf.len() as u64,
            len: stored.len() as u32,
            raw_len,
            member: None,
        };
        self.buf.extend_from_slice(stored);
        self.entries.push(entry);
        entry
    }

    /// Appends a block as stored (sealed whole in an encrypted bucket) with an entry
    /// for each of `members` (id, its index in the block's table, raw length): the
    /// members still live, which may be fewer than the block holds.
    pub fn push_block(&mut self, stored: &[u8], members: &[(ChunkId, u32, u32)]) -> Vec<Entry> {
        let offset = self.buf.len() as u64;
        self.buf.extend_from_slice(stored);
        let entries: Vec<Entry> = members
            .iter()
            .map(|&(id, index, raw_len)| Entry {
                id,
                offset,
                len: stored.len() as u32,
                raw_len,
                member: Some(index),
            })
            .collect();
        self.entries.extend_from_slice(&entries);
        entries
    }

    /// Bytes of frames so far.
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// The frame (or block) at `entry`, which must come from this builder.
    pub fn frame(&self, entry: &Entry) -> &[u8] {
        &self.buf[entry.offset as usize..entry.offset as usize + entry.len as usize]
    }

    /// The finished pack object and its name; the index sealed by `sealer` if given.
    pub fn finish(self, sealer: Option<&Sealer>) -> (Vec<u8>, [u8; 32], Vec<Entry>) {
        let mut buf = self.buf;
        let blocks = self.entries.iter().any(|e| e.member.is_some());
        let (version, entry_len) = match blocks {
            true => (INDEX_VERSION_BLOCKS, ENTRY_LEN_BLOCKS),
            false => (INDEX_VERSION, ENTRY_LEN),
        };
        let mut index = Vec::with_capacity(INDEX_HEADER_LEN + entry_len * self.entries.len());
        index.extend_from_slice(INDEX_MAGIC);
        index.push(version);
        index.extend_from_slice(&(self.entries.len() as u32).to_le_bytes());
        for e in &self.entries {
            index.extend_from_slice(e.id.as_bytes());
            index.extend_from_slice(&e.offset.to_le_bytes());
            index.extend_from_slice(&e.len.to_le_bytes());
            index.extend_from_slice(&e.raw_len.to_le_bytes());
            if blocks {
                let member = e.member.unwrap_or(NOT_A_MEMBER);
                index.extend_from_slice(&member.to_le_bytes());
            }
        }
        let (index, magic) = match sealer {
            Some(s) => (s.seal(INDEX_CONTEXT, &index), SEALED_MAGIC),
            None => (index, TRAILER_MAGIC),
        };
        let hash = blake3::hash(&index);
        buf.extend_from_slice(&index);
        buf.extend_from_slice(&(index.len() as u32).to_le_bytes());
        buf.extend_from_slice(hash.as_bytes());
        buf.extend_from_slice(magic);
        let name = *blake3::hash(&buf).as_bytes();
        (buf, name, self.entries)
    }
}

/// The location of each chunk of pack `name` from its `entries`, with its raw length:
/// a member's share of its block is reckoned over the members the index lists.
pub fn locations(name: [u8; 32], entries: &[Entry]) -> Vec<(ChunkId, PackLoc, u32)> {
    let mut out = Vec::with_capacity(entries.len());
    for group in entries.chunk_by(|a, b| a.offset == b.offset && b.member.is_some()) {
        let lens: Vec<u32> = group.iter().map(|e| e.raw_len).collect();
        let shares = block::shares(u64::from(group[0].len), &lens);
        for (e, share) in group.iter().zip(shares) {
            let member = e.member.map(|index| PackMember { index, share });
            let loc = PackLoc {
                member,
                ..PackLoc::frame(name, e.offset, e.len)
            };
            out.push((e.id, loc, e.raw_len));
        }
    }
    out
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum PackError {
    #[error("pack too short for its trailer")]
    Short,
    #[error("not an fvfs pack (bad trailer magic)")]
    Magic,
    #[error("pack index needs the last {0} bytes of the pack")]
    NeedTail(u64),
    #[error("pack index does not match its hash")]
    Hash,
    #[error("malformed pack index: {0}")]
    Index(&'static str),
    #[error("pack is encrypted, and this store has no key for it")]
    Sealed,
    #[error("pack is not encrypted, in an encrypted bucket: not made by this store")]
    Clear,
    #[error("pack index does not authenticate: changed, or sealed under another key")]
    Tampered,
}

/// Parses the index at the end of a pack of `pack_len` bytes, given its last `tail`
/// bytes, opening it with `sealer` in an encrypted bucket. Asks for a longer tail
/// ([`PackError::NeedTail`]) when the index does not fit.
pub fn parse_tail(
    tail: &[u8],
    pack_len: u64,
    sealer: Option<&Sealer>,
) -> Result<Vec<Entry>, PackError> {
    if tail.len() < TRAILER_LEN || (tail.len() as u64) > pack_len {
        return Err(PackError::Short);
    }
    let trailer = &tail[tail.len() - TRAILER_LEN..];
    let sealed = match (&trailer[36..], sealer) {
        (m, None) if m == TRAILER_MAGIC => false,
        (m, Some(_)) if m == SEALED_MAGIC => true,
        (m, None) if m == SEALED_MAGIC => return Err(PackError::Sealed),
        (m, Some(_)) if m == TRAILER_MAGIC => return Err(PackError::Clear),
        _ => return Err(PackError::Magic),
    };
    let index_len = u32::from_le_bytes(trailer[..4].try_into().expect("4 bytes")) as usize;
    let needed = index_len as u64 + TRAILER_LEN as u64;
    if needed > pack_len {
        return Err(PackError::Index("longer than the pack"));
    }
    if needed > tail.len() as u64 {
        return Err(PackError::NeedTail(needed));
    }
    let index = &tail[tail.len() - TRAILER_LEN - index_len..tail.len() - TRAILER_LEN];
    if blake3::hash(index).as_bytes() != &trailer[4..36] {
        return Err(PackError::Hash);
    }
    let opened;
    let index = match sealer {
        Some(s) if sealed => {
            opened = s
                .open(INDEX_CONTEXT, index)
                .map_err(|_| PackError::Tampered)?;
            &opened[..]
        }
        _ => index,
    };
    if index.len() < INDEX_HEADER_LEN || &index[..4] != INDEX_MAGIC {
        return Err(PackError::Index("bad magic"));
    }
    let entry_len = match index[4] {
        INDEX_VERSION => ENTRY_LEN,
        INDEX_VERSION_BLOCKS => ENTRY_LEN_BLOCKS,
        _ => return Err(PackError::Index("unknown version")),
    };
    let count = u32::from_le_bytes(index[5..9].try_into().expect("4 bytes")) as usize;
    let body = &index[INDEX_HEADER_LEN..];
    if body.len()
        != count
            .checked_mul(entry_len)
            .ok_or(PackError::Index("count"))?
    {
        return Err(PackError::Index("count does not match length"));
    }
    let frames_end = pack_len - needed;
    // A sealed frame has its seal's overhead beyond the frame itself.
    let most = (frame::HEADER_LEN + frame::MAX_RAW_LEN + crate::seal::OVERHEAD) as u32;
    let most_block = (block::MAX_LEN + crate::seal::OVERHEAD) as u32;
    let entries = body
        .chunks_exact(entry_len)
        .map(|e| {
            let member = match e.get(48..52) {
                Some(m) => Some(u32::from_le_bytes(m.try_into().expect("4 bytes")))
                    .filter(|m| *m != NOT_A_MEMBER),
                None => None,
            };
            let entry = Entry {
                id: ChunkId::from_slice(&e[..32]).ok_or(PackError::Index("id"))?,
                offset: u64::from_le_bytes(e[32..40].try_into().expect("8 bytes")),
                len: u32::from_le_bytes(e[40..44].try_into().expect("4 bytes")),
                raw_len: u32::from_le_bytes(e[44..48].try_into().expect("4 bytes")),
                member,
            };
            let bound = if member.is_some() { most_block } else { most };
            if entry.len > bound || entry.raw_len as usize > frame::MAX_RAW_LEN {
                return Err(PackError::Index("entry longer than a frame can be"));
            }
            if member.is_some_and(|m| m as usize >= block::MAX_MEMBERS) {
                return Err(PackError::Index("member past a block's table"));
            }
            match entry.offset.checked_add(u64::from(entry.len)) {
                Some(end) if end <= frames_end => Ok(entry),
                _ => Err(PackError::Index("entry outside the pack")),
            }
        })
        .collect::<Result<Vec<Entry>, PackError>>()?;
    // Entries at one offset are the members of one block: the same range.
    for pair in entries.windows(2) {
        let [a, b] = pair else { continue };
        if a.offset == b.offset && (a.len != b.len || a.member.is_none() || b.member.is_none()) {
            return Err(PackError::Index("entries at one offset disagree"));
        }
    }
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn pack_of(chunks: &[Vec<u8>]) -> (Vec<u8>, Vec<Entry>) {
        let mut b = Builder::default();
        for c in chunks {
            b.push(ChunkId::of(c), &frame::encode(c), c.len() as u32);
        }
        let (buf, name, entries) = b.finish(None);
        assert_eq!(&name, blake3::hash(&buf).as_bytes());
        (buf, entries)
    }

    #[test]
    fn index_round_trips_and_frames_decode() {
        let chunks: Vec<Vec<u8>> = (0..50u8).map(|i| vec![i; 1000 + i as usize]).collect();
        let (buf, entries) = pack_of(&chunks);
        let parsed = parse_tail(&buf, buf.len() as u64, None).unwrap();
        assert_eq!(parsed, entries);
        for (e, c) in parsed.iter().zip(&chunks) {
            let f = &buf[e.offset as usize..(e.offset + u64::from(e.len)) as usize];
            assert_eq!(frame::decode(&e.id, f).unwrap(), *c);
            assert_eq!(e.raw_len as usize, c.len());
        }
    }

    #[test]
    fn short_tail_asks_for_more_and_damage_is_caught() {
        let chunks: Vec<Vec<u8>> = (0..20u8).map(|i| vec![i; 10]).collect();
        let (mut buf, _) = pack_of(&chunks);
        let len = buf.len() as u64;
        let need = match parse_tail(&buf[buf.len() - 100..], len, None) {
            Err(PackError::NeedTail(n)) => n,
            other => panic!("{other:?}"),
        };
        assert!(parse_tail(&buf[buf.len() - need as usize..], len, None).is_ok());
        let i = buf.len() - TRAILER_LEN - 5;
        buf[i] ^= 1;
        assert_eq!(parse_tail(&buf, len, None), Err(PackError::Hash));
        let last = buf.len() - 1;
        buf[last] ^= 1;
        assert_eq!(parse_tail(&buf, len, None), Err(PackError::Magic));
    }

    #[test]
    fn a_sealed_index_shows_no_ids_and_opens_only_with_its_key() {
        let key = crate::seal::MasterKey::generate();
        let sealer = Sealer::new(&key);
        let chunks: Vec<Vec<u8>> = (0..20u8).map(|i| vec![i; 100]).collect();
        let mut b = Builder::default();
        for c in &chunks {
            let id = ChunkId::of(c);
            b.push(id, &sealer.seal(id.as_bytes(), &frame::encode(c)), 100);
        }
        let (buf, _, entries) = b.finish(Some(&sealer));
        let len = buf.len() as u64;
        for c in &chunks {
            assert!(!buf.windows(32).any(|w| w == ChunkId::of(c).as_bytes()));
        }
        assert_eq!(parse_tail(&buf, len, Some(&sealer)).unwrap(), entries);
        assert_eq!(parse_tail(&buf, len, None), Err(PackError::Sealed));
        let other = Sealer::new(&crate::seal::MasterKey::generate());
        assert_eq!(
            parse_tail(&buf, len, Some(&other)),
            Err(PackError::Tampered)
        );
        let (clear, _) = pack_of(&chunks);
        assert_eq!(
            parse_tail(&clear, clear.len() as u64, Some(&sealer)),
            Err(PackError::Clear)
        );
    }

    #[test]
    fn a_pack_with_a_block_lists_its_members_in_a_v2_index_and_one_without_stays_v1() {
        let (plain, _) = pack_of(&[b"alone".to_vec()]);
        let v1 = parse_tail(&plain, plain.len() as u64, None).unwrap();
        assert_eq!(v1[0].member, None);
        let index_at = |buf: &[u8], n: usize| buf.len() - TRAILER_LEN - INDEX_HEADER_LEN - n;
        assert_eq!(plain[index_at(&plain, ENTRY_LEN) + 4], INDEX_VERSION);

        let raws: Vec<Vec<u8>> = (0..5u8).map(|i| vec![i; 300 + i as usize]).collect();
        let members: Vec<(ChunkId, &[u8])> =
            raws.iter().map(|r| (ChunkId::of(r), &r[..])).collect();
        let block = block::encode(&members, 3);
        let mut b = Builder::default();
        b.push(ChunkId::of(b"before"), &frame::encode(b"before"), 6);
        // Members 1 and 3 are dead: only the live ones are listed.
        let listed = [
            (members[0].0, 0, 300),
            (members[2].0, 2, 302),
            (members[4].0, 4, 304),
        ];
        b.push_block(&block, &listed);
        b.push(ChunkId::of(b"after"), &frame::encode(b"after"), 5);
        let (buf, name, entries) = b.finish(None);
        assert_eq!(
            buf[index_at(&buf, 5 * ENTRY_LEN_BLOCKS) + 4],
            INDEX_VERSION_BLOCKS
        );
        let parsed = parse_tail(&buf, buf.len() as u64, None).unwrap();
        assert_eq!(parsed, entries);
        assert_eq!(
            parsed.iter().map(|e| e.member).collect::<Vec<_>>(),
            [None, Some(0), Some(2), Some(4), None]
        );
        let at = &parsed[2];
        let stored = &buf[at.offset as usize..(at.offset + u64::from(at.len)) as usize];
        let d = block::decode(stored).unwrap();
        assert_eq!(d.member(2, &members[2].0).unwrap(), raws[2]);

        // Locations: the members share the block's bytes, frames keep their own.
        let locs = locations(name, &parsed);
        assert_eq!(locs[0].1.live_len(), parsed[0].len);
        let shared: u64 = locs[1..4].iter().map(|l| u64::from(l.1.live_len())).sum();
        assert_eq!(shared, u64::from(block.len() as u32));
        assert!(locs[1..4].iter().all(|l| l.1.len == block.len() as u32));
    }

    #[test]
    fn members_that_disagree_on_their_block_are_refused() {
        let parse = |entries: &[Entry]| {
            let b = Builder {
                buf: vec![0; 1000],
                entries: entries.to_vec(),
            };
            let (buf, ..) = b.finish(None);
            parse_tail(&buf, buf.len() as u64, None)
        };
        let e = |offset, len, member: Option<u32>| Entry {
            id: ChunkId::of(&[member.unwrap_or(9) as u8]),
            offset,
            len,
            raw_len: 10,
            member,
        };
        assert!(parse(&[e(0, 100, Some(0)), e(0, 100, Some(1)), e(100, 5, None)]).is_ok());
        let disagree = Err(PackError::Index("entries at one offset disagree"));
        assert_eq!(parse(&[e(0, 100, Some(0)), e(0, 90, Some(1))]), disagree);
        assert_eq!(parse(&[e(0, 100, None), e(0, 100, Some(1))]), disagree);
        assert_eq!(
            parse(&[e(0, 100, Some(block::MAX_MEMBERS as u32))]),
            Err(PackError::Index("member past a block's table"))
        );
    }

    proptest! {
        #[test]
        fn never_panics_on_arbitrary_tails(tail in proptest::collection::vec(any::<u8>(), 0..400), extra in 0u64..1000) {
            let _ = parse_tail(&tail, tail.len() as u64 + extra, None);
        }

        #[test]
        fn never_panics_on_mutated_packs(flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8)) {
            let chunks: Vec<Vec<u8>> = (0..5u8).map(|i| vec![i; 30]).collect();
            let (mut buf, _) = pack_of(&chunks);
            for (at, x) in flips {
                let n = buf.len();
                buf[at % n] ^= x;
            }
            let _ = parse_tail(&buf, buf.len() as u64, None);
        }
    }
}
