//! The official model clients, unchanged but for their base-URL setting, through a real
//! Envoy across a switch and a rollback: LangChain's Ollama chat model, `ollama`,
//! `anthropic` and `google-genai`, each run by `examples/models/ask.py` from the tools
//! virtualenv, ask stand-ins for model v1 (blue) and v2 (green). A streamed answer begun on
//! blue stays in flight while the switch to green comes into force and finishes whole, on
//! blue; fresh questions then reach green, and after the rollback blue again.
//!
//! The Anthropic and Gemini colors carry their API key as a credential Envoy injects from
//! a file (the clients send a placeholder): the stand-ins refuse any request without it,
//! and the key never reaches the client.
//!
//! One Envoy per test, speaking SotW; LangChain's also over delta. Every question starts a
//! Python process (about a second), so the tests ask few and watch the switch with a
//! plain HTTP client instead.

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use tempfile::TempDir;
use tokio::sync::{mpsc, oneshot};

use crate::common::backend::Backend;
use crate::common::backend::model_api::{DEFAULT_MODEL, STREAM_CHUNKS};
use crate::common::control_plane::ControlPlane;
use crate::common::envoy::{Envoy, Xds};
use crate::common::{free_port, http, tools};

crate::both_protocols!(
    langchain_answers_move_to_v2_on_a_switch_and_back_on_a_rollback_with_a_stream_in_flight
);

async fn langchain_answers_move_to_v2_on_a_switch_and_back_on_a_rollback_with_a_stream_in_flight(
    xds: Xds,
) {
    switch_and_roll_back(Client::Langchain, xds).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ollama_answers_move_to_v2_on_a_switch_and_back_on_a_rollback_with_a_stream_in_flight() {
    switch_and_roll_back(Client::Ollama, Xds::Sotw).await;
}

/// With the API key (`x-api-key`) injected by Envoy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anthropic_answers_move_to_v2_on_a_switch_and_back_on_a_rollback_with_a_stream_in_flight() {
    switch_and_roll_back(Client::Anthropic, Xds::Sotw).await;
}

/// With the API key (`x-goog-api-key`) injected by Envoy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn genai_answers_move_to_v2_on_a_switch_and_back_on_a_rollback_with_a_stream_in_flight() {
    switch_and_roll_back(Client::Genai, Xds::Sotw).await;
}

/// The question every client asks; the stand-ins echo it after their color and version.
const PROMPT: &str = "Which color are you?";
/// The pause between two pieces of a streamed answer: the stream stays open for
/// `STREAM_CHUNKS - 1` of them after its first piece, long enough for the switch to come
/// into force under it.
const CHUNK_PAUSE: Duration = Duration::from_millis(500);
/// The API key Envoy injects for the Anthropic and Gemini colors.
const API_KEY: &str = "sk-switchyard-e2e-5b0d1e7a";
/// How long one run of `ask.py` may stay silent.
const ASK_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a saved state may take to be in force, and a fresh question to reach it.
const SWITCH_TIMEOUT: Duration = Duration::from_secs(10);
/// The host the plain HTTP checks send (the service's domains are `*`).
const HOST: &str = "models.example";

/// One of the official clients `examples/models/ask.py` runs.
#[derive(Clone, Copy, Debug)]
enum Client {
    Langchain,
    Ollama,
    Anthropic,
    Genai,
}

impl Client {
    /// Its `--client` name.
    fn name(self) -> &'static str {
        match self {
            Client::Langchain => "langchain",
            Client::Ollama => "ollama",
            Client::Anthropic => "anthropic",
            Client::Genai => "genai",
        }
    }

    fn model(self) -> &'static str {
        match self {
            Client::Langchain | Client::Ollama => DEFAULT_MODEL,
            Client::Anthropic => "claude-sonnet-4-5",
            Client::Genai => "gemini-2.5-flash",
        }
    }

    /// The header its API takes the key in; `None` for the Ollama API, which takes none.
    fn key_header(self) -> Option<&'static str> {
        match self {
            Client::Langchain | Client::Ollama => None,
            Client::Anthropic => Some("x-api-key"),
            Client::Genai => Some("x-goog-api-key"),
        }
    }
}

