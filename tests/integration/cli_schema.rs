//! `switchyard schema`: the JSON Schema editors use must accept the files `validate`
//! accepts and reject the shape errors `validate` rejects, so the two stay in step.

use std::process::Command;

use serde_json::Value;

const GOOD: &str = include_str!("../fixtures/one_service.yaml");

/// The schema as the binary prints it.
fn printed_schema() -> Value {
    let out = Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .arg("schema")
        .output()
        .expect("run switchyard schema");
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    serde_json::from_slice(&out.stdout).expect("switchyard schema prints JSON")
}

fn validator() -> jsonschema::Validator {
    let schema = printed_schema();
    assert!(
        jsonschema::meta::is_valid(&schema),
        "not a valid JSON Schema"
    );
    jsonschema::draft202012::new(&schema).expect("the schema compiles")
}

/// The schema read as draft-07, which is what the YAML language server implements.
fn draft_07_validator() -> jsonschema::Validator {
    jsonschema::draft7::new(&printed_schema()).expect("the schema compiles as draft-07")
}

fn yaml(text: &str) -> Value {
    serde_saphyr::from_str::<Value>(text).expect("test YAML parses")
}

/// Every schema error for `text`, as `PATH: message`.
fn schema_errors(v: &jsonschema::Validator, text: &str) -> Vec<String> {
    let instance = yaml(text);
    v.iter_errors(&instance)
        .map(|e| format!("{}: {e}", e.instance_path()))
        .collect()
}

fn validate_accepts(text: &str) -> bool {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.yaml");
    std::fs::write(&path, text).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .arg("validate")
        .arg(&path)
        .output()
        .expect("run switchyard validate");
    out.status.success()
}

#[test]
fn schema_is_draft_2020_12_with_an_id_and_a_title() {
    let schema = printed_schema();
    assert_eq!(
        schema["$schema"],
        "https://json-schema.org/draft/2020-12/schema"
    );
    assert_eq!(schema["$id"], switchyard::cli::schema::SCHEMA_ID);
    assert!(schema["title"].as_str().unwrap().contains("switchyard"));
    assert_eq!(schema, switchyard::cli::schema::schema());
}

#[test]
fn the_example_state_file_matches_the_schema() {
    let v = validator();
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/state.yaml"))
        .unwrap();
    assert_eq!(schema_errors(&v, &text), Vec::<String>::new());
}

/// Files `validate` accepts, in the shapes the schema has to allow.
fn good_files() -> Vec<String> {
    vec![
        GOOD.to_owned(),
        GOOD.replace("    domains: [\"*\"]\n", ""),
        GOOD.replace("domains: [\"*\"]", "domains:"),
        GOOD.replace("address: 127.0.0.1", "address: \"::1\"")
            .replace("127.0.0.1:8082", "[::1]:8082"),
        GOOD.replace("127.0.0.1:8081", "10.0.0.1:65535\", \"[fd00::1]:1"),
        GOOD.replace("active: blue", "active: green")
            .replace("[\"*\"]", "[\"*.example.com\", \"api.example.com\"]"),
        GOOD.replace("name: public", "name: edge_v1.2-a")
            .replace("listener: public", "listener: edge_v1.2-a"),
        "listeners: []\n".to_owned(),
        GOOD.replace(
            "    active: blue\n",
            "    active: blue\n    attempt: 3\n    preview:\n      enabled: false\n      header: x-try\n      port: 10001\n    shadow:\n      percent: 5\n    gate:\n      path: /ready\n      status: 204\n      timeout: 500ms\n      interval: 1s\n      successes: 2\n      healthy_share: 50\n      deadline: 5m\n      max_shadow_error_ratio: 0.01\n      min_shadow_requests: 30\n    bake:\n      window: 2m\n      max_error_ratio: 0.1\n      min_requests: 10\n      probe:\n        path: /healthz\n        failures: 2\n",
        ),
        format!(
            "databases:\n  - name: records\n    url: http://127.0.0.1:9000/schema\n    interval: 1s\n{}",
            GOOD.replace("    active: blue\n", "    active: blue\n    database: records\n")
                .replace("\"127.0.0.1:8081\"]", "\"127.0.0.1:8081\"]\n      schemas: [41, \"42\"]")
                .replace("\"127.0.0.1:8082\"]", "\"127.0.0.1:8082\"]\n      schemas: [42]")
        ),
        GOOD.replace(
            "      endpoints: [\"127.0.0.1:8081\"]\n",
            "      localities:\n        - {region: eu, zone: eu-a, endpoints: [\"127.0.0.1:8081\"]}\n        - {sub_zone: rack-2, priority: 1, endpoints: [\"127.0.0.1:8083\"]}\n      outlier_detection: {consecutive_5xx: 2, interval: 1s}\n      health_check: {path: /ready, interval: 500ms, healthy_threshold: 1}\n",
        )
        .replace("    active: blue\n", "    active: blue\n    retries: 2\n"),
        GOOD.replace(
            "    active: blue\n",
            "    active: blue\n    group: chat\n    rollout:\n      soak: 5m\n      waves:\n        - {zone: eu-a, cluster: edge}\n        - {node: \"edge-*\", metadata: {ring: 2}}\n        - {}\n",
        ),
        GOOD.replace("active: blue", "weights: {blue: 90, green: 10}"),
        GOOD.replace(
            "    active: blue\n",
            "    active: blue\n    ramp:\n      steps: [10, 50, 100]\n      every: 1m\n      paused: true\n",
        ),
    ]
}

