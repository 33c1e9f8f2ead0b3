//! The exit status, decided here and only here: `main` asks [`of`] for an
//! error and [`of_outcome`] for a command that ran to its end. The table is
//! printed at the end of `relic --help` and written in docs/cli.md.

use super::Outcome;
use relic::internals::{index, pack};
use relic::{crypto, docker, lock, postgres, repo, snapshot, stack, sync};

/// Done.
pub const OK: u8 = 0;
/// Any failure not named below.
pub const ERROR: u8 = 1;
/// The command line could not be parsed (clap exits with it too).
pub const USAGE: u8 = 2;
/// Done in part: a backup that skipped files (its snapshot is written), a
/// stack snapshot that misses a part, a restore that left items out.
pub const PARTIAL: u8 = 3;
/// Data is damaged: `check` or `repair` found problems, a chunk is
/// missing, a blob fails authentication or its hash.
pub const DAMAGED: u8 = 4;
/// No repository at the given place.
pub const NO_REPOSITORY: u8 = 10;
/// The repository is locked (or its index held) by another process for
/// longer than `--retry-lock` allowed.
pub const LOCKED: u8 = 11;
/// Wrong passphrase, or none could be had.
pub const PASSPHRASE: u8 = 12;
/// A step outside relic failed: pg_dump, psql, PostgreSQL, the Docker
/// engine.
pub const SOURCE: u8 = 13;
/// `relic run`: the step that failed first (the ones after it that need
/// it are skipped; the others still run).
pub const RUN_SNAPSHOT: u8 = 20;
pub const RUN_FORGET: u8 = 21;
pub const RUN_PRUNE: u8 = 22;
pub const RUN_CHECK: u8 = 23;
pub const RUN_SYNC: u8 = 24;
pub const RUN_DRILL: u8 = 25;
/// Standard output was closed before everything was written (as a
/// program killed by SIGPIPE: `relic ls SNAP | head -1`).
pub const CLOSED_OUTPUT: u8 = 141;

/// A command line that parses but does not make sense (no repository
/// given, two sources at once): exit 2, as clap's own refusals.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Usage(pub String);

/// Every code with its meaning, for `--help` and the docs.
pub const CODES: &[(u8, &str)] = &[
    (OK, "success"),
    (ERROR, "error (anything not below)"),
    (USAGE, "the command line is wrong"),
    (
        PARTIAL,
        "partial success: skipped files, a stack missing a part, items not restored",
    ),
    (
        DAMAGED,
        "data damaged: check or repair found problems, a chunk missing or altered",
    ),
    (NO_REPOSITORY, "no repository there"),
    (
        LOCKED,
        "repository locked by another process (see --retry-lock)",
    ),
    (PASSPHRASE, "wrong passphrase, or none given"),
    (
        SOURCE,
        "pg_dump, psql, PostgreSQL or the Docker engine failed",
    ),
    (
        RUN_SNAPSHOT,
        "relic run: the snapshot failed (no forget, no prune)",
    ),
    (RUN_FORGET, "relic run: forget failed (no prune)"),
    (RUN_PRUNE, "relic run: prune failed"),
    (
        RUN_CHECK,
        "relic run: check failed or found damage (no sync)",
    ),
    (RUN_SYNC, "relic run: a sync destination failed"),
    (RUN_DRILL, "relic run: the restore drill failed"),
    (CLOSED_OUTPUT, "standard output closed early (| head)"),
];

/// A `relic run` whose step failed: exit `code`, the summary as message.
#[derive(Debug, thiserror::Error)]
#[error("{summary}")]
pub struct RunFailed {
    pub code: u8,
    pub summary: String,
}

/// The table as `relic --help` ends with it.
pub fn table() -> String {
    let mut s = String::from("Exit codes:\n");
    for (code, what) in CODES {
        s.push_str(&format!("  {code:>3}  {what}\n"));
    }
    s
}

/// The status of a command that ran to its end.
pub fn of_outcome(o: Outcome) -> u8 {
    match o {
        Outcome::Done => OK,
        Outcome::Problems => DAMAGED,
        Outcome::Partial => PARTIAL,
    }
}

/// The status of a failed command: the first error in the chain that says
/// what kind of failure it is decides.
pub fn of(e: &anyhow::Error) -> u8 {
    if super::is_broken_pipe(e) {
        return CLOSED_OUTPUT;
    }
    e.chain().find_map(kind).unwrap_or(ERROR)
}

