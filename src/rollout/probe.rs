//! The HTTP prober: GETs a probe's path on every endpoint of a color each interval and
//! reports what each endpoint answered, with the time, to one channel; the verdicts on
//! those reports are [`super::gate`]'s.
//!
//! Each probe is an HTTP/1.1 `GET` on a fresh connection (`Host: <endpoint>`,
//! `Connection: close`, `User-Agent: switchyard-probe`), so an endpoint whose listener is
//! gone fails at once. It must end within the probe's `timeout`: connecting, the response
//! head and up to [`MAX_BODY`] of the body (the rest is never read; only the status is
//! judged). An endpoint has one probe in flight at a time, so its reports come in the
//! order its probes were sent; a probe slower than the interval delays the next one.
//!
//! Probing is started per target (a service's color) and runs on the caller's Tokio
//! runtime until its [`ProbeHandle`] is dropped or the report channel's receiver is.

use std::net::SocketAddr;
use std::pin::pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::Request;
use hyper::body::Incoming;
use hyper::header::{CONNECTION, HOST, USER_AGENT};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio::time::MissedTickBehavior;
use tracing::debug;

use super::gate::ProbeResult;
use crate::state::{Color, Probe};

/// The most of a response body a probe reads; the rest is left unread.
pub const MAX_BODY: usize = 4 * 1024;

/// The most a response head may take (hyper's smallest read buffer).
const MAX_HEAD: usize = 8 * 1024;

/// What a probe says it is.
const USER_AGENT_VALUE: &str = "switchyard-probe";

/// The shortest interval between two probes of an endpoint, whatever the probe says
/// (a zero interval would be a busy loop).
const MIN_INTERVAL: Duration = Duration::from_millis(10);

/// What is probed: one color of one service.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Target {
    pub service: String,
    pub color: Color,
}

/// One probe's result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeReport {
    pub target: Target,
    pub endpoint: SocketAddr,
    pub result: ProbeResult,
    /// When the result came (on Tokio's clock, so paused-time tests see their own).
    pub at: Instant,
}

/// Starts probing targets; every target's reports go to the same channel.
#[derive(Debug, Clone)]
pub struct Prober {
    /// Bounded: a receiver that falls behind holds the probing tasks (each waits to hand
    /// over its one report) instead of letting reports pile up.
    reports: mpsc::Sender<ProbeReport>,
}

/// Probing of one target; dropping it stops the probing (a probe in flight is abandoned).
#[derive(Debug)]
#[must_use = "probing stops when the handle is dropped"]
pub struct ProbeHandle {
    /// One task per endpoint; a `JoinSet` aborts them all when dropped.
    tasks: JoinSet<()>,
}

impl Prober {
    /// A prober whose targets all report to `reports`.
    pub fn new(reports: mpsc::Sender<ProbeReport>) -> Prober {
        Prober { reports }
    }

    /// Probes each of `endpoints` of `target` every `probe.interval`, the first time at
    /// once, until the handle is dropped. Must be called within a Tokio runtime.
    pub fn start(&self, target: Target, probe: &Probe, endpoints: &[SocketAddr]) -> ProbeHandle {
        let request = Arc::new(ProbeRequest {
            path: probe.path.clone(),
            status: probe.status,
            timeout: probe.timeout,
            interval: probe.interval.max(MIN_INTERVAL),
        });
        let mut tasks = JoinSet::new();
        for &endpoint in endpoints {
            let reports = self.reports.clone();
            tasks.spawn(probe_endpoint(
                target.clone(),
                endpoint,
                request.clone(),
                reports,
            ));
        }
        ProbeHandle { tasks }
    }
}

impl ProbeHandle {
    /// How many endpoints are being probed.
    pub fn endpoints(&self) -> usize {
        self.tasks.len()
    }
}

/// How a target's endpoints are probed, shared by their tasks.
#[derive(Debug)]
struct ProbeRequest {
    path: String,
    /// Only for the log: the gate judges the result.
    status: u16,
    timeout: Duration,
    interval: Duration,
}

