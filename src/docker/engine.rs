//! The engine client: a bollard connection to the Docker engine with the
//! tokio runtime that drives it; inspects, exports (`docker save`) as a
//! reader, loads (`docker load`) from a writer, and removes tags.

use super::{Error, Result};
use crate::repo;
use bollard::query_parameters::ImportImageOptions;
use bollard::{Docker, API_DEFAULT_VERSION};
use bytes::{Buf, Bytes};
use futures_util::StreamExt;
use std::io::{self, Read, Write};

/// Seconds a single engine request may take: exports and loads of
/// multi-gigabyte images run for minutes on slow disks.
const TIMEOUT_SECS: u64 = 6 * 3600;

/// A connection to a Docker engine, with the runtime that drives it.
pub struct Engine {
    docker: Docker,
    host: String,
    rt: &'static crate::runtime::Runtime,
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
        let rt = crate::runtime::get().map_err(Error::Runtime)?;
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

    pub(super) fn client(&self) -> &Docker {
        &self.docker
    }

    pub(super) fn runtime(&self) -> &'static crate::runtime::Runtime {
        self.rt
    }

    /// The environment a container was started with (`KEY=VALUE`).
    pub fn container_env(&self, container: &str) -> Result<Vec<String>> {
        let c = self
            .rt
            .block_on(self.docker.inspect_container(container, None))
            .map_err(|e| self.container_error(container, e))?;
        if c.state.as_ref().and_then(|s| s.running) != Some(true) {
            return Err(Error::NotRunning {
                container: container.to_string(),
            });
        }
        Ok(c.config.and_then(|c| c.env).unwrap_or_default())
    }

    /// An error of a request about `container`: a container the engine
    /// does not know, or one not running, is said so.
    pub(super) fn container_error(&self, container: &str, e: bollard::errors::Error) -> Error {
        match e {
            bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            } => Error::NoSuchContainer {
                container: container.to_string(),
                host: self.host.clone(),
            },
            bollard::errors::Error::DockerResponseServerError {
                status_code: 409, ..
            } => Error::NotRunning {
                container: container.to_string(),
            },
            e => self.engine_error(e),
        }
    }

    pub(super) fn engine_error(&self, e: bollard::errors::Error) -> Error {
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
        let body = self.docker.export_images(&[image]);
        self.body_reader(
            body,
            format!("exporting from the Docker engine at {}", self.host),
        )
    }

    /// A response body as a reader: the transfer runs on the runtime's
    /// thread, a bounded channel keeps at most a few MiB in flight; an
    /// error of the body ends the reader with `what: error`.
    pub(super) fn body_reader(
        &self,
        body: impl futures_util::Stream<Item = std::result::Result<Bytes, bollard::errors::Error>>
            + Send
            + 'static,
        what: String,
    ) -> ChannelReader {
        let (tx, rx) = tokio::sync::mpsc::channel(256);
        self.rt.spawn(async move {
            let mut body = Box::pin(body);
            while let Some(part) = body.next().await {
                let part = part.map_err(|e| io::Error::other(format!("{what}: {e}")));
                let stop = part.is_err();
                if tx.send(part).await.is_err() || stop {
                    break;
                }
            }
        });
        ChannelReader::new(rx)
    }

    /// Streams `write`'s output into `docker load`; returns the engine's
    /// messages. `write` runs on its own thread.
    pub fn load(
        &self,
        write: impl FnOnce(&mut dyn Write) -> repo::Result<()> + Send,
    ) -> Result<Vec<String>> {
        self.upload(write, |body| async move {
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
            Ok(msgs)
        })
    }

    /// Streams `write`'s output as the body of the request `send` makes
    /// (a load, an upload into a container); `write` runs on its own
    /// thread, a bounded channel keeps at most a few MiB in flight. A
    /// failing `write` makes the engine see a failed upload, never a
    /// short body; its error is the one returned.
    pub(super) fn upload<T, F>(
        &self,
        write: impl FnOnce(&mut dyn Write) -> repo::Result<()> + Send,
        send: impl FnOnce(UploadBody) -> F,
    ) -> Result<T>
    where
        F: std::future::Future<Output = std::result::Result<T, bollard::errors::Error>>,
    {
        let (tx, rx) = tokio::sync::mpsc::channel::<io::Result<Bytes>>(16);
        std::thread::scope(|s| {
            let writer = s.spawn(move || {
                let mut w = ChannelWriter::new(tx, "the Docker engine stopped reading");
                let r = write(&mut w).and_then(|()| w.flush().map_err(repo::Error::Output));
                if let Err(e) = &r {
                    let _ = w.tx.blocking_send(Err(io::Error::other(e.to_string())));
                }
                r
            });
            let body = Box::pin(futures_util::stream::unfold(rx, |mut rx| async move {
                rx.recv().await.map(|x| (x, rx))
            }));
            let sent = self.rt.block_on(send(body));
            match (writer.join().expect("upload thread"), sent) {
                (Ok(()), Ok(v)) => Ok(v),
                // The engine stopped reading: its answer says why.
                (Err(repo::Error::Output(e)), Err(s)) if e.kind() == io::ErrorKind::BrokenPipe => {
                    Err(self.engine_error(s))
                }
                (Err(w), _) => Err(w.into()),
                (Ok(()), Err(s)) => Err(self.engine_error(s)),
            }
        })
    }

    /// Tags `image` (a reference or an id) as `repo:tag`.
    pub fn tag(&self, image: &str, repo: &str, tag: &str) -> Result<()> {
        let opts = bollard::query_parameters::TagImageOptions {
            repo: Some(repo.to_string()),
            tag: Some(tag.to_string()),
        };
        self.rt
            .block_on(self.docker.tag_image(image, Some(opts)))
            .map_err(|e| self.engine_error(e))
    }

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

