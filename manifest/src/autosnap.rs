//! The names of automatic snapshots: `auto-YYYY-MM-DD-HHMM`, the time (UTC, to the
//! minute) at which the daemon took them.
//!
//! Invariant: a snapshot is automatic exactly when its name is in this form, and
//! people cannot create a name starting with [`PREFIX`] (`HeadLock::snapshot_create`
//! refuses it), so a policy that prunes automatic snapshots never deletes one that a
//! person made. The name is the record: it survives `recover --from-s3` unchanged.

use std::time::{Duration, UNIX_EPOCH};

/// What every automatic snapshot's name starts with.
pub const PREFIX: &str = "auto-";

/// The name of an automatic snapshot taken at `time` (Unix seconds).
pub fn name(time: i64) -> String {
    let at = UNIX_EPOCH + Duration::from_secs(time.max(0).unsigned_abs());
    // 2026-12-02T09:05:00Z
    let stamp = humantime::format_rfc3339_seconds(at).to_string();
    let (date, clock) = stamp.split_once('T').expect("RFC 3339 has a T");
    format!("{PREFIX}{date}-{}{}", &clock[..2], &clock[3..5])
}

/// When the automatic snapshot `name` was taken, or `None` if `name` is not one.
pub fn time_of(name: &str) -> Option<i64> {
    let rest = name.strip_prefix(PREFIX)?;
    if !rest.is_ascii() || rest.len() < 15 {
        return None;
    }
    let (date, clock) = rest.split_at(rest.len() - 5);
    let clock = clock.strip_prefix('-')?;
    let stamp = format!("{date}T{}:{}:00Z", clock.get(..2)?, clock.get(2..)?);
    let secs = humantime::parse_rfc3339(&stamp)
        .ok()?
        .duration_since(UNIX_EPOCH)
        .ok()?
        .as_secs();
    let secs = i64::try_from(secs).ok()?;
    (self::name(secs) == name).then_some(secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_times_round_trip_to_the_minute() {
        // 2026-12-02T09:05:42Z
        let t = 1_796_202_342;
        assert_eq!(name(t), "auto-2026-12-02-0905");
        assert_eq!(time_of(&name(t)), Some(t - 42));
        assert_eq!(time_of("auto-1970-01-01-0000"), Some(0));
    }

    #[test]
    fn only_the_exact_form_is_automatic() {
        for other in [
            "auto-2026-12-02-905",
            "auto-2026-12-02-0960",
            "auto-2026-13-02-0900",
            "auto-2026-12-02-0900x",
            "auto-2026-12-02T0900",
            "auto-é026-12-02-0900",
            "Auto-2026-12-02-0900",
            "daily",
            "auto-",
        ] {
            assert_eq!(time_of(other), None, "{other}");
        }
    }
}
