//! `fvfsd`: the fvfs daemon and the administration commands of its store.
//!
//! Every command works with no config file, on the embedded default data directory
//! (`$FVFS_HOME`, else `~/.local/share/fvfs`). A command opens the store itself; when
//! `fvfsd serve` holds it (sled admits one process), the command goes through the
//! daemon's API instead ([`remote`]), and says so in one line if neither works.
//! Exit codes: 0 success, 1 the command ran but found problems (paths migrate skipped,
//! fsck findings), 2 it could not run.

mod cli;
mod config;
mod convert;
mod export;
mod home;
mod keys;
mod localmeta;
mod mdns;
mod migrate;
mod progress;
mod recover;
mod remote;
mod report;
mod serve;
mod tty;

use std::process::ExitCode;

/// jemalloc, not glibc's malloc: under sustained load the daemon's many threads (tokio
/// workers, file I/O moved off them) fragmented glibc's per-thread arenas and its RSS
/// only ever grew, past 400 MiB in a soak; jemalloc gives freed pages back (figures in
/// benches/README.md; mimalloc was tried and held 900 MiB).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

use anyhow::Result;
use clap::Parser;
use cli::{Cli, Command, SnapshotAction};

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let cli = Cli::parse();
    // 8 MiB stacks (tokio's default is 2): sealing and walking a tree recurse once per
    // level, and paths may be 512 levels deep (`path::MAX_DEPTH`); 1024 levels
    // overflowed 2 MiB.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_stack_size(8 << 20)
        .build()
        .expect("tokio runtime");
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            fvfs_api::out::quiet_on_closed_pipe(e.chain());
            eprintln!("fvfsd: error: {e:#}");
            ExitCode::from(2)
        }
    }
}

async fn run(cli: Cli) -> Result<ExitCode> {
    let config = match &cli.config {
        Some(path) => config::Config::load(path)?,
        None => config::Config::default(),
    };
    let dir = config.data_dir(cli.home)?;
    if let Command::Token { action, admin } = cli.command {
        home::create_dir(&dir)?;
        serve::token_command(&dir, action, admin)?;
        return Ok(ExitCode::SUCCESS);
    }
    if let Command::Pair { name, role } = cli.command {
        home::create_dir(&dir)?;
        serve::pair_command(&dir, config.listen(), name.as_deref(), role)?;
        return Ok(ExitCode::SUCCESS);
    }
    let s3 = config.s3();
    if let Command::Key { action } = cli.command {
        let (Some(settings), Some(crypt)) = (&s3, config.s3_crypt()) else {
            anyhow::bail!("fvfsd key needs the S3 tier: give a config with [tiers.s3]");
        };
        home::create_dir(&dir)?;
        keys::command(&dir, settings, &crypt, action).await?;
        return Ok(ExitCode::SUCCESS);
    }
    let chunks = config.local_path(&dir);
    if let Command::ConvertStore = cli.command {
        return convert::run(&dir, &config, &chunks);
    }
    let opened = home::Home::open(
        dir.clone(),
        (&chunks, config.local_packs()),
        config.nas(),
        s3.as_ref().zip(config.s3_crypt()),
        |id| config.running(id),
    )
    .await;
    match opened {
        Ok(home) => local(&home, &config, cli.command).await,
        Err(e) if e.is::<home::Busy>() => remote::run(&dir, e, cli.command).await,
        Err(e) => Err(e),
    }
}

/// Runs `command` on the store opened by this process.
async fn local(home: &home::Home, config: &config::Config, command: Command) -> Result<ExitCode> {
    let repo = home.repo();
    // With colder tiers, every chunk recorded (by any command) is queued for them; a
    // tier configured for the first time is sent everything recorded before.
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
    repo.set_replicas(tiers.replicas());
    // A collection killed midway is finished before anything else writes.
    let finished = fvfs_fsck::gc::finish_interrupted(repo, &home.fsck_tiers()).await?;
    if finished > 0 {
        tracing::info!("finished {finished} deletions of an interrupted garbage collection");
    }
    let where_ = home.dir().display().to_string();
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
                limits: config.limits()?,
            };
            serve::run(home, options).await?
        }
        Command::Token { .. }
        | Command::Pair { .. }
        | Command::Key { .. }
        | Command::ConvertStore => {
            unreachable!("answered before the store is opened")
        }
        Command::Migrate(args) => {
            return Ok(report::outcome(&migrate::run(repo, args).await?, "skipped"))
        }
        Command::Snapshot { action } => match action {
            SnapshotAction::Create { name } => {
                let v = repo.lock().await.snapshot_create(&name).await?;
                fvfs_api::outln!("snapshot {name} = version {}", v.number);
            }
            SnapshotAction::List { json } => report::snapshots(&repo.snapshot_infos()?, json),
            SnapshotAction::Delete { name } => {
                let n = repo.lock().await.snapshot_delete(&name)?;
                fvfs_api::outln!("deleted snapshot {name} (version {n} stays in the log)");
            }
        },
        Command::Log { limit, json } => {
            report::log(&repo.log_info(limit.unwrap_or(usize::MAX))?, json)
        }
        Command::Rollback { version } => {
            let target = repo.resolve(&version)?;
            let v = repo.lock().await.rollback(&target).await?;
            let show = |v| repo.version_info(v);
            fvfs_api::out!(
                "{}",
                fvfs_api::show::rolled_back(&show(&v)?, &show(&target)?)
            );
        }
        Command::Diff { a, b, json } => report::diff(&repo.diff_info(&a, &b).await?, json),
        Command::Export(args) => {
            let s3 = home.s3();
            let outcome = export::run(repo, s3.as_deref(), args).await;
            // What was fetched from a colder tier stays local, also when the export
            // stopped: a second run does not fetch it again.
            if let Some(tiers) = home.tiers() {
                tiers.record_reads(repo).await?;
            }
            return Ok(report::outcome(&outcome?, "not exported"));
        }
        Command::Status { json } => report::status(&repo.status_info()?, &where_, json),
        Command::Recover {
            from_s3: _,
            rehydrate,
        } => return recover::run(home, rehydrate).await,
        Command::Gc(args) => {
            let opts = config.gc.options(&args, true);
            let progress = fvfs_fsck::Progress::new("gc");
            let tiers = home.fsck_tiers();
            let work = fvfs_fsck::gc::collect(repo, &tiers, &opts, &progress);
            let report = progress::with_bar(&progress, work).await?;
            return Ok(report::gc(&report));
        }
        Command::Fsck {
            read_data,
            all,
            version,
            repair,
        } => {
            let versions = fvfs_fsck::versions_to_check(repo, all, version.as_deref())?;
            let opts = fvfs_fsck::Options { read_data, repair };
            let progress = std::sync::Arc::new(fvfs_fsck::Progress::new("fsck"));
            let tiers = home.fsck_tiers();
            let repo = home.repo_arc();
            let work = fvfs_fsck::check(&repo, &tiers, &versions, opts, &progress);
            let checked = progress::with_bar(&progress, work).await?;
            return Ok(report::fsck(&checked.report));
        }
    }
    Ok(ExitCode::SUCCESS)
}
