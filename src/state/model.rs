//! The validated desired state (what a state file says once it has passed every check),
//! and the errors a state file can have.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::fleet::Rollout;
use super::workflow::{Bake, Database, Gate, Preview, Ramp, Shadow};
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
    /// cannot run against the database's schema (see `crate::rollout`). With `weights`,
    /// the color with the larger weight (see [`Weights::active`]).
    pub active: Color,
    /// A split of the traffic instead of all of it to `active` (`weights:`, or a step of
    /// a ramp in the state in force). Left out of the hash when absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub weights: Option<Weights>,
    /// A switch moves the traffic to `active` step by step (`ramp:`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ramp: Option<Ramp>,
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
    /// How many times Envoy retries a request that failed (5xx, reset, refused), each time
    /// on another backend and, when the color has several priorities, on the next one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retries: Option<u32>,
    /// The switch reaches the proxies wave by wave (`rollout:`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rollout: Option<Rollout>,
    /// The release group: services of one group switch together and roll back together.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
}

/// The backends of one color, and how Envoy reaches them. Every key after `endpoints` is
/// left out of the hash when absent, so a file without them keeps its version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ColorSpec {
    /// All addresses, or all DNS names (validation does not mix them).
    pub endpoints: Vec<Endpoint>,
    /// How Envoy resolves the names (only when the endpoints are names).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dns: Option<DnsDiscovery>,
    /// TLS to the backends.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<UpstreamTls>,
    /// The `Host` / `:authority` the backends are sent instead of the client's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host_rewrite: Option<String>,
    /// Put before the request's path (no trailing `/`): `/v1/x` sends `/chat` as `/v1/x/chat`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path_prefix: Option<String>,
    /// A header Envoy adds to every request to this color, its value read from a file.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub credential: Option<Credential>,
    /// The endpoints by locality, with their failover priority (`localities:`); empty
    /// when the file lists plain `endpoints:`. `endpoints` holds all of them either way.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub localities: Vec<LocalityGroup>,
    /// Envoy ejects a backend that keeps failing (passive health checking).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outlier_detection: Option<OutlierDetection>,
    /// Envoy probes every backend (active health checking).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub health_check: Option<HealthCheck>,
    /// The database schema versions this color can run against (with `database:`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub schemas: Vec<String>,
}

impl ColorSpec {
    /// A color of plain addresses and nothing else (tests, benchmarks).
    pub fn addresses(endpoints: impl IntoIterator<Item = SocketAddr>) -> ColorSpec {
        ColorSpec {
            endpoints: endpoints.into_iter().map(Endpoint::Address).collect(),
            dns: None,
            tls: None,
            host_rewrite: None,
            path_prefix: None,
            credential: None,
            localities: Vec::new(),
            outlier_detection: None,
            health_check: None,
            schemas: Vec::new(),
        }
    }

    /// The endpoints that are addresses (every one, unless they are names).
    pub fn addresses_only(&self) -> impl Iterator<Item = SocketAddr> + '_ {
        self.endpoints.iter().filter_map(Endpoint::address)
    }

    /// Are the endpoints DNS names (a DNS cluster rather than EDS)?
    pub fn by_name(&self) -> bool {
        self.dns.is_some()
    }

    /// The files this color needs read: its credential, CA and client certificate.
    pub fn files(&self) -> impl Iterator<Item = &FileRef> {
        let tls = self.tls.as_ref();
        let cert = tls.and_then(|t| t.client_certificate.as_ref());
        self.credential
            .as_ref()
            .map(|c| &c.file)
            .into_iter()
            .chain(tls.and_then(|t| t.ca.as_ref()))
            .chain(cert.map(|c| &c.cert))
            .chain(cert.map(|c| &c.key))
    }
}

/// One backend: an address, or a DNS name that Envoy resolves. Written (and hashed) as
/// `IP:PORT`, `[IPv6]:PORT` or `NAME:PORT`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Endpoint {
    Address(SocketAddr),
    Name { host: String, port: u16 },
}

