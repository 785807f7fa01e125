//! The fuzz targets' properties (`fuzz/properties.rs`, shared word for word), a few hundred
//! random cases each in the normal test run; FUZZING.md has the long runs.

use envoy_types::pb::envoy::service::discovery::v3::DiscoveryRequest;
use proptest::prelude::*;
use prost::Message;

#[path = "../../fuzz/properties.rs"]
mod shared;

use shared::delta::{DeltaModel, DeltaOp, DeltaRequest, InitialVersion};
use shared::{Model, NonceChoice, Op, SotwModel, VersionChoice};

/// Valid state files to mutate: most random text is not YAML, most mutations of a valid
/// file are still close to one.
const STATES: [&str; 2] = [
    include_str!("../fixtures/one_service.yaml"),
    include_str!("../../examples/state.yaml"),
];

/// A state file with `insert` put in place of `len` bytes at `at` (both wrap around).
fn mutated(base: usize, at: usize, len: usize, insert: &str) -> Vec<u8> {
    let mut bytes = STATES[base % STATES.len()].as_bytes().to_vec();
    let at = at % (bytes.len() + 1);
    let end = (at + len).min(bytes.len());
    bytes.splice(at..end, insert.bytes());
    bytes
}

/// One gRPC message holding a request, or bytes that may be anything.
fn grpc_message() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        (any::<String>(), any::<String>(), any::<u8>()).prop_map(|(nonce, version, prefix)| {
            let body = DiscoveryRequest {
                response_nonce: nonce,
                version_info: version,
                resource_names: vec!["*".into()],
                ..Default::default()
            }
            .encode_to_vec();
            let mut out = vec![prefix % 2]; // compressed now and then
            out.extend_from_slice(&(body.len() as u32).to_be_bytes());
            out.extend_from_slice(&body);
            out
        }),
        prop::collection::vec(any::<u8>(), 0..32),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    let nonce = prop_oneof![
        4 => Just(NonceChoice::Latest),
        1 => any::<usize>().prop_map(NonceChoice::Sent),
        1 => "[0-9]{0,2}".prop_map(NonceChoice::Other),
    ];
    let version = prop_oneof![
        4 => Just(VersionChoice::Latest),
        1 => any::<String>().prop_map(VersionChoice::Other),
    ];
    let error = prop::option::weighted(0.15, Just("rejected".to_owned()));
    let names = prop::collection::vec(any::<usize>(), 0..4);
    let request = (0..6usize, nonce, version, error, names, any::<bool>()).prop_map(
        |(type_index, nonce, version, error, names, with_node)| Op::Request {
            type_index,
            nonce,
            version,
            error,
            names,
            with_node,
        },
    );
    prop_oneof![5 => request, 1 => snapshot().prop_map(Op::Snapshot)]
}

fn snapshot() -> impl Strategy<Value = usize> {
    0..shared::snapshots().len()
}

/// Indexes into `shared::names()`, up to `most`.
fn names(most: usize) -> impl Strategy<Value = Vec<usize>> {
    prop::collection::vec(any::<usize>(), 0..=most)
}

