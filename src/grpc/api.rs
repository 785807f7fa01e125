//! The `switchyard.v1.Switchyard` service: state, proxies and a live event stream.

use std::pin::Pin;
use std::sync::Arc;

use futures::Stream;
use tokio::sync::broadcast;
use tokio::sync::broadcast::error::RecvError;
use tonic::{Request, Response, Status};

use super::pb::{self, switchyard_server::Switchyard};
use super::timestamp;
use crate::events::{Event, EventBus};
use crate::proxies::{ProxyRecord, ProxyRegistry, TypeRecord};
use crate::status::StateBoard;
use crate::xds::ResourceType;
use crate::xds::cache::SnapshotCache;
use crate::xds::sync::{ProxyStatus, SyncStatus};

/// The service. Cheap to clone.
#[derive(Debug, Clone)]
pub struct SwitchyardApi {
    board: StateBoard,
    registry: ProxyRegistry,
    cache: SnapshotCache,
    events: EventBus,
}

impl SwitchyardApi {
    pub fn new(
        board: StateBoard,
        registry: ProxyRegistry,
        cache: SnapshotCache,
        events: EventBus,
    ) -> SwitchyardApi {
        SwitchyardApi {
            board,
            registry,
            cache,
            events,
        }
    }
}

fn sync_status(s: SyncStatus) -> pb::SyncStatus {
    match s {
        SyncStatus::NotSubscribed => pb::SyncStatus::NotSubscribed,
        SyncStatus::Synced => pb::SyncStatus::Synced,
        SyncStatus::Stale => pb::SyncStatus::Stale,
        SyncStatus::Rejected => pb::SyncStatus::Rejected,
    }
}

fn type_status(t: ResourceType, r: &TypeRecord) -> pb::TypeStatus {
    let status = sync_status(r.status);
    pb::TypeStatus {
        r#type: t.short_name().to_owned(),
        status: status as i32,
        sent: r.sent.as_ref().map(|v| pb::VersionAt {
            version: v.version.clone(),
            at: Some(timestamp(v.at)),
        }),
        acked: r.acked.as_ref().map(|v| pb::VersionAt {
            version: v.version.clone(),
            at: Some(timestamp(v.at)),
        }),
        rejected: r.rejected.as_ref().map(|v| pb::RejectedVersion {
            version: v.version.clone(),
            message: v.message.clone(),
            at: Some(timestamp(v.at)),
        }),
    }
}

/// A proxy's overall status (worked out by `ProxyStatus::of`) in the API's terms.
fn proxy_status(s: ProxyStatus) -> pb::ProxyStatus {
    match s {
        ProxyStatus::Connecting => pb::ProxyStatus::Connecting,
        ProxyStatus::Synced => pb::ProxyStatus::Synced,
        ProxyStatus::Stale => pb::ProxyStatus::Stale,
        ProxyStatus::Rejected => pb::ProxyStatus::Rejected,
    }
}

fn proxy(p: &ProxyRecord) -> pb::Proxy {
    let types: Vec<pb::TypeStatus> = ResourceType::ALL
        .iter()
        .map(|t| type_status(*t, p.type_record(*t)))
        .collect();
    pb::Proxy {
        node_id: p.node_id.clone(),
        node_cluster: p.node_cluster.clone(),
        envoy_version: p.envoy_version.clone(),
        protocol: p.protocol.as_str().to_owned(),
        peer: p.peer.clone(),
        connected_at: Some(timestamp(p.connected_at)),
        synced: p.status.is_settled(),
        state_version: p.state_version.clone(),
        status: proxy_status(p.status) as i32,
        types,
        stream_id: p.stream_id,
    }
}

fn split(s: &Option<crate::events::Split>) -> Option<pb::Split> {
    s.as_ref().map(|s| pb::Split {
        active: s.active.as_str().to_owned(),
        blue_weight: s.blue,
        green_weight: s.green,
    })
}

