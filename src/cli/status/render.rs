//! The server's answers as text: the tables `switchyard status` prints, or its `--json`
//! document. Pure functions of [`ServerStatus`], unit-tested on sample answers.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::LazyLock;
use std::time::SystemTime;

use prost_reflect::{DescriptorPool, DynamicMessage, SerializeOptions};

use crate::grpc::pb;

/// The resource types, in push order, as `TypeStatus.type` names them.
const TYPES: [&str; 4] = ["clusters", "endpoints", "listeners", "routes"];

/// A field the answer lacks (named by its path in the `--json` document, e.g.
/// `proxies[0].status`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("answered without {0}")]
pub struct Missing(pub String);

/// What the server said: `GetState` (`None` while no valid state is loaded, which the
/// server answers with UNAVAILABLE) and `ListProxies`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ServerStatus {
    pub state: Option<pb::GetStateResponse>,
    pub proxies: Vec<pb::Proxy>,
}

/// `GetState` and `ListProxies` as one JSON document, `{"state": ..., "proxies": [...]}`,
/// in proto3 JSON with the proto's own field names, in the proto's order, every field
/// present (a weight of 0 included). `state` is `null` while no valid state is loaded.
pub fn status_json(status: &ServerStatus) -> String {
    let document = StatusDocument {
        state: status
            .state
            .as_ref()
            .map(|s| ProtoJson::of(s, "GetStateResponse")),
        proxies: status
            .proxies
            .iter()
            .map(|p| ProtoJson::of(p, "Proxy"))
            .collect(),
    };
    serde_json::to_string_pretty(&document).expect("bug: switchyard.v1 messages always print")
}

#[derive(serde::Serialize)]
struct StatusDocument {
    state: Option<ProtoJson>,
    proxies: Vec<ProtoJson>,
}

/// A `switchyard.v1` message that serializes as proto3 JSON.
struct ProtoJson(DynamicMessage);

impl ProtoJson {
    /// `message`, of type `switchyard.v1.{name}`.
    fn of(message: &impl prost::Message, name: &str) -> ProtoJson {
        static POOL: LazyLock<DescriptorPool> = LazyLock::new(|| {
            DescriptorPool::decode(pb::FILE_DESCRIPTOR_SET)
                .expect("bug: the switchyard.v1 descriptor set does not decode")
        });
        let name = format!("switchyard.v1.{name}");
        let desc = POOL
            .get_message_by_name(&name)
            .unwrap_or_else(|| panic!("bug: {name} is not in the switchyard.v1 descriptor set"));
        let message = DynamicMessage::decode(desc, message.encode_to_vec().as_slice())
            .unwrap_or_else(|e| panic!("bug: {name} does not decode as itself: {e}"));
        ProtoJson(message)
    }
}

impl serde::Serialize for ProtoJson {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let options = SerializeOptions::new()
            .use_proto_field_name(true)
            .skip_default_fields(false);
        self.0.serialize_with_options(serializer, &options)
    }
}

/// The server's answers as text: a header on the state in force and the last rejection,
/// a table of services and a table of proxies, each proxy's rejections and pending types
/// below it. A field the text needs and the answer lacks is an error naming it.
pub fn render_status(status: &ServerStatus) -> Result<String, Missing> {
    let mut out = String::new();
    match &status.state {
        // With no state in force, GetState says nothing about rejections either.
        None => out.push_str("state: none loaded yet (switchyard is not ready)\n\nno services\n"),
        Some(state) => {
            render_state(&mut out, state)?;
            render_rejection(&mut out, state.last_rejection.as_ref())?;
            render_internal_error(&mut out, state.internal_error.as_ref())?;
            out.push('\n');
            render_services(&mut out, &state.services)?;
            render_rollout(&mut out, &state.rollout, &state.databases);
        }
    }
    out.push('\n');
    render_proxies(&mut out, &status.proxies)?;
    Ok(out)
}

/// `value`, unless it is empty: then the answer lacks `field`.
fn required(value: &str, field: impl FnOnce() -> String) -> Result<&str, Missing> {
    if value.is_empty() {
        Err(Missing(field()))
    } else {
        Ok(value)
    }
}

