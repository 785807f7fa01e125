//! The ADS gRPC service: each stream's response body drives a thin I/O loop around
//! [`SotwStream`] (no task of its own).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::SystemTime;

use tonic::Status;
use tonic::codegen::{Body, BoxFuture, Context, Poll, Service, StdError, http};
use tonic::transport::server::TcpConnectInfo;
use tracing::{Instrument, debug, info, info_span, warn};

use super::ResourceType;
use super::body::{AdsBody, ResponseStream};
use super::cache::SnapshotCache;
use super::encode::EncodedResponse;
use super::registry::{ProxyRegistry, StreamGuard};
use super::requests::Requests;
use super::snapshot::Snapshot;
use super::sotw::{SotwStream, Step, StreamEvent};
use crate::convergence::Convergence;
use crate::events::{Event, EventBus};
use crate::metrics::{ConnectedGuard, Metrics};

/// The Aggregated Discovery Service.
#[derive(Debug, Clone)]
pub struct AdsService {
    cache: SnapshotCache,
    registry: ProxyRegistry,
    metrics: Metrics,
    events: EventBus,
    convergence: Arc<Convergence>,
    control_plane: String,
}

impl AdsService {
    pub fn new(
        cache: SnapshotCache,
        registry: ProxyRegistry,
        metrics: Metrics,
        events: EventBus,
        convergence: Arc<Convergence>,
        control_plane: String,
    ) -> AdsService {
        AdsService {
            cache,
            registry,
            metrics,
            events,
            convergence,
            control_plane,
        }
    }
}

/// What a stream needs besides its protocol state.
struct StreamContext {
    guard: StreamGuard,
    metrics: Metrics,
    events: EventBus,
    convergence: Arc<Convergence>,
}

/// Path of the SotW ADS method.
const SOTW_PATH: &str =
    "/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources";
/// Path of the delta ADS method.
const DELTA_PATH: &str =
    "/envoy.service.discovery.v3.AggregatedDiscoveryService/DeltaAggregatedResources";
/// Largest request accepted from a proxy.
const MAX_REQUEST_BYTES: usize = 16 * 1024 * 1024;

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
                Box::pin(async move { Ok(ads.serve_sotw(req)) })
            }
            DELTA_PATH => Box::pin(async {
                Ok(Status::unimplemented(
                    "switchyard serves ADS state-of-the-world only so far; use api_type: GRPC",
                )
                .into_http())
            }),
            other => {
                let message = format!("unknown method {other}");
                Box::pin(async move { Ok(Status::unimplemented(message).into_http()) })
            }
        }
    }
}

impl AdsService {
    /// `StreamAggregatedResources`: the requests read by [`Requests`], the responses written
    /// by [`AdsBody`].
    fn serve_sotw<B>(&self, req: http::Request<B>) -> http::Response<tonic::body::Body>
    where
        B: Body + Send + 'static,
        B::Error: Into<StdError> + Send + 'static,
    {
        if let Some(encoding) = req.headers().get("grpc-encoding")
            && encoding != "identity"
        {
            return Status::unimplemented(format!(
                "request compression {encoding:?} is not supported: send uncompressed messages"
            ))
            .into_http();
        }
        let peer = req
            .extensions()
            .get::<TcpConnectInfo>()
            .and_then(|info| info.remote_addr());
        let requests = Requests::new(req.into_body(), MAX_REQUEST_BYTES);
        let body = AdsBody::new(self.open_stream(peer, requests));
        let mut response = http::Response::new(tonic::body::Body::new(body));
        response.headers_mut().insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/grpc"),
        );
        response
    }

    /// Opens one SotW stream: its response stream drives the protocol state machine
    /// directly (no task or channel of its own), so an idle stream costs only its state.
    fn open_stream(&self, peer: Option<SocketAddr>, inbound: Requests) -> ResponseStream {
        let peer = peer.map(|a| a.to_string()).unwrap_or_default();
        let guard = self.registry.connect("sotw", peer.clone());
        let span = info_span!(
            "ads",
            stream = guard.id(),
            node_id = tracing::field::Empty,
            peer
        );
        let task = SotwTask {
            inbound,
            snapshots: self.cache.subscribe(),
            stream: SotwStream::new(self.cache.current(), self.control_plane.clone()),
            _connected: self.metrics.proxy_connected("sotw"),
            cx: StreamContext {
                guard,
                metrics: self.metrics.clone(),
                events: self.events.clone(),
                convergence: self.convergence.clone(),
            },
            node_id: None,
            synced_version: String::new(),
            pending: Vec::new().into_iter(),
            span,
        };
        let responses = futures::stream::unfold(task, |mut task| async move {
            let span = task.span.clone();
            let item = task.next().instrument(span).await?;
            Some((item, task))
        });
        Box::pin(responses)
    }
}

