//! Docker images: the engine's `docker save` tar, streamed through bollard
//! into the store and back into `docker load`.
//!
//! The tar is split at entry boundaries ([`TarSplitter`]): every entry of
//! 64 KiB or more (a layer, a big blob) is chunked as a segment of its own,
//! starting from a fresh chunker state, so a layer shared by two images or
//! unchanged since yesterday gives the same chunks wherever it sits in the
//! tar. Headers and small entries (JSON, `VERSION`) are chunked together
//! between them. The stored stream is the tar itself, byte for byte: restore
//! needs no tar writer and the engine gets exactly what it exported.

use crate::chunker::Segmented;
/// One check after a load: a tag (or the id) and the image id it points at.
pub use crate::postgres::Check;
use crate::progress::{Progress, Unit};
use crate::repo::{self, Repository, SnapshotOptions};
use crate::snapshot::{Item, Snapshot};
use crate::SnapshotId;
use bollard::query_parameters::ImportImageOptions;
use bollard::{Docker, API_DEFAULT_VERSION};
use bytes::{Buf, Bytes};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::{self, Read, Write};

/// The snapshot metadata key holding the image records (a JSON array).
pub const META_KEY: &str = "docker.images";

/// Seconds a single engine request may take: exports and loads of
/// multi-gigabyte images run for minutes on slow disks.
const TIMEOUT_SECS: u64 = 6 * 3600;

const BLOCK: usize = 512;
/// Entries at least this large are chunked as segments of their own.
const OWN_SEGMENT: u64 = 64 << 10;
/// Entries up to this size are kept in memory for the image records.
const CAPTURE_MAX: u64 = 1 << 20;
/// At most this much is kept in all.
const CAPTURE_TOTAL: usize = 64 << 20;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot reach the Docker engine at {host}: {what}\n(is dockerd running? DOCKER_HOST selects the engine, for example unix:///var/run/docker.sock)")]
    Unreachable { host: String, what: String },
    #[error(
        "image '{image}' is not in the Docker engine at {host} (`docker images` lists what it has)"
    )]
    NoSuchImage { image: String, host: String },
    #[error("Docker engine at {host}: {what}")]
    Engine { host: String, what: String },
    #[error("not a docker save archive: {0}")]
    BadArchive(String),
    #[error("{0}")]
    Select(String),
    #[error("image '{image}' changed while it was exported (was {before}, the archive holds {after}); run the backup again")]
    Changed {
        image: String,
        before: String,
        after: String,
    },
    #[error("the load did not restore what was recorded: {0}")]
    Mismatch(String),
    #[error(transparent)]
    Repo(#[from] repo::Error),
    #[error("starting the async runtime: {0}")]
    Runtime(io::Error),
}

pub type Result<T> = std::result::Result<T, Error>;

/// What a snapshot records about each image it holds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageRecord {
    /// The snapshot item (a `docker save` tar) that holds the image.
    pub item: String,
    /// The reference the image was backed up by (empty for an archive file).
    pub reference: String,
    /// Image id, `sha256:…` of its config.
    pub id: String,
    /// Tags the archive carries, restored by `docker load`.
    pub tags: Vec<String>,
    /// Layer digests (uncompressed diff ids), base first.
    pub layers: Vec<String>,
    /// Creation time from the image config (RFC 3339).
    pub created: Option<String>,
    /// Bytes of the image's layers.
    pub size: u64,
}

/// The image records of a snapshot; empty when it holds no image.
pub fn records(snap: &Snapshot) -> Result<Vec<ImageRecord>> {
    match snap.meta.get(META_KEY) {
        None => Ok(Vec::new()),
        Some(j) => serde_json::from_str(j).map_err(|e| {
            Error::BadArchive(format!("the snapshot's image records do not parse: {e}"))
        }),
    }
}

/// The records `spec` names (a reference, a tag, or an image id or its
/// prefix), or all of them without a spec.
pub fn select(records: &[ImageRecord], spec: Option<&str>) -> Result<Vec<ImageRecord>> {
    if records.is_empty() {
        return Err(Error::Select(
            "the snapshot holds no Docker image (it was not made by `relic backup image`)".into(),
        ));
    }
    let Some(spec) = spec else {
        return Ok(records.to_vec());
    };
    let bare = spec.strip_prefix("sha256:").unwrap_or(spec);
    let found: Vec<_> = records
        .iter()
        .filter(|r| {
            r.reference == spec
                || r.tags.iter().any(|t| t == spec)
                || (bare.len() >= 4
                    && r.id
                        .strip_prefix("sha256:")
                        .unwrap_or(&r.id)
                        .starts_with(bare))
        })
        .cloned()
        .collect();
    if found.is_empty() {
        let known: Vec<_> = records
            .iter()
            .map(|r| {
                if r.tags.is_empty() {
                    r.id.clone()
                } else {
                    r.tags.join(", ")
                }
            })
            .collect();
        return Err(Error::Select(format!(
            "the snapshot holds no image '{spec}'; it holds: {}",
            known.join("; ")
        )));
    }
    Ok(found)
}

// ---------------------------------------------------------------------------
// The tar splitter.

/// A tar entry seen while splitting.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub name: String,
    pub size: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Reading headers and small entries into `out`.
    Headers,
    /// The segment ends; a big entry's data of `left` bytes follows.
    EndBeforeData {
        left: u64,
    },
    /// Passing a big entry's data (padding included) through.
    Data {
        left: u64,
    },
    /// The segment of a big entry ends; headers follow.
    EndAfterData,
    /// After the end-of-archive block: the rest passes through as it is.
    Trailer,
    Done,
}

/// Passes a tar stream through unchanged, ending a segment before and after
/// the data of every big entry ([`Segmented`]), and keeps the small entries
/// that describe the images.
pub struct TarSplitter<R> {
    inner: R,
    state: State,
    out: Vec<u8>,
    pos: usize,
    offset: u64,
    long_name: Option<String>,
    pax_path: Option<String>,
    pax_size: Option<u64>,
    entries: Vec<Entry>,
    captured: BTreeMap<String, Vec<u8>>,
    captured_bytes: usize,
}

