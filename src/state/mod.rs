//! The desired-state file: its validated model, how it is parsed and checked, and the
//! watcher that keeps the last good state.
//!
//! The file is the operator's whole interface. Parsing and validation never stop at the
//! first semantic problem: every problem is reported with its `FILE:LINE:COLUMN`, so one
//! `switchyard validate` run shows everything to fix.

pub mod changes;
mod debounce;
pub mod files;
pub mod fleet;
pub mod limits;
mod lookups;
mod model;
mod parse;
pub mod read;
pub mod watch;
pub mod workflow;
mod yaml;

use std::path::Path;
use std::sync::Arc;

pub use fleet::{Rollout, Selector};
pub use model::{
    ClientCertificate, Color, ColorSpec, Credential, DesiredState, DnsDiscovery, Endpoint, FileRef,
    HealthCheck, Listener, LocalityGroup, OutlierDetection, Problem, SYSTEM_CA_BUNDLE, Service,
    StateError, UpstreamTls, Weights,
};
pub use parse::{parse_bytes, parse_str};
pub use workflow::{
    Bake, Database, Gate, Preview, Probe, Ramp, Ratio, SchemaSource, Shadow, ShadowCondition,
};

/// Reads and validates the state file at `path`. Only a regular file within
/// [`limits::MAX_STATE_BYTES`] is read ([`read::read_bounded`]); this blocks, so async
/// callers use the blocking pool.
pub fn load(path: &Path) -> Result<DesiredState, StateError> {
    let bytes = read::read_bounded(path).map_err(|e| StateError::Unreadable {
        path: path.to_owned(),
        reason: e.to_string(),
    })?;
    load_bytes(path, &bytes)
}

/// Validates `bytes` as the content of the state file at `path` (used for messages only).
/// Bytes that are not UTF-8 are a problem at the line and column of the first bad byte.
pub fn load_bytes(path: &Path, bytes: &[u8]) -> Result<DesiredState, StateError> {
    parse_bytes(bytes).map_err(|problems| StateError::Invalid {
        path: path.to_owned(),
        problems,
    })
}

/// Reads the files `state` (loaded from `path`) names, relative to `path`'s directory, on
/// the blocking pool: a file that cannot be read is a problem at the place it is named.
pub async fn read_files(
    path: &Path,
    state: &Arc<DesiredState>,
) -> Result<files::Files, StateError> {
    let base = path.parent().map(Path::to_owned).unwrap_or_default();
    let read_state = state.clone();
    tokio::task::spawn_blocking(move || files::Files::read(&read_state, &base))
        .await
        .expect("bug: reading the state's files panicked")
        .map_err(|problems| StateError::Invalid {
            path: path.to_owned(),
            problems,
        })
}
