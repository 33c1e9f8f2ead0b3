//! The daily job in relic.toml: what `relic run` keeps (`[retention]`),
//! copies off-site (`[sync]`), verifies (`[check]`), who it tells
//! (`[notify]`) and when `relic schedule` runs it (`[schedule]`). Read and
//! checked here; the steps themselves are the commands of the same names.

use crate::retention::Policy;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("[{section}] {what}")]
    Invalid { section: &'static str, what: String },
}

pub type Result<T> = std::result::Result<T, Error>;

fn invalid(section: &'static str, what: impl Into<String>) -> Error {
    Error::Invalid {
        section,
        what: what.into(),
    }
}

/// `[retention]`: what forget keeps of the stack's routine snapshots
/// (immaculate, sacred and named snapshots are never forgotten by it).
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Retention {
    pub keep_last: Option<usize>,
    pub keep_daily: Option<usize>,
    pub keep_weekly: Option<usize>,
    pub keep_monthly: Option<usize>,
    /// A span such as `7d`, `2w` or `1mo`: every snapshot younger is kept.
    pub keep_within: Option<String>,
}

impl Retention {
    pub fn policy(&self) -> Result<Policy> {
        let policy = Policy {
            keep_last: self.keep_last,
            keep_daily: self.keep_daily,
            keep_weekly: self.keep_weekly,
            keep_monthly: self.keep_monthly,
            keep_within: self
                .keep_within
                .as_deref()
                .map(|w| {
                    w.parse::<jiff::Span>().map_err(|_| {
                        invalid(
                            "retention",
                            format!("keep_within = '{w}' is not a span like 7d, 2w or 1mo"),
                        )
                    })
                })
                .transpose()?,
        };
        if policy.is_empty() {
            return Err(invalid(
                "retention",
                "keeps nothing: set keep_last, keep_daily, keep_weekly, keep_monthly or keep_within",
            ));
        }
        Ok(policy)
    }
}

/// `[sync]`: the off-site copies, each a directory or `s3://bucket/prefix`.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SyncPlan {
    pub to: Vec<String>,
}

/// `[check]`: how much data each run reads back, and how often the
/// newest baseline is restored into scratch targets.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CheckPlan {
    /// `"5%"`: each run reads another twentieth of the packs, all of them
    /// over 20 runs; `"100%"` reads everything every run. Without it a run
    /// checks the structure only.
    pub read_data_subset: Option<String>,
    /// `"daily"`, `"weekly"`, `"monthly"` or a number of days (`"3d"`).
    pub drill: Option<String>,
}

impl CheckPlan {
    /// The number of slices the packs are cut into (one read per run).
    pub fn slices(&self) -> Result<Option<u32>> {
        self.read_data_subset
            .as_deref()
            .map(percent_slices)
            .transpose()
    }

    pub fn drill_every(&self) -> Result<Option<Duration>> {
        self.drill
            .as_deref()
            .map(|d| every(d).ok_or_else(|| invalid("check", format!("drill = '{d}': use daily, weekly, monthly or a number of days such as 3d"))))
            .transpose()
    }
}

/// `"5%"` → 20 slices of at most 5% each (the percentage rounded so that
/// no slice is larger than it).
fn percent_slices(s: &str) -> Result<u32> {
    let bad = || {
        invalid(
            "check",
            format!("read_data_subset = '{s}': use a percentage such as 5%"),
        )
    };
    let p: f64 = s
        .trim()
        .strip_suffix('%')
        .ok_or_else(bad)?
        .trim()
        .parse()
        .map_err(|_| bad())?;
    if !(p > 0.0 && p <= 100.0) {
        return Err(bad());
    }
    Ok((100.0 / p).ceil() as u32)
}

fn every(s: &str) -> Option<Duration> {
    const DAY: u64 = 86_400;
    let days = match s.trim() {
        "daily" => 1,
        "weekly" => 7,
        "monthly" => 30,
        other => {
            let (n, unit) = other.split_at(other.find(|c: char| !c.is_ascii_digit())?);
            let n: u64 = n.parse().ok().filter(|&n| n > 0 && n <= 36_500)?;
            match unit.trim() {
                "d" | "day" | "days" => n,
                "w" | "week" | "weeks" => n * 7,
                _ => return None,
            }
        }
    };
    Some(Duration::from_secs(days * DAY))
}

