//! A real browser for tests: headless Chromium driven through chromedriver's W3C
//! WebDriver protocol (JSON over HTTP on loopback), with just the commands the web
//! page's tests use.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::daemon::{bare_request, try_raw};

/// The key W3C WebDriver gives an element reference under.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// chromedriver and one browser session; both end when dropped.
pub struct Browser {
    driver: Child,
    addr: String,
    session: String,
}

impl Browser {
    /// Starts headless Chromium at `width`×`height`, saving downloads into `downloads`.
    pub fn start(width: u32, height: u32, downloads: &Path) -> Self {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let driver = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver (apt install chromium-driver; scripts/install-deps.sh does)");
        let addr = format!("127.0.0.1:{port}");
        let mut b = Self {
            driver,
            addr,
            session: String::new(),
        };
        let started = Instant::now();
        while try_raw(&b.addr, &bare_request::<&str>("GET", "/status", &[], b"")).is_none() {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "chromedriver did not answer"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": "/usr/bin/chromium",
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                         "--disable-dev-shm-usage", "--lang=en-GB",
                         format!("--window-size={width},{height}")],
                "prefs": {
                    "download.default_directory": downloads.to_str().unwrap(),
                    "download.prompt_for_download": false,
                },
            },
        }}});
        let answer = b.call("POST", "/session", &caps);
        b.session = answer["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session: {answer}"))
            .to_owned();
        b
    }

    /// One WebDriver command; its `value`, or a panic naming the error.
    fn call(&self, method: &str, path: &str, body: &Value) -> Value {
        let body = if method == "GET" || method == "DELETE" {
            Vec::new()
        } else {
            serde_json::to_vec(body).unwrap()
        };
        let request = bare_request(
            method,
            path,
            &["Host: localhost", "Content-Type: application/json"],
            &body,
        );
        let (status, text) = try_raw(&self.addr, &request)
            .unwrap_or_else(|| panic!("chromedriver closed on {method} {path}"));
        let answer: Value =
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{method} {path}: {e}: {text}"));
        assert_eq!(status, 200, "{method} {path}: {answer}");
        answer["value"].clone()
    }

    fn session_call(&self, method: &str, path: &str, body: Value) -> Value {
        self.call(method, &format!("/session/{}{path}", self.session), &body)
    }

    pub fn open(&self, url: &str) {
        self.session_call("POST", "/url", json!({ "url": url }));
    }

    /// Runs `script` (a function body; `arguments` holds `args`) in the page.
    pub fn eval(&self, script: &str, args: Value) -> Value {
        self.session_call(
            "POST",
            "/execute/sync",
            json!({ "script": script, "args": args }),
        )
    }

    /// Waits until `condition` (an expression) is true in the page; panics after a
    /// minute, showing what the page said.
    pub fn wait(&self, condition: &str) {
        let started = Instant::now();
        let script = format!("return !!({condition});");
        while self.eval(&script, json!([])) != Value::Bool(true) {
            if started.elapsed() > Duration::from_secs(60) {
                let said = self.eval(
                    "return [document.body.dataset.error, document.body.dataset.jsError, \
                     document.getElementById('main').innerText];",
                    json!([]),
                );
                panic!("the page never showed {condition}: {said}");
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// The first element `css` selects.
    pub fn find(&self, css: &str) -> String {
        let found = self.session_call(
            "POST",
            "/element",
            json!({ "using": "css selector", "value": css }),
        );
        found[ELEMENT]
            .as_str()
            .unwrap_or_else(|| panic!("no element {css}: {found}"))
            .to_owned()
    }

    /// How many elements `css` selects.
    pub fn count(&self, css: &str) -> usize {
        self.session_call(
            "POST",
            "/elements",
            json!({ "using": "css selector", "value": css }),
        )
        .as_array()
        .map_or(0, Vec::len)
    }

    /// Clicks the element `css` selects, as a user would (the browser refuses if
    /// something else covers it).
    pub fn click(&self, css: &str) {
        let id = self.find(css);
        self.session_call("POST", &format!("/element/{id}/click"), json!({}));
    }

    /// Types `text` into the element `css` selects (for a file input: a path to pick).
    pub fn type_into(&self, css: &str, text: &str) {
        let id = self.find(css);
        self.session_call(
            "POST",
            &format!("/element/{id}/value"),
            json!({ "text": text }),
        );
    }

    /// Empties the text field `css` selects.
    pub fn clear(&self, css: &str) {
        let id = self.find(css);
        self.session_call("POST", &format!("/element/{id}/clear"), json!({}));
    }

    pub fn resize(&self, width: u32, height: u32) {
        self.session_call(
            "POST",
            "/window/rect",
            json!({ "width": width, "height": height }),
        );
    }

    /// Saves what the browser shows as a PNG.
    pub fn screenshot(&self, to: &Path) {
        use base64::Engine;
        let png = self.session_call("GET", "/screenshot", json!({}));
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(png.as_str().expect("base64 PNG"))
            .unwrap();
        std::fs::write(to, bytes).unwrap();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            let path = format!("/session/{}", self.session);
            let _ = try_raw(&self.addr, &bare_request::<&str>("DELETE", &path, &[], b""));
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}
