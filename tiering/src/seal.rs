//! Authenticated encryption of what fvfs keeps where others can read or write it (the
//! S3 bucket, an encrypted NAS tier): XChaCha20-Poly1305 under a key derived from the
//! store's master key.
//!
//! ```text
//! sealed = version:u8 (1) nonce:[u8; 24] ciphertext tag:[u8; 16]
//! ```
//! Every sealed thing names its context in the associated data (a frame its chunk id,
//! a document its object key, a pack index a label), so bytes moved from one place to
//! another fail to open instead of being trusted there. Nonces are random: 192 bits
//! never repeat in practice, however many frames a store seals.
//!
//! The NAS tier ([`NasSeal`]) keeps each chunk under a *name*: its id encrypted with
//! AES-256 (each 16-byte half on its own; ids are uniform hashes, so halves never
//! repeat in practice), a permutation that only the key computes or undoes, so the
//! share shows no chunk id and the store can still list what it holds.
//!
//! # Invariants
//! - [`Sealer::open`] returns bytes only if they were sealed by this master key for
//!   this context, unchanged; anything else is [`Tampered`].
//! - Key material is wiped from memory when dropped.

use chacha20poly1305::aead::{Aead, Generate, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use fvfs_cas::pack::Sealing;
use fvfs_cas::ChunkId;
use zeroize::{Zeroize, ZeroizeOnDrop};

const VERSION: u8 = 1;
const NONCE_LEN: usize = 24;
const TAG_LEN: usize = 16;
/// Bytes a sealed thing has beyond its plaintext.
pub const OVERHEAD: usize = 1 + NONCE_LEN + TAG_LEN;

/// The 32-byte secret everything in an encrypted bucket is sealed under.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct MasterKey([u8; 32]);

impl MasterKey {
    /// A new random key.
    pub fn generate() -> Self {
        let key = chacha20poly1305::Key::generate();
        Self(key.into())
    }

    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// A key for one purpose, so no two uses share a key.
    pub fn derive(&self, purpose: &str) -> [u8; 32] {
        blake3::derive_key(purpose, &self.0)
    }

    /// The seed of the chunk cut points of a store sealed under this key (never 0,
    /// which is fastcdc's own table).
    pub fn cut_seed(&self) -> u64 {
        let bytes = self.derive("fvfs 2026-12 chunk cut points");
        u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes")).max(1)
    }

    /// A public name of this key: equal for equal keys, and revealing nothing of it.
    pub fn fingerprint(&self) -> String {
        hex::encode(&self.derive("fvfs 2026-12 master key fingerprint")[..8])
    }
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "MasterKey({})", self.fingerprint())
    }
}

/// Sealed bytes that do not open: damaged, forged, moved, or sealed under another key.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("authentication failed: the bytes were changed, moved, or sealed under another key")]
pub struct Tampered;

/// Seals and opens under one key.
pub struct Sealer {
    aead: XChaCha20Poly1305,
    /// Keys the names of objects named by their content.
    names: [u8; 32],
}

impl Drop for Sealer {
    fn drop(&mut self) {
        self.names.zeroize();
    }
}

impl Sealer {
    /// The sealer of a store with `master` key.
    pub fn new(master: &MasterKey) -> Self {
        let mut s = Self::with_key(master.derive("fvfs 2026-12 bucket seal"));
        s.names = master.derive("fvfs 2026-12 object names");
        s
    }

    /// A sealer under `key` itself (a key wrapping another).
    pub fn with_key(mut key: [u8; 32]) -> Self {
        let aead = XChaCha20Poly1305::new(&key.into());
        key.zeroize();
        Self {
            aead,
            names: [0; 32],
        }
    }

    /// A name for an object holding `content`: the same for the same content, and
    /// telling nothing about it to whoever lacks the key.
    pub fn name_of(&self, content: &[u8]) -> String {
        blake3::keyed_hash(&self.names, content)
            .to_hex()
            .to_string()
    }

    pub fn seal(&self, context: &[u8], plain: &[u8]) -> Vec<u8> {
        let nonce = XNonce::generate();
        let sealed = self
            .aead
            .encrypt(
                &nonce,
                Payload {
                    msg: plain,
                    aad: context,
                },
            )
            .expect("XChaCha20-Poly1305 seals any length fvfs uses");
        let mut out = Vec::with_capacity(OVERHEAD + plain.len());
        out.push(VERSION);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        out
    }

    pub fn open(&self, context: &[u8], sealed: &[u8]) -> Result<Vec<u8>, Tampered> {
        if sealed.len() < OVERHEAD || sealed[0] != VERSION {
            return Err(Tampered);
        }
        let nonce = XNonce::try_from(&sealed[1..1 + NONCE_LEN]).map_err(|_| Tampered)?;
        self.aead
            .decrypt(
                &nonce,
                Payload {
                    msg: &sealed[1 + NONCE_LEN..],
                    aad: context,
                },
            )
            .map_err(|_| Tampered)
    }
}