impl<R: Read> TarSplitter<R> {
    pub fn new(inner: R) -> Self {
        TarSplitter {
            inner,
            state: State::Headers,
            out: Vec::new(),
            pos: 0,
            offset: 0,
            long_name: None,
            pax_path: None,
            pax_size: None,
            entries: Vec::new(),
            captured: BTreeMap::new(),
            captured_bytes: 0,
        }
    }

    /// The regular-file entries seen so far.
    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// The images the archive describes (after the whole stream was read).
    pub fn images(&self) -> Result<Vec<ArchiveImage>> {
        if self.state != State::Done {
            return Err(Error::BadArchive(
                "the archive was not read to its end".into(),
            ));
        }
        parse_images(&self.captured, &self.entries)
    }

    fn bad(&self, at: u64, what: impl std::fmt::Display) -> io::Error {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("not a valid tar archive: at byte {at}: {what}"),
        )
    }

    fn truncated(&self) -> io::Error {
        io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!(
                "the tar archive is truncated: it ends at byte {} inside an entry or before its end-of-archive marker",
                self.offset
            ),
        )
    }

    /// Reads headers and small entries into `out` until a big entry, the
    /// end-of-archive block, or 1 MiB of output.
    fn fill_headers(&mut self) -> io::Result<()> {
        while self.out.len() < 1 << 20 {
            let at = self.offset;
            let start = self.out.len();
            self.out.resize(start + BLOCK, 0);
            if crate::files::read_full(&mut self.inner, &mut self.out[start..])? < BLOCK {
                return Err(self.truncated());
            }
            self.offset += BLOCK as u64;
            let h: [u8; BLOCK] = self.out[start..].try_into().expect("one block");
            if h.iter().all(|&b| b == 0) {
                self.state = State::Trailer;
                return Ok(());
            }
            let hdr = parse_header(&h).map_err(|w| self.bad(at, w))?;
            let meta = matches!(hdr.typeflag, b'x' | b'g' | b'L' | b'K');
            let (name, size) = if meta {
                (hdr.name, hdr.size)
            } else {
                let name = self
                    .long_name
                    .take()
                    .or(self.pax_path.take())
                    .unwrap_or(hdr.name);
                let size = self.pax_size.take().unwrap_or(hdr.size);
                match hdr.typeflag {
                    // Header-only types: no data whatever the size field says.
                    b'1'..=b'6' => (name, 0),
                    b'S' => return Err(self.bad(at, "GNU sparse entries are not supported")),
                    _ => (name, size),
                }
            };
            let padded = size.div_ceil(BLOCK as u64) * BLOCK as u64;
            if !meta && size >= OWN_SEGMENT {
                self.entries.push(Entry { name, size });
                self.state = State::EndBeforeData { left: padded };
                return Ok(());
            }
            let start = self.out.len();
            self.out.resize(start + padded as usize, 0);
            if (crate::files::read_full(&mut self.inner, &mut self.out[start..])? as u64) < padded {
                return Err(self.truncated());
            }
            self.offset += padded;
            let data = &self.out[start..start + size as usize];
            match hdr.typeflag {
                b'x' => {
                    let (path, sz) = parse_pax(data).map_err(|w| self.bad(at, w))?;
                    self.pax_path = path;
                    self.pax_size = sz;
                }
                b'L' => self.long_name = Some(cstr(data)),
                b'g' | b'K' => {}
                b'0' | 0 | b'7' => {
                    if size <= CAPTURE_MAX && self.captured_bytes + data.len() <= CAPTURE_TOTAL {
                        self.captured_bytes += data.len();
                        self.captured.insert(name.clone(), data.to_vec());
                    }
                    self.entries.push(Entry { name, size });
                }
                _ => {}
            }
        }
        Ok(())
    }
}

impl<R: Read> Read for TarSplitter<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        loop {
            if self.pos < self.out.len() {
                let n = buf.len().min(self.out.len() - self.pos);
                buf[..n].copy_from_slice(&self.out[self.pos..self.pos + n]);
                self.pos += n;
                return Ok(n);
            }
            self.out.clear();
            self.pos = 0;
            match self.state {
                State::Headers => self.fill_headers()?,
                State::EndBeforeData { .. } | State::EndAfterData | State::Done => return Ok(0),
                State::Data { left } => {
                    let want = buf.len().min(left.min(usize::MAX as u64) as usize);
                    let n = loop {
                        match self.inner.read(&mut buf[..want]) {
                            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                            r => break r?,
                        }
                    };
                    if n == 0 {
                        return Err(self.truncated());
                    }
                    self.offset += n as u64;
                    let left = left - n as u64;
                    self.state = if left == 0 {
                        State::EndAfterData
                    } else {
                        State::Data { left }
                    };
                    return Ok(n);
                }
                State::Trailer => {
                    let n = loop {
                        match self.inner.read(buf) {
                            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                            r => break r?,
                        }
                    };
                    self.offset += n as u64;
                    if n == 0 {
                        self.state = State::Done;
                    }
                    return Ok(n);
                }
            }
        }
    }
}

impl<R: Read> Segmented for TarSplitter<R> {
    fn next_segment(&mut self) -> io::Result<bool> {
        match self.state {
            State::EndBeforeData { left } => self.state = State::Data { left },
            State::EndAfterData => self.state = State::Headers,
            State::Done => return Ok(false),
            // Only reached if a reader gave up early: nothing more to cut.
            _ => return Ok(false),
        }
        Ok(true)
    }
}

struct Header {
    name: String,
    size: u64,
    typeflag: u8,
}

fn cstr(b: &[u8]) -> String {
    let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
    String::from_utf8_lossy(&b[..end]).into_owned()
}

