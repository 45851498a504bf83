//! The TOML configuration of fvfsd (`--config FILE`), documented key by key in
//! `config.example.toml` at the repository root.
//!
//! Every key is optional and no file is needed at all: the defaults are the embedded
//! default (data in `$FVFS_HOME` or `~/.local/share/fvfs`, local tier only, HTTP on
//! 127.0.0.1:7734). Unknown keys are refused with their name, so a typo is an error
//! rather than a silently ignored setting. The sections of the first fvfs config
//! (daemon, tiers.local, tiers.nas, tiers.s3, upload, eviction) stay valid.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use fvfs_api::DEFAULT_PORT;
use fvfs_tiering::{Running, TierId};
use serde::Deserialize;

/// Port of the HTTP API unless configured otherwise.

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub daemon: Daemon,
    #[serde(default)]
    pub tiers: Tiers,
    #[serde(default)]
    pub upload: Upload,
    #[serde(default)]
    pub eviction: Eviction,
    #[serde(default)]
    pub gc: Gc,
    /// Automatic snapshots and how many to keep per period (none by default).
    #[serde(default)]
    pub snapshots: fvfs_fsck::retention::SnapshotPolicy,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Daemon {
    pub data_dir: Option<PathBuf>,
    pub listen: Option<SocketAddr>,
    pub http_port: Option<u16>,
    #[serde(default = "yes")]
    pub mdns: bool,
    pub node_name: Option<String>,
    /// Names (besides the machine's own) clients may use for this daemon, such as a
    /// router's DNS name; a request addressed to any other name is refused.
    #[serde(default)]
    pub host_names: Vec<String>,
    /// Connections held at once, in all and from one peer address.
    pub max_connections: Option<usize>,
    pub max_connections_per_peer: Option<usize>,
    /// Seconds a request head may take to arrive, an idle connection stays open, and a
    /// request body may send nothing.
    pub idle_timeout_secs: Option<u64>,
    /// Accepted from the first fvfs config; the mount is `fvfsc mount` now.
    pub mount_path: Option<PathBuf>,
    /// Accepted from the first fvfs config; metadata lives under data_dir.
    pub metadata_db: Option<PathBuf>,
}

impl Default for Daemon {
    fn default() -> Self {
        Self {
            data_dir: None,
            listen: None,
            http_port: None,
            mdns: true,
            node_name: None,
            host_names: Vec::new(),
            max_connections: None,
            max_connections_per_peer: None,
            idle_timeout_secs: None,
            mount_path: None,
            metadata_db: None,
        }
    }
}

