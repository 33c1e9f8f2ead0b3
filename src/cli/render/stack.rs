//! Stacks for people: a manifest as Markdown (`relic manifest`), each step
//! of a stack restore and of a drill as the line it prints, and the stack
//! errors whose words name this CLI's commands and flags. Sizes here are
//! `human`'s one-decimal binary units, as these reports have always shown.

use relic::docker::LoadStep;
use relic::stack::{
    Absent, DrillStep, RestoreStep, Room, SafetySkip, SpacePart, TargetRevision, DRILL_STEPS,
    RESTORE_STEPS,
};
use std::path::Path;

/// The first `n` characters (ids and commits are ASCII hex).
pub(super) fn head(s: &str, n: usize) -> &str {
    &s[..n.min(s.len())]
}

/// A byte count for people: `512 B`, `1.5 MiB`.
pub(super) fn human(n: u64) -> String {
    const U: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut i = 0;
    while v >= 1024.0 && i < U.len() - 1 {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", U[i])
    }
}

/// A part that takes room: `database main`, `files`.
fn space_part(part: &SpacePart) -> String {
    match part {
        SpacePart::Database(name) => format!("database {name}"),
        SpacePart::DockerRoot => "Docker data root".to_string(),
        SpacePart::Files => "files".to_string(),
    }
}

/// The parts a filesystem holds with their directories, comma-separated:
/// `database main (/var/lib/postgresql), files (/srv/app)`.
fn room_parts(r: &Room) -> String {
    let parts: Vec<String> = r
        .parts
        .iter()
        .map(|(p, d)| format!("{} ({})", space_part(p), d.display()))
        .collect();
    parts.join(", ")
}

/// The line a step of a stack restore prints.
pub fn stack_step(step: &RestoreStep) -> String {
    use RestoreStep as S;
    let n = format!("{}/{RESTORE_STEPS}", step.number());
    match step {
        S::DiskSpace => format!("{n} disk space"),
        S::FreeSpaceUnknown { part, dir } => format!(
            "    {}: free space unknown at {}",
            space_part(part),
            dir.display()
        ),
        S::Room(r) => format!(
            "    {}: {} free, {} needed",
            room_parts(r),
            human(r.free),
            human(r.need)
        ),
        S::Verify {
            snapshot,
            read_data,
        } => super::verify_step(&n, snapshot, *read_data),
        S::Revision {
            part,
            snapshot,
            target,
        } => {
            let rev = |r: &Option<String>| r.clone().unwrap_or_else(|| "no revision".into());
            match target {
                TargetRevision::Unreachable => format!(
                    "    database {part}: snapshot at {}, target not reachable now (it is created)",
                    rev(snapshot)
                ),
                TargetRevision::At(t) if t == snapshot => {
                    format!("    database {part}: snapshot and target at {}", rev(t))
                }
                TargetRevision::At(t) => format!(
                    "    database {part}: snapshot at {}, target at {}: REVISION MISMATCH, the restore puts the snapshot's back",
                    rev(snapshot),
                    rev(t)
                ),
            }
        }
        S::WouldTakeSafetySnapshot => {
            format!("{n} would take a safety snapshot of the parts present now (tier safety)")
        }
        S::WouldRestoreDatabase {
            part,
            target,
            dump_size,
        } => format!(
            "{n} would drop, recreate and restore database '{part}' ({target}) from {} of dump",
            human(*dump_size)
        ),
        S::WouldLoadImage { reference, id } => format!("{n} would load image {reference} ({id})"),
        S::WouldRestoreFiles {
            entries,
            bytes,
            root,
        } => format!(
            "{n} would restore {entries} file entries ({}) under {}",
            human(*bytes),
            root.display()
        ),
        S::WouldRestoreVolume {
            volume,
            entries,
            bytes,
            exists,
            stops,
        } => format!(
            "{n} would {} volume '{volume}' and write {entries} entries ({}) into it{}",
            if *exists { "empty" } else { "create" },
            human(*bytes),
            if stops.is_empty() {
                String::new()
            } else {
                format!(", stopping {} meanwhile", stops.join(", "))
            }
        ),
        S::WouldRunHook { command } => format!("{n} would run: {command}"),
        S::WouldVerify => {
            format!("{n} would verify row counts and revisions, image ids and file checksums")
        }
        S::NotInSafetySnapshot(Absent::Database(name)) => {
            format!("    database '{name}' is not reachable now: not in the safety snapshot")
        }
        S::NotInSafetySnapshot(Absent::Image(r)) => {
            format!("    image {r} is not in the engine now: not in the safety snapshot")
        }
        S::NotInSafetySnapshot(Absent::Volume(v)) => {
            format!("    volume '{v}' is not in the engine now: not in the safety snapshot")
        }
        S::SafetySnapshotSkipped(SafetySkip::NotWanted) => {
            format!("{n} safety snapshot: skipped (--no-safety-snapshot)")
        }
        S::SafetySnapshotSkipped(SafetySkip::NothingToKeep) => {
            format!("{n} safety snapshot: nothing there to keep")
        }
        S::SafetySnapshotTaken { id } => format!("{n} safety snapshot {} taken", id.short()),
        S::RestoringDatabase { part, target } => {
            format!("{n} restoring database '{part}' into {target}")
        }
        S::OpenConnections { part, db, count } => super::open_connections(&n, db, *count).replacen(
            &format!("database '{db}'"),
            &format!("database '{part}' ({db})"),
            1,
        ),
        S::Images(l) => load_step(l),
        S::RestoringFiles { root } => format!("{n} restoring files under {}", root.display()),
        S::RunningHook { which, command } => format!("{n} running {which} hook: {command}"),
        S::HookOutput { text, .. } => text
            .lines()
            .map(|l| format!("    | {l}"))
            .collect::<Vec<_>>()
            .join("\n"),
        S::Volume(v) => format!("    {}", super::volume_step(v)),
        S::Verified { checks } => format!("{n} verified {checks} checks"),
    }
}