fn octal(field: &[u8]) -> Option<u64> {
    let s = std::str::from_utf8(field).ok()?;
    let s = s.trim_matches(|c: char| c == '\0' || c == ' ');
    if s.is_empty() {
        return Some(0);
    }
    u64::from_str_radix(s, 8).ok()
}

/// A numeric field: octal, or GNU base-256 when the high bit is set.
fn number(field: &[u8]) -> Option<u64> {
    if field[0] & 0x80 != 0 {
        if field[0] & 0x40 != 0 {
            return None; // negative
        }
        let mut v: u64 = u64::from(field[0] & 0x3f);
        for &b in &field[1..] {
            v = v.checked_mul(256)?.checked_add(u64::from(b))?;
        }
        return Some(v);
    }
    octal(field)
}

fn parse_header(h: &[u8; BLOCK]) -> std::result::Result<Header, String> {
    let recorded = octal(&h[148..156]).ok_or("the header checksum field is not a number")?;
    let unsigned: u64 = h
        .iter()
        .enumerate()
        .map(|(i, &b)| {
            if (148..156).contains(&i) {
                32
            } else {
                u64::from(b)
            }
        })
        .sum();
    let signed: i64 = h
        .iter()
        .enumerate()
        .map(|(i, &b)| {
            if (148..156).contains(&i) {
                32
            } else {
                i64::from(b as i8)
            }
        })
        .sum();
    if recorded != unsigned && recorded as i64 != signed {
        return Err("bad header checksum".into());
    }
    let size = number(&h[124..136]).ok_or("the size field is not a number")?;
    let mut name = cstr(&h[..100]);
    if &h[257..262] == b"ustar" {
        let prefix = cstr(&h[345..500]);
        if !prefix.is_empty() {
            name = format!("{prefix}/{name}");
        }
    }
    Ok(Header {
        name,
        size,
        typeflag: h[156],
    })
}

/// The `path` and `size` records of a pax extended header.
fn parse_pax(mut data: &[u8]) -> std::result::Result<(Option<String>, Option<u64>), String> {
    let (mut path, mut size) = (None, None);
    while !data.is_empty() {
        let sp = data
            .iter()
            .position(|&b| b == b' ')
            .ok_or("a pax record has no length")?;
        let len: usize = std::str::from_utf8(&data[..sp])
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or("a pax record length is not a number")?;
        if len <= sp + 1 || len > data.len() || data[len - 1] != b'\n' {
            return Err("a pax record is malformed".into());
        }
        let rec = &data[sp + 1..len - 1];
        if let Some(eq) = rec.iter().position(|&b| b == b'=') {
            let (k, v) = (&rec[..eq], &rec[eq + 1..]);
            match k {
                b"path" => path = Some(String::from_utf8_lossy(v).into_owned()),
                b"size" => {
                    size = Some(
                        std::str::from_utf8(v)
                            .ok()
                            .and_then(|s| s.parse().ok())
                            .ok_or("the pax size is not a number")?,
                    )
                }
                _ => {}
            }
        }
        data = &data[len..];
    }
    Ok((path, size))
}

// ---------------------------------------------------------------------------
// What the archive says about its images.

/// One image described by a `docker save` archive.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ArchiveImage {
    pub id: String,
    pub tags: Vec<String>,
    pub layers: Vec<String>,
    pub created: Option<String>,
    pub size: u64,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ManifestEntry {
    config: String,
    repo_tags: Option<Vec<String>>,
    #[serde(default)]
    layers: Vec<String>,
}

#[derive(Deserialize, Default)]
struct ImageConfig {
    created: Option<String>,
    #[serde(default)]
    rootfs: RootFs,
}

#[derive(Deserialize, Default)]
struct RootFs {
    #[serde(default)]
    diff_ids: Vec<String>,
}

#[derive(Deserialize)]
struct OciIndex {
    #[serde(default)]
    manifests: Vec<OciDescriptor>,
}

#[derive(Deserialize)]
struct OciDescriptor {
    digest: String,
    #[serde(default)]
    size: u64,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
}

#[derive(Deserialize)]
struct OciManifest {
    config: Option<OciDescriptor>,
    #[serde(default)]
    layers: Vec<OciDescriptor>,
    /// Set when the "manifest" is itself an index (multi-platform).
    manifests: Option<Vec<OciDescriptor>>,
}

fn blob_path(digest: &str) -> String {
    format!("blobs/{}", digest.replacen(':', "/", 1))
}

fn json<'a, T: Deserialize<'a>>(captured: &'a BTreeMap<String, Vec<u8>>, name: &str) -> Result<T> {
    let bytes = captured
        .get(name)
        .ok_or_else(|| Error::BadArchive(format!("{name} is missing")))?;
    serde_json::from_slice(bytes).map_err(|e| Error::BadArchive(format!("{name}: {e}")))
}

/// Reads the image list from `manifest.json` (Docker's layout, also written
/// beside the OCI layout by Docker 25 and later) or from `index.json` (OCI).
fn parse_images(
    captured: &BTreeMap<String, Vec<u8>>,
    entries: &[Entry],
) -> Result<Vec<ArchiveImage>> {
    let size_of = |name: &str| {
        entries
            .iter()
            .find(|e| e.name == name)
            .map_or(0, |e| e.size)
    };
    if captured.contains_key("manifest.json") {
        let manifest: Vec<ManifestEntry> = json(captured, "manifest.json")?;
        return manifest
            .into_iter()
            .map(|m| {
                let config: ImageConfig = json(captured, &m.config)?;
                let file = m.config.rsplit('/').next().unwrap_or(&m.config);
                let hex = file.strip_suffix(".json").unwrap_or(file);
                Ok(ArchiveImage {
                    id: format!("sha256:{hex}"),
                    tags: m.repo_tags.unwrap_or_default(),
                    size: m.layers.iter().map(|l| size_of(l)).sum(),
                    layers: config.rootfs.diff_ids,
                    created: config.created,
                })
            })
            .collect();
    }
    if captured.contains_key("index.json") {
        let index: OciIndex = json(captured, "index.json")?;
        let mut out = Vec::new();
        let mut todo: Vec<(OciDescriptor, Vec<String>)> = index
            .manifests
            .into_iter()
            .map(|d| {
                let tags = [
                    "io.containerd.image.name",
                    "org.opencontainers.image.ref.name",
                ]
                .iter()
                .filter_map(|k| d.annotations.get(*k).cloned())
                .take(1)
                .collect();
                (d, tags)
            })
            .collect();
        while let Some((d, tags)) = todo.pop() {
            let m: OciManifest = json(captured, &blob_path(&d.digest))?;
            if let Some(inner) = m.manifests {
                todo.extend(inner.into_iter().map(|d| (d, tags.clone())));
                continue;
            }
            let Some(cfg) = m.config else { continue };
            let config: ImageConfig = json(captured, &blob_path(&cfg.digest)).unwrap_or_default();
            out.push(ArchiveImage {
                id: cfg.digest.clone(),
                tags,
                layers: config.rootfs.diff_ids,
                created: config.created,
                size: m.layers.iter().map(|l| l.size).sum(),
            });
        }
        return Ok(out);
    }
    Err(Error::BadArchive(
        "it holds neither manifest.json nor index.json".into(),
    ))
}

