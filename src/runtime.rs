//! The one tokio runtime behind relic's async clients: object_store's S3
//! client, bollard's Docker engine client and tokio-postgres.
//!
//! relic's own work runs on plain threads (the write pipeline, the restore
//! readers); the clients only wait on sockets. So one small runtime is
//! started on first use and shared for the life of the process, two worker
//! threads driving every connection, and each caller waits with
//! [`Runtime::block_on`] on its own thread (many may at once: `sync` sends
//! packs from several threads).

use std::io;
use std::sync::OnceLock;
pub use tokio::runtime::Runtime;

static RUNTIME: OnceLock<Runtime> = OnceLock::new();

/// Worker threads: the clients only wait on sockets.
const WORKERS: usize = 2;

/// The process's runtime, started on first use. Fails only when the
/// operating system refuses threads or an event loop.
pub fn get() -> io::Result<&'static Runtime> {
    if let Some(rt) = RUNTIME.get() {
        return Ok(rt);
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(WORKERS)
        .thread_name("relic-io")
        .enable_all()
        .build()?;
    // Two first callers at once: one runtime wins, the other is dropped
    // (outside any async context, where dropping one is allowed).
    Ok(RUNTIME.get_or_init(|| rt))
}

/// Runs `f` on every item, `jobs` at a time on plain threads (requests to
/// a store wait on the runtime); stops at the first error and returns it.
pub fn parallel<T: Sync, E: Send>(
    items: &[T],
    jobs: usize,
    f: impl Fn(&T) -> Result<(), E> + Sync,
) -> Result<(), E> {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Mutex;
    let next = AtomicUsize::new(0);
    let failure: Mutex<Option<E>> = Mutex::new(None);
    std::thread::scope(|s| {
        for _ in 0..jobs.clamp(1, 32).min(items.len()) {
            s.spawn(|| {
                while failure.lock().expect("failure lock").is_none() {
                    let Some(item) = items.get(next.fetch_add(1, Ordering::Relaxed)) else {
                        return;
                    };
                    if let Err(e) = f(item) {
                        failure.lock().expect("failure lock").get_or_insert(e);
                    }
                }
            });
        }
    });
    failure
        .into_inner()
        .expect("failure lock")
        .map_or(Ok(()), Err)
}

#[cfg(test)]
mod tests {
    #[test]
    fn one_runtime_serves_callers_on_many_threads() {
        let a = super::get().unwrap() as *const _ as usize;
        let sums: Vec<u64> = std::thread::scope(|s| {
            let h: Vec<_> = (0..4u64)
                .map(|i| {
                    s.spawn(move || {
                        let rt = super::get().unwrap();
                        assert_eq!(rt as *const _ as usize, a);
                        rt.block_on(async move { i * 2 })
                    })
                })
                .collect();
            h.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert_eq!(sums, vec![0, 2, 4, 6]);
    }
}
