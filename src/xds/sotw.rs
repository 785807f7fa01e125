//! The state-of-the-world ADS protocol for one stream, free of I/O.
//!
//! [`SotwStream`] takes a request (or a new snapshot) and returns the responses to send and
//! what happened (sent, acknowledged, rejected). The server's stream loop only moves
//! messages; everything the protocol decides is here and unit-tested without a network.
//!
//! Rules it keeps:
//! - every response carries a nonce unique on the stream;
//! - a request whose `response_nonce` is not the latest sent for its type is stale and
//!   ignored, except the first request of a type on this stream, which is always answered
//!   (it may carry another replica's version and nonce after a reconnect);
//! - a request with `error_detail` is a NACK: the rejected version is recorded and not sent
//!   again; the next different version is sent normally;
//! - a request is an ACK only when it carries the latest nonce and that response's version:
//!   after a NACK, Envoy's requests carry the rejected response's nonce and the version it
//!   still runs, and are not ACKs;
//! - subscriptions follow the xDS protocol's wildcard rules: `*` asks for every resource of
//!   a type; for clusters and listeners an empty list asks for every one too (the legacy
//!   wildcard), but only until the stream first sends a list that is not empty: after that
//!   an empty list unsubscribes from everything;
//! - make-before-break: a route configuration is held until the proxy has acknowledged
//!   every cluster it names and their endpoints; a cluster that a route the proxy holds
//!   (or is being sent) still names is kept in the cluster set until routes that no longer
//!   name it are acknowledged.
//!
//! What is due, make-before-break and where the proxy stands on each type
//! ([`SotwStream::status`]) do not depend on framing: they live in [`super::ledger`],
//! which an incremental (delta) stream can share. This module reads requests and frames
//! each due set as a whole-set response.

use std::sync::Arc;

use envoy_types::pb::envoy::service::discovery::v3::DiscoveryRequest;

use super::ResourceType;
use super::cache::Published;
use super::encode::EncodedResponse;
use super::names::Names;
use super::observer::StreamEvent;
use super::stream::StreamCore;

/// What one input produced: responses to send, in order, and events to record.
#[derive(Debug, Default)]
pub struct Step {
    pub responses: Vec<EncodedResponse>,
    pub events: Vec<StreamEvent>,
}

impl Step {
    /// This step, then `next`: both steps' responses and events, in that order.
    pub fn then(mut self, next: Step) -> Step {
        if self.responses.is_empty() && self.events.is_empty() {
            return next;
        }
        self.responses.extend(next.responses);
        self.events.extend(next.events);
        self
    }
}

/// The state of one SotW ADS stream: its [`StreamCore`] (which it dereferences to) and
/// nothing else, its framing being whole sets.
#[derive(Debug)]
pub struct SotwStream {
    core: StreamCore,
}

impl std::ops::Deref for SotwStream {
    type Target = StreamCore;
    fn deref(&self) -> &StreamCore {
        &self.core
    }
}

impl SotwStream {
    /// A new stream serving `published`; `control_plane` identifies this server in
    /// responses.
    pub fn new(published: Arc<Published>, control_plane: impl Into<String>) -> SotwStream {
        SotwStream {
            core: StreamCore::new(published, control_plane.into()),
        }
    }

    /// Handles one request from the proxy.
    pub fn on_request(&mut self, mut req: DiscoveryRequest) -> Step {
        let mut step = Step::default();
        self.core.keep_node(req.node.take());
        let Some(t) = ResourceType::from_type_url(&req.type_url) else {
            step.events.push(StreamEvent::UnknownType {
                type_url: req.type_url,
            });
            return step;
        };
        let sent = self.core.ledger.types[t.index()].sent.as_ref();
        if let Some((latest, takes)) =
            sent.map(|s| (s.nonce == req.response_nonce, s.version == req.version_info))
        {
            if !latest {
                // Answers an older response (or none): the proxy will answer the latest.
                step.events.push(StreamEvent::Stale {
                    type_: t,
                    nonce: req.response_nonce,
                });
                return step;
            }
            if let Some(event) = self.core.ledger.answer(t, req.error_detail.as_ref(), takes) {
                step.events.push(event);
            }
            // Otherwise it answers the latest response without taking it: a request after
            // a NACK (Envoy keeps the nonce and sends the version it still runs), or after
            // an ACK already counted; it only restates the subscription.
        }
        // First request of this type on the stream (whatever version or nonce it carries),
        // an ACK, or a NACK: it states the current subscription.
        let state = &mut self.core.ledger.types[t.index()];
        let legacy_wildcard = t.is_wildcard_type() && !state.listed;
        if !state.subscribed || !state.names.listed_by(&req.resource_names, legacy_wildcard) {
            let current = &self.core.ledger.published.snapshot().get(t).names;
            let names = Names::of_request(&req.resource_names, legacy_wildcard, current);
            if !state.subscribed || !names.same(&state.names) {
                state.names = names;
                state.names_gen += 1;
            }
        }
        state.listed |= !req.resource_names.is_empty();
        state.subscribed = true;
        self.push_due(&mut step);
        step
    }

    /// Moves the stream to a new snapshot.
    pub fn on_snapshot(&mut self, published: Arc<Published>) -> Step {
        self.core.ledger.published = published;
        let mut step = Step::default();
        self.push_due(&mut step);
        step
    }

    /// Sends, in push order, every type whose wanted content differs from what was last
    /// sent, unless make-before-break holds it back.
    fn push_due(&mut self, step: &mut Step) {
        for due in self.core.ledger.due() {
            step.events.push(StreamEvent::Sent {
                type_: due.type_,
                version: due.version.clone(),
                resources: due.resources.clone(),
                carried: due.resources.len(),
                removed: 0,
            });
            let shared = self.core.ledger.published.response(
                due.type_,
                &due.version,
                &due.resources,
                &self.core.control_plane,
            );
            step.responses.push(EncodedResponse::new(
                due.type_,
                due.version,
                due.nonce,
                due.resources.len(),
                shared,
            ));
        }
    }
}

pub use super::ledger::MAX_NACK_MESSAGE;

#[cfg(test)]
pub(super) mod tests;
