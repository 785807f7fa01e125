//! The ADS gRPC service: one task per stream, a thin I/O loop around [`SotwStream`].

use std::pin::Pin;
use std::sync::Arc;
use std::time::SystemTime;

use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_server::AggregatedDiscoveryService;
use envoy_types::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, DiscoveryRequest, DiscoveryResponse,
};
use futures::Stream;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};
use tracing::{Instrument, debug, info, info_span, warn};

use super::cache::SnapshotCache;
use super::registry::{ProxyRegistry, StreamGuard};
use super::sotw::{SotwStream, StreamEvent};
use crate::convergence::Convergence;
use crate::events::{Event, EventBus};
use crate::metrics::Metrics;

/// Responses queued per stream before the stream task waits for the proxy to read. Small:
/// a SotW stream has at most one response per type in flight that matters.
const STREAM_BUFFER: usize = 8;

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

/// What a stream task needs besides its own channels.
struct StreamContext {
    cache: SnapshotCache,
    guard: StreamGuard,
    metrics: Metrics,
    events: EventBus,
    convergence: Arc<Convergence>,
    control_plane: String,
}

type ResponseStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

#[tonic::async_trait]
impl AggregatedDiscoveryService for AdsService {
    type StreamAggregatedResourcesStream = ResponseStream<DiscoveryResponse>;
    type DeltaAggregatedResourcesStream = ResponseStream<DeltaDiscoveryResponse>;

    async fn stream_aggregated_resources(
        &self,
        request: Request<Streaming<DiscoveryRequest>>,
    ) -> Result<Response<Self::StreamAggregatedResourcesStream>, Status> {
        let peer = request
            .remote_addr()
            .map(|a| a.to_string())
            .unwrap_or_default();
        let inbound = request.into_inner();
        let (tx, rx) = mpsc::channel(STREAM_BUFFER);
        let guard = self.registry.connect("sotw", peer.clone());
        let span = info_span!(
            "ads",
            stream = guard.id(),
            node_id = tracing::field::Empty,
            peer
        );
        tokio::spawn(
            run_sotw(
                inbound,
                tx,
                StreamContext {
                    cache: self.cache.clone(),
                    guard,
                    metrics: self.metrics.clone(),
                    events: self.events.clone(),
                    convergence: self.convergence.clone(),
                    control_plane: self.control_plane.clone(),
                },
            )
            .instrument(span),
        );
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn delta_aggregated_resources(
        &self,
        _request: Request<Streaming<DeltaDiscoveryRequest>>,
    ) -> Result<Response<Self::DeltaAggregatedResourcesStream>, Status> {
        Err(Status::unimplemented(
            "switchyard serves ADS state-of-the-world only so far; use api_type: GRPC",
        ))
    }
}

/// Runs one SotW stream until the proxy hangs up or the server shuts down.
async fn run_sotw(
    mut inbound: Streaming<DiscoveryRequest>,
    tx: mpsc::Sender<Result<DiscoveryResponse, Status>>,
    cx: StreamContext,
) {
    let mut snapshots = cx.cache.subscribe();
    let mut stream = SotwStream::new(cx.cache.current(), cx.control_plane.clone());
    let _connected = cx.metrics.proxy_connected("sotw");
    let mut node_id: Option<String> = None;
    let mut synced_version = String::new();
    loop {
        let step = tokio::select! {
            req = inbound.message() => match req {
                Ok(Some(req)) => stream.on_request(req),
                Ok(None) => {
                    debug!("proxy closed the stream");
                    break;
                }
                Err(status) => {
                    debug!(code = ?status.code(), message = status.message(), "stream ended");
                    break;
                }
            },
            changed = snapshots.changed() => {
                if changed.is_err() {
                    break; // the server is shutting down
                }
                let snapshot = snapshots.borrow_and_update().clone();
                stream.on_snapshot(snapshot)
            }
            _ = tx.closed() => break,
        };
        if node_id.is_none()
            && let Some(node) = stream.node()
        {
            node_id = Some(node.id.clone());
            tracing::Span::current().record("node_id", node.id.as_str());
            cx.guard.set_node(node);
            info!(cluster = %node.cluster, "proxy connected");
        }
        let node = node_id.as_deref().unwrap_or_default();
        let view = stream.view();
        for event in &step.events {
            cx.metrics.record_stream_event(event);
            report(&cx, node, &view.state_version, event);
        }
        let all_synced = view.types.iter().all(|t| t.synced != Some(false))
            && view.types.iter().any(|t| t.synced.is_some());
        if all_synced && view.state_version != synced_version {
            synced_version.clone_from(&view.state_version);
            cx.events.emit(Event::ProxySynced {
                at: SystemTime::now(),
                node_id: node.to_owned(),
                stream_id: cx.guard.id(),
                state_version: synced_version.clone(),
            });
        }
        cx.guard.record(&step.events, view);
        cx.convergence.poke();
        for response in step.responses {
            if tx.send(Ok(response)).await.is_err() {
                break;
            }
        }
    }
    drop(cx.guard);
    cx.convergence.poke();
    info!("proxy disconnected");
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
