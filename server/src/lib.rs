//! `fvfsd`: the fvfs daemon and the administration commands of its store, as a
//! library; `main.rs` only parses the command line and starts the runtime.
//!
//! Every command works with no config file, on the embedded default data directory
//! (`$FVFS_HOME`, else `~/.local/share/fvfs`). A command opens the store itself; when
//! `fvfsd serve` holds it (one process per store), a store command goes through the
//! daemon's API instead ([`command`]), and says so in one line if neither works.
//! Exit codes: 0 success, 1 the command ran but found problems (paths migrate skipped,
//! fsck findings), 2 it could not run.

pub mod cli;
mod command;
mod config;
mod convert;
mod export;
mod keys;
mod localmeta;
mod mdns;
mod migrate;
mod progress;
mod recover;
mod serve;

use std::process::ExitCode;

use anyhow::Result;
use cli::{Cli, Command};
use fvfs_tiering::Replication;

/// Runs the command `cli` names.
pub async fn run(cli: Cli) -> Result<ExitCode> {
    let config = match &cli.config {
        Some(path) => config::Config::load(path)?,
        None => config::Config::default(),
    };
    let dir = config.data_dir(cli.home)?;
    if let Command::Token { action, admin } = cli.command {
        fvfs_engine::create_dir(&dir)?;
        serve::token_command(&dir, action, admin)?;
        return Ok(ExitCode::SUCCESS);
    }
    if let Command::Pair { name, role } = cli.command {
        fvfs_engine::create_dir(&dir)?;
        serve::pair_command(&dir, config.listen(), name.as_deref(), role)?;
        return Ok(ExitCode::SUCCESS);
    }
    let s3 = config.s3();
    if let Command::Key { action } = cli.command {
        let (Some(settings), Some(crypt)) = (&s3, config.s3_crypt()) else {
            anyhow::bail!("fvfsd key needs the S3 tier: give a config with [tiers.s3]");
        };
        fvfs_engine::create_dir(&dir)?;
        keys::command(&dir, settings, &crypt, action).await?;
        return Ok(ExitCode::SUCCESS);
    }
    let chunks = config.local_path(&dir);
    if let Command::ConvertStore = cli.command {
        return convert::run(&dir, &config, &chunks);
    }
    let opened = fvfs_engine::Engine::open(
        dir.clone(),
        (&chunks, config.local_packs()),
        config.nas(),
        s3.as_ref().zip(config.s3_crypt()),
        |id| config.running(id),
    )
    .await;
    match opened {
        Ok(home) => {
            let home = home.with_sort_memory(config.gc.sort_memory());
            local(&home, &config, cli.command).await
        }
        Err(e) if e.is::<fvfs_engine::Busy>() => through_daemon(&dir, e, cli.command).await,
        Err(e) => Err(e),
    }
}

/// Runs `command` on the store opened by this process.
async fn local(
    home: &fvfs_engine::Engine,
    config: &config::Config,
    command: Command,
) -> Result<ExitCode> {
    let repo = home.repo();
    // With colder tiers, every chunk recorded (by any command) is queued for them
    // (`Engine::open`); a tier configured for the first time is sent everything recorded
    // before.
    let tiers = home.tier_set();
    if let Some(nas) = tiers.nas() {
        if let Some(why) = fvfs_tiering::prepare_nas(repo, nas).await? {
            tracing::warn!("NAS tier unavailable: {why}");
        }
    }
    let s3 = fvfs_tiering::TierId::S3.bit();
    if tiers.s3().is_some() && !repo.tier_initialised(s3)? {
        repo.mark_tier_initialised(s3).await?;
    }
    // A collection killed midway is finished before anything else writes.
    let finished = fvfs_fsck::gc::finish_interrupted(repo, &home.fsck_tiers()).await?;
    if finished > 0 {
        tracing::info!("finished {finished} deletions of an interrupted garbage collection");
    }
    match command {
        Command::Serve {
            listen,
            no_mdns,
            clock_file,
        } => {
            for note in config.not_in_effect() {
                tracing::warn!("config: {note}");
            }
            let options = serve::Options {
                listen: listen.unwrap_or_else(|| config.listen()),
                mdns: config.daemon.mdns && !no_mdns,
                node_name: config.daemon.node_name.clone(),
                evict_every: std::time::Duration::from_secs(config.eviction.interval_secs.max(1)),
                weights: fvfs_tiering::evict::Weights {
                    recency: config.eviction.recency_weight,
                    frequency: config.eviction.frequency_weight,
                },
                gc: config.gc.clone(),
                snapshots: config.snapshots,
                clock: clock_file.map_or(serve::auto::Clock::System, serve::auto::Clock::File),
                host_names: config.daemon.host_names.clone(),
                limits: serve::Limits::of(config)?,
            };
            serve::run(home, options).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Recover {
            from_s3: _,
            rehydrate,
        } => recover::run(home, rehydrate).await,
        Command::Store(command) => command::run(&command::Local { home, config }, command).await,
        Command::Token { .. }
        | Command::Pair { .. }
        | Command::Key { .. }
        | Command::ConvertStore => {
            unreachable!("answered before the store is opened")
        }
    }
}

/// Runs `command` through the daemon that holds the store in `dir`; `busy` is the
/// lock error, reported as is when no daemon answers.
async fn through_daemon(
    dir: &std::path::Path,
    busy: anyhow::Error,
    command: Command,
) -> Result<ExitCode> {
    let Some(api) = command::remote::connect(dir) else {
        return Err(busy);
    };
    let result = match command {
        Command::Serve { .. } => {
            anyhow::bail!("a daemon already serves this store at {}", api.base)
        }
        Command::Recover { .. } => {
            anyhow::bail!("a daemon serves this store at {}: recover rebuilds a lost store, stop the daemon and use an empty data directory", api.base)
        }
        Command::Store(command) => command::run(&api, command).await,
        Command::Token { .. }
        | Command::Pair { .. }
        | Command::Key { .. }
        | Command::ConvertStore => {
            unreachable!("answered before the store is opened")
        }
    };
    match result {
        Err(e) if command::remote::unreachable(&e) => Err(busy),
        other => other,
    }
}