fn yes() -> bool {
    true
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tiers {
    pub local: Option<Tier>,
    pub nas: Option<Tier>,
    pub s3: Option<S3>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tier {
    pub path: Option<PathBuf>,
    pub high_watermark_gb: Option<f64>,
    pub low_watermark_gb: Option<f64>,
    /// A segment file stops taking records at this size (MiB).
    pub segment_mb: Option<u64>,
    /// Seal the tier's chunks and names (NAS only) under the S3 tier's master key.
    #[serde(default)]
    pub encrypt: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct S3 {
    pub bucket: String,
    pub region: Option<String>,
    pub prefix: Option<String>,
    pub endpoint: Option<String>,
    /// The storage class of packs (e.g. STANDARD_IA, GLACIER_IR).
    pub storage_class: Option<String>,
    /// Seal everything written to the bucket under a key only passphrases open.
    #[serde(default = "yes")]
    pub encrypt: bool,
    /// A file holding the passphrase (else FVFS_PASSPHRASE, else the terminal).
    pub passphrase_file: Option<PathBuf>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Upload {
    #[serde(default = "default_flush_mb")]
    pub flush_size_mb: u64,
    #[serde(default = "default_flush_secs")]
    pub flush_interval_secs: u64,
    /// The most megabits per second sent to S3, over all uploads together.
    pub max_mbps: Option<f64>,
}

impl Default for Upload {
    fn default() -> Self {
        Self {
            flush_size_mb: default_flush_mb(),
            flush_interval_secs: default_flush_secs(),
            max_mbps: None,
        }
    }
}

fn default_flush_mb() -> u64 {
    256
}

fn default_flush_secs() -> u64 {
    300
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Eviction {
    #[serde(default = "default_evict_secs")]
    pub interval_secs: u64,
    #[serde(default = "default_recency")]
    pub recency_weight: f64,
    #[serde(default = "default_frequency")]
    pub frequency_weight: f64,
}

impl Default for Eviction {
    fn default() -> Self {
        Self {
            interval_secs: default_evict_secs(),
            recency_weight: default_recency(),
            frequency_weight: default_frequency(),
        }
    }
}

/// `[gc]`: the retention policy (no rule: keep every version) and how collection runs.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Gc {
    pub keep_last: Option<u64>,
    pub keep_daily: Option<u64>,
    pub keep_weekly: Option<u64>,
    #[serde(default = "default_grace")]
    pub grace_secs: i64,
    /// Chunks promised to a client (answered "stored", or uploaded) are kept this long
    /// for the commit that names them.
    #[serde(default = "default_grace")]
    pub in_flight_secs: i64,
    /// S3 packs whose live share fell under this fraction are rewritten.
    #[serde(default = "default_compact")]
    pub compact_below: f64,
    /// The daemon recompresses the segments of a local or NAS tier at a denser zstd
    /// level once no chunk came or went for this long; 0: never.
    #[serde(default = "default_recompress_idle")]
    pub recompress_idle_secs: u64,
    /// Memory each sort of fsck, gc and recover (of the chunks they reach or find)
    /// takes before it goes on in temporary files in the data directory, in MiB
    /// (fractions allowed, at least 64 KiB).
    #[serde(default = "default_sort_memory_mb")]
    pub sort_memory_mb: f64,
}

impl Default for Gc {
    fn default() -> Self {
        Self {
            keep_last: None,
            keep_daily: None,
            keep_weekly: None,
            grace_secs: default_grace(),
            in_flight_secs: default_grace(),
            compact_below: default_compact(),
            recompress_idle_secs: default_recompress_idle(),
            sort_memory_mb: default_sort_memory_mb(),
        }
    }
}

impl Gc {
    /// `sort_memory_mb` in bytes.
    pub fn sort_memory(&self) -> usize {
        // A float cast saturates (and NaN is 0), then the floor applies.
        ((self.sort_memory_mb * f64::from(1u32 << 20)) as usize).max(64 << 10)
    }

    /// The options of one collection: `args` override the config key by key.
    pub fn options(&self, args: &fvfs_api::args::GcArgs, offline: bool) -> fvfs_fsck::gc::Options {
        fvfs_fsck::gc::Options {
            retention: fvfs_fsck::retention::Retention {
                keep_last: args.keep_last.or(self.keep_last),
                keep_daily: args.keep_daily.or(self.keep_daily),
                keep_weekly: args.keep_weekly.or(self.keep_weekly),
            },
            dry_run: args.dry_run,
            grace_secs: args.grace_secs.unwrap_or(self.grace_secs),
            in_flight_secs: args.in_flight_secs.unwrap_or(self.in_flight_secs),
            compact_below: self.compact_below.clamp(0.0, 1.0),
            recompress: args.recompress,
            offline,
        }
    }
}

fn default_sort_memory_mb() -> f64 {
    (fvfs_fsck::Spill::DEFAULT_BUDGET >> 20) as f64
}

fn default_recompress_idle() -> u64 {
    120
}

fn default_grace() -> i64 {
    3600
}

fn default_compact() -> f64 {
    0.5
}

fn default_evict_secs() -> u64 {
    600
}

fn default_recency() -> f64 {
    0.7
}

fn default_frequency() -> f64 {
    0.3
}

fn watermarks(tier: Option<&Tier>) -> Option<(u64, u64)> {
    let t = tier?;
    let gb = |v: f64| (v * (1u64 << 30) as f64) as u64;
    Some((gb(t.high_watermark_gb?), gb(t.low_watermark_gb?)))
}

impl Config {
    /// Reads `path`; errors name the file, and the key for unknown or mistyped keys.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read config {}", path.display()))?;
        let config: Config = toml::from_str(&text)
            .map_err(|e| anyhow::anyhow!("config {}: {}", path.display(), e.message().trim()))?;
        config
            .validate()
            .with_context(|| format!("config {}", path.display()))?;
        Ok(config)
    }

    fn validate(&self) -> Result<()> {
        if self.tiers.s3.as_ref().is_some_and(|s| s.bucket.is_empty()) {
            bail!("[tiers.s3] bucket is empty");
        }
        if self.upload.flush_size_mb == 0 {
            bail!("[upload] flush_size_mb must be at least 1");
        }
        if let Some(m) = self
            .upload
            .max_mbps
            .filter(|m| !(m.is_finite() && *m > 0.0))
        {
            bail!("[upload] max_mbps must be above 0 (leave it out for no limit), not {m}");
        }
        let class = self
            .tiers
            .s3
            .as_ref()
            .and_then(|s| s.storage_class.as_deref());
        if let Some(c @ ("GLACIER" | "DEEP_ARCHIVE")) = class {
            bail!("[tiers.s3] storage_class {c}: objects in it cannot be read without a restore request; use GLACIER_IR or STANDARD_IA");
        }
        if self.tiers.nas.as_ref().is_some_and(|t| t.path.is_none()) {
            bail!("[tiers.nas] needs a path: the directory of the mounted share");
        }
        if self.tiers.local.as_ref().is_some_and(|t| t.encrypt) {
            bail!("[tiers.local] cannot be encrypted: the data directory beside it holds the key (encrypt is for the NAS and S3 tiers)");
        }
        if self.nas_encrypted() && !self.tiers.s3.as_ref().is_some_and(|s| s.encrypt) {
            bail!("[tiers.nas] encrypt = true seals the NAS under the S3 tier's master key: configure [tiers.s3] with encrypt = true (the default)");
        }
        for (name, tier) in [("local", &self.tiers.local), ("nas", &self.tiers.nas)] {
            if let Some(Tier {
                high_watermark_gb: Some(h),
                low_watermark_gb: Some(l),
                ..
            }) = tier
            {
                if l > h {
                    bail!("[tiers.{name}] low_watermark_gb ({l}) is above high_watermark_gb ({h})");
                }
            }
        }
        Ok(())
    }

    /// The data directory: `--home`/`$FVFS_HOME` first, then the config, then the default.
    pub fn data_dir(&self, home: Option<PathBuf>) -> Result<PathBuf> {
        if let Some(h) = home {
            return Ok(h);
        }
        let home_dir = || {
            std::env::var_os("HOME")
                .map(PathBuf::from)
                .context("HOME is not set: give --home DIR or FVFS_HOME")
        };
        match &self.daemon.data_dir {
            Some(d) => match d.strip_prefix("~") {
                Ok(rest) => Ok(home_dir()?.join(rest)),
                Err(_) => Ok(d.clone()),
            },
            None => Ok(home_dir()?.join(".local/share/fvfs")),
        }
    }

    /// What the config asks for that this build does not do yet, one line each, so the
    /// daemon can say so at start instead of silently ignoring it.
    pub fn not_in_effect(&self) -> Vec<String> {
        let mut notes = Vec::new();
        if let Some(p) = &self.daemon.mount_path {
            notes.push(format!(
                "[daemon] mount_path {}: mount with `fvfsc mount` instead",
                p.display()
            ));
        }
        if let Some(p) = &self.daemon.metadata_db {
            notes.push(format!(
                "[daemon] metadata_db {}: metadata lives under data_dir",
                p.display()
            ));
        }
        notes
    }

    /// The NAS tier's directory, if the tier is configured.
    /// How the local tier's pack store is laid out and compacted.
    pub fn local_packs(&self) -> fvfs_cas::PackOptions {
        self.packs(self.tiers.local.as_ref())
    }

    /// How the NAS tier's pack store is laid out and compacted.
    pub fn nas_packs(&self) -> fvfs_cas::PackOptions {
        self.packs(self.tiers.nas.as_ref())
    }

    fn packs(&self, tier: Option<&Tier>) -> fvfs_cas::PackOptions {
        let default = fvfs_cas::PackOptions::default();
        fvfs_cas::PackOptions {
            segment_bytes: tier
                .and_then(|t| t.segment_mb)
                .map_or(default.segment_bytes, |mb| mb.clamp(1, 1024) << 20),
            compact_below: self.gc.compact_below,
            ..default
        }
    }

    /// Whether the NAS tier is sealed (`[tiers.nas] encrypt`).
    pub fn nas_encrypted(&self) -> bool {
        self.tiers.nas.as_ref().is_some_and(|t| t.encrypt)
    }

    /// The NAS tier, as the data directory opens it.
    pub fn nas(&self) -> Option<fvfs_engine::NasTier<'_>> {
        self.nas_path().map(|path| fvfs_engine::NasTier {
            path,
            packs: self.nas_packs(),
            encrypt: self.nas_encrypted(),
        })
    }

    pub fn nas_path(&self) -> Option<&Path> {
        self.tiers.nas.as_ref().and_then(|t| t.path.as_deref())
    }

    /// How tier `id` is run: its watermarks in bytes (`[tiers.local]`, `[tiers.nas]`),
    /// and when its replication worker syncs (the S3 worker uploads what waits by
    /// `[upload]`; the NAS one syncs after every batch).
    pub fn running(&self, id: TierId) -> Running {
        match id {
            TierId::Local => Running {
                watermarks: watermarks(self.tiers.local.as_ref()),
                ..Running::PLAIN
            },
            TierId::Nas => Running {
                watermarks: watermarks(self.tiers.nas.as_ref()),
                ..Running::PLAIN
            },
            TierId::S3 => Running {
                watermarks: None,
                flush: fvfs_tiering::FlushPolicy {
                    size_bytes: self.upload.flush_size_mb << 20,
                    interval: std::time::Duration::from_secs(self.upload.flush_interval_secs),
                },
            },
        }
    }

    /// The S3 tier's settings, if the tier is configured.
    pub fn s3(&self) -> Option<fvfs_tiering::S3Settings> {
        self.tiers.s3.as_ref().map(|s| fvfs_tiering::S3Settings {
            bucket: s.bucket.clone(),
            region: s.region.clone(),
            prefix: s.prefix.clone(),
            endpoint: s.endpoint.clone(),
            storage_class: s.storage_class.clone(),
            // Mbit/s, as uplinks are sold.
            max_bytes_per_sec: self.upload.max_mbps.map(|m| m * 125_000.0),
        })
    }

    /// How the S3 tier is encrypted, when there is one.
    pub fn s3_crypt(&self) -> Option<fvfs_engine::keys::Crypt> {
        self.tiers.s3.as_ref().map(|s| fvfs_engine::keys::Crypt {
            encrypt: s.encrypt,
            passphrase_file: s.passphrase_file.clone(),
        })
    }

    /// Where the local tier's chunks live: `[tiers.local] path`, else `data_dir/chunks`.
    pub fn local_path(&self, data_dir: &Path) -> PathBuf {
        self.tiers
            .local
            .as_ref()
            .and_then(|t| t.path.clone())
            .unwrap_or_else(|| data_dir.join("chunks"))
    }

    /// Where the HTTP API listens: `listen`, else 127.0.0.1 on `http_port` (default 7734).
    pub fn listen(&self) -> SocketAddr {
        self.daemon.listen.unwrap_or_else(|| {
            SocketAddr::new(
                IpAddr::V4(Ipv4Addr::LOCALHOST),
                self.daemon.http_port.unwrap_or(DEFAULT_PORT),
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, String> {
        toml::from_str::<Config>(text).map_err(|e| e.to_string())
    }

    #[test]
    fn the_example_config_and_the_original_sections_parse() {
        let example = include_str!("../../config.example.toml");
        let c = parse(example).unwrap();
        assert_eq!(c.listen().port(), 7734);
        assert_eq!(c.upload.flush_size_mb, 256);
        let original = r#"
            [daemon]
            mount_path  = "/mnt/fvfs"
            http_port   = 7734
            metadata_db = "/var/fvfsd/meta.db"
            [tiers.local]
            path = "/Users/freddie/fvfs-cache"
            high_watermark_gb = 200
            low_watermark_gb  = 150
            [tiers.nas]
            path = "/Volumes/NAS/fvfs"
            high_watermark_gb = 2000
            low_watermark_gb  = 1500
            [tiers.s3]
            bucket = "freddie-fvfs"
            region = "us-east-1"
            prefix = "fvfs/"
            [upload]
            flush_size_mb       = 256
            flush_interval_secs = 300
            [eviction]
            interval_secs    = 600
            recency_weight   = 0.7
            frequency_weight = 0.3
        "#;
        let c = parse(original).unwrap();
        assert_eq!(c.tiers.s3.unwrap().bucket, "freddie-fvfs");
    }

    #[test]
    fn unknown_keys_are_named() {
        let err = parse("[daemon]\nlisten_port = 1\n").unwrap_err();
        assert!(err.contains("listen_port"), "{err}");
        let err = parse("[tiers.s3]\nbucket = \"b\"\nendpiont = \"x\"\n").unwrap_err();
        assert!(err.contains("endpiont"), "{err}");
        assert!(parse("[daemon]\nlisten = \"not an address\"\n").is_err());
    }

    #[test]
    fn only_the_nas_is_encrypted_and_only_under_an_encrypted_s3_tier() {
        let nas = "[tiers.nas]\npath = \"/mnt/nas\"\nencrypt = true\n";
        let ok = parse(&format!("{nas}[tiers.s3]\nbucket = \"b\"\n")).unwrap();
        ok.validate().unwrap();
        assert!(ok.nas().unwrap().encrypt);
        for (bad, says) in [
            (nas.to_owned(), "[tiers.s3]"),
            (
                format!("{nas}[tiers.s3]\nbucket = \"b\"\nencrypt = false\n"),
                "[tiers.s3]",
            ),
            (
                "[tiers.local]\nencrypt = true\n".to_owned(),
                "[tiers.local] cannot",
            ),
        ] {
            let err = parse(&bad).unwrap().validate().unwrap_err().to_string();
            assert!(err.contains(says), "{err}");
        }
    }

    #[test]
    fn upload_limits_and_storage_classes_are_checked() {
        let c = parse(
            "[tiers.s3]\nbucket = \"b\"\nstorage_class = \"STANDARD_IA\"\n[upload]\nmax_mbps = 8\n",
        )
        .unwrap();
        c.validate().unwrap();
        let s3 = c.s3().unwrap();
        assert_eq!(s3.max_bytes_per_sec, Some(1_000_000.0), "8 Mbit/s");
        assert_eq!(s3.storage_class.as_deref(), Some("STANDARD_IA"));
        for bad in [
            "[upload]\nmax_mbps = 0\n",
            "[upload]\nmax_mbps = -3\n",
            "[tiers.s3]\nbucket = \"b\"\nstorage_class = \"GLACIER\"\n",
        ] {
            let err = parse(bad).unwrap().validate().unwrap_err().to_string();
            assert!(err.contains("max_mbps") || err.contains("GLACIER"), "{err}");
        }
    }
}
