//! A real `fvfsd serve` for tests, on a free port, stopped with SIGTERM on drop; and a
//! raw HTTP/1.1 client, so tests can send exactly the malformed requests a hostile peer
//! would.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, ChildStderr, Command, Stdio};

use crate::{bin, Fvfsd};

pub struct Daemon {
    child: Option<Child>,
    /// `http://ADDR:PORT`.
    pub url: String,
    /// `ADDR:PORT`.
    pub addr: String,
    /// The data directory (from `FVFS_HOME`), where the tokens are.
    home: Option<std::path::PathBuf>,
}

impl Daemon {
    /// Starts `fvfsd serve --listen LISTEN` (port 0: a free one) on `store`'s data dir,
    /// and returns once it printed the address it answers on.
    pub fn start(store: &Fvfsd, listen: &str, extra: &[&str]) -> Self {
        Self::start_with(store, &[], listen, extra)
    }

    /// Like [`Daemon::start`], with global options (such as `--config FILE`) before `serve`.
    pub fn start_with(store: &Fvfsd, global: &[&str], listen: &str, extra: &[&str]) -> Self {
        let mut cmd = store.cmd(global);
        cmd.args(["serve", "--listen", listen]).args(extra);
        Self::spawn(cmd)
    }

    /// Starts a prepared `serve` command (for example inside a network namespace).
    pub fn spawn(cmd: Command) -> Self {
        Self::spawn_logged(cmd, Stdio::inherit()).0
    }

    /// Like [`Daemon::spawn`], its log (stderr) going to `log`; returns the log's
    /// reading end when `log` is a pipe.
    pub fn spawn_logged(mut cmd: Command, log: Stdio) -> (Self, Option<ChildStderr>) {
        let home = cmd
            .get_envs()
            .find(|(k, _)| *k == "FVFS_HOME")
            .and_then(|(_, v)| v.map(std::path::PathBuf::from));
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .expect("start fvfsd serve");
        let stderr = child.stderr.take();
        let mut out = BufReader::new(child.stdout.take().expect("stdout"));
        let mut line = String::new();
        out.read_line(&mut line).expect("read fvfsd's first line");
        let url = line
            .trim()
            .strip_prefix("fvfsd: listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .to_owned();
        // Keep draining stdout so the daemon never blocks on a full pipe.
        std::thread::spawn(move || std::io::copy(&mut out, &mut std::io::sink()));
        let addr = url.trim_start_matches("http://").to_owned();
        let daemon = Self {
            child: Some(child),
            url,
            addr,
            home,
        };
        (daemon, stderr)
    }

    /// The daemon's process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// Sends SIGTERM and waits; returns the exit code.
    pub fn stop(&mut self) -> Option<i32> {
        let mut child = self.child.take()?;
        rustix::process::kill_process(
            rustix::process::Pid::from_child(&child),
            rustix::process::Signal::TERM,
        )
        .ok();
        child.wait().ok()?.code()
    }

    /// kill -9, as a crash would.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// An `fvfsc` command aimed at this daemon.
    pub fn fvfsc<I: IntoIterator<Item = S>, S: AsRef<std::ffi::OsStr>>(&self, args: I) -> Command {
        let mut c = Command::new(bin("fvfsc"));
        c.env("FVFS_URL", &self.url)
            .env_remove("FVFS_TOKEN")
            .args(args);
        c
    }

    /// The number of the daemon's HEAD version (0 before the first).
    pub fn head(&self) -> u64 {
        let log = crate::run_ok(&mut self.fvfsc(["log", "-n", "1", "--json"]));
        let log: serde_json::Value = serde_json::from_str(&log).expect("fvfsc log --json");
        log[0]["number"].as_u64().unwrap_or(0)
    }

    /// What the daemon has at `path` (`fvfsc cat`), or `None`.
    pub fn has(&self, path: &str) -> Option<Vec<u8>> {
        let out = self.fvfsc(["cat", path]).output().expect("run fvfsc cat");
        out.status.success().then_some(out.stdout)
    }

    /// The admin token of the daemon's data directory.
    pub fn admin_token(&self) -> String {
        let home = self.home.as_ref().expect("a daemon started with FVFS_HOME");
        std::fs::read_to_string(home.join("admin-token"))
            .expect("the admin token")
            .trim()
            .to_owned()
    }

    /// The header that gives a request the admin role.
    pub fn admin_header(&self) -> String {
        format!("Authorization: Bearer {}", self.admin_token())
    }

    /// Commits `ops` (`POST /v1/commit` operations, as JSON values) with the write
    /// role a LAN client has; returns the status code and the answer.
    pub fn try_commit(&self, ops: Vec<serde_json::Value>) -> (u16, String) {
        let body = serde_json::json!({ "message": "test tree", "ops": ops }).to_string();
        let headers = ["Content-Type: application/json"];
        self.raw(&request("POST", "/v1/commit", &headers, body.as_bytes()))
    }

    /// [`Daemon::try_commit`], which must succeed.
    pub fn commit(&self, ops: Vec<serde_json::Value>) {
        let (status, answer) = self.try_commit(ops);
        assert_eq!(status, 200, "{answer}");
    }

    /// The seed of the store's chunk cut points (`GET /v1/whoami`).
    pub fn cut_seed(&self) -> u64 {
        let (status, body) = self.raw(&request("GET", "/v1/whoami", &[], b""));
        assert_eq!(status, 200, "{body}");
        let me: serde_json::Value = serde_json::from_str(&body).unwrap();
        me["cut_seed"].as_u64().expect("a cut seed")
    }

    /// The value of an unlabelled gauge in the daemon's metrics.
    pub fn gauge(&self, name: &str) -> f64 {
        let (_, text) = self.raw(&request("GET", "/metrics", &[], b""));
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("{name} not in metrics:\n{text}"))
    }

