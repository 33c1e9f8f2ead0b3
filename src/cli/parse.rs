//! Values the command line reads by hand: durations and labels.

use anyhow::{bail, Result};
use std::collections::BTreeMap;

/// A duration: a number of seconds, or a number with `s`, `m`, `h` or `d`.
pub fn duration(s: &str) -> Result<std::time::Duration, String> {
    let s = s.trim();
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = num
        .parse()
        .map_err(|_| format!("'{s}' is not a duration (30s, 15m, 2h, 1d)"))?;
    let secs = match unit {
        "" | "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        "d" => n * 86_400,
        _ => return Err(format!("'{s}': the unit is s, m, h or d")),
    };
    Ok(std::time::Duration::from_secs(secs))
}

/// A point in time: RFC 3339 (`2026-11-30T03:15:00Z`), a date or a civil
/// time in the local zone (`2026-11-30`, `2026-11-30 03:15`), or a
/// duration ago (`7d`, `12h`).
pub fn time(s: &str, now: jiff::Timestamp) -> Result<jiff::Timestamp> {
    if s.ends_with(|c: char| c.is_ascii_alphabetic()) {
        if let Ok(d) = duration(s) {
            return Ok(now - jiff::SignedDuration::try_from(d)?);
        }
    }
    if let Ok(t) = s.parse::<jiff::Timestamp>() {
        return Ok(t);
    }
    let tz = jiff::tz::TimeZone::system();
    if let Ok(dt) = s.parse::<jiff::civil::DateTime>() {
        return Ok(dt.to_zoned(tz)?.timestamp());
    }
    if let Ok(d) = s.parse::<jiff::civil::Date>() {
        return Ok(d.to_zoned(tz)?.timestamp());
    }
    bail!("'{s}' is not a time (2026-11-30, 2026-11-30T03:15:00Z, or 7d ago)")
}

/// A snapshot's `--time` ([`time`]), in nanoseconds since the epoch.
pub fn time_ns(s: &str) -> Result<i64> {
    let t = time(s, jiff::Timestamp::now())?;
    Ok(t.as_nanosecond() as i64)
}

pub fn labels(labels: &[String]) -> Result<BTreeMap<String, String>> {
    labels
        .iter()
        .map(|l| match l.split_once('=') {
            Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
            _ => bail!("label '{l}' is not KEY=VALUE"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_absolute_and_ago() {
        let now: jiff::Timestamp = "2026-12-01T10:00:00Z".parse().unwrap();
        let t = |s| time(s, now).unwrap().to_string();
        assert_eq!(t("7d"), "2026-11-24T10:00:00Z");
        assert_eq!(t("2026-11-30T03:15:00Z"), "2026-11-30T03:15:00Z");
        assert!(time("2026-11-30", now).unwrap() < now);
        assert!(time("2026-11-30 03:15", now).is_ok());
        assert!(time("yesterday-ish", now).is_err());
    }

    #[test]
    fn durations_and_labels() {
        let secs = |s| duration(s).map(|d| d.as_secs());
        assert_eq!(secs("90"), Ok(90));
        assert_eq!(secs("15m"), Ok(900));
        assert_eq!(secs(" 2h "), Ok(7200));
        assert_eq!(secs("1d"), Ok(86_400));
        for bad in ["", "m", "5 weeks", "1w", "-3s", "1.5h"] {
            assert!(duration(bad).is_err(), "{bad}");
        }
        let l = labels(&["env=prod".into(), "note=a=b".into()]).unwrap();
        assert_eq!(l["note"], "a=b");
        assert!(labels(&["=x".into()]).is_err());
        assert!(labels(&["novalue".into()]).is_err());
    }
}
