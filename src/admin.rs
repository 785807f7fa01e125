//! The admin HTTP server: the live dashboard (`/`, following `/events`), `/healthz`,
//! `/readyz`, `/status` and `/metrics`.
//!
//! `GET /` is a read-only page, self-contained (no external asset), showing each service's
//! live and idle colors and weights, its rollout, each color's traffic from Envoy's load
//! reports, every proxy with its sync status and locality, the switches in flight, and the
//! switches and rollbacks seen since it was opened; it updates itself from `GET /events`
//! (Server-Sent Events: each event as the audit log writes it). See [`dashboard`].
//!
//! Served by [`serve`], an accept loop of its own rather than `axum::serve`, for two
//! bounds ([`AdminLimits`]): a connection must finish its request headers within
//! `header_timeout` (idle keep-alive connections included) or is closed, and at most
//! `max_connections` are open at once; one more is closed as soon as it is accepted.
//! Closing rather than queueing keeps the cost of a slowloris client bounded and the
//! failure visible: a probe refused at the cap fails at once instead of hanging. An open
//! dashboard holds one connection (its `/events` stream) for as long as it is open.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Json, Response};
use axum::routing::get;
use serde::Serialize;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tracing::warn;

use crate::events::EventBus;
use crate::load::board::LoadBoard;
use crate::metrics::Metrics;
use crate::proxies::{ProxyRecord, ProxyRegistry};
use crate::state::{Color, DesiredState};
use crate::status::{StateBoard, service_statuses};
use crate::xds::ResourceType;
use crate::xds::cache::SnapshotCache;

pub mod dashboard;

/// What the admin handlers read.
#[derive(Clone, Debug)]
pub struct AdminState {
    pub board: StateBoard,
    pub registry: ProxyRegistry,
    pub cache: SnapshotCache,
    pub metrics: Metrics,
    /// Envoy's load reports.
    pub load: LoadBoard,
    /// What happens, for the dashboard's `/events`.
    pub events: EventBus,
}

/// Bounds on what admin HTTP clients can hold (`serve --admin-max-connections`,
/// `--admin-header-timeout-ms`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AdminLimits {
    /// Connections open at once; beyond this, new ones are closed on accept.
    pub max_connections: usize,
    /// How long a connection may take to send a request's headers, and how long an idle
    /// keep-alive connection stays open waiting for the next request.
    pub header_timeout: Duration,
}

impl AdminLimits {
    pub const DEFAULT_MAX_CONNECTIONS: usize = 256;
    pub const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(10);
}

impl Default for AdminLimits {
    fn default() -> Self {
        AdminLimits {
            max_connections: Self::DEFAULT_MAX_CONNECTIONS,
            header_timeout: Self::DEFAULT_HEADER_TIMEOUT,
        }
    }
}

/// Serves `router` on `listener` (HTTP/1.1) within `limits` until `stop` completes, then
/// stops accepting and waits for the open connections to finish their requests.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: AdminLimits,
    stop: impl Future<Output = ()>,
) {
    use hyper_util::rt::{TokioIo, TokioTimer};
    use hyper_util::server::graceful::GracefulShutdown;
    use hyper_util::service::TowerToHyperService;

    // One permit per open connection, held by its task: the cap is checked on accept
    // without waiting, so a full house costs nothing more than the refused socket.
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let graceful = GracefulShutdown::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout);
    // Long-lived responses (`/events`) end when this turns true, so that the graceful
    // shutdown below does not wait for a dashboard to be closed.
    let (draining, drained) = tokio::sync::watch::channel(false);
    let router = router.layer(axum::Extension(dashboard::Draining(drained)));
    // Said once per spell at the cap, not once per refused connection (a flood).
    let mut refusing = false;
    tokio::pin!(stop);
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut stop => break,
        };
        let tcp = match accepted {
            Ok((tcp, _peer)) => tcp,
            Err(e) => {
                // Out of file descriptors, most likely: wait instead of spinning.
                warn!(error = %e, "admin HTTP cannot accept a connection");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            if !refusing {
                warn!(
                    max_connections = limits.max_connections,
                    "admin HTTP is at its connection limit; closing new connections"
                );
                refusing = true;
            }
            drop(tcp);
            continue;
        };
        refusing = false;
        let conn =
            http.serve_connection(TokioIo::new(tcp), TowerToHyperService::new(router.clone()));
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            // A client that hangs up or times out is no error of the server's.
            let _ = conn.await;
            drop(permit);
        });
    }
    drop(listener);
    let _ = draining.send(true);
    graceful.shutdown().await;
}

