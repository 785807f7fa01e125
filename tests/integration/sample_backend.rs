//! The sample backend misbehaves on command, from a test and over its control
//! paths: unhealthy `/healthz`, a deterministic share of `500`s, a response
//! delay, and it counts mirrored (`-shadow`) requests.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use crate::common::backend::Backend;
use crate::common::http;

#[tokio::test]
async fn unhealthy_backend_fails_health_checks_but_answers_requests() {
    let backend = Backend::start("green", "v2");
    assert_eq!(
        get(&backend, "/healthz").await,
        (200, "green v2\n".to_owned())
    );

    backend.set_healthy(false);
    assert_eq!(
        get(&backend, "/healthz").await,
        (503, "green v2 unhealthy\n".to_owned())
    );
    assert_eq!(get(&backend, "/predict").await.0, 200);

    let (status, body) = post(backend.addr(), "/_backend/health?ok=true");
    assert_eq!(status, 200, "{body}");
    assert!(body.contains(r#""healthy":true"#), "{body}");
    assert!(backend.is_healthy());
    assert_eq!(get(&backend, "/healthz").await.0, 200);
}

#[tokio::test]
async fn fail_share_fails_exactly_that_share_in_a_fixed_pattern() {
    let backend = Backend::start("green", "v2");
    let (status, body) = post(backend.addr(), "/_backend/fail?share=0.3");
    assert_eq!(status, 200, "{body}");
    assert!(body.contains(r#""fail_share":0.3"#), "{body}");

    let mut statuses = Vec::new();
    for _ in 0..10 {
        statuses.push(get(&backend, "/predict").await.0);
    }
    assert_eq!(
        statuses,
        [200, 200, 200, 500, 200, 200, 500, 200, 200, 500],
        "the 4th, 7th and 10th fail"
    );
    assert_eq!(backend.failed_requests(), 3);
    // Health checks are not part of the share.
    backend.set_fail_share(1.0);
    assert_eq!(get(&backend, "/healthz").await.0, 200);
    assert_eq!(
        get(&backend, "/predict").await,
        (500, "green v2 failing\n".to_owned())
    );
    backend.set_fail_share(0.0);
    assert_eq!(get(&backend, "/predict").await.0, 200);
}

#[tokio::test]
async fn bad_control_requests_are_refused_and_change_nothing() {
    let backend = Backend::start("blue", "v1");
    for (path, status) in [
        ("/_backend/fail?share=1.5", 400),
        ("/_backend/fail?share=lots", 400),
        ("/_backend/fail", 400),
        ("/_backend/health?ok=maybe", 400),
        ("/_backend/delay?ms=-1", 400),
        ("/_backend/reboot", 404),
    ] {
        assert_eq!(post(backend.addr(), path).0, status, "POST {path}");
    }
    assert_eq!(get(&backend, "/_backend/fail").await.0, 405);
    assert!(backend.is_healthy());
    assert_eq!(backend.fail_share(), 0.0);
    assert_eq!(backend.requests(), 0, "control requests are not counted");
}

#[tokio::test]
async fn shadow_requests_are_counted_apart_and_recorded_with_headers() {
    let backend = Backend::start("green", "v2");
    http::get_with_headers(
        backend.addr(),
        "/predict?q=1",
        "summarizer-shadow:10000",
        &[("x-request-id", "mirrored-1")],
    )
    .await
    .expect("shadow request answered");
    http::get(backend.addr(), "/predict", "summarizer")
        .await
        .expect("live request answered");
    // A host that merely contains the word is not a shadow.
    http::get(backend.addr(), "/predict", "shadow-summarizer")
        .await
        .expect("live request answered");

    assert_eq!((backend.requests(), backend.shadow_requests()), (3, 1));
    let recent = backend.recent_requests();
    let shadows: Vec<_> = recent.iter().filter(|r| r.is_shadow()).collect();
    assert_eq!(shadows.len(), 1, "{recent:?}");
    assert_eq!(shadows[0].path, "/predict?q=1");
    assert_eq!(shadows[0].header("X-Request-Id"), Some("mirrored-1"));
}

#[tokio::test]
async fn delayed_responses_are_seen_in_flight() {
    let backend = Backend::start("blue", "v1");
    let (status, body) = post(backend.addr(), "/_backend/delay?ms=300");
    assert_eq!(status, 200, "{body}");
    let addr = backend.addr();
    let request = tokio::spawn(async move { http::get(addr, "/predict", "summarizer").await });
    assert_eventually!(Duration::from_secs(2), backend.in_flight() == 1);
    assert_eq!(request.await.unwrap(), Ok((200, "blue v1\n".to_owned())));
    assert_eq!(backend.in_flight(), 0);
}

async fn get(backend: &Backend, path: &str) -> (u16, String) {
    http::get(backend.addr(), path, "summarizer")
        .await
        .unwrap_or_else(|e| panic!("GET {path}: {e}"))
}

/// `POST path` with an empty body over a raw HTTP/1.1 connection; the status
/// and the body.
fn post(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).expect("connect to the backend");
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    write!(
        stream,
        "POST {path} HTTP/1.1\r\nHost: backend\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .expect("read the response");
    let status = response
        .get(9..12)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP response: {response:?}"));
    let body = response
        .split_once("\r\n\r\n")
        .map_or("", |(_, body)| body)
        .to_owned();
    (status, body)
}
