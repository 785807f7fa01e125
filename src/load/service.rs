//! `envoy.service.load_stats.v3.LoadReportingService` on the xDS port: Envoy opens one
//! `StreamLoadStats` stream (with `cluster_manager.load_stats_config` in its bootstrap) on
//! the connection of its ADS stream, sends a first request carrying its node, is answered
//! once with `send_all_clusters` and the reporting interval, and from then on sends a
//! report every interval, which goes to the [`LoadBoard`].
//!
//! A proxy-facing service, held to the same rules as ADS: its first request's node must
//! pass the [`NodeAuthorizer`] (with mutual TLS, the certificate must name the node;
//! `--allow-node`/`--allow-cluster`), or the stream ends with PERMISSION_DENIED before
//! anything is sent. Reports are read like ADS requests ([`Messages`]: nothing held between
//! them, RESOURCE_EXHAUSTED past `--max-request-bytes`, DEADLINE_EXCEEDED for one whose
//! bytes stop coming for `--request-timeout-ms`, compressed ones refused), the node id is
//! bounded by `--max-node-bytes`, at most two reports per interval are read (faster ones
//! wait: HTTP/2 flow control then slows the client down), and only the clusters of the
//! state in force are recorded (see [`super::board`] for why that bounds memory). Later
//! requests' nodes are not read: the stream reports for the node it was let in as.
//!
//! Hand-written rather than envoy-types' generated server, for the same reason as ADS's:
//! tonic's request stream keeps a buffer the size of the largest message for the life of
//! the stream, and every report carries Envoy's 61 KB node ([`Report`]).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use envoy_types::pb::envoy::service::load_stats::v3::LoadStatsResponse;
use futures::{Stream, StreamExt};
use http_body::Frame;
use prost::Message;
use tokio::time::Instant;
use tokio_rustls::rustls::pki_types::CertificateDer;
use tonic::Status;
use tonic::codegen::{Body, BoxFuture, Context, Poll, Service, StdError, http};
use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};
use tracing::{Instrument, debug, info_span, warn};

use super::board::{Delta, LoadBoard, StreamToken};
use super::report::Report;
use crate::metrics::Metrics;
use crate::xds::ResourceType;
use crate::xds::body::trailers;
use crate::xds::cache::{Published, SnapshotCache};
use crate::xds::limits::{StreamLimits, TokenBucket};
use crate::xds::observer::NodeAuthorizer;
use crate::xds::requests::{Messages, refuse_compressed};

/// How often proxies report (`serve --load-report-interval`).
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(1);
/// Reports read per interval at most (sustained): Envoy sends one.
const REPORTS_PER_INTERVAL: u32 = 2;
/// ... and in a burst (a reconnect, a late timer).
const REPORT_BURST: u32 = 10;
/// Path of the one LRS method.
const STREAM_PATH: &str = "/envoy.service.load_stats.v3.LoadReportingService/StreamLoadStats";

/// The Load Reporting Service, as tonic serves it.
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

impl tonic::server::NamedService for LoadReporting {
    const NAME: &'static str = "envoy.service.load_stats.v3.LoadReportingService";
}

impl<B> Service<http::Request<B>> for LoadReporting
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
        let response = match req.uri().path() {
            STREAM_PATH => self.serve(req),
            other => Status::unimplemented(format!("unknown method {other}")).into_http(),
        };
        Box::pin(async move { Ok(response) })
    }
}

