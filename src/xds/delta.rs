//! The incremental (delta) ADS protocol for one stream, free of I/O.
//!
//! [`DeltaStream`] takes a `DeltaDiscoveryRequest` (or a new snapshot) and returns the
//! responses to send and what happened, like [`super::sotw::SotwStream`], over the same
//! [`Ledger`]: what is due and when (push order, make-before-break, one response per type
//! in flight) and where the proxy stands are decided there, the same for both protocols.
//! What differs is the framing: a delta response carries only the resources the proxy does
//! not hold at that version, and the names of those it holds that are gone
//! (`removed_resources`).
//!
//! Rules it keeps:
//! - every response carries a nonce unique on the stream; each resource carries its own
//!   version, a hash of the desired state it was built from (the same on every replica),
//!   and the response's `system_version_info` is the type's version, as in SotW;
//! - a request carrying the nonce of the latest response of its type is its ACK, or its
//!   NACK when it has `error_detail` (recorded with Envoy's message; the rejected set is
//!   not sent again). A request carrying any other nonce is stale for ACK purposes, but its
//!   subscription changes are applied: the protocol asks for that;
//! - subscriptions: `resource_names_subscribe` and `resource_names_unsubscribe` edit the
//!   names asked for; `*` subscribes to every resource. For clusters and listeners a
//!   stream's first request with no names is the legacy wildcard, until a name is
//!   subscribed without `*`. A name subscribed again is sent again, whatever the proxy
//!   held; a name unsubscribed is dropped without a reply, unless `*` still covers it: then
//!   it is sent again, or removed if the proxy holds it and the state does not;
//! - removals: `removed_resources` names what the proxy holds that it should not, never a
//!   name it was not sent;
//! - the first response of a type on a stream is sent even when it carries nothing (Envoy
//!   waits for it to finish starting); after that, a response that would carry nothing is
//!   not sent;
//! - reconnect: `initial_resource_versions` (in the first request of a type) says what
//!   the proxy already holds; only what differs from it is sent, so a proxy that comes
//!   back to another replica, or to a restarted one, with the same state is sent nothing.
//!   A cluster it holds that the state no longer has is removed at once, as SotW does: the
//!   stream cannot know which of the routes the proxy holds still name it;
//! - a NACK: Envoy keeps the valid clusters and listeners of a rejected response and
//!   drops the rest, so every name the rejected response touched is sent again (or
//!   removed again) by the next one;
//! - a cluster changed in place goes back to warming in Envoy until its endpoints arrive
//!   again, and a delta Envoy does not ask for them again: its endpoints are sent again.

use std::collections::BTreeSet;
use std::sync::{Arc, LazyLock};

use envoy_types::pb::envoy::service::discovery::v3::DeltaDiscoveryRequest;

use super::ResourceType;
use super::cache::Published;
use super::encode::EncodedResponse;
use super::names::Names;
use super::observer::StreamEvent;
use super::snapshot::{Resource, ResourceSet};
use super::sotw::Step;
use super::stream::StreamCore;

/// What one type's subscription is on a delta stream.
#[derive(Debug)]
struct Subscription {
    /// `*` is subscribed: every resource of the type.
    wildcard: bool,
    /// The wildcard is the legacy one (a first request with no names), which a name
    /// subscribed without `*` ends.
    legacy: bool,
    /// Names subscribed besides `*` (shared with the snapshot's names when equal).
    names: Arc<BTreeSet<String>>,
    /// Names unsubscribed while the response in flight carried them: the proxy takes them
    /// from it after all if it subscribes again before that response arrives, so a name
    /// subscribed again meanwhile counts as possibly held. Cleared by the reply; boxed, as
    /// it is almost always empty.
    #[allow(
        clippy::box_collection,
        reason = "one pointer inline, not a set's 24 bytes"
    )]
    dropped: Option<Box<BTreeSet<String>>>,
}

impl Default for Subscription {
    fn default() -> Self {
        // One empty set shared by every stream: most subscribe to clusters and listeners
        // by wildcard and never name one.
        static NONE: LazyLock<Arc<BTreeSet<String>>> = LazyLock::new(Default::default);
        Subscription {
            wildcard: false,
            legacy: false,
            names: NONE.clone(),
            dropped: None,
        }
    }
}

