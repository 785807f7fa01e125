//! The ADS gRPC service: each stream's response body drives a thin I/O loop around its
//! protocol's state machine, [`SotwStream`] or [`DeltaStream`] (no task or channel of its
//! own); what happens on the stream goes to the application's [`StreamObserver`]. Both
//! protocols share the loop, the bounds on what a stream may cost and the authorizer.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::envoy::service::discovery::v3::{DeltaDiscoveryRequest, DiscoveryRequest};
use tokio_rustls::rustls::pki_types::CertificateDer;
use tonic::Status;
use tonic::codegen::{Body, BoxFuture, Context, Poll, Service, StdError, http};
use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};
use tracing::{Instrument, debug, info, info_span, warn};

use super::ResourceType;
use super::body::{AdsBody, ResponseStream};
use super::cache::{Published, SnapshotCache};
use super::delta::DeltaStream;
use super::encode::EncodedResponse;
use super::limits::{StreamLimits, TokenBucket};
use super::observer::{
    NodeAuthorizer, Protocol, StepReport, StreamEvent, StreamId, StreamObserver,
};
use super::requests::{Messages, refuse_compressed};
use super::sotw::{SotwStream, Step};
use super::stream::StreamCore;

/// The Aggregated Discovery Service.
#[derive(Clone)]
pub struct AdsService {
    cache: SnapshotCache,
    observer: Arc<dyn StreamObserver>,
    authorizer: Arc<dyn NodeAuthorizer>,
    limits: StreamLimits,
    /// The last stream id handed out (shared by clones of the service).
    last_stream: Arc<AtomicU64>,
    control_plane: String,
}

impl std::fmt::Debug for AdsService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdsService")
            .field("control_plane", &self.control_plane)
            .finish_non_exhaustive()
    }
}

impl AdsService {
    /// Serves the snapshots of `cache` to the proxies `authorizer` lets in, telling
    /// `observer` what happens on each stream; `control_plane` identifies this server in
    /// responses.
    pub fn new(
        cache: SnapshotCache,
        observer: Arc<dyn StreamObserver>,
        authorizer: Arc<dyn NodeAuthorizer>,
        limits: StreamLimits,
        control_plane: String,
    ) -> AdsService {
        AdsService {
            cache,
            observer,
            authorizer,
            limits,
            last_stream: Arc::new(AtomicU64::new(0)),
            control_plane,
        }
    }
}

/// Path of the SotW ADS method.
const SOTW_PATH: &str =
    "/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources";
/// Path of the delta ADS method.
const DELTA_PATH: &str =
    "/envoy.service.discovery.v3.AggregatedDiscoveryService/DeltaAggregatedResources";

/// The ADS gRPC service as tonic serves it. Hand-written rather than envoy-types'
/// generated server so that responses go out as [`EncodedResponse`]s: encoded once per
/// content and shared by every stream, instead of re-encoded per stream, and written by
/// [`AdsBody`] without a per-stream encode buffer.
#[derive(Debug, Clone)]
pub struct AdsServer {
    inner: Arc<AdsService>,
}

impl AdsServer {
    pub fn new(service: AdsService) -> AdsServer {
        AdsServer {
            inner: Arc::new(service),
        }
    }
}

impl tonic::server::NamedService for AdsServer {
    const NAME: &'static str = "envoy.service.discovery.v3.AggregatedDiscoveryService";
}

impl<B> Service<http::Request<B>> for AdsServer
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
        match req.uri().path() {
            SOTW_PATH => {
                let ads = self.inner.clone();
                Box::pin(async move { Ok(ads.serve::<SotwStream, B>(req)) })
            }
            DELTA_PATH => {
                let ads = self.inner.clone();
                Box::pin(async move { Ok(ads.serve::<DeltaStream, B>(req)) })
            }
            other => {
                let message = format!("unknown method {other}");
                Box::pin(async move { Ok(Status::unimplemented(message).into_http()) })
            }
        }
    }
}

