//! The state pipeline: each state file content the watcher reports is translated,
//! checked and published, or its rejection recorded; and either way told to `/status`,
//! the metrics and the event bus.
//!
//! [`Pipeline::apply`] is one synchronous step, free of sockets and files (what the audit
//! trail says about the file comes from a closure, read after publishing), so unit tests
//! drive it directly; [`run`] only feeds it the watcher's reports and the rollout's ticks.
//!
//! What is published is the state *in force*: the file's state with each service's
//! `active` as the rollout decided ([`crate::rollout`]): a gate can hold a switch, a bake
//! can roll one back. [`Pipeline::tick`] re-decides between file changes and publishes
//! when the colors in force change.

use std::sync::Arc;
use std::time::SystemTime;

use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tracing::{error, info, warn};

use crate::convergence::Convergence;
use crate::events::{Event, EventBus, FileInfo, ServiceChange, Split};
use crate::metrics::Metrics;
use crate::proxies::ProxyRegistry;
use crate::rollout::tracks::{Decision, Observe, Tracks};
use crate::state::changes::{Change, StateChanges, changes};
use crate::state::files::Files;
use crate::state::watch::WatchEvent;
use crate::state::{Color, DesiredState, Service, StateError};
use crate::status::StateBoard;
use crate::xds::cache::{SnapshotCache, SnapshotWriter, snapshot_cache_with};
use crate::xds::snapshot::{InconsistentSnapshot, Snapshot};

/// Desired state and the content of the files it names -> snapshot (the real one is
/// [`crate::translate::translate_with`]; tests pass one that fails, to see a translation
/// bug handled).
pub type Translate = fn(&DesiredState, &Files) -> Result<Snapshot, InconsistentSnapshot>;

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
    /// The switches on their way through their waves, as published: the proxies of the
    /// waves they have not reached get a variant of the state in force.
    rolling: Vec<crate::fleet::Rolling>,
    /// The last good state file's state, and its content hash.
    desired: (Arc<DesiredState>, String),
    /// The content of the files it names (credentials, CAs, client certificates).
    files: Arc<Files>,
    /// Each service's rollout.
    tracks: Tracks,
    /// What the rollout's decisions are based on (probes, load reports, schema versions).
    observe: Arc<dyn Observe + Send + Sync>,
    /// When `/status` last heard of the rollout.
    reported_at: Instant,
    /// Where decisions are kept across a restart (`serve --decisions`).
    journal: Option<std::path::PathBuf>,
    /// Per service whose switch waits for its gate: the endpoints last reported failing
    /// it (a `gate_failing` event goes out when that set changes).
    gate_reported: std::collections::HashMap<String, Vec<String>>,
}

/// How often the rollout's `/status` is refreshed when nothing is pending.
const REFRESH: std::time::Duration = std::time::Duration::from_secs(1);

/// How often [`run`] re-decides the rollout while a decision is pending.
pub const TICK: std::time::Duration = std::time::Duration::from_millis(100);

impl Pipeline {
    /// Starts with `state`, the file's content at startup (with the files it names), in force: translated and
    /// recorded, but not a switch (no proxy has anything yet). Returns the cache streams
    /// read from.
    pub fn start(
        (desired, files): (Arc<DesiredState>, Arc<Files>),
        content_hash: String,
        file: FileInfo,
        reports: Reports,
        translate: Translate,
        tracks: Tracks,
        observe: Arc<dyn Observe + Send + Sync>,
    ) -> Result<(Pipeline, SnapshotCache), InconsistentSnapshot> {
        let state = tracks.apply_guarded(&desired, &*observe);
        let snapshot = translate(&state, &files)?;
        let version = snapshot.state_version.clone();
        let pipeline_rolling = tracks.rolling();
        let variants = crate::fleet::FleetVariants::new(
            &pipeline_rolling,
            state.clone(),
            files.clone(),
            translate,
        );
        let (cache, writer) = snapshot_cache_with(
            snapshot,
            variants.map(|v| v as Arc<dyn crate::xds::cache::Variants>),
        );
        reports
            .board
            .accepted(state.clone(), version.clone(), content_hash.clone());
        reports.metrics.state_accepted(&state);
        reports.events.emit(Event::StateAccepted {
            at: SystemTime::now(),
            version: version.clone(),
            previous_version: None,
            content_hash: content_hash.clone(),
            file,
            changes: service_changes(&changes(None, &state)),
        });
        let mut pipeline = Pipeline {
            writer,
            reports,
            translate,
            current: (state, version),
            rolling: pipeline_rolling,
            desired: (desired, content_hash),
            files,
            tracks,
            observe,
            reported_at: Instant::now(),
            journal: None,
            gate_reported: Default::default(),
        };
        pipeline.observe.sync(&pipeline.desired.0, &pipeline.tracks);
        pipeline.report_rollout();
        Ok((pipeline, cache))
    }

