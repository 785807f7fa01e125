//! An in-process switchyard on ephemeral ports, serving a state file in a temp dir.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde_json::Value;
use switchyard::{Config, Server};
use tempfile::TempDir;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// One sample of `series` (e.g. `switchyard_xds_acks_total{type="routes"}`) from
/// `/metrics` text.
pub fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
}

/// A state file with one listener and one service `summarizer` (domains `*`).
pub fn one_service(
    listener_port: u16,
    blue: SocketAddr,
    green: SocketAddr,
    active: &str,
) -> String {
    format!(
        "listeners:
  - name: public
    address: 127.0.0.1
    port: {listener_port}
services:
  - name: summarizer
    listener: public
    domains: [\"*\"]
    blue:
      endpoints: [\"{blue}\"]
    green:
      endpoints: [\"{green}\"]
    active: {active}
"
    )
}

/// A running switchyard; stopped on drop.
pub struct ControlPlane {
    dir: TempDir,
    path: PathBuf,
    xds: SocketAddr,
    admin: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<(), switchyard::ServeError>>>,
}

impl ControlPlane {
    /// Writes `state` to a fresh temp dir and serves it on 127.0.0.1 port 0 (xDS and admin).
    pub async fn start(state: &str) -> ControlPlane {
        ControlPlane::start_with(state, |_| {}).await
    }

    /// Like [`ControlPlane::start`], with `configure` adjusting the config first.
    pub async fn start_with(state: &str, configure: impl FnOnce(&mut Config)) -> ControlPlane {
        let dir = tempfile::tempdir().expect("create a temp dir");
        let path = dir.path().join("state.yaml");
        std::fs::write(&path, state).expect("write the state file");
        let mut config = Config::new(&path);
        config.xds_addr = "127.0.0.1:0".parse().unwrap();
        config.admin_addr = "127.0.0.1:0".parse().unwrap();
        configure(&mut config);
        let (xds, admin, stop, task) = serve(config).await;
        ControlPlane {
            dir,
            path,
            xds,
            admin,
            stop: Some(stop),
            task: Some(task),
        }
    }

    pub fn xds_addr(&self) -> SocketAddr {
        self.xds
    }

    pub fn admin_addr(&self) -> SocketAddr {
        self.admin
    }

    pub fn state_path(&self) -> &Path {
        &self.path
    }

    /// Saves like an editor: writes a temp file beside the state file, renames it over.
    pub fn save_by_rename(&self, state: &str) {
        let tmp = self.dir.path().join(".state.yaml.swp");
        std::fs::write(&tmp, state).expect("write the temp file");
        std::fs::rename(&tmp, &self.path).expect("rename over the state file");
    }

    /// Saves in place: truncates the file and writes the new content.
    pub fn save_in_place(&self, state: &str) {
        std::fs::write(&self.path, state).expect("write the state file");
    }

    /// `GET /status` as JSON.
    pub async fn status(&self) -> Value {
        let (code, body) = crate::common::http::get(self.admin, "/status", "localhost")
            .await
            .expect("GET /status");
        assert_eq!(code, 200, "/status answered {code}: {body}");
        serde_json::from_str(&body).expect("/status is JSON")
    }

    /// `GET /metrics` text.
    pub async fn metrics(&self) -> String {
        self.admin_get("/metrics").await.1
    }

    /// `GET path` on the admin port: (status, body).
    pub async fn admin_get(&self, path: &str) -> (u16, String) {
        crate::common::http::get(self.admin, path, "localhost")
            .await
            .unwrap_or_else(|e| panic!("GET {path}: {e}"))
    }

    /// A counter from `/metrics` (0 when the series is absent).
    pub async fn counter(&self, series: &str) -> u64 {
        let (_, text) = self.admin_get("/metrics").await;
        metric(&text, series).map_or(0, |v| v as u64)
    }

    /// Stops switchyard and starts it again on the same ports and state file, with
    /// `configure` adjusting the config (as at its first start).
    pub async fn restart_with(&mut self, configure: impl FnOnce(&mut Config)) {
        self.shut_down().await;
        let mut config = Config::new(&self.path);
        config.xds_addr = self.xds;
        config.admin_addr = self.admin;
        configure(&mut config);
        let (_, _, stop, task) = serve(config).await;
        self.stop = Some(stop);
        self.task = Some(task);
    }

    /// Stops the server (if running) and waits for it to finish.
    async fn shut_down(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.await
                .expect("server task")
                .expect("server stops cleanly");
        }
    }

    /// Stops the server and waits for it to finish.
    pub async fn stop(mut self) {
        self.shut_down().await;
    }
}

/// Binds switchyard with `config` and runs it on a task until the sender fires: the bound
/// xDS and admin addresses, the sender, and the task.
async fn serve(
    config: Config,
) -> (
    SocketAddr,
    SocketAddr,
    oneshot::Sender<()>,
    JoinHandle<Result<(), switchyard::ServeError>>,
) {
    let server = Server::bind(config).await.expect("switchyard starts");
    let (xds, admin) = (server.xds_addr(), server.admin_addr());
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(server.run(async move {
        let _ = stopped.await;
    }));
    (xds, admin, stop, task)
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// The usual scene: a blue (v1) and a green (v2) backend, a listener port, and switchyard
/// serving one service `summarizer` on it with `blue` active.
pub struct BlueGreen {
    pub blue: crate::common::backend::Backend,
    pub green: crate::common::backend::Backend,
    /// Where Envoy listens (the state file's listener).
    pub listener: SocketAddr,
    pub cp: ControlPlane,
}

impl BlueGreen {
    pub async fn start() -> BlueGreen {
        BlueGreen::start_with(|_| {}).await
    }

    /// Like [`BlueGreen::start`], with `configure` adjusting switchyard's config first.
    pub async fn start_with(configure: impl FnOnce(&mut Config)) -> BlueGreen {
        let blue = crate::common::backend::Backend::start("blue", "v1");
        let green = crate::common::backend::Backend::start("green", "v2");
        let listener: SocketAddr = ([127, 0, 0, 1], crate::common::free_port()).into();
        let state = one_service(listener.port(), blue.addr(), green.addr(), "blue");
        let cp = ControlPlane::start_with(&state, configure).await;
        BlueGreen {
            blue,
            green,
            listener,
            cp,
        }
    }

    /// The state file with `active` set to `active`.
    pub fn state(&self, active: &str) -> String {
        one_service(
            self.listener.port(),
            self.blue.addr(),
            self.green.addr(),
            active,
        )
    }

    /// Starts an Envoy named `node_id` on this control plane and waits until it is live.
    pub async fn envoy(&self, node_id: &str) -> crate::common::envoy::Envoy {
        self.envoy_speaking(node_id, crate::common::envoy::Xds::Sotw)
            .await
    }

    /// [`Self::envoy`], speaking `xds` (SotW or delta) to switchyard.
    pub async fn envoy_speaking(
        &self,
        node_id: &str,
        xds: crate::common::envoy::Xds,
    ) -> crate::common::envoy::Envoy {
        let envoy = crate::common::envoy::Envoy::builder(node_id, self.cp.xds_addr())
            .xds(xds)
            .start()
            .await;
        envoy.wait_live(std::time::Duration::from_secs(20)).await;
        envoy
    }
}
