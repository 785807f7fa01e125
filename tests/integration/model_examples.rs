//! The model examples as shipped: the state-file snippets in `examples/models/` are valid
//! (`switchyard validate`, for which a credential or certificate file it cannot read is a
//! warning, and the schema editors use), a snippet with a typical mistake is refused with
//! the message that says what to fix, and `cargo run --example models` (a LangChain app across
//! a switch and a rollback, through a real Envoy) sees every step it should.

use std::path::Path;
use std::process::{Command, Output};

fn validate(file: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .arg("validate")
        .arg(file)
        .output()
        .expect("run switchyard validate")
}

fn snippet(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples/models")
        .join(name)
}

/// Every error the schema `switchyard schema` prints (the one editors use) finds in `text`.
fn schema_errors(text: &str) -> Vec<String> {
    let out = Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .arg("schema")
        .output()
        .expect("run switchyard schema");
    let schema: serde_json::Value = serde_json::from_slice(&out.stdout).expect("schema JSON");
    let validator = jsonschema::draft202012::new(&schema).expect("the schema compiles");
    let instance: serde_json::Value = serde_saphyr::from_str(text).expect("the snippet is YAML");
    validator
        .iter_errors(&instance)
        .map(|e| format!("{}: {e}", e.instance_path()))
        .collect()
}

/// `validate` accepts the snippet, and so does the editors' schema.
fn assert_valid(name: &str) {
    let file = snippet(name);
    let text = std::fs::read_to_string(&file).unwrap();
    assert_eq!(schema_errors(&text), Vec::<String>::new(), "{name}");
    let out = validate(&file);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{name} is not valid:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(": ok (1 listeners, 1 services"),
        "{out:?}"
    );
}

#[test]
fn ollama_snippet_is_valid() {
    assert_valid("ollama.yaml");
}

#[test]
fn vertex_snippet_is_valid() {
    assert_valid("vertex.yaml");
}

#[test]
fn anthropic_snippet_is_valid() {
    assert_valid("anthropic.yaml");
}

#[test]
fn a_credential_file_validate_cannot_read_is_a_warning_at_its_line_not_an_error() {
    let file = snippet("anthropic.yaml");
    let text = std::fs::read_to_string(&file).unwrap();
    let line = text
        .lines()
        .position(|l| l.trim_start().starts_with("file: secrets/anthropic-key"))
        .expect("anthropic.yaml names secrets/anthropic-key")
        + 1;
    let out = validate(&file);
    assert_eq!(out.status.code(), Some(0));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let expected = format!(
        "{}:{line}:15: warning: file `secrets/anthropic-key` cannot be read: no file at this \
         path (serve rejects the state until it can read it)",
        file.display()
    );
    assert!(stderr.lines().any(|l| l == expected), "{stderr}");
}

#[test]
fn hybrid_snippet_is_valid() {
    assert_valid("hybrid.yaml");
}

#[test]
fn every_snippet_is_checked_here() {
    let mut shipped: Vec<String> = std::fs::read_dir(snippet(""))
        .expect("read examples/models")
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".yaml"))
        .collect();
    shipped.sort();
    assert_eq!(
        shipped,
        [
            "anthropic.yaml",
            "hybrid.yaml",
            "ollama.yaml",
            "vertex.yaml"
        ],
        "a snippet was added or removed: give it a test above"
    );
}

#[test]
fn tls_to_an_ip_address_without_sni_is_refused_with_what_to_set() {
    let ollama = std::fs::read_to_string(snippet("ollama.yaml")).unwrap();
    let green = "      endpoints: [\"127.0.0.1:11436\"]       # model v2\n";
    assert!(ollama.contains(green), "ollama.yaml changed shape");
    // Green's servers moved behind TLS, and the server name was forgotten.
    let mistaken = ollama.replace(green, &format!("{green}      tls: {{}}\n"));
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("ollama.yaml");
    std::fs::write(&file, &mistaken).unwrap();
    let line = mistaken
        .lines()
        .position(|l| l == "      tls: {}")
        .expect("the added line")
        + 1;

    let out = validate(&file);

    assert_eq!(out.status.code(), Some(65), "{out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stderr).trim(),
        format!(
            "{}:{line}:12: TLS to an IP address needs a server name: set `sni:` under \
             green's `tls:` to the name in the backends' certificate",
            file.display()
        )
    );
}

/// About 9 s alone (10 s beside this file's other tests on 2 cores): four runs of the
/// LangChain client (Python's start-up and imports, about 1 s each), a streamed answer of
/// five pieces 1 s apart, Envoy's start. Needs the example built, as `cargo test` does.
#[test]
fn the_models_example_moves_a_langchain_app_to_v2_and_back() {
    let stdout = crate::common::run_built_example("models");
    let answers: Vec<&str> = stdout
        .lines()
        .filter_map(|l| {
            l.trim()
                .strip_prefix("answer: ")
                .or(l.trim().strip_prefix("the stream completes: "))
        })
        .collect();
    let question = "Summarize the discharge note.";
    assert_eq!(
        answers,
        [
            format!("\"blue v1: {question}\""),
            format!("\"blue v1: {question}\""),
            format!("\"green v2: {question}\""),
            format!("\"blue v1: {question}\""),
        ],
        "{stdout}"
    );
}
