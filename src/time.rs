//! Times as `/status`, the audit log and events write them: RFC 3339, UTC, milliseconds.

use std::time::SystemTime;

/// Serializes a time as RFC 3339 (UTC, milliseconds).
pub fn rfc3339<S: serde::Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(&humantime::format_rfc3339_millis(*t))
}

/// [`rfc3339`], or `null`.
pub fn rfc3339_opt<S: serde::Serializer>(t: &Option<SystemTime>, s: S) -> Result<S::Ok, S::Error> {
    match t {
        Some(t) => rfc3339(t, s),
        None => s.serialize_none(),
    }
}