/// One SotW stream: the state machine and the I/O around it.
struct SotwTask {
    inbound: Requests,
    snapshots: tokio::sync::watch::Receiver<Arc<Snapshot>>,
    stream: SotwStream,
    _connected: ConnectedGuard,
    cx: StreamContext,
    node_id: Option<String>,
    /// The last state version this proxy was fully synced at.
    synced_version: String,
    /// Responses of the last step not yet handed to the transport (the step's own list,
    /// dropped once sent, so an idle stream holds no buffer for it).
    pending: std::vec::IntoIter<EncodedResponse>,
    span: tracing::Span,
}

impl SotwTask {
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
            let step = tokio::select! {
                req = self.inbound.message() => match req {
                    Ok(Some(req)) => self.stream.on_request(req),
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
                changed = self.snapshots.changed() => {
                    if changed.is_err() {
                        return None; // the server is shutting down
                    }
                    let snapshot = self.snapshots.borrow_and_update().clone();
                    self.stream.on_snapshot(snapshot)
                }
            };
            self.after(step);
        }
    }

    /// Bookkeeping after one step: node, metrics, events, registry, convergence.
    fn after(&mut self, step: Step) {
        let cx = &self.cx;
        if self.node_id.is_none()
            && let Some(node) = self.stream.node()
        {
            self.node_id = Some(node.id.clone());
            self.span.record("node_id", node.id.as_str());
            cx.guard.set_node(node);
            info!(cluster = %node.cluster, "proxy connected");
        }
        let node = self.node_id.as_deref().unwrap_or_default();
        let state_version = self.stream.state_version();
        for event in &step.events {
            cx.metrics.record_stream_event(event);
            report(cx, node, state_version, event);
        }
        let synced = ResourceType::ALL.map(|t| self.stream.is_synced(t));
        let all_synced =
            synced.iter().all(|s| *s != Some(false)) && synced.iter().any(|s| s.is_some());
        let became_synced = all_synced && state_version != self.synced_version;
        if became_synced {
            self.synced_version = state_version.to_owned();
            cx.events.emit(Event::ProxySynced {
                at: SystemTime::now(),
                node_id: node.to_owned(),
                stream_id: cx.guard.id(),
                state_version: self.synced_version.clone(),
            });
        }
        cx.guard.record(&step.events, &self.stream, synced);
        // Convergence can only complete when a proxy catches up (or leaves).
        if became_synced {
            cx.convergence.proxy_synced(&self.synced_version);
        }
        debug_assert_eq!(
            self.pending.len(),
            0,
            "a step is taken once the last one is sent"
        );
        self.pending = step.responses.into_iter();
    }
}

impl Drop for SotwTask {
    fn drop(&mut self) {
        let _entered = self.span.enter();
        info!("proxy disconnected");
        // The registry entry goes with `cx.guard`; let convergence look again without it.
        self.cx.convergence.proxy_left();
    }
}

/// Logs one stream event and announces acknowledgements and rejections.
fn report(cx: &StreamContext, node: &str, state_version: &str, event: &StreamEvent) {
    match event {
        StreamEvent::Rejected {
            type_,
            version,
            message,
        } => {
            warn!(type_ = %type_, version, message, "proxy rejected config");
            cx.events.emit(Event::ProxyRejected {
                at: SystemTime::now(),
                node_id: node.to_owned(),
                stream_id: cx.guard.id(),
                r#type: type_.short_name(),
                version: version.clone(),
                message: message.clone(),
            });
        }
        StreamEvent::Acked { type_, version } => {
            debug!(type_ = %type_, version, "proxy acknowledged");
            if !cx.events.has_subscribers() {
                return; // per-type ACKs are only for live watchers, not the audit log
            }
            cx.events.emit(Event::ProxyAcked {
                at: SystemTime::now(),
                node_id: node.to_owned(),
                stream_id: cx.guard.id(),
                r#type: type_.short_name(),
                version: version.clone(),
                state_version: state_version.to_owned(),
            });
        }
        StreamEvent::UnknownType { type_url } => {
            debug!(type_url, "request for a type switchyard does not serve")
        }
        StreamEvent::Sent { .. } | StreamEvent::Stale { .. } => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xds::cache::snapshot_cache;

    fn service() -> AdsService {
        let (cache, _writer) = snapshot_cache(Snapshot::empty());
        let registry = ProxyRegistry::default();
        let metrics = Metrics::new();
        let events = EventBus::new(None);
        let convergence = Convergence::new(registry.clone(), metrics.clone(), events.clone());
        AdsService::new(cache, registry, metrics, events, convergence, "test".into())
    }

    #[tokio::test]
    async fn a_compressed_request_is_refused_with_a_clear_status() {
        let request = http::Request::builder()
            .uri(SOTW_PATH)
            .header("content-type", "application/grpc")
            .header("grpc-encoding", "gzip")
            .body(http_body_util::Empty::<bytes::Bytes>::new())
            .unwrap();
        let ads = service();
        let response = ads.serve_sotw(request);
        let status = Status::from_header_map(response.headers()).expect("a gRPC status");
        assert_eq!(status.code(), tonic::Code::Unimplemented);
        assert!(
            status.message().contains("\"gzip\""),
            "{}",
            status.message()
        );
        assert!(ads.registry.is_empty(), "no stream was opened");
    }
}