impl AdsService {
    /// `StreamAggregatedResources` or `DeltaAggregatedResources` (`S`): the requests read
    /// by [`Messages`], the responses written by [`AdsBody`].
    fn serve<S: AdsStream, B>(&self, req: http::Request<B>) -> http::Response<tonic::body::Body>
    where
        B: Body + Send + 'static,
        B::Error: Into<StdError> + Send + 'static,
    {
        if let Some(refusal) = refuse_compressed(req.headers()) {
            return refusal;
        }
        let extensions = req.extensions();
        let tls = extensions.get::<TlsConnectInfo<TcpConnectInfo>>();
        let tcp = extensions
            .get::<TcpConnectInfo>()
            .or_else(|| tls.map(TlsConnectInfo::get_ref));
        let peer = tcp.and_then(|info| info.remote_addr());
        let certs = tls.and_then(TlsConnectInfo::peer_certs);
        let requests = Messages::new(
            req.into_body(),
            self.limits.max_request_bytes,
            self.limits.request_timeout,
        );
        let body = AdsBody::new(self.open_stream::<S>(peer, certs, requests));
        let mut response = http::Response::new(tonic::body::Body::new(body));
        response.headers_mut().insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/grpc"),
        );
        response
    }

    /// Opens one stream: its response stream drives the protocol state machine directly
    /// (no task or channel of its own), so an idle stream costs only its state.
    fn open_stream<S: AdsStream>(
        &self,
        peer: Option<SocketAddr>,
        certs: Option<Arc<Vec<CertificateDer<'static>>>>,
        inbound: Messages<S::Request>,
    ) -> ResponseStream {
        let peer = peer.map(|a| a.to_string()).unwrap_or_default();
        let id = self.last_stream.fetch_add(1, Ordering::Relaxed) + 1;
        let span = info_span!("ads", stream = id, node_id = tracing::field::Empty, peer);
        self.observer.stream_opened(id, S::PROTOCOL, &peer);
        let driver = Driver {
            inbound,
            snapshots: self.cache.subscribe(),
            stream: S::new(self.cache.current(), self.control_plane.clone()),
            id,
            observer: self.observer.clone(),
            authorizer: Some((self.authorizer.clone(), certs)),
            identified: false,
            limits: self.limits,
            bucket: TokenBucket::new(
                self.limits.requests_per_second,
                self.limits.request_burst,
                std::time::Instant::now(),
            ),
            pending: Vec::new().into_iter(),
            span,
        };
        let responses = futures::stream::unfold(driver, |mut driver| async move {
            let span = driver.span.clone();
            let item = driver.next().instrument(span).await?;
            Some((item, driver))
        });
        Box::pin(responses)
    }
}

/// The stream's authorizer and the peer's certificate chain (leaf first).
type Gate = (
    Arc<dyn NodeAuthorizer>,
    Option<Arc<Vec<CertificateDer<'static>>>>,
);

/// One ADS stream's protocol state machine, as [`Driver`] runs it: SotW or delta.
trait AdsStream: std::ops::Deref<Target = StreamCore> + Send + Sized + 'static {
    type Request: prost::Message + prost::Name + Default + Send + 'static;
    const PROTOCOL: Protocol;
    fn new(published: Arc<Published>, control_plane: String) -> Self;
    fn on_request(&mut self, req: Self::Request) -> Step;
    fn on_snapshot(&mut self, published: Arc<Published>) -> Step;
    /// The node a request carries.
    fn request_node(req: &Self::Request) -> Option<&Node>;
    /// How many names of its type the stream would ask for with `req` applied, at most.
    fn names_after(&self, req: &Self::Request) -> usize;
    /// What [`Self::names_after`] counts, in an error that ends a stream over the bound.
    const NAMES: &str;
}

