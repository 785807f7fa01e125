//! A sample backend: a real HTTP server on loopback standing for one version
//! ("color") of a service.
//!
//! Every request gets `200 OK`, a header `x-color: <color>` and the body
//! `<color> <version>\n`, so a test can tell from any response which
//! environment served it. It speaks HTTP/1.1 (with keep-alive) and HTTP/2
//! with prior knowledge (h2c) on the same port, or, started with
//! [`Backend::start_tls`], the same over TLS (ALPN `h2` and `http/1.1`),
//! recording the server name (SNI) each connection asked for.
//!
//! # Model APIs
//! It also stands in for three model APIs, faithfully enough for their
//! official clients (see [`model_api`] for the paths and shapes): Ollama
//! (`/api/tags`, `/api/generate`, `/api/chat`, ...), Anthropic Messages
//! (`POST /v1/messages`) and Gemini (`:generateContent` and
//! `:streamGenerateContent` on the Gemini API and Vertex AI paths). Their
//! answers' text is `"<color> <version>: <the last user message>"`
//! ([`Backend::model_answer`]). A streamed answer comes in
//! [`model_api::STREAM_CHUNKS`] pieces with a pause between them
//! ([`Backend::set_stream_chunk_delay`]), and stays in flight until its last
//! piece is written, so a test can hold one open across a config switch.
//! `GET /api/tags` lists one model, [`model_api::DEFAULT_MODEL`] unless
//! [`Backend::set_model_name`] says otherwise.
//!
//! # Credentials
//! [`Backend::require_header`] makes every request but the control paths and
//! `/healthz` need a header with one of some accepted values (an API key, as
//! Envoy would inject it); one without it, or with another value, is answered
//! `401` in its API's error shape (plain text elsewhere) and counted in
//! [`Backend::rejected_requests`]. Calling it again replaces the accepted
//! values (accept old and new during a key rotation, then only the new).
//!
//! The server runs on its own thread with its own Tokio runtime, so it works
//! the same from sync and async tests and never competes with the code under
//! test for the test's runtime. Dropping the [`Backend`] stops it and closes
//! its connections.
//!
//! # Misbehaving on command
//! A backend can be told to turn unhealthy, to fail a share of requests or to
//! answer slowly, from a test (the `set_*` methods) or over HTTP, on the
//! backend's own port:
//!
//! | request                           | effect                                                   |
//! |-----------------------------------|----------------------------------------------------------|
//! | `GET /_backend`                   | the current settings and counters, as JSON               |
//! | `POST /_backend/health?ok=false`  | `/healthz` answers `503` (`ok=true`: `200` again)        |
//! | `POST /_backend/fail?share=0.3`   | 30 % of ordinary requests answer `500` (`0`: none, `1`: all) |
//! | `POST /_backend/delay?ms=200`     | every response but the control paths' waits 200 ms      |
//! | `POST /_backend/stream?ms=100`    | a streamed model answer pauses 100 ms between its pieces |
//!
//! Every control request answers `200` with the same JSON as `GET /_backend`
//! (or `400`/`404`/`405` saying what is wrong), is never delayed or failed and
//! is not counted. An unhealthy backend still answers ordinary requests; the
//! fail share does not apply to `/healthz`. Failures are deterministic: with a
//! share `s`, the `n`-th ordinary request since the share was set fails when
//! `floor(n * s)` grows, so exactly `floor(n * s)` of the first `n` fail
//! (`0.5`: every second one; `0.3`: the 4th, 7th, 10th, ...). Failed and
//! unhealthy responses keep the `x-color` header; their body says
//! `<color> <version> failing` or `<color> <version> unhealthy`.
//!
//! # What it has seen
//! The backend counts requests ([`Backend::requests`]), requests in flight
//! (a streamed answer until its last piece), failed ones, ones rejected for
//! their credential, and mirrored ones ([`Backend::shadow_requests`]): Envoy's
//! request mirroring appends `-shadow` to the host (before any port), so a
//! request whose host ends in `-shadow` is a shadow. The last
//! [`RECENT_REQUESTS`] requests are kept with their headers and, over TLS,
//! the SNI ([`Backend::recent_requests`]).
//!
//! Also used by `examples/backend.rs` through `#[path]`.
#![allow(dead_code)]

