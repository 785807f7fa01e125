//! Preview and shadow through a real Envoy: the preview header reaches the idle color
//! whatever the weights and never falls back to the live one; a preview listener reaches
//! the idle color; shadow traffic copies live requests to the idle color, marked, without
//! touching the live answers.
//!
//! Every scenario runs against an Envoy speaking each ADS variant (SotW and delta).

use std::time::Duration;

use crate::common::control_plane::BlueGreen;
use crate::common::envoy::Xds;
use crate::common::http;

crate::both_protocols!(
    the_preview_header_reaches_the_idle_color_and_never_the_live_one,
    a_renamed_header_and_a_preview_listener_reach_the_idle_color_and_previews_can_be_off,
    shadow_copies_live_requests_to_the_idle_color_marked_and_answers_stay_live,
);

async fn preview(listener: std::net::SocketAddr, header: &str, color: &str) -> (u16, String) {
    http::get_with_headers(
        listener,
        "/v1/summarize",
        "summarizer.example",
        &[(header, color)],
    )
    .await
    .unwrap_or((0, String::new()))
}

async fn the_preview_header_reaches_the_idle_color_and_never_the_live_one(xds: Xds) {
    let scene = BlueGreen::start().await;
    let listener = scene.listener;
    let _envoy = scene.envoy_speaking("preview", xds).await;
    assert_eventually!(
        Duration::from_secs(5),
        http::color(listener).await.as_deref() == Some("blue")
    );
    let (code, body) = preview(listener, "x-switchyard-preview", "green").await;
    assert_eq!(
        (code, body.split_whitespace().next()),
        (200, Some("green")),
        "{body}"
    );
    // Live traffic stays on blue.
    assert_eq!(http::color(listener).await.as_deref(), Some("blue"));

    // The previewed color down: 503, not the live color.
    drop(scene.green);
    let (code, body) = preview(listener, "x-switchyard-preview", "green").await;
    assert_eq!(
        code, 503,
        "a preview of a color that is down fell back: {body}"
    );
    assert_eq!(http::color(listener).await.as_deref(), Some("blue"));
}

async fn a_renamed_header_and_a_preview_listener_reach_the_idle_color_and_previews_can_be_off(
    xds: Xds,
) {
    let scene = BlueGreen::start().await;
    let listener = scene.listener;
    let preview_port = crate::common::free_port();
    let keys = format!(
        "    active: blue\n    preview:\n      header: X-Try\n      port: {preview_port}\n"
    );
    scene
        .cp
        .save_by_rename(&scene.state("blue").replace("    active: blue\n", &keys));
    let _envoy = scene.envoy_speaking("preview-listener", xds).await;
    let preview_listener: std::net::SocketAddr = ([127, 0, 0, 1], preview_port).into();
    assert_eventually!(
        Duration::from_secs(5),
        http::color(preview_listener).await.as_deref() == Some("green")
    );
    let (code, body) = preview(listener, "x-try", "green").await;
    assert_eq!((code, body.split_whitespace().next()), (200, Some("green")));
    let status = scene.cp.status().await;
    let preview_keys = &status["state"]["services"][0]["preview"];
    assert_eq!(preview_keys["header"], "x-try", "{status:#}");
    assert_eq!(preview_keys["port"], preview_port);
    // The default header no longer previews.
    let (_, body) = preview(listener, "x-switchyard-preview", "green").await;
    assert_eq!(body.split_whitespace().next(), Some("blue"));

    // Switch: the preview listener follows the idle color, now blue.
    scene.cp.save_by_rename(
        &scene
            .state("green")
            .replace("    active: green\n", &keys.replace("blue", "green")),
    );
    assert_eventually!(
        Duration::from_secs(5),
        http::color(preview_listener).await.as_deref() == Some("blue")
    );

    // Previews off: the header is ignored.
    scene.cp.save_by_rename(&scene.state("green").replace(
        "    active: green\n",
        "    active: green\n    preview:\n      enabled: false\n",
    ));
    assert_eventually!(
        Duration::from_secs(5),
        preview(listener, "x-switchyard-preview", "blue")
            .await
            .1
            .starts_with("green")
    );
}

async fn shadow_copies_live_requests_to_the_idle_color_marked_and_answers_stay_live(xds: Xds) {
    let scene = BlueGreen::start().await;
    let listener = scene.listener;
    scene.cp.save_by_rename(&scene.state("blue").replace(
        "    active: blue\n",
        "    active: blue\n    shadow:\n      percent: 100\n",
    ));
    let _envoy = scene.envoy_speaking("shadow", xds).await;
    assert_eventually!(
        Duration::from_secs(5),
        http::color(listener).await.as_deref() == Some("blue")
    );
    // Live traffic until the mirror is in force (the save may reach Envoy after its first
    // routes).
    assert_eventually!(Duration::from_secs(5), {
        let _ = http::color(listener).await;
        scene.green.shadow_requests() > 0
    });
    let before = scene.green.shadow_requests();
    for _ in 0..20 {
        // Every live answer comes from blue, even with green failing everything.
        scene.green.set_fail_share(1.0);
        assert_eq!(http::color(listener).await.as_deref(), Some("blue"));
    }
    assert_eventually!(
        Duration::from_secs(5),
        scene.green.shadow_requests() >= before + 20
    );
    let seen = scene.green.recent_requests();
    let mirrored = seen
        .iter()
        .find(|r| r.is_shadow())
        .expect("a mirrored request");
    assert_eq!(mirrored.header("x-switchyard-shadow"), Some("true"));
    // Nothing but mirrored requests reached green.
    assert!(seen.iter().all(|r| r.is_shadow()), "{seen:?}");
    // The load reports count the mirrored requests and their errors for green: /status
    // shows the idle color's error ratio on real inputs.
    assert_eventually!(Duration::from_secs(10), {
        // Live traffic goes on (each request mirrored to failing green) until a report
        // with the mirrored errors has come in.
        let _ = http::color(listener).await;
        let status = scene.cp.status().await;
        let green = status["rollout"][0]["traffic"][1].clone();
        green["color"] == "green" && green["errors"].as_u64().unwrap_or(0) >= 10
    });
}