/// A timestamp as RFC 3339 with milliseconds, like the server's logs.
fn time(at: Option<&prost_types::Timestamp>, field: &str) -> Result<String, Missing> {
    /// humantime prints years 1970 to 9999 only.
    const YEAR_10000: u64 = 253_402_300_800;
    let at = at.ok_or_else(|| Missing(field.to_owned()))?;
    SystemTime::try_from(*at)
        .ok()
        .filter(|t| {
            t.duration_since(SystemTime::UNIX_EPOCH)
                .is_ok_and(|d| d.as_secs() < YEAR_10000)
        })
        .map(|t| humantime::format_rfc3339_millis(t).to_string())
        .ok_or_else(|| Missing(format!("a valid {field}")))
}

fn render_state(out: &mut String, state: &pb::GetStateResponse) -> Result<(), Missing> {
    let version = required(&state.version, || "state.version".to_owned())?;
    let accepted = time(state.accepted_at.as_ref(), "state.accepted_at")?;
    let _ = writeln!(out, "state {version} (accepted {accepted})");
    let mut listeners = Vec::new();
    for (i, l) in state.listeners.iter().enumerate() {
        let name = required(&l.name, || format!("state.listeners[{i}].name"))?;
        let address = required(&l.address, || format!("state.listeners[{i}].address"))?;
        let address = if address.contains(':') {
            format!("[{address}]:{}", l.port)
        } else {
            format!("{address}:{}", l.port)
        };
        listeners.push(format!("{name} ({address})"));
    }
    if !listeners.is_empty() {
        let _ = writeln!(out, "listeners: {}", listeners.join(", "));
    }
    Ok(())
}

fn render_rejection(out: &mut String, rejection: Option<&pb::Rejection>) -> Result<(), Missing> {
    let Some(r) = rejection else {
        out.push_str("last rejection: none\n");
        return Ok(());
    };
    let path = required(&r.path, || "state.last_rejection.path".to_owned())?;
    let at = time(r.rejected_at.as_ref(), "state.last_rejection.rejected_at")?;
    let _ = writeln!(
        out,
        "last rejection: {path} at {at} (the state above stays in force)"
    );
    for e in &r.errors {
        let _ = writeln!(out, "  {e}");
    }
    Ok(())
}

/// A valid file the server failed to translate: shown only when there is one.
fn render_internal_error(out: &mut String, e: Option<&pb::InternalError>) -> Result<(), Missing> {
    let Some(e) = e else { return Ok(()) };
    let message = required(&e.message, || "state.internal_error.message".to_owned())?;
    let at = time(e.at.as_ref(), "state.internal_error.at")?;
    let _ = writeln!(
        out,
        "INTERNAL ERROR at {at}: a valid state file could not be translated (a bug in switchyard; the state above stays in force): {message}"
    );
    Ok(())
}

fn render_services(out: &mut String, services: &[pb::Service]) -> Result<(), Missing> {
    if services.is_empty() {
        out.push_str("no services\n");
        return Ok(());
    }
    let mut rows = Vec::new();
    for (i, s) in services.iter().enumerate() {
        let field = |name: &str| format!("state.services[{i}].{name}");
        rows.push(vec![
            required(&s.name, || field("name"))?.to_owned(),
            required(&s.listener, || field("listener"))?.to_owned(),
            required(&s.active, || field("active"))?.to_owned(),
            s.blue_weight.to_string(),
            s.green_weight.to_string(),
            s.domains.join(", "),
        ]);
    }
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
    Ok(())
}

