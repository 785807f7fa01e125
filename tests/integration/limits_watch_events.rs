//! A `WatchEvents` reader that never reads (issue 11): the server keeps nothing for it
//! beyond the bus's ring and HTTP/2 flow control's window, and once the reader looks again
//! it is told how far behind it fell and the call ends with RESOURCE_EXHAUSTED.

use std::time::{Duration, SystemTime};

use switchyard::events::{Event, EventBus};
use switchyard::grpc::api::SwitchyardApi;
use switchyard::grpc::pb::switchyard_client::SwitchyardClient;
use switchyard::grpc::pb::switchyard_server::SwitchyardServer;
use switchyard::grpc::pb::{self, WatchEventsRequest};
use switchyard::proxies::ProxyRegistry;
use switchyard::status::StateBoard;
use switchyard::xds::cache::snapshot_cache;
use switchyard::xds::snapshot::Snapshot;
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;

/// This process's resident memory, in bytes.
fn rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().strip_suffix("kB"))
        .and_then(|v| v.trim().parse().ok())
        .expect("VmRSS in /proc/self/status");
    kib * 1024
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watcher_that_never_reads_costs_bounded_memory_and_is_ended_with_resource_exhausted() {
    const EMITTED: usize = 100_000;
    // About 2 KiB each: 200 MiB if the server queued them for the reader.
    let version = "v".repeat(2048);
    let bus = EventBus::default();
    let (cache, _writer) = snapshot_cache(Snapshot::empty());
    let api = SwitchyardApi::new(
        StateBoard::default(),
        ProxyRegistry::default(),
        cache,
        bus.clone(),
    );
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(SwitchyardServer::new(api))
            .serve_with_incoming(TcpListenerStream::new(listener)),
    );
    let mut client = SwitchyardClient::connect(format!("http://{addr}"))
        .await
        .unwrap();
    let mut events = client
        .watch_events(WatchEventsRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eventually!(Duration::from_secs(2), bus.has_subscribers());

    let before = rss();
    for i in 0..EMITTED {
        bus.emit(Event::SwitchStarted {
            at: SystemTime::now(),
            version: format!("{version}{i}"),
            types: vec!["clusters"],
            proxies: 1,
        });
    }
    // Let the server send what flow control allows.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let grew = rss().saturating_sub(before);

    // Now read: what was in flight, the Lagged event, then the end.
    let mut received = 0;
    let mut missed = None;
    let status = loop {
        let next = tokio::time::timeout(Duration::from_secs(10), events.message());
        match next.await.expect("the call ends instead of waiting on") {
            Ok(Some(e)) => {
                received += 1;
                if let Some(pb::event::Kind::Lagged(l)) = e.kind {
                    missed = Some(l.missed);
                }
            }
            Ok(None) => panic!("the call ended without a status after {received} events"),
            Err(status) => break status,
        }
    };
    assert_eq!(status.code(), tonic::Code::ResourceExhausted, "{status:?}");
    assert!(
        status.message().contains("call WatchEvents again"),
        "{status:?}"
    );
    let missed = missed.expect("a Lagged event before the end");
    assert!(received < EMITTED / 2, "received {received}");
    assert!(missed > 0);
    eprintln!(
        "resident memory grew by {} KiB; {received} events received",
        grew >> 10
    );
    assert!(
        grew < 64 << 20,
        "resident memory grew by {} MiB while the reader did not read",
        grew >> 20
    );
}
