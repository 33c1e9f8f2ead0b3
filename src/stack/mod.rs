//! Stacks: everything a docker-compose stack depends on (its databases, its
//! images, its files, the git commit of its checkout) in ONE immutable
//! snapshot, described by `relic.toml`, restored through one safety chain.
//!
//! A stack snapshot holds the items `db/<name>.sql` (pg_dump streams),
//! `images/<reference>.tar` (docker save tars, split at their entries) and
//! `files/<path>` (files and directories relative to the stack's root), and a
//! manifest in its metadata (`stack.manifest`, JSON) that says what each part
//! is, how big, its checksums, Alembic revision, image ids and git commit,
//! and the command that restores it.

use crate::docker::{self, Engine, ImageRecord};
use crate::postgres::{self, Check, DbInfo, TableCount};
use crate::progress::{Progress, Unit};
use crate::repo::{self, Repository, SnapshotOptions};
use crate::snapshot::{Item, ItemKind, Snapshot, Tier};
use crate::SnapshotId;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The snapshot metadata key holding the manifest.
pub const MANIFEST_KEY: &str = "stack.manifest";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path}: {what}")]
    Config { path: String, what: String },
    #[error(transparent)]
    Repo(#[from] repo::Error),
    #[error(transparent)]
    Postgres(#[from] postgres::Error),
    #[error(transparent)]
    Docker(#[from] docker::Error),
    #[error(
        "snapshot {0} is not a stack snapshot (it has no manifest; `relic snapshot` makes them)"
    )]
    NotAStack(String),
    #[error("refusing to restore: {0}")]
    Refused(String),
    #[error("{step} failed: {what}\n{done}{back}")]
    Failed {
        step: String,
        what: String,
        done: String,
        back: String,
    },
}

pub type Result<T> = std::result::Result<T, Error>;

// ---------------------------------------------------------------------------
// relic.toml

/// `relic.toml`: what a stack is made of.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StackConfig {
    /// The stack's name: the default snapshot name.
    pub name: String,
    /// The repository (`-r` and `RELIC_REPO` take precedence).
    pub repository: Option<PathBuf>,
    /// PostgreSQL databases, each `[[database]]` with a name and a conninfo.
    #[serde(default, rename = "database")]
    pub databases: Vec<DatabasePart>,
    /// Docker image references.
    #[serde(default)]
    pub images: Vec<String>,
    #[serde(default)]
    pub files: Option<FilesPart>,
    #[serde(default)]
    pub git: Option<GitPart>,
    #[serde(default)]
    pub hooks: Hooks,
    /// Where this configuration was read from (set by [`StackConfig::load`]).
    #[serde(skip)]
    pub path: PathBuf,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabasePart {
    /// Part name: the item is `db/<name>.sql`.
    pub name: String,
    /// libpq URL or key=value string.
    pub conninfo: String,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilesPart {
    /// Directory the paths are relative to (default: the config's directory).
    pub root: Option<PathBuf>,
    /// Files and directories to keep (`.env`, `docker-compose.yml`, `secrets`).
    pub paths: Vec<PathBuf>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GitPart {
    /// The checkout whose HEAD commit is recorded (default: the root).
    pub path: Option<PathBuf>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Hooks {
    /// Shell commands run after a restore, in the config's directory (for
    /// example a Redis flush).
    #[serde(default)]
    pub post_restore: Vec<String>,
}

impl StackConfig {
    /// Reads and checks `relic.toml`; errors name the file and the line.
    pub fn load(path: &Path) -> Result<StackConfig> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::Config {
            path: path.display().to_string(),
            what: format!("{e} (a stack is described by relic.toml; --config names it)"),
        })?;
        Self::parse(&text, path)
    }

    /// Parses and checks the text of `path`.
    pub fn parse(text: &str, path: &Path) -> Result<StackConfig> {
        let bad = |what: String| Error::Config {
            path: path.display().to_string(),
            what,
        };
        let mut cfg: StackConfig = toml::from_str(text).map_err(|e| bad(e.to_string()))?;
        cfg.path = std::path::absolute(path).map_err(|e| bad(e.to_string()))?;
        if cfg.name.trim().is_empty() {
            return Err(bad("`name` must not be empty".into()));
        }
        if cfg.databases.is_empty()
            && cfg.images.is_empty()
            && cfg.files.as_ref().is_none_or(|f| f.paths.is_empty())
        {
            return Err(bad(
                "the stack has no parts: add a [[database]], images = [...] or [files]".into(),
            ));
        }
        let mut names = std::collections::HashSet::new();
        for d in &cfg.databases {
            if d.name.is_empty()
                || !d
                    .name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
            {
                return Err(bad(format!(
                    "database name '{}' must be letters, digits, '-', '_' or '.'",
                    d.name
                )));
            }
            if !names.insert(d.name.clone()) {
                return Err(bad(format!("database '{}' is listed twice", d.name)));
            }
            postgres::config(Some(&d.conninfo))
                .map_err(|e| bad(format!("database '{}': {e}", d.name)))?;
        }
        if let Some(f) = &cfg.files {
            for p in &f.paths {
                if crate::files::relative_inside(p).is_none() {
                    return Err(bad(format!(
                        "files path '{}' must be relative and stay inside the root",
                        p.display()
                    )));
                }
            }
        }
        Ok(cfg)
    }

    /// The config file's directory.
    pub fn dir(&self) -> &Path {
        self.path.parent().unwrap_or(Path::new("/"))
    }

    fn resolve(&self, p: &Path) -> PathBuf {
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.dir().join(p)
        }
    }

    /// The directory stack files are relative to.
    pub fn files_root(&self) -> PathBuf {
        match self.files.as_ref().and_then(|f| f.root.as_ref()) {
            Some(r) => self.resolve(r),
            None => self.dir().to_path_buf(),
        }
    }

    fn database(&self, name: &str) -> Option<&DatabasePart> {
        self.databases.iter().find(|d| d.name == name)
    }
}