/// Model v1 (blue) and v2 (green) on loopback, and switchyard serving one service on a
/// listener, with the client's API key as each color's credential when its API takes one.
struct Scene {
    blue: Backend,
    green: Backend,
    listener: SocketAddr,
    /// The credential file and its header, when the API takes a key.
    credential: Option<(PathBuf, &'static str)>,
    cp: ControlPlane,
    /// Holds the credential file; deleted on drop.
    _keys: TempDir,
}

impl Scene {
    async fn start(client: Client) -> Scene {
        let blue = Backend::start("blue", "v1");
        let green = Backend::start("green", "v2");
        let keys = tempfile::tempdir().expect("create a temp dir for the key");
        let credential = client.key_header().map(|header| {
            for stand_in in [&blue, &green] {
                stand_in.require_header(header, &[API_KEY]);
            }
            let path = keys.path().join("api-key");
            // A trailing newline, as an editor or `echo` leaves it; switchyard trims it.
            std::fs::write(&path, format!("{API_KEY}\n")).expect("write the key file");
            (path, header)
        });
        let listener = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let key = credential
            .as_ref()
            .map(|(file, header)| (file.as_path(), *header));
        let state = state_file(listener, &blue, &green, key, "blue");
        let cp = ControlPlane::start(&state).await;
        Scene {
            blue,
            green,
            listener,
            credential,
            cp,
            _keys: keys,
        }
    }

    /// The state file with `active` active.
    fn state(&self, active: &str) -> String {
        let key = self
            .credential
            .as_ref()
            .map(|(file, header)| (file.as_path(), *header));
        state_file(self.listener, &self.blue, &self.green, key, active)
    }

