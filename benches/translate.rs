//! Translation of a large desired state: 1,000 services (2,000 clusters and their
//! endpoints, one listener and its route configuration with 1,000 virtual hosts) into a
//! consistency-checked snapshot, every resource encoded to protobuf once.
//!
//! ```text
//! cargo bench --bench translate
//! ```
//!
//! Target (issue "fan-out at scale"): a state file of 1,000 services translates and encodes
//! in 50 ms or less on the 2-core machine. Three measurements:
//! - `translate/1000_services`: `translate::translate(&state)`, the work done once per
//!   accepted file before any stream sees it;
//! - `parse_and_translate/1000_services`: the file's text parsed, validated and translated,
//!   i.e. everything between the watcher reading the file and the snapshot being published;
//! - `translate/1000_services_10_listeners`: the same services spread over ten listeners
//!   (ten smaller route configurations instead of one large one).

use std::fmt::Write as _;
use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use switchyard::state::parse_str;
use switchyard::translate::translate;

/// A state file of `services` services spread round-robin over `listeners` listeners,
/// each color with two endpoints, every other service on green.
fn state_file(services: usize, listeners: usize) -> String {
    let mut s = String::from("listeners:\n");
    for l in 0..listeners {
        writeln!(
            s,
            "  - name: listener-{l}\n    address: 127.0.0.1\n    port: {}",
            10000 + l
        )
        .unwrap();
    }
    s.push_str("services:\n");
    for i in 0..services {
        let (a, b) = (i / 250, i % 250);
        writeln!(
            s,
            "  - name: service-{i:04}\n    listener: listener-{}\n    domains: [\"service-{i:04}.example.com\", \"service-{i:04}.internal\"]\n    blue:\n      endpoints: [\"127.1.{a}.{b}:8080\", \"127.2.{a}.{b}:8080\"]\n    green:\n      endpoints: [\"127.3.{a}.{b}:8080\", \"127.4.{a}.{b}:8080\"]\n    active: {}",
            i % listeners,
            if i % 2 == 0 { "blue" } else { "green" }
        )
        .unwrap();
    }
    s
}

fn bench(c: &mut Criterion) {
    let one_listener = state_file(1000, 1);
    let state = parse_str(&one_listener).expect("generated state is valid");
    let snapshot = translate(&state).expect("generated state translates");
    let bytes: usize = switchyard::xds::ResourceType::ALL
        .iter()
        .flat_map(|t| snapshot.get(*t).resources.values())
        .map(|r| r.body.value.len())
        .sum();
    eprintln!(
        "state file: {} bytes; snapshot: {} clusters, {} endpoints, {} listeners, {} routes, {bytes} bytes encoded",
        one_listener.len(),
        snapshot
            .get(switchyard::xds::ResourceType::Cluster)
            .resources
            .len(),
        snapshot
            .get(switchyard::xds::ResourceType::Endpoint)
            .resources
            .len(),
        snapshot
            .get(switchyard::xds::ResourceType::Listener)
            .resources
            .len(),
        snapshot
            .get(switchyard::xds::ResourceType::Route)
            .resources
            .len(),
    );

    c.bench_function("translate/1000_services", |b| {
        b.iter(|| translate(black_box(&state)).unwrap())
    });
    c.bench_function("parse_and_translate/1000_services", |b| {
        b.iter(|| translate(&parse_str(black_box(&one_listener)).unwrap()).unwrap())
    });
    let ten = parse_str(&state_file(1000, 10)).expect("generated state is valid");
    c.bench_function("translate/1000_services_10_listeners", |b| {
        b.iter(|| translate(black_box(&ten)).unwrap())
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(30);
    targets = bench
}
criterion_main!(benches);