// ---------------------------------------------------------------------------
// The manifest.

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub stack: String,
    /// The relic.toml the snapshot was made from.
    pub config: String,
    pub databases: Vec<DbPart>,
    pub images: Vec<ImageRecord>,
    pub files: Option<FilesSummary>,
    pub git: Option<GitState>,
    /// The command that restores this snapshot.
    pub restore_command: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DbPart {
    pub name: String,
    pub item: String,
    pub database: String,
    pub server_version: String,
    pub alembic_revision: Option<String>,
    pub tables: Vec<TableCount>,
    pub size: u64,
    pub blake3: String,
}

impl DbPart {
    fn info(&self) -> DbInfo {
        DbInfo {
            server_version: self.server_version.clone(),
            database: self.database.clone(),
            alembic_revision: self.alembic_revision.clone(),
            tables: self.tables.clone(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FilesSummary {
    pub root: String,
    pub paths: Vec<String>,
    pub entries: u64,
    pub bytes: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GitState {
    pub path: String,
    pub commit: String,
    /// Uncommitted changes were present.
    pub dirty: bool,
}

/// The manifest of a stack snapshot.
pub fn manifest(id: &SnapshotId, snap: &Snapshot) -> Result<Manifest> {
    let j = snap
        .meta
        .get(MANIFEST_KEY)
        .ok_or_else(|| Error::NotAStack(id.short()))?;
    serde_json::from_str(j)
        .map_err(|e| Error::NotAStack(format!("{}: manifest unreadable: {e}", id.short())))
}

fn git_state(path: &Path) -> Result<GitState> {
    let run = |args: &[&str]| -> Result<String> {
        let out = Command::new("git")
            .arg("-C")
            .arg(path)
            .args(args)
            .output()
            .map_err(|e| Error::Config {
                path: path.display().to_string(),
                what: format!("cannot run git: {e}"),
            })?;
        if !out.status.success() {
            return Err(Error::Config {
                path: path.display().to_string(),
                what: format!(
                    "git {}: {}",
                    args.join(" "),
                    String::from_utf8_lossy(&out.stderr).trim()
                ),
            });
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    };
    Ok(GitState {
        path: path.display().to_string(),
        commit: run(&["rev-parse", "HEAD"])?,
        dirty: !run(&["status", "--porcelain"])?.is_empty(),
    })
}

/// Renders a manifest as Markdown.
pub fn manifest_markdown(id: &SnapshotId, snap: &Snapshot, m: &Manifest) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let _ = writeln!(s, "# Stack snapshot {} ({})\n", id.short(), m.stack);
    let _ = writeln!(s, "- name: {}", snap.name);
    let _ = writeln!(s, "- tier: {}", snap.tier);
    let _ = writeln!(
        s,
        "- time: {}",
        snap.time().strftime("%Y-%m-%d %H:%M:%S UTC")
    );
    let _ = writeln!(s, "- host: {}", snap.host);
    for (k, v) in &snap.labels {
        let _ = writeln!(s, "- label {k}: {v}");
    }
    if let Some(g) = &m.git {
        let _ = writeln!(
            s,
            "- git: {} at {}{}",
            g.path,
            g.commit,
            if g.dirty {
                " (uncommitted changes)"
            } else {
                ""
            }
        );
    }
    let _ = writeln!(s, "- config: {}", m.config);
    if !m.databases.is_empty() {
        let _ = writeln!(s, "\n## Databases\n");
        let _ = writeln!(
            s,
            "| part | database | server | alembic | tables | rows | dump | blake3 |"
        );
        let _ = writeln!(s, "|---|---|---|---|---|---|---|---|");
        for d in &m.databases {
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} | {} | {} | {} | {} |",
                d.name,
                d.database,
                d.server_version,
                d.alembic_revision.as_deref().unwrap_or("-"),
                d.tables.len(),
                d.tables.iter().map(|t| t.rows).sum::<i64>(),
                human(d.size),
                &d.blake3[..16.min(d.blake3.len())]
            );
        }
    }
    if !m.images.is_empty() {
        let _ = writeln!(s, "\n## Images\n");
        let _ = writeln!(s, "| reference | image id | layers | size | created |");
        let _ = writeln!(s, "|---|---|---|---|---|");
        for i in &m.images {
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} | {} |",
                i.reference,
                head(&i.id, 19),
                i.layers.len(),
                human(i.size),
                i.created.as_deref().unwrap_or("-")
            );
        }
    }
    if let Some(f) = &m.files {
        let _ = writeln!(s, "\n## Files\n");
        let _ = writeln!(
            s,
            "{} entries, {} under {}: {}",
            f.entries,
            human(f.bytes),
            f.root,
            f.paths.join(", ")
        );
    }
    let _ = writeln!(
        s,
        "\n## Restore\n\n```sh\n{}\n```",
        m.restore_command.replace("<this snapshot>", &id.short())
    );
    s
}

/// The first `n` characters (ids and commits are ASCII hex).
fn head(s: &str, n: usize) -> &str {
    &s[..n.min(s.len())]
}

fn human(n: u64) -> String {
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

// ---------------------------------------------------------------------------
// Snapshot.

/// Backs up every part of the stack into one snapshot. The engine and every
/// image are looked up and the git state read before anything is written;
/// any part failing leaves no snapshot.
pub fn snapshot(
    repo: &Repository,
    cfg: &StackConfig,
    opts: &SnapshotOptions,
    progress: &dyn Progress,
) -> Result<(SnapshotId, Snapshot)> {
    let engine = if cfg.images.is_empty() {
        None
    } else {
        Some(Engine::connect()?)
    };
    let found = match &engine {
        Some(e) => cfg
            .images
            .iter()
            .map(|r| e.inspect(r))
            .collect::<docker::Result<Vec<_>>>()?,
        None => Vec::new(),
    };
    let git = match &cfg.git {
        Some(g) => Some(git_state(
            &cfg.resolve(g.path.as_deref().unwrap_or(&cfg.files_root())),
        )?),
        None => None,
    };
    let mut m = Manifest {
        stack: cfg.name.clone(),
        config: cfg.path.display().to_string(),
        git,
        ..Default::default()
    };
    let mut failure: Option<Error> = None;
    let r = repo.backup(opts, progress, |w| {
        let mut fail = |e: Error| {
            let msg = e.to_string();
            failure = Some(e);
            repo::Error::Source(msg)
        };
        for d in &cfg.databases {
            progress.start(&format!("dumping {}", d.name), None, Unit::Bytes);
            let pg = postgres::config(Some(&d.conninfo)).map_err(|e| fail(e.into()))?;
            let (info, s) =
                postgres::dump_into(w, Some(&d.conninfo), &pg).map_err(|e| fail(e.into()))?;
            let item = format!("db/{}.sql", d.name);
            m.databases.push(DbPart {
                name: d.name.clone(),
                item: item.clone(),
                database: info.database,
                server_version: info.server_version,
                alembic_revision: info.alembic_revision,
                tables: info.tables,
                size: s.size,
                blake3: hex::encode(s.hash),
            });
            w.add_item(&s.into_item(&item, 0o600))?;
        }
        if let Some(e) = &engine {
            for (r, info) in cfg.images.iter().zip(&found) {
                m.images.push(docker::export_into(w, e, r, info, progress)?);
            }
        }
        if let Some(f) = &cfg.files {
            progress.start("files", None, Unit::Bytes);
            let root = cfg.files_root();
            let (items0, bytes0) = w.totals();
            crate::files::backup_under(w, &root, &f.paths, "files")?;
            let (items1, bytes1) = w.totals();
            m.files = Some(FilesSummary {
                root: root.display().to_string(),
                paths: f.paths.iter().map(|p| p.display().to_string()).collect(),
                entries: items1 - items0,
                bytes: bytes1 - bytes0,
            });
        }
        let root = repo.backend().root();
        m.restore_command = format!(
            "relic -r {} restore <this snapshot> --config {}",
            std::fs::canonicalize(root)
                .unwrap_or_else(|_| root.to_path_buf())
                .display(),
            cfg.path.display()
        );
        w.set_meta(
            MANIFEST_KEY,
            serde_json::to_string(&m).expect("manifest serializes"),
        );
        if !m.images.is_empty() {
            w.set_meta(
                docker::META_KEY,
                serde_json::to_string(&m.images).expect("records serialize"),
            );
        }
        Ok(())
    });
    match (r, failure) {
        (Ok(r), _) => Ok(r),
        (Err(_), Some(e)) => Err(e),
        (Err(e), None) => Err(e.into()),
    }
}

// ---------------------------------------------------------------------------
// Restore.

/// Which parts a restore touches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Part {
    Db,
    Images,
    Files,
}

impl std::str::FromStr for Part {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Part, String> {
        match s {
            "db" => Ok(Part::Db),
            "images" => Ok(Part::Images),
            "files" => Ok(Part::Files),
            _ => Err(format!("'{s}' is not a part: db, images or files")),
        }
    }
}

#[derive(Clone, Debug, Default)]
pub struct RestoreOptions {
    pub only: Option<Part>,
    pub dry_run: bool,
    pub verify_data: bool,
    pub safety_snapshot: bool,
    /// Restore a database alone despite an Alembic revision mismatch.
    pub force: bool,
}

/// What a restore did and checked.
#[derive(Debug, Default, Serialize)]
pub struct Report {
    pub safety_snapshot: Option<String>,
    pub checks: Vec<Check>,
    pub restored: bool,
}

fn wants(opts: &RestoreOptions, p: Part) -> bool {
    opts.only.is_none_or(|o| o == p)
}

/// Free bytes and device of the filesystem holding `path` (or its nearest
/// existing ancestor).
fn free_space(path: &Path) -> Option<(u64, u64)> {
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::fs::MetadataExt;
    let mut p = path;
    loop {
        if let Ok(m) = std::fs::metadata(p) {
            let c = std::ffi::CString::new(p.as_os_str().as_bytes()).ok()?;
            let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
            // SAFETY: statvfs fills the struct we own from a valid C string.
            if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
                return None;
            }
            return Some((st.f_bavail as u64 * st.f_frsize as u64, m.dev()));
        }
        p = p.parent()?;
    }
}

