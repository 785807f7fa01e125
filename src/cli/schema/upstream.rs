//! The schema of how Envoy reaches a color's backends (`dns`, `tls`, `host_rewrite`,
//! `path_prefix`, `credential`), beside the core in `schema.rs`.

use serde_json::{Value, json};

fn file(description: &str) -> Value {
    json!({
        "type": "string",
        "minLength": 1,
        "description": format!("{description} Read by switchyard (relative paths from the state file's directory), served to the proxies over SDS and read again every second, so replacing the file rotates it without a restart. Its content is never logged or shown.")
    })
}

/// The upstream keys of color `color`, by key.
pub fn color_keys(color: &str) -> Vec<(&'static str, Value)> {
    vec![
        (
            "dns",
            json!({
                "type": "string",
                "enum": ["strict", "logical"],
                "default": "strict",
                "description": format!("How Envoy resolves the {color} endpoints when they are DNS names: `strict` (STRICT_DNS: every address of every name is a backend, re-resolved every 5 s; for a pool behind one name) or `logical` (LOGICAL_DNS: exactly one endpoint, a new connection goes to the first address it resolves to; for a managed API behind a large DNS pool). Only with DNS names.")
            }),
        ),
        (
            "tls",
            json!({
                "type": "object",
                "additionalProperties": false,
                "description": format!("TLS from Envoy to the {color} backends (`tls: {{}}` for the defaults). The backend's certificate is checked against the server name and the CA."),
                "properties": {
                    "sni": {
                        "type": "string",
                        "description": "The server name sent (SNI) and required in the backend's certificate. Default: the endpoints' one DNS name; required for endpoints that are IP addresses."
                    },
                    "ca": file("A PEM file of the CA certificates that sign the backends' certificates. Default: the proxy's own system bundle (/etc/ssl/certs/ca-certificates.crt, read by Envoy)."),
                    "client_certificate": {
                        "type": "object",
                        "additionalProperties": false,
                        "required": ["cert", "key"],
                        "description": "The certificate Envoy presents to the backends (mutual TLS).",
                        "properties": {
                            "cert": file("The certificate chain (PEM)."),
                            "key": file("Its private key (PEM).")
                        }
                    }
                }
            }),
        ),
        (
            "host_rewrite",
            json!({
                "type": "string",
                "description": format!("The Host / :authority the {color} backends are sent instead of the client's, as a managed API needs (for example api.anthropic.com)."),
                "examples": ["us-central1-aiplatform.googleapis.com"]
            }),
        ),
        (
            "path_prefix",
            json!({
                "type": "string",
                "pattern": "^/[^?#%\\s]*$",
                "description": format!("Put before every request's path on its way to the {color} backends: `/v1/x` sends `/chat` as `/v1/x/chat`."),
                "examples": ["/v1/projects/my-project/locations/us-central1/endpoints/openapi"]
            }),
        ),
        (
            "credential",
            json!({
                "type": "object",
                "additionalProperties": false,
                "required": ["file"],
                "description": format!("A header Envoy adds to every request to the {color} backends (replacing the client's own), its value read from a file: an API key or a bearer token. It reaches Envoy over SDS and is never logged, rendered, diffed or shown."),
                "properties": {
                    "file": file("The file holding the value (one line; surrounding whitespace is trimmed)."),
                    "header": {
                        "type": "string",
                        "default": "authorization",
                        "description": "The header: x-api-key (Anthropic), x-goog-api-key (Gemini), authorization (a bearer token, with prefix \"Bearer \")."
                    },
                    "prefix": {
                        "type": "string",
                        "description": "Put before the file's value, for example \"Bearer \". Default none."
                    }
                }
            }),
        ),
    ]
}

/// A duration key's schema.
fn duration(description: &str, default: &str) -> Value {
    json!({
        "type": "string",
        "description": format!("{description} A duration such as 500ms or 2s. Default {default}."),
        "default": default
    })
}

fn count(description: &str, min: u32, max: u32, default: u32) -> Value {
    json!({
        "type": "integer",
        "minimum": min,
        "maximum": max,
        "default": default,
        "description": description
    })
}

/// Where color `color`'s backends are and how Envoy fails over between them, by key;
/// `endpoints` is the schema of an endpoint list.
pub fn failover_keys(color: &str, endpoints: &Value) -> Vec<(&'static str, Value)> {
    let place = |what: &str| json!({"type": "string", "description": format!("The {what} of these endpoints (Envoy's locality).")});
    vec![
        (
            "localities",
            json!({
                "type": "array",
                "minItems": 1,
                "description": format!("The {color} backends by where they are, instead of `endpoints`: each entry a region, zone and/or sub-zone with its endpoints and a priority. Envoy sends the color's requests to priority 0, and to priority 1 only as far as priority 0's backends are unhealthy (ejected by outlier detection or failing health checks), and so on: same zone first, or on-premises first and cloud second."),
                "items": {
                    "type": "object",
                    "description": "One locality: where its endpoints are, and their priority.",
                    "additionalProperties": false,
                    "required": ["endpoints"],
                    "properties": {
                        "region": place("region"),
                        "zone": place("zone"),
                        "sub_zone": place("sub-zone"),
                        "priority": count("0 takes the traffic first; priorities go from 0 up with no gap. Not given here but given elsewhere in the color: 0. Given nowhere in the color: each proxy ranks the localities from the locality in its node, its zone first, then its region, then the rest (a proxy without one sends to all alike).", 0, 9, 0),
                        "endpoints": endpoints.clone()
                    }
                }
            }),
        ),
        (
            "outlier_detection",
            json!({
                "type": "object",
                "additionalProperties": false,
                "description": format!("Envoy ejects a {color} backend that keeps failing (`outlier_detection: {{}}` for the defaults), so traffic moves to the others, or the next priority, without a control-plane round trip."),
                "properties": {
                    "consecutive_5xx": count("Errors in a row that eject a backend.", 1, 1000, 3),
                    "interval": duration("How often ejections are reviewed.", "1s"),
                    "base_ejection_time": duration("How long a first ejection lasts (longer each time).", "30s"),
                    "max_ejection_percent": count("At most this percent of the backends ejected at once.", 1, 100, 100)
                }
            }),
        ),
        (
            "health_check",
            json!({
                "type": "object",
                "additionalProperties": false,
                "description": format!("Envoy checks every {color} backend itself with an HTTP GET, those that take no traffic too, and sends traffic only to healthy ones."),
                "properties": {
                    "path": {"type": "string", "default": "/healthz", "description": "The path checked; a 200 passes."},
                    "interval": duration("Time between checks of one backend.", "1s"),
                    "timeout": duration("How long a check may take.", "1s"),
                    "unhealthy_threshold": count("Failed checks in a row that make a backend unhealthy.", 1, 100, 2),
                    "healthy_threshold": count("Passed checks in a row that make it healthy again.", 1, 100, 2)
                }
            }),
        ),
    ]
}
