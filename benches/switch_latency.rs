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

#[path = "../tests/common/mod.rs"]
mod common;

use std::fs::{self, File};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::Parser;
use http_body_util::{BodyExt, Empty};
use hyper::Request;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tracing::field::{Field, Visit};
use tracing_subscriber::Layer;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;

use common::backend::Backend;
use common::control_plane::{BlueGreen, one_service};
use common::{free_port, http, tools};

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

/// How long a flip may take before the bench gives up on it.
const FLIP_TIMEOUT: Duration = Duration::from_secs(10);
/// How long one poll request may take before its connection is dropped and redone.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// How long an Envoy may take to start and become LIVE.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// Envoy worker threads, as the test harness's Envoy has them.
const ENVOY_CONCURRENCY: &str = "2";

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

// ---------------------------------------------------------------------------------------
// The two scenarios
// ---------------------------------------------------------------------------------------

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

/// No control plane: Envoy with static clusters and a static listener whose routes come
/// from a watched file holding exactly the RouteConfiguration switchyard would send.
async fn file_baseline(args: &Args, flips: usize) -> Series {
    let blue = Backend::start("blue", "v1");
    let green = Backend::start("green", "v2");
    let listener: SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let state = |active: &str| one_service(listener.port(), blue.addr(), green.addr(), active);
    let rendered = [render(&state("blue")), render(&state("green"))];

    let dir = tempfile::Builder::new()
        .prefix("switch-latency-")
        .tempdir()
        .expect("create a temp dir");
    let routes_dir = dir.path().join("routes");
    fs::create_dir(&routes_dir).expect("create the watched routes dir");
    let routes_path = routes_dir.join("routes.json");
    let routes_file = |c: Color| {
        let route = rendered[c as usize]["resources"]["routes"]["resources"][0].clone();
        // A DiscoveryResponse, the shape Envoy expects of a file-based xDS source.
        json!({ "version_info": c.name(), "resources": [route] }).to_string()
    };
    let routes_files = [routes_file(Color::Blue), routes_file(Color::Green)];
    fs::write(&routes_path, &routes_files[Color::Blue as usize]).expect("write routes.json");

    let bootstrap = file_bootstrap(&rendered[0], &routes_path, &routes_dir, &blue, &green);
    let mut envoy = FileEnvoy::start(dir.path(), &bootstrap).await;
    let probe = Probe::new();
    let pollers = Pollers::start(listener, args.pollers, probe.clone());
    let save = |c: Color| {
        let tmp = routes_dir.join(".routes.json.tmp");
        fs::write(&tmp, &routes_files[c as usize]).expect("write the temp routes file");
        fs::rename(&tmp, &routes_path).expect("rename over routes.json");
    };
    let series = measure(
        "Envoy, routes from a watched file (no control plane)",
        args,
        flips,
        &probe,
        &save,
    )
    .await;
    drop(pollers);
    envoy.assert_running();
    series
}

/// switchyard's own rendering of a state file (`switchyard render`), as JSON.
fn render(state_yaml: &str) -> Value {
    let state = switchyard::state::parse_str(state_yaml)
        .unwrap_or_else(|e| panic!("bench state file is invalid: {e:?}"));
    let snapshot = switchyard::translate::translate(&state).expect("translate the state");
    switchyard::render::snapshot_to_json(&snapshot).expect("render the snapshot")
}

