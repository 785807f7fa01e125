//! The optional keys of the blue-green workflow: preview routing, shadow traffic, the
//! gate before a switch, the ramp that moves the traffic step by step, the bake after
//! it, and the database schema guard. Each has a safe default: without them a switch is
//! immediate and nothing is rolled back.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Serialize, Serializer};

/// The header that picks a color whatever the weights, unless a service names another.
pub const DEFAULT_PREVIEW_HEADER: &str = "x-switchyard-preview";

/// Preview routing: a request carrying `header: blue|green` reaches that color.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Preview {
    pub enabled: bool,
    /// Lowercase (Envoy matches header names without regard to case).
    pub header: String,
    /// A listener on this port (on the service's listener address) whose every request
    /// reaches the idle color.
    pub port: Option<u16>,
}

impl Preview {
    pub fn is_default(&self) -> bool {
        *self == Preview::default()
    }
}

impl Default for Preview {
    fn default() -> Preview {
        Preview {
            enabled: true,
            header: DEFAULT_PREVIEW_HEADER.to_owned(),
            port: None,
        }
    }
}

/// Mirroring a share of live requests to the idle color (responses discarded).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Shadow {
    /// 1 to 100.
    pub percent: u32,
}

/// How a color's endpoints are probed: an HTTP/1.1 GET of `path` on every endpoint every
/// `interval`, answered with `status` within `timeout`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Probe {
    pub path: String,
    pub status: u16,
    #[serde(serialize_with = "humane")]
    pub timeout: Duration,
    #[serde(serialize_with = "humane")]
    pub interval: Duration,
    /// Consecutive successes before an endpoint counts as healthy.
    pub successes: u32,
    /// Consecutive failures before an endpoint counts as failing (the bake's probe).
    pub failures: u32,
    /// Percent of the color's endpoints that must be healthy (1 to 100).
    pub healthy_share: u32,
}

/// Defaults of a probe's optional fields.
pub mod probe_defaults {
    use std::time::Duration;
    pub const PATH: &str = "/healthz";
    pub const STATUS: u16 = 200;
    pub const TIMEOUT: Duration = Duration::from_secs(1);
    pub const INTERVAL: Duration = Duration::from_secs(1);
    pub const SUCCESSES: u32 = 3;
    pub const FAILURES: u32 = 3;
    pub const HEALTHY_SHARE: u32 = 100;
}

/// Checked before traffic moves to a color: the switch waits until the probe passes,
/// and is given up after `deadline`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Gate {
    pub probe: Probe,
    #[serde(serialize_with = "humane")]
    pub deadline: Duration,
    /// Also require the color's shadow traffic to be healthy (with `shadow:`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shadow: Option<ShadowCondition>,
}

/// A gate condition on the shadow traffic the color served (mirrored live requests, from
/// the load reports of the last minute).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ShadowCondition {
    pub max_error_ratio: Ratio,
    /// The gate waits until the color has answered at least this many.
    pub min_requests: u64,
}

/// Default time a gated switch may wait for its gate.
pub const DEFAULT_GATE_DEADLINE: Duration = Duration::from_secs(600);

/// A ratio between 0 and 1, kept in parts per million so the state stays `Eq` and hashes
/// the same everywhere.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Ratio(u32);

impl Ratio {
    pub const ONE: Ratio = Ratio(1_000_000);

    /// `None` outside 0..=1 (or not a number).
    pub fn from_f64(value: f64) -> Option<Ratio> {
        (0.0..=1.0)
            .contains(&value)
            .then(|| Ratio((value * 1_000_000.0).round() as u32))
    }

    pub fn as_f64(self) -> f64 {
        f64::from(self.0) / 1_000_000.0
    }

    /// Whether `part / whole` is above this ratio (exact, in integers).
    pub fn exceeded_by(self, part: u64, whole: u64) -> bool {
        u128::from(part) * 1_000_000 > u128::from(self.0) * u128::from(whole)
    }
}

impl Serialize for Ratio {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(self.as_f64())
    }
}

/// Watched after a switch: for `window`, the new color's error ratio across the fleet's
/// load reports (and, when given, its probe) decides whether traffic goes back by itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Bake {
    #[serde(serialize_with = "humane")]
    pub window: Duration,
    pub max_error_ratio: Ratio,
    /// No judgement on fewer requests than this.
    pub min_requests: u64,
    pub probe: Option<Probe>,
}

pub const DEFAULT_MIN_REQUESTS: u64 = 20;

/// A switch moves the traffic to the new color step by step: `steps` percent of it, each
/// step once the last one has been in force for `every`, every connected proxy has
/// acknowledged it, and the bake (if any) has not tripped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Ramp {
    /// Strictly increasing, from 1 to 100; the last is 100.
    pub steps: Vec<u32>,
    #[serde(serialize_with = "humane")]
    pub every: Duration,
    /// Holds the step in force (the operator's pause).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub paused: bool,
}

impl Ramp {
    /// The first step above `percent` (from 1) and its percent: where a ramp at `percent`
    /// goes next. `None` once at 100.
    pub fn after(&self, percent: u32) -> Option<(usize, u32)> {
        self.steps
            .iter()
            .position(|&p| p > percent)
            .map(|i| (i + 1, self.steps[i]))
    }
}

/// How long each step of a ramp lasts at least, unless the file says.
pub const DEFAULT_RAMP_EVERY: Duration = Duration::from_secs(30);

/// Where a database's current schema version is read from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SchemaSource {
    /// The file's content, trimmed.
    File(PathBuf),
    /// The body of an HTTP GET, trimmed (plain `http://` only).
    Url(String),
}

/// A database whose schema version guards which colors may take traffic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Database {
    pub name: String,
    pub source: SchemaSource,
    #[serde(serialize_with = "humane")]
    pub interval: Duration,
}

pub const DEFAULT_SCHEMA_INTERVAL: Duration = Duration::from_secs(2);

/// Durations as the file writes them (`1s`, `500ms`, `5m`).
pub fn humane<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&humantime::format_duration(*d).to_string())
}
