//! The model APIs the sample backend stands in for, close enough that the official
//! Python clients (ollama, langchain-ollama, anthropic, google-genai) talk to it
//! unchanged:
//!
//! | API                  | paths                                                                   |
//! |----------------------|-------------------------------------------------------------------------|
//! | Ollama               | `GET /api/tags`, `GET /api/version`, `POST /api/show`, `POST /api/generate`, `POST /api/chat` |
//! | Anthropic Messages   | `POST /v1/messages` (needs an `anthropic-version` header)               |
//! | Gemini API           | `POST /{v1,v1beta,...}/models/{model}:generateContent`, `:streamGenerateContent?alt=sse` |
//! | Vertex AI            | `POST /{v1,v1beta1}/projects/{p}/locations/{l}/publishers/google/models/{model}:...` |
//!
//! Every answer's text is `"<color> <version>: <the last user message>"` (the
//! message cut to [`ECHO_CHARS`] characters), so a test can tell which version
//! answered. A streamed answer is that text in [`STREAM_CHUNKS`] pieces, framed
//! the API's way: Ollama's NDJSON lines ending with a `done: true` line (Ollama
//! streams unless the request says `"stream": false`), Anthropic's server-sent
//! events from `message_start` to `message_stop`, Gemini's `data:` events.
//! Errors come in each API's own error shape.
//!
//! Pure: the route comes from the method and path, the answer from the route,
//! the headers and the JSON body; the backend writes the answer's pieces with
//! its stream pause between them. The shapes follow the clients' own types
//! (ollama's pydantic models, anthropic's `Message` and stream events,
//! google-genai's `GenerateContentResponse` parsing).

use std::time::SystemTime;

use bytes::Bytes;
use hyper::{HeaderMap, Method, StatusCode};
use serde_json::{Value, json};

/// How many pieces a streamed answer's text is cut into.
pub const STREAM_CHUNKS: usize = 5;

/// The model `GET /api/tags` lists unless the backend is told another (`Backend::set_model_name`).
pub const DEFAULT_MODEL: &str = "clinical:latest";

/// How much of the last user message an answer echoes.
pub const ECHO_CHARS: usize = 40;

/// The header Anthropic's API requires on every request.
pub const ANTHROPIC_VERSION: &str = "anthropic-version";

/// The Ollama server version `GET /api/version` reports.
const OLLAMA_VERSION: &str = "0.12.0";

/// Which API a request belongs to, which decides the shape of its answers and errors.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Api {
    /// Not a model path: plain text `<color> <version>`.
    Plain,
    Ollama,
    Anthropic,
    Gemini,
}

/// What a request asks for, from its path alone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Route {
    Plain,
    Ollama(OllamaCall),
    AnthropicMessages,
    Gemini(GeminiCall),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OllamaCall {
    Tags,
    Version,
    Show,
    Generate,
    Chat,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GeminiCall {
    /// The model named in the path (`gemini-2.5-flash`).
    pub model: String,
    pub stream: bool,
    /// `?alt=sse`: server-sent events; otherwise a stream is one JSON array.
    pub sse: bool,
}

/// An answer: status, content type, and the body in pieces written in order with
/// the stream pause between two of them (one piece: not streamed).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    pub status: StatusCode,
    pub content_type: &'static str,
    pub pieces: Vec<Bytes>,
}

impl Route {
    /// The route of `path` (`query` for Gemini's `alt=sse`).
    pub fn of(path: &str, query: Option<&str>) -> Route {
        match path {
            "/api/tags" => return Route::Ollama(OllamaCall::Tags),
            "/api/version" => return Route::Ollama(OllamaCall::Version),
            "/api/show" => return Route::Ollama(OllamaCall::Show),
            "/api/generate" => return Route::Ollama(OllamaCall::Generate),
            "/api/chat" => return Route::Ollama(OllamaCall::Chat),
            "/v1/messages" => return Route::AnthropicMessages,
            _ => {}
        }
        gemini_call(path, query).map_or(Route::Plain, Route::Gemini)
    }

    pub fn api(&self) -> Api {
        match self {
            Route::Plain => Api::Plain,
            Route::Ollama(_) => Api::Ollama,
            Route::AnthropicMessages => Api::Anthropic,
            Route::Gemini(_) => Api::Gemini,
        }
    }

