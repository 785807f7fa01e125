//! The `switchyard` binary as operators and scripts use it: exit codes and messages.

use std::process::{Command, Output};

fn switchyard(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(args)
        .output()
        .expect("run switchyard")
}

const GOOD: &str = include_str!("../fixtures/one_service.yaml");

fn write(dir: &tempfile::TempDir, name: &str, text: &str) -> String {
    let p = dir.path().join(name);
    std::fs::write(&p, text).unwrap();
    p.to_str().unwrap().to_owned()
}

#[test]
fn validate_accepts_a_good_file() {
    let dir = tempfile::tempdir().unwrap();
    let f = write(&dir, "good.yaml", GOOD);
    let out = switchyard(&["validate", &f]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("ok (1 listeners, 1 services"));
}

#[test]
fn validate_lists_every_problem_as_file_line_column() {
    let dir = tempfile::tempdir().unwrap();
    let bad = GOOD
        .replace("listener: public", "listener: private")
        .replace("endpoints: [\"127.0.0.1:8082\"]", "endpoints: []")
        .replace("active: blue", "active: both");
    let f = write(&dir, "bad.yaml", &bad);
    let out = switchyard(&["validate", &f]);
    assert_eq!(out.status.code(), Some(65), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(
        lines,
        [
            format!("{f}:7:15: unknown listener `private` (defined: public)"),
            format!("{f}:12:18: green must list at least one endpoint"),
            format!("{f}:13:13: active must be `blue` or `green`, not `both`"),
        ]
    );
}

#[test]
fn validate_reports_yaml_syntax_errors_with_their_location() {
    let dir = tempfile::tempdir().unwrap();
    let f = write(
        &dir,
        "syntax.yaml",
        &GOOD.replace("  - name: summarizer", "  - name: [summarizer"),
    );
    let out = switchyard(&["validate", &f]);
    assert_eq!(out.status.code(), Some(65));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.starts_with(&format!("{f}:")), "{stderr}");
    let loc: Vec<&str> = stderr.trim().splitn(4, ':').collect();
    assert!(
        loc[1].parse::<u32>().is_ok() && loc[2].parse::<u32>().is_ok(),
        "{stderr}"
    );
}

#[test]
fn validate_missing_file_exits_66() {
    let out = switchyard(&["validate", "/nonexistent/state.yaml"]);
    assert_eq!(out.status.code(), Some(66));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/state.yaml: cannot read"));
}

#[test]
fn validate_exits_66_when_any_file_is_unreadable_whatever_the_order() {
    let dir = tempfile::tempdir().unwrap();
    let invalid = write(
        &dir,
        "bad.yaml",
        &GOOD.replace("active: blue", "active: both"),
    );
    let missing = dir.path().join("missing.yaml");
    let missing = missing.to_str().unwrap();
    for files in [[missing, invalid.as_str()], [invalid.as_str(), missing]] {
        let out = switchyard(&["validate", files[0], files[1]]);
        assert_eq!(out.status.code(), Some(66), "{files:?}: {out:?}");
        // Both files are still checked and reported.
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains(&format!("{missing}: cannot read")),
            "{stderr}"
        );
        assert!(
            stderr.contains(&format!("{invalid}:13:13: active must be")),
            "{stderr}"
        );
    }
}

#[test]
fn render_prints_envoy_resources_as_json() {
    let dir = tempfile::tempdir().unwrap();
    let f = write(&dir, "good.yaml", GOOD);
    let out = switchyard(&["render", &f]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let clusters = &json["resources"]["clusters"]["resources"];
    assert_eq!(clusters[0]["name"], "summarizer-blue");
    assert_eq!(clusters[1]["name"], "summarizer-green");
    let vh = &json["resources"]["routes"]["resources"][0]["virtual_hosts"][0];
    // Preview routes first (`x-switchyard-preview: blue|green`), then the weighted default.
    assert_eq!(vh["routes"][0]["name"], "preview-blue");
    assert_eq!(vh["routes"][2]["name"], "default");
    assert_eq!(
        vh["routes"][2]["route"]["weighted_clusters"]["clusters"][0]["weight"],
        100
    );
    assert_eq!(
        json["resources"]["endpoints"]["resources"][0]["endpoints"][0]["lb_endpoints"][0]["endpoint"]
            ["address"]["socket_address"]["port_value"],
        8081
    );
}

#[test]
fn serve_refuses_to_start_on_an_invalid_file() {
    let dir = tempfile::tempdir().unwrap();
    let f = write(&dir, "bad.yaml", &GOOD.replace("port: 10000", "port: -1"));
    let out = switchyard(&[
        "serve",
        "--state",
        &f,
        "--xds-addr",
        "127.0.0.1:0",
        "--admin-addr",
        "127.0.0.1:0",
    ]);
    assert_eq!(out.status.code(), Some(65), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains(&format!("{f}:4:11: port -1 is out of range"))
    );
}

#[test]
fn serve_refuses_to_start_without_a_file() {
    let out = switchyard(&[
        "serve",
        "--state",
        "/nonexistent/state.yaml",
        "--xds-addr",
        "127.0.0.1:0",
    ]);
    assert_eq!(out.status.code(), Some(66), "{out:?}");
}

#[test]
fn bad_usage_exits_64() {
    let out = switchyard(&["serve"]);
    assert_eq!(out.status.code(), Some(64));
    let out = switchyard(&["frobnicate"]);
    assert_eq!(out.status.code(), Some(64));
}

#[test]
fn serve_refuses_plaintext_xds_off_loopback_with_exit_64() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state.yaml");
    std::fs::write(&state, GOOD).unwrap();
    let state = state.to_str().unwrap();
    let out = switchyard(&["serve", "--state", state, "--xds-addr", "0.0.0.0:0"]);
    assert_eq!(out.status.code(), Some(64), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("refusing to serve xDS in plaintext on 0.0.0.0:0"),
        "{stderr}"
    );
}