    /// Keeps the rollout's decisions in `path` after each one (see
    /// [`crate::rollout::journal`]).
    pub fn keep_decisions(&mut self, path: std::path::PathBuf) {
        self.journal = Some(path);
        self.save_decisions();
    }

    fn save_decisions(&self) {
        let Some(path) = &self.journal else { return };
        let bytes =
            crate::rollout::journal::encode(&self.tracks, Instant::now(), SystemTime::now());
        if let Err(e) = crate::rollout::journal::write(path, &bytes) {
            error!(error = %e, path = %path.display(), "cannot keep the rollout's decisions; a restart would forget them");
        }
    }

    /// Re-decides the rollout of the services that have a decision pending (a gate, a bake,
    /// a held switch) and publishes when a color in force changes. Nothing to do is cheap.
    pub fn tick(&mut self, now: Instant) -> Option<Outcome> {
        let desired = self.desired.0.clone();
        if self.tracks.busy() {
            let before = self.tracks.clone();
            let decisions = self.tracks.step(&desired, &*self.observe, now);
            self.report_gates(&desired);
            if !decisions.is_empty() {
                return self.carry_out(&desired, decisions, before, now);
            }
        }
        // Traffic and schema versions move on their own: refresh what `/status` shows of
        // them once a second, and keep shadow and preview traffic off a color a migration
        // has just stranded.
        if now.saturating_duration_since(self.reported_at) < REFRESH {
            return None;
        }
        self.report_rollout();
        if desired.databases.is_empty() {
            return None;
        }
        let state = self.tracks.apply_guarded(&desired, &*self.observe);
        if self.in_force(&state) {
            return None;
        }
        info!("the schema guard changed what the idle colors may get (shadow, preview)");
        let hash = self.desired.1.clone();
        Some(
            match self.publish(state, hash, now, None::<fn() -> FileInfo>) {
                Ok(version) => Outcome::Published { version },
                Err(()) => Outcome::InternalError,
            },
        )
    }

    /// Publishes what `decisions` put in force, then keeps and reports them; on a failed
    /// publish the tracks go back to `before` (the decisions did not happen).
    fn carry_out(
        &mut self,
        desired: &DesiredState,
        decisions: Vec<Decision>,
        before: Tracks,
        now: Instant,
    ) -> Option<Outcome> {
        let state = self.tracks.apply_guarded(&self.desired.0, &*self.observe);
        let outcome = if self.in_force(&state) {
            None
        } else {
            let hash = self.desired.1.clone();
            match self.publish(state, hash, now, None::<fn() -> FileInfo>) {
                Ok(version) => Some(Outcome::Published { version }),
                Err(()) => {
                    self.tracks = before;
                    return Some(Outcome::InternalError);
                }
            }
        };
        // Published first (a rollback waits for no disk), then kept, then reported:
        // whoever sees a decision may restart us, and the restart keeps it.
        self.save_decisions();
        self.observe.sync(desired, &self.tracks);
        self.report_rollout();
        self.emit_decisions(&decisions);
        outcome
    }

    /// Is `state`, with the tracks' waves, what the proxies are given already?
    fn in_force(&self, state: &DesiredState) -> bool {
        *state == *self.current.0 && self.tracks.rolling() == self.rolling
    }

    fn emit_decisions(&self, decisions: &[Decision]) {
        let at = SystemTime::now();
        for d in decisions {
            let Some(service) = self.desired.0.service(&d.service) else {
                continue;
            };
            let in_force = self.tracks.in_force(service);
            info!(
                service = %d.service,
                decision = d.transition.name(),
                wanted = %service.active,
                in_force = %in_force,
                reason = d.transition.reason().unwrap_or_default(),
                "rollout"
            );
            self.reports
                .metrics
                .rollout_decision(&d.service, d.transition.name());
            self.reports.events.emit(Event::Rollout {
                at,
                service: d.service.clone(),
                decision: d.transition.name(),
                wanted: service.active,
                in_force,
                reason: d.transition.reason(),
                trip: d.transition.trip().cloned(),
                version: self.current.1.clone(),
            });
        }
    }

