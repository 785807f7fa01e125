//! ADS fan-out: N Envoy-like ADS streams (SotW, or delta with `--delta`) against the real
//! `switchyard` binary, each on its own HTTP/2 connection, measuring the connect storm, the
//! switch latency at every stream, and what the server spends (CPU, memory, bytes) doing
//! it.
//!
//! ```text
//! cargo bench --bench ads_fanout -- --streams 1,100,1000,10000 --switches 20
//! ```
//!
//! For each N, a fresh server (`switchyard serve`, ports 0, `SWITCHYARD_LOG=warn`) serves a
//! state file in a temporary directory: `--listeners` listeners (default 1) and
//! `--services` services spread over them. Then:
//! 1. Connect storm: N tasks each open a TCP connection, an HTTP/2 connection (`h2c.rs`, a
//!    minimal client) and one ADS stream on it, and behave like Envoy (`fleet.rs`): CDS
//!    (wildcard, node on the first message only), then EDS for the clusters received, LDS
//!    (wildcard) once endpoints arrived, RDS for the route configurations the listeners
//!    name; every response is acknowledged (its version and nonce, the same names). At
//!    most `--connect-concurrency` streams are between connect and first response at once
//!    (default 128, the server's accept backlog), so the storm measures the server rather
//!    than dropped SYNs; drops are counted anyway (`ListenOverflows`). The storm ends when
//!    every stream has acknowledged its first RouteConfiguration.
//! 2. Idle: `--idle-secs` with N streams open and nothing changing: server CPU over that
//!    window, then its RSS (`VmRSS`); memory per stream is (RSS now - RSS before any
//!    stream) / N.
//! 3. Switches: `--switches` times, the first service's `active` color is flipped by writing
//!    a temporary file and renaming it over the state file (t0 is taken just before the
//!    rename). Each stream's latency is t0 -> the new RouteConfiguration received. The next
//!    switch starts once every stream has it, the server has gone quiet (under 1 ms of CPU
//!    more than its idle rate in each of two 20 ms windows: every ACK processed) and
//!    `--gap-ms` have passed.
//!    `/metrics` is read only before the first and after the last switch (it walks every
//!    proxy, so polling it would load the server): the server's own convergence histogram
//!    gives its mean file-read -> all-acknowledged time.
//!
//! Reported per N: connect storm, switch latency p50/p90/p99/max over every stream and
//! switch, server CPU (storm, per switch, idle %), RSS before streams, with N idle streams
//! and peak (`VmHWM`), memory per stream, bytes per switch (the protobuf size of every
//! response received, summed over streams and per stream; and, where `ss` is available,
//! the TCP payload bytes the server's sockets sent, which adds gRPC/HTTP/2 framing), and
//! the load generator's own CPU (it shares the machine: on 2 cores its CPU counts against
//! the latencies). Each row names its protocol (`SotW` or `delta`). The load generator
//! runs on a tokio runtime of `--client-threads` workers (default 2); its coordinator
//! (which only reads the streams' counters) runs on the main thread.
//!
//! `--lrs` adds Envoy's load reports: every simulated proxy also opens a load reporting
//! (LRS) stream on its connection, as Envoy does with `cluster_manager.load_stats_config`,
//! and reports every `--lrs-interval` (the server is started with
//! `--load-report-interval` set to it) for its clusters, each report carrying the whole
//! node as Envoy 1.40's do (`--lrs-node-bytes`, 61 KB). Run the same stream counts with and
//! without it to see what LRS costs the server: the idle window's CPU and the memory per
//! stream then include every report; the row also says how many reports were sent and
//! how many the server counted (`switchyard_load_reports_total`) in that window:
//!
//! ```text
//! cargo bench --bench ads_fanout -- --streams 1000,10000 --switches 5
//! cargo bench --bench ads_fanout -- --streams 1000,10000 --switches 5 --lrs
//! ```
//!
//! `--delta` makes every simulated proxy speak incremental ADS
//! (`DeltaAggregatedResources`) as Envoy 1.40 does with `api_type: DELTA_GRPC`: the same
//! steps, but CDS and LDS start with an empty `resource_names_subscribe` (the legacy
//! wildcard), every response is acknowledged by its nonce alone, and EDS and RDS names are
//! subscribed and unsubscribed as clusters and listeners are added (`resources`) and removed
//! (`removed_resources`); a cluster or listener that only changed subscribes nothing. A
//! switch has reached a stream when a RouteConfiguration arrives whose `Resource.version`
//! differs from the last one (in SotW: the response's `version_info`). Everything is
//! measured the same way in both protocols, so rows of runs with and without `--delta`
//! (each row says which) can be put side by side; "per stream" under bytes per switch is
//! what one proxy received for one switch. What delta saves when one service of many
//! switches (the bytes per stream, above all): with one listener, nothing (its one
//! RouteConfiguration holds every service); with `--listeners 10`, the other nine
//! listeners' RouteConfigurations:
//!
//! ```text
//! cargo bench --bench ads_fanout -- --streams 1000 --services 1000 --switches 5
//! cargo bench --bench ads_fanout -- --streams 1000 --services 1000 --switches 5 --delta
//! cargo bench --bench ads_fanout -- --streams 1000 --services 1000 --listeners 10 --switches 5
//! cargo bench --bench ads_fanout -- --streams 1000 --services 1000 --listeners 10 --switches 5 --delta
//! ```
//!
//! `--lrs` works with either protocol.
//!
//! `--waves K` (K >= 2) rolls every switch out in K waves: simulated proxy i is in zone
//! `zone-{i mod K}`, and service 0 has a `rollout:` whose waves are zones 0 to K-2 and then
//! every other proxy, soaking 0 s, so each wave gets the switch once every proxy of the
//! waves before it acknowledged it. A switch's latency then runs to the last wave's last
//! stream; compare with the same run without `--waves`:
//!
//! ```text
//! cargo bench --bench ads_fanout -- --streams 10000 --switches 10
//! cargo bench --bench ads_fanout -- --streams 10000 --switches 10 --waves 3
//! ```
//!
//! `SWITCHYARD_BIN=/path/to/switchyard` measures another build (for A/B comparisons, run
//! alternately); `--perf DIR` records the server with `perf record` (add
//! `PERF_CALL_GRAPH=dwarf` for call graphs).
//!
//! The file-descriptor limit is raised to the hard limit at start (the server inherits
//! it); N streams need N descriptors in each process. If the hard limit is too low, raise
//! it first (`ulimit -Hn 65536` as root, or `prlimit`).