/// Probes `endpoint` every interval, the first time at once, until the task is aborted
/// or nobody reads the reports.
async fn probe_endpoint(
    target: Target,
    endpoint: SocketAddr,
    request: Arc<ProbeRequest>,
    reports: mpsc::Sender<ProbeReport>,
) {
    let mut ticks = tokio::time::interval(request.interval);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let result = probe_once(endpoint, &request.path, request.timeout).await;
        if !result.passed(request.status) {
            debug!(service = %target.service, color = %target.color, %endpoint, %result,
                expected = request.status, "probe failed");
        }
        let report = ProbeReport {
            target: target.clone(),
            endpoint,
            result,
            at: tokio::time::Instant::now().into_std(),
        };
        if reports.send(report).await.is_err() {
            return;
        }
    }
}

/// One `GET path` on `endpoint` on a fresh connection, all of it within `timeout`.
pub async fn probe_once(endpoint: SocketAddr, path: &str, timeout: Duration) -> ProbeResult {
    match tokio::time::timeout(timeout, exchange(endpoint, path)).await {
        Ok(Ok((status, _body))) => ProbeResult::Status(status),
        Ok(Err(failure)) => failure,
        Err(_elapsed) => ProbeResult::Timeout(timeout),
    }
}

/// One `GET path` on `endpoint` within `timeout`: the status and at most [`MAX_BODY`]
/// bytes of the body (the schema-version sources read it).
pub async fn get(
    endpoint: SocketAddr,
    path: &str,
    timeout: Duration,
) -> Result<(u16, Vec<u8>), ProbeResult> {
    match tokio::time::timeout(timeout, exchange(endpoint, path)).await {
        Ok(answer) => answer,
        Err(_elapsed) => Err(ProbeResult::Timeout(timeout)),
    }
}

/// Connects, sends the request, reads the head and at most [`MAX_BODY`] of the body.
async fn exchange(endpoint: SocketAddr, path: &str) -> Result<(u16, Vec<u8>), ProbeResult> {
    let request = Request::get(path)
        .header(HOST, endpoint.to_string())
        .header(USER_AGENT, USER_AGENT_VALUE)
        .header(CONNECTION, "close")
        .body(Empty::<Bytes>::new())
        .map_err(|e| ProbeResult::Error(format!("invalid probe path {path:?}: {e}")))?;
    let stream = TcpStream::connect(endpoint).await.map_err(|e| {
        if e.kind() == std::io::ErrorKind::ConnectionRefused {
            ProbeResult::Refused
        } else {
            ProbeResult::Error(format!("connect: {e}"))
        }
    })?;
    let _ = stream.set_nodelay(true);
    let (mut sender, connection) = hyper::client::conn::http1::Builder::new()
        .max_buf_size(MAX_HEAD)
        .handshake(TokioIo::new(stream))
        .await
        .map_err(|e| ProbeResult::Error(format!("handshake: {e}")))?;
    let mut answer = pin!(async move {
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| format!("request: {e}"))?;
        let status = response.status().as_u16();
        let body = read_at_most(response.into_body(), MAX_BODY)
            .await
            .map_err(|e| format!("response body: {e}"))?;
        Ok::<_, String>((status, body))
    });
    // The connection is driven here, not on a task of its own, so nothing outlives the
    // probe (a timeout drops both).
    let mut connection = pin!(connection);
    let outcome = tokio::select! {
        biased;
        outcome = &mut answer => outcome,
        ended = &mut connection => {
            // Whatever the connection delivered before it ended, the answer has it.
            match (answer.await, ended) {
                (Ok(status), _) => Ok(status),
                (Err(_), Err(e)) => Err(format!("connection: {e}")),
                (Err(e), Ok(())) => Err(e),
            }
        }
    };
    outcome.map_err(ProbeResult::Error)
}

/// Reads frames until the body ends or `limit` bytes have come; keeps at most `limit`.
async fn read_at_most(mut body: Incoming, limit: usize) -> Result<Vec<u8>, hyper::Error> {
    let mut read = Vec::new();
    while read.len() < limit {
        match body.frame().await {
            None => break,
            Some(frame) => {
                if let Some(data) = frame?.data_ref() {
                    let room = limit - read.len();
                    read.extend_from_slice(&data[..data.len().min(room)]);
                }
            }
        }
    }
    Ok(read)
}
