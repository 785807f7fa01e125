//! TLS and mutual TLS on the xDS port: a real Envoy over mutual TLS (the shipped
//! `envoy/bootstrap-mtls.yaml`) receives a switch; clients without a certificate, with one
//! from another CA, or speaking plaintext are refused; a proxy whose certificate does not
//! name the node it claims, or whose node the allowlist leaves out, is refused before it
//! sees any configuration; only operators may call CSDS and switchyard.v1 when
//! `--operator` says so; a rotated certificate is served to new connections; plaintext on a
//! non-loopback address is refused at startup.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient;
use envoy_types::pb::envoy::service::discovery::v3::{DiscoveryRequest, DiscoveryResponse};
use switchyard::grpc::pb::GetStateRequest;
use switchyard::grpc::pb::switchyard_client::SwitchyardClient;
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

/// A channel to `addr` as `client` connects.
async fn channel(addr: SocketAddr, client: &Client<'_>) -> Result<Channel, String> {
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
    endpoint.connect().await.map_err(|e| format!("{e:?}"))
}

/// A client with `identity`, trusting `ca` for switchyard's certificate.
fn holder<'a>(ca: &'a Path, identity: &'a Identity) -> Client<'a> {
    Client {
        ca: Some(ca),
        identity: Some(identity),
        server_name: SERVER_NAME,
    }
}

/// A gRPC health check against `addr`: `Ok` when it was answered SERVING.
async fn health(addr: SocketAddr, client: Client<'_>) -> Result<(), String> {
    let channel = channel(addr, &client).await?;
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
        http::color(listener).await.as_deref() == Some("blue")
    );
    scene.cp.save_by_rename(&scene.state("green"));
    assert_eventually!(
        Duration::from_secs(10),
        http::color(listener).await.as_deref() == Some("green")
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

/// Opens an ADS stream as `client`, claiming node `node_id` in cluster `edge`, and asks for
/// clusters: the first answer, or the status that ended the stream.
async fn first_clusters(
    addr: SocketAddr,
    client: Client<'_>,
    node_id: &str,
) -> Result<DiscoveryResponse, tonic::Status> {
    let channel = channel(addr, &client)
        .await
        .map_err(tonic::Status::unavailable)?;
    let request = DiscoveryRequest {
        node: Some(Node {
            id: node_id.to_owned(),
            cluster: "edge".to_owned(),
            ..Node::default()
        }),
        type_url: "type.googleapis.com/envoy.config.cluster.v3.Cluster".to_owned(),
        ..DiscoveryRequest::default()
    };
    let mut client = AggregatedDiscoveryServiceClient::new(channel);
    let (_keep_open, requests) = tokio::sync::mpsc::channel(1);
    _keep_open.send(request).await.unwrap();
    let mut responses = client
        .stream_aggregated_resources(tokio_stream::wrappers::ReceiverStream::new(requests))
        .await?
        .into_inner();
    let first = responses.message().await?;
    drop(_keep_open);
    first.ok_or_else(|| tonic::Status::unknown("the stream ended without an answer"))
}

#[tokio::test]
async fn a_proxy_is_served_only_as_the_node_its_certificate_names() {
    let pki = Pki::new("fleet");
    let files = pki.server_files();
    let scene = BlueGreen::start_with(|c| c.tls = Some(files)).await;
    let xds = scene.cp.xds_addr();
    let ca = pki.ca_path();
    let as_holder = |identity| holder(&ca, identity);
    let envoy_2 = pki.issue("envoy-2", &["envoy-2"]);
    let spiffe = pki.issue("spiffe", &["spiffe://fleet.example/ns/edge/envoy-1"]);

    let ok = first_clusters(xds, as_holder(&envoy_2), "envoy-2")
        .await
        .unwrap();
    assert_eq!(ok.resources.len(), 2, "blue and green clusters");
    let ok = first_clusters(xds, as_holder(&spiffe), "envoy-1")
        .await
        .unwrap();
    assert_eq!(ok.resources.len(), 2);

    let impostor = first_clusters(xds, as_holder(&envoy_2), "envoy-1")
        .await
        .unwrap_err();
    assert_eq!(
        impostor.code(),
        tonic::Code::PermissionDenied,
        "{impostor:?}"
    );
    assert_eq!(
        impostor.message(),
        "the proxy claims node id `envoy-1` but its certificate names envoy-2"
    );
    // It never showed up as envoy-1 either.
    let status = scene.cp.status().await;
    let proxies = status["proxies"].as_array().unwrap();
    assert!(
        proxies.iter().all(|p| p["node_id"] != "envoy-1"),
        "{status}"
    );
}

#[tokio::test]
async fn only_allowed_nodes_are_served_and_only_operators_may_inspect() {
    let pki = Pki::new("fleet");
    let files = pki.server_files();
    let scene = BlueGreen::start_with(|c| {
        c.tls = Some(files);
        c.allow_nodes = vec!["edge-*".to_owned()];
        c.operators = vec!["operator.fleet.example".to_owned()];
    })
    .await;
    let xds = scene.cp.xds_addr();
    let ca = pki.ca_path();
    let as_holder = |identity| holder(&ca, identity);
    let edge = pki.issue("edge-7", &["edge-7"]);
    let rogue = pki.issue("rogue", &["rogue"]);
    let operator = pki.issue("operator", &["operator.fleet.example"]);

    first_clusters(xds, as_holder(&edge), "edge-7")
        .await
        .unwrap();
    let refused = first_clusters(xds, as_holder(&rogue), "rogue")
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::PermissionDenied, "{refused:?}");
    assert!(
        refused.message().contains("not allowed by --allow-node"),
        "{refused:?}"
    );

    let get_state = async |identity| {
        let channel = channel(xds, &as_holder(identity)).await.unwrap();
        SwitchyardClient::new(channel)
            .get_state(GetStateRequest {})
            .await
            .map(|r| r.into_inner().version)
    };
    assert!(!get_state(&operator).await.unwrap().is_empty());
    let proxy = get_state(&edge).await.unwrap_err();
    assert_eq!(proxy.code(), tonic::Code::PermissionDenied, "{proxy:?}");
    assert!(
        proxy
            .message()
            .starts_with("only operators may call this service")
    );
    // Health stays open to every client.
    health(xds, as_holder(&edge)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn switchyard_status_over_mutual_tls_as_an_operator() {
    let pki = Pki::new("fleet");
    let files = pki.server_files();
    let scene = BlueGreen::start_with(|c| {
        c.tls = Some(files);
        c.operators = vec!["operator.fleet.example".to_owned()];
    })
    .await;
    let xds = scene.cp.xds_addr().to_string();
    let ca = pki.ca_path();
    let run = |id: Identity| {
        let (xds, ca) = (xds.clone(), ca.clone());
        tokio::task::spawn_blocking(move || {
            std::process::Command::new(env!("CARGO_BIN_EXE_switchyard"))
                .args([
                    "status",
                    "--xds-addr",
                    &xds,
                    "--tls-server-name",
                    SERVER_NAME,
                ])
                .arg("--tls-ca")
                .arg(&ca)
                .arg("--tls-cert")
                .arg(&id.cert)
                .arg("--tls-key")
                .arg(&id.key)
                .output()
                .unwrap()
        })
    };
    let out = run(pki.issue("operator", &["operator.fleet.example"]))
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("summarizer  public    blue     100      0  *"),
        "{text}"
    );
    let out = run(pki.issue("envoy-1", &["envoy-1"])).await.unwrap();
    assert_eq!(out.status.code(), Some(69), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("only operators may call this service"),
        "{stderr}"
    );
}
