//! The snapshot cache: one writer publishes, every ADS stream reads.
//!
//! A `tokio::sync::watch` channel holds the current [`Published`] snapshot: a stream that
//! is busy when two snapshots are published in a row sees only the latest (saves are
//! coalesced for free), publishing never waits for slow streams, and a reader clones an
//! `Arc`, never the resources. Snapshots are built and consistency-checked before they are
//! published, so a reader never sees a half-written one.
//!
//! Not every proxy need get the same snapshot: while a switch rolls out wave by wave, the
//! proxies of the waves it has not reached yet get a variant of it. What decides a proxy's
//! variant, and builds one, is the application's ([`Variants`]); a variant is built once,
//! when the first proxy that needs it asks, and shared by every stream of the same key, so
//! 10,000 proxies in three waves cost three snapshots, not 10,000.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use bytes::Bytes;
use dashmap::DashMap;
use envoy_types::pb::envoy::config::core::v3::Node;
use tokio::sync::watch;

use super::ResourceType;
use super::encode::{delta_response_key, encode_delta_shared, encode_shared, response_key};
use super::snapshot::{Resource, ResourceSet, Snapshot};

/// A snapshot as it is served: its resources, and the responses streams have encoded from
/// them so far.
pub struct Published {
    snapshot: Snapshot,
    /// Encoded responses by [`response_key`]: every stream sending the same content shares
    /// one encoding. A `DashMap`: thousands of streams look up concurrently right after a
    /// publish, and the first encodes while the others of its shard wait for it instead of
    /// encoding again. Gone with the snapshot.
    responses: DashMap<u64, Bytes>,
    /// Where some proxies get another snapshot than this one; `None`: every proxy gets it.
    variants: Option<Arc<dyn Variants>>,
    /// The variants built so far, by key; each built once, by the first stream that asks.
    built: Mutex<HashMap<Vec<u8>, Arc<Built>>>,
}

/// A variant, once built (`None`: it could not be, and the proxies of its key get the
/// published snapshot; not the snapshot itself, which would keep itself alive).
type Built = OnceLock<Option<Arc<Published>>>;

/// What makes some proxies get a variant of the published snapshot (a rollout between
/// waves): which variant a node gets, and how one is built.
pub trait Variants: Send + Sync + std::fmt::Debug {
    /// The key of the variant `node` gets; `None` for the published snapshot itself.
    fn key(&self, node: &Node) -> Option<Vec<u8>>;
    /// The variant of `key`; `None` when it cannot be built (a bug, logged by the
    /// implementation): then the proxy gets the published snapshot.
    fn build(&self, key: &[u8]) -> Option<Snapshot>;
    /// Are the variants a step on the way to the published snapshot (a rollout between
    /// waves), rather than for good (localities ranked per proxy)? While they are, the
    /// fleet has not converged, whatever each proxy holds.
    fn on_the_way(&self) -> bool {
        false
    }
}

impl Published {
    pub fn new(snapshot: Snapshot) -> Published {
        Published::with_variants(snapshot, None)
    }

    /// A snapshot whose proxies may get a variant of it (see [`Variants`]).
    pub fn with_variants(snapshot: Snapshot, variants: Option<Arc<dyn Variants>>) -> Published {
        Published {
            snapshot,
            responses: DashMap::new(),
            variants,
            built: Mutex::new(HashMap::new()),
        }
    }

    /// What the proxy of `node` is served: this snapshot, or its variant for the node.
    /// Before a stream knows its node (`None`), this snapshot.
    pub fn for_node(self: &Arc<Self>, node: Option<&Node>) -> Arc<Published> {
        let (Some(variants), Some(node)) = (&self.variants, node) else {
            return self.clone();
        };
        let Some(key) = variants.key(node) else {
            return self.clone();
        };
        let cell = self
            .built
            .lock()
            .expect("bug: variant map lock poisoned")
            .entry(key.clone())
            .or_default()
            .clone();
        cell.get_or_init(|| {
            variants.build(&key).map(|mut snapshot| {
                snapshot.share_unchanged(&self.snapshot);
                Arc::new(Published::new(snapshot))
            })
        })
        .clone()
        .unwrap_or_else(|| self.clone())
    }

    /// Do some proxies get a variant of this snapshot?
    pub fn has_variants(&self) -> bool {
        self.variants.is_some()
    }

    /// Are some proxies still on their way to this snapshot ([`Variants::on_the_way`])?
    pub fn on_the_way(&self) -> bool {
        self.variants.as_ref().is_some_and(|v| v.on_the_way())
    }

    /// How many variants of this snapshot were built (proxies were served).
    pub fn variants_built(&self) -> usize {
        self.built
            .lock()
            .expect("bug: variant map lock poisoned")
            .len()
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

impl std::fmt::Debug for Published {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Published")
            .field("snapshot", &self.snapshot)
            .field("variants", &self.variants)
            .finish_non_exhaustive()
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
    snapshot_cache_with(initial, None)
}

/// [`snapshot_cache`], the proxies `variants` picks getting a variant of `initial`.
pub fn snapshot_cache_with(
    initial: Snapshot,
    variants: Option<Arc<dyn Variants>>,
) -> (SnapshotCache, SnapshotWriter) {
    let (tx, rx) = watch::channel(Arc::new(Published::with_variants(initial, variants)));
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
    pub fn publish(&self, snapshot: Snapshot) {
        self.publish_with(snapshot, None);
    }

    /// Publishes `snapshot`, of which the proxies `variants` picks get a variant.
    pub fn publish_with(&self, mut snapshot: Snapshot, variants: Option<Arc<dyn Variants>>) {
        snapshot.share_unchanged(self.tx.borrow().snapshot());
        self.tx
            .send_replace(Arc::new(Published::with_variants(snapshot, variants)));
    }

    /// The snapshot in force now.
    pub fn current(&self) -> Arc<Published> {
        self.tx.borrow().clone()
    }
}
