//! The web page in a real browser: headless Chromium (Debian's `chromium` and
//! `chromium-driver`) opens the daemon's page and does what a person would: browses into
//! a folder, downloads a file, uploads one, takes a snapshot, restores an older version
//! of a file, rolls back with the confirmation, and watches the status. Each change is
//! checked through the API, not through the page. A read-only token sees no button that
//! changes anything. Screenshots of the main views go to `$FVFS_SCREENSHOTS` (default:
//! `screenshots/` in the build folder); README.md shows the ones in `docs/screenshots`.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use fvfs_tests::daemon::{request, Daemon};
use fvfs_tests::webdriver::Browser;
use fvfs_tests::Fvfsd;
use serde_json::{json, Value};

fn screenshots() -> PathBuf {
    let dir = std::env::var_os("FVFS_SCREENSHOTS")
        .map_or_else(|| fvfs_tests::bin_dir().join("screenshots"), PathBuf::from);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Puts `text` at `path` with fvfsc; the version it made.
fn put(d: &Daemon, scratch: &Path, path: &str, text: &[u8]) -> u64 {
    std::fs::write(scratch, text).unwrap();
    let out = d
        .fvfsc(["put", path, "--from", scratch.to_str().unwrap()])
        .output()
        .unwrap();
    fvfs_tests::check(&out, 0);
    d.head()
}

fn api(d: &Daemon, path: &str) -> Value {
    let (status, body) = d.raw(&request("GET", path, &[], b""));
    assert_eq!(status, 200, "{path}: {body}");
    serde_json::from_str(&body).unwrap()
}

/// A file's bytes as the API serves them now.
fn content(d: &Daemon, path: &str) -> (u16, String) {
    d.raw(&request("GET", &format!("/v1/files{path}"), &[], b""))
}

/// Clicks `css` and waits until the page has drawn its view again.
fn click_and_wait(b: &Browser, css: &str) {
    let before = renders(b);
    b.click(css);
    b.wait(&format!("Number(document.body.dataset.renders) > {before}"));
}

/// Clicks `css`, which asks for a confirmation, confirms, and waits for the new view.
fn click_confirm_and_wait(b: &Browser, css: &str, shot: Option<&Path>) {
    let before = renders(b);
    b.click(css);
    b.wait("document.getElementById('dialog').open");
    if let Some(to) = shot {
        b.screenshot(to);
    }
    b.click("#dialog-ok");
    b.wait(&format!("Number(document.body.dataset.renders) > {before}"));
}

fn renders(b: &Browser) -> u64 {
    b.eval(
        "return Number(document.body.dataset.renders || 0);",
        json!([]),
    )
    .as_u64()
    .unwrap()
}

/// Loads the page afresh at `hash` and waits for its first view. (Opening another hash
/// of the page already shown would only change the hash: the old view could still be
/// what the next step sees.)
fn visit(b: &Browser, d: &Daemon, hash: &str) {
    b.open("about:blank");
    b.open(&format!("{}/{hash}", d.url));
    b.wait("document.body.dataset.ready === '1'");
}

fn no_page_error(b: &Browser) {
    let errors = b.eval(
        "return [document.body.dataset.error || null, document.body.dataset.jsError || null];",
        json!([]),
    );
    assert_eq!(errors, json!([null, null]), "the page reported an error");
}

#[test]
fn a_person_browses_downloads_uploads_snapshots_restores_and_rolls_back_in_a_browser() {
    let work = tempfile::tempdir().unwrap();
    // A NAS tier too, so the status shows a replication backlog.
    let (_nas, config) = fvfs_tests::nas_config(work.path());
    let store = Fvfsd::new();
    let d = Daemon::start_with(
        &store,
        &["--config", config.to_str().unwrap()],
        "127.0.0.1:0",
        &["--no-mdns"],
    );
    let scratch = work.path().join("scratch");
    let first = put(&d, &scratch, "/docs/notes.txt", b"first draft\n");
    let photo: Vec<u8> = (0..300_000u32).map(|i| (i * 7 + i / 251) as u8).collect();
    put(&d, &scratch, "/photos/cat.jpg", &photo);
    let second = put(&d, &scratch, "/docs/notes.txt", b"second draft, longer\n");
    let downloads = work.path().join("downloads");
    std::fs::create_dir_all(&downloads).unwrap();
    let shots = screenshots();

    let b = Browser::start(1280, 860, &downloads);
    visit(&b, &d, "");
    assert_eq!(b.count("#listing tr[data-name='docs']"), 1);
    assert_eq!(b.count("#listing tr[data-name='photos']"), 1);
    b.screenshot(&shots.join("files.png"));

    // Browse into a folder, download a file.
    click_and_wait(&b, "#listing tr[data-name='docs'] a");
    b.click("#listing tr[data-name='notes.txt'] button[data-act='download']");
    let saved = downloads.join("notes.txt");
    let started = Instant::now();
    while std::fs::read(&saved).ok().as_deref() != Some(b"second draft, longer\n".as_slice()) {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the download never arrived: {:?}",
            std::fs::read_dir(&downloads).unwrap().collect::<Vec<_>>()
        );
        std::thread::sleep(Duration::from_millis(25));
    }
    // It streamed to disk through a download link, not through the page's memory.
    let metrics = d.raw(&request("GET", "/metrics", &[], b"")).1;
    assert!(
        metrics.contains("fvfs_http_requests_total{route=\"download\",status=\"200\"} 1\n"),
        "{metrics}"
    );

    // Upload a file from this machine.
    let local = work.path().join("report.bin");
    // Printable bytes: the test reads the file back as text.
    let report: Vec<u8> = (0..1_500_000u32).map(|i| (i % 95 + 32) as u8).collect();
    std::fs::write(&local, &report).unwrap();
    let before = renders(&b);
    b.type_into("#upload", local.to_str().unwrap());
    b.wait(&format!(
        "Number(document.body.dataset.renders) > {before} && \
         document.querySelector(\"#listing tr[data-name='report.bin']\")"
    ));
    let (status, body) = content(&d, "/docs/report.bin");
    assert_eq!(status, 200);
    assert_eq!(body.len(), report.len(), "the uploaded file's size");
    assert_eq!(blake3::hash(body.as_bytes()), blake3::hash(&report));
    let uploaded = d.head();

    // Take a snapshot.
    visit(&b, &d, "#/snapshots");
    b.type_into("#snapshot-name", "before-restore");
    click_and_wait(&b, "button[data-act='snapshot']");
    assert_eq!(b.count("#snapshots tr[data-name='before-restore']"), 1);
    let snaps = api(&d, "/v1/snapshots");
    assert_eq!(snaps[0]["name"], "before-restore");
    // A snapshot is a version of its own, naming the tree the upload left.
    let log = api(&d, "/v1/versions?limit=2");
    assert_eq!(snaps[0]["version"], log[0]["number"]);
    assert_eq!(log[0]["kind"], "snapshot");
    assert_eq!(log[1]["number"].as_u64(), Some(uploaded));
    assert_eq!(log[0]["root"], log[1]["root"]);

    // Restore the first draft from the file's history.
    visit(&b, &d, "#/history/docs/notes.txt");
    assert_eq!(b.count(&format!("#history tr[data-version='{second}']")), 1);
    b.screenshot(&shots.join("history.png"));
    click_confirm_and_wait(
        &b,
        &format!("#history tr[data-version='{first}'] button[data-act='restore']"),
        None,
    );
    assert_eq!(
        content(&d, "/docs/notes.txt"),
        (200, "first draft\n".into())
    );

    // Browse an older version: read-only, with Restore instead of changes.
    visit(&b, &d, &format!("#/files/docs?v={first}"));
    assert_eq!(b.count("#listing tr[data-name='report.bin']"), 0);
    assert_eq!(b.count("button[data-act='upload']"), 0);
    assert_eq!(b.count("#listing button[data-act='delete']"), 0);
    assert_eq!(
        b.count("#listing tr[data-name='notes.txt'] button[data-act='restore']"),
        1
    );

    // Roll back to the version before the upload, after reading what will change.
    visit(&b, &d, "#/versions");
    b.screenshot(&shots.join("versions.png"));
    click_confirm_and_wait(
        &b,
        &format!("#versions tr[data-version='{second}'] button[data-act='rollback']"),
        Some(&shots.join("rollback.png")),
    );
    let said = b.eval(
        "return document.getElementById('dialog-body').innerText;",
        json!([]),
    );
    assert!(
        said.as_str().unwrap().contains("/docs/report.bin"),
        "{said}"
    );
    assert_eq!(content(&d, "/docs/report.bin").0, 404);
    assert_eq!(
        content(&d, "/docs/notes.txt"),
        (200, "second draft, longer\n".into())
    );

    // A new folder, a rename, a folder deleted: each through its dialog.
    visit(&b, &d, "#/files/docs");
    b.click("button[data-act='mkdir']");
    b.wait("document.getElementById('dialog').open");
    b.type_into("#dialog-input", "drafts");
    click_and_wait(&b, "#dialog-ok");
    assert_eq!(b.count("#listing tr[data-name='drafts']"), 1);
    let ls = |path: &str| d.raw(&request("GET", &format!("/v1/ls{path}"), &[], b"")).0;
    assert_eq!(ls("/docs/drafts"), 200);
    b.click("#listing tr[data-name='notes.txt'] button[data-act='rename']");
    b.wait("document.getElementById('dialog').open");
    b.clear("#dialog-input");
    b.type_into("#dialog-input", "notes-old.txt");
    click_and_wait(&b, "#dialog-ok");
    assert_eq!(content(&d, "/docs/notes.txt").0, 404);
    assert_eq!(
        content(&d, "/docs/notes-old.txt"),
        (200, "second draft, longer\n".into())
    );
    click_confirm_and_wait(
        &b,
        "#listing tr[data-name='drafts'] button[data-act='delete']",
        None,
    );
    assert_eq!(ls("/docs/drafts"), 404);
    assert_eq!(b.count("#listing tr[data-name='drafts']"), 0);

    // The status board, with its plots.
    visit(&b, &d, "#/status");
    assert_eq!(b.count("#tiers [data-tier='local']"), 1);
    assert_eq!(b.count("#tiers [data-tier='nas']"), 1);
    let plots = b.eval(
        "return [...document.querySelectorAll('.plot')].map((p) => \
         [p.querySelector('h2').textContent, p.querySelectorAll('svg path').length]);",
        json!([]),
    );
    assert_eq!(
        plots,
        json!([
            ["Usage per tier", 2],
            ["Replication backlog (chunks waiting)", 1]
        ]),
        "a line per tier in each plot"
    );
    b.screenshot(&shots.join("status.png"));

    // A phone's screen.
    b.resize(390, 844);
    for (hash, shot) in [
        ("#/files/docs", "phone.png"),
        ("#/history/docs/notes.txt", "phone-history.png"),
    ] {
        visit(&b, &d, hash);
        b.screenshot(&shots.join(shot));
        let overflow = b.eval(
            "return document.documentElement.scrollWidth - document.documentElement.clientWidth;",
            json!([]),
        );
        assert!(
            overflow.as_i64().unwrap() <= 0,
            "{hash} is wider than the phone: {overflow}"
        );
    }
    no_page_error(&b);
}

