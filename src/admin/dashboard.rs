//! The live dashboard: `GET /` is one self-contained page (`dashboard.html`: its HTML, CSS
//! and script, no external asset) that loads `/status` once, then follows `GET /events`, a
//! Server-Sent Events stream of the [`EventBus`](crate::events::EventBus), re-reading
//! `/status` on each event. Read-only: the page only reads those two.
//!
//! An `/events` connection lasts as long as the page is open. It holds one of the admin
//! server's connections (`--admin-max-connections`) the whole time; the header timeout
//! does not cut it (its headers came long ago); a comment every [`KEEP_ALIVE`] finds a
//! reader that went away; and it ends when the admin server stops, so a dashboard left open
//! does not hold up a shutdown.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::header;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{Html, IntoResponse};
use futures::{Stream, StreamExt};
use serde_json::json;
use tokio::sync::broadcast::{self, error::RecvError};
use tokio::sync::watch;

use super::AdminState;
use crate::events::Event;

/// The page: HTML, CSS and script in one file.
pub const PAGE: &str = include_str!("dashboard.html");

/// How often an idle `/events` stream sends a comment: a reader that went away is found
/// (and its connection freed) within this long.
pub const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// Set by [`super::serve`] when it stops accepting: open `/events` streams end then.
#[derive(Clone, Debug)]
pub struct Draining(pub watch::Receiver<bool>);

/// `GET /`. The content security policy lets the page load nothing but itself and talk to
/// nothing but this server.
pub async fn page() -> impl IntoResponse {
    (
        [
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; \
                 connect-src 'self'; img-src data:; base-uri 'none'; form-action 'none'",
            ),
            (header::CACHE_CONTROL, "no-store"),
        ],
        Html(PAGE),
    )
}

/// `GET /events`: every event from now on, as `data:` lines of the JSON the audit log
/// writes, but for per-type acknowledgements (a proxy's `proxy_synced` says the same once).
/// A reader that falls behind the bus is sent `{"event":"lagged","missed":N}` and carries
/// on from the oldest event still kept.
pub async fn events(
    State(s): State<AdminState>,
    draining: Option<axum::Extension<Draining>>,
) -> Sse<impl Stream<Item = Result<SseEvent, Infallible>>> {
    let stream = follow(s.events.subscribe());
    let stop = async move {
        if let Some(axum::Extension(Draining(mut rx))) = draining {
            let _ = rx.wait_for(|d| *d).await;
        } else {
            std::future::pending::<()>().await;
        }
    };
    Sse::new(stream.take_until(stop)).keep_alive(KeepAlive::new().interval(KEEP_ALIVE))
}

/// The events `rx` receives as SSE events; a lag is reported and skipped, never the end.
fn follow(rx: broadcast::Receiver<Arc<Event>>) -> impl Stream<Item = Result<SseEvent, Infallible>> {
    futures::stream::unfold(rx, |mut rx| async move {
        loop {
            let data = match rx.recv().await {
                Ok(e) if matches!(*e, Event::ProxyAcked { .. }) => continue,
                Ok(e) => SseEvent::default().json_data(&*e),
                Err(RecvError::Lagged(missed)) => {
                    SseEvent::default().json_data(json!({"event": "lagged", "missed": missed}))
                }
                Err(RecvError::Closed) => return None,
            };
            let data = data.expect("bug: events always serialize");
            return Some((Ok(data), rx));
        }
    })
}

#[cfg(test)]
mod tests {
    use std::time::SystemTime;

    use axum::body::Body;
    use axum::http::Request;
    use axum::response::Response;
    use http_body_util::BodyExt;
    use hyper::service::Service as _;
    use hyper_util::service::TowerToHyperService;

    use super::*;
    use crate::events::EventBus;
    use crate::load::board::{LoadBoard, Retention};
    use crate::xds::cache::snapshot_cache;
    use crate::xds::snapshot::Snapshot;

    fn started(version: &str) -> Event {
        Event::SwitchStarted {
            at: SystemTime::UNIX_EPOCH,
            version: version.to_owned(),
            types: vec!["routes"],
            proxies: 2,
        }
    }

