//! The schema of the workflow keys (preview, shadow, gate, ramp, bake, attempt, database,
//! `schemas` and the top-level `databases`), beside the core in `schema.rs`.

use serde_json::{Map, Value, json};

const DURATION: &str =
    r"^\s*[0-9]+(\.[0-9]+)?\s*(ns|us|ms|s|m|h|d)(\s*[0-9]+\s*(ns|us|ms|s|m|h|d))*\s*$";

fn duration(description: &str, default: &str) -> Value {
    json!({
        "type": "string",
        "description": format!("{description} A duration such as 500ms, 2s, 5m or 1h. Default {default}."),
        "pattern": DURATION,
        "default": default
    })
}

/// The fields of an HTTP probe (shared by `gate` and `bake.probe`).
fn probe_properties(with_failures: bool) -> Map<String, Value> {
    let mut p = json!({
        "path": {
            "type": "string",
            "description": "The path of an HTTP/1.1 GET sent to every endpoint of the color. Default /healthz.",
            "pattern": r"^/\S*$",
            "default": "/healthz"
        },
        "status": {
            "type": "integer",
            "description": "The status an endpoint must answer to pass. Default 200.",
            "minimum": 100,
            "maximum": 599,
            "default": 200
        },
        "timeout": duration("How long a probe may take before it counts as failed (at least 10ms).", "1s"),
        "interval": duration("Time between probes of one endpoint (at least 100ms).", "1s"),
        "successes": {
            "type": "integer",
            "description": "Consecutive passing probes before an endpoint counts as healthy. Default 3.",
            "minimum": 1,
            "maximum": 100,
            "default": 3
        },
        "healthy_share": {
            "type": "integer",
            "description": "Percent of the color's endpoints that must be healthy. Default 100.",
            "minimum": 1,
            "maximum": 100,
            "default": 100
        }
    });
    let map = p.as_object_mut().expect("bug: a JSON object");
    if with_failures {
        map.insert(
            "failures".to_owned(),
            json!({
                "type": "integer",
                "description": "Consecutive failed probes before an endpoint counts as failing. When more than (100 - healthy_share)% of the endpoints fail, the bake rolls back. Default 3.",
                "minimum": 1,
                "maximum": 100,
                "default": 3
            }),
        );
    }
    map.clone()
}