impl AdsStream for SotwStream {
    type Request = DiscoveryRequest;
    const PROTOCOL: Protocol = Protocol::Sotw;
    const NAMES: &str = "a request lists";
    fn new(published: Arc<Published>, control_plane: String) -> Self {
        SotwStream::new(published, control_plane)
    }
    fn on_request(&mut self, req: DiscoveryRequest) -> Step {
        self.on_request(req)
    }
    fn on_snapshot(&mut self, published: Arc<Published>) -> Step {
        self.on_snapshot(published)
    }
    fn request_node(req: &DiscoveryRequest) -> Option<&Node> {
        req.node.as_ref()
    }
    fn names_after(&self, req: &DiscoveryRequest) -> usize {
        req.resource_names.len() // a SotW request restates the whole subscription
    }
}

impl AdsStream for DeltaStream {
    type Request = DeltaDiscoveryRequest;
    const PROTOCOL: Protocol = Protocol::Delta;
    const NAMES: &str = "the stream would subscribe to, for one type,";
    fn new(published: Arc<Published>, control_plane: String) -> Self {
        DeltaStream::new(published, control_plane)
    }
    fn on_request(&mut self, req: DeltaDiscoveryRequest) -> Step {
        self.on_request(req)
    }
    fn on_snapshot(&mut self, published: Arc<Published>) -> Step {
        self.on_snapshot(published)
    }
    fn request_node(req: &DeltaDiscoveryRequest) -> Option<&Node> {
        req.node.as_ref()
    }
    fn names_after(&self, req: &DeltaDiscoveryRequest) -> usize {
        self.names_after(req) // subscriptions add up over the stream's requests
    }
}

/// Drives one stream: feeds the state machine the proxy's requests and new snapshots,
/// hands its responses to the transport, and tells the observer what happened. It runs
/// inside the stream's response body, polled by the HTTP/2 connection (no task of its own).
struct Driver<S: AdsStream> {
    inbound: Messages<S::Request>,
    snapshots: tokio::sync::watch::Receiver<Arc<Published>>,
    stream: S,
    id: StreamId,
    observer: Arc<dyn StreamObserver>,
    /// Who decides whether the proxy is served, and its certificates: until its first
    /// request is let in (then dropped, so an idle stream holds neither).
    authorizer: Option<Gate>,
    /// The observer has been told who the proxy is.
    identified: bool,
    limits: StreamLimits,
    /// Requests read per second ([`StreamLimits::requests_per_second`]): the next request
    /// is read only when a token is there for it.
    bucket: TokenBucket,
    /// Responses of the last step not yet handed to the transport (the step's own list,
    /// dropped once sent, so an idle stream holds no buffer for it).
    pending: std::vec::IntoIter<EncodedResponse>,
    span: tracing::Span,
}

impl<S: AdsStream> Driver<S> {
    /// The next response to send, or `None` when the stream is over (the proxy hung up,
    /// or the server is shutting down).
    async fn next(&mut self) -> Option<Result<EncodedResponse, Status>> {
        loop {
            if let Some(response) = self.pending.next() {
                if self.pending.len() == 0 {
                    self.pending = Vec::new().into_iter();
                }
                return Some(Ok(response));
            }
            // A request is read only when a token is there for it.
            let throttled = self.bucket.ready_at(std::time::Instant::now());
            let step = tokio::select! {
                req = self.inbound.message(), if throttled.is_none() => match req {
                    Ok(Some(req)) => {
                        if let Err(status) = self.admit(&req) {
                            return Some(Err(status));
                        }
                        self.bucket.take(std::time::Instant::now());
                        let before = self.serve_variant(&req);
                        let step = self.stream.on_request(req);
                        before.then(step)
                    }
                    Ok(None) => {
                        debug!("proxy closed the stream");
                        return None;
                    }
                    Err(status) => {
                        // A malformed request: the proxy is told why in the trailers (if
                        // it is still there to read them).
                        debug!(code = ?status.code(), message = status.message(), "stream ended");
                        return Some(Err(status));
                    }
                },
                _ = throttle(throttled), if throttled.is_some() => continue,
                changed = self.snapshots.changed() => {
                    if changed.is_err() {
                        return None; // the server is shutting down
                    }
                    let published = self.snapshots.borrow_and_update().clone();
                    let node = self.stream.node().map(|n| &**n);
                    self.stream.on_snapshot(published.for_node(node))
                }
            };
            self.after(step);
        }
    }

