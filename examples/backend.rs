//! A sample backend standing for one version of a model server: every request
//! gets `200`, `x-color: <color>` and the body `<color> <version>`, and it can
//! be told to misbehave (turn unhealthy, fail a share of requests, answer
//! slowly) with flags at start and control paths while it runs. It also
//! stands in for the Ollama, Anthropic Messages and Gemini APIs, answering
//! `"<color> <version>: <your message>"` in each API's own shapes (streamed
//! too), so their official clients can talk to it.
//!
//! ```text
//! cargo run --example backend -- --color blue --version v1 --port 8081
//! cargo run --example backend -- --color green --version v2 --port 8082 --unhealthy
//! curl -X POST 'http://127.0.0.1:8082/_backend/health?ok=true'
//! curl -X POST 'http://127.0.0.1:8082/_backend/fail?share=0.3'
//! curl http://127.0.0.1:8081/api/chat -d '{"model":"clinical","messages":[{"role":"user","content":"hi"}]}'
//! ```
//!
//! Speaks HTTP/1.1 and HTTP/2 (h2c, prior knowledge), or both over TLS with
//! `--tls-cert` and `--tls-key`. Stop it with Ctrl-C.
//! The control paths are documented in `tests/common/backend.rs` and in
//! `--help`.

#[path = "../tests/common/backend.rs"]
mod backend;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;

use backend::{Backend, Share};

/// What `--help` says after the flags.
const CONTROL_HELP: &str = "\
Control paths (on the backend's own port; each answers its settings and counters as JSON):
  GET  /_backend                    the settings and the request counters
  POST /_backend/health?ok=false    /healthz answers 503 (ok=true: 200 again); other
                                    requests are still answered
  POST /_backend/fail?share=0.3     30% of ordinary requests answer 500 (0: none, 1: all),
                                    deterministically: exactly floor(n * share) of the n
                                    requests since it was set (/healthz never fails)
  POST /_backend/delay?ms=200       every response but the control paths' waits 200 ms
  POST /_backend/stream?ms=100      a streamed model answer pauses 100 ms between its pieces

Model APIs (answers say \"<color> <version>: <the last user message>\"):
  Ollama      GET /api/tags, GET /api/version, POST /api/show, /api/generate, /api/chat
              (streamed as NDJSON unless the request says \"stream\": false)
  Anthropic   POST /v1/messages (needs an anthropic-version header; \"stream\": true: SSE)
  Gemini      POST /v1beta/models/MODEL:generateContent, :streamGenerateContent?alt=sse,
              and the Vertex AI paths /v1beta1/projects/P/locations/L/publishers/google/models/...
A streamed answer comes in 5 pieces; every other path answers \"<color> <version>\".

Requests whose host ends in -shadow (mirrored by Envoy) are counted as shadow_requests.
With --require-header, requests without the header or with another value get 401
(counted as rejected_requests); the control paths and /healthz never need it.

Example:
  curl -X POST 'http://127.0.0.1:8082/_backend/fail?share=0.3'";

/// Run a sample HTTP backend that answers with its color and version.
#[derive(Debug, Parser)]
#[command(after_help = CONTROL_HELP)]
struct Args {
    /// The environment this backend belongs to (e.g. blue or green).
    #[arg(long, default_value = "blue")]
    color: String,
    /// The version it reports (e.g. the model version).
    #[arg(long, default_value = "v1")]
    version: String,
    /// Address to listen on.
    #[arg(long, default_value_t = IpAddr::V4(Ipv4Addr::LOCALHOST))]
    host: IpAddr,
    /// Port to listen on (0 picks a free one).
    #[arg(long, default_value_t = 8081)]
    port: u16,
    /// Start unhealthy: /healthz answers 503 until POST /_backend/health?ok=true.
    #[arg(long)]
    unhealthy: bool,
    /// Start failing this share (0 to 1) of ordinary requests with 500.
    #[arg(long, value_name = "SHARE", default_value = "0", value_parser = Share::parse)]
    fail_share: Share,
    /// Start delaying every response by this many milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 0)]
    delay_ms: u64,
    /// Pause this many milliseconds between the pieces of a streamed model answer.
    #[arg(long, value_name = "MS", default_value_t = 0)]
    stream_chunk_delay_ms: u64,
    /// The model GET /api/tags lists (Ollama).
    #[arg(long, value_name = "NAME", default_value = backend::model_api::DEFAULT_MODEL)]
    model: String,
    /// Answer 401 to requests without this header and value, e.g. x-api-key=VALUE;
    /// repeat it to accept several values of the same header (a key rotation). For
    /// local testing only: the value sits in the command line, visible to other users
    /// of the machine.
    #[arg(long, value_name = "NAME=VALUE", value_parser = parse_header)]
    require_header: Vec<(String, String)>,
    /// Serve HTTPS with this PEM certificate chain (needs --tls-key).
    #[arg(long, value_name = "PEM", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The PEM private key of --tls-cert.
    #[arg(long, value_name = "PEM", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
}

/// `x-api-key=VALUE` -> (`x-api-key`, `VALUE`).
fn parse_header(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((name, value)) if !name.trim().is_empty() => {
            Ok((name.trim().to_ascii_lowercase(), value.to_owned()))
        }
        _ => Err(format!("expected NAME=VALUE, not {text:?}")),
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    let addr = SocketAddr::new(args.host, args.port);
    let started = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => {
            Backend::start_tls_on(addr, &args.color, &args.version, cert, key)
        }
        _ => Backend::start_on(addr, &args.color, &args.version),
    };
    let backend = match started {
        Ok(backend) => backend,
        Err(e) => {
            eprintln!("backend: cannot listen on {addr}: {e}");
            return ExitCode::FAILURE;
        }
    };
    backend.set_healthy(!args.unhealthy);
    backend.set_fail_share(args.fail_share.as_f64());
    backend.set_delay(Duration::from_millis(args.delay_ms));
    backend.set_stream_chunk_delay(Duration::from_millis(args.stream_chunk_delay_ms));
    backend.set_model_name(&args.model);
    if let Some((name, _)) = args.require_header.first() {
        if let Some((other, _)) = args.require_header.iter().find(|(n, _)| n != name) {
            eprintln!("backend: --require-header names one header, not both {name} and {other}");
            return ExitCode::from(64);
        }
        let values: Vec<&str> = args
            .require_header
            .iter()
            .map(|(_, v)| v.as_str())
            .collect();
        backend.require_header(name, &values);
    }
    println!(
        "backend {} {} listening on {}://{} (HTTP/1.1 and {}){}{}; Ctrl-C to stop",
        backend.color(),
        backend.version(),
        if backend.is_tls() { "https" } else { "http" },
        backend.addr(),
        if backend.is_tls() { "h2" } else { "h2c" },
        if args.unhealthy { ", unhealthy" } else { "" },
        if args.fail_share == Share::NONE {
            String::new()
        } else {
            format!(
                ", failing {}% of requests",
                args.fail_share.as_f64() * 100.0
            )
        },
    );
    // The server runs on its own thread; park this one until the process is
    // interrupted.
    loop {
        std::thread::park();
    }
}
