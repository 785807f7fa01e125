//! Load reports end to end: a real Envoy 1.40 started from the shipped bootstrap (LRS on)
//! sends requests to real backends; `/status`'s `load` shows them for the cluster they went
//! to. What Envoy counts where was found with these tests: a 5xx is an error, a 4xx is not;
//! a request in flight is in `total_requests_in_progress`; a request that cannot reach an
//! endpoint is an error but not an issued request.
//!
//! Every scenario runs against an Envoy speaking each ADS variant (SotW and delta).

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::envoy::config::endpoint::v3::{ClusterStats, UpstreamLocalityStats};
use envoy_types::pb::envoy::service::load_stats::v3::LoadStatsRequest;
use envoy_types::pb::envoy::service::load_stats::v3::load_reporting_service_client::LoadReportingServiceClient;
use http_body_util::Full;
use hyper::Response;
use serde_json::Value;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;

use crate::common::backend::Backend;
use crate::common::control_plane::{ControlPlane, one_service};
use crate::common::envoy::{Envoy, Xds};
use crate::common::http;

crate::both_protocols!(
    envoys_requests_5xx_and_requests_in_flight_show_for_the_color_they_went_to,
    requests_that_cannot_reach_an_endpoint_are_errors_but_not_issued,
    an_envoy_over_mutual_tls_reports_as_the_node_its_certificate_names,
);

const HOST: &str = "summarizer.example";

/// A backend that answers by path: `/fail` 503, `/missing` 404, `/slow` once released,
/// anything else 200. It runs on the test's runtime until dropped.
struct Scripted {
    addr: SocketAddr,
    release: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Scripted {
    async fn start() -> Scripted {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (release, released) = watch::channel(false);
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                let released = released.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| {
                        let mut released = released.clone();
                        async move {
                            let status = match hyper::Request::uri(&req).path() {
                                "/fail" => 503,
                                "/missing" => 404,
                                "/slow" => {
                                    let _ = released.wait_for(|r| *r).await;
                                    200
                                }
                                _ => 200,
                            };
                            let response = Response::builder()
                                .status(status)
                                .body(Full::new(Bytes::from_static(b"blue v1\n")))
                                .unwrap();
                            Ok::<_, std::convert::Infallible>(response)
                        }
                    });
                    let io = hyper_util::rt::TokioIo::new(tcp);
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(io, service)
                        .await;
                });
            }
        });
        Scripted {
            addr,
            release,
            task,
        }
    }
}

impl Drop for Scripted {
    fn drop(&mut self) {
        let _ = self.release.send(true);
        self.task.abort();
    }
}

/// `/status`'s `load` for one color of `summarizer`.
async fn load(cp: &ControlPlane, color: &str) -> Value {
    cp.status().await["load"]["summarizer"][color].clone()
}

/// Waits until `load(cp, color)[field] == expected`; fails with `/status`'s `load`.
async fn until(cp: &ControlPlane, color: &str, field: &str, expected: u64, within: Duration) {
    assert_eventually!(
        within,
        load(cp, color).await[field] == expected,
        "{color} {field} is not {expected}: {}",
        cp.status().await["load"]
    );
}

/// `GET path` through Envoy `n` times; the statuses.
async fn get_n(listener: SocketAddr, path: &str, n: usize) -> Vec<u16> {
    let mut codes = Vec::new();
    for _ in 0..n {
        let (code, _) = http::get(listener, path, HOST)
            .await
            .expect("Envoy answers");
        codes.push(code);
    }
    codes
}

/// A request through Envoy that stays open: sent, never read. Envoy holds it in flight for
/// as long as the backend does.
async fn hold(listener: SocketAddr, path: &str) -> TcpStream {
    let mut tcp = TcpStream::connect(listener).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nhost: {HOST}\r\n\r\n");
    tcp.write_all(request.as_bytes()).await.unwrap();
    tcp
}

/// A proxy of its own making on LRS: reports `in_flight` requests on `summarizer-blue`
/// every 200 ms as node `node`, until dropped.
struct FakeReporter(tokio::task::JoinHandle<()>);

