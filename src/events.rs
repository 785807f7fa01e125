//! What happens to the desired state and to each proxy, as events: the audit log and the
//! `switchyard.v1` event stream read them.
//!
//! Two ways out. Sinks ([`EventSink`], such as the audit log) are handed every event as it
//! is emitted, so they never lose one. Live readers subscribe to a `tokio::sync::broadcast`
//! channel: any number of them, writers never wait, and a reader that falls more than
//! [`CAPACITY`] events behind loses the oldest (it is told so).

use std::sync::Arc;
use std::time::SystemTime;

use serde::Serialize;
use tokio::sync::broadcast;

use crate::rollout::decide::Trip;
use crate::state::Color;
use crate::time::{rfc3339, rfc3339_opt};

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
    /// A valid state file could not be translated: a bug in switchyard, not in the file.
    /// The previous state stays in force.
    StateInternalError {
        #[serde(serialize_with = "rfc3339")]
        at: SystemTime,
        content_hash: String,
        file: FileInfo,
        message: String,
        /// The state that stays in force.
        active_version: Option<String>,
    },
    /// A file the state in force names changed (a credential rotated, a CA renewed): the
    /// same state is pushed at a new version. The files' paths, never their content.
    StateFilesChanged {
        #[serde(serialize_with = "rfc3339")]
        at: SystemTime,
        version: String,
        previous_version: String,
        paths: Vec<String>,
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
    /// The rollout decided something for a service by itself: a gated switch waiting or
    /// going ahead, a switch given up or held by the schema guard, a bake passing, or an
    /// automatic rollback (with what tripped it).
    Rollout {
        #[serde(serialize_with = "rfc3339")]
        at: SystemTime,
        service: String,
        /// `switched`, `gate_waiting`, `gate_failing` (which endpoints fail the gate and why,
        /// when that changes), `gave_up`, `held`, `bake_passed`, `bake_failed`, `rolled_back`
        /// or `rollback_refused`.
        decision: &'static str,
        /// The color the file asks for.
        wanted: Color,
        /// The color in force after the decision.
        in_force: Color,
        /// Why, in words (held, refused, given up, rolled back).
        reason: Option<String>,
        /// What tripped an automatic rollback.
        trip: Option<Trip>,
        /// The state version in force after the decision.
        version: String,
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

/// Takes every event as it is emitted (the audit log). Called on the emitter's task:
/// return quickly (queue the work, as the audit log does).
pub trait EventSink: Send + Sync + std::fmt::Debug {
    fn accept(&self, event: &Event);
}

/// Where events go. Cheap to clone.
#[derive(Debug, Clone)]
pub struct EventBus {
    tx: broadcast::Sender<Arc<Event>>,
    sinks: Arc<[Arc<dyn EventSink>]>,
    /// The last [`HISTORY`] events of the history an operator reads (states accepted and
    /// rejected, switches, rollout decisions, rejections by proxies), oldest first.
    recent: Arc<std::sync::Mutex<std::collections::VecDeque<Arc<Event>>>>,
}

/// How many events [`EventBus::recent`] keeps.
pub const HISTORY: usize = 100;

impl Event {
    /// Is this one of the events of the history an operator reads (not a proxy's
    /// acknowledgement or sync, which there is one of per proxy)?
    pub fn is_history(&self) -> bool {
        !matches!(self, Event::ProxyAcked { .. } | Event::ProxySynced { .. })
    }
}

impl Default for EventBus {
    fn default() -> Self {
        EventBus::new(Vec::new())
    }
}

impl EventBus {
    /// A bus that hands every event to each of `sinks`, then to live subscribers.
    pub fn new(sinks: Vec<Arc<dyn EventSink>>) -> EventBus {
        EventBus::with_capacity(sinks, CAPACITY)
    }

    /// [`EventBus::new`], keeping `capacity` events for live subscribers that fall behind
    /// (`--watch-events-buffer`).
    pub fn with_capacity(sinks: Vec<Arc<dyn EventSink>>, capacity: usize) -> EventBus {
        let (tx, _) = broadcast::channel(capacity.max(1));
        EventBus {
            tx,
            sinks: sinks.into(),
            recent: Default::default(),
        }
    }

    pub fn emit(&self, event: Event) {
        for sink in self.sinks.iter() {
            sink.accept(&event);
        }
        let event = Arc::new(event);
        if event.is_history() {
            let mut recent = self.recent.lock().expect("bug: history lock poisoned");
            if recent.len() == HISTORY {
                recent.pop_front();
            }
            recent.push_back(event.clone());
        }
        // No subscribers is fine.
        let _ = self.tx.send(event);
    }

    /// The last [`HISTORY`] events of the history (see [`Event::is_history`]), oldest
    /// first: what the dashboard shows when it opens.
    pub fn recent(&self) -> Vec<Arc<Event>> {
        self.recent
            .lock()
            .expect("bug: history lock poisoned")
            .iter()
            .cloned()
            .collect()
    }

    /// Is a `WatchEvents` call listening right now? Per-type acknowledgements are only
    /// for live readers (no sink keeps them), so without one they are not built at all.
    pub fn has_subscribers(&self) -> bool {
        self.tx.receiver_count() > 0
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Event>> {
        self.tx.subscribe()
    }
}
