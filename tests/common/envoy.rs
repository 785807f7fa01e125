//! A real Envoy 1.40 process for end-to-end tests, configured from the
//! bootstrap users copy (`envoy/bootstrap.yaml`, or `envoy/bootstrap-delta.yaml` for
//! incremental xDS: [`Xds`]) and pointed at a test's switchyard over ADS, reporting its
//! load to it (LRS) as that bootstrap says.
//!
//! ```ignore
//! let envoy = Envoy::start("envoy-1", xds_addr).await; // admin answering
//! envoy.wait_live(Duration::from_secs(10)).await;       // initial xDS applied
//! assert_eq!(envoy.stat("cluster_manager.active_clusters").await, Some(3));
//! ```
//!
//! The admin-querying methods are `async` on purpose: a test usually runs
//! switchyard on its own runtime, and a blocking wait for Envoy there would
//! starve the very server Envoy is waiting for.
//!
//! Dropping the [`Envoy`] kills the process (SIGKILL) and reaps it, also when
//! the test panics; in that case the tail of Envoy's log is printed.
#![allow(dead_code)]

use std::fs::{self, File};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde_json::Value;
use tempfile::TempDir;

use super::{http, tools};

/// How long [`Envoy::start`] waits for the admin endpoint to answer.
pub const ADMIN_TIMEOUT: Duration = Duration::from_secs(30);
/// How many log lines [`Envoy::log_tail`] returns.
pub const LOG_TAIL_LINES: usize = 60;

/// Which ADS variant an Envoy speaks to switchyard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Xds {
    /// State of the world: `envoy/bootstrap.yaml` (`api_type: GRPC`).
    Sotw,
    /// Incremental: `envoy/bootstrap-delta.yaml` (`api_type: DELTA_GRPC`).
    Delta,
}

impl Xds {
    /// The name switchyard gives it (`/status`, metrics): `sotw` or `delta`.
    pub fn name(self) -> &'static str {
        match self {
            Xds::Sotw => "sotw",
            Xds::Delta => "delta",
        }
    }
}

/// Generates, for each scenario `name(xds: Xds)` (an async fn), a module `name` with two
/// tests, `sotw` and `delta`, that run it against an Envoy speaking each ADS variant:
/// every end-to-end suite runs in both modes.
#[macro_export]
macro_rules! both_protocols {
    ($($name:ident),+ $(,)?) => {
        $(
            mod $name {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sotw() {
                    super::$name($crate::common::envoy::Xds::Sotw).await
                }
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn delta() {
                    super::$name($crate::common::envoy::Xds::Delta).await
                }
            }
        )+
    };
}

/// Options for starting an [`Envoy`]; see [`Envoy::builder`].
#[derive(Debug, Clone)]
pub struct EnvoyBuilder {
    node_id: String,
    xds: Xds,
    xds_addr: SocketAddr,
    /// More switchyard replicas in the xDS cluster, after `xds_addr`.
    more_xds_addrs: Vec<SocketAddr>,
    node_on_first_message_only: bool,
    concurrency: u32,
    log_level: String,
    config_yaml: Option<String>,
    extra_args: Vec<String>,
    /// The node's cluster, instead of the bootstrap's.
    node_cluster: Option<String>,
    /// The node's locality: region and zone.
    locality: Option<(String, String)>,
    /// Mutual TLS to switchyard: `envoy/bootstrap-mtls.yaml` with these files.
    tls: Option<EnvoyTls>,
}

/// The files `envoy/bootstrap-mtls.yaml` names.
#[derive(Debug, Clone)]
pub struct EnvoyTls {
    /// This proxy's certificate and key.
    pub identity: crate::common::tls::Identity,
    /// The CA switchyard's certificate chains to.
    pub ca: PathBuf,
}

impl EnvoyBuilder {
    /// Talks to switchyard over mutual TLS: renders `envoy/bootstrap-mtls.yaml` (the file
    /// users copy) with these certificate files instead of `envoy/bootstrap.yaml`.
    pub fn tls(mut self, tls: EnvoyTls) -> Self {
        self.tls = Some(tls);
        self
    }

