//! A color whose endpoints are in two localities with priorities: a real Envoy sends
//! everything to zone A (priority 0); when zone A's backends fail under load, Envoy retries
//! each failed request on another backend and then on zone B (priority 1), and outlier
//! detection ejects zone A's backends, so the traffic moves to zone B with no control-plane
//! round trip and no failed request: every failure is retried within the service's
//! `retries: 2` (a request tries a second zone-A backend, then zone B), and the retry budget
//! switchyard sets (at least 20 concurrent retries instead of Envoy's default 3) covers the
//! four workers' requests that fail together.

use std::net::SocketAddr;
use std::time::Duration;

use crate::common::backend::Backend;
use crate::common::control_plane::ControlPlane;
use crate::common::envoy::{Envoy, Xds};
use crate::common::load::{Load, Protocol};
use crate::common::{free_port, http};

crate::both_protocols!(
    a_zone_whose_backends_fail_under_load_hands_its_traffic_to_the_next_priority_without_a_failed_request,
);

async fn a_zone_whose_backends_fail_under_load_hands_its_traffic_to_the_next_priority_without_a_failed_request(
    xds: Xds,
) {
    let a1 = Backend::start("blue", "v1");
    let a2 = Backend::start("blue", "v1");
    let b1 = Backend::start("blue", "v1");
    let blue = format!(
        "      localities:
        - {{region: eu-west1, zone: eu-west1-a, priority: 0, endpoints: [\"{}\", \"{}\"]}}
        - {{region: eu-west1, zone: eu-west1-b, priority: 1, endpoints: [\"{}\"]}}
      outlier_detection: {{consecutive_5xx: 2}}
",
        a1.addr(),
        a2.addr(),
        b1.addr()
    );
    let (_cp, envoy, listener, _green) = serve(xds, &blue, "    retries: 2\n", "/").await;
    let load = Load::start(listener, "models.example", "/", Protocol::Http1, 4).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    // Priority 0 takes everything while it is healthy.
    assert!(a1.requests() + a2.requests() > 20);
    assert_eq!(
        b1.requests(),
        0,
        "zone B took traffic while zone A was healthy"
    );

    // Zone A fails: every request to it answers 500.
    a1.set_fail_share(1.0);
    a2.set_fail_share(1.0);
    let b_before = b1.requests();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let report = load.stop().await;
    report.assert_nothing_dropped();
    assert!(b1.requests() > b_before + 20, "{}", report.summary());
    // Ejected: zone A no longer gets new requests.
    let a_after = a1.requests() + a2.requests();
    for _ in 0..20 {
        assert_eq!(
            http::get(listener, "/", "models.example").await,
            Ok((200, "blue v1\n".to_owned()))
        );
    }
    assert_eq!(a1.requests() + a2.requests(), a_after);
    let ejected = envoy
        .stat("cluster.models-blue.outlier_detection.ejections_enforced_consecutive_5xx")
        .await;
    assert_eq!(ejected, Some(2), "{}", envoy.log_tail());
}

crate::both_protocols!(
    each_envoy_prefers_its_own_zone_and_fails_over_to_the_other_without_a_failed_request,
);

/// Localities without priorities: each Envoy ranks them from its own node's locality, so
/// the Envoy in zone A sends to zone A's backend and the one in zone B to zone B's; when
/// zone A's backend fails, its Envoy moves to zone B with no failed request.
async fn each_envoy_prefers_its_own_zone_and_fails_over_to_the_other_without_a_failed_request(
    xds: Xds,
) {
    let a1 = Backend::start("blue", "v1");
    let b1 = Backend::start("blue", "v1");
    let blue = format!(
        "      localities:
        - {{region: eu, zone: eu-a, endpoints: [\"{}\"]}}
        - {{region: eu, zone: eu-b, endpoints: [\"{}\"]}}
      outlier_detection: {{consecutive_5xx: 2}}
",
        a1.addr(),
        b1.addr()
    );
    let (_cp, envoys, listener, _green) =
        serve_in(xds, &blue, "    retries: 2\n", "/", &["eu-a", "eu-b"]).await;
    let (in_a, in_b) = (&envoys[0], &envoys[1]);
    // 16 keep-alive connections, which the kernel spreads over the two Envoys sharing the
    // port (both get none with odds of 1 in 32,768).
    let load = Load::start(listener, "models.example", "/", Protocol::Http1, 16).await;
    assert_eventually!(
        Duration::from_secs(10),
        {
            sent_to(in_a, "models-blue", &a1).await > 20
                && sent_to(in_b, "models-blue", &b1).await > 20
        },
        "{}\n{}",
        in_a.admin_get("/clusters").await.1,
        in_b.admin_get("/clusters").await.1
    );
    assert_eq!(
        sent_to(in_a, "models-blue", &b1).await,
        0,
        "zone A's Envoy left its zone"
    );
    assert_eq!(
        sent_to(in_b, "models-blue", &a1).await,
        0,
        "zone B's Envoy left its zone"
    );

    // Zone A's backend fails: zone A's Envoy moves to zone B.
    a1.set_fail_share(1.0);
    assert_eventually!(
        Duration::from_secs(5),
        sent_to(in_a, "models-blue", &b1).await > 20
    );
    let report = load.stop().await;
    report.assert_nothing_dropped();
}

crate::both_protocols!(
    a_zone_failing_its_health_checks_hands_its_traffic_to_the_next_priority_before_a_request_fails,
);

/// Active health checks: zone A's backends still answer requests, but fail `/healthz`;
/// Envoy's own checks move the traffic to zone B, with no request failed and no retry.
async fn a_zone_failing_its_health_checks_hands_its_traffic_to_the_next_priority_before_a_request_fails(
    xds: Xds,
) {
    let a1 = Backend::start("blue", "v1");
    let b1 = Backend::start("blue", "v1");
    let blue = format!(
        "      localities:
        - {{zone: on-premises, priority: 0, endpoints: [\"{}\"]}}
        - {{region: cloud, priority: 1, endpoints: [\"{}\"]}}
      health_check: {{path: /healthz, interval: 200ms, unhealthy_threshold: 1, healthy_threshold: 1}}
",
        a1.addr(),
        b1.addr()
    );
    let (_cp, envoy, listener, _green) = serve(xds, &blue, "", PATH).await;
    assert_eventually!(Duration::from_secs(5), served(&a1) > 0);
    let load = Load::start(listener, "models.example", PATH, Protocol::Http1, 2).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        served(&b1),
        0,
        "the cloud took traffic while on-premises was healthy"
    );
    a1.set_healthy(false);
    // Only Envoy's health checks reach on-premises now, and the cloud takes the traffic.
    assert_eventually!(
        Duration::from_secs(5),
        {
            let before = a1.requests();
            tokio::time::sleep(Duration::from_millis(300)).await;
            let new = usize::try_from(a1.requests() - before).unwrap();
            let recent = a1.recent_requests();
            recent.iter().rev().take(new).all(|r| r.path != PATH) && served(&b1) > 0
        },
        "{}",
        envoy.admin_get("/stats?filter=health_check").await.1
    );
    let report = load.stop().await;
    report.assert_nothing_dropped();
    // Healthy again: it takes the traffic back.
    a1.set_healthy(true);
    assert_eventually!(Duration::from_secs(5), {
        let _ = http::get(listener, PATH, "models.example").await;
        a1.recent_requests().last().is_some_and(|r| r.path == PATH)
    });
}

/// Serves one service `models` whose blue is `blue` (its keys, indented) with
/// `service_keys`, and green a plain backend, to an Envoy speaking `xds`; returns once blue
/// answers `path` through it.
async fn serve(
    xds: Xds,
    blue: &str,
    service_keys: &str,
    path: &str,
) -> (ControlPlane, Envoy, SocketAddr, Backend) {
    let (cp, mut envoys, listener, green) = serve_in(xds, blue, service_keys, path, &[""]).await;
    (cp, envoys.remove(0), listener, green)
}

/// [`serve`] to one Envoy per entry of `zones`, each in that zone of region `eu` (none for
/// an empty name), all sharing the listener's port.
async fn serve_in(
    xds: Xds,
    blue: &str,
    service_keys: &str,
    path: &str,
    zones: &[&str],
) -> (ControlPlane, Vec<Envoy>, SocketAddr, Backend) {
    let green = Backend::start("green", "v2");
    let port = free_port();
    let state = format!(
        "listeners: [{{name: public, address: 127.0.0.1, port: {port}}}]
services:
  - name: models
    listener: public
{service_keys}    blue:
{blue}    green:
      endpoints: [\"{}\"]
    active: blue
",
        green.addr()
    );
    let cp = ControlPlane::start(&state).await;
    let mut envoys = Vec::new();
    for (i, zone) in zones.iter().enumerate() {
        let mut envoy = Envoy::builder(&format!("envoy-{}", i + 1), cp.xds_addr()).xds(xds);
        if !zone.is_empty() {
            envoy = envoy.locality("eu", zone);
        }
        envoys.push(envoy.start().await);
    }
    let listener = SocketAddr::from(([127, 0, 0, 1], port));
    assert_eventually!(
        Duration::from_secs(10),
        http::get(listener, path, "models.example").await == Ok((200, "blue v1\n".to_owned()))
    );
    // Every Envoy listens before the load connects (else one takes every connection).
    for envoy in &envoys {
        assert_eventually!(
            Duration::from_secs(10),
            envoy.stat("listener_manager.total_listeners_active").await > Some(0)
        );
    }
    (cp, envoys, listener, green)
}

/// Requests `envoy` has sent to `backend` in cluster `cluster` (its `/clusters` counters).
async fn sent_to(envoy: &Envoy, cluster: &str, backend: &Backend) -> u64 {
    let (_, text) = envoy.admin_get("/clusters").await;
    let prefix = format!("{cluster}::{}::rq_total::", backend.addr());
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix)?.trim().parse().ok())
        .unwrap_or(0)
}

/// The path the traffic asks for (Envoy's health checks ask for `/healthz`).
const PATH: &str = "/v1/ask";

/// How many of `b`'s recent requests were traffic, not health checks.
fn served(b: &Backend) -> usize {
    b.recent_requests()
        .iter()
        .filter(|r| r.path == PATH)
        .count()
}