/// Most delta requests answer the latest response or none, as Envoy's do.
fn delta_op() -> impl Strategy<Value = DeltaOp> {
    let nonce = prop_oneof![
        3 => Just(NonceChoice::Latest),
        2 => Just(NonceChoice::Other(String::new())),
        1 => any::<usize>().prop_map(NonceChoice::Sent),
        1 => "[0-9]{0,2}".prop_map(NonceChoice::Other),
    ];
    let error = prop::option::weighted(0.12, Just("rejected".to_owned()));
    let version = prop_oneof![
        3 => Just(InitialVersion::Current),
        1 => "[a-z0-9]{0,4}".prop_map(InitialVersion::Other),
    ];
    let initial = prop_oneof![
        3 => Just(Vec::new()),
        1 => prop::collection::vec((any::<usize>(), version), 0..4),
    ];
    let unsubscribe = prop_oneof![3 => Just(Vec::new()), 1 => names(2)];
    let request = (
        0..6usize,
        nonce,
        error,
        names(3),
        unsubscribe,
        initial,
        any::<bool>(),
    )
        .prop_map(
            |(type_index, nonce, error, subscribe, unsubscribe, initial, with_node)| {
                DeltaOp::Request(DeltaRequest {
                    type_index,
                    nonce,
                    error,
                    subscribe,
                    unsubscribe,
                    initial,
                    with_node,
                })
            },
        );
    prop_oneof![5 => request, 1 => snapshot().prop_map(DeltaOp::Snapshot)]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn any_bytes_as_a_state_file_are_refused_with_problems_or_translate(
        bytes in prop::collection::vec(any::<u8>(), 0..512),
    ) {
        shared::state_file(&bytes);
    }

    #[test]
    fn a_mutated_state_file_is_refused_with_problems_or_translates(
        base in any::<usize>(), at in any::<usize>(), len in 0..16usize,
        insert in prop_oneof![any::<String>(), "[ :\\-\\[\\]{}a-z0-9\"'\n.*]{0,12}"],
    ) {
        shared::state_file(&mutated(base, at, len, &insert));
    }

    #[test]
    fn any_request_body_in_any_chunking_ends_cleanly_or_with_a_status(
        messages in prop::collection::vec(grpc_message(), 0..4),
        frame in 0..16usize, max_message in 0..512usize, fail_at_end in any::<bool>(),
    ) {
        let body = messages.concat();
        let chunks = match frame {
            0 => vec![body],
            n => body.chunks(n).map(<[u8]>::to_vec).collect(),
        };
        shared::ads_requests(chunks, max_message, fail_at_end);
    }

    #[test]
    fn any_request_sequence_keeps_nonces_unique_one_response_in_flight_and_make_before_break(
        ops in prop::collection::vec(op(), 0..64),
    ) {
        SotwModel::run(ops);
    }

    #[test]
    fn any_delta_request_sequence_keeps_the_delta_rules(
        ops in prop::collection::vec(delta_op(), 0..64),
    ) {
        DeltaModel::run(ops);
    }

    #[test]
    fn after_any_delta_request_sequence_a_proxy_that_accepts_everything_holds_the_snapshot(
        ops in prop::collection::vec(delta_op(), 0..64),
    ) {
        DeltaModel::run(ops).converge();
    }
}

/// The SotW model is not vacuous: a proxy that acknowledges everything gets every type, and
/// the routes of a new service only once its clusters are held.
#[test]
fn a_proxy_that_acknowledges_everything_is_sent_every_type_across_snapshots() {
    let index = |name: &str| shared::names().iter().position(|n| n == name).unwrap();
    // Clusters and listeners by the legacy wildcard, endpoints and routes by name.
    let endpoints = [
        "summarizer-blue",
        "summarizer-green",
        "extra-blue",
        "extra-green",
    ];
    let asks = |type_index| match type_index {
        1 => endpoints.map(index).to_vec(),
        4 => vec![index("public")],
        _ => Vec::new(),
    };
    let ack = |type_index| Op::Request {
        type_index,
        nonce: NonceChoice::Latest,
        version: VersionChoice::Latest,
        error: None,
        names: asks(type_index),
        with_node: true,
    };
    // Secrets (2) are not asked for: the states name no file.
    let round = || [0, 1, 3, 4].map(ack);
    let mut ops: Vec<Op> = Vec::new();
    for snapshot in [1, 2, 0] {
        ops.extend(round());
        ops.extend(round());
        ops.push(Op::Snapshot(snapshot));
        ops.extend(round());
        ops.extend(round());
    }
    let model = SotwModel::run(ops);
    // Four types, new routes at each switch, clusters and endpoints for the service added
    // and clusters again once it is gone.
    sent_at_least(model.responses_sent(), 10);
}

/// The ops reached deep: the stream sent at least `least` responses.
fn sent_at_least(sent: usize, least: usize) {
    assert!(sent >= least, "only {sent} responses sent");
}

/// The delta model is not vacuous: a proxy that converges after each switch (every
/// snapshot in turn, the empty one included) is sent every type, and holds each snapshot.
#[test]
fn a_delta_proxy_that_accepts_everything_holds_each_snapshot_in_turn() {
    let mut model = DeltaModel::default();
    assert!(model.converge(), "checked");
    for snapshot in [1, 2, 4, 3, 0, 4, 1] {
        model.apply(DeltaOp::Snapshot(snapshot));
        assert!(model.converge(), "checked");
    }
    sent_at_least(model.responses_sent(), 20);
}

/// A rejected response leaves the proxy short of the snapshot (not sent again); what the
/// next switch sends makes it whole, removals of what it rejected included.
#[test]
fn a_delta_proxy_that_rejected_a_change_holds_the_next_snapshot() {
    let mut model = DeltaModel::default();
    model.converge();
    model.apply(DeltaOp::Snapshot(2));
    // The new clusters are in flight: rejected.
    model.apply(DeltaOp::Request(DeltaRequest {
        type_index: 0,
        nonce: NonceChoice::Latest,
        error: Some("bad cluster".into()),
        subscribe: Vec::new(),
        unsubscribe: Vec::new(),
        initial: Vec::new(),
        with_node: false,
    }));
    assert!(!model.converge(), "a rejected set is not sent again");
    model.apply(DeltaOp::Snapshot(0));
    assert!(model.converge(), "checked");
}

