//! A LangChain app moved between two model versions by a state-file save: blue (model v1)
//! and green (model v2) are Ollama-compatible servers (the sample backend's Ollama
//! stand-in), a real Envoy 1.40 listens in front of them, and switchyard drives it. The app
//! is `examples/models/ask.py --client langchain` (LangChain's `ChatOllama`, unchanged,
//! pointed at Envoy by its `base_url`); it never learns which version answers.
//!
//! ```text
//! cargo run --example models
//! ```
//!
//! The show: an answer from v1; a streamed answer started on v1, the state file saved with
//! `active: green` while it streams, and the stream finishing on v1; the next answer from
//! v2; a rollback (`active: blue`) and an answer from v1 again. Each step checks what it
//! sees; the example exits 1, saying what was missed, if a step does not see it.
//!
//! Envoy and the Python clients come from `ENVOY_BIN` and `.tools/`, installed on first use
//! (tests/common/tools.rs). Everything it starts (backends, Envoy, switchyard, Python) is
//! stopped when it ends, fails or is interrupted with Ctrl-C.

#[path = "../tests/common/mod.rs"]
mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use common::backend::Backend;
use common::backend::model_api::DEFAULT_MODEL;
use common::control_plane::{ControlPlane, one_service};
use common::envoy::Envoy;
use common::{free_port, http};
use tokio::sync::mpsc;

/// How long one run of the client may take before the example gives up on it.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(60);

/// The pause between two pieces of a streamed answer: long enough for the switch to happen
/// while the stream is open.
const STREAM_PAUSE: Duration = Duration::from_secs(1);

/// What the app asks.
const QUESTION: &str = "Summarize the discharge note.";

/// Everything the show runs against.
struct Scene {
    python: PathBuf,
    blue: Backend,
    green: Backend,
    listener: SocketAddr,
    cp: ControlPlane,
}

impl Scene {
    fn state(&self, active: &str) -> String {
        one_service(
            self.listener.port(),
            self.blue.addr(),
            self.green.addr(),
            active,
        )
    }

    /// Starts the client on `QUESTION` (streamed or not).
    fn ask(&self, stream: bool) -> Ask {
        Ask::start(&self.python, self.listener, stream)
    }

    /// Saves the state file with `active` and waits until Envoy sends new requests there:
    /// how long that took.
    async fn switch_to(&self, active: &str) -> Result<Duration, String> {
        let saved = Instant::now();
        self.cp.save_by_rename(&self.state(active));
        self.until_active(active).await?;
        Ok(saved.elapsed())
    }

    /// Waits until Envoy sends new requests to `active`.
    async fn until_active(&self, active: &str) -> Result<(), String> {
        let seen = common::eventually(Duration::from_secs(10), async || {
            http::color(self.listener).await.as_deref() == Some(active)
        })
        .await;
        seen.then_some(())
            .ok_or_else(|| format!("{active} did not take requests within 10 s"))
    }
}

/// One line `ask.py` prints.
enum Line {
    Chunk(String),
    Answer(String),
}

/// `ask.py --client langchain` running against Envoy; killed if dropped before it ends.
struct Ask {
    child: Child,
    /// Its stdout, a line at a time (read on a thread of its own).
    lines: mpsc::UnboundedReceiver<String>,
    /// Its stderr, whole, once it closes (a traceback when the client failed).
    stderr: Option<std::thread::JoinHandle<String>>,
}

impl Ask {
    fn start(python: &Path, listener: SocketAddr, stream: bool) -> Ask {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/models/ask.py");
        let mut cmd = Command::new(python);
        cmd.arg(script)
            .args(["--client", "langchain"])
            .args(["--base-url", &format!("http://{listener}")])
            .args(["--model", DEFAULT_MODEL])
            .args(["--prompt", QUESTION])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if stream {
            cmd.arg("--stream");
        }
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", python.display()));
        let stdout = child.stdout.take().expect("piped stdout");
        let mut stderr = child.stderr.take().expect("piped stderr");
        let (tx, lines) = mpsc::unbounded_channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stderr = std::thread::spawn(move || {
            let mut text = String::new();
            let _ = stderr.read_to_string(&mut text);
            text
        });
        Ask {
            child,
            lines,
            stderr: Some(stderr),
        }
    }

    /// The next line the client prints, or why there is none.
    async fn next(&mut self) -> Result<Line, String> {
        let line = match tokio::time::timeout(CLIENT_TIMEOUT, self.lines.recv()).await {
            Err(_) => return Err(format!("the client printed nothing for {CLIENT_TIMEOUT:?}")),
            Ok(None) => return Err(self.failure()),
            Ok(Some(line)) => line,
        };
        let json: serde_json::Value = serde_json::from_str(&line)
            .map_err(|e| format!("the client printed {line:?}, not JSON: {e}"))?;
        match (json["chunk"].as_str(), json["answer"].as_str()) {
            (Some(chunk), _) => Ok(Line::Chunk(chunk.to_owned())),
            (_, Some(answer)) => Ok(Line::Answer(answer.to_owned())),
            _ => Err(format!(
                "the client printed {line}, neither a chunk nor an answer"
            )),
        }
    }

    /// The whole answer, skipping any chunks.
    async fn answer(mut self) -> Result<String, String> {
        loop {
            if let Line::Answer(answer) = self.next().await? {
                return Ok(answer);
            }
        }
    }