    /// Emits a `gate_failing` event for each gated switch whose failing endpoints changed
    /// (not on every probe: the event says which endpoints fail and why, once).
    fn report_gates(&mut self, desired: &DesiredState) {
        let mut still_gating = std::collections::HashSet::new();
        for s in &desired.services {
            let Some(track) = self.tracks.get(&s.name) else {
                continue;
            };
            if !matches!(track.phase, crate::rollout::decide::Phase::Gating { .. }) {
                continue;
            }
            still_gating.insert(s.name.clone());
            let Some(gate) = self.observe.details(s, track).gate else {
                continue;
            };
            let probed: Vec<_> = gate
                .failing
                .iter()
                .filter(|f| f.reason != crate::rollout::gate::NOT_PROBED)
                .collect();
            let endpoints: Vec<String> = probed.iter().map(|f| f.endpoint.clone()).collect();
            if probed.is_empty() || self.gate_reported.get(&s.name) == Some(&endpoints) {
                continue;
            }
            let mut reason = format!(
                "{} of {} endpoints healthy, {} needed",
                gate.healthy, gate.total, gate.needed
            );
            for f in &probed {
                reason.push_str(&format!("; {}: {}", f.endpoint, f.reason));
            }
            warn!(service = %s.name, color = %gate.color, %reason, "gate failing");
            self.reports.events.emit(Event::Rollout {
                at: SystemTime::now(),
                service: s.name.clone(),
                decision: "gate_failing",
                wanted: s.active,
                in_force: track.in_force,
                reason: Some(reason),
                trip: None,
                version: self.current.1.clone(),
            });
            self.gate_reported.insert(s.name.clone(), endpoints);
        }
        self.gate_reported
            .retain(|name, _| still_gating.contains(name));
    }

    /// Tells the board where each service's rollout stands.
    fn report_rollout(&mut self) {
        let observe = &*self.observe;
        self.reported_at = Instant::now();
        self.reports.board.rollout(
            crate::rollout::status::of(
                &self.desired.0,
                &self.tracks,
                &|s, t| observe.details(s, t),
                self.reported_at,
            ),
            observe.databases(),
        );
    }

