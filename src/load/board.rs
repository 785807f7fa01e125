//! Envoy's load reports, added up: per cluster and per proxy, the requests, errors and
//! requests in flight of a recent window. `/status` shows it per service and color; an
//! automatic rollback judges a color by it.
//!
//! What a report carries (Envoy 1.40; each point seen in a real Envoy's reports, and
//! checked end to end by `tests/integration/load_reports.rs`):
//! - every load reporting interval, one `ClusterStats` for every cluster the proxy has
//!   (quiet ones too, and its static `xds_cluster`), and in it one `UpstreamLocalityStats`
//!   per locality with something to say;
//! - the counts are *deltas* since the proxy's previous report;
//!   `total_requests_in_progress` is a *gauge* (in flight when the report was made);
//! - a response with a 5xx status counts in `total_error_requests`; any other status (4xx
//!   included) in `total_successful_requests`;
//! - a request that never reached an endpoint (connection refused) counts in
//!   `total_error_requests` but *not* in `total_issued_requests` (Envoy's `rq_total`
//!   counts requests sent upstream), so errors can outnumber issued requests. Hence
//!   [`ClusterLoad::requests`] is the requests that *finished*, successes plus errors, and
//!   the error ratio is `errors / requests`; issued requests are kept beside them;
//! - every report carries the proxy's whole node (61 KB with Envoy 1.40's extension
//!   list), not only the first (see [`super::report::Report`]).
//!
//! A pure aggregator: every call takes `now` (no clock is read here), so the tests drive it
//! with made-up instants.
//!
//! # Memory
//! Everything here is bounded, whatever proxies send:
//! - a cluster name is kept only if the caller knows it (the clusters of the state in
//!   force), so a client cannot grow the board by inventing names;
//! - per (proxy, cluster), reports are summed into time buckets ([`Retention::bucket`],
//!   5 s) and only the buckets of [`Retention::history`] (2 min) are kept, 16 bytes each,
//!   none for a quiet cluster;
//! - a proxy whose stream ended ([`LoadBoard::forget`]) stops counting in flight at once;
//!   its counts stay until they age out of the history (so errors a proxy saw are not
//!   forgotten because it left), for at most [`Retention::departed`] such proxies.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use envoy_types::pb::envoy::config::endpoint::v3::ClusterStats;
use serde::Serialize;
use tokio::time::Instant;

/// Identifies the stream a proxy reports on, so that the end of an old stream does not
/// forget a proxy that has already reconnected on a new one.
pub type StreamToken = u64;

/// How long and how finely reports are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// Reports are summed into buckets this wide: a window starts at a bucket boundary.
    pub bucket: Duration,
    /// How far back a window can see.
    pub history: Duration,
    /// A proxy is reporting (its requests in flight count) while its last report is this
    /// recent.
    pub fresh: Duration,
    /// Proxies whose stream ended kept at most (their counts, until they age out).
    pub departed: usize,
}

impl Retention {
    /// For proxies reporting every `interval`: one that missed three reports in a row is
    /// no longer counted as reporting.
    pub fn for_interval(interval: Duration) -> Retention {
        Retention {
            bucket: Duration::from_secs(5),
            history: Duration::from_secs(120),
            fresh: interval.saturating_mul(3),
            departed: 1024,
        }
    }

    fn bucket_millis(&self) -> u128 {
        self.bucket.as_millis().max(1)
    }

    /// Buckets kept per (proxy, cluster): the history, and the bucket filling now.
    fn slots(&self) -> usize {
        let history = self.history.as_millis() / self.bucket_millis();
        usize::try_from(history)
            .unwrap_or(u32::MAX as usize)
            .min(u32::MAX as usize - 1)
            + 1
    }
}

/// One cluster's numbers in one report (or summed over several).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Delta {
    /// Requests sent to an endpoint since the previous report.
    pub issued: u64,
    /// Requests answered with a status below 500 since the previous report.
    pub successes: u64,
    /// Requests answered with a 5xx, or that could not reach an endpoint, since the
    /// previous report.
    pub errors: u64,
    /// Requests in flight at the moment of the report (a gauge, not a delta).
    pub in_flight: u64,
}