impl FakeReporter {
    async fn start(xds: SocketAddr, node: &str, in_flight: u64) -> FakeReporter {
        let mut client = LoadReportingServiceClient::connect(format!("http://{xds}"))
            .await
            .unwrap();
        let (tx, rx) = mpsc::channel(4);
        let first = LoadStatsRequest {
            node: Some(Node {
                id: node.to_owned(),
                ..Default::default()
            }),
            cluster_stats: Vec::new(),
        };
        tx.send(first).await.unwrap();
        let mut answers = client
            .stream_load_stats(ReceiverStream::new(rx))
            .await
            .unwrap()
            .into_inner();
        let answer = answers.message().await.unwrap().expect("an answer");
        assert!(answer.send_all_clusters);
        FakeReporter(tokio::spawn(async move {
            let _answers = answers;
            loop {
                let report = LoadStatsRequest {
                    node: None,
                    cluster_stats: vec![ClusterStats {
                        cluster_name: "summarizer-blue".to_owned(),
                        upstream_locality_stats: vec![UpstreamLocalityStats {
                            total_requests_in_progress: in_flight,
                            ..Default::default()
                        }],
                        ..Default::default()
                    }],
                };
                if tx.send(report).await.is_err() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }))
    }
}

impl Drop for FakeReporter {
    fn drop(&mut self) {
        self.0.abort();
    }
}

async fn envoys_requests_5xx_and_requests_in_flight_show_for_the_color_they_went_to(xds: Xds) {
    let blue = Scripted::start().await;
    let green = Backend::start("green", "v2");
    let listener: SocketAddr = ([127, 0, 0, 1], crate::common::free_port()).into();
    let state = one_service(listener.port(), blue.addr, green.addr(), "blue");
    let cp = ControlPlane::start(&state).await;
    let envoy = Envoy::builder("lrs-envoy", cp.xds_addr())
        .xds(xds)
        .start()
        .await;
    envoy.wait_live(Duration::from_secs(20)).await;
    // Envoy counts a cluster from the report after the one that first names it.
    until(&cp, "blue", "proxies_reporting", 1, Duration::from_secs(10)).await;

    let mut codes = get_n(listener, "/v1/summarize", 20).await;
    codes.extend(get_n(listener, "/fail", 5).await);
    codes.extend(get_n(listener, "/missing", 3).await);
    assert_eq!(codes.iter().filter(|c| **c == 200).count(), 20, "{codes:?}");
    until(&cp, "blue", "requests", 28, Duration::from_secs(5)).await;
    let shown = load(&cp, "blue").await;
    assert_eq!(
        shown["errors"], 5,
        "a 503 is an error, a 404 is not: {shown}"
    );
    assert_eq!(shown["issued"], 28, "{shown}");
    assert_eq!(shown["error_ratio"], 5.0 / 28.0, "{shown}");
    let idle = load(&cp, "green").await;
    assert_eq!(
        (&idle["requests"], &idle["errors"]),
        (&0.into(), &0.into()),
        "{idle}"
    );
    assert_eq!(
        idle["proxies_reporting"], 1,
        "the idle color is reported on too"
    );

    // Requests held by a slow backend are in flight, beside another proxy's.
    let _fake = FakeReporter::start(cp.xds_addr(), "lrs-fake", 7).await;
    let held = [
        hold(listener, "/slow").await,
        hold(listener, "/slow").await,
        hold(listener, "/slow").await,
    ];
    until(&cp, "blue", "in_flight", 3 + 7, Duration::from_secs(5)).await;
    assert_eq!(load(&cp, "blue").await["proxies_reporting"], 2);
    let metrics = cp.metrics().await;
    assert!(
        metrics.contains("switchyard_load_report_streams 2"),
        "{metrics}"
    );

    // Envoy exits with its requests in flight: its share goes, the other proxy's stays,
    // and what it reported still counts.
    drop(envoy);
    until(&cp, "blue", "in_flight", 7, Duration::from_secs(5)).await;
    let shown = load(&cp, "blue").await;
    assert_eq!(shown["proxies_reporting"], 1, "{shown}");
    assert_eq!(
        (&shown["requests"], &shown["errors"]),
        (&28.into(), &5.into())
    );
    drop(held);
}

async fn requests_that_cannot_reach_an_endpoint_are_errors_but_not_issued(xds: Xds) {
    let blue = Backend::start("blue", "v1");
    // Nothing listens on green's endpoint: Envoy's connections are refused.
    let closed: SocketAddr = ([127, 0, 0, 1], crate::common::free_port()).into();
    let listener: SocketAddr = ([127, 0, 0, 1], crate::common::free_port()).into();
    let state = |active| one_service(listener.port(), blue.addr(), closed, active);
    let cp = ControlPlane::start(&state("blue")).await;
    let envoy = Envoy::builder("lrs-refused", cp.xds_addr())
        .xds(xds)
        .start()
        .await;
    envoy.wait_live(Duration::from_secs(20)).await;
    assert_eventually!(
        Duration::from_secs(10),
        load(&cp, "green").await["proxies_reporting"] == 1
    );
    cp.save_by_rename(&state("green"));
    assert_eventually!(
        Duration::from_secs(5),
        http::get(listener, "/", HOST)
            .await
            .is_ok_and(|(code, _)| code == 503)
    );
    get_n(listener, "/", 3).await;
    assert_eventually!(
        Duration::from_secs(5),
        load(&cp, "green").await["requests"].as_u64() >= Some(4),
        "{}",
        cp.status().await["load"]
    );
    let shown = load(&cp, "green").await;
    assert_eq!(shown["errors"], shown["requests"], "{shown}");
    assert_eq!(shown["issued"], 0, "{shown}");
    assert_eq!(shown["error_ratio"], 1.0, "{shown}");
    drop(envoy);
}

async fn an_envoy_over_mutual_tls_reports_as_the_node_its_certificate_names(xds: Xds) {
    use crate::common::control_plane::BlueGreen;
    use crate::common::envoy::EnvoyTls;
    use crate::common::tls::Pki;

    let pki = Pki::new("fleet");
    let files = pki.server_files();
    // With mutual TLS, a proxy must be named by its certificate: a load reporting stream
    // whose certificate were not seen would be refused, and nothing would show.
    let scene = BlueGreen::start_with(|c| c.tls = Some(files)).await;
    let envoy = Envoy::builder("envoy-1", scene.cp.xds_addr())
        .xds(xds)
        .tls(EnvoyTls {
            identity: pki.issue("envoy-1", &["envoy-1"]),
            ca: pki.ca_path(),
        })
        .start()
        .await;
    envoy.wait_live(Duration::from_secs(20)).await;
    let cp = &scene.cp;
    until(cp, "blue", "proxies_reporting", 1, Duration::from_secs(10)).await;
    get_n(scene.listener, "/", 5).await;
    until(cp, "blue", "requests", 5, Duration::from_secs(5)).await;
}
