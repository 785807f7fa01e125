//! The live dashboard on the admin port (`GET /`), in a real headless Chromium: with two
//! real Envoys in two zones and traffic through them, the page shows the service, its
//! color in force and each color's traffic, and each proxy with its cluster, locality and
//! sync status; a saved switch shows on the page within a second of switchyard reporting
//! it, without a reload; a rollout by waves shows wave by wave. Its event stream (`GET /events`) outlives the admin server's
//! header timeout, holds one of its connections while open, and does not hold up a
//! shutdown.
//!
//! `SWITCHYARD_DASHBOARD_SCREENSHOT=docs/dashboard.png` also saves the page, after the
//! switch, as the README's screenshot.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;
use switchyard::admin::AdminLimits;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::common::chromium::Browser;
use crate::common::control_plane::{BlueGreen, ControlPlane, one_service};
use crate::common::envoy::Envoy;
use crate::common::http;

/// What the page shows, read from its DOM.
const VIEW: &str = r#"(() => {
  const row = document.querySelector('tr[data-service="summarizer"]');
  const text = id => document.getElementById(id).innerText;
  return {
    loadedAt: window.switchyardLoadedAt,
    stream: text("stream"),
    version: text("version"),
    live: row && row.dataset.live,
    phase: row && row.dataset.phase,
    blueRequests: Number(row && row.querySelector('[data-traffic="blue"]').dataset.requests || 0),
    services: text("services"),
    switches: text("switches"),
    history: text("history"),
    proxies: [...document.querySelectorAll("tr[data-node]")].map(r => ({
      node: r.dataset.node, sync: r.dataset.sync, text: r.innerText,
    })),
  };
})()"#;

/// An Envoy named `node_id` in node cluster `cluster` and zone `zone` of `eu-west1`.
async fn envoy_in(cp: &ControlPlane, node_id: &str, cluster: &str, zone: &str) -> Envoy {
    let envoy = Envoy::builder(node_id, cp.xds_addr())
        .node_cluster(cluster)
        .locality("eu-west1", zone)
        .start()
        .await;
    envoy.wait_live(Duration::from_secs(20)).await;
    envoy
}

