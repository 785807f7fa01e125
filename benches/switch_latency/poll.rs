//! The pollers: threads sending requests through Envoy back to back and reporting every
//! color they read to the [`Probe`] the flip loop watches.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::Request;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::flips::Color;

/// How long one poll request may take before its connection is dropped and redone.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// What the pollers are looking for, shared between them and the flip loop.
pub struct Probe {
    /// The color awaited and when a response from it first arrived. A mutex (held for a
    /// few instructions per response) so that the color and its sighting change together:
    /// a poller must never credit a new flip with a response meant for the last one.
    expect: Mutex<Expect>,
    responses: AtomicU64,
    errors: AtomicU64,
    stop: AtomicBool,
}

#[derive(Default)]
struct Expect {
    want: Option<Color>,
    seen: Option<Instant>,
}

impl Probe {
    pub fn new() -> Arc<Probe> {
        Arc::new(Probe {
            expect: Mutex::new(Expect::default()),
            responses: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            stop: AtomicBool::new(false),
        })
    }

    /// Starts waiting for `color`.
    pub fn expect(&self, color: Color) {
        *self.expect.lock().unwrap() = Expect {
            want: Some(color),
            seen: None,
        };
    }

    /// When the first response from the awaited color arrived, if it has.
    pub fn seen(&self) -> Option<Instant> {
        self.expect.lock().unwrap().seen
    }

    /// A poller read a response from `color` at `at`.
    fn observe(&self, color: Color, at: Instant) {
        self.responses.fetch_add(1, Ordering::Relaxed);
        let mut expect = self.expect.lock().unwrap();
        if expect.want == Some(color) && expect.seen.is_none() {
            expect.seen = Some(at);
        }
    }

    /// Responses and errors so far.
    pub fn counts(&self) -> (u64, u64) {
        (
            self.responses.load(Ordering::Relaxed),
            self.errors.load(Ordering::Relaxed),
        )
    }
}

/// Poller threads, each sending requests back to back on one keep-alive connection;
/// stopped and joined on drop.
///
/// Threads with their own single-threaded runtimes rather than tasks on the bench's
/// runtime: the in-process switchyard runs there, and it should get the CPU from the
/// operating system's scheduler, as the real binary does, not queue behind pollers.
pub struct Pollers {
    probe: Arc<Probe>,
    threads: Vec<JoinHandle<()>>,
}

impl Pollers {
    pub fn start(addr: SocketAddr, count: usize, probe: Arc<Probe>) -> Pollers {
        let threads = (0..count)
            .map(|i| {
                let probe = probe.clone();
                std::thread::Builder::new()
                    .name(format!("poller-{i}"))
                    .spawn(move || poll(addr, &probe))
                    .expect("spawn a poller thread")
            })
            .collect();
        Pollers { probe, threads }
    }
}

impl Drop for Pollers {
    fn drop(&mut self) {
        self.probe.stop.store(true, Ordering::Relaxed);
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

/// One poller: `GET /` through Envoy until told to stop, reporting every color it reads.
fn poll(addr: SocketAddr, probe: &Probe) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("build a poller runtime");
    runtime.block_on(async {
        let mut conn = None;
        while !probe.stop.load(Ordering::Relaxed) {
            match tokio::time::timeout(REQUEST_TIMEOUT, get_color(&mut conn, addr)).await {
                Ok(Ok(color)) => probe.observe(color, Instant::now()),
                Ok(Err(_)) | Err(_) => {
                    // Reconnect; don't spin if Envoy is not listening (yet).
                    conn = None;
                    probe.errors.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            }
        }
    });
}

/// One request on the keep-alive connection `conn` (opened first if needed); the color
/// from the `x-color` header, once the whole response has been read.
async fn get_color(
    conn: &mut Option<SendRequest<Empty<Bytes>>>,
    addr: SocketAddr,
) -> Result<Color, String> {
    if conn.as_ref().is_none_or(|c| c.is_closed()) {
        let stream = TcpStream::connect(addr)
            .await
            .map_err(|e| format!("connect: {e}"))?;
        stream
            .set_nodelay(true)
            .map_err(|e| format!("nodelay: {e}"))?;
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| format!("handshake: {e}"))?;
        tokio::spawn(connection);
        *conn = Some(sender);
    }
    let sender = conn.as_mut().expect("connected above");
    sender
        .ready()
        .await
        .map_err(|e| format!("not ready: {e}"))?;
    let request = Request::get("/")
        .header("host", "summarizer.example")
        .body(Empty::new())
        .expect("a valid request");
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| format!("send: {e}"))?;
    let color = response
        .headers()
        .get("x-color")
        .and_then(|v| Color::from_header(v.as_bytes()));
    let status = response.status();
    response
        .into_body()
        .collect()
        .await
        .map_err(|e| format!("body: {e}"))?;
    color.ok_or_else(|| format!("HTTP {status} without a color"))
}
