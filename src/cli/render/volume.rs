//! Docker named volumes for people: each step of a volume backup or
//! restore as the line it prints, and the volume errors with the flag or
//! command that helps.

use relic::docker::volume::VolumeStep;
use relic::docker::Error;

/// The line a step of a volume backup or restore prints.
pub fn volume_step(step: &VolumeStep) -> String {
    match step {
        VolumeStep::LiveCopy { volume, containers } => format!(
            "note: volume '{volume}' is copied while {} run(s); what is written during the copy may be caught half-written (--stop stops them for the copy)",
            containers.join(", ")
        ),
        VolumeStep::Stopping { container, volume } => {
            format!("stopping container {container} (it uses volume '{volume}')")
        }
        VolumeStep::Starting { container } => format!("starting container {container} again"),
        VolumeStep::Copying { volume } => format!("copying volume '{volume}'"),
        VolumeStep::Creating { volume } => format!("creating volume '{volume}'"),
        VolumeStep::SafetySnapshot { volume, id } => format!(
            "safety snapshot {} of volume '{volume}' as it was taken",
            id.short()
        ),
        VolumeStep::Emptying { volume } => {
            format!("emptying volume '{volume}': it is made to hold exactly the snapshot's files")
        }
        VolumeStep::Writing { volume, item } => format!("writing {item} into volume '{volume}'"),
    }
}

/// A volume error with what this CLI adds: the flag or command that helps.
pub fn volume_error(e: Error) -> anyhow::Error {
    let hint = match &e {
        Error::VolumeInUse { .. } => {
            " (--stop stops them, restores, and starts them again)".to_string()
        }
        Error::DatabaseVolume { container, .. } => format!(
            " (`relic backup pg --container {container}` backs up the database; --stop copies the volume with the server stopped)"
        ),
        _ => return e.into(),
    };
    anyhow::anyhow!("{e}{hint}")
}

/// What `restore --into-volume --dry-run` prints: what the restore would
/// meet and do.
pub fn volume_plan(
    record: &relic::docker::volume::VolumeRecord,
    target: &relic::docker::volume::Target,
    stop: bool,
    safety: bool,
) -> Vec<String> {
    let v = &target.volume;
    let mut out = vec![format!(
        "would write {} ({} entries, {}) into volume '{v}'",
        record.item,
        record.entries,
        indicatif::HumanBytes(record.bytes)
    )];
    if !target.exists {
        out.push(format!(
            "volume '{v}' does not exist: it would be created (driver {})",
            if record.driver.is_empty() {
                "local"
            } else {
                &record.driver
            }
        ));
    } else {
        out.push(format!(
            "volume '{v}' exists: whatever it holds would be removed first{}",
            if safety {
                ", after a safety snapshot of it (tier safety)"
            } else {
                " (--no-safety-snapshot: not kept)"
            }
        ));
    }
    let running = target.running();
    if running.is_empty() {
        out.push("no running container uses it".into());
    } else if stop {
        out.push(format!(
            "would stop {}, restore, and start them again",
            running.join(", ")
        ));
    } else {
        out.push(format!(
            "REFUSED without --stop: running container(s) {} use it",
            running.join(", ")
        ));
    }
    out
}

/// What a restore into a volume says when it is done.
pub fn volume_restored(
    record: &relic::docker::volume::VolumeRecord,
    id: &relic::SnapshotId,
    done: &relic::docker::volume::Restored,
) -> anyhow::Result<()> {
    report!(
        "restored {} of snapshot {} into volume '{}': {} entries, {}{}",
        record.item,
        id.short(),
        done.volume,
        done.entries,
        indicatif::HumanBytes(done.bytes),
        match (done.created, done.emptied) {
            (true, _) => " (volume created)",
            (false, true) => " (what it held before was removed)",
            (false, false) => "",
        }
    );
    if let Some(s) = &done.safety_snapshot {
        report!(
            "safety snapshot of what it held: {} (relic restore {} --into-volume {} goes back)",
            s.short(),
            s.short(),
            done.volume
        );
    }
    Ok(())
}
