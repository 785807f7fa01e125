//! The application's [`StreamObserver`]: what happens on every ADS stream updates the proxy
//! registry and the metrics, becomes events, and moves convergence along.
//!
//! The protocol layer (`xds`) calls it; it calls everything else. Keeping that fan-out
//! here is what lets `xds` know nothing of metrics, events, convergence or the audit log.

use std::sync::Arc;
use std::time::SystemTime;

use envoy_types::pb::envoy::config::core::v3::Node;

use crate::convergence::Convergence;
use crate::events::{Event, EventBus};
use crate::metrics::Metrics;
use crate::proxies::ProxyRegistry;
use crate::xds::observer::{Protocol, StepReport, StreamEvent, StreamId, StreamObserver};

/// Keeps track of every proxy. One per server, shared by every stream.
#[derive(Debug)]
pub struct ProxyTracker {
    pub registry: ProxyRegistry,
    pub metrics: Metrics,
    pub events: EventBus,
    pub convergence: Arc<Convergence>,
}

impl StreamObserver for ProxyTracker {
    fn stream_opened(&self, stream: StreamId, protocol: Protocol, peer: &str) {
        self.registry.open(stream, protocol, peer);
        self.metrics.stream_opened(protocol);
    }

    fn node_identified(&self, stream: StreamId, node: &Arc<Node>) {
        self.registry.identify(stream, node);
    }

    fn stream_stepped(&self, stream: StreamId, step: StepReport<'_>) {
        for event in step.events {
            self.metrics.record_stream_event(event);
        }
        let newly_synced = self.registry.record(stream, &step);
        let announces = |e: &StreamEvent| match e {
            StreamEvent::Rejected { .. } => true,
            StreamEvent::Acked { .. } => self.events.has_subscribers(),
            _ => false,
        };
        if newly_synced || step.events.iter().any(announces) {
            let node_id = self.registry.node_id(stream);
            for event in step.events.iter().filter(|e| announces(e)) {
                self.events
                    .emit(proxy_event(&node_id, stream, step.state_version, event));
            }
            if newly_synced {
                self.events.emit(Event::ProxySynced {
                    at: SystemTime::now(),
                    node_id,
                    stream_id: stream,
                    state_version: step.state_version.to_owned(),
                });
            }
        }
        // Convergence can only complete when a proxy catches up (or leaves).
        if newly_synced {
            self.convergence.proxy_synced(step.state_version);
        }
    }

    fn stream_closed(&self, stream: StreamId) {
        if let Some(protocol) = self.registry.close(stream) {
            self.metrics.stream_closed(protocol);
        }
        // Without it, the proxies left may all be synced now.
        self.convergence.proxy_left();
    }
}

/// An acknowledgement or rejection as an event.
fn proxy_event(node_id: &str, stream: StreamId, state_version: &str, e: &StreamEvent) -> Event {
    let at = SystemTime::now();
    match e {
        StreamEvent::Rejected {
            type_,
            version,
            message,
        } => Event::ProxyRejected {
            at,
            node_id: node_id.to_owned(),
            stream_id: stream,
            r#type: type_.short_name(),
            version: version.clone(),
            message: message.clone(),
        },
        StreamEvent::Acked { type_, version, .. } => Event::ProxyAcked {
            at,
            node_id: node_id.to_owned(),
            stream_id: stream,
            r#type: type_.short_name(),
            version: version.clone(),
            state_version: state_version.to_owned(),
        },
        other => unreachable!("bug: {other:?} is not announced"),
    }
}
