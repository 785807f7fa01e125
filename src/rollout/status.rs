//! Where each service's rollout stands, as `/status`, `switchyard.v1` and
//! `switchyard status` show it.

use serde::Serialize;
use tokio::time::Instant;

use super::decide::Wait;
use super::decide::{Phase, Track, Transition, Trip};
use super::tracks::Tracks;
pub use super::view::{ColorTraffic, DatabaseStatus, Details, EndpointProblem, GateView};
use crate::state::{Color, DesiredState, Service, Weights};

/// One service's rollout.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ServiceRollout {
    pub service: String,
    /// The color the file asks for.
    pub wanted: Color,
    /// The color proxies are given (while a ramp is on its way, the color it goes to).
    pub in_force: Color,
    /// How the traffic is split in force (`{"blue": 90, "green": 10}`).
    pub weights: Weights,
    /// `steady`, `gating`, `gave_up`, `baking`, `rolled_back`, `held`, `rolling` (on its
    /// way through its waves, without a bake) or `ramping` (step by step, without a bake).
    pub phase: &'static str,
    /// Why what is in force differs from the file, or why a rollback was refused.
    pub reason: Option<String>,
    /// Seconds since the gate or bake began.
    pub for_seconds: Option<f64>,
    /// Seconds left of the bake window, or before the gate's deadline.
    pub left_seconds: Option<f64>,
    /// What tripped the rollback (phase `rolled_back`).
    pub trip: Option<Trip>,
    pub attempt: Option<String>,
    /// The release group the service moves with.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// Its waves, with a `rollout:`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rollout: Option<RolloutView>,
    /// The step in force, while a ramp is on its way.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ramp: Option<RampView>,
    #[serde(flatten)]
    pub details: Details,
}

/// A ramp on its way.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RampView {
    /// From 1.
    pub step: usize,
    /// How many steps the file's ramp has.
    pub of: usize,
    /// The share of the color it goes to.
    pub percent: u32,
    pub paused: bool,
    /// What the next step waits for: `soak`, `proxies`, `paused` or `bake`.
    pub waiting_for: Wait,
}

/// A service's rollout wave by wave.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RolloutView {
    #[serde(serialize_with = "crate::state::workflow::humane")]
    pub soak: std::time::Duration,
    /// How many waves have the color in force (all of them once a switch is through).
    pub reached: usize,
    /// A switch is on its way through the waves.
    pub rolling: bool,
    pub waves: Vec<WaveView>,
}

/// One wave.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WaveView {
    /// From 1.
    pub wave: usize,
    /// Which proxies it holds (`zone=a, cluster=edge`).
    pub selector: String,
    /// The color its proxies get.
    pub color: Color,
    pub proxies: usize,
    /// Synced at what they are owed now.
    pub synced: usize,
    /// Subscribed to nothing yet.
    pub connecting: usize,
}

/// A service's phase name.
pub fn phase_name(phase: &Phase) -> &'static str {
    match phase {
        Phase::Steady => "steady",
        Phase::Gating { .. } => "gating",
        Phase::GaveUp { .. } => "gave_up",
        Phase::Baking { .. } => "baking",
        Phase::RolledBack { .. } => "rolled_back",
        Phase::Held { .. } => "held",
    }
}

/// Whether `/status` lists the service: it uses a workflow key, or its rollout is not
/// steady.
fn listed(s: &Service, t: &Track) -> bool {
    s.gate.is_some()
        || s.weights.is_some()
        || s.ramp.is_some()
        || t.ramp.is_some()
        || s.rollout.is_some()
        || s.group.is_some()
        || s.bake.is_some()
        || s.shadow.is_some()
        || s.database.is_some()
        || t.in_force != s.active
        || t.phase != Phase::Steady
}

/// The rollout of every listed service of `state`, sorted by name. `details` is asked
/// for each.
pub fn of(
    state: &DesiredState,
    tracks: &Tracks,
    details: &dyn Fn(&Service, &Track) -> Details,
    now: Instant,
) -> Vec<ServiceRollout> {
    let mut out: Vec<ServiceRollout> = state
        .services
        .iter()
        .filter_map(|s| {
            let t = tracks.get(&s.name)?;
            listed(s, t).then(|| {
                let mut one = one(s, t, details(s, t), now);
                one.rollout = rollout_view(s, t, tracks, one.details.census.take());
                one.ramp = ramp_view(s, t);
                if let Some(r) = &one.ramp {
                    if one.phase == "steady" {
                        one.phase = "ramping";
                    }
                    one.reason.get_or_insert_with(|| ramp_reason(s, t, r, now));
                }
                if let Some(r) = one.rollout.as_ref().filter(|r| r.rolling) {
                    let of = r.waves.len();
                    if one.phase == "steady" {
                        one.phase = "rolling";
                    }
                    one.reason.get_or_insert_with(|| {
                        format!(
                            "wave {} of {of} has {}; the next gets it once every proxy so far \
                             holds it and it soaked {}",
                            r.reached,
                            t.in_force,
                            humantime::format_duration(r.soak)
                        )
                    });
                }
                one
            })
        })
        .collect();
    out.sort_by(|a, b| a.service.cmp(&b.service));
    out
}

