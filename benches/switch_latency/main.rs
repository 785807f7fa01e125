//! Switch latency: from saving the desired-state file to the first response from the new
//! color through a real Envoy 1.40, with Envoy reading the same routes straight from a
//! watched file (no control plane at all) measured in the same run as the baseline.
//!
//! ```text
//! cargo bench --bench switch_latency                     # 100 flips per series
//! cargo bench --bench switch_latency -- --flips 300 --pollers 1 --each
//! ```
//!
//! Series, each `--flips` flips in all:
//! 1. switchyard, the state file saved like an editor does (temp file renamed over it);
//! 2. switchyard, the state file rewritten in place (`std::fs::write`: truncate, write, close);
//! 3. no control plane: Envoy with RDS from a file (`path_config_source` with a
//!    `watched_directory`), the routes file replaced by a rename, as Envoy's docs prescribe.
//!
//! One flip: `t0` is taken just before the save starts; pollers send requests through Envoy
//! back to back, each on its own keep-alive HTTP/1.1 connection, and the flip's latency is
//! the time from `t0` to the moment the first response from the new color has been read in
//! full. Then the bench waits `--gap-ms` and flips back. Besides the latency, each flip
//! records when the save call returned and, for switchyard, when it logged the new state
//! accepted and the routes acknowledged by Envoy (its own log events, caught by a tracing
//! layer), which splits the latency into stages.
//!
//! The flips are run in `--rounds` rounds, each starting every scenario afresh and
//! alternating which goes first, so that a burst of background load on the machine does
//! not land on one series only. See BENCHMARKS.md.
//!
//! Here the rounds and the switchyard series; `baseline.rs` the Envoy reading routes from a
//! file, `flips.rs` flipping and timing, `poll.rs` the pollers, `marks.rs` switchyard's log
//! events as stages, `report.rs` the tables. `../support/` is shared with `ads_fanout`.

#[path = "../../tests/common/mod.rs"]
mod common;
#[path = "../support/mod.rs"]
mod support;

mod baseline;
mod flips;
mod marks;
mod poll;
mod report;

use clap::Parser;

use common::control_plane::BlueGreen;

use baseline::file_baseline;
use flips::{Color, Series, measure};
use marks::{Marks, Stage};
use poll::{Pollers, Probe};
use report::{load_average, print_report};

/// Measure file save -> first response from the new color through a real Envoy.
#[derive(Debug, Parser)]
struct Args {
    /// Flips measured per series, in all rounds together.
    #[arg(long, default_value_t = 100)]
    flips: usize,
    /// Rounds the flips are split into (each starts the scenarios afresh).
    #[arg(long, default_value_t = 4)]
    rounds: usize,
    /// Flips run before each series in each round and not counted.
    #[arg(long, default_value_t = 5)]
    warmup: usize,
    /// Concurrent pollers (threads, one keep-alive connection each).
    #[arg(long, default_value_t = 2)]
    pollers: usize,
    /// Pause after each flip has been seen, before the next one (milliseconds).
    #[arg(long, default_value_t = 100)]
    gap_ms: u64,
    /// Also print every flip (latency and, for switchyard, its stages) to stderr.
    #[arg(long)]
    each: bool,
    /// Passed by `cargo bench` to every bench binary; ignored.
    #[arg(long, hide = true)]
    bench: bool,
}

fn main() {
    let args = Args::parse();
    assert!(args.pollers > 0, "--pollers must be at least 1");
    assert!(
        (1..=args.flips).contains(&args.rounds),
        "--rounds must be between 1 and --flips"
    );
    let marks = Marks::install();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("build the tokio runtime");
    let load_before = load_average();
    let mut series: Vec<Series> = Vec::new();
    for round in 0..args.rounds {
        // Spread the flips evenly; the first rounds take the remainder.
        let flips = args.flips / args.rounds + usize::from(round < args.flips % args.rounds);
        eprintln!(
            "round {}/{}: {flips} flips per series",
            round + 1,
            args.rounds
        );
        let this_round = runtime.block_on(async {
            if round % 2 == 0 {
                let mut s = switchyard_series(&args, flips, &marks).await;
                s.push(file_baseline(&args, flips).await);
                s
            } else {
                let mut s = vec![file_baseline(&args, flips).await];
                s.extend(switchyard_series(&args, flips, &marks).await);
                s
            }
        });
        for s in this_round {
            match series.iter_mut().find(|known| known.name == s.name) {
                Some(known) => known.absorb(s),
                None => series.push(s),
            }
        }
    }
    print_report(&args, &series, &load_before, &load_average());
}

/// switchyard in process (the harness's `BlueGreen` scene) and one Envoy on ADS: a series
/// with saves by rename, then one with saves in place, on the same Envoy.
async fn switchyard_series(args: &Args, flips: usize, marks: &Marks) -> Vec<Series> {
    let scene = BlueGreen::start().await;
    let envoy = scene.envoy("bench-envoy").await;
    let states = [scene.state("blue"), scene.state("green")];
    let state = |c: Color| &states[c as usize];
    let probe = Probe::new();
    let pollers = Pollers::start(scene.listener, args.pollers, probe.clone());

    let mut out = Vec::new();
    let save_styles: [(&str, &dyn Fn(Color)); 2] = [
        ("switchyard, save by rename", &|c| {
            scene.cp.save_by_rename(state(c))
        }),
        ("switchyard, save in place", &|c| {
            scene.cp.save_in_place(state(c))
        }),
    ];
    for (name, save) in save_styles {
        let mut series = measure(name, args, flips, &probe, save).await;
        for (label, stage) in [
            (
                "switchyard logged `state accepted` (snapshot published)",
                Stage::Accepted,
            ),
            (
                "switchyard logged the routes ACK from Envoy",
                Stage::RoutesAcked,
            ),
        ] {
            series
                .stages
                .push((label, marks.offsets(stage, &series.flips)));
        }
        out.push(series);
    }
    drop(pollers);
    assert!(envoy.exit_status().is_none(), "envoy died during the bench");
    out
}
