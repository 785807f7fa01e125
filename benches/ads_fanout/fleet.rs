//! The load generator: N Envoy-like ADS streams (SotW, or delta with `--delta`), each on
//! its own HTTP/2 connection, and the counters they share with the coordinator.
//!
//! It has to be cheap, because it shares the two cores with the server and every
//! microsecond it spends per stream is added to the switch latency the bench reports. So
//! each stream is a single task on its own minimal HTTP/2 connection (`h2c.rs`: no tonic
//! `Channel`, no buffer task, no request channel), reads only the fields of a response an
//! ACK needs (version, type, nonce; resource names for clusters and listeners; in delta,
//! the route configuration's version and the names removed: `wire.rs`), and
//! reports to the coordinator through atomics instead of a message per response. What goes
//! over the wire is what Envoy sends: the same requests, in the same order, every response
//! acknowledged. Both protocols share the stream logic ([`Stream`]); only what a response
//! says and how a request is written differ ([`Protocol`]). With `--lrs`, each also
//! reports its load on a second stream of the same connection, as Envoy does (see
//! [`Lrs`]).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU8, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use envoy_types::pb::envoy::config::core::v3::{Extension, Locality, Node};
use envoy_types::pb::envoy::config::endpoint::v3::{ClusterStats, UpstreamLocalityStats};
use envoy_types::pb::envoy::service::load_stats::v3::{LoadStatsRequest, LoadStatsResponse};
use prost::Message;
use tokio::sync::Semaphore;

use crate::h2c::{GrpcConn, SECOND};
use crate::wire::{CDS, EDS, LDS, Protocol, RDS, Response, TYPE_URLS, Update};

const LRS_PATH: &str = "/envoy.service.load_stats.v3.LoadReportingService/StreamLoadStats";

/// What every simulated proxy reports with `--lrs`: what Envoy 1.40 sends. Its first
/// request carries its node; the server answers with the interval; then every interval a
/// report naming every cluster the proxy has (and its `xds_cluster`), the blue one of each
/// service with `requests` requests (all successful) and one in flight, the green one
/// quiet. Every request, like Envoy's, carries the whole node: the proxy's own id and
/// cluster, then `bulk` (an extension list, shared by every proxy), which the decoder
/// merges into one node.
pub struct Lrs {
    /// A `node` field (field 1 of `LoadStatsRequest`) holding only an extension list.
    pub bulk: Bytes,
    pub requests: u64,
}

impl Lrs {
    /// With an extension list of about `node_bytes` bytes (Envoy 1.40's: 516 extensions,
    /// 61 KB).
    pub fn new(node_bytes: usize, requests: u64) -> Lrs {
        let mut node = Node::default();
        while node.encoded_len() < node_bytes {
            let i = node.extensions.len();
            node.extensions.push(Extension {
                name: format!("envoy.bench.filters.http.extension_{i}"),
                category: "envoy.filters.http".to_owned(),
                type_urls: vec![format!(
                    "type.googleapis.com/envoy.extensions.filters.http.bench_{i}.v3.Config"
                )],
                ..Default::default()
            });
        }
        Lrs {
            bulk: node_field(&node),
            requests,
        }
    }
}

/// `node` as field 1 of a `LoadStatsRequest` (an empty node writes nothing).
fn node_field(node: &Node) -> Bytes {
    LoadStatsRequest {
        node: (node != &Node::default()).then(|| node.clone()),
        cluster_stats: Vec::new(),
    }
    .encode_to_vec()
    .into()
}

/// What every stream reports, read by the coordinator. All times are nanoseconds since
/// `base`.
pub struct Fleet {
    base: Instant,
    /// Per stream: furthest startup step reached (0 spawned, 1 connected, 2 clusters,
    /// 3 endpoints, 4 listeners, 5 routes acknowledged).
    stage: Vec<AtomicU8>,
    pub connected: AtomicUsize,
    connected_at: AtomicU64,
    pub ready: AtomicUsize,
    ready_at: AtomicU64,
    pub ended: AtomicUsize,
    errors: Mutex<Vec<String>>,
    pub responses: AtomicU64,
    pub bytes: AtomicU64,
    pub per_type: [AtomicU64; 5],
    /// The switch under way (0: none yet), when it started, and how many streams have
    /// received its routes.
    switch: AtomicUsize,
    t0: AtomicU64,
    pub arrived: AtomicUsize,
    /// Per stream: its latency in the switch it last saw.
    latency: Vec<AtomicU64>,
    /// Load reporting: streams answered by the server, reports sent, their bytes, and
    /// reports not sent because the server's flow-control window was full.
    pub lrs_answered: AtomicUsize,
    pub lrs_reports: AtomicU64,
    pub lrs_bytes: AtomicU64,
    pub lrs_skipped: AtomicU64,
}