/// Restores a stack snapshot through the chain: disk space, verify, safety
/// snapshot, restore (databases, then images, then files), hooks, verify.
/// Each step must pass before the next; `say` hears each as it happens.
pub fn restore(
    repo: &Repository,
    id: &SnapshotId,
    snap: &Snapshot,
    cfg: &StackConfig,
    opts: &RestoreOptions,
    progress: &dyn Progress,
    say: &dyn Fn(&str),
) -> Result<Report> {
    let m = manifest(id, snap)?;
    let mut report = Report::default();
    let dbs: Vec<&DbPart> = if wants(opts, Part::Db) {
        m.databases.iter().collect()
    } else {
        Vec::new()
    };
    let images = if wants(opts, Part::Images) {
        m.images.clone()
    } else {
        Vec::new()
    };
    let files = if wants(opts, Part::Files) {
        m.files.clone()
    } else {
        None
    };
    let mut targets = Vec::new();
    for d in &dbs {
        let t = cfg.database(&d.name).ok_or_else(|| {
            Error::Refused(format!(
                "the snapshot holds database '{}' but {} has no [[database]] named so",
                d.name,
                cfg.path.display()
            ))
        })?;
        targets.push(t.conninfo.clone());
    }
    let files_root = cfg.files_root();

    // 1. Disk space at every target.
    say("1/6 disk space");
    let engine = if images.is_empty() {
        None
    } else {
        Some(Engine::connect()?)
    };
    let mut needs: Vec<(String, PathBuf, u64)> = Vec::new();
    for (d, conninfo) in dbs.iter().zip(&targets) {
        if let Some(dir) = postgres::data_directory(conninfo) {
            // Tables and indexes take more room than their dump.
            needs.push((format!("database {}", d.name), dir, d.size + d.size / 2));
        }
    }
    if let Some(e) = &engine {
        if let Some(dir) = e.root_dir() {
            needs.push((
                "Docker data root".into(),
                dir,
                images.iter().map(|i| i.size).sum(),
            ));
        }
    }
    if let Some(f) = &files {
        needs.push(("files".into(), files_root.clone(), f.bytes));
    }
    let mut per_fs: std::collections::BTreeMap<u64, (u64, u64, Vec<String>)> = Default::default();
    for (what, dir, need) in &needs {
        match free_space(dir) {
            Some((free, dev)) => {
                let e = per_fs.entry(dev).or_insert((free, 0, Vec::new()));
                e.1 += need + need / 10 + (64 << 20);
                e.2.push(format!("{what} ({})", dir.display()));
            }
            None => say(&format!(
                "    {what}: free space unknown at {}",
                dir.display()
            )),
        }
    }
    for (free, need, whats) in per_fs.values() {
        say(&format!(
            "    {}: {} free, {} needed",
            whats.join(", "),
            human(*free),
            human(*need)
        ));
        if free < need {
            return Err(Error::Refused(format!(
                "not enough disk space for {}: {} free, {} needed (the parts' sizes plus 10% and 64 MiB); nothing was changed",
                whats.join(", "),
                human(*free),
                human(*need)
            )));
        }
    }

    // 2. The snapshot is whole.
    say(&format!(
        "2/6 verify snapshot {} ({})",
        id.short(),
        if opts.verify_data {
            "reading every chunk"
        } else {
            "index and packs"
        }
    ));
    if let Some(problem) = crate::check::verify_snapshot(repo, snap, opts.verify_data)? {
        return Err(Error::Refused(format!(
            "snapshot {} is damaged: {problem}; nothing was changed",
            id.short()
        )));
    }
    // A database restored alone must match the code that stays.
    if opts.only == Some(Part::Db) {
        for (d, conninfo) in dbs.iter().zip(&targets) {
            if let Some(rev) = postgres::revision(conninfo)? {
                if Some(&rev) != d.alembic_revision.as_ref() && !opts.force {
                    return Err(Error::Refused(format!(
                        "database '{}' is at Alembic revision {rev} but the snapshot is at {}: restoring it alone would mismatch code and schema; restore the whole stack, or --force",
                        d.name,
                        d.alembic_revision.as_deref().unwrap_or("no revision")
                    )));
                }
            }
        }
    }

    if opts.dry_run {
        say("3/6 would take a safety snapshot of the parts present now (tier safety)");
        for (d, conninfo) in dbs.iter().zip(&targets) {
            say(&format!(
                "4/6 would drop, recreate and restore database '{}' ({}) from {} of dump",
                d.name,
                redact(conninfo),
                human(d.size)
            ));
        }
        for i in &images {
            say(&format!("4/6 would load image {} ({})", i.reference, i.id));
        }
        if let Some(f) = &files {
            say(&format!(
                "4/6 would restore {} file entries ({}) under {}",
                f.entries,
                human(f.bytes),
                files_root.display()
            ));
        }
        for h in &cfg.hooks.post_restore {
            say(&format!("5/6 would run: {h}"));
        }
        say("6/6 would verify row counts and revisions, image ids and file checksums");
        return Ok(report);
    }

    // 3. Safety snapshot of what is there now.
    if opts.safety_snapshot {
        let present = present_parts(cfg, opts, engine.as_ref(), say);
        match present {
            Some(current) => {
                let safety = SnapshotOptions {
                    name: format!("safety-{}", cfg.name),
                    tier: Tier::Safety,
                    labels: [("restoring".to_string(), id.to_hex())]
                        .into_iter()
                        .collect(),
                    meta: Default::default(),
                };
                let (sid, _) = snapshot(repo, &current, &safety, progress)?;
                say(&format!("3/6 safety snapshot {} taken", sid.short()));
                report.safety_snapshot = Some(sid.to_hex());
            }
            None => say("3/6 safety snapshot: nothing there to keep"),
        }
    } else {
        say("3/6 safety snapshot: skipped (--no-safety-snapshot)");
    }
    let back = match &report.safety_snapshot {
        Some(s) => format!(
            "To go back to the state before this restore: relic -r {} restore {} --config {}",
            repo.backend().root().display(),
            &s[..8],
            cfg.path.display()
        ),
        None => "No safety snapshot was taken.".to_string(),
    };
    let mut done: Vec<String> = Vec::new();
    let failed = |step: &str, what: String, done: &[String]| Error::Failed {
        step: step.to_string(),
        what,
        done: if done.is_empty() {
            "Nothing was changed before it.\n".to_string()
        } else {
            format!(
                "Already restored: {}; nothing after it was touched.\n",
                done.join(", ")
            )
        },
        back: back.clone(),
    };

    // 4. Restore: databases, images, files.
    let items = stack_items(repo, snap)?;
    for (d, conninfo) in dbs.iter().zip(&targets) {
        say(&format!(
            "4/6 restoring database '{}' into {}",
            d.name,
            redact(conninfo)
        ));
        let item = items
            .iter()
            .find(|i| i.path == d.item.as_bytes())
            .ok_or_else(|| {
                failed(
                    "database restore",
                    format!("item {} is missing", d.item),
                    &done,
                )
            })?;
        progress.start(
            &format!("restoring {}", d.name),
            Some(item.size),
            Unit::Bytes,
        );
        postgres::load_dump(
            repo,
            item,
            conninfo,
            postgres::LoadMode::Replace,
            "",
            progress,
        )
        .map_err(|e| {
            failed(
                &format!("restoring database '{}'", d.name),
                e.to_string(),
                &done,
            )
        })?;
        progress.finish();
        done.push(format!("database {}", d.name));
    }
    let mut image_checks = Vec::new();
    if !images.is_empty() {
        image_checks = docker::restore(repo, snap, None, progress, say)
            .map_err(|e| failed("loading the images", e.to_string(), &done))?;
        done.push("images".into());
    }
    if files.is_some() {
        say(&format!(
            "4/6 restoring files under {}",
            files_root.display()
        ));
        crate::files::restore_mapped(
            repo,
            snap,
            &files_root,
            &|p| p.strip_prefix(b"files/").map(<[u8]>::to_vec),
            progress,
        )
        .and_then(crate::files::RestoreStats::ensure_complete)
        .map_err(|e| failed("restoring the files", e.to_string(), &done))?;
        done.push("files".into());
    }
    report.restored = true;

    // 5. Hooks.
    for h in &cfg.hooks.post_restore {
        say(&format!("5/6 running: {h}"));
        let st = Command::new("sh")
            .arg("-c")
            .arg(h)
            .current_dir(cfg.dir())
            .status()
            .map_err(|e| failed("post-restore hook", format!("{h}: {e}"), &done))?;
        if !st.success() {
            return Err(failed(
                "post-restore hook",
                format!("{h} exited with {st}"),
                &done,
            ));
        }
    }

    // 6. Verify.
    for (d, conninfo) in dbs.iter().zip(&targets) {
        for mut c in postgres::verify_db(conninfo, &d.info())? {
            c.what = format!("{}: {}", d.name, c.what);
            report.checks.push(c);
        }
    }
    for mut c in image_checks {
        c.what = format!("image {}", c.what);
        report.checks.push(c);
    }
    if files.is_some() {
        report.checks.extend(verify_files(&items, &files_root)?);
    }
    say(&format!("6/6 verified {} checks", report.checks.len()));
    let bad: Vec<String> = report
        .checks
        .iter()
        .filter(|c| !c.ok)
        .map(|c| format!("  {}: expected {}, found {}", c.what, c.expected, c.found))
        .collect();
    if !bad.is_empty() {
        return Err(failed(
            "verification",
            format!("\n{}", bad.join("\n")),
            &done,
        ));
    }
    Ok(report)
}

