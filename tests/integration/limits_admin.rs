//! The admin HTTP server's bounds (issue 11): a connection that never finishes its
//! request headers is closed after the header timeout, and connections beyond the cap are
//! closed on accept, so slowloris clients cannot hold the admin port (or the process's
//! file descriptors) for ever.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::common::control_plane::{ControlPlane, one_service};
use switchyard::admin::AdminLimits;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const HEADER_TIMEOUT: Duration = Duration::from_millis(500);

async fn start(max_connections: usize, header_timeout: Duration) -> ControlPlane {
    let backend: SocketAddr = "127.0.0.1:9".parse().unwrap();
    let state = one_service(10000, backend, backend, "blue");
    ControlPlane::start_with(&state, |c| {
        c.admin_limits = AdminLimits {
            max_connections,
            header_timeout,
        };
    })
    .await
}

/// Reads until the server closes the connection (EOF or reset); how long it took, or
/// `None` if it was still open after `within`. Whatever the server sent is discarded.
async fn closed_within(conn: &mut (impl AsyncRead + Unpin), within: Duration) -> Option<Duration> {
    let started = Instant::now();
    let mut buf = [0u8; 1024];
    tokio::time::timeout(within, async {
        loop {
            match conn.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await
    .ok()
    .map(|()| started.elapsed())
}

async fn healthz(addr: SocketAddr) -> bool {
    matches!(
        crate::common::http::get(addr, "/healthz", "localhost").await,
        Ok((200, _))
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_connection_trickling_half_a_header_is_closed_after_the_header_timeout() {
    let cp = start(AdminLimits::DEFAULT_MAX_CONNECTIONS, HEADER_TIMEOUT).await;
    let mut slow = TcpStream::connect(cp.admin_addr()).await.unwrap();
    let (mut from_server, mut to_server) = slow.split();
    to_server
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: local")
        .await
        .unwrap();
    // One more byte every 100 ms for 3 s: progress does not extend the deadline.
    let trickle = async {
        for _ in 0..30 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let _ = to_server.write_all(b"h").await;
        }
    };
    let closed = tokio::select! {
        closed = closed_within(&mut from_server, Duration::from_secs(5)) => closed,
        () = trickle => None,
    };
    let took = closed.expect("a trickling client is closed while it still trickles");
    assert!(took < HEADER_TIMEOUT * 3, "closed after {took:?}");

    let mut fresh = TcpStream::connect(cp.admin_addr()).await.unwrap();
    let mut idle = TcpStream::connect(cp.admin_addr()).await.unwrap();
    fresh.write_all(b"GET /heal").await.unwrap();
    let took = closed_within(&mut fresh, Duration::from_secs(3))
        .await
        .expect("a half-sent request is closed");
    assert!(
        took >= HEADER_TIMEOUT - Duration::from_millis(50),
        "closed after {took:?}, before the {HEADER_TIMEOUT:?} timeout"
    );
    // A connection that sends nothing at all is closed too.
    closed_within(&mut idle, Duration::from_secs(3))
        .await
        .expect("an idle connection is closed");
    assert!(healthz(cp.admin_addr()).await);
    cp.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_connections_beyond_the_cap_are_closed_at_once_and_healthz_answers_again() {
    const CAP: usize = 4;
    // Long enough that none of the held connections times out while the extras are tried.
    const HEADER_TIMEOUT: Duration = Duration::from_secs(2);
    let cp = start(CAP, HEADER_TIMEOUT).await;
    let addr = cp.admin_addr();
    // Serving (the accept loop starts a little after `bind`).
    assert!(healthz(addr).await, "/healthz answers before the test");
    // The cap's worth of idle connections, accepted in connect order.
    let mut held = Vec::new();
    for _ in 0..CAP {
        held.push(TcpStream::connect(addr).await.unwrap());
    }
    // Every one beyond it is closed well before any header timeout.
    for _ in 0..8 {
        let mut extra = TcpStream::connect(addr).await.unwrap();
        closed_within(&mut extra, Duration::from_millis(150))
            .await
            .expect("a connection beyond the cap is closed at once");
    }
    assert!(!healthz(addr).await, "/healthz answered at the cap");
    // Once one of them hangs up, /healthz answers at once.
    held.truncate(CAP - 1);
    assert_eventually!(Duration::from_millis(400), healthz(addr).await);
    // And the rest are closed by the header timeout without hanging up themselves.
    for conn in &mut held {
        closed_within(conn, HEADER_TIMEOUT + Duration::from_secs(1))
            .await
            .expect("held connection closed by the header timeout");
    }
    // (The server frees a slot just after closing the socket.)
    assert_eventually!(Duration::from_millis(400), healthz(addr).await);
    cp.stop().await;
}