// ---------------------------------------------------------------------------
// The engine.

/// A connection to a Docker engine, with the runtime that drives it.
pub struct Engine {
    docker: Docker,
    host: String,
    rt: tokio::runtime::Runtime,
}

/// What the engine says about one image.
#[derive(Clone, Debug)]
pub struct EngineImage {
    pub id: String,
    pub tags: Vec<String>,
    pub layers: Vec<String>,
    pub created: Option<String>,
    pub size: u64,
}

impl Engine {
    /// Connects to `DOCKER_HOST` (default `unix:///var/run/docker.sock`) and
    /// negotiates the API version: Debian's engine is older than bollard's
    /// default.
    pub fn connect() -> Result<Engine> {
        let host = std::env::var("DOCKER_HOST")
            .ok()
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "unix:///var/run/docker.sock".into());
        let unreachable = |what: String| Error::Unreachable {
            host: host.clone(),
            what,
        };
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .map_err(Error::Runtime)?;
        let docker = if let Some(path) = host.strip_prefix("unix://") {
            Docker::connect_with_unix(path, TIMEOUT_SECS, API_DEFAULT_VERSION)
        } else if host.starts_with("tcp://") || host.starts_with("http://") {
            Docker::connect_with_http(&host, TIMEOUT_SECS, API_DEFAULT_VERSION)
        } else {
            return Err(unreachable(
                "only unix:// and tcp:// engine addresses are supported".into(),
            ));
        }
        .map_err(|e| unreachable(e.to_string()))?;
        let docker = rt
            .block_on(docker.negotiate_version())
            .map_err(|e| unreachable(e.to_string()))?;
        Ok(Engine { docker, host, rt })
    }

    pub fn host(&self) -> &str {
        &self.host
    }

    fn engine_error(&self, e: bollard::errors::Error) -> Error {
        Error::Engine {
            host: self.host.clone(),
            what: e.to_string(),
        }
    }

    /// The engine's data root, when it is on this machine.
    pub fn root_dir(&self) -> Option<std::path::PathBuf> {
        let info = self.rt.block_on(self.docker.info()).ok()?;
        let dir = std::path::PathBuf::from(info.docker_root_dir?);
        dir.exists().then_some(dir)
    }

    /// Looks an image up by reference or id.
    pub fn inspect(&self, image: &str) -> Result<EngineImage> {
        let r = self.rt.block_on(self.docker.inspect_image(image));
        let i = match r {
            Ok(i) => i,
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            }) => {
                return Err(Error::NoSuchImage {
                    image: image.to_string(),
                    host: self.host.clone(),
                })
            }
            Err(e) => return Err(self.engine_error(e)),
        };
        Ok(EngineImage {
            id: i.id.unwrap_or_default(),
            tags: i.repo_tags.unwrap_or_default(),
            layers: i.root_fs.and_then(|r| r.layers).unwrap_or_default(),
            created: i.created,
            size: i.size.unwrap_or(0).max(0) as u64,
        })
    }

    /// The engine's `docker save` stream of one image, as a reader. The
    /// transfer runs on the runtime's thread; a bounded channel keeps at
    /// most a few MiB in flight.
    pub fn export(&self, image: &str) -> impl Read {
        let (tx, rx) = tokio::sync::mpsc::channel(256);
        let docker = self.docker.clone();
        let image = image.to_string();
        self.rt.spawn(async move {
            let mut body = docker.export_images(&[image.as_str()]);
            while let Some(part) = body.next().await {
                let stop = part.is_err();
                if tx.send(part).await.is_err() || stop {
                    break;
                }
            }
        });
        BodyReader {
            rx,
            cur: Bytes::new(),
            host: self.host.clone(),
        }
    }

    /// Streams `write`'s output into `docker load`; returns the engine's
    /// messages. `write` runs on its own thread.
    pub fn load(
        &self,
        write: impl FnOnce(&mut dyn Write) -> repo::Result<()> + Send,
    ) -> Result<Vec<String>> {
        let (tx, rx) = tokio::sync::mpsc::channel::<io::Result<Bytes>>(16);
        std::thread::scope(|s| {
            let writer = s.spawn(move || {
                let mut w = ChannelWriter {
                    tx,
                    buf: Vec::with_capacity(1 << 20),
                };
                let r = write(&mut w);
                if let Err(e) = &r {
                    // Make the engine see a failed upload, not a short tar.
                    let _ = w.tx.blocking_send(Err(io::Error::other(e.to_string())));
                }
                r
            });
            let body = futures_util::stream::unfold(rx, |mut rx| async move {
                rx.recv().await.map(|x| (x, rx))
            });
            let loaded = self.rt.block_on(async {
                let opts = ImportImageOptions {
                    quiet: true,
                    ..Default::default()
                };
                let mut s = self.docker.import_image_stream(opts, body, None);
                let mut msgs = Vec::new();
                while let Some(m) = s.next().await {
                    let m = m?;
                    if let Some(line) = m.stream.or(m.status) {
                        let line = line.trim();
                        if !line.is_empty() {
                            msgs.push(line.to_string());
                        }
                    }
                }
                Ok::<_, bollard::errors::Error>(msgs)
            });
            let written = writer.join().expect("restore thread");
            written?;
            loaded.map_err(|e| self.engine_error(e))
        })
    }
}

