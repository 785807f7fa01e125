//! The admin HTTP server: `/healthz`, `/readyz`, `/status` and `/metrics`.

use std::collections::BTreeMap;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Json, Response};
use axum::routing::get;
use serde::Serialize;
use serde_json::{Value, json};

use crate::metrics::Metrics;
use crate::proxies::{ProxyRecord, ProxyRegistry};
use crate::status::{StateBoard, service_statuses};
use crate::xds::ResourceType;
use crate::xds::cache::SnapshotCache;

/// What the admin handlers read.
#[derive(Clone, Debug)]
pub struct AdminState {
    pub board: StateBoard,
    pub registry: ProxyRegistry,
    pub cache: SnapshotCache,
    pub metrics: Metrics,
}

pub fn router(state: AdminState) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/status", get(status))
        .route("/metrics", get(metrics))
        .with_state(state)
}

/// Ready once a valid state is loaded. The xDS port is bound before the admin server
/// starts, so reaching this handler also means xDS is listening. A state file that cannot
/// be read keeps it ready (the last good state is served) with a warning line: no save is
/// applied until the file can be read again.
async fn readyz(State(s): State<AdminState>) -> Response {
    match s.board.active() {
        Some(active) => {
            let mut body = format!("ready: state {}\n", active.version);
            if let Some(h) = s.board.file_health()
                && let Some(u) = &h.unreadable
            {
                body.push_str(&format!(
                    "warning: cannot read {}: {} (since {}); serving the last good state\n",
                    h.path.display(),
                    u.error,
                    humantime::format_rfc3339_millis(u.since),
                ));
            }
            (StatusCode::OK, body).into_response()
        }
        None => (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: no valid state loaded\n",
        )
            .into_response(),
    }
}

async fn metrics(State(s): State<AdminState>) -> Response {
    if let Some(h) = s.board.file_health() {
        s.metrics
            .set_state_file_unreadable(h.unreadable.map(|u| u.error.label()));
    }
    let counts = s.registry.subscribed_counts();
    s.metrics.set_subscribed(
        ResourceType::ALL.map(|t| (t, i64::try_from(counts[t.index()]).unwrap_or(i64::MAX))),
    );
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        s.metrics.encode(),
    )
        .into_response()
}

#[derive(Serialize)]
struct ProxyStatus<'a> {
    #[serde(flatten)]
    record: &'a ProxyRecord,
    /// Nothing due and no rejection standing: what `/status` showed before `status`.
    synced: bool,
}

async fn status(State(s): State<AdminState>) -> Json<Value> {
    let published = s.cache.current();
    let snapshot = published.snapshot();
    let versions: BTreeMap<&str, &str> = ResourceType::ALL
        .iter()
        .map(|t| (t.short_name(), snapshot.version(*t)))
        .collect();
    let state = s.board.active().map(|a| {
        json!({
            "version": a.version,
            "content_hash": a.content_hash,
            "accepted_at": humantime::format_rfc3339_millis(a.accepted_at).to_string(),
            "resource_versions": versions,
            "listeners": a.state.listeners,
            "services": service_statuses(&a.state),
        })
    });
    let proxies = s.registry.proxies();
    let proxies: Vec<ProxyStatus<'_>> = proxies
        .iter()
        .map(|p| ProxyStatus {
            record: p,
            synced: p.status.is_settled(),
        })
        .collect();
    // Whether saves can be applied at all: a file that cannot be read keeps the state
    // above in force but hides every later save.
    let file = s.board.file_health().map(|h| {
        let u = h.unreadable.as_ref();
        json!({
            "path": h.path,
            "healthy": u.is_none(),
            "error": u.map(|u| u.error.to_string()),
            "reason": u.map(|u| u.error.label()),
            "since": u.map(|u| humantime::format_rfc3339_millis(u.since).to_string()),
        })
    });
    Json(json!({
        "state": state,
        "watch": file,
        "rejected": s.board.last_rejection(),
        "internal_error": s.board.last_internal_error(),
        "proxies": proxies,
    }))
}
