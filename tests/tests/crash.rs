//! Crash testing: a random workload (writes, deletes, snapshots, garbage collections)
//! against a real daemon, killed with SIGKILL at a random moment, then restarted and
//! checked. Every write the daemon acknowledged must
//! read back exactly, a write in flight at the kill may have landed or not (never half),
//! fsck must be clean and the replication queue must drain. Each iteration logs its
//! seed: `FVFS_CRASH_SEED=<seed> cargo test --test crash` replays it, and
//! `FVFS_CRASH_ITERATIONS` runs more of them (the CI run is bounded). A second test
//! kills the FUSE mount instead, while it writes with fsync: every file whose fsync
//! returned must be in the daemon, exactly.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use fvfs_tests::daemon::{request, try_raw, Daemon};
use fvfs_tests::{nas_config, tree, Fvfsd};

/// A small deterministic generator (xorshift), so a seed replays the same workload.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// What a path should hold: the acknowledged content (`None`: deleted), and the content
/// of a write that was in flight when the daemon died (it may or may not have landed).
#[derive(Default, Clone)]
struct Expect {
    acked: Option<Vec<u8>>,
    in_flight: Option<Option<Vec<u8>>>,
}

fn env_u64(key: &str) -> Option<u64> {
    std::env::var(key).ok().and_then(|v| v.parse().ok())
}

#[test]
fn acknowledged_writes_survive_kill_9() {
    let iterations = env_u64("FVFS_CRASH_ITERATIONS").unwrap_or(4);
    let first_seed = first_seed();
    let work = tempfile::tempdir().unwrap();
    let (_nas, config) = nas_config(work.path());
    let global = ["--config", config.to_str().unwrap()];
    let store = Fvfsd::new();
    let mut model: BTreeMap<String, Expect> = BTreeMap::new();
    let mut acked_total = 0u64;
    for i in 0..iterations {
        let seed = first_seed.wrapping_add(i.wrapping_mul(0x9E37_79B9_7F4A_7C15)) | 1;
        eprintln!("crash iteration {i}: FVFS_CRASH_SEED={seed}");
        let mut rng = Rng(seed);
        let mut d = Daemon::start_with(&store, &global, "127.0.0.1:0", &["--no-mdns"]);
        // Kill at a random moment between 50 ms and 1.5 s into the workload.
        let kill_at = Instant::now() + Duration::from_millis(50 + rng.below(1450));
        let addr = d.addr.clone();
        let pid = d.pid();
        let killer = std::thread::spawn(move || {
            std::thread::sleep(kill_at.saturating_duration_since(Instant::now()));
            rustix::process::kill_process(
                rustix::process::Pid::from_raw(pid as i32).unwrap(),
                rustix::process::Signal::KILL,
            )
            .ok();
        });
        loop {
            let path = format!("/f{}", rng.below(12));
            let op = rng.below(20);
            let (req, new) = if op < 14 {
                let len = rng.below(300_000) as usize;
                let content = tree::bytes(rng.next(), len, rng.below(2) == 0);
                (
                    request("PUT", &format!("/v1/files{path}"), &[], &content),
                    Some(content),
                )
            } else if op < 18 {
                (
                    request("DELETE", &format!("/v1/files{path}"), &[], b""),
                    None,
                )
            } else if op == 18 {
                // A collection that keeps the last two versions (and the snapshots).
                let gc = "/v1/admin/gc?keep_last=2&grace_secs=0";
                (request("POST", gc, &[], b""), Some(Vec::new()))
            } else {
                let name = format!("s{}", rng.next());
                (
                    request(
                        "POST",
                        "/v1/snapshots",
                        &["content-type: application/json"],
                        format!("{{\"name\":\"{name}\"}}").as_bytes(),
                    ),
                    Some(Vec::new()),
                )
            };
            // Snapshots and collections change no path.
            let is_snapshot = op >= 18;
            let e = model.entry(path.clone()).or_default();
            if !is_snapshot {
                e.in_flight = Some(new.clone());
            }
            // A DELETE of a missing file and a snapshot of an empty store are refused
            // with 404: answered, with nothing to change.
            let answered = |status: u16| {
                (200..300).contains(&status) || (status == 404 && (new.is_none() || is_snapshot))
            };
            match try_raw(&addr, &req) {
                Some((status, _)) if answered(status) => {
                    let e = model.get_mut(&path).unwrap();
                    if !is_snapshot {
                        e.acked = new;
                        e.in_flight = None;
                        acked_total += 1;
                    }
                }
                // A write whose deduplicated content a collection took meanwhile is
                // refused, not acknowledged: nothing changed.
                Some((409, body))
                    if new.is_some() && !is_snapshot && body.contains("missing_chunks") =>
                {
                    model.get_mut(&path).unwrap().in_flight = None;
                }
                Some((status, body)) if status < 500 => {
                    panic!("seed {seed}: {path} answered {status}: {body}")
                }
                // The daemon died (connection reset or refused): stop this iteration.
                _ => break,
            }
        }
        killer.join().unwrap();
        d.kill();

        // Restart and check every path against the model.
        let d = Daemon::start_with(&store, &global, "127.0.0.1:0", &["--no-mdns"]);
        for (path, e) in model.iter_mut() {
            let (status, _) = d.raw(&request("GET", &format!("/v1/meta{path}"), &[], b""));
            let got = match status {
                200 => Some(d.fvfsc(["cat", path]).output().unwrap().stdout),
                404 => None,
                s => panic!("seed {seed}: {path}: status {s}"),
            };
            let ok = got == e.acked || e.in_flight.as_ref().is_some_and(|f| got == *f);
            assert!(
                ok,
                "seed {seed}: {path} holds {:?} bytes, acknowledged {:?}",
                got.as_ref().map(Vec::len),
                e.acked.as_ref().map(Vec::len)
            );
            // Whatever landed is now the truth for the next iteration.
            e.acked = got;
            e.in_flight = None;
        }
        let (status, body) = d.raw(&request("POST", "/v1/admin/flush", &[], b""));
        assert_eq!(
            status, 200,
            "seed {seed}: the replication queue drains: {body}"
        );
        let (status, body) = d.raw(&request(
            "POST",
            "/v1/admin/fsck?read_data=true&all=true",
            &[],
            b"",
        ));
        assert_eq!(status, 200, "{body}");
        assert!(
            body.contains("\"problems\":[]"),
            "seed {seed}: fsck: {body}"
        );
    }
    eprintln!("{iterations} kill -9 iterations, {acked_total} acknowledged writes checked, 0 lost");
}