/// A service's rollout, in the API's terms.
fn service_rollout(r: &crate::rollout::status::ServiceRollout) -> pb::ServiceRollout {
    pb::ServiceRollout {
        service: r.service.clone(),
        wanted: r.wanted.as_str().to_owned(),
        in_force: r.in_force.as_str().to_owned(),
        phase: r.phase.to_owned(),
        reason: r.reason.clone().unwrap_or_default(),
        trip: r.trip.as_ref().map(rollback_trip),
        for_seconds: r.for_seconds.unwrap_or_default(),
        left_seconds: r.left_seconds.unwrap_or_default(),
        gate_failing: r
            .details
            .gate
            .iter()
            .flat_map(|g| &g.failing)
            .map(|f| pb::FailingEndpoint {
                endpoint: f.endpoint.clone(),
                reason: f.reason.clone(),
            })
            .collect(),
        gate_shadow: r
            .details
            .gate
            .as_ref()
            .and_then(|g| g.shadow.clone())
            .unwrap_or_default(),
        traffic: r
            .details
            .traffic
            .iter()
            .map(|t| pb::ColorTraffic {
                color: t.color.as_str().to_owned(),
                requests: t.requests,
                errors: t.errors,
                in_flight: t.in_flight,
                proxies_reporting: u32::try_from(t.proxies_reporting).unwrap_or(u32::MAX),
            })
            .collect(),
        attempt: r.attempt.clone().unwrap_or_default(),
        group: r.group.clone().unwrap_or_default(),
        rollout: r.rollout.as_ref().map(rollout_waves),
    }
}

/// A service's waves, in the API's terms.
fn rollout_waves(r: &crate::rollout::status::RolloutView) -> pb::RolloutWaves {
    let count = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
    pb::RolloutWaves {
        soak_seconds: r.soak.as_secs_f64(),
        reached: count(r.reached),
        rolling: r.rolling,
        waves: r
            .waves
            .iter()
            .map(|w| pb::Wave {
                wave: count(w.wave),
                selector: w.selector.clone(),
                color: w.color.as_str().to_owned(),
                proxies: count(w.proxies),
                synced: count(w.synced),
                connecting: count(w.connecting),
            })
            .collect(),
    }
}

/// What tripped a rollback, in the API's terms.
pub fn rollback_trip(t: &crate::rollout::decide::Trip) -> pb::RollbackTrip {
    pb::RollbackTrip {
        errors: t.errors,
        requests: t.requests,
        proxies: t
            .proxies
            .iter()
            .map(|(node_id, errors)| pb::ProxyErrors {
                node_id: node_id.clone(),
                errors: *errors,
            })
            .collect(),
        failing_endpoints: t
            .failing_endpoints
            .iter()
            .map(|(endpoint, reason)| pb::FailingEndpoint {
                endpoint: endpoint.clone(),
                reason: reason.clone(),
            })
            .collect(),
        after_seconds: t.after.as_secs_f64(),
        window_seconds: t.window.as_secs_f64(),
    }
}

/// An event in the API's terms.
pub fn event(e: &Event) -> pb::Event {
    use pb::event::Kind;
    let (at, kind) = match e {
        Event::StateAccepted {
            at,
            version,
            previous_version,
            content_hash,
            file,
            changes,
        } => (
            at,
            Kind::StateAccepted(pb::StateAccepted {
                version: version.clone(),
                previous_version: previous_version.clone().unwrap_or_default(),
                content_hash: content_hash.clone(),
                path: file.path.clone(),
                changes: changes
                    .iter()
                    .map(|c| pb::ServiceChange {
                        service: c.service.clone(),
                        before: split(&c.before),
                        after: split(&c.after),
                    })
                    .collect(),
            }),
        ),
        Event::StateRejected {
            at,
            content_hash,
            file,
            errors,
            active_version,
        } => (
            at,
            Kind::StateRejected(pb::StateRejected {
                content_hash: content_hash.clone(),
                path: file.path.clone(),
                errors: errors.clone(),
                active_version: active_version.clone().unwrap_or_default(),
            }),
        ),
        Event::StateInternalError {
            at,
            content_hash,
            file,
            message,
            active_version,
        } => (
            at,
            Kind::StateInternalError(pb::StateInternalError {
                content_hash: content_hash.clone(),
                path: file.path.clone(),
                message: message.clone(),
                active_version: active_version.clone().unwrap_or_default(),
            }),
        ),
        Event::StateFilesChanged {
            at,
            version,
            previous_version,
            paths,
        } => (
            at,
            Kind::FilesChanged(pb::FilesChanged {
                version: version.clone(),
                previous_version: previous_version.clone(),
                paths: paths.clone(),
            }),
        ),
        Event::SwitchStarted {
            at,
            version,
            types,
            proxies,
        } => (
            at,
            Kind::SwitchStarted(pb::SwitchStarted {
                version: version.clone(),
                types: types.iter().map(|t| (*t).to_owned()).collect(),
                proxies: u32::try_from(*proxies).unwrap_or(u32::MAX),
            }),
        ),
        Event::ProxyAcked {
            at,
            node_id,
            stream_id,
            r#type,
            version,
            state_version,
        } => (
            at,
            Kind::ProxyAcked(pb::ProxyAcked {
                node_id: node_id.clone(),
                stream_id: *stream_id,
                r#type: (*r#type).to_owned(),
                version: version.clone(),
                state_version: state_version.clone(),
            }),
        ),
        Event::ProxySynced {
            at,
            node_id,
            stream_id,
            state_version,
        } => (
            at,
            Kind::ProxySynced(pb::ProxySynced {
                node_id: node_id.clone(),
                stream_id: *stream_id,
                state_version: state_version.clone(),
            }),
        ),
        Event::ProxyRejected {
            at,
            node_id,
            stream_id,
            r#type,
            version,
            message,
        } => (
            at,
            Kind::ProxyRejected(pb::ProxyRejected {
                node_id: node_id.clone(),
                stream_id: *stream_id,
                r#type: (*r#type).to_owned(),
                version: version.clone(),
                message: message.clone(),
            }),
        ),
        Event::SwitchComplete {
            at,
            version,
            proxies,
            took_ms,
        } => (
            at,
            Kind::SwitchComplete(pb::SwitchComplete {
                version: version.clone(),
                proxies: u32::try_from(*proxies).unwrap_or(u32::MAX),
                took_ms: *took_ms,
            }),
        ),
        Event::Rollout {
            at,
            service,
            decision,
            wanted,
            in_force,
            reason,
            trip,
            version,
        } => (
            at,
            Kind::Rollout(pb::Rollout {
                service: service.clone(),
                decision: (*decision).to_owned(),
                wanted: wanted.as_str().to_owned(),
                in_force: in_force.as_str().to_owned(),
                reason: reason.clone().unwrap_or_default(),
                trip: trip.as_ref().map(rollback_trip),
                version: version.clone(),
            }),
        ),
    };
    pb::Event {
        at: Some(timestamp(*at)),
        kind: Some(kind),
    }
}