/// `[schedule]`: when `relic schedule install` runs `relic run`.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Schedule {
    /// `"daily 03:15"`, `"weekly Sun 04:00"`, `"hourly"`, or any systemd
    /// OnCalendar expression (`"Mon..Fri *-*-* 02:00:00"`).
    pub run: String,
    /// A file of `NAME=value` lines the run gets in its environment (S3
    /// credentials, DOCKER_HOST): the units name the file, never its
    /// contents. (The cron entry reads it with `sh`: quote values that
    /// hold `$`, spaces or backquotes.)
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub environment_file: Option<PathBuf>,
}

impl Schedule {
    /// The expression as systemd's OnCalendar= takes it.
    pub fn on_calendar(&self) -> Result<String> {
        on_calendar(&self.run)
    }
}

const DAYS: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];

fn day_index(s: &str) -> Option<usize> {
    let head = s.get(..3)?;
    DAYS.iter().position(|d| d.eq_ignore_ascii_case(head))
}

/// `HH:MM` or `HH:MM:SS` with numbers in range: `HH:MM:SS`.
fn clock(s: &str) -> Option<String> {
    let parts: Vec<&str> = s.split(':').collect();
    if !(2..=3).contains(&parts.len()) {
        return None;
    }
    let n: Vec<u32> = parts
        .iter()
        .map(|p| p.parse().ok())
        .collect::<Option<_>>()?;
    let (h, m, sec) = (n[0], n[1], n.get(2).copied().unwrap_or(0));
    (h < 24 && m < 60 && sec < 60).then(|| format!("{h:02}:{m:02}:{sec:02}"))
}

/// relic's short forms (`daily 03:15`, `weekly Sun 04:00`) as OnCalendar
/// expressions; anything else is taken as one already (systemd-analyze
/// checks it when the units are installed).
pub fn on_calendar(run: &str) -> Result<String> {
    let words: Vec<&str> = run.split_whitespace().collect();
    let bad = |what: &str| invalid("schedule", format!("run = '{run}': {what}"));
    if run.contains(|c: char| c.is_control() || c == '"' || c == '\'') {
        return Err(bad("not a calendar expression"));
    }
    match words.as_slice() {
        [] => Err(bad("empty")),
        ["daily", t] => clock(t)
            .map(|c| format!("*-*-* {c}"))
            .ok_or_else(|| bad("the time must be HH:MM")),
        ["weekly", t] if clock(t).is_some() => Ok(format!("Mon *-*-* {}", clock(t).unwrap())),
        ["weekly", d, t] => match (day_index(d), clock(t)) {
            (Some(i), Some(c)) => Ok(format!("{} *-*-* {c}", DAYS[i])),
            _ => Err(bad("use weekly DAY HH:MM, such as weekly Sun 04:00")),
        },
        _ => Ok(words.join(" ")),
    }
}

/// The five time fields of a cron line for an OnCalendar expression, for
/// the forms cron can say: `hourly`, `daily`, `weekly`, `monthly`, and
/// `[DAYS] *-*-* HH:MM[:SS]` (days as `Mon`, `Mon,Thu` or `Mon..Fri`).
pub fn cron_fields(on_calendar: &str) -> Result<String> {
    let bad = || {
        invalid(
            "schedule",
            format!("'{on_calendar}' cannot be written as a cron line: use daily HH:MM, weekly DAY HH:MM, or install with systemd"),
        )
    };
    match on_calendar {
        "hourly" => return Ok("0 * * * *".into()),
        "daily" => return Ok("0 0 * * *".into()),
        "weekly" => return Ok("0 0 * * 1".into()),
        "monthly" => return Ok("0 0 1 * *".into()),
        _ => {}
    }
    let words: Vec<&str> = on_calendar.split_whitespace().collect();
    let (days, date, time) = match words.as_slice() {
        [date, time] => (None, *date, *time),
        [days, date, time] => (Some(*days), *date, *time),
        _ => return Err(bad()),
    };
    if date != "*-*-*" {
        return Err(bad());
    }
    let t = clock(time).ok_or_else(bad)?;
    if !t.ends_with(":00") {
        return Err(bad());
    }
    let (h, m) = (&t[0..2], &t[3..5]);
    let dow = match days {
        None => "*".to_string(),
        Some(d) => d
            .split(',')
            .map(|part| match part.split_once("..") {
                // Sunday ends a range as 7 (cron takes 0-7).
                Some((a, b)) => Some(format!(
                    "{}-{}",
                    cron_day(a)?,
                    cron_day(b).map(|d| if d == 0 { 7 } else { d })?
                )),
                None => cron_day(part).map(|n| n.to_string()),
            })
            .collect::<Option<Vec<_>>>()
            .ok_or_else(bad)?
            .join(","),
    };
    Ok(format!(
        "{} {} * * {dow}",
        m.trim_start_matches('0').parse::<u32>().unwrap_or(0),
        h.trim_start_matches('0').parse::<u32>().unwrap_or(0)
    ))
}

