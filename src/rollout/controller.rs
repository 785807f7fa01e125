//! The rollout's senses: it probes the colors a gate or a bake watches, reads the fleet's
//! traffic from the load reports, and follows each database's schema version, then answers
//! the pipeline's [`Observe`] questions from what it saw. The decisions themselves are
//! pure ([`super::decide`]); this is the I/O around them.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::info;

use super::bake::{self, Traffic};
use super::decide::{Observed, Phase, Track};
use super::gate::{self, BakeProbeVerdict, GateVerdict, ProbeHistory};
use super::probe::{ProbeHandle, ProbeReport, Prober, Target};
use super::schema::{self, SchemaVersion, Versions};
use super::source;
use super::tracks::{Observe, Tracks};
use super::view::{ColorTraffic, DatabaseStatus, Details, EndpointProblem, GateView};
use crate::load::board::LoadBoard;
use crate::proxies::ProxyRegistry;
use crate::state::{Color, Database, DesiredState, Probe, Service};
use crate::xds::cache::SnapshotCache;

/// Where the fleet's traffic per cluster comes from (the load reports).
pub trait TrafficSource: Send + Sync + std::fmt::Debug {
    /// Requests and errors to `cluster` reported since `since`, per proxy.
    fn traffic(&self, cluster: &str, since: Instant) -> Traffic;
    /// Whether [`TrafficSource::traffic`] from `since` still covers all of it (a source
    /// keeps a bounded history; an older start is cut to it).
    fn reaches(&self, since: Instant) -> bool;
    /// The cluster's traffic over the last minute, and what is in flight now.
    fn summary(&self, cluster: &str, color: Color) -> Option<ColorTraffic>;
}

/// The load reports' verdict on a window: finished requests and errors, per proxy.
impl TrafficSource for LoadBoard {
    fn traffic(&self, cluster: &str, since: Instant) -> Traffic {
        let load = self.window(cluster, since, Instant::now());
        Traffic {
            requests: load.requests,
            errors: load.errors,
            proxies: load
                .per_node
                .into_iter()
                .map(|n| (n.node, n.requests, n.errors))
                .collect(),
        }
    }

    fn reaches(&self, since: Instant) -> bool {
        LoadBoard::reaches(self, since, Instant::now())
    }

    fn summary(&self, cluster: &str, color: Color) -> Option<ColorTraffic> {
        let load = self.recent(cluster, Duration::from_secs(60), Instant::now());
        let error_ratio = load.error_ratio();
        Some(ColorTraffic {
            color,
            requests: load.requests,
            errors: load.errors,
            error_ratio,
            in_flight: load.in_flight,
            proxies_reporting: load.proxies_reporting,
        })
    }
}

/// A bake also judges the last this much of the load reports on its own.
pub const RECENT: Duration = Duration::from_secs(30);

/// How much earlier than asked a window of the load reports may start (their bucket).
const RECENT_SLACK: Duration = Duration::from_secs(5);

/// One probed target.
#[derive(Debug)]
struct Probed {
    probe: Probe,
    endpoints: Vec<SocketAddr>,
    history: HashMap<SocketAddr, ProbeHistory>,
    _handle: ProbeHandle,
}

/// One followed database.
#[derive(Debug)]
struct Followed {
    database: Database,
    task: JoinHandle<()>,
}

/// The controller's observations. Shared between the pipeline (which asks) and the tasks
/// that feed it.
#[derive(Debug)]
pub struct Controller {
    prober: Prober,
    /// Targets being probed, with their results so far. A `std` mutex: held for a map
    /// update or a verdict, never across an await.
    probed: Arc<Mutex<HashMap<Target, Probed>>>,
    /// Each database's current schema version, written by its source task.
    versions: Arc<RwLock<Versions>>,
    /// The source tasks, by database name.
    followed: Mutex<HashMap<String, Followed>>,
    traffic: Option<Arc<dyn TrafficSource>>,
    /// How often proxies report their load.
    report_interval: Duration,
    /// Per bake (service, color, start): what the load reports held for the color one
    /// report interval into the bake; the bake judges what came after (see
    /// [`Controller::baked_traffic`]). The reports are also kept in time buckets, so a
    /// window from the switch covers the part of its bucket before it.
    baselines: Mutex<HashMap<(String, Color, Instant), Traffic>>,
    _drain: JoinHandle<()>,
    /// The proxies and what they are served: where a rollout's waves stand.
    fleet: std::sync::OnceLock<(ProxyRegistry, SnapshotCache)>,
}