struct BodyReader {
    rx: tokio::sync::mpsc::Receiver<std::result::Result<Bytes, bollard::errors::Error>>,
    cur: Bytes,
    host: String,
}

impl Read for BodyReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.cur.is_empty() {
            match self.rx.blocking_recv() {
                None => return Ok(0),
                Some(Ok(b)) => self.cur = b,
                Some(Err(e)) => {
                    return Err(io::Error::other(format!(
                        "exporting from the Docker engine at {}: {e}",
                        self.host
                    )))
                }
            }
        }
        let n = buf.len().min(self.cur.len());
        buf[..n].copy_from_slice(&self.cur[..n]);
        self.cur.advance(n);
        Ok(n)
    }
}

struct ChannelWriter {
    tx: tokio::sync::mpsc::Sender<io::Result<Bytes>>,
    buf: Vec<u8>,
}

impl ChannelWriter {
    fn send(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let full = std::mem::replace(&mut self.buf, Vec::with_capacity(1 << 20));
        self.tx.blocking_send(Ok(Bytes::from(full))).map_err(|_| {
            io::Error::new(
                io::ErrorKind::BrokenPipe,
                "the Docker engine stopped reading the image",
            )
        })
    }
}

impl Write for ChannelWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= 1 << 20 {
            self.send()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.send()
    }
}

// ---------------------------------------------------------------------------
// Backup and restore.

/// The item name of the `n`th image tar of a snapshot.
fn item_name(reference: &str) -> String {
    let clean: String = reference
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("images/{clean}.tar")
}

/// Stores one tar, split at its entries; returns its item and images.
fn store_archive(
    w: &mut repo::Writer<'_>,
    reader: impl Read,
    item: &str,
) -> repo::Result<Vec<ArchiveImage>> {
    let mut split = TarSplitter::new(reader);
    let s = w.store_segments(&mut split)?;
    let images = split
        .images()
        .map_err(|e| repo::Error::Source(e.to_string()))?;
    w.add_item(&s.into_item(item, 0o644))?;
    Ok(images)
}

/// Backs up images from the engine, one `docker save` tar per reference,
/// into one snapshot. Every reference is looked up before anything is
/// written: an unknown image writes nothing.
pub fn backup(
    repo: &Repository,
    opts: &SnapshotOptions,
    references: &[String],
    progress: &dyn Progress,
) -> Result<(SnapshotId, Snapshot)> {
    let engine = Engine::connect()?;
    let mut refs: Vec<&String> = Vec::new();
    for r in references {
        if !refs.contains(&r) {
            refs.push(r);
        }
    }
    let found = refs
        .iter()
        .map(|r| engine.inspect(r))
        .collect::<Result<Vec<_>>>()?;
    let mut records = Vec::new();
    let r = repo.backup(opts, progress, |w| {
        for (r, info) in refs.iter().zip(&found) {
            records.push(export_into(w, &engine, r, info, progress)?);
        }
        w.set_meta(
            META_KEY,
            serde_json::to_string(&records).expect("records serialize"),
        );
        Ok(())
    });
    Ok(r?)
}

/// Exports one image (looked up as `info`) into the write session as the
/// item `images/<reference>.tar`; returns its record.
pub fn export_into(
    w: &mut repo::Writer<'_>,
    engine: &Engine,
    reference: &str,
    info: &EngineImage,
    progress: &dyn Progress,
) -> repo::Result<ImageRecord> {
    progress.start(
        &format!("exporting {reference}"),
        Some(info.size),
        Unit::Bytes,
    );
    let item = item_name(reference);
    let images = store_archive(w, engine.export(reference), &item)?;
    let [img] = images.as_slice() else {
        return Err(repo::Error::Source(format!(
            "the engine exported {} images for '{reference}', expected one",
            images.len()
        )));
    };
    if img.id != info.id {
        return Err(repo::Error::Source(
            Error::Changed {
                image: reference.to_string(),
                before: info.id.clone(),
                after: img.id.clone(),
            }
            .to_string(),
        ));
    }
    Ok(ImageRecord {
        item,
        reference: reference.to_string(),
        id: info.id.clone(),
        tags: img.tags.clone(),
        layers: info.layers.clone(),
        created: info.created.clone(),
        size: info.size,
    })
}

/// Backs up a `docker save` archive read from a file or standard input.
pub fn backup_archive(
    repo: &Repository,
    opts: &SnapshotOptions,
    reader: impl Read,
    item: &str,
    progress: &dyn Progress,
) -> Result<(SnapshotId, Snapshot)> {
    let item = item_name(item);
    let r = repo.backup(opts, progress, |w| {
        let images = store_archive(w, reader, &item)?;
        let records: Vec<_> = images
            .into_iter()
            .map(|i| ImageRecord {
                item: item.clone(),
                reference: String::new(),
                id: i.id,
                tags: i.tags,
                layers: i.layers,
                created: i.created,
                size: i.size,
            })
            .collect();
        w.set_meta(
            META_KEY,
            serde_json::to_string(&records).expect("records serialize"),
        );
        Ok(())
    });
    Ok(r?)
}

/// The items holding the selected images, each once, in snapshot order.
pub fn items_for(
    repo: &Repository,
    snap: &Snapshot,
    selected: &[ImageRecord],
) -> Result<Vec<Item>> {
    let mut out = Vec::new();
    for item in repo.items(snap) {
        let item = item?;
        let name = item.path_lossy();
        if selected.iter().any(|r| r.item == name) {
            out.push(item);
        }
    }
    if let Some(r) = selected
        .iter()
        .find(|r| !out.iter().any(|i| i.path_lossy() == r.item))
    {
        return Err(Error::Select(format!(
            "the snapshot's tree has no item {} for image {}",
            r.item, r.id
        )));
    }
    Ok(out)
}

