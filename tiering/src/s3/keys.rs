//! The master key of an encrypted bucket, kept in the bucket itself wrapped by
//! passphrases, so that the bucket and one passphrase rebuild everything.
//!
//! ```text
//! keys/<id>   JSON: the Argon2id parameters and salt, the master key sealed under the
//!             key they derive from the passphrase, the master key's fingerprint
//! ```
//! A bucket has one master key and any number of key objects (one per passphrase).
//! Key objects are the only objects of an encrypted bucket in the clear: they hold
//! nothing without a passphrase.
//!
//! # Invariants
//! - A passphrase opens a key object only if it is the one it was made with and the
//!   object is unchanged (the wrapped key is sealed, with the object's id as context).
//! - The last key object is never removed: that would lock the bucket for ever.

use serde::{Deserialize, Serialize};

use super::Bucket;
use crate::seal::{MasterKey, Sealer};
use fvfs_cas::StoreError;

const DIR: &str = "keys/";

/// Argon2id costs: 64 MiB and 3 passes (about half a second here), one lane.
const M_KIB: u32 = 64 * 1024;
const T_COST: u32 = 3;
const P_COST: u32 = 1;

/// A key object.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct KeyFile {
    pub version: u32,
    pub kdf: String,
    pub m_kib: u32,
    pub t_cost: u32,
    pub p_cost: u32,
    /// Hex.
    pub salt: String,
    /// The master key sealed under the passphrase's key, hex.
    pub wrapped: String,
    /// The master key's fingerprint, so a key object for another bucket is told apart.
    pub master: String,
    /// Seconds since the epoch, and the host that made it.
    pub created: u64,
    pub host: String,
}

