//! [`DeltaModel`]: a [`DeltaStream`] and a model of the proxy on the other end, which holds
//! what it accepted as Envoy does: each response it acknowledges applied in turn (what it
//! held, plus `resources`, less `removed_resources`); of a cluster or listener response it
//! rejects, the valid resources and the removals (Envoy's CDS and LDS apply those); a name
//! it unsubscribes, let go. On every response it checks:
//!
//! - the nonce rules both protocols keep (unique nonces, one response per type in flight);
//! - the response is well formed: each resource has a name, a version and a body of the
//!   response's type whose own name is the resource's; no name is both sent and removed, or
//!   twice (Envoy rejects such a response); carried and removed are counted right in the
//!   stream's `Sent` event; a response after the type's first carries something;
//! - `removed_resources` names only what the proxy was sent on the stream, or said it held;
//! - make-before-break: a route configuration names only clusters the proxy holds, with
//!   their endpoints, and that no response in flight removes.
//!
//! And [`DeltaModel::converge`]: from wherever the ops left it, a proxy that subscribes as
//! Envoy does and accepts everything ends up holding exactly the snapshot's resources, at
//! their versions (a lost removal or a missed update shows here).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use envoy_types::pb::envoy::config::cluster::v3::Cluster;
use envoy_types::pb::envoy::config::endpoint::v3::ClusterLoadAssignment;
use envoy_types::pb::envoy::config::listener::v3::Listener;
use envoy_types::pb::envoy::config::route::v3::RouteConfiguration;
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::Secret;
use envoy_types::pb::envoy::service::discovery::v3::DeltaDiscoveryRequest;
use envoy_types::pb::google::protobuf::Any;
use prost::Message;
use switchyard::xds::ResourceType;
use switchyard::xds::delta::DeltaStream;
use switchyard::xds::sotw::Step;

use super::{
    Flight, Model, NonceChoice, SentResponse, check_make_before_break, names, node, published,
    rejection, sent_responses, snapshots, type_url,
};

/// One input to a delta stream.
#[derive(Debug, Clone)]
pub enum DeltaOp {
    Request(DeltaRequest),
    /// Switch to [`snapshots`]`[n]` (wraps around).
    Snapshot(usize),
}

/// A `DeltaDiscoveryRequest`, as the model's choices.
#[derive(Debug, Clone)]
pub struct DeltaRequest {
    /// 0..=3: [`ResourceType::ALL`]; anything else a type switchyard does not serve.
    pub type_index: usize,
    pub nonce: NonceChoice,
    /// A NACK's message.
    pub error: Option<String>,
    /// Indexes into [`names`] (wrap around). A name in both lists is only subscribed.
    pub subscribe: Vec<usize>,
    pub unsubscribe: Vec<usize>,
    /// What the proxy says it holds, as a reconnecting Envoy does: names (indexes into
    /// [`names`]; `*` and the empty name are left out) at a version. Sent only on the
    /// type's first request.
    pub initial: Vec<(usize, InitialVersion)>,
    pub with_node: bool,
}

/// The version a reconnecting proxy says it holds of a name.
#[derive(Debug, Clone)]
pub enum InitialVersion {
    /// The stream's snapshot's (else another snapshot's, else one none has).
    Current,
    Other(String),
}

/// What the proxy subscribes to for one type, by the protocol's wildcard rules.
#[derive(Debug, Default)]
struct Interest {
    /// It has sent a request of the type.
    asked: bool,
    /// Every resource of the type: `*`, or the legacy wildcard.
    wildcard: bool,
    /// The wildcard is the legacy one (the type's first request subscribed nothing), which
    /// a name subscribed without `*` ends.
    legacy: bool,
    /// Names subscribed besides `*`.
    names: BTreeSet<String>,
}

impl Interest {
    fn change(&mut self, t: ResourceType, subscribe: &[String], unsubscribe: &[String]) {
        let star = |names: &[String]| names.iter().any(|n| n == "*");
        if !self.asked && subscribe.is_empty() && t.is_wildcard_type() {
            (self.wildcard, self.legacy) = (true, true);
        }
        self.asked = true;
        if star(subscribe) {
            (self.wildcard, self.legacy) = (true, false);
        } else if self.legacy && !subscribe.is_empty() {
            (self.wildcard, self.legacy) = (false, false);
        }
        if star(unsubscribe) {
            (self.wildcard, self.legacy) = (false, false);
        }
        self.names
            .extend(subscribe.iter().filter(|n| *n != "*").cloned());
        for n in unsubscribe {
            self.names.remove(n);
        }
    }
}

/// What a delta response carried, as the proxy keeps it until it answers.
#[derive(Debug, Clone)]
struct DeltaSent {
    /// Name and version of each resource.
    resources: Vec<(String, String)>,
    removed: Vec<String>,
}