/// Found by `DeltaModel::converge`: a name the proxy holds, subscribed again while a
/// response of its type is in flight, then gone from the snapshot before it is sent again,
/// is still removed (it once was forgotten, and Envoy kept the cluster).
#[test]
fn a_name_subscribed_again_while_in_flight_then_gone_is_removed() {
    use envoy_types::pb::envoy::service::discovery::v3::DeltaDiscoveryRequest;
    use switchyard::xds::ResourceType::Cluster;
    use switchyard::xds::delta::DeltaStream;

    let request = |subscribe: &[&str], nonce: &str| DeltaDiscoveryRequest {
        type_url: Cluster.type_url().to_owned(),
        resource_names_subscribe: subscribe.iter().map(|n| n.to_string()).collect(),
        response_nonce: nonce.to_owned(),
        ..Default::default()
    };
    let snapshots = shared::snapshots();
    // Two services, four clusters, all held.
    let mut s = DeltaStream::new(snapshots[2].clone(), "test");
    let first = s.on_request(request(&["*"], "")).responses.remove(0);
    assert_eq!(first.resource_count, 4);
    assert!(
        s.on_request(request(&[], &first.nonce))
            .responses
            .is_empty()
    );
    // A name subscribed again is sent again: in flight.
    let again = s
        .on_request(request(&["summarizer-blue"], ""))
        .responses
        .remove(0);
    // Another, held too, subscribed again while that one is in flight.
    assert!(
        s.on_request(request(&["extra-green"], ""))
            .responses
            .is_empty()
    );
    // The second service goes away before the proxy answers.
    assert!(s.on_snapshot(snapshots[0].clone()).responses.is_empty());
    let removal = s.on_request(request(&[], &again.nonce)).responses.remove(0);
    let removed = removal.decode_delta().removed_resources;
    assert_eq!(
        removed,
        ["extra-blue", "extra-green"],
        "extra-green is held"
    );
}

/// Found by `DeltaModel`'s make-before-break check: Envoy applies the removals of a
/// cluster response it rejects (and its valid clusters), so routes naming clusters that the
/// rejected response removed wait until the response adding them back is acknowledged
/// (they were once sent beside it, before the proxy had them).
#[test]
fn routes_wait_for_clusters_a_rejected_response_removed() {
    use envoy_types::pb::envoy::service::discovery::v3::DeltaDiscoveryRequest;
    use envoy_types::pb::google::rpc::Status;
    use switchyard::xds::ResourceType::{self, Cluster, Endpoint, Route};
    use switchyard::xds::delta::DeltaStream;

    let request = |t: ResourceType, subscribe: &[&str], nonce: &str| DeltaDiscoveryRequest {
        type_url: t.type_url().to_owned(),
        resource_names_subscribe: subscribe.iter().map(|n| n.to_string()).collect(),
        response_nonce: nonce.to_owned(),
        ..Default::default()
    };
    let types = |step: &switchyard::xds::sotw::Step| -> Vec<&str> {
        step.responses.iter().map(|r| r.type_url).collect()
    };
    let snapshots = shared::snapshots();
    let mut s = DeltaStream::new(snapshots[0].clone(), "test");
    let cds = s.on_request(request(Cluster, &[], "")).responses.remove(0);
    let names = ["summarizer-blue", "summarizer-green"];
    let eds = s
        .on_request(request(Endpoint, &names, ""))
        .responses
        .remove(0);
    s.on_request(request(Endpoint, &[], &eds.nonce));
    s.on_request(request(Cluster, &[], &cds.nonce));
    // Everything goes: the clusters' removal is in flight when it all comes back.
    let removal = s.on_snapshot(snapshots[3].clone()).responses.remove(0);
    assert_eq!(removal.decode_delta().removed_resources, names);
    assert!(s.on_snapshot(snapshots[0].clone()).responses.is_empty());
    let step = s.on_request(request(Route, &["public"], ""));
    assert!(
        step.responses.is_empty(),
        "routes wait: the clusters are on their way out"
    );
    // The proxy rejects the removal, having applied it (as Envoy does).
    let mut nack = request(Cluster, &[], &removal.nonce);
    nack.error_detail = Some(Status {
        code: 13,
        message: "rejected".into(),
        details: Vec::new(),
    });
    let step = s.on_request(nack);
    assert_eq!(
        types(&step)[0],
        Cluster.type_url(),
        "the clusters are sent again"
    );
    assert!(
        !types(&step).contains(&Route.type_url()),
        "the routes wait for the proxy to hold them: {:?}",
        types(&step)
    );
}