impl Controller {
    /// A controller reading traffic from `traffic`, reported every `report_interval` (no
    /// source: bakes see no traffic, only their probes). Must be called within a Tokio
    /// runtime.
    pub fn new(
        traffic: Option<Arc<dyn TrafficSource>>,
        report_interval: Duration,
    ) -> Arc<Controller> {
        let (tx, mut rx) = mpsc::channel::<ProbeReport>(1024);
        let probed: Arc<Mutex<HashMap<Target, Probed>>> = Arc::default();
        let sink = probed.clone();
        let drain = tokio::spawn(async move {
            while let Some(report) = rx.recv().await {
                let mut probed = sink.lock().expect("bug: probe map lock poisoned");
                if let Some(p) = probed.get_mut(&report.target) {
                    let expected = p.probe.status;
                    p.history
                        .entry(report.endpoint)
                        .or_default()
                        .record(report.result, expected);
                }
            }
        });
        Arc::new(Controller {
            prober: Prober::new(tx),
            probed,
            versions: Arc::default(),
            followed: Mutex::default(),
            traffic,
            report_interval,
            baselines: Mutex::default(),
            _drain: drain,
            fleet: std::sync::OnceLock::new(),
        })
    }

    /// Judges the waves of rollouts from the proxies in `registry` and what `cache` serves
    /// them (once; without it every wave counts as synced).
    pub fn watch_fleet(&self, registry: ProxyRegistry, cache: SnapshotCache) {
        let _ = self.fleet.set((registry, cache));
    }

    /// Each wave of `s`'s rollout: its proxies and how many hold what they are owed.
    pub fn census(&self, s: &Service) -> Option<Vec<crate::fleet::WaveCensus>> {
        let (registry, cache) = self.fleet.get()?;
        let waves = crate::fleet::Waves::new(s.rollout.as_ref()?);
        Some(crate::fleet::census(registry, &cache.current(), &waves))
    }

    /// Starts from `versions` (read before serving), until the sources' first reads.
    pub fn seed(&self, versions: Versions) {
        self.versions
            .write()
            .expect("bug: versions lock poisoned")
            .extend(versions);
    }

    /// The schema versions as last read.
    pub fn versions(&self) -> Versions {
        self.versions
            .read()
            .expect("bug: versions lock poisoned")
            .clone()
    }

    fn follow(&self, state: &DesiredState) {
        let mut followed = self.followed.lock().expect("bug: followed lock poisoned");
        followed.retain(|name, f| {
            let keep = state.database(name) == Some(&f.database);
            if !keep {
                f.task.abort();
                self.versions
                    .write()
                    .expect("bug: versions lock poisoned")
                    .remove(name);
            }
            keep
        });
        for db in &state.databases {
            if !followed.contains_key(&db.name) {
                info!(database = %db.name, "following the schema version");
                let task = tokio::spawn(source::follow(db.clone(), self.versions.clone()));
                followed.insert(
                    db.name.clone(),
                    Followed {
                        database: db.clone(),
                        task,
                    },
                );
            }
        }
    }

    fn gate_verdict(&self, s: &Service, track: &Track, now: Instant) -> Option<GateVerdict> {
        let gate = s.gate.as_ref()?;
        let since = match track.phase {
            Phase::Gating { to, since } if to == s.active => since,
            _ => now,
        };
        let probed = self.probed.lock().expect("bug: probe map lock poisoned");
        let p = probed.get(&Target {
            service: s.name.clone(),
            color: s.active,
        })?;
        // Probed colors are plain addresses (validation).
        let endpoints: Vec<SocketAddr> = s.color(s.active).addresses_only().collect();
        Some(gate::verdict(
            &gate.probe,
            &endpoints,
            &p.history,
            since.into_std(),
            None,
            now.into_std(),
        ))
    }

    /// Why the color a gated switch goes to has not met the gate's shadow condition.
    fn shadow_problem(&self, s: &Service) -> Option<String> {
        let condition = s.gate.as_ref()?.shadow.as_ref()?;
        let recent = self
            .traffic
            .as_ref()
            .and_then(|t| t.summary(&s.cluster_name(s.active), s.active));
        let (requests, errors) = recent.map_or((0, 0), |t| (t.requests, t.errors));
        gate::shadow_verdict(condition, requests, errors).err()
    }

