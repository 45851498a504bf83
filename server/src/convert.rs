//! `fvfsd convert-store`: the local and NAS tiers from the one-file-per-chunk layout
//! of earlier versions to pack stores, in place, with the data directory locked; and
//! a NAS tier configured with `encrypt = true` whose store is still clear, sealed in
//! place under the S3 tier's master key. Resumable (see
//! `fvfs_cas::pack::convert_legacy` and `seal_in_place`); a tier already converted is
//! left alone.

use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, Result};
use fvfs_cas::{pack, PackOptions, PackStore};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::config::Config;

pub fn run(dir: &Path, config: &Config, local: &Path) -> Result<ExitCode> {
    fvfs_engine::create_dir(dir)?;
    let _lock = fvfs_engine::lock(dir)?;
    let mut tiers = vec![("local", local, config.local_packs())];
    tiers.extend(config.nas_path().map(|p| ("NAS", p, config.nas_packs())));
    let mut damaged = 0;
    for (name, root, opts) in tiers {
        damaged += convert(name, root, opts)?;
    }
    if let (true, Some(root)) = (config.nas_encrypted(), config.nas_path()) {
        damaged += seal(dir, root, config.nas_packs())?;
    }
    Ok(if damaged == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// Seals the clear NAS store at `root`; returns how many damaged records it dropped.
fn seal(dir: &Path, root: &Path, opts: PackOptions) -> Result<usize> {
    if !PackStore::exists_at(root) {
        fvfs_api::outln!("NAS store {}: nothing to encrypt", root.display());
        return Ok(0);
    }
    let key = fvfs_engine::keys::local_key(dir)?.with_context(|| {
        format!(
            "{} has no S3 key yet: start fvfsd once with the encrypted S3 tier (or recover \
             --from-s3), then convert",
            dir.display()
        )
    })?;
    let bar = bar("encrypting the NAS store", "records");
    let done = pack::seal_in_place(
        root,
        opts,
        &fvfs_tiering::seal::NasSeal::new(&key),
        |n, t| {
            bar.set_length(t);
            bar.set_position(n);
        },
    )
    .with_context(|| format!("encrypting {}", root.display()))?;
    bar.finish_and_clear();
    for id in &done.damaged {
        eprintln!("damaged: a record (key {id}) in the NAS store did not read back and was dropped (fsck --repair copies what it held again from another tier)");
    }
    fvfs_api::outln!(
        "NAS store {}: {} chunks encrypted",
        root.display(),
        done.chunks
    );
    Ok(done.damaged.len())
}

fn bar(message: &str, unit: &str) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(Some(256), ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template(&format!(
            "{{spinner}} [{{elapsed_precise}}] {{msg}} {{pos}}/{{len}} {unit}"
        ))
        .expect("static template"),
    );
    bar.set_message(message.to_owned());
    bar
}

/// Converts one tier; returns how many damaged chunk files it set aside.
fn convert(name: &str, root: &Path, opts: PackOptions) -> Result<usize> {
    if !pack::is_legacy(root) {
        fvfs_api::outln!("{name} store {}: nothing to convert", root.display());
        return Ok(0);
    }
    let bar = bar(&format!("converting the {name} store"), "shards");
    let done = pack::convert_legacy(root, opts, |n, _| bar.set_position(n))
        .with_context(|| format!("converting {}", root.display()))?;
    bar.finish_and_clear();
    for id in &done.damaged {
        eprintln!(
            "damaged: chunk {id} did not match its name; set aside in {}/damaged (fsck --repair copies it again from another tier)",
            root.display()
        );
    }
    fvfs_api::outln!(
        "{name} store {}: {} chunks ({} bytes) moved into pack files",
        root.display(),
        done.chunks,
        done.bytes
    );
    Ok(done.damaged.len())
}