/// One line per service whose rollout is not steady or that uses the workflow: the phase,
/// what the file asks against what is in force, its release group, its waves (each one's
/// color and how many of its proxies are synced), why, each color's traffic (in flight: is
/// the old color drained?), and what tripped a rollback; then the databases' versions.
fn render_rollout(
    out: &mut String,
    rollout: &[pb::ServiceRollout],
    databases: &[pb::DatabaseVersion],
) {
    if rollout.is_empty() && databases.is_empty() {
        return;
    }
    out.push('\n');
    for r in rollout {
        let wanted = if r.wanted == r.in_force {
            format!("on {}", r.in_force)
        } else {
            format!("on {}, file asks {}", r.in_force, r.wanted)
        };
        let group = if r.group.is_empty() {
            String::new()
        } else {
            format!(" (group {})", r.group)
        };
        let mut line = format!("rollout {}{group}: {} ({wanted})", r.service, r.phase);
        if r.left_seconds > 0.0 {
            line.push_str(&format!(", {:.0}s left", r.left_seconds));
        }
        out.push_str(&line);
        out.push('\n');
        if let Some(waves) = &r.rollout {
            render_waves(out, waves);
        }
        if !r.reason.is_empty() {
            out.push_str(&format!("  why: {}\n", r.reason));
        }
        if let Some(t) = &r.trip {
            let proxies: Vec<String> = t
                .proxies
                .iter()
                .map(|p| format!("{} ({})", p.node_id, p.errors))
                .collect();
            out.push_str(&format!(
                "  tripped: {} errors in {} requests after {:.1}s of a {:.0}s bake; proxies: {}\n",
                t.errors,
                t.requests,
                t.after_seconds,
                t.window_seconds,
                if proxies.is_empty() {
                    NONE.to_owned()
                } else {
                    proxies.join(", ")
                }
            ));
            for f in &t.failing_endpoints {
                out.push_str(&format!("  probe: {} {}\n", f.endpoint, f.reason));
            }
        }
        for f in &r.gate_failing {
            out.push_str(&format!("  gate: {} {}\n", f.endpoint, f.reason));
        }
        if !r.gate_shadow.is_empty() {
            out.push_str(&format!("  gate: {}\n", r.gate_shadow));
        }
        for t in &r.traffic {
            out.push_str(&format!(
                "  {}: {} in flight, {} requests, {} errors in the last minute ({} proxies reporting){}\n",
                t.color,
                t.in_flight,
                t.requests,
                t.errors,
                t.proxies_reporting,
                if t.color != r.in_force && t.in_flight == 0 && t.requests == 0 {
                    "; drained"
                } else {
                    ""
                }
            ));
        }
    }
    for d in databases {
        if d.version.is_empty() {
            out.push_str(&format!(
                "database {}: version unknown ({})\n",
                d.name, d.error
            ));
        } else {
            out.push_str(&format!("database {}: schema {}\n", d.name, d.version));
        }
    }
}

/// One line per wave, aligned: `  wave 1/3  zone=eu-west1-a  green  2/2 synced`.
fn render_waves(out: &mut String, waves: &pb::RolloutWaves) {
    let of = waves.waves.len();
    let rows = waves
        .waves
        .iter()
        .map(|w| {
            let mut synced = format!("{}/{} synced", w.synced, w.proxies);
            if w.connecting > 0 {
                synced.push_str(&format!(", {} connecting", w.connecting));
            }
            vec![
                format!("wave {}/{of}", w.wave),
                w.selector.clone(),
                w.color.clone(),
                synced,
            ]
        })
        .collect();
    for line in columns(&[Align::Left; 4], rows).lines() {
        let _ = writeln!(out, "  {line}");
    }
}

/// What a legitimately empty text field (a node id Envoy has not sent yet) shows as.
const NONE: &str = "(none)";

fn or_none(s: &str) -> &str {
    if s.is_empty() { NONE } else { s }
}

