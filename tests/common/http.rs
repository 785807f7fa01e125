//! A minimal HTTP/1.1 client for tests: one request per fresh connection,
//! so every call goes through Envoy's listener (and its current routes) anew.
//!
//! Errors are `String`s describing what failed (connect, timeout, ...):
//! tests mostly retry them inside `assert_eventually!` or print them.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::Request;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// Upper bound on one whole request (connect, send, read the body).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// `GET path` with `Host: host` on a fresh connection to `addr`; returns the
/// status and the body (lossily decoded as UTF-8).
pub async fn get(addr: SocketAddr, path: &str, host: &str) -> Result<(u16, String), String> {
    get_with_headers(addr, path, host, &[]).await
}

/// Like [`get`], with extra request headers (e.g. a preview header).
pub async fn get_with_headers(
    addr: SocketAddr,
    path: &str,
    host: &str,
    headers: &[(&str, &str)],
) -> Result<(u16, String), String> {
    let mut request = Request::get(path).header("host", host);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let request = request
        .body(Empty::<Bytes>::new())
        .map_err(|e| format!("bad request {path:?}: {e}"))?;
    tokio::time::timeout(REQUEST_TIMEOUT, send(addr, request))
        .await
        .map_err(|_| format!("GET http://{addr}{path}: no response within {REQUEST_TIMEOUT:?}"))?
        .map_err(|e| format!("GET http://{addr}{path}: {e}"))
}

/// Blocking [`get`]: runs the request on a fresh thread with its own runtime,
/// so it works from sync code and (though it blocks the caller) from inside
/// an async runtime.
pub fn get_blocking(addr: SocketAddr, path: &str, host: &str) -> Result<(u16, String), String> {
    let (path, host) = (path.to_owned(), host.to_owned());
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("cannot build a runtime: {e}"))?
            .block_on(get(addr, &path, &host))
    })
    .join()
    .map_err(|_| "the request thread panicked".to_owned())?
}

async fn send(addr: SocketAddr, request: Request<Empty<Bytes>>) -> Result<(u16, String), String> {
    let stream = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    // The connection is driven by its own task, aborted when this future
    // completes or is dropped (e.g. on timeout), so nothing outlives the call.
    let _driver = AbortOnDrop(tokio::spawn(connection));
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| format!("send: {e}"))?;
    let status = response.status().as_u16();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| format!("read body: {e}"))?
        .to_bytes();
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

/// Aborts a spawned task when dropped.
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Which color answered one `GET /` through Envoy at `listener` (the first word of a
/// backend's answer), or `None` when the request failed or was not answered 200.
pub async fn color(listener: SocketAddr) -> Option<String> {
    let (code, body) = get(listener, "/", "summarizer.example").await.ok()?;
    (code == 200).then(|| {
        body.split_whitespace()
            .next()
            .unwrap_or_default()
            .to_owned()
    })
}

/// Requests sent in the background by [`keep_sending`].
pub struct Sending {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl Sending {
    /// Stops sending, once the request in flight is answered.
    pub async fn stop(self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        self.task.await.expect("the sender panicked");
    }
}

/// Sends `GET path` with `host` through each of `listeners` in turn, each request on its
/// own connection (so the kernel spreads them over Envoys sharing a port), until stopped.
pub fn keep_sending(listeners: &[SocketAddr], path: &'static str, host: &'static str) -> Sending {
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = stop.clone();
    let listeners = listeners.to_vec();
    let task = tokio::spawn(async move {
        while !flag.load(std::sync::atomic::Ordering::SeqCst) {
            for l in &listeners {
                let _ = get(*l, path, host).await;
            }
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    });
    Sending { stop, task }
}