/// One request every 20 ms through `listener` until the flag is set.
fn keep_sending(listener: SocketAddr) -> Arc<AtomicBool> {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    tokio::spawn(async move {
        while !flag.load(Ordering::SeqCst) {
            let _ = http::get(listener, "/v1/summarize", "summarizer.example").await;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
    stop
}

/// When `/status` first shows a state version other than `before`.
async fn reported_after(admin: SocketAddr, before: String) -> Instant {
    loop {
        if let Ok((200, body)) = http::get(admin, "/status", "localhost").await {
            let status: Value = serde_json::from_str(&body).expect("/status is JSON");
            if status["state"]["version"].as_str() != Some(before.as_str()) {
                return Instant::now();
            }
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_shows_a_switch_within_a_second_of_it_without_a_reload() {
    let scene = BlueGreen::start().await;
    let cp = &scene.cp;
    let _a = envoy_in(cp, "edge-eu-a", "gateways", "eu-west1-a").await;
    let _b = envoy_in(cp, "edge-eu-b", "gateways", "eu-west1-b").await;
    assert_eventually!(
        Duration::from_secs(5),
        http::color(scene.listener).await.as_deref() == Some("blue")
    );
    let sending = keep_sending(scene.listener);

    let browser = Browser::launch().await;
    browser.goto(&format!("http://{}/", cp.admin_addr())).await;
    let first_version = cp.status().await["state"]["version"]
        .as_str()
        .unwrap()
        .to_owned();
    let view = async || browser.eval(VIEW).await;
    assert_eventually!(
        Duration::from_secs(10),
        {
            let v = view().await;
            v["stream"] == "live"
                && v["live"] == "blue"
                && v["version"] == first_version.as_str()
                && v["proxies"].as_array().unwrap().len() == 2
                && v["proxies"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .all(|p| p["sync"] == "synced")
        },
        "{:#}",
        view().await
    );
    let v = view().await;
    for (node, zone) in [("edge-eu-a", "eu-west1-a"), ("edge-eu-b", "eu-west1-b")] {
        let row = v["proxies"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["node"] == node)
            .unwrap_or_else(|| panic!("{node} is not on the page: {v:#}"));
        let text = row["text"].as_str().unwrap();
        assert!(text.contains("gateways"), "{text}");
        assert!(text.contains(&format!("eu-west1 / {zone}")), "{text}");
        assert!(text.contains(&first_version), "{text}");
    }
    // Each color's traffic, from the Envoys' load reports (one a second).
    assert_eventually!(
        Duration::from_secs(10),
        view().await["blueRequests"].as_u64() > Some(0),
        "{:#}",
        view().await
    );
    let loaded_at = view().await["loadedAt"].clone();
    assert!(loaded_at.is_number());

    // The switch, with a bake, so that it stays in flight.
    let switched = scene.state("green").replace(
        "    active: green\n",
        "    active: green\n    bake:\n      window: 1m\n      max_error_ratio: 0.5\n",
    );
    let reported = tokio::spawn(reported_after(cp.admin_addr(), first_version.clone()));
    cp.save_by_rename(&switched);
    let deadline = Instant::now() + Duration::from_secs(5);
    let shown = loop {
        if view().await["live"] == "green" {
            break Instant::now();
        }
        assert!(
            Instant::now() < deadline,
            "the page did not show green within 5 s of the save: {:#}",
            view().await
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let reported = tokio::time::timeout(Duration::from_secs(5), reported)
        .await
        .expect("/status reports the switch")
        .unwrap();
    let lag = shown.saturating_duration_since(reported);
    eprintln!("the page showed the switch {lag:?} after /status reported it");
    assert!(
        lag < Duration::from_secs(1),
        "the page showed the switch {lag:?} after /status"
    );

    let v = view().await;
    assert_eq!(v["loadedAt"], loaded_at, "the page was reloaded");
    let history = v["history"].as_str().unwrap();
    assert!(history.contains("summarizer: blue → green"), "{history}");
    assert!(v["switches"].as_str().unwrap().contains("baking"), "{v:#}");
    // Both proxies run the new state.
    let version = cp.status().await["state"]["version"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eventually!(
        Duration::from_secs(5),
        {
            let v = view().await;
            v["version"] == version.as_str()
                && v["proxies"].as_array().unwrap().iter().all(|p| {
                    p["sync"] == "synced" && p["text"].as_str().unwrap().contains(&version)
                })
        },
        "{:#}",
        view().await
    );
    assert!(
        history_or_wait(&browser, "everywhere").await,
        "{:#}",
        view().await
    );
    assert_eq!(view().await["loadedAt"], loaded_at, "the page was reloaded");

    if let Some(path) = std::env::var_os("SWITCHYARD_DASHBOARD_SCREENSHOT") {
        // Let a load report or two of green's traffic arrive.
        tokio::time::sleep(Duration::from_secs(3)).await;
        browser.screenshot(std::path::Path::new(&path)).await;
    }
    sending.store(true, Ordering::SeqCst);
}

/// The waves on the page: each row's text.
const WAVES: &str = r#"[...document.querySelectorAll("[data-wave]")].map(r => r.innerText)"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollout_by_waves_shows_wave_by_wave() {
    let backend: SocketAddr = "127.0.0.1:9".parse().unwrap();
    let rolled = |active: &str| {
        one_service(10000, backend, backend, active).replace(
            &format!("    active: {active}\n"),
            &format!(
                "    active: {active}\n    rollout:\n      soak: 1h\n      waves: [{{zone: eu-west1-a}}, {{}}]\n"
            ),
        )
    };
    let cp = ControlPlane::start(&rolled("blue")).await;
    let browser = Browser::launch().await;
    browser.goto(&format!("http://{}/", cp.admin_addr())).await;
    assert_eventually!(
        Duration::from_secs(10),
        browser.eval(VIEW).await["live"] == "blue"
    );
    // A switch reaches the first wave; the second waits out the soak.
    cp.save_by_rename(&rolled("green"));
    assert_eventually!(Duration::from_secs(5), {
        let waves = browser.eval(WAVES).await;
        waves[0].as_str().is_some_and(|w| w.contains("green"))
            && waves[1].as_str().is_some_and(|w| w.contains("blue"))
    });
    let waves = browser.eval(WAVES).await;
    assert!(
        waves[0].as_str().unwrap().contains("zone=eu-west1-a"),
        "{waves}"
    );
    assert!(
        waves[1].as_str().unwrap().contains("every proxy"),
        "{waves}"
    );
    let services = browser
        .eval(r#"document.getElementById("services").innerText"#)
        .await;
    assert!(
        services
            .as_str()
            .unwrap()
            .contains("wave 1 of 2 reached, soak 1h"),
        "{services}"
    );
    // A page opened now shows what happened before it: `/status` keeps the history.
    browser.goto(&format!("http://{}/", cp.admin_addr())).await;
    assert!(
        history_or_wait(&browser, "summarizer: switched").await,
        "{}",
        browser.eval(VIEW).await["history"]
    );
}

/// Whether the page's history shows `text` within 5 s.
async fn history_or_wait(browser: &Browser, text: &str) -> bool {
    crate::common::eventually(Duration::from_secs(5), async || {
        browser.eval(VIEW).await["history"]
            .as_str()
            .is_some_and(|h| h.contains(text))
    })
    .await
}

const HEADER_TIMEOUT: Duration = Duration::from_millis(300);

/// Opens `GET /events` on `admin` and reads the response's headers.
async fn open_events(admin: SocketAddr) -> (TcpStream, String) {
    let mut conn = TcpStream::connect(admin).await.unwrap();
    conn.write_all(b"GET /events HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let head = read_until(&mut conn, "\r\n\r\n", Duration::from_secs(5)).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(head.contains("text/event-stream"), "{head}");
    (conn, head)
}

/// Reads from `conn` until what was read contains `needle`; panics after `within` or at
/// the end of the stream.
async fn read_until(conn: &mut (impl AsyncRead + Unpin), needle: &str, within: Duration) -> String {
    let mut text = String::new();
    let mut buf = [0u8; 4096];
    let read = tokio::time::timeout(within, async {
        while !text.contains(needle) {
            let n = conn.read(&mut buf).await.expect("read");
            assert!(n > 0, "the stream ended before {needle:?}: {text}");
            text.push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    })
    .await;
    assert!(read.is_ok(), "no {needle:?} within {within:?}: {text}");
    text
}

async fn healthz(admin: SocketAddr) -> bool {
    matches!(
        http::get(admin, "/healthz", "localhost").await,
        Ok((200, _))
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_event_stream_outlives_the_header_timeout_and_holds_one_admin_connection() {
    let backend: SocketAddr = "127.0.0.1:9".parse().unwrap();
    let state = |active| one_service(10000, backend, backend, active);
    let cp = ControlPlane::start_with(&state("blue"), |c| {
        c.admin_limits = AdminLimits {
            max_connections: 1,
            header_timeout: HEADER_TIMEOUT,
        };
    })
    .await;
    let (mut events, _) = open_events(cp.admin_addr()).await;
    // The one connection allowed is the stream's.
    assert!(!healthz(cp.admin_addr()).await);
    tokio::time::sleep(HEADER_TIMEOUT * 4).await;
    cp.save_by_rename(&state("green"));
    read_until(
        &mut events,
        r#""event":"state_accepted""#,
        Duration::from_secs(5),
    )
    .await;
    // Hanging up frees the connection.
    drop(events);
    assert_eventually!(Duration::from_secs(5), healthz(cp.admin_addr()).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_dashboard_does_not_hold_up_a_shutdown() {
    let backend: SocketAddr = "127.0.0.1:9".parse().unwrap();
    let cp = ControlPlane::start(&one_service(10000, backend, backend, "blue")).await;
    let (mut events, _) = open_events(cp.admin_addr()).await;
    let stopping = Instant::now();
    cp.stop().await;
    let took = stopping.elapsed();
    assert!(took < Duration::from_secs(2), "shutdown took {took:?}");
    // The stream was ended (its last chunk), and the connection closed.
    let mut rest = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(2), events.read_to_end(&mut rest)).await;
    assert!(
        read.is_ok(),
        "the event stream is still open after the shutdown"
    );
}
