//! The last good state keeps serving through a real Envoy while hostile input hits
//! switchyard from every side: a FIFO and `/dev/zero` at the state file's path, an invalid
//! file, hostile ADS clients (a million names, a huge node, an endless request, a NACK
//! flood as the very proxy's node id without mutual TLS), slowloris on the admin port. After
//! all of it, a good save still switches the proxy.

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::envoy::service::discovery::v3::DiscoveryRequest;
use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient;
use envoy_types::pb::google::protobuf::{Struct, Value, value};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use crate::common::control_plane::BlueGreen;
use crate::common::http;

const CLUSTERS: &str = "type.googleapis.com/envoy.config.cluster.v3.Cluster";

/// Every one of 20 requests through Envoy answered by `expected`.
async fn all_answered_by(listener: SocketAddr, expected: &str) -> bool {
    for _ in 0..20 {
        if http::color(listener).await.as_deref() != Some(expected) {
            return false;
        }
    }
    true
}

/// Opens an ADS stream and sends `request`; the stream is kept open (returned).
async fn ads(xds: SocketAddr, request: DiscoveryRequest) -> mpsc::Sender<DiscoveryRequest> {
    let mut client = AggregatedDiscoveryServiceClient::connect(format!("http://{xds}"))
        .await
        .unwrap()
        .max_encoding_message_size(64 * 1024 * 1024);
    let (tx, rx) = mpsc::channel(4);
    tx.send(request).await.unwrap();
    tokio::spawn(async move {
        if let Ok(responses) = client
            .stream_aggregated_resources(ReceiverStream::new(rx))
            .await
        {
            let mut responses = responses.into_inner();
            while let Ok(Some(_)) = responses.message().await {}
        }
    });
    tx
}

fn request(node_id: &str, names: Vec<String>, metadata_bytes: usize) -> DiscoveryRequest {
    let mut fields = std::collections::HashMap::new();
    if metadata_bytes > 0 {
        let padding = value::Kind::StringValue("x".repeat(metadata_bytes));
        fields.insert(
            "padding".to_owned(),
            Value {
                kind: Some(padding),
            },
        );
    }
    DiscoveryRequest {
        node: Some(Node {
            id: node_id.to_owned(),
            metadata: Some(Struct { fields }),
            ..Node::default()
        }),
        type_url: CLUSTERS.to_owned(),
        resource_names: names,
        ..DiscoveryRequest::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_last_good_state_keeps_serving_through_envoy_under_hostile_input() {
    let scene = BlueGreen::start().await;
    let (cp, listener) = (&scene.cp, scene.listener);
    let _envoy = scene.envoy("envoy-1").await;
    assert_eventually!(
        Duration::from_secs(10),
        all_answered_by(listener, "blue").await,
        "Envoy on {listener} answers {:?}",
        http::get(listener, "/", "summarizer.example").await
    );
    let dir = cp.state_path().parent().unwrap().to_owned();
    let path = cp.state_path().to_owned();

    // The state file: an invalid save, a FIFO, /dev/zero.
    cp.save_by_rename(&scene.state("purple"));
    let fifo = dir.join("fifo");
    assert!(
        std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    std::fs::rename(&fifo, &path).unwrap();
    std::os::unix::fs::symlink("/dev/zero", dir.join("zero")).unwrap();
    std::fs::rename(dir.join("zero"), &path).unwrap();

    // The xDS port: a million names, a 15 MB node, an endless request, a NACK flood in
    // envoy-1's name (no mutual TLS here: the flood can only cost its own stream).
    let xds = cp.xds_addr();
    let names = (0..1_000_000).map(|i| format!("c{i}")).collect();
    let _names = ads(xds, request("hostile-1", names, 0)).await;
    let _node = ads(xds, request("hostile-2", vec![], 15_000_000)).await;
    let mut endless = TcpStream::connect(xds).unwrap();
    endless
        .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
        .unwrap();
    let flood = ads(xds, request("envoy-1", vec![], 0)).await;
    for _ in 0..500 {
        let mut nack = request("envoy-1", vec![], 0);
        nack.node = None;
        nack.error_detail = Some(Default::default());
        let _ = flood.send(nack).await;
    }

    // The admin port: connections that never finish their headers.
    let admin = cp.admin_addr();
    let slow: Vec<TcpStream> = (0..50)
        .filter_map(|_| {
            let mut c = TcpStream::connect(admin).ok()?;
            c.write_all(b"GET /healthz HTTP/1.1\r\nHo").ok()?;
            Some(c)
        })
        .collect();

    // Through all of it, Envoy serves the last good state, and switchyard says why.
    assert!(all_answered_by(listener, "blue").await);
    assert_eventually!(Duration::from_secs(10), {
        let status = cp.status().await;
        status["state"]["services"][0]["active"] == "blue"
    });
    drop(slow);

    // And a good save still switches the proxy.
    std::fs::remove_file(&path).unwrap();
    cp.save_by_rename(&scene.state("green"));
    assert_eventually!(
        Duration::from_secs(15),
        all_answered_by(listener, "green").await
    );
    drop(endless);
}