    /// Whether the route's answer needs the request body.
    pub fn reads_body(&self) -> bool {
        !matches!(
            self,
            Route::Plain | Route::Ollama(OllamaCall::Tags | OllamaCall::Version)
        )
    }

    fn method(&self) -> Method {
        match self {
            Route::Ollama(OllamaCall::Tags | OllamaCall::Version) => Method::GET,
            _ => Method::POST,
        }
    }
}

/// `/v1beta/models/gemini-2.5-flash:generateContent` or the Vertex AI shape
/// `/v1beta1/projects/p/locations/l/publishers/google/models/gemini-2.5-flash:streamGenerateContent`.
fn gemini_call(path: &str, query: Option<&str>) -> Option<GeminiCall> {
    let (version, rest) = path.strip_prefix('/')?.split_once('/')?;
    if !version.starts_with("v1") {
        return None;
    }
    let (name, method) = rest.rsplit_once(':')?;
    let model = match name.strip_prefix("models/") {
        Some(model) => model,
        None => {
            let segments: Vec<&str> = name.split('/').collect();
            match segments.as_slice() {
                [
                    "projects",
                    _,
                    "locations",
                    _,
                    "publishers",
                    _,
                    "models",
                    model,
                ] => *model,
                _ => return None,
            }
        }
    };
    if model.is_empty() || model.contains('/') {
        return None;
    }
    let stream = match method {
        "generateContent" => false,
        "streamGenerateContent" => true,
        _ => return None,
    };
    let sse = query
        .unwrap_or_default()
        .split('&')
        .any(|pair| pair == "alt=sse");
    Some(GeminiCall {
        model: model.to_owned(),
        stream,
        sse,
    })
}

/// The text every model answer carries: `"blue v1: <echo>"`.
pub fn answer_text(speaker: &str, message: &str) -> String {
    let message = message.trim();
    let echo: String = message.chars().take(ECHO_CHARS).collect();
    let cut = if echo.len() < message.len() {
        "..."
    } else {
        ""
    };
    format!("{speaker}: {echo}{cut}")
}

/// What the backend knows when it answers a model request.
pub struct Answering<'a> {
    /// `"<color> <version>"`.
    pub speaker: &'a str,
    /// The model `GET /api/tags` lists.
    pub model: &'a str,
    /// A number unique to this request in this backend (message and response ids).
    pub id: u64,
}

