//! `envoy.service.load_stats.v3.LoadReportingService` on the xDS port: Envoy opens one
//! `StreamLoadStats` stream (with `cluster_manager.load_stats_config` in its bootstrap),
//! sends a first request carrying its node, is answered once with `send_all_clusters` and
//! the reporting interval, and from then on sends a report every interval, which goes to
//! the [`LoadBoard`].
//!
//! A proxy-facing service, held to the same rules as ADS: its first request's node must
//! pass the [`NodeAuthorizer`] (with mutual TLS, the certificate must name the node;
//! `--allow-node`/`--allow-cluster`), or the stream ends with PERMISSION_DENIED before
//! anything is sent. Every report is bounded: `--max-request-bytes` per request
//! (OUT_OF_RANGE beyond, tonic's code for it), a node id of `--max-node-bytes` at most
//! (RESOURCE_EXHAUSTED), two reports per interval read at most (faster ones wait: HTTP/2
//! flow control then slows the client down), a stream that sends no whole report for ten
//! intervals (at least `--request-timeout-ms`) ends with DEADLINE_EXCEEDED, and only the
//! clusters of the state in force are recorded (see [`super::board`] for why that bounds
//! memory). Later requests' nodes are not read: the stream reports for the node it was let
//! in as. Compressed requests are refused (UNIMPLEMENTED), as on ADS.
//!
//! Envoy sends its reports on the connection of its ADS stream (one HTTP/2 connection
//! carries both), and every report carries its whole node: see [`Report`].

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use envoy_types::pb::envoy::config::core::v3::{Locality, Node};
use envoy_types::pb::envoy::config::endpoint::v3::ClusterStats;
use envoy_types::pb::envoy::service::load_stats::v3::LoadStatsResponse;
use envoy_types::pb::google::protobuf::Struct;
use futures::Stream;
use tokio::time::Instant;
use tokio_rustls::rustls::pki_types::CertificateDer;
use tonic::codegen::{Body, BoxFuture, Context, Poll, Service, StdError, http};
use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};
use tonic::{Request, Response, Status, Streaming};
use tracing::{Instrument, debug, info_span, warn};

use super::board::{Delta, LoadBoard, StreamToken};
use crate::metrics::Metrics;
use crate::xds::ResourceType;
use crate::xds::cache::{Published, SnapshotCache};
use crate::xds::limits::{StreamLimits, TokenBucket};
use crate::xds::observer::NodeAuthorizer;

/// How often proxies report (`serve --load-report-interval`).
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(1);
/// Reports read per interval at most (sustained): Envoy sends one.
const REPORTS_PER_INTERVAL: u32 = 2;
/// ... and in a burst (a reconnect, a late timer).
const REPORT_BURST: u32 = 10;
/// A stream that sends no whole report for this many intervals is ended.
const SILENT_INTERVALS: u32 = 10;

/// The Load Reporting Service.
#[derive(Clone)]
pub struct LoadReporting {
    shared: Arc<Shared>,
}

struct Shared {
    board: LoadBoard,
    /// The snapshot in force: its clusters are the ones recorded.
    cache: SnapshotCache,
    authorizer: Arc<dyn NodeAuthorizer>,
    metrics: Metrics,
    interval: Duration,
    limits: StreamLimits,
    /// The last stream token handed out.
    last_stream: AtomicU64,
}

impl std::fmt::Debug for LoadReporting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadReporting")
            .field("interval", &self.shared.interval)
            .finish_non_exhaustive()
    }
}

impl LoadReporting {
    /// Records the reports of the proxies `authorizer` lets in on `board`, for the clusters
    /// of `cache`'s snapshot, asking for one every `interval`.
    pub fn new(
        board: LoadBoard,
        cache: SnapshotCache,
        authorizer: Arc<dyn NodeAuthorizer>,
        metrics: Metrics,
        interval: Duration,
        limits: StreamLimits,
    ) -> LoadReporting {
        LoadReporting {
            shared: Arc::new(Shared {
                board,
                cache,
                authorizer,
                metrics,
                interval,
                limits,
                last_stream: AtomicU64::new(0),
            }),
        }
    }
}