    /// Speaks `xds` to switchyard (default [`Xds::Sotw`]): [`Xds::Delta`] renders
    /// `envoy/bootstrap-delta.yaml` (or, with [`Self::tls`], the mTLS bootstrap with
    /// `api_type: DELTA_GRPC`).
    pub fn xds(mut self, xds: Xds) -> Self {
        self.xds = xds;
        self
    }

    /// Sets `ads_config.set_node_on_first_message_only` (the bootstrap's
    /// default is `true`): with `false`, Envoy sends its node on every request.
    pub fn node_on_first_message_only(mut self, yes: bool) -> Self {
        self.node_on_first_message_only = yes;
        self
    }

    /// Adds another switchyard replica to the xDS cluster: Envoy holds one ADS stream to
    /// one of them and reconnects to another when it goes away.
    pub fn also_xds(mut self, addr: SocketAddr) -> Self {
        self.more_xds_addrs.push(addr);
        self
    }

    /// Worker threads (`--concurrency`); default 2, to stay light when many
    /// tests run in parallel.
    pub fn concurrency(mut self, workers: u32) -> Self {
        self.concurrency = workers;
        self
    }

    /// Log level (`-l`): `trace`, `debug`, `info` (default), `warning`, ...
    pub fn log_level(mut self, level: &str) -> Self {
        self.log_level = level.to_owned();
        self
    }

    /// YAML merged over the rendered bootstrap (`--config-yaml`). Proto merge
    /// rules apply: scalars are replaced, repeated fields are appended.
    pub fn config_yaml(mut self, yaml: &str) -> Self {
        self.config_yaml = Some(yaml.to_owned());
        self
    }

    /// The node's cluster (what rollout waves and `--allow-cluster` select on).
    pub fn node_cluster(mut self, cluster: &str) -> Self {
        self.node_cluster = Some(cluster.to_owned());
        self
    }

    /// The node's locality (what rollout waves select on, and localities are ranked
    /// from).
    pub fn locality(mut self, region: &str, zone: &str) -> Self {
        self.locality = Some((region.to_owned(), zone.to_owned()));
        self
    }

    /// Any other Envoy command-line argument, e.g.
    /// `.arg("--component-log-level").arg("upstream:debug")`.
    pub fn arg(mut self, arg: &str) -> Self {
        self.extra_args.push(arg.to_owned());
        self
    }

    /// Renders the bootstrap, launches Envoy and waits until its admin
    /// endpoint answers. Panics (with Envoy's log) if it does not.
    pub async fn start(self) -> Envoy {
        let envoy_bin = tools::envoy_bin();
        let dir = tempfile::Builder::new()
            .prefix(&format!("envoy-{}-", self.node_id))
            .tempdir()
            .expect("create a temp dir for envoy");
        let bootstrap = dir.path().join("bootstrap.json");
        let rendered = render_bootstrap(&self);
        fs::write(&bootstrap, serde_json::to_string_pretty(&rendered).unwrap())
            .expect("write the rendered bootstrap");
        let admin_address_path = dir.path().join("admin_address");
        // Logs go to stderr (unbuffered, so nothing is lost on SIGKILL, and
        // it also catches errors printed before logging is set up); stdout
        // joins it in the same file.
        let log_path = dir.path().join("envoy.log");
        let log = File::create(&log_path).expect("create envoy.log");
        let mut cmd = Command::new(&envoy_bin);
        cmd.arg("-c")
            .arg(&bootstrap)
            .arg("--disable-hot-restart")
            .args(["-l", &self.log_level])
            .args(["--concurrency", &self.concurrency.to_string()])
            .args(["--drain-time-s", "1"])
            .arg("--admin-address-path")
            .arg(&admin_address_path);
        if let Some(yaml) = &self.config_yaml {
            cmd.arg("--config-yaml").arg(yaml);
        }
        cmd.args(&self.extra_args)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone the envoy.log handle"))
            .stderr(log);
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", envoy_bin.display()));
        let mut envoy = Envoy {
            child: Mutex::new(child),
            admin_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            node_id: self.node_id,
            bootstrap,
            log_path,
            log_shown: AtomicBool::new(false),
            dir,
        };
        envoy.admin_addr = envoy.read_admin_address(&admin_address_path).await;
        envoy.wait_admin().await;
        envoy
    }
}