/// The lines a hook around a backup prints.
pub fn hook_event(e: &relic::stack::HookEvent) -> String {
    match e {
        relic::stack::HookEvent::Running(c) => format!("running hook: {c}"),
        relic::stack::HookEvent::Output(t) => t
            .lines()
            .map(|l| format!("    | {l}"))
            .collect::<Vec<_>>()
            .join("\n"),
    }
}

/// The line a load into the Docker engine prints.
pub fn load_step(step: &LoadStep) -> String {
    match step {
        LoadStep::Loading { item, host } => format!("loading {item} into {host}"),
        LoadStep::Engine(line) => line.clone(),
        LoadStep::Kept(r) => format!(
            "{} points at {} now: tagged {} to keep it",
            r.tag,
            head(&r.old_id, 19),
            r.kept_as
        ),
        LoadStep::Tagged { tag, id } => {
            format!(
                "tagged {} {tag} (the compose project's name for it)",
                head(id, 19)
            )
        }
    }
}

/// The line a step of a drill prints.
pub fn drill_step(step: &DrillStep) -> String {
    let n = format!("{}/{DRILL_STEPS}", step.number());
    match step {
        DrillStep::Verify { snapshot } => format!(
            "{n} reading and verifying every chunk of snapshot {}",
            snapshot.short()
        ),
        DrillStep::NotAStack => format!(
            "{n} not a stack snapshot: restoring every item to nowhere, checking each BLAKE3"
        ),
        DrillStep::RestoringDatabase { part, scratch } => {
            format!("{n} restoring database '{part}' into scratch database {scratch}")
        }
        DrillStep::DroppedDatabase { scratch } => {
            format!("{n} dropped scratch database {scratch}")
        }
        DrillStep::LoadingImages => format!("{n} loading the images under scratch tags"),
        DrillStep::RestoringFiles { dir } => {
            format!("{n} restoring the files into {}", dir.display())
        }
    }
}

