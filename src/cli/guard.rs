//! The schema guard's warnings for `validate` and `diff`: the databases' current schema
//! versions, read once from their sources as `serve` would, and what a file (or a change)
//! would strand. Warnings, not errors: a file is valid whatever the database says now.

use std::path::Path;

use crate::rollout::schema::{self, SchemaVersion, Versions};
use crate::rollout::source;
use crate::state::DesiredState;

/// Each database's current version, read from its source (at most
/// [`source::SOURCE_TIMEOUT`] per URL).
pub fn current_versions(state: &DesiredState) -> Versions {
    if state.databases.is_empty() {
        return Versions::new();
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("bug: a current-thread runtime always builds");
    runtime.block_on(source::read_all(state))
}

/// `FILE: database NAME: ...` lines: what each database is at.
pub fn version_lines(file: &Path, versions: &Versions) -> Vec<String> {
    versions
        .iter()
        .map(|(name, v)| match v {
            SchemaVersion::Known(v) => {
                format!("{}: database `{name}` is at schema {v}", file.display())
            }
            SchemaVersion::Unknown(why) => format!(
                "{}: warning: database `{name}`: schema version unknown ({why}); every switch of its services would be held",
                file.display()
            ),
        })
        .collect()
}

/// `FILE: warning: ...` lines for `state` against `versions`, and for the change from
/// `before` when there is one.
pub fn warning_lines(
    file: &Path,
    before: Option<&DesiredState>,
    state: &DesiredState,
    versions: &Versions,
) -> Vec<String> {
    let mut warnings = schema::warnings(state, versions);
    if let Some(before) = before {
        warnings.extend(schema::change_warnings(before, state, versions));
    }
    warnings
        .into_iter()
        .map(|w| format!("{}: warning: {w}", file.display()))
        .collect()
}