#[path = "../support/mod.rs"]
mod support;

mod fleet;
mod h2c;
mod report;
mod system;
mod wire;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use clap::Parser;
use tokio::sync::Semaphore;

use fleet::{Fleet, Lrs, envoy_like_stream};
use report::{Row, mib, ms};
use support::percentile;
use system::{
    Perf, Proc, ServerProcess, convergence, cpu_ns, listen_overflows, load_reports, machine,
    tcp_bytes_sent, tcp_segments_out,
};
use wire::Protocol;

/// Fan-out of one switchyard process to N Envoy-like ADS streams.
#[derive(Debug, Parser)]
struct Args {
    /// Stream counts to measure, comma-separated; a fresh server for each.
    #[arg(long, value_delimiter = ',', default_value = "1,100,1000,10000")]
    streams: Vec<usize>,
    /// Switches (route changes) per stream count.
    #[arg(long, default_value_t = 20)]
    switches: usize,
    /// Services in the state file (two clusters per service), spread over --listeners.
    #[arg(long, default_value_t = 10)]
    services: usize,
    /// Listeners in the state file, each with its own RouteConfiguration; service i is on
    /// listener i mod N. A switch flips service 0, on the first listener: a SotW proxy is
    /// sent every RouteConfiguration, a delta proxy that listener's only.
    #[arg(long, default_value_t = 1)]
    listeners: usize,
    /// Connections being set up at once during the connect storm (from connect to the
    /// first response). 128 matches the server's accept backlog (`listen(128)`, tokio's
    /// default): more can overflow it, and each dropped SYN costs its client 1 s.
    #[arg(long, default_value_t = 128)]
    connect_concurrency: usize,
    /// Worker threads of the load generator's tokio runtime.
    #[arg(long, default_value_t = 2)]
    client_threads: usize,
    /// Length of the idle window (N streams open, nothing changing), in seconds.
    #[arg(long, default_value_t = 5)]
    idle_secs: u64,
    /// Pause after a switch has converged, before the next one, in milliseconds.
    #[arg(long, default_value_t = 100)]
    gap_ms: u64,
    /// Give up on a connect storm or a switch after this many seconds.
    #[arg(long, default_value_t = 120)]
    timeout_secs: u64,
    /// Print every switch (convergence at the slowest stream) to stderr.
    #[arg(long)]
    each: bool,
    /// Record the server with `perf record -F 999` during the storm and the switches, into
    /// this directory (`perf-N-storm.data`, `perf-N-switches.data`); with
    /// `PERF_CALL_GRAPH=dwarf` in the environment, with call graphs.
    #[arg(long)]
    perf: Option<PathBuf>,
    /// Every simulated proxy also reports its load (LRS) on a second stream of its
    /// connection, as an Envoy with `cluster_manager.load_stats_config` does: a first
    /// request with its node, then, from the server's answer on, a report every
    /// --lrs-interval naming each of its clusters (the blue one of each service with
    /// --lrs-requests requests and one in flight, the green one quiet) and carrying the
    /// whole node (--lrs-node-bytes). The reports are spread over the interval. Compare a
    /// run with and without it: idle CPU and memory per stream then include LRS.
    #[arg(long)]
    lrs: bool,
    /// With --lrs: how often each proxy reports (the server's --load-report-interval).
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    lrs_interval: Duration,
    /// With --lrs: bytes of node every report carries. Envoy 1.40 sends its whole node,
    /// extension list included, in every report: 61 KB. 0: the node id alone.
    #[arg(long, default_value_t = 61_000)]
    lrs_node_bytes: usize,
    /// With --lrs: requests each report counts on each busy cluster.
    #[arg(long, default_value_t = 10)]
    lrs_requests: u64,
    /// Roll each switch out in this many waves of proxies, by zone (1: no rollout).
    #[arg(long, default_value_t = 1)]
    waves: usize,
    /// Every simulated proxy speaks incremental (delta) ADS, as Envoy with
    /// `api_type: DELTA_GRPC` does, instead of state of the world (SotW).
    #[arg(long)]
    delta: bool,
    /// Passed by `cargo bench` to every bench binary; ignored.
    #[arg(long, hide = true)]
    bench: bool,
}

