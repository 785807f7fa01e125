//! The state pipeline: each state file content the watcher reports is translated,
//! checked and published, or its rejection recorded; and either way told to `/status`,
//! the metrics and the event bus.
//!
//! [`Pipeline::apply`] is one synchronous step, free of sockets and files (what the audit
//! trail says about the file comes from a closure, read after publishing), so unit tests
//! drive it directly; [`run`] only feeds it the watcher's reports.

use std::sync::Arc;
use std::time::SystemTime;

use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tracing::{error, info, warn};

use crate::convergence::Convergence;
use crate::events::{Event, EventBus, FileInfo, ServiceChange, Split};
use crate::metrics::Metrics;
use crate::proxies::ProxyRegistry;
use crate::state::changes::{Change, StateChanges, changes};
use crate::state::watch::WatchEvent;
use crate::state::{Color, DesiredState, Service, StateError};
use crate::status::StateBoard;
use crate::xds::cache::{SnapshotCache, SnapshotWriter, snapshot_cache};
use crate::xds::snapshot::{InconsistentSnapshot, Snapshot};

/// Desired state -> snapshot (the real one is [`crate::translate::translate`]; tests pass
/// one that fails, to see a translation bug handled).
pub type Translate = fn(&DesiredState) -> Result<Snapshot, InconsistentSnapshot>;

/// Where the pipeline reports, besides the snapshot it publishes.
#[derive(Debug, Clone)]
pub struct Reports {
    pub board: StateBoard,
    pub metrics: Metrics,
    pub events: EventBus,
    pub convergence: Arc<Convergence>,
    /// For the number of proxies a switch goes to.
    pub registry: ProxyRegistry,
}

/// What one step did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// A new state is in force.
    Published { version: String },
    /// The file was rejected; the last good state stays.
    Rejected,
    /// A valid state did not translate (a bug in switchyard); the last good state stays.
    InternalError,
}

/// The state in force, and everything the pipeline needs to replace it.
#[derive(Debug)]
pub struct Pipeline {
    writer: SnapshotWriter,
    reports: Reports,
    translate: Translate,
    /// The state in force and its version (hashing a large state is not free: once is
    /// enough).
    current: (Arc<DesiredState>, String),
}

impl Pipeline {
    /// Starts with `state`, the file's content at startup, in force: translated and
    /// recorded, but not a switch (no proxy has anything yet). Returns the cache streams
    /// read from.
    pub fn start(
        state: Arc<DesiredState>,
        content_hash: String,
        file: FileInfo,
        reports: Reports,
        translate: Translate,
    ) -> Result<(Pipeline, SnapshotCache), InconsistentSnapshot> {
        let snapshot = translate(&state)?;
        let version = snapshot.state_version.clone();
        let (cache, writer) = snapshot_cache(snapshot);
        reports
            .board
            .accepted(state.clone(), version.clone(), content_hash.clone());
        reports.metrics.state_accepted(&state);
        reports.events.emit(Event::StateAccepted {
            at: SystemTime::now(),
            version: version.clone(),
            previous_version: None,
            content_hash,
            file,
            changes: service_changes(&changes(None, &state)),
        });
        let pipeline = Pipeline {
            writer,
            reports,
            translate,
            current: (state, version),
        };
        Ok((pipeline, cache))
    }

    /// Applies one report of the watcher. `file` describes the state file for the audit
    /// trail; it is called after publishing, off the path of a switch.
    pub fn apply(&mut self, event: WatchEvent, file: impl FnOnce() -> FileInfo) -> Outcome {
        match event {
            WatchEvent::Accepted {
                state,
                content_hash,
                seen_at,
            } => self.accept(state, content_hash, seen_at, file),
            WatchEvent::Rejected {
                error,
                content_hash,
            } => {
                for line in error.lines() {
                    warn!(problem = %line, "state file rejected; keeping the last good state");
                }
                self.reject(&error, content_hash, file());
                Outcome::Rejected
            }
        }
    }