/// A stack restore's error in this CLI's words: sizes for people, the flag
/// that allows what was refused, and the command that restores the safety
/// snapshot after a failure (`repo`: the repository's directory, `config`:
/// the stack's relic.toml).
pub fn stack_error(e: relic::stack::Error, repo: &Path) -> anyhow::Error {
    use relic::stack::Error as E;
    match e {
        E::NoRoom(r) => anyhow::anyhow!(
            "refusing to restore: not enough disk space for {}: {} free, {} needed (the parts' sizes plus 10% and 64 MiB); nothing was changed",
            room_parts(&r),
            human(r.free),
            human(r.need)
        ),
        e @ E::RevisionMismatch { .. } => {
            anyhow::anyhow!("{e}; restore the whole stack, or --force")
        }
        E::Failed {
            step,
            what,
            done,
            safety_snapshot,
        } => {
            let done = if done.is_empty() {
                "Nothing was changed before it.\n".to_string()
            } else {
                format!(
                    "Already restored: {}; nothing after it was touched.\n",
                    done.join(", ")
                )
            };
            let back = match safety_snapshot {
                Some(s) => format!(
                    "To go back to the state before this restore: relic -r {} restore {}",
                    repo.display(),
                    head(&s, 8),
                ),
                None => "No safety snapshot was taken.".to_string(),
            };
            anyhow::anyhow!("{step} failed: {what}\n{done}{back}")
        }
        e => stack_hint(e),
    }
}

/// One target a given relic.toml changes, for the lines before a restore.
pub fn target_change(c: &relic::stack::TargetChange) -> String {
    format!(
        "    {}: {} (stored) -> {}",
        c.what,
        if c.stored.is_empty() {
            "none"
        } else {
            &c.stored
        },
        if c.given.is_empty() { "none" } else { &c.given }
    )
}

/// A stack error with what this CLI adds: the flag or the command that
/// helps.
pub fn stack_hint(e: relic::stack::Error) -> anyhow::Error {
    use relic::stack::Error as E;
    match e {
        e @ E::ConfigUnreadable { .. } => {
            anyhow::anyhow!("{e} (a stack is described by relic.toml; --config names it)")
        }
        e @ E::PartialBaseline { .. } => {
            anyhow::anyhow!("{e}: drop --allow-partial, or take a daily or named snapshot")
        }
        e @ E::WhichStack(_) => anyhow::anyhow!("{e} with --stack NAME or --config"),
        e @ E::NoBaseline { .. } => {
            anyhow::anyhow!("{e}; make one with `relic snapshot --tier immaculate --name NAME`")
        }
        E::Docker(e) => super::volume_error(e),
        e => e.into(),
    }
}

