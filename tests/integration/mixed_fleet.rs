//! A mixed fleet: one switchyard serving an Envoy that speaks state of the world and one
//! that speaks delta, side by side on the same listener. Both follow the same switch, both
//! acknowledge the same versions, and every view says which variant each proxy speaks:
//! `/status`, `/metrics` (`switchyard_connected_proxies{protocol}`), switchyard.v1
//! (`switchyard status`, its table and `--json`) and CSDS (`switchyard.protocol` in each
//! node's metadata). With two listeners, a switch of one listener's service
//! sends the delta proxy that listener's RouteConfiguration only, by Envoy's own stats.

use std::net::SocketAddr;
use std::time::Duration;

use crate::common::control_plane::BlueGreen;
use crate::common::envoy::{Envoy, Xds};
use crate::common::http;

/// Requests each Envoy's `summarizer-{color}` cluster has sent upstream.
async fn sent_to(envoys: &[&Envoy], color: &str) -> Vec<u64> {
    let mut out = Vec::new();
    for envoy in envoys {
        let stat = format!("cluster.summarizer-{color}.upstream_rq_total");
        out.push(envoy.stat(&stat).await.unwrap_or(0));
    }
    out
}

/// `count` requests through `listener`, each on its own connection (the kernel spreads
/// them over the Envoys sharing the port): did every one reach `color`?
async fn all_reach(listener: SocketAddr, color: &str, count: usize) -> bool {
    for _ in 0..count {
        if http::color(listener).await.as_deref() != Some(color) {
            return false;
        }
    }
    true
}

/// `switchyard status --xds-addr ADDR` with `more` arguments: its standard output.
async fn switchyard_status(xds: SocketAddr, more: &'static [&'static str]) -> Vec<u8> {
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_switchyard"))
            .args(["status", "--xds-addr", &xds.to_string()])
            .args(more)
            .output()
            .expect("run switchyard status")
    })
    .await
    .unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    out.stdout
}

/// `switchyard status --json` (GetState and ListProxies), parsed.
async fn switchyard_status_json(xds: SocketAddr) -> serde_json::Value {
    serde_json::from_slice(&switchyard_status(xds, &["--json"]).await).expect("JSON")
}

/// CSDS: each client's node id and the protocol switchyard notes in its metadata.
async fn csds_protocols(xds: SocketAddr) -> Vec<(String, String)> {
    use envoy_types::pb::envoy::service::status::v3::ClientStatusRequest;
    use envoy_types::pb::envoy::service::status::v3::client_status_discovery_service_client::ClientStatusDiscoveryServiceClient;
    use envoy_types::pb::google::protobuf::value::Kind;
    let mut client = ClientStatusDiscoveryServiceClient::connect(format!("http://{xds}"))
        .await
        .unwrap();
    let response = client
        .fetch_client_status(ClientStatusRequest::default())
        .await
        .unwrap()
        .into_inner();
    let mut out: Vec<(String, String)> = response
        .config
        .into_iter()
        .map(|c| {
            let node = c.node.unwrap_or_default();
            let field = node
                .metadata
                .and_then(|m| m.fields.get("switchyard.protocol").cloned());
            let protocol = match field.and_then(|v| v.kind) {
                Some(Kind::StringValue(p)) => p,
                other => panic!("node {} has no switchyard.protocol: {other:?}", node.id),
            };
            (node.id, protocol)
        })
        .collect();
    out.sort();
    out
}

/// The `protocol` of each proxy in `proxies` (an array of objects with `node_id`), by
/// node id.
fn protocols(proxies: &serde_json::Value) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = proxies
        .as_array()
        .expect("proxies")
        .iter()
        .map(|p| {
            let field = |k: &str| p[k].as_str().unwrap_or_default().to_owned();
            (field("node_id"), field("protocol"))
        })
        .collect();
    out.sort();
    out
}

