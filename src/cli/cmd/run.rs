//! `relic run`: the daily job of a relic.toml, step by step, each step the
//! command of the same name: snapshot → forget → prune → check → sync →
//! drill. A step that fails skips the steps that need it (no forget or
//! prune after a failed snapshot, no sync of a repository a check found
//! damaged); the others still run. The record goes to the repository's
//! local state, the summary to [notify].

use crate::cli::args::{
    CheckArgs, Cli, Command, DrillArgs, ForgetArgs, PruneArgs, RunArgs, SnapshotArgs, SnapshotCmd,
    SyncArgs,
};
use crate::cli::exit::{self, RunFailed};
use crate::cli::open::{load_config, open_path, stack_repo_path};
use crate::cli::progress::Bar;
use crate::cli::Outcome;
use anyhow::{bail, Context, Result};
use indicatif::HumanBytes;
use relic::check::ReadData;
use relic::notify::{self, Event, Message};
use relic::plan::Notify;
use relic::runs::{self, Status, Step};
use relic::stack::StackConfig;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// The steps run so far, and the first failure.
struct Steps {
    done: Vec<Step>,
    failed: Option<(u8, String)>,
}

impl Steps {
    /// Runs `f` as step `name` (exit `code` if it fails first): logged
    /// with its time; true when it succeeded.
    fn run(&mut self, name: &str, code: u8, f: impl FnOnce() -> Result<String>) -> bool {
        note!("==> {name}");
        let started = Instant::now();
        let r = f();
        let seconds = started.elapsed().as_secs_f64();
        let (status, detail) = match r {
            Ok(d) => {
                note!("==> {name}: ok in {seconds:.1} s: {d}");
                (Status::Ok, d)
            }
            Err(e) => {
                let d = format!("{e:#}");
                eprintln!("==> {name}: FAILED after {seconds:.1} s: {d}");
                if self.failed.is_none() {
                    self.failed = Some((code, name.to_string()));
                }
                (Status::Failed, d)
            }
        };
        self.done.push(Step {
            step: name.to_string(),
            status,
            seconds,
            detail,
        });
        status == Status::Ok
    }

    fn skip(&mut self, name: &str, why: &str) {
        note!("==> {name}: skipped: {why}");
        self.done.push(Step {
            step: name.to_string(),
            status: Status::Skipped,
            seconds: 0.0,
            detail: why.to_string(),
        });
    }

    fn ok(&self, name: &str) -> bool {
        self.done
            .iter()
            .any(|s| s.step == name && s.status == Status::Ok)
    }
}

/// While it lives, what the steps print on standard output goes to
/// standard error with their log: the run's own output (its summary, or
/// `--json`) is all standard output carries.
struct StepsToStderr(Option<i32>);

impl StepsToStderr {
    fn new() -> StepsToStderr {
        use std::io::Write;
        let _ = std::io::stdout().flush();
        // SAFETY: dup and dup2 on the process's standard descriptors.
        // Close-on-exec: the children of the steps (pg_dump, psql) must
        // not hold the real standard output.
        let saved = unsafe { libc::fcntl(1, libc::F_DUPFD_CLOEXEC, 3) };
        if saved < 0 || unsafe { libc::dup2(2, 1) } < 0 {
            return StepsToStderr(None);
        }
        StepsToStderr(Some(saved))
    }
}

impl Drop for StepsToStderr {
    fn drop(&mut self) {
        use std::io::Write;
        let _ = std::io::stdout().flush();
        if let Some(fd) = self.0 {
            // SAFETY: puts back the descriptor saved in `new`, then closes
            // the copy.
            unsafe {
                libc::dup2(fd, 1);
                libc::close(fd);
            }
        }
    }
}

/// The same options as the command line, for the repository of the run
/// (its `command` is never run).
fn for_repo(cli: &Cli, repo: PathBuf) -> Cli {
    Cli {
        repo: Some(repo),
        quiet: cli.quiet,
        verbose: cli.verbose,
        retry_lock: cli.retry_lock,
        key_cache: cli.key_cache,
        command: Command::Unlock {
            stale: false,
            dry_run: true,
            json: false,
        },
    }
}