use std::collections::VecDeque;
use std::convert::Infallible;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, Limited, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::oneshot;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};

#[path = "model_api.rs"]
pub mod model_api;

use model_api::{Answering, Reply, Route};

/// The path that answers `503` while the backend is unhealthy.
pub const HEALTH_PATH: &str = "/healthz";

/// The control paths' prefix (`/_backend`, `/_backend/health`, ...).
pub const CONTROL_PATH: &str = "/_backend";

/// How many requests [`Backend::recent_requests`] keeps.
pub const RECENT_REQUESTS: usize = 64;

/// What Envoy's request mirroring appends to the host of a mirrored request.
pub const SHADOW_SUFFIX: &str = "-shadow";

/// The largest request body a model request may have.
const MAX_BODY: usize = 1 << 20;

/// How long a client has to finish its TLS handshake.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// A response body: whole, or a streamed model answer written piece by piece.
type Body = UnsyncBoxBody<Bytes, Infallible>;

/// A running HTTP backend; stopped on drop.
pub struct Backend {
    addr: SocketAddr,
    color: String,
    version: String,
    /// Whether it serves TLS.
    tls: bool,
    /// Settings and counters, shared with the connection tasks.
    shared: Arc<Shared>,
    /// Dropping (or sending on) it ends the accept loop.
    shutdown: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

/// One request as the backend saw it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SeenRequest {
    pub method: String,
    /// Path and query.
    pub path: String,
    /// The `Host` header (HTTP/1.1) or the `:authority` (HTTP/2); empty if none.
    pub host: String,
    /// Every header in arrival order, names lowercase, values lossily decoded.
    pub headers: Vec<(String, String)>,
    /// The server name the client asked for in its TLS handshake (`None` over
    /// plain TCP, or if it sent none).
    pub sni: Option<String>,
}