    /// Whether a plain request through Envoy is answered by `backend` (the key, if
    /// required, injected by Envoy).
    async fn serves(&self, backend: &Backend) -> bool {
        http::get(self.listener, "/", HOST)
            .await
            .is_ok_and(|(status, body)| status == 200 && body == backend.body())
    }
}

/// One service `models` on `listener` (domains `*`), its colors at `blue` and `green`, each
/// with `credential` (the key file and its header) if any.
fn state_file(
    listener: SocketAddr,
    blue: &Backend,
    green: &Backend,
    credential: Option<(&Path, &str)>,
    active: &str,
) -> String {
    let color = |backend: &Backend| {
        let mut keys = format!("      endpoints: [\"{}\"]\n", backend.addr());
        if let Some((file, header)) = credential {
            keys += &format!(
                "      credential:\n        file: \"{}\"\n        header: {header}\n",
                file.display()
            );
        }
        keys
    };
    format!(
        "listeners:
  - name: public
    address: 127.0.0.1
    port: {port}
services:
  - name: models
    listener: public
    domains: [\"*\"]
    blue:
{blue}    green:
{green}    active: {active}
",
        port = listener.port(),
        blue = color(blue),
        green = color(green),
    )
}

async fn switch_and_roll_back(client: Client, xds: Xds) {
    let python = tools::python_clients();
    let started = Instant::now();
    let scene = Scene::start(client).await;
    let envoy = Envoy::builder(&format!("clients-{}", client.name()), scene.cp.xds_addr())
        .xds(xds)
        .start()
        .await;
    envoy.wait_live(Duration::from_secs(20)).await;
    assert_eventually!(
        SWITCH_TIMEOUT,
        scene.serves(&scene.blue).await,
        "envoy never routed to blue (with the key, where one is required)"
    );
    let asker = Asker {
        python,
        client,
        base_url: format!("http://{}", scene.listener),
    };
    let (blue_answer, green_answer) = (
        scene.blue.model_answer(PROMPT),
        scene.green.model_answer(PROMPT),
    );
    let mut outcomes = Vec::new();

    // Model v1 answers.
    outcomes.push(asker.ask_until(&blue_answer).await);

    // A streamed answer is under way when the switch to green is saved, and still is
    // when the switch is in force. A stream reads the pause when it begins, so only this
    // one is slowed (LangChain streams even the answers it is not asked to).
    scene.blue.set_stream_chunk_delay(CHUNK_PAUSE);
    let mut stream = asker.start(true);
    let first_chunk = stream.next_chunk().await;
    scene.blue.set_stream_chunk_delay(Duration::ZERO);
    let saved = Instant::now();
    scene.cp.save_by_rename(&scene.state("green"));
    assert_eventually!(
        SWITCH_TIMEOUT,
        scene.serves(&scene.green).await,
        "envoy never routed to green"
    );
    let switched = saved.elapsed();
    assert_eq!(
        scene.blue.in_flight(),
        1,
        "the streamed answer was over before the switch was in force ({switched:?} after \
         the save): it did not cross the switch"
    );
    // It finishes whole, on the color it began on.
    let streamed = stream.finish().await;
    assert_eq!(streamed.answer, blue_answer, "{streamed}");
    assert_eq!(streamed.chunks.concat(), streamed.answer, "{streamed}");
    assert_eq!(streamed.chunks.first(), Some(&first_chunk), "{streamed}");
    assert!(
        streamed.chunks.len() > 1 && streamed.chunks.len() <= STREAM_CHUNKS,
        "the answer did not come in pieces: {streamed}"
    );
    outcomes.push(streamed);

    // Fresh questions reach model v2.
    outcomes.push(asker.ask_until(&green_answer).await);

    // Rolled back: model v1 again.
    scene.cp.save_by_rename(&scene.state("blue"));
    assert_eventually!(
        SWITCH_TIMEOUT,
        scene.serves(&scene.blue).await,
        "envoy never routed back to blue"
    );
    outcomes.push(asker.ask_until(&blue_answer).await);

    if client.key_header().is_some() {
        for stand_in in [&scene.blue, &scene.green] {
            assert_eq!(
                stand_in.rejected_requests(),
                0,
                "{} saw a request without the key Envoy injects",
                stand_in.color()
            );
        }
    }
    for outcome in &outcomes {
        assert!(
            !outcome.output().contains(API_KEY),
            "the API key reached the client: {outcome}"
        );
    }
    eprintln!(
        "{} over {}: switch in force {switched:?} after the save; whole test {:?}",
        client.name(),
        xds.name(),
        started.elapsed()
    );
    drop(envoy);
}

/// Runs `examples/models/ask.py` with one client against one base URL.
struct Asker {
    python: PathBuf,
    client: Client,
    base_url: String,
}

impl Asker {
    /// Starts one question, streamed or not.
    fn start(&self, stream: bool) -> Run {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/models/ask.py");
        let mut command = Command::new(&self.python);
        command
            .arg(&script)
            .args(["--client", self.client.name()])
            .args(["--base-url", &self.base_url])
            .args(["--model", self.client.model()])
            .args(["--prompt", PROMPT]);
        if stream {
            command.arg("--stream");
        }
        // Loopback traffic must not be sent to a proxy from the environment.
        for proxy in ["http_proxy", "https_proxy", "all_proxy"] {
            command.env_remove(proxy).env_remove(proxy.to_uppercase());
        }
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", self.python.display()));
        // Reading a pipe blocks: one thread per pipe, handing over what it read.
        let stdout = child.stdout.take().expect("stdout is piped");
        let (line_tx, lines) = mpsc::unbounded_channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if line_tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut stderr = child.stderr.take().expect("stderr is piped");
        let (stderr_tx, stderr_rx) = oneshot::channel();
        std::thread::spawn(move || {
            let mut text = String::new();
            let _ = stderr.read_to_string(&mut text);
            let _ = stderr_tx.send(text);
        });
        Run {
            child,
            what: format!(
                "{} {}",
                self.client.name(),
                if stream { "stream" } else { "ask" }
            ),
            lines,
            stderr: Some(stderr_rx),
            stdout: Vec::new(),
            chunks: Vec::new(),
            answer: None,
        }
    }

    /// Asks (not streamed) until the answer is `expected`, each answer a success; the
    /// first such run. Panics with the last run after [`SWITCH_TIMEOUT`].
    async fn ask_until(&self, expected: &str) -> Outcome {
        let deadline = Instant::now() + SWITCH_TIMEOUT;
        loop {
            let outcome = self.start(false).finish().await;
            if outcome.answer == expected {
                return outcome;
            }
            assert!(
                Instant::now() < deadline,
                "no answer {expected:?} within {SWITCH_TIMEOUT:?}; last run: {outcome}"
            );
        }
    }
}

/// One run of `ask.py`; killed and reaped on drop, so a failing test leaves no Python
/// process behind.
struct Run {
    child: Child,
    /// `"<client> stream"` or `"<client> ask"`, for messages.
    what: String,
    /// Its stdout, line by line as printed.
    lines: mpsc::UnboundedReceiver<String>,
    /// Its whole stderr, once it closes.
    stderr: Option<oneshot::Receiver<String>>,
    /// The stdout lines read so far.
    stdout: Vec<String>,
    chunks: Vec<String>,
    answer: Option<String>,
}

impl Run {
    /// Reads the next line of output and records it; `false` at the end of output.
    async fn read_line(&mut self) -> bool {
        let line = match tokio::time::timeout(ASK_TIMEOUT, self.lines.recv()).await {
            Ok(Some(line)) => line,
            Ok(None) => return false,
            Err(_) => panic!(
                "{} printed nothing for {ASK_TIMEOUT:?}; so far: {:?}",
                self.what, self.stdout
            ),
        };
        let parsed: Value = serde_json::from_str(&line).unwrap_or_else(|e| {
            panic!(
                "{} printed a line that is not JSON ({e}): {line}",
                self.what
            )
        });
        if let Some(chunk) = parsed["chunk"].as_str() {
            self.chunks.push(chunk.to_owned());
        } else if let Some(answer) = parsed["answer"].as_str() {
            self.answer = Some(answer.to_owned());
        }
        self.stdout.push(line);
        true
    }

    /// Waits for the first streamed piece of the answer.
    async fn next_chunk(&mut self) -> String {
        let seen = self.chunks.len();
        while self.chunks.len() == seen {
            if !self.read_line().await {
                let stderr = self.stderr().await;
                panic!(
                    "{} ended before a streamed piece: {:?}\n{stderr}",
                    self.what, self.stdout
                );
            }
        }
        self.chunks[seen].clone()
    }

    /// Waits for the run to end; panics unless it succeeded with an answer.
    async fn finish(mut self) -> Outcome {
        while self.read_line().await {}
        let stderr = self.stderr().await;
        let status = self.exit_status().await;
        let outcome = Outcome {
            chunks: std::mem::take(&mut self.chunks),
            answer: self.answer.take().unwrap_or_default(),
            stdout: self.stdout.join("\n"),
            stderr,
        };
        assert!(
            status.success() && !outcome.stdout.is_empty(),
            "{} failed ({status}): {outcome}",
            self.what
        );
        outcome
    }

    /// Its stderr, once closed (at exit).
    async fn stderr(&mut self) -> String {
        let stderr = self.stderr.take().expect("stderr is read once");
        tokio::time::timeout(ASK_TIMEOUT, stderr)
            .await
            .unwrap_or_else(|_| panic!("{} kept stderr open for {ASK_TIMEOUT:?}", self.what))
            .unwrap_or_default()
    }

    /// Its exit status; both pipes are closed, so it has exited or is about to.
    async fn exit_status(&mut self) -> ExitStatus {
        let deadline = Instant::now() + ASK_TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait().expect("query the python process") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "{} closed its output but did not exit",
                self.what
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

impl Drop for Run {
    fn drop(&mut self) {
        // Already reaped (a finished run) is fine: then there is nothing to signal.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What a finished run printed.
struct Outcome {
    chunks: Vec<String>,
    answer: String,
    stdout: String,
    stderr: String,
}

impl Outcome {
    /// Everything the client printed, stdout and stderr.
    fn output(&self) -> String {
        format!("{}\n{}", self.stdout, self.stderr)
    }
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "answer {:?} in {} chunks\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.answer,
            self.chunks.len(),
            self.stdout,
            self.stderr
        )
    }
}