fn one(s: &Service, t: &Track, details: Details, now: Instant) -> ServiceRollout {
    let secs = |d: std::time::Duration| Some(d.as_secs_f64());
    let (reason, for_seconds, left_seconds, trip) = match &t.phase {
        Phase::Steady => (None, None, None, None),
        Phase::Gating { since, .. } => {
            let waited = now.saturating_duration_since(*since);
            let left = s
                .gate
                .as_ref()
                .map(|g| g.deadline.saturating_sub(waited).as_secs_f64());
            (
                Some(format!("waiting for the gate of {}", s.active)),
                secs(waited),
                left,
                None,
            )
        }
        Phase::GaveUp { to, .. } => (
            Some(format!(
                "the gate of {to} did not pass before its deadline; save the file with a new `attempt` to try again"
            )),
            None,
            None,
            None,
        ),
        Phase::Baking {
            from,
            since,
            until,
            refused,
        } => (
            refused
                .as_ref()
                .map(|why| format!("cannot roll back to {from}: {why}")),
            secs(now.saturating_duration_since(*since)),
            secs(until.saturating_duration_since(now)),
            None,
        ),
        Phase::RolledBack { from, reason, .. } => (
            Some(format!(
                "rolled back from {from} by itself; save the file with a new `attempt` to retry, or set `active: {}` to accept",
                t.in_force
            )),
            None,
            None,
            Some(reason.clone()),
        ),
        Phase::Held { reason, .. } => (Some(reason.clone()), None, None, None),
    };
    ServiceRollout {
        service: s.name.clone(),
        wanted: s.active,
        in_force: t.in_force,
        weights: t.split(s),
        phase: phase_name(&t.phase),
        reason,
        for_seconds,
        left_seconds,
        trip,
        attempt: s.attempt.clone(),
        group: s.group.clone(),
        rollout: None,
        ramp: None,
        details,
    }
}

/// The step in force, while a ramp is on its way.
fn ramp_view(s: &Service, t: &Track) -> Option<RampView> {
    let r = t.ramp.as_ref()?;
    Some(RampView {
        step: r.step,
        of: s.ramp.as_ref().map_or(r.step, |ramp| ramp.steps.len()),
        percent: r.percent,
        paused: s.ramp.as_ref().is_some_and(|ramp| ramp.paused),
        waiting_for: r.waiting,
    })
}

/// Where a ramp stands and what it waits for, in words (as its events say it, with the
/// time left of the soak).
fn ramp_reason(s: &Service, t: &Track, r: &RampView, now: Instant) -> String {
    let waiting = Transition::RampWaiting {
        color: t.in_force,
        percent: r.percent,
        step: r.step,
        of: r.of,
        wait: r.waiting_for,
    };
    let said = waiting.reason().unwrap_or_default();
    if r.waiting_for != Wait::Soak {
        return said;
    }
    let every = s.ramp.as_ref().map_or_else(Default::default, |r| r.every);
    let since = t.ramp.as_ref().map_or(now, |r| r.since);
    let left = every.saturating_sub(now.saturating_duration_since(since));
    format!(
        "{said}: step {} in {}, once every proxy holds this one",
        r.step + 1,
        humantime::format_duration(std::time::Duration::from_secs(left.as_secs()))
    )
}

/// Wave by wave: which color each has, and its proxies (`census`, when known).
fn rollout_view(
    s: &Service,
    t: &Track,
    tracks: &Tracks,
    census: Option<Vec<crate::fleet::WaveCensus>>,
) -> Option<RolloutView> {
    let rollout = s.rollout.as_ref()?;
    let progress = tracks.wave_progress(&s.name);
    let reached = progress.map_or(rollout.waves.len(), |p| p.reached + 1);
    let waves = rollout
        .waves
        .iter()
        .enumerate()
        .map(|(i, selector)| {
            let count = census
                .as_ref()
                .and_then(|c| c.get(i).copied())
                .unwrap_or_default();
            WaveView {
                wave: i + 1,
                selector: selector.to_string(),
                color: match progress {
                    Some(p) if i > p.reached => p.from,
                    _ => t.in_force,
                },
                proxies: count.proxies,
                synced: count.synced,
                connecting: count.connecting,
            }
        })
        .collect();
    Some(RolloutView {
        soak: rollout.soak,
        reached,
        rolling: progress.is_some(),
        waves,
    })
}