fn render_proxies(out: &mut String, proxies: &[pb::Proxy]) -> Result<(), Missing> {
    if proxies.is_empty() {
        out.push_str("no proxies connected\n");
        return Ok(());
    }
    // Two streams from one node id (a restart racing the old stream's end, or two proxies
    // configured alike) are told apart by stream id.
    let mut per_node: HashMap<&str, usize> = HashMap::new();
    for p in proxies {
        *per_node.entry(&p.node_id).or_default() += 1;
    }
    let mut rows = Vec::new();
    let mut details: Vec<Vec<String>> = Vec::new();
    for (i, p) in proxies.iter().enumerate() {
        let field = |name: &str| format!("proxies[{i}].{name}");
        let status = match p.status() {
            pb::ProxyStatus::Unspecified => return Err(Missing(field("status"))),
            pb::ProxyStatus::Connecting => "connecting",
            pb::ProxyStatus::Synced => "synced",
            pb::ProxyStatus::Stale => "stale",
            pb::ProxyStatus::Rejected => "REJECTED",
        };
        let node = or_none(&p.node_id);
        let node = if per_node[p.node_id.as_str()] > 1 {
            format!("{node} (stream {})", p.stream_id)
        } else {
            node.to_owned()
        };
        let mut row = vec![
            node,
            or_none(&p.node_cluster).to_owned(),
            or_none(&p.envoy_version).to_owned(),
            required(&p.protocol, || field("protocol"))?.to_owned(),
            status.to_owned(),
        ];
        let mut lines = Vec::new();
        for type_name in TYPES {
            let (j, t) = p
                .types
                .iter()
                .enumerate()
                .find(|(_, t)| t.r#type == type_name)
                .ok_or_else(|| Missing(field(&format!("types entry for {type_name}"))))?;
            let field = |name: &str| field(&format!("types[{j}].{name}"));
            let label = match t.status() {
                pb::SyncStatus::Unspecified => return Err(Missing(field("status"))),
                pb::SyncStatus::NotSubscribed => "-",
                pb::SyncStatus::Synced => "ok",
                pb::SyncStatus::Stale => {
                    lines.push(stale_detail(type_name, t));
                    "stale"
                }
                pb::SyncStatus::Rejected => {
                    let rejected = t
                        .rejected
                        .as_ref()
                        .ok_or_else(|| Missing(field("rejected")))?;
                    lines.push(rejected_detail(type_name, rejected));
                    "rejected"
                }
            };
            row.push(label.to_owned());
        }
        rows.push(row);
        details.push(lines);
    }
    let header = [
        ("PROXY (node)", Align::Left),
        ("CLUSTER", Align::Left),
        ("ENVOY", Align::Left),
        ("XDS", Align::Left),
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
    Ok(())
}

/// The line under a proxy for a type whose latest version it rejected.
fn rejected_detail(type_name: &str, rejected: &pb::RejectedVersion) -> String {
    // Envoy's messages can span lines; keep them under the proxy they concern.
    let message = rejected.message.trim();
    let message = message.lines().collect::<Vec<_>>().join("\n      ");
    format!(
        "  {type_name} rejected version {}: {message}",
        rejected.version
    )
}

/// The line under a proxy for a type it has not acknowledged at its latest version.
fn stale_detail(type_name: &str, t: &pb::TypeStatus) -> String {
    let sent = t.sent.as_ref().map(|v| v.version.as_str());
    let acked = t.acked.as_ref().map(|v| v.version.as_str());
    match (sent, acked) {
        (Some(s), a) if Some(s) != a => format!(
            "  {type_name} version {s} sent, not acknowledged yet (acknowledged: {})",
            a.unwrap_or("none")
        ),
        (_, Some(a)) => format!("  {type_name} version {a} acknowledged; a newer one is due"),
        (_, None) => format!("  {type_name} subscribed; nothing sent yet"),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Align {
    Left,
    Right,
}

/// Columns under a header, padded to their widest cell, two spaces apart, no trailing
/// spaces.
fn table(header: &[(&str, Align)], rows: Vec<Vec<String>>) -> String {
    let header_row: Vec<String> = header.iter().map(|(h, _)| (*h).to_owned()).collect();
    let aligns: Vec<Align> = header.iter().map(|(_, a)| *a).collect();
    columns(&aligns, std::iter::once(header_row).chain(rows).collect())
}

/// Rows of cells as columns, each padded to its widest cell (aligned as `aligns` says),
/// two spaces apart, no trailing spaces.
fn columns(aligns: &[Align], rows: Vec<Vec<String>>) -> String {
    let width = |s: &str| s.chars().count();
    let mut widths = vec![0; aligns.len()];
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(width(cell));
        }
    }
    let mut out = String::new();
    for row in rows {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            if i > 0 {
                line.push_str("  ");
            }
            let pad = widths[i].saturating_sub(width(cell));
            match aligns[i] {
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

    /// `2026-11-26T10:00:01.498Z` plus `ms` milliseconds.
    fn at(ms: i64) -> Option<prost_types::Timestamp> {
        let ms = 1_795_687_201_498 + ms;
        Some(prost_types::Timestamp {
            seconds: ms / 1000,
            nanos: i32::try_from(ms % 1000).unwrap() * 1_000_000,
        })
    }

    fn version_at(version: &str, ms: i64) -> Option<pb::VersionAt> {
        Some(pb::VersionAt {
            version: version.to_owned(),
            at: at(ms),
        })
    }

    fn type_status(
        r#type: &str,
        status: pb::SyncStatus,
        sent: Option<&str>,
        acked: Option<&str>,
    ) -> pb::TypeStatus {
        pb::TypeStatus {
            r#type: r#type.to_owned(),
            status: status as i32,
            sent: sent.and_then(|v| version_at(v, 500)),
            acked: acked.and_then(|v| version_at(v, 510)),
            rejected: None,
        }
    }

    fn synced_proxy(node: &str, stream: u64) -> pb::Proxy {
        let ok = |t: &str, v: &str| type_status(t, pb::SyncStatus::Synced, Some(v), Some(v));
        pb::Proxy {
            node_id: node.to_owned(),
            node_cluster: "edge".to_owned(),
            envoy_version: "1.40.0".to_owned(),
            protocol: "sotw".to_owned(),
            peer: "127.0.0.1:40000".to_owned(),
            connected_at: at(-498),
            synced: true,
            state_version: "9f2c1a0b3d4e5f60".to_owned(),
            types: vec![
                ok("clusters", "6c0044076fe34aa4"),
                ok("endpoints", "f256601f9618153d"),
                ok("listeners", "53844a1a06698965"),
                ok("routes", "2cde8c1833f11dfb"),
            ],
            stream_id: stream,
            status: pb::ProxyStatus::Synced as i32,
        }
    }

    /// The answers of a real server with one Envoy 1.40 connected.
    fn sample() -> ServerStatus {
        let resource_versions = [
            ("clusters", "6c0044076fe34aa4"),
            ("endpoints", "f256601f9618153d"),
            ("listeners", "53844a1a06698965"),
            ("routes", "2cde8c1833f11dfb"),
        ]
        .map(|(t, v)| pb::TypeVersion {
            r#type: t.to_owned(),
            version: v.to_owned(),
        });
        ServerStatus {
            state: Some(pb::GetStateResponse {
                version: "9f2c1a0b3d4e5f60".to_owned(),
                content_hash: "1288".to_owned(),
                accepted_at: at(0),
                resource_versions: resource_versions.to_vec(),
                services: vec![pb::Service {
                    name: "summarizer".to_owned(),
                    listener: "public".to_owned(),
                    domains: vec!["*".to_owned()],
                    active: "green".to_owned(),
                    blue_weight: 0,
                    green_weight: 100,
                    ..Default::default()
                }],
                last_rejection: None,
                internal_error: None,
                rollout: vec![],
                databases: vec![],
                listeners: vec![pb::Listener {
                    name: "public".to_owned(),
                    address: "127.0.0.1".to_owned(),
                    port: 10000,
                }],
            }),
            proxies: vec![synced_proxy("envoy-1", 1)],
        }
    }

    fn render(status: &ServerStatus) -> String {
        render_status(status).expect("a complete answer renders")
    }

    fn state(status: &mut ServerStatus) -> &mut pb::GetStateResponse {
        status.state.as_mut().unwrap()
    }

    #[test]
    fn a_synced_fleet_reads_as_two_tables() {
        assert_eq!(
            render(&sample()),
            "\
state 9f2c1a0b3d4e5f60 (accepted 2026-11-26T10:00:01.498Z)
listeners: public (127.0.0.1:10000)
last rejection: none

SERVICE     LISTENER  ACTIVE  BLUE  GREEN  DOMAINS
summarizer  public    green      0    100  *

PROXY (node)  CLUSTER  ENVOY   XDS   STATUS  CLUSTERS  ENDPOINTS  LISTENERS  ROUTES
envoy-1       edge     1.40.0  sotw  synced  ok        ok         ok         ok
"
        );
    }

    #[test]
    fn a_proxy_that_rejected_the_latest_version_shows_envoys_message() {
        let mut status = sample();
        let mut p = synced_proxy("envoy-2", 2);
        p.protocol = "delta".to_owned();
        p.synced = false;
        p.status = pb::ProxyStatus::Rejected as i32;
        p.types[2] = pb::TypeStatus {
            rejected: Some(pb::RejectedVersion {
                version: "a17ee29581bd31fb".to_owned(),
                message: "Error adding/updating listener(s) private: cannot bind '127.0.0.1:10778': Address already in use\n".to_owned(),
                at: at(1_281_957),
            }),
            ..type_status(
                "listeners",
                pb::SyncStatus::Rejected,
                Some("a17ee29581bd31fb"),
                Some("53844a1a06698965"),
            )
        };
        status.proxies.push(p);
        let text = render(&status);
        assert!(
            text.contains(
                "\
envoy-1       edge     1.40.0  sotw   synced    ok        ok         ok         ok
envoy-2       edge     1.40.0  delta  REJECTED  ok        ok         rejected   ok
  listeners rejected version a17ee29581bd31fb: Error adding/updating listener(s) private: cannot bind '127.0.0.1:10778': Address already in use
"
            ),
            "{text}"
        );
    }

    #[test]
    fn statuses_are_the_servers_not_worked_out_again_from_versions() {
        // The versions alone would say listeners are rejected (the rejected version is the
        // one sent) and the proxy synced; the server says otherwise, and the server wins.
        let mut status = sample();
        let p = &mut status.proxies[0];
        p.types[2].rejected = Some(pb::RejectedVersion {
            version: "53844a1a06698965".to_owned(),
            message: "old trouble".to_owned(),
            at: at(-3_600_000),
        });
        p.status = pb::ProxyStatus::Stale as i32;
        let text = render(&status);
        assert!(
            text.contains(
                "envoy-1       edge     1.40.0  sotw  stale   ok        ok         ok         ok\n"
            ),
            "{text}"
        );
        assert!(!text.contains("old trouble"), "{text}");
    }

    #[test]
    fn a_proxy_waiting_to_acknowledge_is_stale() {
        let mut status = sample();
        let p = &mut status.proxies[0];
        p.synced = false;
        p.status = pb::ProxyStatus::Stale as i32;
        p.types[3] = type_status(
            "routes",
            pb::SyncStatus::Stale,
            Some("ea3f66ca8a4cc9e7"),
            Some("2cde8c1833f11dfb"),
        );
        p.types[0] = type_status(
            "clusters",
            pb::SyncStatus::Stale,
            Some("6c0044076fe34aa4"),
            Some("6c0044076fe34aa4"),
        );
        let text = render(&status);
        assert!(
            text.contains(
                "\
envoy-1       edge     1.40.0  sotw  stale   stale     ok         ok         stale
  clusters version 6c0044076fe34aa4 acknowledged; a newer one is due
  routes version ea3f66ca8a4cc9e7 sent, not acknowledged yet (acknowledged: 2cde8c1833f11dfb)
"
            ),
            "{text}"
        );
    }

    #[test]
    fn a_just_connected_proxy_without_a_node_id_is_connecting() {
        let mut status = sample();
        let p = &mut status.proxies[0];
        p.node_id = String::new();
        p.status = pb::ProxyStatus::Connecting as i32;
        p.types = TYPES
            .map(|t| type_status(t, pb::SyncStatus::NotSubscribed, None, None))
            .to_vec();
        let text = render(&status);
        assert!(
            text.contains("(none)        edge     1.40.0  sotw  connecting  -         -"),
            "{text}"
        );
    }

    #[test]
    fn two_streams_of_one_node_are_told_apart() {
        let mut status = sample();
        status.proxies = vec![synced_proxy("envoy-1", 3), synced_proxy("envoy-1", 7)];
        let text = render(&status);
        assert!(text.contains("envoy-1 (stream 3)"), "{text}");
        assert!(text.contains("envoy-1 (stream 7)"), "{text}");
    }

    #[test]
    fn a_rejected_file_lists_every_error_with_its_location() {
        let mut status = sample();
        state(&mut status).last_rejection = Some(pb::Rejection {
            errors: vec![
                "/etc/switchyard/state.yaml:7:15: unknown listener `private` (defined: public)"
                    .to_owned(),
                "/etc/switchyard/state.yaml:13:13: active must be `blue` or `green`, not `both`"
                    .to_owned(),
            ],
            line: 7,
            column: 15,
            content_hash: "6c02".to_owned(),
            rejected_at: at(1_284_875),
            path: "/etc/switchyard/state.yaml".to_owned(),
        });
        let text = render(&status);
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
    fn an_internal_error_is_shown_as_switchyards_bug_not_the_files() {
        let mut status = sample();
        state(&mut status).internal_error = Some(pb::InternalError {
            message: "cluster `x` has no endpoints".to_owned(),
            content_hash: "6c02".to_owned(),
            at: at(1_284_875),
        });
        let text = render(&status);
        assert!(
            text.contains("last rejection: none\nINTERNAL ERROR at 2026-11-26T10:21:26.373Z: a valid state file could not be translated (a bug in switchyard; the state above stays in force): cluster `x` has no endpoints\n"),
            "{text}"
        );
    }

    #[test]
    fn a_server_without_state_or_proxies_says_so() {
        assert_eq!(
            render(&ServerStatus::default()),
            "state: none loaded yet (switchyard is not ready)\n\nno services\n\nno proxies connected\n"
        );
    }

    #[test]
    fn ipv6_listeners_are_bracketed() {
        let mut status = sample();
        state(&mut status).listeners = vec![pb::Listener {
            name: "v6".to_owned(),
            address: "::1".to_owned(),
            port: 10000,
        }];
        assert!(render(&status).contains("listeners: v6 ([::1]:10000)"));
    }

    fn missing(status: &ServerStatus) -> String {
        match render_status(status) {
            Err(Missing(field)) => field,
            Ok(text) => panic!("rendered an incomplete answer:\n{text}"),
        }
    }

    #[test]
    fn a_proxy_without_a_status_is_a_bad_answer_naming_the_field() {
        let mut status = sample();
        status.proxies.push(synced_proxy("envoy-2", 2));
        status.proxies[1].status = pb::ProxyStatus::Unspecified as i32;
        assert_eq!(missing(&status), "proxies[1].status");
        // A value this CLI does not know (from a newer server) is no status either.
        status.proxies[1].status = 99;
        assert_eq!(missing(&status), "proxies[1].status");
    }

    #[test]
    fn a_state_without_accepted_at_is_a_bad_answer_naming_the_field() {
        let mut status = sample();
        state(&mut status).accepted_at = None;
        assert_eq!(missing(&status), "state.accepted_at");
        // A time before 1970 cannot be printed either.
        state(&mut status).accepted_at = Some(prost_types::Timestamp {
            seconds: -1,
            nanos: 0,
        });
        assert_eq!(missing(&status), "a valid state.accepted_at");
    }

    #[test]
    fn other_fields_the_tables_need_are_bad_answers_too() {
        /// Takes out (or spoils) one field of a complete answer.
        type Breakage = fn(&mut ServerStatus);
        let cases: [(Breakage, &str); 6] = [
            (|s| state(s).version.clear(), "state.version"),
            (
                |s| state(s).services[0].active.clear(),
                "state.services[0].active",
            ),
            (
                |s| {
                    state(s).last_rejection = Some(pb::Rejection {
                        path: "state.yaml".to_owned(),
                        ..Default::default()
                    })
                },
                "state.last_rejection.rejected_at",
            ),
            (
                |s| s.proxies[0].types[1].status = 0,
                "proxies[0].types[1].status",
            ),
            (
                |s| {
                    s.proxies[0].types.pop();
                },
                "proxies[0].types entry for routes",
            ),
            (
                |s| {
                    s.proxies[0].status = pb::ProxyStatus::Rejected as i32;
                    s.proxies[0].types[0].status = pb::SyncStatus::Rejected as i32;
                },
                "proxies[0].types[0].rejected",
            ),
        ];
        for (break_it, field) in cases {
            let mut status = sample();
            break_it(&mut status);
            assert_eq!(missing(&status), field);
        }
    }

    #[test]
    fn json_has_the_protos_field_names_and_every_field() {
        let text = status_json(&sample());
        assert!(
            text.starts_with("{\n  \"state\": {\n    \"version\": \"9f2c1a0b3d4e5f60\","),
            "{text}"
        );
        let json: serde_json::Value = serde_json::from_str(&text).unwrap();
        let service = &json["state"]["services"][0];
        assert_eq!(service["name"], "summarizer");
        // A weight of 0 is printed, not left out as proto3 JSON does by default.
        assert_eq!(service["blue_weight"], 0);
        assert_eq!(service["green_weight"], 100);
        assert_eq!(json["state"]["accepted_at"], "2026-11-26T10:00:01.498Z");
        let proxy = &json["proxies"][0];
        assert_eq!(proxy["node_id"], "envoy-1");
        assert_eq!(proxy["status"], "PROXY_STATUS_SYNCED");
        assert_eq!(proxy["types"][3]["status"], "SYNCED");
        assert_eq!(
            status_json(&ServerStatus::default()),
            "{\n  \"state\": null,\n  \"proxies\": []\n}"
        );
    }

    #[test]
    fn a_rolled_back_service_says_what_tripped_it_and_whether_the_old_color_is_drained() {
        let mut status = sample();
        state(&mut status).rollout = vec![pb::ServiceRollout {
            service: "summarizer".into(),
            wanted: "green".into(),
            in_force: "blue".into(),
            phase: "rolled_back".into(),
            reason: "rolled back from green by itself".into(),
            trip: Some(pb::RollbackTrip {
                errors: 12,
                requests: 80,
                proxies: vec![pb::ProxyErrors {
                    node_id: "envoy-1".into(),
                    errors: 12,
                }],
                failing_endpoints: vec![],
                after_seconds: 3.5,
                window_seconds: 60.0,
            }),
            traffic: vec![pb::ColorTraffic {
                color: "green".into(),
                requests: 0,
                errors: 0,
                in_flight: 0,
                proxies_reporting: 1,
            }],
            ..Default::default()
        }];
        state(&mut status).databases = vec![pb::DatabaseVersion {
            name: "records".into(),
            version: "42".into(),
            error: String::new(),
        }];
        let text = render(&status);
        assert!(
            text.contains("rollout summarizer: rolled_back (on blue, file asks green)\n  why: rolled back from green by itself\n  tripped: 12 errors in 80 requests after 3.5s of a 60s bake; proxies: envoy-1 (12)\n  green: 0 in flight, 0 requests, 0 errors in the last minute (1 proxies reporting); drained\ndatabase records: schema 42\n"),
            "{text}"
        );
    }

    /// A service of group `chat` half way through three waves: the first has green, the
    /// other two still blue.
    fn rolling_by_waves() -> ServerStatus {
        let wave = |wave, selector: &str, color: &str, proxies, synced, connecting| pb::Wave {
            wave,
            selector: selector.into(),
            color: color.into(),
            proxies,
            synced,
            connecting,
        };
        let mut status = sample();
        state(&mut status).rollout = vec![pb::ServiceRollout {
            service: "summarizer".into(),
            wanted: "green".into(),
            in_force: "green".into(),
            phase: "rolling".into(),
            reason: "wave 1 of 3 has green; the next gets it once every proxy so far holds it and it soaked 5m".into(),
            group: "chat".into(),
            rollout: Some(pb::RolloutWaves {
                soak_seconds: 300.0,
                reached: 1,
                rolling: true,
                waves: vec![
                    wave(1, "zone=eu-west1-a", "green", 2, 2, 0),
                    wave(2, "region=eu-west1", "blue", 3, 0, 1),
                    wave(3, "every proxy", "blue", 12, 12, 0),
                ],
            }),
            ..Default::default()
        }];
        status
    }

    #[test]
    fn a_rollout_by_waves_shows_its_group_and_each_waves_color_and_sync() {
        let text = render(&rolling_by_waves());
        assert!(
            text.contains(
                "\
rollout summarizer (group chat): rolling (on green)
  wave 1/3  zone=eu-west1-a  green  2/2 synced
  wave 2/3  region=eu-west1  blue   0/3 synced, 1 connecting
  wave 3/3  every proxy      blue   12/12 synced
  why: wave 1 of 3 has green; the next gets it once every proxy so far holds it and it soaked 5m
"
            ),
            "{text}"
        );
    }

    #[test]
    fn json_carries_the_group_and_the_waves() {
        let json: serde_json::Value =
            serde_json::from_str(&status_json(&rolling_by_waves())).unwrap();
        let rollout = &json["state"]["rollout"][0];
        assert_eq!(rollout["group"], "chat");
        assert_eq!(rollout["rollout"]["soak_seconds"], 300.0);
        assert_eq!(rollout["rollout"]["reached"], 1);
        assert_eq!(rollout["rollout"]["rolling"], true);
        let second = &rollout["rollout"]["waves"][1];
        assert_eq!(second["wave"], 2);
        assert_eq!(second["selector"], "region=eu-west1");
        assert_eq!(second["color"], "blue");
        assert_eq!(second["proxies"], 3);
        assert_eq!(second["synced"], 0);
        assert_eq!(second["connecting"], 1);
    }
}