    fn accept(
        &mut self,
        state: Arc<DesiredState>,
        content_hash: String,
        seen_at: Instant,
        file: impl FnOnce() -> FileInfo,
    ) -> Outcome {
        let r = &self.reports;
        let snapshot = match (self.translate)(&state) {
            Ok(snapshot) => snapshot,
            Err(e) => {
                error!(error = %e, "bug: a valid state translated inconsistently; keeping the last good state");
                r.metrics.state_internal_error();
                r.board.internal_error(e.to_string(), content_hash.clone());
                r.events.emit(Event::StateInternalError {
                    at: SystemTime::now(),
                    content_hash,
                    file: file(),
                    message: e.to_string(),
                    active_version: Some(self.current.1.clone()),
                });
                return Outcome::InternalError;
            }
        };
        let version = snapshot.state_version.clone();
        let before = self.writer.current();
        let types = crate::translate::changed_types(before.snapshot(), &snapshot);
        // The rollout is registered before any proxy can reach it.
        r.convergence.started(version.clone(), seen_at);
        self.writer.publish(snapshot);
        // Everything below reports the switch; proxies are already getting it.
        let (previous, previous_version) = &self.current;
        let changed = changes(Some(previous), &state);
        log_changes(&changed);
        r.metrics.state_accepted(&state);
        r.board
            .accepted(state.clone(), version.clone(), content_hash.clone());
        info!(version, "state accepted");
        let now = SystemTime::now();
        r.events.emit(Event::StateAccepted {
            at: now,
            version: version.clone(),
            previous_version: Some(previous_version.clone()),
            content_hash,
            file: file(),
            changes: service_changes(&changed),
        });
        r.events.emit(Event::SwitchStarted {
            at: now,
            version: version.clone(),
            types: types.iter().map(|t| t.short_name()).collect(),
            proxies: r.registry.len(),
        });
        self.current = (state, version.clone());
        Outcome::Published { version }
    }

    fn reject(&self, error: &StateError, content_hash: String, file: FileInfo) {
        let r = &self.reports;
        r.metrics.state_rejected();
        r.board.rejected(error, content_hash.clone());
        r.events.emit(Event::StateRejected {
            at: SystemTime::now(),
            content_hash,
            file,
            errors: error.lines(),
            active_version: Some(self.current.1.clone()),
        });
    }
}

/// Applies every report of the watcher until it stops or `stop` turns true. `file`
/// describes the state file for the audit trail.
pub async fn run(
    mut pipeline: Pipeline,
    mut incoming: mpsc::UnboundedReceiver<WatchEvent>,
    file: impl Fn() -> FileInfo,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let event = tokio::select! {
            e = incoming.recv() => match e { Some(e) => e, None => return },
            _ = stop.wait_for(|s| *s) => return,
        };
        pipeline.apply(event, &file);
    }
}

fn split(s: &Service) -> Split {
    Split {
        active: s.active,
        blue: s.weight(Color::Blue),
        green: s.weight(Color::Green),
    }
}

/// Services whose split changed, or that were added or removed, sorted by name.
fn service_changes(changed: &StateChanges<'_>) -> Vec<ServiceChange> {
    changed
        .services
        .iter()
        .filter_map(|c| {
            let (before, after) = (c.before().map(split), c.after().map(split));
            let name = &c.before().or(c.after())?.name;
            (before != after).then(|| ServiceChange {
                service: name.clone(),
                before,
                after,
            })
        })
        .collect()
}