/// A bootstrap without xDS: switchyard's rendered listener, its RDS source switched from
/// ADS to the watched file, and the two color clusters as STATIC clusters.
fn file_bootstrap(
    rendered: &Value,
    routes_path: &Path,
    routes_dir: &Path,
    blue: &Backend,
    green: &Backend,
) -> Value {
    let mut listener = rendered["resources"]["listeners"]["resources"][0].clone();
    listener
        .as_object_mut()
        .expect("a listener is an object")
        .remove("@type");
    let source = listener
        .pointer_mut("/filter_chains/0/filters/0/typed_config/rds/config_source")
        .expect("the rendered listener loads its routes over RDS");
    *source = json!({
        "path_config_source": {
            "path": routes_path,
            "watched_directory": { "path": routes_dir },
        },
        "resource_api_version": "V3",
    });
    let cluster = |backend: &Backend| {
        let name = format!("summarizer-{}", backend.color());
        json!({
            "name": name,
            "type": "STATIC",
            "connect_timeout": "1s",
            "load_assignment": {
                "cluster_name": name,
                "endpoints": [{ "lb_endpoints": [{ "endpoint": { "address": { "socket_address": {
                    "address": backend.addr().ip().to_string(),
                    "port_value": backend.addr().port(),
                }}}}]}],
            },
        })
    };
    json!({
        "node": { "id": "file-envoy", "cluster": "edge" },
        "admin": { "address": { "socket_address": { "address": "127.0.0.1", "port_value": 0 } } },
        "static_resources": {
            "listeners": [listener],
            "clusters": [cluster(blue), cluster(green)],
        },
    })
}

// ---------------------------------------------------------------------------------------
// Flipping and timing
// ---------------------------------------------------------------------------------------

/// The two colors, as the backends answer in `x-color`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Color {
    Blue = 0,
    Green = 1,
}

impl Color {
    fn name(self) -> &'static str {
        match self {
            Color::Blue => "blue",
            Color::Green => "green",
        }
    }

    fn other(self) -> Color {
        match self {
            Color::Blue => Color::Green,
            Color::Green => Color::Blue,
        }
    }

    fn from_header(value: &[u8]) -> Option<Color> {
        match value {
            b"blue" => Some(Color::Blue),
            b"green" => Some(Color::Green),
            _ => None,
        }
    }
}

/// One measured flip.
#[derive(Debug, Clone, Copy)]
struct Flip {
    /// Just before the save started.
    t0: Instant,
    /// Until the save call (write and close, or write, close and rename) returned.
    saved: Duration,
    /// Until the first response from the new color had been read.
    latency: Duration,
}