impl Delta {
    /// The sums over a `ClusterStats`' localities.
    pub fn of(stats: &ClusterStats) -> Delta {
        stats
            .upstream_locality_stats
            .iter()
            .fold(Delta::default(), |d, l| Delta {
                issued: d.issued.saturating_add(l.total_issued_requests),
                successes: d.successes.saturating_add(l.total_successful_requests),
                errors: d.errors.saturating_add(l.total_error_requests),
                in_flight: d.in_flight.saturating_add(l.total_requests_in_progress),
            })
    }

    fn counts_nothing(&self) -> bool {
        self.issued == 0 && self.successes == 0 && self.errors == 0
    }
}

/// The share of finished requests that failed, `errors / requests`; `None` when none
/// finished. (Not over issued requests: a request that could not reach an endpoint failed
/// without being issued, and one still in flight has not failed yet.)
pub fn error_ratio(errors: u64, requests: u64) -> Option<f64> {
    (requests > 0).then(|| errors.min(requests) as f64 / requests as f64)
}

/// One proxy's share of a cluster's load in a window.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NodeLoad {
    pub node: String,
    /// Requests that finished in the window (answered, or failed).
    pub requests: u64,
    pub errors: u64,
    /// In flight at its last report; 0 when that report is not recent or its stream ended.
    pub in_flight: u64,
}

impl NodeLoad {
    /// See [`error_ratio`].
    pub fn error_ratio(&self) -> Option<f64> {
        error_ratio(self.errors, self.requests)
    }
}

/// A cluster's load across the fleet in a window.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ClusterLoad {
    /// Requests that finished in the window: answered (any status), or failed to reach an
    /// endpoint.
    pub requests: u64,
    /// Of those, answered with a 5xx or failed to reach an endpoint.
    pub errors: u64,
    /// Requests sent to an endpoint in the window.
    pub issued: u64,
    /// In flight now: each reporting proxy's latest figure, summed.
    pub in_flight: u64,
    /// The proxies with requests in the window or in flight now, by node id.
    pub per_node: Vec<NodeLoad>,
    /// Proxies whose latest report (a recent one, on a stream still open) names the
    /// cluster: how many proxies the figures above speak for.
    pub proxies_reporting: usize,
}

impl ClusterLoad {
    /// See [`error_ratio`].
    pub fn error_ratio(&self) -> Option<f64> {
        error_ratio(self.errors, self.requests)
    }
}

/// What a report did to the board.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Recorded {
    /// Clusters recorded.
    pub clusters: usize,
    /// Clusters ignored: not among the ones the caller knows.
    pub ignored: usize,
}

/// Requests of one (proxy, cluster) in one bucket. Counts saturate at `u32::MAX` (4
/// billion requests from one proxy in a few seconds).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Bucket {
    /// Buckets since the board's epoch.
    index: u32,
    issued: u32,
    successes: u32,
    errors: u32,
}

/// One proxy's reports on one cluster.
#[derive(Debug, Default)]
struct Series {
    /// Oldest first; only buckets something was counted in.
    buckets: VecDeque<Bucket>,
    in_flight: u64,
    /// The proxy's report that last named this cluster ([`Node::reports`]): its gauge
    /// stands only if that is the proxy's latest report.
    report: u64,
}

#[derive(Debug)]
struct Node {
    /// The stream reporting for it; `None` once that stream ended.
    stream: Option<StreamToken>,
    last_report: Instant,
    /// Reports received from it.
    reports: u64,
    left_at: Option<Instant>,
}

#[derive(Debug)]
struct Board {
    retention: Retention,
    /// Bucket 0 starts here.
    epoch: Instant,
    nodes: HashMap<Arc<str>, Node>,
    /// By cluster, then by proxy: a window walks only the cluster's proxies.
    clusters: HashMap<String, HashMap<Arc<str>, Series>>,
    /// Proxies whose stream ended, in the order they left (an entry is stale when the proxy
    /// has come back since).
    departed: VecDeque<(Arc<str>, Instant)>,
}

/// The load reports of every proxy. A cheap clone: every clone shares one board.
#[derive(Debug, Clone)]
pub struct LoadBoard {
    /// One `std::sync::Mutex` over the whole board: a report holds it for a lookup and an
    /// addition per cluster it names (microseconds; at 10,000 proxies reporting every
    /// second, 10,000 short holds a second), a window for one cluster's proxies; nothing
    /// awaits while holding it. Sharding would buy little at that rate and split what a
    /// window must read at once.
    inner: Arc<Mutex<Board>>,
}

