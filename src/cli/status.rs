//! `switchyard status`: a running server's `GET /status` as tables an operator can read
//! at a glance: the state in force, the last rejected file, each service's colors and
//! weights, and each proxy's sync status per resource type.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::time::Duration;

use serde_json::Value;

use super::http::{self, HttpError};

/// How long `status` waits for the admin server, in total.
pub const TIMEOUT: Duration = Duration::from_secs(5);

/// The resource types in `/status`, in push order.
const TYPES: [&str; 4] = ["clusters", "endpoints", "listeners", "routes"];

/// Why `/status` could not be read.
#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    /// Nothing (or nothing in time) answered at the address.
    #[error("cannot reach switchyard admin at {addr}: {source}")]
    Unreachable { addr: String, source: HttpError },
    /// Something answered, but not with switchyard's `/status`.
    #[error("switchyard admin at {addr} gave no status: {reason}")]
    BadAnswer { addr: String, reason: String },
}

/// Reads `GET http://{addr}/status` and parses it as JSON.
pub fn fetch_status(addr: &str) -> Result<Value, StatusError> {
    let response = http::get(addr, "/status", TIMEOUT).map_err(|source| match source {
        HttpError::Malformed(reason) => StatusError::BadAnswer {
            addr: addr.to_owned(),
            reason,
        },
        other => StatusError::Unreachable {
            addr: addr.to_owned(),
            source: other,
        },
    })?;
    let bad = |reason: String| StatusError::BadAnswer {
        addr: addr.to_owned(),
        reason,
    };
    if response.status != 200 {
        let body = String::from_utf8_lossy(&response.body);
        return Err(bad(format!(
            "HTTP {}: {}",
            response.status,
            body.lines().next().unwrap_or_default().trim()
        )));
    }
    let json: Value = serde_json::from_slice(&response.body)
        .map_err(|e| bad(format!("the answer is not JSON: {e}")))?;
    if !json.is_object() || json.get("proxies").is_none() {
        return Err(bad("the JSON is not switchyard's /status".to_owned()));
    }
    Ok(json)
}

/// How one proxy stands on one resource type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TypeState {
    /// Not subscribed (yet).
    Unsubscribed,
    /// The latest version is acknowledged and nothing newer is due.
    Ok,
    /// A version is sent and not acknowledged yet, or a newer one is due.
    Stale,
    /// The proxy rejected the latest version sent.
    Rejected,
}

impl TypeState {
    fn of(t: &Value) -> TypeState {
        let sent = t["sent"]["version"].as_str();
        if sent.is_some() && t["rejected"]["version"].as_str() == sent {
            return TypeState::Rejected;
        }
        match t["synced"].as_bool() {
            Some(true) => TypeState::Ok,
            Some(false) => TypeState::Stale,
            None => TypeState::Unsubscribed,
        }
    }

    fn label(self) -> &'static str {
        match self {
            TypeState::Unsubscribed => "-",
            TypeState::Ok => "ok",
            TypeState::Stale => "stale",
            TypeState::Rejected => "rejected",
        }
    }
}

/// `/status` JSON as text: a header on the state in force and the last rejection, a table
/// of services and a table of proxies, each proxy's rejections and pending types below it.
/// Fields missing from `json` show as `-` rather than failing, so an older or newer server
/// still gets a readable answer.
pub fn render_status(json: &Value) -> String {
    let mut out = String::new();
    render_state(&mut out, &json["state"]);
    render_rejection(&mut out, &json["rejected"]);
    out.push('\n');
    render_services(&mut out, &json["state"]["services"]);
    out.push('\n');
    render_proxies(&mut out, &json["proxies"]);
    out
}

fn text(v: &Value) -> &str {
    v.as_str().filter(|s| !s.is_empty()).unwrap_or("-")
}

fn number(v: &Value) -> String {
    v.as_u64().map_or_else(|| "-".to_owned(), |n| n.to_string())
}

fn render_state(out: &mut String, state: &Value) {
    if state.is_null() {
        out.push_str("state: none loaded yet (switchyard is not ready)\n");
        return;
    }
    let _ = writeln!(
        out,
        "state {} (accepted {})",
        text(&state["version"]),
        text(&state["accepted_at"])
    );
    let listeners: Vec<String> = array(&state["listeners"])
        .iter()
        .map(|l| {
            let address = text(&l["address"]);
            let port = number(&l["port"]);
            let address = if address.contains(':') {
                format!("[{address}]:{port}")
            } else {
                format!("{address}:{port}")
            };
            format!("{} ({address})", text(&l["name"]))
        })
        .collect();
    if !listeners.is_empty() {
        let _ = writeln!(out, "listeners: {}", listeners.join(", "));
    }
}