impl Fleet {
    pub fn new(n: usize) -> Fleet {
        Fleet {
            base: Instant::now(),
            stage: (0..n).map(|_| AtomicU8::new(0)).collect(),
            connected: AtomicUsize::new(0),
            connected_at: AtomicU64::new(0),
            ready: AtomicUsize::new(0),
            ready_at: AtomicU64::new(0),
            ended: AtomicUsize::new(0),
            errors: Mutex::new(Vec::new()),
            responses: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            per_type: Default::default(),
            switch: AtomicUsize::new(0),
            t0: AtomicU64::new(0),
            arrived: AtomicUsize::new(0),
            latency: (0..n).map(|_| AtomicU64::new(0)).collect(),
            lrs_answered: AtomicUsize::new(0),
            lrs_reports: AtomicU64::new(0),
            lrs_bytes: AtomicU64::new(0),
            lrs_skipped: AtomicU64::new(0),
        }
    }

    fn now(&self) -> u64 {
        self.base.elapsed().as_nanos() as u64
    }

    fn at(&self, ns: u64) -> Instant {
        self.base + Duration::from_nanos(ns)
    }

    /// When the last stream connected.
    pub fn connected_at(&self) -> Instant {
        self.at(self.connected_at.load(Relaxed))
    }

    /// When the last stream acknowledged its first routes.
    pub fn ready_at(&self) -> Instant {
        self.at(self.ready_at.load(Relaxed))
    }

    /// Starts switch `k` now: latencies count from here.
    pub fn begin_switch(&self, k: usize) -> Instant {
        self.arrived.store(0, Relaxed);
        let now = self.now();
        self.t0.store(now, Relaxed);
        self.switch.store(k, std::sync::atomic::Ordering::SeqCst);
        self.at(now)
    }

