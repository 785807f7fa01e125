//! The server process and what the bench reads about it and the machine from /proc.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::support::Machine;

/// The server under test, a child process.
pub struct ServerProcess {
    child: Child,
    pub pid: u32,
    pub xds: SocketAddr,
    pub admin: SocketAddr,
    /// The last lines it printed (stdout and stderr).
    pub output: Arc<Mutex<VecDeque<String>>>,
}

impl ServerProcess {
    /// Serves `state`, with `extra` flags.
    pub fn start(state: &Path, extra: &[String]) -> Result<ServerProcess, String> {
        // SWITCHYARD_BIN: another build to measure (A/B comparisons).
        let bin = std::env::var_os("SWITCHYARD_BIN")
            .unwrap_or_else(|| env!("CARGO_BIN_EXE_switchyard").into());
        let mut cmd = Command::new(bin);
        let mut child = cmd
            .arg("serve")
            .arg("--state")
            .arg(state)
            .args(["--xds-addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0"])
            .args(extra)
            .env("SWITCHYARD_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot start switchyard: {e}"))?;
        let pid = child.id();
        let output = Arc::new(Mutex::new(VecDeque::new()));
        let stderr = child.stderr.take().expect("piped");
        drain(stderr, output.clone(), true);
        let mut stdout = BufReader::new(child.stdout.take().expect("piped"));
        let mut line = String::new();
        loop {
            line.clear();
            if stdout.read_line(&mut line).map_err(|e| e.to_string())? == 0 {
                let _ = child.wait();
                return Err(format!(
                    "switchyard exited before listening: {:?}",
                    output.lock().unwrap()
                ));
            }
            if let Some(rest) = line.trim().strip_prefix("switchyard listening ") {
                let addr = |key: &str| -> Result<SocketAddr, String> {
                    rest.split_whitespace()
                        .find_map(|kv| kv.strip_prefix(key))
                        .ok_or_else(|| format!("no {key} in {line:?}"))?
                        .parse()
                        .map_err(|e| format!("{line:?}: {e}"))
                };
                let (xds, admin) = (addr("xds=")?, addr("admin=")?);
                drain(stdout.into_inner(), output.clone(), false);
                eprintln!("server pid {pid}, xds {xds}, admin {admin}");
                return Ok(ServerProcess {
                    child,
                    pid,
                    xds,
                    admin,
                    output,
                });
            }
        }
    }

    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Keeps the last lines of `from`; echoes the first few to stderr when `echo`.
fn drain(from: impl Read + Send + 'static, into: Arc<Mutex<VecDeque<String>>>, echo: bool) {
    std::thread::spawn(move || {
        let mut echoed = 0;
        for line in BufReader::new(from).lines() {
            let Ok(line) = line else { break };
            if echo && echoed < 20 {
                eprintln!("server: {line}");
                echoed += 1;
            }
            let mut buf = into.lock().unwrap();
            if buf.len() == 50 {
                buf.pop_front();
            }
            buf.push_back(line);
        }
    });
}

/// CPU seconds (user + system, all threads) and memory of a process, from /proc.
#[derive(Debug, Clone, Copy, Default)]
pub struct Proc {
    pub cpu: f64,
    pub rss_kib: u64,
    pub hwm_kib: u64,
}

impl Proc {
    pub fn sample(pid: u32) -> Proc {
        Proc::read(&format!("/proc/{pid}"))
    }

    pub fn sample_self() -> Proc {
        Proc::read("/proc/self")
    }

    fn read(dir: &str) -> Proc {
        let stat = std::fs::read_to_string(format!("{dir}/stat")).unwrap_or_default();
        // Fields after the command name (which may contain spaces) in parentheses:
        // state is field 3, utime 14, stime 15.
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .map(|(_, rest)| rest.split_whitespace().collect())
            .unwrap_or_default();
        let ticks = |i: usize| {
            fields
                .get(i)
                .and_then(|f| f.parse::<u64>().ok())
                .unwrap_or(0)
        };
        let cpu = (ticks(11) + ticks(12)) as f64 / clock_ticks();
        let status = std::fs::read_to_string(format!("{dir}/status")).unwrap_or_default();
        let kib = |key: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(key))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
                .unwrap_or(0)
        };
        Proc {
            cpu,
            rss_kib: kib("VmRSS:"),
            hwm_kib: kib("VmHWM:"),
        }
    }
}

fn clock_ticks() -> f64 {
    static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(100.0)
    })
}

/// CPU time of every thread of `pid` so far, in nanoseconds (`/proc/PID/task/*/schedstat`:
/// exact, unlike the clock ticks of `/proc/PID/stat`).
pub fn cpu_ns(pid: u32) -> u64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    tasks
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .sum()
}