    /// `GET path` from the admin router on `events`, with nothing else going on.
    async fn get(events: EventBus, path: &str) -> Response {
        let (cache, _writer) = snapshot_cache(Snapshot::empty());
        let router = super::super::router(AdminState {
            board: Default::default(),
            registry: Default::default(),
            cache,
            metrics: crate::metrics::Metrics::new(),
            load: LoadBoard::new(
                Retention::for_interval(Duration::from_secs(1)),
                tokio::time::Instant::now(),
            ),
            events,
        });
        let request = Request::get(path).body(Body::empty()).unwrap();
        TowerToHyperService::new(router)
            .call(request)
            .await
            .unwrap()
    }

    /// The `data:` of the next SSE message in `body`, as JSON (comments skipped).
    async fn next_data(body: &mut Body) -> serde_json::Value {
        let mut text = String::new();
        loop {
            if let Some(end) = text.find("\n\n") {
                let message: String = text.drain(..end + 2).collect();
                if let Some(data) = message.lines().find_map(|l| l.strip_prefix("data: ")) {
                    return serde_json::from_str(data).unwrap();
                }
                continue;
            }
            let frame = tokio::time::timeout(Duration::from_secs(5), body.frame())
                .await
                .expect("an SSE message within 5 s")
                .expect("the stream goes on")
                .unwrap();
            text.push_str(std::str::from_utf8(&frame.into_data().unwrap()).unwrap());
        }
    }

    /// The SSE body [`follow`] makes of `rx`.
    fn sse_body(rx: broadcast::Receiver<Arc<Event>>) -> Body {
        Sse::new(follow(rx)).into_response().into_body()
    }

    #[tokio::test]
    async fn events_streams_each_event_as_the_audit_log_writes_it() {
        let bus = EventBus::default();
        let response = get(bus.clone(), "/events").await;
        assert_eq!(
            response.headers()[header::CONTENT_TYPE],
            "text/event-stream"
        );
        let mut body = response.into_body();
        assert!(bus.has_subscribers());
        let event = started("v2");
        bus.emit(event.clone());
        let audit = serde_json::to_value(&event).unwrap();
        assert_eq!(audit["event"], "switch_started");
        assert_eq!(next_data(&mut body).await, audit);
    }

    #[tokio::test]
    async fn a_lagging_reader_is_told_how_many_it_missed_and_goes_on() {
        let bus = EventBus::with_capacity(Vec::new(), 2);
        let mut body = sse_body(bus.subscribe());
        for i in 0..5 {
            bus.emit(started(&format!("v{i}")));
        }
        let lagged = next_data(&mut body).await;
        assert_eq!(lagged, json!({"event": "lagged", "missed": 3}));
        // The two the bus kept, then a live one.
        assert_eq!(next_data(&mut body).await["version"], "v3");
        assert_eq!(next_data(&mut body).await["version"], "v4");
        bus.emit(started("v5"));
        assert_eq!(next_data(&mut body).await["version"], "v5");
    }

    #[tokio::test]
    async fn per_type_acknowledgements_are_left_out() {
        let bus = EventBus::default();
        let mut body = sse_body(bus.subscribe());
        bus.emit(Event::ProxyAcked {
            at: SystemTime::UNIX_EPOCH,
            node_id: "edge-1".into(),
            stream_id: 1,
            r#type: "routes",
            version: "r1".into(),
            state_version: "v1".into(),
        });
        bus.emit(started("v2"));
        assert_eq!(next_data(&mut body).await["event"], "switch_started");
    }

    #[tokio::test]
    async fn the_page_names_no_external_asset() {
        let response = get(EventBus::default(), "/").await;
        assert_eq!(response.status(), 200);
        let csp = response.headers()[header::CONTENT_SECURITY_POLICY]
            .to_str()
            .unwrap()
            .to_owned();
        assert!(csp.starts_with("default-src 'none'"), "{csp}");
        let body = response.into_body().collect().await.unwrap().to_bytes();
        let page = std::str::from_utf8(&body).unwrap();
        assert!(page.contains("<title>switchyard</title>"));
        for external in ["http://", "https://", "<link", " src=", "@import", "url("] {
            assert!(
                !page.contains(external),
                "the dashboard names an external asset ({external})"
            );
        }
        for endpoint in ["\"/status\"", "\"/events\""] {
            assert!(page.contains(endpoint), "the page does not read {endpoint}");
        }
    }
}