    /// On the first request that names the proxy (before it subscribes to anything): the
    /// stream serves the snapshot this proxy gets, which may be a variant of the one
    /// published (a rollout between waves). A node is kept once, so this is once a stream.
    /// Returns what that took (nothing, unless the stream subscribed before it said who
    /// it is).
    fn serve_variant(&mut self, req: &S::Request) -> Step {
        if self.stream.node().is_some() {
            return Step::default();
        }
        let Some(node) = S::request_node(req) else {
            return Step::default();
        };
        let published = self.snapshots.borrow().clone();
        let variant = published.for_node(Some(node));
        if Arc::ptr_eq(&variant, &published) {
            return Step::default();
        }
        self.stream.on_snapshot(variant)
    }

    /// Checks a request against the stream's bounds (and, the first time, the authorizer);
    /// a request over a bound ends the stream with a status that names it.
    fn admit(&mut self, req: &S::Request) -> Result<(), Status> {
        let limits = &self.limits;
        let n = self.stream.names_after(req);
        if n > limits.max_resource_names {
            warn!(
                names = n,
                "request over the resource-name limit; stream ended"
            );
            return Err(Status::resource_exhausted(format!(
                "{} {n} resource names; the limit is {} (--max-resource-names)",
                S::NAMES,
                limits.max_resource_names
            )));
        }
        if !self.identified
            && let Some(node) = S::request_node(req)
        {
            let size = node_size(node);
            if size > limits.max_node_bytes {
                warn!(
                    node = node.id,
                    bytes = size,
                    "node over the size limit; stream ended"
                );
                return Err(Status::resource_exhausted(format!(
                    "the node's id, cluster, metadata and locality take {size} bytes; the \
                     limit is {} \
                     (--max-node-bytes)",
                    limits.max_node_bytes
                )));
            }
        }
        self.authorize(req)
    }

    /// Lets the stream's first request in, or refuses the stream.
    fn authorize(&mut self, req: &S::Request) -> Result<(), Status> {
        let Some((authorizer, certs)) = self.authorizer.take() else {
            return Ok(());
        };
        let node = S::request_node(req);
        authorizer
            .authorize(node, certs.as_deref().map(Vec::as_slice))
            .map_err(|reason| {
                let node = node.map(|n| n.id.as_str()).unwrap_or_default();
                warn!(node, reason, "proxy refused");
                Status::permission_denied(reason)
            })
    }

    /// After one step: logs, then tells the observer, then queues the responses.
    fn after(&mut self, step: Step) {
        if !self.identified
            && let Some(node) = self.stream.node()
        {
            self.identified = true;
            self.span.record("node_id", node.id.as_str());
            info!(cluster = %node.cluster, "proxy connected");
            self.observer.node_identified(self.id, node);
        }
        for event in &step.events {
            log(event);
        }
        self.observer.stream_stepped(
            self.id,
            StepReport {
                events: &step.events,
                state_version: self.stream.state_version(),
                status: self.stream.statuses(),
                wildcard: ResourceType::ALL.map(|t| self.stream.wildcard(t)),
            },
        );
        debug_assert_eq!(
            self.pending.len(),
            0,
            "a step is taken once the last one is sent"
        );
        self.pending = step.responses.into_iter();
    }
}

impl<S: AdsStream> Drop for Driver<S> {
    fn drop(&mut self) {
        let _entered = self.span.enter();
        info!("proxy disconnected");
        self.observer.stream_closed(self.id);
    }
}

/// Waits until `until` (a throttled stream's next token). `select!` builds every branch's
/// future, used or not, so the timer is boxed: an idle stream, never throttled, does not
/// carry a timer's state inline, only one that is over its rate allocates one.
async fn throttle(until: Option<std::time::Instant>) {
    if let Some(until) = until {
        Box::pin(tokio::time::sleep_until(until.into())).await;
    }
}

