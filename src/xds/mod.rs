//! The xDS side: resource types and their push order, the snapshot cache, the per-stream
//! protocol state machine and the gRPC server that runs it.

pub mod body;
pub mod cache;
pub mod encode;
pub mod registry;
pub mod requests;
pub mod server;
pub mod snapshot;
pub mod sotw;

use std::fmt;

/// The four resource types switchyard serves, in the order they are pushed: clusters
/// before the endpoints that fill them, listeners before the routes they load, and every
/// cluster before a route that names it (make-before-break).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ResourceType {
    Cluster,
    Endpoint,
    Listener,
    Route,
}

impl ResourceType {
    /// All types in push order.
    pub const ALL: [ResourceType; 4] = [
        ResourceType::Cluster,
        ResourceType::Endpoint,
        ResourceType::Listener,
        ResourceType::Route,
    ];

    pub fn type_url(self) -> &'static str {
        match self {
            ResourceType::Cluster => "type.googleapis.com/envoy.config.cluster.v3.Cluster",
            ResourceType::Endpoint => {
                "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment"
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
            ResourceType::Listener => "listeners",
            ResourceType::Route => "routes",
        }
    }

    /// Clusters and listeners are subscribed with a wildcard (every resource); endpoints
    /// and routes by name.
    pub fn is_wildcard_type(self) -> bool {
        matches!(self, ResourceType::Cluster | ResourceType::Listener)
    }
}

impl fmt::Display for ResourceType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.short_name())
    }
}
