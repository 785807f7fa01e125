//! The walk-through's scene: what the state file says at each step ([`Plan`]), the live
//! traffic and its outcomes ([`Traffic`]), everything running ([`Scene`]), and the helpers
//! that wait for and check what a step should observe.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::backend::Backend;
use crate::common::control_plane::{BlueGreen, ControlPlane, one_service};
use crate::common::envoy::Envoy;
use crate::common::{self, http};

/// Host header of every request through Envoy.
const HOST: &str = "summarizer.example";
/// The preview header's default name.
pub const PREVIEW: &str = "x-switchyard-preview";
/// Steps are numbered from 1; failed live requests are counted per step.
const STEPS: usize = 6;
/// How long a step waits for what it expects before calling it missed.
const PATIENCE: Duration = Duration::from_secs(10);

/// What the state file says; [`Plan::file`] renders it.
#[derive(Debug, Clone)]
pub struct Plan {
    pub listener: u16,
    pub blue: SocketAddr,
    pub green: SocketAddr,
    pub active: &'static str,
    /// Service keys after `active`, in the order they were added.
    pub keys: Vec<&'static str>,
    /// The schema version file of database `records`, once declared.
    pub database: Option<PathBuf>,
}

impl Plan {
    /// The harness's one-service file (listener `public`, service `summarizer`) with the
    /// plan's keys added.
    pub fn file(&self) -> String {
        let file = one_service(self.listener, self.blue, self.green, self.active);
        let file = file + &self.keys.concat();
        let Some(path) = &self.database else {
            return file;
        };
        let schemas = |addr: SocketAddr, versions: &str| {
            (
                format!("[\"{addr}\"]\n"),
                format!("[\"{addr}\"]\n      schemas: [{versions}]\n"),
            )
        };
        let (blue, blue_schemas) = schemas(self.blue, "41, 42");
        let (green, green_schemas) = schemas(self.green, "42, 43");
        format!(
            "databases:\n  - name: records\n    file: {}\n    interval: 200ms\n{}    database: records\n",
            path.display(),
            file.replace(&blue, &blue_schemas)
                .replace(&green, &green_schemas)
        )
    }
}

/// The live requests sent through Envoy while the walk-through runs, by outcome.
#[derive(Default)]
pub struct Traffic {
    blue: AtomicU64,
    green: AtomicU64,
    /// Answered `500 green v2 failing` (green's fail share), per step.
    green_failing: [AtomicU64; STEPS],
    /// Every other failure, with what it was.
    unexpected: Mutex<Vec<String>>,
    /// The step running now.
    step: AtomicUsize,
    stop: AtomicBool,
}

impl Traffic {
    /// Failed live requests count towards step `n` from now on.
    pub fn set_step(&self, n: usize) {
        self.step.store(n, Ordering::Relaxed);
    }

    /// Tells [`send_traffic`] to stop after its current request.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }

    pub fn sent(&self) -> u64 {
        self.blue.load(Ordering::Relaxed)
            + self.green.load(Ordering::Relaxed)
            + self.failed()
            + self.unexpected().len() as u64
    }

    pub fn failed(&self) -> u64 {
        self.green_failing
            .iter()
            .map(|n| n.load(Ordering::Relaxed))
            .sum()
    }

    pub fn failed_in(&self, step: usize) -> u64 {
        self.green_failing[step].load(Ordering::Relaxed)
    }