    /// How the last job of each kind ended, by kind (status' `last_tasks`): whether it
    /// was clean, and its summary.
    pub fn last_tasks(&self) -> std::collections::BTreeMap<String, (bool, String)> {
        let get = request("GET", "/v1/status", &[&self.admin_header()], b"");
        let (status, body) = self.raw(&get);
        assert_eq!(status, 200, "{body}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        let tasks = v["last_tasks"].as_array().unwrap().iter();
        tasks
            .map(|t| {
                let s = |k: &str| t[k].as_str().unwrap().to_owned();
                (s("task"), (t["ok"].as_bool().unwrap(), s("summary")))
            })
            .collect()
    }

    /// Sends raw bytes and returns the status code and the body of the answer.
    pub fn raw(&self, request: &[u8]) -> (u16, String) {
        raw(&self.addr, request)
    }

    /// `fsck --read-data --all` through the daemon finds nothing.
    pub fn assert_fsck_clean(&self, context: &str) {
        let admin = self.admin_header();
        let fsck = request(
            "POST",
            "/v1/admin/fsck",
            &[&admin],
            br#"{"read_data":true,"all":true}"#,
        );
        let (status, body) = self.raw(&fsck);
        assert_eq!(status, 200, "{context}: {body}");
        assert!(body.contains("\"problems\":[]"), "{context}: fsck: {body}");
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Sends `request` as is to `addr` and reads the whole answer (the request should say
/// `Connection: close`).
pub fn raw(addr: &str, request: &[u8]) -> (u16, String) {
    exchange(TcpStream::connect(addr).expect("connect"), request)
}

/// The whole answer to `request` sent to `addr`, status line and headers included.
pub fn whole_answer(addr: &str, request: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.write_all(request).expect("send the request");
    String::from_utf8_lossy(&read_answer(s)).into_owned()
}

/// A whole answer's status, head (in lower case) and body.
pub fn split_answer(answer: &str) -> (u16, String, String) {
    let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((answer, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (status, head.to_ascii_lowercase(), body.to_owned())
}

/// Like [`raw`], for a daemon that may be dead: `None` when it cannot be reached or
/// closes without answering.
pub fn try_raw(addr: &str, request: &[u8]) -> Option<(u16, String)> {
    let answer = exchange(TcpStream::connect(addr).ok()?, request);
    (answer.0 != 0).then_some(answer)
}

fn exchange(mut s: TcpStream, request: &[u8]) -> (u16, String) {
    // A daemon may answer (413, 507...) and close before the whole body is sent.
    let _ = s.write_all(request);
    let text = String::from_utf8_lossy(&read_answer(s)).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// One HTTP answer: up to its `Content-Length` when it gives one (some servers, such
/// as chromedriver, keep the connection open whatever the request said), else up to
/// the close.
fn read_answer(s: TcpStream) -> Vec<u8> {
    let mut r = BufReader::new(s);
    let mut answer = Vec::new();
    let mut length = None;
    loop {
        let before = answer.len();
        match r.read_until(b'\n', &mut answer) {
            Ok(0) | Err(_) => return answer,
            Ok(_) => {}
        }
        let line = String::from_utf8_lossy(&answer[before..]).to_ascii_lowercase();
        if let Some(v) = line.strip_prefix("content-length:") {
            length = v.trim().parse::<u64>().ok();
        }
        if line == "\r\n" {
            break;
        }
    }
    let _ = match length {
        Some(n) => r.take(n).read_to_end(&mut answer),
        None => r.read_to_end(&mut answer),
    };
    answer
}

/// A request with a body, as fvfs's clients send one (Host `localhost`, the header
/// `X-Fvfs-Client`).
pub fn request(method: &str, path: &str, headers: &[&str], body: &[u8]) -> Vec<u8> {
    let mut all = vec!["Host: localhost", "X-Fvfs-Client: test"];
    all.extend_from_slice(headers);
    bare_request(method, path, &all, body)
}

/// A request with exactly `headers` (and `Connection: close`, `Content-Length`), as a
/// browser or a hostile peer would shape it.
pub fn bare_request<S: AsRef<str>>(
    method: &str,
    path: &str,
    headers: &[S],
    body: &[u8],
) -> Vec<u8> {
    let mut r = format!(
        "{method} {path} HTTP/1.1\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for h in headers {
        r.push_str(h.as_ref());
        r.push_str("\r\n");
    }
    r.push_str("\r\n");
    let mut r = r.into_bytes();
    r.extend_from_slice(body);
    r
}