/// Loads the selected images of a snapshot into the engine, then checks that
/// every recorded tag points at the recorded image id.
pub fn restore(
    repo: &Repository,
    snap: &Snapshot,
    image: Option<&str>,
    progress: &dyn Progress,
    say: &dyn Fn(&str),
) -> Result<Vec<Check>> {
    let selected = select(&records(snap)?, image)?;
    let items = items_for(repo, snap, &selected)?;
    let engine = Engine::connect()?;
    for item in &items {
        say(&format!(
            "loading {} into {}",
            item.path_lossy(),
            engine.host()
        ));
        progress.start("loading", Some(item.size), Unit::Bytes);
        let msgs = engine.load(|w| repo.restore_item(item, w, progress))?;
        progress.finish();
        for m in msgs {
            say(&m);
        }
    }
    let mut checks = Vec::new();
    for r in &selected {
        let names: Vec<&str> = if r.tags.is_empty() {
            vec![r.id.as_str()]
        } else {
            r.tags.iter().map(String::as_str).collect()
        };
        for name in names {
            let found = match engine.inspect(name) {
                Ok(i) => i.id,
                Err(Error::NoSuchImage { .. }) => "(missing)".into(),
                Err(e) => return Err(e),
            };
            checks.push(Check {
                what: name.to_string(),
                ok: found == r.id,
                expected: r.id.clone(),
                found,
            });
        }
    }
    if let Some(c) = checks.iter().find(|c| !c.ok) {
        return Err(Error::Mismatch(format!(
            "{} points at {}, expected {}",
            c.what, c.found, c.expected
        )));
    }
    Ok(checks)
}

// ---------------------------------------------------------------------------
// Retagging, for restore drills.

/// Rewrites the tags of a `docker save` tar as it is written through:
/// `manifest.json` and `repositories` get `rename(tag)` for every tag, with
/// their tar headers (size, checksum) made to match; every other byte passes
/// unchanged. A drill loads images under scratch tags this way, so the tags
/// production uses never move.
pub struct Retag<W: Write, F: Fn(&str) -> String> {
    inner: W,
    rename: F,
    buf: Vec<u8>,
    state: RetagState,
}

enum RetagState {
    Header,
    /// Passing `left` bytes of data and padding through.
    Data(u64),
    /// Collecting a small JSON entry to rewrite: its header and size.
    Capture(Box<[u8; BLOCK]>, String, u64),
    Trailer,
}

impl<W: Write, F: Fn(&str) -> String> Retag<W, F> {
    pub fn new(inner: W, rename: F) -> Self {
        Retag {
            inner,
            rename,
            buf: Vec::new(),
            state: RetagState::Header,
        }
    }

    fn rewrite(&self, name: &str, data: &[u8]) -> io::Result<Vec<u8>> {
        let bad = |e: serde_json::Error| {
            io::Error::new(io::ErrorKind::InvalidData, format!("{name}: {e}"))
        };
        let mut v: serde_json::Value = serde_json::from_slice(data).map_err(bad)?;
        if name == "manifest.json" {
            for m in v.as_array_mut().into_iter().flatten() {
                if let Some(tags) = m.get_mut("RepoTags").and_then(|t| t.as_array_mut()) {
                    for t in tags.iter_mut() {
                        if let Some(s) = t.as_str() {
                            *t = serde_json::Value::String((self.rename)(s));
                        }
                    }
                }
            }
        } else if let Some(repos) = v.as_object() {
            let mut out = serde_json::Map::new();
            for (repo, tags) in repos {
                for (tag, id) in tags.as_object().into_iter().flatten() {
                    let new = (self.rename)(&format!("{repo}:{tag}"));
                    let (r, t) = new.rsplit_once(':').unwrap_or((&new, "latest"));
                    out.entry(r.to_string())
                        .or_insert_with(|| serde_json::Value::Object(Default::default()))
                        .as_object_mut()
                        .expect("object")
                        .insert(t.to_string(), id.clone());
                }
            }
            v = serde_json::Value::Object(out);
        }
        Ok(serde_json::to_vec(&v).expect("json serializes"))
    }

    /// Processes what `buf` holds; leaves an incomplete block or entry.
    fn pump(&mut self) -> io::Result<()> {
        loop {
            match &mut self.state {
                RetagState::Trailer => {
                    self.inner.write_all(&self.buf)?;
                    self.buf.clear();
                    return Ok(());
                }
                RetagState::Data(left) => {
                    let n = (*left).min(self.buf.len() as u64) as usize;
                    self.inner.write_all(&self.buf[..n])?;
                    self.buf.drain(..n);
                    *left -= n as u64;
                    if *left > 0 {
                        return Ok(());
                    }
                    self.state = RetagState::Header;
                }
                RetagState::Header => {
                    if self.buf.len() < BLOCK {
                        return Ok(());
                    }
                    let h: [u8; BLOCK] = self.buf[..BLOCK].try_into().expect("one block");
                    if h.iter().all(|&b| b == 0) {
                        self.state = RetagState::Trailer;
                        continue;
                    }
                    let hdr = parse_header(&h)
                        .map_err(|w| io::Error::new(io::ErrorKind::InvalidData, w))?;
                    let size = if matches!(hdr.typeflag, b'1'..=b'6') {
                        0
                    } else {
                        hdr.size
                    };
                    self.buf.drain(..BLOCK);
                    let regular = matches!(hdr.typeflag, b'0' | 0);
                    if regular
                        && (hdr.name == "manifest.json" || hdr.name == "repositories")
                        && size <= CAPTURE_MAX
                    {
                        self.state = RetagState::Capture(Box::new(h), hdr.name, size);
                    } else {
                        self.inner.write_all(&h)?;
                        self.state = RetagState::Data(size.div_ceil(BLOCK as u64) * BLOCK as u64);
                    }
                }
                RetagState::Capture(h, name, size) => {
                    let padded = (size.div_ceil(BLOCK as u64) * BLOCK as u64) as usize;
                    if self.buf.len() < padded {
                        return Ok(());
                    }
                    let (mut h, name, size) = (**h, name.clone(), *size as usize);
                    let data = self.rewrite(&name, &self.buf[..size])?;
                    self.buf.drain(..padded);
                    h[124..136].copy_from_slice(format!("{:011o}\0", data.len()).as_bytes());
                    h[148..156].copy_from_slice(b"        ");
                    let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
                    h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
                    self.inner.write_all(&h)?;
                    self.inner.write_all(&data)?;
                    let pad = data.len().div_ceil(BLOCK) * BLOCK - data.len();
                    self.inner.write_all(&vec![0; pad])?;
                    self.state = RetagState::Header;
                }
            }
        }
    }
}

