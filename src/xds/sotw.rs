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
//! After every step it says where the proxy stands on each type ([`SotwStream::status`]):
//! the one place that status is worked out.

use std::sync::Arc;

use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::envoy::service::discovery::v3::DiscoveryRequest;

use super::ResourceType;
use super::cache::Published;
use super::encode::EncodedResponse;
use super::observer::StreamEvent;
use super::snapshot::{Resource, ResourceSet, Snapshot};
use super::sync::SyncStatus;
use crate::hash::short_hash;
use names::Names;

mod names;

/// One response sent on this stream for a type.
#[derive(Debug, Clone)]
struct Sent {
    version: String,
    nonce: String,
    resources: Arc<ResourceSet>,
    /// [`TypeState::names_gen`] when it was sent.
    names_gen: u64,
    /// The nonce as a number (identifies this response on the stream).
    seq: u64,
}

/// What a [`ReadyMemo`] depends on: for clusters, then endpoints, the response acknowledged
/// and the one sent (by sequence number), and whether a reply is awaited.
type ReadyKey = [(u64, u64, bool); 2];

/// The routes last found ready, and the state they were found in: a switch (new weights,
/// same clusters) then compares the routes' cluster lists instead of looking up every
/// cluster. The routes are shared with the snapshot that had them, not copied.
#[derive(Debug)]
struct ReadyMemo {
    key: ReadyKey,
    routes: Vec<Arc<Resource>>,
}

/// The protocol state of one resource type on one stream.
#[derive(Debug, Default)]
struct TypeState {
    /// The proxy has asked for this type.
    subscribed: bool,
    /// The stream has sent a list that is not empty for this type (names, or `*`): from
    /// then on an empty list means "none", not the legacy wildcard.
    listed: bool,
    /// Names asked for.
    names: Names,
    /// Changes whenever `names` does, so "asked for the same names as when last sent" is
    /// one comparison, not one per name.
    names_gen: u64,
    /// The latest response sent.
    sent: Option<Arc<Sent>>,
    /// The latest response the proxy acknowledged (shared with `sent` once acknowledged).
    acked: Option<Arc<Sent>>,
    /// The latest response the proxy rejected, with Envoy's message.
    rejected: Option<(Arc<Sent>, String)>,
    /// The latest response has had no ACK or NACK yet. Nothing more of this type is sent
    /// until it has: SotW's own flow control, which also coalesces a burst of saves into
    /// the newest version.
    awaiting_reply: bool,
}

/// What one input produced: responses to send, in order, and events to record.
#[derive(Debug, Default)]
pub struct Step {
    pub responses: Vec<EncodedResponse>,
    pub events: Vec<StreamEvent>,
}

/// The state of one SotW ADS stream.
#[derive(Debug)]
pub struct SotwStream {
    /// Shared with the observer.
    node: Option<Arc<Node>>,
    published: Arc<Published>,
    types: [TypeState; 4],
    next_nonce: u64,
    control_plane: String,
    ready_memo: Option<ReadyMemo>,
}

impl SotwStream {
    /// A new stream serving `published`; `control_plane` identifies this server in
    /// responses.
    pub fn new(published: Arc<Published>, control_plane: impl Into<String>) -> SotwStream {
        SotwStream {
            node: None,
            published,
            types: Default::default(),
            next_nonce: 1,
            control_plane: control_plane.into(),
            ready_memo: None,
        }
    }

    /// The proxy's node, from the first request that carried one.
    pub fn node(&self) -> Option<&Arc<Node>> {
        self.node.as_ref()
    }

    /// The state version of the snapshot the stream serves.
    pub fn state_version(&self) -> &str {
        &self.snapshot().state_version
    }

    fn snapshot(&self) -> &Snapshot {
        self.published.snapshot()
    }

