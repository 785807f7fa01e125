//! Replicas: switchyard processes serving the same file give the same versions, so an
//! Envoy that loses its replica reconnects to another (or to the restarted one) with no
//! churn and without failing a request. Against an Envoy speaking each ADS variant; a delta
//! Envoy says what it holds when it reconnects, so the replica it reaches sends it nothing.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::common::control_plane::{BlueGreen, ControlPlane};
use crate::common::envoy::{Envoy, Xds};
use crate::common::load::{Load, Protocol};

crate::both_protocols!(
    envoy_fails_over_to_another_replica_with_no_churn_and_no_failed_request,
    restarted_replica_is_reconnected_to_with_no_churn_and_no_failed_request,
);

/// The responses of each type a replica counts as sent.
const RESPONSES: [&str; 4] = [
    "switchyard_xds_responses_total{type=\"clusters\"}",
    "switchyard_xds_responses_total{type=\"endpoints\"}",
    "switchyard_xds_responses_total{type=\"listeners\"}",
    "switchyard_xds_responses_total{type=\"routes\"}",
];

/// A `switchyard serve` process; killed (SIGKILL, like a crashed pod) on drop.
struct Replica {
    child: Child,
    xds: SocketAddr,
    admin: SocketAddr,
}

impl Replica {
    /// Starts `switchyard serve` on `xds` (port 0 for any) and reads its real ports from
    /// the line it prints once both are bound.
    fn start(state: &Path, xds: SocketAddr) -> Replica {
        let mut child = Command::new(env!("CARGO_BIN_EXE_switchyard"))
            .args(["serve", "--admin-addr", "127.0.0.1:0", "--state"])
            .arg(state)
            .arg("--xds-addr")
            .arg(xds.to_string())
            .env("SWITCHYARD_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start switchyard");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .expect("read switchyard's stdout");
        // "switchyard listening xds=ADDR admin=ADDR"
        let addr = |key: &str| -> SocketAddr {
            line.split_whitespace()
                .find_map(|w| w.strip_prefix(key))
                .and_then(|a| a.parse().ok())
                .unwrap_or_else(|| panic!("no {key} in {line:?}"))
        };
        Replica {
            xds: addr("xds="),
            admin: addr("admin="),
            child,
        }
    }

    async fn metrics(&self) -> String {
        let (_, body) = crate::common::http::get(self.admin, "/metrics", "localhost")
            .await
            .expect("GET /metrics");
        body
    }

    /// How many responses of each type ([`RESPONSES`]) this replica has sent.
    async fn responses_sent(&self) -> Vec<(&'static str, u64)> {
        let text = self.metrics().await;
        RESPONSES
            .iter()
            .map(|series| {
                let sent = crate::common::control_plane::metric(&text, series);
                (*series, sent.expect("a counter for every type") as u64)
            })
            .collect()
    }

    async fn status(&self) -> serde_json::Value {
        let (_, body) = crate::common::http::get(self.admin, "/status", "localhost")
            .await
            .expect("GET /status");
        serde_json::from_str(&body).expect("JSON")
    }

    /// Is `node` connected here with every type acknowledged at the current version?
    async fn serves_synced(&self, node: &str) -> bool {
        let status = self.status().await;
        status["proxies"].as_array().is_some_and(|ps| {
            ps.iter()
                .any(|p| p["node_id"] == node && p["synced"] == true)
        })
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        self.kill();
    }
}

/// What Envoy runs: each type's version, and counters that move on any real change.
async fn envoy_config_state(envoy: &Envoy) -> Vec<(String, String)> {
    let (_, stats) = envoy
        .admin_get("/stats?filter=(version_text|cluster_modified|cluster_added|listener_modified|listener_added|listener_removed|cluster_removed)")
        .await;
    let mut lines: Vec<(String, String)> = stats
        .lines()
        .filter_map(|l| l.split_once(": "))
        .filter(|(k, _)| !k.ends_with("update_success"))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    lines.sort();
    lines
}

fn state_file(scene: &BlueGreen) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("state.yaml"), scene.state("green")).unwrap();
    dir
}

