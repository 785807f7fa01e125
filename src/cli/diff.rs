//! `switchyard diff OLD NEW`: what replacing one state file by another would change for
//! Envoy. Both states are translated exactly as `serve` would; the resulting resources are
//! compared by type in push order (clusters, endpoints, secrets, listeners, routes), each
//! changed one shown as a line diff of its JSON (Envoy's field names, as `switchyard render` and
//! Envoy's `/config_dump` print it). Above that, the change in the state's own terms:
//! color switches, services and listeners added or removed, endpoints and domains moved.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use serde_json::Value;
use similar::TextDiff;

use crate::render::{RenderError, any_to_json};
use crate::state::changes::{self, changes, listener_address, service_details};
use crate::state::files::Files;
use crate::state::{Color, DesiredState, Service};
use crate::translate::translate_with;
use crate::xds::ResourceType;
use crate::xds::snapshot::{InconsistentSnapshot, Snapshot};

/// Unchanged lines shown around each change in a resource's JSON.
const CONTEXT_LINES: usize = 3;

/// Why two valid states could not be compared. Either is a bug in switchyard.
#[derive(Debug, thiserror::Error)]
pub enum DiffError {
    #[error("bug: the translated state is inconsistent: {0}")]
    Inconsistent(#[from] InconsistentSnapshot),
    #[error("bug: cannot render a resource as JSON: {0}")]
    Render(#[from] RenderError),
}

/// What would change for Envoy, and why in the state's terms.
#[derive(Debug, Clone, PartialEq)]
pub struct Diff {
    pub old_version: String,
    pub new_version: String,
    /// The change in the state's own terms, one line each (color switches first).
    pub summary: Vec<String>,
    /// One entry per resource type, in push order.
    pub types: Vec<TypeDiff>,
}

/// The changes to one resource type.
#[derive(Debug, Clone, PartialEq)]
pub struct TypeDiff {
    pub resource_type: ResourceType,
    pub old_version: String,
    pub new_version: String,
    /// By resource name.
    pub changes: Vec<Change>,
}

/// One resource added, removed or changed.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    Added(String),
    Removed(String),
    /// Changed, with unified-diff hunks of its pretty-printed JSON.
    Changed {
        name: String,
        hunks: Vec<String>,
    },
}

impl Diff {
    /// Would Envoy see no change at all?
    pub fn is_empty(&self) -> bool {
        self.types.iter().all(|t| t.changes.is_empty())
    }

    /// The diff as text; `old_label` and `new_label` name the two sides (file paths).
    pub fn render(&self, old_label: &str, new_label: &str) -> String {
        let mut out = String::new();
        if self.is_empty() {
            if self.old_version == self.new_version {
                let _ = writeln!(
                    out,
                    "no change for Envoy (both files are state {})",
                    self.old_version
                );
            } else {
                out.push_str("no change for Envoy\n");
            }
            return out;
        }
        let _ = writeln!(
            out,
            "state {} ({old_label}) -> {} ({new_label})",
            self.old_version, self.new_version
        );
        for line in &self.summary {
            let _ = writeln!(out, "{line}");
        }
        for t in self.types.iter().filter(|t| !t.changes.is_empty()) {
            let _ = writeln!(
                out,
                "\n{} (version {} -> {}):",
                t.resource_type, t.old_version, t.new_version
            );
            let kind = kind(t.resource_type);
            for change in &t.changes {
                match change {
                    Change::Added(name) => {
                        let _ = writeln!(out, "+ {kind} {name}");
                    }
                    Change::Removed(name) => {
                        let _ = writeln!(out, "- {kind} {name}");
                    }
                    Change::Changed { name, hunks } => {
                        let _ = writeln!(out, "~ {kind} {name}");
                        for line in hunks {
                            let _ = writeln!(out, "    {line}");
                        }
                    }
                }
            }
        }
        let _ = writeln!(out, "\n{}", self.counts());
        out
    }

    /// `routes: 1 changed; nothing else changes`, or every changed type's counts.
    fn counts(&self) -> String {
        let mut parts = Vec::new();
        for t in &self.types {
            let count = |f: fn(&Change) -> bool| t.changes.iter().filter(|c| f(c)).count();
            let counts: Vec<String> = [
                (count(|c| matches!(c, Change::Added(_))), "added"),
                (count(|c| matches!(c, Change::Removed(_))), "removed"),
                (count(|c| matches!(c, Change::Changed { .. })), "changed"),
            ]
            .into_iter()
            .filter(|(n, _)| *n > 0)
            .map(|(n, what)| format!("{n} {what}"))
            .collect();
            if !counts.is_empty() {
                parts.push(format!("{}: {}", t.resource_type, counts.join(", ")));
            }
        }
        if parts.len() < self.types.len() {
            parts.push("nothing else changes".to_owned());
        }
        parts.join("; ")
    }
}

/// A resource of type `t`, as a noun: `cluster`, `endpoints`, `listener`, `route`.
fn kind(t: ResourceType) -> &'static str {
    match t {
        ResourceType::Cluster => "cluster",
        ResourceType::Endpoint => "endpoints",
        ResourceType::Secret => "secret",
        ResourceType::Listener => "listener",
        ResourceType::Route => "route",
    }
}