/// The state of one delta ADS stream: its [`StreamCore`] (which it dereferences to) and
/// each type's subscription.
#[derive(Debug)]
pub struct DeltaStream {
    core: StreamCore,
    subscriptions: [Subscription; 5],
}

impl std::ops::Deref for DeltaStream {
    type Target = StreamCore;
    fn deref(&self) -> &StreamCore {
        &self.core
    }
}

impl DeltaStream {
    /// A new stream serving `published`; `control_plane` identifies this server in
    /// responses.
    pub fn new(published: Arc<Published>, control_plane: impl Into<String>) -> DeltaStream {
        DeltaStream {
            core: StreamCore::new(published, control_plane.into()),
            subscriptions: Default::default(),
        }
    }

    /// How many names of the request's type the stream would subscribe to, at most, once
    /// `req` is applied (with the names it says it holds): what the server bounds.
    pub fn names_after(&self, req: &DeltaDiscoveryRequest) -> usize {
        let now = ResourceType::from_type_url(&req.type_url)
            .map_or(0, |t| self.subscriptions[t.index()].names.len());
        now + req.resource_names_subscribe.len()
            + req.resource_locators_subscribe.len()
            + req.initial_resource_versions.len()
    }

    /// Handles one request from the proxy.
    pub fn on_request(&mut self, mut req: DeltaDiscoveryRequest) -> Step {
        let mut step = Step::default();
        self.core.keep_node(req.node.take());
        let Some(t) = ResourceType::from_type_url(&req.type_url) else {
            step.events.push(StreamEvent::UnknownType {
                type_url: req.type_url,
            });
            return step;
        };
        if !req.response_nonce.is_empty() {
            self.answer(t, &req, &mut step);
        }
        let first = !self.core.ledger.types[t.index()].subscribed;
        if first && !req.initial_resource_versions.is_empty() {
            self.seed(t, &req);
        }
        self.subscribe(t, &req, first);
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

    /// A request carrying a nonce: the ACK or NACK of the latest response of its type, or
    /// stale.
    fn answer(&mut self, t: ResourceType, req: &DeltaDiscoveryRequest, step: &mut Step) {
        let state = &self.core.ledger.types[t.index()];
        let Some(sent) = state
            .sent
            .as_ref()
            .filter(|s| s.nonce == req.response_nonce)
        else {
            step.events.push(StreamEvent::Stale {
                type_: t,
                nonce: req.response_nonce.clone(),
            });
            return;
        };
        if !state.awaiting_reply && req.error_detail.is_none() {
            return; // the same ACK again
        }
        // What the response touched, should it be rejected: what it changed from what
        // the proxy held (the last acknowledged set).
        let touched = req.error_detail.is_some().then(|| {
            let diff = Diff {
                held: state.acked.as_ref().map(|a| &*a.resources),
                wanted: &sent.resources,
                unknown: state.unknown(),
            };
            let changed = diff.changed().map(|r| r.name.clone());
            changed
                .chain(diff.removed().map(str::to_owned))
                .collect::<Vec<_>>()
        });
        let event = self.core.ledger.answer(t, req.error_detail.as_ref(), true);
        self.subscriptions[t.index()].dropped = None;
        if let Some(StreamEvent::Rejected { .. }) = &event {
            // Not sent again as it is (the same set would be rejected again), but the next
            // response carries each of them again, and routes wait for them.
            self.core
                .ledger
                .mark_unknown(t, touched.into_iter().flatten(), false);
        }
        step.events.extend(event);
    }

    /// A reconnecting proxy's first request of `t`: what it says it holds becomes what
    /// this stream has sent and seen acknowledged. A name at the snapshot's version is the
    /// snapshot's resource; any other stands for "held at some other version".
    fn seed(&mut self, t: ResourceType, req: &DeltaDiscoveryRequest) {
        let current = &self.snapshot().get(t).resources;
        let held: ResourceSet = req
            .initial_resource_versions
            .iter()
            .map(|(name, version)| {
                let resource = match current.get(name) {
                    Some(r) if r.version == *version => r.clone(),
                    _ => Arc::new(Resource {
                        name: name.clone(),
                        version: version.clone(),
                        body: Default::default(),
                        clusters: Vec::new(),
                        needs: Vec::new(),
                    }),
                };
                (name.clone(), resource)
            })
            .collect();
        self.core.ledger.seed(t, held);
    }

    /// Applies the request's subscription changes: to the stream's names for `t` and to
    /// what the proxy holds (a name subscribed or unsubscribed is no longer held).
    fn subscribe(&mut self, t: ResourceType, req: &DeltaDiscoveryRequest, first: bool) {
        let sub = &mut self.subscriptions[t.index()];
        let (subscribe, unsubscribe) = (
            &req.resource_names_subscribe,
            &req.resource_names_unsubscribe,
        );
        let changed = first || !subscribe.is_empty() || !unsubscribe.is_empty();
        if !changed {
            return;
        }
        if first && subscribe.is_empty() && t.is_wildcard_type() {
            sub.wildcard = true;
            sub.legacy = true;
        }
        let star = |n: &String| n == "*";
        if subscribe.iter().any(star) {
            sub.wildcard = true;
            sub.legacy = false;
        } else if !subscribe.is_empty() && sub.legacy {
            sub.wildcard = false;
            sub.legacy = false;
        }
        if unsubscribe.iter().any(star) {
            sub.wildcard = false;
            sub.legacy = false;
        }
        let adds = subscribe
            .iter()
            .filter(|n| !star(n) && !sub.names.contains(*n));
        let drops = unsubscribe
            .iter()
            .filter(|n| !star(n) && sub.names.contains(*n));
        let current = &self.core.ledger.published.snapshot().get(t).names;
        let exactly_current = sub.names.is_empty()
            && unsubscribe.is_empty()
            && current.len() == subscribe.len()
            && current.iter().eq(subscribe.iter());
        if exactly_current {
            // The usual first request for endpoints or routes: every name the snapshot
            // has, in order. Shared as it is, without building a set to compare.
            sub.names = current.clone();
        } else if adds.clone().next().is_some() || drops.clone().next().is_some() {
            let mut names = (*sub.names).clone();
            names.extend(adds.cloned());
            for n in drops {
                names.remove(n);
            }
            sub.names = Arc::new(names);
        }
        if !Arc::ptr_eq(&sub.names, current) && *sub.names == **current {
            sub.names = current.clone(); // the snapshot's own set, shared
        }
        let names = if sub.wildcard {
            Names::All
        } else {
            Names::of_set(&sub.names, current)
        };
        let state = &mut self.core.ledger.types[t.index()];
        if first || !names.same(&state.names) {
            state.names = names;
            state.names_gen += 1;
        }
        state.subscribed = true;
        // A name unsubscribed by name is dropped by the proxy: no reply, no removal. Under
        // a wildcard it stays subscribed, and the protocol asks for a reply: it is sent
        // again, or removed. A subscribed one it holds is sent again, whatever it held
        // (unless it just said what it holds).
        let unsubscribed = unsubscribe.iter().filter(|n| !star(n));
        let (kept, dropped): (Vec<&String>, Vec<&String>) =
            unsubscribed.partition(|_| self.subscriptions[t.index()].wildcard);
        let dropped: Vec<&str> = dropped.into_iter().map(String::as_str).collect();
        let state = &self.core.ledger.types[t.index()];
        if let Some(in_flight) = state.sent.as_ref().filter(|_| state.awaiting_reply) {
            let carried = dropped
                .iter()
                .filter(|n| in_flight.resources.contains_key(**n));
            let carried: BTreeSet<String> = carried.map(|n| n.to_string()).collect();
            if !carried.is_empty() {
                let sub = &mut self.subscriptions[t.index()];
                sub.dropped
                    .get_or_insert_with(Default::default)
                    .extend(carried);
            }
        }
        self.core.ledger.forget(t, &dropped);
        let sub = &self.subscriptions[t.index()];
        let again: Vec<String> = subscribe
            .iter()
            .chain(kept)
            .filter(|n| !star(n) && !req.initial_resource_versions.contains_key(*n))
            .filter(|n| {
                self.core.ledger.holds(t, n) || sub.dropped.as_ref().is_some_and(|d| d.contains(*n))
            })
            .cloned()
            .collect();
        self.core.ledger.mark_unknown(t, again, true);
    }

    /// Sends, in push order, what each type owes the proxy (see [`Ledger::due`]), as the
    /// changes from what it holds. A type whose response would carry nothing is settled
    /// without one (except its first on the stream), and what that unblocks is looked at
    /// again, as is a cluster changed in place, whose endpoints are then owed again.
    fn push_due(&mut self, step: &mut Step) {
        // Each pass settles or sends at least one type, or ends: at most a few passes.
        loop {
            let first: [bool; 5] =
                ResourceType::ALL.map(|t| self.core.ledger.types[t.index()].sent.is_none());
            let due = self.core.ledger.due();
            if due.is_empty() {
                return;
            }
            let mut again = false;
            for due in due {
                let t = due.type_;
                let state = &self.core.ledger.types[t.index()];
                let diff = Diff {
                    held: state.acked.as_ref().map(|a| &*a.resources),
                    wanted: &due.resources,
                    unknown: state.unknown(),
                };
                let (carried, removed) = (diff.changed().count(), diff.removed().count());
                if carried == 0 && removed == 0 && !first[t.index()] {
                    self.core.ledger.settle(t);
                    again = true;
                    continue;
                }
                // Clusters changed in place warm again on their endpoints: those the proxy
                // holds (the others it asks for, or never had) are owed again.
                let rewarm: Vec<String> = match t {
                    ResourceType::Cluster => diff
                        .changed()
                        .filter(|r| diff.held_or_unknown(&r.name))
                        .filter(|r| self.core.ledger.holds(ResourceType::Endpoint, &r.name))
                        .map(|r| r.name.clone())
                        .collect(),
                    _ => Vec::new(),
                };
                let shared = self.core.ledger.published.delta_response(
                    t,
                    &due.version,
                    diff.changed(),
                    diff.removed(),
                    &self.core.control_plane,
                );
                if !rewarm.is_empty() {
                    self.core
                        .ledger
                        .mark_unknown(ResourceType::Endpoint, rewarm, true);
                    again = true;
                }
                step.events.push(StreamEvent::Sent {
                    type_: t,
                    version: due.version.clone(),
                    resources: due.resources.clone(),
                    carried,
                    removed,
                });
                step.responses.push(EncodedResponse::new(
                    t,
                    due.version,
                    due.nonce,
                    carried,
                    shared,
                ));
            }
            if !again {
                return;
            }
        }
    }
}

/// What a response taking a proxy from `held` to `wanted` carries: the resources it does
/// not hold at their version (or whose version it holds is `unknown`), and the names it
/// holds that are not wanted (or are unknown and not wanted). A resource the proxy is only
/// known to hold at some other version (a reconnect's placeholder, with no body) is never
/// sent. Worked out as it is walked, without building a list: a connect storm or a switch
/// allocates nothing per stream for it.
struct Diff<'a> {
    held: Option<&'a ResourceSet>,
    wanted: &'a ResourceSet,
    unknown: &'a BTreeSet<String>,
}

