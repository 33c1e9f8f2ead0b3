//! One module per command or group of commands: each takes the parsed
//! arguments, calls the library, and hands what it got to `render`.

pub mod backup;
pub mod baseline;
pub mod check;
pub mod forget;
pub mod init;
pub mod key;
pub mod prune;
pub mod repair;
pub mod report;
pub mod restore;
pub mod run;
pub mod schedule;
pub mod snapshots;
pub mod stack;
pub mod sync;
pub mod unlock;

/// Records a check, drill or sync in the repository's local state for
/// the report; a record that cannot be written is a warning.
pub fn record(
    repo: &relic::Repository,
    kind: &str,
    target: Option<String>,
    r: Result<String, String>,
) {
    if repo.is_read_only() {
        return;
    }
    let newest = (kind == "sync" && r.is_ok())
        .then(|| repo.snapshots().ok())
        .flatten()
        .and_then(|s| {
            s.iter()
                .filter(|(_, s)| s.tier != relic::Tier::Safety)
                .map(|(_, s)| s.time())
                .max()
        })
        .map(|t| t.to_string());
    let e = relic::runs::Event {
        kind: kind.to_string(),
        time: jiff::Timestamp::now().to_string(),
        ok: r.is_ok(),
        target,
        newest,
        detail: r.unwrap_or_else(|e| e),
    };
    if let Err(e) = relic::runs::record(repo.backend(), &e) {
        eprintln!("warning: {e}");
    }
}
