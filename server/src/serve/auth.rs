//! API tokens and the roles they carry.
//!
//! - `token` (made at first start): the **write** token LAN clients are given (`fvfsd
//!   token`): read and change the live tree, make snapshots, roll back.
//! - `admin-token`: the **admin** token, for what destroys or exposes history or the host
//!   (gc, snapshot delete, migrate, export, fsck, evict). fvfsd commands run on this
//!   machine read it from the data directory; nobody else gets it unless given it.
//! - `tokens.json`: named tokens of any role (`fvfsd token new NAME --role R`), kept
//!   only as BLAKE3 hashes, so the file gives no token away; removed by name. The
//!   daemon rereads the file when it changes.
//!
//! # Invariants
//! - Every token file is 0600 and written whole or not at all; a token file readable by
//!   others is refused, not used.
//! - Presented tokens are compared in time independent of where they differ.

use std::fs;
use std::io::Read;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

/// What a token may do (the route table says what each route needs).
pub use fvfs_api::routes::Role;

/// A named token as `tokens.json` keeps it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Named {
    pub name: String,
    pub role: Role,
    /// BLAKE3 of the token, hex.
    pub blake3: String,
    /// Seconds since the epoch.
    pub created: u64,
}

#[derive(Default, Serialize, Deserialize)]
struct NamedFile {
    tokens: Vec<Named>,
}

const WRITE_FILE: &str = "token";
const ADMIN_FILE: &str = "admin-token";
const NAMED_FILE: &str = "tokens.json";

/// The write token in `dir/token`, created if missing.
pub fn token(dir: &Path) -> Result<String> {
    file_token(&dir.join(WRITE_FILE))
}

/// The admin token in `dir/admin-token`, created if missing.
pub fn admin_token(dir: &Path) -> Result<String> {
    file_token(&dir.join(ADMIN_FILE))
}

/// Refuses a secret file others can read.
pub(crate) fn check_private(path: &Path) -> Result<()> {
    let mode = fs::metadata(path)?.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        bail!(
            "{} is readable by others (mode {mode:o}); run: chmod 600 {}",
            path.display(),
            path.display()
        );
    }
    Ok(())
}

fn file_token(path: &Path) -> Result<String> {
    match fs::read_to_string(path) {
        Ok(t) => {
            check_private(path)?;
            let t = t.trim().to_owned();
            if t.len() < 32 {
                bail!(
                    "{} holds no valid token; delete it to make a new one",
                    path.display()
                );
            }
            Ok(t)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let t = random_token()?;
            // Whole or absent after a power cut: a torn token file would lock
            // every client out until someone deletes it.
            fvfs_cas::platform::write_durably(path, format!("{t}\n").as_bytes(), 0o600)
                .with_context(|| format!("cannot create {}", path.display()))?;
            Ok(t)
        }
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

pub(crate) fn random_token() -> Result<String> {
    let mut raw = [0u8; 32];
    fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut raw))
        .context("reading /dev/urandom")?;
    Ok(fvfs_cas::ChunkId::from_bytes(raw).to_hex())
}

fn hash(token: &str) -> String {
    fvfs_cas::ChunkId::of(token.as_bytes()).to_hex()
}

