//! What the controller observed, in the shape `/status` shows it: plain data, shared by
//! the [`Observe`](super::tracks::Observe) seam and the status views.

use serde::Serialize;

use crate::state::Color;

/// What the controller can say about a service beyond its track (for `/status` only).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Details {
    /// The gate of the color the file asks for, while a switch waits for it.
    pub gate: Option<GateView>,
    /// Each color's traffic across the fleet from the load reports (blue, then green).
    pub traffic: Vec<ColorTraffic>,
    /// Each wave's proxies, with a `rollout:` (shown in [`super::status::RolloutView`]).
    #[serde(skip)]
    pub census: Option<Vec<crate::fleet::WaveCensus>>,
}

/// A gate's progress.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GateView {
    pub color: Color,
    pub healthy: usize,
    pub total: usize,
    /// Healthy endpoints needed to pass.
    pub needed: usize,
    /// Endpoints not (yet) healthy, with why.
    pub failing: Vec<EndpointProblem>,
    /// Why the color's shadow traffic does not meet the gate yet (`max_shadow_error_ratio`).
    pub shadow: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EndpointProblem {
    pub endpoint: String,
    pub reason: String,
}

/// One color's traffic over the last minute of load reports.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ColorTraffic {
    pub color: Color,
    pub requests: u64,
    pub errors: u64,
    pub error_ratio: Option<f64>,
    /// Requests in flight now, across the proxies reporting.
    pub in_flight: u64,
    pub proxies_reporting: usize,
}

/// A database's current schema version, as switchyard last read it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DatabaseStatus {
    pub name: String,
    /// `None` when unknown.
    pub version: Option<String>,
    /// Why the version is unknown.
    pub error: Option<String>,
}
