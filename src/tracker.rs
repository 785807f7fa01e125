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
        // Per-type ACKs are only for live readers; whether there are any is asked once
        // per step (it takes the bus's lock), and only when the step has an ACK.
        let acks_wanted = step
            .events
            .iter()
            .any(|e| matches!(e, StreamEvent::Acked { .. }))
            && self.events.has_subscribers();
        let announces = |e: &StreamEvent| match e {
            StreamEvent::Rejected { .. } => true,
            StreamEvent::Acked { .. } => acks_wanted,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xds::ResourceType;
    use crate::xds::sync::SyncStatus;

    fn tracker() -> ProxyTracker {
        let registry = ProxyRegistry::default();
        let metrics = Metrics::new();
        let events = EventBus::default();
        ProxyTracker {
            convergence: Convergence::new(registry.clone(), metrics.clone(), events.clone()),
            registry,
            metrics,
            events,
        }
    }

    fn step<'a>(events: &'a [StreamEvent], status: SyncStatus) -> StepReport<'a> {
        StepReport {
            events,
            state_version: "v1",
            status: [status; 5],
            wildcard: [true; 5],
        }
    }

    fn acked() -> StreamEvent {
        StreamEvent::Acked {
            type_: ResourceType::Route,
            version: "r1".into(),
            resources: Default::default(),
        }
    }

    fn identified(t: &ProxyTracker) {
        t.stream_opened(7, Protocol::Sotw, "127.0.0.1:5000");
        let node = Node {
            id: "envoy-1".into(),
            ..Default::default()
        };
        t.node_identified(7, &Arc::new(node));
    }

    #[test]
    fn a_proxy_synced_at_a_state_is_announced_once() {
        let t = tracker();
        identified(&t);
        let mut rx = t.events.subscribe();
        t.stream_stepped(7, step(&[acked()], SyncStatus::Synced));
        let e = rx.try_recv().unwrap();
        assert!(
            matches!(&*e, Event::ProxyAcked { node_id, .. } if node_id == "envoy-1"),
            "{e:?}"
        );
        let e = rx.try_recv().unwrap();
        assert!(
            matches!(&*e, Event::ProxySynced { node_id, stream_id: 7, state_version, .. }
                if node_id == "envoy-1" && state_version == "v1"),
            "{e:?}"
        );
        // Synced still, at the same state: nothing more to say.
        t.stream_stepped(7, step(&[], SyncStatus::Synced));
        assert!(rx.try_recv().is_err());
    }

    #[test]
    fn a_rejection_is_announced_and_acks_only_to_live_readers() {
        let t = tracker();
        identified(&t);
        // No reader: an ACK makes no event at all (a sink never keeps them).
        t.stream_stepped(7, step(&[acked()], SyncStatus::Stale));
        let mut rx = t.events.subscribe();
        let rejected = StreamEvent::Rejected {
            type_: ResourceType::Listener,
            version: "l2".into(),
            message: "cannot bind".into(),
        };
        t.stream_stepped(7, step(&[rejected], SyncStatus::Rejected));
        let e = rx.try_recv().unwrap();
        assert!(
            matches!(&*e, Event::ProxyRejected { r#type: "listeners", message, .. }
                if message == "cannot bind"),
            "{e:?}"
        );
        assert!(rx.try_recv().is_err(), "a rejected proxy is not synced");
        let proxies = t.registry.proxies();
        assert_eq!(
            proxies[0].listeners.rejected.as_ref().unwrap().version,
            "l2"
        );
        assert!(
            t.metrics
                .encode()
                .contains(r#"switchyard_xds_nacks_total{type="listeners"} 1"#)
        );
    }

    #[test]
    fn a_closed_stream_leaves_the_registry_and_the_connected_gauge() {
        let t = tracker();
        identified(&t);
        let gauge = r#"switchyard_connected_proxies{protocol="sotw"}"#;
        assert!(t.metrics.encode().contains(&format!("{gauge} 1")));
        t.stream_closed(7);
        assert!(t.registry.is_empty());
        assert!(t.metrics.encode().contains(&format!("{gauge} 0")));
    }
}
