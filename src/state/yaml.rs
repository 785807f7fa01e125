//! Reading a state file's bytes as YAML: the parser's limits, and its errors retold in the
//! project's own words, each at a line and column.
//!
//! serde-saphyr's own messages speak to Rust programmers ("use from_str_multiple",
//! "budget breached: Nodes { nodes: 250001 }") and some lose their end when the location
//! is cut off; an operator gets a complete sentence that names the limit it hit.

use serde::de::DeserializeOwned;
use serde_saphyr::budget::BudgetBreach;
use serde_saphyr::{Budget, Error};

use super::limits::{MAX_ALIAS_EXPANSION, MAX_STATE_BYTES, MAX_YAML_NODES};
use super::model::Problem;

/// Aliases (`*name`) written in the file. Handy for shared endpoint lists, and far more
/// than those need.
const MAX_ALIASES: usize = 10_000;

/// The parser's budget. Only [`MAX_YAML_NODES`] is worth raising for a real file; the
/// others keep serde-saphyr's defaults, written out because our messages quote them.
fn budget() -> Budget {
    let mut b = Budget::default();
    b.max_nodes = MAX_YAML_NODES;
    // Every node is one or two parser events (a list or map also ends), plus the aliases
    // and the stream's own: the node limit is always the one reached first.
    b.max_events = 2 * MAX_YAML_NODES + MAX_ALIASES + 16;
    b.max_aliases = MAX_ALIASES;
    // The ratio heuristic (more than 10 aliases per anchor looks like a bomb) would refuse
    // the natural use, one anchored endpoint list shared by many services; the expansion
    // limit bounds what aliases cost directly.
    b.enforce_alias_anchor_ratio = false;
    b.max_reader_input_bytes = Some(MAX_STATE_BYTES);
    b
}

/// Deserializes `text` (already checked against [`MAX_STATE_BYTES`]) with our limits.
pub fn from_str<T: DeserializeOwned>(text: &str) -> Result<T, Problem> {
    let options = serde_saphyr::options! {
        with_snippet: false,
        budget: Some(budget()),
        alias_limits: serde_saphyr::alias_limits! {
            max_total_replayed_events: MAX_ALIAS_EXPANSION,
        },
    };
    serde_saphyr::from_str_with_options(text, options).map_err(|e| problem(&e))
}

/// A problem if a file of `len` bytes is over [`MAX_STATE_BYTES`].
pub fn check_size(len: usize) -> Result<(), Problem> {
    if len <= MAX_STATE_BYTES {
        return Ok(());
    }
    // Not "is N bytes": `load` stops reading one byte past the limit.
    Err(Problem {
        line: 1,
        column: 1,
        message: format!("the file is larger than the limit of {MAX_STATE_BYTES} bytes (16 MiB)"),
    })
}

/// The state file's bytes as text, or a problem at the line and column of the first
/// byte that is not UTF-8. The column counts characters, like the parser's columns.
pub fn utf8(bytes: &[u8]) -> Result<&str, Problem> {
    check_size(bytes.len())?;
    std::str::from_utf8(bytes).map_err(|e| {
        let good = &bytes[..e.valid_up_to()];
        // `good` is valid UTF-8 by definition of `valid_up_to`.
        let good = std::str::from_utf8(good).expect("bug: valid_up_to is valid UTF-8");
        let line_start = good.rfind('\n').map_or(0, |i| i + 1);
        Problem {
            line: clamp(good.matches('\n').count() as u64 + 1),
            column: clamp(good[line_start..].chars().count() as u64 + 1),
            message: format!(
                "byte 0x{:02X} is not UTF-8 text; a state file must be saved as UTF-8",
                bytes[e.valid_up_to()]
            ),
        }
    })
}

fn problem(e: &Error) -> Problem {
    let e = e.without_snippet();
    let (location, message) = match e {
        Error::AliasError {
            error, locations, ..
        } => {
            let defined = locations.defined_location;
            let message = format!(
                "{} (expanding the alias here; its anchor is at line {}, column {})",
                message(error.without_snippet()),
                defined.line(),
                defined.column()
            );
            (Some(locations.reference_location), message)
        }
        other => (other.location(), message(other)),
    };
    let (line, column) = location
        .filter(|l| l.line() > 0)
        .map_or((1, 1), |l| (clamp(l.line()), clamp(l.column())));
    Problem {
        line,
        column,
        message,
    }
}

