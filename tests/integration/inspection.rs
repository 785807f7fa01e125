//! The README's "Inspecting a running switchyard" commands, run exactly as written (with
//! this test's ports) with the real grpcurl against a live switchyard and a real Envoy.

use std::process::{Command, Stdio};
use std::time::Duration;

use crate::common::control_plane::BlueGreen;
use serde_json::Value;

/// The grpcurl command lines of the README's inspection section.
fn readme_commands() -> Vec<String> {
    let readme = include_str!("../../README.md");
    let section = readme
        .split("## Inspecting a running switchyard")
        .nth(1)
        .expect("README has an inspection section");
    let section = section.split("\n## ").next().unwrap();
    section
        .lines()
        .filter(|l| l.starts_with("grpcurl "))
        .map(str::to_owned)
        .collect()
}

/// Runs a README command line through `sh`, with grpcurl from `.tools/` on the PATH and
/// the README's default xDS address replaced by `xds`.
fn command(line: &str, xds: &str) -> Command {
    let grpcurl = crate::common::tools::grpcurl_bin();
    let dir = grpcurl.parent().unwrap();
    let path = format!(
        "{}:{}",
        dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut cmd = Command::new("sh");
    // `exec`, so that killing the child kills grpcurl itself.
    cmd.arg("-c")
        .arg(format!("exec {}", line.replace("127.0.0.1:18000", xds)))
        .env("PATH", path);
    cmd
}

fn run(line: &str, xds: &str) -> String {
    let out = command(line, xds).output().expect("run sh");
    assert!(
        out.status.success(),
        "`{line}` failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readme_grpcurl_commands_work_against_a_live_server() {
    let scene = BlueGreen::start().await;
    let _envoy = scene.envoy("envoy-1").await;
    assert_eventually!(
        Duration::from_secs(5),
        scene.cp.status().await["proxies"][0]["synced"] == true
    );
    let xds = scene.cp.xds_addr().to_string();
    let lines = readme_commands();
    assert_eq!(lines.len(), 7, "{lines:#?}");
    let find = |needle: &str| {
        lines
            .iter()
            .find(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("no README command with {needle}"))
            .clone()
    };

    let list = run(&find(" list"), &xds);
    for service in switchyard::grpc::SERVICES {
        assert!(
            list.lines().any(|l| l == service),
            "{service} not in:\n{list}"
        );
    }

    let describe = run(&find(" describe "), &xds);
    assert!(describe.contains("rpc GetState"), "{describe}");
    assert!(describe.contains("rpc WatchEvents"), "{describe}");

    let state: Value = serde_json::from_str(&run(&find("/GetState"), &xds)).unwrap();
    let status = scene.cp.status().await;
    assert_eq!(state["version"], status["state"]["version"]);
    assert_eq!(state["services"][0]["name"], "summarizer");
    assert_eq!(state["services"][0]["active"], "blue");
    assert_eq!(state["services"][0]["blueWeight"], 100);

    let proxies: Value = serde_json::from_str(&run(&find("/ListProxies"), &xds)).unwrap();
    let proxy = &proxies["proxies"][0];
    assert_eq!(proxy["nodeId"], "envoy-1");
    assert_eq!(proxy["protocol"], "sotw");
    assert_eq!(proxy["synced"], true);
    assert_eq!(proxy["types"][4]["type"], "routes");
    assert_eq!(proxy["types"][4]["status"], "SYNCED");

    // CSDS lists the real Envoy with its acknowledged versions.
    let csds: Value = serde_json::from_str(&run(&find("/FetchClientStatus"), &xds)).unwrap();
    let config = &csds["config"][0];
    assert_eq!(config["node"]["id"], "envoy-1");
    assert_eq!(config["node"]["metadata"]["switchyard.protocol"], "sotw");
    let resources = config["genericXdsConfigs"].as_array().unwrap();
    assert_eq!(resources.len(), 6, "{resources:#?}");
    for r in resources {
        assert_eq!(r["configStatus"], "SYNCED", "{r}");
        assert_eq!(r["clientStatus"], "ACKED", "{r}");
    }
    let route = resources
        .iter()
        .find(|r| {
            r["typeUrl"]
                .as_str()
                .unwrap()
                .ends_with("RouteConfiguration")
        })
        .unwrap();
    assert_eq!(
        route["versionInfo"],
        status["state"]["resource_versions"]["routes"]
    );
    // A matcher naming no connected node returns nothing.
    let none = run(
        &find("/FetchClientStatus").replace("\"envoy-1\"", "\"nobody\""),
        &xds,
    );
    assert!(
        serde_json::from_str::<Value>(&none)
            .unwrap()
            .get("config")
            .is_none(),
        "{none}"
    );

    // The streaming CSDS call answers each request on the stream.
    let mut stream = command(
        "grpcurl -plaintext -d @ 127.0.0.1:18000 envoy.service.status.v3.ClientStatusDiscoveryService/StreamClientStatus",
        &xds,
    )
    .stdin(Stdio::piped())
    .stdout(Stdio::piped())
    .spawn()
    .expect("start grpcurl");
    {
        use std::io::Write;
        let mut stdin = stream.stdin.take().unwrap();
        writeln!(stdin, r#"{{"node_matchers": [{{"node_id": {{"prefix": "envoy-"}}}}], "exclude_resource_contents": true}}"#).unwrap();
        writeln!(
            stdin,
            r#"{{"node_matchers": [{{"node_id": {{"exact": "other"}}}}]}}"#
        )
        .unwrap();
    }
    let out = stream.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert_eq!(text.matches("\"id\": \"envoy-1\"").count(), 1, "{text}");
    assert_eq!(text.matches("configStatus").count(), 6, "{text}");

    let health = run(&find("Health/Check"), &xds);
    assert!(health.contains("\"SERVING\""), "{health}");

    // WatchEvents streams a switch as it happens.
    let mut watch = command(&find("/WatchEvents"), &xds)
        .stdout(Stdio::piped())
        .spawn()
        .expect("start grpcurl");
    tokio::time::sleep(Duration::from_millis(500)).await;
    scene.cp.save_by_rename(&scene.state("green"));
    assert_eventually!(Duration::from_secs(3), {
        scene.cp.status().await["proxies"][0]["synced"] == true
            && scene.cp.status().await["state"]["services"][0]["active"] == "green"
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let _ = watch.kill();
    let out = watch.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    for kind in [
        "stateAccepted",
        "switchStarted",
        "proxyAcked",
        "proxySynced",
        "switchComplete",
    ] {
        assert!(text.contains(kind), "no {kind} in:\n{text}");
    }
    assert!(text.contains("\"service\": \"summarizer\""), "{text}");
}
