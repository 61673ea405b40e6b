//! A loopback TCP proxy for tests of interrupted transfers: it forwards
//! between a client and the relay, counts the bytes each way, and, once
//! armed, cuts the connection carrying the byte that passes a given count
//! in one direction (both halves closed, nothing more forwarded), then lets
//! new connections through again.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};

/// Which way bytes go.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Way {
    /// Client to relay (requests, uploads).
    Up,
    /// Relay to client (answers, downloads).
    Down,
}

#[derive(Default)]
struct Counts {
    up: AtomicU64,
    down: AtomicU64,
    /// The cut: its direction (`true` = down) and the count it fires at.
    armed: AtomicBool,
    cut_down: AtomicBool,
    cut_at: AtomicU64,
    /// Set once the cut happened.
    fired: AtomicBool,
}

impl Counts {
    fn counter(&self, way: Way) -> &AtomicU64 {
        match way {
            Way::Up => &self.up,
            Way::Down => &self.down,
        }
    }
}

pub struct CutProxy {
    /// `http://127.0.0.1:port` of the proxy.
    pub base: String,
    counts: Arc<Counts>,
    task: tokio::task::JoinHandle<()>,
}

impl CutProxy {
    /// A proxy in front of the relay at `target` (`http://host:port`).
    pub async fn start(target: &str) -> Self {
        let target = target
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .to_owned();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let counts = Arc::new(Counts::default());
        let shared = counts.clone();
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let counts = shared.clone();
                let target = target.clone();
                tokio::spawn(async move {
                    if let Ok(relay) = TcpStream::connect(&target).await {
                        forward(client, relay, counts).await;
                    }
                });
            }
        });
        Self { base, counts, task }
    }

    /// Bytes forwarded `way` so far.
    pub fn count(&self, way: Way) -> u64 {
        self.counts.counter(way).load(Ordering::SeqCst)
    }

    /// Cuts the connection that carries `way`'s byte number `at` (counted
    /// from the proxy's start); only the first `at` bytes get through it.
    pub fn cut_at(&self, way: Way, at: u64) {
        self.counts
            .cut_down
            .store(way == Way::Down, Ordering::SeqCst);
        self.counts.cut_at.store(at, Ordering::SeqCst);
        self.counts.fired.store(false, Ordering::SeqCst);
        self.counts.armed.store(true, Ordering::SeqCst);
    }

    /// Whether the armed cut happened.
    pub fn fired(&self) -> bool {
        self.counts.fired.load(Ordering::SeqCst)
    }
}

impl Drop for CutProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Both directions of one connection until either side closes or the cut
/// fires on it.
async fn forward(client: TcpStream, relay: TcpStream, counts: Arc<Counts>) {
    let (client_read, client_write) = client.into_split();
    let (relay_read, relay_write) = relay.into_split();
    let up = pump(client_read, relay_write, Way::Up, counts.clone());
    let down = pump(relay_read, client_write, Way::Down, counts);
    // The first direction to end (closed, or cut) ends the connection:
    // dropping the other closes both sockets.
    tokio::select! {
        () = up => {}
        () = down => {}
    }
}

async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    way: Way,
    counts: Arc<Counts>,
) {
    let mut buffer = vec![0u8; 256 * 1024];
    loop {
        let n = match from.read(&mut buffer).await {
            Ok(0) | Err(_) => {
                let _ = to.shutdown().await;
                // A half-closed request still waits for its answer.
                if way == Way::Up {
                    std::future::pending::<()>().await;
                }
                return;
            }
            Ok(n) => n,
        };
        let mut pass = n;
        let counter = counts.counter(way);
        let watched = counts.armed.load(Ordering::SeqCst)
            && counts.cut_down.load(Ordering::SeqCst) == (way == Way::Down);
        if watched {
            let at = counts.cut_at.load(Ordering::SeqCst);
            let before = counter.load(Ordering::SeqCst);
            if before + n as u64 >= at {
                pass = usize::try_from(at.saturating_sub(before)).unwrap().min(n);
                // Only one connection takes the cut.
                if counts.armed.swap(false, Ordering::SeqCst) {
                    counter.fetch_add(pass as u64, Ordering::SeqCst);
                    let _ = to.write_all(&buffer[..pass]).await;
                    counts.fired.store(true, Ordering::SeqCst);
                    return;
                }
                pass = n;
            }
        }
        counter.fetch_add(pass as u64, Ordering::SeqCst);
        if to.write_all(&buffer[..pass]).await.is_err() {
            return;
        }
    }
}
