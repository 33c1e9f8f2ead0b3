//! COPY batches sent straight from relic to the server: `jobs`
//! connections, each taking the next batch of rows as it comes, so no
//! `psql` stands in the data path (it would read, parse and write again
//! every byte of the rows).

use super::super::conn::{config, connect, runtime};
use super::super::{Error, Result};
use bytes::Bytes;
use crossbeam_channel::Receiver;
use futures_util::SinkExt;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use tokio_postgres::CopyInSink;

/// Rows of one COPY block, whole lines.
pub(super) struct Batch {
    /// The block's `COPY … FROM stdin` statement, without its `;`.
    pub stmt: Arc<str>,
    /// The table, as the statement names it (for error messages).
    pub table: Arc<str>,
    pub rows: Bytes,
}

/// Loads `batches` on `jobs` connections to `conninfo`, each first running
/// `setup` (the dump's session settings). The first failure sets `stop`
/// (the sender checks it and stops streaming) and is returned; the other
/// connections then drop what is left.
pub(super) fn run(
    conninfo: &str,
    setup: &str,
    jobs: usize,
    hint: &str,
    batches: Receiver<Batch>,
    stop: &AtomicBool,
) -> Result<()> {
    let rt = runtime()?;
    let cfg = config(Some(conninfo))?;
    std::thread::scope(|s| {
        let workers: Vec<_> = (0..jobs)
            .map(|_| {
                let (batches, cfg) = (batches.clone(), &cfg);
                s.spawn(move || {
                    let r = session(rt, cfg, setup, hint, &batches, stop);
                    if r.is_err() {
                        stop.store(true, Ordering::SeqCst);
                    }
                    // The sender never waits on a connection that stopped.
                    for _ in batches {}
                    r
                })
            })
            .collect();
        drop(batches);
        let mut first = Ok(());
        for w in workers {
            let r = w.join().expect("COPY session panicked");
            if first.is_ok() {
                first = r;
            }
        }
        first
    })
}

fn session(
    rt: &crate::runtime::Runtime,
    cfg: &tokio_postgres::Config,
    setup: &str,
    hint: &str,
    batches: &Receiver<Batch>,
    stop: &AtomicBool,
) -> Result<()> {
    let client = connect(rt, cfg)?;
    let failed = |what: String, source| Error::Load {
        what,
        source,
        hint: hint.to_string(),
    };
    rt.block_on(client.batch_execute(setup))
        .map_err(|e| failed("the dump's session settings".into(), e))?;
    // The COPY this connection has open: its batches stream into it, and
    // it ends when a batch of another table comes, or the last.
    let mut open: Option<Open> = None;
    for b in batches {
        if stop.load(Ordering::SeqCst) {
            return Ok(());
        }
        if let Some(o) = open.take_if(|o| o.stmt != b.stmt) {
            let table = o.table.clone();
            rt.block_on(o.finish())
                .map_err(|e| failed(format!("the rows of {table}"), e))?;
        }
        let table = b.table.clone();
        rt.block_on(async {
            if open.is_none() {
                let sink = client.copy_in::<_, Bytes>(&*b.stmt).await?;
                open = Some(Open {
                    stmt: b.stmt,
                    table: b.table,
                    sink: Box::pin(sink),
                });
            }
            let o = open.as_mut().expect("an open COPY");
            o.sink.send(b.rows).await
        })
        .map_err(|e| failed(format!("the rows of {table}"), e))?;
    }
    if let Some(o) = open {
        let table = o.table.clone();
        rt.block_on(o.finish())
            .map_err(|e| failed(format!("the rows of {table}"), e))?;
    }
    Ok(())
}

/// A COPY a connection has open.
struct Open {
    stmt: Arc<str>,
    table: Arc<str>,
    sink: Pin<Box<CopyInSink<Bytes>>>,
}

impl Open {
    /// Ends the COPY: the rows are in when the server says so.
    async fn finish(mut self) -> std::result::Result<u64, tokio_postgres::Error> {
        self.sink.as_mut().finish().await
    }
}
