//! Make-before-break for additions and removals, under load, judged by Envoy's own stats:
//! a service added while its domain takes traffic gets its clusters and endpoints before
//! any route names them; a service removed gets routes that no longer name its clusters
//! before the clusters go. Not one 503, not one `no_cluster`.

use std::time::Duration;

use crate::common::backend::Backend;
use crate::common::control_plane::BlueGreen;
use crate::common::load::{Load, Protocol};

const TOGGLES: usize = 30;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adding_and_removing_a_service_under_load_never_routes_to_a_missing_cluster() {
    let scene = BlueGreen::start().await;
    let cp = &scene.cp;
    let envoy = scene.envoy("mbb-1").await;
    let extra_blue = Backend::start("extra-blue", "v1");
    let extra_green = Backend::start("extra-green", "v1");
    // `extra` claims extra.example; without it, summarizer's `*` answers that host.
    let with_extra = format!(
        "{}  - name: extra
    listener: public
    domains: [\"extra.example\"]
    blue: {{ endpoints: [\"{}\"] }}
    green: {{ endpoints: [\"{}\"] }}
    active: green
",
        scene.state("blue"),
        extra_blue.addr(),
        extra_green.addr()
    );
    let without_extra = scene.state("blue");

    assert_eventually!(
        Duration::from_secs(5),
        crate::common::http::get(scene.listener, "/", "extra.example")
            .await
            .is_ok_and(|(s, _)| s == 200)
    );
    let load = Load::start(scene.listener, "extra.example", "/", Protocol::Http1, 16).await;
    for i in 0..TOGGLES {
        let state = if i % 2 == 0 {
            &with_extra
        } else {
            &without_extra
        };
        cp.save_by_rename(state);
        // Give each change time to reach Envoy sometimes, and sometimes not.
        tokio::time::sleep(Duration::from_millis(if i % 3 == 0 { 15 } else { 150 })).await;
    }
    // End with `extra` present, converged.
    cp.save_by_rename(&with_extra);
    assert_eventually!(
        Duration::from_secs(3),
        cp.status().await["proxies"][0]["synced"] == true
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let report = load.stop().await;
    report.assert_nothing_dropped();
    assert!(
        report.by_color("extra-green") > 0,
        "extra never took traffic: {}",
        report.summary()
    );
    assert!(
        report.by_color("blue") > 0,
        "summarizer never took extra.example: {}",
        report.summary()
    );

    for stat in [
        "http.public.no_cluster",
        "http.public.downstream_rq_5xx",
        "cluster_manager.cluster_not_found",
    ] {
        let value = envoy.stat(stat).await.unwrap_or(0);
        assert_eq!(value, 0, "envoy stat {stat}");
    }
    let (_, fails) = envoy
        .admin_get("/stats?filter=upstream_cx_connect_fail$")
        .await;
    for line in fails.lines() {
        assert!(line.ends_with(": 0"), "envoy stat {line}");
    }
    // The clusters that exist at the end are exactly the state's.
    let (_, clusters) = envoy.admin_get("/clusters?format=json").await;
    for name in [
        "extra-blue",
        "extra-green",
        "summarizer-blue",
        "summarizer-green",
    ] {
        assert!(
            clusters.contains(&format!("\"name\": \"{name}\""))
                || clusters.contains(&format!("\"name\":\"{name}\"")),
            "{name} missing"
        );
    }
}
