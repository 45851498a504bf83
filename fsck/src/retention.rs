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
        let mut newest_first: Vec<&Version> = versions.iter().collect();
        newest_first.sort_by_key(|v| std::cmp::Reverse(v.number));
        let mut kept: HashSet<u64> = versions
            .iter()
            .map(|v| v.number)
            .filter(|n| named.contains(n))
            .collect();
        let last = self.keep_last.unwrap_or(0) as usize;
        kept.extend(newest_first.iter().take(last).map(|v| v.number));
        let day = |v: &Version| v.time.div_euclid(DAY);
        // 1970-01-01 was a Thursday: shifting by 3 days starts weeks on Mondays.
        let week = |v: &Version| (v.time.div_euclid(DAY) + 3).div_euclid(7);
        kept.extend(newest_per_period(&newest_first, day, self.keep_daily));
        kept.extend(newest_per_period(&newest_first, week, self.keep_weekly));
        kept
    }
}

/// The newest version of each of the `count` most recent periods that have versions.
fn newest_per_period(
    newest_first: &[&Version],
    period: impl Fn(&Version) -> i64,
    count: Option<u64>,
) -> Vec<u64> {
    let count = count.unwrap_or(0) as usize;
    let mut newest: HashMap<i64, u64> = HashMap::new();
    for v in newest_first {
        let p = period(v);
        if !newest.contains_key(&p) && newest.len() == count {
            break;
        }
        newest.entry(p).or_insert(v.number);
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
        let week = |v: &Version| (v.time.div_euclid(DAY) + 3).div_euclid(7);
        assert_eq!(week(&monday) - week(&sunday_before), 1);
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
}