/// Compares what `old` and `new` become for Envoy, each with the files it names.
pub fn diff(
    (old, old_files): (&DesiredState, &Files),
    (new, new_files): (&DesiredState, &Files),
) -> Result<Diff, DiffError> {
    let (a, b) = (
        translate_with(old, old_files)?,
        translate_with(new, new_files)?,
    );
    let types = ResourceType::ALL
        .into_iter()
        .map(|t| diff_type(&a, &b, t))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Diff {
        old_version: a.state_version.clone(),
        new_version: b.state_version.clone(),
        summary: summarize(old, new),
        types,
    })
}

fn diff_type(a: &Snapshot, b: &Snapshot, t: ResourceType) -> Result<TypeDiff, DiffError> {
    let (old, new) = (&a.get(t).resources, &b.get(t).resources);
    let names: BTreeSet<&String> = old.keys().chain(new.keys()).collect();
    let mut changes = Vec::new();
    for name in names {
        match (old.get(name), new.get(name)) {
            (Some(_), None) => changes.push(Change::Removed(name.clone())),
            (None, Some(_)) => changes.push(Change::Added(name.clone())),
            (Some(x), Some(y)) => {
                // Compared as Envoy reads them (decoded), not by version or bytes; a
                // secret as shown (its value redacted), and by version for its value.
                let (xv, yv) = (&x.version, &y.version);
                let (x, y) = (x.shown_body(), y.shown_body());
                let x = any_to_json(&x.type_url, &x.value)?;
                let y = any_to_json(&y.type_url, &y.value)?;
                if x != y {
                    changes.push(Change::Changed {
                        name: name.clone(),
                        hunks: json_diff(&x, &y),
                    });
                } else if t == ResourceType::Secret && xv != yv {
                    changes.push(Change::Changed {
                        name: name.clone(),
                        hunks: vec![format!(
                            "  (its content changes: version {xv} -> {yv}; not shown)"
                        )],
                    });
                }
            }
            (None, None) => unreachable!("bug: a name comes from one of the two maps"),
        }
    }
    Ok(TypeDiff {
        resource_type: t,
        old_version: a.version(t).to_owned(),
        new_version: b.version(t).to_owned(),
        changes,
    })
}

fn json_diff(a: &Value, b: &Value) -> Vec<String> {
    let pretty =
        |v: &Value| serde_json::to_string_pretty(v).expect("bug: JSON values always print");
    let (a, b) = (pretty(a), pretty(b));
    let a: Vec<&str> = a.lines().collect();
    let b: Vec<&str> = b.lines().collect();
    // Myers' diff (similar's default) as unified-diff hunks: an `@@ -l,s +l,s @@` header,
    // then each line behind ` `, `-` or `+`.
    let diff = TextDiff::from_slices(&a, &b);
    let mut lines = Vec::new();
    for hunk in diff
        .unified_diff()
        .context_radius(CONTEXT_LINES)
        .iter_hunks()
    {
        lines.push(hunk.header().to_string());
        lines.extend(
            hunk.iter_changes()
                .map(|c| format!("{}{}", c.tag(), c.value())),
        );
    }
    lines
}