#[test]
fn a_read_only_token_sees_nothing_that_changes_the_store() {
    let store = Fvfsd::new();
    let d = Daemon::start(&store, "127.0.0.1:0", &["--no-mdns"]);
    let work = tempfile::tempdir().unwrap();
    let scratch = work.path().join("scratch");
    put(&d, &scratch, "/docs/notes.txt", b"one\n");
    put(&d, &scratch, "/docs/notes.txt", b"two\n");
    // A name a hostile device chose: shown as text, never run as markup.
    let hostile = "<img src=x onerror=\"document.body.dataset.pwned=1\">.txt";
    put(&d, &scratch, &format!("/docs/{hostile}"), b"gotcha\n");
    let read = store
        .run(["token", "new", "phone", "--role", "read"])
        .trim()
        .to_owned();
    let b = Browser::start(1280, 860, work.path());
    visit(&b, &d, "");
    b.eval(
        "localStorage.setItem('fvfs-token', arguments[0]);",
        json!([read]),
    );
    let write_buttons = "button[data-act='upload'], button[data-act='mkdir'], \
        button[data-act='rename'], button[data-act='delete'], button[data-act='restore'], \
        button[data-act='rollback'], button[data-act='snapshot'], #snapshot-name";
    for hash in [
        "#/files/docs",
        "#/history/docs/notes.txt",
        "#/versions",
        "#/snapshots",
    ] {
        visit(&b, &d, hash);
        b.wait("document.body.dataset.role === 'read'");
        assert_eq!(
            b.count(write_buttons),
            0,
            "{hash} shows a button that writes"
        );
    }
    visit(&b, &d, "#/files/docs");
    let names = b.eval(
        "return [...document.querySelectorAll('#listing tr')].map((r) => r.dataset.name);",
        json!([]),
    );
    assert!(
        names.as_array().unwrap().contains(&json!(hostile)),
        "{names}"
    );
    assert_eq!(b.count("#listing img"), 0, "a file name became markup");
    assert_eq!(
        b.eval("return document.body.dataset.pwned || null;", json!([])),
        Value::Null
    );
    // What it may do still works: download the older version from the history.
    visit(&b, &d, "#/history/docs/notes.txt");
    assert_eq!(b.count("#history button[data-act='download']"), 2);
    // A wrong token is asked again, not obeyed.
    b.eval("localStorage.setItem('fvfs-token', 'wrong');", json!([]));
    b.open(&format!("{}/#/files/", d.url));
    b.wait("document.getElementById('dialog').open");
    no_page_error(&b);
}
