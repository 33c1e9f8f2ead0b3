//! `relic schedule status`: how a stack's daily job is scheduled and how
//! its last runs went.

use anyhow::Result;
use indicatif::HumanBytes;
use relic::runs::{Run, Status};
use std::path::PathBuf;

/// What `schedule status` says (`--json` prints it as it is).
#[derive(serde::Serialize)]
pub struct ScheduleStatus {
    pub stack: String,
    /// `systemd`, `cron`, or none.
    pub scheduled_by: Option<&'static str>,
    pub files: Vec<PathBuf>,
    /// The OnCalendar expression of relic.toml's [schedule].
    pub schedule: Option<String>,
    pub next_run: Option<String>,
    pub last_run: Option<Run>,
    pub last_good_run: Option<Run>,
}

fn run_line(r: &Run) -> String {
    let cost = match (r.raw_bytes, r.added_bytes) {
        (Some(raw), Some(added)) => {
            format!(", {} read, {} added", HumanBytes(raw), HumanBytes(added))
        }
        _ => String::new(),
    };
    let seconds: f64 = r.steps.iter().map(|s| s.seconds).sum();
    let what = if r.ok {
        "ok".to_string()
    } else {
        format!(
            "FAILED at {} (exit {})",
            r.failed_step.as_deref().unwrap_or("?"),
            r.exit_code
        )
    };
    let finished = r
        .finished
        .parse::<jiff::Timestamp>()
        .map(|t| t.strftime("%Y-%m-%d %H:%M:%S UTC").to_string())
        .unwrap_or_else(|_| r.finished.clone());
    format!(
        "{what}, finished {finished} after {seconds:.1} s{}{cost}",
        r.snapshot
            .as_ref()
            .map(|s| format!(", snapshot {}", &s[..8.min(s.len())]))
            .unwrap_or_default()
    )
}

pub fn schedule_status(s: &ScheduleStatus) -> Result<()> {
    out!("stack:         {}", s.stack);
    match s.scheduled_by {
        None => out!("scheduled:     no (relic schedule install)"),
        Some(by) => {
            let files: Vec<String> = s.files.iter().map(|f| f.display().to_string()).collect();
            out!("scheduled:     by {by} ({})", files.join(", "));
        }
    }
    if let Some(c) = &s.schedule {
        out!("schedule:      {c}");
    }
    out!("next run:      {}", s.next_run.as_deref().unwrap_or("-"));
    match &s.last_run {
        None => out!("last run:      none recorded"),
        Some(r) => {
            out!("last run:      {}", run_line(r));
            for step in r.steps.iter().filter(|st| st.status == Status::Failed) {
                out!("               {}: {}", step.step, step.detail);
            }
        }
    }
    match &s.last_good_run {
        None => out!("last good run: none recorded"),
        Some(r) if Some(r) == s.last_run.as_ref() => {}
        Some(r) => out!("last good run: {}", run_line(r)),
    }
    Ok(())
}