/// cron's day number (0 Sunday … 6 Saturday).
fn cron_day(d: &str) -> Option<usize> {
    day_index(d).map(|i| (i + 1) % 7)
}

/// `[notify]`: who hears how a run went.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Notify {
    /// Told when a run starts (healthchecks.io's `/start`).
    #[serde(default)]
    pub on_start: Vec<String>,
    #[serde(default)]
    pub on_success: Vec<String>,
    #[serde(default)]
    pub on_failure: Vec<String>,
    /// How long one notification may take (default 10s).
    pub timeout: Option<String>,
}

/// Where a notification goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// An `http://` or `https://` URL: POSTed the summary.
    Http(String),
    /// `get:URL`: a GET of the URL, no body (a plain ping).
    Get(String),
    /// `exec:COMMAND`: run by `sh -c`, the summary on its stdin.
    Exec(String),
}

impl Target {
    pub fn parse(s: &str) -> Result<Target> {
        if let Some(cmd) = s.strip_prefix("exec:") {
            if cmd.trim().is_empty() {
                return Err(invalid("notify", "exec: needs a command"));
            }
            return Ok(Target::Exec(cmd.to_string()));
        }
        if s.starts_with("http://") || s.starts_with("https://") {
            return Ok(Target::Http(s.to_string()));
        }
        if let Some(u) = s.strip_prefix("get:") {
            if u.starts_with("http://") || u.starts_with("https://") {
                return Ok(Target::Get(u.to_string()));
            }
        }
        Err(invalid(
            "notify",
            format!(
                "'{s}': a notification is an http(s):// URL (POST), get:URL (GET) or exec:COMMAND"
            ),
        ))
    }
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            // A ping URL's path (and any user:password@) is its secret
            // part: shown as scheme and host only.
            Target::Http(u) | Target::Get(u) => {
                let (scheme, rest) = u.split_once("://").unwrap_or(("", u));
                let host = rest.split('/').next().unwrap_or("");
                let host = host.rsplit('@').next().unwrap_or(host);
                let get = if matches!(self, Target::Get(_)) {
                    "get:"
                } else {
                    ""
                };
                write!(f, "{get}{scheme}://{host}/…")
            }
            // Only the program: its arguments may hold a token.
            Target::Exec(c) => {
                let program = c.split_whitespace().next().unwrap_or("");
                write!(
                    f,
                    "exec:{program}{}",
                    if c.trim() != program { " …" } else { "" }
                )
            }
        }
    }
}

/// The default bound on one notification.
pub const NOTIFY_TIMEOUT: Duration = Duration::from_secs(10);

impl Notify {
    pub fn targets(list: &[String]) -> Result<Vec<Target>> {
        list.iter().map(|s| Target::parse(s)).collect()
    }

    pub fn timeout(&self) -> Result<Duration> {
        match &self.timeout {
            None => Ok(NOTIFY_TIMEOUT),
            Some(t) => {
                let span: jiff::SignedDuration = t.parse().map_err(|_| {
                    invalid(
                        "notify",
                        format!("timeout = '{t}' is not a duration like 10s"),
                    )
                })?;
                span.try_into()
                    .ok()
                    .filter(|d: &Duration| !d.is_zero())
                    .ok_or_else(|| invalid("notify", format!("timeout = '{t}' must be positive")))
            }
        }
    }

