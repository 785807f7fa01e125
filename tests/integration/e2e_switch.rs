//! End to end: a real Envoy 1.40, two real HTTP backends, switchyard in-process. A saved
//! file moves traffic blue -> green; a broken file changes nothing and is reported with its
//! line; a good file moves traffic back.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::common::control_plane::BlueGreen;
use crate::common::envoy::{Envoy, Xds};
use crate::common::http;

crate::both_protocols!(
    saved_file_moves_envoy_from_blue_to_green_and_back,
    every_connected_envoy_follows_the_file,
    fifty_saves_in_100ms_reach_envoy_as_a_few_versions_and_the_last_wins,
);

/// The weighted clusters of the default route of the first virtual host in an Envoy's
/// config dump.
pub(crate) fn weights(dump: &serde_json::Value) -> Vec<(String, u64)> {
    let configs = dump["configs"].as_array().expect("configs");
    let routes = configs
        .iter()
        .find_map(|c| c["dynamic_route_configs"].as_array())
        .expect("dynamic route configurations");
    let vh = &routes[0]["route_config"]["virtual_hosts"][0];
    let default = vh["routes"].as_array().unwrap().last().unwrap();
    let clusters = default["route"]["weighted_clusters"]["clusters"].as_array();
    clusters
        .into_iter()
        .flatten()
        .map(|c| {
            let weight = c["weight"].as_u64().unwrap_or_default();
            (c["name"].as_str().unwrap().to_owned(), weight)
        })
        .collect()
}

/// The color that answered `n` requests in a row through Envoy, or why not.
async fn colors(listener: SocketAddr, n: usize) -> Result<Vec<String>, String> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let (code, body) = http::get(listener, "/v1/summarize", "summarizer.example").await?;
        if code != 200 {
            return Err(format!("status {code}: {body}"));
        }
        out.push(
            body.split_whitespace()
                .next()
                .unwrap_or_default()
                .to_owned(),
        );
    }
    Ok(out)
}

async fn all_reach(listener: SocketAddr, color: &str, n: usize) -> bool {
    colors(listener, n)
        .await
        .is_ok_and(|c| c.iter().all(|c| c == color))
}

async fn saved_file_moves_envoy_from_blue_to_green_and_back(xds: Xds) {
    let scene = BlueGreen::start().await;
    let (cp, listener) = (&scene.cp, scene.listener);
    let state = |active| scene.state(active);
    let envoy = scene.envoy_speaking("e2e-switch", xds).await;
    assert_eventually!(Duration::from_secs(5), all_reach(listener, "blue", 1).await);
    assert!(
        all_reach(listener, "blue", 20).await,
        "{:?}",
        colors(listener, 20).await
    );

    // Switch to green, saved editor-style (temp file renamed over).
    let saved = Instant::now();
    cp.save_by_rename(&state("green"));
    assert_eventually!(
        Duration::from_secs(2),
        all_reach(listener, "green", 10).await,
        "traffic did not move to green within 2 s: {:?}",
        colors(listener, 10).await
    );
    eprintln!(
        "blue -> green took {:?} (save to 10 green responses)",
        saved.elapsed()
    );

    // Proxies report the new routes as acknowledged.
    let status = cp.status().await;
    let route_version = status["state"]["resource_versions"]["routes"].clone();
    let proxy = &status["proxies"][0];
    assert_eq!(proxy["node_id"], "e2e-switch");
    assert_eq!(proxy["routes"]["acked"]["version"], route_version);
    assert_eq!(status["state"]["services"][0]["active"], "green");
    assert_eq!(status["state"]["services"][0]["weights"]["green"], 100);

    // A broken file (written in place) is rejected with its line; traffic stays green.
    let broken = state("blue").replace("active: blue", "active: purple");
    cp.save_in_place(&broken);
    assert_eventually!(
        Duration::from_secs(3),
        !cp.status().await["rejected"].is_null()
    );
    let status = cp.status().await;
    let rejected = &status["rejected"];
    assert_eq!(rejected["line"], 13, "{rejected}");
    assert_eq!(rejected["column"], 13, "{rejected}");
    let message = rejected["errors"][0].as_str().unwrap();
    assert!(
        message.ends_with("state.yaml:13:13: active must be `blue` or `green`, not `purple`"),
        "{message}"
    );
    assert_eq!(status["state"]["services"][0]["active"], "green");
    assert!(
        all_reach(listener, "green", 20).await,
        "{:?}",
        colors(listener, 20).await
    );
    assert_eq!(status["proxies"][0]["synced"], true);

    // A good blue file moves traffic back, and clears the rejection.
    cp.save_in_place(&state("blue"));
    assert_eventually!(
        Duration::from_secs(2),
        all_reach(listener, "blue", 10).await,
        "traffic did not move back to blue: {:?}",
        colors(listener, 10).await
    );
    assert!(cp.status().await["rejected"].is_null());
    assert!(scene.blue.requests() > 0 && scene.green.requests() > 0);
    drop(envoy);
}