type EventStream = Pin<Box<dyn Stream<Item = Result<pb::Event, Status>> + Send>>;

#[tonic::async_trait]
impl Switchyard for SwitchyardApi {
    async fn get_state(
        &self,
        _request: Request<pb::GetStateRequest>,
    ) -> Result<Response<pb::GetStateResponse>, Status> {
        let active = self
            .board
            .active()
            .ok_or_else(|| Status::unavailable("no valid state loaded"))?;
        let published = self.cache.current();
        let snapshot = published.snapshot();
        let rejection = self.board.last_rejection();
        Ok(Response::new(pb::GetStateResponse {
            version: active.version,
            content_hash: active.content_hash,
            accepted_at: Some(timestamp(active.accepted_at)),
            resource_versions: ResourceType::ALL
                .iter()
                .map(|t| pb::TypeVersion {
                    r#type: t.short_name().to_owned(),
                    version: snapshot.version(*t).to_owned(),
                })
                .collect(),
            services: crate::status::service_statuses(&active.state)
                .into_iter()
                .map(|s| pb::Service {
                    name: s.name,
                    listener: s.listener,
                    domains: s.domains,
                    active: s.active.as_str().to_owned(),
                    blue_weight: s.weights.blue,
                    green_weight: s.weights.green,
                    preview_header: if s.preview.enabled {
                        s.preview.header.clone()
                    } else {
                        String::new()
                    },
                    preview_port: s.preview.port.map_or(0, u32::from),
                    shadow_percent: s.shadow.map_or(0, |sh| sh.percent),
                    gated: s.gate.is_some(),
                    baked: s.bake.is_some(),
                    database: s.database.clone().unwrap_or_default(),
                    attempt: s.attempt.clone().unwrap_or_default(),
                })
                .collect(),
            rollout: self
                .board
                .rollout_status()
                .iter()
                .map(service_rollout)
                .collect(),
            databases: self
                .board
                .databases()
                .into_iter()
                .map(|d| pb::DatabaseVersion {
                    name: d.name,
                    version: d.version.unwrap_or_default(),
                    error: d.error.unwrap_or_default(),
                })
                .collect(),
            last_rejection: rejection.map(|r| pb::Rejection {
                errors: r.errors,
                line: r.line.unwrap_or(0),
                column: r.column.unwrap_or(0),
                content_hash: r.content_hash,
                rejected_at: Some(timestamp(r.rejected_at)),
                path: r.path.display().to_string(),
            }),
            internal_error: self.board.last_internal_error().map(|e| pb::InternalError {
                message: e.message,
                content_hash: e.content_hash,
                at: Some(timestamp(e.at)),
            }),
            listeners: active
                .state
                .listeners
                .iter()
                .map(|l| pb::Listener {
                    name: l.name.clone(),
                    address: l.address.to_string(),
                    port: l.port.into(),
                })
                .collect(),
        }))
    }

