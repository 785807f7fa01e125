//! What a switch puts on the wire, proven by Envoy's own stats and switchyard's metrics: a
//! delta Envoy is sent only the RouteConfiguration that changed (of two), no cluster,
//! endpoint or listener; a SotW Envoy, every RouteConfiguration.

use std::net::SocketAddr;
use std::time::Duration;

use crate::common::backend::Backend;
use crate::common::control_plane::ControlPlane;
use crate::common::envoy::{Envoy, Xds};
use crate::common::{free_port, http};

crate::both_protocols!(a_switch_sends_only_what_changed);

/// Two listeners, one service each, both on the same two backends.
fn state(public: u16, internal: u16, blue: SocketAddr, green: SocketAddr, active: &str) -> String {
    format!(
        "listeners:
  - name: public
    address: 127.0.0.1
    port: {public}
  - name: internal
    address: 127.0.0.1
    port: {internal}
services:
  - name: summarizer
    listener: public
    blue: {{ endpoints: [\"{blue}\"] }}
    green: {{ endpoints: [\"{green}\"] }}
    active: {active}
  - name: triage
    listener: internal
    blue: {{ endpoints: [\"{blue}\"] }}
    green: {{ endpoints: [\"{green}\"] }}
    active: blue
"
    )
}

async fn answers(listener: SocketAddr, color: &str) -> bool {
    matches!(http::get(listener, "/", "example.com").await, Ok((200, body)) if body.starts_with(color))
}

/// Envoy's counters that say which resources it was sent.
const ENVOY_STATS: [&str; 7] = [
    "http.public.rds.public.update_success",
    "http.internal.rds.internal.update_success",
    "cluster_manager.cds.update_attempt",
    "listener_manager.lds.update_attempt",
    "cluster.summarizer-blue.update_success",
    "cluster.summarizer-green.update_success",
    "cluster.triage-blue.update_success",
];

async fn envoy_stats(envoy: &Envoy) -> Vec<u64> {
    let mut values = Vec::new();
    for name in ENVOY_STATS {
        let value = envoy.stat(name).await;
        values.push(value.unwrap_or_else(|| panic!("Envoy has no stat {name}")));
    }
    values
}

/// switchyard's count of resources sent and removed, per type.
async fn sent(cp: &ControlPlane) -> Vec<u64> {
    let mut counts = Vec::new();
    for t in ["clusters", "endpoints", "listeners", "routes"] {
        counts.push(
            cp.counter(&format!(
                "switchyard_xds_resources_sent_total{{type=\"{t}\"}}"
            ))
            .await,
        );
    }
    for t in ["clusters", "endpoints", "listeners", "routes"] {
        let removed = format!("switchyard_xds_resources_removed_total{{type=\"{t}\"}}");
        counts.push(cp.counter(&removed).await);
    }
    counts
}

async fn a_switch_sends_only_what_changed(xds: Xds) {
    let (blue, green) = (Backend::start("blue", "v1"), Backend::start("green", "v2"));
    let (p1, p2) = (free_port(), free_port());
    let public = SocketAddr::from(([127, 0, 0, 1], p1));
    let internal = SocketAddr::from(([127, 0, 0, 1], p2));
    let text = |active| state(p1, p2, blue.addr(), green.addr(), active);
    let cp = ControlPlane::start(&text("blue")).await;
    let envoy = Envoy::builder("wire-1", cp.xds_addr())
        .xds(xds)
        .start()
        .await;
    envoy.wait_live(Duration::from_secs(20)).await;
    assert_eventually!(Duration::from_secs(5), answers(public, "blue").await);
    assert_eventually!(Duration::from_secs(5), answers(internal, "blue").await);
    assert_eventually!(
        Duration::from_secs(5),
        cp.status().await["proxies"][0]["status"] == "synced"
    );
    let (envoy_before, sent_before) = (envoy_stats(&envoy).await, sent(&cp).await);

    cp.save_by_rename(&text("green"));
    assert_eventually!(Duration::from_secs(5), answers(public, "green").await);
    assert_eventually!(
        Duration::from_secs(5),
        cp.status().await["proxies"][0]["status"] == "synced"
    );
    assert!(
        answers(internal, "blue").await,
        "the other service did not move"
    );
    let (envoy_after, sent_after) = (envoy_stats(&envoy).await, sent(&cp).await);
    let delta = |a: &[u64], b: &[u64]| a.iter().zip(b).map(|(a, b)| b - a).collect::<Vec<_>>();
    let on_the_wire = delta(&sent_before, &sent_after);
    match xds {
        // Every RouteConfiguration, each response whole.
        Xds::Sotw => assert_eq!(on_the_wire, [0, 0, 0, 2, 0, 0, 0, 0]),
        Xds::Delta => {
            // Only `public`'s routes, and Envoy saw exactly that: one update of `public`,
            // none of `internal`, no cluster, listener or endpoint update.
            assert_eq!(on_the_wire, [0, 0, 0, 1, 0, 0, 0, 0]);
            assert_eq!(
                delta(&envoy_before, &envoy_after),
                [1, 0, 0, 0, 0, 0, 0],
                "{ENVOY_STATS:?}"
            );
        }
    }
}
