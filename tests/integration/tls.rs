//! TLS and mutual TLS on the xDS port: a real Envoy over mutual TLS (the shipped
//! `envoy/bootstrap-mtls.yaml`) receives a switch; clients without a certificate, with one
//! from another CA, or speaking plaintext are refused; a rotated certificate is served to
//! new connections; plaintext on a non-loopback address is refused at startup.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity as TonicIdentity};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

use crate::common::control_plane::BlueGreen;
use crate::common::envoy::{Envoy, EnvoyTls};
use crate::common::http;
use crate::common::tls::{Identity, Pki, SERVER_NAME};

/// How a test client connects.
struct Client<'a> {
    /// Verify the server against this CA; `None`: plaintext.
    ca: Option<&'a Path>,
    identity: Option<&'a Identity>,
    server_name: &'a str,
}

/// A gRPC health check against `addr`: `Ok` when it was answered SERVING.
async fn health(addr: SocketAddr, client: Client<'_>) -> Result<(), String> {
    let scheme = if client.ca.is_some() { "https" } else { "http" };
    let mut endpoint = Channel::from_shared(format!("{scheme}://{addr}"))
        .unwrap()
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(5));
    if let Some(ca) = client.ca {
        let mut tls = ClientTlsConfig::new()
            .domain_name(client.server_name)
            .ca_certificate(Certificate::from_pem(std::fs::read(ca).unwrap()));
        if let Some(id) = client.identity {
            tls = tls.identity(TonicIdentity::from_pem(
                std::fs::read(&id.cert).unwrap(),
                std::fs::read(&id.key).unwrap(),
            ));
        }
        endpoint = endpoint.tls_config(tls).map_err(|e| format!("{e:?}"))?;
    }
    let channel = endpoint.connect().await.map_err(|e| format!("{e:?}"))?;
    let answer = HealthClient::new(channel)
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .map_err(|s| format!("{s:?}"))?;
    match answer.into_inner().status {
        1 => Ok(()),
        other => Err(format!("health status {other}")),
    }
}

async fn through_envoy(listener: SocketAddr) -> Option<String> {
    let (code, body) = http::get(listener, "/", "summarizer.example").await.ok()?;
    (code == 200).then(|| {
        body.split_whitespace()
            .next()
            .unwrap_or_default()
            .to_owned()
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_envoy_over_mutual_tls_receives_a_switch() {
    let pki = Pki::new("fleet");
    let files = pki.server_files();
    let scene = BlueGreen::start_with(|c| c.tls = Some(files)).await;
    let envoy = Envoy::builder("envoy-1", scene.cp.xds_addr())
        .tls(EnvoyTls {
            identity: pki.issue("envoy-1", &["envoy-1"]),
            ca: pki.ca_path(),
        })
        .start()
        .await;
    envoy.wait_live(Duration::from_secs(20)).await;
    let listener = scene.listener;
    assert_eventually!(
        Duration::from_secs(10),
        through_envoy(listener).await.as_deref() == Some("blue")
    );
    scene.cp.save_by_rename(&scene.state("green"));
    assert_eventually!(
        Duration::from_secs(10),
        through_envoy(listener).await.as_deref() == Some("green")
    );
    assert_eventually!(Duration::from_secs(5), {
        let status = scene.cp.status().await;
        status["proxies"][0]["node_id"] == "envoy-1" && status["proxies"][0]["status"] == "synced"
    });
}

#[tokio::test]
async fn clients_without_a_certificate_from_the_client_ca_are_refused() {
    let pki = Pki::new("fleet");
    let stranger = Pki::new("stranger");
    let files = pki.server_files();
    let scene = BlueGreen::start_with(|c| c.tls = Some(files)).await;
    let xds = scene.cp.xds_addr();
    let ca = pki.ca_path();
    let good = pki.issue("operator", &["operator"]);
    let forged = stranger.issue("envoy-1", &["envoy-1"]);
    let client = |identity| Client {
        ca: Some(&ca),
        identity,
        server_name: SERVER_NAME,
    };
    let no_certificate = health(xds, client(None)).await;
    assert!(no_certificate.is_err(), "{no_certificate:?}");
    let another_ca = health(xds, client(Some(&forged))).await;
    assert!(another_ca.is_err(), "{another_ca:?}");
    let plaintext = Client {
        ca: None,
        identity: None,
        server_name: SERVER_NAME,
    };
    let plaintext = health(xds, plaintext).await;
    assert!(plaintext.is_err(), "{plaintext:?}");
    // Refused clients leave the server serving the good ones.
    health(xds, client(Some(&good))).await.unwrap();
}

#[tokio::test]
async fn a_rotated_server_certificate_is_served_to_new_connections() {
    let pki = Pki::new("fleet");
    let files = pki.server_files();
    let scene = BlueGreen::start_with(|c| c.tls = Some(files)).await;
    let xds = scene.cp.xds_addr();
    let (ca, me) = (pki.ca_path(), pki.issue("operator", &["operator"]));
    let named = |server_name| Client {
        ca: Some(&ca),
        identity: Some(&me),
        server_name,
    };
    health(xds, named(SERVER_NAME)).await.unwrap();
    assert!(health(xds, named("renamed.example")).await.is_err());
    // The same files, rewritten with a certificate for another name.
    pki.issue("switchyard", &["renamed.example"]);
    assert_eventually!(
        Duration::from_secs(10),
        health(xds, named("renamed.example")).await.is_ok()
    );
}

#[tokio::test]
async fn plaintext_xds_on_a_non_loopback_address_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.yaml");
    std::fs::write(&path, include_str!("../fixtures/one_service.yaml")).unwrap();
    let mut config = switchyard::Config::new(&path);
    config.xds_addr = "0.0.0.0:0".parse().unwrap();
    config.admin_addr = "127.0.0.1:0".parse().unwrap();
    let error = switchyard::Server::bind(config)
        .await
        .err()
        .expect("refused");
    let message = error.to_string();
    assert!(
        message.starts_with("refusing to serve xDS in plaintext on 0.0.0.0:0"),
        "{message}"
    );
    assert!(message.contains("--tls-cert"), "{message}");
    assert!(message.contains("--insecure"), "{message}");
}
