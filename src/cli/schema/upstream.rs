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
