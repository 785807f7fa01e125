//! The last good state keeps serving through a real Envoy while hostile input hits
//! switchyard from every side: a FIFO and `/dev/zero` at the state file's path, an invalid
//! file, hostile ADS clients (a million names, a huge node, an endless request, a NACK
//! flood as the very proxy's node id without mutual TLS), hostile delta ADS clients
//! (subscriptions that add up past the bound, a request too big to read, a flood of NACKs
//! with nonces never sent, as the proxy's node id), slowloris on the admin port. After all
//! of it, a good save still switches the proxy. Against an Envoy speaking each ADS variant
//! (SotW and delta).

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient;
use envoy_types::pb::envoy::service::discovery::v3::{DeltaDiscoveryRequest, DiscoveryRequest};
use envoy_types::pb::google::protobuf::{Struct, Value, value};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use crate::common::control_plane::BlueGreen;
use crate::common::envoy::Xds;
use crate::common::http;

crate::both_protocols!(the_last_good_state_keeps_serving_through_envoy_under_hostile_input);

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

/// Opens a delta ADS stream and sends `requests`; the stream is kept open (the sender
/// returned) and the task yields the status that ended it, if one did.
async fn delta_ads(
    xds: SocketAddr,
    requests: Vec<DeltaDiscoveryRequest>,
) -> (
    mpsc::Sender<DeltaDiscoveryRequest>,
    tokio::task::JoinHandle<Option<tonic::Status>>,
) {
    let mut client = AggregatedDiscoveryServiceClient::connect(format!("http://{xds}"))
        .await
        .unwrap()
        .max_encoding_message_size(64 * 1024 * 1024);
    let (tx, rx) = mpsc::channel(requests.len().max(1));
    for request in requests {
        tx.send(request).await.unwrap();
    }
    let ended = tokio::spawn(async move {
        let mut responses = match client
            .delta_aggregated_resources(ReceiverStream::new(rx))
            .await
        {
            Ok(responses) => responses.into_inner(),
            Err(status) => return Some(status),
        };
        loop {
            match responses.message().await {
                Ok(Some(_)) => {}
                Ok(None) => return None,
                Err(status) => return Some(status),
            }
        }
    });
    (tx, ended)
}

/// A delta request for clusters subscribing to `names`, as `node_id` when given.
fn delta_request(node_id: Option<&str>, names: Vec<String>) -> DeltaDiscoveryRequest {
    DeltaDiscoveryRequest {
        node: node_id.map(|id| Node {
            id: id.to_owned(),
            ..Node::default()
        }),
        type_url: CLUSTERS.to_owned(),
        resource_names_subscribe: names,
        ..DeltaDiscoveryRequest::default()
    }
}

/// The status that ended a hostile stream (within 10 s).
async fn ended_with(ended: tokio::task::JoinHandle<Option<tonic::Status>>) -> tonic::Status {
    tokio::time::timeout(Duration::from_secs(10), ended)
        .await
        .expect("the stream ends within 10 s")
        .unwrap()
        .expect("the stream ends with a status")
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

async fn the_last_good_state_keeps_serving_through_envoy_under_hostile_input(xds: Xds) {
    let scene = BlueGreen::start().await;
    let (cp, listener) = (&scene.cp, scene.listener);
    let _envoy = scene.envoy_speaking("envoy-1", xds).await;
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
    let addr = cp.xds_addr();
    let names = (0..1_000_000).map(|i| format!("c{i}")).collect();
    let _names = ads(addr, request("hostile-1", names, 0)).await;
    let _node = ads(addr, request("hostile-2", vec![], 15_000_000)).await;
    let mut endless = TcpStream::connect(addr).unwrap();
    endless
        .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
        .unwrap();
    let flood = ads(addr, request("envoy-1", vec![], 0)).await;
    for _ in 0..500 {
        let mut nack = request("envoy-1", vec![], 0);
        nack.node = None;
        nack.error_detail = Some(Default::default());
        let _ = flood.send(nack).await;
    }

    // Delta streams: subscriptions that add up, over three requests of distinct names, past
    // --max-resource-names (100,000); one request too big to read (a million names, about
    // 9 MB, past --max-request-bytes); NACKs of nonces never sent, in envoy-1's name.
    let batch = |b: usize| {
        (b * 40_000..(b + 1) * 40_000)
            .map(|i| format!("c{i}"))
            .collect()
    };
    let (_adding, adding) = delta_ads(
        addr,
        vec![
            delta_request(Some("hostile-3"), batch(0)),
            delta_request(None, batch(1)),
            delta_request(None, batch(2)),
        ],
    )
    .await;
    let million = (0..1_000_000).map(|i| format!("c{i}")).collect();
    let (_huge, huge) = delta_ads(addr, vec![delta_request(Some("hostile-4"), million)]).await;
    let (delta_flood, flooded) =
        delta_ads(addr, vec![delta_request(Some("envoy-1"), Vec::new())]).await;
    for i in 0..500 {
        let mut nack = delta_request(None, Vec::new());
        nack.response_nonce = format!("never-sent-{i}");
        nack.error_detail = Some(Default::default());
        let _ = delta_flood.send(nack).await;
    }
    let status = ended_with(adding).await;
    assert_eq!(status.code(), tonic::Code::ResourceExhausted, "{status:?}");
    assert_eq!(
        status.message(),
        "the stream would subscribe to, for one type, 120000 resource names; the limit is 100000 (--max-resource-names)"
    );
    let status = ended_with(huge).await;
    assert_eq!(status.code(), tonic::Code::ResourceExhausted, "{status:?}");
    assert!(
        status.message().contains("over the limit of 4194304 bytes"),
        "{status:?}"
    );

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
    assert!(
        !flooded.is_finished(),
        "the NACK flood ended its own stream"
    );
    drop(endless);
}
