//! ADS fan-out: N Envoy-like SotW streams against the real `switchyard` binary, each on its
//! own HTTP/2 connection, measuring the connect storm, the switch latency at every stream,
//! and what the server spends (CPU, memory, bytes) doing it.
//!
//! ```text
//! cargo bench --bench ads_fanout -- --streams 1,100,1000,10000 --switches 20
//! ```
//!
//! For each N, a fresh server (`switchyard serve`, ports 0, `SWITCHYARD_LOG=warn`) serves a
//! state file in a temporary directory: one listener and `--services` services. Then:
//! 1. Connect storm: N tasks each open a connection (`tonic` `Endpoint::connect`) and one
//!    ADS stream on it, and behave like Envoy: CDS (wildcard, node on the first message
//!    only), then EDS for the clusters received, LDS (wildcard) once endpoints arrived, RDS
//!    for the route configurations the listeners name; every response is acknowledged (its
//!    version and nonce, the same names). At most `--connect-concurrency` streams are
//!    between connect and first response at once (default 128, the server's accept
//!    backlog), so the storm measures the server rather than dropped SYNs; drops are
//!    counted anyway (`ListenOverflows`). The storm ends when every stream has
//!    acknowledged its first RouteConfiguration.
//! 2. Idle: `--idle-secs` with N streams open and nothing changing: server CPU over that
//!    window, then its RSS (`VmRSS`); memory per stream is (RSS now - RSS before any
//!    stream) / N.
//! 3. Switches: `--switches` times, the first service's `active` color is flipped by writing
//!    a temporary file and renaming it over the state file (t0 is taken just before the
//!    rename). Each stream's latency is t0 -> the new RouteConfiguration received. The next
//!    switch starts once every stream has it, the server has gone quiet (under 1 ms of CPU
//!    in each of two 20 ms windows: every ACK processed) and `--gap-ms` have passed.
//!    `/metrics` is read only before the first and after the last switch (it walks every
//!    proxy, so polling it would load the server): the server's own convergence histogram
//!    gives its mean file-read -> all-acknowledged time.
//!
//! Reported per N: connect storm, switch latency p50/p90/p99/max over every stream and
//! switch, server CPU (storm, per switch, idle %), RSS before streams, with N idle streams
//! and peak (`VmHWM`), memory per stream, bytes per switch (the protobuf size of every
//! response received, summed over streams; and, where `ss` is available, the TCP payload
//! bytes the server's sockets sent, which adds gRPC/HTTP/2 framing), and the load
//! generator's own CPU (it shares the machine: on 2 cores its CPU counts against the
//! latencies). The load generator runs on a tokio runtime of `--client-threads` workers
//! (default 2); its coordinator (which only counts) runs on the main thread.
//!
//! The file-descriptor limit is raised to the hard limit at start (the server inherits
//! it); N streams need N descriptors in each process. If the hard limit is too low, raise
//! it first (`ulimit -Hn 65536` as root, or `prlimit`).

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Parser;
use envoy_types::pb::envoy::config::cluster::v3::Cluster;
use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::envoy::config::listener::v3::Listener;
use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient;
use envoy_types::pb::envoy::service::discovery::v3::{DiscoveryRequest, DiscoveryResponse};
use prost::Message;
use tokio::sync::{Semaphore, mpsc};
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Endpoint;

/// Fan-out of one switchyard process to N Envoy-like ADS streams.
#[derive(Debug, Parser)]
struct Args {
    /// Stream counts to measure, comma-separated; a fresh server for each.
    #[arg(long, value_delimiter = ',', default_value = "1,100,1000,10000")]
    streams: Vec<usize>,
    /// Switches (route changes) per stream count.
    #[arg(long, default_value_t = 20)]
    switches: usize,
    /// Services in the state file (one listener; two clusters per service).
    #[arg(long, default_value_t = 10)]
    services: usize,
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
    /// Record the server with `perf record --call-graph dwarf` during the storm and the
    /// switches, into this directory
    /// (`perf-N-storm.data`, `perf-N-switches.data`).
    #[arg(long)]
    perf: Option<PathBuf>,
    /// Passed by `cargo bench` to every bench binary; ignored.
    #[arg(long, hide = true)]
    bench: bool,
}