pub fn run(cli: &Cli, a: &RunArgs, bar: &Bar) -> Result<Outcome> {
    let cfg = load_config(Some(&a.config), true)?.expect("a required config");
    let clock = match &a.time {
        Some(t) => crate::cli::parse::time(t, jiff::Timestamp::now())?,
        None => jiff::Timestamp::now(),
    };
    let notify = cfg.notify.clone().unwrap_or_default();
    let timeout = notify.timeout()?;
    // The repository's local state: the run lock and the record. The
    // handle is closed again before the steps (prune needs the index). A
    // repository that cannot be opened fails the run before its first
    // step, and [notify] hears it too.
    let opened = stack_repo_path(cli, &cfg).and_then(|p| {
        let repo = open_path(&p)?;
        Ok((p, repo.backend().clone()))
    });
    let (repo_path, state) = match opened {
        Ok(o) => o,
        Err(e) => {
            if !a.dry_run {
                let summary = format!(
                    "relic run {}: FAILED before its first step: {e:#}",
                    cfg.name
                );
                eprintln!("{summary}");
                tell(
                    &notify.on_failure,
                    Event::Failure,
                    &cfg.name,
                    exit::of(&e),
                    &summary,
                    "",
                    timeout,
                );
            }
            return Err(e);
        }
    };
    let cli = &for_repo(cli, repo_path.clone());
    let unit = relic::schedule::unit_name(&cfg.name);
    let _running = match state.try_flock(&format!("run-{unit}.flock")) {
        Ok(Some(f)) => f,
        Ok(None) => {
            return Err(RunFailed {
                code: exit::LOCKED,
                summary: format!(
                    "another `relic run` of stack '{}' is in progress; this one did nothing",
                    cfg.name
                ),
            }
            .into())
        }
        Err(e) => return Err(e).context("cannot take the run lock"),
    };
    let history = runs::of(&state, &cfg.name);
    if !a.dry_run {
        tell(
            &notify.on_start,
            Event::Start,
            &cfg.name,
            0,
            &format!("relic run {}: started", cfg.name),
            "",
            timeout,
        );
    }
    let started = Instant::now();
    let steps_output = StepsToStderr::new();
    let mut steps = Steps {
        done: Vec::new(),
        failed: None,
    };
    let mut record = runs::Run {
        stack: cfg.name.clone(),
        started: clock.to_string(),
        finished: String::new(),
        ok: false,
        exit_code: 0,
        failed_step: None,
        steps: Vec::new(),
        snapshot: None,
        raw_bytes: None,
        added_bytes: None,
        check_slice: None,
        drill_ok: None,
        repo_bytes: None,
    };

    // 1. The snapshot.
    steps.run("snapshot", exit::RUN_SNAPSHOT, || {
        let cmd = SnapshotCmd {
            config: a.config.clone(),
            compose: None,
            project: None,
            name: None,
            allow_partial: false,
            stop: false,
            snapshot: SnapshotArgs {
                tier: "daily".into(),
                labels: Vec::new(),
                json: false,
                dry_run: a.dry_run,
                time: a.time.as_ref().map(|_| clock.to_string()),
            },
        };
        let (id, snap, outcome) = super::stack::take(cli, &cmd, bar)?;
        let added = snap.costs().added;
        let what = format!(
            "snapshot {}: {} read, {} added",
            id.short(),
            HumanBytes(snap.summary.size),
            HumanBytes(added)
        );
        if !a.dry_run {
            record.snapshot = Some(id.to_hex());
            record.raw_bytes = Some(snap.summary.size);
            record.added_bytes = Some(added);
        }
        if outcome == Outcome::Partial {
            bail!("{what}, but PARTIAL: it misses a part (see above)");
        }
        Ok(what)
    });

    // 2. Forget by the policy; 3. prune when that freed something.
    let mut forgotten = 0;
    match &cfg.retention {
        None => steps.skip("forget", "no [retention] in relic.toml"),
        Some(_) if !steps.ok("snapshot") => steps.skip("forget", "the snapshot failed"),
        Some(r) => {
            steps.run("forget", exit::RUN_FORGET, || {
                let p = r.policy()?;
                let args = ForgetArgs {
                    snapshots: Vec::new(),
                    tier: None,
                    name: Some(cfg.name.clone()),
                    keep_last: p.keep_last,
                    keep_daily: p.keep_daily,
                    keep_weekly: p.keep_weekly,
                    keep_monthly: p.keep_monthly,
                    keep_within: r.keep_within.clone(),
                    dry_run: a.dry_run,
                    now: Some(clock.to_string()),
                    json: false,
                };
                forgotten = super::forget::run(cli, &args)?;
                Ok(format!(
                    "{forgotten} snapshot(s) of '{}' {}",
                    cfg.name,
                    if a.dry_run {
                        "would be forgotten"
                    } else {
                        "forgotten"
                    }
                ))
            });
        }
    }
    if !steps.ok("forget") {
        steps.skip("prune", "forget did not run");
    } else if forgotten == 0 {
        steps.skip("prune", "forget freed nothing");
    } else if a.dry_run {
        steps.skip("prune", "would run after forget");
    } else {
        steps.run("prune", exit::RUN_PRUNE, || {
            let args = PruneArgs {
                dry_run: false,
                max_repack_ratio: relic::prune::DEFAULT_REPACK_BELOW,
                json: false,
            };
            super::prune::run(cli, &args, bar)?;
            Ok("unreferenced data freed".into())
        });
    }

    // 4. Check: the structure, and the slice of the data due today.
    let mut damage_found = false;
    let plan = cfg.check.clone().unwrap_or_default();
    let read = match plan.slices()? {
        None => ReadData::None,
        Some(1) => ReadData::All,
        Some(of) => ReadData::Slice {
            index: runs::next_slice(&history, of),
            of,
        },
    };
    if a.dry_run {
        steps.skip("check", &format!("would check {}", describe(read)));
    } else {
        steps.run("check", exit::RUN_CHECK, || {
            let args = CheckArgs {
                read_data: read == ReadData::All,
                read_data_subset: matches!(read, ReadData::Slice { .. }).then_some(read),
                json: false,
            };
            let outcome = super::check::check(cli, &args, bar)?;
            if let ReadData::Slice { index, of } = read {
                record.check_slice = Some((index, of));
            }
            if outcome != Outcome::Done {
                damage_found = true;
                bail!("the repository is damaged ({}; see above)", describe(read));
            }
            Ok(format!("{} verified", describe(read)))
        });
    }

    // 5. Sync to each destination (not what a check found damaged).
    let damaged = damage_found;
    for to in cfg
        .sync
        .as_ref()
        .map(|s| s.to.as_slice())
        .unwrap_or_default()
    {
        let name = format!("sync {to}");
        if damaged {
            steps.skip(&name, "the check failed: damage is not copied off-site");
            continue;
        }
        let to = destination(&cfg, to);
        steps.run(&name, exit::RUN_SYNC, || {
            let args = SyncArgs {
                to: to.clone(),
                dry_run: a.dry_run,
                verify: false,
                jobs: 4,
                object_lock: None,
                object_lock_mode: relic::objectlock::Mode::Compliance,
                json: false,
            };
            super::sync::run(cli, &args, bar)?;
            Ok(if a.dry_run {
                format!("would copy to {to} what it lacks")
            } else {
                format!("{to} holds every snapshot")
            })
        });
    }

    // 6. The drill, when due.
    match plan.drill_every()? {
        None => {}
        Some(every) => {
            let last = runs::last_good_drill(&history);
            // An hour's slack: a weekly drill at 03:15 is due at 03:15 a
            // week later even when the last one finished at 03:16.
            let due = last
                .is_none_or(|t| clock.duration_since(t).as_secs() + 3600 >= every.as_secs() as i64);
            let baseline = has_baseline(&repo_path, &cfg);
            if !due {
                steps.skip(
                    "drill",
                    &format!("not due (last passed {})", last.expect("a last drill")),
                );
            } else if !baseline {
                steps.skip(
                    "drill",
                    &format!(
                        "no immaculate baseline of '{}' to drill (relic snapshot --tier immaculate)",
                        cfg.name
                    ),
                );
            } else if a.dry_run {
                steps.skip(
                    "drill",
                    "due: would restore the newest baseline into scratch targets",
                );
            } else {
                let ok = steps.run("drill", exit::RUN_DRILL, || {
                    let args = DrillArgs {
                        snapshot: None,
                        config: Some(a.config.clone()),
                        postgres: None,
                        jobs: None,
                        json: false,
                    };
                    super::stack::drill(cli, &args, bar)?;
                    Ok("the newest baseline restored into scratch targets and verified".into())
                });
                record.drill_ok = Some(ok);
            }
        }
    }

    drop(steps_output);
    let took = started.elapsed();
    let finished = clock + jiff::SignedDuration::try_from(took).unwrap_or_default();
    let (code, summary) = summary(&cfg.name, &steps, took.as_secs_f64(), a.dry_run);
    record.finished = finished.to_string();
    record.ok = code == 0;
    record.exit_code = code;
    record.failed_step = steps.failed.as_ref().map(|(_, s)| s.clone());
    record.steps = steps.done;
    // What the repository takes now, for the report's size over time.
    record.repo_bytes = open_path(&repo_path)
        .ok()
        .and_then(|r| r.index().packs().ok())
        .map(|p| p.iter().map(|(_, i)| i.size).sum());
    if !a.dry_run {
        if let Err(e) = runs::append(&state, &record) {
            eprintln!("warning: {e} (the run itself is unchanged)");
        }
        let log: String = record
            .steps
            .iter()
            .map(|s| {
                format!(
                    "{}: {} ({:.1} s): {}\n",
                    s.step,
                    s.status.as_str(),
                    s.seconds,
                    s.detail
                )
            })
            .collect();
        let (event, targets) = if code == 0 {
            (Event::Success, &notify.on_success)
        } else {
            (Event::Failure, &notify.on_failure)
        };
        tell(targets, event, &cfg.name, code, &summary, &log, timeout);
    }
    if a.json {
        crate::cli::render::json(&record)?;
    }
    if code != 0 {
        return Err(RunFailed { code, summary }.into());
    }
    if a.json {
        note!("{summary}");
    } else {
        report!("{summary}");
    }
    Ok(Outcome::Done)
}