/// The flips of one series and what was seen along the way.
struct Series {
    name: &'static str,
    flips: Vec<Flip>,
    /// Per stage, the time from `t0` to that stage in each flip (`None` where it was not
    /// seen): when the save returned, and for switchyard its log events.
    stages: Vec<(&'static str, Vec<Option<Duration>>)>,
    /// Responses the pollers read during the series, and how long it ran: the polling
    /// rate, hence the resolution of the measurement.
    responses: u64,
    errors: u64,
    elapsed: Duration,
}

impl Series {
    /// Adds the flips of another round of the same series.
    fn absorb(&mut self, other: Series) {
        self.flips.extend(other.flips);
        for ((_, mine), (_, theirs)) in self.stages.iter_mut().zip(other.stages) {
            mine.extend(theirs);
        }
        self.responses += other.responses;
        self.errors += other.errors;
        self.elapsed += other.elapsed;
    }
}

/// Runs `--warmup` uncounted flips, then `count` measured ones, with `save`, starting
/// from blue.
async fn measure(
    name: &'static str,
    args: &Args,
    count: usize,
    probe: &Probe,
    save: &dyn Fn(Color),
) -> Series {
    // Start every series from a known color (saving content already in force is a no-op).
    let mut color = Color::Blue;
    flip(probe, save, color).await;
    tokio::time::sleep(Duration::from_millis(args.gap_ms)).await;

    let (responses, errors) = probe.counts();
    let started = Instant::now();
    let mut flips = Vec::with_capacity(count);
    for i in 0..args.warmup + count {
        color = color.other();
        let measured = flip(probe, save, color).await;
        if i >= args.warmup {
            flips.push(measured);
        }
        tokio::time::sleep(Duration::from_millis(args.gap_ms)).await;
    }
    let elapsed = started.elapsed();
    let (responses_after, errors_after) = probe.counts();
    let saved = flips.iter().map(|f: &Flip| Some(f.saved)).collect();
    Series {
        name,
        flips,
        stages: vec![("save call returned", saved)],
        responses: responses_after - responses,
        errors: errors_after - errors,
        elapsed,
    }
}

/// Saves `to` and waits until a poller has read a response from it.
async fn flip(probe: &Probe, save: &dyn Fn(Color), to: Color) -> Flip {
    probe.expect(to);
    let t0 = Instant::now();
    save(to);
    let saved = t0.elapsed();
    let deadline = t0 + FLIP_TIMEOUT;
    loop {
        // The poller stamps the time itself; this loop only has to notice.
        if let Some(seen) = probe.seen() {
            return Flip {
                t0,
                saved,
                latency: seen.saturating_duration_since(t0),
            };
        }
        assert!(
            Instant::now() < deadline,
            "no response from {} within {FLIP_TIMEOUT:?} of the save ({} poll errors so far)",
            to.name(),
            probe.counts().1
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// What the pollers are looking for, shared between them and the flip loop.
struct Probe {
    /// The color awaited and when a response from it first arrived. A mutex (held for a
    /// few instructions per response) so that the color and its sighting change together:
    /// a poller must never credit a new flip with a response meant for the last one.
    expect: Mutex<Expect>,
    responses: AtomicU64,
    errors: AtomicU64,
    stop: AtomicBool,
}

#[derive(Default)]
struct Expect {
    want: Option<Color>,
    seen: Option<Instant>,
}

impl Probe {
    fn new() -> Arc<Probe> {
        Arc::new(Probe {
            expect: Mutex::new(Expect::default()),
            responses: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            stop: AtomicBool::new(false),
        })
    }

    /// Starts waiting for `color`.
    fn expect(&self, color: Color) {
        *self.expect.lock().unwrap() = Expect {
            want: Some(color),
            seen: None,
        };
    }

    /// When the first response from the awaited color arrived, if it has.
    fn seen(&self) -> Option<Instant> {
        self.expect.lock().unwrap().seen
    }

    /// A poller read a response from `color` at `at`.
    fn observe(&self, color: Color, at: Instant) {
        self.responses.fetch_add(1, Ordering::Relaxed);
        let mut expect = self.expect.lock().unwrap();
        if expect.want == Some(color) && expect.seen.is_none() {
            expect.seen = Some(at);
        }
    }

    /// Responses and errors so far.
    fn counts(&self) -> (u64, u64) {
        (
            self.responses.load(Ordering::Relaxed),
            self.errors.load(Ordering::Relaxed),
        )
    }
}

/// Poller threads, each sending requests back to back on one keep-alive connection;
/// stopped and joined on drop.
///
/// Threads with their own single-threaded runtimes rather than tasks on the bench's
/// runtime: the in-process switchyard runs there, and it should get the CPU from the
/// operating system's scheduler, as the real binary does, not queue behind pollers.
struct Pollers {
    probe: Arc<Probe>,
    threads: Vec<JoinHandle<()>>,
}

impl Pollers {
    fn start(addr: SocketAddr, count: usize, probe: Arc<Probe>) -> Pollers {
        let threads = (0..count)
            .map(|i| {
                let probe = probe.clone();
                std::thread::Builder::new()
                    .name(format!("poller-{i}"))
                    .spawn(move || poll(addr, &probe))
                    .expect("spawn a poller thread")
            })
            .collect();
        Pollers { probe, threads }
    }
}

impl Drop for Pollers {
    fn drop(&mut self) {
        self.probe.stop.store(true, Ordering::Relaxed);
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

/// One poller: `GET /` through Envoy until told to stop, reporting every color it reads.
fn poll(addr: SocketAddr, probe: &Probe) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("build a poller runtime");
    runtime.block_on(async {
        let mut conn = None;
        while !probe.stop.load(Ordering::Relaxed) {
            match tokio::time::timeout(REQUEST_TIMEOUT, get_color(&mut conn, addr)).await {
                Ok(Ok(color)) => probe.observe(color, Instant::now()),
                Ok(Err(_)) | Err(_) => {
                    // Reconnect; don't spin if Envoy is not listening (yet).
                    conn = None;
                    probe.errors.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            }
        }
    });
}

/// One request on the keep-alive connection `conn` (opened first if needed); the color
/// from the `x-color` header, once the whole response has been read.
async fn get_color(
    conn: &mut Option<SendRequest<Empty<Bytes>>>,
    addr: SocketAddr,
) -> Result<Color, String> {
    if conn.as_ref().is_none_or(|c| c.is_closed()) {
        let stream = TcpStream::connect(addr)
            .await
            .map_err(|e| format!("connect: {e}"))?;
        stream
            .set_nodelay(true)
            .map_err(|e| format!("nodelay: {e}"))?;
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| format!("handshake: {e}"))?;
        tokio::spawn(connection);
        *conn = Some(sender);
    }
    let sender = conn.as_mut().expect("connected above");
    sender
        .ready()
        .await
        .map_err(|e| format!("not ready: {e}"))?;
    let request = Request::get("/")
        .header("host", "summarizer.example")
        .body(Empty::new())
        .expect("a valid request");
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| format!("send: {e}"))?;
    let color = response
        .headers()
        .get("x-color")
        .and_then(|v| Color::from_header(v.as_bytes()));
    let status = response.status();
    response
        .into_body()
        .collect()
        .await
        .map_err(|e| format!("body: {e}"))?;
    color.ok_or_else(|| format!("HTTP {status} without a color"))
}

// ---------------------------------------------------------------------------------------
// Inside switchyard: its log events as stage marks
// ---------------------------------------------------------------------------------------

/// The switchyard log events that mark the stages of a switch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// `state accepted`: the new snapshot has been published to the ADS streams.
    Accepted,
    /// `proxy acknowledged` for routes: Envoy applied the new routes and said so.
    RoutesAcked,
}

/// When each stage mark was logged, from a tracing layer on switchyard's events.
#[derive(Clone, Default)]
struct Marks {
    /// Appended to by whichever runtime thread logs; read once per series.
    seen: Arc<Mutex<Vec<(Instant, Stage)>>>,
}

impl Marks {
    /// Installs the layer as the global subscriber, for switchyard's events only.
    fn install() -> Marks {
        let marks = Marks::default();
        let layer = MarkLayer(marks.clone())
            .with_filter(Targets::new().with_target("switchyard", tracing::Level::DEBUG));
        tracing_subscriber::registry().with(layer).init();
        marks
    }

    /// Per flip, the time from `t0` to the first `stage` mark after it and before the
    /// next flip (`None` if there was none). `flips` must be consecutive.
    fn offsets(&self, stage: Stage, flips: &[Flip]) -> Vec<Option<Duration>> {
        let seen = self.seen.lock().unwrap();
        flips
            .iter()
            .enumerate()
            .map(|(i, f)| {
                let end = flips.get(i + 1).map_or(f.t0 + FLIP_TIMEOUT, |next| next.t0);
                seen.iter()
                    .filter(|(at, s)| *s == stage && (f.t0..end).contains(at))
                    .map(|(at, _)| *at - f.t0)
                    .min()
            })
            .collect()
    }
}

struct MarkLayer(Marks);

impl<S: tracing::Subscriber> Layer<S> for MarkLayer {
    fn on_event(&self, event: &tracing::Event<'_>, _: Context<'_, S>) {
        let at = Instant::now();
        let mut fields = EventFields::default();
        event.record(&mut fields);
        let stage = match (fields.message.as_str(), fields.type_.as_str()) {
            ("state accepted", _) => Stage::Accepted,
            ("proxy acknowledged", "routes") => Stage::RoutesAcked,
            _ => return,
        };
        self.0.seen.lock().unwrap().push((at, stage));
    }
}

/// The two fields of an event the marks need.
#[derive(Default)]
struct EventFields {
    message: String,
    type_: String,
}

impl Visit for EventFields {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        match field.name() {
            "message" => self.message = format!("{value:?}"),
            "type_" => self.type_ = format!("{value:?}"),
            _ => {}
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.record_debug(field, &format_args!("{value}"));
    }
}

// ---------------------------------------------------------------------------------------
// An Envoy from a bootstrap of our own
// ---------------------------------------------------------------------------------------

/// An Envoy started from a given bootstrap (the harness's `Envoy` always renders
/// `envoy/bootstrap.yaml`, which needs a control plane); killed and reaped on drop.
struct FileEnvoy {
    child: Child,
    admin: SocketAddr,
    log: PathBuf,
}

impl FileEnvoy {
    /// Starts Envoy with the same flags as the harness's and waits until it is LIVE.
    async fn start(dir: &Path, bootstrap: &Value) -> FileEnvoy {
        let bootstrap_path = dir.join("bootstrap.json");
        fs::write(&bootstrap_path, bootstrap.to_string()).expect("write bootstrap.json");
        let admin_path = dir.join("admin_address");
        let log = dir.join("envoy.log");
        let log_file = File::create(&log).expect("create envoy.log");
        let child = Command::new(tools::envoy_bin())
            .arg("-c")
            .arg(&bootstrap_path)
            .arg("--disable-hot-restart")
            .args(["-l", "info", "--concurrency", ENVOY_CONCURRENCY])
            .args(["--drain-time-s", "1"])
            .arg("--admin-address-path")
            .arg(&admin_path)
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().expect("clone the log handle"))
            .stderr(log_file)
            .spawn()
            .expect("start envoy");
        let mut envoy = FileEnvoy {
            child,
            admin: ([127, 0, 0, 1], 0).into(),
            log,
        };
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            envoy.assert_running();
            if let Some(addr) = fs::read_to_string(&admin_path)
                .ok()
                .and_then(|s| s.trim().parse().ok())
            {
                envoy.admin = addr;
                let ready = http::get(addr, "/ready", "localhost").await;
                if ready.is_ok_and(|(status, body)| status == 200 && body.trim() == "LIVE") {
                    return envoy;
                }
            }
            if Instant::now() >= deadline {
                envoy.fail(&format!("not LIVE within {START_TIMEOUT:?}"));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn assert_running(&mut self) {
        if let Ok(Some(status)) = self.child.try_wait() {
            self.fail(&format!("exited: {status}"));
        }
    }

    fn fail(&self, what: &str) -> ! {
        let log = fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        let tail = lines[lines.len().saturating_sub(40)..].join("\n");
        panic!(
            "file-based envoy (admin {}): {what}\n--- log tail ---\n{tail}",
            self.admin
        )
    }
}

impl Drop for FileEnvoy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---------------------------------------------------------------------------------------
// Report
// ---------------------------------------------------------------------------------------

/// Nearest-rank percentile of sorted samples.
fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil().max(1.0) as usize;
    sorted[rank.min(sorted.len()) - 1]
}

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
        ms(percentile(&sorted, 50.0)),
        ms(percentile(&sorted, 90.0)),
        ms(percentile(&sorted, 99.0)),
        ms(sorted[sorted.len() - 1]),
    )
}

fn print_report(args: &Args, series: &[Series], load_before: &str, load_after: &str) {
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
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let cpuinfo = fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name")?.split_once(':'))
        .map_or("unknown", |(_, m)| m.trim())
        .to_owned();
    let kernel = fs::read_to_string("/proc/sys/kernel/osrelease")
        .map_or_else(|_| "unknown".to_owned(), |s| s.trim().to_owned());
    let envoy = Command::new(tools::envoy_bin())
        .arg("--version")
        .output()
        .ok()
        .and_then(|o| {
            let text = String::from_utf8_lossy(&o.stdout).into_owned();
            Some(text.split_once("version:")?.1.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown".to_owned());
    format!("Machine: {cpus} CPUs ({model}), Linux {kernel}; Envoy {envoy}.")
}

/// The first three fields of `/proc/loadavg`.
fn load_average() -> String {
    fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".to_owned())
}