/// A drill's error in this CLI's words: the flag that gives it what it
/// lacked.
pub fn drill_error(e: relic::stack::Error) -> anyhow::Error {
    match e {
        e @ relic::stack::Error::NoConfig(_) => {
            anyhow::anyhow!("{e}: give it with --config (a drill also takes --postgres CONNINFO)")
        }
        e => stack_hint(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use relic::SnapshotId;
    use std::path::PathBuf;

    /// Every step's line, as the library printed it before the steps were
    /// data.
    #[test]
    fn restore_steps_read_as_they_always_did() {
        use RestoreStep as S;
        let id = SnapshotId([0xab; 32]);
        let p = |s: &str| PathBuf::from(s);
        let cases = [
            (S::DiskSpace, "1/6 disk space"),
            (
                S::FreeSpaceUnknown {
                    part: SpacePart::Database("main".into()),
                    dir: p("/pg"),
                },
                "    database main: free space unknown at /pg",
            ),
            (
                S::Room(Room {
                    parts: vec![
                        (SpacePart::Database("main".into()), p("/pg")),
                        (SpacePart::DockerRoot, p("/docker")),
                        (SpacePart::Files, p("/app")),
                    ],
                    free: 3 << 30,
                    need: 202_165_043,
                }),
                "    database main (/pg), Docker data root (/docker), files (/app): 3.0 GiB free, 192.8 MiB needed",
            ),
            (
                S::Verify {
                    snapshot: id,
                    read_data: false,
                },
                "2/6 verify snapshot abababab (index and packs)",
            ),
            (
                S::Verify {
                    snapshot: id,
                    read_data: true,
                },
                "2/6 verify snapshot abababab (reading every chunk)",
            ),
            (
                S::WouldTakeSafetySnapshot,
                "3/6 would take a safety snapshot of the parts present now (tier safety)",
            ),
            (
                S::WouldRestoreDatabase {
                    part: "main".into(),
                    target: "app@/run".into(),
                    dump_size: 33_587,
                },
                "4/6 would drop, recreate and restore database 'main' (app@/run) from 32.8 KiB of dump",
            ),
            (
                S::WouldLoadImage {
                    reference: "a:1".into(),
                    id: "sha256:00".into(),
                },
                "4/6 would load image a:1 (sha256:00)",
            ),
            (
                S::WouldRestoreFiles {
                    entries: 4,
                    bytes: 3072,
                    root: p("/app"),
                },
                "4/6 would restore 4 file entries (3.0 KiB) under /app",
            ),
            (
                S::WouldRunHook {
                    command: "true".into(),
                },
                "5/6 would run: true",
            ),
            (
                S::WouldVerify,
                "6/6 would verify row counts and revisions, image ids and file checksums",
            ),
            (
                S::NotInSafetySnapshot(Absent::Database("main".into())),
                "    database 'main' is not reachable now: not in the safety snapshot",
            ),
            (
                S::NotInSafetySnapshot(Absent::Image("a:1".into())),
                "    image a:1 is not in the engine now: not in the safety snapshot",
            ),
            (
                S::SafetySnapshotSkipped(SafetySkip::NotWanted),
                "3/6 safety snapshot: skipped (--no-safety-snapshot)",
            ),
            (
                S::SafetySnapshotSkipped(SafetySkip::NothingToKeep),
                "3/6 safety snapshot: nothing there to keep",
            ),
            (
                S::SafetySnapshotTaken { id },
                "3/6 safety snapshot abababab taken",
            ),
            (
                S::RestoringDatabase {
                    part: "main".into(),
                    target: "app@/run".into(),
                },
                "4/6 restoring database 'main' into app@/run",
            ),
            (
                S::OpenConnections {
                    part: "main".into(),
                    db: "app".into(),
                    count: 2,
                },
                "4/6 database 'main' (app) has 2 open connections: they will be terminated",
            ),
            (
                S::Images(LoadStep::Loading {
                    item: "images/a.tar".into(),
                    host: "unix:///d.sock".into(),
                }),
                "loading images/a.tar into unix:///d.sock",
            ),
            (
                S::Images(LoadStep::Kept(relic::docker::Replaced {
                    tag: "a:1".into(),
                    old_id: "sha256:0123456789abcdef0123".into(),
                    kept_as: "relic-replaced/a-1:20260101-120000".into(),
                })),
                "a:1 points at sha256:0123456789ab now: tagged relic-replaced/a-1:20260101-120000 to keep it",
            ),
            (
                S::Images(LoadStep::Engine("Loaded image: a:1".into())),
                "Loaded image: a:1",
            ),
            (
                S::RestoringFiles { root: p("/app") },
                "4/6 restoring files under /app",
            ),
            (
                S::RunningHook {
                    which: "post-restore".into(),
                    command: "true".into(),
                },
                "5/6 running post-restore hook: true",
            ),
            (S::Verified { checks: 7 }, "6/6 verified 7 checks"),
        ];
        for (step, line) in cases {
            assert_eq!(stack_step(&step), line);
        }
    }

    #[test]
    fn drill_steps_read_as_they_always_did() {
        let cases = [
            (
                DrillStep::Verify {
                    snapshot: SnapshotId([0xab; 32]),
                },
                "1/4 reading and verifying every chunk of snapshot abababab",
            ),
            (
                DrillStep::NotAStack,
                "2/4 not a stack snapshot: restoring every item to nowhere, checking each BLAKE3",
            ),
            (
                DrillStep::RestoringDatabase {
                    part: "main".into(),
                    scratch: "relic_drill_main_1@/run".into(),
                },
                "2/4 restoring database 'main' into scratch database relic_drill_main_1@/run",
            ),
            (
                DrillStep::DroppedDatabase {
                    scratch: "relic_drill_main_1@/run".into(),
                },
                "2/4 dropped scratch database relic_drill_main_1@/run",
            ),
            (
                DrillStep::LoadingImages,
                "3/4 loading the images under scratch tags",
            ),
            (
                DrillStep::RestoringFiles {
                    dir: PathBuf::from("/tmp/relic-drill-1"),
                },
                "4/4 restoring the files into /tmp/relic-drill-1",
            ),
        ];
        for (step, line) in cases {
            assert_eq!(drill_step(&step), line);
        }
    }

    /// The errors that name this CLI's flags and commands, as the library
    /// worded them before its errors were data.
    #[test]
    fn errors_name_the_flags() {
        use relic::stack::Error as E;
        let repo = Path::new("/r");
        let cases = [
            (
                E::NoRoom(Room {
                    parts: vec![(SpacePart::Files, PathBuf::from("/tiny"))],
                    free: 2 << 20,
                    need: 64 << 20,
                }),
                "refusing to restore: not enough disk space for files (/tiny): 2.0 MiB free, 64.0 MiB needed (the parts' sizes plus 10% and 64 MiB); nothing was changed",
            ),
            (
                E::RevisionMismatch {
                    part: "main".into(),
                    running: "r2".into(),
                    snapshot: None,
                },
                "refusing to restore: database 'main' is at Alembic revision r2 but the snapshot is at no revision: restoring it alone would mismatch code and schema; restore the whole stack, or --force",
            ),
            (
                E::Failed {
                    step: "post-restore hook".into(),
                    what: "false exited with exit status: 1".into(),
                    done: vec!["database main".into(), "files".into()],
                    safety_snapshot: Some("0123456789abcdef".into()),
                },
                "post-restore hook failed: false exited with exit status: 1\nAlready restored: database main, files; nothing after it was touched.\nTo go back to the state before this restore: relic -r /r restore 01234567",
            ),
            (
                E::Failed {
                    step: "loading the images".into(),
                    what: "boom".into(),
                    done: vec![],
                    safety_snapshot: None,
                },
                "loading the images failed: boom\nNothing was changed before it.\nNo safety snapshot was taken.",
            ),
            (
                E::NoBaseline {
                    stack: "shop".into(),
                },
                "refusing to restore: stack 'shop' has no immaculate baseline; make one with `relic snapshot --tier immaculate --name NAME`",
            ),
            (
                E::ConfigUnreadable {
                    path: "/s/relic.toml".into(),
                    source: std::io::Error::from(std::io::ErrorKind::NotFound),
                },
                "/s/relic.toml: entity not found (a stack is described by relic.toml; --config names it)",
            ),
        ];
        for (e, text) in cases {
            assert_eq!(stack_error(e, repo).to_string(), text);
        }
        assert_eq!(
            drill_error(E::NoConfig("0123abcd".into())).to_string(),
            "stack snapshot 0123abcd is older than stack snapshots that store their relic.toml: the stack's relic.toml must say where its parts go: give it with --config (a drill also takes --postgres CONNINFO)"
        );
    }

    #[test]
    fn sizes_for_people() {
        assert_eq!(human(0), "0 B");
        assert_eq!(human(1023), "1023 B");
        assert_eq!(human(1536), "1.5 KiB");
        assert_eq!(human(5 << 40), "5.0 TiB");
        assert_eq!(head("abc", 19), "abc");
        assert_eq!(head("abcdef", 2), "ab");
    }
}