/// A [`DeltaStream`] and a model of the proxy on the other end (see the module doc).
/// Panics on a broken rule.
pub struct DeltaModel {
    stream: DeltaStream,
    /// Which of [`snapshots`] the stream serves.
    current: usize,
    flight: Flight<DeltaSent>,
    interest: [Interest; 5],
    /// What the proxy holds of each type, name to version: every response it acknowledged,
    /// applied in turn, less the names it unsubscribed since; or what it said it held when
    /// it reconnected.
    held: [BTreeMap<String, String>; 5],
    /// The names of each type the proxy unsubscribed (and did not subscribe again) since
    /// the latest response of the type was sent: what that response says of them is void
    /// (Envoy has no watch left for a name it dropped). A name subscribed again is
    /// requested afresh, and the response on its way satisfies it, as in Envoy.
    asked_since: [BTreeSet<String>; 5],
    /// Every name of each type the proxy was sent on this stream or said it held: what a
    /// removal may name.
    known: [BTreeSet<String>; 5],
    /// The latest response of each type that the proxy answered, it rejected. The stream
    /// does not send a rejected set again (by design), so until something else of the type
    /// is sent the proxy is not expected to hold the snapshot.
    rejected: [bool; 5],
}

impl Default for DeltaModel {
    fn default() -> Self {
        DeltaModel {
            stream: DeltaStream::new(snapshots()[0].clone(), "fuzz"),
            current: 0,
            flight: Flight::default(),
            interest: Default::default(),
            held: Default::default(),
            asked_since: Default::default(),
            known: Default::default(),
            rejected: [false; 5],
        }
    }
}

impl Model for DeltaModel {
    type Op = DeltaOp;

    fn apply(&mut self, op: DeltaOp) {
        match op {
            DeltaOp::Snapshot(n) => {
                self.current = n % snapshots().len();
                let step = self.stream.on_snapshot(published(n));
                self.check(step);
            }
            DeltaOp::Request(r) => {
                let request = self.request(r);
                self.send(request);
            }
        }
    }
}

impl DeltaModel {
    /// From where the ops left it, the proxy subscribes as Envoy does (clusters and
    /// listeners by wildcard, the endpoints of every cluster it holds and the route
    /// configuration of every listener it holds, and no other) and accepts every response,
    /// until the stream has nothing more to send. It then holds exactly the snapshot's
    /// resources, at their versions, unless the latest response of a type it answered was
    /// one it rejected. Returns whether that was checked (false: it was not expected).
    pub fn converge(&mut self) -> bool {
        const ROUNDS: usize = 12;
        for _ in 0..ROUNDS {
            let mut settled = true;
            for t in ResourceType::ALL {
                if let Some(request) = self.settling_request(t) {
                    settled = false;
                    self.send(request);
                }
            }
            if settled {
                return self.check_holds_the_snapshot();
            }
        }
        panic!("the stream still sends after {ROUNDS} rounds of acknowledgements");
    }

    /// How many responses the stream has sent (for tests that the ops reached deep).
    pub fn responses_sent(&self) -> usize {
        self.flight.in_order.len()
    }

    fn request(&self, r: DeltaRequest) -> DeltaDiscoveryRequest {
        let t = ResourceType::ALL.get(r.type_index).copied();
        let all = names();
        let name = |i: &usize| all[i % all.len()].clone();
        let subscribe: Vec<String> = r.subscribe.iter().map(name).collect();
        let unsubscribe = r.unsubscribe.iter().map(name);
        let unsubscribe = unsubscribe.filter(|n| !subscribe.contains(n)).collect();
        let initial = match t {
            Some(t) if !self.interest[t.index()].asked => r
                .initial
                .iter()
                .map(|(i, version)| (name(i), version))
                .filter(|(n, _)| n != "*" && !n.is_empty())
                .map(|(n, version)| {
                    let version = match version {
                        InitialVersion::Current => self.version_of(t, &n),
                        InitialVersion::Other(v) => v.clone(),
                    };
                    (n, version)
                })
                .collect(),
            _ => HashMap::new(),
        };
        DeltaDiscoveryRequest {
            type_url: type_url(t),
            response_nonce: self.flight.nonce(t, r.nonce),
            error_detail: r.error.map(rejection),
            resource_names_subscribe: subscribe,
            resource_names_unsubscribe: unsubscribe,
            initial_resource_versions: initial,
            node: r.with_node.then(node),
            ..Default::default()
        }
    }

    /// The version of `name` in the stream's snapshot, else in another, else none has.
    fn version_of(&self, t: ResourceType, name: &str) -> String {
        let current = std::iter::once(&snapshots()[self.current]);
        current
            .chain(snapshots())
            .find_map(|p| p.snapshot().get(t).resources.get(name))
            .map_or_else(|| "gone".to_owned(), |r| r.version.clone())
    }