/// The one line that ends a run, and its exit code.
fn summary(stack: &str, steps: &Steps, seconds: f64, dry_run: bool) -> (u8, String) {
    let each: Vec<String> = steps
        .done
        .iter()
        .map(|s| format!("{} {}", s.step, s.status.as_str()))
        .collect();
    let each = each.join(", ");
    let what = if dry_run {
        "relic run --dry-run"
    } else {
        "relic run"
    };
    match &steps.failed {
        None => (0, format!("{what} {stack}: ok in {seconds:.1} s ({each})")),
        Some((code, step)) => (
            *code,
            format!("{what} {stack}: FAILED at {step} (exit {code}) in {seconds:.1} s ({each})"),
        ),
    }
}

fn describe(read: ReadData) -> String {
    match read {
        ReadData::None => {
            "the structure (no data read: [check] read_data_subset is not set)".into()
        }
        ReadData::All => "every byte".into(),
        ReadData::Slice { index, of } => format!("slice {} of {of} of the data", index + 1),
    }
}

/// A [sync] destination: S3 as written, a directory relative to the
/// relic.toml's.
fn destination(cfg: &StackConfig, to: &str) -> String {
    cfg.place(Path::new(to)).display().to_string()
}

/// The stack has a baseline to drill.
fn has_baseline(repo: &std::path::Path, cfg: &StackConfig) -> bool {
    open_path(repo)
        .ok()
        .is_some_and(|r| relic::stack::newest_baseline(&r, Some(&cfg.name)).is_ok())
}

/// Notifies `targets`; a delivery that fails is a warning, never the run's
/// failure.
fn tell(
    targets: &[String],
    event: Event,
    stack: &str,
    exit_code: u8,
    summary: &str,
    log: &str,
    timeout: std::time::Duration,
) {
    let targets = match Notify::targets(targets) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("warning: {e}");
            return;
        }
    };
    let message = Message {
        event,
        stack: stack.to_string(),
        exit_code,
        summary: summary.to_string(),
        log: log.to_string(),
    };
    for d in notify::deliver(&targets, &message, timeout) {
        if d.ok {
            note!(
                "notified {} of {} ({}, {:.1} s)",
                d.target,
                event.as_str(),
                d.detail,
                d.took.as_secs_f64()
            );
        } else {
            eprintln!(
                "warning: the {} notification to {} failed after {:.1} s: {} (the run's result is unchanged)",
                event.as_str(),
                d.target,
                d.took.as_secs_f64(),
                d.detail
            );
        }
    }
}