/// A `LoadStatsRequest` as switchyard reads it: of the node, only what identifies it.
/// Envoy sends its whole node with every report (Envoy 1.40: 61 KB, 516 extensions, every
/// interval), and decoding that extension list would be most of what a report costs; here
/// it is an unknown field, stepped over without allocating.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Report {
    #[prost(message, optional, tag = "1")]
    pub node: Option<NodeIdentity>,
    #[prost(message, repeated, tag = "2")]
    pub cluster_stats: Vec<ClusterStats>,
}

/// The fields of `envoy.config.core.v3.Node` (same tags) that an authorizer reads.
#[derive(Clone, PartialEq, prost::Message)]
pub struct NodeIdentity {
    #[prost(string, tag = "1")]
    pub id: String,
    #[prost(string, tag = "2")]
    pub cluster: String,
    #[prost(message, optional, tag = "3")]
    pub metadata: Option<Struct>,
    #[prost(message, optional, tag = "4")]
    pub locality: Option<Locality>,
}

impl NodeIdentity {
    fn to_node(&self) -> Node {
        Node {
            id: self.id.clone(),
            cluster: self.cluster.clone(),
            metadata: self.metadata.clone(),
            locality: self.locality.clone(),
            ..Node::default()
        }
    }
}

/// Path of the one LRS method.
const STREAM_PATH: &str = "/envoy.service.load_stats.v3.LoadReportingService/StreamLoadStats";

/// The LRS gRPC service as tonic serves it. Hand-written rather than envoy-types'
/// generated server so that requests decode as [`Report`]s.
#[derive(Debug, Clone)]
pub struct LrsServer {
    inner: LoadReporting,
}

impl LoadReporting {
    /// The gRPC service.
    pub fn into_server(self) -> LrsServer {
        LrsServer { inner: self }
    }
}

impl tonic::server::NamedService for LrsServer {
    const NAME: &'static str = "envoy.service.load_stats.v3.LoadReportingService";
}

impl<B> Service<http::Request<B>> for LrsServer
where
    B: Body + Send + 'static,
    B::Error: Into<StdError> + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = std::convert::Infallible;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        if req.uri().path() != STREAM_PATH {
            let message = format!("unknown method {}", req.uri().path());
            return Box::pin(async move { Ok(Status::unimplemented(message).into_http()) });
        }
        let lrs = self.inner.clone();
        Box::pin(async move {
            // Compressed requests are refused (UNIMPLEMENTED): none is accepted.
            let max = lrs.shared.limits.max_request_bytes;
            let mut grpc = tonic::server::Grpc::new(tonic_prost::ProstCodec::<
                LoadStatsResponse,
                Report,
            >::default())
            .apply_max_message_size_config(Some(max), None);
            Ok(grpc.streaming(lrs, req).await)
        })
    }
}

/// The answers of one stream: the one `LoadStatsResponse`, then the status it ends with.
pub type Answers = Pin<Box<dyn Stream<Item = Result<LoadStatsResponse, Status>> + Send>>;

impl tonic::server::StreamingService<Report> for LoadReporting {
    type Response = LoadStatsResponse;
    type ResponseStream = Answers;
    type Future = BoxFuture<Response<Answers>, Status>;

    fn call(&mut self, request: Request<Streaming<Report>>) -> Self::Future {
        let answers = self.open(request);
        Box::pin(async move { Ok(Response::new(answers)) })
    }
}

impl LoadReporting {
    /// Opens one stream: its answers drive the reading of its reports.
    fn open(&self, request: Request<Streaming<Report>>) -> Answers {
        let peer = request
            .remote_addr()
            .map(|a| a.to_string())
            .unwrap_or_default();
        let certs = request
            .extensions()
            .get::<TlsConnectInfo<TcpConnectInfo>>()
            .and_then(TlsConnectInfo::peer_certs);
        let shared = self.shared.clone();
        let token = shared.last_stream.fetch_add(1, Ordering::Relaxed) + 1;
        let span = info_span!("lrs", stream = token, node_id = tracing::field::Empty, peer);
        shared.metrics.load_stream_opened();
        let interval_secs = shared.interval.as_secs_f64().max(0.001);
        let per_second = (f64::from(REPORTS_PER_INTERVAL) / interval_secs).ceil() as u32;
        let reporter = Reporter {
            requests: request.into_inner(),
            snapshots: shared.cache.subscribe(),
            token,
            node: None,
            certs,
            bucket: TokenBucket::new(per_second, REPORT_BURST, Instant::now().into_std()),
            silence: (shared.interval * SILENT_INTERVALS).max(shared.limits.request_timeout),
            shared,
            span,
            ended: false,
        };
        let answers = futures::stream::unfold(reporter, |mut reporter| async move {
            if reporter.ended {
                return None;
            }
            let span = reporter.span.clone();
            let answer = reporter.next().instrument(span).await?;
            reporter.ended = answer.is_err();
            Some((answer, reporter))
        });
        Box::pin(answers)
    }
}