impl Args {
    fn protocol(&self) -> Protocol {
        if self.delta {
            Protocol::Delta
        } else {
            Protocol::Sotw
        }
    }
}

fn main() {
    let args = Args::parse();
    wire::self_check();
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(n) => eprintln!("file descriptor limit: {n}"),
        Err(e) => eprintln!("cannot raise the file descriptor limit: {e}"),
    }
    let machine = machine();
    eprintln!("{machine}");
    let mut rows = Vec::new();
    for &n in &args.streams {
        eprintln!("--- {n} streams ---");
        match run(&args, n) {
            Ok(row) => {
                eprintln!("{}", row.line());
                rows.push(row);
            }
            Err(e) => {
                eprintln!("{n} streams: FAILED: {e}");
                rows.push(Row::failed(n, args.protocol(), e));
            }
        }
    }
    println!();
    println!("{machine}");
    println!(
        "{} ADS, {} services ({} listener(s)), {} switches per N, load generator on {} tokio worker(s), at most {} connects in flight\n",
        args.protocol().word(),
        args.services,
        args.listeners.max(1),
        args.switches,
        args.client_threads,
        args.connect_concurrency
    );
    if args.waves > 1 {
        println!(
            "each switch rolled out in {} waves of proxies by zone (soak 0 s)\n",
            args.waves
        );
    }
    if args.lrs {
        println!(
            "LRS on: a report every {:?} per proxy, {} bytes of node each, {} requests per busy cluster\n",
            args.lrs_interval, args.lrs_node_bytes, args.lrs_requests
        );
    }
    println!("{}", Row::header());
    for r in &rows {
        println!("{}", r.markdown());
    }
}