/// A running Envoy; killed and reaped on drop.
pub struct Envoy {
    /// Behind a mutex because `try_wait` needs `&mut` while the guard is
    /// shared (`&self`) by the test; it is never held across an `.await`.
    child: Mutex<Child>,
    admin_addr: SocketAddr,
    node_id: String,
    bootstrap: PathBuf,
    log_path: PathBuf,
    /// Set once a panic message carried the log tail, so drop does not print
    /// it a second time.
    log_shown: AtomicBool,
    /// Holds the rendered bootstrap and the log; deleted on drop.
    dir: TempDir,
}

impl Envoy {
    /// Starts Envoy as `node_id`, streaming ADS from `xds_addr`, with the
    /// default options, and waits until its admin endpoint answers.
    pub async fn start(node_id: &str, xds_addr: SocketAddr) -> Envoy {
        Envoy::builder(node_id, xds_addr).start().await
    }

    /// Options beyond [`Envoy::start`]'s defaults.
    pub fn builder(node_id: &str, xds_addr: SocketAddr) -> EnvoyBuilder {
        EnvoyBuilder {
            node_id: node_id.to_owned(),
            xds: Xds::Sotw,
            xds_addr,
            more_xds_addrs: Vec::new(),
            node_on_first_message_only: true,
            concurrency: 2,
            log_level: "info".to_owned(),
            config_yaml: None,
            extra_args: Vec::new(),
            node_cluster: None,
            locality: None,
            tls: None,
        }
    }

    /// The admin endpoint (an ephemeral loopback port).
    pub fn admin_addr(&self) -> SocketAddr {
        self.admin_addr
    }

    /// The node id it presents to the control plane.
    pub fn node_id(&self) -> &str {
        &self.node_id
    }

    /// The process id (of the real Envoy binary, not a wrapper).
    pub fn pid(&self) -> u32 {
        self.child.lock().unwrap().id()
    }

    /// The rendered bootstrap file it was started with (JSON).
    pub fn bootstrap_path(&self) -> &Path {
        &self.bootstrap
    }

    /// `Some(status)` if the process has exited.
    pub fn exit_status(&self) -> Option<ExitStatus> {
        self.child
            .lock()
            .unwrap()
            .try_wait()
            .expect("query the envoy process")
    }

    /// Waits until the admin endpoint answers (`GET /server_info`); panics
    /// after [`ADMIN_TIMEOUT`] or if Envoy exits.
    pub async fn wait_admin(&self) {
        let deadline = tokio::time::Instant::now() + ADMIN_TIMEOUT;
        loop {
            self.assert_running();
            match http::get(self.admin_addr, "/server_info", "localhost").await {
                Ok((200, _)) => return,
                Ok(_) | Err(_) if tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                last => self.fail(&format!(
                    "admin at {} not answering within {ADMIN_TIMEOUT:?}; last: {last:?}",
                    self.admin_addr
                )),
            }
        }
    }

    /// Whether `GET /ready` answers `200 LIVE`. With ADS, Envoy becomes LIVE
    /// only once its initial clusters and listeners have arrived (or the
    /// initial fetch timed out).
    pub async fn is_live(&self) -> bool {
        let (status, body) = self.admin_get("/ready").await;
        status == 200 && body.trim() == "LIVE"
    }

    /// Waits until Envoy is LIVE (see [`Envoy::is_live`]); panics with the
    /// log tail after `timeout`.
    pub async fn wait_live(&self, timeout: Duration) {
        if !super::eventually(timeout, async || self.is_live().await).await {
            let (status, body) = self.admin_get("/ready").await;
            self.fail(&format!(
                "not LIVE within {timeout:?}; /ready says {status} {}",
                body.trim()
            ));
        }
    }

    /// `GET path` on the admin endpoint: status and body. Panics (with the
    /// log tail) if the admin endpoint does not answer, e.g. Envoy died.
    pub async fn admin_get(&self, path: &str) -> (u16, String) {
        match http::get(self.admin_addr, path, "localhost").await {
            Ok(response) => response,
            Err(e) => {
                self.assert_running();
                self.fail(&format!("admin GET {path} failed: {e}"))
            }
        }
    }

