//! A load client: keeps `concurrency` requests in flight through Envoy over keep-alive
//! HTTP/1.1 connections (one per worker) or multiplexed HTTP/2 (h2c) connections, and
//! records every outcome with when it was sent, so a test can prove that a switch
//! dropped nothing and that traffic converged.
//!
//! Also used by `examples/load.rs` through `#[path]`.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::Request;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpStream;
use tokio::sync::Mutex;
use tokio::task::JoinSet;

/// Which HTTP version the client speaks to Envoy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// One keep-alive HTTP/1.1 connection per worker.
    Http1,
    /// HTTP/2 with prior knowledge; workers share `connections` connections.
    Http2,
}

/// One request's outcome.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// When the request was sent, relative to the start of the run.
    pub sent: Duration,
    pub latency: Duration,
    /// `Ok((status, first word of the body))` or `Err(what failed)`.
    pub result: Result<(u16, String), String>,
}

/// Everything a run recorded.
#[derive(Debug, Default)]
pub struct Report {
    pub outcomes: Vec<Outcome>,
    pub started: Option<Instant>,
}

impl Report {
    pub fn total(&self) -> usize {
        self.outcomes.len()
    }

    /// Requests that got a response other than 2xx.
    pub fn non_2xx(&self) -> Vec<&Outcome> {
        self.outcomes
            .iter()
            .filter(|o| matches!(o.result, Ok((s, _)) if !(200..300).contains(&s)))
            .collect()
    }

    /// Requests that got no response at all (connect, reset, timeout).
    pub fn errors(&self) -> Vec<&Outcome> {
        self.outcomes.iter().filter(|o| o.result.is_err()).collect()
    }

    /// Successful requests sent at or after `since` (from the start) whose color is not
    /// `color`.
    pub fn wrong_color_after(&self, since: Duration, color: &str) -> Vec<&Outcome> {
        self.outcomes
            .iter()
            .filter(|o| o.sent >= since)
            .filter(|o| matches!(&o.result, Ok((_, c)) if c != color))
            .collect()
    }

    /// Count of successful responses by color.
    pub fn by_color(&self, color: &str) -> usize {
        self.outcomes
            .iter()
            .filter(|o| matches!(&o.result, Ok((_, c)) if c == color))
            .count()
    }

    /// Prints the summary and fails the test if any request got a non-2xx response or no
    /// response at all, showing the first of each.
    pub fn assert_nothing_dropped(&self) {
        eprintln!("{}", self.summary());
        let non_2xx = self.non_2xx();
        assert!(
            non_2xx.is_empty(),
            "{} non-2xx responses, first: {:?}",
            non_2xx.len(),
            non_2xx.first()
        );
        let errors = self.errors();
        assert!(
            errors.is_empty(),
            "{} connection errors, first: {:?}",
            errors.len(),
            errors.first()
        );
    }

    /// A one-line summary for test output.
    pub fn summary(&self) -> String {
        format!(
            "{} requests: {} blue, {} green, {} non-2xx, {} errors",
            self.total(),
            self.by_color("blue"),
            self.by_color("green"),
            self.non_2xx().len(),
            self.errors().len()
        )
    }
}

/// A running load; [`Load::stop`] ends it and returns the report.
pub struct Load {
    stop: Arc<AtomicBool>,
    tasks: JoinSet<Vec<Outcome>>,
    started: Instant,
}

type H1Sender = hyper::client::conn::http1::SendRequest<Empty<Bytes>>;
type H2Sender = hyper::client::conn::http2::SendRequest<Empty<Bytes>>;

/// How long one request may take before it counts as an error.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

