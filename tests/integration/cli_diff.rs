//! `switchyard diff OLD NEW` as operators and scripts use it: what it prints and its exit
//! codes (0 no change for Envoy, 1 changes, 65/66 bad files, like `validate`).

use std::process::{Command, Output};

const BLUE: &str = include_str!("../fixtures/one_service.yaml");

fn switchyard(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(args)
        .output()
        .expect("run switchyard")
}

fn write(dir: &tempfile::TempDir, name: &str, text: &str) -> String {
    let p = dir.path().join(name);
    std::fs::write(&p, text).unwrap();
    p.to_str().unwrap().to_owned()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn identical_states_exit_0_with_no_change_for_envoy() {
    let dir = tempfile::tempdir().unwrap();
    let old = write(&dir, "old.yaml", BLUE);
    let new = write(&dir, "new.yaml", &format!("# reformatted\n{BLUE}"));
    let out = switchyard(&["diff", &old, &new]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(
        stdout(&out).starts_with("no change for Envoy (both files are state "),
        "{out:?}"
    );
}

#[test]
fn a_switch_to_green_exits_1_and_shows_the_route_weights() {
    let dir = tempfile::tempdir().unwrap();
    let old = write(&dir, "old.yaml", BLUE);
    let new = write(
        &dir,
        "new.yaml",
        &BLUE.replace("active: blue", "active: green"),
    );
    let out = switchyard(&["diff", &old, &new]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines[0].starts_with("state ") && lines[0].contains(&format!("({old}) -> ")));
    assert_eq!(
        lines[1],
        "summarizer: blue -> green (weights 100/0 -> 0/100)"
    );
    assert!(lines[3].starts_with("routes (version "), "{text}");
    assert_eq!(lines[4], "~ route public");
    assert!(
        text.contains("    -                  \"weight\": 100\n"),
        "{text}"
    );
    assert!(
        text.contains("    +                  \"weight\": 0\n"),
        "{text}"
    );
    assert_eq!(
        lines.last().copied(),
        Some("routes: 1 changed; nothing else changes")
    );
    assert!(!text.contains("clusters ("), "no cluster changes: {text}");
}

#[test]
fn a_new_service_is_listed_by_type_in_push_order() {
    let dir = tempfile::tempdir().unwrap();
    let old = write(&dir, "old.yaml", BLUE);
    let new = write(
        &dir,
        "new.yaml",
        &format!(
            "{BLUE}{}",
            "  - name: extra
    listener: public
    domains: [\"extra.example\"]
    blue: { endpoints: [\"127.0.0.1:9001\"] }
    green: { endpoints: [\"127.0.0.1:9002\"] }
    active: blue
"
        ),
    );
    let out = switchyard(&["diff", &old, &new]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let text = stdout(&out);
    let at = |needle: &str| {
        text.find(needle)
            .unwrap_or_else(|| panic!("`{needle}` missing from:\n{text}"))
    };
    assert!(at("+ service extra on listener public (active blue)") < at("clusters ("));
    assert!(at("+ cluster extra-blue\n+ cluster extra-green") < at("endpoints ("));
    assert!(at("+ endpoints extra-blue\n+ endpoints extra-green") < at("routes ("));
    assert!(at("routes (") < at("~ route public"));
    assert!(text.ends_with(
        "\nclusters: 2 added; endpoints: 2 added; routes: 1 changed; nothing else changes\n"
    ));
}

#[test]
fn an_invalid_file_is_reported_like_validate_and_exits_65() {
    let dir = tempfile::tempdir().unwrap();
    let old = write(&dir, "old.yaml", BLUE);
    let new = write(
        &dir,
        "new.yaml",
        &BLUE.replace("active: blue", "active: both"),
    );
    let out = switchyard(&["diff", &old, &new]);
    assert_eq!(out.status.code(), Some(65), "{out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        format!("{new}:13:13: active must be `blue` or `green`, not `both`\n")
    );
    assert!(out.stdout.is_empty());
}

#[test]
fn a_missing_file_exits_66() {
    let dir = tempfile::tempdir().unwrap();
    let new = write(&dir, "new.yaml", BLUE);
    let out = switchyard(&["diff", "/nonexistent/old.yaml", &new]);
    assert_eq!(out.status.code(), Some(66), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/old.yaml: cannot read"));
}

#[test]
fn an_unreadable_file_outranks_an_invalid_one_in_either_place() {
    let dir = tempfile::tempdir().unwrap();
    let bad = write(
        &dir,
        "bad.yaml",
        &BLUE.replace("active: blue", "active: both"),
    );
    for (old, new) in [
        ("/nonexistent/old.yaml", bad.as_str()),
        (&bad, "/nonexistent/new.yaml"),
    ] {
        let out = switchyard(&["diff", old, new]);
        assert_eq!(out.status.code(), Some(66), "{out:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("cannot read"), "{stderr}");
        assert!(stderr.contains("not `both`"), "{stderr}");
    }
}

#[test]
fn diff_without_two_files_is_a_usage_error() {
    let out = switchyard(&["diff", "only-one.yaml"]);
    assert_eq!(out.status.code(), Some(64), "{out:?}");
}

#[test]
fn diff_help_documents_the_exit_codes() {
    let help = stdout(&switchyard(&["diff", "--help"]));
    assert!(
        help.contains("Exits 0 when Envoy would see no change"),
        "{help}"
    );
    assert!(help.contains("1 when it would"), "{help}");
}