    /// `GET /config_dump?include_eds` (endpoints included), parsed.
    pub async fn config_dump(&self) -> Value {
        let (status, body) = self.admin_get("/config_dump?include_eds").await;
        assert_eq!(status, 200, "config_dump failed: {body}");
        serde_json::from_str(&body).expect("config_dump is JSON")
    }

    /// The value of the counter or gauge `name` (exact name, e.g.
    /// `cluster_manager.cds.update_success`), `None` if there is no such
    /// counter or gauge.
    pub async fn stat(&self, name: &str) -> Option<u64> {
        let (status, body) = self
            .admin_get(&format!("/stats?filter={}", percent_encode(name)))
            .await;
        assert_eq!(status, 200, "stats failed: {body}");
        parse_stat(&body, name)
    }

    /// The whole log so far.
    pub fn log(&self) -> String {
        fs::read_to_string(&self.log_path).unwrap_or_else(|e| format!("<cannot read log: {e}>"))
    }

    /// The last [`LOG_TAIL_LINES`] lines of the log.
    pub fn log_tail(&self) -> String {
        let log = self.log();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(LOG_TAIL_LINES)..].join("\n")
    }

    /// Waits for the admin address Envoy writes once its admin listener is
    /// bound (`--admin-address-path`): race-free, unlike picking a port first.
    async fn read_admin_address(&self, path: &Path) -> SocketAddr {
        let deadline = tokio::time::Instant::now() + ADMIN_TIMEOUT;
        loop {
            self.assert_running();
            // Envoy writes the file in one go, but a read can still catch it
            // empty; only a parseable address counts.
            if let Some(addr) = fs::read_to_string(path)
                .ok()
                .and_then(|s| s.trim().parse().ok())
            {
                return addr;
            }
            if tokio::time::Instant::now() >= deadline {
                self.fail(&format!("no admin address within {ADMIN_TIMEOUT:?}"));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn assert_running(&self) {
        if let Some(status) = self.exit_status() {
            self.fail(&format!("envoy exited: {status}"));
        }
    }

    fn fail(&self, what: &str) -> ! {
        self.log_shown.store(true, Ordering::Relaxed);
        let admin = match self.admin_addr.port() {
            0 => "not up yet".to_owned(),
            _ => self.admin_addr.to_string(),
        };
        panic!(
            "envoy {:?} (admin {admin}): {what}\n--- envoy log tail ({}) ---\n{}",
            self.node_id,
            self.log_path.display(),
            self.log_tail()
        )
    }
}

impl Drop for Envoy {
    fn drop(&mut self) {
        let child = self.child.get_mut().unwrap_or_else(|e| e.into_inner());
        // Already-exited is fine; anything else leaves the process running.
        let _ = child.kill();
        let _ = child.wait();
        if std::thread::panicking() && !*self.log_shown.get_mut() {
            eprintln!(
                "--- envoy {:?} (admin {}) log tail ---\n{}\n--- end of envoy log ---",
                self.node_id,
                self.admin_addr,
                self.log_tail()
            );
        }
    }
}

/// The shipped bootstrap with this test's node id, xDS address, admin
/// address (port 0: Envoy picks, and reports it via `--admin-address-path`)
/// and options. Edited structurally, so comments and formatting in the
/// shipped file don't matter; panics if its shape changes.
fn render_bootstrap(options: &EnvoyBuilder) -> Value {
    let file = match (&options.tls, options.xds) {
        (Some(_), _) => "envoy/bootstrap-mtls.yaml",
        (None, Xds::Sotw) => "envoy/bootstrap.yaml",
        (None, Xds::Delta) => "envoy/bootstrap-delta.yaml",
    };
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(file);
    let text =
        fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let mut bootstrap: Value = serde_saphyr::from_str(&text)
        .unwrap_or_else(|e| panic!("{} is not valid YAML: {e}", path.display()));

    let api_type = match options.xds {
        Xds::Sotw => "GRPC",
        Xds::Delta => "DELTA_GRPC",
    };
    assert_eq!(
        bootstrap.pointer("/dynamic_resources/ads_config/api_type"),
        Some(&Value::from(match options.tls {
            Some(_) => "GRPC",
            None => api_type,
        })),
        "{} does not say the api_type its name does",
        path.display()
    );
    let mut set = |pointer: &str, value: Value| match bootstrap.pointer_mut(pointer) {
        Some(slot) => *slot = value,
        None => panic!(
            "{} has no {pointer}; update tests/common/envoy.rs",
            path.display()
        ),
    };
    set("/node/id", options.node_id.clone().into());
    if let Some(cluster) = &options.node_cluster {
        set("/node/cluster", cluster.clone().into());
    }
    set("/admin/address/socket_address/address", "127.0.0.1".into());
    set("/admin/address/socket_address/port_value", 0.into());
    set(
        "/dynamic_resources/ads_config/set_node_on_first_message_only",
        options.node_on_first_message_only.into(),
    );
    set("/dynamic_resources/ads_config/api_type", api_type.into());

    // Every Envoy the tests start reports its load (LRS) to the switchyard it gets its
    // configuration from, like the proxies of users who copy the file.
    let lrs = "/cluster_manager/load_stats_config/grpc_services/0/envoy_grpc/cluster_name";
    assert_eq!(
        bootstrap.pointer(lrs).and_then(Value::as_str),
        Some("xds_cluster"),
        "{} does not send load reports to xds_cluster ({lrs}); update tests/common/envoy.rs",
        path.display()
    );

    let clusters = bootstrap
        .pointer_mut("/static_resources/clusters")
        .and_then(Value::as_array_mut)
        .unwrap_or_else(|| panic!("{} has no static clusters", path.display()));
    let xds = clusters
        .iter_mut()
        .find(|c| c["name"] == "xds_cluster")
        .unwrap_or_else(|| panic!("{} has no xds_cluster", path.display()));
    let socket = xds
        .pointer_mut("/load_assignment/endpoints/0/lb_endpoints/0/endpoint/address/socket_address")
        .unwrap_or_else(|| panic!("xds_cluster in {} has no socket address", path.display()));
    socket["address"] = options.xds_addr.ip().to_string().into();
    socket["port_value"] = options.xds_addr.port().into();
    if !options.more_xds_addrs.is_empty() {
        let lb_endpoints = xds
            .pointer_mut("/load_assignment/endpoints/0/lb_endpoints")
            .and_then(Value::as_array_mut)
            .expect("checked above");
        let first = lb_endpoints[0].clone();
        for addr in &options.more_xds_addrs {
            let mut endpoint = first.clone();
            let socket = &mut endpoint["endpoint"]["address"]["socket_address"];
            socket["address"] = addr.ip().to_string().into();
            socket["port_value"] = addr.port().into();
            lb_endpoints.push(endpoint);
        }
    }
    // A literal IP needs no DNS, whatever type the shipped file uses.
    xds["type"] = "STATIC".into();
    if let Some(tls) = &options.tls {
        let context = xds
            .pointer_mut("/transport_socket/typed_config/common_tls_context")
            .unwrap_or_else(|| panic!("xds_cluster in {} has no TLS context", path.display()));
        let file = |p: &Path| Value::from(p.display().to_string());
        context["tls_certificates"][0]["certificate_chain"]["filename"] = file(&tls.identity.cert);
        context["tls_certificates"][0]["private_key"]["filename"] = file(&tls.identity.key);
        context["validation_context"]["trusted_ca"]["filename"] = file(&tls.ca);
    }
    if let Some((region, zone)) = &options.locality {
        bootstrap["node"]["locality"] = serde_json::json!({"region": region, "zone": zone});
    }
    bootstrap
}

/// Finds `name: <integer>` in `/stats` text output.
fn parse_stat(stats: &str, name: &str) -> Option<u64> {
    stats.lines().find_map(|line| {
        let (key, value) = line.split_once(": ")?;
        (key == name).then(|| value.trim().parse().ok()).flatten()
    })
}

/// Percent-encodes everything but unreserved URL characters. (`/stats`
/// treats `filter` as a regex; `.` matching any character is harmless since
/// [`parse_stat`] compares names exactly.)
fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