/// Logs each service switched, added or removed.
fn log_changes(changed: &StateChanges<'_>) {
    for (before, after) in changed.switches() {
        info!(service = %after.name, from = %before.active, to = %after.active, "switching");
    }
    for c in &changed.services {
        match *c {
            Change::Added(s) => info!(service = %s.name, active = %s.active, "service added"),
            Change::Removed(s) => info!(service = %s.name, "service removed"),
            Change::Changed { .. } => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::{Problem, parse_str};
    use crate::translate::translate;
    use crate::xds::ResourceType;
    use std::path::PathBuf;

    const BLUE: &str = include_str!("../tests/fixtures/one_service.yaml");

    fn green() -> String {
        BLUE.replace("active: blue", "active: green")
    }

    fn reports() -> Reports {
        let registry = ProxyRegistry::default();
        let metrics = Metrics::new();
        let events = EventBus::default();
        Reports {
            board: StateBoard::default(),
            convergence: Convergence::new(registry.clone(), metrics.clone(), events.clone()),
            metrics,
            events,
            registry,
        }
    }

    fn start_with(text: &str, translate: Translate) -> (Pipeline, SnapshotCache, Reports) {
        let r = reports();
        let state = Arc::new(parse_str(text).unwrap());
        let (p, cache) = Pipeline::start(
            state,
            "hash0".into(),
            FileInfo::default(),
            r.clone(),
            translate,
        )
        .unwrap();
        (p, cache, r)
    }

    fn accepted(text: &str) -> WatchEvent {
        WatchEvent::Accepted {
            state: Arc::new(parse_str(text).unwrap()),
            content_hash: "hash1".into(),
            seen_at: Instant::now(),
        }
    }

    fn file() -> FileInfo {
        FileInfo {
            path: "/etc/switchyard/state.yaml".into(),
            ..FileInfo::default()
        }
    }

    #[tokio::test]
    async fn an_accepted_state_is_published_then_reported() {
        let (mut p, cache, r) = start_with(BLUE, translate);
        let mut events = r.events.subscribe();
        let before = cache.current().snapshot().state_version.clone();
        let outcome = p.apply(accepted(&green()), file);
        let after = cache.current().snapshot().state_version.clone();
        assert_ne!(before, after);
        assert_eq!(
            outcome,
            Outcome::Published {
                version: after.clone()
            }
        );
        assert_eq!(r.board.active().unwrap().version, after);
        let Event::StateAccepted {
            previous_version,
            changes,
            file,
            ..
        } = &*events.recv().await.unwrap()
        else {
            panic!("not state_accepted")
        };
        assert_eq!(previous_version.as_deref(), Some(before.as_str()));
        assert_eq!(file.path, "/etc/switchyard/state.yaml");
        assert_eq!(changes.len(), 1);
        assert_eq!(changes[0].service, "summarizer");
        assert_eq!(changes[0].before.as_ref().unwrap().active, Color::Blue);
        assert_eq!(changes[0].after.as_ref().unwrap().green, 100);
        let Event::SwitchStarted { types, proxies, .. } = &*events.recv().await.unwrap() else {
            panic!("not switch_started")
        };
        assert_eq!(*types, [ResourceType::Route.short_name()]);
        assert_eq!(*proxies, 0);
    }

    #[tokio::test]
    async fn a_rejected_file_keeps_the_last_good_state_and_says_why() {
        let (mut p, cache, r) = start_with(BLUE, translate);
        let mut events = r.events.subscribe();
        let version = cache.current().snapshot().state_version.clone();
        let error = StateError::Invalid {
            path: PathBuf::from("state.yaml"),
            problems: vec![Problem {
                line: 13,
                column: 13,
                message: "active must be `blue` or `green`, not `purple`".into(),
            }],
        };
        let outcome = p.apply(
            WatchEvent::Rejected {
                error,
                content_hash: "bad".into(),
            },
            file,
        );
        assert_eq!(outcome, Outcome::Rejected);
        assert_eq!(cache.current().snapshot().state_version, version);
        let rejection = r.board.last_rejection().unwrap();
        assert_eq!(rejection.line, Some(13));
        assert_eq!(
            rejection.errors,
            ["state.yaml:13:13: active must be `blue` or `green`, not `purple`"]
        );
        let Event::StateRejected { active_version, .. } = &*events.recv().await.unwrap() else {
            panic!("not state_rejected")
        };
        assert_eq!(active_version.as_deref(), Some(version.as_str()));
        assert!(
            r.metrics
                .encode()
                .contains(r#"switchyard_state_files_total{result="rejected"} 1"#)
        );
    }

    /// A translation with a bug: it fails whenever a service is green.
    fn fails_on_green(state: &DesiredState) -> Result<Snapshot, InconsistentSnapshot> {
        if state.services.iter().any(|s| s.active == Color::Green) {
            return Err(InconsistentSnapshot::ClusterWithoutEndpoints("x".into()));
        }
        translate(state)
    }

    #[tokio::test]
    async fn a_translation_bug_is_an_internal_error_not_a_rejected_file() {
        let (mut p, cache, r) = start_with(BLUE, fails_on_green);
        let mut events = r.events.subscribe();
        let version = cache.current().snapshot().state_version.clone();
        let outcome = p.apply(accepted(&green()), file);
        assert_eq!(outcome, Outcome::InternalError);
        assert_eq!(cache.current().snapshot().state_version, version);
        let Event::StateInternalError {
            message,
            active_version,
            ..
        } = &*events.recv().await.unwrap()
        else {
            panic!("not state_internal_error")
        };
        assert_eq!(message, "cluster `x` has no endpoints");
        assert_eq!(active_version.as_deref(), Some(version.as_str()));
        assert!(r.board.last_rejection().is_none(), "not the file's fault");
        let internal = r.board.last_internal_error().unwrap();
        assert_eq!(internal.message, "cluster `x` has no endpoints");
        assert!(
            r.metrics
                .encode()
                .contains(r#"switchyard_state_files_total{result="internal_error"} 1"#)
        );
        // The next good state clears it.
        p.apply(accepted(&BLUE.replace("8081", "8091")), file);
        assert!(r.board.last_internal_error().is_none());
    }
}