pub fn router(state: AdminState) -> Router {
    Router::new()
        .route("/", get(dashboard::page))
        .route("/events", get(dashboard::events))
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
            for u in s
                .board
                .file_health()
                .map(|h| h.named_unreadable)
                .unwrap_or_default()
            {
                body.push_str(&format!(
                    "warning: cannot read {}: {} (since {}); the proxies keep its last content\n",
                    u.path.display(),
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
            .set_named_files_unreadable(h.named_unreadable.len());
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
    /// Where the proxy's node says it is, when it says.
    locality: Option<ProxyLocality<'a>>,
}

/// A node's locality, as `/status` shows it.
#[derive(Serialize)]
struct ProxyLocality<'a> {
    region: &'a str,
    zone: &'a str,
    sub_zone: &'a str,
}

impl<'a> ProxyLocality<'a> {
    fn of(record: &'a ProxyRecord) -> Option<ProxyLocality<'a>> {
        let l = record.node.as_ref()?.locality.as_ref()?;
        Some(ProxyLocality {
            region: &l.region,
            zone: &l.zone,
            sub_zone: &l.sub_zone,
        })
    }
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
            locality: ProxyLocality::of(p),
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
            // The files the state names that cannot be read now (their last content is
            // still served).
            "files_unreadable": h.named_unreadable.iter().map(|u| json!({
                "path": u.path,
                "error": u.error,
                "since": humantime::format_rfc3339_millis(u.since).to_string(),
            })).collect::<Vec<_>>(),
        })
    });
    let load = s
        .board
        .active()
        .map(|a| load_status(&a.state, &s.load, tokio::time::Instant::now()));
    Json(json!({
        "state": state,
        "watch": file,
        "rejected": s.board.last_rejection(),
        "internal_error": s.board.last_internal_error(),
        "rollout": s.board.rollout_status(),
        "databases": s.board.databases(),
        "proxies": proxies,
        "load": load,
        // The last events an operator reads (oldest first): the dashboard's history.
        "history": s.events.recent().iter().map(|e| serde_json::to_value(&**e).unwrap_or_default()).collect::<Vec<_>>(),
    }))
}

/// How far back `/status`'s `load` looks.
pub const LOAD_WINDOW: Duration = Duration::from_secs(60);

/// `/status`'s `load`: per service and color (cluster `<service>-<color>`), what the
/// proxies reported over the last [`LOAD_WINDOW`].
fn load_status(state: &DesiredState, load: &LoadBoard, now: tokio::time::Instant) -> Value {
    let services = state.services.iter().map(|service| {
        let colors = Color::ALL.iter().map(|&color| {
            let l = load.recent(&service.cluster_name(color), LOAD_WINDOW, now);
            let numbers = json!({
                "in_flight": l.in_flight,
                "requests": l.requests,
                "issued": l.issued,
                "errors": l.errors,
                "error_ratio": l.error_ratio(),
                "proxies_reporting": l.proxies_reporting,
            });
            (color.as_str().to_owned(), numbers)
        });
        (service.name.clone(), Value::Object(colors.collect()))
    });
    Value::Object(services.collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::board::{Delta, Retention};

    #[test]
    fn load_shows_each_color_of_each_service_over_the_last_minute() {
        let state = crate::state::parse_str(
            "listeners:\n  - name: public\n    address: 127.0.0.1\n    port: 10000\n\
             services:\n  - name: summarizer\n    listener: public\n    domains: [\"*\"]\n    \
             blue:\n      endpoints: [\"127.0.0.1:8081\"]\n    green:\n      endpoints: \
             [\"127.0.0.1:8082\"]\n    active: blue\n",
        )
        .unwrap();
        let t0 = tokio::time::Instant::now();
        let load = LoadBoard::new(Retention::for_interval(Duration::from_secs(1)), t0);
        let report = |at, issued, successes, errors, in_flight| {
            let delta = Delta {
                issued,
                successes,
                errors,
                in_flight,
            };
            load.record("edge-1", 1, [("summarizer-blue", delta)], |_| true, at);
        };
        report(t0, 100, 100, 0, 0); // more than a minute before `now`
        let now = t0 + Duration::from_secs(90);
        report(now, 10, 6, 2, 2);
        let shown = load_status(&state, &load, now);
        assert_eq!(
            shown,
            json!({
                "summarizer": {
                    "blue": {
                        "in_flight": 2, "requests": 8, "errors": 2, "error_ratio": 0.25,
                        "issued": 10, "proxies_reporting": 1
                    },
                    "green": {
                        "in_flight": 0, "requests": 0, "errors": 0, "error_ratio": null,
                        "issued": 0, "proxies_reporting": 0
                    }
                }
            })
        );
    }
}