/// Has every proxy in `/status` (two of them) acknowledged every type's current version?
fn all_acked(status: &serde_json::Value) -> bool {
    let versions = &status["state"]["resource_versions"];
    let proxies = status["proxies"].as_array().cloned().unwrap_or_default();
    proxies.len() == 2
        && proxies.iter().all(|proxy| {
            ["clusters", "endpoints", "listeners", "routes"]
                .iter()
                .all(|t| proxy[t]["acked"]["version"] == versions[*t])
        })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sotw_and_a_delta_envoy_follow_the_same_switch_and_each_shows_its_protocol() {
    let scene = BlueGreen::start().await;
    let (cp, listener) = (&scene.cp, scene.listener);
    // Envoy binds listeners with SO_REUSEPORT: both bind the port and the kernel spreads
    // the connections over them.
    let sotw = scene.envoy_speaking("fleet-sotw", Xds::Sotw).await;
    let delta = scene.envoy_speaking("fleet-delta", Xds::Delta).await;
    let envoys = [&sotw, &delta];
    assert_eventually!(Duration::from_secs(5), {
        all_reach(listener, "blue", 10).await && !sent_to(&envoys, "blue").await.contains(&0)
    });

    let expected = [
        ("fleet-delta".to_owned(), "delta".to_owned()),
        ("fleet-sotw".to_owned(), "sotw".to_owned()),
    ];
    assert_eq!(protocols(&cp.status().await["proxies"]), expected);
    let metrics = cp.metrics().await;
    for line in [
        "switchyard_connected_proxies{protocol=\"sotw\"} 1",
        "switchyard_connected_proxies{protocol=\"delta\"} 1",
    ] {
        assert!(metrics.lines().any(|l| l == line), "no {line}: {metrics}");
    }
    let api = switchyard_status_json(cp.xds_addr()).await;
    assert_eq!(protocols(&api["proxies"]), expected, "{api:#}");
    assert_eq!(csds_protocols(cp.xds_addr()).await, expected);
    // The human table's XDS column.
    let table = String::from_utf8(switchyard_status(cp.xds_addr(), &[]).await).unwrap();
    for (node, protocol) in &expected {
        let row = table.lines().find(|l| l.starts_with(node.as_str()));
        let row = row.unwrap_or_else(|| panic!("no row for {node}:\n{table}"));
        let columns: Vec<&str> = row.split_whitespace().collect();
        assert_eq!(columns[3], protocol, "{table}");
    }

    // The switch: traffic through each Envoy reaches green, and blue no more.
    cp.save_by_rename(&scene.state("green"));
    assert_eventually!(
        Duration::from_secs(3),
        all_reach(listener, "green", 10).await
    );
    assert_eventually!(Duration::from_secs(3), all_acked(&cp.status().await));
    let (green, blue) = (
        sent_to(&envoys, "green").await,
        sent_to(&envoys, "blue").await,
    );
    assert_eventually!(Duration::from_secs(5), {
        let _ = http::color(listener).await;
        let now = sent_to(&envoys, "green").await;
        now.iter().zip(&green).all(|(now, before)| now > before)
    });
    assert_eq!(
        sent_to(&envoys, "blue").await,
        blue,
        "an Envoy still sends to blue"
    );
    // Both acknowledged the same versions of every type.
    let status = cp.status().await;
    assert!(all_acked(&status), "{status:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_switch_on_one_listener_sends_a_delta_envoy_that_listeners_routes_only() {
    let scene = BlueGreen::start().await;
    let cp = &scene.cp;
    let internal = crate::common::free_port();
    // A second listener, `internal`, with a service of its own: its own RouteConfiguration.
    let state = |active: &str| {
        let two = scene.state(active).replace(
            "services:",
            &format!("  - name: internal\n    address: 127.0.0.1\n    port: {internal}\nservices:"),
        );
        format!(
            "{two}  - name: ledger\n    listener: internal\n    domains: [\"*\"]\n    blue:\n      endpoints: [\"{}\"]\n    green:\n      endpoints: [\"{}\"]\n    active: blue\n",
            scene.blue.addr(),
            scene.green.addr()
        )
    };
    cp.save_by_rename(&state("blue"));
    let sotw = scene.envoy_speaking("routes-sotw", Xds::Sotw).await;
    let delta = scene.envoy_speaking("routes-delta", Xds::Delta).await;
    let internal_listener: SocketAddr = ([127, 0, 0, 1], internal).into();
    assert_eventually!(
        Duration::from_secs(5),
        all_reach(scene.listener, "blue", 5).await && all_reach(internal_listener, "blue", 5).await
    );
    assert_eventually!(Duration::from_secs(3), all_acked(&cp.status().await));
    let rds = |listener: &str, stat: &str| format!("http.{listener}.rds.{listener}.{stat}");
    let attempts = async |envoy: &Envoy| {
        let mut out = Vec::new();
        for listener in ["public", "internal"] {
            out.push(envoy.stat(&rds(listener, "update_attempt")).await);
        }
        out
    };
    let (sotw_before, delta_before) = (attempts(&sotw).await, attempts(&delta).await);

    // Switch `summarizer` (on `public`) only.
    cp.save_by_rename(&state("green"));
    assert_eventually!(
        Duration::from_secs(3),
        all_reach(scene.listener, "green", 10).await
    );
    assert_eventually!(Duration::from_secs(3), all_acked(&cp.status().await));
    let (sotw_after, delta_after) = (attempts(&sotw).await, attempts(&delta).await);
    eprintln!(
        "RDS update attempts [public, internal]: sotw {sotw_before:?} -> {sotw_after:?}, delta {delta_before:?} -> {delta_after:?}"
    );
    // A SotW response carries every RouteConfiguration: Envoy counts an update attempt on
    // both listeners' routes (which shows the stat tells them apart).
    assert!(
        sotw_after[0] > sotw_before[0] && sotw_after[1] > sotw_before[1],
        "{sotw_before:?} -> {sotw_after:?}"
    );
    assert!(
        delta_after[0] > delta_before[0],
        "the delta Envoy was not sent the changed routes: {delta_before:?} -> {delta_after:?}"
    );
    assert_eq!(
        delta_after[1], delta_before[1],
        "the delta Envoy was sent the unchanged routes of `internal`"
    );
    assert!(all_reach(internal_listener, "blue", 5).await);
}
