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
