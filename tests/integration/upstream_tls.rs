//! A color reached by DNS name over TLS, with a credential from a file: a real Envoy
//! resolves `localhost`, sends the SNI, checks the backend's certificate against the CA the
//! state names, and adds the API key that switchyard serves over SDS; replacing the key
//! file rotates the key under load without a failed request; a key file gone keeps the last
//! key in force and is reported; and a CA that did not sign the backend's certificate stops
//! traffic to it (so the check is real).

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use crate::common::backend::Backend;
use crate::common::control_plane::ControlPlane;
use crate::common::envoy::{Envoy, Xds};
use crate::common::load::{Load, Protocol};
use crate::common::tls::Pki;
use crate::common::{free_port, http};

crate::both_protocols!(
    tls_by_dns_name_with_sni_a_checked_ca_and_a_key_that_rotates_under_load_without_a_failed_request,
);

/// One service: blue is `localhost:<port>` over TLS with CA `ca` and an `x-api-key` from
/// `key`; green is a plain address.
fn state(listener: u16, blue_port: u16, ca: &Path, key: &Path, green: SocketAddr) -> String {
    format!(
        "listeners:
  - name: public
    address: 127.0.0.1
    port: {listener}
services:
  - name: models
    listener: public
    domains: [\"*\"]
    blue:
      endpoints: [\"localhost:{blue_port}\"]
      tls:
        ca: {ca}
      host_rewrite: api.models.example
      credential:
        header: x-api-key
        file: {key}
    green:
      endpoints: [\"{green}\"]
    active: blue
",
        ca = ca.display(),
        key = key.display(),
    )
}

/// The `x-api-key` the blue backend saw last, if any request reached it.
fn last_key(b: &Backend) -> Option<String> {
    b.recent_requests()
        .last()
        .and_then(|r| r.header("x-api-key").map(str::to_owned))
}

async fn tls_by_dns_name_with_sni_a_checked_ca_and_a_key_that_rotates_under_load_without_a_failed_request(
    xds: Xds,
) {
    let pki = Pki::new("upstream");
    let id = pki.issue("backend", &["localhost"]);
    let blue = Backend::start_tls("blue", "v1", &id.cert, &id.key);
    blue.require_header("x-api-key", &["key-one"]);
    let green = Backend::start("green", "v2");
    let secrets = tempfile::tempdir().unwrap();
    let key = secrets.path().join("api-key");
    std::fs::write(&key, "key-one\n").unwrap();
    let port = free_port();
    let text = state(port, blue.addr().port(), &pki.ca_path(), &key, green.addr());
    let cp = ControlPlane::start(&text).await;
    let envoy = Envoy::builder("envoy-1", cp.xds_addr())
        .xds(xds)
        .start()
        .await;
    let listener = SocketAddr::from(([127, 0, 0, 1], port));

    // Through Envoy: TLS to `localhost`, the SNI and Host said, the key added.
    assert_eventually!(
        Duration::from_secs(10),
        http::get(listener, "/v1/ask", "models.example").await == Ok((200, "blue v1\n".to_owned())),
        "envoy log: {}",
        envoy.log_tail()
    );
    let seen = blue.recent_requests().pop().unwrap();
    assert_eq!(seen.sni.as_deref(), Some("localhost"));
    assert_eq!(seen.host, "api.models.example");
    assert_eq!(seen.header("x-api-key"), Some("key-one"));

    // Rotation under load: the backend accepts both keys while the file changes, then
    // only the new one.
    let load = Load::start(listener, "models.example", "/v1/ask", Protocol::Http1, 4).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    blue.require_header("x-api-key", &["key-one", "key-two"]);
    let tmp = secrets.path().join(".api-key.new");
    std::fs::write(&tmp, "key-two\n").unwrap();
    std::fs::rename(&tmp, &key).unwrap();
    assert_eventually!(
        Duration::from_secs(10),
        last_key(&blue).as_deref() == Some("key-two")
    );
    // Requests still in flight may carry the old key for a moment; then it is revoked.
    tokio::time::sleep(Duration::from_millis(500)).await;
    blue.require_header("x-api-key", &["key-two"]);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let report = load.stop().await;
    report.assert_nothing_dropped();
    assert!(report.by_color("blue") > 50, "{}", report.summary());
    assert_eq!(blue.rejected_requests(), 0);
    assert_eq!(
        cp.status().await["proxies"][0]["secrets"]["status"],
        "synced",
        "{}",
        cp.status().await
    );

    // The key file gone: the proxies keep the last key, and switchyard says so.
    std::fs::remove_file(&key).unwrap();
    assert_eventually!(
        Duration::from_secs(5),
        cp.status().await["watch"]["files_unreadable"][0]["path"] == key.display().to_string()
    );
    let (_, ready) = cp.admin_get("/readyz").await;
    assert!(
        ready.contains("the proxies keep its last content"),
        "{ready}"
    );
    assert_eq!(
        cp.counter("switchyard_state_named_files_unreadable").await,
        1
    );
    assert_eq!(
        http::get(listener, "/v1/ask", "models.example").await,
        Ok((200, "blue v1\n".to_owned()))
    );
    assert_eq!(last_key(&blue).as_deref(), Some("key-two"));
    std::fs::write(&key, "key-two\n").unwrap();
    assert_eventually!(
        Duration::from_secs(5),
        cp.status().await["watch"]["files_unreadable"] == serde_json::json!([])
    );

    // A CA that did not sign the backend's certificate: the handshake fails, so traffic to
    // blue stops (the certificate really is checked). `dns: logical` makes it a new
    // cluster, so no connection opened under the good CA is reused.
    let other = Pki::new("other");
    let wrong_ca = state(
        port,
        blue.addr().port(),
        &other.ca_path(),
        &key,
        green.addr(),
    )
    .replace("      tls:\n", "      dns: logical\n      tls:\n");
    cp.save_by_rename(&wrong_ca);
    assert_eventually!(
        Duration::from_secs(10),
        http::get(listener, "/v1/ask", "models.example")
            .await
            .is_ok_and(|(code, _)| code == 503)
    );
    let failed = envoy
        .stat("cluster.models-blue.ssl.fail_verify_error")
        .await;
    assert!(failed.is_some_and(|n| n > 0), "{failed:?}");
}
