//! Automatic snapshots: made on the clock, pruned by the policy.

use super::*;

#[test]
fn automatic_snapshots_follow_the_clock_and_the_policy() {
    let store = Fvfsd::new();
    let work = tempfile::tempdir().unwrap();
    let config = work.path().join("fvfsd.toml");
    fs::write(
        &config,
        "[snapshots]\nhourly = 3\ndaily = 2\n[gc]\nkeep_last = 1\ngrace_secs = 0\n",
    )
    .unwrap();
    let clock = work.path().join("clock");
    // 2026-11-02T00:30:00Z, a Monday.
    let t0 = 1_793_579_400;
    fs::write(&clock, t0.to_string()).unwrap();
    let d = Daemon::start_with(
        &store,
        &["--config", config.to_str().unwrap()],
        "127.0.0.1:0",
        &["--no-mdns", "--clock-file", clock.to_str().unwrap()],
    );
    let local = work.path().join("text");
    let hour = 3600;

    // An empty store gets no snapshot; a person's snapshot is never pruned, and people
    // cannot take names that look automatic.
    assert_eq!(
        set_clock(&d, &clock, t0 + 1)["taken"],
        serde_json::Value::Null
    );
    put_text(&d, &local, "/doc.txt", "v0");
    fvfsc(&d, 0, &["snapshot", "create", "mine"]);
    let refused = d
        .fvfsc(["snapshot", "create", "auto-2026-11-02-0100"])
        .output()
        .unwrap();
    assert_eq!(refused.status.code(), Some(1), "{}", stderr(&refused));

    // One snapshot per hour at most, and only when something changed.
    put_text(&d, &local, "/doc.txt", "v1");
    assert_eq!(
        set_clock(&d, &clock, t0 + 60)["taken"],
        "auto-2026-11-02-0031"
    );
    put_text(&d, &local, "/doc.txt", "v2");
    set_clock(&d, &clock, t0 + 120);
    assert_eq!(automatic_snapshots(&d).0, ["auto-2026-11-02-0031"]);
    set_clock(&d, &clock, t0 + hour);
    assert_eq!(
        automatic_snapshots(&d).0,
        ["auto-2026-11-02-0031", "auto-2026-11-02-0130"]
    );
    // 02:00, a new hour, but nothing changed: none taken.
    set_clock(&d, &clock, t0 + hour + 1800);
    assert_eq!(
        automatic_snapshots(&d).0.len(),
        2,
        "nothing changed: none taken"
    );
    let shown = fvfsc(&d, 0, &["snapshot", "list"]);
    assert!(
        shown.contains("auto-2026-11-02-0130\tversion") && shown.contains("\tautomatic"),
        "{shown}"
    );

    // A change every hour: hours 2 to 4 of day 0, 0 to 2 of day 1, 0 of day 2.
    let mut status = serde_json::Value::Null;
    for (h, name) in [
        (2, "02-0230"),
        (3, "02-0330"),
        (4, "02-0430"),
        (24, "03-0030"),
        (25, "03-0130"),
        (26, "03-0230"),
        (48, "04-0030"),
    ] {
        put_text(&d, &local, "/doc.txt", &format!("hour {h}"));
        status = set_clock(&d, &clock, t0 + h * hour);
        assert_eq!(status["last_error"], serde_json::Value::Null, "{status}");
        assert_eq!(status["taken"], format!("auto-2026-11-{name}"));
    }
    // Kept: the three most recent hours (day 1's 01:30 and 02:30, day 2's 00:30) and
    // the newest of the two most recent days (the same ones).
    let (auto, mine) = automatic_snapshots(&d);
    assert_eq!(
        auto,
        [
            "auto-2026-11-03-0130",
            "auto-2026-11-03-0230",
            "auto-2026-11-04-0030"
        ]
    );
    assert!(mine, "a person's snapshot is never pruned");
    // The collection after the last pruning kept only the versions that snapshots
    // name (keep_last = 1 is HEAD, the newest snapshot's own version).
    assert_eq!(
        status["pruned"],
        serde_json::json!(["auto-2026-11-02-0430", "auto-2026-11-03-0030"])
    );
    assert!(status["versions_dropped"].as_u64().unwrap() > 0, "{status}");
    // The rounds ran as a worker of the daemon, which status and metrics show, those
    // with something to take or prune as auto-snapshot jobs, and the collections after
    // pruning as gc jobs (as any gc).
    let full: serde_json::Value =
        serde_json::from_str(&fvfsc(&d, 0, &["status", "--json"])).unwrap();
    let workers = full["workers"].as_array().unwrap();
    let names: Vec<&str> = workers
        .iter()
        .map(|w| w["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "checkpoints",
            "samples",
            "recompress",
            "snapshots",
            "auto-snapshot",
            "gc"
        ],
        "{full}"
    );
    let last = full["last_tasks"].as_array().unwrap();
    let auto = last.iter().find(|t| t["task"] == "auto-snapshot");
    let auto = auto.unwrap_or_else(|| panic!("no auto-snapshot outcome: {full}"));
    let summary = auto["summary"].as_str().unwrap();
    assert!(
        auto["ok"] == true && summary.starts_with("took auto-"),
        "{auto}"
    );
    let snapshots = &workers[3];
    assert!(snapshots["rounds"].as_u64().unwrap() >= 12, "{snapshots}");
    assert_eq!(snapshots["failures"], 0, "{snapshots}");
    let metrics = d.raw(&request("GET", "/metrics", &[], b"")).1;
    assert!(
        metrics.contains("fvfs_worker_rounds{worker=\"snapshots\"}"),
        "{metrics}"
    );
    // The numbers under `key` in what `fvfsc ARGS --json` lists, sorted.
    let numbers = |args: &[&str], key: &str| {
        let list: serde_json::Value = serde_json::from_str(&fvfsc(&d, 0, args)).unwrap();
        let mut n: Vec<u64> = list
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v[key].as_u64().unwrap())
            .collect();
        n.sort_unstable();
        n
    };
    let named = numbers(&["snapshot", "list", "--json"], "version");
    let versions = numbers(&["log", "--json"], "number");
    assert_eq!(versions, named);
    d.assert_fsck_clean("after automatic snapshots and their collection");
}
