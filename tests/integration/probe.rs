//! The gate's prober against real backends on loopback: what it reports for a healthy,
//! an unhealthy, a slow, a closed and a never-ending endpoint, and that dropping a
//! target's handle stops its probes and no other target's.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use crate::common::backend::Backend;
use switchyard::rollout::gate::ProbeResult;
use switchyard::rollout::probe::{ProbeReport, Prober, Target};
use switchyard::state::{Color, Probe};

/// Upper bound on waiting for any one report.
const REPORT_WAIT: Duration = Duration::from_secs(10);

fn probe(timeout: Duration) -> Probe {
    Probe {
        path: "/healthz".to_owned(),
        status: 200,
        timeout,
        interval: Duration::from_millis(50),
        successes: 1,
        failures: 1,
        healthy_share: 100,
    }
}

fn target(color: Color) -> Target {
    Target {
        service: "summarizer".to_owned(),
        color,
    }
}

async fn next(reports: &mut mpsc::Receiver<ProbeReport>) -> ProbeReport {
    tokio::time::timeout(REPORT_WAIT, reports.recv())
        .await
        .expect("a probe report within 10 s")
        .expect("the report channel is open")
}

#[tokio::test]
async fn prober_reports_what_each_endpoint_answers_every_interval() {
    let healthy = Backend::start("green", "v2");
    let unhealthy = Backend::start("green", "v2");
    unhealthy.set_healthy(false);
    let closed = closed_port();
    let (tx, mut reports) = mpsc::channel(16);
    let prober = Prober::new(tx);
    let _handle = prober.start(
        target(Color::Green),
        &probe(Duration::from_secs(2)),
        &[healthy.addr(), unhealthy.addr(), closed],
    );

    // Three reports from every endpoint: it is probed again and again.
    let mut seen: HashMap<SocketAddr, Vec<ProbeResult>> = HashMap::new();
    while seen.len() < 3 || seen.values().any(|results| results.len() < 3) {
        let report = next(&mut reports).await;
        assert_eq!(report.target, target(Color::Green));
        seen.entry(report.endpoint).or_default().push(report.result);
    }
    assert!(
        seen[&healthy.addr()]
            .iter()
            .all(|r| *r == ProbeResult::Status(200))
    );
    assert!(
        seen[&unhealthy.addr()]
            .iter()
            .all(|r| *r == ProbeResult::Status(503))
    );
    assert!(
        seen[&closed].iter().all(|r| *r == ProbeResult::Refused),
        "{:?}",
        seen[&closed]
    );

    let request = healthy
        .recent_requests()
        .pop()
        .expect("the backend saw a probe");
    assert_eq!(request.method, "GET");
    assert_eq!(request.path, "/healthz");
    assert_eq!(request.host, healthy.addr().to_string());
    assert_eq!(request.header("user-agent"), Some("switchyard-probe"));
}

#[tokio::test]
async fn slow_endpoint_times_out() {
    let slow = Backend::start("green", "v2");
    slow.set_delay(Duration::from_secs(3));
    let (tx, mut reports) = mpsc::channel(16);
    let _handle = Prober::new(tx).start(
        target(Color::Green),
        &probe(Duration::from_millis(200)),
        &[slow.addr()],
    );
    assert_eq!(
        next(&mut reports).await.result,
        ProbeResult::Timeout(Duration::from_millis(200))
    );
}

#[tokio::test]
async fn endless_body_is_not_read_past_a_few_kib() {
    let endless = endless_body_server();
    let (tx, mut reports) = mpsc::channel(16);
    let _handle = Prober::new(tx).start(
        target(Color::Blue),
        &probe(Duration::from_secs(5)),
        &[endless],
    );
    assert_eq!(next(&mut reports).await.result, ProbeResult::Status(200));
}

#[tokio::test]
async fn dropped_handle_stops_its_probes_and_no_others() {
    let blue = Backend::start("blue", "v1");
    let green = Backend::start("green", "v2");
    let (tx, mut reports) = mpsc::channel(16);
    let prober = Prober::new(tx);
    let probe = probe(Duration::from_secs(2));
    let blue_probes = prober.start(target(Color::Blue), &probe, &[blue.addr()]);
    let green_probes = prober.start(target(Color::Green), &probe, &[green.addr()]);
    assert_eq!((blue_probes.endpoints(), green_probes.endpoints()), (1, 1));
    while green.requests() < 2 {
        next(&mut reports).await;
    }

    drop(green_probes);
    let dropped_at = Instant::now();
    // A probe in flight when the handle was dropped may still reach the backend.
    let green_at_drop = green.requests() + 1;
    // Blue's probes go on: three more of them take at least two intervals, in which
    // green would have been probed again if its probes had not stopped.
    let mut blue_reports = 0;
    while blue_reports < 3 {
        let report = next(&mut reports).await;
        if report.target == target(Color::Blue) && report.at > dropped_at {
            blue_reports += 1;
        }
    }
    assert!(
        green.requests() <= green_at_drop,
        "green probed {} times after its handle was dropped",
        green.requests() - green_at_drop + 1
    );

    // With every handle and the prober gone, every probing task has ended.
    drop((blue_probes, prober));
    let closed = tokio::time::timeout(REPORT_WAIT, async {
        while reports.recv().await.is_some() {}
    })
    .await;
    assert!(
        closed.is_ok(),
        "probing tasks still hold the report channel"
    );
}

/// A loopback address nothing listens on (bound, then released).
fn closed_port() -> SocketAddr {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    listener.local_addr().unwrap()
}

/// A server whose one response has a body that never ends (chunked, sent until the
/// client goes away): only a probe that stops reading gets its status.
fn endless_body_server() -> SocketAddr {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        let Ok((mut stream, _)) = listener.accept() else {
            return;
        };
        let mut head = [0; 1024];
        let _ = stream.read(&mut head);
        let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n");
        let mut chunk = b"4000\r\n".to_vec();
        chunk.extend([b'x'; 0x4000]);
        chunk.extend(b"\r\n");
        while stream.write_all(&chunk).is_ok() {}
    });
    addr
}
