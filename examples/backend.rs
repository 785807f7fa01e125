//! A sample backend standing for one version of a model server: every request
//! gets `200`, `x-color: <color>` and the body `<color> <version>`.
//!
//! ```text
//! cargo run --example backend -- --color blue --version v1 --port 8081
//! cargo run --example backend -- --color green --version v2 --port 8082
//! ```
//!
//! Speaks HTTP/1.1 and HTTP/2 (h2c, prior knowledge). Stop it with Ctrl-C.

#[path = "../tests/common/backend.rs"]
mod backend;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::ExitCode;

use clap::Parser;

/// Run a sample HTTP backend that answers with its color and version.
#[derive(Debug, Parser)]
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
}

fn main() -> ExitCode {
    let args = Args::parse();
    let addr = SocketAddr::new(args.host, args.port);
    let backend = match backend::Backend::start_on(addr, &args.color, &args.version) {
        Ok(backend) => backend,
        Err(e) => {
            eprintln!("backend: cannot listen on {addr}: {e}");
            return ExitCode::FAILURE;
        }
    };
    println!(
        "backend {} {} listening on http://{} (HTTP/1.1 and h2c); Ctrl-C to stop",
        backend.color(),
        backend.version(),
        backend.addr()
    );
    // The server runs on its own thread; park this one until the process is
    // interrupted.
    loop {
        std::thread::park();
    }
}