fn render_rejection(out: &mut String, rejected: &Value) {
    if rejected.is_null() {
        out.push_str("last rejection: none\n");
        return;
    }
    let _ = writeln!(
        out,
        "last rejection: {} at {} (the state above stays in force)",
        text(&rejected["path"]),
        text(&rejected["rejected_at"])
    );
    for e in array(&rejected["errors"]) {
        let _ = writeln!(out, "  {}", text(e));
    }
}

fn render_services(out: &mut String, services: &Value) {
    let services = array(services);
    if services.is_empty() {
        out.push_str("no services\n");
        return;
    }
    let rows = services
        .iter()
        .map(|s| {
            let domains: Vec<&str> = array(&s["domains"]).iter().map(text).collect();
            vec![
                text(&s["name"]).to_owned(),
                text(&s["listener"]).to_owned(),
                text(&s["active"]).to_owned(),
                number(&s["weights"]["blue"]),
                number(&s["weights"]["green"]),
                domains.join(", "),
            ]
        })
        .collect();
    out.push_str(&table(
        &[
            ("SERVICE", Align::Left),
            ("LISTENER", Align::Left),
            ("ACTIVE", Align::Left),
            ("BLUE", Align::Right),
            ("GREEN", Align::Right),
            ("DOMAINS", Align::Left),
        ],
        rows,
    ));
}

fn render_proxies(out: &mut String, proxies: &Value) {
    let proxies = array(proxies);
    if proxies.is_empty() {
        out.push_str("no proxies connected\n");
        return;
    }
    // Two streams from one node id (a restart racing the old stream's end, or two proxies
    // configured alike) are told apart by stream id.
    let mut per_node: HashMap<&str, usize> = HashMap::new();
    for p in proxies {
        *per_node.entry(text(&p["node_id"])).or_default() += 1;
    }
    let mut rows = Vec::new();
    let mut details: Vec<Vec<String>> = Vec::new();
    for p in proxies {
        let node = text(&p["node_id"]);
        let node = if per_node[node] > 1 {
            format!("{node} (stream {})", number(&p["stream_id"]))
        } else {
            node.to_owned()
        };
        let states = TYPES.map(|t| TypeState::of(&p[t]));
        let status = if states.contains(&TypeState::Rejected) {
            "REJECTED"
        } else if states.iter().all(|s| *s == TypeState::Unsubscribed) {
            "connecting"
        } else if p["synced"].as_bool() == Some(true) {
            "synced"
        } else {
            "stale"
        };
        let mut row = vec![
            node,
            text(&p["node_cluster"]).to_owned(),
            text(&p["envoy_version"]).to_owned(),
            status.to_owned(),
        ];
        row.extend(states.iter().map(|s| s.label().to_owned()));
        rows.push(row);
        details.push(
            TYPES
                .iter()
                .zip(states)
                .filter_map(|(t, s)| detail(t, s, &p[*t]))
                .collect(),
        );
    }
    let header = [
        ("PROXY (node)", Align::Left),
        ("CLUSTER", Align::Left),
        ("ENVOY", Align::Left),
        ("STATUS", Align::Left),
        ("CLUSTERS", Align::Left),
        ("ENDPOINTS", Align::Left),
        ("LISTENERS", Align::Left),
        ("ROUTES", Align::Left),
    ];
    let table = table(&header, rows);
    let mut lines = table.lines();
    if let Some(h) = lines.next() {
        let _ = writeln!(out, "{h}");
    }
    for (line, details) in lines.zip(details) {
        let _ = writeln!(out, "{line}");
        for d in details {
            let _ = writeln!(out, "{d}");
        }
    }
}

/// The line under a proxy explaining a rejected or stale type; `None` when all is well.
fn detail(type_name: &str, state: TypeState, t: &Value) -> Option<String> {
    match state {
        TypeState::Rejected => {
            let message = text(&t["rejected"]["message"]).trim();
            // Envoy's messages can span lines; keep them under the proxy they concern.
            let message = message.lines().collect::<Vec<_>>().join("\n      ");
            Some(format!(
                "  {type_name} rejected version {}: {message}",
                text(&t["rejected"]["version"])
            ))
        }
        TypeState::Stale => {
            let sent = t["sent"]["version"].as_str();
            let acked = t["acked"]["version"].as_str();
            Some(match (sent, acked) {
                (Some(s), a) if Some(s) != a => format!(
                    "  {type_name} version {s} sent, not acknowledged yet (acknowledged: {})",
                    a.unwrap_or("none")
                ),
                (_, Some(a)) => {
                    format!("  {type_name} version {a} acknowledged; a newer one is due")
                }
                (_, None) => format!("  {type_name} subscribed; nothing sent yet"),
            })
        }
        TypeState::Ok | TypeState::Unsubscribed => None,
    }
}

