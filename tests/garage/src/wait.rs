//! Bounded waits: a readiness check polled at a short interval until it answers or a
//! deadline passes. A timeout says what was awaited and what the last check saw.

use std::time::{Duration, Instant};

use anyhow::{bail, Result};

/// Between two checks.
const INTERVAL: Duration = Duration::from_millis(100);

#[derive(Clone, Copy, Debug)]
pub struct Deadline(Instant);

impl Deadline {
    pub fn after(d: Duration) -> Self {
        Self(Instant::now() + d)
    }

    pub fn passed(&self) -> bool {
        Instant::now() >= self.0
    }
}

/// What one check found: done, or not yet (and why not).
pub enum Check<T> {
    Ready(T),
    NotYet(String),
}

/// Runs `check` until it is ready, fails, or `deadline` passes (the error then names
/// `what` and the last answer).
pub fn until<T>(
    deadline: Deadline,
    what: &str,
    mut check: impl FnMut() -> Result<Check<T>>,
) -> Result<T> {
    let started = Instant::now();
    loop {
        let why = match check()? {
            Check::Ready(v) => return Ok(v),
            Check::NotYet(why) => why,
        };
        if deadline.passed() {
            bail!(
                "timed out after {:.1} s waiting for {what} (last: {why})",
                started.elapsed().as_secs_f64()
            );
        }
        std::thread::sleep(INTERVAL);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_check_that_turns_ready_returns_its_value() {
        let mut n = 0;
        let got = until(Deadline::after(Duration::from_secs(5)), "n", || {
            n += 1;
            Ok(if n == 3 {
                Check::Ready(n)
            } else {
                Check::NotYet(format!("n={n}"))
            })
        });
        assert_eq!(got.unwrap(), 3);
    }

    #[test]
    fn a_timeout_names_what_and_the_last_answer() {
        let err = until::<()>(Deadline::after(Duration::ZERO), "the moon", || {
            Ok(Check::NotYet("still dark".into()))
        })
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("the moon") && err.contains("still dark"),
            "{err}"
        );
    }

    #[test]
    fn a_failed_check_ends_the_wait() {
        let err = until::<()>(Deadline::after(Duration::from_secs(5)), "x", || {
            bail!("process died")
        });
        assert!(err.unwrap_err().to_string().contains("process died"));
    }
}
