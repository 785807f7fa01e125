//! The sample backend stands in for the Ollama, Anthropic Messages and Gemini APIs
//! with their real shapes, whole and streamed, says which color and version
//! answered, paces its streams, refuses requests without the required
//! credential in each API's error shape, and serves HTTPS recording the SNI.
//! A plain hyper client, no Envoy.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, Version};
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{Value, json};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};

use crate::common::backend::Backend;
use crate::common::backend::model_api::STREAM_CHUNKS;
use crate::common::tls::Pki;

#[tokio::test]
async fn ollama_streams_ndjson_unless_told_not_to_and_lists_its_model() {
    let backend = Backend::start("blue", "v1");
    backend.set_model_name("triage:latest");
    let chat = json!({ "model": "triage", "messages": [
        { "role": "system", "content": "be brief" },
        { "role": "user", "content": "how is the patient?" },
    ]});

    let streamed = call(backend.addr(), "POST", "/api/chat", &[], &chat).await;
    assert_eq!(
        (streamed.status, streamed.content_type.as_str()),
        (200, "application/x-ndjson")
    );
    let lines: Vec<Value> = streamed.text().lines().map(parse).collect();
    assert_eq!(lines.len(), STREAM_CHUNKS + 1, "{lines:?}");
    let (done, pieces) = lines.split_last().unwrap();
    assert!(
        pieces
            .iter()
            .all(|l| l["done"] == false && l["message"]["role"] == "assistant")
    );
    let text: String = pieces
        .iter()
        .map(|l| l["message"]["content"].as_str().unwrap())
        .collect();
    assert_eq!(text, "blue v1: how is the patient?");
    assert_eq!(text, backend.model_answer("how is the patient?"));
    assert_eq!(
        (&done["done"], &done["done_reason"]),
        (&json!(true), &json!("stop"))
    );
    assert!(
        done["eval_count"].as_u64() > Some(0) && done["total_duration"].is_u64(),
        "{done}"
    );
    assert_eq!(done["model"], "triage");

    let mut whole = chat.clone();
    whole["stream"] = json!(false);
    let answer = call(backend.addr(), "POST", "/api/chat", &[], &whole)
        .await
        .json();
    assert_eq!(answer["message"]["content"], "blue v1: how is the patient?");
    assert_eq!(
        (&answer["done"], &answer["done_reason"]),
        (&json!(true), &json!("stop"))
    );

    let generate = json!({ "model": "triage", "prompt": "summarize" });
    let generated = call(backend.addr(), "POST", "/api/generate", &[], &generate).await;
    let text: String = generated
        .text()
        .lines()
        .map(|l| parse(l)["response"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(text, "blue v1: summarize");

    let tags = call(backend.addr(), "GET", "/api/tags", &[], &Value::Null)
        .await
        .json();
    assert_eq!(tags["models"][0]["name"], "triage:latest");
    assert!(tags["models"][0]["details"]["family"].is_string(), "{tags}");
    let show = call(
        backend.addr(),
        "POST",
        "/api/show",
        &[],
        &json!({ "model": "other" }),
    )
    .await;
    assert_eq!(show.status, 404);
    assert!(show.json()["error"].as_str().unwrap().contains("not found"));
}

#[tokio::test]
async fn anthropic_messages_need_a_version_header_and_stream_the_real_event_sequence() {
    let backend = Backend::start("green", "v2");
    let request = json!({ "model": "claude-x", "max_tokens": 64, "messages": [
        { "role": "user", "content": [{ "type": "text", "text": "triage this" }] },
    ]});

    let unversioned = call(backend.addr(), "POST", "/v1/messages", &[], &request).await;
    assert_eq!(unversioned.status, 400);
    let error = unversioned.json();
    assert_eq!(
        (&error["type"], &error["error"]["type"]),
        (&json!("error"), &json!("invalid_request_error"))
    );

    let versioned = [("anthropic-version", "2023-06-01")];
    let message = call(backend.addr(), "POST", "/v1/messages", &versioned, &request)
        .await
        .json();
    assert_eq!(message["type"], "message");
    assert_eq!(message["role"], "assistant");
    assert_eq!(
        message["content"],
        json!([{ "type": "text", "text": "green v2: triage this" }])
    );
    assert_eq!(
        (&message["stop_reason"], &message["stop_sequence"]),
        (&json!("end_turn"), &Value::Null)
    );
    assert!(
        message["usage"]["output_tokens"].is_u64() && message["id"].is_string(),
        "{message}"
    );

    let mut streaming = request.clone();
    streaming["stream"] = json!(true);
    let streamed = call(
        backend.addr(),
        "POST",
        "/v1/messages",
        &versioned,
        &streaming,
    )
    .await;
    assert_eq!(streamed.content_type, "text/event-stream");
    let events = sse_events(&streamed.text());
    let names: Vec<&str> = events.iter().map(|(name, _)| name.as_str()).collect();
    let mut expected = vec!["message_start", "content_block_start", "ping"];
    expected.extend(["content_block_delta"; STREAM_CHUNKS]);
    expected.extend(["content_block_stop", "message_delta", "message_stop"]);
    assert_eq!(names, expected);
    for (name, data) in &events {
        assert_eq!(
            data["type"],
            name.as_str(),
            "an event's data names its type"
        );
    }
    let text: String = events
        .iter()
        .filter(|(name, _)| name == "content_block_delta")
        .map(|(_, data)| data["delta"]["text"].as_str().unwrap())
        .collect();
    assert_eq!(text, "green v2: triage this");
    let delta = &events[events.len() - 2].1;
    assert_eq!(delta["delta"]["stop_reason"], "end_turn");
    assert!(delta["usage"]["output_tokens"].is_u64(), "{delta}");
}

#[tokio::test]
async fn gemini_and_vertex_paths_answer_whole_and_as_server_sent_events() {
    let backend = Backend::start("blue", "v1");
    let request =
        json!({ "contents": [{ "role": "user", "parts": [{ "text": "hello gemini" }] }] });

    for path in [
        "/v1beta/models/gemini-2.5-flash:generateContent",
        "/v1beta1/projects/p/locations/us-central1/publishers/google/models/gemini-2.5-flash:generateContent",
    ] {
        let answer = call(backend.addr(), "POST", path, &[], &request)
            .await
            .json();
        let candidate = &answer["candidates"][0];
        assert_eq!(candidate["content"]["role"], "model", "{path}");
        assert_eq!(
            candidate["content"]["parts"][0]["text"],
            "blue v1: hello gemini"
        );
        assert_eq!(
            (&candidate["finishReason"], &candidate["index"]),
            (&json!("STOP"), &json!(0))
        );
        assert_eq!(answer["modelVersion"], "gemini-2.5-flash");
        let usage = &answer["usageMetadata"];
        assert_eq!(
            usage["totalTokenCount"].as_u64(),
            Some(
                usage["promptTokenCount"].as_u64().unwrap()
                    + usage["candidatesTokenCount"].as_u64().unwrap()
            )
        );
    }

    let path = "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse";
    let streamed = call(backend.addr(), "POST", path, &[], &request).await;
    assert_eq!(streamed.content_type, "text/event-stream");
    let body = streamed.text();
    let chunks: Vec<Value> = body
        .split_terminator("\r\n\r\n")
        .map(|event| parse(event.strip_prefix("data: ").expect("a data event")))
        .collect();
    assert_eq!(chunks.len(), STREAM_CHUNKS, "{body}");
    let text: String = chunks
        .iter()
        .map(|c| {
            c["candidates"][0]["content"]["parts"][0]["text"]
                .as_str()
                .unwrap()
        })
        .collect();
    assert_eq!(text, "blue v1: hello gemini");
    let finished: Vec<bool> = chunks
        .iter()
        .map(|c| c["candidates"][0]["finishReason"] == "STOP")
        .collect();
    assert_eq!(finished.iter().filter(|f| **f).count(), 1);
    assert!(finished[STREAM_CHUNKS - 1], "the last chunk finishes");
}

#[tokio::test]
async fn a_streamed_answer_stays_in_flight_through_its_pauses() {
    let backend = Backend::start("blue", "v1");
    let settings = call(
        backend.addr(),
        "POST",
        "/_backend/stream?ms=150",
        &[],
        &Value::Null,
    )
    .await;
    assert_eq!(settings.json()["stream_chunk_delay_ms"], 150);
    let addr = backend.addr();
    let chat =
        json!({ "model": "clinical", "messages": [{ "role": "user", "content": "hold on" }] });
    let started = Instant::now();
    let stream = tokio::spawn(async move { call(addr, "POST", "/api/chat", &[], &chat).await });
    assert_eventually!(Duration::from_secs(2), backend.in_flight() == 1);
    let streamed = stream.await.unwrap();
    let elapsed = started.elapsed();

    assert!(
        elapsed >= Duration::from_millis(150 * STREAM_CHUNKS as u64),
        "{elapsed:?}"
    );
    assert!(
        streamed.frames.len() > STREAM_CHUNKS,
        "each piece its own write: {:?}",
        streamed.frames
    );
    assert_eq!(backend.in_flight(), 0);
    backend.set_stream_chunk_delay(Duration::ZERO);
    let quick = call(backend.addr(), "GET", "/_backend", &[], &Value::Null)
        .await
        .json();
    assert_eq!(quick["stream_chunk_delay_ms"], 0);
}

#[tokio::test]
async fn a_required_header_refuses_missing_and_wrong_values_in_each_apis_shape() {
    let backend = Backend::start("blue", "v1");
    backend.require_header("x-api-key", &["old-key"]);
    let chat = json!({ "model": "clinical", "stream": false,
                       "messages": [{ "role": "user", "content": "hi" }] });
    let anthropic =
        json!({ "model": "c", "max_tokens": 8, "messages": [{ "role": "user", "content": "hi" }] });
    let gemini = json!({ "contents": [{ "parts": [{ "text": "hi" }] }] });
    let wrong = [("x-api-key", "stolen"), ("anthropic-version", "2023-06-01")];

    let ollama = call(backend.addr(), "POST", "/api/chat", &[], &chat).await;
    assert_eq!(ollama.status, 401);
    assert_eq!(
        ollama.json()["error"],
        "blue v1 unauthorized: missing header x-api-key"
    );
    let claude = call(backend.addr(), "POST", "/v1/messages", &wrong, &anthropic).await;
    assert_eq!(claude.status, 401);
    assert_eq!(claude.json()["error"]["type"], "authentication_error");
    let path = "/v1beta/models/g:generateContent";
    let google = call(backend.addr(), "POST", path, &wrong, &gemini).await;
    assert_eq!(
        (google.status, &google.json()["error"]["status"]),
        (401, &json!("UNAUTHENTICATED"))
    );
    assert_eq!(
        call(backend.addr(), "GET", "/predict", &[], &Value::Null)
            .await
            .status,
        401
    );
    assert_eq!(backend.rejected_requests(), 4);
    assert_eq!(
        backend.recent_requests()[1].header("x-api-key"),
        Some("stolen")
    );
    // Health checks and control paths need no credential.
    assert_eq!(
        call(backend.addr(), "GET", "/healthz", &[], &Value::Null)
            .await
            .status,
        200
    );
    let settings = call(backend.addr(), "GET", "/_backend", &[], &Value::Null).await;
    assert_eq!(
        settings.json()["require_header"],
        json!({ "name": "x-api-key", "accepted_values": 1 })
    );
    assert!(
        !settings.text().contains("old-key"),
        "the values stay secret: {}",
        settings.text()
    );

    // A rotation: both keys for a while, then only the new one.
    backend.require_header("x-api-key", &["old-key", "new-key"]);
    for key in ["old-key", "new-key"] {
        let answer = call(
            backend.addr(),
            "POST",
            "/api/chat",
            &[("x-api-key", key)],
            &chat,
        )
        .await;
        assert_eq!(answer.json()["message"]["content"], "blue v1: hi", "{key}");
    }
    backend.require_header("x-api-key", &["new-key"]);
    let old = call(
        backend.addr(),
        "POST",
        "/api/chat",
        &[("x-api-key", "old-key")],
        &chat,
    )
    .await;
    assert_eq!(old.status, 401);
    assert_eq!(backend.rejected_requests(), 5);
}

#[tokio::test]
async fn a_tls_backend_speaks_h2_and_http1_and_records_the_sni() {
    let pki = Pki::new("backend");
    let identity = pki.issue("backend", &["localhost"]);
    let backend = Backend::start_tls("green", "v2", &identity.cert, &identity.key);
    assert!(backend.is_tls());

    let h2 = call_tls(backend.addr(), &pki, "localhost", b"h2", "/predict").await;
    assert_eq!(
        (h2.status, h2.version, h2.text()),
        (200, Version::HTTP_2, "green v2\n".to_owned())
    );
    let h1 = call_tls(backend.addr(), &pki, "localhost", b"http/1.1", "/api/tags").await;
    assert_eq!((h1.status, h1.version), (200, Version::HTTP_11));
    assert_eq!(h1.json()["models"][0]["name"], "clinical:latest");

    let seen = backend.recent_requests();
    assert_eq!(seen.len(), 2);
    assert!(
        seen.iter().all(|r| r.sni.as_deref() == Some("localhost")),
        "{seen:?}"
    );
    let plain = Backend::start("blue", "v1");
    call(plain.addr(), "GET", "/predict", &[], &Value::Null).await;
    assert_eq!(plain.recent_requests()[0].sni, None);
}

/// A response, with its body as the data frames it arrived in.
#[derive(Debug)]
struct Answer {
    status: u16,
    version: Version,
    content_type: String,
    frames: Vec<Bytes>,
}

impl Answer {
    fn text(&self) -> String {
        String::from_utf8(self.frames.concat()).expect("a UTF-8 body")
    }

    fn json(&self) -> Value {
        parse(&self.text())
    }
}

fn parse(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

/// `event: NAME\ndata: JSON\n\n` events, in order.
fn sse_events(body: &str) -> Vec<(String, Value)> {
    body.split_terminator("\n\n")
        .map(|event| {
            let (name, data) = event.split_once('\n').expect("an event and its data");
            let name = name.strip_prefix("event: ").expect("an event line");
            (
                name.to_owned(),
                parse(data.strip_prefix("data: ").expect("a data line")),
            )
        })
        .collect()
}

/// One HTTP/1.1 request on a fresh plain connection; `body` is sent as JSON
/// unless it is null.
async fn call(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &Value,
) -> Answer {
    let mut request = Request::builder()
        .method(method)
        .uri(path)
        .header("host", "models.example");
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let body = if body.is_null() {
        Bytes::new()
    } else {
        Bytes::from(body.to_string())
    };
    let request = request.body(Full::new(body)).unwrap();
    let stream = TcpStream::connect(addr)
        .await
        .expect("connect to the backend");
    exchange(stream, false, request).await
}

/// `GET path` over TLS to `addr`, trusting `pki`'s CA, asking for `server_name`
/// and offering the one ALPN protocol `alpn`.
async fn call_tls(
    addr: SocketAddr,
    pki: &Pki,
    server_name: &str,
    alpn: &[u8],
    path: &str,
) -> Answer {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(pki.ca_path()).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![alpn.to_vec()];
    let tcp = TcpStream::connect(addr)
        .await
        .expect("connect to the backend");
    let name = ServerName::try_from(server_name.to_owned()).unwrap();
    let tls = TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .expect("TLS handshake");
    let h2 = alpn == b"h2";
    let mut request = Request::get(path);
    if !h2 {
        request = request.header("host", server_name);
    } else {
        request = request.uri(format!("https://{server_name}{path}"));
    }
    exchange(tls, h2, request.body(Full::new(Bytes::new())).unwrap()).await
}

async fn exchange<Io>(io: Io, h2: bool, request: Request<Full<Bytes>>) -> Answer
where
    Io: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let io = TokioIo::new(io);
    let response = if h2 {
        let (mut sender, connection) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
                .await
                .expect("h2 handshake");
        tokio::spawn(connection);
        sender.send_request(request).await
    } else {
        let (mut sender, connection) = hyper::client::conn::http1::handshake(io)
            .await
            .expect("handshake");
        tokio::spawn(connection);
        sender.send_request(request).await
    }
    .expect("a response");
    let status = response.status().as_u16();
    let version = response.version();
    let content_type = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let mut body = response.into_body();
    let mut frames = Vec::new();
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame.expect("the body arrives whole").into_data() {
            frames.push(data);
        }
    }
    Answer {
        status,
        version,
        content_type,
        frames,
    }
}