/// One error in our words, without its location (the caller puts that in front).
fn message(e: &Error) -> String {
    let limits = budget();
    match e {
        Error::Budget { breach, .. } => budget_message(breach, &limits),
        Error::MultipleDocuments { .. } => {
            "a second YAML document starts here; a state file is one document (remove the `---`)"
                .to_owned()
        }
        Error::AliasReplayLimitExceeded { .. } | Error::AliasExpansionLimitExceeded { .. } => {
            format!(
                "aliases expand to more than {MAX_ALIAS_EXPANSION} YAML nodes in all \
                 (the limit is {MAX_ALIAS_EXPANSION})"
            )
        }
        Error::AliasReplayStackDepthExceeded { max_depth, .. } => {
            format!("aliases nest more than {max_depth} deep (the limit is {max_depth})")
        }
        Error::UnknownAnchor { .. } => "this alias names no anchor defined before it".to_owned(),
        Error::Eof { .. } => "the file is empty or ends too early".to_owned(),
        Error::InvalidUtf8Input => "the file is not UTF-8 text".to_owned(),
        other => tidy(&other.to_string()),
    }
}

fn budget_message(breach: &BudgetBreach, b: &Budget) -> String {
    match breach {
        BudgetBreach::Nodes { .. } | BudgetBreach::Events { .. } => format!(
            "the file has more than {MAX_YAML_NODES} YAML nodes (keys, values, lists and maps, \
             counting what aliases expand to; the limit is {MAX_YAML_NODES})"
        ),
        BudgetBreach::Aliases { .. } => format!(
            "the file uses more than {} aliases (the limit is {})",
            b.max_aliases, b.max_aliases
        ),
        BudgetBreach::Anchors { .. } => format!(
            "the file defines more than {} anchors (the limit is {})",
            b.max_anchors, b.max_anchors
        ),
        BudgetBreach::AliasAnchorRatio { aliases, anchors } => format!(
            "{aliases} aliases for {anchors} anchors: more than {} uses per anchor, which \
             only an alias bomb needs (the limit is {} per anchor)",
            b.alias_anchor_ratio_multiplier, b.alias_anchor_ratio_multiplier
        ),
        BudgetBreach::Depth { .. } => format!(
            "lists and maps nest more than {} deep (the limit is {})",
            b.max_depth, b.max_depth
        ),
        BudgetBreach::Documents { .. } => {
            "a state file is one YAML document, and this file has many".to_owned()
        }
        BudgetBreach::ScalarBytes { .. } => format!(
            "the values add up to more than {} bytes (the limit is {})",
            b.max_total_scalar_bytes, b.max_total_scalar_bytes
        ),
        BudgetBreach::MergeKeys { .. } => format!(
            "the file uses more than {} merge keys `<<` (the limit is {})",
            b.max_merge_keys, b.max_merge_keys
        ),
        BudgetBreach::RecordedAnchorEvents { .. } | BudgetBreach::RecordedAnchorBytes { .. } => {
            "the anchors (`&name`) hold more than the parser keeps for aliases; \
             anchor smaller parts of the file"
                .to_owned()
        }
        BudgetBreach::InputBytes { .. } => format!(
            "the file is more than {MAX_STATE_BYTES} bytes (the limit is {MAX_STATE_BYTES})"
        ),
        BudgetBreach::SequenceUnbalanced => "a list or map ends that never started".to_owned(),
        // Includes, properties and comments are not enabled for state files; name the
        // limit in case a future serde-saphyr adds one.
        other => format!("the file breaks a YAML parser limit ({other:?})"),
    }
}

/// serde-saphyr's messages end with " at line L, column C", which we print in front
/// instead, and some speak to Rust programmers; say the same to an operator.
fn tidy(message: &str) -> String {
    let mut m = message;
    if let Some(i) = m.rfind(" at line ")
        && m[i..].contains(", column ")
    {
        m = &m[..i];
    }
    if let Some(rest) = m.strip_prefix("duplicate mapping key: ") {
        let key = rest.split(',').next().unwrap_or(rest);
        return format!("duplicate key `{key}`");
    }
    match m {
        "invalid i64" => "expected an integer".to_owned(),
        "unexpected end of input" => "the file is empty or ends too early".to_owned(),
        _ => m.replace("expected one of ", "expected one of: "),
    }
}