/// Measures one stream count against a fresh server.
fn run(args: &Args, n: usize) -> Result<Row, String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let state = dir.path().join("state.yaml");
    std::fs::write(
        &state,
        state_yaml(args.services, args.listeners, false, args.waves),
    )
    .map_err(|e| e.to_string())?;
    let mut extra = Vec::new();
    if args.lrs {
        let interval = humantime::format_duration(args.lrs_interval).to_string();
        extra = vec!["--load-report-interval".to_owned(), interval];
    }
    let mut server = ServerProcess::start(&state, &extra)?;
    let result = measure(args, n, &mut server, dir.path(), &state);
    server.stop();
    if let Err(e) = &result {
        eprintln!("server output (last lines):");
        for line in server.output.lock().unwrap().iter() {
            eprintln!("  {line}");
        }
        return Err(e.clone());
    }
    result
}

fn measure(
    args: &Args,
    n: usize,
    server: &mut ServerProcess,
    dir: &Path,
    state: &Path,
) -> Result<Row, String> {
    std::thread::sleep(Duration::from_millis(300));
    let before = Proc::sample(server.pid);
    let client_before = Proc::sample_self();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.client_threads)
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let mut row = Row {
        n,
        protocol: args.protocol(),
        rss0_kib: before.rss_kib,
        lrs: args.lrs,
        ..Default::default()
    };
    let lrs = args
        .lrs
        .then(|| Arc::new(Lrs::new(args.lrs_node_bytes, args.lrs_requests)));
    let timeout = Duration::from_secs(args.timeout_secs);
    let result = runtime.block_on(async {
        let fleet = Arc::new(Fleet::new(n));
        let addr = server.xds;
        let permits = Arc::new(Semaphore::new(args.connect_concurrency));

        // 1. Connect storm.
        let perf = args.perf.as_ref().map(|d| Perf::start(d, n, "storm", server.pid));
        let overflows = listen_overflows();
        let client_start = Proc::sample_self();
        let start = Instant::now();
        let tasks: Vec<_> = (0..n)
            .map(|idx| {
                let fleet = fleet.clone();
                let permits = permits.clone();
                let lrs = lrs.clone();
                let protocol = args.protocol();
                let zone = (args.waves > 1).then(|| format!("zone-{}", idx % args.waves));
                tokio::spawn(async move {
                    let error =
                        envoy_like_stream(idx, addr, permits, fleet.clone(), lrs, protocol, zone)
                        .await
                        .err();
                    fleet.end(idx, error);
                })
            })
            .collect();
        let all_ready = fleet
            .wait_until(start + timeout, |f| {
                f.ready.load(Relaxed) + f.ended.load(Relaxed) >= n
            })
            .await;
        drop(perf);
        if !all_ready || fleet.ready.load(Relaxed) < n {
            return Err(format!(
                "connect storm incomplete after {:.1}s: {}",
                start.elapsed().as_secs_f64(),
                fleet.progress()
            ));
        }
        row.storm = fleet.ready_at() - start;
        row.listen_drops = listen_overflows().saturating_sub(overflows);
        let after_storm = Proc::sample(server.pid);
        row.storm_cpu = after_storm.cpu - before.cpu;
        row.client_storm_cpu = Proc::sample_self().cpu - client_start.cpu;
        eprintln!(
            "storm: all {n} streams acknowledged their routes in {} (all connected in {}); CPU: server {:.2}s, load generator {:.2}s; {} connections dropped by a full accept queue",
            ms(row.storm),
            ms(fleet.connected_at() - start),
            row.storm_cpu,
            row.client_storm_cpu,
            row.listen_drops,
        );

        // 2. Idle (but for load reports, with --lrs).
        if args.lrs {
            // Every stream answered, and a whole interval of reports (the first of each
            // stream carries its node for the first time).
            let answered = fleet
                .wait_until(Instant::now() + timeout, |f| {
                    f.lrs_answered.load(Relaxed) + f.ended.load(Relaxed) >= n
                })
                .await;
            if !answered || fleet.lrs_answered.load(Relaxed) < n {
                return Err(format!(
                    "{} of {n} load reporting streams answered",
                    fleet.lrs_answered.load(Relaxed)
                ));
            }
            tokio::time::sleep(args.lrs_interval).await;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        let idle_start = Proc::sample(server.pid);
        let t = Instant::now();
        let responses = fleet.responses.load(Relaxed);
        let (reports, report_bytes) = (fleet.lrs_reports.load(Relaxed), fleet.lrs_bytes.load(Relaxed));
        let skipped = fleet.lrs_skipped.load(Relaxed);
        let counted = if args.lrs { load_reports(server.admin) } else { None };
        tokio::time::sleep(Duration::from_secs(args.idle_secs)).await;
        let idle_end = Proc::sample(server.pid);
        let idle = t.elapsed().as_secs_f64();
        row.idle_cpu_pct = (idle_end.cpu - idle_start.cpu) / idle * 100.0;
        row.rss_n_kib = idle_end.rss_kib;
        if args.lrs {
            row.lrs_reports_per_s = (fleet.lrs_reports.load(Relaxed) - reports) as f64 / idle;
            row.lrs_bytes_per_s = (fleet.lrs_bytes.load(Relaxed) - report_bytes) as f64 / idle;
            row.lrs_skipped = fleet.lrs_skipped.load(Relaxed) - skipped;
            row.lrs_counted_per_s = counted
                .zip(load_reports(server.admin))
                .map(|(a, b)| b.saturating_sub(a) as f64 / t.elapsed().as_secs_f64());
            eprintln!(
                "idle: {:.0} load reports/s sent ({}/s), {} not sent (the server's window full), {} counted by the server",
                row.lrs_reports_per_s,
                report::bytes(row.lrs_bytes_per_s),
                row.lrs_skipped,
                row.lrs_counted_per_s
                    .map(|r| format!("{r:.0}/s"))
                    .unwrap_or_else(|| "-".into()),
            );
        }
        eprintln!(
            "idle: server CPU {:.2}% over {}s, RSS {} ({:.1} KiB per stream), {} responses while idle",
            row.idle_cpu_pct,
            args.idle_secs,
            mib(row.rss_n_kib),
            row.per_stream_kib(),
            fleet.responses.load(Relaxed) - responses
        );

        // 3. Switches.
        let perf = args
            .perf
            .as_ref()
            .map(|d| Perf::start(d, n, "switches", server.pid));
        // One scrape before and one after: `/metrics` is not free for the server (it walks
        // every proxy), so it is not polled in between.
        let (conv_count0, conv_sum0) = convergence(server.admin).unwrap_or((0, 0.0));
        let switch_start = Proc::sample(server.pid);
        let client_switch_start = Proc::sample_self();
        let tcp_start = tcp_bytes_sent(server.xds.port());
        let segments_start = tcp_segments_out();
        let proto_bytes = fleet.bytes.load(Relaxed);
        let responses = fleet.per_type.each_ref().map(|c| c.load(Relaxed));
        let mut all = Vec::with_capacity(n * args.switches);
        for k in 1..=args.switches {
            let tmp = dir.join(".state.yaml.tmp");
            std::fs::write(&tmp, state_yaml(args.services, args.listeners, k % 2 == 1, args.waves))
                .map_err(|e| e.to_string())?;
            let t0 = fleet.begin_switch(k);
            std::fs::rename(&tmp, state).map_err(|e| e.to_string())?;
            let done = fleet
                .wait_until(t0 + timeout, |f| {
                    f.arrived.load(Relaxed) + f.ended.load(Relaxed) >= n
                })
                .await;
            let ended = fleet.ended.load(Relaxed);
            if !done || ended > 0 {
                return Err(format!(
                    "switch {k}: {} of {n} streams received the new routes within {}s ({ended} streams ended): {}",
                    fleet.arrived.load(Relaxed),
                    args.timeout_secs,
                    fleet.progress()
                ));
            }
            let first = all.len();
            all.extend(fleet.latencies());
            let slowest = all[first..].iter().max().copied().unwrap_or_default();
            // Let the server finish (every ACK processed) before the next switch: wait
            // until it has used under 1 ms of CPU more than it does idle (the load reports
            // keep it busy with --lrs) in each of two 20 ms windows.
            let idle_ns = (row.idle_cpu_pct / 100.0 * 20e6) as u64;
            let deadline = Instant::now() + timeout;
            let mut last = cpu_ns(server.pid);
            let mut quiet = 0;
            while quiet < 2 && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(20)).await;
                let now = cpu_ns(server.pid);
                quiet = if now - last < 1_000_000 + idle_ns { quiet + 1 } else { 0 };
                last = now;
            }
            if args.each {
                eprintln!(
                    "switch {k}: slowest stream {}, server quiet after {}",
                    ms(slowest),
                    ms(t0.elapsed())
                );
            }
            tokio::time::sleep(Duration::from_millis(args.gap_ms)).await;
            row.switches_done = k;
        }
        drop(perf);
        let end = Proc::sample(server.pid);
        row.switch_cpu = end.cpu - switch_start.cpu;
        row.client_switch_cpu = Proc::sample_self().cpu - client_switch_start.cpu;
        row.hwm_kib = end.hwm_kib;
        let switches = row.switches_done.max(1) as f64;
        row.proto_bytes_per_switch = (fleet.bytes.load(Relaxed) - proto_bytes) as f64 / switches;
        let mut per_type = [0.0; 5];
        for ((p, c), r) in per_type.iter_mut().zip(&fleet.per_type).zip(responses) {
            *p = (c.load(Relaxed) - r) as f64 / switches;
        }
        row.responses_per_switch = per_type;
        row.segments_per_switch = (tcp_segments_out() - segments_start) as f64 / switches;
        row.tcp_bytes_per_switch = match (tcp_start, tcp_bytes_sent(server.xds.port())) {
            (Some(a), Some(b)) => Some(b.saturating_sub(a) as f64 / switches),
            _ => None,
        };
        if let Some((count, sum)) = convergence(server.admin)
            && count > conv_count0
        {
            row.server_converged = count - conv_count0;
            row.server_convergence_ms =
                Some((sum - conv_sum0) / (count - conv_count0) as f64 * 1000.0);
        }
        all.sort_unstable();
        row.p50 = percentile(&all, 0.50);
        row.p90 = percentile(&all, 0.90);
        row.p99 = percentile(&all, 0.99);
        row.max = all.last().copied().unwrap_or_default();
        for t in tasks {
            t.abort();
        }
        Ok(())
    });
    let client_after = Proc::sample_self();
    row.client_cpu = client_after.cpu - client_before.cpu;
    row.client_hwm_kib = client_after.hwm_kib;
    // The server goes first so that the TIME_WAIT sockets are on its side, not on the
    // load generator's ephemeral ports.
    server.stop();
    runtime.shutdown_timeout(Duration::from_secs(5));
    result.map(|()| row)
}