fn array(v: &Value) -> &[Value] {
    v.as_array().map_or(&[], Vec::as_slice)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Align {
    Left,
    Right,
}

/// Columns padded to their widest cell, two spaces apart, no trailing spaces.
fn table(header: &[(&str, Align)], rows: Vec<Vec<String>>) -> String {
    let width = |s: &str| s.chars().count();
    let mut widths: Vec<usize> = header.iter().map(|(h, _)| width(h)).collect();
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(width(cell));
        }
    }
    let header_row: Vec<String> = header.iter().map(|(h, _)| (*h).to_owned()).collect();
    let mut out = String::new();
    for row in std::iter::once(header_row).chain(rows) {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            if i > 0 {
                line.push_str("  ");
            }
            let pad = widths[i].saturating_sub(width(cell));
            match header[i].1 {
                Align::Left => {
                    line.push_str(cell);
                    line.extend(std::iter::repeat_n(' ', pad));
                }
                Align::Right => {
                    line.extend(std::iter::repeat_n(' ', pad));
                    line.push_str(cell);
                }
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn type_record(synced: Option<bool>, sent: Option<&str>, acked: Option<&str>) -> Value {
        json!({
            "synced": synced,
            "sent": sent.map(|v| json!({"version": v, "at": "2026-11-26T10:00:02.000Z"})),
            "acked": acked.map(|v| json!({"version": v, "at": "2026-11-26T10:00:02.010Z"})),
            "rejected": null,
        })
    }

    fn synced_proxy(node: &str, stream: u64) -> Value {
        let ok = |v: &str| type_record(Some(true), Some(v), Some(v));
        json!({
            "stream_id": stream,
            "node_id": node,
            "node_cluster": "edge",
            "envoy_version": "1.40.0",
            "protocol": "sotw",
            "peer": "127.0.0.1:40000",
            "connected_at": "2026-11-26T10:00:01.000Z",
            "synced": true,
            "clusters": ok("6c0044076fe34aa4"),
            "endpoints": ok("f256601f9618153d"),
            "listeners": ok("53844a1a06698965"),
            "routes": ok("2cde8c1833f11dfb"),
        })
    }

    /// The shape of a real `/status` (captured from `serve` with one Envoy 1.40).
    fn sample() -> Value {
        json!({
            "state": {
                "version": "9f2c1a0b3d4e5f60",
                "content_hash": "1288",
                "accepted_at": "2026-11-26T10:00:01.498Z",
                "resource_versions": {
                    "clusters": "6c0044076fe34aa4",
                    "endpoints": "f256601f9618153d",
                    "listeners": "53844a1a06698965",
                    "routes": "2cde8c1833f11dfb"
                },
                "listeners": [{"name": "public", "address": "127.0.0.1", "port": 10000}],
                "services": [{
                    "name": "summarizer",
                    "listener": "public",
                    "domains": ["*"],
                    "active": "green",
                    "weights": {"blue": 0, "green": 100}
                }]
            },
            "rejected": null,
            "proxies": [synced_proxy("envoy-1", 1)]
        })
    }

    #[test]
    fn a_synced_fleet_reads_as_two_tables() {
        assert_eq!(
            render_status(&sample()),
            "\
state 9f2c1a0b3d4e5f60 (accepted 2026-11-26T10:00:01.498Z)
listeners: public (127.0.0.1:10000)
last rejection: none

SERVICE     LISTENER  ACTIVE  BLUE  GREEN  DOMAINS
summarizer  public    green      0    100  *

PROXY (node)  CLUSTER  ENVOY   STATUS  CLUSTERS  ENDPOINTS  LISTENERS  ROUTES
envoy-1       edge     1.40.0  synced  ok        ok         ok         ok
"
        );
    }

    #[test]
    fn a_proxy_that_rejected_the_latest_version_shows_envoys_message() {
        let mut status = sample();
        let mut p = synced_proxy("envoy-2", 2);
        p["synced"] = json!(false);
        p["listeners"] = json!({
            "synced": false,
            "sent": {"version": "a17ee29581bd31fb", "at": "2026-11-26T10:21:23.452Z"},
            "acked": {"version": "53844a1a06698965", "at": "2026-11-26T10:21:18.896Z"},
            "rejected": {
                "version": "a17ee29581bd31fb",
                "message": "Error adding/updating listener(s) private: cannot bind '127.0.0.1:10778': Address already in use\n",
                "at": "2026-11-26T10:21:23.455Z"
            }
        });
        status["proxies"].as_array_mut().unwrap().push(p);
        let text = render_status(&status);
        assert!(
            text.contains(
                "\
envoy-1       edge     1.40.0  synced    ok        ok         ok         ok
envoy-2       edge     1.40.0  REJECTED  ok        ok         rejected   ok
  listeners rejected version a17ee29581bd31fb: Error adding/updating listener(s) private: cannot bind '127.0.0.1:10778': Address already in use
"
            ),
            "{text}"
        );
    }

    #[test]
    fn an_old_rejection_fixed_by_a_newer_version_is_not_shown() {
        let mut status = sample();
        status["proxies"][0]["listeners"]["rejected"] = json!({
            "version": "0000000000000001",
            "message": "old trouble",
            "at": "2026-11-26T09:00:00.000Z"
        });
        let text = render_status(&status);
        assert!(
            text.contains("envoy-1       edge     1.40.0  synced"),
            "{text}"
        );
        assert!(!text.contains("old trouble"), "{text}");
    }

    #[test]
    fn a_proxy_waiting_to_acknowledge_is_stale() {
        let mut status = sample();
        status["proxies"][0]["synced"] = json!(false);
        status["proxies"][0]["routes"] = type_record(
            Some(false),
            Some("ea3f66ca8a4cc9e7"),
            Some("2cde8c1833f11dfb"),
        );
        status["proxies"][0]["clusters"] = type_record(
            Some(false),
            Some("6c0044076fe34aa4"),
            Some("6c0044076fe34aa4"),
        );
        let text = render_status(&status);
        assert!(
            text.contains(
                "\
envoy-1       edge     1.40.0  stale   stale     ok         ok         stale
  clusters version 6c0044076fe34aa4 acknowledged; a newer one is due
  routes version ea3f66ca8a4cc9e7 sent, not acknowledged yet (acknowledged: 2cde8c1833f11dfb)
"
            ),
            "{text}"
        );
    }

    #[test]
    fn a_just_connected_proxy_is_connecting() {
        let mut status = sample();
        let p = &mut status["proxies"][0];
        p["node_id"] = json!("");
        for t in TYPES {
            p[t] = type_record(None, None, None);
        }
        let text = render_status(&status);
        assert!(
            text.contains("-             edge     1.40.0  connecting  -         -"),
            "{text}"
        );
    }

    #[test]
    fn two_streams_of_one_node_are_told_apart() {
        let mut status = sample();
        status["proxies"] = json!([synced_proxy("envoy-1", 3), synced_proxy("envoy-1", 7)]);
        let text = render_status(&status);
        assert!(text.contains("envoy-1 (stream 3)"), "{text}");
        assert!(text.contains("envoy-1 (stream 7)"), "{text}");
    }

    #[test]
    fn a_rejected_file_lists_every_error_with_its_location() {
        let mut status = sample();
        status["rejected"] = json!({
            "path": "/etc/switchyard/state.yaml",
            "errors": [
                "/etc/switchyard/state.yaml:7:15: unknown listener `private` (defined: public)",
                "/etc/switchyard/state.yaml:13:13: active must be `blue` or `green`, not `both`"
            ],
            "line": 7,
            "column": 15,
            "content_hash": "6c02",
            "rejected_at": "2026-11-26T10:21:26.373Z"
        });
        let text = render_status(&status);
        assert!(
            text.contains(
                "\
last rejection: /etc/switchyard/state.yaml at 2026-11-26T10:21:26.373Z (the state above stays in force)
  /etc/switchyard/state.yaml:7:15: unknown listener `private` (defined: public)
  /etc/switchyard/state.yaml:13:13: active must be `blue` or `green`, not `both`
"
            ),
            "{text}"
        );
    }

    #[test]
    fn a_server_without_state_or_proxies_says_so() {
        let text = render_status(&json!({"state": null, "rejected": null, "proxies": []}));
        assert_eq!(
            text,
            "state: none loaded yet (switchyard is not ready)\nlast rejection: none\n\nno services\n\nno proxies connected\n"
        );
    }

    #[test]
    fn ipv6_listeners_are_bracketed() {
        let mut status = sample();
        status["state"]["listeners"] = json!([{"name": "v6", "address": "::1", "port": 10000}]);
        assert!(render_status(&status).contains("listeners: v6 ([::1]:10000)"));
    }

    #[test]
    fn unexpected_json_does_not_panic() {
        for odd in [json!(null), json!([]), json!({"proxies": [1, "x", null]})] {
            let _ = render_status(&odd);
        }
    }
}
