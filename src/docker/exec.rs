//! Commands run inside a container through the engine's exec endpoint
//! (what `docker exec` does), their standard output read as a stream: a
//! database in a container is dumped by its own `pg_dump`, whose major
//! version always matches its server's, with no client on the host.

use super::engine::{ChannelWriter, Engine};
use super::{Error, Result};
use bollard::container::LogOutput;
use bollard::exec::{CreateExecOptions, StartExecOptions, StartExecResults};
use bytes::{Buf, Bytes};
use futures_util::StreamExt;
use std::io::{self, Read, Write};
use std::sync::{Arc, Mutex};

/// The largest piece of output handed to the reading thread at once, and
/// how many may wait: at most 4 MiB in flight.
const OUTPUT_PIECE: usize = 512 << 10;
const OUTPUT_PIECES: usize = 8;
const OUTPUT_WAIT: std::time::Duration = std::time::Duration::from_millis(20);

/// The most of a command's standard error kept for its error message.
const STDERR_KEPT: usize = 64 << 10;

/// A reader of batches of frames a task on the runtime sends through a
/// bounded channel; an error sent ends it.
struct BatchReader {
    rx: tokio::sync::mpsc::Receiver<io::Result<Vec<Bytes>>>,
    cur: std::collections::VecDeque<Bytes>,
}

impl Read for BatchReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            match self.cur.front_mut() {
                Some(b) if b.is_empty() => {
                    self.cur.pop_front();
                }
                Some(b) => {
                    let n = buf.len().min(b.len());
                    buf[..n].copy_from_slice(&b[..n]);
                    b.advance(n);
                    return Ok(n);
                }
                None => match self.rx.blocking_recv() {
                    None => return Ok(0),
                    Some(Ok(batch)) => self.cur.extend(batch),
                    Some(Err(e)) => return Err(e),
                },
            }
        }
    }
}

/// What to run inside a container.
#[derive(Clone, Debug, Default)]
pub struct ExecSpec {
    /// The program and its arguments (no shell).
    pub cmd: Vec<String>,
    /// `KEY=VALUE` pairs added to the container's environment.
    pub env: Vec<String>,
    /// The user to run as (the image's default when None).
    pub user: Option<String>,
    /// Attach its standard input: [`Exec::input`] writes to it.
    pub stdin: bool,
    /// Discard its standard output (nothing to [`Read`]).
    pub discard_stdout: bool,
}

/// A command running inside a container: [`Read`] its standard output
/// to the end, then [`Exec::finish`] for its exit code and standard
/// error. The transfer runs on the runtime's thread; a bounded channel
/// keeps at most a few MiB in flight.
pub struct Exec<'e> {
    engine: &'e Engine,
    id: String,
    container: String,
    output: BatchReader,
    input: Option<ExecInput>,
    stderr: Arc<Mutex<Vec<u8>>>,
}

/// The standard input of a command running inside a container: what is
/// written goes to it in 1 MiB pieces; [`ExecInput::close`] (or dropping
/// it) ends it, as closing a pipe would. A write fails once the command
/// has exited.
pub struct ExecInput {
    w: ChannelWriter,
}

impl ExecInput {
    /// Sends what is buffered and ends the input.
    pub fn close(mut self) -> io::Result<()> {
        self.w.flush()
    }
}

impl io::Write for ExecInput {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.w.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.w.flush()
    }
}

/// How a command run inside a container ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExecStatus {
    /// Its exit code (None: the engine did not say, it was killed).
    pub code: Option<i64>,
    /// The end of its standard error.
    pub stderr: String,
}

impl ExecStatus {
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }
}