impl<W: Write, F: Fn(&str) -> String> Write for Retag<W, F> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if let RetagState::Data(left) = self.state {
            // The bulk of a tar: straight through, no copy.
            if self.buf.is_empty() && left >= data.len() as u64 {
                self.inner.write_all(data)?;
                self.state = if left == data.len() as u64 {
                    RetagState::Header
                } else {
                    RetagState::Data(left - data.len() as u64)
                };
                return Ok(data.len());
            }
        }
        self.buf.extend_from_slice(data);
        self.pump()?;
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.pump()?;
        self.inner.flush()
    }
}

/// Loads the selected images under scratch tags (`rename` gives each
/// recorded tag's scratch name) and checks them; returns the checks and the
/// scratch tags loaded, for the caller to remove.
pub fn load_scratch(
    repo: &Repository,
    snap: &Snapshot,
    rename: &(dyn Fn(&str) -> String + Sync),
    progress: &dyn Progress,
) -> Result<(Vec<Check>, Vec<String>)> {
    let selected = select(&records(snap)?, None)?;
    let items = items_for(repo, snap, &selected)?;
    let engine = Engine::connect()?;
    for item in &items {
        progress.start("loading", Some(item.size), Unit::Bytes);
        engine.load(|w| {
            let mut r = Retag::new(w, rename);
            repo.restore_item(item, &mut r, progress)
        })?;
        progress.finish();
    }
    let mut checks = Vec::new();
    let mut scratch = Vec::new();
    for r in &selected {
        for tag in &r.tags {
            let name = rename(tag);
            let found = match engine.inspect(&name) {
                Ok(i) => i.id,
                Err(Error::NoSuchImage { .. }) => "(missing)".into(),
                Err(e) => return Err(e),
            };
            checks.push(Check {
                what: format!("image {tag} (as {name})"),
                ok: found == r.id,
                expected: r.id.clone(),
                found,
            });
            scratch.push(name);
        }
    }
    Ok((checks, scratch))
}

