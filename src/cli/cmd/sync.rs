//! `relic sync`: copy the repository to a directory or to S3, only what
//! the destination lacks.

use crate::cli::args::{Cli, SyncArgs};
use crate::cli::progress::Bar;
use crate::cli::{open::open, render};
use anyhow::Result;
use relic::progress::Progress;

pub fn run(cli: &Cli, a: &SyncArgs, bar: &Bar) -> Result<()> {
    let repo = open(cli)?;
    let _lock = repo.lock_shared(bar)?;
    let dest = match relic::store::open(&a.to) {
        Ok(d) => d,
        Err(e) => {
            if !a.dry_run {
                super::record(&repo, "sync", Some(a.to.clone()), Err(e.to_string()));
            }
            return Err(e.into());
        }
    };
    let opts = relic::sync::Options {
        dry_run: a.dry_run,
        verify: a.verify,
        jobs: a.jobs,
        object_lock: a.object_lock.map(|days| relic::sync::ObjectLock {
            days,
            mode: a.object_lock_mode,
        }),
    };
    let r = relic::sync::sync(&repo, dest.as_ref(), &opts, bar);
    if !a.dry_run {
        let result = match &r {
            Ok(_) => Ok("every snapshot copied".to_string()),
            Err(e) => Err(e.to_string()),
        };
        super::record(&repo, "sync", Some(a.to.clone()), result);
    }
    let r = r.map_err(|e| {
        if e.resumable() {
            anyhow::Error::new(e)
                .context(format!("sync to {} stopped; run it again to resume", a.to))
        } else {
            e.into()
        }
    })?;
    bar.finish();
    if a.json {
        render::json(&r)
    } else {
        render::sync(&r, a.object_lock_mode, a.dry_run, a.verify)?;
        Ok(())
    }
}