fn kind(e: &(dyn std::error::Error + 'static)) -> Option<u8> {
    if let Some(e) = e.downcast_ref::<RunFailed>() {
        return Some(e.code);
    }
    if let Some(e) = e.downcast_ref::<repo::Error>() {
        return of_repo(e);
    }
    if let Some(e) = e.downcast_ref::<postgres::Error>() {
        return Some(of_postgres(e));
    }
    if let Some(e) = e.downcast_ref::<docker::Error>() {
        return Some(of_docker(e));
    }
    if let Some(e) = e.downcast_ref::<stack::Error>() {
        return of_stack(e);
    }
    if let Some(e) = e.downcast_ref::<relic::contents::Error>() {
        return match e {
            relic::contents::Error::Repo(e) => of_repo(e),
            relic::contents::Error::Docker(e) => Some(of_docker(e)),
            relic::contents::Error::Postgres(e) => Some(of_postgres(e)),
            relic::contents::Error::Stack(e) => of_stack(e),
            _ => None,
        };
    }
    if let Some(e) = e.downcast_ref::<sync::Error>() {
        return match e {
            sync::Error::Repo(e) => of_repo(e),
            sync::Error::Index(e) => of_index(e),
            _ => None,
        };
    }
    if let Some(e) = e.downcast_ref::<lock::Error>() {
        return of_lock(e);
    }
    if let Some(e) = e.downcast_ref::<index::Error>() {
        return of_index(e);
    }
    if let Some(e) = e.downcast_ref::<crypto::Error>() {
        return of_crypto(e);
    }
    if e.downcast_ref::<Usage>().is_some() {
        return Some(USAGE);
    }
    if e.downcast_ref::<super::secret::NoPassphrase>().is_some() {
        return Some(PASSPHRASE);
    }
    None
}

fn of_repo(e: &repo::Error) -> Option<u8> {
    use repo::Error as E;
    match e {
        E::NotARepository(_) => Some(NO_REPOSITORY),
        E::Lock(e) => of_lock(e),
        E::Index(e) => of_index(e),
        E::Crypto(e) => of_crypto(e),
        E::PassphraseRequired => Some(PASSPHRASE),
        E::MissingChunk(_)
        | E::MissingBase { .. }
        | E::DamagedBlob { .. }
        | E::ContentMismatch { .. }
        | E::Pack(pack::Error::Corrupt { .. })
        | E::Snapshot(snapshot::Error::Corrupt { .. }) => Some(DAMAGED),
        _ => None,
    }
}

fn of_postgres(e: &postgres::Error) -> u8 {
    use postgres::Error as E;
    match e {
        E::Repo(e) => of_repo(e).unwrap_or(ERROR),
        E::Docker(e) => of_docker(e),
        E::Config(_) | E::Refused(_) | E::NotADump(_) => ERROR,
        _ => SOURCE,
    }
}

fn of_docker(e: &docker::Error) -> u8 {
    match e {
        docker::Error::Repo(e) => of_repo(e).unwrap_or(ERROR),
        _ => SOURCE,
    }
}

fn of_stack(e: &stack::Error) -> Option<u8> {
    match e {
        stack::Error::Repo(e) => of_repo(e),
        stack::Error::Postgres(e) => Some(of_postgres(e)),
        stack::Error::Docker(e) => Some(of_docker(e)),
        _ => None,
    }
}

fn of_lock(e: &lock::Error) -> Option<u8> {
    matches!(e, lock::Error::Held { .. }).then_some(LOCKED)
}

fn of_index(e: &index::Error) -> Option<u8> {
    matches!(e, index::Error::Busy).then_some(LOCKED)
}

fn of_crypto(e: &crypto::Error) -> Option<u8> {
    match e {
        crypto::Error::WrongPassphrase => Some(PASSPHRASE),
        crypto::Error::Auth => Some(DAMAGED),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_distinct_and_classified_through_wrappers() {
        let mut seen: Vec<u8> = CODES.iter().map(|(c, _)| *c).collect();
        seen.sort_unstable();
        seen.dedup();
        assert_eq!(seen.len(), CODES.len());
        let wrapped = |e: repo::Error| -> anyhow::Error {
            anyhow::Error::new(postgres::Error::Repo(e)).context("restoring")
        };
        assert_eq!(
            of(&wrapped(repo::Error::NotARepository("x".into()))),
            NO_REPOSITORY
        );
        assert_eq!(
            of(&wrapped(repo::Error::MissingChunk("ab".into()))),
            DAMAGED
        );
        assert_eq!(
            of(&wrapped(repo::Error::Crypto(
                crypto::Error::WrongPassphrase
            ))),
            PASSPHRASE
        );
        assert_eq!(
            of(&anyhow::Error::new(repo::Error::Index(index::Error::Busy))),
            LOCKED
        );
        assert_eq!(
            of(&anyhow::Error::new(postgres::Error::DumpFailed {
                status: "exit 1".into(),
                stderr: String::new()
            })),
            SOURCE
        );
        assert_eq!(of(&anyhow::anyhow!("anything else")), ERROR);
        assert!(table().contains(" 11  repository locked"));
    }
}
