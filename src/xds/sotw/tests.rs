//! Unit tests of the SotW state machine: requests and snapshots in, responses and events
//! out, no network.

use super::*;
use crate::state::parse_str;
use crate::translate::translate;
use crate::xds::snapshot::{ResourceSet, Snapshot};
use crate::xds::sync::SyncStatus;
use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::google::rpc::Status;
use std::collections::BTreeSet;

/// One listener, one service (shared with the delta stream's tests).
pub(in crate::xds) const STATE: &str = "\
listeners:
  - name: public
    address: 127.0.0.1
    port: 10000
services:
  - name: summarizer
    listener: public
    blue: { endpoints: [\"127.0.0.1:8081\"] }
    green: { endpoints: [\"127.0.0.1:8082\"] }
    active: blue
";

/// A second service on the same listener, to append to [`STATE`].
pub(in crate::xds) const TWO_SERVICES: &str = "
  - name: extra
    listener: public
    domains: [\"extra.example\"]
    blue: { endpoints: [\"127.0.0.1:9081\"] }
    green: { endpoints: [\"127.0.0.1:9082\"] }
    active: green
";

fn snap(text: &str) -> Arc<Published> {
    Arc::new(Published::new(
        translate(&parse_str(text).unwrap()).unwrap(),
    ))
}

/// What the tests read of a stream's state.
impl SotwStream {
    fn acked_version(&self, t: ResourceType) -> Option<&str> {
        let acked = self.ledger.types[t.index()].acked.as_ref();
        acked.map(|s| s.version.as_str())
    }

    fn rejected(&self, t: ResourceType) -> Option<(&str, &str)> {
        let rejected = self.ledger.types[t.index()].rejected.as_ref();
        rejected.map(|(sent, message)| (sent.version.as_str(), message.as_str()))
    }

    fn sent_version(&self, t: ResourceType) -> String {
        let sent = self.ledger.types[t.index()].sent.as_ref();
        sent.map(|s| s.version.clone()).unwrap_or_default()
    }

    fn sent_resources(&self, t: ResourceType) -> Option<&Arc<ResourceSet>> {
        self.ledger.types[t.index()]
            .sent
            .as_ref()
            .map(|s| &s.resources)
    }
}

fn stream(text: &str) -> SotwStream {
    SotwStream::new(snap(text), "test")
}

fn request(t: ResourceType, version: &str, nonce: &str, names: &[&str]) -> DiscoveryRequest {
    DiscoveryRequest {
        version_info: version.to_owned(),
        type_url: t.type_url().to_owned(),
        response_nonce: nonce.to_owned(),
        resource_names: names.iter().map(|n| n.to_string()).collect(),
        node: Some(Node {
            id: "envoy-1".to_owned(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn ack(r: &EncodedResponse, names: &[&str]) -> DiscoveryRequest {
    let t = ResourceType::from_type_url(r.type_url).unwrap();
    request(t, &r.version_info, &r.nonce, names)
}

fn nack(r: &EncodedResponse, names: &[&str], message: &str) -> DiscoveryRequest {
    let t = ResourceType::from_type_url(r.type_url).unwrap();
    let mut req = request(t, "", &r.nonce, names);
    req.error_detail = Some(Status {
        code: 3,
        message: message.to_owned(),
        details: vec![],
    });
    req
}

fn types(step: &Step) -> Vec<ResourceType> {
    step.responses
        .iter()
        .map(|r| ResourceType::from_type_url(r.type_url).unwrap())
        .collect()
}

/// The nonce of the latest response sent for clusters.
fn last_nonce(s: &SotwStream) -> String {
    let sent = s.ledger.types[ResourceType::Cluster.index()].sent.as_ref();
    sent.map(|s| s.nonce.clone()).unwrap_or_default()
}

/// How many resources `r` carries, checking that it decodes to what it says.
fn resource_count(r: &EncodedResponse) -> usize {
    let decoded = r.decode();
    assert_eq!(decoded.resources.len(), r.resource_count);
    assert_eq!(decoded.nonce, r.nonce);
    assert_eq!(decoded.version_info, r.version_info);
    decoded.resources.len()
}

const CLUSTERS: [&str; 2] = ["summarizer-blue", "summarizer-green"];
const ALL_CLUSTERS: [&str; 4] = [
    "extra-blue",
    "extra-green",
    "summarizer-blue",
    "summarizer-green",
];

/// Drives a stream through Envoy's startup: CDS, EDS, LDS, RDS, all acknowledged.
/// Returns the last response of each type.
fn converge(s: &mut SotwStream) -> [EncodedResponse; 4] {
    converge_with(s, &CLUSTERS)
}

/// [`converge`] for a state whose clusters are `clusters`.
fn converge_with(s: &mut SotwStream, clusters: &[&str]) -> [EncodedResponse; 4] {
    let cds = s
        .on_request(request(ResourceType::Cluster, "", "", &[]))
        .responses;
    assert_eq!(cds.len(), 1);
    let step = s.on_request(request(ResourceType::Endpoint, "", "", clusters));
    let eds = step.responses[0].clone();
    s.on_request(ack(&cds[0], &[]));
    s.on_request(ack(&eds, clusters));
    let lds = s
        .on_request(request(ResourceType::Listener, "", "", &[]))
        .responses;
    let rds = s
        .on_request(request(ResourceType::Route, "", "", &["public"]))
        .responses;
    assert_eq!(rds.len(), 1, "routes sent once clusters are acknowledged");
    s.on_request(ack(&lds[0], &[]));
    s.on_request(ack(&rds[0], &["public"]));
    [cds[0].clone(), eds, lds[0].clone(), rds[0].clone()]
}

#[test]
fn first_request_is_answered_with_every_cluster() {
    let mut s = stream(STATE);
    let step = s.on_request(request(ResourceType::Cluster, "", "", &[]));
    assert_eq!(types(&step), [ResourceType::Cluster]);
    assert_eq!(resource_count(&step.responses[0]), 2);
    assert_eq!(s.node().unwrap().id, "envoy-1");
}

#[test]
fn ack_is_recorded_and_nothing_resent() {
    let mut s = stream(STATE);
    let r = s
        .on_request(request(ResourceType::Cluster, "", "", &[]))
        .responses;
    let step = s.on_request(ack(&r[0], &[]));
    assert!(step.responses.is_empty());
    assert_eq!(
        step.events,
        [StreamEvent::Acked {
            type_: ResourceType::Cluster,
            version: r[0].version_info.clone(),
            resources: s.sent_resources(ResourceType::Cluster).unwrap().clone(),
        }]
    );
    assert_eq!(
        s.acked_version(ResourceType::Cluster),
        Some(r[0].version_info.as_str())
    );
}

#[test]
fn nonces_are_unique_on_a_stream() {
    let mut s = stream(STATE);
    let all = converge(&mut s);
    let nonces: BTreeSet<&String> = all.iter().map(|r| &r.nonce).collect();
    assert_eq!(nonces.len(), 4);
}

#[test]
fn nack_is_recorded_and_not_resent() {
    let mut s = stream(STATE);
    let [_, _, _, rds] = converge(&mut s);
    let green = snap(&STATE.replace("active: blue", "active: green"));
    let step = s.on_snapshot(green);
    assert_eq!(types(&step), [ResourceType::Route]);
    let sent = step.responses[0].clone();
    let step = s.on_request(nack(&sent, &["public"], "bad route"));
    assert!(
        step.responses.is_empty(),
        "a rejected version is not resent"
    );
    assert_eq!(
        s.rejected(ResourceType::Route),
        Some((sent.version_info.as_str(), "bad route"))
    );
    // The proxy still runs what it acknowledged before.
    assert_eq!(
        s.acked_version(ResourceType::Route),
        Some(rds.version_info.as_str())
    );
    // The same snapshot again (e.g. a touch of the file) sends nothing either.
    let same = snap(&STATE.replace("active: blue", "active: green"));
    assert!(s.on_snapshot(same).responses.is_empty());
    // The next good version goes out normally.
    let step = s.on_snapshot(snap(STATE));
    assert_eq!(types(&step), [ResourceType::Route]);
    assert_eq!(step.responses[0].version_info, rds.version_info);
}

#[test]
fn stale_nonce_is_ignored() {
    let mut s = stream(STATE);
    let [_, _, _, rds] = converge(&mut s);
    let v2 = s.on_snapshot(snap(&STATE.replace("active: blue", "active: green")));
    assert_eq!(v2.responses.len(), 1);
    // A request still answering the previous response (sent before the proxy saw v2):
    // stale, ignored, nothing recorded, even as a NACK.
    let step = s.on_request(ack(&rds, &["public"]));
    assert!(step.responses.is_empty());
    assert!(matches!(step.events[..], [StreamEvent::Stale { .. }]));
    s.on_request(nack(&rds, &["public"], "old"));
    assert!(s.rejected(ResourceType::Route).is_none());
    assert_eq!(
        s.acked_version(ResourceType::Route),
        Some(rds.version_info.as_str())
    );
    // The reply to v2 is taken.
    s.on_request(ack(&v2.responses[0], &["public"]));
    assert_eq!(
        s.acked_version(ResourceType::Route),
        Some(v2.responses[0].version_info.as_str())
    );
}

#[test]
fn a_burst_of_versions_is_coalesced_while_one_is_in_flight() {
    let mut s = stream(STATE);
    converge(&mut s);
    let green = STATE.replace("active: blue", "active: green");
    let v2 = s.on_snapshot(snap(&green));
    assert_eq!(v2.responses.len(), 1);
    // More saves while v2 awaits its ACK: nothing is sent yet.
    assert!(s.on_snapshot(snap(STATE)).responses.is_empty());
    assert!(s.on_snapshot(snap(&green)).responses.is_empty());
    let latest = snap(STATE);
    assert!(s.on_snapshot(latest.clone()).responses.is_empty());
    assert_eq!(s.status(ResourceType::Route), SyncStatus::Stale);
    // The ACK of v2 releases the newest version only.
    let step = s.on_request(ack(&v2.responses[0], &["public"]));
    assert_eq!(types(&step), [ResourceType::Route]);
    assert_eq!(
        step.responses[0].version_info,
        latest.snapshot().version(ResourceType::Route)
    );
}

#[test]
fn reconnect_with_another_replicas_version_and_nonce_is_answered() {
    // The proxy acknowledged version V with nonce "42" on another replica.
    let other = {
        let mut s = stream(STATE);
        converge(&mut s)
    };
    let mut s = stream(STATE);
    for (t, prev, names) in [
        (ResourceType::Cluster, &other[0], &[][..]),
        (ResourceType::Endpoint, &other[1], &CLUSTERS[..]),
    ] {
        let step = s.on_request(request(t, &prev.version_info, "42", names));
        assert_eq!(types(&step), [t]);
        // Same file, same version: the proxy sees no change.
        assert_eq!(step.responses[0].version_info, prev.version_info);
    }
}

#[test]
fn streams_share_one_encoding_of_the_same_response() {
    let (mut a, mut b) = (stream(STATE), stream(STATE));
    converge(&mut a);
    converge(&mut b);
    let green = snap(&STATE.replace("active: blue", "active: green"));
    let ra = a.on_snapshot(green.clone()).responses;
    let rb = b.on_snapshot(green).responses;
    assert!(ra[0].shares_bytes_with(&rb[0]), "encoded twice");
    let (da, db) = (ra[0].decode(), rb[0].decode());
    assert_eq!(da.resources, db.resources);
    assert_eq!(da.version_info, db.version_info);
    assert_eq!(da.control_plane.unwrap().identifier, "test");
}

#[test]
fn switch_sends_only_routes() {
    let mut s = stream(STATE);
    converge(&mut s);
    let step = s.on_snapshot(snap(&STATE.replace("active: blue", "active: green")));
    assert_eq!(types(&step), [ResourceType::Route]);
}

#[test]
fn routes_wait_until_new_clusters_and_endpoints_are_acknowledged() {
    let mut s = stream(STATE);
    converge(&mut s);
    let two = format!("{STATE}{TWO_SERVICES}");
    let step = s.on_snapshot(snap(&two));
    // Clusters go out; EDS waits for Envoy to ask for the new names; routes wait.
    assert_eq!(types(&step), [ResourceType::Cluster]);
    let cds = step.responses[0].clone();
    assert_eq!(resource_count(&cds), 4);
    let all = [
        "extra-blue",
        "extra-green",
        "summarizer-blue",
        "summarizer-green",
    ];
    let step = s.on_request(request(ResourceType::Endpoint, "x", "", &all));
    assert!(matches!(step.events[..], [StreamEvent::Stale { .. }]));
    // Envoy's EDS request naming the new clusters carries the latest EDS nonce.
    let eds_nonce = s.ledger.types[ResourceType::Endpoint.index()]
        .sent
        .as_ref()
        .unwrap()
        .nonce
        .clone();
    let step = s.on_request(request(ResourceType::Endpoint, "x", &eds_nonce, &all));
    assert_eq!(types(&step), [ResourceType::Endpoint]);
    let eds = step.responses[0].clone();
    assert_eq!(resource_count(&eds), 4);
    let step = s.on_request(ack(&cds, &[]));
    assert!(step.responses.is_empty(), "routes still wait for endpoints");
    let step = s.on_request(ack(&eds, &all));
    assert_eq!(types(&step), [ResourceType::Route]);
}

#[test]
fn removed_clusters_stay_until_routes_without_them_are_acknowledged() {
    let two = format!("{STATE}{TWO_SERVICES}");
    let all = ALL_CLUSTERS;
    let mut s = stream(&two);
    converge_with(&mut s, &all);

    // `extra` is removed: routes without it go out; clusters keep it for now.
    // The proxy already holds exactly those clusters, so only routes are sent.
    let step = s.on_snapshot(snap(STATE));
    assert_eq!(types(&step), [ResourceType::Route]);
    let rds2 = step.responses[0].clone();
    // Once the proxy acknowledges the routes, the clusters are withdrawn.
    let step = s.on_request(ack(&rds2, &["public"]));
    assert_eq!(types(&step), [ResourceType::Cluster]);
    assert_eq!(resource_count(&step.responses[0]), 2);
}

#[test]
fn routes_naming_a_cluster_being_withdrawn_wait_for_it_to_come_back() {
    let two = format!("{STATE}{TWO_SERVICES}");
    let all = ALL_CLUSTERS;
    let mut s = stream(&two);
    converge_with(&mut s, &all);
    // `extra` removed: routes without it, then (after their ACK) clusters without it.
    let rds2 = s.on_snapshot(snap(STATE)).responses[0].clone();
    let step = s.on_request(ack(&rds2, &["public"]));
    assert_eq!(types(&step), [ResourceType::Cluster]);
    let withdrawing = step.responses[0].clone();
    // `extra` comes back while that withdrawal is in flight: routes naming it must wait,
    // since the proxy is about to drop its clusters.
    let step = s.on_snapshot(snap(&two));
    assert!(step.responses.is_empty(), "{:?}", types(&step));
    // The withdrawal is acknowledged; the clusters go out again, then endpoints on
    // request, and only then the routes.
    let step = s.on_request(ack(&withdrawing, &[]));
    assert_eq!(types(&step), [ResourceType::Cluster]);
    let cds3 = step.responses[0].clone();
    let eds_nonce = s.ledger.types[ResourceType::Endpoint.index()]
        .sent
        .as_ref()
        .unwrap()
        .nonce
        .clone();
    let step = s.on_request(request(ResourceType::Endpoint, "", &eds_nonce, &all[2..]));
    assert!(
        step.responses
            .iter()
            .all(|r| r.type_url != ResourceType::Route.type_url())
    );
    s.on_request(ack(&cds3, &[]));
    let eds3 = s.ledger.types[ResourceType::Endpoint.index()]
        .sent
        .as_ref()
        .unwrap()
        .clone();
    let step = s.on_request(request(
        ResourceType::Endpoint,
        &eds3.version,
        &eds3.nonce,
        &all,
    ));
    assert_eq!(types(&step), [ResourceType::Endpoint]);
    let step = s.on_request(ack(&step.responses[0], &all));
    assert_eq!(types(&step), [ResourceType::Route]);
}

#[test]
fn subscription_change_is_answered_without_a_new_version() {
    let mut s = stream(STATE);
    let [_, eds, _, _] = converge(&mut s);
    let step = s.on_request(ack(&eds, &["summarizer-blue"]));
    assert_eq!(types(&step), [ResourceType::Endpoint]);
    assert_eq!(resource_count(&step.responses[0]), 1);
    assert_eq!(step.responses[0].version_info, eds.version_info);
}

#[test]
fn names_listed_in_another_order_are_the_same_subscription() {
    let mut s = stream(STATE);
    let [_, eds, _, _] = converge(&mut s);
    // Envoy need not list names sorted: the same set in another order changes nothing.
    let step = s.on_request(ack(&eds, &["summarizer-green", "summarizer-blue"]));
    assert!(step.responses.is_empty(), "{:?}", types(&step));
    assert_eq!(s.status(ResourceType::Endpoint), SyncStatus::Synced);
    // A name dropped is a change, answered at once.
    let step = s.on_request(ack(&eds, &["summarizer-green"]));
    assert_eq!(types(&step), [ResourceType::Endpoint]);
    assert_eq!(resource_count(&step.responses[0]), 1);
}

#[test]
fn endpoints_for_every_cluster_are_the_snapshots_own_set_not_a_copy() {
    // Envoy asks for the endpoints of every cluster it was sent: that subscription is the
    // snapshot's set of names, and what is sent for it the snapshot's own resources, both
    // shared by every stream however many clusters there are.
    let mut s = stream(STATE);
    converge(&mut s);
    let first = s.ledger.published.clone();
    let endpoints = |snap: &Snapshot| snap.get(ResourceType::Endpoint).clone();
    let sent = s.sent_resources(ResourceType::Endpoint).unwrap();
    assert!(
        Arc::ptr_eq(sent, &endpoints(first.snapshot()).resources),
        "endpoints copied"
    );
    let subscribed = |s: &SotwStream| s.ledger.types[ResourceType::Endpoint.index()].names.clone();
    assert!(
        matches!(subscribed(&s), Names::Listed(n) if Arc::ptr_eq(&n, &endpoints(first.snapshot()).names))
    );

    // New endpoints, same clusters, published as the server does: the next snapshot's
    // resources are sent, still shared, and the subscription (the same names, acknowledged
    // again) holds nothing of the first snapshot's resources.
    let mut moved = translate(&parse_str(&STATE.replace("8081", "8091")).unwrap()).unwrap();
    moved.share_unchanged(first.snapshot());
    let moved = Arc::new(Published::new(moved));
    let first_endpoints = Arc::downgrade(&endpoints(first.snapshot()).resources);
    drop(first);
    let step = s.on_snapshot(moved.clone());
    assert_eq!(types(&step), [ResourceType::Endpoint]);
    assert!(Arc::ptr_eq(
        s.sent_resources(ResourceType::Endpoint).unwrap(),
        &endpoints(moved.snapshot()).resources
    ));
    s.on_request(ack(&step.responses[0], &CLUSTERS));
    assert!(
        matches!(subscribed(&s), Names::Listed(n) if Arc::ptr_eq(&n, &endpoints(moved.snapshot()).names))
    );
    assert!(first_endpoints.upgrade().is_none(), "old endpoints pinned");

    // A narrower subscription gets a set of its own, with just what it asked for.
    let step = s.on_request(ack(&step.responses[0], &["summarizer-green"]));
    assert_eq!(resource_count(&step.responses[0]), 1);
    let narrowed = s.sent_resources(ResourceType::Endpoint).unwrap();
    assert_eq!(narrowed.keys().collect::<Vec<_>>(), ["summarizer-green"]);
}

#[test]
fn unknown_type_is_ignored() {
    let mut s = stream(STATE);
    let mut req = request(ResourceType::Cluster, "", "", &[]);
    req.type_url = "type.googleapis.com/envoy.service.runtime.v3.Runtime".into();
    let step = s.on_request(req);
    assert!(step.responses.is_empty());
    assert!(matches!(step.events[..], [StreamEvent::UnknownType { .. }]));
}

#[test]
fn node_is_kept_from_the_first_message_only() {
    let mut s = stream(STATE);
    let r = s
        .on_request(request(ResourceType::Cluster, "", "", &[]))
        .responses;
    let mut req = ack(&r[0], &[]);
    req.node = None;
    s.on_request(req);
    assert_eq!(s.node().unwrap().id, "envoy-1");
}

#[test]
fn an_empty_first_request_for_clusters_is_the_legacy_wildcard() {
    let mut s = stream(&format!("{STATE}{TWO_SERVICES}"));
    let step = s.on_request(request(ResourceType::Cluster, "", "", &[]));
    assert_eq!(resource_count(&step.responses[0]), 4);
    // Envoy repeats the empty list in every ACK: still every cluster.
    let step = s.on_request(ack(&step.responses[0], &[]));
    assert!(step.responses.is_empty());
    assert_eq!(s.status(ResourceType::Cluster), SyncStatus::Synced);
}

#[test]
fn an_empty_first_request_for_endpoints_asks_for_none() {
    let mut s = stream(STATE);
    let step = s.on_request(request(ResourceType::Endpoint, "", "", &[]));
    assert_eq!(resource_count(&step.responses[0]), 0);
}

#[test]
fn a_star_asks_for_every_resource_of_any_type() {
    let mut s = stream(STATE);
    let step = s.on_request(request(ResourceType::Endpoint, "", "", &["*"]));
    assert_eq!(resource_count(&step.responses[0]), 2);
    // `*` beside names is still every resource.
    let step = s.on_request(ack(&step.responses[0], &["*", "summarizer-blue"]));
    assert!(step.responses.is_empty(), "the same subscription");
}

#[test]
fn once_names_are_listed_an_empty_list_unsubscribes_from_everything() {
    let mut s = stream(STATE);
    let cds = s
        .on_request(request(ResourceType::Cluster, "", "", &[]))
        .responses;
    // The stream names one cluster: no longer a wildcard subscription.
    let step = s.on_request(ack(&cds[0], &["summarizer-blue"]));
    assert_eq!(resource_count(&step.responses[0]), 1);
    // An empty list now means none, not every cluster again.
    let step = s.on_request(ack(&step.responses[0], &[]));
    assert_eq!(types(&step), [ResourceType::Cluster]);
    assert_eq!(resource_count(&step.responses[0]), 0);
    s.on_request(ack(&step.responses[0], &[]));
    assert_eq!(s.status(ResourceType::Cluster), SyncStatus::NotSubscribed);
    assert!(!s.wildcard(ResourceType::Cluster));
    // `*` subscribes to everything again.
    let last = s.sent_version(ResourceType::Cluster);
    let step = s.on_request(request(
        ResourceType::Cluster,
        &last,
        &last_nonce(&s),
        &["*"],
    ));
    assert_eq!(resource_count(&step.responses[0]), 2);
    assert!(s.wildcard(ResourceType::Cluster));
}

#[test]
fn a_stream_that_sent_a_star_then_an_empty_list_unsubscribes() {
    let mut s = stream(STATE);
    let step = s.on_request(request(ResourceType::Listener, "", "", &["*"]));
    assert_eq!(resource_count(&step.responses[0]), 1);
    let step = s.on_request(ack(&step.responses[0], &[]));
    assert_eq!(resource_count(&step.responses[0]), 0);
}

#[test]
fn a_nack_leaves_the_type_rejected_until_something_newer_is_sent() {
    let mut s = stream(STATE);
    converge(&mut s);
    let green = s.on_snapshot(snap(&STATE.replace("active: blue", "active: green")));
    assert_eq!(s.status(ResourceType::Route), SyncStatus::Stale);
    s.on_request(nack(&green.responses[0], &["public"], "bad route"));
    assert_eq!(s.status(ResourceType::Route), SyncStatus::Rejected);
    // Back to blue: sent, then acknowledged.
    let blue = s.on_snapshot(snap(STATE));
    assert_eq!(s.status(ResourceType::Route), SyncStatus::Stale);
    s.on_request(ack(&blue.responses[0], &["public"]));
    assert_eq!(s.status(ResourceType::Route), SyncStatus::Synced);
}

#[test]
fn a_rejected_version_sent_again_and_acknowledged_is_synced_not_rejected() {
    // Rejection belongs to a response, not a version string: green was rejected once,
    // then blue, then green again, which the proxy took this time.
    let mut s = stream(STATE);
    converge(&mut s);
    let green_text = STATE.replace("active: blue", "active: green");
    let first = s.on_snapshot(snap(&green_text));
    s.on_request(nack(&first.responses[0], &["public"], "not now"));
    let blue = s.on_snapshot(snap(STATE));
    s.on_request(ack(&blue.responses[0], &["public"]));
    let again = s.on_snapshot(snap(&green_text));
    assert_eq!(
        again.responses[0].version_info,
        first.responses[0].version_info
    );
    s.on_request(ack(&again.responses[0], &["public"]));
    assert_eq!(s.status(ResourceType::Route), SyncStatus::Synced);
    assert_eq!(
        s.rejected(ResourceType::Route).map(|r| r.1),
        Some("not now"),
        "the old rejection is still on record"
    );
}

#[test]
fn statuses_start_not_subscribed_and_a_subscription_waiting_for_its_reply_is_stale() {
    let mut s = stream(STATE);
    assert_eq!(s.statuses(), [SyncStatus::NotSubscribed; 5]);
    s.on_request(request(ResourceType::Cluster, "", "", &[]));
    assert_eq!(s.status(ResourceType::Cluster), SyncStatus::Stale);
    assert_eq!(s.status(ResourceType::Listener), SyncStatus::NotSubscribed);
}

#[test]
fn a_subscription_change_after_a_nack_is_not_an_ack() {
    let mut s = stream(STATE);
    let [_, eds, _, _] = converge(&mut s);
    let moved = s.on_snapshot(snap(&STATE.replace("8081", "8091")));
    let rejected = &moved.responses[0];
    s.on_request(nack(rejected, &CLUSTERS, "bad endpoints"));
    // Envoy then narrows its subscription: the rejected response's nonce, the version it
    // still runs, no error.
    let mut req = ack(rejected, &["summarizer-green"]);
    req.version_info = eds.version_info.clone();
    let step = s.on_request(req);
    assert!(
        !step
            .events
            .iter()
            .any(|e| matches!(e, StreamEvent::Acked { .. })),
        "{:?}",
        step.events
    );
    assert_eq!(
        s.acked_version(ResourceType::Endpoint),
        Some(eds.version_info.as_str())
    );
    assert_eq!(s.status(ResourceType::Endpoint), SyncStatus::Stale);
}

#[test]
fn a_second_ack_of_the_same_response_is_not_counted_again() {
    let mut s = stream(STATE);
    let [_, eds, _, _] = converge(&mut s);
    let step = s.on_request(ack(&eds, &CLUSTERS));
    assert!(step.events.is_empty(), "{:?}", step.events);
}

#[test]
fn the_same_nack_again_is_counted_but_not_recorded_again() {
    let mut s = stream(STATE);
    converge(&mut s);
    let green = s.on_snapshot(snap(&STATE.replace("active: blue", "active: green")));
    let sent = &green.responses[0];
    let first = s.on_request(nack(sent, &["public"], "bad route"));
    assert!(matches!(first.events[..], [StreamEvent::Rejected { .. }]));
    for _ in 0..3 {
        let again = s.on_request(nack(sent, &["public"], "bad route"));
        assert_eq!(
            again.events,
            [StreamEvent::RepeatedNack {
                type_: ResourceType::Route
            }]
        );
        assert!(again.responses.is_empty());
    }
    // Another message for the same response is news.
    let other = s.on_request(nack(sent, &["public"], "worse route"));
    assert!(matches!(other.events[..], [StreamEvent::Rejected { .. }]));
}

#[test]
fn a_huge_nack_message_is_kept_cut_to_a_bound() {
    let mut s = stream(STATE);
    converge(&mut s);
    let green = s.on_snapshot(snap(&STATE.replace("active: blue", "active: green")));
    let huge = "é".repeat(1_000_000); // 2 MB of two-byte characters
    let step = s.on_request(nack(&green.responses[0], &["public"], &huge));
    let [StreamEvent::Rejected { message, .. }] = &step.events[..] else {
        panic!("{:?}", step.events)
    };
    assert!(
        message.len() < MAX_NACK_MESSAGE + 64,
        "{} bytes",
        message.len()
    );
    assert!(
        message.ends_with("... (1995904 more bytes cut)"),
        "{}",
        &message[4000..]
    );
    // The same huge message again is the same rejection.
    let again = s.on_request(nack(&green.responses[0], &["public"], &huge));
    assert!(matches!(
        again.events[..],
        [StreamEvent::RepeatedNack { .. }]
    ));
}

#[test]
fn routes_wait_for_the_secrets_a_cluster_needs_and_a_dns_cluster_needs_no_endpoints() {
    use crate::state::files::Files;
    use crate::translate::translate_with;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("key"), "k").unwrap();
    // Blue is a DNS cluster with a credential; green is a plain EDS cluster.
    let text = STATE.replace(
        "blue: { endpoints: [\"127.0.0.1:8081\"] }",
        "blue: { endpoints: [\"models.internal:8081\"], credential: {file: key} }",
    );
    let state = parse_str(&text).unwrap();
    let files = Files::read(&state, dir.path()).unwrap();
    let snapshot = translate_with(&state, &files).unwrap();
    let mut s = SotwStream::new(Arc::new(Published::new(snapshot)), "test");
    let cds = s.on_request(request(ResourceType::Cluster, "", "", &[]));
    s.on_request(ack(&cds.responses[0], &[]));
    // Envoy asks for green's endpoints (blue has none over EDS) and blue's secret.
    let eds = s.on_request(request(
        ResourceType::Endpoint,
        "",
        "",
        &["summarizer-green"],
    ));
    s.on_request(ack(&eds.responses[0], &["summarizer-green"]));
    let secret = ["summarizer-blue-credential"];
    let sds = s.on_request(request(ResourceType::Secret, "", "", &secret));
    assert_eq!(types(&sds), [ResourceType::Secret]);
    let lds = s.on_request(request(ResourceType::Listener, "", "", &[]));
    s.on_request(ack(&lds.responses[0], &[]));
    // The secret is not acknowledged yet: the routes wait.
    let rds = s.on_request(request(ResourceType::Route, "", "", &["public"]));
    assert!(rds.responses.is_empty(), "routes before the secret is held");
    let step = s.on_request(ack(&sds.responses[0], &secret));
    assert_eq!(types(&step), [ResourceType::Route]);
    s.on_request(ack(&step.responses[0], &["public"]));
    assert_eq!(
        s.statuses(),
        [SyncStatus::Synced; 5],
        "every type, secrets too"
    );
}
