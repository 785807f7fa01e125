//! `switchyard status` against a real `switchyard serve`: the tables, `--json`, and exit
//! code 69 when there is no switchyard to ask. (The proxy table is unit-tested on captured
//! `/status` JSON in `src/cli/status.rs`.)

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const GOOD: &str = include_str!("fixtures/one_service.yaml");

fn switchyard(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(args)
        .output()
        .expect("run switchyard")
}

/// A `switchyard serve` on free ports, stopped when dropped.
struct Serve {
    child: Child,
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
        let admin = line
            .split_whitespace()
            .find_map(|w| w.strip_prefix("admin="))
            .unwrap_or_else(|| panic!("no admin address in `{line}`"))
            .to_owned();
        Serve { child, admin }
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

/// Runs `status` until its output satisfies `done`, or panics after 10 s.
fn status_eventually(admin: &str, done: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let out = switchyard(&["status", "--admin-addr", admin]);
        let text = stdout(&out);
        if out.status.success() && done(&text) {
            return text;
        }
        assert!(Instant::now() < deadline, "status never got there: {out:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn status_shows_the_state_and_services_of_a_running_server() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state.yaml");
    std::fs::write(&state, GOOD).unwrap();
    let version = stdout(&switchyard(&["validate", state.to_str().unwrap()]))
        .rsplit("version ")
        .next()
        .unwrap()
        .trim_end_matches([')', '\n'])
        .to_owned();
    let serve = Serve::start(&state);

    let out = switchyard(&["status", "--admin-addr", &serve.admin]);
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
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state.yaml");
    std::fs::write(&state, GOOD).unwrap();
    let serve = Serve::start(&state);
    // Saved as editors do (a temp file renamed over it), again on every poll: the server's
    // watcher may not be armed yet when `serve` prints its ports.
    let bad = GOOD.replace("active: blue", "active: purple");
    let save = || {
        let tmp = dir.path().join(".state.yaml.tmp");
        std::fs::write(&tmp, &bad).unwrap();
        std::fs::rename(&tmp, &state).unwrap();
    };
    let text = status_eventually(&serve.admin, |t| {
        let rejected = !t.contains("last rejection: none");
        if !rejected {
            save();
        }
        rejected
    });
    let path = state.display();
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
fn status_json_prints_the_status_document() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state.yaml");
    std::fs::write(&state, GOOD).unwrap();
    let serve = Serve::start(&state);
    let out = switchyard(&["status", "--admin-addr", &serve.admin, "--json"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(json["state"]["services"][0]["name"], "summarizer");
    assert_eq!(json["state"]["services"][0]["weights"]["blue"], 100);
    assert_eq!(json["proxies"], serde_json::json!([]));
}

#[test]
fn status_without_a_server_exits_69() {
    // A port that was free a moment ago: nothing listens there now.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = format!("127.0.0.1:{port}");
    let out = switchyard(&["status", "--admin-addr", &addr]);
    assert_eq!(out.status.code(), Some(69), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.starts_with(&format!(
            "switchyard: cannot reach switchyard admin at {addr}: "
        )),
        "{stderr}"
    );
}

#[test]
fn status_from_something_that_is_not_switchyard_exits_69() {
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
    let out = switchyard(&["status", "--admin-addr", &addr]);
    server.join().unwrap();
    assert_eq!(out.status.code(), Some(69), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!(
            "switchyard admin at {addr} gave no status: HTTP 404: not found"
        )),
        "{stderr}"
    );
}

#[test]
fn status_defaults_to_the_serve_admin_address() {
    let help = stdout(&switchyard(&["status", "--help"]));
    assert!(help.contains("[default: 127.0.0.1:19000]"), "{help}");
}
