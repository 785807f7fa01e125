//! The seam between the xDS protocol and the rest of the application: the ADS server
//! announces what happens on each stream through one [`StreamObserver`], in the spirit of
//! go-control-plane's server callbacks. The proxy registry, metrics, events, convergence
//! and the audit log all hang off the observer the application passes in; `xds` itself
//! knows none of them.
//!
//! Calls for one stream come in order (opened, then steps, then closed), made by whatever
//! polls that stream's response body; calls for different streams come concurrently, from
//! any runtime worker, so an implementation's shared state must take concurrent updates.

use std::sync::Arc;

use envoy_types::pb::envoy::config::core::v3::Node;
use tokio_rustls::rustls::pki_types::CertificateDer;

use super::ResourceType;
use super::snapshot::ResourceSet;
use super::sync::SyncStatus;

/// Identifies one ADS stream for the life of the process (a proxy that reconnects gets a
/// new one).
pub type StreamId = u64;

/// Which ADS variant a stream speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// State of the world (`StreamAggregatedResources`).
    Sotw,
    /// Incremental (`DeltaAggregatedResources`).
    Delta,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Sotw => "sotw",
            Protocol::Delta => "delta",
        }
    }
}

/// Something that happened on a stream, in the protocol's terms.
#[derive(Debug, Clone, PartialEq)]
pub enum StreamEvent {
    /// A response was sent.
    Sent {
        type_: ResourceType,
        version: String,
        /// What the proxy holds once it applies it (shared with the stream, not copied):
        /// for SotW what the response carries, for delta the set it changes.
        resources: Arc<ResourceSet>,
        /// How many resources the response itself carries: all of `resources` for SotW,
        /// only those added or changed for delta.
        carried: usize,
        /// How many names it removes (delta's `removed_resources`; 0 for SotW).
        removed: usize,
    },
    /// The proxy acknowledged the latest response of a type (an ACK).
    Acked {
        type_: ResourceType,
        version: String,
        resources: Arc<ResourceSet>,
    },
    /// The proxy rejected the latest response of a type (a NACK), with Envoy's message.
    Rejected {
        type_: ResourceType,
        version: String,
        message: String,
    },
    /// The same rejection of the same response again (a proxy repeating its NACK): counted,
    /// but neither logged, recorded nor announced again.
    RepeatedNack { type_: ResourceType },
    /// A request answering an older response; ignored.
    Stale { type_: ResourceType, nonce: String },
    /// A request for a type switchyard does not serve; ignored.
    UnknownType { type_url: String },
}

/// What one input (a request from the proxy, or a new snapshot) did to a stream.
#[derive(Debug, Clone, Copy)]
pub struct StepReport<'a> {
    /// What happened, in order.
    pub events: &'a [StreamEvent],
    /// The state version of the snapshot the stream serves now.
    pub state_version: &'a str,
    /// Where the proxy stands on each type afterwards, by [`ResourceType::index`].
    pub status: [SyncStatus; 5],
    /// Whether it subscribes to every resource of each type (a wildcard), by index.
    pub wildcard: [bool; 5],
}

/// Told what happens on every ADS stream.
pub trait StreamObserver: Send + Sync + 'static {
    /// A stream opened, from `peer` (`host:port`, empty when unknown).
    fn stream_opened(&self, stream: StreamId, protocol: Protocol, peer: &str);
    /// The stream's first request that carried a node: who the proxy is. Its extensions
    /// and client features are dropped (kilobytes that identify nothing).
    fn node_identified(&self, stream: StreamId, node: &Arc<Node>);
    /// The stream took a step: see [`StepReport`].
    fn stream_stepped(&self, stream: StreamId, step: StepReport<'_>);
    /// The stream ended, however it ended.
    fn stream_closed(&self, stream: StreamId);
}

/// Decides whether a stream's proxy may be served, once: at its first request, before
/// anything is sent. The application's policy (which identities, which nodes) lives behind
/// it; `xds` only asks.
pub trait NodeAuthorizer: Send + Sync + 'static {
    /// `node` is what the first request says (`None`: it named none); `chain` the peer's
    /// TLS certificates, leaf first (`None` without TLS or a client certificate).
    /// `Err(reason)` ends the stream with PERMISSION_DENIED and that reason.
    fn authorize(
        &self,
        node: Option<&Node>,
        chain: Option<&[CertificateDer<'static>]>,
    ) -> Result<(), String>;
}
