//! The snapshot cache: one writer publishes, every ADS stream reads.
//!
//! A `tokio::sync::watch` channel holds the current `Arc<Snapshot>`: a stream that is busy
//! when two snapshots are published in a row sees only the latest (saves are coalesced
//! for free), publishing never waits for slow streams, and a reader clones an `Arc`, never
//! the resources. Snapshots are built and consistency-checked before they are published,
//! so a reader never sees a half-written one.

use std::sync::Arc;

use tokio::sync::watch;

use super::snapshot::Snapshot;

/// Cheap, cloneable read handle.
#[derive(Clone, Debug)]
pub struct SnapshotCache {
    rx: watch::Receiver<Arc<Snapshot>>,
}

/// The single write handle.
#[derive(Debug)]
pub struct SnapshotWriter {
    tx: watch::Sender<Arc<Snapshot>>,
}

/// A new cache holding `initial`, as a (reader, writer) pair.
pub fn snapshot_cache(initial: Snapshot) -> (SnapshotCache, SnapshotWriter) {
    let (tx, rx) = watch::channel(Arc::new(initial));
    (SnapshotCache { rx }, SnapshotWriter { tx })
}

impl SnapshotCache {
    /// The snapshot in force now.
    pub fn current(&self) -> Arc<Snapshot> {
        self.rx.borrow().clone()
    }

    /// A receiver that wakes on every publish (with the current one marked seen).
    pub fn subscribe(&self) -> watch::Receiver<Arc<Snapshot>> {
        let mut rx = self.rx.clone();
        rx.mark_unchanged();
        rx
    }
}

impl SnapshotWriter {
    /// Publishes `snapshot` to every stream. It must already be consistency-checked.
    pub fn publish(&self, mut snapshot: Snapshot) {
        snapshot.share_unchanged(&self.tx.borrow());
        self.tx.send_replace(Arc::new(snapshot));
    }

    /// The snapshot in force now.
    pub fn current(&self) -> Arc<Snapshot> {
        self.tx.borrow().clone()
    }
}
