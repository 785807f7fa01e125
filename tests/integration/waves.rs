//! Rollouts wave by wave, on a fleet of real Envoys in two zones and two node clusters
//! sharing one listener (the kernel spreads connections over them): a switch reaches the
//! first wave (the canary node cluster, or zone A) first; the next gets it only once the
//! first wave's proxies acknowledged it and it soaked, and a proxy that connects
//! mid-rollout gets its wave's configuration. The whole rollout is one convergence, timed
//! from the save. When the new color fails in zone A, the bake rolls zone A back and zone B
//! never sends it a request. Which Envoy sent what is read from each one's own cluster
//! stats.

use std::time::Duration;

use serde_json::Value;

use crate::common::control_plane::{BlueGreen, metric};
use crate::common::envoy::{Envoy, Xds};
use crate::common::http;

crate::both_protocols!(
    a_switch_that_fails_in_the_first_wave_is_rolled_back_and_never_reaches_the_second,
    a_good_switch_reaches_every_wave_in_order_each_after_the_last_acknowledged_and_soaked,
);

/// The scene's state with `active`, a rollout over zone A then zone B soaking `soak`, and
/// `extra` service keys.
fn rolled_out(scene: &BlueGreen, active: &str, soak: &str, extra: &str) -> String {
    rolled_out_in(
        scene,
        active,
        soak,
        "[{zone: zone-a}, {zone: zone-b}]",
        extra,
    )
}

/// [`rolled_out`] with the waves `waves`.
fn rolled_out_in(scene: &BlueGreen, active: &str, soak: &str, waves: &str, extra: &str) -> String {
    scene.state(active).replace(
        &format!("    active: {active}\n"),
        &format!(
            "    active: {active}\n    rollout:\n      soak: {soak}\n      waves: {waves}\n{extra}"
        ),
    )
}

/// An Envoy named `id` in `zone`, live.
async fn envoy_in(scene: &BlueGreen, id: &str, zone: &str, xds: Xds) -> Envoy {
    envoy_of(scene, id, "edge", zone, xds).await
}

/// An Envoy named `id` of node cluster `cluster`, in `zone`, live.
async fn envoy_of(scene: &BlueGreen, id: &str, cluster: &str, zone: &str, xds: Xds) -> Envoy {
    let envoy = Envoy::builder(id, scene.cp.xds_addr())
        .xds(xds)
        .node_cluster(cluster)
        .locality("eu", zone)
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
    // Wave 1: the canary node cluster; wave 2: zone B (and whoever else).
    let waves = "[{cluster: canary}, {zone: zone-b}]";
    let scene = BlueGreen::start().await;
    let cp = &scene.cp;
    cp.save_by_rename(&rolled_out_in(&scene, "blue", "4s", waves, ""));
    let a = envoy_of(&scene, "canary-a", "canary", "zone-a", xds).await;
    let b = envoy_of(&scene, "edge-b", "edge", "zone-b", xds).await;
    let sending = http::keep_sending(&[scene.listener], "/v1/summarize", "summarizer.example");
    assert_eventually!(Duration::from_secs(10), {
        sent(&a, "blue").await > 0 && sent(&b, "blue").await > 0
    });
    let converged = "switchyard_convergence_seconds_count";
    let converged_before = metric(&cp.metrics().await, converged).unwrap_or(0.0);

    cp.save_by_rename(&rolled_out_in(&scene, "green", "4s", waves, ""));
    let switched = std::time::Instant::now();
    // The canary first, while zone B stays on blue.
    assert_eventually!(Duration::from_secs(10), sent(&a, "green").await > 0);
    let status = cp.status().await;
    assert_eq!(rollout(&status)["phase"], "rolling", "{status:#}");
    assert_eq!(wave_colors(&status), ["green", "blue"], "{status:#}");
    assert_eq!(
        sent(&b, "green").await,
        0,
        "zone B got green before its wave"
    );
    // A proxy of zone B that connects mid-rollout gets its wave's configuration: blue.
    let late = envoy_of(&scene, "edge-b-late", "edge", "zone-b", xds).await;
    assert_eventually!(Duration::from_secs(5), sent(&late, "blue").await > 0);
    assert_eq!(
        rollout(&cp.status().await)["rollout"]["reached"],
        1,
        "the soak ended before the late proxy was checked"
    );
    assert_eq!(
        sent(&late, "green").await,
        0,
        "a late zone-B proxy got green early"
    );
    // Then zone B, after the soak.
    assert_eventually!(Duration::from_secs(15), {
        sent(&b, "green").await > 0 && sent(&late, "green").await > 0
    });
    let took = switched.elapsed();
    assert!(
        took >= Duration::from_secs(4),
        "zone B got green {took:?} after the switch, before the canary's soak of 4 s"
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
        rollout(&cp.status().await)["rollout"]["waves"][1]["synced"] == 2
    );
    // One convergence for the whole rollout, timed from the save: past the soak.
    assert_eventually!(
        Duration::from_secs(3),
        metric(&cp.metrics().await, converged) == Some(converged_before + 1.0)
    );
    let metrics = cp.metrics().await;
    let sum = metric(&metrics, "switchyard_convergence_seconds_sum").unwrap();
    assert!(
        sum >= 4.0,
        "the rollout converged in {sum} s, under its soak"
    );
    sending.stop().await;
    // Every proxy is on green now.
    for envoy in [&a, &b, &late] {
        let before = sent(envoy, "blue").await;
        for _ in 0..10 {
            let _ = http::color(scene.listener).await;
        }
        assert_eq!(sent(envoy, "blue").await, before, "{}", envoy.node_id());
    }
}
