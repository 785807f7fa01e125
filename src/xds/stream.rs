//! What a stream of either ADS protocol holds besides its framing: the proxy's node, the
//! [`Ledger`] of what it holds and is owed, and this server's name for its responses; and
//! what both protocols answer from them (where the proxy stands, per type). [`SotwStream`]
//! and [`DeltaStream`] dereference to it.
//!
//! [`SotwStream`]: super::sotw::SotwStream
//! [`DeltaStream`]: super::delta::DeltaStream

use std::sync::Arc;

use envoy_types::pb::envoy::config::core::v3::Node;

use super::ResourceType;
use super::cache::Published;
use super::ledger::Ledger;
use super::snapshot::Snapshot;
use super::sync::SyncStatus;

/// The protocol-independent part of one ADS stream.
#[derive(Debug)]
pub struct StreamCore {
    /// Shared with the observer.
    node: Option<Arc<Node>>,
    pub(super) ledger: Ledger,
    /// Identifies this server in responses.
    pub(super) control_plane: String,
}

impl StreamCore {
    pub(super) fn new(published: Arc<Published>, control_plane: String) -> StreamCore {
        StreamCore {
            node: None,
            ledger: Ledger::new(published),
            control_plane,
        }
    }

    /// Keeps `node` if it is the first a request carried. Envoy lists every extension it
    /// was built with (kilobytes): only the identity is kept.
    pub(super) fn keep_node(&mut self, node: Option<Node>) {
        if self.node.is_none()
            && let Some(mut node) = node
        {
            node.extensions = Vec::new();
            node.client_features = Vec::new();
            self.node = Some(Arc::new(node));
        }
    }

    /// The proxy's node, from the first request that carried one.
    pub fn node(&self) -> Option<&Arc<Node>> {
        self.node.as_ref()
    }

    /// The state version of the snapshot the stream serves.
    pub fn state_version(&self) -> &str {
        &self.snapshot().state_version
    }

    pub(super) fn snapshot(&self) -> &Snapshot {
        self.ledger.snapshot()
    }

    /// Where the proxy stands on `t`.
    pub fn status(&self, t: ResourceType) -> SyncStatus {
        self.ledger.status(t)
    }

    /// [`Self::status`] of every type, by [`ResourceType::index`].
    pub fn statuses(&self) -> [SyncStatus; 5] {
        self.ledger.statuses()
    }

    /// Does the proxy subscribe to every resource of `t` (a wildcard subscription)?
    pub fn wildcard(&self, t: ResourceType) -> bool {
        self.ledger.wildcard(t)
    }
}