impl Load {
    /// Starts `concurrency` workers sending `GET path` with `Host: host` to `addr`.
    pub async fn start(
        addr: SocketAddr,
        host: &str,
        path: &str,
        protocol: Protocol,
        concurrency: usize,
    ) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let started = Instant::now();
        let mut tasks = JoinSet::new();
        // HTTP/2: a few connections, each shared (multiplexed) by several workers.
        let h2_connections = concurrency.div_ceil(8).max(1);
        let shared: Vec<Arc<Mutex<Option<H2Sender>>>> = (0..h2_connections)
            .map(|_| Arc::new(Mutex::new(None)))
            .collect();
        for worker in 0..concurrency {
            let stop = stop.clone();
            let (host, path) = (host.to_owned(), path.to_owned());
            let h2 = shared[worker % h2_connections].clone();
            tasks.spawn(async move {
                let mut outcomes = Vec::new();
                let mut h1: Option<H1Sender> = None;
                while !stop.load(Ordering::Relaxed) {
                    let sent = started.elapsed();
                    let t0 = Instant::now();
                    let result = tokio::time::timeout(REQUEST_TIMEOUT, async {
                        match protocol {
                            Protocol::Http1 => send_h1(&mut h1, addr, &host, &path).await,
                            Protocol::Http2 => send_h2(&h2, addr, &host, &path).await,
                        }
                    })
                    .await
                    .unwrap_or_else(|_| Err(format!("no response within {REQUEST_TIMEOUT:?}")));
                    if result.is_err() {
                        h1 = None;
                    }
                    outcomes.push(Outcome {
                        sent,
                        latency: t0.elapsed(),
                        result,
                    });
                }
                outcomes
            });
        }
        Load {
            stop,
            tasks,
            started,
        }
    }

    /// Time since the load started (the clock of [`Outcome::sent`]).
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// Stops every worker after its current request and collects the outcomes.
    pub async fn stop(mut self) -> Report {
        self.stop.store(true, Ordering::Relaxed);
        let mut outcomes = Vec::new();
        while let Some(r) = self.tasks.join_next().await {
            outcomes.extend(r.expect("load worker panicked"));
        }
        outcomes.sort_by_key(|o| o.sent);
        Report {
            outcomes,
            started: Some(self.started),
        }
    }
}

fn request(host: &str, path: &str) -> Result<Request<Empty<Bytes>>, String> {
    Request::get(path)
        .header("host", host)
        .body(Empty::new())
        .map_err(|e| e.to_string())
}

async fn read(
    response: Result<hyper::Response<hyper::body::Incoming>, hyper::Error>,
) -> Result<(u16, String), String> {
    let response = response.map_err(|e| format!("request failed: {e}"))?;
    let status = response.status().as_u16();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| format!("body failed: {e}"))?
        .to_bytes();
    let text = String::from_utf8_lossy(&body);
    Ok((
        status,
        text.split_whitespace()
            .next()
            .unwrap_or_default()
            .to_owned(),
    ))
}

async fn send_h1(
    conn: &mut Option<H1Sender>,
    addr: SocketAddr,
    host: &str,
    path: &str,
) -> Result<(u16, String), String> {
    if conn.as_ref().is_none_or(|c| c.is_closed()) {
        let stream = TcpStream::connect(addr)
            .await
            .map_err(|e| format!("connect failed: {e}"))?;
        stream.set_nodelay(true).ok();
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| format!("handshake failed: {e}"))?;
        tokio::spawn(connection);
        *conn = Some(sender);
    }
    let sender = conn.as_mut().expect("connected above");
    sender
        .ready()
        .await
        .map_err(|e| format!("connection not ready: {e}"))?;
    read(sender.send_request(request(host, path)?).await).await
}

async fn send_h2(
    conn: &Mutex<Option<H2Sender>>,
    addr: SocketAddr,
    host: &str,
    path: &str,
) -> Result<(u16, String), String> {
    let mut sender = {
        let mut guard = conn.lock().await;
        if guard.as_ref().is_none_or(|c| c.is_closed()) {
            let stream = TcpStream::connect(addr)
                .await
                .map_err(|e| format!("connect failed: {e}"))?;
            stream.set_nodelay(true).ok();
            let (sender, connection) =
                hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
                    .await
                    .map_err(|e| format!("h2 handshake failed: {e}"))?;
            tokio::spawn(connection);
            *guard = Some(sender);
        }
        guard.as_ref().expect("connected above").clone()
    };
    sender
        .ready()
        .await
        .map_err(|e| format!("connection not ready: {e}"))?;
    read(sender.send_request(request(host, path)?).await).await
}