    async fn list_proxies(
        &self,
        request: Request<pb::ListProxiesRequest>,
    ) -> Result<Response<pb::ListProxiesResponse>, Status> {
        let want = &request.get_ref().node_id;
        let proxies = self
            .registry
            .proxies()
            .iter()
            .filter(|p| want.is_empty() || &p.node_id == want)
            .map(proxy)
            .collect();
        Ok(Response::new(pb::ListProxiesResponse { proxies }))
    }

    type WatchEventsStream = EventStream;

    /// Every event from now on. A reader more than the bus keeps (`--watch-events-buffer`,
    /// [`crate::events::CAPACITY`] by default) events behind (one that
    /// reads slower than events come, or not at all) gets a `Lagged` event saying how many
    /// it missed, then the call ends with RESOURCE_EXHAUSTED: nothing is queued for it
    /// beyond the bus's ring and what HTTP/2 flow control lets through.
    async fn watch_events(
        &self,
        _request: Request<pb::WatchEventsRequest>,
    ) -> Result<Response<Self::WatchEventsStream>, Status> {
        Ok(Response::new(Box::pin(watch(self.events.subscribe()))))
    }
}

/// Where a `WatchEvents` stream is.
enum Watch {
    Reading(broadcast::Receiver<Arc<Event>>),
    /// Told it missed this many; the call ends next.
    Lagged(u64),
}

/// The events `rx` receives, as [`Switchyard::watch_events`] sends them. Pulled: an event
/// is only taken from the bus when the transport asks for the next one.
fn watch(rx: broadcast::Receiver<Arc<Event>>) -> impl Stream<Item = Result<pb::Event, Status>> {
    futures::stream::unfold(Some(Watch::Reading(rx)), |state| async move {
        match state? {
            Watch::Reading(mut rx) => match rx.recv().await {
                Ok(e) => Some((Ok(event(&e)), Some(Watch::Reading(rx)))),
                Err(RecvError::Lagged(missed)) => {
                    let lagged = pb::Event {
                        at: Some(timestamp(std::time::SystemTime::now())),
                        kind: Some(pb::event::Kind::Lagged(pb::Lagged { missed })),
                    };
                    // The receiver is dropped here: the bus no longer keeps events for it.
                    Some((Ok(lagged), Some(Watch::Lagged(missed))))
                }
                Err(RecvError::Closed) => None,
            },
            Watch::Lagged(missed) => Some((
                Err(Status::resource_exhausted(format!(
                    "this WatchEvents call fell too far behind (--watch-events-buffer) and \
                     missed {missed} events; call WatchEvents again"
                ))),
                None,
            )),
        }
    })
}

#[cfg(test)]
mod tests {
    use crate::events::CAPACITY;
    use futures::StreamExt;

    use super::*;

    fn started(i: usize) -> Event {
        Event::SwitchStarted {
            at: std::time::SystemTime::now(),
            version: format!("v{i}"),
            types: vec!["clusters"],
            proxies: 1,
        }
    }

    #[tokio::test]
    async fn watcher_that_falls_behind_is_told_how_far_then_ended_with_resource_exhausted() {
        let bus = EventBus::default();
        let stream = watch(bus.subscribe());
        for i in 0..CAPACITY + 10 {
            bus.emit(started(i));
        }
        let items: Vec<_> = stream.collect().await;
        assert_eq!(items.len(), 2, "{items:?}");
        let lagged = items[0].as_ref().expect("the Lagged event first");
        assert_eq!(
            lagged.kind,
            Some(pb::event::Kind::Lagged(pb::Lagged { missed: 10 }))
        );
        let status = items[1].as_ref().expect_err("then the call ends");
        assert_eq!(status.code(), tonic::Code::ResourceExhausted);
        assert!(status.message().contains("missed 10"), "{status:?}");
        // Nothing is kept for it any more.
        assert!(!bus.has_subscribers());
    }

    #[tokio::test]
    async fn watcher_that_keeps_up_gets_every_event() {
        let bus = EventBus::default();
        let mut stream = Box::pin(watch(bus.subscribe()));
        for i in 0..CAPACITY * 2 {
            bus.emit(started(i));
            let got = stream.next().await.unwrap().unwrap();
            assert!(
                matches!(got.kind, Some(pb::event::Kind::SwitchStarted(s)) if s.version == format!("v{i}"))
            );
        }
    }
}