/// One stream: reads its reports and records them. It runs inside the stream's response
/// body, polled by the HTTP/2 connection (no task of its own).
struct Reporter {
    requests: Streaming<Report>,
    /// Ends when the server shuts down (the snapshot writer is dropped), so that its
    /// graceful shutdown does not wait on proxies that never hang up.
    snapshots: tokio::sync::watch::Receiver<Arc<Published>>,
    token: StreamToken,
    /// Who the stream reports for, once its first request was let in.
    node: Option<String>,
    /// The peer's certificates, until the first request is let in.
    certs: Option<Arc<Vec<CertificateDer<'static>>>>,
    bucket: TokenBucket,
    /// How long the stream may go without a whole report.
    silence: Duration,
    shared: Arc<Shared>,
    span: tracing::Span,
    /// An error status was sent: the stream is over.
    ended: bool,
}

impl Reporter {
    /// The next answer to send, or `None` when the proxy has finished sending.
    async fn next(&mut self) -> Option<Result<LoadStatsResponse, Status>> {
        loop {
            if let Some(at) = self.bucket.ready_at(Instant::now().into_std()) {
                tokio::time::sleep_until(at.into()).await;
            }
            let read = tokio::select! {
                read = tokio::time::timeout(self.silence, self.requests.message()) => read,
                changed = self.snapshots.changed() => match changed {
                    Ok(()) => continue,
                    Err(_) => {
                        debug!("switchyard is shutting down; load reporting stream ended");
                        return None;
                    }
                },
            };
            let request = match read {
                Ok(Ok(Some(request))) => request,
                Ok(Ok(None)) => {
                    debug!("proxy closed its load reporting stream");
                    return None;
                }
                Ok(Err(status)) => {
                    debug!(code = ?status.code(), message = status.message(), "load reporting stream ended");
                    return Some(Err(status));
                }
                Err(_) => {
                    warn!(
                        silence_ms = self.silence.as_millis() as u64,
                        "no load report; stream ended"
                    );
                    return Some(Err(Status::deadline_exceeded(format!(
                        "no load report for {} ms (the interval is {} ms)",
                        self.silence.as_millis(),
                        self.shared.interval.as_millis()
                    ))));
                }
            };
            self.bucket.take(Instant::now().into_std());
            let first = self.node.is_none();
            if first && let Err(status) = self.admit(&request) {
                return Some(Err(status));
            }
            self.record(&request);
            if first {
                return Some(Ok(self.answer()));
            }
        }
    }

    /// Lets the stream's first request in, or refuses the stream.
    fn admit(&mut self, request: &Report) -> Result<(), Status> {
        let node = request.node.as_ref().map(NodeIdentity::to_node);
        let id = node.as_ref().map(|n| n.id.as_str()).unwrap_or_default();
        let certs = self.certs.take();
        self.shared
            .authorizer
            .authorize(node.as_ref(), certs.as_deref().map(Vec::as_slice))
            .map_err(|reason| {
                warn!(node = id, reason, "load reports refused");
                Status::permission_denied(reason)
            })?;
        if id.is_empty() {
            warn!("load reports without a node id refused");
            return Err(Status::invalid_argument(
                "the first LoadStatsRequest must carry the node (with its id)",
            ));
        }
        let limit = self.shared.limits.max_node_bytes;
        if id.len() > limit {
            warn!(
                bytes = id.len(),
                "node id over the size limit; stream ended"
            );
            return Err(Status::resource_exhausted(format!(
                "the node id takes {} bytes; the limit is {limit} (--max-node-bytes)",
                id.len()
            )));
        }
        self.span.record("node_id", id);
        debug!("load reports started");
        self.node = Some(id.to_owned());
        Ok(())
    }