/// The state file: one listener, `services` services; the first one's active color is
/// green when `flipped`, and with `waves` > 1 it rolls out by zone in that many waves.
fn state_yaml(services: usize, listeners: usize, flipped: bool, waves: usize) -> String {
    let listeners = listeners.max(1);
    let listener = |j: usize| match j {
        0 => "public".to_owned(),
        j => format!("listener-{j}"),
    };
    let mut s = String::from("listeners:\n");
    for j in 0..listeners {
        writeln!(
            s,
            "  - name: {}\n    address: 127.0.0.1\n    port: {}",
            listener(j),
            10000 + j
        )
        .unwrap();
    }
    s.push_str("services:\n");
    for i in 0..services {
        let active = if (i == 0 && flipped) || i % 2 == 1 {
            "green"
        } else {
            "blue"
        };
        let domain = if i < listeners {
            "\"*\"".to_owned()
        } else {
            format!("\"service-{i}.example.com\"")
        };
        writeln!(
            s,
            "  - name: service-{i}\n    listener: {}\n    domains: [{domain}]\n    blue:\n      endpoints: [\"127.0.0.1:{}\", \"127.0.0.1:{}\"]\n    green:\n      endpoints: [\"127.0.0.1:{}\", \"127.0.0.1:{}\"]\n    active: {active}",
            listener(i % listeners),
            20000 + 4 * i,
            20001 + 4 * i,
            20002 + 4 * i,
            20003 + 4 * i,
        )
        .unwrap();
        if i == 0 && waves > 1 {
            s.push_str("    rollout:\n      soak: 0s\n      waves:\n");
            for w in 0..waves - 1 {
                writeln!(s, "        - {{zone: zone-{w}}}").unwrap();
            }
            s.push_str("        - {}\n");
        }
    }
    s
}