pub(super) fn clamp(n: u64) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::parse::tests::assert_only_problem;
    use crate::state::{parse_bytes, parse_str};

    const GOOD: &str = include_str!("../../tests/fixtures/one_service.yaml");

    #[test]
    fn alias_bomb_is_rejected_quickly() {
        // GOOD, with green's endpoints merged in through anchors `levels` deep, each level
        // merging the one before ten times: 10^(levels - 1) copies once expanded.
        let merged_green = |levels: usize| {
            let mut green = String::from(
                "    green:\n      <<:\n        - &m0 {endpoints: [\"127.0.0.1:8082\"]}\n",
            );
            for i in 1..levels {
                let previous = vec![format!("*m{}", i - 1); 10].join(", ");
                green.push_str(&format!("        - &m{i} {{<<: [{previous}]}}\n"));
            }
            let text = GOOD.replace(
                "    green:\n      endpoints: [\"127.0.0.1:8082\"]\n",
                &green,
            );
            assert_ne!(text, GOOD, "green's block is where the test expects it");
            text
        };
        // A few levels deep the file is valid: aliases and merge keys are allowed.
        let shallow = parse_str(&merged_green(3)).expect("a shallow merge is a valid file");
        assert_eq!(
            shallow.services[0].green.endpoints,
            vec!["127.0.0.1:8082".parse().unwrap()]
        );
        // Twelve levels deep (10^11 copies) the alias expansion limit stops it: after
        // 100,000 replayed nodes, about 0.7 s in a debug build, where the node limit it
        // used to meet took 2.5 s.
        assert_eq!(
            parse_str(&merged_green(12)).unwrap_err(),
            [Problem {
                // Inside the anchor `&m0` that was being replayed when the limit hit.
                line: 13,
                column: 16,
                message: "aliases expand to more than 100000 YAML nodes in all \
                          (the limit is 100000)"
                    .to_owned(),
            }]
        );
    }

    #[test]
    fn many_services_may_share_one_anchored_endpoint_list() {
        let mut text = GOOD.replace("[\"127.0.0.1:8081\"]", "&pool [\"127.0.0.1:8081\"]");
        for i in 0..100 {
            text.push_str(&format!(
                "  - {{name: s{i}, listener: public, domains: [s{i}.example], \
                 blue: {{endpoints: *pool}}, green: {{endpoints: *pool}}, active: blue}}\n"
            ));
        }
        assert_eq!(parse_str(&text).unwrap().services.len(), 101);
    }

    #[test]
    fn too_many_aliases_names_the_limit() {
        let aliases = vec!["*d"; 10_001].join(", ");
        let text = GOOD.replace("domains: [\"*\"]", &format!("domains: [&d a, {aliases}]"));
        assert_only_problem(
            &text,
            8,
            40021,
            "the file uses more than 10000 aliases (the limit is 10000)",
        );
    }

    #[test]
    fn too_many_yaml_nodes_names_the_limit() {
        // A million domains: the parser stops at the limit, before building them all.
        let domains = vec!["a"; MAX_YAML_NODES].join(",");
        assert_only_problem(
            &GOOD.replace("domains: [\"*\"]", &format!("domains: [{domains}]")),
            8,
            1_999_977,
            "the file has more than 1000000 YAML nodes (keys, values, lists and maps, \
             counting what aliases expand to; the limit is 1000000)",
        );
    }

    #[test]
    fn oversized_file_names_the_limit() {
        let text = format!("{GOOD}#{}\n", "x".repeat(MAX_STATE_BYTES));
        assert_only_problem(
            &text,
            1,
            1,
            "the file is larger than the limit of 16777216 bytes (16 MiB)",
        );
    }

    #[test]
    fn second_yaml_document_is_located_in_our_words() {
        assert_only_problem(
            &format!("{GOOD}---\n{GOOD}"),
            15,
            1,
            "a second YAML document starts here; a state file is one document \
             (remove the `---`)",
        );
    }

    #[test]
    fn non_utf8_byte_is_located_in_characters() {
        // Line 6 becomes `  - name: é<0xFF>`: `é` is two bytes but one column, so the bad
        // byte is at column 12.
        let bytes: Vec<u8> = GOOD
            .replace("name: summarizer", "name: é\u{0}")
            .bytes()
            .map(|b| if b == 0 { 0xFF } else { b })
            .collect();
        assert_eq!(
            parse_bytes(&bytes).unwrap_err(),
            [Problem {
                line: 6,
                column: 12,
                message: "byte 0xFF is not UTF-8 text; a state file must be saved as UTF-8"
                    .to_owned(),
            }]
        );
    }
}
