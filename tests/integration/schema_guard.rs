//! The schema guard with a real Envoy: a color that does not list the database's current
//! schema version never takes traffic (the switch is held and says why, then goes ahead
//! once the version allows it), and after a contract migration an automatic rollback is
//! refused rather than sending traffic to a color that cannot run.
//!
//! Every scenario runs against an Envoy speaking each ADS variant (SotW and delta).

use std::time::Duration;

use crate::common::control_plane::BlueGreen;
use crate::common::envoy::Xds;
use crate::common::http;

crate::both_protocols!(
    a_switch_to_a_color_that_cannot_run_against_the_schema_is_held_until_it_can,
    after_a_contract_migration_an_automatic_rollback_is_refused,
    at_start_a_color_that_cannot_run_is_not_put_in_force,
);

/// The scene's state with a database read from `version_file`, blue on schemas `blue` and
/// green on `green`, and `extra` service keys.
fn guarded(
    scene: &BlueGreen,
    active: &str,
    blue: &str,
    green: &str,
    file: &std::path::Path,
    extra: &str,
) -> String {
    let state = scene.state(active);
    let state = state
        .replace(
            &format!("\"{}\"]\n", scene.blue.addr()),
            &format!("\"{}\"]\n      schemas: [{blue}]\n", scene.blue.addr()),
        )
        .replace(
            &format!("\"{}\"]\n", scene.green.addr()),
            &format!("\"{}\"]\n      schemas: [{green}]\n", scene.green.addr()),
        )
        .replace(
            &format!("    active: {active}\n"),
            &format!("    active: {active}\n    database: records\n{extra}"),
        );
    format!(
        "databases:\n  - name: records\n    file: {}\n    interval: 100ms\n{state}",
        file.display()
    )
}

