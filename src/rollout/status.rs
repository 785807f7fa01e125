//! Where each service's rollout stands, as `/status`, `switchyard.v1` and
//! `switchyard status` show it.

use serde::Serialize;
use tokio::time::Instant;

use super::decide::{Phase, Track, Trip};
use super::tracks::Tracks;
pub use super::view::{ColorTraffic, DatabaseStatus, Details, EndpointProblem, GateView};
use crate::state::{Color, DesiredState, Service};

/// One service's rollout.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ServiceRollout {
    pub service: String,
    /// The color the file asks for.
    pub wanted: Color,
    /// The color proxies are given.
    pub in_force: Color,
    /// `steady`, `gating`, `gave_up`, `baking`, `rolled_back` or `held`.
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
    #[serde(flatten)]
    pub details: Details,
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
            listed(s, t).then(|| one(s, t, details(s, t), now))
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
        phase: phase_name(&t.phase),
        reason,
        for_seconds,
        left_seconds,
        trip,
        attempt: s.attempt.clone(),
        details,
    }
}