/// What a node's id, cluster, metadata and locality take, in encoded bytes: what
/// switchyard keeps of it for the stream's life (the extension list Envoy sends is dropped
/// on arrival).
fn node_size(node: &envoy_types::pb::envoy::config::core::v3::Node) -> usize {
    use prost::Message;
    node.id.len()
        + node.cluster.len()
        + node.metadata.as_ref().map_or(0, Message::encoded_len)
        + node.locality.as_ref().map_or(0, Message::encoded_len)
}

/// Logs one stream event.
fn log(event: &StreamEvent) {
    match event {
        StreamEvent::Rejected {
            type_,
            version,
            message,
        } => warn!(type_ = %type_, version, message, "proxy rejected config"),
        StreamEvent::Acked { type_, version, .. } => {
            debug!(type_ = %type_, version, "proxy acknowledged")
        }
        StreamEvent::UnknownType { type_url } => {
            debug!(type_url, "request for a type switchyard does not serve")
        }
        StreamEvent::RepeatedNack { type_ } => {
            debug!(type_ = %type_, "the same rejection again (counted, not logged)")
        }
        StreamEvent::Sent { .. } | StreamEvent::Stale { .. } => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xds::cache::snapshot_cache;
    use crate::xds::snapshot::Snapshot;
    use envoy_types::pb::envoy::config::core::v3::Node;
    use std::sync::Mutex;

    /// Remembers which streams were opened and closed.
    #[derive(Default)]
    struct Streams(Mutex<Vec<(StreamId, &'static str)>>);

    impl StreamObserver for Streams {
        fn stream_opened(&self, stream: StreamId, _: Protocol, _: &str) {
            self.0.lock().unwrap().push((stream, "opened"));
        }
        fn node_identified(&self, _: StreamId, _: &Arc<Node>) {}
        fn stream_stepped(&self, _: StreamId, _: StepReport<'_>) {}
        fn stream_closed(&self, stream: StreamId) {
            self.0.lock().unwrap().push((stream, "closed"));
        }
    }

    /// Lets every proxy in.
    struct Everyone;

    impl NodeAuthorizer for Everyone {
        fn authorize(
            &self,
            _: Option<&Node>,
            _: Option<&[CertificateDer<'static>]>,
        ) -> Result<(), String> {
            Ok(())
        }
    }

    fn service(observer: Arc<dyn StreamObserver>) -> AdsService {
        let (cache, _writer) = snapshot_cache(Snapshot::empty());
        let limits = StreamLimits::default();
        AdsService::new(cache, observer, Arc::new(Everyone), limits, "test".into())
    }

    fn sotw_request() -> http::Request<http_body_util::Empty<bytes::Bytes>> {
        http::Request::builder()
            .uri(SOTW_PATH)
            .header("content-type", "application/grpc")
            .body(http_body_util::Empty::<bytes::Bytes>::new())
            .unwrap()
    }

    #[tokio::test]
    async fn the_observer_hears_a_stream_open_and_close_once() {
        use http_body_util::BodyExt;
        let streams = Arc::new(Streams::default());
        let ads = service(streams.clone());
        let mut body = ads.serve::<SotwStream, _>(sotw_request()).into_body();
        // The proxy sent nothing and hung up: the body ends with an OK status.
        while body.frame().await.is_some() {}
        drop(body);
        assert_eq!(*streams.0.lock().unwrap(), [(1, "opened"), (1, "closed")]);
    }

    #[tokio::test]
    async fn a_compressed_request_is_refused_with_a_clear_status() {
        let request = http::Request::builder()
            .uri(SOTW_PATH)
            .header("content-type", "application/grpc")
            .header("grpc-encoding", "gzip")
            .body(http_body_util::Empty::<bytes::Bytes>::new())
            .unwrap();
        let streams = Arc::new(Streams::default());
        let ads = service(streams.clone());
        let response = ads.serve::<SotwStream, _>(request);
        let status = Status::from_header_map(response.headers()).expect("a gRPC status");
        assert_eq!(status.code(), tonic::Code::Unimplemented);
        assert!(
            status.message().contains("\"gzip\""),
            "{}",
            status.message()
        );
        assert!(streams.0.lock().unwrap().is_empty(), "no stream was opened");
    }
}
