//! Chunk ids: the BLAKE3-256 hash of a chunk's raw bytes.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The name of a chunk: BLAKE3-256 of its raw (uncompressed) bytes.
///
/// Shown and parsed as 64 lowercase hex digits; serialized as a 32-byte CBOR byte
/// string, so tree nodes stay compact and their encoding canonical.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ChunkId([u8; 32]);

impl ChunkId {
    /// The id of `data`.
    pub fn of(data: &[u8]) -> Self {
        Self(*blake3::hash(data).as_bytes())
    }

    pub const fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// 64 lowercase hex digits.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// Parses a 32-byte slice, as read back from a database key.
    pub fn from_slice(bytes: &[u8]) -> Option<Self> {
        bytes.try_into().ok().map(Self)
    }
}

impl fmt::Display for ChunkId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for ChunkId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ChunkId({})", &self.to_hex()[..16])
    }
}

/// A string that is not 64 lowercase hex digits.
#[derive(Debug, thiserror::Error)]
#[error("invalid chunk id {0:?}: expected 64 lowercase hex digits")]
pub struct ParseIdError(String);

impl FromStr for ChunkId {
    type Err = ParseIdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || ParseIdError(s.chars().take(80).collect());
        if s.len() != 64 || s.bytes().any(|b| b.is_ascii_uppercase()) {
            return Err(bad());
        }
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out).map_err(|_| bad())?;
        Ok(Self(out))
    }
}

/// In binary formats (the CBOR of hashed tree nodes) an id is 32 raw bytes, which node
/// hashes depend on; in human-readable ones (JSON answers) it is the 64-character hex
/// name users see everywhere else. JSON also accepts the array of 32 numbers that
/// earlier versions wrote.
impl Serialize for ChunkId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            s.serialize_str(&self.to_hex())
        } else {
            s.serialize_bytes(&self.0)
        }
    }
}

impl<'de> Deserialize<'de> for ChunkId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = ChunkId;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a 32-byte chunk id")
            }
            fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<ChunkId, E> {
                ChunkId::from_slice(v).ok_or_else(|| E::invalid_length(v.len(), &self))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<ChunkId, E> {
                v.parse()
                    .map_err(|_| E::invalid_value(serde::de::Unexpected::Str(v), &self))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<ChunkId, A::Error> {
                let mut out = [0u8; 32];
                for (i, byte) in out.iter_mut().enumerate() {
                    *byte = seq
                        .next_element()?
                        .ok_or_else(|| serde::de::Error::invalid_length(i, &self))?;
                }
                if seq.next_element::<u8>()?.is_some() {
                    return Err(serde::de::Error::invalid_length(33, &self));
                }
                Ok(ChunkId(out))
            }
        }
        if d.is_human_readable() {
            d.deserialize_any(V)
        } else {
            d.deserialize_bytes(V)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_names_ids_in_hex_and_cbor_keeps_raw_bytes() {
        let id = ChunkId::of(b"hello");
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(json, format!("\"{}\"", id.to_hex()));
        assert_eq!(serde_json::from_str::<ChunkId>(&json).unwrap(), id);
        // The array earlier versions wrote still reads.
        let array = serde_json::to_string(&id.as_bytes().to_vec()).unwrap();
        assert_eq!(serde_json::from_str::<ChunkId>(&array).unwrap(), id);
        assert!(serde_json::from_str::<ChunkId>("[1,2,3]").is_err());
        assert!(serde_json::from_str::<ChunkId>("\"abc\"").is_err());
        // CBOR (what node hashes are computed over): a 32-byte string, as always.
        let cbor = serde_cbor::to_vec(&id).unwrap();
        assert_eq!(&cbor[..2], &[0x58, 32]);
        assert_eq!(&cbor[2..], id.as_bytes());
        assert_eq!(serde_cbor::from_slice::<ChunkId>(&cbor).unwrap(), id);
    }

    #[test]
    fn hex_round_trip_and_rejects_bad_input() {
        let id = ChunkId::of(b"hello");
        assert_eq!(
            id.to_hex(),
            "ea8f163db38682925e4491c5e58d4bb3506ef8c14eb78a86e908c5624a67200f"
        );
        assert_eq!(id.to_hex().parse::<ChunkId>().unwrap(), id);
        for bad in [
            "",
            "zz",
            &id.to_hex()[..63],
            &id.to_hex().to_uppercase(),
            "../etc/passwd",
        ] {
            assert!(bad.parse::<ChunkId>().is_err(), "{bad:?} accepted");
        }
    }
}
