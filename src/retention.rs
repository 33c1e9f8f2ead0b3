//! Retention: which snapshots a policy keeps, as a pure function of the
//! snapshot list, the clock and the time zone.
//!
//! Snapshots are judged per series (snapshots sharing a name). Within a
//! series, newest first: `keep_last` keeps the N newest; `keep_daily`,
//! `keep_weekly` and `keep_monthly` keep the newest snapshot of each of the N
//! newest days, ISO weeks and months that have one; `keep_within` keeps all
//! snapshots younger than the span. A snapshot is kept if any rule keeps
//! it. Immaculate, sacred and named snapshots are never forgotten, whatever
//! the rules, and do not use up a rule's count.

use crate::id::SnapshotId;
use crate::snapshot::{Snapshot, Tier};
use jiff::tz::TimeZone;
use jiff::{Span, Timestamp};
use serde::Serialize;
use std::collections::{BTreeMap, HashSet};

/// Names the calendar bucket (day, ISO week, month) a time falls in.
type Bucket = fn(&jiff::Zoned) -> String;

/// A retention policy; `None` means the rule is not used.
#[derive(Clone, Debug, Default)]
pub struct Policy {
    pub keep_last: Option<usize>,
    pub keep_daily: Option<usize>,
    pub keep_weekly: Option<usize>,
    pub keep_monthly: Option<usize>,
    pub keep_within: Option<Span>,
}

impl Policy {
    /// True when no rule is set (forgetting by such a policy is refused).
    pub fn is_empty(&self) -> bool {
        self.keep_last.is_none()
            && self.keep_daily.is_none()
            && self.keep_weekly.is_none()
            && self.keep_monthly.is_none()
            && self.keep_within.is_none()
    }
}

/// Tiers no policy may forget.
pub fn protected(tier: Tier) -> bool {
    matches!(tier, Tier::Immaculate | Tier::Sacred | Tier::Named)
}

/// The verdict on one snapshot.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Decision {
    pub id: SnapshotId,
    pub keep: bool,
    /// Why it is kept (empty when it is forgotten).
    pub reasons: Vec<String>,
}