impl Answering<'_> {
    /// The answer to a request on `route` (not [`Route::Plain`]).
    pub fn answer(
        &self,
        route: &Route,
        method: &Method,
        headers: &HeaderMap,
        body: &[u8],
    ) -> Reply {
        let api = route.api();
        if *method != route.method() {
            let message = format!("method {method} not allowed, use {}", route.method());
            return api.error(self.speaker, StatusCode::METHOD_NOT_ALLOWED, &message);
        }
        let json = if route.reads_body() {
            match serde_json::from_slice::<Value>(body) {
                Ok(json) if json.is_object() => json,
                _ => {
                    let message = "the request body is not a JSON object";
                    return api.error(self.speaker, StatusCode::BAD_REQUEST, message);
                }
            }
        } else {
            Value::Null
        };
        let answered = match route {
            Route::Plain => panic!("bug: plain requests have no model answer"),
            Route::Ollama(call) => self.ollama(*call, &json),
            Route::AnthropicMessages => self.anthropic(headers, &json),
            Route::Gemini(call) => self.gemini(call, &json),
        };
        answered.unwrap_or_else(|(status, message)| api.error(self.speaker, status, &message))
    }

    fn ollama(&self, call: OllamaCall, json: &Value) -> Result<Reply, (StatusCode, String)> {
        let details = json!({
            "parent_model": "",
            "format": "gguf",
            "family": "llama",
            "families": ["llama"],
            "parameter_size": "8.0B",
            "quantization_level": "Q4_K_M",
        });
        let now = now_rfc3339();
        let whole = |value: Value| Ok(Reply::json(value));
        match call {
            OllamaCall::Version => whole(json!({ "version": OLLAMA_VERSION })),
            OllamaCall::Tags => whole(json!({ "models": [{
                "name": self.model,
                "model": self.model,
                "modified_at": now,
                "size": 4_920_753_328_u64,
                "digest": format!("{:0>64}", format!("{:x}", fnv(self.model))),
                "details": details,
            }]})),
            OllamaCall::Show => {
                // The client sends `model`; older ones sent `name`.
                let asked = json["model"].as_str().or(json["name"].as_str());
                if asked.is_some_and(|asked| !same_ollama_model(asked, self.model)) {
                    let message = format!("model '{}' not found", asked.unwrap_or_default());
                    return Err((StatusCode::NOT_FOUND, message));
                }
                whole(json!({
                    "modelfile": format!("FROM {}\n", self.model),
                    "parameters": "stop \"<|eot_id|>\"",
                    "template": "{{ .Prompt }}",
                    "details": details,
                    "model_info": { "general.architecture": "llama" },
                    "capabilities": ["completion"],
                    "modified_at": now,
                }))
            }
            OllamaCall::Generate | OllamaCall::Chat => {
                let model = required_str(json, "model")?;
                let message = if call == OllamaCall::Chat {
                    last_user_text(&json["messages"], "content")
                } else {
                    json["prompt"].as_str().unwrap_or_default().to_owned()
                };
                let text = answer_text(self.speaker, &message);
                let piece = |content: &str| match call {
                    OllamaCall::Chat => json!({
                        "model": model, "created_at": now,
                        "message": { "role": "assistant", "content": content },
                    }),
                    _ => json!({ "model": model, "created_at": now, "response": content }),
                };
                let stats = json!({
                    "done": true,
                    "done_reason": "stop",
                    "total_duration": 412_000_000_u64,
                    "load_duration": 1_900_000_u64,
                    "prompt_eval_count": tokens(&message),
                    "prompt_eval_duration": 120_000_000_u64,
                    "eval_count": tokens(&text),
                    "eval_duration": 290_000_000_u64,
                });
                // Ollama streams unless told not to.
                if json["stream"].as_bool() == Some(false) {
                    let mut whole_answer = piece(&text);
                    merge(&mut whole_answer, stats);
                    return whole(whole_answer);
                }
                let mut done = piece("");
                merge(&mut done, stats);
                let mut pieces: Vec<Bytes> = split_even(&text, STREAM_CHUNKS)
                    .iter()
                    .map(|part| {
                        let mut line = piece(part);
                        merge(&mut line, json!({ "done": false }));
                        Bytes::from(line.to_string() + "\n")
                    })
                    .collect();
                pieces.push(Bytes::from(done.to_string() + "\n"));
                Ok(Reply::streamed("application/x-ndjson", pieces))
            }
        }
    }

    fn anthropic(&self, headers: &HeaderMap, json: &Value) -> Result<Reply, (StatusCode, String)> {
        let bad = |message: &str| (StatusCode::BAD_REQUEST, message.to_owned());
        if !headers.contains_key(ANTHROPIC_VERSION) {
            return Err(bad("anthropic-version: header is required"));
        }
        let model = required_str(json, "model")?;
        if !json["max_tokens"].is_u64() {
            return Err(bad("max_tokens: Field required"));
        }
        if json["messages"].as_array().is_none_or(|m| m.is_empty()) {
            return Err(bad("messages: at least one message is required"));
        }
        let message = last_user_text(&json["messages"], "content");
        let text = answer_text(self.speaker, &message);
        let id = format!("msg_{:024x}", self.id);
        let (input_tokens, output_tokens) = (tokens(&message), tokens(&text));
        if json["stream"].as_bool() != Some(true) {
            return Ok(Reply::json(json!({
                "id": id,
                "type": "message",
                "role": "assistant",
                "model": model,
                "content": [{ "type": "text", "text": text }],
                "stop_reason": "end_turn",
                "stop_sequence": null,
                "usage": { "input_tokens": input_tokens, "output_tokens": output_tokens },
            })));
        }
        let event = |name: &str, data: Value| format!("event: {name}\ndata: {data}\n\n");
        let delta = |part: &str| {
            event(
                "content_block_delta",
                json!({ "type": "content_block_delta", "index": 0,
                        "delta": { "type": "text_delta", "text": part } }),
            )
        };
        let parts = split_even(&text, STREAM_CHUNKS);
        // The first piece opens the message and carries the first delta; the last
        // closes it; the pause falls between text deltas, as a model's would.
        let mut pieces = vec![
            event(
                "message_start",
                json!({ "type": "message_start", "message": {
                    "id": id, "type": "message", "role": "assistant", "model": model,
                    "content": [], "stop_reason": null, "stop_sequence": null,
                    "usage": { "input_tokens": input_tokens, "output_tokens": 1 },
                }}),
            ) + &event(
                "content_block_start",
                json!({ "type": "content_block_start", "index": 0,
                        "content_block": { "type": "text", "text": "" } }),
            ) + &event("ping", json!({ "type": "ping" }))
                + &delta(&parts[0]),
        ];
        pieces.extend(parts[1..].iter().map(|part| delta(part)));
        let last = pieces.last_mut().expect("at least one piece");
        last.push_str(&event(
            "content_block_stop",
            json!({ "type": "content_block_stop", "index": 0 }),
        ));
        last.push_str(&event(
            "message_delta",
            json!({ "type": "message_delta",
                    "delta": { "stop_reason": "end_turn", "stop_sequence": null },
                    "usage": { "output_tokens": output_tokens } }),
        ));
        last.push_str(&event("message_stop", json!({ "type": "message_stop" })));
        Ok(Reply::streamed(
            "text/event-stream",
            pieces.into_iter().map(Bytes::from).collect(),
        ))
    }

    fn gemini(&self, call: &GeminiCall, json: &Value) -> Result<Reply, (StatusCode, String)> {
        if json["contents"].as_array().is_none_or(|c| c.is_empty()) {
            let message = "* GenerateContentRequest.contents: contents is not specified";
            return Err((StatusCode::BAD_REQUEST, message.to_owned()));
        }
        let message = last_user_text(&json["contents"], "parts");
        let text = answer_text(self.speaker, &message);
        let usage = json!({
            "promptTokenCount": tokens(&message),
            "candidatesTokenCount": tokens(&text),
            "totalTokenCount": tokens(&message) + tokens(&text),
        });
        let chunk = |part: &str, last: bool| {
            let mut candidate = json!({
                "content": { "role": "model", "parts": [{ "text": part }] },
                "index": 0,
            });
            if last {
                merge(&mut candidate, json!({ "finishReason": "STOP" }));
            }
            json!({
                "candidates": [candidate],
                "usageMetadata": usage,
                "modelVersion": call.model,
                "responseId": format!("resp-{:x}", self.id),
            })
        };
        if !call.stream {
            return Ok(Reply::json(chunk(&text, true)));
        }
        let parts = split_even(&text, STREAM_CHUNKS);
        let chunks = parts
            .iter()
            .enumerate()
            .map(|(i, part)| chunk(part, i + 1 == parts.len()));
        if call.sse {
            let pieces = chunks
                .map(|chunk| Bytes::from(format!("data: {chunk}\r\n\r\n")))
                .collect();
            Ok(Reply::streamed("text/event-stream", pieces))
        } else {
            // Without alt=sse the API answers one JSON array of the chunks.
            Ok(Reply::json(Value::Array(chunks.collect())))
        }
    }
}

