//! A real headless browser for the dashboard's tests: Debian's Chromium, driven over the
//! DevTools protocol (JSON commands on a WebSocket).
//!
//! [`chromium_bin`] is `CHROMIUM_BIN` when it names a file, else `/usr/bin/chromium`,
//! installed on first use with `apt-get install -y chromium` (after `apt-get update` when
//! the first try fails), under an exclusive lock so parallel tests do not run apt twice.
//! When it can be neither found nor installed, the test fails saying what to run: it never
//! skips.
//!
//! [`Browser::launch`] starts Chromium headless on a fresh profile, with a DevTools port
//! on loopback, and attaches to one page (a flat session on the browser's socket). The
//! calls block on the socket, so they run on tokio's blocking pool: switchyard, served by
//! the same runtime, keeps answering the page meanwhile. Dropping the [`Browser`] kills
//! Chromium by its PID (and reaps it) and removes the profile.
#![allow(dead_code)]

use std::fs::File;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tempfile::TempDir;
use tungstenite::{Message, WebSocket};

/// Where Debian's `chromium` package puts the browser.
pub const CHROMIUM: &str = "/usr/bin/chromium";

/// How long one DevTools command may take before the test fails.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(20);

/// Chromium's path, installing Debian's package on first use.
///
/// Panics, with what to run, when it is missing and cannot be installed.
pub fn chromium_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(bin) = std::env::var_os("CHROMIUM_BIN").map(PathBuf::from)
            && bin.is_file()
        {
            return bin;
        }
        let bin = PathBuf::from(CHROMIUM);
        if !bin.is_file() {
            install(&bin);
        }
        bin
    })
    .clone()
}