    /// What the proxy, settling, sends for `t`: the ACK of the response in flight and the
    /// subscription changes it wants (see [`Self::converge`]), if there is either.
    fn settling_request(&self, t: ResourceType) -> Option<DeltaDiscoveryRequest> {
        let interest = &self.interest[t.index()];
        let (subscribe, unsubscribe) = match t {
            // Envoy's first request is the legacy wildcard; after a name it lists `*`.
            ResourceType::Cluster | ResourceType::Listener => {
                let star = interest.asked && !interest.wildcard;
                (
                    star.then(|| "*".to_owned()).into_iter().collect(),
                    Vec::new(),
                )
            }
            ResourceType::Endpoint | ResourceType::Route | ResourceType::Secret => {
                // The model's states name no file: no cluster uses a secret, and a proxy
                // wants none.
                let none = BTreeMap::new();
                let want = match t {
                    ResourceType::Endpoint => &self.held[ResourceType::Cluster.index()],
                    ResourceType::Route => &self.held[ResourceType::Listener.index()],
                    _ => &none,
                };
                let subscribe: Vec<String> = want
                    .keys()
                    .filter(|n| !interest.names.contains(*n))
                    .cloned()
                    .collect();
                // And lets go of what it no longer wants, subscribed by name or not (Envoy
                // drops a cluster's endpoints with the cluster).
                let held = self.held[t.index()].keys();
                let names: BTreeSet<&String> = interest.names.iter().chain(held).collect();
                let mut unsubscribe: Vec<String> = names
                    .into_iter()
                    .filter(|n| !want.contains_key(*n))
                    .cloned()
                    .collect();
                if interest.wildcard {
                    unsubscribe.push("*".to_owned());
                }
                (subscribe, unsubscribe)
            }
        };
        let ack = self.flight.in_flight(t).map(|(nonce, _)| nonce.to_owned());
        let first = !interest.asked && t.is_wildcard_type();
        if ack.is_none() && subscribe.is_empty() && unsubscribe.is_empty() && !first {
            return None;
        }
        Some(DeltaDiscoveryRequest {
            type_url: t.type_url().to_owned(),
            response_nonce: ack.unwrap_or_default(),
            resource_names_subscribe: subscribe,
            resource_names_unsubscribe: unsubscribe,
            node: Some(node()),
            ..Default::default()
        })
    }

    fn send(&mut self, request: DeltaDiscoveryRequest) {
        if let Some(t) = ResourceType::from_type_url(&request.type_url) {
            self.proxy_sends(t, &request);
        }
        let step = self.stream.on_request(request);
        self.check(step);
    }

    /// The proxy's side of a request of `t`: a reply to the response it answers (which it
    /// applies first, if it accepts it), then (a reconnect) what it says it holds, then its
    /// subscription changes.
    fn proxy_sends(&mut self, t: ResourceType, request: &DeltaDiscoveryRequest) {
        let i = t.index();
        if let Some((response, true)) = self.flight.answer(t, &request.response_nonce) {
            let rejected = request.error_detail.as_ref().map(|e| e.message.len());
            self.rejected[i] = rejected.is_some();
            // Envoy applies a response it accepts. Of one it rejects it applies nothing
            // for endpoints and routes, but for clusters and listeners every valid
            // resource (here all but one, which by the message's length) and the removals.
            if rejected.is_none() || t.is_wildcard_type() {
                let invalid = rejected.map(|len| len % response.resources.len().max(1));
                let (held, asked) = (&mut self.held[i], &self.asked_since[i]);
                for (k, (name, version)) in response.resources.iter().enumerate() {
                    if invalid != Some(k) && !asked.contains(name) {
                        held.insert(name.clone(), version.clone());
                    }
                }
                for name in &response.removed {
                    held.remove(name);
                }
            }
        }
        let first = !self.interest[i].asked;
        // A reconnect: what it holds, then what it asks for now.
        if first && !request.initial_resource_versions.is_empty() {
            let initial = &request.initial_resource_versions;
            self.held[i] = initial
                .iter()
                .map(|(n, v)| (n.clone(), v.clone()))
                .collect();
            self.known[i].extend(initial.keys().cloned());
        }
        let (subscribe, unsubscribe) = (
            &request.resource_names_subscribe,
            &request.resource_names_unsubscribe,
        );
        self.interest[i].change(t, subscribe, unsubscribe);
        // The proxy drops what it unsubscribes by name (a name subscribed again stays
        // held). Under `*` a name unsubscribed stays until the server sends it again or
        // removes it, and a response on its way does that (Envoy's ambiguous state).
        if !self.interest[i].wildcard {
            for name in unsubscribe {
                self.held[i].remove(name);
            }
            let dropped = unsubscribe.iter().filter(|n| *n != "*");
            self.asked_since[i].extend(dropped.cloned());
        }
        for name in subscribe {
            self.asked_since[i].remove(name);
        }
    }