/// Why a key operation failed.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("the passphrase opens none of this bucket's {0} key(s)")]
    WrongPassphrase(usize),
    #[error("this bucket has no keys: it is not encrypted (or not an fvfs bucket)")]
    NoKeys,
    #[error("no key {0:?} in this bucket (see fvfsd key list)")]
    Unknown(String),
    #[error("key {0} is the bucket's last: add another before removing it")]
    Last(String),
    #[error("key {0} belongs to another master key than this store's")]
    Foreign(String),
    #[error("key object {0} is damaged: {1}")]
    Damaged(String, String),
    #[error("a passphrase needs at least 8 characters")]
    Short,
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn kek(passphrase: &str, salt: &[u8], m_kib: u32, t: u32, p: u32) -> Result<[u8; 32], String> {
    let params = argon2::Params::new(m_kib, t, p, Some(32)).map_err(|e| e.to_string())?;
    let argon = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
    let mut out = [0u8; 32];
    argon
        .hash_password_into(passphrase.as_bytes(), salt, &mut out)
        .map_err(|e| e.to_string())?;
    Ok(out)
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The key objects of the bucket, by id.
pub async fn list(bucket: &Bucket) -> Result<Vec<(String, KeyFile)>, KeyError> {
    let mut out = Vec::new();
    for obj in bucket.list(DIR).await? {
        let id = obj.key.trim_start_matches(DIR).to_owned();
        let Some(raw) = bucket.get(&obj.key).await? else {
            continue;
        };
        let file: KeyFile = serde_json::from_slice(&raw)
            .map_err(|e| KeyError::Damaged(id.clone(), e.to_string()))?;
        out.push((id, file));
    }
    out.sort_by(|a, b| a.1.created.cmp(&b.1.created).then(a.0.cmp(&b.0)));
    Ok(out)
}

/// Whether the bucket has key objects (is encrypted).
pub async fn any(bucket: &Bucket) -> Result<bool, StoreError> {
    Ok(!bucket.list(DIR).await?.is_empty())
}

/// Wraps `master` with `passphrase` into a new key object; returns its id.
pub async fn add(
    bucket: &Bucket,
    master: &MasterKey,
    passphrase: &str,
) -> Result<String, KeyError> {
    if passphrase.chars().count() < 8 {
        return Err(KeyError::Short);
    }
    let mut salt = [0u8; 16];
    let mut id = [0u8; 8];
    getrandom::fill(&mut salt).map_err(|e| KeyError::Damaged("salt".into(), e.to_string()))?;
    getrandom::fill(&mut id).map_err(|e| KeyError::Damaged("id".into(), e.to_string()))?;
    let id = hex::encode(id);
    let passphrase = passphrase.to_owned();
    let (m, t, p) = (M_KIB, T_COST, P_COST);
    let key = tokio::task::spawn_blocking(move || kek(&passphrase, &salt, m, t, p))
        .await
        .expect("argon2 does not panic")
        .map_err(|e| KeyError::Damaged(id.clone(), e))?;
    let wrapped = Sealer::with_key(key).seal(id.as_bytes(), master.as_bytes());
    let file = KeyFile {
        version: 1,
        kdf: "argon2id".into(),
        m_kib: m,
        t_cost: t,
        p_cost: p,
        salt: hex::encode(salt),
        wrapped: hex::encode(wrapped),
        master: master.fingerprint(),
        created: now(),
        host: rustix::system::uname()
            .nodename()
            .to_string_lossy()
            .into_owned(),
    };
    let body = serde_json::to_vec_pretty(&file).expect("key files serialise");
    bucket.put(&format!("{DIR}{id}"), body.into()).await?;
    Ok(id)
}

/// Opens key object `file` with `passphrase`.
fn open(id: &str, file: &KeyFile, passphrase: &str) -> Result<Option<MasterKey>, KeyError> {
    let damaged = |why: &str| KeyError::Damaged(id.to_owned(), why.to_owned());
    if file.kdf != "argon2id" || file.version != 1 {
        return Err(damaged("unknown key format"));
    }
    // Costs far above ours would be a way to make an unlock hang: refuse them.
    if file.m_kib > 4 << 20 || file.t_cost > 64 || file.p_cost > 64 {
        return Err(damaged("key derivation costs out of range"));
    }
    let salt = hex::decode(&file.salt).map_err(|_| damaged("salt"))?;
    let wrapped = hex::decode(&file.wrapped).map_err(|_| damaged("wrapped key"))?;
    let key =
        kek(passphrase, &salt, file.m_kib, file.t_cost, file.p_cost).map_err(|e| damaged(&e))?;
    let Ok(raw) = Sealer::with_key(key).open(id.as_bytes(), &wrapped) else {
        return Ok(None);
    };
    let bytes: [u8; 32] = raw.try_into().map_err(|_| damaged("wrapped key length"))?;
    Ok(Some(MasterKey::from_bytes(bytes)))
}

/// The master key `passphrase` opens, and the id of the key object it opened.
pub async fn unlock(bucket: &Bucket, passphrase: &str) -> Result<(MasterKey, String), KeyError> {
    let files = list(bucket).await?;
    if files.is_empty() {
        return Err(KeyError::NoKeys);
    }
    let n = files.len();
    let passphrase = passphrase.to_owned();
    tokio::task::spawn_blocking(move || {
        for (id, file) in &files {
            if let Some(master) = open(id, file, &passphrase)? {
                return Ok((master, id.clone()));
            }
        }
        Err(KeyError::WrongPassphrase(n))
    })
    .await
    .expect("argon2 does not panic")
}

/// Removes key object `id`, unless it is the last one of `master`'s.
pub async fn remove(bucket: &Bucket, master: &MasterKey, id: &str) -> Result<(), KeyError> {
    let files = list(bucket).await?;
    let Some((_, file)) = files.iter().find(|(i, _)| i == id) else {
        return Err(KeyError::Unknown(id.to_owned()));
    };
    if file.master != master.fingerprint() {
        return Err(KeyError::Foreign(id.to_owned()));
    }
    let mine = files
        .iter()
        .filter(|(_, f)| f.master == master.fingerprint())
        .count();
    if mine <= 1 {
        return Err(KeyError::Last(id.to_owned()));
    }
    bucket.delete(&format!("{DIR}{id}")).await?;
    Ok(())
}
