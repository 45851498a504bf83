//! Which versions garbage collection keeps.
//!
//! Every version a snapshot names is kept, and HEAD (the collection adds it). Then,
//! like `restic forget`: the newest `keep_last` versions; for each of the `keep_daily`
//! most recent days (UTC) that have versions, the newest version of that day; the same
//! for `keep_weekly` ISO weeks. Days without versions do not use up the count, so a
//! store left alone for a month keeps its history. With no rule at all, every version
//! is kept (a collection then sweeps only what no version names).

use std::collections::{HashMap, HashSet};

use fvfs_manifest::Version;

const DAY: i64 = 86_400;

/// A retention policy: `None` means the rule is not used.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Retention {
    pub keep_last: Option<u64>,
    pub keep_daily: Option<u64>,
    pub keep_weekly: Option<u64>,
}

impl Retention {
    /// Whether no rule is set, so that every version is kept.
    pub fn keeps_everything(&self) -> bool {
        self.keep_last.is_none() && self.keep_daily.is_none() && self.keep_weekly.is_none()
    }

    /// The numbers of the versions kept, out of `versions` (any order) of which
    /// `named` are named by snapshots.
    pub fn keep(&self, versions: &[Version], named: &HashSet<u64>) -> HashSet<u64> {
        if self.keeps_everything() {
            return versions.iter().map(|v| v.number).collect();
        }
        let mut newest_first: Vec<(u64, i64)> =
            versions.iter().map(|v| (v.number, v.time)).collect();
        newest_first.sort_by_key(|(n, _)| std::cmp::Reverse(*n));
        let mut kept: HashSet<u64> = versions
            .iter()
            .map(|v| v.number)
            .filter(|n| named.contains(n))
            .collect();
        let last = self.keep_last.unwrap_or(0) as usize;
        kept.extend(newest_first.iter().take(last).map(|(n, _)| *n));
        kept.extend(newest_per_period(
            &newest_first,
            Period::Day,
            self.keep_daily.unwrap_or(0),
        ));
        kept.extend(newest_per_period(
            &newest_first,
            Period::Week,
            self.keep_weekly.unwrap_or(0),
        ));
        kept
    }
}

/// A calendar period (UTC; weeks start on Mondays).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Period {
    Hour,
    Day,
    Week,
    Month,
}

impl Period {
    /// The number of the period holding `time` (Unix seconds): consecutive periods
    /// have consecutive numbers.
    pub fn of(self, time: i64) -> i64 {
        match self {
            Period::Hour => time.div_euclid(3600),
            Period::Day => time.div_euclid(DAY),
            // 1970-01-01 was a Thursday: shifting by 3 days starts weeks on Mondays.
            Period::Week => (time.div_euclid(DAY) + 3).div_euclid(7),
            Period::Month => month_of(time.div_euclid(DAY)),
        }
    }
}

/// Months since year 0 of the day `days` after 1970-01-01 (proleptic Gregorian; the
/// civil-from-days algorithm of Howard Hinnant's `chrono`-compatible date library).
fn month_of(days: i64) -> i64 {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    year * 12 + month - 1
}

/// `[snapshots]`: how many automatic snapshots the daemon keeps for each period (the
/// newest of each of the most recent hours, days, weeks and months that have one).
/// All zero: the daemon takes none.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SnapshotPolicy {
    #[serde(default)]
    pub hourly: u64,
    #[serde(default)]
    pub daily: u64,
    #[serde(default)]
    pub weekly: u64,
    #[serde(default)]
    pub monthly: u64,
}

impl SnapshotPolicy {
    fn rules(&self) -> [(Period, u64); 4] {
        [
            (Period::Hour, self.hourly),
            (Period::Day, self.daily),
            (Period::Week, self.weekly),
            (Period::Month, self.monthly),
        ]
    }

    /// How often a snapshot is taken: the shortest period with a rule, if any.
    pub fn every(&self) -> Option<Period> {
        self.rules()
            .into_iter()
            .find(|(_, n)| *n > 0)
            .map(|(p, _)| p)
    }

    /// Which of the automatic snapshots `taken` (name, time) the policy keeps: the
    /// newest of each period its rules count, and the newest of all (what the next one
    /// is compared with).
    pub fn keep<'a>(&self, taken: &'a [(String, i64)]) -> HashSet<&'a str> {
        let mut newest_first: Vec<(&str, i64)> =
            taken.iter().map(|(n, t)| (n.as_str(), *t)).collect();
        newest_first.sort_by_key(|(n, t)| std::cmp::Reverse((*t, *n)));
        let mut kept: HashSet<&str> = newest_first.iter().take(1).map(|(n, _)| *n).collect();
        for (period, count) in self.rules() {
            kept.extend(newest_per_period(&newest_first, period, count));
        }
        kept
    }
}