    /// The color's traffic in the reports that came after the bake began.
    ///
    /// A load report covers the interval before it was sent, so the reports of the first
    /// interval after a switch still carry requests from before it (the errors of an
    /// attempt just rolled back, say). The bake starts counting one report interval after
    /// it began, from what the reports held then: an automatic rollback comes at most two
    /// report intervals after the first errors (plus the switch).
    fn baked_traffic(&self, s: &Service, color: Color, since: Instant) -> Traffic {
        let Some(source) = &self.traffic else {
            return Traffic::default();
        };
        let now = Instant::now();
        if now < since + self.report_interval {
            return Traffic::default();
        }
        let current = source.traffic(&s.cluster_name(color), since);
        if !source.reaches(since) {
            // A long bake: the reports kept (the last two minutes) all came after it began.
            return current;
        }
        let mut baselines = self.baselines.lock().expect("bug: baselines lock poisoned");
        let before = baselines
            .entry((s.name.clone(), color, since))
            .or_insert_with(|| current.clone());
        current.since(before)
    }

    /// The color's traffic over the last [`RECENT`], once the bake is long enough for all
    /// of it (with the reports' bucket and first interval) to come after the switch.
    fn recent_traffic(&self, s: &Service, color: Color, since: Instant) -> Option<Traffic> {
        let source = self.traffic.as_ref()?;
        let now = Instant::now();
        let clean = RECENT + RECENT_SLACK + self.report_interval;
        if now.saturating_duration_since(since) < clean {
            return None;
        }
        Some(source.traffic(&s.cluster_name(color), now - RECENT))
    }

    /// Forgets the baselines of bakes that ended.
    fn forget_baselines(&self, state: &DesiredState, tracks: &Tracks) {
        let mut baselines = self.baselines.lock().expect("bug: baselines lock poisoned");
        let mut baking = std::collections::HashSet::new();
        for s in &state.services {
            if let Some(Track {
                in_force,
                phase: Phase::Baking { since, .. },
                ..
            }) = tracks.get(&s.name)
            {
                baking.insert((s.name.clone(), *in_force, *since));
            }
        }
        baselines.retain(|key, _| baking.contains(key));
    }

    fn bake_failing(&self, s: &Service, color: Color) -> Vec<(String, String)> {
        let Some(probe) = s.bake.as_ref().and_then(|b| b.probe.as_ref()) else {
            return Vec::new();
        };
        let probed = self.probed.lock().expect("bug: probe map lock poisoned");
        let Some(p) = probed.get(&Target {
            service: s.name.clone(),
            color,
        }) else {
            return Vec::new();
        };
        let endpoints: Vec<SocketAddr> = s.color(color).addresses_only().collect();
        match gate::bake_probe_verdict(probe, &endpoints, &p.history) {
            BakeProbeVerdict::Steady => Vec::new(),
            BakeProbeVerdict::Failing { failing, .. } => failing
                .into_iter()
                .map(|(e, why)| (e.to_string(), why.to_string()))
                .collect(),
        }
    }
}

/// The probes each service needs now: the gate of a color the file asks for and that is
/// not in force, and the probe of a color being baked.
fn wanted_probes(
    state: &DesiredState,
    tracks: &Tracks,
) -> HashMap<Target, (Probe, Vec<SocketAddr>)> {
    let mut out = HashMap::new();
    for s in &state.services {
        let Some(t) = tracks.get(&s.name) else {
            continue;
        };
        if let (Some(gate), Phase::Gating { to, .. }) = (&s.gate, &t.phase) {
            out.insert(
                Target {
                    service: s.name.clone(),
                    color: *to,
                },
                (gate.probe.clone(), s.color(*to).addresses_only().collect()),
            );
        }
        if let (Some(probe), Phase::Baking { .. }) =
            (s.bake.as_ref().and_then(|b| b.probe.as_ref()), &t.phase)
        {
            out.insert(
                Target {
                    service: s.name.clone(),
                    color: t.in_force,
                },
                (
                    probe.clone(),
                    s.color(t.in_force).addresses_only().collect(),
                ),
            );
        }
    }
    out
}