/// The cipher of an encrypted NAS tier (a sealed pack store, see
/// [`fvfs_cas::pack::sealing`]), under keys derived from the master key for the NAS
/// alone: a frame sealed there does not open in the bucket, nor the reverse.
pub struct NasSeal {
    frames: Sealer,
    encrypt: aws_lc_rs::cipher::EncryptingKey,
    decrypt: aws_lc_rs::cipher::DecryptingKey,
    fingerprint: String,
}

impl NasSeal {
    pub fn new(master: &MasterKey) -> Self {
        use aws_lc_rs::cipher::{DecryptingKey, EncryptingKey, UnboundCipherKey, AES_256};
        let mut names = master.derive("fvfs 2026-12 nas names");
        let key = || UnboundCipherKey::new(&AES_256, &names).expect("a 32-byte AES-256 key");
        let (encrypt, decrypt) = (
            EncryptingKey::ecb(key()).expect("AES-256 does ECB"),
            DecryptingKey::ecb(key()).expect("AES-256 does ECB"),
        );
        names.zeroize();
        Self {
            frames: Sealer::with_key(master.derive("fvfs 2026-12 nas seal")),
            encrypt,
            decrypt,
            fingerprint: master.fingerprint(),
        }
    }

    fn context(id: &ChunkId) -> [u8; 41] {
        let mut c = [0u8; 41];
        c[..9].copy_from_slice(b"nas frame");
        c[9..].copy_from_slice(id.as_bytes());
        c
    }
}

impl Sealing for NasSeal {
    fn name(&self, id: &ChunkId) -> ChunkId {
        let mut bytes = *id.as_bytes();
        self.encrypt
            .encrypt(&mut bytes)
            .expect("32 bytes are two AES blocks");
        ChunkId::from_bytes(bytes)
    }

    fn id_of(&self, name: &ChunkId) -> ChunkId {
        let mut bytes = *name.as_bytes();
        self.decrypt
            .decrypt(&mut bytes, aws_lc_rs::cipher::DecryptionContext::None)
            .expect("32 bytes are two AES blocks");
        ChunkId::from_bytes(bytes)
    }

    fn seal(&self, id: &ChunkId, frame: &[u8]) -> Vec<u8> {
        self.frames.seal(&Self::context(id), frame)
    }

    fn open(&self, id: &ChunkId, sealed: &[u8]) -> Option<Vec<u8>> {
        self.frames.open(&Self::context(id), sealed).ok()
    }

    fn key_fingerprint(&self) -> String {
        self.fingerprint.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_bytes_open_only_unchanged_in_their_context_under_their_key() {
        let key = MasterKey::generate();
        let s = Sealer::new(&key);
        let sealed = s.seal(b"frame 1", b"hello");
        assert_eq!(sealed.len(), 5 + OVERHEAD);
        assert_eq!(s.open(b"frame 1", &sealed).unwrap(), b"hello");
        assert!(!sealed.windows(5).any(|w| w == b"hello"));
        assert_ne!(s.seal(b"frame 1", b"hello"), sealed, "nonces are fresh");
        assert_eq!(s.open(b"frame 2", &sealed), Err(Tampered));
        for i in 0..sealed.len() {
            let mut bad = sealed.clone();
            bad[i] ^= 0x40;
            assert_eq!(s.open(b"frame 1", &bad), Err(Tampered), "byte {i}");
        }
        assert_eq!(
            s.open(b"frame 1", &sealed[..sealed.len() - 1]),
            Err(Tampered)
        );
        let other = Sealer::new(&MasterKey::generate());
        assert_eq!(other.open(b"frame 1", &sealed), Err(Tampered));
        assert_eq!(
            key.fingerprint(),
            MasterKey::from_bytes(*key.as_bytes()).fingerprint()
        );
    }

    #[test]
    fn nas_names_are_a_keyed_permutation_and_nas_frames_stay_on_the_nas() {
        let key = MasterKey::generate();
        let nas = NasSeal::new(&key);
        let other = NasSeal::new(&MasterKey::generate());
        let ids: Vec<ChunkId> = (0..1000u32)
            .map(|i| ChunkId::of(&i.to_le_bytes()))
            .collect();
        let names: std::collections::HashSet<ChunkId> = ids.iter().map(|id| nas.name(id)).collect();
        assert_eq!(names.len(), ids.len(), "no two ids share a name");
        for id in &ids {
            let name = nas.name(id);
            assert_ne!(&name, id);
            assert_ne!(name, other.name(id), "another key, another name");
            assert_eq!(&nas.id_of(&name), id);
            assert!(!ids.contains(&name));
        }
        let (a, b) = (ids[0], ids[1]);
        let sealed = nas.seal(&a, b"frame");
        assert_eq!(nas.open(&a, &sealed).as_deref(), Some(&b"frame"[..]));
        assert_eq!(nas.open(&b, &sealed), None, "moved to another chunk");
        assert_eq!(other.open(&a, &sealed), None, "another key");
        let bucket = Sealer::new(&key);
        assert!(
            bucket.open(a.as_bytes(), &sealed).is_err(),
            "not a bucket frame"
        );
        assert_eq!(nas.key_fingerprint(), key.fingerprint());
    }
}