    /// Puts a report on the board: the clusters of the snapshot in force only.
    fn record(&self, request: &Report) {
        let Some(node) = &self.node else { return };
        self.shared.metrics.load_report_received();
        let published = self.shared.cache.current();
        let known = &published.snapshot().get(ResourceType::Cluster).names;
        let clusters = request
            .cluster_stats
            .iter()
            .map(|c| (c.cluster_name.as_str(), Delta::of(c)));
        self.shared.board.record(
            node,
            self.token,
            clusters,
            |name| known.contains(name),
            Instant::now(),
        );
    }

    /// The one answer: report on every cluster, every interval.
    fn answer(&self) -> LoadStatsResponse {
        let interval = self.shared.interval;
        LoadStatsResponse {
            send_all_clusters: true,
            load_reporting_interval: Some(envoy_types::pb::google::protobuf::Duration {
                seconds: i64::try_from(interval.as_secs()).unwrap_or(i64::MAX),
                nanos: interval.subsec_nanos() as i32,
            }),
            ..Default::default()
        }
    }
}

impl Drop for Reporter {
    fn drop(&mut self) {
        if let Some(node) = &self.node {
            let _entered = self.span.enter();
            debug!("load reporting stream closed");
            self.shared.board.forget(node, self.token, Instant::now());
        }
        self.shared.metrics.load_stream_closed();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::board::Retention;
    use crate::xds::cache::{SnapshotWriter, snapshot_cache};
    use crate::xds::snapshot::{Resource, Snapshot, TypeSnapshot};
    use bytes::Bytes;
    use envoy_types::pb::envoy::config::core::v3::Extension;
    use envoy_types::pb::envoy::config::endpoint::v3::UpstreamLocalityStats;
    use envoy_types::pb::envoy::service::load_stats::v3::LoadStatsRequest;
    use futures::StreamExt;
    use http_body_util::StreamBody;
    use prost::Message;
    use tokio::sync::mpsc;

    /// Lets in every proxy but `rogue`.
    struct NotRogue;

    impl NodeAuthorizer for NotRogue {
        fn authorize(
            &self,
            node: Option<&Node>,
            _: Option<&[CertificateDer<'static>]>,
        ) -> Result<(), String> {
            match node {
                Some(n) if n.id == "rogue" => Err("rogue is not allowed".to_owned()),
                _ => Ok(()),
            }
        }
    }

    /// A service whose snapshot has the clusters `summarizer-blue` and `summarizer-green`.
    struct Fixture {
        lrs: LoadReporting,
        board: LoadBoard,
        metrics: Metrics,
        /// Dropping it is the server shutting down.
        writer: SnapshotWriter,
    }

    fn service() -> Fixture {
        let cluster = |name: &str| Resource {
            name: name.to_owned(),
            version: "1".to_owned(),
            body: Default::default(),
            clusters: Vec::new(),
        };
        let mut types: [TypeSnapshot; 4] = Default::default();
        types[ResourceType::Cluster.index()] =
            TypeSnapshot::new([cluster("summarizer-blue"), cluster("summarizer-green")]);
        let (cache, writer) = snapshot_cache(Snapshot::new("v1".into(), types));
        let board = LoadBoard::new(Retention::for_interval(DEFAULT_INTERVAL), Instant::now());
        let metrics = Metrics::new();
        let limits = StreamLimits {
            max_request_bytes: 64 * 1024,
            max_node_bytes: 64,
            ..StreamLimits::default()
        };
        let lrs = LoadReporting::new(
            board.clone(),
            cache,
            Arc::new(NotRogue),
            metrics.clone(),
            DEFAULT_INTERVAL,
            limits,
        );
        Fixture {
            lrs,
            board,
            metrics,
            writer,
        }
    }

    fn framed(request: &LoadStatsRequest) -> Bytes {
        let body = request.encode_to_vec();
        let mut out = vec![0];
        out.extend_from_slice(&(body.len() as u32).to_be_bytes());
        out.extend_from_slice(&body);
        out.into()
    }

    fn first(id: &str) -> LoadStatsRequest {
        LoadStatsRequest {
            node: Some(Node {
                id: id.to_owned(),
                ..Default::default()
            }),
            cluster_stats: Vec::new(),
        }
    }

    fn report(cluster: &str, issued: u64, errors: u64, in_flight: u64) -> LoadStatsRequest {
        LoadStatsRequest {
            node: None,
            cluster_stats: vec![ClusterStats {
                cluster_name: cluster.to_owned(),
                upstream_locality_stats: vec![UpstreamLocalityStats {
                    total_issued_requests: issued,
                    total_successful_requests: issued - errors,
                    total_error_requests: errors,
                    total_requests_in_progress: in_flight,
                    ..Default::default()
                }],
                ..Default::default()
            }],
        }
    }

    /// Opens a stream on `lrs` whose request messages are sent through the returned channel
    /// (dropping it ends the requests).
    async fn connect(lrs: &LoadReporting) -> (mpsc::UnboundedSender<Bytes>, Answers) {
        let (tx, rx) = mpsc::unbounded_channel::<Bytes>();
        let frames = tokio_stream::wrappers::UnboundedReceiverStream::new(rx)
            .map(|b| Ok::<_, std::io::Error>(http_body::Frame::data(b)));
        let max = lrs.shared.limits.max_request_bytes;
        let streaming = Streaming::new_request(
            tonic_prost::ProstDecoder::<Report>::default(),
            StreamBody::new(frames),
            None,
            Some(max),
        );
        (tx, lrs.open(Request::new(streaming)))
    }

    #[test]
    fn a_report_decodes_envoys_request_but_the_node_extensions() {
        let node = Node {
            id: "edge-1".into(),
            cluster: "edge".into(),
            locality: Some(Locality {
                zone: "a".into(),
                ..Default::default()
            }),
            extensions: vec![
                Extension {
                    name: "envoy.filters.http.router".into(),
                    ..Default::default()
                };
                500
            ],
            client_features: vec!["envoy.lrs.supports_send_all_clusters".into()],
            ..Default::default()
        };
        let request = LoadStatsRequest {
            node: Some(node.clone()),
            cluster_stats: report("summarizer-blue", 3, 1, 2).cluster_stats,
        };
        let report = Report::decode(request.encode_to_vec().as_slice()).unwrap();
        let identity = report.node.as_ref().unwrap().to_node();
        assert_eq!(
            (identity.id.as_str(), identity.cluster.as_str()),
            ("edge-1", "edge")
        );
        assert_eq!(identity.locality, node.locality);
        assert!(identity.extensions.is_empty(), "skipped");
        assert_eq!(report.cluster_stats, request.cluster_stats);
    }

    #[tokio::test]
    async fn the_first_request_is_answered_with_all_clusters_and_the_interval() {
        let Fixture {
            lrs, writer: _w, ..
        } = service();
        let (tx, mut answers) = connect(&lrs).await;
        tx.send(framed(&first("edge-1"))).unwrap();
        let answer = answers.next().await.unwrap().expect("an answer");
        assert!(answer.send_all_clusters);
        assert!(answer.clusters.is_empty());
        let interval = answer.load_reporting_interval.unwrap();
        assert_eq!((interval.seconds, interval.nanos), (1, 0));
        drop(tx);
        assert!(answers.next().await.is_none(), "the proxy hung up: OK");
    }

    #[tokio::test]
    async fn reports_are_recorded_for_known_clusters_and_forgotten_when_the_stream_ends() {
        let Fixture {
            lrs,
            board,
            metrics,
            writer: _w,
        } = service();
        let (tx, mut answers) = connect(&lrs).await;
        tx.send(framed(&first("edge-1"))).unwrap();
        answers.next().await.unwrap().unwrap();
        tx.send(framed(&report("invented", 10, 2, 3))).unwrap();
        tx.send(framed(&report("summarizer-blue", 10, 2, 3)))
            .unwrap();
        let waited = tokio::time::timeout(Duration::from_millis(100), answers.next()).await;
        assert!(waited.is_err(), "reports are not answered");
        let now = Instant::now();
        let since = now - Duration::from_secs(60);
        let blue = board.window("summarizer-blue", since, now);
        assert_eq!((blue.requests, blue.errors), (10, 2));
        assert_eq!(blue.in_flight, 3, "the stream is still open");
        assert_eq!(board.window("invented", since, now).requests, 0);
        drop(tx);
        assert!(answers.next().await.is_none());
        let blue = board.window("summarizer-blue", since, Instant::now());
        assert_eq!(
            (blue.requests, blue.in_flight),
            (10, 0),
            "gone with its stream"
        );
        let text = metrics.encode();
        assert!(text.contains("switchyard_load_reports_total 3"), "{text}");
        assert!(text.contains("switchyard_load_report_streams 0"), "{text}");
    }

    #[tokio::test]
    async fn a_refused_node_gets_permission_denied_and_records_nothing() {
        let Fixture {
            lrs,
            board,
            writer: _w,
            ..
        } = service();
        let (tx, mut answers) = connect(&lrs).await;
        let mut rogue = first("rogue");
        rogue.cluster_stats = report("summarizer-blue", 5, 5, 5).cluster_stats;
        tx.send(framed(&rogue)).unwrap();
        let status = answers.next().await.unwrap().unwrap_err();
        assert_eq!(status.code(), tonic::Code::PermissionDenied);
        assert_eq!(status.message(), "rogue is not allowed");
        assert!(answers.next().await.is_none());
        let now = Instant::now();
        assert_eq!(
            board
                .recent("summarizer-blue", Duration::from_secs(60), now)
                .requests,
            0
        );
    }

    #[tokio::test]
    async fn a_stream_without_a_node_or_with_a_huge_id_is_refused() {
        let Fixture {
            lrs, writer: _w, ..
        } = service();
        let (tx, mut answers) = connect(&lrs).await;
        tx.send(framed(&report("summarizer-blue", 1, 0, 0)))
            .unwrap();
        let status = answers.next().await.unwrap().unwrap_err();
        assert_eq!(status.code(), tonic::Code::InvalidArgument);

        let (tx, mut answers) = connect(&lrs).await;
        tx.send(framed(&first(&"x".repeat(65)))).unwrap();
        let status = answers.next().await.unwrap().unwrap_err();
        assert_eq!(status.code(), tonic::Code::ResourceExhausted);
        assert!(status.message().contains("--max-node-bytes"), "{status:?}");
    }

    #[tokio::test]
    async fn a_request_over_the_size_limit_ends_the_stream() {
        let Fixture {
            lrs, writer: _w, ..
        } = service();
        let (tx, mut answers) = connect(&lrs).await;
        tx.send(framed(&first("edge-1"))).unwrap();
        answers.next().await.unwrap().unwrap();
        let mut huge = report("summarizer-blue", 1, 0, 0);
        huge.cluster_stats[0].cluster_name = "x".repeat(100 * 1024);
        tx.send(framed(&huge)).unwrap();
        let status = answers.next().await.unwrap().unwrap_err();
        assert_eq!(status.code(), tonic::Code::OutOfRange, "{status:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_silent_stream_is_ended_after_ten_intervals() {
        let Fixture {
            lrs,
            board,
            writer: _w,
            ..
        } = service();
        let (tx, mut answers) = connect(&lrs).await;
        tx.send(framed(&first("edge-1"))).unwrap();
        answers.next().await.unwrap().unwrap();
        let started = Instant::now();
        let status = answers.next().await.unwrap().unwrap_err();
        assert_eq!(status.code(), tonic::Code::DeadlineExceeded);
        assert_eq!(started.elapsed(), Duration::from_secs(10));
        drop((tx, answers));
        let now = Instant::now();
        assert_eq!(
            board
                .recent("summarizer-blue", Duration::from_secs(60), now)
                .proxies_reporting,
            0
        );
    }

    #[tokio::test(start_paused = true)]
    async fn reports_faster_than_two_per_interval_are_read_later() {
        let Fixture {
            lrs,
            board,
            writer: _w,
            ..
        } = service();
        let (tx, mut answers) = connect(&lrs).await;
        tx.send(framed(&first("edge-1"))).unwrap();
        answers.next().await.unwrap().unwrap();
        for _ in 0..30 {
            tx.send(framed(&report("summarizer-blue", 1, 0, 0)))
                .unwrap();
        }
        let started = Instant::now();
        drop(tx);
        assert!(answers.next().await.is_none());
        let read = board.recent("summarizer-blue", Duration::from_secs(60), Instant::now());
        assert_eq!(read.requests, 30, "every report is read");
        // A burst of 10 (one taken by the first request), then 2 a second.
        let took = started.elapsed();
        assert!(
            took >= Duration::from_secs(10) && took <= Duration::from_secs(11),
            "{took:?}"
        );
    }

    #[tokio::test]
    async fn shutting_down_ends_every_stream() {
        let Fixture { lrs, writer, .. } = service();
        let (tx, mut answers) = connect(&lrs).await;
        tx.send(framed(&first("edge-1"))).unwrap();
        answers.next().await.unwrap().unwrap();
        drop(writer);
        assert!(
            answers.next().await.is_none(),
            "ended, though the proxy did not hang up"
        );
    }
}