    pub fn unexpected(&self) -> Vec<String> {
        self.unexpected
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn answered(&self, color: &str) -> u64 {
        match color {
            "blue" => self.blue.load(Ordering::Relaxed),
            _ => self.green.load(Ordering::Relaxed),
        }
    }
}

/// Sends one live request after another (10 ms apart) through Envoy until told to stop.
pub async fn send_traffic(listener: SocketAddr, traffic: Arc<Traffic>) {
    while !traffic.stop.load(Ordering::Relaxed) {
        match http::get(listener, "/v1/summarize", HOST).await {
            Ok((200, body)) if body.starts_with("blue ") => {
                traffic.blue.fetch_add(1, Ordering::Relaxed);
            }
            Ok((200, body)) if body.starts_with("green ") => {
                traffic.green.fetch_add(1, Ordering::Relaxed);
            }
            Ok((500, body)) if body.trim() == "green v2 failing" => {
                let step = traffic.step.load(Ordering::Relaxed);
                traffic.green_failing[step].fetch_add(1, Ordering::Relaxed);
            }
            other => {
                let step = traffic.step.load(Ordering::Relaxed);
                let what = match other {
                    Ok((code, body)) => format!("step {step}: HTTP {code}: {}", body.trim()),
                    Err(e) => format!("step {step}: {e}"),
                };
                eprintln!("   unexpected failure: {what}");
                traffic
                    .unexpected
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(what);
            }
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Everything the walk-through runs; stopped on drop (Envoy is killed).
pub struct Scene {
    pub blue: Backend,
    pub green: Backend,
    pub listener: SocketAddr,
    pub cp: ControlPlane,
    pub envoy: Envoy,
    pub plan: Plan,
    /// Holds the schema version file of step 5.
    pub dir: tempfile::TempDir,
}

impl Scene {
    /// Starts the backends, switchyard (blue active, no workflow keys) and Envoy, and says
    /// where each runs.
    pub async fn start() -> Scene {
        print!("   provisioning Envoy (the first run installs it into .tools/) ... ");
        let envoy_bin = tokio::task::spawn_blocking(common::tools::envoy_bin).await;
        println!("{}", envoy_bin.expect("provisioning thread").display());
        let BlueGreen {
            blue,
            green,
            listener,
            cp,
        } = BlueGreen::start().await;
        let envoy = Envoy::start("walkthrough", cp.xds_addr()).await;
        envoy.wait_live(Duration::from_secs(20)).await;
        println!("   backend blue  (model v1)  http://{}", blue.addr());
        println!("   backend green (model v2)  http://{}", green.addr());
        println!(
            "   switchyard  xDS + LRS {}  admin http://{}/status",
            cp.xds_addr(),
            cp.admin_addr()
        );
        println!("   state file  {}", cp.state_path().display());
        println!(
            "   envoy       node walkthrough, listener http://{listener}, admin http://{}",
            envoy.admin_addr()
        );
        let plan = Plan {
            listener: listener.port(),
            blue: blue.addr(),
            green: green.addr(),
            active: "blue",
            keys: Vec::new(),
            database: None,
        };
        Scene {
            blue,
            green,
            listener,
            cp,
            envoy,
            plan,
            dir: tempfile::tempdir().expect("a temp dir"),
        }
    }

    /// Kills Envoy and stops switchyard (the backends stop on drop).
    pub async fn stop(self) {
        drop(self.envoy);
        self.cp.stop().await;
    }

    /// Saves the plan (by rename, like an editor), printing `added`: what changed.
    pub fn save(&mut self, added: &str) {
        println!("   save the state file with:");
        let indent = added
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| l.len() - l.trim_start().len())
            .min()
            .unwrap_or(0);
        for line in added.lines() {
            println!("   |  {}", line.get(indent..).unwrap_or(line));
        }
        self.cp.save_by_rename(&self.plan.file());
    }

    /// This service's entry of `/status` `rollout` (null when not listed).
    pub async fn rollout(&self) -> Value {
        let status = self.cp.status().await;
        status["rollout"]
            .as_array()
            .and_then(|r| r.iter().find(|s| s["service"] == "summarizer").cloned())
            .unwrap_or(Value::Null)
    }

    pub async fn phase(&self) -> String {
        self.rollout().await["phase"]
            .as_str()
            .unwrap_or("(not listed)")
            .to_owned()
    }

    /// Prints `/status` `rollout`'s headline: phase, the file's color, the color in force.
    pub async fn show_rollout(&self) -> Value {
        let r = self.rollout().await;
        println!(
            "   /status rollout: phase {}, the file says {}, in force: {}",
            r["phase"].as_str().unwrap_or("?"),
            r["wanted"].as_str().unwrap_or("?"),
            r["in_force"].as_str().unwrap_or("?"),
        );
        if let Some(reason) = r["reason"].as_str() {
            println!("     reason: {reason}");
        }
        r
    }

    /// The body of one preview request for `color`.
    pub async fn preview(&self, color: &str) -> String {
        match http::get_with_headers(self.listener, "/v1/summarize", HOST, &[(PREVIEW, color)])
            .await
        {
            Ok((code, body)) => format!("{code} {}", body.trim()),
            Err(e) => format!("error: {e}"),
        }
    }

    /// `n` live answers, counted by body: `"5 x blue v1"`.
    pub async fn sample(&self, n: usize) -> (BTreeMap<String, usize>, String) {
        let mut seen = BTreeMap::new();
        for _ in 0..n {
            let answer = match http::get(self.listener, "/v1/summarize", HOST).await {
                Ok((_, body)) => body.trim().to_owned(),
                Err(e) => format!("error ({e})"),
            };
            *seen.entry(answer).or_insert(0) += 1;
        }
        let text = seen
            .iter()
            .map(|(a, n)| format!("{n} x {a}"))
            .collect::<Vec<_>>()
            .join(", ");
        (seen, text)
    }
}

/// Waits up to [`PATIENCE`] for `condition`; `Err` naming `what` otherwise. Returns how long
/// it took.
pub async fn expect(what: &str, condition: impl AsyncFnMut() -> bool) -> Result<Duration, String> {
    let start = Instant::now();
    if common::eventually(PATIENCE, condition).await {
        Ok(start.elapsed())
    } else {
        Err(format!("{what}: not seen within {PATIENCE:?}"))
    }
}

/// `Err(what)` unless `ok`.
pub fn check(ok: bool, what: impl FnOnce() -> String) -> Result<(), String> {
    if ok { Ok(()) } else { Err(what()) }
}

/// Watches the live traffic for `span`: how many answers each color gave meanwhile.
pub async fn watch(traffic: &Traffic, span: Duration) -> (u64, u64) {
    let (blue, green) = (traffic.answered("blue"), traffic.answered("green"));
    tokio::time::sleep(span).await;
    (
        traffic.answered("blue") - blue,
        traffic.answered("green") - green,
    )
}

pub fn write_version(path: &Path, version: &str) -> Result<(), String> {
    std::fs::write(path, format!("{version}\n"))
        .map_err(|e| format!("cannot write {}: {e}", path.display()))
}
