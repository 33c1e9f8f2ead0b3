//! The volumes of a stack restore: refused in step 2 while running
//! containers use them (unless stop), described by a dry run, written back
//! in step 4.

use super::{wants, Part, Plan, RestoreOptions, Trail};
use crate::docker::{self, volume, Engine};
use crate::progress::Progress;
use crate::repo::Repository;
use crate::snapshot::Snapshot;
use crate::stack::{Absent, RestoreStep, Result, StackConfig};

/// Step 2: refuses, before anything is changed, a volume that running
/// containers use, unless `stop`; returns what each volume restored
/// meets now.
pub(super) fn check_in_use(
    plan: &Plan,
    engine: Option<&Engine>,
    opts: &RestoreOptions,
) -> Result<Vec<volume::Target>> {
    let Some(engine) = engine else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for v in plan.volumes {
        let t = volume::target(engine, &v.name)?;
        let running = t.running();
        if !running.is_empty() && !opts.stop {
            return Err(docker::Error::VolumeInUse {
                volume: v.name.clone(),
                containers: running,
            }
            .into());
        }
        out.push(t);
    }
    Ok(out)
}

/// A dry run's lines for the volumes: what each would meet and do.
pub(super) fn describe(plan: &Plan, targets: &[volume::Target], say: &mut dyn FnMut(RestoreStep)) {
    for (v, t) in plan.volumes.iter().zip(targets) {
        say(RestoreStep::WouldRestoreVolume {
            volume: v.name.clone(),
            entries: v.entries,
            bytes: v.bytes,
            exists: t.exists,
            stops: t.running(),
        });
    }
}

/// Step 4, volumes: writes each volume of the snapshot back into the
/// volume of its name (created when missing, emptied first); running
/// containers that use one are stopped and started again when `stop`
/// (else step 2 refused).
#[allow(clippy::too_many_arguments)]
pub(super) fn restore(
    repo: &Repository,
    snap: &Snapshot,
    plan: &Plan,
    engine: Option<&Engine>,
    opts: &RestoreOptions,
    trail: &mut Trail,
    progress: &dyn Progress,
    say: &mut dyn FnMut(RestoreStep),
) -> Result<()> {
    let Some(engine) = engine else {
        return Ok(());
    };
    for v in plan.volumes {
        let mut on = |s| say(RestoreStep::Volume(s));
        // The restore's own safety snapshot (step 3) holds the volumes.
        let to = volume::RestoreTo {
            volume: v.name.clone(),
            stop: opts.stop,
            safety_for: None,
        };
        volume::restore(engine, repo, snap, v, &to, progress, &mut on)
            .map_err(|e| trail.failed(&format!("restoring volume '{}'", v.name), e.to_string()))?;
        trail.done.push(format!("volume {}", v.name));
    }
    Ok(())
}

/// The volumes the restore touches that `present` (the stack as present
/// now) lacks: the safety snapshot leaves them out.
pub(super) fn absent(
    cfg: &StackConfig,
    opts: &RestoreOptions,
    present: Option<&StackConfig>,
    out: &mut Vec<Absent>,
) {
    if wants(opts, Part::Volumes) {
        for v in &cfg.volumes {
            if !present.is_some_and(|p| p.volumes.contains(v)) {
                out.push(Absent::Volume(v.clone()));
            }
        }
    }
}
