//! The validated desired state (what a state file says once it has passed every check),
//! and the errors a state file can have.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::workflow::{Bake, Database, Gate, Preview, Shadow};
use crate::hash::short_hash;

/// A validated desired state. Everything in it has been checked: names are unique, every
/// service names an existing listener, addresses and ports parse, and each color has at
/// least one endpoint. Collections keep the file's order; hashing sorts them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DesiredState {
    pub listeners: Vec<Listener>,
    pub services: Vec<Service>,
    /// Databases whose schema version guards the colors (`databases:`; empty when none).
    /// Like every workflow key, left out of the hash when absent, so a file without them
    /// keeps the version it had before they existed.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub databases: Vec<Database>,
}

/// One Envoy listener. Its Listener and RouteConfiguration are both named after it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Listener {
    pub name: String,
    pub address: IpAddr,
    pub port: u16,
}

/// One blue-green service: two colors, one of them active.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Service {
    pub name: String,
    pub listener: String,
    pub domains: Vec<String>,
    pub blue: ColorSpec,
    pub green: ColorSpec,
    /// The color the operator wants to take the traffic. What proxies get can differ
    /// while a gate holds the switch, after an automatic rollback, or when the color
    /// cannot run against the database's schema (see `crate::rollout`).
    pub active: Color,
    /// Changing it (any value) retries a switch that was rolled back automatically.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attempt: Option<String>,
    #[serde(skip_serializing_if = "Preview::is_default")]
    pub preview: Preview,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shadow: Option<Shadow>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gate: Option<Gate>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bake: Option<Bake>,
    /// The `databases:` entry whose schema version this service's colors must support.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub database: Option<String>,
}

/// The backends of one color.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ColorSpec {
    pub endpoints: Vec<SocketAddr>,
    /// The database schema versions this color can run against (with `database:`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub schemas: Vec<String>,
}

/// Which environment takes the traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Color {
    Blue,
    Green,
}

impl Color {
    pub const ALL: [Color; 2] = [Color::Blue, Color::Green];

    /// The other color.
    pub fn other(self) -> Color {
        match self {
            Color::Blue => Color::Green,
            Color::Green => Color::Blue,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Color::Blue => "blue",
            Color::Green => "green",
        }
    }
}

impl fmt::Display for Color {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Service {
    /// The backends of `color`.
    pub fn color(&self, color: Color) -> &ColorSpec {
        match color {
            Color::Blue => &self.blue,
            Color::Green => &self.green,
        }
    }

    /// The Envoy cluster (and ClusterLoadAssignment) name of `color`: `<service>-<color>`.
    pub fn cluster_name(&self, color: Color) -> String {
        format!("{}-{}", self.name, color)
    }

    /// Traffic weight of `color` in percent: 100 for the active color, 0 for the other.
    pub fn weight(&self, color: Color) -> u32 {
        if self.active == color { 100 } else { 0 }
    }
}

impl DesiredState {
    /// A short, stable identifier of this state: the first 16 hex digits of the SHA-256 of
    /// its canonical JSON form (listeners and services sorted by name). The same file gives
    /// the same version on every replica and after every restart.
    pub fn version(&self) -> String {
        let mut canonical = self.clone();
        canonical.listeners.sort_by(|a, b| a.name.cmp(&b.name));
        canonical.services.sort_by(|a, b| a.name.cmp(&b.name));
        canonical.databases.sort_by(|a, b| a.name.cmp(&b.name));
        short_hash(&canonical)
    }

    pub fn service(&self, name: &str) -> Option<&Service> {
        self.services.iter().find(|s| s.name == name)
    }

    pub fn database(&self, name: &str) -> Option<&Database> {
        self.databases.iter().find(|d| d.name == name)
    }

    pub fn listener(&self, name: &str) -> Option<&Listener> {
        self.listeners.iter().find(|l| l.name == name)
    }

    /// The services routed on listener `name`, sorted by service name.
    pub fn services_on<'a>(&'a self, listener: &'a str) -> impl Iterator<Item = &'a Service> {
        let mut services: Vec<&Service> = self
            .services
            .iter()
            .filter(|s| s.listener == listener)
            .collect();
        services.sort_by(|a, b| a.name.cmp(&b.name));
        services.into_iter()
    }
}

/// One problem found in a state file, with where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub line: u32,
    pub column: u32,
    pub message: String,
}

/// A state file that could not be loaded: unreadable, not YAML, or invalid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StateError {
    #[error("{path}: cannot read: {reason}")]
    Unreadable { path: PathBuf, reason: String },
    #[error("{}", render_problems(path, problems))]
    Invalid {
        path: PathBuf,
        problems: Vec<Problem>,
    },
}

impl StateError {
    /// Every problem as a `FILE:LINE:COLUMN: message` line (one line when unreadable).
    pub fn lines(&self) -> Vec<String> {
        match self {
            StateError::Unreadable { .. } => vec![self.to_string()],
            StateError::Invalid { path, problems } => problems
                .iter()
                .map(|p| format!("{}:{}:{}: {}", path.display(), p.line, p.column, p.message))
                .collect(),
        }
    }

    /// The location of the first problem, when there is one.
    pub fn first_location(&self) -> Option<(u32, u32)> {
        match self {
            StateError::Invalid { problems, .. } => problems.first().map(|p| (p.line, p.column)),
            StateError::Unreadable { .. } => None,
        }
    }
}

fn render_problems(path: &Path, problems: &[Problem]) -> String {
    problems
        .iter()
        .map(|p| format!("{}:{}:{}: {}", path.display(), p.line, p.column, p.message))
        .collect::<Vec<_>>()
        .join("\n")
}