/// Applies `policy` to `snaps` at `now`; calendar buckets in `tz`. Returns
/// one decision per snapshot, in the order given.
pub fn apply(
    snaps: &[(SnapshotId, Snapshot)],
    policy: &Policy,
    now: Timestamp,
    tz: &TimeZone,
) -> Vec<Decision> {
    let mut reasons: BTreeMap<SnapshotId, Vec<String>> = BTreeMap::new();
    let mut series: BTreeMap<&str, Vec<&(SnapshotId, Snapshot)>> = BTreeMap::new();
    for s in snaps {
        if protected(s.1.tier) {
            reasons
                .entry(s.0)
                .or_default()
                .push(format!("tier {}", s.1.tier));
        } else {
            series.entry(s.1.name.as_str()).or_default().push(s);
        }
    }
    let cutoff = policy
        .keep_within
        .and_then(|span| now.to_zoned(tz.clone()).checked_sub(span).ok())
        .map(|z| z.timestamp());
    for list in series.values_mut() {
        list.sort_by(|a, b| b.1.time_ns.cmp(&a.1.time_ns).then(b.0.cmp(&a.0)));
        let mut keep = |id: SnapshotId, why: String| reasons.entry(id).or_default().push(why);
        if let Some(n) = policy.keep_last {
            for (i, (id, _)) in list.iter().take(n).enumerate() {
                keep(*id, format!("last {}", i + 1));
            }
        }
        let buckets: [(Option<usize>, &str, Bucket); 3] = [
            (policy.keep_daily, "daily", |z| {
                z.strftime("%Y-%m-%d").to_string()
            }),
            (policy.keep_weekly, "weekly", |z| {
                let w = z.date().iso_week_date();
                format!("{}-W{:02}", w.year(), w.week())
            }),
            (policy.keep_monthly, "monthly", |z| {
                z.strftime("%Y-%m").to_string()
            }),
        ];
        for (n, rule, bucket) in buckets {
            let Some(n) = n else { continue };
            let mut seen = HashSet::new();
            for (id, s) in list.iter() {
                if seen.len() == n {
                    break;
                }
                let b = bucket(&s.time().to_zoned(tz.clone()));
                if seen.insert(b.clone()) {
                    keep(*id, format!("{rule} {b}"));
                }
            }
        }
        if let Some(cutoff) = cutoff {
            for (id, s) in list.iter() {
                if s.time() >= cutoff {
                    keep(*id, "within".to_string());
                }
            }
        }
    }
    snaps
        .iter()
        .map(|(id, _)| {
            let r = reasons.remove(id).unwrap_or_default();
            Decision {
                id: *id,
                keep: !r.is_empty(),
                reasons: r,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot::{ChunkList, Summary};
    use proptest::prelude::*;

    const DAY: i64 = 86_400_000_000_000;

    fn snap(name: &str, tier: Tier, time_ns: i64) -> Snapshot {
        Snapshot {
            name: name.into(),
            tier,
            labels: Default::default(),
            host: "h".into(),
            time_ns,
            parent: None,
            tree: ChunkList::default(),
            summary: Summary::default(),
            meta: Default::default(),
        }
    }

    /// `n` daily snapshots of one series at noon UTC, day 0 = 2026-01-01.
    fn series(n: i64) -> Vec<(SnapshotId, Snapshot)> {
        let base = Timestamp::from_second(1_767_268_800)
            .unwrap()
            .as_nanosecond() as i64; // 2026-01-01T12:00Z
        (0..n)
            .map(|d| {
                let mut id = [0u8; 32];
                id[..8].copy_from_slice(&d.to_be_bytes());
                (SnapshotId(id), snap("db", Tier::Daily, base + d * DAY))
            })
            .collect()
    }

    fn kept(decisions: &[Decision]) -> Vec<usize> {
        decisions
            .iter()
            .enumerate()
            .filter(|(_, d)| d.keep)
            .map(|(i, _)| i)
            .collect()
    }

    fn now_after(snaps: &[(SnapshotId, Snapshot)]) -> Timestamp {
        Timestamp::from_nanosecond((snaps.last().unwrap().1.time_ns + 3_600_000_000_000) as i128)
            .unwrap()
    }

    #[test]
    fn keep_last() {
        let s = series(10);
        let p = Policy {
            keep_last: Some(3),
            ..Default::default()
        };
        assert_eq!(
            kept(&apply(&s, &p, now_after(&s), &TimeZone::UTC)),
            vec![7, 8, 9]
        );
    }

    #[test]
    fn keep_daily_takes_the_newest_of_each_day() {
        let mut s = series(5);
        // A second snapshot on day 4, an hour later: it wins day 4.
        let extra = (
            SnapshotId([0xee; 32]),
            snap("db", Tier::Daily, s[4].1.time_ns + 3_600_000_000_000),
        );
        s.push(extra);
        let p = Policy {
            keep_daily: Some(2),
            ..Default::default()
        };
        let d = apply(&s, &p, now_after(&s), &TimeZone::UTC);
        assert_eq!(kept(&d), vec![3, 5]);
        assert_eq!(d[5].reasons, vec!["daily 2026-01-05"]);
    }

    #[test]
    fn keep_weekly_and_monthly() {
        let s = series(70); // 2026-01-01 .. 2026-03-11
        let p = Policy {
            keep_weekly: Some(2),
            keep_monthly: Some(3),
            ..Default::default()
        };
        let d = apply(&s, &p, now_after(&s), &TimeZone::UTC);
        // Newest of each month: Jan 31 (30), Feb 28 (58), Mar 11 (69).
        // Newest of the two newest ISO weeks: 2026-W11 -> Mar 11 (69), W10 -> Mar 8 (66).
        assert_eq!(kept(&d), vec![30, 58, 66, 69]);
        assert!(d[69].reasons.contains(&"monthly 2026-03".to_string()));
        assert!(d[66].reasons.contains(&"weekly 2026-W10".to_string()));
    }

    #[test]
    fn keep_within() {
        let s = series(10);
        let now = now_after(&s);
        let p = Policy {
            keep_within: Some(Span::new().days(3)),
            ..Default::default()
        };
        assert_eq!(kept(&apply(&s, &p, now, &TimeZone::UTC)), vec![7, 8, 9]);
    }

    #[test]
    fn series_are_judged_apart() {
        let mut s = series(3);
        s.push((
            SnapshotId([0xaa; 32]),
            snap("web", Tier::Daily, s[0].1.time_ns),
        ));
        let p = Policy {
            keep_last: Some(1),
            ..Default::default()
        };
        assert_eq!(
            kept(&apply(&s, &p, now_after(&s), &TimeZone::UTC)),
            vec![2, 3]
        );
    }

    fn tier_strategy() -> impl Strategy<Value = Tier> {
        prop_oneof![
            Just(Tier::Daily),
            Just(Tier::Named),
            Just(Tier::Immaculate),
            Just(Tier::Sacred),
            Just(Tier::Safety)
        ]
    }

    proptest! {
        /// Protected tiers survive every combination of rules.
        #[test]
        fn protected_tiers_always_survive(
            entries in proptest::collection::vec((tier_strategy(), 0i64..400, 0u8..3), 1..60),
            last in proptest::option::of(0usize..5),
            daily in proptest::option::of(0usize..5),
            weekly in proptest::option::of(0usize..5),
            monthly in proptest::option::of(0usize..5),
            within in proptest::option::of(0i64..30),
        ) {
            let snaps: Vec<(SnapshotId, Snapshot)> = entries
                .iter()
                .enumerate()
                .map(|(i, (tier, day, name))| {
                    let mut id = [0u8; 32];
                    id[..8].copy_from_slice(&(i as u64).to_be_bytes());
                    (SnapshotId(id), snap(["a", "b", "c"][*name as usize], *tier, 1_700_000_000_000_000_000 + day * DAY / 3))
                })
                .collect();
            let p = Policy { keep_last: last, keep_daily: daily, keep_weekly: weekly, keep_monthly: monthly, keep_within: within.map(|d| Span::new().days(d)) };
            let now = Timestamp::from_nanosecond(1_700_000_000_000_000_000 + 140 * DAY as i128).unwrap();
            let d = apply(&snaps, &p, now, &TimeZone::UTC);
            prop_assert_eq!(d.len(), snaps.len());
            for (dec, (_, s)) in d.iter().zip(&snaps) {
                if protected(s.tier) {
                    prop_assert!(dec.keep, "{:?} snapshot forgotten", s.tier);
                }
                prop_assert_eq!(dec.keep, !dec.reasons.is_empty());
            }
            if let Some(n) = last {
                // keep_last keeps the n newest of every series of unprotected snapshots.
                for name in ["a", "b", "c"] {
                    let mut times: Vec<i64> = snaps.iter().filter(|(_, s)| s.name == name && !protected(s.tier)).map(|(_, s)| s.time_ns).collect();
                    times.sort_unstable_by(|a, b| b.cmp(a));
                    let kept_count = snaps.iter().zip(&d).filter(|((_, s), dec)| s.name == name && !protected(s.tier) && dec.keep).count();
                    prop_assert!(kept_count >= n.min(times.len()));
                }
            }
        }
    }
}