#[test]
fn serve_wants_a_tls_key_with_a_tls_certificate() {
    let out = switchyard(&["serve", "--state", "s.yaml", "--tls-cert", "c.pem"]);
    assert_eq!(out.status.code(), Some(64), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--tls-key"), "{stderr}");
}

#[test]
fn serve_with_an_unreadable_tls_certificate_exits_66() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state.yaml");
    std::fs::write(&state, GOOD).unwrap();
    let args = [
        "serve",
        "--state",
        state.to_str().unwrap(),
        "--xds-addr",
        "127.0.0.1:0",
        "--admin-addr",
        "127.0.0.1:0",
        "--tls-cert",
        "/nonexistent/switchyard.crt",
        "--tls-key",
        "/nonexistent/switchyard.key",
    ];
    let out = switchyard(&args);
    assert_eq!(out.status.code(), Some(66), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("cannot read /nonexistent/switchyard.crt"),
        "{stderr}"
    );
}

#[test]
fn serve_with_a_fifo_as_its_state_file_exits_66_instead_of_hanging() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("state.yaml");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success());
    let out = switchyard(&[
        "serve",
        "--state",
        fifo.to_str().unwrap(),
        "--xds-addr",
        "127.0.0.1:0",
        "--admin-addr",
        "127.0.0.1:0",
    ]);
    assert_eq!(out.status.code(), Some(66), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("FIFO"), "{stderr}");
}

/// The one-service file with a database read from `version_file`, blue on `blue`, green on
/// `green`, `active` green.
fn guarded(version_file: &std::path::Path, blue: &str, green: &str) -> String {
    format!(
        "databases:\n  - name: records\n    file: {}\n{}",
        version_file.display(),
        GOOD.replace("active: blue", "active: green\n    database: records")
            .replace(
                "\"127.0.0.1:8081\"]",
                &format!("\"127.0.0.1:8081\"]\n      schemas: [{blue}]")
            )
            .replace(
                "\"127.0.0.1:8082\"]",
                &format!("\"127.0.0.1:8082\"]\n      schemas: [{green}]")
            )
    )
}

#[test]
fn validate_warns_when_a_switch_would_be_held_by_the_schema_guard() {
    let dir = tempfile::tempdir().unwrap();
    let version = dir.path().join("schema-version");
    std::fs::write(&version, "41\n").unwrap();
    let f = write(&dir, "state.yaml", &guarded(&version, "41", "42"));
    let out = switchyard(&["validate", &f]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("{f}: database `records` is at schema 41")),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!(
            "{f}: warning: service `summarizer`: the switch to green would be held: green runs against schema 42 of database `records`, which is at 41"
        )),
        "{stderr}"
    );
    assert!(stderr.contains("share no schema version"), "{stderr}");
    // An unreadable version is said too.
    std::fs::remove_file(&version).unwrap();
    let out = switchyard(&["validate", &f]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("schema version unknown"),
        "{out:?}"
    );
}

#[test]
fn diff_warns_when_a_change_strands_a_color() {
    let dir = tempfile::tempdir().unwrap();
    let version = dir.path().join("schema-version");
    std::fs::write(&version, "42\n").unwrap();
    let old = write(&dir, "old.yaml", &guarded(&version, "41, 42", "42"));
    let new = write(&dir, "new.yaml", &guarded(&version, "41", "42"));
    let out = switchyard(&["diff", &old, &new]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!(
            "{new}: warning: service `summarizer`: this change strands blue: it no longer lists schema 42, the current version of database `records`"
        )),
        "{stderr}"
    );
}