impl Api {
    /// An error in the API's own shape; `message` is prefixed with the speaker
    /// (`"blue v1 ..."`), so a test can tell which backend refused.
    pub fn error(self, speaker: &str, status: StatusCode, message: &str) -> Reply {
        let message = format!("{speaker} {message}");
        let body = match self {
            Api::Plain => return Reply::text(status, message + "\n"),
            Api::Ollama => json!({ "error": message }),
            Api::Anthropic => json!({
                "type": "error",
                "error": { "type": anthropic_error_type(status), "message": message },
            }),
            Api::Gemini => json!({ "error": {
                "code": status.as_u16(),
                "message": message,
                "status": google_status(status),
            }}),
        };
        Reply {
            status,
            ..Reply::json(body)
        }
    }
}

fn anthropic_error_type(status: StatusCode) -> &'static str {
    match status.as_u16() {
        401 => "authentication_error",
        403 => "permission_error",
        404 => "not_found_error",
        429 => "rate_limit_error",
        500.. => "api_error",
        _ => "invalid_request_error",
    }
}

fn google_status(status: StatusCode) -> &'static str {
    match status.as_u16() {
        401 => "UNAUTHENTICATED",
        403 => "PERMISSION_DENIED",
        404 => "NOT_FOUND",
        429 => "RESOURCE_EXHAUSTED",
        503 => "UNAVAILABLE",
        500.. => "INTERNAL",
        _ => "INVALID_ARGUMENT",
    }
}

