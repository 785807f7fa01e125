//! A sample backend standing for one version of a model server: every request
//! gets `200`, `x-color: <color>` and the body `<color> <version>`, and it can
//! be told to misbehave (turn unhealthy, fail a share of requests, answer
//! slowly) with flags at start and control paths while it runs.
//!
//! ```text
//! cargo run --example backend -- --color blue --version v1 --port 8081
//! cargo run --example backend -- --color green --version v2 --port 8082 --unhealthy
//! curl -X POST 'http://127.0.0.1:8082/_backend/health?ok=true'
//! curl -X POST 'http://127.0.0.1:8082/_backend/fail?share=0.3'
//! ```
//!
//! Speaks HTTP/1.1 and HTTP/2 (h2c, prior knowledge). Stop it with Ctrl-C.
//! The control paths are documented in `tests/common/backend.rs` and in
//! `--help`.

#[path = "../tests/common/backend.rs"]
mod backend;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
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

Requests whose host ends in -shadow (mirrored by Envoy) are counted as shadow_requests.

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
}

fn main() -> ExitCode {
    let args = Args::parse();
    let addr = SocketAddr::new(args.host, args.port);
    let backend = match Backend::start_on(addr, &args.color, &args.version) {
        Ok(backend) => backend,
        Err(e) => {
            eprintln!("backend: cannot listen on {addr}: {e}");
            return ExitCode::FAILURE;
        }
    };
    backend.set_healthy(!args.unhealthy);
    backend.set_fail_share(args.fail_share.as_f64());
    backend.set_delay(Duration::from_millis(args.delay_ms));
    println!(
        "backend {} {} listening on http://{} (HTTP/1.1 and h2c){}{}; Ctrl-C to stop",
        backend.color(),
        backend.version(),
        backend.addr(),
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