impl SeenRequest {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Whether Envoy mirrored it: its host, without the port, ends in `-shadow`.
    pub fn is_shadow(&self) -> bool {
        host_without_port(&self.host).ends_with(SHADOW_SUFFIX)
    }
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
        Backend::launch(addr, color, version, None)
    }

    /// Starts an HTTPS backend on `127.0.0.1` with an ephemeral port, with the
    /// certificate chain and private key in these PEM files (e.g. from
    /// `tls::Pki::issue`).
    pub fn start_tls(color: &str, version: &str, cert_pem: &Path, key_pem: &Path) -> Backend {
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
        Backend::start_tls_on(addr, color, version, cert_pem, key_pem)
            .unwrap_or_else(|e| panic!("start a TLS backend on 127.0.0.1:0: {e}"))
    }

    /// Starts an HTTPS backend on `addr`: HTTP/2 and HTTP/1.1 over TLS (ALPN
    /// `h2`, `http/1.1`). Fails if the files do not make a server identity or
    /// the address cannot be bound.
    pub fn start_tls_on(
        addr: SocketAddr,
        color: &str,
        version: &str,
        cert_pem: &Path,
        key_pem: &Path,
    ) -> std::io::Result<Backend> {
        let acceptor = tls_acceptor(cert_pem, key_pem)?;
        Backend::launch(addr, color, version, Some(acceptor))
    }

    fn launch(
        addr: SocketAddr,
        color: &str,
        version: &str,
        tls: Option<TlsAcceptor>,
    ) -> std::io::Result<Backend> {
        // Bind here, synchronously, so the caller gets bind errors and the
        // real address before this returns.
        let listener = TcpListener::bind(addr)?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared::default());
        let (shutdown, shutdown_rx) = oneshot::channel();
        let responder = Arc::new(Responder {
            color: color.to_owned(),
            version: version.to_owned(),
            speaker: format!("{color} {version}"),
            body: Bytes::from(format!("{color} {version}\n")),
            shared: shared.clone(),
        });
        let is_tls = tls.is_some();
        let thread = std::thread::Builder::new()
            .name(format!("backend-{color}-{}", addr.port()))
            .spawn(move || serve(listener, tls, responder, shutdown_rx))?;
        Ok(Backend {
            addr,
            color: color.to_owned(),
            version: version.to_owned(),
            tls: is_tls,
            shared,
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

    /// Whether it serves HTTPS ([`Backend::start_tls`]).
    pub fn is_tls(&self) -> bool {
        self.tls
    }

    /// The exact body every successful plain response carries: `"<color> <version>\n"`.
    pub fn body(&self) -> String {
        format!("{} {}\n", self.color, self.version)
    }

    /// The exact text of a model answer to `message` (the last user message):
    /// `"<color> <version>: <message>"`, the message cut to
    /// [`model_api::ECHO_CHARS`] characters.
    pub fn model_answer(&self, message: &str) -> String {
        model_api::answer_text(&format!("{} {}", self.color, self.version), message)
    }

    /// Number of requests received so far, `/healthz` and shadows included,
    /// control requests not.
    pub fn requests(&self) -> u64 {
        self.shared.requests.load(Ordering::Relaxed)
    }

    /// Number of requests received whose host ends in `-shadow` (mirrored by Envoy).
    pub fn shadow_requests(&self) -> u64 {
        self.shared.shadow_requests.load(Ordering::Relaxed)
    }

    /// Number of requests answered `500` because of the fail share.
    pub fn failed_requests(&self) -> u64 {
        self.shared.failed_requests.load(Ordering::Relaxed)
    }

    /// Number of requests answered `401` for lacking the required header or
    /// value ([`Backend::require_header`]).
    pub fn rejected_requests(&self) -> u64 {
        self.shared.rejected_requests.load(Ordering::Relaxed)
    }

    /// Number of requests received and not yet answered (see [`Backend::set_delay`]);
    /// a streamed model answer counts until its last piece is written.
    pub fn in_flight(&self) -> u64 {
        self.shared.in_flight.load(Ordering::Relaxed)
    }

    /// The last [`RECENT_REQUESTS`] requests, oldest first.
    pub fn recent_requests(&self) -> Vec<SeenRequest> {
        self.shared.recent().iter().cloned().collect()
    }

    /// Healthy: `/healthz` answers `200`; unhealthy: `503`.
    pub fn set_healthy(&self, healthy: bool) {
        self.shared.healthy.store(healthy, Ordering::Relaxed);
    }

    /// Whether `/healthz` answers `200`.
    pub fn is_healthy(&self) -> bool {
        self.shared.healthy.load(Ordering::Relaxed)
    }

    /// Fails `share` (0 to 1) of the ordinary requests from now on with `500`,
    /// deterministically (see the module docs). Panics outside 0..=1.
    pub fn set_fail_share(&self, share: f64) {
        let share = Share::new(share).unwrap_or_else(|e| panic!("{e}"));
        self.shared.set_fail_share(share);
    }

    /// The share of ordinary requests failed with `500`.
    pub fn fail_share(&self) -> f64 {
        self.shared.fail_share().as_f64()
    }

    /// Every response but the control paths' waits `delay` first.
    pub fn set_delay(&self, delay: Duration) {
        self.shared.delay_ms.store(millis(delay), Ordering::Relaxed);
    }

    /// A streamed model answer waits `pause` between two of its pieces (none
    /// at first).
    pub fn set_stream_chunk_delay(&self, pause: Duration) {
        let ms = millis(pause);
        self.shared
            .stream_chunk_delay_ms
            .store(ms, Ordering::Relaxed);
    }

    /// From now on every request but the control paths and `/healthz` needs
    /// header `name` with one of `accepted_values`, else it is answered `401`.
    /// Replaces what an earlier call required: during a key rotation, accept
    /// the old and the new value, then only the new one.
    pub fn require_header(&self, name: &str, accepted_values: &[&str]) {
        *self.shared.credential() = Some(Credential {
            name: name.to_ascii_lowercase(),
            accepted: accepted_values.iter().map(|v| (*v).to_owned()).collect(),
        });
    }

    /// Requests no longer need a header (the default).
    pub fn stop_requiring_header(&self) {
        *self.shared.credential() = None;
    }

    /// The model `GET /api/tags` lists and `POST /api/show` describes
    /// (default [`model_api::DEFAULT_MODEL`]).
    pub fn set_model_name(&self, name: &str) {
        *self.shared.model() = name.to_owned();
    }

    pub fn model_name(&self) -> String {
        self.shared.model().clone()
    }
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// The rustls acceptor for a certificate chain and key in PEM files, with
/// ALPN `h2` and `http/1.1` (ring provider).
fn tls_acceptor(cert_pem: &Path, key_pem: &Path) -> std::io::Result<TlsAcceptor> {
    use std::io::{Error, ErrorKind};
    let bad = |path: &Path, e: &dyn std::fmt::Display| {
        Error::new(ErrorKind::InvalidInput, format!("{}: {e}", path.display()))
    };
    let certs = CertificateDer::pem_file_iter(cert_pem)
        .map_err(|e| bad(cert_pem, &e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad(cert_pem, &e))?;
    if certs.is_empty() {
        return Err(bad(cert_pem, &"no PEM certificate in it"));
    }
    let key = PrivateKeyDer::from_pem_file(key_pem).map_err(|e| bad(key_pem, &e))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("bug: ring supports the default TLS versions")
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| bad(cert_pem, &e))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// The header [`Backend::require_header`] asks for.
#[derive(Clone, Debug)]
struct Credential {
    /// Lowercase.
    name: String,
    accepted: Vec<String>,
}

impl Credential {
    /// Why `request` is refused, if it is.
    fn refusal(&self, seen: &SeenRequest) -> Option<String> {
        match seen.header(&self.name) {
            None => Some(format!("unauthorized: missing header {}", self.name)),
            Some(value) if !self.accepted.iter().any(|a| a == value) => Some(format!(
                "unauthorized: header {} has a value not accepted",
                self.name
            )),
            Some(_) => None,
        }
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

/// A share of requests, in parts per million (exact integer arithmetic for
/// the deterministic failure pattern).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Share(u32);

impl Share {
    const ONE: u64 = 1_000_000;
    /// No request fails.
    pub const NONE: Share = Share(0);

    /// A share from 0 to 1; anything else (or NaN) is an error saying so.
    pub fn new(share: f64) -> Result<Share, String> {
        if !(0.0..=1.0).contains(&share) {
            return Err(format!("share must be from 0 to 1, not {share}"));
        }
        Ok(Share((share * Share::ONE as f64).round() as u32))
    }

    /// Parses `"0.3"`, `"1"`, ...; what the `fail?share=` control path and
    /// the example's `--fail-share` flag accept.
    pub fn parse(text: &str) -> Result<Share, String> {
        let share: f64 = text
            .trim()
            .parse()
            .map_err(|_| format!("share must be a number from 0 to 1, not {text:?}"))?;
        Share::new(share)
    }

    pub fn as_f64(self) -> f64 {
        f64::from(self.0) / Share::ONE as f64
    }

    /// Whether the `n`-th request (from 1) fails: exactly `floor(n * share)`
    /// of the first `n` do, spread evenly.
    fn fails(self, n: u64) -> bool {
        let ppm = u64::from(self.0);
        n * ppm / Share::ONE > (n - 1) * ppm / Share::ONE
    }
}

/// Settings and counters, shared by the [`Backend`] handle and every
/// connection task. Atomics because connection tasks on the backend's runtime
/// update them while tests read them from another thread; none of them needs
/// to be consistent with another.
#[derive(Debug)]
struct Shared {
    healthy: AtomicBool,
    /// The fail share, parts per million.
    fail_ppm: AtomicU32,
    /// Ordinary requests since the fail share was last set; the count that
    /// decides which of them fail.
    since_fail_set: AtomicU64,
    delay_ms: AtomicU64,
    stream_chunk_delay_ms: AtomicU64,
    requests: AtomicU64,
    shadow_requests: AtomicU64,
    failed_requests: AtomicU64,
    rejected_requests: AtomicU64,
    in_flight: AtomicU64,
    /// The last [`RECENT_REQUESTS`] requests. A mutex, held only to push or
    /// copy (never across an await): a ring of strings cannot be atomic.
    recent: Mutex<VecDeque<SeenRequest>>,
    /// The header requests must carry, if any. A mutex for the same reason,
    /// held only to replace or check it.
    credential: Mutex<Option<Credential>>,
    /// The model `/api/tags` lists; a mutex, held only to copy or replace it.
    model: Mutex<String>,
}

impl Default for Shared {
    fn default() -> Self {
        Shared {
            healthy: AtomicBool::new(true),
            fail_ppm: AtomicU32::new(0),
            since_fail_set: AtomicU64::new(0),
            delay_ms: AtomicU64::new(0),
            stream_chunk_delay_ms: AtomicU64::new(0),
            requests: AtomicU64::new(0),
            shadow_requests: AtomicU64::new(0),
            failed_requests: AtomicU64::new(0),
            rejected_requests: AtomicU64::new(0),
            in_flight: AtomicU64::new(0),
            recent: Mutex::new(VecDeque::with_capacity(RECENT_REQUESTS)),
            credential: Mutex::new(None),
            model: Mutex::new(model_api::DEFAULT_MODEL.to_owned()),
        }
    }
}

impl Shared {
    fn recent(&self) -> std::sync::MutexGuard<'_, VecDeque<SeenRequest>> {
        // A panic while holding it cannot leave the ring half-written.
        self.recent.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn credential(&self) -> std::sync::MutexGuard<'_, Option<Credential>> {
        self.credential.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn model(&self) -> std::sync::MutexGuard<'_, String> {
        self.model.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Why `seen` is refused for its credential, if it is (and counts it).
    fn refusal(&self, seen: &SeenRequest) -> Option<String> {
        let refusal = self.credential().as_ref()?.refusal(seen)?;
        self.rejected_requests.fetch_add(1, Ordering::Relaxed);
        Some(refusal)
    }

    fn record(&self, seen: SeenRequest) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        if seen.is_shadow() {
            self.shadow_requests.fetch_add(1, Ordering::Relaxed);
        }
        let mut recent = self.recent();
        if recent.len() == RECENT_REQUESTS {
            recent.pop_front();
        }
        recent.push_back(seen);
    }

    fn set_fail_share(&self, share: Share) {
        self.fail_ppm.store(share.0, Ordering::Relaxed);
        self.since_fail_set.store(0, Ordering::Relaxed);
    }

    fn fail_share(&self) -> Share {
        Share(self.fail_ppm.load(Ordering::Relaxed))
    }

    /// Counts one ordinary request and says whether it fails.
    fn next_fails(&self) -> bool {
        let n = self.since_fail_set.fetch_add(1, Ordering::Relaxed) + 1;
        let fails = self.fail_share().fails(n);
        if fails {
            self.failed_requests.fetch_add(1, Ordering::Relaxed);
        }
        fails
    }

    /// What `GET /_backend` answers. The required header shows its name and
    /// how many values are accepted, never the values.
    fn to_json(&self) -> String {
        let require_header = self
            .credential()
            .as_ref()
            .map(|c| serde_json::json!({ "name": c.name, "accepted_values": c.accepted.len() }));
        serde_json::json!({
            "healthy": self.healthy.load(Ordering::Relaxed),
            "fail_share": self.fail_share().as_f64(),
            "delay_ms": self.delay_ms.load(Ordering::Relaxed),
            "stream_chunk_delay_ms": self.stream_chunk_delay_ms.load(Ordering::Relaxed),
            "model": *self.model(),
            "require_header": require_header,
            "requests": self.requests.load(Ordering::Relaxed),
            "shadow_requests": self.shadow_requests.load(Ordering::Relaxed),
            "failed_requests": self.failed_requests.load(Ordering::Relaxed),
            "rejected_requests": self.rejected_requests.load(Ordering::Relaxed),
            "in_flight": self.in_flight.load(Ordering::Relaxed),
        })
        .to_string()
            + "\n"
    }
}

/// Decrements the in-flight count when a response is done (or its task
/// dropped); a streamed answer's body holds it until its last piece.
struct InFlight(Arc<Shared>);

impl InFlight {
    fn enter(shared: &Arc<Shared>) -> Self {
        shared.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(shared.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// What every connection task needs to build a response; shared by them
/// behind an `Arc`.
struct Responder {
    color: String,
    version: String,
    /// `"<color> <version>"`, what model answers and errors start with.
    speaker: String,
    /// Encoded once; cloning `Bytes` is a reference-count bump.
    body: Bytes,
    shared: Arc<Shared>,
}

impl Responder {
    /// Answers `request`, which came over a connection whose TLS handshake
    /// asked for server name `sni`.
    async fn respond(&self, request: Request<Incoming>, sni: Option<&str>) -> Response<Body> {
        let path = request.uri().path();
        if path == CONTROL_PATH || path.starts_with("/_backend/") {
            return self.control(request.method(), path, request.uri().query());
        }
        let is_health = path == HEALTH_PATH;
        let route = if is_health {
            Route::Plain
        } else {
            Route::of(path, request.uri().query())
        };
        let api = route.api();
        let seen = SeenRequest::of(&request, sni);
        let refusal = if is_health {
            None
        } else {
            self.shared.refusal(&seen)
        };
        self.shared.record(seen);
        let in_flight = InFlight::enter(&self.shared);
        let delay = self.shared.delay_ms.load(Ordering::Relaxed);
        if delay > 0 {
            tokio::time::sleep(Duration::from_millis(delay)).await;
        }
        let error = |status, message: &str| api.error(&self.speaker, status, message);
        let reply = if let Some(refusal) = refusal {
            error(StatusCode::UNAUTHORIZED, &refusal)
        } else if is_health {
            if self.shared.healthy.load(Ordering::Relaxed) {
                return self.answer(StatusCode::OK, self.body.clone());
            }
            error(StatusCode::SERVICE_UNAVAILABLE, "unhealthy")
        } else if self.shared.next_fails() {
            error(StatusCode::INTERNAL_SERVER_ERROR, "failing")
        } else if route == Route::Plain {
            return self.answer(StatusCode::OK, self.body.clone());
        } else {
            let (parts, body) = request.into_parts();
            let model = self.shared.model().clone();
            match Limited::new(body, MAX_BODY).collect().await {
                Ok(body) => Answering {
                    speaker: &self.speaker,
                    model: &model,
                    id: self.shared.requests.load(Ordering::Relaxed),
                }
                .answer(&route, &parts.method, &parts.headers, &body.to_bytes()),
                Err(e) => error(StatusCode::BAD_REQUEST, &format!("unreadable body: {e}")),
            }
        };
        self.paced(reply, in_flight)
    }

    /// `reply`'s pieces, with the stream pause between two of them; the
    /// request stays in flight until the last is written.
    fn paced(&self, reply: Reply, in_flight: InFlight) -> Response<Body> {
        let pause =
            Duration::from_millis(self.shared.stream_chunk_delay_ms.load(Ordering::Relaxed));
        let frames = futures::stream::unfold(
            (reply.pieces.into_iter(), true, in_flight),
            move |(mut pieces, first, in_flight)| async move {
                let piece = pieces.next()?;
                if !first && !pause.is_zero() {
                    tokio::time::sleep(pause).await;
                }
                Some((Ok(Frame::data(piece)), (pieces, false, in_flight)))
            },
        );
        Response::builder()
            .status(reply.status)
            .header("x-color", &self.color)
            .header("content-type", reply.content_type)
            .body(StreamBody::new(frames).boxed_unsync())
            .expect("static response parts are valid")
    }

    /// The control paths (see the module docs).
    fn control(&self, method: &Method, path: &str, query: Option<&str>) -> Response<Body> {
        let action = path.strip_prefix(CONTROL_PATH).unwrap_or(path);
        let applied = match (method, action) {
            (&Method::GET, "" | "/") => Ok(()),
            (&Method::POST, "/health") => query_param(query, "ok")
                .and_then(|ok| match ok {
                    "true" => Ok(true),
                    "false" => Ok(false),
                    other => Err(format!("ok must be true or false, not {other:?}")),
                })
                .map(|ok| self.shared.healthy.store(ok, Ordering::Relaxed)),
            (&Method::POST, "/fail") => query_param(query, "share")
                .and_then(Share::parse)
                .map(|share| self.shared.set_fail_share(share)),
            (&Method::POST, "/delay") => query_param(query, "ms").and_then(|ms| {
                let ms: u64 = ms
                    .parse()
                    .map_err(|_| format!("ms must be a whole number, not {ms:?}"))?;
                self.shared.delay_ms.store(ms, Ordering::Relaxed);
                Ok(())
            }),
            (&Method::POST, "/stream") => query_param(query, "ms").and_then(|ms| {
                let ms: u64 = ms
                    .parse()
                    .map_err(|_| format!("ms must be a whole number, not {ms:?}"))?;
                self.shared
                    .stream_chunk_delay_ms
                    .store(ms, Ordering::Relaxed);
                Ok(())
            }),
            (_, "" | "/" | "/health" | "/fail" | "/delay" | "/stream") => {
                return self.answer(
                    StatusCode::METHOD_NOT_ALLOWED,
                    Bytes::from(format!("{method} is not allowed on {path}\n")),
                );
            }
            _ => {
                return self.answer(
                    StatusCode::NOT_FOUND,
                    Bytes::from(format!(
                        "no control path {path}; try GET {CONTROL_PATH}, POST {CONTROL_PATH}/health?ok=false, /fail?share=0.3, /delay?ms=200, /stream?ms=100\n"
                    )),
                );
            }
        };
        match applied {
            Ok(()) => self.answer(StatusCode::OK, Bytes::from(self.shared.to_json())),
            Err(e) => self.answer(StatusCode::BAD_REQUEST, Bytes::from(e + "\n")),
        }
    }

    fn answer(&self, status: StatusCode, body: Bytes) -> Response<Body> {
        Response::builder()
            .status(status)
            .header("x-color", &self.color)
            .header("content-type", "text/plain")
            .body(Full::new(body).boxed_unsync())
            .expect("static response parts are valid")
    }
}

impl SeenRequest {
    fn of(request: &Request<Incoming>, sni: Option<&str>) -> SeenRequest {
        let headers: Vec<(String, String)> = request
            .headers()
            .iter()
            .map(|(name, value)| {
                let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
                (name.as_str().to_owned(), value)
            })
            .collect();
        let host = request
            .headers()
            .get(hyper::header::HOST)
            .map(|h| String::from_utf8_lossy(h.as_bytes()).into_owned())
            .or_else(|| request.uri().authority().map(|a| a.to_string()))
            .unwrap_or_default();
        SeenRequest {
            method: request.method().to_string(),
            path: request
                .uri()
                .path_and_query()
                .map_or_else(|| "/".to_owned(), |p| p.to_string()),
            host,
            headers,
            sni: sni.map(str::to_owned),
        }
    }
}

/// `"summarizer-shadow:10000"` -> `"summarizer-shadow"`; `"[::1]:80"` -> `"[::1]"`.
fn host_without_port(host: &str) -> &str {
    match host.rsplit_once(':') {
        Some((name, port)) if !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => host,
    }
}

/// The value of `name` in a query string `a=1&b=2` (no percent-decoding: the
/// control values are plain words and numbers).
fn query_param<'q>(query: Option<&'q str>, name: &str) -> Result<&'q str, String> {
    query
        .unwrap_or_default()
        .split('&')
        .find_map(|pair| pair.strip_prefix(name)?.strip_prefix('='))
        .ok_or_else(|| format!("missing query parameter {name}"))
}

/// The server thread: accepts until `shutdown` fires (or its sender is
/// dropped), then drops the runtime, which aborts open connections.
fn serve(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    responder: Arc<Responder>,
    shutdown: oneshot::Receiver<()>,
) {
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
                let tls = tls.clone();
                tokio::spawn(async move {
                    let Some(tls) = tls else {
                        return serve_connection(stream, responder, None).await;
                    };
                    // A failed or stalled handshake ends only this connection.
                    let Ok(Ok(stream)) =
                        tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, tls.accept(stream)).await
                    else {
                        return;
                    };
                    let sni: Option<Arc<str>> = stream.get_ref().1.server_name().map(Arc::from);
                    serve_connection(stream, responder, sni).await;
                });
            }
        };
        tokio::select! {
            _ = shutdown => {}
            () = accept_loop => {}
        }
    });
}

/// Serves HTTP/1.1 or HTTP/2 (whichever the client speaks) on one connection,
/// plain or TLS, whose handshake asked for server name `sni`.
async fn serve_connection<Io>(io: Io, responder: Arc<Responder>, sni: Option<Arc<str>>)
where
    Io: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = service_fn(move |request: Request<Incoming>| {
        let responder = responder.clone();
        let sni = sni.clone();
        async move { Ok::<_, Infallible>(responder.respond(request, sni.as_deref()).await) }
    });
    // Errors here are per connection (client went away, ...).
    let _ = auto::Builder::new(TokioExecutor::new())
        .serve_connection(TokioIo::new(io), service)
        .await;
}
