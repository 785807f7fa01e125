//! The report: markdown tables on stdout, and with `--each` every flip on stderr.

use std::fs;
use std::process::Command;
use std::time::Duration;

use crate::Args;
use crate::common::tools;
use crate::flips::Series;
use crate::support::{Machine, percentile};

fn ms(d: Duration) -> String {
    format!("{:.2}", d.as_secs_f64() * 1000.0)
}

/// `n | min | median | p90 | p99 | max` cells (milliseconds) for `samples`.
fn stats_cells(samples: &[Duration]) -> String {
    if samples.is_empty() {
        return "0 | - | - | - | - | -".to_owned();
    }
    let mut sorted = samples.to_vec();
    sorted.sort();
    format!(
        "{} | {} | {} | {} | {} | {}",
        sorted.len(),
        ms(sorted[0]),
        ms(percentile(&sorted, 0.50)),
        ms(percentile(&sorted, 0.90)),
        ms(percentile(&sorted, 0.99)),
        ms(sorted[sorted.len() - 1]),
    )
}

pub fn print_report(args: &Args, series: &[Series], load_before: &str, load_after: &str) {
    if args.each {
        print_each(series);
    }
    println!("\n## Switch latency: file save -> first response from the new color\n");
    println!("{}", machine());
    println!("Load average (1, 5, 15 min): {load_before} before, {load_after} after.\n");
    println!(
        "{} flips per series in {} rounds, each after {} warm-up flips; flips {} ms apart; \
         {} pollers, one keep-alive HTTP/1.1 connection each.\n",
        args.flips, args.rounds, args.warmup, args.gap_ms, args.pollers
    );
    println!("| series | flips | min ms | median ms | p90 ms | p99 ms | max ms |");
    println!("|---|---:|---:|---:|---:|---:|---:|");
    for s in series {
        let latencies: Vec<Duration> = s.flips.iter().map(|f| f.latency).collect();
        println!("| {} | {} |", s.name, stats_cells(&latencies));
    }
    println!("\nTime from `t0` to each stage:\n");
    println!("| series | stage | flips | min ms | median ms | p90 ms | p99 ms | max ms |");
    println!("|---|---|---:|---:|---:|---:|---:|---:|");
    for s in series {
        for (stage, samples) in &s.stages {
            let seen: Vec<Duration> = samples.iter().flatten().copied().collect();
            println!("| {} | {stage} | {} |", s.name, stats_cells(&seen));
        }
    }
    println!("\nPolling (the resolution of the figures above):\n");
    println!("| series | responses/s | mean interval between responses µs | poll errors |");
    println!("|---|---:|---:|---:|");
    for s in series {
        let rate = s.responses as f64 / s.elapsed.as_secs_f64();
        println!(
            "| {} | {rate:.0} | {:.0} | {} |",
            s.name,
            1e6 / rate.max(1.0),
            s.errors
        );
    }
}

/// One line per flip on stderr: latency, then each stage, in milliseconds.
fn print_each(series: &[Series]) {
    for s in series {
        eprintln!("{}:", s.name);
        for (i, flip) in s.flips.iter().enumerate() {
            let stages: Vec<String> = s
                .stages
                .iter()
                .map(|(_, at)| at[i].map_or_else(|| "-".to_owned(), ms))
                .collect();
            eprintln!(
                "  flip {i:3}: {} ms  [stages: {}]",
                ms(flip.latency),
                stages.join(", ")
            );
        }
    }
}

/// CPU count and model, kernel and Envoy version, as a markdown line.
fn machine() -> String {
    let machine = Machine::read();
    let envoy = Command::new(tools::envoy_bin())
        .arg("--version")
        .output()
        .ok()
        .and_then(|o| {
            let text = String::from_utf8_lossy(&o.stdout).into_owned();
            Some(text.split_once("version:")?.1.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown".to_owned());
    format!(
        "Machine: {} CPUs ({}), Linux {}; Envoy {envoy}.",
        machine.cpus,
        machine.cpu_model.as_deref().unwrap_or("unknown"),
        machine.kernel.as_deref().unwrap_or("unknown"),
    )
}

/// The first three fields of `/proc/loadavg`.
pub fn load_average() -> String {
    fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".to_owned())
}