/// The stack with only the parts that exist now (for the safety snapshot);
/// None when nothing exists.
fn present_parts(
    cfg: &StackConfig,
    opts: &RestoreOptions,
    engine: Option<&Engine>,
    say: &dyn Fn(&str),
) -> Option<StackConfig> {
    let mut c = cfg.clone();
    c.git = None;
    c.databases.retain(|d| {
        let ok = wants(opts, Part::Db) && postgres::revision(&d.conninfo).is_ok();
        if !ok && wants(opts, Part::Db) {
            say(&format!(
                "    database '{}' is not reachable now: not in the safety snapshot",
                d.name
            ));
        }
        ok
    });
    c.images.retain(|r| {
        let ok = wants(opts, Part::Images) && engine.is_some_and(|e| e.inspect(r).is_ok());
        if !ok && wants(opts, Part::Images) {
            say(&format!(
                "    image {r} is not in the engine now: not in the safety snapshot"
            ));
        }
        ok
    });
    let root = cfg.files_root();
    if let Some(f) = &mut c.files {
        if wants(opts, Part::Files) {
            f.paths
                .retain(|p| std::fs::symlink_metadata(root.join(p)).is_ok());
        } else {
            f.paths.clear();
        }
        if f.paths.is_empty() {
            c.files = None;
        }
    }
    if c.databases.is_empty() && c.images.is_empty() && c.files.is_none() {
        return None;
    }
    Some(c)
}