impl LoadReporting {
    /// `StreamLoadStats`: the reports read by [`Messages`], the answer written by hand.
    fn serve<B>(&self, req: http::Request<B>) -> http::Response<tonic::body::Body>
    where
        B: Body + Send + 'static,
        B::Error: Into<StdError> + Send + 'static,
    {
        if let Some(refusal) = refuse_compressed(req.headers()) {
            return refusal;
        }
        let tls = req.extensions().get::<TlsConnectInfo<TcpConnectInfo>>();
        let certs = tls.and_then(TlsConnectInfo::peer_certs);
        let peer = match tls {
            Some(tls) => tls.get_ref().remote_addr(),
            None => req
                .extensions()
                .get::<TcpConnectInfo>()
                .and_then(TcpConnectInfo::remote_addr),
        };
        let limits = &self.shared.limits;
        let reports = Messages::new(
            req.into_body(),
            limits.max_request_bytes,
            limits.request_timeout,
        );
        let frames = self.open(peer, certs, reports).map(Ok::<_, Status>);
        let body = http_body_util::StreamBody::new(frames);
        let mut response = http::Response::new(tonic::body::Body::new(body));
        response.headers_mut().insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/grpc"),
        );
        response
    }

    /// Opens one stream: the frames of its response body, whose polling reads its reports
    /// (no task or channel of its own).
    fn open(
        &self,
        peer: Option<SocketAddr>,
        certs: Option<Arc<Vec<CertificateDer<'static>>>>,
        reports: Messages<Report>,
    ) -> impl Stream<Item = Frame<Bytes>> + Send + use<> {
        let shared = self.shared.clone();
        let token = shared.last_stream.fetch_add(1, Ordering::Relaxed) + 1;
        let peer = peer.map(|a| a.to_string()).unwrap_or_default();
        let span = info_span!("lrs", stream = token, node_id = tracing::field::Empty, peer);
        shared.metrics.load_stream_opened();
        let interval_secs = shared.interval.as_secs_f64().max(0.001);
        let per_second = (f64::from(REPORTS_PER_INTERVAL) / interval_secs).ceil() as u32;
        let reporter = Reporter {
            reports,
            snapshots: shared.cache.subscribe(),
            token,
            node: None,
            certs,
            bucket: TokenBucket::new(per_second, REPORT_BURST, Instant::now().into_std()),
            shared,
            span,
            ended: false,
        };
        futures::stream::unfold(reporter, |mut reporter| async move {
            if reporter.ended {
                return None;
            }
            let span = reporter.span.clone();
            let frame = match reporter.next().instrument(span).await {
                Ok(answer) => Frame::data(grpc_message(&answer)),
                Err(status) => {
                    reporter.ended = true;
                    Frame::trailers(trailers(&status))
                }
            };
            Some((frame, reporter))
        })
    }
}

/// One stream: reads its reports and records them. It runs inside the stream's response
/// body, polled by the HTTP/2 connection.
struct Reporter {
    reports: Messages<Report>,
    /// Ends when the server shuts down (the snapshot writer is dropped), so that its
    /// graceful shutdown does not wait on proxies that never hang up.
    snapshots: tokio::sync::watch::Receiver<Arc<Published>>,
    token: StreamToken,
    /// Who the stream reports for, once its first request was let in.
    node: Option<String>,
    /// The peer's certificates, until the first request is let in.
    certs: Option<Arc<Vec<CertificateDer<'static>>>>,
    /// Reports read per second: the next is read only when a token is there for it.
    bucket: TokenBucket,
    shared: Arc<Shared>,
    span: tracing::Span,
    /// The stream's status was sent: it is over.
    ended: bool,
}

impl Reporter {
    /// The one answer to send (once the first request is let in), or the status that ends
    /// the stream: OK when the proxy has finished sending or the server shuts down.
    async fn next(&mut self) -> Result<LoadStatsResponse, Status> {
        loop {
            if let Some(at) = self.bucket.ready_at(Instant::now().into_std()) {
                tokio::time::sleep_until(at.into()).await;
            }
            let read = tokio::select! {
                read = self.reports.message() => read,
                changed = self.snapshots.changed() => match changed {
                    Ok(()) => continue,
                    Err(_) => {
                        debug!("switchyard is shutting down; load reporting stream ended");
                        return Err(Status::ok(""));
                    }
                },
            };
            let report = match read {
                Ok(Some(report)) => report,
                Ok(None) => {
                    debug!("proxy closed its load reporting stream");
                    return Err(Status::ok(""));
                }
                Err(status) => {
                    debug!(code = ?status.code(), message = status.message(), "load reporting stream ended");
                    return Err(status);
                }
            };
            self.bucket.take(Instant::now().into_std());
            let first = self.node.is_none();
            if first {
                self.admit(&report)?;
            }
            self.record(&report);
            if first {
                return Ok(self.answer());
            }
        }
    }

