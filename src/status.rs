//! What `/status` reports about the desired state: the state in force, the last
//! rejected file, and whether the state file can be read now. Written by the state
//! pipeline (and the watcher, through its health channel), read by the admin server.
//!
//! A `std::sync::RwLock`: one writer per state file change, a few readers per scrape, and
//! no await while it is held.

use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::SystemTime;

use serde::Serialize;

use crate::rollout::status::{DatabaseStatus, ServiceRollout};
use crate::state::watch::FileHealth;
use crate::state::{Color, DesiredState, StateError};
use crate::time::rfc3339;

/// The state in force.
#[derive(Debug, Clone, Serialize)]
pub struct ActiveState {
    pub version: String,
    pub content_hash: String,
    #[serde(serialize_with = "rfc3339")]
    pub accepted_at: SystemTime,
    #[serde(skip)]
    pub state: Arc<DesiredState>,
}

/// The last state file content that was rejected.
#[derive(Debug, Clone, Serialize)]
pub struct RejectedState {
    pub path: PathBuf,
    /// Each problem as `FILE:LINE:COLUMN: message`.
    pub errors: Vec<String>,
    pub line: Option<u32>,
    pub column: Option<u32>,
    pub content_hash: String,
    #[serde(serialize_with = "rfc3339")]
    pub rejected_at: SystemTime,
}

/// A valid state file that switchyard failed to turn into Envoy resources: a bug in
/// switchyard, not in the file. The state before it stays in force.
#[derive(Debug, Clone, Serialize)]
pub struct InternalError {
    pub message: String,
    pub content_hash: String,
    #[serde(serialize_with = "rfc3339")]
    pub at: SystemTime,
}

#[derive(Debug, Default)]
struct Board {
    active: Option<ActiveState>,
    rejected: Option<RejectedState>,
    internal_error: Option<InternalError>,
    /// Each service's rollout (only services using the workflow, or not steady).
    rollout: Vec<ServiceRollout>,
    /// Each followed database's schema version.
    databases: Vec<DatabaseStatus>,
    /// The watcher's view of the file (a `watch` receiver: the watcher updates it, readers
    /// borrow the latest); `None` until a watcher is followed.
    file: Option<tokio::sync::watch::Receiver<FileHealth>>,
}

/// Shared handle to the state status.
#[derive(Debug, Clone, Default)]
pub struct StateBoard {
    inner: Arc<RwLock<Board>>,
}

impl StateBoard {
    /// A new state is in force; any earlier rejection or internal error is resolved by it.
    pub fn accepted(&self, state: Arc<DesiredState>, version: String, content_hash: String) {
        let mut b = self.inner.write().expect("bug: state board lock poisoned");
        b.active = Some(ActiveState {
            version,
            content_hash,
            accepted_at: SystemTime::now(),
            state,
        });
        b.rejected = None;
        b.internal_error = None;
    }

    /// Where each service's rollout stands now.
    pub fn rollout(&self, rollout: Vec<ServiceRollout>, databases: Vec<DatabaseStatus>) {
        let mut b = self.inner.write().expect("bug: state board lock poisoned");
        b.rollout = rollout;
        b.databases = databases;
    }

    pub fn databases(&self) -> Vec<DatabaseStatus> {
        let b = self.inner.read().expect("bug: state board lock poisoned");
        b.databases.clone()
    }

    pub fn rollout_status(&self) -> Vec<ServiceRollout> {
        let b = self.inner.read().expect("bug: state board lock poisoned");
        b.rollout.clone()
    }

    /// A valid file could not be translated (a bug); the active state stays.
    pub fn internal_error(&self, message: String, content_hash: String) {
        let mut b = self.inner.write().expect("bug: state board lock poisoned");
        b.internal_error = Some(InternalError {
            message,
            content_hash,
            at: SystemTime::now(),
        });
    }

    pub fn last_internal_error(&self) -> Option<InternalError> {
        self.inner
            .read()
            .expect("bug: state board lock poisoned")
            .internal_error
            .clone()
    }

    /// A file was rejected; the active state stays.
    pub fn rejected(&self, error: &StateError, content_hash: String) {
        let (path, line, column) = match error {
            StateError::Unreadable { path, .. } => (path.clone(), None, None),
            StateError::Invalid { path, .. } => {
                let loc = error.first_location();
                (path.clone(), loc.map(|l| l.0), loc.map(|l| l.1))
            }
        };
        let mut b = self.inner.write().expect("bug: state board lock poisoned");
        b.rejected = Some(RejectedState {
            path,
            errors: error.lines(),
            line,
            column,
            content_hash,
            rejected_at: SystemTime::now(),
        });
    }

    pub fn active(&self) -> Option<ActiveState> {
        self.inner
            .read()
            .expect("bug: state board lock poisoned")
            .active
            .clone()
    }

    /// Shows what the watcher says about the state file from now on.
    pub fn follow_watch(&self, health: tokio::sync::watch::Receiver<FileHealth>) {
        let mut b = self.inner.write().expect("bug: state board lock poisoned");
        b.file = Some(health);
    }

    /// Whether the state file can be read, if a watcher is followed.
    pub fn file_health(&self) -> Option<FileHealth> {
        let b = self.inner.read().expect("bug: state board lock poisoned");
        b.file.as_ref().map(|h| h.borrow().clone())
    }

    pub fn last_rejection(&self) -> Option<RejectedState> {
        self.inner
            .read()
            .expect("bug: state board lock poisoned")
            .rejected
            .clone()
    }
}

/// One service as `/status` shows it.
#[derive(Debug, Serialize)]
pub struct ServiceStatus {
    pub name: String,
    pub listener: String,
    pub domains: Vec<String>,
    pub active: Color,
    pub weights: Weights,
    /// The workflow keys as in force (shadow and previews are off toward a color the
    /// schema guard refuses).
    pub preview: crate::state::Preview,
    pub shadow: Option<crate::state::Shadow>,
    pub gate: Option<crate::state::Gate>,
    pub bake: Option<crate::state::Bake>,
    pub database: Option<String>,
    pub attempt: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct Weights {
    pub blue: u32,
    pub green: u32,
}

pub fn service_statuses(state: &DesiredState) -> Vec<ServiceStatus> {
    state
        .services
        .iter()
        .map(|s| ServiceStatus {
            name: s.name.clone(),
            listener: s.listener.clone(),
            domains: s.domains.clone(),
            active: s.active,
            weights: Weights {
                blue: s.weight(Color::Blue),
                green: s.weight(Color::Green),
            },
            preview: s.preview.clone(),
            shadow: s.shadow,
            gate: s.gate.clone(),
            bake: s.bake.clone(),
            database: s.database.clone(),
            attempt: s.attempt.clone(),
        })
        .collect()
}