impl Engine {
    /// Starts `spec` inside `container` (a name or an id), which must be
    /// running.
    pub fn exec(&self, container: &str, spec: &ExecSpec) -> Result<Exec<'_>> {
        let (docker, rt) = (self.client(), self.runtime());
        let engine_error = |e: bollard::errors::Error| self.container_error(container, e);
        let opts = CreateExecOptions {
            attach_stdin: Some(spec.stdin),
            attach_stdout: Some(!spec.discard_stdout),
            attach_stderr: Some(true),
            cmd: Some(spec.cmd.clone()),
            env: (!spec.env.is_empty()).then(|| spec.env.clone()),
            user: spec.user.clone(),
            ..Default::default()
        };
        let id = rt
            .block_on(docker.create_exec(container, opts))
            .map_err(engine_error)?
            .id;
        let start = StartExecOptions {
            detach: false,
            tty: false,
            output_capacity: None,
        };
        let StartExecResults::Attached { mut output, input } = rt
            .block_on(docker.start_exec(&id, Some(start)))
            .map_err(engine_error)?
        else {
            return Err(Error::Engine {
                host: self.host().to_string(),
                what: format!("exec in container '{container}' started detached"),
            });
        };
        // Output comes in frames of a few KiB; handing each to the reading
        // thread cost a wake-up apiece (a third of relic's CPU on a dump).
        // Frames are gathered, uncopied, into batches of OUTPUT_PIECE
        // bytes; a batch goes when full, at the end, or OUTPUT_WAIT after
        // its first frame, so a slow command's output is not held back long.
        let (tx, rx) = tokio::sync::mpsc::channel(OUTPUT_PIECES);
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let errs = stderr.clone();
        rt.spawn(async move {
            let mut batch: Vec<bytes::Bytes> = Vec::new();
            let mut size = 0;
            let mut deadline = tokio::time::Instant::now();
            loop {
                let part = if batch.is_empty() {
                    output.next().await
                } else {
                    match tokio::time::timeout_at(deadline, output.next()).await {
                        Ok(part) => part,
                        Err(_) => {
                            size = 0;
                            if tx.send(Ok(std::mem::take(&mut batch))).await.is_err() {
                                return;
                            }
                            continue;
                        }
                    }
                };
                let Some(part) = part else { break };
                match part {
                    Ok(LogOutput::StdOut { message }) => {
                        if batch.is_empty() {
                            deadline = tokio::time::Instant::now() + OUTPUT_WAIT;
                        }
                        size += message.len();
                        batch.push(message);
                        if size >= OUTPUT_PIECE {
                            size = 0;
                            if tx.send(Ok(std::mem::take(&mut batch))).await.is_err() {
                                return;
                            }
                        }
                    }
                    Ok(LogOutput::StdErr { message }) => {
                        let mut e = errs.lock().expect("stderr buffer");
                        e.extend_from_slice(&message);
                        if e.len() > 2 * STDERR_KEPT {
                            let cut = e.len() - STDERR_KEPT;
                            e.drain(..cut);
                        }
                    }
                    Ok(_) => {}
                    Err(e) => {
                        if !batch.is_empty() {
                            let _ = tx.send(Ok(std::mem::take(&mut batch))).await;
                        }
                        let _ = tx.send(Err(io::Error::other(e.to_string()))).await;
                        return;
                    }
                }
            }
            if !batch.is_empty() {
                let _ = tx.send(Ok(batch)).await;
            }
        });
        let input = spec.stdin.then(|| {
            let (tx, mut rx) = tokio::sync::mpsc::channel::<io::Result<bytes::Bytes>>(4);
            let mut input = input;
            rt.spawn(async move {
                use tokio::io::AsyncWriteExt;
                while let Some(Ok(piece)) = rx.recv().await {
                    if input.write_all(&piece).await.is_err() {
                        // The command exited: dropping rx fails the writer.
                        return;
                    }
                }
                // The end of the input, as closing a pipe: the engine
                // closes the command's stdin when its connection's write
                // half is shut.
                let _ = input.shutdown().await;
            });
            ExecInput {
                w: ChannelWriter::new(tx, "the command inside the container stopped reading"),
            }
        });
        Ok(Exec {
            engine: self,
            id,
            container: container.to_string(),
            output: BatchReader {
                rx,
                cur: Default::default(),
            },
            input,
            stderr,
        })
    }

    /// Runs `spec` inside `container` to its end; returns its standard
    /// output and how it ended.
    pub fn exec_output(&self, container: &str, spec: &ExecSpec) -> Result<(Vec<u8>, ExecStatus)> {
        let mut e = self.exec(container, spec)?;
        let mut out = Vec::new();
        e.read_to_end(&mut out).map_err(|err| Error::Engine {
            host: self.host().to_string(),
            what: format!("reading from container '{container}': {err}"),
        })?;
        Ok((out, e.finish()?))
    }
}

impl Exec<'_> {
    /// The command's standard input, once (when [`ExecSpec::stdin`]).
    pub fn input(&mut self) -> Option<ExecInput> {
        self.input.take()
    }

    /// Reads what is left of the output, then asks the engine how the
    /// command ended.
    pub fn finish(mut self) -> Result<ExecStatus> {
        io::copy(&mut self, &mut io::sink()).map_err(|e| Error::Engine {
            host: self.engine.host().to_string(),
            what: format!("reading from container '{}': {e}", self.container),
        })?;
        let rt = self.engine.runtime();
        let docker = self.engine.client();
        // The stream ends as the process exits; the engine may record the
        // exit code a moment later.
        let mut code = None;
        for _ in 0..100 {
            let i = rt
                .block_on(docker.inspect_exec(&self.id))
                .map_err(|e| self.engine.container_error(&self.container, e))?;
            if i.running != Some(true) {
                code = i.exit_code;
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let stderr = self.stderr.lock().expect("stderr buffer");
        let from = stderr.len().saturating_sub(STDERR_KEPT);
        Ok(ExecStatus {
            code,
            stderr: String::from_utf8_lossy(&stderr[from..]).trim().to_string(),
        })
    }
}

impl Read for Exec<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.output.read(buf)
    }
}