#[test]
fn files_validate_accepts_match_the_schema() {
    let v = validator();
    let variants = good_files();
    for text in variants {
        assert!(validate_accepts(&text), "validate rejects:\n{text}");
        assert_eq!(
            schema_errors(&v, &text),
            Vec::<String>::new(),
            "the schema rejects a file validate accepts:\n{text}"
        );
    }
}

/// Files `validate` rejects for their shape: (what, text, where the schema should object).
fn shape_errors() -> Vec<(&'static str, String, &'static str)> {
    vec![
        (
            "unknown key",
            GOOD.replace("    active: blue", "    active: blue\n    colour: red"),
            "/services/0",
        ),
        ("unknown top-level key", format!("{GOOD}extra: 1\n"), ""),
        (
            "active: purple",
            GOOD.replace("active: blue", "active: purple"),
            "/services/0/active",
        ),
        (
            "port 70000",
            GOOD.replace("port: 10000", "port: 70000"),
            "/listeners/0/port",
        ),
        (
            "port 0",
            GOOD.replace("port: 10000", "port: 0"),
            "/listeners/0/port",
        ),
        (
            "port not a number",
            GOOD.replace("port: 10000", "port: ten"),
            "/listeners/0/port",
        ),
        (
            "empty endpoints",
            GOOD.replace("endpoints: [\"127.0.0.1:8082\"]", "endpoints: []"),
            "/services/0/green/endpoints",
        ),
        (
            "endpoint without a port",
            GOOD.replace("127.0.0.1:8081", "127.0.0.1"),
            "/services/0/blue/endpoints/0",
        ),
        (
            "endpoint with a host name and no port",
            GOOD.replace("127.0.0.1:8081", "backend"),
            "/services/0/blue/endpoints/0",
        ),
        (
            "endpoint with port 0",
            GOOD.replace("127.0.0.1:8081", "127.0.0.1:0"),
            "/services/0/blue/endpoints/0",
        ),
        (
            "duplicate endpoint",
            GOOD.replace(
                "\"127.0.0.1:8081\"",
                "\"127.0.0.1:8081\", \"127.0.0.1:8081\"",
            ),
            "/services/0/blue/endpoints",
        ),
        (
            "address is a host name",
            GOOD.replace("address: 127.0.0.1", "address: localhost"),
            "/listeners/0/address",
        ),
        (
            "address octet too big",
            GOOD.replace("address: 127.0.0.1", "address: 127.0.0.256"),
            "/listeners/0/address",
        ),
        (
            "name with a space",
            GOOD.replace("name: summarizer", "name: \"summ arizer\""),
            "/services/0/name",
        ),
        (
            "empty domains",
            GOOD.replace("domains: [\"*\"]", "domains: []"),
            "/services/0/domains",
        ),
        (
            "missing green",
            GOOD.replace("    green:\n      endpoints: [\"127.0.0.1:8082\"]\n", ""),
            "/services/0",
        ),
        ("missing listeners", "services: []\n".to_owned(), ""),
        (
            "shadow percent 0",
            GOOD.replace(
                "    active: blue",
                "    active: blue\n    shadow:\n      percent: 0",
            ),
            "/services/0/shadow/percent",
        ),
        (
            "unknown gate key",
            GOOD.replace(
                "    active: blue",
                "    active: blue\n    gate:\n      paht: /x",
            ),
            "/services/0/gate",
        ),
        (
            "bake error ratio above 1",
            GOOD.replace(
                "    active: blue",
                "    active: blue\n    bake:\n      max_error_ratio: 2",
            ),
            "/services/0/bake/max_error_ratio",
        ),
        (
            "a weight above 100",
            GOOD.replace("active: blue", "weights: {blue: 120, green: 0}"),
            "/services/0/weights/blue",
        ),
        (
            "active and weights",
            GOOD.replace(
                "    active: blue",
                "    active: blue\n    weights: {blue: 90, green: 10}",
            ),
            "/services/0",
        ),
        (
            "neither active nor weights",
            GOOD.replace("    active: blue\n", ""),
            "/services/0",
        ),
        (
            "a ramp step of 0",
            GOOD.replace(
                "    active: blue",
                "    active: blue\n    ramp: {steps: [0, 100]}",
            ),
            "/services/0/ramp/steps/0",
        ),
        (
            "gate interval not a duration",
            GOOD.replace(
                "    active: blue",
                "    active: blue\n    gate:\n      interval: soon",
            ),
            "/services/0/gate/interval",
        ),
    ]
}

#[test]
fn shape_errors_validate_rejects_are_rejected_by_the_schema_too() {
    let v = validator();
    let cases = shape_errors();
    for (what, text, at) in cases {
        assert!(!validate_accepts(&text), "{what}: validate accepts it");
        let errors = schema_errors(&v, &text);
        assert!(
            errors.iter().any(|e| e.starts_with(&format!("{at}: "))),
            "{what}: expected a schema error at `{at}`, got {errors:#?}"
        );
    }
}

#[test]
fn schema_help_says_how_to_use_it_with_the_yaml_language_server() {
    let out = Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(["schema", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(
        help.contains("switchyard schema > switchyard.schema.json"),
        "{help}"
    );
    assert!(
        help.contains("# yaml-language-server: $schema=./switchyard.schema.json"),
        "{help}"
    );
}

#[test]
fn draft_07_readers_reach_the_same_verdicts() {
    let v = draft_07_validator();
    for text in good_files() {
        assert_eq!(schema_errors(&v, &text), Vec::<String>::new(), "{text}");
    }
    for (what, text, _) in shape_errors() {
        assert!(
            !schema_errors(&v, &text).is_empty(),
            "{what}: draft-07 accepts it"
        );
    }
}