async fn every_connected_envoy_follows_the_file(xds: Xds) {
    let scene = BlueGreen::start().await;
    let (cp, listener) = (&scene.cp, scene.listener);
    let state = |active| scene.state(active);
    // Both proxies get the same listener; Envoy binds listeners with SO_REUSEPORT, so
    // both bind the port and the kernel spreads connections over them. One sends its
    // node on the first message only, the other on every message.
    let e1 = Envoy::builder("e2e-multi-1", cp.xds_addr())
        .xds(xds)
        .start()
        .await;
    let e2 = Envoy::builder("e2e-multi-2", cp.xds_addr())
        .xds(xds)
        .node_on_first_message_only(false)
        .start()
        .await;
    e1.wait_live(Duration::from_secs(15)).await;
    e2.wait_live(Duration::from_secs(15)).await;
    assert_eventually!(Duration::from_secs(5), all_reach(listener, "blue", 5).await);

    cp.save_by_rename(&state("green"));
    assert_eventually!(
        Duration::from_secs(2),
        all_reach(listener, "green", 10).await
    );

    // Both proxies acknowledged the green routes, and each one's own config dump has them.
    let routes = cp.status().await["state"]["resource_versions"]["routes"].clone();
    assert_eventually!(Duration::from_secs(2), {
        let status = cp.status().await;
        let proxies = status["proxies"].as_array().cloned().unwrap_or_default();
        proxies.len() == 2
            && proxies
                .iter()
                .all(|p| p["routes"]["acked"]["version"] == routes)
    });
    let status = cp.status().await;
    let ids: Vec<&str> = status["proxies"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["node_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["e2e-multi-1", "e2e-multi-2"]);
    for envoy in [&e1, &e2] {
        let dump = envoy.config_dump().await;
        // SotW: the dump shows the response's version; delta: each resource's own.
        if xds == Xds::Sotw {
            assert!(
                dump.to_string().contains(routes.as_str().unwrap()),
                "{} does not run routes {routes}",
                envoy.node_id()
            );
        }
        assert_eq!(
            weights(&dump),
            [
                ("summarizer-blue".to_owned(), 0),
                ("summarizer-green".to_owned(), 100)
            ],
            "{} does not run the green routes",
            envoy.node_id()
        );
    }
}

async fn fifty_saves_in_100ms_reach_envoy_as_a_few_versions_and_the_last_wins(xds: Xds) {
    let scene = BlueGreen::start().await;
    let (cp, listener) = (&scene.cp, scene.listener);
    let envoy = scene.envoy_speaking("burst-1", xds).await;
    assert_eventually!(Duration::from_secs(5), all_reach(listener, "blue", 1).await);
    let routes = "switchyard_xds_responses_total{type=\"routes\"}";
    let sent_before = cp.counter(routes).await;

    let began = Instant::now();
    for i in 0..50 {
        let color = if i % 2 == 0 { "green" } else { "blue" };
        // Distinct content every time (a domain that changes), alternating colors.
        let text = scene.state(color).replace(
            "domains: [\"*\"]",
            &format!("domains: [\"*\", \"s{i}.example\"]"),
        );
        cp.save_by_rename(&text);
        std::thread::sleep(Duration::from_millis(1));
    }
    let took = began.elapsed();
    assert!(
        took < Duration::from_millis(400),
        "the 50 saves took {took:?}"
    );
    // The last save (i = 49) is blue.
    assert_eventually!(Duration::from_secs(2), {
        let status = cp.status().await;
        status["state"]["services"][0]["domains"][1] == "s49.example"
            && status["proxies"][0]["synced"] == true
    });
    assert!(all_reach(listener, "blue", 10).await);
    let sent = cp.counter(routes).await - sent_before;
    eprintln!("50 saves in {took:?} -> {sent} route versions sent to the proxy");
    // At most one read per 10 ms burst interval (plus the first and the last).
    let bound = u64::try_from(took.as_millis() / 10).unwrap() + 3;
    assert!(
        sent <= bound,
        "{sent} route versions sent for 50 saves in {took:?}"
    );
    let dump = envoy.config_dump().await.to_string();
    assert!(dump.contains("s49.example") && !dump.contains("s48.example"));
}
