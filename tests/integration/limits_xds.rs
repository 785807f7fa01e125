//! Hostile clients on the xDS port cost a bounded amount and are told why: too many
//! resource names (in one SotW request, or subscribed over many delta requests), an
//! oversized node, the same NACK sent over and over (SotW and delta), requests faster than
//! the rate, more connections than file descriptors.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient;
use envoy_types::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, DiscoveryRequest, DiscoveryResponse,
};
use envoy_types::pb::google::protobuf::{Struct, Value, value};
use envoy_types::pb::google::rpc::Status as RpcStatus;
use switchyard::xds::limits::StreamLimits;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use crate::common::control_plane::{ControlPlane, metric};

const STATE: &str = include_str!("../fixtures/one_service.yaml");
const CLUSTERS: &str = "type.googleapis.com/envoy.config.cluster.v3.Cluster";

/// An open ADS stream: requests go in, responses (or the status that ended it) come out.
struct Ads {
    requests: mpsc::Sender<DiscoveryRequest>,
    responses: tonic::Streaming<DiscoveryResponse>,
}

impl Ads {
    async fn open(xds: SocketAddr) -> Ads {
        let mut client = AggregatedDiscoveryServiceClient::connect(format!("http://{xds}"))
            .await
            .unwrap()
            .max_encoding_message_size(64 * 1024 * 1024);
        let (requests, rx) = mpsc::channel(16);
        let responses = client
            .stream_aggregated_resources(ReceiverStream::new(rx))
            .await
            .unwrap()
            .into_inner();
        Ads {
            requests,
            responses,
        }
    }

    async fn send(&self, request: DiscoveryRequest) {
        let _ = self.requests.send(request).await;
    }

    async fn next(&mut self) -> Result<Option<DiscoveryResponse>, tonic::Status> {
        self.responses.message().await
    }
}

/// An open delta ADS stream.
struct DeltaAds {
    requests: mpsc::Sender<DeltaDiscoveryRequest>,
    responses: tonic::Streaming<DeltaDiscoveryResponse>,
}

impl DeltaAds {
    async fn open(xds: SocketAddr) -> DeltaAds {
        let mut client = AggregatedDiscoveryServiceClient::connect(format!("http://{xds}"))
            .await
            .unwrap();
        let (requests, rx) = mpsc::channel(16);
        let responses = client
            .delta_aggregated_resources(ReceiverStream::new(rx))
            .await
            .unwrap()
            .into_inner();
        DeltaAds {
            requests,
            responses,
        }
    }

    async fn send(&self, request: DeltaDiscoveryRequest) {
        let _ = self.requests.send(request).await;
    }

    async fn next(&mut self) -> Result<Option<DeltaDiscoveryResponse>, tonic::Status> {
        self.responses.message().await
    }
}

const ENDPOINTS: &str = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment";

fn clusters(node: Option<Node>, names: Vec<String>) -> DiscoveryRequest {
    DiscoveryRequest {
        node,
        type_url: CLUSTERS.to_owned(),
        resource_names: names,
        ..DiscoveryRequest::default()
    }
}

fn node(id: &str) -> Option<Node> {
    Some(Node {
        id: id.to_owned(),
        ..Node::default()
    })
}

async fn start(limits: StreamLimits) -> ControlPlane {
    ControlPlane::start_with(STATE, |c| c.stream_limits = limits).await
}

#[tokio::test]
async fn a_request_with_too_many_resource_names_ends_its_stream() {
    let cp = start(StreamLimits {
        max_resource_names: 1_000,
        ..StreamLimits::default()
    })
    .await;
    let mut ads = Ads::open(cp.xds_addr()).await;
    let names = (0..1_001).map(|i| format!("cluster-{i}")).collect();
    ads.send(clusters(node("envoy-1"), names)).await;
    let status = ads.next().await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::ResourceExhausted, "{status:?}");
    assert_eq!(
        status.message(),
        "a request lists 1001 resource names; the limit is 1000 (--max-resource-names)"
    );
}

#[tokio::test]
async fn delta_subscriptions_adding_up_past_the_name_limit_end_the_stream() {
    let cp = start(StreamLimits {
        max_resource_names: 1_000,
        ..StreamLimits::default()
    })
    .await;
    let mut ads = DeltaAds::open(cp.xds_addr()).await;
    // 600 names, then 600 more: each request is within the limit, together they are not.
    for batch in 0..2 {
        ads.send(DeltaDiscoveryRequest {
            node: node("envoy-1"),
            type_url: ENDPOINTS.to_owned(),
            resource_names_subscribe: (0..600).map(|i| format!("c-{batch}-{i}")).collect(),
            ..Default::default()
        })
        .await;
    }
    let status = loop {
        match ads.next().await {
            Ok(Some(_)) => continue, // the first request's (empty) response
            Ok(None) => panic!("the stream ended without a status"),
            Err(status) => break status,
        }
    };
    assert_eq!(status.code(), tonic::Code::ResourceExhausted, "{status:?}");
    assert_eq!(
        status.message(),
        "the stream would subscribe to, for one type, 1200 resource names; the limit is 1000 \
         (--max-resource-names)"
    );
}