impl Reply {
    fn json(value: Value) -> Reply {
        Reply {
            status: StatusCode::OK,
            content_type: "application/json",
            pieces: vec![Bytes::from(value.to_string())],
        }
    }

    fn text(status: StatusCode, text: String) -> Reply {
        Reply {
            status,
            content_type: "text/plain",
            pieces: vec![Bytes::from(text)],
        }
    }

    fn streamed(content_type: &'static str, pieces: Vec<Bytes>) -> Reply {
        Reply {
            status: StatusCode::OK,
            content_type,
            pieces,
        }
    }
}

fn required_str<'j>(json: &'j Value, field: &str) -> Result<&'j str, (StatusCode, String)> {
    json[field]
        .as_str()
        .filter(|value| !value.is_empty())
        .ok_or_else(|| (StatusCode::BAD_REQUEST, format!("{field} is required")))
}

/// The text of the last message whose role is `user` (or has no role) in
/// `messages`; its `field` is a string or a list of parts with `text`
/// (Anthropic's content blocks, Gemini's parts).
fn last_user_text(messages: &Value, field: &str) -> String {
    let Some(messages) = messages.as_array() else {
        return String::new();
    };
    let Some(last) = messages
        .iter()
        .rev()
        .find(|m| m["role"].as_str().is_none_or(|role| role == "user"))
    else {
        return String::new();
    };
    match &last[field] {
        Value::String(text) => text.clone(),
        Value::Array(parts) => parts
            .iter()
            .filter_map(|part| part["text"].as_str())
            .collect::<Vec<_>>()
            .join(" "),
        _ => String::new(),
    }
}

/// `"clinical"` names `"clinical:latest"`, as in Ollama.
fn same_ollama_model(asked: &str, listed: &str) -> bool {
    let full = |name: &str| {
        if name.contains(':') {
            name.to_owned()
        } else {
            format!("{name}:latest")
        }
    };
    full(asked) == full(listed)
}

/// A stand-in token count: words, at least one.
fn tokens(text: &str) -> usize {
    text.split_whitespace().count().max(1)
}

/// `text` cut into `n` pieces of about equal length on character boundaries
/// (fewer if it has fewer characters, one empty piece if it is empty).
pub fn split_even(text: &str, n: usize) -> Vec<String> {
    let chars: Vec<char> = text.chars().collect();
    if chars.is_empty() {
        return vec![String::new()];
    }
    let n = n.clamp(1, chars.len());
    (0..n)
        .map(|i| {
            chars[i * chars.len() / n..(i + 1) * chars.len() / n]
                .iter()
                .collect()
        })
        .collect()
}

/// Adds `extra`'s fields to the object `into`.
fn merge(into: &mut Value, extra: Value) {
    if let (Value::Object(into), Value::Object(extra)) = (into, extra) {
        into.extend(extra);
    }
}

fn now_rfc3339() -> String {
    humantime::format_rfc3339_nanos(SystemTime::now()).to_string()
}

/// A stable stand-in digest for a model name (FNV-1a).
fn fnv(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gemini_and_vertex_paths_name_the_model() {
        let call = |path, query| match Route::of(path, query) {
            Route::Gemini(call) => Some((call.model, call.stream, call.sse)),
            _ => None,
        };
        assert_eq!(
            call("/v1beta/models/gemini-2.5-flash:generateContent", None),
            Some(("gemini-2.5-flash".into(), false, false))
        );
        assert_eq!(
            call(
                "/v1beta1/projects/p/locations/us-central1/publishers/google/models/g:streamGenerateContent",
                Some("alt=sse")
            ),
            Some(("g".into(), true, true))
        );
        assert_eq!(call("/v1/summarize", None), None);
        assert_eq!(call("/v1/models/g:embedContent", None), None);
    }

    #[test]
    fn split_even_keeps_every_character() {
        let parts = split_even("blue v1: héllo", 5);
        assert_eq!(parts.len(), 5);
        assert_eq!(parts.concat(), "blue v1: héllo");
        assert_eq!(split_even("ab", 5), ["a", "b"]);
    }
}
