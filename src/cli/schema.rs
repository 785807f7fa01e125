//! `switchyard schema`: a JSON Schema of the state file (schema v1), so that editors with
//! the YAML language server validate it, complete keys and show what each key means as
//! the operator types.
//!
//! It describes the shape that `src/state/parse.rs` accepts: required keys, no unknown
//! keys, types, the name alphabet, port range, `IP:PORT` endpoints, `blue`/`green`. Checks
//! across the file (a service naming an existing listener, unique names and domains, two
//! listeners on one port) are beyond a schema; `switchyard validate` makes them. So are
//! IPv4-mapped and link-local addresses, which the loose IPv6 pattern lets through:
//! the descriptions say so instead, and `validate` says what to write.
//! `tests/integration/cli_schema.rs` keeps the two in step.
//!
//! It declares draft 2020-12 but uses only keywords that mean the same in draft-07 (no
//! `$ref`, no `$defs`), which is what the YAML language server implements; a description
//! next to a `$ref` would be lost there, so the two colors are written out in full.
//!
//! Why hand-written: deriving it with `schemars` from the `Raw*` types in
//! `src/state/parse.rs` was weighed (schemars 1.2) and would not be as good for editors.
//! Those types wrap every field in serde-saphyr's `Spanned`, which has no `JsonSchema`
//! impl (nor can it get one here), so each field would need `#[schemars(with = ...)]`, and
//! the patterns, `uniqueItems`, `enum` of `active`, examples and defaults would become
//! `regex`/`extend` attributes on nearly every field: the same schema, moved into the
//! parser's types. `inline_subschemas` would avoid `$ref`/`$defs`, but blue and green share
//! one `RawColor`, so their descriptions could no longer name their color and cluster.
//! What a derive would buy, no drift between schema and parser, `tests/integration/cli_schema.rs`
//! already checks by giving both the same good and bad files.

use serde_json::{Value, json};

mod upstream;
mod workflow;

use crate::state::limits::{MAX_ENDPOINTS_PER_COLOR, MAX_LISTENERS, MAX_SERVICES};

/// The schema's `$id`: names this schema (and its version), not a place to download it.
pub const SCHEMA_ID: &str = "urn:switchyard:state:v1";

/// A resource name: becomes an Envoy resource name and stat prefix (see `check_name`).
const NAME: &str = r"^[A-Za-z0-9._-]{1,100}$";

/// 0-255 without leading zeros (Rust's `Ipv4Addr` rejects them).
const OCTET: &str = r"(?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])";

/// 1-65535.
const PORT: &str =
    r"(?:6553[0-5]|655[0-2][0-9]|65[0-4][0-9]{2}|6[0-4][0-9]{3}|[1-5][0-9]{4}|[1-9][0-9]{0,3})";

/// An IPv6 address, loosely: hex digits, dots and at least one colon. `validate` is exact.
const IPV6: &str = r"[0-9A-Fa-f.]*:[0-9A-Fa-f:.]*";

fn ipv4() -> String {
    format!(r"{OCTET}(?:\.{OCTET}){{3}}")
}

/// `address`: an IPv4 or IPv6 address.
fn address_pattern() -> String {
    format!("^(?:{}|{IPV6})$", ipv4())
}