/// The body of an upload: what the writer of [`Engine::upload`] sends.
pub(super) type UploadBody =
    std::pin::Pin<Box<dyn futures_util::Stream<Item = io::Result<Bytes>> + Send + 'static>>;

/// A reader of chunks a task on the runtime sends through a bounded
/// channel (an export's body, a command's output); an error sent ends it.
pub(super) struct ChannelReader {
    rx: tokio::sync::mpsc::Receiver<io::Result<Bytes>>,
    cur: Bytes,
}

impl ChannelReader {
    pub(super) fn new(rx: tokio::sync::mpsc::Receiver<io::Result<Bytes>>) -> Self {
        ChannelReader {
            rx,
            cur: Bytes::new(),
        }
    }
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.cur.is_empty() {
            match self.rx.blocking_recv() {
                None => return Ok(0),
                Some(Ok(b)) => self.cur = b,
                Some(Err(e)) => return Err(e),
            }
        }
        let n = buf.len().min(self.cur.len());
        buf[..n].copy_from_slice(&self.cur[..n]);
        self.cur.advance(n);
        Ok(n)
    }
}

/// A writer whose output a task on the runtime receives through a bounded
/// channel in 1 MiB pieces (an image load's body, a command's input);
/// `gone` is the error when the receiver stopped.
pub(super) struct ChannelWriter {
    pub(super) tx: tokio::sync::mpsc::Sender<io::Result<Bytes>>,
    buf: Vec<u8>,
    gone: &'static str,
}

impl ChannelWriter {
    pub(super) fn new(
        tx: tokio::sync::mpsc::Sender<io::Result<Bytes>>,
        gone: &'static str,
    ) -> Self {
        ChannelWriter {
            tx,
            buf: Vec::with_capacity(1 << 20),
            gone,
        }
    }

    fn send(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let full = std::mem::replace(&mut self.buf, Vec::with_capacity(1 << 20));
        self.tx
            .blocking_send(Ok(Bytes::from(full)))
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, self.gone))
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