/// A conninfo without its password, for messages.
fn redact(conninfo: &str) -> String {
    postgres::config(Some(conninfo))
        .map(|c| {
            format!(
                "{}@{}",
                c.get_dbname().unwrap_or("?"),
                c.get_hosts()
                    .first()
                    .map(|h| match h {
                        tokio_postgres::config::Host::Tcp(h) => h.clone(),
                        tokio_postgres::config::Host::Unix(p) => p.display().to_string(),
                    })
                    .unwrap_or_else(|| "local socket".into())
            )
        })
        .unwrap_or_else(|_| "?".into())
}

/// Every item of a stack snapshot, read once: restore and verification
/// both look items up by path (items are small; content stays in packs).
fn stack_items(repo: &Repository, snap: &Snapshot) -> Result<Vec<Item>> {
    Ok(repo.items(snap).collect::<repo::Result<Vec<_>>>()?)
}

/// Re-reads every restored file and compares size and BLAKE3.
fn verify_files(items: &[Item], root: &Path) -> Result<Vec<Check>> {
    let mut checked = 0u64;
    let mut bad = Vec::new();
    for it in items.iter().filter(|i| i.kind == ItemKind::File) {
        let Some(rel) = it.path.strip_prefix(b"files/") else {
            continue;
        };
        let path = crate::files::target_path(root, rel)?;
        let found = std::fs::File::open(&path).and_then(|mut f| {
            let mut h = blake3::Hasher::new();
            let n = std::io::copy(&mut f, &mut h)?;
            Ok((n, *h.finalize().as_bytes()))
        });
        checked += 1;
        match found {
            Ok((n, h)) if n == it.size && h == it.hash => {}
            Ok(_) => bad.push(format!("{} differs", path.display())),
            Err(e) => bad.push(format!("{}: {e}", path.display())),
        }
    }
    Ok(vec![Check {
        what: "files: size and blake3".into(),
        expected: format!("{checked} match"),
        found: if bad.is_empty() {
            format!("{checked} match")
        } else {
            bad.join("; ")
        },
        ok: bad.is_empty(),
    }])
}

