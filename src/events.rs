//! What happens to the desired state and to each proxy, as events: the audit log, the
//! `switchyard.v1` event stream and the convergence metric all read them.
//!
//! A `tokio::sync::broadcast` channel: any number of readers, writers never wait. A reader
//! that falls more than [`CAPACITY`] events behind loses the oldest (it is told so); the
//! audit log does not read from here but gets each event directly, so it never loses one.

use std::sync::Arc;
use std::time::SystemTime;

use serde::Serialize;
use tokio::sync::broadcast;

use crate::audit::AuditLog;
use crate::state::Color;
use crate::xds::registry::rfc3339;

/// Events buffered for slow readers.
pub const CAPACITY: usize = 4096;

/// A service's traffic split.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Split {
    pub active: Color,
    pub blue: u32,
    pub green: u32,
}

/// A service as it was and as it is (`None`: absent).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ServiceChange {
    pub service: String,
    pub before: Option<Split>,
    pub after: Option<Split>,
}

/// Where a state file came from.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct FileInfo {
    pub path: String,
    #[serde(serialize_with = "rfc3339_opt")]
    pub mtime: Option<SystemTime>,
    pub owner_uid: Option<u32>,
    /// The owner's user name, when the system knows it.
    pub owner: Option<String>,
}

/// Something that happened.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// A new state file content was accepted and published.
    StateAccepted {
        #[serde(serialize_with = "rfc3339")]
        at: SystemTime,
        version: String,
        previous_version: Option<String>,
        content_hash: String,
        file: FileInfo,
        /// Services whose split changed, or that were added or removed.
        changes: Vec<ServiceChange>,
    },
    /// A state file content was rejected; the previous state stays in force.
    StateRejected {
        #[serde(serialize_with = "rfc3339")]
        at: SystemTime,
        content_hash: String,
        file: FileInfo,
        /// Every problem as `FILE:LINE:COLUMN: message`.
        errors: Vec<String>,
        /// The state that stays in force.
        active_version: Option<String>,
    },
    /// A new state is being pushed to the connected proxies.
    SwitchStarted {
        #[serde(serialize_with = "rfc3339")]
        at: SystemTime,
        version: String,
        /// Resource types whose version changed.
        types: Vec<&'static str>,
        proxies: usize,
    },
    /// A proxy acknowledged a version of one resource type.
    ProxyAcked {
        #[serde(serialize_with = "rfc3339")]
        at: SystemTime,
        node_id: String,
        stream_id: u64,
        r#type: &'static str,
        version: String,
        /// The state version the proxy's stream was serving.
        state_version: String,
    },
    /// A proxy has acknowledged everything of state `state_version` (once per proxy and
    /// state version): "this proxy runs the switch".
    ProxySynced {
        #[serde(serialize_with = "rfc3339")]
        at: SystemTime,
        node_id: String,
        stream_id: u64,
        state_version: String,
    },
    /// A proxy rejected a version of one resource type.
    ProxyRejected {
        #[serde(serialize_with = "rfc3339")]
        at: SystemTime,
        node_id: String,
        stream_id: u64,
        r#type: &'static str,
        version: String,
        message: String,
    },
    /// Every connected proxy has acknowledged the state `version`.
    SwitchComplete {
        #[serde(serialize_with = "rfc3339")]
        at: SystemTime,
        version: String,
        proxies: usize,
        /// From reading the file to the last acknowledgement, in milliseconds.
        took_ms: f64,
    },
}

impl Event {
    /// Per-type acknowledgements are too fine for the audit log; a proxy's whole
    /// acknowledgement of a state is recorded as [`Event::ProxySynced`].
    pub fn is_audited(&self) -> bool {
        !matches!(self, Event::ProxyAcked { .. })
    }
}

/// Where events go. Cheap to clone.
#[derive(Debug, Clone)]
pub struct EventBus {
    tx: broadcast::Sender<Arc<Event>>,
    audit: Option<AuditLog>,
}

impl Default for EventBus {
    fn default() -> Self {
        EventBus::new(None)
    }
}

impl EventBus {
    /// A bus that also appends every event to `audit`, if given.
    pub fn new(audit: Option<AuditLog>) -> EventBus {
        let (tx, _) = broadcast::channel(CAPACITY);
        EventBus { tx, audit }
    }

    pub fn emit(&self, event: Event) {
        if let Some(audit) = &self.audit
            && event.is_audited()
        {
            audit.record(&event);
        }
        // No subscribers is fine.
        let _ = self.tx.send(Arc::new(event));
    }

    /// Is anyone (a `WatchEvents` call) listening right now?
    pub fn has_subscribers(&self) -> bool {
        self.tx.receiver_count() > 0
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Event>> {
        self.tx.subscribe()
    }
}

fn rfc3339_opt<S: serde::Serializer>(t: &Option<SystemTime>, s: S) -> Result<S::Ok, S::Error> {
    match t {
        Some(t) => rfc3339(t, s),
        None => s.serialize_none(),
    }
}