async fn a_switch_to_a_color_that_cannot_run_against_the_schema_is_held_until_it_can(xds: Xds) {
    let scene = BlueGreen::start().await;
    let (cp, listener) = (&scene.cp, scene.listener);
    let dir = tempfile::tempdir().unwrap();
    let version = dir.path().join("schema-version");
    std::fs::write(&version, "41\n").unwrap();
    cp.save_by_rename(&guarded(&scene, "blue", "41", "42", &version, ""));
    let _envoy = scene.envoy_speaking("schema", xds).await;
    assert_eventually!(
        Duration::from_secs(5),
        cp.status().await["databases"][0]["version"] == "41"
    );
    cp.save_by_rename(&guarded(&scene, "green", "41", "42", &version, ""));
    assert_eventually!(
        Duration::from_secs(5),
        cp.status().await["rollout"][0]["phase"] == "held"
    );
    let status = cp.status().await;
    assert_eq!(
        status["rollout"][0]["reason"],
        "green runs against schema 42 of database `records`, which is at 41"
    );
    for _ in 0..5 {
        assert_eq!(http::color(listener).await.as_deref(), Some("blue"));
    }
    // The migration lands: green may run, and the held switch goes ahead.
    std::fs::write(&version, "42\n").unwrap();
    assert_eventually!(
        Duration::from_secs(5),
        http::color(listener).await.as_deref() == Some("green")
    );
    // An unreadable version holds every further switch.
    std::fs::remove_file(&version).unwrap();
    assert_eventually!(
        Duration::from_secs(5),
        cp.status().await["databases"][0]["version"].is_null()
    );
    cp.save_by_rename(&guarded(&scene, "blue", "41, 42", "42", &version, ""));
    assert_eventually!(
        Duration::from_secs(5),
        cp.status().await["rollout"][0]["phase"] == "held",
        "{:#}",
        cp.status().await
    );
    assert!(
        cp.status().await["rollout"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("is unknown"),
    );
    assert_eq!(http::color(listener).await.as_deref(), Some("green"));
}

async fn after_a_contract_migration_an_automatic_rollback_is_refused(xds: Xds) {
    let scene = BlueGreen::start().await;
    let (cp, listener) = (&scene.cp, scene.listener);
    let dir = tempfile::tempdir().unwrap();
    let version = dir.path().join("schema-version");
    std::fs::write(&version, "42\n").unwrap();
    let bake = "    bake:\n      window: 1m\n      max_error_ratio: 0.1\n      min_requests: 10\n";
    cp.save_by_rename(&guarded(&scene, "blue", "41, 42", "42, 43", &version, ""));
    let _envoy = scene.envoy_speaking("contract", xds).await;
    assert_eventually!(
        Duration::from_secs(5),
        cp.status().await["databases"][0]["version"] == "42"
    );
    let bake = format!("{bake}    shadow:\n      percent: 100\n");
    cp.save_by_rename(&guarded(
        &scene, "green", "41, 42", "42, 43", &version, &bake,
    ));
    assert_eventually!(
        Duration::from_secs(5),
        http::color(listener).await.as_deref() == Some("green")
    );
    // Blue, idle, gets the shadow traffic while it can still run.
    assert_eventually!(Duration::from_secs(5), {
        let _ = http::get(listener, "/", "summarizer.example").await;
        scene.blue.shadow_requests() > 0
    });
    // Contract: the database moves to 43, which blue cannot run against.
    std::fs::write(&version, "43\n").unwrap();
    assert_eventually!(
        Duration::from_secs(5),
        cp.status().await["databases"][0]["version"] == "43"
    );
    // Blue cannot run against 43: no more shadow (or preview) traffic reaches it.
    assert_eventually!(Duration::from_secs(5), {
        let before = scene.blue.shadow_requests();
        for _ in 0..10 {
            let _ = http::get(listener, "/", "summarizer.example").await;
        }
        scene.blue.shadow_requests() == before
    });
    let (code, body) = http::get_with_headers(
        listener,
        "/",
        "summarizer.example",
        &[("x-switchyard-preview", "blue")],
    )
    .await
    .unwrap();
    assert_eq!((code, body.split_whitespace().next()), (200, Some("green")));
    let status = cp.status().await;
    let service = &status["state"]["services"][0];
    assert!(service["shadow"].is_null(), "{service}");
    assert_eq!(service["preview"]["enabled"], false, "{service}");
    scene.green.set_fail_share(0.5);
    assert_eventually!(Duration::from_secs(10), {
        for _ in 0..20 {
            let _ = http::get(listener, "/", "summarizer.example").await;
        }
        cp.status().await["rollout"][0]["reason"]
            .as_str()
            .is_some_and(|r| r.contains("cannot roll back to blue"))
    });
    let status = cp.status().await;
    assert_eq!(status["rollout"][0]["in_force"], "green");
    assert_eq!(http::color(listener).await.as_deref().map(|_| ()), Some(()));
    let metrics = cp.metrics().await;
    assert!(
        metrics.contains("decision=\"rollback_refused\"} 1"),
        "{metrics}"
    );
}

async fn at_start_a_color_that_cannot_run_is_not_put_in_force(xds: Xds) {
    let dir = tempfile::tempdir().unwrap();
    let version = dir.path().join("schema-version");
    std::fs::write(&version, "41\n").unwrap();
    // Started on a file asking for green, which needs 42, while the database is at 41.
    let mut scene = BlueGreen::start().await;
    let state = guarded(&scene, "green", "41", "42", &version, "");
    scene.cp.save_by_rename(&state);
    scene.cp.restart_with(|_| {}).await;
    let status = scene.cp.status().await;
    assert_eq!(status["rollout"][0]["phase"], "held", "{status:#}");
    assert_eq!(status["rollout"][0]["in_force"], "blue");
    let _envoy = scene.envoy_speaking("cold-start", xds).await;
    assert_eventually!(
        Duration::from_secs(5),
        http::color(scene.listener).await.as_deref() == Some("blue")
    );
    // The migration lands: green takes the traffic.
    std::fs::write(&version, "42\n").unwrap();
    assert_eventually!(
        Duration::from_secs(5),
        http::color(scene.listener).await.as_deref() == Some("green")
    );
}