    /// Where the proxy stands on `t`.
    pub fn status(&self, t: ResourceType) -> SyncStatus {
        let state = &self.types[t.index()];
        let asks_for_none = state.names.list().is_some_and(|names| names.is_empty());
        if !state.subscribed || asks_for_none {
            return SyncStatus::NotSubscribed;
        }
        let Some(sent) = &state.sent else {
            return SyncStatus::Stale; // subscribed, nothing sent yet
        };
        if let Some((rejected, _)) = &state.rejected
            && Arc::ptr_eq(rejected, sent)
        {
            return SyncStatus::Rejected;
        }
        let acked_latest = state.acked.as_ref().is_some_and(|a| Arc::ptr_eq(a, sent));
        if !acked_latest {
            return SyncStatus::Stale;
        }
        if self.sent_is_current(t) {
            return SyncStatus::Synced;
        }
        let (version, resources) = self.wanted(t);
        if is_new(Some(sent), &version, &resources) {
            SyncStatus::Stale
        } else {
            SyncStatus::Synced
        }
    }

    /// [`Self::status`] of every type, by [`ResourceType::index`].
    pub fn statuses(&self) -> [SyncStatus; 4] {
        ResourceType::ALL.map(|t| self.status(t))
    }

    /// Does the proxy subscribe to every resource of `t` (a wildcard subscription)?
    pub fn wildcard(&self, t: ResourceType) -> bool {
        let state = &self.types[t.index()];
        state.subscribed && state.names.list().is_none()
    }

