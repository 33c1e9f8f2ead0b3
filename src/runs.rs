//! The record of `relic run`s, kept in the repository's local state
//! (`runs.jsonl` beside its index, as `damaged.json` is: one JSON object
//! per line, the newest last, the last [`KEEP`] kept), so "when did the last good backup
//! of this stack finish, and what did it cost" is answered without reading
//! a pack, and a run knows when the last drill ran and which slice of the
//! packs the last check read.

use crate::store::Local;
use serde::{Deserialize, Serialize};

/// Records kept (a run a day: about three years).
pub const KEEP: usize = 1000;

const FILE: &str = "runs.jsonl";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot write the run record {path}: {source}")]
    Write {
        path: String,
        source: std::io::Error,
    },
}

/// How a step went.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Ok,
    Failed,
    Skipped,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Failed => "FAILED",
            Status::Skipped => "skipped",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Step {
    /// `snapshot`, `forget`, `prune`, `check`, `sync <destination>`, `drill`.
    pub step: String,
    pub status: Status,
    pub seconds: f64,
    /// What it did, why it failed, or why it was skipped.
    pub detail: String,
}

/// One run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Run {
    pub stack: String,
    /// RFC 3339 times.
    pub started: String,
    pub finished: String,
    pub ok: bool,
    pub exit_code: u8,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed_step: Option<String>,
    pub steps: Vec<Step>,
    /// The snapshot the run wrote, and what it cost.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raw_bytes: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub added_bytes: Option<u64>,
    /// The slice of the packs the check read: `[index, of]`, index from 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub check_slice: Option<(u32, u32)>,
    /// Whether the drill ran and passed (absent: not due).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drill_ok: Option<bool>,
    /// The repository's pack bytes when the run ended (the report's size
    /// over time).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repo_bytes: Option<u64>,
}

impl Run {
    pub fn step(&self, name: &str) -> Option<&Step> {
        self.steps.iter().find(|s| s.step == name)
    }
}

/// Every recorded run, oldest first (a line that does not parse, from a
/// newer relic or a torn disk, is left out).
pub fn read(state: &Local) -> Vec<Run> {
    read_lines(state, FILE)
}

/// The records of a JSON-lines state file, oldest first; a line that does
/// not parse is left out.
fn read_lines<T: serde::de::DeserializeOwned>(state: &Local, file: &str) -> Vec<T> {
    let Ok(Some(bytes)) = state.read_state(file) else {
        return Vec::new();
    };
    String::from_utf8_lossy(&bytes)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// Replaces a JSON-lines state file with `records` (temp file + rename:
/// a crash leaves the old file, never half a line).
fn write_lines<T: Serialize>(state: &Local, file: &str, records: &[&T]) -> Result<(), Error> {
    let text: String = records
        .iter()
        .map(|r| serde_json::to_string(r).expect("a record serializes") + "\n")
        .collect();
    state
        .write_state(file, Some(text.as_bytes()))
        .map_err(|source| Error::Write {
            path: state.root().join(file).display().to_string(),
            source,
        })
}

/// The runs of `stack`, oldest first.
pub fn of(state: &Local, stack: &str) -> Vec<Run> {
    read(state)
        .into_iter()
        .filter(|r| r.stack == stack)
        .collect()
}

/// Adds `run` (whole file rewritten atomically: a crash leaves the old
/// record, never half a line).
pub fn append(state: &Local, run: &Run) -> Result<(), Error> {
    let _lock = lock(state, FILE)?;
    let runs = read(state);
    let skip = (runs.len() + 1).saturating_sub(KEEP);
    let kept: Vec<&Run> = runs[skip.min(runs.len())..]
        .iter()
        .chain(std::iter::once(run))
        .collect();
    write_lines(state, FILE, &kept)
}

/// Two runs of different stacks (or a check beside a run) add to the
/// same file: each read-modify-write holds this flock.
fn lock(state: &Local, file: &str) -> Result<impl Sized, Error> {
    state
        .flock(&format!("{file}.flock"))
        .map_err(|source| Error::Write {
            path: state.root().join(file).display().to_string(),
            source,
        })
}

/// The slice of the packs the next check of `stack` reads, of `of`: the
/// one after the last run's (runs that read another number of slices
/// start again at 0).
pub fn next_slice(runs: &[Run], of: u32) -> u32 {
    runs.iter()
        .rev()
        .find_map(|r| r.check_slice)
        .filter(|&(_, n)| n == of)
        .map_or(0, |(i, _)| (i + 1) % of)
}

/// A check, drill or sync, whoever ran it (`relic run` or the command
/// alone), kept in `events.jsonl` beside the runs: what the report shows
/// as the last drill, the last data check and each copy's lag.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// `check`, `check --read-data`, `check --read-data-subset`, `drill`
    /// or `sync`.
    pub kind: String,
    /// RFC 3339.
    pub time: String,
    pub ok: bool,
    /// The sync destination, or the snapshot drilled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// For a sync that succeeded: the time of the newest snapshot the
    /// destination then held (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub newest: Option<String>,
    pub detail: String,
}