/// The newest item of each of the `count` most recent periods that have items.
/// `newest_first` holds (item, time), newest first.
fn newest_per_period<T: Copy + Eq + std::hash::Hash>(
    newest_first: &[(T, i64)],
    period: Period,
    count: u64,
) -> Vec<T> {
    let count = count as usize;
    let mut newest: HashMap<i64, T> = HashMap::new();
    for (item, time) in newest_first {
        let p = period.of(*time);
        if !newest.contains_key(&p) && newest.len() == count {
            break;
        }
        newest.entry(p).or_insert(*item);
    }
    newest.into_values().collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use fvfs_cas::ChunkId;
    use fvfs_manifest::VersionKind;

    /// Version `number` made `hours` after 2026-11-02 00:00 UTC (a Monday).
    fn v(number: u64, hours: i64) -> Version {
        Version {
            number,
            root: ChunkId::of(b"root"),
            parent: number.checked_sub(1).filter(|n| *n > 0),
            time: 1_793_577_600 + hours * 3600,
            kind: VersionKind::Write,
            message: String::new(),
            logical_bytes: 0,
        }
    }

    fn sorted(set: HashSet<u64>) -> Vec<u64> {
        let mut v: Vec<u64> = set.into_iter().collect();
        v.sort_unstable();
        v
    }

    #[test]
    fn monday_is_the_start_of_a_week() {
        // The fixture's epoch must be a Monday for the weekly cases to mean anything.
        let monday = v(1, 0);
        let sunday_before = v(2, -1);
        assert_eq!(
            Period::Week.of(monday.time) - Period::Week.of(sunday_before.time),
            1
        );
    }

    #[test]
    fn no_rule_keeps_everything() {
        let versions: Vec<Version> = (1..=5).map(|n| v(n, n as i64)).collect();
        let kept = Retention::default().keep(&versions, &HashSet::new());
        assert_eq!(sorted(kept), vec![1, 2, 3, 4, 5]);
    }

    #[test]
    fn keep_last_and_snapshots() {
        let versions: Vec<Version> = (1..=10).map(|n| v(n, n as i64)).collect();
        let r = Retention {
            keep_last: Some(3),
            ..Default::default()
        };
        let kept = r.keep(&versions, &HashSet::from([2]));
        assert_eq!(sorted(kept), vec![2, 8, 9, 10]);
    }

    #[test]
    fn daily_keeps_the_newest_of_each_day_with_versions() {
        // Three versions a day on days 0, 1 and 5 (days 2-4 empty).
        let mut versions = Vec::new();
        for (i, day) in [0i64, 1, 5].into_iter().enumerate() {
            for k in 0..3 {
                let n = (i * 3 + k + 1) as u64;
                versions.push(v(n, day * 24 + k as i64));
            }
        }
        let r = Retention {
            keep_daily: Some(2),
            ..Default::default()
        };
        // The two most recent days with versions: day 5 (v9) and day 1 (v6).
        assert_eq!(sorted(r.keep(&versions, &HashSet::new())), vec![6, 9]);
        let r = Retention {
            keep_daily: Some(7),
            ..Default::default()
        };
        assert_eq!(sorted(r.keep(&versions, &HashSet::new())), vec![3, 6, 9]);
    }

    #[test]
    fn weekly_keeps_the_newest_of_each_week() {
        // One version a day for 21 days from a Monday: weeks end with v7, v14, v21.
        let versions: Vec<Version> = (1..=21).map(|n| v(n, (n as i64 - 1) * 24 + 12)).collect();
        let r = Retention {
            keep_weekly: Some(2),
            ..Default::default()
        };
        assert_eq!(sorted(r.keep(&versions, &HashSet::new())), vec![14, 21]);
        let r = Retention {
            keep_last: Some(1),
            keep_daily: Some(2),
            keep_weekly: Some(3),
        };
        assert_eq!(
            sorted(r.keep(&versions, &HashSet::new())),
            vec![7, 14, 20, 21]
        );
    }

    #[test]
    fn months_start_on_the_first_day_in_any_year() {
        // 2024-02-29T23:59:59Z, 2024-03-01T00:00:00Z, 2026-12-31T23:59:59Z, 2027-01-01.
        let m = |t| Period::Month.of(t);
        assert_eq!(m(1_709_251_199), 2024 * 12 + 1);
        assert_eq!(m(1_709_251_200), 2024 * 12 + 2);
        assert_eq!(m(1_798_761_599), 2026 * 12 + 11);
        assert_eq!(m(1_798_761_600), 2027 * 12);
        assert_eq!(m(0), 1970 * 12);
        assert_eq!(m(-1), 1969 * 12 + 11);
    }

    #[test]
    fn automatic_snapshots_keep_the_newest_per_period_and_the_newest_of_all() {
        // One snapshot an hour for three days from a Monday 00:00.
        let taken: Vec<(String, i64)> = (0..72)
            .map(|h| (format!("s{h}"), 1_793_577_600 + h * 3600))
            .collect();
        let names = |set: HashSet<&str>| {
            let mut v: Vec<String> = set.into_iter().map(String::from).collect();
            v.sort_by_key(|n| n[1..].parse::<u32>().unwrap());
            v
        };
        let p = SnapshotPolicy {
            hourly: 3,
            daily: 2,
            ..Default::default()
        };
        assert_eq!(p.every(), Some(Period::Hour));
        // Hours 69-71; days 1 and 2 end with hours 47 and 71.
        assert_eq!(names(p.keep(&taken)), ["s47", "s69", "s70", "s71"]);
        let p = SnapshotPolicy {
            weekly: 1,
            monthly: 1,
            ..Default::default()
        };
        assert_eq!(p.every(), Some(Period::Week));
        assert_eq!(names(p.keep(&taken)), ["s71"]);
        assert_eq!(SnapshotPolicy::default().every(), None);
        assert_eq!(names(SnapshotPolicy::default().keep(&taken)), ["s71"]);
        assert!(SnapshotPolicy::default().keep(&[]).is_empty());
    }
}
