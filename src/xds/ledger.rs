//! What a proxy holds and is owed, per resource type, on one ADS stream: the part of the
//! protocol that does not depend on how responses are framed. The state-of-the-world
//! stream ([`super::sotw`]) reads requests and frames responses around it.
//!
//! It keeps, per type, the subscription, the latest response sent, acknowledged and
//! rejected (each the whole set the proxy holds once it applies it), and whether a reply
//! is awaited (one response per type in flight). From them it decides what is due, in push
//! order, with make-before-break: a route configuration is held until the proxy has
//! acknowledged every cluster it names and what each needs (its endpoints over EDS, its
//! secrets), and a cluster that a route the proxy holds (or is being sent) still names is
//! kept until routes that no longer name it are acknowledged. And it says where the proxy stands on each type
//! ([`Ledger::status`]): the one place that status is worked out.

use std::collections::BTreeSet;
use std::sync::Arc;

use super::ResourceType;
use super::cache::Published;
use super::names::Names;
use super::observer::StreamEvent;
use super::snapshot::{Resource, ResourceSet, Snapshot};
use super::sync::SyncStatus;
use crate::hash::short_hash;
use envoy_types::pb::google::rpc::Status as RpcStatus;

/// One response sent on this stream for a type.
#[derive(Debug, Clone)]
pub(super) struct Sent {
    pub(super) version: String,
    pub(super) nonce: String,
    pub(super) resources: Arc<ResourceSet>,
    /// [`TypeState::names_gen`] when it was sent.
    pub(super) names_gen: u64,
    /// The nonce as a number (identifies this response on the stream).
    pub(super) seq: u64,
}

/// What a [`ReadyMemo`] depends on: for clusters, endpoints and secrets, the response
/// acknowledged and the one sent (by sequence number), and whether a reply is awaited.
type ReadyKey = [(u64, u64, bool); 3];

/// The routes last found ready, and the state they were found in: a switch (new weights,
/// same clusters) then compares the routes' cluster lists instead of looking up every
/// cluster. The routes are shared with the snapshot that had them, not copied.
#[derive(Debug)]
struct ReadyMemo {
    pub(super) key: ReadyKey,
    pub(super) routes: Vec<Arc<Resource>>,
}

/// The protocol state of one resource type on one stream.
#[derive(Debug, Default)]
pub(super) struct TypeState {
    /// The proxy has asked for this type.
    pub(super) subscribed: bool,
    /// The stream has sent a list that is not empty for this type (names, or `*`): from
    /// then on an empty list means "none", not the legacy wildcard.
    pub(super) listed: bool,
    /// Names asked for.
    pub(super) names: Names,
    /// Changes whenever `names` does, so "asked for the same names as when last sent" is
    /// one comparison, not one per name.
    pub(super) names_gen: u64,
    /// The latest response sent.
    pub(super) sent: Option<Arc<Sent>>,
    /// The latest response the proxy acknowledged (shared with `sent` once acknowledged).
    pub(super) acked: Option<Arc<Sent>>,
    /// The latest response the proxy rejected, with Envoy's message.
    pub(super) rejected: Option<(Arc<Sent>, String)>,
    /// The latest response has had no ACK or NACK yet. Nothing more of this type is sent
    /// until it has: SotW's own flow control, which also coalesces a burst of saves into
    /// the newest version.
    pub(super) awaiting_reply: bool,
    /// Names whose version the proxy holds is not known (delta only): see [`Unknown`].
    /// Boxed, and absent on almost every stream: it costs an idle stream one pointer.
    unknown: Option<Box<Unknown>>,
    /// A response is due even if the wanted set looks like the one sent (names became
    /// unknown); cleared when one is sent.
    force: bool,
}

/// Names of a type whose version the proxy holds is not known (delta only: a response it
/// rejected touched them, or it asked for them again). The next response sends them again
/// (or removes them), make-before-break does not count them as held, and an ACK of a
/// response sent after they became unknown clears them.
#[derive(Debug, Default)]
struct Unknown {
    names: BTreeSet<String>,
    /// `names` when the latest response was sent: what its ACK clears.
    at_send: BTreeSet<String>,
}

/// No names.
static NONE: BTreeSet<String> = BTreeSet::new();