const EVENTS: &str = "events.jsonl";

/// Every recorded event, oldest first.
pub fn events(state: &Local) -> Vec<Event> {
    read_lines(state, EVENTS)
}

/// Adds `event` (the last [`KEEP`] per kind and target are kept).
pub fn record(state: &Local, event: &Event) -> Result<(), Error> {
    let _lock = lock(state, EVENTS)?;
    let mut all = events(state);
    all.push(event.clone());
    let mut seen: std::collections::HashMap<(String, Option<String>), usize> = Default::default();
    let mut keep: Vec<&Event> = all
        .iter()
        .rev()
        .filter(|e| {
            let n = seen.entry((e.kind.clone(), e.target.clone())).or_default();
            *n += 1;
            *n <= KEEP
        })
        .collect();
    keep.reverse();
    write_lines(state, EVENTS, &keep)
}

/// When the run with the last drill that passed started (a run's start,
/// not its end, so that a long run does not push the next drill a period
/// later).
pub fn last_good_drill(runs: &[Run]) -> Option<jiff::Timestamp> {
    runs.iter()
        .rev()
        .find(|r| r.drill_ok == Some(true))
        .and_then(|r| r.started.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(stack: &str, finished: &str, slice: Option<(u32, u32)>, drill: Option<bool>) -> Run {
        Run {
            stack: stack.into(),
            started: finished.into(),
            finished: finished.into(),
            ok: true,
            exit_code: 0,
            failed_step: None,
            steps: vec![Step {
                step: "snapshot".into(),
                status: Status::Ok,
                seconds: 1.5,
                detail: "x".into(),
            }],
            snapshot: Some("ab".into()),
            raw_bytes: Some(10),
            added_bytes: Some(1),
            check_slice: slice,
            drill_ok: drill,
            repo_bytes: None,
        }
    }

    #[test]
    fn records_round_trip_and_answer_slices_and_drills() {
        let d = tempfile::tempdir().unwrap();
        let s = Local::new(d.path());
        assert!(read(&s).is_empty());
        append(
            &s,
            &run("a", "2026-01-01T03:00:00Z", Some((0, 20)), Some(true)),
        )
        .unwrap();
        append(&s, &run("b", "2026-01-02T03:00:00Z", None, None)).unwrap();
        append(
            &s,
            &run("a", "2026-01-02T03:00:00Z", Some((19, 20)), Some(false)),
        )
        .unwrap();
        let a = of(&s, "a");
        assert_eq!(a.len(), 2);
        assert_eq!(a[0].step("snapshot").unwrap().seconds, 1.5);
        assert_eq!(next_slice(&a, 20), 0);
        assert_eq!(next_slice(&a[..1], 20), 1);
        assert_eq!(next_slice(&a, 10), 0);
        assert_eq!(
            last_good_drill(&a).unwrap().to_string(),
            "2026-01-01T03:00:00Z"
        );
        // A torn line is left out, the rest still read.
        let p = d.path().join(FILE);
        let mut t = std::fs::read_to_string(&p).unwrap();
        t.push_str("{\"stack\":");
        std::fs::write(&p, t).unwrap();
        assert_eq!(read(&s).len(), 3);
    }
}