/// The change from `old` to `new` in the state's terms: color switches first (what an
/// operator most wants to confirm), then listeners and services added, removed or changed.
fn summarize(old: &DesiredState, new: &DesiredState) -> Vec<String> {
    let changes = changes(Some(old), new);
    let weights = |s: &Service| format!("{}/{}", s.weight(Color::Blue), s.weight(Color::Green));
    let mut out: Vec<String> = changes
        .switches()
        .map(|(before, after)| {
            format!(
                "{}: {} -> {} (weights {} -> {})",
                after.name,
                before.active,
                after.active,
                weights(before),
                weights(after)
            )
        })
        .collect();
    for c in &changes.listeners {
        out.push(match *c {
            changes::Change::Removed(l) => format!("- listener {}", l.name),
            changes::Change::Added(l) => format!("+ listener {} ({})", l.name, listener_address(l)),
            changes::Change::Changed { before, after } => format!(
                "listener {}: {} -> {}",
                after.name,
                listener_address(before),
                listener_address(after)
            ),
        });
    }
    for c in &changes.services {
        match *c {
            changes::Change::Removed(s) => out.push(format!("- service {}", s.name)),
            changes::Change::Added(s) => out.push(format!(
                "+ service {} on listener {} (active {})",
                s.name, s.listener, s.active
            )),
            changes::Change::Changed { before, after } => {
                out.extend(service_details(before, after))
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::parse_str;

    const BLUE: &str = include_str!("../../tests/fixtures/one_service.yaml");

    fn diff_texts(old: &str, new: &str) -> Diff {
        let none = Files::default();
        diff(
            (&parse_str(old).unwrap(), &none),
            (&parse_str(new).unwrap(), &none),
        )
        .unwrap()
    }

    fn changed_types(d: &Diff) -> Vec<ResourceType> {
        d.types
            .iter()
            .filter(|t| !t.changes.is_empty())
            .map(|t| t.resource_type)
            .collect()
    }

    #[test]
    fn the_same_state_is_no_change_for_envoy() {
        let d = diff_texts(BLUE, &format!("# a comment\n{BLUE}"));
        assert!(d.is_empty());
        assert_eq!(
            d.render("a.yaml", "b.yaml"),
            format!(
                "no change for Envoy (both files are state {})\n",
                d.old_version
            )
        );
    }

    #[test]
    fn a_switch_changes_only_the_route_weights() {
        let d = diff_texts(BLUE, &BLUE.replace("active: blue", "active: green"));
        assert_eq!(changed_types(&d), [ResourceType::Route]);
        assert_eq!(
            d.summary,
            ["summarizer: blue -> green (weights 100/0 -> 0/100)"]
        );
        let text = d.render("old.yaml", "new.yaml");
        assert!(text.starts_with(&format!(
            "state {} (old.yaml) -> {} (new.yaml)\nsummarizer: blue -> green (weights 100/0 -> 0/100)\n\nroutes (version ",
            d.old_version, d.new_version
        )), "{text}");
        assert!(text.contains("\n~ route public\n    @@ "), "{text}");
        let expected = [
            "    @@ -52,11 +52,11 @@",
            "                   \"clusters\": [",
            "                     {",
            "                       \"name\": \"summarizer-blue\",",
            "    -                  \"weight\": 100",
            "    +                  \"weight\": 0",
            "                     },",
            "                     {",
            "                       \"name\": \"summarizer-green\",",
            "    -                  \"weight\": 0",
            "    +                  \"weight\": 100",
        ]
        .join("\n");
        assert!(text.contains(&expected), "{text}");
        assert!(
            text.ends_with("\nroutes: 1 changed; nothing else changes\n"),
            "{text}"
        );
    }

    #[test]
    fn a_new_service_adds_clusters_endpoints_and_a_virtual_host() {
        let new = format!(
            "{BLUE}{}",
            "  - name: extra
    listener: public
    domains: [\"extra.example\"]
    blue: { endpoints: [\"127.0.0.1:9001\"] }
    green: { endpoints: [\"127.0.0.1:9002\"] }
    active: green
"
        );
        let d = diff_texts(BLUE, &new);
        assert_eq!(
            d.summary,
            ["+ service extra on listener public (active green)"]
        );
        let text = d.render("old.yaml", "new.yaml");
        for line in [
            "+ cluster extra-blue\n+ cluster extra-green\n",
            "+ endpoints extra-blue\n+ endpoints extra-green\n",
            "~ route public\n",
            "    +      \"name\": \"extra\",",
        ] {
            assert!(text.contains(line), "`{line}` missing from:\n{text}");
        }
        assert!(
            text.ends_with(
                "\nclusters: 2 added; endpoints: 2 added; routes: 1 changed; nothing else changes\n"
            ),
            "{text}"
        );
        // And back: the same resources removed.
        let back = diff_texts(&new, BLUE).render("new.yaml", "old.yaml");
        assert!(back.contains("- service extra\n"), "{back}");
        assert!(
            back.contains("- cluster extra-blue\n- cluster extra-green\n"),
            "{back}"
        );
    }

    #[test]
    fn an_endpoint_change_is_named_in_the_summary_and_the_endpoints() {
        let d = diff_texts(BLUE, &BLUE.replace("127.0.0.1:8082", "[::1]:9082"));
        assert_eq!(changed_types(&d), [ResourceType::Endpoint]);
        assert_eq!(
            d.summary,
            ["summarizer: green endpoints +[::1]:9082 -127.0.0.1:8082"]
        );
        let text = d.render("a", "b");
        assert!(text.contains("~ endpoints summarizer-green\n"), "{text}");
        assert!(
            text.contains("    -                \"address\": \"127.0.0.1\","),
            "{text}"
        );
        assert!(
            text.contains("    +                \"address\": \"::1\","),
            "{text}"
        );
    }

    #[test]
    fn a_moved_listener_and_new_domains_are_summarized() {
        let new = BLUE.replace("port: 10000", "port: 10001").replace(
            "domains: [\"*\"]",
            "domains: [\"a.example\", \"b.example\"]",
        );
        let d = diff_texts(BLUE, &new);
        assert_eq!(
            d.summary,
            [
                "listener public: 127.0.0.1:10000 -> 127.0.0.1:10001",
                "summarizer: domains * -> a.example, b.example"
            ]
        );
        assert_eq!(
            changed_types(&d),
            [ResourceType::Listener, ResourceType::Route]
        );
    }

    #[test]
    fn a_removed_listener_removes_its_listener_and_route() {
        let two = BLUE.replace(
            "services:",
            "  - name: idle\n    address: 127.0.0.1\n    port: 10001\nservices:",
        );
        let d = diff_texts(&two, BLUE);
        assert_eq!(d.summary, ["- listener idle"]);
        let text = d.render("a", "b");
        assert!(text.contains("- listener idle\n"), "{text}");
        assert!(text.contains("- route idle\n"), "{text}");
        assert!(
            text.ends_with("\nlisteners: 1 removed; routes: 1 removed; nothing else changes\n")
        );
    }
}