/// The workflow keys of a service.
pub fn service_properties() -> Map<String, Value> {
    let mut gate = probe_properties(false);
    gate.insert(
        "deadline".to_owned(),
        duration(
            "How long a switch may wait for its gate; after it the switch is given up and the current color keeps the traffic (at least 1s).",
            "10m",
        ),
    );
    gate.insert(
        "max_shadow_error_ratio".to_owned(),
        json!({
            "type": "number",
            "description": "Also require the color's shadow traffic (mirrored live requests, with `shadow:`; from the load reports of the last minute) to fail at most this share, from 0 to 1. Optional.",
            "minimum": 0,
            "maximum": 1
        }),
    );
    gate.insert(
        "min_shadow_requests".to_owned(),
        json!({
            "type": "integer",
            "description": "With max_shadow_error_ratio: the gate waits until the color has answered at least this many shadow requests. Default 20.",
            "minimum": 1,
            "default": 20
        }),
    );
    let props = json!({
        "attempt": {
            "type": ["string", "number"],
            "description": "Any value. After switchyard rolled a switch back by itself, the file still names the new color; saving it with a new `attempt` value tries that switch again. Optional."
        },
        "database": {
            "type": "string",
            "description": "The name of an entry under `databases:` whose current schema version this service's colors must support (each color then lists `schemas`). switchyard never sends traffic to a color that does not list the current version. Optional.",
            "pattern": r"^[A-Za-z0-9._-]{1,100}$"
        },
        "preview": {
            "type": "object",
            "description": "Preview routing: a request with the header (default `x-switchyard-preview: blue|green`) reaches that color whatever the weights, and never falls back to the other color (no endpoints means 503). On by default.",
            "additionalProperties": false,
            "properties": {
                "enabled": {
                    "type": "boolean",
                    "description": "false turns preview routing off for this service. Default true.",
                    "default": true
                },
                "header": {
                    "type": "string",
                    "description": "The header that picks a color. Default x-switchyard-preview. Not a reserved header (host, connection, x-envoy-*...).",
                    "pattern": r"^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,256}$",
                    "default": "x-switchyard-preview"
                },
                "port": {
                    "type": "integer",
                    "description": "A preview listener on this port (on the address of the service's listener): every request to it reaches the idle color. Optional.",
                    "minimum": 1,
                    "maximum": 65535
                }
            }
        },
        "shadow": {
            "type": "object",
            "description": "Mirror a share of live requests to the idle color; its answers are discarded and the live answer is unaffected. Mirrored requests carry `x-switchyard-shadow: true` and a Host ending in `-shadow`. Unsafe for requests with side effects (writes, payments, messages sent): the idle color performs them too. Off by default.",
            "required": ["percent"],
            "additionalProperties": false,
            "properties": {
                "percent": {
                    "type": "integer",
                    "description": "Percent of live requests mirrored, 1-100.",
                    "minimum": 1,
                    "maximum": 100
                }
            }
        },
        "gate": {
            "type": "object",
            "description": "Probe the new color's endpoints before traffic moves to it. While the gate fails the proxies keep the current color; the switch proceeds by itself once it passes. Without a gate a switch is immediate.",
            "additionalProperties": false,
            "properties": gate
        },
        "ramp": {
            "type": "object",
            "description": "With `active`: a switch moves the traffic to the new color step by step instead of all at once. Each step gives the new color that percent (the old one the rest); the next step comes once the current one has been in force for `every`, every connected proxy has acknowledged it, and the bake (if any) has not tripped. A tripped bake rolls back to all of the old color at any step; setting `active` back aborts at once. Not with `weights` or `rollout`; the members of a release group declare the same ramp and step together.",
            "required": ["steps"],
            "additionalProperties": false,
            "properties": {
                "steps": {
                    "type": "array",
                    "description": "The new color's share at each step, in percent: strictly increasing, 1-100, the last 100. For example [10, 50, 100].",
                    "minItems": 1,
                    "maxItems": 100,
                    "items": {
                        "type": "integer",
                        "description": "A step's share of the traffic for the new color, 1-100.",
                        "minimum": 1,
                        "maximum": 100
                    }
                },
                "every": duration("How long each step is in force at least before the next (it also waits for every proxy to acknowledge it).", "30s"),
                "paused": {
                    "type": "boolean",
                    "description": "true holds the step in force (a switch saved paused goes to its first step and holds there); false goes on. Default false.",
                    "default": false
                }
            }
        },
        "bake": {
            "type": "object",
            "description": "Watch the new color after a switch, through Envoy's load reports (and optionally a probe): when its error ratio across the fleet exceeds max_error_ratio over at least min_requests requests within the window, switchyard switches traffic back by itself. Without it nothing is rolled back automatically.",
            "additionalProperties": false,
            "properties": {
                "window": duration("How long after a switch the new color is watched (at least 1s).", "5m"),
                "max_error_ratio": {
                    "type": "number",
                    "description": "Highest tolerated share of failed (5xx) requests, from 0 to 1 (0.05 is 5%). Default 0.05.",
                    "minimum": 0,
                    "maximum": 1,
                    "default": 0.05
                },
                "min_requests": {
                    "type": "integer",
                    "description": "No judgement on fewer requests than this. Default 20.",
                    "minimum": 1,
                    "default": 20
                },
                "probe": {
                    "type": "object",
                    "description": "Also probe the new color during the window (for services with little traffic): failing probes roll back too.",
                    "additionalProperties": false,
                    "properties": probe_properties(true)
                }
            }
        }
    });
    props.as_object().expect("bug: a JSON object").clone()
}

/// `schemas` of a color.
pub fn color_schemas(color: &str) -> Value {
    json!({
        "type": "array",
        "description": format!("The database schema versions the {color} color can run against (with `database:`). Numbers or words."),
        "minItems": 1,
        "uniqueItems": true,
        "items": {
            "type": ["string", "number"],
            "description": "A schema version, for example 42 or 2026_12_01_add_notes."
        }
    })
}

/// The top-level `databases`.
pub fn databases() -> Value {
    json!({
        "type": "array",
        "description": "Databases whose current schema version guards which color may take traffic. Each gives the version through a file or an HTTP URL that switchyard watches.",
        "items": {
            "type": "object",
            "description": "One database: a name services refer to, and where its current schema version is read (the trimmed content of a file, or of an HTTP GET).",
            "required": ["name"],
            "additionalProperties": false,
            "properties": {
                "name": {
                    "type": "string",
                    "description": "Referred to by a service's `database:`. Unique.",
                    "pattern": r"^[A-Za-z0-9._-]{1,100}$"
                },
                "file": {
                    "type": "string",
                    "description": "A file whose trimmed content is the current schema version (give `file` or `url`)."
                },
                "url": {
                    "type": "string",
                    "description": "An http:// URL whose trimmed body is the current schema version (give `file` or `url`).",
                    "pattern": "^http://"
                },
                "interval": duration("How often the source is read (at least 100ms).", "2s")
            }
        }
    })
}
