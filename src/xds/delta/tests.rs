//! Unit tests of the delta state machine: requests and snapshots in, responses and events
//! out, no network. One test per protocol case.

use super::*;
use crate::state::parse_str;
use crate::translate::translate;
use crate::xds::snapshot::{Snapshot, TypeSnapshot};
use crate::xds::sync::SyncStatus;
use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::google::rpc::Status;
use std::collections::HashMap;

use ResourceType::{Cluster, Endpoint, Listener, Route};

use crate::xds::sotw::tests::{STATE, TWO_SERVICES as EXTRA};

/// A second listener (and route configuration), for switches that change one of two.
const ADMIN: &str = "\
listeners:
  - name: public
    address: 127.0.0.1
    port: 10000
  - name: internal
    address: 127.0.0.1
    port: 10001
services:
  - name: summarizer
    listener: public
    blue: { endpoints: [\"127.0.0.1:8081\"] }
    green: { endpoints: [\"127.0.0.1:8082\"] }
    active: blue
  - name: triage
    listener: internal
    blue: { endpoints: [\"127.0.0.1:7081\"] }
    green: { endpoints: [\"127.0.0.1:7082\"] }
    active: blue
";

const CLUSTERS: [&str; 2] = ["summarizer-blue", "summarizer-green"];

fn snapshot(text: &str) -> Snapshot {
    translate(&parse_str(text).unwrap()).unwrap()
}

fn snap(text: &str) -> Arc<Published> {
    Arc::new(Published::new(snapshot(text)))
}

fn stream(text: &str) -> DeltaStream {
    DeltaStream::new(snap(text), "test")
}

fn strings(names: &[&str]) -> Vec<String> {
    names.iter().map(|n| n.to_string()).collect()
}

/// A request for `t` subscribing and unsubscribing names, answering `nonce` (empty: none).
fn request(
    t: ResourceType,
    subscribe: &[&str],
    unsubscribe: &[&str],
    nonce: &str,
) -> DeltaDiscoveryRequest {
    DeltaDiscoveryRequest {
        type_url: t.type_url().to_owned(),
        resource_names_subscribe: strings(subscribe),
        resource_names_unsubscribe: strings(unsubscribe),
        response_nonce: nonce.to_owned(),
        node: Some(Node {
            id: "envoy-1".to_owned(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn type_of(r: &EncodedResponse) -> ResourceType {
    ResourceType::from_type_url(r.type_url).unwrap()
}

fn ack(r: &EncodedResponse) -> DeltaDiscoveryRequest {
    request(type_of(r), &[], &[], &r.nonce)
}

fn nack(r: &EncodedResponse, message: &str) -> DeltaDiscoveryRequest {
    let mut req = ack(r);
    req.error_detail = Some(Status {
        code: 13,
        message: message.to_owned(),
        details: vec![],
    });
    req
}

/// The names of the resources a response carries, checking that it decodes to what it
/// says and that each resource's name is its body's.
fn carried(r: &EncodedResponse) -> Vec<String> {
    let d = r.decode_delta();
    assert_eq!(d.nonce, r.nonce);
    assert_eq!(d.system_version_info, r.version_info);
    assert_eq!(d.resources.len(), r.resource_count);
    assert_eq!(d.type_url, r.type_url);
    for res in &d.resources {
        let body = res.resource.as_ref().expect("a resource has a body");
        assert_eq!(
            body.type_url, r.type_url,
            "the body's type is the response's"
        );
        assert!(!res.version.is_empty(), "every resource has a version");
    }
    d.resources.into_iter().map(|r| r.name).collect()
}

fn removed(r: &EncodedResponse) -> Vec<String> {
    r.decode_delta().removed_resources
}

/// Each resource's name and version, as a reconnecting Envoy lists them.
fn versions(r: &EncodedResponse) -> HashMap<String, String> {
    let d = r.decode_delta();
    d.resources
        .into_iter()
        .map(|r| (r.name, r.version))
        .collect()
}

/// The response of type `t` in `step`.
fn response_of(step: Step, t: ResourceType) -> EncodedResponse {
    let mut responses = step.responses.into_iter();
    responses
        .find(|r| type_of(r) == t)
        .expect("a response of that type")
}

fn types(step: &Step) -> Vec<ResourceType> {
    step.responses.iter().map(type_of).collect()
}

fn only(step: Step) -> EncodedResponse {
    assert_eq!(step.responses.len(), 1, "{:?}", types(&step));
    step.responses.into_iter().next().unwrap()
}

fn sent_events(step: &Step) -> Vec<(ResourceType, usize, usize)> {
    step.events
        .iter()
        .filter_map(|e| match e {
            StreamEvent::Sent {
                type_,
                carried,
                removed,
                ..
            } => Some((*type_, *carried, *removed)),
            _ => None,
        })
        .collect()
}

/// Drives a stream through Envoy's startup as a delta Envoy does it: CDS (wildcard), the
/// endpoints of the clusters received, LDS (wildcard), the route configurations the
/// listeners name, every response acknowledged. Returns the response of each type.
/// Every type synced but secrets, which the test states have none of and no stream asks for.
const SYNCED: [SyncStatus; 5] = [
    SyncStatus::Synced,
    SyncStatus::Synced,
    SyncStatus::NotSubscribed,
    SyncStatus::Synced,
    SyncStatus::Synced,
];

fn converge(s: &mut DeltaStream) -> [EncodedResponse; 4] {
    let cds = only(s.on_request(request(Cluster, &[], &[], "")));
    let clusters = carried(&cds);
    let names: Vec<&str> = clusters.iter().map(String::as_str).collect();
    let eds = only(s.on_request(request(Endpoint, &names, &[], "")));
    assert!(s.on_request(ack(&eds)).responses.is_empty());
    assert!(s.on_request(ack(&cds)).responses.is_empty());
    let lds = only(s.on_request(request(Listener, &[], &[], "")));
    let listeners = carried(&lds);
    let names: Vec<&str> = listeners.iter().map(String::as_str).collect();
    let rds = only(s.on_request(request(Route, &names, &[], "")));
    assert!(s.on_request(ack(&rds)).responses.is_empty());
    assert!(s.on_request(ack(&lds)).responses.is_empty());
    assert_eq!(s.statuses(), SYNCED);
    [cds, eds, lds, rds]
}

#[test]
fn a_first_wildcard_request_is_answered_with_every_cluster_each_with_its_version() {
    let mut s = stream(STATE);
    let step = s.on_request(request(Cluster, &[], &[], ""));
    let cds = only(step);
    assert_eq!(carried(&cds), CLUSTERS);
    assert!(removed(&cds).is_empty());
    assert_eq!(cds.version_info, s.snapshot().version(Cluster));
    let current = &s.snapshot().get(Cluster).resources;
    for (name, version) in versions(&cds) {
        assert_eq!(
            current[&name].version, version,
            "{name}: the resource's own version"
        );
    }
    assert!(s.wildcard(Cluster));
}

#[test]
fn the_first_wildcard_response_is_sent_even_when_there_is_nothing() {
    let mut s = DeltaStream::new(Arc::new(Published::new(Snapshot::empty())), "test");
    let cds = only(s.on_request(request(Cluster, &[], &[], "")));
    assert!(carried(&cds).is_empty() && removed(&cds).is_empty());
    assert!(s.on_request(ack(&cds)).responses.is_empty());
    assert_eq!(s.status(Cluster), SyncStatus::Synced);
}

#[test]
fn an_ack_by_nonce_is_recorded_and_nothing_is_sent_again() {
    let mut s = stream(STATE);
    let cds = only(s.on_request(request(Cluster, &[], &[], "")));
    let step = s.on_request(ack(&cds));
    assert!(step.responses.is_empty());
    assert!(matches!(
        step.events[..],
        [StreamEvent::Acked { type_: Cluster, .. }]
    ));
    assert_eq!(s.status(Cluster), SyncStatus::Synced);
    // The same ACK again is not counted again.
    assert!(s.on_request(ack(&cds)).events.is_empty());
}

#[test]
fn nonces_are_unique_on_a_stream() {
    let mut s = stream(STATE);
    let all = converge(&mut s);
    let nonces: BTreeSet<&str> = all.iter().map(|r| r.nonce.as_str()).collect();
    assert_eq!(nonces.len(), 4);
}

#[test]
fn a_nack_is_recorded_with_envoys_message_and_the_same_set_is_not_sent_again() {
    let mut s = stream(STATE);
    let cds = only(s.on_request(request(Cluster, &[], &[], "")));
    let step = s.on_request(nack(
        &cds,
        "Error adding/updating cluster(s) summarizer-blue",
    ));
    assert!(step.responses.is_empty(), "not sent again");
    match &step.events[..] {
        [
            StreamEvent::Rejected {
                type_,
                message,
                version,
            },
        ] => {
            assert_eq!(*type_, Cluster);
            assert_eq!(message, "Error adding/updating cluster(s) summarizer-blue");
            assert_eq!(version, s.snapshot().version(Cluster));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(s.status(Cluster), SyncStatus::Rejected);
    // A new snapshot with the same clusters sends nothing either.
    let step = s.on_snapshot(snap(&STATE.replace("active: blue", "active: green")));
    assert!(!types(&step).contains(&Cluster));
}

#[test]
fn after_a_nack_the_next_response_sends_again_every_name_the_rejected_one_touched() {
    let mut s = stream(STATE);
    let [cds, ..] = converge(&mut s);
    let _ = cds;
    // A service is added; Envoy rejects the clusters (it may have kept the valid ones).
    let with_extra = format!("{STATE}{EXTRA}");
    let step = s.on_snapshot(snap(&with_extra));
    let cds = response_of(step, Cluster);
    assert_eq!(carried(&cds), ["extra-blue", "extra-green"]);
    assert!(s.on_request(nack(&cds, "bad cluster")).responses.is_empty());
    // The operator takes the service out again: what the rejected response added is
    // removed, though the proxy never acknowledged holding it.
    let cds = only(s.on_snapshot(snap(STATE)));
    assert!(carried(&cds).is_empty());
    assert_eq!(removed(&cds), ["extra-blue", "extra-green"]);
    s.on_request(ack(&cds));
    assert_eq!(s.status(Cluster), SyncStatus::Synced);
    // And if it is added once more, it is sent again in full.
    let step = s.on_snapshot(snap(&with_extra));
    let cds = response_of(step, Cluster);
    assert_eq!(carried(&cds), ["extra-blue", "extra-green"]);
}

#[test]
fn a_stale_nonce_is_ignored_but_its_subscription_change_is_applied() {
    let mut s = stream(STATE);
    converge(&mut s);
    // A request answering an old nonce, subscribing to nothing new: ignored.
    let step = s.on_request(request(Cluster, &[], &[], "999"));
    assert!(step.responses.is_empty());
    assert!(matches!(
        step.events[..],
        [StreamEvent::Stale { type_: Cluster, .. }]
    ));
    // One that also unsubscribes endpoints: the change is applied.
    let step = s.on_request(request(Endpoint, &[], &["summarizer-green"], "999"));
    assert!(step.responses.is_empty(), "an unsubscribe needs no reply");
    let names = s.ledger.types[Endpoint.index()]
        .names
        .list()
        .unwrap()
        .clone();
    assert_eq!(names.iter().collect::<Vec<_>>(), ["summarizer-blue"]);
}

#[test]
fn names_subscribed_on_a_live_stream_are_sent_and_only_they() {
    let mut s = stream(STATE);
    let cds = only(s.on_request(request(Cluster, &[], &[], "")));
    let eds = only(s.on_request(request(Endpoint, &["summarizer-blue"], &[], "")));
    assert_eq!(carried(&eds), ["summarizer-blue"]);
    s.on_request(ack(&cds));
    s.on_request(ack(&eds));
    let eds = only(s.on_request(request(Endpoint, &["summarizer-green"], &[], "")));
    assert_eq!(carried(&eds), ["summarizer-green"], "not the one it holds");
    s.on_request(ack(&eds));
    assert_eq!(s.status(Endpoint), SyncStatus::Synced);
}

#[test]
fn an_unsubscribe_needs_no_reply_and_a_name_subscribed_again_is_sent_again() {
    let mut s = stream(STATE);
    converge(&mut s);
    let step = s.on_request(request(Endpoint, &[], &["summarizer-green"], ""));
    assert!(step.responses.is_empty());
    assert_eq!(s.status(Endpoint), SyncStatus::Synced);
    let held = s.ledger.types[Endpoint.index()].acked.clone().unwrap();
    assert!(
        !held.resources.contains_key("summarizer-green"),
        "no longer held"
    );
    // Subscribed again: sent again, although its version has not changed.
    let eds = only(s.on_request(request(Endpoint, &["summarizer-green"], &[], "")));
    assert_eq!(carried(&eds), ["summarizer-green"]);
    // Even a name still held is sent again when it is subscribed again.
    s.on_request(ack(&eds));
    let eds = only(s.on_request(request(Endpoint, &["summarizer-blue"], &[], "")));
    assert_eq!(carried(&eds), ["summarizer-blue"]);
}

#[test]
fn a_name_never_sent_is_never_removed() {
    let mut s = stream(STATE);
    converge(&mut s);
    let step = s.on_request(request(Endpoint, &["no-such-cluster"], &[], ""));
    assert!(
        step.responses.is_empty(),
        "nothing to send for a name that does not exist"
    );
    let step = s.on_request(request(Endpoint, &[], &["no-such-cluster"], ""));
    assert!(step.responses.is_empty(), "and no removal for it");
}

#[test]
fn a_switch_sends_only_the_route_configuration_that_changed() {
    let mut s = stream(ADMIN);
    converge(&mut s);
    let step = s.on_snapshot(snap(&ADMIN.replacen("active: blue", "active: green", 1)));
    assert_eq!(types(&step), [Route]);
    assert_eq!(sent_events(&step), [(Route, 1, 0)]);
    let rds = only(step);
    assert_eq!(
        carried(&rds),
        ["public"],
        "not `internal`, which did not change"
    );
    assert!(removed(&rds).is_empty());
    s.on_request(ack(&rds));
    assert_eq!(s.statuses(), SYNCED);
}

#[test]
fn routes_wait_until_new_clusters_and_their_endpoints_are_acknowledged() {
    let mut s = stream(STATE);
    converge(&mut s);
    let step = s.on_snapshot(snap(&format!("{STATE}{EXTRA}")));
    assert_eq!(
        types(&step),
        [Cluster],
        "routes naming the new clusters wait"
    );
    let cds = only(step);
    assert_eq!(
        carried(&cds),
        ["extra-blue", "extra-green"],
        "only the new clusters"
    );
    // Envoy asks for the new clusters' endpoints before it acknowledges them (it holds the
    // CDS ACK while they warm): they are sent without waiting for that ACK.
    let eds = only(s.on_request(request(Endpoint, &["extra-blue", "extra-green"], &[], "")));
    assert_eq!(carried(&eds), ["extra-blue", "extra-green"]);
    assert!(
        s.on_request(ack(&eds)).responses.is_empty(),
        "clusters not yet acked"
    );
    let rds = only(s.on_request(ack(&cds)));
    assert_eq!(type_of(&rds), Route);
    assert_eq!(carried(&rds), ["public"]);
}

#[test]
fn a_removed_cluster_stays_until_routes_without_it_are_acknowledged_then_is_removed() {
    let with_extra = format!("{STATE}{EXTRA}");
    let mut s = stream(&with_extra);
    converge(&mut s);
    let step = s.on_snapshot(snap(STATE));
    assert_eq!(types(&step), [Route], "clusters first stay");
    let rds = only(step);
    let cds = only(s.on_request(ack(&rds)));
    assert_eq!(type_of(&cds), Cluster);
    assert!(carried(&cds).is_empty());
    assert_eq!(removed(&cds), ["extra-blue", "extra-green"]);
    assert_eq!(sent_events(&s.on_request(ack(&cds))), []);
    // Envoy drops the endpoints of clusters it removed: no reply.
    let step = s.on_request(request(Endpoint, &[], &["extra-blue", "extra-green"], ""));
    assert!(step.responses.is_empty());
    assert_eq!(s.statuses(), SYNCED);
}

#[test]
fn one_response_per_type_is_in_flight_and_a_burst_is_coalesced() {
    let mut s = stream(STATE);
    converge(&mut s);
    let green = STATE.replace("active: blue", "active: green");
    let rds = only(s.on_snapshot(snap(&green)));
    assert!(
        s.on_snapshot(snap(STATE)).responses.is_empty(),
        "one in flight"
    );
    assert!(s.on_snapshot(snap(&green)).responses.is_empty());
    let last = snap(STATE);
    let _ = s.on_snapshot(last);
    let next = only(s.on_request(ack(&rds)));
    assert_eq!(
        next.version_info,
        s.snapshot().version(Route),
        "the newest, once"
    );
}

/// A proxy that held `responses` reconnects: its first request of each type lists what it
/// holds, as a delta Envoy does.
fn reconnect(s: &mut DeltaStream, held: &[EncodedResponse; 4]) -> Vec<Step> {
    let names = |r: &EncodedResponse| carried(r);
    let mut steps = Vec::new();
    for r in held {
        let t = type_of(r);
        let subscribe = if t.is_wildcard_type() {
            Vec::new()
        } else {
            names(r)
        };
        let subscribe: Vec<&str> = subscribe.iter().map(String::as_str).collect();
        let mut req = request(t, &subscribe, &[], "");
        req.initial_resource_versions = versions(r);
        steps.push(s.on_request(req));
    }
    steps
}

#[test]
fn a_reconnect_to_another_replica_with_the_same_state_is_sent_nothing() {
    let mut first = stream(STATE);
    let held = converge(&mut first);
    // Another replica: its own translation of the same file.
    let mut other = stream(STATE);
    for step in reconnect(&mut other, &held) {
        assert!(step.responses.is_empty(), "{:?}", types(&step));
    }
    assert_eq!(other.statuses(), SYNCED);
}

#[test]
fn a_reconnect_is_sent_only_what_differs_from_what_the_proxy_holds() {
    let with_extra = format!("{STATE}{EXTRA}");
    let mut first = stream(&with_extra);
    let held = converge(&mut first);
    // The replica it comes back to has the extra service gone and the switch made.
    let mut other = stream(&STATE.replace("active: blue", "active: green"));
    let steps = reconnect(&mut other, &held);
    // Clusters the state no longer has are removed at once: the stream cannot know which
    // of the routes the proxy holds name them (nor can SotW's, which does the same).
    assert_eq!(sent_events(&steps[0]), [(Cluster, 0, 2)]);
    assert_eq!(
        removed(&steps[0].responses[0]),
        ["extra-blue", "extra-green"]
    );
    // Their endpoints too (the proxy still names them; it holds them at versions this
    // replica does not have, so they are removed, not kept).
    assert_eq!(sent_events(&steps[1]), [(Endpoint, 0, 2)]);
    assert_eq!(
        removed(&steps[1].responses[0]),
        ["extra-blue", "extra-green"]
    );
    assert!(steps[2].responses.is_empty(), "listeners unchanged");
    let rds = only(steps.into_iter().nth(3).unwrap());
    assert_eq!(carried(&rds), ["public"], "the switch made meanwhile");
}

#[test]
fn a_cluster_changed_in_place_has_its_endpoints_sent_again() {
    let mut s = stream(STATE);
    converge(&mut s);
    // The same names, one cluster's version changed (a new translation, say): Envoy warms
    // that cluster again and waits for its endpoints, which it does not ask for again.
    let mut changed = snapshot(STATE);
    let mut clusters: Vec<Resource> = changed
        .get(Cluster)
        .resources
        .values()
        .map(|r| (**r).clone())
        .collect();
    clusters[0].version = "changed".to_owned();
    let types_: [TypeSnapshot; 5] = ResourceType::ALL.map(|t| match t {
        Cluster => TypeSnapshot::new(clusters.clone()),
        _ => changed.get(t).clone(),
    });
    changed = Snapshot::new("changed".into(), types_);
    let step = s.on_snapshot(Arc::new(Published::new(changed)));
    assert_eq!(types(&step), [Cluster, Endpoint]);
    assert_eq!(carried(&step.responses[0]), ["summarizer-blue"]);
    assert_eq!(
        carried(&step.responses[1]),
        ["summarizer-blue"],
        "its endpoints again"
    );
}

#[test]
fn a_star_subscribes_to_everything_and_unsubscribing_it_keeps_the_names() {
    let mut s = stream(STATE);
    let eds = only(s.on_request(request(Endpoint, &["*"], &[], "")));
    assert_eq!(carried(&eds), CLUSTERS);
    assert!(s.wildcard(Endpoint));
    s.on_request(ack(&eds));
    let step = s.on_request(request(Endpoint, &["summarizer-blue"], &["*"], ""));
    assert!(!s.wildcard(Endpoint));
    // The explicitly subscribed name was subscribed again: sent again.
    assert_eq!(carried(&only(step)), ["summarizer-blue"]);
}

#[test]
fn the_legacy_wildcard_ends_when_a_name_is_subscribed_without_a_star() {
    let mut s = stream(STATE);
    let cds = only(s.on_request(request(Cluster, &[], &[], "")));
    assert!(s.wildcard(Cluster));
    s.on_request(ack(&cds));
    s.on_request(request(Cluster, &["summarizer-blue"], &[], ""));
    assert!(!s.wildcard(Cluster));
    // And with `*` listed too, it stays a wildcard.
    let mut s = stream(STATE);
    let cds = only(s.on_request(request(Cluster, &[], &[], "")));
    s.on_request(ack(&cds));
    s.on_request(request(Cluster, &["*", "summarizer-blue"], &[], ""));
    assert!(s.wildcard(Cluster));
}

#[test]
fn an_empty_first_request_for_endpoints_asks_for_none() {
    let mut s = stream(STATE);
    let step = s.on_request(request(Endpoint, &[], &[], ""));
    let eds = only(step);
    assert!(carried(&eds).is_empty(), "the first response, empty");
    assert_eq!(s.status(Endpoint), SyncStatus::NotSubscribed);
}

#[test]
fn versions_are_identical_on_every_replica() {
    let (mut a, mut b) = (stream(STATE), stream(STATE));
    let (ra, rb) = (converge(&mut a), converge(&mut b));
    for (x, y) in ra.iter().zip(&rb) {
        assert_eq!(x.version_info, y.version_info);
        assert_eq!(versions(x), versions(y));
    }
}

#[test]
fn streams_share_one_encoding_of_the_same_change() {
    let published = snap(STATE);
    let mut a = DeltaStream::new(published.clone(), "test");
    let mut b = DeltaStream::new(published, "test");
    let ra = only(a.on_request(request(Cluster, &[], &[], "")));
    let rb = only(b.on_request(request(Cluster, &[], &[], "")));
    assert!(ra.shares_bytes_with(&rb));
}

#[test]
fn an_unknown_type_is_ignored_and_the_node_is_kept_from_the_first_message() {
    let mut s = stream(STATE);
    let mut req = request(Cluster, &[], &[], "");
    req.type_url = "type.googleapis.com/envoy.service.runtime.v3.Runtime".into();
    let step = s.on_request(req);
    assert!(step.responses.is_empty());
    assert!(matches!(step.events[..], [StreamEvent::UnknownType { .. }]));
    let mut req = request(Cluster, &[], &[], "");
    req.node.as_mut().unwrap().id = "someone-else".into();
    s.on_request(req);
    assert_eq!(s.node().unwrap().id, "envoy-1");
}

#[test]
fn a_subscription_waiting_for_its_reply_is_stale_and_a_nack_leaves_the_type_rejected() {
    let mut s = stream(STATE);
    assert_eq!(s.statuses(), [SyncStatus::NotSubscribed; 5]);
    let cds = only(s.on_request(request(Cluster, &[], &[], "")));
    assert_eq!(s.status(Cluster), SyncStatus::Stale);
    s.on_request(nack(&cds, "no"));
    assert_eq!(s.status(Cluster), SyncStatus::Rejected);
    // Something newer goes out and is acknowledged: synced.
    let cds = only(s.on_snapshot(snap(&format!("{STATE}{EXTRA}"))));
    s.on_request(ack(&cds));
    assert_eq!(s.status(Cluster), SyncStatus::Synced);
}

#[test]
fn the_stream_bounds_the_names_it_would_subscribe_to() {
    let mut s = stream(STATE);
    converge(&mut s);
    let req = request(Endpoint, &["a", "b", "c"], &[], "");
    assert_eq!(s.names_after(&req), 2 + 3, "the two held, and three more");
}

#[test]
fn a_name_unsubscribed_under_a_wildcard_is_answered_sent_again_or_removed() {
    let with_extra = format!("{STATE}{EXTRA}");
    let mut s = stream(&with_extra);
    let cds = only(s.on_request(request(Cluster, &["*", "extra-blue"], &[], "")));
    s.on_request(ack(&cds));
    // `*` still covers it: the protocol asks for a reply, here the cluster again.
    let again = only(s.on_request(request(Cluster, &[], &["extra-blue"], "")));
    assert_eq!(carried(&again), ["extra-blue"]);
    s.on_request(ack(&again));
    // Gone from the state while the proxy still holds it: removed.
    let step = s.on_snapshot(snap(STATE));
    let cds = response_of(step, Cluster);
    assert_eq!(removed(&cds), ["extra-blue", "extra-green"]);
}

#[test]
fn a_name_dropped_and_asked_for_again_while_a_response_carrying_it_is_in_flight_is_still_removed() {
    let with_extra = format!("{STATE}{EXTRA}");
    let mut s = stream(&with_extra);
    let cds = only(s.on_request(request(Cluster, &["extra-blue"], &[], "")));
    // Dropped, then asked for again, before the response carrying it arrives: the proxy
    // takes it from that response after all.
    s.on_request(request(Cluster, &[], &["extra-blue"], ""));
    s.on_request(request(Cluster, &["extra-blue"], &[], ""));
    let again = only(s.on_request(ack(&cds)));
    assert_eq!(
        carried(&again),
        ["extra-blue"],
        "sent again, as it was asked for"
    );
    s.on_request(ack(&again));
    // And when the state drops it, it is removed.
    let cds = only(s.on_snapshot(snap(STATE)));
    assert_eq!(removed(&cds), ["extra-blue"]);
}
