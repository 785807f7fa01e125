//! The desired-state file: its validated model, how it is parsed and checked, and the
//! watcher that keeps the last good state.
//!
//! The file is the operator's whole interface. Parsing and validation never stop at the
//! first semantic problem: every problem is reported with its `FILE:LINE:COLUMN`, so one
//! `switchyard validate` run shows everything to fix.

pub mod changes;
mod debounce;
pub mod limits;
mod lookups;
mod model;
mod parse;
pub mod read;
pub mod watch;
pub mod workflow;
mod yaml;

use std::path::Path;

pub use model::{Color, ColorSpec, DesiredState, Listener, Problem, Service, StateError};
pub use parse::{parse_bytes, parse_str};
pub use workflow::{
    Bake, Database, Gate, Preview, Probe, Ratio, SchemaSource, Shadow, ShadowCondition,
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