/// The newest immaculate stack snapshot of this stack.
pub fn newest_baseline(repo: &Repository, cfg: &StackConfig) -> Result<(SnapshotId, Snapshot)> {
    let snaps = repo.snapshots()?;
    snaps
        .into_iter()
        .rev()
        .find(|(id, s)| {
            s.tier == Tier::Immaculate
                && manifest(id, s).is_ok_and(|m| m.stack == cfg.name)
        })
        .ok_or_else(|| {
            Error::Refused(format!(
                "stack '{}' has no immaculate baseline; make one with `relic snapshot --tier immaculate --name NAME`",
                cfg.name
            ))
        })
}

// ---------------------------------------------------------------------------
// Drill.

/// Proves a snapshot restores without touching production: reads and
/// verifies every chunk, restores each database into a scratch database,
/// loads each image under scratch tags, restores the files into a scratch
/// directory, verifies all of it, and removes the scratch copies. A
/// snapshot that is not a stack snapshot is read back item by item.
pub fn drill(
    repo: &Repository,
    id: &SnapshotId,
    snap: &Snapshot,
    cfg: Option<&StackConfig>,
    progress: &dyn Progress,
    say: &dyn Fn(&str),
) -> Result<Vec<Check>> {
    say(&format!(
        "1/4 reading and verifying every chunk of snapshot {}",
        id.short()
    ));
    if let Some(problem) = crate::check::verify_snapshot(repo, snap, true)? {
        return Err(Error::Refused(format!(
            "snapshot {} is damaged: {problem}; it would not restore",
            id.short()
        )));
    }
    let mut checks = Vec::new();
    let Ok(m) = manifest(id, snap) else {
        say("2/4 not a stack snapshot: restoring every item to nowhere, checking each BLAKE3");
        let mut n = 0u64;
        for item in repo.items(snap) {
            let item = item?;
            if matches!(item.kind, ItemKind::File | ItemKind::Stream) {
                repo.restore_item(&item, &mut std::io::sink(), progress)?;
                n += 1;
            }
        }
        checks.push(Check {
            what: "items read back, size and blake3".into(),
            expected: n.to_string(),
            found: n.to_string(),
            ok: true,
        });
        return Ok(checks);
    };
    let tag = format!("{}", std::process::id());
    let items = stack_items(repo, snap)?;
    for d in &m.databases {
        let cfg = cfg.ok_or_else(|| {
            Error::Refused(
                "a drill of a database needs the stack's relic.toml (--config) to know its server"
                    .into(),
            )
        })?;
        let part = cfg.database(&d.name).ok_or_else(|| {
            Error::Refused(format!(
                "{} has no [[database]] named '{}'",
                cfg.path.display(),
                d.name
            ))
        })?;
        let scratch = with_scratch_db(&part.conninfo, &format!("relic_drill_{}_{tag}", d.name));
        say(&format!(
            "2/4 restoring database '{}' into scratch database {}",
            d.name,
            redact(&scratch)
        ));
        let item = items
            .iter()
            .find(|i| i.path == d.item.as_bytes())
            .ok_or_else(|| Error::Refused(format!("item {} is missing", d.item)))?;
        let r = postgres::load_dump(
            repo,
            item,
            &scratch,
            postgres::LoadMode::Recreate,
            "",
            progress,
        )
        .and_then(|()| postgres::verify_db(&scratch, &d.info()));
        let dropped = postgres::drop_database(&scratch);
        for mut c in r? {
            c.what = format!("{}: {}", d.name, c.what);
            checks.push(c);
        }
        dropped?;
    }
    if !m.images.is_empty() {
        say("3/4 loading the images under scratch tags");
        let rename = |t: &str| {
            let clean: String = t
                .chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                        c.to_ascii_lowercase()
                    } else {
                        '_'
                    }
                })
                .collect();
            format!("relic-drill-{tag}/{clean}:drill")
        };
        let (image_checks, scratch) = docker::load_scratch(repo, snap, &rename, progress)?;
        let engine = Engine::connect()?;
        for s in &scratch {
            engine.untag(s)?;
        }
        checks.extend(image_checks);
    }
    if m.files.is_some() {
        let dir = std::env::temp_dir().join(format!("relic-drill-{tag}"));
        say(&format!("4/4 restoring the files into {}", dir.display()));
        let r = crate::files::restore_mapped(
            repo,
            snap,
            &dir,
            &|p| p.strip_prefix(b"files/").map(<[u8]>::to_vec),
            progress,
        )
        .and_then(crate::files::RestoreStats::ensure_complete)
        .map_err(Error::from)
        .and_then(|_| verify_files(&items, &dir));
        let _ = std::fs::remove_dir_all(&dir);
        checks.extend(r?);
    }
    Ok(checks)
}

