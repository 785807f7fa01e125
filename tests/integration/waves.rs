//! Rollouts wave by wave, on a fleet of real Envoys in two zones sharing one listener (the
//! kernel spreads connections over them): a switch reaches zone A first; zone B gets it
//! only once zone A's proxy acknowledged it and it soaked. When the new color fails in
//! zone A, the bake rolls zone A back and zone B never sends it a request. Which Envoy sent
//! what is read from each one's own cluster stats.

use std::time::Duration;

use serde_json::Value;

use crate::common::control_plane::BlueGreen;
use crate::common::envoy::{Envoy, Xds};
use crate::common::http;

crate::both_protocols!(
    a_switch_that_fails_in_the_first_wave_is_rolled_back_and_never_reaches_the_second,
    a_good_switch_reaches_every_wave_in_order_each_after_the_last_acknowledged_and_soaked,
);

/// The scene's state with `active`, a rollout over zone A then zone B soaking `soak`, and
/// `extra` service keys.
fn rolled_out(scene: &BlueGreen, active: &str, soak: &str, extra: &str) -> String {
    scene.state(active).replace(
        &format!("    active: {active}\n"),
        &format!(
            "    active: {active}\n    rollout:\n      soak: {soak}\n      waves:\n        - {{zone: zone-a}}\n        - {{zone: zone-b}}\n{extra}"
        ),
    )
}

/// An Envoy named `id` in `zone`, live.
async fn envoy_in(scene: &BlueGreen, id: &str, zone: &str, xds: Xds) -> Envoy {
    let envoy = Envoy::builder(id, scene.cp.xds_addr())
        .xds(xds)
        .config_yaml(&format!("node: {{locality: {{region: eu, zone: {zone}}}}}"))
        .start()
        .await;
    envoy.wait_live(Duration::from_secs(20)).await;
    envoy
}

/// Requests `envoy`'s cluster of `color` has sent upstream.
async fn sent(envoy: &Envoy, color: &str) -> u64 {
    envoy
        .stat(&format!("cluster.summarizer-{color}.upstream_rq_total"))
        .await
        .unwrap_or(0)
}

/// The rollout of `summarizer` in `/status`.
fn rollout(status: &Value) -> &Value {
    &status["rollout"][0]
}

/// Each wave's color in `/status`.
fn wave_colors(status: &Value) -> Vec<String> {
    rollout(status)["rollout"]["waves"]
        .as_array()
        .map(|w| {
            w.iter()
                .map(|w| w["color"].as_str().unwrap_or_default().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

async fn a_switch_that_fails_in_the_first_wave_is_rolled_back_and_never_reaches_the_second(
    xds: Xds,
) {
    let scene = BlueGreen::start().await;
    let cp = &scene.cp;
    let bake = "    bake:\n      window: 1m\n      max_error_ratio: 0.1\n      min_requests: 10\n";
    cp.save_by_rename(&rolled_out(&scene, "blue", "5s", bake));
    let a = envoy_in(&scene, "edge-a", "zone-a", xds).await;
    let b = envoy_in(&scene, "edge-b", "zone-b", xds).await;
    let sending = http::keep_sending(&[scene.listener], "/v1/summarize", "summarizer.example");
    assert_eventually!(Duration::from_secs(10), {
        sent(&a, "blue").await > 0 && sent(&b, "blue").await > 0
    });

    // Green fails half its requests; the switch reaches zone A only.
    scene.green.set_fail_share(0.5);
    cp.save_by_rename(&rolled_out(&scene, "green", "5s", bake));
    assert_eventually!(Duration::from_secs(10), sent(&a, "green").await > 0);
    let status = cp.status().await;
    assert_eq!(wave_colors(&status), ["green", "blue"], "{status:#}");
    assert_eq!(rollout(&status)["rollout"]["waves"][0]["proxies"], 1);

    // The bake trips on zone A's errors: zone A goes back to blue, zone B never moved.
    assert_eventually!(
        Duration::from_secs(15),
        rollout(&cp.status().await)["phase"] == "rolled_back"
    );
    let status = cp.status().await;
    assert_eq!(wave_colors(&status), ["blue", "blue"], "{status:#}");
    assert_eq!(rollout(&status)["rollout"]["rolling"], false);
    let a_green = sent(&a, "green").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eventually!(Duration::from_secs(5), {
        let before = sent(&a, "green").await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        sent(&a, "green").await == before
    });
    sending.stop().await;
    assert!(a_green > 0);
    assert_eq!(
        sent(&b, "green").await,
        0,
        "zone B sent requests to green, which never reached its wave"
    );
    assert!(sent(&b, "blue").await > 0);
}

async fn a_good_switch_reaches_every_wave_in_order_each_after_the_last_acknowledged_and_soaked(
    xds: Xds,
) {
    let scene = BlueGreen::start().await;
    let cp = &scene.cp;
    cp.save_by_rename(&rolled_out(&scene, "blue", "2s", ""));
    let a = envoy_in(&scene, "edge-a", "zone-a", xds).await;
    let b = envoy_in(&scene, "edge-b", "zone-b", xds).await;
    let sending = http::keep_sending(&[scene.listener], "/v1/summarize", "summarizer.example");
    assert_eventually!(Duration::from_secs(10), {
        sent(&a, "blue").await > 0 && sent(&b, "blue").await > 0
    });

    cp.save_by_rename(&rolled_out(&scene, "green", "2s", ""));
    let switched = std::time::Instant::now();
    // Zone A first, while zone B stays on blue.
    assert_eventually!(Duration::from_secs(10), sent(&a, "green").await > 0);
    let status = cp.status().await;
    assert_eq!(rollout(&status)["phase"], "rolling", "{status:#}");
    assert_eq!(wave_colors(&status), ["green", "blue"], "{status:#}");
    assert_eq!(
        sent(&b, "green").await,
        0,
        "zone B got green before its wave"
    );
    // Then zone B, after the soak.
    assert_eventually!(Duration::from_secs(15), sent(&b, "green").await > 0);
    let took = switched.elapsed();
    assert!(
        took >= Duration::from_secs(2),
        "zone B got green {took:?} after the switch, before zone A's soak of 2 s"
    );
    assert_eventually!(Duration::from_secs(5), {
        let status = cp.status().await;
        wave_colors(&status) == ["green", "green"]
            && rollout(&status)["rollout"]["rolling"] == false
    });
    let status = cp.status().await;
    assert_eq!(rollout(&status)["rollout"]["reached"], 2);
    // `/status` counts each wave's proxies once a second.
    assert_eventually!(
        Duration::from_secs(3),
        rollout(&cp.status().await)["rollout"]["waves"][1]["synced"] == 1
    );
    sending.stop().await;
    // Every proxy is on green now.
    for envoy in [&a, &b] {
        let before = sent(envoy, "blue").await;
        for _ in 0..10 {
            let _ = http::color(scene.listener).await;
        }
        assert_eq!(sent(envoy, "blue").await, before, "{}", envoy.node_id());
    }
}