impl TypeState {
    /// The names whose version the proxy holds is not known (see [`Unknown`]).
    pub(super) fn unknown(&self) -> &BTreeSet<String> {
        self.unknown.as_ref().map_or(&NONE, |u| &u.names)
    }
}

/// A response due: what to send for a type, already recorded as sent.
#[derive(Debug)]
pub(super) struct Due {
    pub(super) type_: ResourceType,
    pub(super) version: String,
    pub(super) nonce: String,
    pub(super) resources: Arc<ResourceSet>,
}

/// Every type's state on one stream, and the snapshot it serves.
#[derive(Debug)]
pub(super) struct Ledger {
    pub(super) published: Arc<Published>,
    pub(super) types: [TypeState; 5],
    next_nonce: u64,
    ready_memo: Option<ReadyMemo>,
}

impl Ledger {
    pub(super) fn new(published: Arc<Published>) -> Ledger {
        Ledger {
            published,
            types: Default::default(),
            next_nonce: 1,
            ready_memo: None,
        }
    }

    pub(super) fn snapshot(&self) -> &Snapshot {
        self.published.snapshot()
    }

    /// Where the proxy stands on `t`.
    pub(super) fn status(&self, t: ResourceType) -> SyncStatus {
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
    pub(super) fn statuses(&self) -> [SyncStatus; 5] {
        ResourceType::ALL.map(|t| self.status(t))
    }

    /// Does the proxy subscribe to every resource of `t` (a wildcard subscription)?
    pub(super) fn wildcard(&self, t: ResourceType) -> bool {
        let state = &self.types[t.index()];
        state.subscribed && state.names.list().is_none()
    }

    /// In push order, every type whose wanted content differs from what was last sent,
    /// unless make-before-break holds it back; each is recorded as sent (awaiting its
    /// reply) before the next type is considered, so routes see the clusters on their way.
    pub(super) fn due(&mut self) -> Vec<Due> {
        let mut due = Vec::new();
        for t in ResourceType::ALL {
            let state = &self.types[t.index()];
            if !state.subscribed || state.awaiting_reply {
                continue;
            }
            if !state.force && self.sent_is_current(t) {
                continue;
            }
            let (version, resources) = self.wanted(t);
            if !state.force && !is_new(state.sent.as_deref(), &version, &resources) {
                continue;
            }
            if t == ResourceType::Route && !self.clusters_ready(&resources) {
                continue;
            }
            let nonce = self.record_sent(t, version.clone(), resources.clone());
            due.push(Due {
                type_: t,
                version,
                nonce,
                resources,
            });
        }
        due
    }

    /// The proxy answered the latest response of `t` (it carried that response's nonce):
    /// `error` is a NACK's; without one the reply acknowledges the response if `takes`
    /// (SotW: only when it carries the response's version; after a NACK, Envoy's requests
    /// carry the rejected nonce and the version it still runs, and are not ACKs). Returns
    /// what happened, if anything new did.
    pub(super) fn answer(
        &mut self,
        t: ResourceType,
        error: Option<&RpcStatus>,
        takes: bool,
    ) -> Option<StreamEvent> {
        let state = &mut self.types[t.index()];
        let sent = state.sent.clone()?;
        state.awaiting_reply = false;
        if let Some(err) = error {
            let message = kept_message(err);
            let rejected = state.rejected.as_ref();
            if rejected.is_some_and(|(r, m)| Arc::ptr_eq(r, &sent) && *m == message) {
                return Some(StreamEvent::RepeatedNack { type_: t });
            }
            state.rejected = Some((sent.clone(), message.clone()));
            return Some(StreamEvent::Rejected {
                type_: t,
                version: sent.version.clone(),
                message,
            });
        }
        if !takes || state.acked.as_ref().is_some_and(|a| Arc::ptr_eq(a, &sent)) {
            return None; // not an ACK, or one already counted
        }
        state.acked = Some(sent.clone());
        self.clear_answered(t);
        Some(StreamEvent::Acked {
            type_: t,
            version: sent.version.clone(),
            resources: sent.resources.clone(),
        })
    }

    /// Records a response of `t` as sent: the proxy's reply to it is awaited. Returns its
    /// nonce, unique on the stream.
    fn record_sent(
        &mut self,
        t: ResourceType,
        version: String,
        resources: Arc<ResourceSet>,
    ) -> String {
        let seq = self.next_nonce;
        let nonce = seq.to_string();
        self.next_nonce += 1;
        let state = &mut self.types[t.index()];
        state.awaiting_reply = true;
        state.force = false;
        if let Some(u) = &mut state.unknown {
            u.at_send.clone_from(&u.names);
        }
        state.sent = Some(Arc::new(Sent {
            version,
            nonce: nonce.clone(),
            resources,
            names_gen: state.names_gen,
            seq,
        }));
        nonce
    }

    /// The latest response of `t` turns out to be what the proxy already holds (an
    /// incremental response would carry nothing): it is taken as acknowledged without
    /// being sent.
    pub(super) fn settle(&mut self, t: ResourceType) {
        let state = &mut self.types[t.index()];
        state.awaiting_reply = false;
        state.acked = state.sent.clone();
        self.clear_answered(t);
    }

    /// The names that were unknown when the latest response of `t` was sent are known
    /// again: the proxy took that response (or it carried nothing to take).
    fn clear_answered(&mut self, t: ResourceType) {
        let state = &mut self.types[t.index()];
        if let Some(u) = &mut state.unknown {
            let answered = std::mem::take(&mut u.at_send);
            u.names.retain(|n| !answered.contains(n));
            if u.names.is_empty() {
                state.unknown = None;
            }
            self.ready_memo = None;
        }
    }

    /// The proxy holds `held` of `t` without this stream having sent it (an incremental
    /// stream's reconnect, from its `initial_resource_versions`): recorded as sent and
    /// acknowledged, so only what differs from it is due.
    pub(super) fn seed(&mut self, t: ResourceType, held: ResourceSet) {
        let seq = self.next_nonce;
        self.next_nonce += 1;
        let state = &mut self.types[t.index()];
        let sent = Arc::new(Sent {
            version: String::new(),
            nonce: String::new(),
            resources: Arc::new(held),
            names_gen: state.names_gen,
            seq,
        });
        state.sent = Some(sent.clone());
        state.acked = Some(sent);
        state.awaiting_reply = false;
    }

    /// The proxy may hold `names` of `t` at some version other than the one recorded (a
    /// response it rejected touched them, or it asked for them again): the next response
    /// sends each again, or removes it, and until the proxy acknowledges one, routes naming
    /// them wait. `resend`: a response is due now (not only once something changes).
    pub(super) fn mark_unknown(
        &mut self,
        t: ResourceType,
        names: impl IntoIterator<Item = String>,
        resend: bool,
    ) {
        let state = &mut self.types[t.index()];
        let mut marked = false;
        for name in names {
            // Marked now: the ACK of a response sent before does not clear it.
            let u = state.unknown.get_or_insert_with(Default::default);
            marked |= u.at_send.remove(&name);
            marked |= u.names.insert(name);
        }
        if marked {
            state.force |= resend;
            self.ready_memo = None;
        }
    }

    /// Does the proxy hold `name` of `t`, or is it on its way (acknowledged, or in the
    /// latest response sent)?
    pub(super) fn holds(&self, t: ResourceType, name: &str) -> bool {
        let state = &self.types[t.index()];
        [&state.acked, &state.sent]
            .into_iter()
            .flatten()
            .any(|s| s.resources.contains_key(name))
    }

    /// The proxy no longer holds `names` of `t` (an incremental stream unsubscribed them,
    /// or subscribed them again, which asks for them to be sent whatever it held): they
    /// leave every set recorded for the type, so they are due again if wanted.
    pub(super) fn forget(&mut self, t: ResourceType, names: &[&str]) {
        if names.is_empty() {
            return;
        }
        let state = &mut self.types[t.index()];
        let without = |s: &Arc<Sent>| -> Arc<Sent> {
            if !names.iter().any(|n| s.resources.contains_key(*n)) {
                return s.clone();
            }
            let mut resources = (*s.resources).clone();
            for n in names {
                resources.remove(*n);
            }
            Arc::new(Sent {
                resources: Arc::new(resources),
                ..(**s).clone()
            })
        };
        let sent = state.sent.as_ref().map(without);
        let same =
            |a: &Option<Arc<Sent>>, b: &Arc<Sent>| a.as_ref().is_some_and(|a| Arc::ptr_eq(a, b));
        let acked = state.acked.as_ref().map(|a| match &sent {
            Some(s) if same(&state.sent, a) => s.clone(),
            _ => without(a),
        });
        let rejected = state.rejected.as_ref().map(|(r, m)| match &sent {
            Some(s) if same(&state.sent, r) => (s.clone(), m.clone()),
            _ => (without(r), m.clone()),
        });
        state.sent = sent;
        state.acked = acked;
        state.rejected = rejected;
        for n in names {
            if let Some(u) = &mut state.unknown {
                u.names.remove(*n);
                u.at_send.remove(*n);
            }
        }
        state.names_gen += 1;
        self.ready_memo = None;
    }

    /// Cheap check, without building any set: was the latest response for `t` this very
    /// snapshot's version of it, for the names the proxy asks for now? (When it says no,
    /// [`Self::wanted`] decides.) Keeps a switch, which changes only routes, from costing
    /// every stream a walk over every cluster.
    pub(super) fn sent_is_current(&self, t: ResourceType) -> bool {
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
    pub(super) fn wanted(&self, t: ResourceType) -> (String, Arc<ResourceSet>) {
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

    /// The resource `name` of `t` as last sent (or acknowledged), if it was sent: not a
    /// reconnecting proxy's word that it holds some version of it ([`Resource::has_body`]).
    fn previously_sent(&self, t: ResourceType, name: &str) -> Option<Arc<Resource>> {
        let state = &self.types[t.index()];
        [&state.sent, &state.acked]
            .into_iter()
            .flatten()
            .find_map(|s| s.resources.get(name).filter(|r| r.has_body()).cloned())
    }

    /// Has the proxy acknowledged every cluster named by `routes`, and what each needs
    /// (its endpoints over EDS, its secrets), and will it still have them once it applies any response still in flight (a cluster
    /// set that drops one of them may be on its way)?
    fn clusters_ready(&mut self, routes: &ResourceSet) -> bool {
        let key = [
            ResourceType::Cluster,
            ResourceType::Endpoint,
            ResourceType::Secret,
        ]
        .map(|t| {
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
                .is_some_and(|s| s.resources.contains_key(name))
                && !state.unknown().contains(name);
            let pending_keeps = !state.awaiting_reply
                || state
                    .sent
                    .as_ref()
                    .is_some_and(|s| s.resources.contains_key(name));
            acked && pending_keeps
        };
        let clusters = &self.snapshot().get(ResourceType::Cluster).resources;
        routes.values().flat_map(|r| r.clusters.iter()).all(|c| {
            // What the cluster needs: as in force, else as last sent (a route kept from an
            // earlier snapshot can name a cluster this one lacks), else its endpoints.
            let cluster = clusters
                .get(c)
                .cloned()
                .or_else(|| self.previously_sent(ResourceType::Cluster, c));
            holds(ResourceType::Cluster, c)
                && match cluster {
                    Some(cluster) => cluster.needs.iter().all(|(t, n)| holds(*t, n)),
                    None => holds(ResourceType::Endpoint, c),
                }
        })
    }
}

/// Does sending `version` with `resources` tell a proxy that was last sent `sent`
/// anything new? Not when it is the same version for the same names, nor when only the
/// version string differs for the very same resources.
pub(super) fn is_new(sent: Option<&Sent>, version: &str, resources: &Arc<ResourceSet>) -> bool {
    match sent {
        None => true,
        Some(sent) => {
            let unchanged = sent.version == version && sent.resources.keys().eq(resources.keys());
            !unchanged && !same_content(&sent.resources, resources)
        }
    }
}

/// Same resources, each at the same version?
pub(super) fn same_content(a: &ResourceSet, b: &ResourceSet) -> bool {
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .all(|((na, ra), (nb, rb))| na == nb && ra.version == rb.version)
}

/// Longest NACK message kept, logged, shown and audited, in bytes. Envoy's own messages
/// are a few hundred bytes; a longer one is cut (and says so), so a proxy cannot make the
/// audit log, `/status` or the logs grow by megabytes per NACK.
pub const MAX_NACK_MESSAGE: usize = 4096;

/// A NACK's message as switchyard keeps it: at most [`MAX_NACK_MESSAGE`] bytes, cut at a
/// character boundary, with how much was cut.
fn kept_message(err: &RpcStatus) -> String {
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