    /// Applies one report of the watcher. `file` describes the state file for the audit
    /// trail; it is called after publishing, off the path of a switch.
    pub fn apply(&mut self, event: WatchEvent, file: impl FnOnce() -> FileInfo) -> Outcome {
        match event {
            WatchEvent::Accepted {
                state,
                files,
                content_hash,
                seen_at,
            } => self.accept(state, files, content_hash, seen_at, file),
            WatchEvent::FilesChanged { files, changed } => self.files_changed(files, &changed),
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

    /// Publishes the state in force again with the new content of the files it names,
    /// and says which changed.
    fn files_changed(&mut self, files: Arc<Files>, changed: &[std::path::PathBuf]) -> Outcome {
        let previous = std::mem::replace(&mut self.files, files);
        let previous_version = self.current.1.clone();
        let state = self.current.0.clone();
        let content_hash = self.desired.1.clone();
        let no_file = None::<fn() -> FileInfo>;
        match self.publish(state, content_hash, Instant::now(), no_file) {
            Ok(version) => {
                self.reports.events.emit(Event::StateFilesChanged {
                    at: SystemTime::now(),
                    version: version.clone(),
                    previous_version,
                    paths: changed.iter().map(|p| p.display().to_string()).collect(),
                });
                Outcome::Published { version }
            }
            Err(()) => {
                self.files = previous;
                Outcome::InternalError
            }
        }
    }

    fn accept(
        &mut self,
        desired: Arc<DesiredState>,
        files: Arc<Files>,
        content_hash: String,
        seen_at: Instant,
        file: impl FnOnce() -> FileInfo,
    ) -> Outcome {
        let previous_tracks = self.tracks.clone();
        let previous_files = std::mem::replace(&mut self.files, files);
        let decisions = self.tracks.step(&desired, &*self.observe, seen_at);
        let state = self.tracks.apply_guarded(&desired, &*self.observe);
        match self.publish(state, content_hash.clone(), seen_at, Some(file)) {
            Ok(version) => {
                // Always: the file may have ended a kept decision (a new attempt, a
                // service removed) without one being made.
                self.save_decisions();
                self.desired = (desired, content_hash);
                self.observe.sync(&self.desired.0, &self.tracks);
                self.report_rollout();
                self.emit_decisions(&decisions);
                Outcome::Published { version }
            }
            Err(()) => {
                self.tracks = previous_tracks;
                self.files = previous_files;
                Outcome::InternalError
            }
        }
    }

    /// Translates and publishes `state` (in force), then reports it. `file` is given when a
    /// state file caused it (then it is a `state_accepted` event), `None` for a decision of
    /// the rollout.
    fn publish(
        &mut self,
        state: Arc<DesiredState>,
        content_hash: String,
        seen_at: Instant,
        file: Option<impl FnOnce() -> FileInfo>,
    ) -> Result<String, ()> {
        let r = &self.reports;
        let snapshot = match (self.translate)(&state, &self.files) {
            Ok(snapshot) => snapshot,
            Err(e) => {
                error!(error = %e, "bug: a valid state translated inconsistently; keeping the last good state");
                r.metrics.state_internal_error();
                r.board.internal_error(e.to_string(), content_hash.clone());
                r.events.emit(Event::StateInternalError {
                    at: SystemTime::now(),
                    content_hash,
                    file: file.map(|f| f()).unwrap_or_default(),
                    message: e.to_string(),
                    active_version: Some(self.current.1.clone()),
                });
                return Err(());
            }
        };
        let version = snapshot.state_version.clone();
        let before = self.writer.current();
        let types = crate::translate::changed_types(before.snapshot(), &snapshot);
        let rolling = self.tracks.rolling();
        let variants = crate::fleet::FleetVariants::new(
            &rolling,
            state.clone(),
            self.files.clone(),
            self.translate,
        );
        // The rollout is registered before any proxy can reach it.
        r.convergence.started(version.clone(), seen_at);
        self.writer.publish_with(
            snapshot,
            variants.map(|v| v as Arc<dyn crate::xds::cache::Variants>),
        );
        self.rolling = rolling;
        // Everything below reports the switch; proxies are already getting it.
        let (previous, previous_version) = &self.current;
        let changed = changes(Some(previous), &state);
        log_changes(&changed);
        r.metrics.state_accepted(&state);
        r.board
            .accepted(state.clone(), version.clone(), content_hash.clone());
        info!(version, "state accepted");
        let now = SystemTime::now();
        if let Some(file) = file {
            r.events.emit(Event::StateAccepted {
                at: now,
                version: version.clone(),
                previous_version: Some(previous_version.clone()),
                content_hash,
                file: file(),
                changes: service_changes(&changed),
            });
        }
        r.events.emit(Event::SwitchStarted {
            at: now,
            version: version.clone(),
            types: types.iter().map(|t| t.short_name()).collect(),
            proxies: r.registry.len(),
        });
        self.current = (state, version.clone());
        Ok(version)
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
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            e = incoming.recv() => match e {
                Some(e) => {
                    pipeline.apply(e, &file);
                }
                None => return,
            },
            now = tick.tick() => {
                pipeline.tick(now);
            }
            _ = stop.wait_for(|s| *s) => return,
        }
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
    use crate::translate::translate_with;
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
        start_observed(text, translate, Arc::new(crate::rollout::tracks::Nothing))
    }

    fn start_observed(
        text: &str,
        translate: Translate,
        observe: Arc<dyn Observe + Send + Sync>,
    ) -> (Pipeline, SnapshotCache, Reports) {
        let r = reports();
        let state = Arc::new(parse_str(text).unwrap());
        let tracks = Tracks::start(&state, Default::default());
        let (p, cache) = Pipeline::start(
            (state, Default::default()),
            "hash0".into(),
            FileInfo::default(),
            r.clone(),
            translate,
            tracks,
            observe,
        )
        .unwrap();
        (p, cache, r)
    }

    /// A gate that passes when told to.
    #[derive(Debug, Default)]
    struct Gate(std::sync::atomic::AtomicBool);

    impl Observe for Gate {
        fn observe(
            &self,
            _: &Service,
            _: &crate::rollout::decide::Track,
            _: Instant,
        ) -> crate::rollout::decide::Observed {
            crate::rollout::decide::Observed {
                schema: [Ok(()), Ok(())],
                gate_passed: self.0.load(std::sync::atomic::Ordering::SeqCst),
                bake_trip: None,
            }
        }
    }

    fn active_route_color(cache: &SnapshotCache) -> Color {
        let published = cache.current();
        let r = &published.snapshot().get(ResourceType::Route).resources["public"];
        let rc = <envoy_types::pb::envoy::config::route::v3::RouteConfiguration as prost::Message>::decode(
            r.body.value.as_slice(),
        )
        .unwrap();
        let default = rc.virtual_hosts[0].routes.last().unwrap();
        let text = format!("{default:?}");
        // The weighted clusters list blue then green; the one at 100 is in force.
        if text.find("value: 100").unwrap() < text.find("summarizer-green").unwrap() {
            Color::Blue
        } else {
            Color::Green
        }
    }

    #[tokio::test]
    async fn a_gated_switch_is_published_only_once_its_gate_passes() {
        let gate = Arc::new(Gate::default());
        let (mut p, cache, r) = start_observed(BLUE, translate_with, gate.clone());
        let mut events = r.events.subscribe();
        let gated = green().replace("active: green", "active: green\n    gate: {}");
        p.apply(accepted(&gated), file);
        assert_eq!(active_route_color(&cache), Color::Blue, "held by its gate");
        assert_eq!(p.tick(Instant::now()), None);
        assert_eq!(r.board.rollout_status()[0].phase, "gating");
        gate.0.store(true, std::sync::atomic::Ordering::SeqCst);
        assert!(matches!(
            p.tick(Instant::now()),
            Some(Outcome::Published { .. })
        ));
        assert_eq!(active_route_color(&cache), Color::Green);
        let mut decisions = Vec::new();
        while let Ok(e) = events.try_recv() {
            if let Event::Rollout { decision, .. } = &*e {
                decisions.push(*decision);
            }
        }
        assert_eq!(decisions, ["gate_waiting", "switched"]);
        assert_eq!(r.board.rollout_status()[0].phase, "steady");
        assert_eq!(r.board.rollout_status()[0].in_force, Color::Green);
    }

    fn accepted(text: &str) -> WatchEvent {
        WatchEvent::Accepted {
            state: Arc::new(parse_str(text).unwrap()),
            files: Default::default(),
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
    async fn a_changed_credential_file_publishes_the_same_state_at_a_new_version_and_says_which_file()
     {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("key");
        std::fs::write(&key, "one").unwrap();
        let text = BLUE.replace(
            "      endpoints: [\"127.0.0.1:8081\"]\n",
            "      endpoints: [\"127.0.0.1:8081\"]\n      credential: {file: key}\n",
        );
        let (mut p, cache, r) = start_with(BLUE, translate_with);
        let state = Arc::new(parse_str(&text).unwrap());
        p.apply(
            WatchEvent::Accepted {
                state: state.clone(),
                files: Arc::new(Files::read(&state, dir.path()).unwrap()),
                content_hash: "hash0".into(),
                seen_at: Instant::now(),
            },
            file,
        );
        let before = cache.current().snapshot().state_version.clone();
        let mut events = r.events.subscribe();
        std::fs::write(&key, "two").unwrap();
        let (files, errors) = p.files.reread(&state);
        assert!(errors.is_empty());
        let changed = files.changed_from(&p.files);
        assert_eq!(changed, std::slice::from_ref(&key));
        let outcome = p.apply(
            WatchEvent::FilesChanged {
                files: Arc::new(files),
                changed,
            },
            file,
        );
        let after = cache.current().snapshot().state_version.clone();
        assert_eq!(
            outcome,
            Outcome::Published {
                version: after.clone()
            }
        );
        assert_ne!(before, after);
        let Event::SwitchStarted { types, .. } = &*events.recv().await.unwrap() else {
            panic!("not switch_started")
        };
        assert_eq!(types, &["secrets"]);
        let Event::StateFilesChanged {
            version,
            previous_version,
            paths,
            ..
        } = &*events.recv().await.unwrap()
        else {
            panic!("not state_files_changed")
        };
        assert_eq!((version, previous_version), (&after, &before));
        assert_eq!(paths, &[key.display().to_string()]);
    }

    #[tokio::test]
    async fn an_accepted_state_is_published_then_reported() {
        let (mut p, cache, r) = start_with(BLUE, translate_with);
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
        let (mut p, cache, r) = start_with(BLUE, translate_with);
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
    fn fails_on_green(
        state: &DesiredState,
        files: &Files,
    ) -> Result<Snapshot, InconsistentSnapshot> {
        if state.services.iter().any(|s| s.active == Color::Green) {
            return Err(InconsistentSnapshot::OrphanEndpoints("x".into()));
        }
        translate_with(state, files)
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
        assert_eq!(message, "endpoints `x` have no cluster of that name");
        assert_eq!(active_version.as_deref(), Some(version.as_str()));
        assert!(r.board.last_rejection().is_none(), "not the file's fault");
        let internal = r.board.last_internal_error().unwrap();
        assert_eq!(
            internal.message,
            "endpoints `x` have no cluster of that name"
        );
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