/// `conninfo` pointed at a scratch database.
fn with_scratch_db(conninfo: &str, name: &str) -> String {
    let clean: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .take(60)
        .collect();
    postgres::with_dbname(conninfo, &clean)
}

// ---------------------------------------------------------------------------
// Diff.

/// What changed between two snapshots.
#[derive(Debug, Default, Serialize)]
pub struct Diff {
    pub from: String,
    pub to: String,
    /// Items (databases' dumps, image tars, files) added, removed, changed.
    pub added: Vec<String>,
    pub removed: Vec<String>,
    pub changed: Vec<String>,
    /// Per database: revision and row count changes.
    pub databases: Vec<String>,
    /// Per image: id and layer changes.
    pub images: Vec<String>,
    pub git: Option<String>,
    /// Bytes the second snapshot added to the repository (raw, stored).
    pub new_bytes: u64,
    pub stored_bytes: u64,
}

/// Path → (kind, size, BLAKE3) of a snapshot's items.
type ItemIndex = std::collections::BTreeMap<Vec<u8>, (ItemKind, u64, [u8; 32])>;

/// Compares two snapshots item by item and, for stacks, part by part.
pub fn diff(
    repo: &Repository,
    (aid, a): (&SnapshotId, &Snapshot),
    (bid, b): (&SnapshotId, &Snapshot),
) -> Result<Diff> {
    let index = |s: &Snapshot| -> Result<ItemIndex> {
        let mut m = std::collections::BTreeMap::new();
        for i in repo.items(s) {
            let i = i?;
            m.insert(i.path.clone(), (i.kind, i.size, i.hash));
        }
        Ok(m)
    };
    let (ia, ib) = (index(a)?, index(b)?);
    let name = |p: &[u8]| String::from_utf8_lossy(p).into_owned();
    let mut d = Diff {
        from: aid.short(),
        to: bid.short(),
        new_bytes: b.summary.new_bytes,
        stored_bytes: b.summary.stored_bytes,
        ..Default::default()
    };
    for (p, (kind, size, hash)) in &ib {
        match ia.get(p) {
            None => d.added.push(format!("{} ({})", name(p), human(*size))),
            Some((k0, s0, h0)) if (k0, s0, h0) != (kind, size, hash) => {
                d.changed
                    .push(format!("{} ({} -> {})", name(p), human(*s0), human(*size)))
            }
            Some(_) => {}
        }
    }
    for (p, (_, size, _)) in &ia {
        if !ib.contains_key(p) {
            d.removed.push(format!("{} ({})", name(p), human(*size)));
        }
    }
    if let (Ok(ma), Ok(mb)) = (manifest(aid, a), manifest(bid, b)) {
        for db in &mb.databases {
            let Some(old) = ma.databases.iter().find(|o| o.name == db.name) else {
                d.databases.push(format!("{}: new", db.name));
                continue;
            };
            if old.alembic_revision != db.alembic_revision {
                d.databases.push(format!(
                    "{}: alembic {} -> {}",
                    db.name,
                    old.alembic_revision.as_deref().unwrap_or("-"),
                    db.alembic_revision.as_deref().unwrap_or("-")
                ));
            }
            for t in &db.tables {
                match old.tables.iter().find(|o| o.table == t.table) {
                    None => d.databases.push(format!(
                        "{}: table {} new ({} rows)",
                        db.name, t.table, t.rows
                    )),
                    Some(o) if o.rows != t.rows => d.databases.push(format!(
                        "{}: table {} {} -> {} rows ({:+})",
                        db.name,
                        t.table,
                        o.rows,
                        t.rows,
                        t.rows - o.rows
                    )),
                    Some(_) => {}
                }
            }
            for o in &old.tables {
                if !db.tables.iter().any(|t| t.table == o.table) {
                    d.databases
                        .push(format!("{}: table {} dropped", db.name, o.table));
                }
            }
            if old.size != db.size {
                d.databases.push(format!(
                    "{}: dump {} -> {}",
                    db.name,
                    human(old.size),
                    human(db.size)
                ));
            }
        }
        for i in &mb.images {
            match ma.images.iter().find(|o| o.reference == i.reference) {
                None => d
                    .images
                    .push(format!("{}: new ({})", i.reference, head(&i.id, 19))),
                Some(o) if o.id != i.id => {
                    let added = i.layers.iter().filter(|l| !o.layers.contains(l)).count();
                    let removed = o.layers.iter().filter(|l| !i.layers.contains(l)).count();
                    d.images.push(format!(
                        "{}: {} -> {}, {added} layers added, {removed} removed",
                        i.reference,
                        head(&o.id, 19),
                        head(&i.id, 19)
                    ));
                }
                Some(_) => {}
            }
        }
        for o in &ma.images {
            if !mb.images.iter().any(|i| i.reference == o.reference) {
                d.images.push(format!("{}: removed", o.reference));
            }
        }
        if let (Some(ga), Some(gb)) = (&ma.git, &mb.git) {
            if ga.commit != gb.commit {
                d.git = Some(format!(
                    "{} -> {}",
                    head(&ga.commit, 12),
                    head(&gb.commit, 12)
                ));
            }
        }
    }
    Ok(d)
}