    /// Handles one request from the proxy.
    pub fn on_request(&mut self, mut req: DiscoveryRequest) -> Step {
        let mut step = Step::default();
        if self.node.is_none()
            && let Some(mut node) = req.node.take()
        {
            // Envoy lists every extension it was built with (kilobytes); keep the identity.
            node.extensions = Vec::new();
            node.client_features = Vec::new();
            self.node = Some(Arc::new(node));
        }
        let Some(t) = ResourceType::from_type_url(&req.type_url) else {
            step.events.push(StreamEvent::UnknownType {
                type_url: req.type_url,
            });
            return step;
        };
        let state = &mut self.types[t.index()];
        if let Some(sent) = &state.sent {
            if req.response_nonce != sent.nonce {
                // Answers an older response (or none): the proxy will answer the latest.
                step.events.push(StreamEvent::Stale {
                    type_: t,
                    nonce: req.response_nonce,
                });
                return step;
            }
            state.awaiting_reply = false;
            let repeated = |err: &envoy_types::pb::google::rpc::Status| {
                let rejected = state.rejected.as_ref();
                rejected.is_some_and(|(r, m)| Arc::ptr_eq(r, sent) && *m == kept_message(err))
            };
            if let Some(err) = &req.error_detail
                && repeated(err)
            {
                step.events.push(StreamEvent::RepeatedNack { type_: t });
            } else if let Some(err) = &req.error_detail {
                let message = kept_message(err);
                state.rejected = Some((sent.clone(), message.clone()));
                step.events.push(StreamEvent::Rejected {
                    type_: t,
                    version: sent.version.clone(),
                    message,
                });
            } else if req.version_info == sent.version
                && !state.acked.as_ref().is_some_and(|a| Arc::ptr_eq(a, sent))
            {
                state.acked = Some(sent.clone());
                step.events.push(StreamEvent::Acked {
                    type_: t,
                    version: sent.version.clone(),
                    resources: sent.resources.clone(),
                });
            }
            // Otherwise it answers the latest response without taking it: a request after
            // a NACK (Envoy keeps the nonce and sends the version it still runs), or after
            // an ACK already counted; it only restates the subscription.
        }
        // First request of this type on the stream (whatever version or nonce it carries),
        // an ACK, or a NACK: it states the current subscription.
        let legacy_wildcard = t.is_wildcard_type() && !state.listed;
        if !state.subscribed || !state.names.listed_by(&req.resource_names, legacy_wildcard) {
            let current = &self.published.snapshot().get(t).names;
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
        self.published = published;
        let mut step = Step::default();
        self.push_due(&mut step);
        step
    }

    /// Sends, in push order, every type whose wanted content differs from what was last
    /// sent, unless make-before-break holds it back.
    fn push_due(&mut self, step: &mut Step) {
        for t in ResourceType::ALL {
            let state = &self.types[t.index()];
            if !state.subscribed || state.awaiting_reply || self.sent_is_current(t) {
                continue;
            }
            let (version, resources) = self.wanted(t);
            if !is_new(state.sent.as_deref(), &version, &resources) {
                continue;
            }
            if t == ResourceType::Route && !self.clusters_ready(&resources) {
                continue;
            }
            step.events.push(StreamEvent::Sent {
                type_: t,
                version: version.clone(),
                resources: resources.clone(),
            });
            step.responses.push(self.respond(t, version, resources));
        }
    }

    /// Cheap check, without building any set: was the latest response for `t` this very
    /// snapshot's version of it, for the names the proxy asks for now? (When it says no,
    /// [`Self::wanted`] decides.) Keeps a switch, which changes only routes, from costing
    /// every stream a walk over every cluster.
    fn sent_is_current(&self, t: ResourceType) -> bool {
        let state = &self.types[t.index()];
        let Some(sent) = &state.sent else {
            return false;
        };
        if sent.version != self.snapshot().version(t) {
            return false;
        }
        sent.names_gen == state.names_gen
    }

    /// What the proxy should hold for `t` now: the version and the resources.
    fn wanted(&self, t: ResourceType) -> (String, Arc<ResourceSet>) {
        let snap = self.snapshot().get(t);
        let state = &self.types[t.index()];
        let subscribed = match state.names.list() {
            None => snap.resources.clone(),
            // Every name the snapshot has and no other: its own set, shared.
            Some(names) if Arc::ptr_eq(names, &snap.names) || **names == *snap.names => {
                snap.resources.clone()
            }
            Some(names) => Arc::new(
                names
                    .iter()
                    .filter_map(|n| {
                        let r = snap.resources.get(n).cloned();
                        // Endpoints and routes still named keep what was sent (Envoy
                        // names the endpoints of a cluster until it drops the cluster).
                        let r = match t {
                            ResourceType::Cluster => r,
                            _ => r.or_else(|| self.previously_sent(t, n)),
                        };
                        r.map(|r| (n.clone(), r))
                    })
                    .collect(),
            ),
        };
        if t != ResourceType::Cluster {
            return (snap.version.clone(), subscribed);
        }
        // Keep clusters that routes the proxy holds or is being sent still name.
        let mut kept: Vec<(&String, Arc<Resource>)> = Vec::new();
        let routes = &self.types[ResourceType::Route.index()];
        let sent = match (&routes.acked, &routes.sent) {
            (Some(a), Some(s)) if Arc::ptr_eq(a, s) => &None, // acknowledged: one look
            (_, sent) => sent,
        };
        for r in [&routes.acked, sent].into_iter().flatten() {
            for route in r.resources.values() {
                for c in &route.clusters {
                    if subscribed.contains_key(c)
                        || kept.iter().any(|(k, _)| *k == c)
                        || state.names.list().is_some_and(|names| !names.contains(c))
                    {
                        continue;
                    }
                    if let Some(res) = self.previously_sent(ResourceType::Cluster, c) {
                        kept.push((c, res));
                    }
                }
            }
        }
        if kept.is_empty() {
            // The usual case: the subscribed set as it is, not copied.
            (snap.version.clone(), subscribed)
        } else {
            let names: Vec<&String> = kept.iter().map(|(n, _)| *n).collect();
            let version = format!("{}+{}", snap.version, short_hash(&names));
            let mut set: ResourceSet = (*subscribed).clone();
            set.extend(kept.into_iter().map(|(n, r)| (n.clone(), r)));
            (version, Arc::new(set))
        }
    }

    fn previously_sent(&self, t: ResourceType, name: &str) -> Option<Arc<Resource>> {
        let state = &self.types[t.index()];
        [&state.sent, &state.acked]
            .into_iter()
            .flatten()
            .find_map(|s| s.resources.get(name).cloned())
    }

    /// Has the proxy acknowledged every cluster named by `routes`, and their endpoints,
    /// and will it still have them once it applies any response still in flight (a cluster
    /// set that drops one of them may be on its way)?
    fn clusters_ready(&mut self, routes: &ResourceSet) -> bool {
        let key = [ResourceType::Cluster, ResourceType::Endpoint].map(|t| {
            let state = &self.types[t.index()];
            let seq = |s: &Option<Arc<Sent>>| s.as_ref().map_or(0, |s| s.seq);
            (seq(&state.acked), seq(&state.sent), state.awaiting_reply)
        });
        if let Some(memo) = &self.ready_memo
            && memo.key == key
            && memo.routes.len() == routes.len()
            && memo
                .routes
                .iter()
                .zip(routes.values())
                .all(|(a, b)| Arc::ptr_eq(a, b) || a.clusters == b.clusters)
        {
            return true;
        }
        let ready = self.clusters_held(routes);
        if ready {
            self.ready_memo = Some(ReadyMemo {
                key,
                routes: routes.values().cloned().collect(),
            });
        }
        ready
    }

    /// The full check behind [`Self::clusters_ready`]: every cluster looked up.
    fn clusters_held(&self, routes: &ResourceSet) -> bool {
        let holds = |t: ResourceType, name: &str| {
            let state = &self.types[t.index()];
            let acked = state
                .acked
                .as_ref()
                .is_some_and(|s| s.resources.contains_key(name));
            let pending_keeps = !state.awaiting_reply
                || state
                    .sent
                    .as_ref()
                    .is_some_and(|s| s.resources.contains_key(name));
            acked && pending_keeps
        };
        routes
            .values()
            .flat_map(|r| r.clusters.iter())
            .all(|c| holds(ResourceType::Cluster, c) && holds(ResourceType::Endpoint, c))
    }

    fn respond(
        &mut self,
        t: ResourceType,
        version: String,
        resources: Arc<ResourceSet>,
    ) -> EncodedResponse {
        let seq = self.next_nonce;
        let nonce = seq.to_string();
        self.next_nonce += 1;
        let shared = self
            .published
            .response(t, &version, &resources, &self.control_plane);
        let response =
            EncodedResponse::new(t, version.clone(), nonce.clone(), resources.len(), shared);
        let state = &mut self.types[t.index()];
        state.awaiting_reply = true;
        state.sent = Some(Arc::new(Sent {
            version,
            nonce,
            resources,
            names_gen: state.names_gen,
            seq,
        }));
        response
    }
}

/// Longest NACK message kept, logged, shown and audited, in bytes. Envoy's own messages
/// are a few hundred bytes; a longer one is cut (and says so), so a proxy cannot make the
/// audit log, `/status` or the logs grow by megabytes per NACK.
pub const MAX_NACK_MESSAGE: usize = 4096;

/// A NACK's message as switchyard keeps it: at most [`MAX_NACK_MESSAGE`] bytes, cut at a
/// character boundary, with how much was cut.
fn kept_message(err: &envoy_types::pb::google::rpc::Status) -> String {
    let m = &err.message;
    if m.len() <= MAX_NACK_MESSAGE {
        return m.clone();
    }
    let mut end = MAX_NACK_MESSAGE;
    while !m.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}... ({} more bytes cut)", &m[..end], m.len() - end)
}

/// Does sending `version` with `resources` tell a proxy that was last sent `sent`
/// anything new? Not when it is the same version for the same names, nor when only the
/// version string differs for the very same resources.
fn is_new(sent: Option<&Sent>, version: &str, resources: &Arc<ResourceSet>) -> bool {
    match sent {
        None => true,
        Some(sent) => {
            let unchanged = sent.version == version && sent.resources.keys().eq(resources.keys());
            !unchanged && !same_content(&sent.resources, resources)
        }
    }
}

/// Same resources, each at the same version?
fn same_content(a: &ResourceSet, b: &ResourceSet) -> bool {
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .all(|((na, ra), (nb, rb))| na == nb && ra.version == rb.version)
}

#[cfg(test)]
mod tests;