/// What a replica that `node` reconnected to, with the state it already held, sent it: a
/// delta proxy said what it holds, so nothing; a SotW proxy names only the versions it
/// holds, so it is sent every type again (at the same versions: Envoy changes nothing).
async fn assert_reconnect_sent(replica: &Replica, node: &str, xds: Xds) {
    let sent = replica.responses_sent().await;
    let status = replica.status().await;
    let proxy = status["proxies"]
        .as_array()
        .and_then(|ps| ps.iter().find(|p| p["node_id"] == node))
        .unwrap_or_else(|| panic!("{node} is not connected: {status:#}"));
    assert_eq!(proxy["protocol"], xds.name(), "{proxy}");
    match xds {
        Xds::Delta => assert!(
            sent.iter().all(|(_, n)| *n == 0),
            "the replica sent a reconnected delta proxy holding its state: {sent:?}"
        ),
        Xds::Sotw => assert!(sent.iter().all(|(_, n)| *n >= 1), "{sent:?}"),
    }
}

async fn envoy_fails_over_to_another_replica_with_no_churn_and_no_failed_request(xds: Xds) {
    let scene = BlueGreen::start().await; // backends + listener port (its own cp unused)
    let dir = state_file(&scene);
    let path = dir.path().join("state.yaml");
    let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let mut replicas = [Replica::start(&path, any), Replica::start(&path, any)];
    let (a, b) = (replicas[0].status().await, replicas[1].status().await);
    assert_eq!(
        a["state"]["resource_versions"], b["state"]["resource_versions"],
        "two processes, one file, the same versions"
    );

    let envoy = Envoy::builder("replicated-1", replicas[0].xds)
        .also_xds(replicas[1].xds)
        .xds(xds)
        .start()
        .await;
    envoy.wait_live(Duration::from_secs(20)).await;
    let load = Load::start(scene.listener, "x", "/", Protocol::Http1, 16).await;
    assert_eventually!(Duration::from_secs(5), {
        replicas[0].serves_synced("replicated-1").await
            || replicas[1].serves_synced("replicated-1").await
    });
    let before = envoy_config_state(&envoy).await;
    assert!(
        before.iter().any(|(k, _)| k.ends_with("version_text")),
        "{before:?}"
    );

    // Kill the replica the proxy uses, mid-load.
    let used = usize::from(!replicas[0].serves_synced("replicated-1").await);
    tokio::time::sleep(Duration::from_millis(300)).await;
    replicas[used].kill();
    let other = &replicas[1 - used];
    assert_eq!(
        other
            .responses_sent()
            .await
            .iter()
            .map(|(_, n)| n)
            .sum::<u64>(),
        0,
        "the proxy was connected to the other replica before"
    );
    assert_eventually!(
        Duration::from_secs(10),
        other.serves_synced("replicated-1").await,
        "envoy did not reconnect to the other replica"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let report = load.stop().await;
    report.assert_nothing_dropped();
    assert_eq!(report.by_color("green"), report.total());
    assert_eq!(
        envoy_config_state(&envoy).await,
        before,
        "the reconnect changed what Envoy runs"
    );
    let (_, connected) = envoy
        .admin_get("/stats?filter=control_plane.connected_state")
        .await;
    assert!(connected.contains(": 1"), "{connected}");
    assert_reconnect_sent(other, "replicated-1", xds).await;
}

async fn restarted_replica_is_reconnected_to_with_no_churn_and_no_failed_request(xds: Xds) {
    let scene = BlueGreen::start().await;
    let dir = state_file(&scene);
    let path = dir.path().join("state.yaml");
    let mut replica = Replica::start(&path, "127.0.0.1:0".parse().unwrap());
    let addr = replica.xds;
    let envoy = Envoy::builder("restarted-1", addr).xds(xds).start().await;
    envoy.wait_live(Duration::from_secs(20)).await;
    assert_eventually!(
        Duration::from_secs(5),
        replica.serves_synced("restarted-1").await
    );
    let before = envoy_config_state(&envoy).await;

    let load = Load::start(scene.listener, "x", "/", Protocol::Http2, 16).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    replica.kill();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let replica = Replica::start(&path, addr);
    assert_eventually!(
        Duration::from_secs(15),
        replica.serves_synced("restarted-1").await,
        "envoy did not reconnect to the restarted replica"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let report = load.stop().await;
    report.assert_nothing_dropped();
    assert_eq!(
        envoy_config_state(&envoy).await,
        before,
        "the restart changed what Envoy runs"
    );
    assert_reconnect_sent(&replica, "restarted-1", xds).await;
    drop::<ControlPlane>(scene.cp);
}