/// The first seed of a run: `FVFS_CRASH_SEED`, else the clock.
fn first_seed() -> u64 {
    env_u64("FVFS_CRASH_SEED").unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64
            | 1
    })
}

#[test]
fn fsynced_writes_survive_killing_the_mount() {
    use std::io::Write;
    let iterations = env_u64("FVFS_CRASH_ITERATIONS").unwrap_or(3);
    let first_seed = first_seed();
    let work = tempfile::tempdir().unwrap();
    let store = Fvfsd::new();
    let d = Daemon::start(&store, "127.0.0.1:0", &["--no-mdns"]);
    let mut model: BTreeMap<String, Expect> = BTreeMap::new();
    let mut acked_total = 0u64;
    for i in 0..iterations {
        let seed = first_seed.wrapping_add(i.wrapping_mul(0x9E37_79B9_7F4A_7C15)) | 1;
        eprintln!("mount crash iteration {i}: FVFS_CRASH_SEED={seed}");
        let mut rng = Rng(seed);
        let dir = work.path().join(format!("mnt{i}"));
        let mut m = fvfs_tests::mount::Mount::start(&d, &dir, &work.path().join("cache"), &[]);
        let pid = m.pid().unwrap();
        let kill_at = Instant::now() + Duration::from_millis(100 + rng.below(1400));
        let killer = std::thread::spawn(move || {
            std::thread::sleep(kill_at.saturating_duration_since(Instant::now()));
            rustix::process::kill_process(
                rustix::process::Pid::from_raw(pid as i32).unwrap(),
                rustix::process::Signal::KILL,
            )
            .ok();
        });
        loop {
            let name = format!("f{}", rng.below(6));
            let content = tree::bytes(rng.next(), rng.below(200_000) as usize, rng.below(2) == 0);
            let e = model.entry(format!("/{name}")).or_default();
            e.in_flight = Some(Some(content.clone()));
            let written = std::fs::File::create(dir.join(&name)).and_then(|mut f| {
                f.write_all(&content)?;
                f.sync_all()
            });
            if written.is_err() {
                break; // The mount died.
            }
            e.acked = Some(content);
            e.in_flight = None;
            acked_total += 1;
        }
        killer.join().unwrap();
        m.kill();
        drop(m); // Clears the stale mount.
        for (path, e) in model.iter_mut() {
            let (status, _) = d.raw(&request("GET", &format!("/v1/meta{path}"), &[], b""));
            let got = match status {
                200 => Some(d.fvfsc(["cat", path]).output().unwrap().stdout),
                404 => None,
                s => panic!("seed {seed}: {path}: status {s}"),
            };
            let ok = got == e.acked || e.in_flight.as_ref().is_some_and(|f| got == *f);
            assert!(
                ok,
                "seed {seed}: {path} holds {:?} bytes, fsynced {:?}",
                got.as_ref().map(Vec::len),
                e.acked.as_ref().map(Vec::len)
            );
            e.acked = got;
            e.in_flight = None;
        }
    }
    eprintln!("{acked_total} fsynced writes checked after {iterations} kills of the mount");
    assert!(
        acked_total > 0,
        "no write was acknowledged before the kills"
    );
    let (status, body) = d.raw(&request(
        "POST",
        "/v1/admin/fsck?read_data=true&all=true",
        &[],
        b"",
    ));
    assert_eq!(status, 200);
    assert!(body.contains("\"problems\":[]"), "{body}");
}
