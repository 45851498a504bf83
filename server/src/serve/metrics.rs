//! Prometheus metrics of the daemon: requests by route and status, bytes in and out.
//! Store-wide gauges (chunks and bytes per tier, queue depth) are read at scrape time.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

#[derive(Default)]
pub struct Metrics {
    requests: Mutex<BTreeMap<(&'static str, u16), u64>>,
    pub bytes_in: AtomicU64,
    pub bytes_out: AtomicU64,
}

impl Metrics {
    pub fn request(&self, route: &'static str, status: u16) {
        *self
            .requests
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry((route, status))
            .or_default() += 1;
    }

    /// The text exposition format; `gauges` are (name, help, labels, value).
    pub fn render(&self, gauges: &[(&str, &str, String, f64)]) -> String {
        let mut out = String::new();
        out.push_str("# HELP fvfs_http_requests_total HTTP requests by route and status.\n");
        out.push_str("# TYPE fvfs_http_requests_total counter\n");
        for ((route, status), n) in self
            .requests
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
        {
            writeln!(
                out,
                "fvfs_http_requests_total{{route=\"{route}\",status=\"{status}\"}} {n}"
            )
            .ok();
        }
        for (name, value) in [
            ("fvfs_http_bytes_in_total", &self.bytes_in),
            ("fvfs_http_bytes_out_total", &self.bytes_out),
        ] {
            writeln!(
                out,
                "# TYPE {name} counter\n{name} {}",
                value.load(Ordering::Relaxed)
            )
            .ok();
        }
        let mut last = "";
        for (name, help, labels, value) in gauges {
            if *name != last {
                writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge").ok();
                last = name;
            }
            writeln!(out, "{name}{labels} {value}").ok();
        }
        out
    }
}