#[tokio::test]
async fn the_same_delta_nack_sent_a_hundred_times_is_recorded_once_and_counted() {
    let cp = start(StreamLimits::default()).await;
    let mut ads = DeltaAds::open(cp.xds_addr()).await;
    ads.send(DeltaDiscoveryRequest {
        node: node("envoy-1"),
        type_url: CLUSTERS.to_owned(),
        ..Default::default()
    })
    .await;
    let response = ads.next().await.unwrap().unwrap();
    assert_eq!(response.resources.len(), 2, "both clusters: {response:?}");
    for _ in 0..100 {
        ads.send(DeltaDiscoveryRequest {
            type_url: CLUSTERS.to_owned(),
            response_nonce: response.nonce.clone(),
            error_detail: Some(RpcStatus {
                code: 13,
                message: "no".to_owned(),
                details: vec![],
            }),
            ..Default::default()
        })
        .await;
    }
    let repeated = r#"switchyard_xds_nacks_repeated_total{type="clusters"}"#;
    assert_eventually!(Duration::from_secs(10), {
        metric(&cp.metrics().await, repeated) == Some(99.0)
    });
    let nacks = r#"switchyard_xds_nacks_total{type="clusters"}"#;
    assert_eq!(metric(&cp.metrics().await, nacks), Some(1.0));
    let status = cp.status().await;
    assert_eq!(status["proxies"][0]["protocol"], "delta");
    assert_eq!(status["proxies"][0]["clusters"]["status"], "rejected");
    assert_eq!(
        status["proxies"][0]["clusters"]["rejected"]["message"],
        "no"
    );
}

fn metadata(bytes: usize) -> Option<Struct> {
    let mut fields = std::collections::HashMap::new();
    fields.insert(
        "padding".to_owned(),
        Value {
            kind: Some(value::Kind::StringValue("x".repeat(bytes))),
        },
    );
    Some(Struct { fields })
}

#[tokio::test]
async fn an_oversized_node_or_request_ends_its_stream_before_it_is_kept() {
    let cp = start(StreamLimits::default()).await;
    // Within the request limit, over the node limit (64 KiB).
    let mut ads = Ads::open(cp.xds_addr()).await;
    let mut big = node("envoy-1").unwrap();
    big.metadata = metadata(100_000);
    ads.send(clusters(Some(big), vec![])).await;
    let status = ads.next().await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::ResourceExhausted, "{status:?}");
    assert!(
        status.message().contains("(--max-node-bytes)"),
        "{status:?}"
    );
    // 15 MB of metadata: over the request limit (4 MiB), refused as it arrives.
    let mut ads = Ads::open(cp.xds_addr()).await;
    let mut huge = node("envoy-2").unwrap();
    huge.metadata = metadata(15_000_000);
    ads.send(clusters(Some(huge), vec![])).await;
    let status = ads.next().await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::ResourceExhausted, "{status:?}");
    assert!(
        status
            .message()
            .contains("is over the limit of 4194304 bytes"),
        "{status:?}"
    );
    // Neither is kept as a proxy.
    let status = cp.status().await;
    assert_eq!(status["proxies"], serde_json::json!([]), "{status}");
}

/// Opens a stream as `envoy-1`, takes its clusters, and NACKs them `n` times.
async fn nack_flood(cp: &ControlPlane, n: usize) {
    let mut ads = Ads::open(cp.xds_addr()).await;
    ads.send(clusters(node("envoy-1"), vec![])).await;
    let sent = ads.next().await.unwrap().unwrap();
    for _ in 0..n {
        let mut nack = clusters(None, vec![]);
        nack.response_nonce = sent.nonce.clone();
        nack.error_detail = Some(RpcStatus {
            code: 3,
            message: "no".to_owned(),
            details: vec![],
        });
        ads.send(nack).await;
    }
    std::mem::forget(ads); // keep the stream open while the test looks
}

#[tokio::test]
async fn the_same_nack_sent_a_thousand_times_is_recorded_once_and_counted() {
    let cp = start(StreamLimits::default()).await;
    nack_flood(&cp, 1_000).await;
    let nacks = r#"switchyard_xds_nacks_total{type="clusters"}"#;
    let repeated = r#"switchyard_xds_nacks_repeated_total{type="clusters"}"#;
    assert_eventually!(Duration::from_secs(10), {
        let text = cp.metrics().await;
        metric(&text, repeated) == Some(999.0)
    });
    assert_eq!(metric(&cp.metrics().await, nacks), Some(1.0));
}