const CDS: usize = 0;
const EDS: usize = 1;
const LDS: usize = 2;
const RDS: usize = 3;
const TYPE_URLS: [&str; 4] = [
    "type.googleapis.com/envoy.config.cluster.v3.Cluster",
    "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment",
    "type.googleapis.com/envoy.config.listener.v3.Listener",
    "type.googleapis.com/envoy.config.route.v3.RouteConfiguration",
];

fn main() {
    let args = Args::parse();
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
                rows.push(Row::failed(n, e));
            }
        }
    }
    println!();
    println!("{machine}");
    println!(
        "{} services (1 listener), {} switches per N, load generator on {} tokio worker(s), at most {} connects in flight\n",
        args.services, args.switches, args.client_threads, args.connect_concurrency
    );
    println!("{}", Row::header());
    for r in &rows {
        println!("{}", r.markdown());
    }
}

/// One line of results.
#[derive(Debug, Default)]
struct Row {
    n: usize,
    error: Option<String>,
    storm: Duration,
    storm_cpu: f64,
    p50: Duration,
    p90: Duration,
    p99: Duration,
    max: Duration,
    switches_done: usize,
    switch_cpu: f64,
    server_convergence_ms: Option<f64>,
    /// Switches the server counted as converged (every proxy acknowledged).
    server_converged: u64,
    /// Connections dropped by a full accept queue during the storm (system-wide
    /// `ListenOverflows`; each costs the client a 1 s SYN retransmission).
    listen_drops: u64,
    idle_cpu_pct: f64,
    rss0_kib: u64,
    rss_n_kib: u64,
    hwm_kib: u64,
    proto_bytes_per_switch: f64,
    tcp_bytes_per_switch: Option<f64>,
    responses_per_switch: [f64; 4],
    client_cpu: f64,
    /// The load generator's CPU during the storm and during the switches.
    client_storm_cpu: f64,
    client_switch_cpu: f64,
    client_hwm_kib: u64,
}

impl Row {
    fn failed(n: usize, e: String) -> Row {
        Row {
            n,
            error: Some(e),
            ..Default::default()
        }
    }

    fn per_stream_kib(&self) -> f64 {
        (self.rss_n_kib as f64 - self.rss0_kib as f64) / self.n as f64
    }

    fn header() -> String {
        "| N | connect storm | accept-queue drops | switch p50 | p90 | p99 | max | server-measured convergence (mean) | server CPU: storm | per switch | idle | RSS: 0 streams | N idle | peak | per stream | bytes per switch: protobuf | TCP | load generator CPU: storm | per switch |\n\
         |---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
            .to_owned()
    }

    fn markdown(&self) -> String {
        if let Some(e) = &self.error {
            return format!("| {} | failed: {} |", self.n, e.replace('|', "/"));
        }
        let switches = self.switches_done.max(1) as f64;
        format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {:.2} s | {:.1} ms | {:.2} % | {} | {} | {} | {:.1} KiB | {} | {} | {:.2} s | {:.1} ms |",
            self.n,
            ms(self.storm),
            self.listen_drops,
            ms(self.p50),
            ms(self.p90),
            ms(self.p99),
            ms(self.max),
            self.server_convergence_ms
                .map(|c| format!("{c:.1} ms"))
                .unwrap_or_else(|| "-".into()),
            self.storm_cpu,
            self.switch_cpu * 1000.0 / switches,
            self.idle_cpu_pct,
            mib(self.rss0_kib),
            mib(self.rss_n_kib),
            mib(self.hwm_kib),
            self.per_stream_kib(),
            bytes(self.proto_bytes_per_switch),
            self.tcp_bytes_per_switch
                .map(bytes)
                .unwrap_or_else(|| "-".into()),
            self.client_storm_cpu,
            self.client_switch_cpu * 1000.0 / switches,
        )
    }

    fn line(&self) -> String {
        format!(
            "N={} storm {} ({} accept-queue drops) | switch p50 {} p90 {} p99 {} max {} ({} switches, {} converged by the server's count, mean {}) | server CPU storm {:.2}s, switches {:.2}s, idle {:.2}% | RSS {} -> {} (peak {}), {:.1} KiB/stream | per switch {} protobuf, {} TCP, responses per switch C/E/L/R {:?} | load generator CPU {:.1}s (storm {:.2}s, per switch {:.1} ms), peak RSS {}",
            self.n,
            ms(self.storm),
            self.listen_drops,
            ms(self.p50),
            ms(self.p90),
            ms(self.p99),
            ms(self.max),
            self.switches_done,
            self.server_converged,
            self.server_convergence_ms
                .map(|c| format!("{c:.1} ms"))
                .unwrap_or_else(|| "-".into()),
            self.storm_cpu,
            self.switch_cpu,
            self.idle_cpu_pct,
            mib(self.rss0_kib),
            mib(self.rss_n_kib),
            mib(self.hwm_kib),
            self.per_stream_kib(),
            bytes(self.proto_bytes_per_switch),
            self.tcp_bytes_per_switch
                .map(bytes)
                .unwrap_or_else(|| "-".into()),
            self.responses_per_switch,
            self.client_cpu,
            self.client_storm_cpu,
            self.client_switch_cpu * 1000.0 / self.switches_done.max(1) as f64,
            mib(self.client_hwm_kib),
        )
    }
}

