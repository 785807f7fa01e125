//! The gate through a real Envoy: a switch to a color whose probe fails keeps the proxies on
//! the current color, `/status` says which endpoints fail and why, and the switch goes
//! ahead by itself once the probe passes; a gate that never passes gives the switch up at
//! its deadline.
//!
//! Every scenario runs against an Envoy speaking each ADS variant (SotW and delta).

use std::time::Duration;

use crate::common::control_plane::BlueGreen;
use crate::common::envoy::Xds;
use crate::common::http;

crate::both_protocols!(
    a_failing_gate_holds_the_switch_and_it_proceeds_once_the_gate_passes,
    a_gate_that_never_passes_gives_the_switch_up_and_a_new_attempt_retries,
    a_gate_on_shadow_traffic_waits_for_enough_of_it_then_lets_the_switch_through,
    a_gate_on_shadow_traffic_holds_a_color_that_fails_it,
);

fn gated(scene: &BlueGreen, active: &str, gate: &str) -> String {
    scene.state(active).replace(
        &format!("    active: {active}\n"),
        &format!("    active: {active}\n    gate:\n{gate}"),
    )
}

const FAST_GATE: &str = "      interval: 100ms\n      successes: 2\n      deadline: 1m\n";

async fn a_failing_gate_holds_the_switch_and_it_proceeds_once_the_gate_passes(xds: Xds) {
    let audit_dir = tempfile::tempdir().unwrap();
    let audit = audit_dir.path().join("audit.jsonl");
    let path = audit.clone();
    let scene = BlueGreen::start_with(move |c| c.audit_log = Some(path)).await;
    let (cp, listener) = (&scene.cp, scene.listener);
    let _envoy = scene.envoy_speaking("gate", xds).await;
    assert_eventually!(
        Duration::from_secs(5),
        http::color(listener).await.as_deref() == Some("blue")
    );
    scene.green.set_healthy(false);
    cp.save_by_rename(&gated(&scene, "green", FAST_GATE));
    assert_eventually!(
        Duration::from_secs(5),
        cp.status().await["rollout"][0]["phase"] == "gating"
    );
    let status = cp.status().await;
    let rollout = &status["rollout"][0];
    assert_eq!(rollout["wanted"], "green");
    assert_eq!(rollout["in_force"], "blue");
    assert_eventually!(
        Duration::from_secs(5),
        cp.status().await["rollout"][0]["gate"]["failing"][0]["reason"]
            .as_str()
            .is_some_and(|r| r.contains("status 503, expected 200"))
    );
    let status = cp.status().await;
    assert_eq!(
        status["rollout"][0]["gate"]["failing"][0]["endpoint"],
        scene.green.addr().to_string()
    );
    // The event stream and the audit log say which endpoint fails and why, once.
    let gate_failing = |text: &str| {
        text.lines()
            .filter(|l| l.contains("\"decision\":\"gate_failing\""))
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    assert_eventually!(
        Duration::from_secs(3),
        !gate_failing(&std::fs::read_to_string(&audit).unwrap_or_default()).is_empty()
    );
    let records = gate_failing(&std::fs::read_to_string(&audit).unwrap());
    let expected = format!("{}: status 503, expected 200", scene.green.addr());
    assert!(records[0].contains(&expected), "{records:?}");
    assert!(
        records[0].contains("0 of 1 endpoints healthy, 1 needed"),
        "{records:?}"
    );
    // Held: traffic stays blue while the gate fails.
    tokio::time::sleep(Duration::from_millis(500)).await;
    for _ in 0..10 {
        assert_eq!(http::color(listener).await.as_deref(), Some("blue"));
    }
    scene.green.set_healthy(true);
    assert_eventually!(
        Duration::from_secs(5),
        http::color(listener).await.as_deref() == Some("green")
    );
    let status = cp.status().await;
    assert_eq!(status["rollout"][0]["phase"], "steady");
    assert_eq!(status["rollout"][0]["in_force"], "green");
    let metrics = cp.metrics().await;
    assert!(
        metrics.contains(
            "switchyard_rollout_decisions_total{service=\"summarizer\",decision=\"gate_waiting\"} 1"
        ),
        "{metrics}"
    );
    assert!(
        metrics.contains(
            "switchyard_rollout_decisions_total{service=\"summarizer\",decision=\"switched\"} 1"
        ),
        "{metrics}"
    );
}

async fn a_gate_that_never_passes_gives_the_switch_up_and_a_new_attempt_retries(xds: Xds) {
    let scene = BlueGreen::start().await;
    let (cp, listener) = (&scene.cp, scene.listener);
    let _envoy = scene.envoy_speaking("gate-deadline", xds).await;
    scene.green.set_healthy(false);
    let gate = "      interval: 100ms\n      successes: 1\n      deadline: 1s\n";
    cp.save_by_rename(&gated(&scene, "green", gate));
    assert_eventually!(
        Duration::from_secs(5),
        cp.status().await["rollout"][0]["phase"] == "gave_up"
    );
    scene.green.set_healthy(true);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(http::color(listener).await.as_deref(), Some("blue"));
    assert_eq!(cp.status().await["rollout"][0]["in_force"], "blue");
    // Saving with a new attempt gates again; green is healthy now.
    cp.save_by_rename(
        &gated(&scene, "green", gate).replace("    gate:\n", "    attempt: 2\n    gate:\n"),
    );
    assert_eventually!(
        Duration::from_secs(5),
        http::color(listener).await.as_deref() == Some("green")
    );
}

/// `active` with shadow on (all live requests mirrored) and a gate that also asks for
/// healthy shadow traffic.
fn shadow_gated(scene: &BlueGreen, active: &str) -> String {
    gated(
        scene,
        active,
        "      interval: 100ms\n      successes: 1\n      max_shadow_error_ratio: 0.1\n      min_shadow_requests: 10\n",
    )
    .replace("    gate:\n", "    shadow:\n      percent: 100\n    gate:\n")
}

async fn a_gate_on_shadow_traffic_waits_for_enough_of_it_then_lets_the_switch_through(xds: Xds) {
    let scene = BlueGreen::start().await;
    let (cp, listener) = (&scene.cp, scene.listener);
    let _envoy = scene.envoy_speaking("shadow-gate", xds).await;
    cp.save_by_rename(&shadow_gated(&scene, "green"));
    assert_eventually!(
        Duration::from_secs(5),
        cp.status().await["rollout"][0]["gate"]["shadow"]
            .as_str()
            .is_some_and(|r| r.contains("shadow requests answered so far"))
    );
    // Live traffic (on blue) is mirrored to green until green has answered enough.
    assert_eventually!(Duration::from_secs(10), {
        let _ = http::get(listener, "/", "summarizer.example").await;
        http::color(listener).await.as_deref() == Some("green")
    });
}

async fn a_gate_on_shadow_traffic_holds_a_color_that_fails_it(xds: Xds) {
    let scene = BlueGreen::start().await;
    let (cp, listener) = (&scene.cp, scene.listener);
    let _envoy = scene.envoy_speaking("shadow-gate-fail", xds).await;
    scene.green.set_fail_share(1.0);
    cp.save_by_rename(&shadow_gated(&scene, "green"));
    assert_eventually!(Duration::from_secs(10), {
        let _ = http::get(listener, "/", "summarizer.example").await;
        cp.status().await["rollout"][0]["gate"]["shadow"]
            .as_str()
            .is_some_and(|r| r.contains("shadow traffic failed"))
    });
    for _ in 0..10 {
        assert_eq!(http::color(listener).await.as_deref(), Some("blue"));
    }
    assert_eq!(cp.status().await["rollout"][0]["phase"], "gating");
}
