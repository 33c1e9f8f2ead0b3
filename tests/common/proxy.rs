//! A TCP proxy on loopback in front of a server, for tests and benchmarks
//! of what crosses the network: it counts the bytes each way and the
//! requests (a client write after a response, or the first on a
//! connection), and can hold every request for a fixed delay (this kernel
//! has no netem).

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

#[derive(Default)]
pub struct Counters {
    /// Client to server (uploads, request headers).
    pub up: AtomicU64,
    /// Server to client (downloads, response headers).
    pub down: AtomicU64,
    pub requests: AtomicU64,
}

impl Counters {
    /// (up, down, requests) so far.
    pub fn get(&self) -> (u64, u64, u64) {
        (
            self.up.load(Ordering::SeqCst),
            self.down.load(Ordering::SeqCst),
            self.requests.load(Ordering::SeqCst),
        )
    }
}

pub struct Proxy {
    pub endpoint: String,
    pub counters: Arc<Counters>,
    delay_ms: Arc<AtomicU64>,
}

impl Proxy {
    /// Forwards a free loopback port to `target` (host:port).
    pub fn start(target: &str) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let counters = Arc::new(Counters::default());
        let delay_ms = Arc::new(AtomicU64::new(0));
        let target = target.to_string();
        let (c, d) = (counters.clone(), delay_ms.clone());
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                let Ok(server) = TcpStream::connect(&target) else {
                    continue;
                };
                let _ = client.set_nodelay(true);
                let _ = server.set_nodelay(true);
                let answered = Arc::new(AtomicBool::new(true));
                let (c1, c2, d1) = (c.clone(), c.clone(), d.clone());
                let (cr, sw) = (client.try_clone().unwrap(), server.try_clone().unwrap());
                let a1 = answered.clone();
                std::thread::spawn(move || {
                    pump(cr, sw, |n, buf_start| {
                        c1.up.fetch_add(n, Ordering::SeqCst);
                        if buf_start && a1.swap(false, Ordering::SeqCst) {
                            c1.requests.fetch_add(1, Ordering::SeqCst);
                            let ms = d1.load(Ordering::SeqCst);
                            if ms > 0 {
                                std::thread::sleep(Duration::from_millis(ms));
                            }
                        }
                    })
                });
                std::thread::spawn(move || {
                    pump(server, client, |n, _| {
                        c2.down.fetch_add(n, Ordering::SeqCst);
                        answered.store(true, Ordering::SeqCst);
                    })
                });
            }
        });
        Proxy {
            endpoint: format!("http://127.0.0.1:{port}"),
            counters,
            delay_ms,
        }
    }

    /// Holds every request this long before passing it on.
    pub fn set_delay(&self, ms: u64) {
        self.delay_ms.store(ms, Ordering::SeqCst);
    }
}

/// Copies `from` to `to` until either ends; `seen(n, true)` before each
/// chunk is forwarded.
fn pump(mut from: TcpStream, mut to: TcpStream, mut seen: impl FnMut(u64, bool)) {
    let mut buf = vec![0u8; 256 << 10];
    loop {
        match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                seen(n as u64, true);
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        }
    }
    let _ = to.shutdown(Shutdown::Write);
    let _ = from.shutdown(Shutdown::Read);
}
