//! Make-before-break for additions and removals, under load, judged by Envoy's own stats:
//! a service added while its domain takes traffic gets its clusters and endpoints before
//! any route names them; a service removed gets routes that no longer name its clusters
//! before the clusters go. Not one 503, not one `no_cluster`. Against an Envoy speaking
//! each ADS variant (SotW and delta).

use std::time::Duration;

use crate::common::backend::Backend;
use crate::common::control_plane::BlueGreen;
use crate::common::envoy::Xds;
use crate::common::load::{Load, Protocol};

crate::both_protocols!(
    adding_and_removing_a_service_under_load_never_routes_to_a_missing_cluster,
    adding_and_removing_a_service_named_by_dns_under_load_never_routes_to_a_missing_cluster,
);

const TOGGLES: usize = 30;

async fn adding_and_removing_a_service_under_load_never_routes_to_a_missing_cluster(xds: Xds) {
    add_and_remove_under_load(xds, |b| b.addr().to_string()).await;
}

/// The same with the added service's endpoints as DNS names (`localhost:PORT`): clusters
/// that carry their endpoints and that Envoy resolves itself.
async fn adding_and_removing_a_service_named_by_dns_under_load_never_routes_to_a_missing_cluster(
    xds: Xds,
) {
    add_and_remove_under_load(xds, |b| format!("localhost:{}", b.addr().port())).await;
}

/// A service added and removed 30 times while its domain takes traffic, its endpoints
/// written by `endpoint`.
async fn add_and_remove_under_load(xds: Xds, endpoint: impl Fn(&Backend) -> String) {
    let scene = BlueGreen::start().await;
    let cp = &scene.cp;
    let envoy = scene.envoy_speaking("mbb-1", xds).await;
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
        endpoint(&extra_blue),
        endpoint(&extra_green)
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
    assert_eq!(cp.status().await["proxies"][0]["protocol"], xds.name());
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
    // The clusters that exist at the end are exactly the state's (and switchyard's own).
    let (_, clusters) = envoy.admin_get("/clusters?format=json").await;
    let mut names = cluster_names(&clusters);
    names.sort();
    assert_eq!(
        names,
        [
            "extra-blue",
            "extra-green",
            "summarizer-blue",
            "summarizer-green",
            "xds_cluster"
        ],
        "the state's clusters and the static one to switchyard"
    );
    // Removed for good, the service's clusters leave Envoy (delta: `removed_resources`).
    cp.save_by_rename(&without_extra);
    assert_eventually!(Duration::from_secs(3), {
        let (_, clusters) = envoy.admin_get("/clusters?format=json").await;
        let names = cluster_names(&clusters);
        names.contains(&"summarizer-blue".to_owned())
            && !names.iter().any(|n| n.starts_with("extra-"))
    });
}

/// The names of the clusters in Envoy's `/clusters?format=json`.
fn cluster_names(json: &str) -> Vec<String> {
    let clusters: serde_json::Value = serde_json::from_str(json).expect("JSON");
    clusters["cluster_statuses"]
        .as_array()
        .expect("cluster_statuses")
        .iter()
        .map(|c| c["name"].as_str().unwrap_or_default().to_owned())
        .collect()
}