impl Observe for Controller {
    fn proxies_synced(&self) -> bool {
        let Some((registry, cache)) = self.fleet.get() else {
            return true;
        };
        let everyone = crate::fleet::Waves::everyone();
        crate::fleet::census(registry, &cache.current(), &everyone)
            .iter()
            .all(crate::fleet::WaveCensus::settled)
    }

    fn waves_synced(&self, s: &Service, progress: &super::tracks::WaveProgress) -> bool {
        self.census(s).is_none_or(|census| {
            census
                .iter()
                .take(progress.reached + 1)
                .all(crate::fleet::WaveCensus::settled)
        })
    }

    fn observe(&self, s: &Service, track: &Track, now: Instant) -> Observed {
        let gate_passed = matches!(
            self.gate_verdict(s, track, now),
            Some(GateVerdict::Passed(_))
        ) && self.shadow_problem(s).is_none();
        let bake_trip = match (&s.bake, &track.phase) {
            (Some(bake), Phase::Baking { since, .. }) => {
                let color = track.in_force;
                let failing = self.bake_failing(s, color);
                let whole = self.baked_traffic(s, color, *since);
                bake::judge(bake, &whole, &failing).or_else(|| {
                    // Errors that start late in a long bake are not diluted by the good
                    // traffic before them: the last RECENT is judged on its own too.
                    let recent = self.recent_traffic(s, color, *since)?;
                    bake::judge(bake, &recent, &failing)
                })
            }
            _ => None,
        };
        Observed {
            schema: self.schema(s),
            gate_passed,
            bake_trip,
        }
    }

    fn sync(&self, state: &DesiredState, tracks: &Tracks) {
        self.follow(state);
        self.forget_baselines(state, tracks);
        let wanted = wanted_probes(state, tracks);
        let mut probed = self.probed.lock().expect("bug: probe map lock poisoned");
        probed.retain(|target, p| {
            wanted
                .get(target)
                .is_some_and(|(probe, endpoints)| *probe == p.probe && *endpoints == p.endpoints)
        });
        for (target, (probe, endpoints)) in wanted {
            if probed.contains_key(&target) {
                continue;
            }
            info!(service = %target.service, color = %target.color, path = %probe.path, "probing");
            let handle = self.prober.start(target.clone(), &probe, &endpoints);
            probed.insert(
                target,
                Probed {
                    probe,
                    endpoints,
                    history: HashMap::new(),
                    _handle: handle,
                },
            );
        }
    }

    fn schema(&self, s: &Service) -> [Result<(), String>; 2] {
        schema::check_both(s, &self.versions())
    }

    fn databases(&self) -> Vec<DatabaseStatus> {
        let versions = self.versions();
        let followed = self.followed.lock().expect("bug: followed lock poisoned");
        let mut out: Vec<DatabaseStatus> = followed
            .keys()
            .map(|name| {
                let (version, error) = match versions.get(name) {
                    Some(SchemaVersion::Known(v)) => (Some(v.clone()), None),
                    Some(SchemaVersion::Unknown(why)) => (None, Some(why.clone())),
                    None => (None, Some("not read yet".to_owned())),
                };
                DatabaseStatus {
                    name: name.clone(),
                    version,
                    error,
                }
            })
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }

    fn details(&self, s: &Service, track: &Track) -> Details {
        let gate = self
            .gate_verdict(s, track, Instant::now())
            .filter(|_| matches!(track.phase, Phase::Gating { .. }))
            .map(|v| {
                let st = v.standing();
                GateView {
                    color: s.active,
                    healthy: st.healthy,
                    total: st.total,
                    needed: st.needed,
                    failing: st
                        .failing
                        .iter()
                        .map(|(e, why)| EndpointProblem {
                            endpoint: e.to_string(),
                            reason: why.to_string(),
                        })
                        .collect(),
                    shadow: self.shadow_problem(s),
                }
            });
        let traffic = match &self.traffic {
            Some(t) => Color::ALL
                .iter()
                .filter_map(|c| t.summary(&s.cluster_name(*c), *c))
                .collect(),
            None => Vec::new(),
        };
        Details {
            gate,
            traffic,
            census: self.census(s),
        }
    }
}

impl Drop for Controller {
    fn drop(&mut self) {
        if let Ok(followed) = self.followed.get_mut() {
            for f in followed.values() {
                f.task.abort();
            }
        }
        self._drain.abort();
    }
}
