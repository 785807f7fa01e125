//! A config that passes validation but that Envoy rejects: the NACK is recorded per proxy
//! with Envoy's message, never answered with a resend of the same version, and the next
//! good version goes out normally. The proxy keeps serving what it had. Against an Envoy
//! speaking each ADS variant (SotW and delta).

use std::net::TcpListener;
use std::time::Duration;

use crate::common::control_plane::BlueGreen;
use crate::common::envoy::Xds;
use crate::common::http;

crate::both_protocols!(listener_envoy_cannot_bind_is_rejected_recorded_and_not_resent);

async fn listener_envoy_cannot_bind_is_rejected_recorded_and_not_resent(xds: Xds) {
    let scene = BlueGreen::start().await;
    let cp = &scene.cp;
    let envoy = scene.envoy_speaking("nack-1", xds).await;
    assert_eventually!(
        Duration::from_secs(5),
        http::get(scene.listener, "/", "x")
            .await
            .is_ok_and(|(_, b)| b.starts_with("blue"))
    );

    // A port held by a socket without SO_REUSEPORT: valid in the file, but Envoy cannot
    // bind it, so it rejects the whole listener update.
    let squatter = TcpListener::bind("127.0.0.1:0").unwrap();
    let taken = squatter.local_addr().unwrap().port();
    let with_blocked = scene.state("green").replace(
        "services:",
        &format!("  - name: blocked\n    address: 127.0.0.1\n    port: {taken}\nservices:"),
    );
    cp.save_by_rename(&with_blocked);

    assert_eventually!(
        Duration::from_secs(5),
        !cp.status().await["proxies"][0]["listeners"]["rejected"].is_null()
    );
    let status = cp.status().await;
    let proxy = &status["proxies"][0];
    let rejected = &proxy["listeners"]["rejected"];
    let message = rejected["message"].as_str().unwrap();
    assert!(message.contains("blocked"), "{message}");
    assert!(message.contains(&taken.to_string()), "{message}");
    assert!(rejected["at"].is_string());
    assert_eq!(
        rejected["version"], status["state"]["resource_versions"]["listeners"],
        "the rejected version is the current one"
    );
    assert_eq!(proxy["synced"], false);
    assert_eq!(proxy["protocol"], xds.name());
    // Routes are independent of the failed listener: the switch to green still happened.
    assert_eventually!(
        Duration::from_secs(2),
        http::get(scene.listener, "/", "x")
            .await
            .is_ok_and(|(_, b)| b.starts_with("green"))
    );

    // No resend loop: the rejected version went out once and is not sent again.
    let listeners_sent = "switchyard_xds_responses_total{type=\"listeners\"}";
    let listeners_nacked = "switchyard_xds_nacks_total{type=\"listeners\"}";
    let sent = cp.counter(listeners_sent).await;
    assert_eq!(cp.counter(listeners_nacked).await, 1);
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(
        cp.counter(listeners_sent).await,
        sent,
        "the rejected listeners were sent again"
    );
    assert_eq!(cp.counter(listeners_nacked).await, 1);

    // The next good version goes out normally and is acknowledged.
    cp.save_by_rename(&scene.state("green"));
    assert_eventually!(Duration::from_secs(3), {
        let status = cp.status().await;
        let proxy = &status["proxies"][0];
        proxy["listeners"]["acked"]["version"] == status["state"]["resource_versions"]["listeners"]
            && proxy["synced"] == true
    });
    // The rejection stays on record (with its version) for the operator.
    let status = cp.status().await;
    assert!(
        status["proxies"][0]["listeners"]["rejected"]["message"]
            .as_str()
            .unwrap()
            .contains("blocked")
    );
    drop(squatter);
    drop(envoy);
}
