//! How validation collects problems, and the name rule every named entry shares.

use serde_saphyr::{Location, Spanned};

use crate::state::model::Problem;
use crate::state::yaml::clamp;

/// Collects problems while validation walks the raw state.
#[derive(Default)]
pub(super) struct Problems(pub(super) Vec<Problem>);

impl Problems {
    pub(super) fn at(&mut self, location: Location, message: impl Into<String>) {
        self.0.push(Problem {
            line: clamp(location.line()),
            column: clamp(location.column()),
            message: message.into(),
        });
    }
}

/// Names become Envoy resource names and stat prefixes: keep them to a safe alphabet.
pub(super) fn check_name(problems: &mut Problems, what: &str, name: &Spanned<String>) {
    let n = &name.value;
    let ok_char = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.';
    if n.is_empty() {
        problems.at(name.referenced, format!("{what} name must not be empty"));
    } else if n.len() > 100 || !n.chars().all(ok_char) {
        problems.at(
            name.referenced,
            format!(
                "{what} name `{n}` may use only letters, digits, `-`, `_` and `.` (at most 100)"
            ),
        );
    }
}