    fn check(&mut self, step: Step) {
        for sent in sent_responses(&step) {
            self.check_response(sent);
        }
        let _ = (
            self.stream.statuses(),
            ResourceType::ALL.map(|t| self.stream.wildcard(t)),
        );
    }

    fn check_response(&mut self, sent: SentResponse<'_>) {
        let (t, i) = (sent.type_, sent.type_.index());
        let d = sent.response.decode_delta();
        let nonce = &d.nonce;
        assert_eq!(*nonce, sent.response.nonce);
        assert_eq!(d.type_url, t.type_url());
        assert_eq!(d.system_version_info, sent.version);
        assert_eq!(d.resources.len(), sent.carried, "Sent.carried");
        assert_eq!(d.removed_resources.len(), sent.removed, "Sent.removed");
        let mut names = HashSet::new();
        for r in &d.resources {
            assert!(
                !r.name.is_empty(),
                "{t:?} response {nonce}: a resource without a name"
            );
            assert!(!r.version.is_empty(), "{t:?} {} without a version", r.name);
            let body = r.resource.as_ref();
            let body = body.unwrap_or_else(|| panic!("{t:?} {} without a body", r.name));
            assert_eq!(
                body.type_url, d.type_url,
                "{t:?} {}: the body's type",
                r.name
            );
            assert_eq!(inner_name(t, body), r.name, "{t:?}: the body's own name");
            assert!(
                names.insert(&r.name),
                "{t:?} response {nonce} names {} twice",
                r.name
            );
        }
        for name in &d.removed_resources {
            assert!(
                names.insert(name),
                "{t:?} response {nonce} names {name} twice (sent or removed)"
            );
            assert!(
                self.known[i].contains(name),
                "{t:?} response {nonce} removes {name}, which the proxy was never sent"
            );
        }
        assert!(
            self.flight.latest(t).is_none() || !names.is_empty(),
            "{t:?} response {nonce} carries nothing and is not the type's first"
        );
        if t == ResourceType::Route {
            let routes = d.resources.iter().map(|r| {
                let resource = sent.resources.get(&r.name);
                let resource = resource.expect("a route sent is in Sent.resources");
                assert_eq!(resource.version, r.version, "route {}'s version", r.name);
                &**resource
            });
            let (held, flight) = (&self.held, &self.flight);
            check_make_before_break(
                routes,
                |t, cluster| held[t.index()].contains_key(cluster),
                |t, cluster| {
                    let in_flight = flight.in_flight(t);
                    in_flight.is_some_and(|(_, s)| s.removed.iter().any(|n| n == cluster))
                },
            );
        }
        let resources: Vec<(String, String)> = d
            .resources
            .into_iter()
            .map(|r| (r.name, r.version))
            .collect();
        self.known[i].extend(resources.iter().map(|(n, _)| n.clone()));
        self.asked_since[i].clear();
        let kept = DeltaSent {
            resources,
            removed: d.removed_resources,
        };
        self.flight.sent(t, &d.nonce, kept);
    }

    /// See [`Self::converge`].
    fn check_holds_the_snapshot(&self) -> bool {
        if self.rejected.iter().any(|r| *r) {
            return false;
        }
        let snapshot = snapshots()[self.current].snapshot();
        for t in ResourceType::ALL {
            let want: BTreeMap<&str, &str> = snapshot
                .get(t)
                .resources
                .values()
                .map(|r| (r.name.as_str(), r.version.as_str()))
                .collect();
            let held = &self.held[t.index()];
            let held: BTreeMap<&str, &str> =
                held.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
            assert_eq!(
                held, want,
                "{t:?}: what the proxy holds once it accepted everything, against the snapshot"
            );
        }
        true
    }
}

/// The name inside a resource's body (Envoy applies clusters and listeners by it).
fn inner_name(t: ResourceType, body: &Any) -> String {
    let bytes = body.value.as_slice();
    let name = match t {
        ResourceType::Cluster => Cluster::decode(bytes).map(|c| c.name),
        ResourceType::Endpoint => ClusterLoadAssignment::decode(bytes).map(|c| c.cluster_name),
        ResourceType::Listener => Listener::decode(bytes).map(|l| l.name),
        ResourceType::Route => RouteConfiguration::decode(bytes).map(|r| r.name),
        ResourceType::Secret => Secret::decode(bytes).map(|s| s.name),
    };
    name.unwrap_or_else(|e| panic!("a {t:?} body that does not decode: {e}"))
}