/// `apt-get install -y chromium` (as root), once across processes.
fn install(bin: &Path) {
    let lock_path = std::env::temp_dir().join("switchyard-chromium-install.lock");
    let lock = File::create(&lock_path)
        .unwrap_or_else(|e| panic!("cannot open lock file {}: {e}", lock_path.display()));
    lock.lock()
        .unwrap_or_else(|e| panic!("cannot lock {}: {e}", lock_path.display()));
    // Another process may have installed it while we waited.
    if bin.is_file() {
        return;
    }
    let started = Instant::now();
    eprintln!("installing Debian's chromium for the dashboard tests (first use only)");
    let apt = |args: &[&str]| {
        Command::new("apt-get")
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .stdin(Stdio::null())
            .output()
    };
    let install = ["install", "-y", "chromium"];
    let mut outcome = apt(&install);
    // A fresh machine has no package lists yet.
    if !outcome.as_ref().is_ok_and(|o| o.status.success()) {
        let _ = apt(&["update"]);
        outcome = apt(&install);
    }
    let why = match &outcome {
        Ok(out) if out.status.success() && bin.is_file() => {
            eprintln!("installed chromium in {:.1?}", started.elapsed());
            return;
        }
        Ok(out) => format!(
            "apt-get exited with {}:\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
        Err(e) => format!("cannot run apt-get: {e}"),
    };
    panic!(
        "the dashboard tests need Chromium at {CHROMIUM} and could not install it: {why}\n\
         Install it as root with `apt-get update && apt-get install -y chromium`, or set \
         CHROMIUM_BIN to a Chromium binary."
    );
}

/// A headless Chromium with one page open; killed on drop.
pub struct Browser {
    /// Shared with the blocking-pool task running the current command.
    devtools: Arc<Mutex<DevTools>>,
    process: Process,
}

/// The Chromium process and its profile: the process is killed by its PID and reaped on
/// drop, then the profile removed.
struct Process {
    child: Child,
    /// The `--user-data-dir`, fresh per browser: `DevToolsActivePort` and `chromium.log`.
    profile: TempDir,
}

impl Process {
    fn log(&self) -> String {
        let log =
            std::fs::read_to_string(self.profile.path().join("chromium.log")).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(40).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        format!("--- chromium log (last lines) ---\n{}", tail.join("\n"))
    }

    /// The browser's DevTools WebSocket, once Chromium has written where it listens.
    fn connect(&mut self) -> Result<WebSocket<TcpStream>, String> {
        let active_port = self.profile.path().join("DevToolsActivePort");
        let deadline = Instant::now() + Duration::from_secs(30);
        let (port, path) = loop {
            // Two lines: the port, then the browser target's path.
            if let Ok(text) = std::fs::read_to_string(&active_port)
                && let Some((port, path)) = text.trim().split_once('\n')
            {
                break (port.trim().to_owned(), path.trim().to_owned());
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!("chromium exited with {status} before listening"));
            }
            if Instant::now() > deadline {
                return Err("chromium did not open its DevTools port within 30 s".into());
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let addr = format!("127.0.0.1:{port}");
        let tcp = TcpStream::connect(&addr).map_err(|e| format!("connect {addr}: {e}"))?;
        tcp.set_read_timeout(Some(COMMAND_TIMEOUT))
            .map_err(|e| e.to_string())?;
        let url = format!("ws://{addr}{path}");
        let (socket, _) =
            tungstenite::client(url.as_str(), tcp).map_err(|e| format!("{url}: {e}"))?;
        Ok(socket)
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The browser's DevTools socket and the page's session on it.
struct DevTools {
    socket: WebSocket<TcpStream>,
    next_id: u64,
    /// The page's session (`Target.attachToTarget` with `flatten`).
    session: Option<String>,
}

impl DevTools {
    /// Sends `method` (to the page once attached) and waits for its answer; the events
    /// Chromium sends meanwhile are dropped.
    fn call(&mut self, method: &str, params: Value) -> Result<Value, String> {
        self.next_id += 1;
        let id = self.next_id;
        let mut command = json!({"id": id, "method": method, "params": params});
        if let Some(session) = &self.session {
            command["sessionId"] = json!(session);
        }
        self.socket
            .send(Message::text(command.to_string()))
            .map_err(|e| format!("{method}: cannot send: {e}"))?;
        loop {
            let message = self
                .socket
                .read()
                .map_err(|e| format!("{method}: no answer: {e}"))?;
            let Message::Text(text) = message else {
                continue;
            };
            let mut answer: Value = serde_json::from_str(text.as_str())
                .map_err(|e| format!("{method}: not JSON ({e}): {text}"))?;
            if answer["id"] != id {
                continue;
            }
            if !answer["error"].is_null() {
                return Err(format!("{method}: {}", answer["error"]));
            }
            return Ok(answer["result"].take());
        }
    }
}

impl Browser {
    /// Starts Chromium headless on a fresh profile and opens a blank page.
    pub async fn launch() -> Browser {
        tokio::task::spawn_blocking(Browser::launch_blocking)
            .await
            .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))
    }

    fn launch_blocking() -> Browser {
        let bin = chromium_bin();
        let profile = tempfile::Builder::new()
            .prefix("switchyard-chromium-")
            .tempdir()
            .expect("create a chromium profile dir");
        let log = File::create(profile.path().join("chromium.log")).expect("create chromium.log");
        let child = Command::new(&bin)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-dev-shm-usage",
                "--hide-scrollbars",
                "--window-size=1280,1000",
                "--remote-debugging-address=127.0.0.1",
                "--remote-debugging-port=0",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone the log handle"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
        let mut process = Process { child, profile };
        let socket = process
            .connect()
            .unwrap_or_else(|e| panic!("{e}\n{}", process.log()));
        let mut devtools = DevTools {
            socket,
            next_id: 0,
            session: None,
        };
        let page = devtools
            .call("Target.createTarget", json!({"url": "about:blank"}))
            .and_then(|target| {
                devtools.call(
                    "Target.attachToTarget",
                    json!({"targetId": target["targetId"], "flatten": true}),
                )
            })
            .unwrap_or_else(|e| panic!("{e}\n{}", process.log()));
        devtools.session = Some(
            page["sessionId"]
                .as_str()
                .expect("attachToTarget names a session")
                .to_owned(),
        );
        Browser {
            devtools: Arc::new(Mutex::new(devtools)),
            process,
        }
    }

    /// The last lines Chromium logged.
    pub fn log(&self) -> String {
        self.process.log()
    }

    /// Chromium's process id.
    pub fn pid(&self) -> u32 {
        self.process.child.id()
    }

    /// Sends a DevTools command to the page and returns its result; panics, with
    /// Chromium's log, when it fails.
    pub async fn call(&self, method: &str, params: Value) -> Value {
        let devtools = self.devtools.clone();
        let name = method.to_owned();
        let result = tokio::task::spawn_blocking(move || {
            devtools
                .lock()
                .expect("a DevTools call panicked")
                .call(&name, params)
        })
        .await
        .expect("the DevTools call panicked");
        result.unwrap_or_else(|e| panic!("{e}\n{}", self.log()))
    }

    /// Opens `url` in the page and waits until it has loaded (`document.readyState`).
    pub async fn goto(&self, url: &str) {
        let navigated = self.call("Page.navigate", json!({"url": url})).await;
        if let Some(error) = navigated["errorText"].as_str() {
            panic!("cannot open {url}: {error}\n{}", self.log());
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.eval("document.readyState").await != "complete" {
            assert!(Instant::now() < deadline, "{url} did not load within 10 s");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The value of JavaScript `expression` in the page (awaited when a promise); panics
    /// when it throws.
    pub async fn eval(&self, expression: &str) -> Value {
        let mut out = self
            .call(
                "Runtime.evaluate",
                json!({"expression": expression, "returnByValue": true, "awaitPromise": true}),
            )
            .await;
        if !out["exceptionDetails"].is_null() {
            panic!("{expression} threw: {}", out["exceptionDetails"]);
        }
        out["result"]["value"].take()
    }

    /// The page as a PNG, written to `path`.
    pub async fn screenshot(&self, path: &Path) {
        use base64::Engine as _;
        let shot = self
            .call("Page.captureScreenshot", json!({"format": "png"}))
            .await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(shot["data"].as_str().expect("a screenshot"))
            .expect("the screenshot is base64");
        std::fs::write(path, png)
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
    }
}
