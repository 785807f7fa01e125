//! Rollback time: from the first errors on the new color to the whole fleet back on the old
//! one, through real Envoys 1.40 reporting their load (LRS) to switchyard.
//!
//! ```text
//! cargo bench --bench rollback_time                          # 3 Envoys, 10 rollbacks
//! cargo bench --bench rollback_time -- --envoys 5 --rounds 20 --interval-ms 1000
//! ```
//!
//! One round: green takes the traffic (a new `attempt`, baked: window 1m, max_error_ratio
//! 0.05, min_requests 10), steady traffic flows through the Envoys, then at `t0` green
//! starts failing every request. The round's time is from `t0` to the moment every Envoy's
//! route configuration (read from its admin `/config_dump`, polled every 5 ms) sends 100%
//! to blue again. The target (issue 12): under two report intervals plus one switch.
//! See BENCHMARKS.md.

#[path = "../../tests/common/mod.rs"]
mod common;
#[path = "../support/mod.rs"]
mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use clap::Parser;
use serde_json::Value;

use common::control_plane::BlueGreen;
use common::envoy::Envoy;
use common::http;

/// Measure how long an automatic rollback takes, from the first errors to the fleet back.
#[derive(Debug, Parser)]
struct Args {
    /// Envoys in the fleet.
    #[arg(long, default_value_t = 3)]
    envoys: usize,
    /// Rollbacks measured.
    #[arg(long, default_value_t = 10)]
    rounds: usize,
    /// The load report interval switchyard asks of Envoy (`serve --load-report-interval`).
    #[arg(long, default_value_t = 1000)]
    interval_ms: u64,
    /// Concurrent clients sending traffic through the fleet.
    #[arg(long, default_value_t = 4)]
    clients: usize,
    /// Accepted for `cargo bench` compatibility; ignored.
    #[arg(long, hide = true)]
    bench: bool,
}

/// Whether `envoy`'s routes send everything to blue.
async fn on_blue(envoy: &Envoy) -> bool {
    let (status, body) = envoy
        .admin_get("/config_dump?resource=dynamic_route_configs")
        .await;
    if status != 200 {
        return false;
    }
    let Ok(dump) = serde_json::from_str::<Value>(&body) else {
        return false;
    };
    let routes = &dump["configs"][0]["route_config"]["virtual_hosts"][0]["routes"];
    let Some(default) = routes.as_array().and_then(|r| r.last()) else {
        return false;
    };
    let clusters = &default["route"]["weighted_clusters"]["clusters"];
    clusters[0]["name"] == "summarizer-blue" && clusters[0]["weight"] == 100
}

fn baked(scene: &BlueGreen, attempt: usize) -> String {
    scene.state("green").replace(
        "    active: green\n",
        &format!(
            "    active: green\n    attempt: {attempt}\n    bake:\n      window: 1m\n      max_error_ratio: 0.05\n      min_requests: 10\n"
        ),
    )
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args = Args::parse();
    let interval = Duration::from_millis(args.interval_ms);
    let scene = BlueGreen::start_with(move |c| c.load_report_interval = interval).await;
    let mut fleet = Vec::new();
    for i in 0..args.envoys {
        fleet.push(scene.envoy(&format!("rollback-{i}")).await);
    }
    let listener = scene.listener;
    let stop = Arc::new(AtomicBool::new(false));
    let mut clients = Vec::new();
    for _ in 0..args.clients {
        let stop = stop.clone();
        clients.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let _ = http::get(listener, "/", "summarizer.example").await;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }));
    }
    let mut times = Vec::new();
    for round in 0..args.rounds {
        scene.green.set_fail_share(0.0);
        scene.cp.save_by_rename(&baked(&scene, round));
        // Green in force everywhere, and baking for a couple of report intervals.
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let mut all_green = true;
            for e in &fleet {
                all_green &= !on_blue(e).await;
            }
            if all_green {
                break;
            }
            assert!(Instant::now() < deadline, "green never took the fleet");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tokio::time::sleep(interval * 2).await;
        let t0 = Instant::now();
        scene.green.set_fail_share(1.0);
        let mut back = vec![None; fleet.len()];
        while back.iter().any(Option::is_none) {
            for (i, e) in fleet.iter().enumerate() {
                if back[i].is_none() && on_blue(e).await {
                    back[i] = Some(t0.elapsed());
                }
            }
            assert!(
                t0.elapsed() < Duration::from_secs(30),
                "no rollback within 30 s"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let fleet_back = back.iter().flatten().max().copied().unwrap_or_default();
        let first = back.iter().flatten().min().copied().unwrap_or_default();
        eprintln!(
            "round {round}: fleet back on blue {:.0} ms after the first errors (first proxy {:.0} ms)",
            fleet_back.as_secs_f64() * 1e3,
            first.as_secs_f64() * 1e3
        );
        times.push(fleet_back);
    }
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        let _ = c.await;
    }
    times.sort();
    let target = interval * 2;
    println!(
        "rollback_time: {} Envoys, report interval {} ms, {} rounds",
        args.envoys, args.interval_ms, args.rounds
    );
    println!(
        "first errors -> fleet back on blue: median {:.0} ms, p90 {:.0} ms, max {:.0} ms (target: under {} ms plus one switch)",
        support::percentile(&times, 0.5).as_secs_f64() * 1e3,
        support::percentile(&times, 0.9).as_secs_f64() * 1e3,
        times.last().unwrap_or(&Duration::ZERO).as_secs_f64() * 1e3,
        target.as_millis()
    );
    let m = support::Machine::read();
    println!(
        "machine: {} CPUs, {}, kernel {}",
        m.cpus,
        m.cpu_model.as_deref().unwrap_or("unknown CPU"),
        m.kernel.as_deref().unwrap_or("unknown")
    );
}
