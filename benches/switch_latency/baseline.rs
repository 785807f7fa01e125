//! The baseline without a control plane: Envoy with static clusters and a static listener
//! whose routes come from a watched file, started from a bootstrap of our own.

use std::fs::{self, File};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::Args;
use crate::common::backend::Backend;
use crate::common::control_plane::one_service;
use crate::common::{free_port, http, tools};
use crate::flips::{Color, Series, measure};
use crate::poll::{Pollers, Probe};

/// How long an Envoy may take to start and become LIVE.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// Envoy worker threads, as the test harness's Envoy has them.
const ENVOY_CONCURRENCY: &str = "2";

/// No control plane: Envoy with static clusters and a static listener whose routes come
/// from a watched file holding exactly the RouteConfiguration switchyard would send.
pub async fn file_baseline(args: &Args, flips: usize) -> Series {
    let blue = Backend::start("blue", "v1");
    let green = Backend::start("green", "v2");
    let listener: SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let state = |active: &str| one_service(listener.port(), blue.addr(), green.addr(), active);
    let rendered = [render(&state("blue")), render(&state("green"))];

    let dir = tempfile::Builder::new()
        .prefix("switch-latency-")
        .tempdir()
        .expect("create a temp dir");
    let routes_dir = dir.path().join("routes");
    fs::create_dir(&routes_dir).expect("create the watched routes dir");
    let routes_path = routes_dir.join("routes.json");
    let routes_file = |c: Color| {
        let route = rendered[c as usize]["resources"]["routes"]["resources"][0].clone();
        // A DiscoveryResponse, the shape Envoy expects of a file-based xDS source.
        json!({ "version_info": c.name(), "resources": [route] }).to_string()
    };
    let routes_files = [routes_file(Color::Blue), routes_file(Color::Green)];
    fs::write(&routes_path, &routes_files[Color::Blue as usize]).expect("write routes.json");

    let bootstrap = file_bootstrap(&rendered[0], &routes_path, &routes_dir, &blue, &green);
    let mut envoy = FileEnvoy::start(dir.path(), &bootstrap).await;
    let probe = Probe::new();
    let pollers = Pollers::start(listener, args.pollers, probe.clone());
    let save = |c: Color| {
        let tmp = routes_dir.join(".routes.json.tmp");
        fs::write(&tmp, &routes_files[c as usize]).expect("write the temp routes file");
        fs::rename(&tmp, &routes_path).expect("rename over routes.json");
    };
    let series = measure(
        "Envoy, routes from a watched file (no control plane)",
        args,
        flips,
        &probe,
        &save,
    )
    .await;
    drop(pollers);
    envoy.assert_running();
    series
}

/// switchyard's own rendering of a state file (`switchyard render`), as JSON.
fn render(state_yaml: &str) -> Value {
    let state = switchyard::state::parse_str(state_yaml)
        .unwrap_or_else(|e| panic!("bench state file is invalid: {e:?}"));
    let snapshot = switchyard::translate::translate(&state).expect("translate the state");
    switchyard::render::snapshot_to_json(&snapshot).expect("render the snapshot")
}

/// A bootstrap without xDS: switchyard's rendered listener, its RDS source switched from
/// ADS to the watched file, and the two color clusters as STATIC clusters.
fn file_bootstrap(
    rendered: &Value,
    routes_path: &Path,
    routes_dir: &Path,
    blue: &Backend,
    green: &Backend,
) -> Value {
    let mut listener = rendered["resources"]["listeners"]["resources"][0].clone();
    listener
        .as_object_mut()
        .expect("a listener is an object")
        .remove("@type");
    let source = listener
        .pointer_mut("/filter_chains/0/filters/0/typed_config/rds/config_source")
        .expect("the rendered listener loads its routes over RDS");
    *source = json!({
        "path_config_source": {
            "path": routes_path,
            "watched_directory": { "path": routes_dir },
        },
        "resource_api_version": "V3",
    });
    let cluster = |backend: &Backend| {
        let name = format!("summarizer-{}", backend.color());
        json!({
            "name": name,
            "type": "STATIC",
            "connect_timeout": "1s",
            "load_assignment": {
                "cluster_name": name,
                "endpoints": [{ "lb_endpoints": [{ "endpoint": { "address": { "socket_address": {
                    "address": backend.addr().ip().to_string(),
                    "port_value": backend.addr().port(),
                }}}}]}],
            },
        })
    };
    json!({
        "node": { "id": "file-envoy", "cluster": "edge" },
        "admin": { "address": { "socket_address": { "address": "127.0.0.1", "port_value": 0 } } },
        "static_resources": {
            "listeners": [listener],
            "clusters": [cluster(blue), cluster(green)],
        },
    })
}

/// An Envoy started from a given bootstrap (the harness's `Envoy` always renders
/// `envoy/bootstrap.yaml`, which needs a control plane); killed and reaped on drop.
struct FileEnvoy {
    child: Child,
    admin: SocketAddr,
    log: PathBuf,
}

impl FileEnvoy {
    /// Starts Envoy with the same flags as the harness's and waits until it is LIVE.
    async fn start(dir: &Path, bootstrap: &Value) -> FileEnvoy {
        let bootstrap_path = dir.join("bootstrap.json");
        fs::write(&bootstrap_path, bootstrap.to_string()).expect("write bootstrap.json");
        let admin_path = dir.join("admin_address");
        let log = dir.join("envoy.log");
        let log_file = File::create(&log).expect("create envoy.log");
        let child = Command::new(tools::envoy_bin())
            .arg("-c")
            .arg(&bootstrap_path)
            .arg("--disable-hot-restart")
            .args(["-l", "info", "--concurrency", ENVOY_CONCURRENCY])
            .args(["--drain-time-s", "1"])
            .arg("--admin-address-path")
            .arg(&admin_path)
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().expect("clone the log handle"))
            .stderr(log_file)
            .spawn()
            .expect("start envoy");
        let mut envoy = FileEnvoy {
            child,
            admin: ([127, 0, 0, 1], 0).into(),
            log,
        };
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            envoy.assert_running();
            if let Some(addr) = fs::read_to_string(&admin_path)
                .ok()
                .and_then(|s| s.trim().parse().ok())
            {
                envoy.admin = addr;
                let ready = http::get(addr, "/ready", "localhost").await;
                if ready.is_ok_and(|(status, body)| status == 200 && body.trim() == "LIVE") {
                    return envoy;
                }
            }
            if Instant::now() >= deadline {
                envoy.fail(&format!("not LIVE within {START_TIMEOUT:?}"));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn assert_running(&mut self) {
        if let Ok(Some(status)) = self.child.try_wait() {
            self.fail(&format!("exited: {status}"));
        }
    }

    fn fail(&self, what: &str) -> ! {
        let log = fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        let tail = lines[lines.len().saturating_sub(40)..].join("\n");
        panic!(
            "file-based envoy (admin {}): {what}\n--- log tail ---\n{tail}",
            self.admin
        )
    }
}

impl Drop for FileEnvoy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