impl Endpoint {
    pub fn address(&self) -> Option<SocketAddr> {
        match self {
            Endpoint::Address(a) => Some(*a),
            Endpoint::Name { .. } => None,
        }
    }

    /// The host: an IP address or a name.
    pub fn host(&self) -> String {
        match self {
            Endpoint::Address(a) => a.ip().to_string(),
            Endpoint::Name { host, .. } => host.clone(),
        }
    }

    pub fn port(&self) -> u16 {
        match self {
            Endpoint::Address(a) => a.port(),
            Endpoint::Name { port, .. } => *port,
        }
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Endpoint::Address(a) => a.fmt(f),
            Endpoint::Name { host, port } => write!(f, "{host}:{port}"),
        }
    }
}

impl Serialize for Endpoint {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// Some of a color's endpoints, where they are and when they take traffic: Envoy sends a
/// color's requests to its priority 0 endpoints, and to priority 1 only as far as those are
/// unhealthy (ejected or failing their health checks), and so on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LocalityGroup {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub region: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub zone: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub sub_zone: String,
    /// As the file says; `None` when the color's localities give none: then each proxy
    /// ranks them from where it is ([`ColorSpec::ranked_for`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub priority: Option<u32>,
    pub endpoints: Vec<Endpoint>,
}

impl LocalityGroup {
    /// How near this locality is to a proxy in `region` / `zone`: 0 in its zone, 1 in its
    /// region, 2 elsewhere (what [`ColorSpec::ranked_for`] turns into priorities).
    pub fn nearness(&self, region: &str, zone: &str) -> u32 {
        let same_region = !region.is_empty() && self.region == region;
        if same_region && !zone.is_empty() && self.zone == zone {
            0
        } else if same_region {
            1
        } else {
            2
        }
    }
}

impl ColorSpec {
    /// Are this color's priorities chosen per proxy (localities given without one)?
    pub fn ranks_per_proxy(&self) -> bool {
        self.localities
            .first()
            .is_some_and(|g| g.priority.is_none())
    }

    /// The color as a proxy in `region` / `zone` gets it: localities without a priority
    /// ranked by nearness (its zone first, then its region, then the rest), priorities
    /// from 0 with no gap. Unchanged when the file gives priorities.
    pub fn ranked_for(&mut self, region: &str, zone: &str) {
        if !self.ranks_per_proxy() {
            return;
        }
        let mut ranks: Vec<u32> = self
            .localities
            .iter()
            .map(|g| g.nearness(region, zone))
            .collect();
        ranks.sort_unstable();
        ranks.dedup();
        for g in &mut self.localities {
            let near = g.nearness(region, zone);
            let rank = ranks.iter().position(|r| *r == near).unwrap_or(0);
            g.priority = Some(u32::try_from(rank).unwrap_or(0));
        }
    }
}

/// Envoy's outlier detection on a color: a backend that answers `consecutive_5xx` errors
/// in a row is ejected for `base_ejection_time` (longer each time), checked every
/// `interval`; at most `max_ejection_percent` of the backends at once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OutlierDetection {
    pub consecutive_5xx: u32,
    #[serde(serialize_with = "super::workflow::humane")]
    pub interval: std::time::Duration,
    #[serde(serialize_with = "super::workflow::humane")]
    pub base_ejection_time: std::time::Duration,
    pub max_ejection_percent: u32,
}

/// Envoy's active HTTP health check of each backend of a color.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HealthCheck {
    pub path: String,
    #[serde(serialize_with = "super::workflow::humane")]
    pub interval: std::time::Duration,
    #[serde(serialize_with = "super::workflow::humane")]
    pub timeout: std::time::Duration,
    pub unhealthy_threshold: u32,
    pub healthy_threshold: u32,
}

