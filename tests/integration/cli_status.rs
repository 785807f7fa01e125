//! `switchyard status` against a real `switchyard serve` (it asks the switchyard.v1 API on
//! the xDS port): the tables, `--json`, exit code 69 when there is no switchyard to ask,
//! and 64 for the retired `--admin-addr`; and against a fake switchyard.v1 server, for
//! answers a real one gives rarely (no state yet) or never (a proxy without a status);
//! and a switch rolling out wave by wave, each wave with its color.
//! (The tables are unit-tested on switchyard.v1 messages in `src/cli/status/render.rs`.)

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use switchyard::grpc::pb::{self, switchyard_server};
use tonic::{Request, Response, Status};

const GOOD: &str = include_str!("../fixtures/one_service.yaml");

fn switchyard(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(args)
        .output()
        .expect("run switchyard")
}

/// A `switchyard serve` on free ports, stopped when dropped.
struct Serve {
    child: Child,
    xds: String,
    admin: String,
}

impl Serve {
    fn start(state: &Path) -> Serve {
        let mut child = Command::new(env!("CARGO_BIN_EXE_switchyard"))
            .arg("serve")
            .arg("--state")
            .arg(state)
            .args(["--xds-addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start switchyard serve");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("piped stdout"))
            .read_line(&mut line)
            .expect("read serve's first line");
        // "switchyard listening xds=ADDR admin=ADDR"
        let addr = |prefix: &str| {
            line.split_whitespace()
                .find_map(|w| w.strip_prefix(prefix))
                .unwrap_or_else(|| panic!("no {prefix} address in `{line}`"))
                .to_owned()
        };
        let (xds, admin) = (addr("xds="), addr("admin="));
        Serve { child, xds, admin }
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The version `validate` prints for `state`.
fn version_of(state: &Path) -> String {
    stdout(&switchyard(&["validate", state.to_str().unwrap()]))
        .rsplit("version ")
        .next()
        .unwrap()
        .trim_end_matches([')', '\n'])
        .to_owned()
}

/// The one-service fixture as `state.yaml` in a directory of its own (removed when the
/// directory is dropped).
fn good_state() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state.yaml");
    std::fs::write(&state, GOOD).unwrap();
    (dir, state)
}

/// Runs `status` until its output satisfies `done`, or panics after 10 s.
fn status_eventually(xds: &str, done: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let out = switchyard(&["status", "--xds-addr", xds]);
        let text = stdout(&out);
        if out.status.success() && done(&text) {
            return text;
        }
        assert!(Instant::now() < deadline, "status never got there: {out:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A port that was free a moment ago: nothing listens there now.
fn closed_port() -> String {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    format!("127.0.0.1:{port}")
}

#[test]
fn status_shows_the_state_and_services_of_a_running_server() {
    let (_dir, state) = good_state();
    let version = version_of(&state);
    let serve = Serve::start(&state);

    let out = switchyard(&["status", "--xds-addr", &serve.xds]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert!(
        lines[0].starts_with(&format!("state {version} (accepted 20")),
        "{text}"
    );
    assert_eq!(lines[1], "listeners: public (127.0.0.1:10000)");
    assert_eq!(lines[2], "last rejection: none");
    assert_eq!(
        lines[4..7],
        [
            "SERVICE     LISTENER  ACTIVE  BLUE  GREEN  DOMAINS",
            "summarizer  public    blue     100      0  *",
            "",
        ]
    );
    assert_eq!(lines[7], "no proxies connected");
}

#[test]
fn status_shows_a_rejected_save_with_its_location() {
    let (dir, state) = good_state();
    let serve = Serve::start(&state);
    // Saved as editors do (a temp file renamed over it), again on every poll: the server's
    // watcher may not be armed yet when `serve` prints its ports.
    let bad = GOOD.replace("active: blue", "active: purple");
    let save = || {
        let tmp = dir.path().join(".state.yaml.tmp");
        std::fs::write(&tmp, &bad).unwrap();
        std::fs::rename(&tmp, &state).unwrap();
    };
    let text = status_eventually(&serve.xds, |t| {
        let rejected = !t.contains("last rejection: none");
        if !rejected {
            save();
        }
        rejected
    });
    let path = state.display();
    assert!(
        text.contains(&format!("last rejection: {path} at 20")),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "(the state above stays in force)\n  {path}:13:13: active must be `blue` or `green`, not `purple`\n"
        )),
        "{text}"
    );
    assert!(
        text.contains("summarizer  public    blue     100      0  *"),
        "{text}"
    );
}

#[test]
fn status_json_prints_get_state_and_list_proxies_with_the_protos_field_names() {
    let (_dir, state) = good_state();
    let version = version_of(&state);
    let serve = Serve::start(&state);
    let out = switchyard(&["status", "--xds-addr", &serve.xds, "--json"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    // One object, state first, each message's fields in the proto's order.
    let text = stdout(&out);
    assert!(
        text.starts_with("{\n  \"state\": {\n    \"version\": "),
        "{text}"
    );
    let json: serde_json::Value = serde_json::from_str(&text).expect("JSON");
    assert_eq!(json["state"]["version"], version.as_str());
    assert!(
        json["state"]["accepted_at"]
            .as_str()
            .is_some_and(|t| t.starts_with("20") && t.ends_with('Z')),
        "{json}"
    );
    let service = &json["state"]["services"][0];
    assert_eq!(service["name"], "summarizer");
    assert_eq!(service["active"], "blue");
    assert_eq!(service["blue_weight"], 100);
    assert_eq!(service["green_weight"], 0);
    assert_eq!(json["state"]["listeners"][0]["port"], 10000);
    assert_eq!(json["state"]["resource_versions"][0]["type"], "clusters");
    assert_eq!(json["proxies"], serde_json::json!([]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_shows_a_switch_rolling_out_wave_by_wave() {
    use crate::common::control_plane::{ControlPlane, one_service};
    let backend: std::net::SocketAddr = "127.0.0.1:9".parse().unwrap();
    let rolled = |active: &str| {
        one_service(10000, backend, backend, active).replace(
            &format!("    active: {active}\n"),
            &format!(
                "    active: {active}\n    group: chat\n    rollout:\n      soak: 1h\n      waves: [{{zone: eu-west1-a}}, {{}}]\n"
            ),
        )
    };
    let cp = ControlPlane::start(&rolled("blue")).await;
    // With no proxy connected the first wave settles at once; the hour's soak holds the
    // second on blue.
    cp.save_by_rename(&rolled("green"));
    crate::assert_eventually!(
        Duration::from_secs(10),
        cp.status().await["rollout"][0]["rollout"]["reached"] == 1
    );
    let xds = cp.xds_addr().to_string();
    let (table, json) = tokio::task::spawn_blocking(move || {
        let table = switchyard(&["status", "--xds-addr", &xds]);
        let json = switchyard(&["status", "--xds-addr", &xds, "--json"]);
        (table, json)
    })
    .await
    .unwrap();

    assert_eq!(table.status.code(), Some(0), "{table:?}");
    let text = stdout(&table);
    assert!(
        text.contains(
            "\
rollout summarizer (group chat): rolling (on green)
  wave 1/2  zone=eu-west1-a  green  0/0 synced
  wave 2/2  every proxy      blue   0/0 synced
  why: wave 1 of 2 has green; "
        ),
        "{text}"
    );

    assert_eq!(json.status.code(), Some(0), "{json:?}");
    let json: serde_json::Value = serde_json::from_str(&stdout(&json)).expect("JSON");
    let rollout = &json["state"]["rollout"][0];
    assert_eq!(rollout["group"], "chat", "{rollout}");
    assert_eq!(rollout["phase"], "rolling", "{rollout}");
    assert_eq!(
        rollout["rollout"],
        serde_json::json!({
            "soak_seconds": 3600.0,
            "reached": 1,
            "rolling": true,
            "waves": [
                {"wave": 1, "selector": "zone=eu-west1-a", "color": "green",
                 "proxies": 0, "synced": 0, "connecting": 0},
                {"wave": 2, "selector": "every proxy", "color": "blue",
                 "proxies": 0, "synced": 0, "connecting": 0},
            ],
        })
    );
}

#[test]
fn status_without_a_server_exits_69() {
    let addr = closed_port();
    let out = switchyard(&["status", "--xds-addr", &addr]);
    assert_eq!(out.status.code(), Some(69), "{out:?}");
    let stderr = stderr(&out);
    assert!(
        stderr.starts_with(&format!("switchyard: cannot reach switchyard at {addr}: ")),
        "{stderr}"
    );
}

#[test]
fn status_from_an_http1_server_exits_69_saying_it_is_not_switchyard() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let server = std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().unwrap();
        let mut buf = [0u8; 1024];
        let _ = conn.read(&mut buf);
        let _ = conn.write_all(
            b"HTTP/1.1 404 Not Found\r\nContent-Length: 10\r\nConnection: close\r\n\r\nnot found\n",
        );
    });
    let out = switchyard(&["status", "--xds-addr", &addr]);
    server.join().unwrap();
    assert_eq!(out.status.code(), Some(69), "{out:?}");
    let stderr = stderr(&out);
    assert!(
        stderr.starts_with(&format!(
            "switchyard: {addr} is not switchyard's switchyard.v1 API (give the xDS port, `serve --xds-addr`): it does not answer as a gRPC server ("
        )),
        "{stderr}"
    );
}

#[test]
fn status_pointed_at_the_admin_port_exits_69_saying_it_is_not_switchyard_v1() {
    let (_dir, state) = good_state();
    let serve = Serve::start(&state);
    let out = switchyard(&["status", "--xds-addr", &serve.admin]);
    assert_eq!(out.status.code(), Some(69), "{out:?}");
    assert_eq!(out.stdout, b"", "{out:?}");
    let stderr = stderr(&out);
    assert!(
        stderr.starts_with(&format!(
            "switchyard: {} is not switchyard's switchyard.v1 API (give the xDS port, `serve --xds-addr`): ",
            serve.admin
        )),
        "{stderr}"
    );
}

#[test]
fn status_with_the_retired_admin_addr_flag_exits_64_pointing_to_xds_addr() {
    // Whether or not anything listens there: the flag itself is the mistake.
    let addr = closed_port();
    let out = switchyard(&["status", "--admin-addr", &addr]);
    assert_eq!(out.status.code(), Some(64), "{out:?}");
    assert_eq!(out.stdout, b"", "{out:?}");
    let stderr = stderr(&out);
    assert!(
        stderr.starts_with(&format!(
            "switchyard: `status --admin-addr {addr}` is no longer supported"
        )),
        "{stderr}"
    );
    assert!(
        stderr.contains("use --xds-addr HOST:PORT (the address given to `serve --xds-addr`, default 127.0.0.1:18000)"),
        "{stderr}"
    );
}

#[test]
fn status_defaults_to_the_serve_xds_address_and_hides_admin_addr() {
    let help = stdout(&switchyard(&["status", "--help"]));
    assert!(help.contains("--xds-addr <HOST:PORT>"), "{help}");
    assert!(help.contains("[default: 127.0.0.1:18000]"), "{help}");
    assert!(!help.contains("--admin-addr"), "{help}");
}

/// A switchyard.v1 server with no state loaded (GetState answers UNAVAILABLE, as switchyard
/// does then) and these proxies.
#[derive(Debug, Clone)]
struct Fake {
    proxies: Vec<pb::Proxy>,
}

#[tonic::async_trait]
impl switchyard_server::Switchyard for Fake {
    async fn get_state(
        &self,
        _: Request<pb::GetStateRequest>,
    ) -> Result<Response<pb::GetStateResponse>, Status> {
        Err(Status::unavailable("no valid state loaded"))
    }

    async fn list_proxies(
        &self,
        _: Request<pb::ListProxiesRequest>,
    ) -> Result<Response<pb::ListProxiesResponse>, Status> {
        Ok(Response::new(pb::ListProxiesResponse {
            proxies: self.proxies.clone(),
        }))
    }

    type WatchEventsStream = futures::stream::Empty<Result<pb::Event, Status>>;

    async fn watch_events(
        &self,
        _: Request<pb::WatchEventsRequest>,
    ) -> Result<Response<Self::WatchEventsStream>, Status> {
        Err(Status::unimplemented("not faked"))
    }
}

/// `switchyard status --xds-addr` against `fake`.
fn status_against(fake: Fake) -> Output {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    runtime.spawn(
        tonic::transport::Server::builder()
            .add_service(switchyard_server::SwitchyardServer::new(fake))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    switchyard(&["status", "--xds-addr", &addr])
}

/// A proxy that has just connected: nothing subscribed yet.
fn connecting_proxy(status: pb::ProxyStatus) -> pb::Proxy {
    pb::Proxy {
        node_id: "envoy-1".to_owned(),
        node_cluster: "edge".to_owned(),
        envoy_version: "1.40.0".to_owned(),
        protocol: "sotw".to_owned(),
        types: ["clusters", "endpoints", "listeners", "routes"]
            .map(|t| pb::TypeStatus {
                r#type: t.to_owned(),
                status: pb::SyncStatus::NotSubscribed as i32,
                ..Default::default()
            })
            .to_vec(),
        status: status as i32,
        ..Default::default()
    }
}

#[test]
fn status_of_a_server_without_state_says_none_loaded_and_lists_proxies() {
    let out = status_against(Fake {
        proxies: vec![connecting_proxy(pb::ProxyStatus::Connecting)],
    });
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert_eq!(
        stdout(&out),
        "\
state: none loaded yet (switchyard is not ready)

no services

PROXY (node)  CLUSTER  ENVOY   XDS   STATUS      CLUSTERS  ENDPOINTS  LISTENERS  ROUTES
envoy-1       edge     1.40.0  sotw  connecting  -         -          -          -
"
    );
}

#[test]
fn status_of_a_proxy_without_a_status_exits_69_naming_the_field() {
    let out = status_against(Fake {
        proxies: vec![connecting_proxy(pb::ProxyStatus::Unspecified)],
    });
    assert_eq!(out.status.code(), Some(69), "{out:?}");
    assert_eq!(out.stdout, b"", "{out:?}");
    let stderr = stderr(&out);
    assert!(
        stderr.starts_with("switchyard: switchyard at 127.0.0.1:")
            && stderr.ends_with(" answered without proxies[0].status\n"),
        "{stderr}"
    );
}