    /// Every stream's latency in the current switch (once all have arrived).
    pub fn latencies(&self) -> impl Iterator<Item = Duration> + '_ {
        self.latency
            .iter()
            .map(|l| Duration::from_nanos(l.load(Relaxed)))
    }

    /// Waits until `done` holds (true) or `deadline` passes (false), looking every
    /// millisecond: the streams record their own times, so this only decides when the
    /// next step starts.
    pub async fn wait_until(&self, deadline: Instant, done: impl Fn(&Fleet) -> bool) -> bool {
        loop {
            if done(self) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    fn reached(&self, idx: usize, stage: u8) {
        self.stage[idx].fetch_max(stage, Relaxed);
    }

    pub fn end(&self, idx: usize, error: Option<String>) {
        self.ended.fetch_add(1, Relaxed);
        if let Some(e) = error {
            let mut errors = self.errors.lock().unwrap();
            if errors.len() < 5 {
                errors.push(format!("stream {idx}: {e}"));
            }
        }
    }

    /// Where the streams are, for a report of a stall.
    pub fn progress(&self) -> String {
        let mut counts = [0usize; 6];
        for s in &self.stage {
            counts[s.load(Relaxed) as usize] += 1;
        }
        let mut out = format!(
            "{} not connected, {} connected without clusters, {} at clusters, {} at endpoints, {} at listeners, {} routes acknowledged; {} ended",
            counts[0],
            counts[1],
            counts[2],
            counts[3],
            counts[4],
            counts[5],
            self.ended.load(Relaxed)
        );
        for e in self.errors.lock().unwrap().iter() {
            out.push_str("; ");
            out.push_str(e);
        }
        out
    }
}

/// One ADS stream behaving like Envoy 1.40 (`set_node_on_first_message_only`) speaking
/// `protocol`: CDS (wildcard), EDS for the clusters received, LDS (wildcard) once
/// endpoints arrived, RDS for the route configurations the listeners name; every response
/// acknowledged (SotW: its version and nonce; delta: its nonce). In delta, the names
/// subscribed follow the clusters and listeners added and removed. Runs until the server
/// ends the stream or the task is aborted. At most `permits` streams are between
/// connecting and their first response at once. With `lrs`, it also reports its load (see
/// [`Lrs`]) once its clusters have arrived. Its node is in `zone` (of region `bench`), if
/// given.
pub async fn envoy_like_stream(
    idx: usize,
    addr: SocketAddr,
    permits: Arc<Semaphore>,
    fleet: Arc<Fleet>,
    lrs: Option<Arc<Lrs>>,
    protocol: Protocol,
    zone: Option<String>,
) -> Result<(), String> {
    let permit = permits.acquire_owned().await.map_err(|e| e.to_string())?;
    let node = Node {
        id: format!("fanout-{idx}"),
        cluster: "fanout".to_owned(),
        user_agent_name: "envoy".to_owned(),
        locality: zone.map(|zone| Locality {
            region: "bench".to_owned(),
            zone,
            sub_zone: String::new(),
        }),
        ..Default::default()
    };
    let first = protocol.first_request(&node);
    let mut conn = GrpcConn::open(addr, protocol.path(), &first).await?;
    let mut stream = Stream {
        idx,
        fleet,
        protocol,
        names: [Some(Vec::new()), None, None, None, None],
        acked: Default::default(),
        nonce: Default::default(),
        last_routes: String::new(),
        seen_switch: 0,
    };
    let mut reporter = lrs.map(|lrs| Reporter::new(idx, &node, lrs));
    let mut permit = Some(permit);
    loop {
        let read = tokio::select! {
            read = conn.read() => read?,
            () = tick(reporter.as_mut()) => {
                let reporter = reporter.as_mut().expect("ticks only with a reporter");
                reporter.report(&stream, &mut conn);
                conn.flush().await?;
                continue;
            }
        };
        let received = stream.fleet.now();
        if read.headers {
            stream.fleet.reached(idx, 1);
            stream.fleet.connected_at.fetch_max(received, Relaxed);
            stream.fleet.connected.fetch_add(1, Relaxed);
        }
        for message in &read.messages {
            drop(permit.take());
            stream.on_response(message, received, &mut conn)?;
        }
        if let Some(reporter) = &mut reporter {
            if !reporter.opened && stream.names[EDS].is_some() {
                reporter.open(&addr.to_string(), &mut conn)?;
            }
            for answer in &read.second {
                reporter.answered(answer, &stream.fleet)?;
            }
        }
        conn.flush().await?;
    }
}

/// Waits for `reporter`'s next report (forever without one, or before its answer).
async fn tick(reporter: Option<&mut Reporter>) {
    match reporter.and_then(|r| r.ticks.as_mut()) {
        Some(ticks) => {
            ticks.tick().await;
        }
        None => std::future::pending().await,
    }
}

/// One proxy's load reporting stream.
struct Reporter {
    lrs: Arc<Lrs>,
    idx: usize,
    /// The proxy's own `node` field: its id and cluster.
    own: Bytes,
    opened: bool,
    /// Every interval the server asked for, from its answer on (phased by the proxy's
    /// index so that the fleet's reports spread over the interval, as a real fleet's do).
    ticks: Option<tokio::time::Interval>,
    /// The report's clusters, encoded once per set of clusters.
    stats: Bytes,
    stats_for: Vec<String>,
}

impl Reporter {
    fn new(idx: usize, node: &Node, lrs: Arc<Lrs>) -> Reporter {
        let own = Node {
            id: node.id.clone(),
            cluster: node.cluster.clone(),
            ..Default::default()
        };
        Reporter {
            lrs,
            idx,
            own: node_field(&own),
            opened: false,
            ticks: None,
            stats: Bytes::new(),
            stats_for: Vec::new(),
        }
    }

    /// Opens the stream with the first request: the node alone.
    fn open(&mut self, authority: &str, conn: &mut GrpcConn) -> Result<(), String> {
        let len = (self.own.len() + self.lrs.bulk.len()) as u32;
        let mut prefix = [0u8; 5];
        prefix[1..].copy_from_slice(&len.to_be_bytes());
        conn.open_second(authority, LRS_PATH, &[&prefix, &self.own, &self.lrs.bulk])?;
        self.opened = true;
        Ok(())
    }

    /// The server's answer: report every interval it asks for.
    fn answered(&mut self, answer: &[u8], fleet: &Fleet) -> Result<(), String> {
        let answer = LoadStatsResponse::decode(answer).map_err(|e| e.to_string())?;
        let interval = answer
            .load_reporting_interval
            .map(|d| Duration::new(d.seconds as u64, d.nanos as u32))
            .filter(|d| !d.is_zero())
            .ok_or("the LRS answer has no interval")?;
        let n = fleet.stage.len().max(1) as u32;
        let phase = interval * (self.idx as u32 % n) / n;
        let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + phase, interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        self.ticks = Some(ticks);
        fleet.lrs_answered.fetch_add(1, Relaxed);
        Ok(())
    }

    /// Sends one report (or counts it skipped when the server's window is full).
    fn report(&mut self, stream: &Stream, conn: &mut GrpcConn) {
        let clusters = stream.names[EDS].as_deref().unwrap_or_default();
        if self.stats_for != clusters {
            self.stats = self.encode_stats(clusters);
            self.stats_for = clusters.to_vec();
        }
        let len = self.own.len() + self.lrs.bulk.len() + self.stats.len();
        let mut prefix = [0u8; 5];
        prefix[1..].copy_from_slice(&(len as u32).to_be_bytes());
        let fleet = &stream.fleet;
        if conn.send_window(SECOND) < (len + 5) as i64 {
            fleet.lrs_skipped.fetch_add(1, Relaxed);
            return;
        }
        let parts: [&[u8]; 4] = [&prefix, &self.own, &self.lrs.bulk, &self.stats];
        if conn.send_on(SECOND, &parts).is_ok() {
            fleet.lrs_reports.fetch_add(1, Relaxed);
            fleet.lrs_bytes.fetch_add((len + 5) as u64, Relaxed);
        }
    }

    /// The `cluster_stats` of a report on `clusters`, and the proxy's `xds_cluster`.
    fn encode_stats(&self, clusters: &[String]) -> Bytes {
        let interval = Some(envoy_types::pb::google::protobuf::Duration {
            seconds: 1,
            nanos: 0,
        });
        let stats = |name: &str| {
            let busy = name.ends_with("-blue");
            ClusterStats {
                cluster_name: name.to_owned(),
                upstream_locality_stats: busy
                    .then(|| UpstreamLocalityStats {
                        locality: Some(Locality::default()),
                        total_successful_requests: self.lrs.requests,
                        total_issued_requests: self.lrs.requests,
                        total_requests_in_progress: 1,
                        ..Default::default()
                    })
                    .into_iter()
                    .collect(),
                load_report_interval: interval,
                ..Default::default()
            }
        };
        LoadStatsRequest {
            node: None,
            cluster_stats: clusters
                .iter()
                .map(|c| stats(c))
                .chain([stats("xds_cluster")])
                .collect(),
        }
        .encode_to_vec()
        .into()
    }
}

/// One stream's protocol state, as Envoy keeps it per type.
struct Stream {
    idx: usize,
    fleet: Arc<Fleet>,
    protocol: Protocol,
    /// Names subscribed, sorted (None: not yet subscribed; an empty set is a wildcard).
    names: [Option<Vec<String>>; 5],
    /// Last version acknowledged and last nonce received (SotW's requests carry them).
    acked: [String; 5],
    nonce: [String; 5],
    /// The version of the routes last received (see [`Response::routes_version`]).
    last_routes: String,
    seen_switch: usize,
}

impl Stream {
    fn on_response(
        &mut self,
        message: &[u8],
        received: u64,
        conn: &mut GrpcConn,
    ) -> Result<(), String> {
        let response = Response::parse(message)?;
        let Some(t) = TYPE_URLS.iter().position(|u| *u == response.type_url) else {
            return Err(format!("unexpected type {}", response.type_url));
        };
        self.nonce[t].clear();
        self.nonce[t].push_str(response.nonce);
        // Like Envoy: a new cluster set subscribes its endpoints, new listeners their
        // routes (endpoints and route configurations are named after the clusters and
        // listeners, so the names subscribed are the names held); listeners are asked for
        // once the first clusters are warm (endpoints received).
        let child = match t {
            CDS => Some(EDS),
            LDS => Some(RDS),
            _ => None,
        };
        let follow = match child {
            Some(next) => {
                let update = Update::parse(self.protocol, message)?;
                Some((next, update.held(self.names[next].as_deref())))
            }
            None if t == EDS && self.names[LDS].is_none() => Some((LDS, Vec::new())),
            None => None,
        };
        if let Some((next, wanted)) = follow
            && self.names[next].as_ref() != Some(&wanted)
        {
            let before = self.names[next].as_deref();
            let (acked, nonce) = (&self.acked[next], &self.nonce[next]);
            let frame = self.protocol.subscribe(next, before, &wanted, acked, nonce);
            conn.send_message(&frame)?;
            self.names[next] = Some(wanted);
        }
        self.acked[t].clear();
        self.acked[t].push_str(response.version);
        let names = self.names[t].as_deref().unwrap_or_default();
        conn.send_message(&self.protocol.ack(t, &response, names))?;

        let fleet = &*self.fleet;
        fleet.responses.fetch_add(1, Relaxed);
        fleet.bytes.fetch_add(message.len() as u64, Relaxed);
        fleet.per_type[t].fetch_add(1, Relaxed);
        fleet.reached(self.idx, t as u8 + 2);
        let routes = match t {
            RDS => response.routes_version(self.protocol, message)?,
            _ => None,
        };
        if let Some(routes) = routes
            && routes != self.last_routes
        {
            if self.last_routes.is_empty() {
                fleet.ready_at.fetch_max(fleet.now(), Relaxed);
                fleet.ready.fetch_add(1, Relaxed);
            } else {
                let switch = fleet.switch.load(std::sync::atomic::Ordering::SeqCst);
                if switch > self.seen_switch {
                    self.seen_switch = switch;
                    let t0 = fleet.t0.load(Relaxed);
                    fleet.latency[self.idx].store(received.saturating_sub(t0), Relaxed);
                    fleet.arrived.fetch_add(1, Relaxed);
                }
            }
            self.last_routes.clear();
            self.last_routes.push_str(routes);
        }
        Ok(())
    }
}