/// A DNS name: dot-separated labels of letters, digits and inner hyphens.
const DNS_NAME: &str = r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)*[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.?";

/// An endpoint: `IPv4:PORT`, `[IPv6]:PORT` or `NAME:PORT`.
fn endpoint_pattern() -> String {
    format!(r"^(?:{}|\[{IPV6}\]|{DNS_NAME}):{PORT}$", ipv4())
}

/// The schema of one color's backends.
fn color(color: &str) -> Value {
    let mut v = json!({
        "type": "object",
        "description": format!(
            "The {color} environment of this service: its backends. It takes all the traffic when `active: {color}`, none otherwise."
        ),
        "oneOf": [{"required": ["endpoints"]}, {"required": ["localities"]}],
        "additionalProperties": false,
        "properties": {
            "endpoints": {
                "type": "array",
                "description": format!(
                    "The backends of the {color} environment, as IP:PORT (IPv6 in brackets: [::1]:8081) or as DNS NAME:PORT, all of one kind. At least one; no duplicates. Addresses become the endpoints (ClusterLoadAssignment, over EDS) of the Envoy cluster `<service>-{color}`; names make it a DNS cluster that Envoy resolves itself (see `dns`)."
                ),
                "minItems": 1,
                "maxItems": MAX_ENDPOINTS_PER_COLOR,
                "uniqueItems": true,
                "items": {
                    "type": "string",
                    "description": "A backend as IP:PORT, for example 10.0.0.12:8080 or [fd00::12]:8080, or as NAME:PORT, for example us-central1-aiplatform.googleapis.com:443. Not an IPv4-mapped IPv6 address ([::ffff:10.0.0.12]:8080: write 10.0.0.12:8080); not an IPv6 link-local address (fe80::/10: Envoy cannot be told its interface).",
                    "pattern": endpoint_pattern(),
                    "examples": ["127.0.0.1:8081", "[::1]:8081", "api.anthropic.com:443"]
                }
            }
        }
    });
    v["properties"]["schemas"] = workflow::color_schemas(color);
    for (key, schema) in upstream::color_keys(color) {
        v["properties"][key] = schema;
    }
    for (key, schema) in upstream::failover_keys(color, &v["properties"]["endpoints"]) {
        v["properties"][key] = schema;
    }
    v
}

/// The JSON Schema (draft 2020-12) of the state file.
pub fn schema() -> Value {
    let mut v = json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        "title": "switchyard desired state (schema v1)",
        "description": "The desired state that switchyard serves to Envoy: listeners, and per service a blue and a green environment of which one takes all the traffic. Generated by `switchyard schema`; `switchyard validate FILE` also checks what a schema cannot (references between entries, unique names and domains).",
        "type": "object",
        "required": ["listeners"],
        "additionalProperties": false,
        "properties": {
            "listeners": {
                "type": "array",
                "description": "Where Envoy accepts traffic. Each listener becomes an Envoy Listener and a RouteConfiguration of the same name.",
                "maxItems": MAX_LISTENERS,
                "items": {
                    "type": "object",
                    "description": "One Envoy listener (an address and port) with its routes.",
                    "required": ["name", "address", "port"],
                    "additionalProperties": false,
                    "properties": {
                        "name": {
                            "type": "string",
                            "description": "Names the Envoy Listener and its RouteConfiguration; services refer to it. Letters, digits, `-`, `_` and `.`, at most 100; unique among listeners.",
                            "pattern": NAME,
                            "examples": ["public"]
                        },
                        "address": {
                            "type": "string",
                            "description": "The IP address Envoy listens on, IPv4 or IPv6 (for example 127.0.0.1, 0.0.0.0 or ::1). Not a host name, not an IPv4-mapped IPv6 address (::ffff:127.0.0.1: write 127.0.0.1), not an IPv6 link-local address (fe80::/10).",
                            "pattern": address_pattern(),
                            "examples": ["0.0.0.0", "127.0.0.1", "::"]
                        },
                        "port": {
                            "type": "integer",
                            "description": "The port Envoy listens on, 1-65535. Two listeners cannot share an address and port.",
                            "minimum": 1,
                            "maximum": 65535,
                            "examples": [10000]
                        }
                    }
                }
            },
            "services": {
                "type": "array",
                "description": "The blue-green services. Each one is a virtual host on its listener whose default route sends 100% of the traffic to the active color (to the Envoy cluster `<name>-blue` or `<name>-green`), or splits it as `weights` says.",
                "maxItems": MAX_SERVICES,
                "items": {
                    "type": "object",
                    "description": "One service with two environments, blue and green, one of them active (or the traffic split between them with `weights`).",
                    "required": ["name", "listener", "blue", "green"],
                    "oneOf": [{"required": ["active"]}, {"required": ["weights"]}],
                    "additionalProperties": false,
                    "properties": {
                        "name": {
                            "type": "string",
                            "description": "Names the virtual host and the Envoy clusters `<name>-blue` and `<name>-green`. Letters, digits, `-`, `_` and `.`, at most 100; unique among services.",
                            "pattern": NAME,
                            "examples": ["summarizer"]
                        },
                        "listener": {
                            "type": "string",
                            "description": "The name of the listener (under `listeners`) whose routes carry this service.",
                            "pattern": NAME,
                            "examples": ["public"]
                        },
                        "domains": {
                            "type": ["array", "null"],
                            "description": "Host names this service answers (Envoy virtual host syntax: `*`, `*.example.com`, `api.example.com`). Optional; default [\"*\"] (any host). On one listener a domain belongs to one service.",
                            "minItems": 1,
                            "uniqueItems": true,
                            "default": ["*"],
                            "items": {
                                "type": "string",
                                "description": "A host name or wildcard, for example `*`, `*.example.com` or `api.example.com`. No spaces.",
                                "pattern": r"^\s*\S+\s*$"
                            }
                        },
                        "blue": color("blue"),
                        "green": color("green"),
                        "active": {
                            "type": "string",
                            "description": "The color that takes 100% of the traffic (the other gets 0%). Change it and save to switch (step by step with `ramp`); change it back to roll back. Give `active` or `weights`.",
                            "enum": ["blue", "green"]
                        },
                        "weights": {
                            "type": "object",
                            "description": "Instead of `active`: a static split of the traffic in percent, for example {blue: 90, green: 10}; both colors, adding up to 100. The color with the larger weight counts as active (blue on a tie): a gate, a bake and the schema guard act when it changes, as with `active`; a split that keeps the same color active is put in force as written, with no gate or bake. The idle color (the smaller) gets the preview listener and shadow traffic.",
                            "required": ["blue", "green"],
                            "additionalProperties": false,
                            "properties": {
                                "blue": {
                                    "type": "integer",
                                    "description": "Percent of the traffic to blue, 0-100.",
                                    "minimum": 0,
                                    "maximum": 100
                                },
                                "green": {
                                    "type": "integer",
                                    "description": "Percent of the traffic to green, 0-100.",
                                    "minimum": 0,
                                    "maximum": 100
                                }
                            }
                        }
                    }
                }
            },
            "databases": workflow::databases()
        }
    });
    let service = v["properties"]["services"]["items"]["properties"]
        .as_object_mut()
        .expect("bug: a JSON object");
    service.extend(workflow::service_properties());
    service.insert(
        "retries".to_owned(),
        json!({
            "type": "integer",
            "minimum": 1,
            "maximum": 5,
            "description": "How many times Envoy retries a request that failed (5xx, reset, refused, connect failure), each time on a backend not tried yet and, after two tries in one priority, on the next priority. The clusters get a retry budget (20 % of requests in flight, at least 10 retries at once per retry allowed) instead of Envoy's default of 3 concurrent retries. Default: no retries."
        }),
    );
    service.insert(
        "rollout".to_owned(),
        json!({
            "type": "object",
            "additionalProperties": false,
            "required": ["waves"],
            "description": "A switch reaches the proxies wave by wave: the first wave first, the next once every connected proxy of the waves so far acknowledged it and `soak` passed (with a `bake`, the bake watches until the last wave soaked). A tripped bake, or setting `active` back mid-rollout, goes back everywhere at once.",
            "properties": {
                "soak": {"type": "string", "description": "How long each wave runs before the next gets the switch. Default: 30s."},
                "waves": {
                    "type": "array",
                    "minItems": 2,
                    "maxItems": 10,
                    "description": "Selectors over the proxy's node, in order: a proxy is in the first wave it matches, else in the last. `{}` matches every proxy.",
                    "items": {
                        "type": "object",
                        "additionalProperties": false,
                        "description": "One wave: every key given must match the proxy's node.",
                        "properties": {
                            "cluster": {"type": "string", "description": "The node's cluster, exactly."},
                            "node": {"type": "string", "description": "A glob over the node id (`*`, `?`, `[a-z]`)."},
                            "region": {"type": "string", "description": "The node's locality region, exactly."},
                            "zone": {"type": "string", "description": "The node's locality zone, exactly."},
                            "sub_zone": {"type": "string", "description": "The node's locality sub-zone, exactly."},
                            "metadata": {"type": "object", "additionalProperties": {"type": ["string", "number"]}, "description": "String fields of the node's metadata, exactly."}
                        }
                    }
                }
            }
        }),
    );
    service.insert(
        "group".to_owned(),
        json!({
            "type": "string",
            "description": "A release group: services of one group switch in the same step (one route update per proxy) or not at all, move through their waves together (they must declare the same `rollout`), and roll back together when one member's bake trips."
        }),
    );
    v
}

/// The schema as `switchyard schema` prints it: pretty JSON and a final newline.
pub fn schema_text() -> String {
    let mut text = serde_json::to_string_pretty(&schema()).expect("bug: JSON values always print");
    text.push('\n');
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every property of every object in `v` has a description (hover docs in editors).
    fn assert_described(v: &Value, path: &str) {
        if let Some(props) = v.get("properties").and_then(Value::as_object) {
            for (name, p) in props {
                let here = format!("{path}.{name}");
                assert!(p.get("description").is_some(), "{here} has no description");
                assert_described(p, &here);
            }
        }
        if let Some(items) = v.get("items") {
            assert!(
                items.get("description").is_some(),
                "{path}[] has no description"
            );
            assert_described(items, &format!("{path}[]"));
        }
    }

    #[test]
    fn every_property_has_a_description() {
        assert_described(&schema(), "$");
    }

    #[test]
    fn no_keyword_that_draft_07_readers_would_misread() {
        let text = schema_text();
        for keyword in [
            "$ref",
            "$defs",
            "prefixItems",
            "unevaluated",
            "dependentRequired",
        ] {
            assert!(
                !text.contains(keyword),
                "{keyword} is not read the same by draft-07 tools"
            );
        }
    }
}
