//! Bake and automatic rollback on real traffic: Envoy reports its load (LRS) to switchyard;
//! after a switch, when the new color's error ratio across the fleet passes the threshold,
//! switchyard puts traffic back on the old color by itself, says why everywhere, and does
//! not flap back while the file is unchanged; a new `attempt` retries.
//!
//! Every scenario runs against an Envoy speaking each ADS variant (SotW and delta).

use std::time::Duration;

use crate::common::control_plane::BlueGreen;
use crate::common::envoy::Xds;
use crate::common::http;

crate::both_protocols!(
    errors_on_the_new_color_roll_traffic_back_by_itself_and_it_stays_back,
    status_shows_each_colors_requests_in_flight_so_the_old_color_is_known_drained,
    with_kept_decisions_a_restart_keeps_a_rollback_and_resumes_a_bake,
    a_probe_based_bake_rolls_back_a_quiet_service_and_the_audit_log_says_why,
);

fn baked(scene: &BlueGreen, active: &str, extra: &str) -> String {
    scene.state(active).replace(
        &format!("    active: {active}\n"),
        &format!(
            "    active: {active}\n{extra}    bake:\n      window: 1m\n      max_error_ratio: 0.1\n      min_requests: 10\n"
        ),
    )
}

async fn errors_on_the_new_color_roll_traffic_back_by_itself_and_it_stays_back(xds: Xds) {
    let scene = BlueGreen::start().await;
    let (cp, listener) = (&scene.cp, scene.listener);
    let _envoy = scene.envoy_speaking("bake", xds).await;
    assert_eventually!(
        Duration::from_secs(5),
        http::color(listener).await.as_deref() == Some("blue")
    );
    let sending = http::keep_sending(&[listener], "/v1/summarize", "summarizer.example");
    cp.save_by_rename(&baked(&scene, "green", ""));
    assert_eventually!(
        Duration::from_secs(5),
        cp.status().await["rollout"][0]["phase"] == "baking"
    );
    // Green starts failing half its requests under load.
    scene.green.set_fail_share(0.5);
    let failing_since = std::time::Instant::now();
    assert_eventually!(
        Duration::from_secs(10),
        cp.status().await["rollout"][0]["phase"] == "rolled_back"
    );
    eprintln!("errors to rollback: {:?}", failing_since.elapsed());
    assert_eventually!(
        Duration::from_secs(3),
        http::color(listener).await.as_deref() == Some("blue")
    );
    let status = cp.status().await;
    let rollout = &status["rollout"][0];
    assert_eq!(rollout["wanted"], "green", "the file still says green");
    assert_eq!(rollout["in_force"], "blue");
    let trip = &rollout["trip"];
    assert!(trip["errors"].as_u64().unwrap() >= 1, "{trip}");
    assert!(trip["requests"].as_u64().unwrap() >= 10, "{trip}");
    assert_eq!(trip["proxies"][0][0], "bake", "{trip}");
    assert!(
        rollout["reason"]
            .as_str()
            .unwrap()
            .contains("new `attempt`"),
        "{rollout}"
    );
    let metrics = cp.metrics().await;
    assert!(
        metrics.contains(
            "switchyard_rollout_decisions_total{service=\"summarizer\",decision=\"rolled_back\"} 1"
        ),
        "{metrics}"
    );
    // No flapping: blue keeps the traffic while the file is unchanged.
    for _ in 0..20 {
        assert_eq!(http::color(listener).await.as_deref(), Some("blue"));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Fixed, and saved with a new attempt: green takes the traffic again.
    scene.green.set_fail_share(0.0);
    cp.save_by_rename(&baked(&scene, "green", "    attempt: 2\n"));
    assert_eventually!(
        Duration::from_secs(5),
        http::color(listener).await.as_deref() == Some("green")
    );
    assert_eq!(cp.status().await["rollout"][0]["phase"], "baking");
    sending.stop().await;
}

async fn status_shows_each_colors_requests_in_flight_so_the_old_color_is_known_drained(xds: Xds) {
    let scene = BlueGreen::start().await;
    let (cp, listener) = (&scene.cp, scene.listener);
    cp.save_by_rename(&baked(&scene, "blue", ""));
    let _envoy = scene.envoy_speaking("drain", xds).await;
    assert_eventually!(
        Duration::from_secs(5),
        http::color(listener).await.as_deref() == Some("blue")
    );
    // Slow requests on blue are in flight until they finish.
    scene.blue.set_delay(Duration::from_secs(4));
    let slow: Vec<_> = (0..3)
        .map(|_| tokio::spawn(http::get(listener, "/slow", "summarizer.example")))
        .collect();
    let in_flight = |status: serde_json::Value, color: &str| {
        status["rollout"][0]["traffic"]
            .as_array()
            .and_then(|t| t.iter().find(|c| c["color"] == color).cloned())
            .and_then(|c| c["in_flight"].as_u64())
    };
    assert_eventually!(
        Duration::from_secs(5),
        in_flight(cp.status().await, "blue") == Some(3)
    );
    for s in slow {
        let _ = s.await;
    }
    assert_eventually!(
        Duration::from_secs(5),
        in_flight(cp.status().await, "blue") == Some(0)
    );
}

async fn with_kept_decisions_a_restart_keeps_a_rollback_and_resumes_a_bake(xds: Xds) {
    let kept = tempfile::tempdir().unwrap();
    let decisions = kept.path().join("decisions.json");
    let path = decisions.clone();
    let mut scene = BlueGreen::start_with(move |c| c.decisions = Some(path)).await;
    let listener = scene.listener;
    let _envoy = scene.envoy_speaking("restart", xds).await;
    assert_eventually!(
        Duration::from_secs(5),
        http::color(listener).await.as_deref() == Some("blue")
    );
    let sending = http::keep_sending(&[listener], "/v1/summarize", "summarizer.example");
    scene.cp.save_by_rename(&baked(&scene, "green", ""));
    assert_eventually!(
        Duration::from_secs(5),
        scene.cp.status().await["rollout"][0]["phase"] == "baking"
    );
    scene.green.set_fail_share(0.5);
    assert_eventually!(
        Duration::from_secs(10),
        scene.cp.status().await["rollout"][0]["phase"] == "rolled_back"
    );
    let journal = std::fs::read_to_string(&decisions).unwrap();
    assert!(journal.contains("\"rolled_back\""), "{journal}");

    // Restarted with the file unchanged: still rolled back, and Envoy stays on blue.
    let path = decisions.clone();
    scene
        .cp
        .restart_with(move |c| c.decisions = Some(path))
        .await;
    let status = scene.cp.status().await;
    assert_eq!(status["rollout"][0]["phase"], "rolled_back", "{status:#}");
    assert_eq!(status["rollout"][0]["in_force"], "blue");
    assert_eq!(status["rollout"][0]["trip"]["proxies"][0][0], "restart");
    for _ in 0..20 {
        assert_eq!(http::color(listener).await.as_deref(), Some("blue"));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // A new attempt bakes green; a restart during the bake resumes it.
    scene.green.set_fail_share(0.0);
    scene
        .cp
        .save_by_rename(&baked(&scene, "green", "    attempt: 2\n"));
    assert_eventually!(
        Duration::from_secs(5),
        scene.cp.status().await["rollout"][0]["phase"] == "baking"
    );
    let path = decisions.clone();
    scene
        .cp
        .restart_with(move |c| c.decisions = Some(path))
        .await;
    let status = scene.cp.status().await;
    let rollout = &status["rollout"][0];
    assert_eq!(rollout["phase"], "baking", "{status:#}");
    assert_eq!(rollout["in_force"], "green");
    let left = rollout["left_seconds"].as_f64().unwrap();
    assert!(left > 0.0 && left < 60.0, "{rollout}");
    assert_eventually!(
        Duration::from_secs(5),
        http::color(listener).await.as_deref() == Some("green")
    );
    sending.stop().await;
}

async fn a_probe_based_bake_rolls_back_a_quiet_service_and_the_audit_log_says_why(xds: Xds) {
    let audit_dir = tempfile::tempdir().unwrap();
    let audit = audit_dir.path().join("audit.jsonl");
    let path = audit.clone();
    let scene = BlueGreen::start_with(move |c| c.audit_log = Some(path)).await;
    let (cp, listener) = (&scene.cp, scene.listener);
    let _envoy = scene.envoy_speaking("probe-bake", xds).await;
    // No traffic at all: only the probe can judge green.
    cp.save_by_rename(&scene.state("green").replace(
        "    active: green\n",
        "    active: green\n    bake:\n      window: 1m\n      probe:\n        interval: 100ms\n        failures: 2\n",
    ));
    assert_eventually!(
        Duration::from_secs(5),
        cp.status().await["rollout"][0]["phase"] == "baking"
    );
    scene.green.set_healthy(false);
    assert_eventually!(
        Duration::from_secs(5),
        cp.status().await["rollout"][0]["phase"] == "rolled_back"
    );
    let status = cp.status().await;
    let failing = &status["rollout"][0]["trip"]["failing_endpoints"][0];
    assert_eq!(failing[0], scene.green.addr().to_string(), "{status:#}");
    assert!(
        failing[1]
            .as_str()
            .unwrap()
            .contains("status 503, expected 200"),
        "{failing}"
    );
    assert_eventually!(
        Duration::from_secs(3),
        http::color(listener).await.as_deref() == Some("blue")
    );
    // The audit trail records each decision with why.
    assert_eventually!(Duration::from_secs(3), {
        std::fs::read_to_string(&audit)
            .unwrap_or_default()
            .lines()
            .any(|l| {
                l.contains("\"event\":\"rollout\"") && l.contains("\"decision\":\"rolled_back\"")
            })
    });
    let text = std::fs::read_to_string(&audit).unwrap();
    let record: serde_json::Value = serde_json::from_str(
        text.lines()
            .find(|l| l.contains("\"decision\":\"rolled_back\""))
            .unwrap(),
    )
    .unwrap();
    assert_eq!(record["service"], "summarizer");
    assert_eq!(record["wanted"], "green");
    assert_eq!(record["in_force"], "blue");
    assert!(
        record["reason"]
            .as_str()
            .unwrap()
            .starts_with("green failed its bake"),
        "{record}"
    );
    assert_eq!(
        record["trip"]["failing_endpoints"][0][0],
        scene.green.addr().to_string()
    );
}
