//! The snapshot cache: one writer publishes, every ADS stream reads.
//!
//! A `tokio::sync::watch` channel holds the current [`Published`] snapshot: a stream that
//! is busy when two snapshots are published in a row sees only the latest (saves are
//! coalesced for free), publishing never waits for slow streams, and a reader clones an
//! `Arc`, never the resources. Snapshots are built and consistency-checked before they are
//! published, so a reader never sees a half-written one.

use std::sync::Arc;

use bytes::Bytes;
use dashmap::DashMap;
use tokio::sync::watch;

use super::ResourceType;
use super::encode::{delta_response_key, encode_delta_shared, encode_shared, response_key};
use super::snapshot::{Resource, ResourceSet, Snapshot};

/// A snapshot as it is served: its resources, and the responses streams have encoded from
/// them so far.
#[derive(Debug)]
pub struct Published {
    snapshot: Snapshot,
    /// Encoded responses by [`response_key`]: every stream sending the same content shares
    /// one encoding. A `DashMap`: thousands of streams look up concurrently right after a
    /// publish, and the first encodes while the others of its shard wait for it instead of
    /// encoding again. Gone with the snapshot.
    responses: DashMap<u64, Bytes>,
}

impl Published {
    pub fn new(snapshot: Snapshot) -> Published {
        Published {
            snapshot,
            responses: DashMap::new(),
        }
    }

    /// The resources.
    pub fn snapshot(&self) -> &Snapshot {
        &self.snapshot
    }

    /// The response (without nonce) of type `t` at `version` with `resources`, encoded
    /// once for every stream of this snapshot.
    pub fn response(
        &self,
        t: ResourceType,
        version: &str,
        resources: &ResourceSet,
        control_plane: &str,
    ) -> Bytes {
        self.responses
            .entry(response_key(t, version, resources))
            .or_insert_with(|| encode_shared(t, version, resources, control_plane))
            .clone()
    }

    /// The incremental response (without nonce) of type `t` at `version` carrying
    /// `changed` and removing `removed`, encoded once for every stream of this snapshot
    /// owed the same change.
    pub fn delta_response<'a>(
        &self,
        t: ResourceType,
        version: &str,
        changed: impl Iterator<Item = &'a Arc<Resource>> + Clone,
        removed: impl Iterator<Item = &'a str> + Clone,
        control_plane: &str,
    ) -> Bytes {
        let key = delta_response_key(t, version, changed.clone(), removed.clone());
        self.responses
            .entry(key)
            .or_insert_with(|| encode_delta_shared(t, version, changed, removed, control_plane))
            .clone()
    }
}

/// Cheap, cloneable read handle.
#[derive(Clone, Debug)]
pub struct SnapshotCache {
    rx: watch::Receiver<Arc<Published>>,
}

/// The single write handle.
#[derive(Debug)]
pub struct SnapshotWriter {
    tx: watch::Sender<Arc<Published>>,
}

/// A new cache holding `initial`, as a (reader, writer) pair.
pub fn snapshot_cache(initial: Snapshot) -> (SnapshotCache, SnapshotWriter) {
    let (tx, rx) = watch::channel(Arc::new(Published::new(initial)));
    (SnapshotCache { rx }, SnapshotWriter { tx })
}

impl SnapshotCache {
    /// The snapshot in force now.
    pub fn current(&self) -> Arc<Published> {
        self.rx.borrow().clone()
    }

    /// A receiver that wakes on every publish (with the current one marked seen).
    pub fn subscribe(&self) -> watch::Receiver<Arc<Published>> {
        let mut rx = self.rx.clone();
        rx.mark_unchanged();
        rx
    }
}

impl SnapshotWriter {
    /// Publishes `snapshot` to every stream. It must already be consistency-checked.
    pub fn publish(&self, mut snapshot: Snapshot) {
        snapshot.share_unchanged(self.tx.borrow().snapshot());
        self.tx.send_replace(Arc::new(Published::new(snapshot)));
    }

    /// The snapshot in force now.
    pub fn current(&self) -> Arc<Published> {
        self.tx.borrow().clone()
    }
}