    /// Why the client stopped without an answer: its exit status and stderr.
    fn failure(&mut self) -> String {
        let status = self
            .child
            .wait()
            .map_or_else(|e| e.to_string(), |s| s.to_string());
        let stderr = self
            .stderr
            .take()
            .and_then(|t| t.join().ok())
            .unwrap_or_default();
        format!("the client ended without an answer ({status}):\n{stderr}")
    }
}

impl Drop for Ask {
    fn drop(&mut self) {
        // Already exited is fine.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `Ok` when `answer` is what `backend` says to the question, else what was seen instead.
fn expect_from(backend: &Backend, answer: &str) -> Result<(), String> {
    let want = backend.model_answer(QUESTION);
    if answer == want {
        Ok(())
    } else {
        Err(format!("expected {want:?}, the app got {answer:?}"))
    }
}

async fn show(scene: &Scene) -> Result<(), String> {
    let (blue, green) = (&scene.blue, &scene.green);

    scene.until_active("blue").await?;
    println!("1. active: blue. The app asks {QUESTION:?}");
    let answer = scene.ask(false).answer().await?;
    println!("   answer: {answer:?}");
    expect_from(blue, &answer)?;

    println!("\n2. The app asks again, streamed; the switch to green happens mid-stream");
    // ChatOllama streams every answer, `invoke` too: only this one is slowed down. A
    // stream's pause is fixed when it starts, so it is lifted once the stream is under way.
    blue.set_stream_chunk_delay(STREAM_PAUSE);
    let mut stream = scene.ask(true);
    let mut chunks = Vec::new();
    while chunks.is_empty() {
        match stream.next().await? {
            Line::Chunk(chunk) => {
                println!("   chunk {}: {chunk:?}", chunks.len() + 1);
                chunks.push(chunk);
            }
            Line::Answer(a) => return Err(format!("the stream ended at once with {a:?}")),
        }
    }
    blue.set_stream_chunk_delay(Duration::ZERO);
    println!("   save the state file with active: green");
    let took = scene.switch_to("green").await?;
    let open = blue.in_flight();
    println!(
        "   green takes new requests {took:.1?} after the save; the stream is still open \
         on blue ({open} answer in flight)"
    );
    if open == 0 {
        return Err("the stream had ended before green took requests: no switch mid-stream".into());
    }
    let answer = loop {
        match stream.next().await? {
            Line::Chunk(chunk) => {
                println!("   chunk {}: {chunk:?}", chunks.len() + 1);
                chunks.push(chunk);
            }
            Line::Answer(answer) => break answer,
        }
    };
    println!("   the stream completes: {answer:?}");
    expect_from(blue, &answer)?;
    if chunks.concat() != answer {
        return Err(format!(
            "the chunks {chunks:?} do not add up to the answer {answer:?}"
        ));
    }

    println!("\n3. The app asks again (no change to the app)");
    let answer = scene.ask(false).answer().await?;
    println!("   answer: {answer:?}");
    expect_from(green, &answer)?;

    println!("\n4. Rollback: save the state file with active: blue");
    let took = scene.switch_to("blue").await?;
    println!("   blue takes new requests {took:.1?} after the save");
    let answer = scene.ask(false).answer().await?;
    println!("   answer: {answer:?}");
    expect_from(blue, &answer)?;
    Ok(())
}

#[tokio::main]
async fn main() -> ExitCode {
    println!("switchyard models: a LangChain app across a switch and a rollback\n");
    print!(
        "  provisioning Envoy and the Python clients (first run installs them into .tools/) ... "
    );
    let _ = std::io::stdout().flush();
    let started = Instant::now();
    let (envoy_bin, python) = tokio::task::spawn_blocking(|| {
        (common::tools::envoy_bin(), common::tools::python_clients())
    })
    .await
    .expect("provisioning thread");
    println!("done ({:.1?})", started.elapsed());
    println!("  envoy   {}", envoy_bin.display());
    println!("  python  {}", python.display());

    let blue = Backend::start("blue", "v1");
    let green = Backend::start("green", "v2");
    println!(
        "  blue    model v1, an Ollama-compatible server at http://{}",
        blue.addr()
    );
    println!(
        "  green   model v2, an Ollama-compatible server at http://{}",
        green.addr()
    );

    let listener: SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let cp = ControlPlane::start(&one_service(
        listener.port(),
        blue.addr(),
        green.addr(),
        "blue",
    ))
    .await;
    println!(
        "  switchyard xDS {}, state file {}",
        cp.xds_addr(),
        cp.state_path().display()
    );
    let envoy = Envoy::start("models-envoy", cp.xds_addr()).await;
    envoy.wait_live(Duration::from_secs(20)).await;
    println!("  envoy   http://{listener}: the app's ChatOllama(base_url=...), its only address\n");

    let scene = Scene {
        python,
        blue,
        green,
        listener,
        cp,
    };
    let outcome = tokio::select! {
        outcome = show(&scene) => outcome,
        _ = tokio::signal::ctrl_c() => Err("interrupted".to_owned()),
    };
    drop(envoy);
    scene.cp.stop().await;
    match outcome {
        Ok(()) => {
            println!(
                "\nmodels: every answer came from the active color; the stream in flight \
                 during the switch finished on the version it started on."
            );
            ExitCode::SUCCESS
        }
        Err(why) => {
            eprintln!("\nmodels: {why}");
            ExitCode::FAILURE
        }
    }
}
