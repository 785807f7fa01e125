//! A release group through two real Envoys (two zones, two node clusters): a model
//! (`summarizer`, on one listener) and the gateway that formats its prompts (`gateway`, on
//! another) are in group `chat`. A gate failing on the model holds the gateway's switch
//! too; once it passes, both switch in one route update per proxy; when the gateway's new
//! color then fails its bake, both roll back.

use std::net::SocketAddr;
use std::time::Duration;

use crate::common::backend::Backend;
use crate::common::control_plane::{ControlPlane, metric};
use crate::common::envoy::{Envoy, Xds};
use crate::common::{free_port, http};

crate::both_protocols!(
    a_release_group_switches_in_one_route_update_only_once_every_member_may_and_rolls_back_as_one,
);

struct Member {
    blue: Backend,
    green: Backend,
    listener: SocketAddr,
}

impl Member {
    fn start() -> Member {
        Member {
            blue: Backend::start("blue", "v1"),
            green: Backend::start("green", "v2"),
            listener: SocketAddr::from(([127, 0, 0, 1], free_port())),
        }
    }
}

const BAKE: &str =
    "    bake:\n      window: 1m\n      max_error_ratio: 0.1\n      min_requests: 10\n";

/// Both services on `active`; the summarizer gated.
fn state(model: &Member, gateway: &Member, active: &str) -> String {
    let service = |name: &str, listener: &str, m: &Member, extra: &str| {
        format!(
            "  - name: {name}
    listener: {listener}
    domains: [\"*\"]
    group: chat
    blue:
      endpoints: [\"{}\"]
    green:
      endpoints: [\"{}\"]
    active: {active}
{BAKE}{extra}",
            m.blue.addr(),
            m.green.addr()
        )
    };
    format!(
        "listeners:
  - {{name: public, address: 127.0.0.1, port: {}}}
  - {{name: edge, address: 127.0.0.1, port: {}}}
services:
{}{}",
        model.listener.port(),
        gateway.listener.port(),
        service(
            "summarizer",
            "public",
            model,
            "    gate:\n      interval: 100ms\n      successes: 2\n      deadline: 1m\n"
        ),
        service("gateway", "edge", gateway, ""),
    )
}

/// The rollout of `service` in `/status`.
async fn rollout(cp: &ControlPlane, service: &str) -> serde_json::Value {
    let status = cp.status().await;
    status["rollout"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|r| r["service"] == service)
        .cloned()
        .unwrap_or_default()
}

async fn a_release_group_switches_in_one_route_update_only_once_every_member_may_and_rolls_back_as_one(
    xds: Xds,
) {
    let (model, gateway) = (Member::start(), Member::start());
    let cp = ControlPlane::start(&state(&model, &gateway, "blue")).await;
    // Two proxies, in two zones and two node clusters, sharing both listeners.
    let mut envoys = Vec::new();
    for (id, cluster, zone) in [("chat-a", "edge", "eu-a"), ("chat-b", "core", "eu-b")] {
        let envoy = Envoy::builder(id, cp.xds_addr())
            .xds(xds)
            .node_cluster(cluster)
            .locality("eu", zone)
            .start()
            .await;
        envoy.wait_live(Duration::from_secs(20)).await;
        envoys.push(envoy);
    }
    for m in [&model, &gateway] {
        assert_eventually!(
            Duration::from_secs(10),
            http::color(m.listener).await.as_deref() == Some("blue")
        );
    }

    // The model's green fails its gate: the gateway, which has none, waits with it.
    model.green.set_healthy(false);
    cp.save_by_rename(&state(&model, &gateway, "green"));
    assert_eventually!(
        Duration::from_secs(5),
        rollout(&cp, "gateway").await["phase"] == "gating"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    for m in [&model, &gateway] {
        assert_eq!(http::color(m.listener).await.as_deref(), Some("blue"));
    }

    // The gate passes: both move, in one route update.
    let routes = "switchyard_xds_responses_total{type=\"routes\"}";
    let before = metric(&cp.metrics().await, routes).unwrap();
    model.green.set_healthy(true);
    for m in [&model, &gateway] {
        assert_eventually!(
            Duration::from_secs(5),
            http::color(m.listener).await.as_deref() == Some("green")
        );
    }
    assert_eventually!(
        Duration::from_secs(3),
        all_synced(&cp).await,
        "{:#}",
        cp.status().await["proxies"]
    );
    let after = metric(&cp.metrics().await, routes).unwrap();
    assert_eq!(
        after - before,
        2.0,
        "the group's switch reached the two proxies in {} route responses, not one each",
        after - before
    );
    assert_eq!(rollout(&cp, "summarizer").await["phase"], "baking");
    assert_eq!(rollout(&cp, "gateway").await["phase"], "baking");

    // The gateway's green fails under load: its bake trips, and the model rolls back too.
    let sending = http::keep_sending(
        &[model.listener, gateway.listener],
        "/v1/chat",
        "chat.example",
    );
    gateway.green.set_fail_share(0.5);
    assert_eventually!(
        Duration::from_secs(15),
        rollout(&cp, "summarizer").await["phase"] == "rolled_back"
    );
    sending.stop().await;
    let gw = rollout(&cp, "gateway").await;
    assert_eq!(gw["phase"], "rolled_back", "{gw:#}");
    for m in [&model, &gateway] {
        assert_eventually!(
            Duration::from_secs(5),
            http::color(m.listener).await.as_deref() == Some("blue")
        );
    }
    let model_rollout = rollout(&cp, "summarizer").await;
    assert_eq!(model_rollout["wanted"], "green");
    assert_eq!(model_rollout["in_force"], "blue");
    assert!(
        model.green.requests() > 0 && model_rollout["trip"]["errors"].as_u64() > Some(0),
        "{model_rollout:#}"
    );
}

/// Are both proxies synced?
async fn all_synced(cp: &ControlPlane) -> bool {
    let status = cp.status().await;
    let proxies = status["proxies"].as_array().cloned().unwrap_or_default();
    proxies.len() == 2 && proxies.iter().all(|p| p["status"] == "synced")
}