#[tokio::test]
async fn requests_faster_than_the_rate_are_read_no_faster_than_the_rate() {
    let cp = start(StreamLimits {
        requests_per_second: 20,
        request_burst: 10,
        ..StreamLimits::default()
    })
    .await;
    let started = Instant::now();
    nack_flood(&cp, 200).await;
    let repeated = r#"switchyard_xds_nacks_repeated_total{type="clusters"}"#;
    // Some are read...
    assert_eventually!(Duration::from_secs(5), {
        metric(&cp.metrics().await, repeated).is_some_and(|n| n >= 20.0)
    });
    // ... but never more than the burst and the rate allow in the time that passed (the
    // first request, which opened the stream, took a token too).
    let read = metric(&cp.metrics().await, repeated).unwrap_or(0.0);
    let allowed = 10.0 + 20.0 * started.elapsed().as_secs_f64();
    assert!(
        read <= allowed,
        "{read} requests read, at most {allowed} allowed"
    );
}

/// `GET /healthz` on `admin`, within 2 s.
fn healthz(admin: SocketAddr) -> bool {
    let Ok(mut conn) = TcpStream::connect_timeout(&admin, Duration::from_secs(2)) else {
        return false;
    };
    let _ = conn.set_read_timeout(Some(Duration::from_secs(2)));
    let request = format!("GET /healthz HTTP/1.1\r\nHost: {admin}\r\nConnection: close\r\n\r\n");
    if conn.write_all(request.as_bytes()).is_err() {
        return false;
    }
    let mut answer = String::new();
    let _ = conn.read_to_string(&mut answer);
    answer.starts_with("HTTP/1.1 200")
}

/// The CPU time `pid` has used, from /proc (user + system, in clock ticks).
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap()
        .split_whitespace()
        .collect();
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

#[test]
fn more_connections_than_file_descriptors_leave_the_admin_port_answering_and_cpu_idle() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state.yaml");
    std::fs::write(&state, STATE).unwrap();
    // prlimit: 128 file descriptors, soft and hard.
    let mut child = Command::new("prlimit")
        .args([
            "--nofile=128:128",
            env!("CARGO_BIN_EXE_switchyard"),
            "serve",
        ])
        .arg("--state")
        .arg(&state)
        .args(["--xds-addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("run switchyard under prlimit");
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let mut line = String::new();
    let stdout = child.stdout.take().unwrap();
    let pid = child.id();
    let _guard = Kill(child);
    std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line).unwrap();
    let addr = |key: &str| -> SocketAddr {
        let word = line
            .split_whitespace()
            .find_map(|w| w.strip_prefix(key))
            .unwrap();
        word.parse().unwrap()
    };
    let (xds, admin) = (addr("xds="), addr("admin="));
    // 200 connections to the xDS port: more than the process has descriptors.
    let conns: Vec<TcpStream> = (0..200)
        .filter_map(|_| TcpStream::connect_timeout(&xds, Duration::from_secs(2)).ok())
        .collect();
    assert!(conns.len() >= 100, "{} connected", conns.len());
    std::thread::sleep(Duration::from_millis(500));
    let before = cpu_ticks(pid);
    std::thread::sleep(Duration::from_secs(2));
    let spent = cpu_ticks(pid) - before;
    // Clock ticks are 1/100 s here: 2 s of a spinning accept loop would be ~200.
    assert!(spent < 20, "{spent} ticks of CPU in 2 s while full");
    assert!(
        healthz(admin),
        "/healthz does not answer while the xDS port is full"
    );
    drop(conns);
}

#[tokio::test]
async fn a_connection_carries_at_most_its_limit_of_calls_at_once() {
    use switchyard::grpc::pb::switchyard_client::SwitchyardClient;
    use switchyard::grpc::pb::{GetStateRequest, WatchEventsRequest};
    let cp = ControlPlane::start_with(STATE, |c| c.max_streams_per_connection = 2).await;
    let channel = tonic::transport::Channel::from_shared(format!("http://{}", cp.xds_addr()))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut client = SwitchyardClient::new(channel);
    // Two calls that stay open take the connection's two streams...
    let first = client.watch_events(WatchEventsRequest {}).await.unwrap();
    let _second = client.watch_events(WatchEventsRequest {}).await.unwrap();
    // ... so a third waits for one of them to end.
    let waiting = tokio::time::timeout(
        Duration::from_millis(500),
        client.get_state(GetStateRequest {}),
    )
    .await;
    assert!(waiting.is_err(), "a third call went through: {waiting:?}");
    drop(first);
    let third = tokio::time::timeout(Duration::from_secs(5), client.get_state(GetStateRequest {}))
        .await
        .expect("the third call once a stream is free");
    assert!(!third.unwrap().into_inner().version.is_empty());
}