/// The named tokens of `dir` (none when the file does not exist).
pub fn named(dir: &Path) -> Result<Vec<Named>> {
    let path = dir.join(NAMED_FILE);
    match fs::read(&path) {
        Ok(raw) => {
            check_private(&path)?;
            let file: NamedFile = serde_json::from_slice(&raw)
                .with_context(|| format!("{} is damaged", path.display()))?;
            Ok(file.tokens)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

fn save_named(dir: &Path, tokens: Vec<Named>) -> Result<()> {
    let path = dir.join(NAMED_FILE);
    let raw = serde_json::to_vec_pretty(&NamedFile { tokens })?;
    fvfs_cas::platform::write_durably(&path, &raw, 0o600)
        .with_context(|| format!("cannot write {}", path.display()))
}

/// Makes a token named `name` with `role`; returns it (it is not kept anywhere).
pub fn create(dir: &Path, name: &str, role: Role) -> Result<String> {
    if name.is_empty() || name.len() > 64 || name.chars().any(|c| c.is_control()) {
        bail!("a token's name is 1 to 64 printable characters");
    }
    let mut tokens = named(dir)?;
    if tokens.iter().any(|t| t.name == name) {
        bail!("a token named {name:?} exists; remove it first (fvfsd token remove {name})");
    }
    let token = random_token()?;
    let created = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    tokens.push(Named {
        name: name.to_owned(),
        role,
        blake3: hash(&token),
        created,
    });
    save_named(dir, tokens)?;
    Ok(token)
}

/// Removes the token named `name`; a daemon refuses it from its next request on.
pub fn remove(dir: &Path, name: &str) -> Result<()> {
    let mut tokens = named(dir)?;
    let before = tokens.len();
    tokens.retain(|t| t.name != name);
    if tokens.len() == before {
        bail!("no token is named {name:?} (see fvfsd token list)");
    }
    save_named(dir, tokens)
}

/// `fvfsd token`'s subcommands.
#[derive(clap::Subcommand)]
pub enum TokenAction {
    /// Make a token for one device or person; it is printed once and kept only hashed.
    New {
        name: String,
        #[arg(long, value_enum, default_value_t = Role::Write)]
        role: Role,
    },
    /// List named tokens (names and roles; tokens themselves are not kept).
    List,
    /// Remove a named token; a running daemon refuses it from its next request on.
    Remove { name: String },
}

/// `fvfsd token [--admin] [new|list|remove]`.
pub fn command(dir: &Path, action: Option<TokenAction>, admin: bool) -> Result<()> {
    use TokenAction as A;
    match (action, admin) {
        (None, false) => fvfs_api::outln!("{}", token(dir)?),
        (None, true) => fvfs_api::outln!("{}", admin_token(dir)?),
        (Some(_), true) => bail!("--admin prints the admin token; it takes no subcommand"),
        (Some(A::New { name, role }), false) => {
            let t = create(dir, &name, role)?;
            fvfs_api::outln!("{t}");
            eprintln!("fvfsd: token {name:?} ({role}) made; it is shown only now");
        }
        (Some(A::List), false) => {
            for t in named(dir)? {
                let created = fvfs_api::show::time(t.created as i64);
                fvfs_api::outln!("{}\t{}\tmade {created}", t.name, t.role);
            }
        }
        (Some(A::Remove { name }), false) => {
            remove(dir, &name)?;
            fvfs_api::outln!("removed token {name}");
        }
    }
    Ok(())
}

/// The token an `Authorization` header presents: a bearer token, or the password of
/// HTTP Basic (WebDAV clients send only that; the user name is ignored).
pub fn presented_token(header: &str) -> Option<String> {
    use base64::Engine;
    if let Some(t) = header.strip_prefix("Bearer ") {
        return Some(t.to_owned());
    }
    let encoded = header.strip_prefix("Basic ")?;
    let raw = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(raw).ok()?;
    let (_, password) = text.split_once(':')?;
    Some(password.to_owned())
}

/// Compares a presented token with the real one in time independent of where they differ.
pub fn matches(presented: &str, token: &str) -> bool {
    presented.len() == token.len()
        && presented
            .bytes()
            .zip(token.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

/// What tells a changed file: modification time (seconds, nanoseconds), inode, length.
type Stamp = (i64, i64, u64, u64);

/// The tokens a daemon accepts.
pub struct Tokens {
    dir: PathBuf,
    write: String,
    admin: String,
    /// The named tokens, and the stamp of the file they were read from.
    named: Mutex<(Option<Stamp>, Vec<Named>)>,
}

impl Tokens {
    /// The tokens of `dir`, making the write and admin tokens if missing.
    pub fn load(dir: &Path) -> Result<Self> {
        let tokens = Self {
            dir: dir.to_owned(),
            write: token(dir)?,
            admin: admin_token(dir)?,
            named: Mutex::new((None, Vec::new())),
        };
        tokens.reload()?;
        Ok(tokens)
    }

    /// Rereads `tokens.json` when it changed since last read.
    fn reload(&self) -> Result<()> {
        let stamp = fs::metadata(self.dir.join(NAMED_FILE))
            .ok()
            .map(|m| (m.mtime(), m.mtime_nsec(), m.ino(), m.len()));
        let mut named = self.named.lock().expect("tokens lock");
        if named.0 != stamp {
            *named = (stamp, self::named(&self.dir)?);
        }
        Ok(())
    }

    /// The role `presented` carries, if it is a token of this daemon.
    pub fn role_of(&self, presented: &str) -> Option<Role> {
        if matches(presented, &self.admin) {
            return Some(Role::Admin);
        }
        if matches(presented, &self.write) {
            return Some(Role::Write);
        }
        if let Err(e) = self.reload() {
            // Keep the tokens read last: a damaged file must not lock everyone out.
            tracing::warn!("named tokens: {e:#}");
        }
        let h = hash(presented);
        let named = self.named.lock().expect("tokens lock");
        named
            .1
            .iter()
            .find(|t| matches(&h, &t.blake3))
            .map(|t| t.role)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_come_from_the_token_presented_and_removal_takes_effect() {
        let dir = tempfile::tempdir().unwrap();
        let tokens = Tokens::load(dir.path()).unwrap();
        let write = token(dir.path()).unwrap();
        let admin = admin_token(dir.path()).unwrap();
        assert_ne!(write, admin);
        assert_eq!(tokens.role_of(&write), Some(Role::Write));
        assert_eq!(tokens.role_of(&admin), Some(Role::Admin));
        assert_eq!(tokens.role_of("nope"), None);
        let phone = create(dir.path(), "phone", Role::Read).unwrap();
        assert_eq!(tokens.role_of(&phone), Some(Role::Read));
        let kept = fs::read_to_string(dir.path().join(NAMED_FILE)).unwrap();
        assert!(!kept.contains(&phone), "tokens.json keeps no token");
        assert!(create(dir.path(), "phone", Role::Admin).is_err());
        remove(dir.path(), "phone").unwrap();
        assert_eq!(tokens.role_of(&phone), None);
        assert!(remove(dir.path(), "phone").is_err());
        let mode = fs::metadata(dir.path().join(ADMIN_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn a_token_file_others_can_read_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        token(dir.path()).unwrap();
        let path = dir.path().join(WRITE_FILE);
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        let err = Tokens::load(dir.path()).err().unwrap().to_string();
        assert!(err.contains("chmod 600"), "{err}");
    }
}
