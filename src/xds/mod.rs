//! The xDS side: resource types and their push order, snapshots and the cache that
//! publishes them, the per-stream protocol state machine, and the gRPC server that runs it.
//!
//! It knows nothing of the application around it: what happens on each stream goes out
//! through one [`observer::StreamObserver`], and where each proxy stands is worked out
//! here, once ([`sync`]).
//!
//! - [`snapshot`]: an immutable, versioned set of Envoy resources (plain data).
//! - [`encode`]: responses encoded once per content and shared by every stream.
//! - [`cache`]: the published snapshot (with its encoded responses), one writer, many
//!   readers.
//! - [`ledger`]: what a proxy holds and is owed per type on one stream, make-before-break
//!   and its sync status: the protocol's part that does not depend on framing.
//! - [`sotw`]: the state-of-the-world protocol of one stream around the ledger, free of
//!   I/O; `names` its subscription rules.
//! - [`stream`]: what a stream of either protocol holds besides its framing (node, ledger)
//!   and answers from it.
//! - [`delta`]: the incremental protocol of one stream around the same ledger, free of
//!   I/O: only what changed, and the names removed.
//! - [`sync`]: synced, stale, rejected, not subscribed: the one definition.
//! - [`observer`]: the seam the application implements.
//! - [`requests`], [`body`]: an ADS stream's request decoder and response body.
//! - [`limits`]: what one stream may cost (request size and arrival time, names, node
//!   size, request rate).
//! - [`server`]: the ADS gRPC service: a thin I/O loop per stream around [`sotw`] or
//!   [`delta`].

pub mod body;
pub mod cache;
pub mod delta;
pub mod encode;
pub mod ledger;
pub mod limits;
mod names;
pub mod observer;
pub mod requests;
pub mod server;
pub mod snapshot;
pub mod sotw;
pub mod stream;
pub mod sync;

use std::fmt;

/// How many resource types there are (the length of per-type arrays).
pub const COUNT: usize = 5;

/// The five resource types switchyard serves, in the order they are pushed: clusters
/// before the endpoints and secrets they need, listeners before the routes they load, and
/// every cluster (with what it needs) before a route that names it (make-before-break).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ResourceType {
    Cluster,
    Endpoint,
    /// SDS: a color's credential, CA or client certificate, read from the files the state
    /// names. Never shown: see [`snapshot::Resource::shown_body`].
    Secret,
    Listener,
    Route,
}

impl ResourceType {
    /// All types in push order.
    pub const ALL: [ResourceType; COUNT] = [
        ResourceType::Cluster,
        ResourceType::Endpoint,
        ResourceType::Secret,
        ResourceType::Listener,
        ResourceType::Route,
    ];

    pub fn type_url(self) -> &'static str {
        match self {
            ResourceType::Cluster => "type.googleapis.com/envoy.config.cluster.v3.Cluster",
            ResourceType::Endpoint => {
                "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment"
            }
            ResourceType::Secret => {
                "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret"
            }
            ResourceType::Listener => "type.googleapis.com/envoy.config.listener.v3.Listener",
            ResourceType::Route => "type.googleapis.com/envoy.config.route.v3.RouteConfiguration",
        }
    }

    pub fn from_type_url(url: &str) -> Option<ResourceType> {
        ResourceType::ALL.into_iter().find(|t| t.type_url() == url)
    }

    /// Position in [`ResourceType::ALL`], for per-type arrays.
    pub fn index(self) -> usize {
        self as usize
    }

    /// Short name used in logs, metrics and `/status`: `clusters`, `endpoints`, ...
    pub fn short_name(self) -> &'static str {
        match self {
            ResourceType::Cluster => "clusters",
            ResourceType::Endpoint => "endpoints",
            ResourceType::Secret => "secrets",
            ResourceType::Listener => "listeners",
            ResourceType::Route => "routes",
        }
    }

    /// Clusters and listeners support the legacy wildcard: a stream's first requests for
    /// them may list no names to mean every resource. Endpoints and routes are asked for
    /// by name (or with `*`).
    pub fn is_wildcard_type(self) -> bool {
        matches!(self, ResourceType::Cluster | ResourceType::Listener)
    }
}

impl fmt::Display for ResourceType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.short_name())
    }
}