impl Engine {
    /// Removes a tag (the image goes too when nothing else uses it).
    pub fn untag(&self, name: &str) -> Result<()> {
        let opts = bollard::query_parameters::RemoveImageOptions {
            noprune: false,
            ..Default::default()
        };
        self.rt
            .block_on(self.docker.remove_image(name, Some(opts), None))
            .map(|_| ())
            .map_err(|e| self.engine_error(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tar built by hand: (name, data) regular entries, ustar headers.
    fn tar(entries: &[(&str, Vec<u8>)]) -> Vec<u8> {
        let mut out = Vec::new();
        for (name, data) in entries {
            let mut h = [0u8; BLOCK];
            h[..name.len()].copy_from_slice(name.as_bytes());
            h[100..108].copy_from_slice(b"0000644\0");
            h[124..136].copy_from_slice(format!("{:011o}\0", data.len()).as_bytes());
            h[136..148].copy_from_slice(b"00000000000\0");
            h[156] = b'0';
            h[257..263].copy_from_slice(b"ustar\0");
            h[263..265].copy_from_slice(b"00");
            h[148..156].copy_from_slice(b"        ");
            let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
            h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
            out.extend_from_slice(&h);
            out.extend_from_slice(data);
            out.resize(out.len().div_ceil(BLOCK) * BLOCK, 0);
        }
        out.resize(out.len() + 2 * BLOCK, 0);
        out
    }

    /// Reads every segment; returns them.
    fn segments(mut s: impl Segmented) -> io::Result<Vec<Vec<u8>>> {
        let mut out = Vec::new();
        loop {
            let mut seg = Vec::new();
            s.read_to_end(&mut seg)?;
            out.push(seg);
            if !s.next_segment()? {
                return Ok(out);
            }
        }
    }

    fn noise(n: usize, seed: u64) -> Vec<u8> {
        let mut x = seed | 1;
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    }

    #[test]
    fn splits_around_big_entries_and_passes_bytes_through() {
        let layer = noise(200_000, 7);
        let t = tar(&[
            ("abc/VERSION", b"1.0".to_vec()),
            ("abc/layer.tar", layer.clone()),
            ("manifest.json", b"[]".to_vec()),
        ]);
        let mut sp = TarSplitter::new(&t[..]);
        let segs = segments(&mut sp).unwrap();
        assert_eq!(segs.concat(), t, "the stream passes through unchanged");
        assert_eq!(segs.len(), 3);
        assert_eq!(
            &segs[1][..layer.len()],
            &layer[..],
            "the layer is a segment of its own"
        );
        assert_eq!(segs[1].len(), layer.len().div_ceil(BLOCK) * BLOCK);
        assert_eq!(
            sp.entries(),
            &[
                Entry {
                    name: "abc/VERSION".into(),
                    size: 3
                },
                Entry {
                    name: "abc/layer.tar".into(),
                    size: 200_000
                },
                Entry {
                    name: "manifest.json".into(),
                    size: 2
                },
            ]
        );
    }

    #[test]
    fn truncated_and_foreign_input_fail() {
        let t = tar(&[("a/layer.tar", noise(100_000, 3)), ("b", b"x".to_vec())]);
        for cut in [100, 512, 700, 50_000, t.len() - 2 * BLOCK] {
            let e = segments(TarSplitter::new(&t[..cut])).unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof, "cut at {cut}: {e}");
        }
        let e = segments(TarSplitter::new(&noise(4096, 9)[..])).unwrap_err();
        assert!(e.to_string().contains("not a valid tar"), "{e}");
    }

    #[test]
    fn classic_manifest_gives_the_images() {
        let config = br#"{"created":"2026-01-02T03:04:05Z","rootfs":{"type":"layers","diff_ids":["sha256:aa"]}}"#;
        let manifest =
            br#"[{"Config":"ff00.json","RepoTags":["x/y:1"],"Layers":["abc/layer.tar"]}]"#;
        let t = tar(&[
            ("abc/layer.tar", noise(70_000, 5)),
            ("ff00.json", config.to_vec()),
            ("manifest.json", manifest.to_vec()),
        ]);
        let mut sp = TarSplitter::new(&t[..]);
        segments(&mut sp).unwrap();
        let imgs = sp.images().unwrap();
        assert_eq!(
            imgs,
            vec![ArchiveImage {
                id: "sha256:ff00".into(),
                tags: vec!["x/y:1".into()],
                layers: vec!["sha256:aa".into()],
                created: Some("2026-01-02T03:04:05Z".into()),
                size: 70_000,
            }]
        );
    }

    #[test]
    fn oci_index_gives_the_images() {
        let config = br#"{"created":"2026-01-02T03:04:05Z","rootfs":{"diff_ids":["sha256:11"]}}"#;
        let manifest = br#"{"config":{"digest":"sha256:cc","size":10},"layers":[{"digest":"sha256:11","size":70000}]}"#;
        let index = br#"{"manifests":[{"digest":"sha256:mm","size":99,"annotations":{"io.containerd.image.name":"x/y:2"}}]}"#;
        let t = tar(&[
            ("blobs/sha256/11", noise(70_000, 5)),
            ("blobs/sha256/cc", config.to_vec()),
            ("blobs/sha256/mm", manifest.to_vec()),
            ("index.json", index.to_vec()),
            ("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#.to_vec()),
        ]);
        let mut sp = TarSplitter::new(&t[..]);
        segments(&mut sp).unwrap();
        let imgs = sp.images().unwrap();
        assert_eq!(imgs.len(), 1);
        assert_eq!(imgs[0].id, "sha256:cc");
        assert_eq!(imgs[0].tags, vec!["x/y:2".to_string()]);
        assert_eq!(imgs[0].layers, vec!["sha256:11".to_string()]);
        assert_eq!(imgs[0].size, 70_000);
    }

    #[test]
    fn retag_rewrites_only_the_tags() {
        let manifest = br#"[{"Config":"ff.json","RepoTags":["app/x:1"],"Layers":["l/layer.tar"]}]"#;
        let repos = br#"{"app/x":{"1":"ff"}}"#;
        let layer = noise(150_000, 4);
        let t = tar(&[
            ("l/layer.tar", layer.clone()),
            ("ff.json", b"{}".to_vec()),
            ("manifest.json", manifest.to_vec()),
            ("repositories", repos.to_vec()),
        ]);
        // Written in awkward pieces, as a restore might.
        let mut out = Vec::new();
        let mut r = Retag::new(&mut out, |t: &str| {
            format!("drill/{}", t.replace([':', '/'], "_")) + ":d"
        });
        for piece in t.chunks(777) {
            r.write_all(piece).unwrap();
        }
        r.flush().unwrap();
        let mut sp = TarSplitter::new(&out[..]);
        segments(&mut sp).unwrap();
        let imgs = sp.images().unwrap();
        assert_eq!(imgs[0].tags, vec!["drill/app_x_1:d".to_string()]);
        assert_eq!(imgs[0].size, 150_000);
        let start = out
            .windows(layer.len().min(64))
            .position(|w| w == &layer[..64])
            .unwrap();
        assert_eq!(
            &out[start..start + layer.len()],
            &layer[..],
            "layer bytes untouched"
        );
        assert!(String::from_utf8_lossy(&out).contains(r#"{"drill/app_x_1":{"d":"ff"}}"#));
    }

    #[test]
    fn pax_and_base256_sizes() {
        assert_eq!(
            parse_pax(b"30 path=some/very/long/name.x\n13 size=4096\n").unwrap(),
            (Some("some/very/long/name.x".into()), Some(4096))
        );
        assert!(parse_pax(b"99 path=x\n").is_err());
        let mut f = [0u8; 12];
        f[0] = 0x80;
        f[10] = 0x01;
        f[11] = 0x02;
        assert_eq!(number(&f), Some(0x0102));
        assert_eq!(number(b"00000001000\0"), Some(512));
    }

    #[test]
    fn select_by_tag_reference_or_id() {
        let rec = |item: &str, id: &str, tag: &str| ImageRecord {
            item: item.into(),
            reference: tag.into(),
            id: id.into(),
            tags: vec![tag.into()],
            layers: vec![],
            created: None,
            size: 0,
        };
        let all = vec![
            rec("images/a.tar", "sha256:abcd1234", "a:1"),
            rec("images/b.tar", "sha256:ef567890", "b:1"),
        ];
        assert_eq!(select(&all, None).unwrap().len(), 2);
        assert_eq!(select(&all, Some("b:1")).unwrap()[0].item, "images/b.tar");
        assert_eq!(select(&all, Some("abcd")).unwrap()[0].item, "images/a.tar");
        assert_eq!(
            select(&all, Some("sha256:ef56")).unwrap()[0].item,
            "images/b.tar"
        );
        assert!(select(&all, Some("c:1"))
            .unwrap_err()
            .to_string()
            .contains("a:1"));
        assert!(select(&[], None).is_err());
    }
}