    /// Lets the stream's first request in, or refuses the stream.
    fn admit(&mut self, report: &Report) -> Result<(), Status> {
        let node = report.node.as_ref().map(|n| n.to_node());
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
    fn record(&self, report: &Report) {
        let Some(node) = &self.node else { return };
        self.shared.metrics.load_report_received();
        let published = self.shared.cache.current();
        let known = &published.snapshot().get(ResourceType::Cluster).names;
        let clusters = report
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

/// `message` as one gRPC message: not compressed, its length, its bytes.
fn grpc_message(message: &LoadStatsResponse) -> Bytes {
    let len = message.encoded_len();
    let mut buf = BytesMut::with_capacity(5 + len);
    buf.put_u8(0);
    buf.put_u32(u32::try_from(len).expect("bug: a LoadStatsResponse over 4 GiB"));
    message.encode(&mut buf).expect("bug: the buffer was sized");
    buf.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::board::Retention;
    use crate::xds::cache::{SnapshotWriter, snapshot_cache};
    use crate::xds::snapshot::{Resource, Snapshot, TypeSnapshot};
    use envoy_types::pb::envoy::config::core::v3::Node;
    use envoy_types::pb::envoy::config::endpoint::v3::{ClusterStats, UpstreamLocalityStats};
    use envoy_types::pb::envoy::service::load_stats::v3::LoadStatsRequest;
    use http_body_util::{BodyExt, StreamBody};
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
            needs: Vec::new(),
        };
        let mut types: [TypeSnapshot; 5] = Default::default();
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

    /// The proxy's side of one stream.
    struct Proxy {
        /// Request body bytes; dropping it ends the requests.
        requests: Option<mpsc::UnboundedSender<Bytes>>,
        response: http::Response<tonic::body::Body>,
    }

    impl Proxy {
        fn send(&self, request: &LoadStatsRequest) {
            self.send_bytes(framed(request));
        }

        fn send_bytes(&self, bytes: Bytes) {
            let requests = self.requests.as_ref().expect("still sending");
            requests.send(bytes).unwrap();
        }

        fn hang_up(&mut self) {
            self.requests = None;
        }

        /// The next answer, the status that ended the stream (`Err`), or `Ok(None)` when it
        /// ended with OK.
        async fn next(&mut self) -> Result<Option<LoadStatsResponse>, Status> {
            let Some(frame) = self.response.body_mut().frame().await else {
                return Ok(None);
            };
            let frame = frame.expect("a frame");
            match frame.into_data() {
                Ok(data) => {
                    assert_eq!(data[0], 0, "not compressed");
                    Ok(Some(LoadStatsResponse::decode(&data[5..]).unwrap()))
                }
                Err(frame) => {
                    let trailers = frame.into_trailers().expect("trailers");
                    match Status::from_header_map(&trailers).expect("a status") {
                        s if s.code() == tonic::Code::Ok => Ok(None),
                        s => Err(s),
                    }
                }
            }
        }
    }

    /// Opens a stream on `lrs`.
    fn connect(lrs: &LoadReporting) -> Proxy {
        connect_with(lrs, |r| r)
    }

    fn connect_with(
        lrs: &LoadReporting,
        adjust: impl FnOnce(http::request::Builder) -> http::request::Builder,
    ) -> Proxy {
        let (tx, rx) = mpsc::unbounded_channel::<Bytes>();
        let frames = tokio_stream::wrappers::UnboundedReceiverStream::new(rx)
            .map(|b| Ok::<_, std::io::Error>(Frame::data(b)));
        let request = adjust(http::Request::builder().uri(STREAM_PATH))
            .body(StreamBody::new(frames))
            .unwrap();
        Proxy {
            requests: Some(tx),
            response: lrs.serve(request),
        }
    }

    #[tokio::test]
    async fn the_first_request_is_answered_with_all_clusters_and_the_interval() {
        let Fixture {
            lrs, writer: _w, ..
        } = service();
        let mut proxy = connect(&lrs);
        proxy.send(&first("edge-1"));
        let answer = proxy.next().await.unwrap().expect("an answer");
        assert!(answer.send_all_clusters);
        assert!(answer.clusters.is_empty());
        let interval = answer.load_reporting_interval.unwrap();
        assert_eq!((interval.seconds, interval.nanos), (1, 0));
        proxy.hang_up();
        assert!(proxy.next().await.unwrap().is_none(), "ended with OK");
    }

    #[tokio::test]
    async fn reports_are_recorded_for_known_clusters_and_forgotten_when_the_stream_ends() {
        let Fixture {
            lrs,
            board,
            metrics,
            writer: _w,
        } = service();
        let mut proxy = connect(&lrs);
        proxy.send(&first("edge-1"));
        proxy.next().await.unwrap().unwrap();
        proxy.send(&report("invented", 10, 2, 3));
        proxy.send(&report("summarizer-blue", 10, 2, 3));
        let waited = tokio::time::timeout(Duration::from_millis(100), proxy.next()).await;
        assert!(waited.is_err(), "reports are not answered");
        let now = Instant::now();
        let since = now - Duration::from_secs(60);
        let blue = board.window("summarizer-blue", since, now);
        assert_eq!((blue.requests, blue.errors), (10, 2));
        assert_eq!(blue.in_flight, 3, "the stream is still open");
        assert_eq!(board.window("invented", since, now).requests, 0);
        proxy.hang_up();
        assert!(proxy.next().await.unwrap().is_none());
        drop(proxy);
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
        let mut proxy = connect(&lrs);
        let mut rogue = first("rogue");
        rogue.cluster_stats = report("summarizer-blue", 5, 5, 5).cluster_stats;
        proxy.send(&rogue);
        let status = proxy.next().await.unwrap_err();
        assert_eq!(status.code(), tonic::Code::PermissionDenied);
        assert_eq!(status.message(), "rogue is not allowed");
        assert!(proxy.response.body_mut().frame().await.is_none(), "over");
        let load = board.recent("summarizer-blue", Duration::from_secs(60), Instant::now());
        assert_eq!(load.requests, 0);
    }

    #[tokio::test]
    async fn a_stream_without_a_node_or_with_a_huge_id_is_refused() {
        let Fixture {
            lrs, writer: _w, ..
        } = service();
        let mut proxy = connect(&lrs);
        proxy.send(&report("summarizer-blue", 1, 0, 0));
        let status = proxy.next().await.unwrap_err();
        assert_eq!(status.code(), tonic::Code::InvalidArgument);

        let mut proxy = connect(&lrs);
        proxy.send(&first(&"x".repeat(65)));
        let status = proxy.next().await.unwrap_err();
        assert_eq!(status.code(), tonic::Code::ResourceExhausted);
        assert!(status.message().contains("--max-node-bytes"), "{status:?}");
    }

    #[tokio::test]
    async fn a_report_over_the_size_limit_ends_the_stream() {
        let Fixture {
            lrs, writer: _w, ..
        } = service();
        let mut proxy = connect(&lrs);
        proxy.send(&first("edge-1"));
        proxy.next().await.unwrap().unwrap();
        let mut huge = report("summarizer-blue", 1, 0, 0);
        huge.cluster_stats[0].cluster_name = "x".repeat(100 * 1024);
        proxy.send(&huge);
        let status = proxy.next().await.unwrap_err();
        assert_eq!(status.code(), tonic::Code::ResourceExhausted, "{status:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_report_that_stops_halfway_ends_the_stream_after_the_request_timeout() {
        let Fixture {
            lrs, writer: _w, ..
        } = service();
        let mut proxy = connect(&lrs);
        proxy.send(&first("edge-1"));
        proxy.next().await.unwrap().unwrap();
        let half = framed(&report("summarizer-blue", 1, 0, 0)).slice(..8);
        proxy.send_bytes(half);
        let started = Instant::now();
        let status = proxy.next().await.unwrap_err();
        assert_eq!(status.code(), tonic::Code::DeadlineExceeded);
        assert_eq!(started.elapsed(), StreamLimits::default().request_timeout);
    }

    #[tokio::test]
    async fn compressed_requests_and_other_methods_are_refused() {
        let Fixture {
            lrs, writer: _w, ..
        } = service();
        let proxy = connect_with(&lrs, |r| r.header("grpc-encoding", "gzip"));
        let status = Status::from_header_map(proxy.response.headers()).expect("a status");
        assert_eq!(status.code(), tonic::Code::Unimplemented);
        assert!(status.message().contains("\"gzip\""), "{status:?}");

        let request = http::Request::builder()
            .uri("/envoy.service.load_stats.v3.LoadReportingService/Other")
            .body(http_body_util::Empty::<Bytes>::new())
            .unwrap();
        let response = lrs.clone().call(request).await.unwrap();
        let status = Status::from_header_map(response.headers()).expect("a status");
        assert_eq!(status.code(), tonic::Code::Unimplemented);
    }

    #[tokio::test(start_paused = true)]
    async fn reports_faster_than_two_per_interval_are_read_later() {
        let Fixture {
            lrs,
            board,
            writer: _w,
            ..
        } = service();
        let mut proxy = connect(&lrs);
        proxy.send(&first("edge-1"));
        proxy.next().await.unwrap().unwrap();
        for _ in 0..30 {
            proxy.send(&report("summarizer-blue", 1, 0, 0));
        }
        let started = Instant::now();
        proxy.hang_up();
        assert!(proxy.next().await.unwrap().is_none());
        let read = board.recent("summarizer-blue", Duration::from_secs(60), Instant::now());
        assert_eq!(read.issued, 30, "every report is read");
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
        let mut proxy = connect(&lrs);
        proxy.send(&first("edge-1"));
        proxy.next().await.unwrap().unwrap();
        drop(writer);
        let ended = proxy.next().await;
        assert!(
            matches!(ended, Ok(None)),
            "ended with OK, though the proxy did not hang up: {ended:?}"
        );
    }
}