fn ms(d: Duration) -> String {
    let ms = d.as_secs_f64() * 1000.0;
    if ms >= 100.0 {
        format!("{ms:.0} ms")
    } else {
        format!("{ms:.1} ms")
    }
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

fn bytes(b: f64) -> String {
    if b >= 1024.0 * 1024.0 {
        format!("{:.2} MiB", b / 1024.0 / 1024.0)
    } else if b >= 1024.0 {
        format!("{:.1} KiB", b / 1024.0)
    } else {
        format!("{b:.0} B")
    }
}

/// Measures one stream count against a fresh server.
fn run(args: &Args, n: usize) -> Result<Row, String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let state = dir.path().join("state.yaml");
    std::fs::write(&state, state_yaml(args.services, false)).map_err(|e| e.to_string())?;
    let mut server = ServerProcess::start(&state)?;
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
        rss0_kib: before.rss_kib,
        ..Default::default()
    };
    let timeout = Duration::from_secs(args.timeout_secs);
    let result = runtime.block_on(async {
        let (events_tx, events_rx) = mpsc::unbounded_channel();
        let mut fleet = Fleet::new(n, events_rx);
        let endpoint = Endpoint::from_shared(format!("http://{}", server.xds))
            .map_err(|e| e.to_string())?
            .tcp_nodelay(true)
            .connect_timeout(Duration::from_secs(30));
        let permits = Arc::new(Semaphore::new(args.connect_concurrency));

        // 1. Connect storm.
        let perf = args.perf.as_ref().map(|d| Perf::start(d, n, "storm", server.pid));
        let overflows = listen_overflows();
        let client_start = Proc::sample_self();
        let start = Instant::now();
        let tasks: Vec<_> = (0..n)
            .map(|idx| {
                let events = events_tx.clone();
                let endpoint = endpoint.clone();
                let permits = permits.clone();
                tokio::spawn(async move {
                    let error = envoy_like_stream(idx, endpoint, permits, events.clone())
                        .await
                        .err();
                    let _ = events.send(Ev::Ended { idx, error });
                })
            })
            .collect();
        let all_ready = fleet
            .pump_until(start + timeout, |f| f.ready + f.ended == n)
            .await;
        drop(perf);
        if !all_ready || fleet.ready < n {
            return Err(format!(
                "connect storm incomplete after {:.1}s: {}",
                start.elapsed().as_secs_f64(),
                fleet.progress()
            ));
        }
        row.storm = fleet.ready_at.expect("every stream ready") - start;
        row.listen_drops = listen_overflows().saturating_sub(overflows);
        let after_storm = Proc::sample(server.pid);
        row.storm_cpu = after_storm.cpu - before.cpu;
        row.client_storm_cpu = Proc::sample_self().cpu - client_start.cpu;
        eprintln!(
            "storm: all {n} streams acknowledged their routes in {} (all connected in {}); CPU: server {:.2}s, load generator {:.2}s; {} connections dropped by a full accept queue",
            ms(row.storm),
            ms(fleet.connected_at.expect("every stream connected") - start),
            row.storm_cpu,
            row.client_storm_cpu,
            row.listen_drops,
        );

        // 2. Idle.
        fleet
            .pump_until(Instant::now() + Duration::from_secs(1), |_| false)
            .await;
        let idle_start = Proc::sample(server.pid);
        let t = Instant::now();
        let responses = fleet.responses;
        fleet
            .pump_until(t + Duration::from_secs(args.idle_secs), |_| false)
            .await;
        let idle_end = Proc::sample(server.pid);
        row.idle_cpu_pct = (idle_end.cpu - idle_start.cpu) / t.elapsed().as_secs_f64() * 100.0;
        row.rss_n_kib = idle_end.rss_kib;
        eprintln!(
            "idle: server CPU {:.2}% over {}s, RSS {} ({:.1} KiB per stream), {} responses while idle",
            row.idle_cpu_pct,
            args.idle_secs,
            mib(row.rss_n_kib),
            row.per_stream_kib(),
            fleet.responses - responses
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
        let mut proto_bytes = 0u64;
        let mut responses = [0u64; 4];
        for k in 1..=args.switches {
            let tmp = dir.join(".state.yaml.tmp");
            std::fs::write(&tmp, state_yaml(args.services, k % 2 == 1))
                .map_err(|e| e.to_string())?;
            fleet.begin_switch(k);
            let t0 = Instant::now();
            fleet.t0 = t0;
            std::fs::rename(&tmp, state).map_err(|e| e.to_string())?;
            let done = fleet
                .pump_until(t0 + timeout, |f| f.arrived + f.ended >= n)
                .await;
            if !done || fleet.ended > 0 {
                return Err(format!(
                    "switch {k}: {} of {n} streams received the new routes within {}s ({} streams ended)",
                    fleet.arrived, args.timeout_secs, fleet.ended
                ));
            }
            let slowest = fleet.latencies.current_max();
            // Let the server finish (every ACK processed) before the next switch: wait
            // until it has used under 1 ms of CPU in each of two 20 ms windows.
            let deadline = Instant::now() + timeout;
            let mut last = cpu_ns(server.pid);
            let mut quiet = 0;
            while quiet < 2 && Instant::now() < deadline {
                fleet
                    .pump_until(Instant::now() + Duration::from_millis(20), |_| false)
                    .await;
                let now = cpu_ns(server.pid);
                quiet = if now - last < 1_000_000 { quiet + 1 } else { 0 };
                last = now;
            }
            if args.each {
                eprintln!(
                    "switch {k}: slowest stream {}, server quiet after {}",
                    ms(slowest),
                    ms(t0.elapsed())
                );
            }
            fleet
                .pump_until(Instant::now() + Duration::from_millis(args.gap_ms), |_| false)
                .await;
            proto_bytes += fleet.phase_bytes;
            for (r, c) in responses.iter_mut().zip(fleet.phase_responses) {
                *r += c;
            }
            row.switches_done = k;
        }
        drop(perf);
        let end = Proc::sample(server.pid);
        row.switch_cpu = end.cpu - switch_start.cpu;
        row.client_switch_cpu = Proc::sample_self().cpu - client_switch_start.cpu;
        row.hwm_kib = end.hwm_kib;
        let switches = row.switches_done.max(1) as f64;
        row.proto_bytes_per_switch = proto_bytes as f64 / switches;
        row.responses_per_switch = responses.map(|r| r as f64 / switches);
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
        let mut all = std::mem::take(&mut fleet.latencies.all);
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

/// Nearest-rank percentile of sorted `v`.
fn percentile(v: &[Duration], p: f64) -> Duration {
    if v.is_empty() {
        return Duration::ZERO;
    }
    let rank = (p * v.len() as f64).ceil() as usize;
    v[rank.clamp(1, v.len()) - 1]
}

/// What a stream task reports.
enum Ev {
    Connected {
        idx: usize,
    },
    Response {
        idx: usize,
        type_: usize,
        received: Instant,
        acked: Instant,
        bytes: usize,
        /// Route responses only.
        version: Option<String>,
    },
    Ended {
        idx: usize,
        error: Option<String>,
    },
}

/// Switch latencies: all of them, and where the current switch's began.
#[derive(Default)]
struct Latencies {
    all: Vec<Duration>,
    switch_start: usize,
}

impl Latencies {
    fn current_max(&self) -> Duration {
        self.all[self.switch_start..]
            .iter()
            .max()
            .copied()
            .unwrap_or_default()
    }
}

/// The load generator's view of every stream.
struct Fleet {
    rx: mpsc::UnboundedReceiver<Ev>,
    /// Per stream: furthest startup step reached (0 spawned, 1 connected, 2 clusters,
    /// 3 endpoints, 4 listeners, 5 routes acknowledged).
    stage: Vec<u8>,
    last_routes: Vec<String>,
    switch_seen: Vec<usize>,
    ready: usize,
    ready_at: Option<Instant>,
    connected: usize,
    connected_at: Option<Instant>,
    ended: usize,
    errors: Vec<String>,
    responses: u64,
    switch: usize,
    t0: Instant,
    arrived: usize,
    latencies: Latencies,
    phase_bytes: u64,
    phase_responses: [u64; 4],
}

impl Fleet {
    fn new(n: usize, rx: mpsc::UnboundedReceiver<Ev>) -> Fleet {
        Fleet {
            rx,
            stage: vec![0; n],
            last_routes: vec![String::new(); n],
            switch_seen: vec![0; n],
            ready: 0,
            ready_at: None,
            connected: 0,
            connected_at: None,
            ended: 0,
            errors: Vec::new(),
            responses: 0,
            switch: 0,
            t0: Instant::now(),
            arrived: 0,
            latencies: Latencies::default(),
            phase_bytes: 0,
            phase_responses: [0; 4],
        }
    }

    fn begin_switch(&mut self, k: usize) {
        self.switch = k;
        self.arrived = 0;
        self.phase_bytes = 0;
        self.phase_responses = [0; 4];
        self.latencies.switch_start = self.latencies.all.len();
    }

    /// Handles events until `done` holds (true) or `deadline` passes (false).
    async fn pump_until(&mut self, deadline: Instant, done: impl Fn(&Fleet) -> bool) -> bool {
        let deadline = tokio::time::Instant::from_std(deadline);
        loop {
            if done(self) {
                return true;
            }
            tokio::select! {
                ev = self.rx.recv() => match ev {
                    Some(ev) => self.apply(ev),
                    None => return done(self),
                },
                _ = tokio::time::sleep_until(deadline) => return done(self),
            }
        }
    }

    fn apply(&mut self, ev: Ev) {
        match ev {
            Ev::Connected { idx } => {
                self.stage[idx] = self.stage[idx].max(1);
                self.connected += 1;
                if self.connected == self.stage.len() {
                    self.connected_at = Some(Instant::now());
                }
            }
            Ev::Response {
                idx,
                type_,
                received,
                acked,
                bytes,
                version,
            } => {
                self.responses += 1;
                self.phase_bytes += bytes as u64;
                self.phase_responses[type_] += 1;
                self.stage[idx] = self.stage[idx].max(type_ as u8 + 2);
                let Some(version) = version else { return };
                if self.last_routes[idx].is_empty() {
                    self.ready += 1;
                    self.ready_at = Some(self.ready_at.map_or(acked, |a| a.max(acked)));
                } else if version != self.last_routes[idx]
                    && self.switch > 0
                    && self.switch_seen[idx] < self.switch
                {
                    self.switch_seen[idx] = self.switch;
                    self.arrived += 1;
                    self.latencies.all.push(received - self.t0);
                }
                self.last_routes[idx] = version;
            }
            Ev::Ended { idx, error } => {
                self.ended += 1;
                if let Some(e) = error
                    && self.errors.len() < 5
                {
                    self.errors.push(format!("stream {idx}: {e}"));
                }
            }
        }
    }

    /// Where the streams are, for a report of a stall.
    fn progress(&self) -> String {
        let mut counts = [0usize; 6];
        for s in &self.stage {
            counts[*s as usize] += 1;
        }
        let mut out = format!(
            "{} not connected, {} connected without clusters, {} at clusters, {} at endpoints, {} at listeners, {} routes acknowledged; {} ended",
            counts[0], counts[1], counts[2], counts[3], counts[4], counts[5], self.ended
        );
        for e in &self.errors {
            write!(out, "; {e}").unwrap();
        }
        out
    }
}

/// One ADS stream behaving like Envoy (SotW, `set_node_on_first_message_only`), on its own
/// connection. Runs until the server ends the stream or the task is aborted.
async fn envoy_like_stream(
    idx: usize,
    endpoint: Endpoint,
    permits: Arc<Semaphore>,
    events: mpsc::UnboundedSender<Ev>,
) -> Result<(), String> {
    // Held until the first response: at most that many connections are being set up
    // (connected, accepted, first request answered) at once.
    let mut permit = Some(permits.acquire_owned().await.map_err(|e| e.to_string())?);
    let channel = endpoint
        .connect()
        .await
        .map_err(|e| format!("connect: {e:?}"))?;
    let (tx, rx) = mpsc::channel::<DiscoveryRequest>(16);
    let node = Node {
        id: format!("fanout-{idx}"),
        cluster: "fanout".to_owned(),
        user_agent_name: "envoy".to_owned(),
        ..Default::default()
    };
    let mut first = request(CDS, "", "", Vec::new());
    first.node = Some(node);
    tx.send(first).await.map_err(|e| e.to_string())?;
    let mut client = AggregatedDiscoveryServiceClient::new(channel);
    let mut inbound = client
        .stream_aggregated_resources(ReceiverStream::new(rx))
        .await
        .map_err(|s| format!("open stream: {s}"))?
        .into_inner();
    let _ = events.send(Ev::Connected { idx });

    // Per type: names subscribed (None: not yet), last version acknowledged, last nonce.
    let mut names: [Option<Vec<String>>; 4] = [Some(Vec::new()), None, None, None];
    let mut acked: [String; 4] = Default::default();
    let mut nonce: [String; 4] = Default::default();
    let send = |req: DiscoveryRequest| tx.send(req);
    let closed = |e: mpsc::error::SendError<DiscoveryRequest>| e.to_string();
    while let Some(resp) = inbound
        .message()
        .await
        .map_err(|s| format!("stream: {s}"))?
    {
        let received = Instant::now();
        drop(permit.take());
        let bytes = resp.encoded_len();
        let Some(t) = TYPE_URLS.iter().position(|u| *u == resp.type_url) else {
            return Err(format!("unexpected type {}", resp.type_url));
        };
        nonce[t].clone_from(&resp.nonce);
        let subscribed = names[t].clone().unwrap_or_default();
        // Like Envoy: a new cluster set subscribes its endpoints, new listeners their
        // routes (the request carries the type's latest nonce and acknowledged version);
        // listeners are asked for once the first clusters are warm (endpoints received).
        let follow = match t {
            CDS => Some((EDS, resource_names::<Cluster>(&resp, |c| c.name))),
            LDS => Some((RDS, resource_names::<Listener>(&resp, |l| l.name))),
            EDS if names[LDS].is_none() => Some((LDS, Vec::new())),
            _ => None,
        };
        if let Some((next, wanted)) = follow
            && names[next].as_ref() != Some(&wanted)
        {
            send(request(next, &acked[next], &nonce[next], wanted.clone()))
                .await
                .map_err(closed)?;
            names[next] = Some(wanted);
        }
        acked[t].clone_from(&resp.version_info);
        send(request(t, &resp.version_info, &resp.nonce, subscribed))
            .await
            .map_err(closed)?;
        let acked_at = Instant::now();
        let _ = events.send(Ev::Response {
            idx,
            type_: t,
            received,
            acked: acked_at,
            bytes,
            version: (t == RDS).then(|| resp.version_info.clone()),
        });
    }
    Err("the server ended the stream".to_owned())
}

fn request(t: usize, version: &str, nonce: &str, names: Vec<String>) -> DiscoveryRequest {
    DiscoveryRequest {
        version_info: version.to_owned(),
        type_url: TYPE_URLS[t].to_owned(),
        response_nonce: nonce.to_owned(),
        resource_names: names,
        ..Default::default()
    }
}

/// Names of the resources of `resp`, decoded as `M`, sorted.
fn resource_names<M: Message + Default>(
    resp: &DiscoveryResponse,
    name: impl Fn(M) -> String,
) -> Vec<String> {
    let mut names: Vec<String> = resp
        .resources
        .iter()
        .filter_map(|any| M::decode(any.value.as_slice()).ok())
        .map(name)
        .collect();
    names.sort();
    names
}

/// The state file: one listener, `services` services; the first one's active color is
/// green when `flipped`.
fn state_yaml(services: usize, flipped: bool) -> String {
    let mut s = String::from(
        "listeners:\n  - name: public\n    address: 127.0.0.1\n    port: 10000\nservices:\n",
    );
    for i in 0..services {
        let active = if (i == 0 && flipped) || i % 2 == 1 {
            "green"
        } else {
            "blue"
        };
        let domain = if i == 0 {
            "\"*\"".to_owned()
        } else {
            format!("\"service-{i}.example.com\"")
        };
        writeln!(
            s,
            "  - name: service-{i}\n    listener: public\n    domains: [{domain}]\n    blue:\n      endpoints: [\"127.0.0.1:{}\", \"127.0.0.1:{}\"]\n    green:\n      endpoints: [\"127.0.0.1:{}\", \"127.0.0.1:{}\"]\n    active: {active}",
            20000 + 4 * i,
            20001 + 4 * i,
            20002 + 4 * i,
            20003 + 4 * i,
        )
        .unwrap();
    }
    s
}

/// The server under test, a child process.
struct ServerProcess {
    child: Child,
    pid: u32,
    xds: SocketAddr,
    admin: SocketAddr,
    /// The last lines it printed (stdout and stderr).
    output: Arc<Mutex<VecDeque<String>>>,
}

impl ServerProcess {
    fn start(state: &Path) -> Result<ServerProcess, String> {
        let mut child = Command::new(env!("CARGO_BIN_EXE_switchyard"))
            .arg("serve")
            .arg("--state")
            .arg(state)
            .args(["--xds-addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0"])
            .env("SWITCHYARD_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot start switchyard: {e}"))?;
        let pid = child.id();
        let output = Arc::new(Mutex::new(VecDeque::new()));
        let stderr = child.stderr.take().expect("piped");
        drain(stderr, output.clone(), true);
        let mut stdout = BufReader::new(child.stdout.take().expect("piped"));
        let mut line = String::new();
        loop {
            line.clear();
            if stdout.read_line(&mut line).map_err(|e| e.to_string())? == 0 {
                let _ = child.wait();
                return Err(format!(
                    "switchyard exited before listening: {:?}",
                    output.lock().unwrap()
                ));
            }
            if let Some(rest) = line.trim().strip_prefix("switchyard listening ") {
                let addr = |key: &str| -> Result<SocketAddr, String> {
                    rest.split_whitespace()
                        .find_map(|kv| kv.strip_prefix(key))
                        .ok_or_else(|| format!("no {key} in {line:?}"))?
                        .parse()
                        .map_err(|e| format!("{line:?}: {e}"))
                };
                let (xds, admin) = (addr("xds=")?, addr("admin=")?);
                drain(stdout.into_inner(), output.clone(), false);
                eprintln!("server pid {pid}, xds {xds}, admin {admin}");
                return Ok(ServerProcess {
                    child,
                    pid,
                    xds,
                    admin,
                    output,
                });
            }
        }
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Keeps the last lines of `from`; echoes the first few to stderr when `echo`.
fn drain(from: impl Read + Send + 'static, into: Arc<Mutex<VecDeque<String>>>, echo: bool) {
    std::thread::spawn(move || {
        let mut echoed = 0;
        for line in BufReader::new(from).lines() {
            let Ok(line) = line else { break };
            if echo && echoed < 20 {
                eprintln!("server: {line}");
                echoed += 1;
            }
            let mut buf = into.lock().unwrap();
            if buf.len() == 50 {
                buf.pop_front();
            }
            buf.push_back(line);
        }
    });
}

/// CPU seconds (user + system, all threads) and memory of a process, from /proc.
#[derive(Debug, Clone, Copy, Default)]
struct Proc {
    cpu: f64,
    rss_kib: u64,
    hwm_kib: u64,
}

impl Proc {
    fn sample(pid: u32) -> Proc {
        Proc::read(&format!("/proc/{pid}"))
    }

    fn sample_self() -> Proc {
        Proc::read("/proc/self")
    }

    fn read(dir: &str) -> Proc {
        let stat = std::fs::read_to_string(format!("{dir}/stat")).unwrap_or_default();
        // Fields after the command name (which may contain spaces) in parentheses:
        // state is field 3, utime 14, stime 15.
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .map(|(_, rest)| rest.split_whitespace().collect())
            .unwrap_or_default();
        let ticks = |i: usize| {
            fields
                .get(i)
                .and_then(|f| f.parse::<u64>().ok())
                .unwrap_or(0)
        };
        let cpu = (ticks(11) + ticks(12)) as f64 / clock_ticks();
        let status = std::fs::read_to_string(format!("{dir}/status")).unwrap_or_default();
        let kib = |key: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(key))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
                .unwrap_or(0)
        };
        Proc {
            cpu,
            rss_kib: kib("VmRSS:"),
            hwm_kib: kib("VmHWM:"),
        }
    }
}

fn clock_ticks() -> f64 {
    static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(100.0)
    })
}