impl LoadBoard {
    /// An empty board; bucket 0 starts at `now`.
    pub fn new(retention: Retention, now: Instant) -> LoadBoard {
        LoadBoard {
            inner: Arc::new(Mutex::new(Board {
                retention,
                epoch: now,
                nodes: HashMap::new(),
                clusters: HashMap::new(),
                departed: VecDeque::new(),
            })),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Board> {
        self.inner.lock().expect("bug: load board lock poisoned")
    }

    /// Records a report from proxy `node` on `stream`: each cluster's numbers, for the
    /// clusters `known` accepts (others are ignored and counted).
    pub fn record<'a>(
        &self,
        node: &str,
        stream: StreamToken,
        clusters: impl IntoIterator<Item = (&'a str, Delta)>,
        known: impl Fn(&str) -> bool,
        now: Instant,
    ) -> Recorded {
        let mut board = self.lock();
        let board = &mut *board;
        let index = board.index(now);
        let oldest = board.oldest(now);
        let slots = board.retention.slots();
        let (id, report) = board.report_from(node, stream, now);
        let mut recorded = Recorded::default();
        for (cluster, delta) in clusters {
            if !known(cluster) {
                recorded.ignored += 1;
                continue;
            }
            recorded.clusters += 1;
            if !board.clusters.contains_key(cluster) {
                board.clusters.insert(cluster.to_owned(), HashMap::new());
            }
            let series = board
                .clusters
                .get_mut(cluster)
                .expect("inserted above")
                .entry(id.clone())
                .or_default();
            series.add(delta, report, index, oldest, slots);
        }
        recorded
    }

    /// The stream `stream` of proxy `node` ended: its requests in flight no longer count
    /// (unless another stream of the same proxy has reported since). Its counts stay until
    /// they age out.
    pub fn forget(&self, node: &str, stream: StreamToken, now: Instant) {
        let mut board = self.lock();
        let Some(entry) = board.nodes.get_mut(node) else {
            return;
        };
        if entry.stream != Some(stream) {
            return;
        }
        entry.stream = None;
        entry.left_at = Some(now);
        let (id, _) = board.nodes.get_key_value(node).expect("found above");
        let id = id.clone();
        board.departed.push_back((id, now));
        board.sweep(now);
    }

    /// `cluster`'s load from `since` to `now`. The window starts at the bucket `since`
    /// falls in (up to [`Retention::bucket`] earlier), and at most [`Retention::history`]
    /// ago.
    pub fn window(&self, cluster: &str, since: Instant, now: Instant) -> ClusterLoad {
        let board = self.lock();
        let from = board.index(since).max(board.oldest(now));
        let mut load = ClusterLoad::default();
        let Some(series) = board.clusters.get(cluster) else {
            return load;
        };
        for (id, series) in series {
            let node = board
                .nodes
                .get(id)
                .expect("bug: a series of an unknown proxy");
            let reporting = node.stream.is_some()
                && series.report == node.reports
                && now.saturating_duration_since(node.last_report) <= board.retention.fresh;
            let mut share = NodeLoad {
                node: id.to_string(),
                requests: 0,
                errors: 0,
                in_flight: if reporting { series.in_flight } else { 0 },
            };
            let mut issued = 0;
            for b in series.buckets.iter().rev().take_while(|b| b.index >= from) {
                share.requests += u64::from(b.successes) + u64::from(b.errors);
                share.errors += u64::from(b.errors);
                issued += u64::from(b.issued);
            }
            load.proxies_reporting += usize::from(reporting);
            load.requests += share.requests;
            load.errors += share.errors;
            load.issued += issued;
            load.in_flight += share.in_flight;
            if share.requests + issued + share.in_flight > 0 {
                load.per_node.push(share);
            }
        }
        load.per_node.sort_by(|a, b| a.node.cmp(&b.node));
        load
    }

    /// Whether a window from `since` still starts at `since`'s bucket at `now` (the board
    /// keeps [`Retention::history`]; an older start is cut to it).
    pub fn reaches(&self, since: Instant, now: Instant) -> bool {
        let board = self.lock();
        board.index(since) >= board.oldest(now)
    }

    /// `cluster`'s load over the last `span` (everything kept, if the board is younger).
    pub fn recent(&self, cluster: &str, span: Duration, now: Instant) -> ClusterLoad {
        let since = now.checked_sub(span).unwrap_or_else(|| self.lock().epoch);
        self.window(cluster, since, now)
    }
}

impl Board {
    /// The earliest bucket kept at `now`.
    fn oldest(&self, now: Instant) -> u32 {
        let span = u32::try_from(self.retention.slots() - 1).unwrap_or(u32::MAX);
        self.index(now).saturating_sub(span)
    }

    /// The bucket `at` falls in (0 before the epoch).
    fn index(&self, at: Instant) -> u32 {
        let since = at.saturating_duration_since(self.epoch).as_millis();
        u32::try_from(since / self.retention.bucket_millis()).unwrap_or(u32::MAX)
    }

    /// A report from `node` on `stream` arrived: the proxy's shared id and the number of
    /// this report.
    fn report_from(&mut self, node: &str, stream: StreamToken, now: Instant) -> (Arc<str>, u64) {
        if !self.nodes.contains_key(node) {
            self.nodes.insert(
                Arc::from(node),
                Node {
                    stream: None,
                    last_report: now,
                    reports: 0,
                    left_at: None,
                },
            );
        }
        let entry = self.nodes.get_mut(node).expect("inserted above");
        entry.stream = Some(stream);
        entry.left_at = None;
        entry.last_report = now;
        entry.reports += 1;
        let reports = entry.reports;
        let (id, _) = self.nodes.get_key_value(node).expect("inserted above");
        (id.clone(), reports)
    }

    /// Drops the proxies that left longer than the history ago, and the earliest to leave
    /// beyond [`Retention::departed`].
    fn sweep(&mut self, now: Instant) {
        while let Some((id, left)) = self.departed.front() {
            let expired = now.saturating_duration_since(*left) > self.retention.history;
            if !expired && self.departed.len() <= self.retention.departed {
                break;
            }
            let (id, left) = (id.clone(), *left);
            self.departed.pop_front();
            let still_gone = self
                .nodes
                .get(&id)
                .is_some_and(|n| n.stream.is_none() && n.left_at == Some(left));
            if still_gone {
                self.nodes.remove(&id);
                self.clusters.retain(|_, series| {
                    series.remove(&id);
                    !series.is_empty()
                });
            }
        }
    }
}

impl Series {
    /// Adds report number `report` in bucket `index`, dropping the buckets before `oldest`
    /// and keeping at most `slots`.
    fn add(&mut self, delta: Delta, report: u64, index: u32, oldest: u32, slots: usize) {
        if self.report == report {
            // The same cluster twice in one report: both count.
            self.in_flight = self.in_flight.saturating_add(delta.in_flight);
        } else {
            self.in_flight = delta.in_flight;
            self.report = report;
        }
        while self
            .buckets
            .front()
            .is_some_and(|b| b.index < oldest || self.buckets.len() > slots)
        {
            self.buckets.pop_front();
        }
        if delta.counts_nothing() {
            return;
        }
        let count = |n: u64| u32::try_from(n).unwrap_or(u32::MAX);
        match self.buckets.back_mut() {
            // An earlier instant than the last report's (the caller's clocks disagree):
            // counted with the latest bucket.
            Some(last) if last.index >= index => {
                last.issued = last.issued.saturating_add(count(delta.issued));
                last.successes = last.successes.saturating_add(count(delta.successes));
                last.errors = last.errors.saturating_add(count(delta.errors));
            }
            _ => {
                if self.buckets.len() == slots {
                    self.buckets.pop_front();
                }
                self.buckets.push_back(Bucket {
                    index,
                    issued: count(delta.issued),
                    successes: count(delta.successes),
                    errors: count(delta.errors),
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use envoy_types::pb::envoy::config::endpoint::v3::UpstreamLocalityStats;

    const SECOND: Duration = Duration::from_secs(1);

    fn board(t0: Instant) -> LoadBoard {
        LoadBoard::new(Retention::for_interval(SECOND), t0)
    }

    fn delta(issued: u64, successes: u64, errors: u64, in_flight: u64) -> Delta {
        Delta {
            issued,
            successes,
            errors,
            in_flight,
        }
    }

    /// Accepts the clusters of a `summarizer` service.
    fn known(name: &str) -> bool {
        name.starts_with("summarizer-")
    }

    fn report(b: &LoadBoard, node: &str, stream: u64, at: Instant, clusters: &[(&str, Delta)]) {
        b.record(node, stream, clusters.iter().copied(), known, at);
    }

    #[test]
    fn a_report_sums_its_localities_and_keeps_the_gauge() {
        let locality = |issued, ok, err, active| UpstreamLocalityStats {
            total_issued_requests: issued,
            total_successful_requests: ok,
            total_error_requests: err,
            total_requests_in_progress: active,
            ..Default::default()
        };
        let stats = ClusterStats {
            cluster_name: "summarizer-blue".into(),
            upstream_locality_stats: vec![locality(10, 7, 1, 2), locality(5, 4, 0, 1)],
            ..Default::default()
        };
        assert_eq!(Delta::of(&stats), delta(15, 11, 1, 3));
        assert_eq!(Delta::of(&ClusterStats::default()), Delta::default());
    }

    #[test]
    fn deltas_add_up_over_the_window_per_cluster_and_per_proxy() {
        let t0 = Instant::now();
        let b = board(t0);
        for s in 0..10 {
            let at = t0 + SECOND * s;
            report(
                &b,
                "edge-1",
                1,
                at,
                &[("summarizer-blue", delta(10, 9, 1, 0))],
            );
            report(
                &b,
                "edge-2",
                2,
                at,
                &[("summarizer-blue", delta(5, 5, 0, 0))],
            );
        }
        let load = b.window("summarizer-blue", t0, t0 + SECOND * 10);
        assert_eq!((load.requests, load.errors, load.issued), (150, 10, 150));
        assert_eq!(load.proxies_reporting, 2);
        assert_eq!(
            load.per_node,
            [
                NodeLoad {
                    node: "edge-1".into(),
                    requests: 100,
                    errors: 10,
                    in_flight: 0
                },
                NodeLoad {
                    node: "edge-2".into(),
                    requests: 50,
                    errors: 0,
                    in_flight: 0
                },
            ]
        );
        assert_eq!(load.per_node[0].error_ratio(), Some(0.1));
        assert_eq!(
            b.window("summarizer-green", t0, t0 + SECOND * 10),
            ClusterLoad::default()
        );
    }

    #[test]
    fn a_window_starts_at_the_bucket_its_start_falls_in() {
        let t0 = Instant::now();
        let b = board(t0);
        // Buckets of 5 s: reports at 0..=14 s fill buckets 0, 1 and 2.
        for s in 0..15 {
            report(
                &b,
                "edge-1",
                1,
                t0 + SECOND * s,
                &[("summarizer-blue", delta(1, 1, 0, 0))],
            );
        }
        let now = t0 + SECOND * 15;
        assert_eq!(
            b.window("summarizer-blue", t0 + SECOND * 10, now).requests,
            5
        );
        assert_eq!(
            b.window("summarizer-blue", t0 + SECOND * 7, now).requests,
            10
        );
        assert_eq!(b.window("summarizer-blue", now, now).requests, 0);
        assert_eq!(b.recent("summarizer-blue", SECOND * 60, now).requests, 15);
    }

    #[test]
    fn reports_older_than_the_history_are_dropped_and_not_counted() {
        let t0 = Instant::now();
        let b = board(t0);
        report(
            &b,
            "edge-1",
            1,
            t0,
            &[("summarizer-blue", delta(100, 100, 0, 0))],
        );
        let later = t0 + Duration::from_secs(300);
        assert_eq!(
            b.window("summarizer-blue", t0, later).requests,
            0,
            "aged out"
        );
        report(
            &b,
            "edge-1",
            1,
            later,
            &[("summarizer-blue", delta(1, 1, 0, 0))],
        );
        let board = b.lock();
        let series = &board.clusters["summarizer-blue"]["edge-1"];
        assert_eq!(series.buckets.len(), 1, "the old bucket is gone");
    }

    #[test]
    fn memory_per_proxy_and_cluster_is_bounded_by_the_history() {
        let t0 = Instant::now();
        let b = board(t0);
        for s in 0..3600 {
            report(
                &b,
                "edge-1",
                1,
                t0 + SECOND * s,
                &[("summarizer-blue", delta(1, 1, 0, 0))],
            );
        }
        let retention = Retention::for_interval(SECOND);
        let board = b.lock();
        let series = &board.clusters["summarizer-blue"]["edge-1"];
        assert_eq!(series.buckets.len(), retention.slots());
        assert_eq!(
            retention.slots(),
            25,
            "2 min of 5 s buckets, and the one filling"
        );
    }

    #[test]
    fn quiet_clusters_keep_no_buckets() {
        let t0 = Instant::now();
        let b = board(t0);
        for s in 0..60 {
            report(
                &b,
                "edge-1",
                1,
                t0 + SECOND * s,
                &[("summarizer-green", Delta::default())],
            );
        }
        let board = b.lock();
        assert!(
            board.clusters["summarizer-green"]["edge-1"]
                .buckets
                .is_empty()
        );
    }

    #[test]
    fn clusters_the_caller_does_not_know_are_ignored() {
        let t0 = Instant::now();
        let b = board(t0);
        let names: Vec<String> = (0..10_000).map(|i| format!("invented-{i}")).collect();
        let clusters = names
            .iter()
            .map(|n| (n.as_str(), delta(1, 1, 0, 1)))
            .chain([("summarizer-blue", delta(1, 1, 0, 0))]);
        let recorded = b.record("rogue", 1, clusters, known, t0);
        assert_eq!(
            recorded,
            Recorded {
                clusters: 1,
                ignored: 10_000
            }
        );
        assert_eq!(b.lock().clusters.len(), 1);
    }

    #[test]
    fn in_flight_is_each_proxys_latest_gauge_summed() {
        let t0 = Instant::now();
        let b = board(t0);
        report(
            &b,
            "edge-1",
            1,
            t0,
            &[("summarizer-blue", delta(5, 0, 0, 5))],
        );
        report(
            &b,
            "edge-2",
            2,
            t0,
            &[("summarizer-blue", delta(2, 0, 0, 2))],
        );
        let t1 = t0 + SECOND;
        report(
            &b,
            "edge-1",
            1,
            t1,
            &[("summarizer-blue", delta(0, 2, 0, 3))],
        );
        let load = b.window("summarizer-blue", t0, t1);
        assert_eq!(load.in_flight, 3 + 2, "a gauge is replaced, not added");
        assert_eq!((load.issued, load.requests), (7, 2));
    }

    #[test]
    fn a_cluster_missing_from_the_latest_report_has_nothing_in_flight_there() {
        let t0 = Instant::now();
        let b = board(t0);
        report(
            &b,
            "edge-1",
            1,
            t0,
            &[("summarizer-blue", delta(5, 0, 0, 5))],
        );
        report(
            &b,
            "edge-1",
            1,
            t0 + SECOND,
            &[("summarizer-green", delta(1, 0, 0, 1))],
        );
        let now = t0 + SECOND;
        let blue = b.window("summarizer-blue", t0, now);
        assert_eq!((blue.in_flight, blue.proxies_reporting), (0, 0));
        assert_eq!(blue.issued, 5, "what it reported still counts");
        assert_eq!(b.window("summarizer-green", t0, now).in_flight, 1);
    }

    #[test]
    fn a_proxy_that_stopped_reporting_has_nothing_in_flight_after_three_intervals() {
        let t0 = Instant::now();
        let b = board(t0);
        report(
            &b,
            "edge-1",
            1,
            t0,
            &[("summarizer-blue", delta(4, 0, 0, 4))],
        );
        let load = b.window("summarizer-blue", t0, t0 + SECOND * 3);
        assert_eq!((load.in_flight, load.proxies_reporting), (4, 1));
        let load = b.window(
            "summarizer-blue",
            t0,
            t0 + SECOND * 3 + Duration::from_millis(1),
        );
        assert_eq!((load.in_flight, load.proxies_reporting), (0, 0));
        assert_eq!(load.issued, 4);
    }

    #[test]
    fn a_forgotten_proxy_stops_counting_in_flight_but_its_errors_stay() {
        let t0 = Instant::now();
        let b = board(t0);
        report(
            &b,
            "edge-1",
            1,
            t0,
            &[("summarizer-blue", delta(10, 0, 3, 7))],
        );
        report(
            &b,
            "edge-2",
            2,
            t0,
            &[("summarizer-blue", delta(1, 0, 0, 1))],
        );
        b.forget("edge-1", 1, t0);
        let load = b.window("summarizer-blue", t0, t0);
        assert_eq!((load.in_flight, load.proxies_reporting), (1, 1));
        assert_eq!((load.issued, load.errors), (11, 3));
        assert_eq!(load.per_node[0].node, "edge-1");
        assert_eq!(load.per_node[0].in_flight, 0);
    }

    #[test]
    fn the_end_of_an_old_stream_does_not_forget_a_proxy_that_reconnected() {
        let t0 = Instant::now();
        let b = board(t0);
        report(
            &b,
            "edge-1",
            1,
            t0,
            &[("summarizer-blue", delta(1, 0, 0, 1))],
        );
        report(
            &b,
            "edge-1",
            2,
            t0 + SECOND,
            &[("summarizer-blue", delta(1, 0, 0, 2))],
        );
        b.forget("edge-1", 1, t0 + SECOND);
        let load = b.window("summarizer-blue", t0, t0 + SECOND);
        assert_eq!((load.in_flight, load.proxies_reporting), (2, 1));
        b.forget("edge-1", 2, t0 + SECOND);
        assert_eq!(b.window("summarizer-blue", t0, t0 + SECOND).in_flight, 0);
    }

    #[test]
    fn departed_proxies_are_dropped_once_aged_out_or_too_many() {
        let t0 = Instant::now();
        let retention = Retention {
            departed: 2,
            ..Retention::for_interval(SECOND)
        };
        let b = LoadBoard::new(retention, t0);
        for (i, node) in ["a", "b", "c"].into_iter().enumerate() {
            report(
                &b,
                node,
                i as u64,
                t0,
                &[("summarizer-blue", delta(1, 1, 0, 0))],
            );
            b.forget(node, i as u64, t0);
        }
        let load = b.window("summarizer-blue", t0, t0);
        let nodes: Vec<&str> = load.per_node.iter().map(|n| n.node.as_str()).collect();
        assert_eq!(nodes, ["b", "c"], "the earliest to leave went first");
        b.forget("nobody", 9, t0 + Duration::from_secs(121));
        report(&b, "d", 9, t0 + Duration::from_secs(121), &[]);
        b.forget("d", 9, t0 + Duration::from_secs(121));
        let board = b.lock();
        assert_eq!(
            board.nodes.len(),
            1,
            "b and c aged out: {:?}",
            board.nodes.keys()
        );
        assert!(board.clusters.is_empty());
    }

    #[test]
    fn a_proxy_that_comes_back_keeps_its_counts_and_is_not_swept() {
        let t0 = Instant::now();
        let b = board(t0);
        report(
            &b,
            "edge-1",
            1,
            t0,
            &[("summarizer-blue", delta(3, 0, 3, 0))],
        );
        b.forget("edge-1", 1, t0);
        report(
            &b,
            "edge-1",
            2,
            t0 + SECOND,
            &[("summarizer-blue", delta(1, 1, 0, 0))],
        );
        report(&b, "x", 3, t0 + Duration::from_secs(200), &[]);
        b.forget("x", 3, t0 + Duration::from_secs(200));
        assert!(b.lock().nodes.contains_key("edge-1"));
    }

    #[test]
    fn the_same_cluster_twice_in_one_report_counts_twice() {
        let t0 = Instant::now();
        let b = board(t0);
        let twice = [
            ("summarizer-blue", delta(1, 1, 0, 1)),
            ("summarizer-blue", delta(1, 0, 1, 1)),
        ];
        report(&b, "edge-1", 1, t0, &twice);
        let load = b.window("summarizer-blue", t0, t0);
        assert_eq!((load.requests, load.errors, load.in_flight), (2, 1, 2));
    }

    #[test]
    fn requests_that_never_reached_an_endpoint_count_as_finished_errors() {
        let t0 = Instant::now();
        let b = board(t0);
        // Envoy's report for a color whose endpoints refuse connections.
        report(
            &b,
            "edge-1",
            1,
            t0,
            &[("summarizer-green", delta(0, 0, 5, 0))],
        );
        let load = b.window("summarizer-green", t0, t0);
        assert_eq!((load.requests, load.errors, load.issued), (5, 5, 0));
        assert_eq!(load.error_ratio(), Some(1.0));
    }

    #[test]
    fn the_error_ratio_is_over_finished_requests() {
        assert_eq!(error_ratio(0, 0), None);
        assert_eq!(error_ratio(1, 4), Some(0.25));
        assert_eq!(error_ratio(5, 5), Some(1.0));
        let load = ClusterLoad {
            requests: 20,
            errors: 2,
            issued: 100,
            ..Default::default()
        };
        assert_eq!(load.error_ratio(), Some(0.1));
    }
}
