//! A sample backend: a real HTTP server on loopback standing for one version
//! ("color") of a service.
//!
//! Every request gets `200 OK`, a header `x-color: <color>` and the body
//! `<color> <version>\n`, so a test can tell from any response which
//! environment served it. It speaks HTTP/1.1 (with keep-alive) and HTTP/2
//! with prior knowledge (h2c) on the same port.
//!
//! The server runs on its own thread with its own Tokio runtime, so it works
//! the same from sync and async tests and never competes with the code under
//! test for the test's runtime. Dropping the [`Backend`] stops it and closes
//! its connections.
//!
//! Also used by `examples/backend.rs` through `#[path]`.
#![allow(dead_code)]

use std::convert::Infallible;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::JoinHandle;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::sync::oneshot;

/// A running HTTP backend; stopped on drop.
pub struct Backend {
    addr: SocketAddr,
    color: String,
    version: String,
    /// Requests answered so far. Atomic because connection tasks on the
    /// backend's runtime bump it while tests read it from another thread.
    requests: Arc<AtomicU64>,
    /// Dropping (or sending on) it ends the accept loop.
    shutdown: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Backend {
    /// Starts a backend on `127.0.0.1` with an ephemeral port.
    pub fn start(color: &str, version: &str) -> Backend {
        Backend::start_on(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)), color, version)
            .expect("bind a backend on 127.0.0.1:0")
    }

    /// Starts a backend on `addr` (port 0 picks a free port). Fails only if
    /// the address cannot be bound.
    pub fn start_on(addr: SocketAddr, color: &str, version: &str) -> std::io::Result<Backend> {
        // Bind here, synchronously, so the caller gets bind errors and the
        // real address before this returns.
        let listener = TcpListener::bind(addr)?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let requests = Arc::new(AtomicU64::new(0));
        let (shutdown, shutdown_rx) = oneshot::channel();
        let responder = Responder {
            color: color.to_owned(),
            body: Bytes::from(format!("{color} {version}\n")),
            requests: requests.clone(),
        };
        let thread = std::thread::Builder::new()
            .name(format!("backend-{color}-{}", addr.port()))
            .spawn(move || serve(listener, responder, shutdown_rx))?;
        Ok(Backend {
            addr,
            color: color.to_owned(),
            version: version.to_owned(),
            requests,
            shutdown: Some(shutdown),
            thread: Some(thread),
        })
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The color it answers with (`x-color` header and first body word).
    pub fn color(&self) -> &str {
        &self.color
    }

    /// The version it answers with (second body word).
    pub fn version(&self) -> &str {
        &self.version
    }

    /// The exact body every response carries: `"<color> <version>\n"`.
    pub fn body(&self) -> String {
        format!("{} {}\n", self.color, self.version)
    }

    /// Number of requests answered so far.
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        drop(self.shutdown.take());
        if let Some(thread) = self.thread.take() {
            // A panic on the server thread has already been printed; don't
            // double-panic while dropping.
            let _ = thread.join();
        }
    }
}

/// What every connection task needs to build a response.
#[derive(Clone)]
struct Responder {
    color: String,
    /// Encoded once; cloning `Bytes` is a reference-count bump.
    body: Bytes,
    requests: Arc<AtomicU64>,
}

impl Responder {
    fn respond(&self) -> Response<Full<Bytes>> {
        self.requests.fetch_add(1, Ordering::Relaxed);
        Response::builder()
            .header("x-color", &self.color)
            .header("content-type", "text/plain")
            .body(Full::new(self.body.clone()))
            .expect("static response parts are valid")
    }
}

/// The server thread: accepts until `shutdown` fires (or its sender is
/// dropped), then drops the runtime, which aborts open connections.
fn serve(listener: TcpListener, responder: Responder, shutdown: oneshot::Receiver<()>) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("backend-worker")
        .enable_all()
        .build()
        .expect("build the backend runtime");
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::from_std(listener)
            .expect("register the backend listener with tokio");
        let accept_loop = async {
            loop {
                let stream = match listener.accept().await {
                    Ok((stream, _peer)) => stream,
                    // Transient (e.g. EMFILE under a load test): back off a
                    // little and keep serving.
                    Err(_) => {
                        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let responder = responder.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |_req: Request<Incoming>| {
                        let response = responder.respond();
                        async move { Ok::<_, Infallible>(response) }
                    });
                    // Errors here are per connection (client went away, ...).
                    let _ = auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        };
        tokio::select! {
            _ = shutdown => {}
            () = accept_loop => {}
        }
    });
}