/// CPU time of every thread of `pid` so far, in nanoseconds (`/proc/PID/task/*/schedstat`:
/// exact, unlike the clock ticks of `/proc/PID/stat`).
fn cpu_ns(pid: u32) -> u64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    tasks
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .sum()
}

/// `TcpExt: ListenOverflows` from `/proc/net/netstat` (this network namespace).
fn listen_overflows() -> u64 {
    let text = std::fs::read_to_string("/proc/net/netstat").unwrap_or_default();
    let mut lines = text.lines();
    while let (Some(names), Some(values)) = (lines.next(), lines.next()) {
        if !names.starts_with("TcpExt:") {
            continue;
        }
        if let Some(i) = names
            .split_whitespace()
            .position(|n| n == "ListenOverflows")
        {
            return values
                .split_whitespace()
                .nth(i)
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
        }
    }
    0
}

/// Bytes sent so far by the server's established TCP sockets on `port` (TCP payload:
/// gRPC, HTTP/2 framing and all), from `ss -ti`. `None` when `ss` is not available.
fn tcp_bytes_sent(port: u16) -> Option<u64> {
    let out = Command::new("ss")
        .args([
            "-Htin",
            "state",
            "established",
            "sport",
            "=",
            &format!(":{port}"),
        ])
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8_lossy(&out.stdout);
    Some(
        text.split_whitespace()
            .filter_map(|w| w.strip_prefix("bytes_sent:"))
            .filter_map(|v| v.parse::<u64>().ok())
            .sum(),
    )
}