    /// Every list and the timeout, checked.
    pub fn check(&self) -> Result<()> {
        Self::targets(&self.on_start)?;
        Self::targets(&self.on_success)?;
        Self::targets(&self.on_failure)?;
        self.timeout().map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_forms_become_on_calendar_expressions() {
        assert_eq!(on_calendar("daily 03:15").unwrap(), "*-*-* 03:15:00");
        assert_eq!(
            on_calendar("weekly sun 4:00").unwrap(),
            "Sun *-*-* 04:00:00"
        );
        assert_eq!(on_calendar("hourly").unwrap(), "hourly");
        assert_eq!(
            on_calendar("Mon..Fri  *-*-* 02:00").unwrap(),
            "Mon..Fri *-*-* 02:00"
        );
        assert!(on_calendar("daily 25:00").is_err());
        assert!(on_calendar("weekly Xyz 01:00").is_err());
        assert!(on_calendar("daily\n03:00").is_err());
    }

    #[test]
    fn cron_says_the_simple_forms_and_refuses_the_rest() {
        assert_eq!(cron_fields("*-*-* 03:15:00").unwrap(), "15 3 * * *");
        assert_eq!(cron_fields("Sun *-*-* 04:00:00").unwrap(), "0 4 * * 0");
        assert_eq!(
            cron_fields("Mon..Fri *-*-* 02:30:00").unwrap(),
            "30 2 * * 1-5"
        );
        assert_eq!(
            cron_fields("Sat..Sun *-*-* 01:00:00").unwrap(),
            "0 1 * * 6-7"
        );
        assert_eq!(
            cron_fields("Mon,Thu *-*-* 00:00:00").unwrap(),
            "0 0 * * 1,4"
        );
        assert_eq!(cron_fields("daily").unwrap(), "0 0 * * *");
        assert!(cron_fields("*-*-01 03:00:00").is_err());
        assert!(cron_fields("*-*-* 03:00:30").is_err());
        assert!(cron_fields("minutely").is_err());
    }

    #[test]
    fn subsets_and_drill_periods() {
        let c = |s: &str| CheckPlan {
            read_data_subset: Some(s.into()),
            drill: None,
        };
        assert_eq!(c("5%").slices().unwrap(), Some(20));
        assert_eq!(c("100%").slices().unwrap(), Some(1));
        assert_eq!(c("3%").slices().unwrap(), Some(34));
        assert!(c("0%").slices().is_err());
        assert!(c("5").slices().is_err());
        assert_eq!(every("weekly"), Some(Duration::from_secs(7 * 86_400)));
        assert_eq!(every("3d"), Some(Duration::from_secs(3 * 86_400)));
        assert_eq!(every("2w"), Some(Duration::from_secs(14 * 86_400)));
        assert_eq!(every("0d"), None);
        assert_eq!(every("fortnightly"), None);
    }

    #[test]
    fn notification_targets() {
        assert_eq!(
            Target::parse("exec:/usr/local/bin/page-me").unwrap(),
            Target::Exec("/usr/local/bin/page-me".into())
        );
        let t = Target::parse("https://hc.example/ping/UUID/fail").unwrap();
        assert_eq!(t.to_string(), "https://hc.example/…");
        let t = Target::parse("get:https://u:secret@hc.example/ping/UUID").unwrap();
        assert_eq!(t.to_string(), "get:https://hc.example/…");
        let t = Target::parse("exec:/bin/page-me --token abc").unwrap();
        assert_eq!(t.to_string(), "exec:/bin/page-me …");
        assert!(Target::parse("get:ftp://x").is_err());
        assert!(Target::parse("ftp://x").is_err());
        assert!(Target::parse("exec: ").is_err());
        let n = Notify {
            timeout: Some("2s".into()),
            ..Default::default()
        };
        assert_eq!(n.timeout().unwrap(), Duration::from_secs(2));
        assert!(Notify {
            timeout: Some("0s".into()),
            ..Default::default()
        }
        .timeout()
        .is_err());
    }

    #[test]
    fn retention_needs_a_rule() {
        assert!(Retention::default().policy().is_err());
        let r = Retention {
            keep_daily: Some(7),
            keep_within: Some("2w".into()),
            ..Default::default()
        };
        assert_eq!(r.policy().unwrap().keep_daily, Some(7));
        assert!(Retention {
            keep_within: Some("soon".into()),
            ..Default::default()
        }
        .policy()
        .is_err());
    }
}
