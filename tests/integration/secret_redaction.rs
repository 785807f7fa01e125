//! A credential's value reaches the backend through Envoy and appears nowhere else: not in
//! switchyard's logs (at debug level) or audit log, `render`, `diff`, `/status`, CSDS (with
//! resource contents), `switchyard.v1` or `switchyard status`, before or after a rotation.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::common::backend::Backend;
use crate::common::envoy::Envoy;
use crate::common::{free_port, http};

const FIRST: &str = "sk-first-7f3a9c1e";
const SECOND: &str = "sk-second-b84d02aa";

/// `switchyard serve`, its stdout and stderr (debug logs) in `log`; killed on drop.
struct Serve(Child);

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn switchyard(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(args)
        .output()
        .expect("run switchyard");
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn grpcurl(xds: SocketAddr, data: Option<&str>, method: &str) -> String {
    let mut cmd = Command::new(crate::common::tools::grpcurl_bin());
    cmd.arg("-plaintext");
    if let Some(d) = data {
        cmd.args(["-d", d]);
    }
    let out = cmd
        .arg(xds.to_string())
        .arg(method)
        .output()
        .expect("run grpcurl");
    assert!(
        out.status.success(),
        "grpcurl {method}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn state(listener: u16, blue: SocketAddr, green: SocketAddr, key: &str) -> String {
    format!(
        "listeners: [{{name: public, address: 127.0.0.1, port: {listener}}}]
services:
  - name: models
    listener: public
    domains: [\"*\"]
    blue:
      endpoints: [\"{blue}\"]
      credential: {{header: x-api-key, file: {key}}}
    green:
      endpoints: [\"{green}\"]
      credential: {{header: authorization, prefix: \"Bearer \", file: {key}}}
    active: blue
"
    )
}

/// Everything switchyard shows that could hold the secret, in one text.
async fn everything_shown(dir: &Path, admin: SocketAddr, xds: SocketAddr) -> String {
    let state = dir.join("state.yaml");
    let other = dir.join("other.yaml");
    let mut shown = String::new();
    shown += &switchyard(&["render", state.to_str().unwrap()]);
    shown += &switchyard(&["diff", state.to_str().unwrap(), other.to_str().unwrap()]);
    shown += &switchyard(&["status", "--xds-addr", &xds.to_string()]);
    shown += &http::get(admin, "/status", "localhost").await.unwrap().1;
    shown += &grpcurl(xds, None, "switchyard.v1.Switchyard/GetState");
    shown += &grpcurl(xds, None, "switchyard.v1.Switchyard/ListProxies");
    shown += &grpcurl(
        xds,
        Some("{\"exclude_resource_contents\": false}"),
        "envoy.service.status.v3.ClientStatusDiscoveryService/FetchClientStatus",
    );
    shown
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_credential_is_never_logged_rendered_diffed_or_shown_only_sent_to_envoy() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("key"), FIRST).unwrap();
    std::fs::write(dir.path().join("other-key"), SECOND).unwrap();
    let blue = Backend::start("blue", "v1");
    blue.require_header("x-api-key", &[FIRST, SECOND]);
    let green = Backend::start("green", "v2");
    let port = free_port();
    let path = dir.path().join("state.yaml");
    std::fs::write(&path, state(port, blue.addr(), green.addr(), "key")).unwrap();
    std::fs::write(
        dir.path().join("other.yaml"),
        state(port, blue.addr(), green.addr(), "other-key")
            .replace("active: blue", "active: green"),
    )
    .unwrap();
    let log = dir.path().join("serve.log");
    let audit = dir.path().join("audit.jsonl");
    let mut child = Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args([
            "serve",
            "--admin-addr",
            "127.0.0.1:0",
            "--xds-addr",
            "127.0.0.1:0",
        ])
        .arg("--state")
        .arg(&path)
        .arg("--audit-log")
        .arg(&audit)
        .env("SWITCHYARD_LOG", "debug")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("start switchyard");
    let mut line = String::new();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    stdout
        .read_line(&mut line)
        .expect("read switchyard's stdout");
    let _serve = Serve(child);
    let addr = |key: &str| -> SocketAddr {
        line.split_whitespace()
            .find_map(|w| w.strip_prefix(key))
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("no {key} in {line:?}"))
    };
    let (xds, admin) = (addr("xds="), addr("admin="));
    let _envoy = Envoy::start("envoy-1", xds).await;
    let listener = SocketAddr::from(([127, 0, 0, 1], port));

    // The secret does reach the backend, through Envoy.
    assert_eventually!(
        Duration::from_secs(10),
        http::get(listener, "/", "models.example").await == Ok((200, "blue v1\n".to_owned()))
    );
    assert_eq!(
        blue.recent_requests().pop().unwrap().header("x-api-key"),
        Some(FIRST)
    );
    let mut shown = everything_shown(dir.path(), admin, xds).await;

    // Rotated: the new value arrives, and shows nowhere either.
    std::fs::write(dir.path().join("key"), SECOND).unwrap();
    assert_eventually!(
        Duration::from_secs(10),
        http::get(listener, "/", "models.example").await.is_ok()
            && blue.recent_requests().pop().unwrap().header("x-api-key") == Some(SECOND)
    );
    shown += &everything_shown(dir.path(), admin, xds).await;
    // Written by now: the log and the audit trail.
    shown += &std::fs::read_to_string(&log).unwrap();
    shown += &std::fs::read_to_string(&audit).unwrap();

    // Not vacuous: the outputs are there, and name the secret without its value.
    assert!(shown.contains("models-blue-credential"), "{shown}");
    assert!(shown.contains("[redacted]"), "{shown}");
    assert!(shown.contains("its content changes"), "{shown}");
    for secret in [FIRST, SECOND] {
        let at = shown
            .find(secret)
            .map(|i| &shown[i.saturating_sub(300)..i + 50]);
        assert!(
            at.is_none(),
            "{secret} shown: ...{}...",
            at.unwrap_or_default()
        );
    }
}