/// The server's `switchyard_convergence_seconds` count and sum, from `/metrics`.
fn convergence(admin: SocketAddr) -> Option<(u64, f64)> {
    let mut s = TcpStream::connect_timeout(&admin, Duration::from_secs(5)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(
        s,
        "GET /metrics HTTP/1.1\r\nHost: {admin}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut body = String::new();
    s.read_to_string(&mut body).ok()?;
    let value = |name: &str| {
        body.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse::<f64>().ok())
    };
    Some((
        value("switchyard_convergence_seconds_count ")? as u64,
        value("switchyard_convergence_seconds_sum ")?,
    ))
}

/// `perf record` attached to the server while alive; stopped (SIGINT) on drop.
struct Perf(Child);

impl Perf {
    fn start(dir: &Path, n: usize, phase: &str, pid: u32) -> Perf {
        let _ = std::fs::create_dir_all(dir);
        let out = dir.join(format!("perf-{n}-{phase}.data"));
        let child = Command::new("perf")
            .args(["record", "--call-graph", "dwarf,16384", "-F", "199"])
            .args(["-p", &pid.to_string(), "-o"])
            .arg(&out)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("perf is installed");
        std::thread::sleep(Duration::from_millis(200));
        Perf(child)
    }
}

impl Drop for Perf {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-INT", &self.0.id().to_string()])
            .status();
        let _ = self.0.wait();
    }
}

/// The machine, for the report.
fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|m| m.trim_start_matches([' ', '\t', ':']).to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .unwrap_or(0);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!(
        "machine: {cpu}, {cores} cores, {:.0} GiB, Linux {}",
        mem as f64 / 1024.0 / 1024.0,
        kernel.trim()
    )
}