/// `TcpExt: ListenOverflows` from `/proc/net/netstat` (this network namespace).
pub fn listen_overflows() -> u64 {
    let text = std::fs::read_to_string("/proc/net/netstat").unwrap_or_default();
    let mut lines = text.lines();
    while let (Some(names), Some(values)) = (lines.next(), lines.next()) {
        if !names.starts_with("TcpExt:") {
            continue;
        }
        if let Some(i) = names
            .split_whitespace()
            .position(|n| n == "ListenOverflows")
        {
            return values
                .split_whitespace()
                .nth(i)
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
        }
    }
    0
}

/// TCP segments sent so far on this machine (`Tcp: OutSegs` in `/proc/net/snmp`), both
/// directions of every loopback connection.
pub fn tcp_segments_out() -> u64 {
    let text = std::fs::read_to_string("/proc/net/snmp").unwrap_or_default();
    let mut lines = text.lines().filter(|l| l.starts_with("Tcp:"));
    let (Some(names), Some(values)) = (lines.next(), lines.next()) else {
        return 0;
    };
    names
        .split_whitespace()
        .position(|n| n == "OutSegs")
        .and_then(|i| values.split_whitespace().nth(i)?.parse().ok())
        .unwrap_or(0)
}

/// Bytes sent so far by the server's established TCP sockets on `port` (TCP payload:
/// gRPC, HTTP/2 framing and all), from `ss -ti`. `None` when `ss` is not available.
pub fn tcp_bytes_sent(port: u16) -> Option<u64> {
    let out = Command::new("ss")
        .args([
            "-Htin",
            "state",
            "established",
            "sport",
            "=",
            &format!(":{port}"),
        ])
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8_lossy(&out.stdout);
    Some(
        text.split_whitespace()
            .filter_map(|w| w.strip_prefix("bytes_sent:"))
            .filter_map(|v| v.parse::<u64>().ok())
            .sum(),
    )
}

/// The server's `switchyard_convergence_seconds` count and sum, from `/metrics`.
pub fn convergence(admin: SocketAddr) -> Option<(u64, f64)> {
    let body = metrics(admin)?;
    Some((
        sample(&body, "switchyard_convergence_seconds_count ")? as u64,
        sample(&body, "switchyard_convergence_seconds_sum ")?,
    ))
}

/// The load reports the server has received (`switchyard_load_reports_total`).
pub fn load_reports(admin: SocketAddr) -> Option<u64> {
    sample(&metrics(admin)?, "switchyard_load_reports_total ").map(|v| v as u64)
}

/// `GET /metrics` from the server's admin port.
fn metrics(admin: SocketAddr) -> Option<String> {
    let mut s = TcpStream::connect_timeout(&admin, Duration::from_secs(5)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(
        s,
        "GET /metrics HTTP/1.1\r\nHost: {admin}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut body = String::new();
    s.read_to_string(&mut body).ok()?;
    Some(body)
}

/// The value of the series `name` (with its trailing space) in `/metrics` text.
fn sample(body: &str, name: &str) -> Option<f64> {
    body.lines()
        .find_map(|l| l.strip_prefix(name))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse::<f64>().ok())
}

/// `perf record` attached to the server while alive; stopped (SIGINT) on drop.
pub struct Perf(Child);

impl Perf {
    pub fn start(dir: &Path, n: usize, phase: &str, pid: u32) -> Perf {
        let _ = std::fs::create_dir_all(dir);
        let out = dir.join(format!("perf-{n}-{phase}.data"));
        let child = Command::new("perf")
            .args(["record", "-F", "999"])
            .args(
                std::env::var("PERF_CALL_GRAPH")
                    .map_or(vec![], |g| vec!["--call-graph".to_owned(), g]),
            )
            .args(["-p", &pid.to_string(), "-o"])
            .arg(&out)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("perf is installed");
        std::thread::sleep(Duration::from_millis(200));
        Perf(child)
    }
}

impl Drop for Perf {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-INT", &self.0.id().to_string()])
            .status();
        let _ = self.0.wait();
    }
}

/// The machine, for the report.
pub fn machine() -> String {
    let machine = Machine::read();
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .unwrap_or(0);
    format!(
        "machine: {}, {} cores, {:.0} GiB, Linux {}",
        machine.cpu_model.as_deref().unwrap_or("unknown CPU"),
        machine.cpus,
        mem as f64 / 1024.0 / 1024.0,
        machine.kernel.as_deref().unwrap_or_default()
    )
}