impl<'a> Diff<'a> {
    /// The resources to send.
    fn changed(&self) -> impl Iterator<Item = &'a Arc<Resource>> + Clone + use<'a> {
        let (held, unknown) = (self.held, self.unknown);
        self.wanted
            .iter()
            .filter(move |(name, r)| {
                let holds = held
                    .and_then(|h| h.get(*name))
                    .is_some_and(|h| Arc::ptr_eq(h, r) || h.version == r.version);
                r.has_body() && (!holds || unknown.contains(*name))
            })
            .map(|(_, r)| r)
    }

    /// The names to remove.
    fn removed(&self) -> impl Iterator<Item = &'a str> + Clone + use<'a> {
        let (held, wanted, unknown) = (self.held, self.wanted, self.unknown);
        let unheld = move |n: &&String| held.is_none_or(|h| !h.contains_key(*n));
        held.into_iter()
            .flat_map(|h| h.keys())
            .chain(unknown.iter().filter(unheld))
            .filter(move |n| !wanted.contains_key(*n))
            .map(String::as_str)
    }

    /// Does the proxy hold `name` (at some version), or might it?
    fn held_or_unknown(&self, name: &str) -> bool {
        self.held.is_some_and(|h| h.contains_key(name)) || self.unknown.contains(name)
    }
}

#[cfg(test)]
mod tests;