/// How Envoy turns a color's DNS names into addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DnsDiscovery {
    /// `STRICT_DNS` (the default): every address every name resolves to is a backend,
    /// re-resolved every 5 s; for a pool of servers behind one name (a Kubernetes
    /// headless service, several hosts).
    Strict,
    /// `LOGICAL_DNS`: one name, and a new connection goes to the first address it
    /// resolves to at the time; for a managed API behind a large, rotating DNS pool, whose
    /// connections should not be torn down each time the answer changes.
    Logical,
}

/// TLS from Envoy to a color's backends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UpstreamTls {
    /// The server name sent (SNI) and checked against the backend's certificate: the
    /// file's `sni`, or the endpoints' one DNS name.
    pub sni: String,
    /// The CA that signs the backends' certificates; `None`: the proxy's system bundle.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ca: Option<FileRef>,
    /// The certificate Envoy presents to the backends (mutual TLS).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_certificate: Option<ClientCertificate>,
}

/// Where the proxies' own CA bundle is when a color names no `ca` (Debian, Ubuntu, Alpine,
/// and Envoy's official images). Envoy reads it on its own host.
pub const SYSTEM_CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

/// A certificate and its private key, as PEM files.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ClientCertificate {
    pub cert: FileRef,
    pub key: FileRef,
}

/// A header added to every request sent to a color: `header: prefix + the file's content`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Credential {
    /// Lowercase (`x-api-key`, `x-goog-api-key`, `authorization`).
    pub header: String,
    /// Put before the value (`"Bearer "`); empty for none.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub prefix: String,
    pub file: FileRef,
}

/// A file named in the state file, whose content switchyard reads and serves to the
/// proxies over SDS. Only the path is part of the state (and its hash): the content never
/// is. A relative path is relative to the state file's directory.
#[derive(Debug, Clone, Serialize)]
#[serde(transparent)]
pub struct FileRef {
    pub path: PathBuf,
    /// Where the file's path is written (line, column): for a problem reading it.
    #[serde(skip)]
    pub at: (u32, u32),
}

impl FileRef {
    pub fn new(path: impl Into<PathBuf>) -> FileRef {
        FileRef {
            path: path.into(),
            at: (0, 0),
        }
    }
}

/// Two references to the same path are equal wherever they are written.
impl PartialEq for FileRef {
    fn eq(&self, other: &FileRef) -> bool {
        self.path == other.path
    }
}

impl Eq for FileRef {}

/// How a service's traffic is split between its colors, in percent: the two add up to
/// 100.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Weights {
    pub blue: u32,
    pub green: u32,
}

impl Weights {
    /// `percent` to `color`, the rest to the other.
    pub fn of(color: Color, percent: u32) -> Weights {
        let rest = 100u32.saturating_sub(percent);
        match color {
            Color::Blue => Weights {
                blue: percent,
                green: rest,
            },
            Color::Green => Weights {
                blue: rest,
                green: percent,
            },
        }
    }

    /// All the traffic to `color`.
    pub fn all(color: Color) -> Weights {
        Weights::of(color, 100)
    }

    pub fn get(self, color: Color) -> u32 {
        match color {
            Color::Blue => self.blue,
            Color::Green => self.green,
        }
    }

    /// The color that counts as active where one color is needed (the idle color is the
    /// preview listener's and shadow traffic's; a gate or bake acts when it changes): the
    /// one with the larger weight, and blue on a tie (50/50).
    pub fn active(self) -> Color {
        if self.green > self.blue {
            Color::Green
        } else {
            Color::Blue
        }
    }
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

    /// Traffic weight of `color` in percent: as `weights` says, else 100 for the active
    /// color and 0 for the other.
    pub fn weight(&self, color: Color) -> u32 {
        self.split().get(color)
    }

    /// How the traffic is split between the colors.
    pub fn split(&self) -> Weights {
        self.weights.unwrap_or(Weights::all(self.active))
    }

    /// Splits the traffic as `weights` says (all of it to one color when `None`), with
    /// `active` the color that then counts as active.
    pub fn set_split(&mut self, weights: Weights) {
        self.active = weights.active();
        self.weights = (weights != Weights::all(self.active)).then_some(weights);
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
