//! The workflow keys of a service (`preview`, `shadow`, `gate`, `bake`, `attempt`,
//! `database`) and the top-level `databases:`, from their raw YAML form to the model,
//! each problem at the value it concerns.

use std::collections::HashMap;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use serde::de::{self, Deserializer, Visitor};
use serde_saphyr::{Location, Spanned};

use super::problems::{Problems, check_name};
use crate::state::workflow::{
    Bake, DEFAULT_GATE_DEADLINE, DEFAULT_MIN_REQUESTS, DEFAULT_SCHEMA_INTERVAL, Database, Gate,
    Preview, Probe, Ratio, SchemaSource, Shadow, ShadowCondition, probe_defaults,
};

/// A YAML scalar read as text whatever its type (`attempt: 2`, `schemas: [41, "42a"]`),
/// so that numbers need no quotes.
#[derive(Debug, Clone)]
pub(super) struct Scalar(pub String);

impl<'de> Deserialize<'de> for Scalar {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Scalar, D::Error> {
        struct Text;
        impl Visitor<'_> for Text {
            type Value = Scalar;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string or a number")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Scalar, E> {
                Ok(Scalar(v.to_owned()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
        }
        d.deserialize_any(Text)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPreview {
    enabled: Option<Spanned<bool>>,
    header: Option<Spanned<String>>,
    port: Option<Spanned<i64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawShadow {
    percent: Spanned<i64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawGate {
    path: Option<Spanned<String>>,
    status: Option<Spanned<i64>>,
    timeout: Option<Spanned<Scalar>>,
    interval: Option<Spanned<Scalar>>,
    successes: Option<Spanned<i64>>,
    healthy_share: Option<Spanned<i64>>,
    deadline: Option<Spanned<Scalar>>,
    max_shadow_error_ratio: Option<Spanned<Scalar>>,
    min_shadow_requests: Option<Spanned<i64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawProbe {
    path: Option<Spanned<String>>,
    status: Option<Spanned<i64>>,
    timeout: Option<Spanned<Scalar>>,
    interval: Option<Spanned<Scalar>>,
    successes: Option<Spanned<i64>>,
    failures: Option<Spanned<i64>>,
    healthy_share: Option<Spanned<i64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawBake {
    window: Option<Spanned<Scalar>>,
    max_error_ratio: Option<Spanned<Scalar>>,
    min_requests: Option<Spanned<i64>>,
    probe: Option<Spanned<RawProbe>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDatabase {
    name: Spanned<String>,
    file: Option<Spanned<String>>,
    url: Option<Spanned<String>>,
    interval: Option<Spanned<Scalar>>,
}

/// Shortest probe or poll interval: a probe every few milliseconds would be a load test.
const MIN_INTERVAL: Duration = Duration::from_millis(100);
/// Longest duration any key takes (a day).
const MAX_DURATION: Duration = Duration::from_secs(86_400);
/// Longest `attempt` value, schema version, probe path or header name.
const MAX_TEXT: usize = 256;

pub(super) fn duration(
    problems: &mut Problems,
    key: &str,
    raw: Option<Spanned<Scalar>>,
    default: Duration,
    min: Duration,
) -> Duration {
    let Some(raw) = raw else { return default };
    let text = raw.value.0.trim();
    match humantime::parse_duration(text) {
        Ok(d) if d < min => {
            problems.at(
                raw.referenced,
                format!(
                    "{key} `{text}` is shorter than {}",
                    humantime::format_duration(min)
                ),
            );
            default
        }
        Ok(d) if d > MAX_DURATION => {
            problems.at(
                raw.referenced,
                format!("{key} `{text}` is longer than a day"),
            );
            default
        }
        Ok(d) => d,
        Err(_) => {
            problems.at(
                raw.referenced,
                format!("{key} `{text}` is not a duration (for example 500ms, 2s, 5m)"),
            );
            default
        }
    }
}

pub(super) fn int_in(
    problems: &mut Problems,
    key: &str,
    raw: Option<Spanned<i64>>,
    default: u32,
    range: std::ops::RangeInclusive<u32>,
) -> u32 {
    let Some(raw) = raw else { return default };
    match u32::try_from(raw.value) {
        Ok(v) if range.contains(&v) => v,
        _ => {
            problems.at(
                raw.referenced,
                format!(
                    "{key} {} is out of range {}-{}",
                    raw.value,
                    range.start(),
                    range.end()
                ),
            );
            default
        }
    }
}

pub(super) fn probe_path(problems: &mut Problems, raw: Option<Spanned<String>>) -> String {
    let Some(raw) = raw else {
        return probe_defaults::PATH.to_owned();
    };
    let p = &raw.value;
    if !p.starts_with('/')
        || p.len() > MAX_TEXT
        || p.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        problems.at(
            raw.referenced,
            format!(
                "probe path `{p}` must start with `/` and have no spaces (at most {MAX_TEXT} bytes)"
            ),
        );
        return probe_defaults::PATH.to_owned();
    }
    p.clone()
}

fn status(problems: &mut Problems, raw: Option<Spanned<i64>>) -> u16 {
    let status = int_in(
        problems,
        "status",
        raw,
        probe_defaults::STATUS.into(),
        100..=599,
    );
    u16::try_from(status).expect("bug: a status in 100-599 fits u16")
}

#[allow(clippy::too_many_arguments)]
fn probe(
    problems: &mut Problems,
    path: Option<Spanned<String>>,
    status_code: Option<Spanned<i64>>,
    timeout: Option<Spanned<Scalar>>,
    interval: Option<Spanned<Scalar>>,
    successes: Option<Spanned<i64>>,
    failures: Option<Spanned<i64>>,
    healthy_share: Option<Spanned<i64>>,
) -> Probe {
    Probe {
        path: probe_path(problems, path),
        status: status(problems, status_code),
        timeout: duration(
            problems,
            "timeout",
            timeout,
            probe_defaults::TIMEOUT,
            Duration::from_millis(10),
        ),
        interval: duration(
            problems,
            "interval",
            interval,
            probe_defaults::INTERVAL,
            MIN_INTERVAL,
        ),
        successes: int_in(
            problems,
            "successes",
            successes,
            probe_defaults::SUCCESSES,
            1..=100,
        ),
        failures: int_in(
            problems,
            "failures",
            failures,
            probe_defaults::FAILURES,
            1..=100,
        ),
        healthy_share: int_in(
            problems,
            "healthy_share",
            healthy_share,
            probe_defaults::HEALTHY_SHARE,
            1..=100,
        ),
    }
}

pub(super) fn gate(problems: &mut Problems, raw: Option<Spanned<RawGate>>) -> Option<Gate> {
    let g = raw?.value;
    let min_shadow_requests = g
        .min_shadow_requests
        .as_ref()
        .map(|raw| min_requests(problems, "min_shadow_requests", raw));
    let shadow = match (g.max_shadow_error_ratio, &g.min_shadow_requests) {
        (Some(raw), _) => Some(ShadowCondition {
            max_error_ratio: ratio(problems, "max_shadow_error_ratio", &raw),
            min_requests: min_shadow_requests.unwrap_or(DEFAULT_MIN_REQUESTS),
        }),
        (None, Some(raw)) => {
            problems.at(
                raw.referenced,
                "min_shadow_requests needs max_shadow_error_ratio",
            );
            None
        }
        (None, None) => None,
    };
    Some(Gate {
        shadow,
        probe: probe(
            problems,
            g.path,
            g.status,
            g.timeout,
            g.interval,
            g.successes,
            None,
            g.healthy_share,
        ),
        deadline: duration(
            problems,
            "deadline",
            g.deadline,
            DEFAULT_GATE_DEADLINE,
            Duration::from_secs(1),
        ),
    })
}

/// Default bake window when `bake:` gives none.
pub const DEFAULT_BAKE_WINDOW: Duration = Duration::from_secs(300);
/// Default highest error ratio when `bake:` gives none.
pub const DEFAULT_MAX_ERROR_RATIO: f64 = 0.05;

fn ratio(problems: &mut Problems, key: &str, raw: &Spanned<Scalar>) -> Ratio {
    match raw
        .value
        .0
        .trim()
        .parse::<f64>()
        .ok()
        .and_then(Ratio::from_f64)
    {
        Some(r) => r,
        None => {
            problems.at(
                raw.referenced,
                format!(
                    "{key} `{}` must be a number from 0 to 1 (0.05 is 5%)",
                    raw.value.0
                ),
            );
            Ratio::ONE
        }
    }
}

fn min_requests(problems: &mut Problems, key: &str, raw: &Spanned<i64>) -> u64 {
    match u64::try_from(raw.value) {
        Ok(n) if n >= 1 => n,
        _ => {
            problems.at(
                raw.referenced,
                format!("{key} {} must be at least 1", raw.value),
            );
            DEFAULT_MIN_REQUESTS
        }
    }
}

pub(super) fn bake(problems: &mut Problems, raw: Option<Spanned<RawBake>>) -> Option<Bake> {
    let b = raw?.value;
    let max_error_ratio = match b.max_error_ratio {
        None => Ratio::from_f64(DEFAULT_MAX_ERROR_RATIO).expect("bug: default ratio in 0..1"),
        Some(raw) => match raw
            .value
            .0
            .trim()
            .parse::<f64>()
            .ok()
            .and_then(Ratio::from_f64)
        {
            Some(r) => r,
            None => {
                problems.at(
                    raw.referenced,
                    format!(
                        "max_error_ratio `{}` must be a number from 0 to 1 (0.05 is 5%)",
                        raw.value.0
                    ),
                );
                Ratio::ONE
            }
        },
    };
    let min_requests = match b.min_requests {
        None => DEFAULT_MIN_REQUESTS,
        Some(raw) => match u64::try_from(raw.value) {
            Ok(n) if n >= 1 => n,
            _ => {
                problems.at(
                    raw.referenced,
                    format!("min_requests {} must be at least 1", raw.value),
                );
                DEFAULT_MIN_REQUESTS
            }
        },
    };
    let probe = b.probe.map(|p| {
        let p = p.value;
        probe(
            problems,
            p.path,
            p.status,
            p.timeout,
            p.interval,
            p.successes,
            p.failures,
            p.healthy_share,
        )
    });
    Some(Bake {
        window: duration(
            problems,
            "window",
            b.window,
            DEFAULT_BAKE_WINDOW,
            Duration::from_secs(1),
        ),
        max_error_ratio,
        min_requests,
        probe,
    })
}

pub(super) fn shadow(problems: &mut Problems, raw: Option<Spanned<RawShadow>>) -> Option<Shadow> {
    let s = raw?.value;
    let percent = int_in(problems, "percent", Some(s.percent), 0, 1..=100);
    (percent > 0).then_some(Shadow { percent })
}

/// Header names Envoy reserves or that mean something to every hop.
const RESERVED_HEADERS: &[&str] = &[
    "host",
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "upgrade",
    "te",
    "content-length",
];

pub(super) fn preview(
    problems: &mut Problems,
    raw: Option<Spanned<RawPreview>>,
) -> (Preview, Option<Location>) {
    let mut out = Preview::default();
    let Some(raw) = raw else { return (out, None) };
    let p = raw.value;
    if let Some(enabled) = p.enabled {
        out.enabled = enabled.value;
    }
    if let Some(header) = p.header {
        let h = header.value.to_ascii_lowercase();
        let token = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c);
        if h.is_empty() || h.len() > MAX_TEXT || !h.chars().all(token) {
            problems.at(
                header.referenced,
                format!(
                    "preview header `{}` is not an HTTP header name (letters, digits and -)",
                    header.value
                ),
            );
        } else if RESERVED_HEADERS.contains(&h.as_str()) || h.starts_with("x-envoy-") {
            problems.at(
                header.referenced,
                format!(
                    "preview header `{}` is reserved by HTTP or Envoy; pick another name",
                    header.value
                ),
            );
        } else {
            out.header = h;
        }
    }
    let mut port_at = None;
    if let Some(port) = p.port {
        match u16::try_from(port.value) {
            Ok(v) if v > 0 => {
                out.port = Some(v);
                port_at = Some(port.referenced);
            }
            _ => problems.at(
                port.referenced,
                format!("port {} is out of range 1-65535", port.value),
            ),
        }
    }
    (out, port_at)
}

pub(super) fn attempt(problems: &mut Problems, raw: Option<Spanned<Scalar>>) -> Option<String> {
    let raw = raw?;
    let text = raw.value.0.trim().to_owned();
    if text.is_empty() || text.len() > MAX_TEXT {
        problems.at(
            raw.referenced,
            format!("attempt must be a non-empty value of at most {MAX_TEXT} bytes"),
        );
        return None;
    }
    Some(text)
}

/// A color's `schemas:` list.
pub(super) fn schemas(
    problems: &mut Problems,
    raw: Option<Spanned<Vec<Spanned<Scalar>>>>,
) -> Vec<String> {
    let Some(raw) = raw else { return Vec::new() };
    let mut out: Vec<String> = Vec::new();
    for v in raw.value {
        let text = v.value.0.trim().to_owned();
        if text.is_empty() || text.len() > MAX_TEXT || text.contains(char::is_whitespace) {
            problems.at(
                v.referenced,
                format!(
                    "schema version `{}` must be one word of at most {MAX_TEXT} bytes",
                    v.value.0
                ),
            );
        } else if out.contains(&text) {
            problems.at(
                v.referenced,
                format!("schema version `{text}` is listed twice"),
            );
        } else {
            out.push(text);
        }
    }
    out
}

pub(super) fn databases(
    problems: &mut Problems,
    raw: Option<Spanned<Vec<Spanned<RawDatabase>>>>,
) -> (Vec<Database>, HashMap<String, Location>) {
    let mut out = Vec::new();
    let mut names: HashMap<String, Location> = HashMap::new();
    let Some(raw) = raw else { return (out, names) };
    for item in raw.value {
        let d = item.value;
        check_name(problems, "database", &d.name);
        if let Some(first) = names.get(&d.name.value) {
            problems.at(
                d.name.referenced,
                format!(
                    "duplicate database name `{}` (first defined at line {})",
                    d.name.value,
                    first.line()
                ),
            );
            continue;
        }
        names.insert(d.name.value.clone(), d.name.referenced);
        let source = match (d.file, d.url) {
            (Some(file), None) if !file.value.trim().is_empty() => {
                Some(SchemaSource::File(PathBuf::from(file.value.trim())))
            }
            (None, Some(url)) => match url.value.trim().parse::<hyper::Uri>() {
                Ok(uri) if uri.scheme_str() == Some("http") && uri.authority().is_some() => {
                    Some(SchemaSource::Url(url.value.trim().to_owned()))
                }
                _ => {
                    problems.at(
                        url.referenced,
                        format!(
                            "url `{}` must be an http:// URL (for example http://127.0.0.1:9000/schema)",
                            url.value
                        ),
                    );
                    None
                }
            },
            (Some(_), Some(url)) => {
                problems.at(url.referenced, "give either `file` or `url`, not both");
                None
            }
            _ => {
                problems.at(
                    item.referenced,
                    format!(
                        "database `{}` needs `file` (a file holding the current schema version) or `url`",
                        d.name.value
                    ),
                );
                None
            }
        };
        let interval = duration(
            problems,
            "interval",
            d.interval,
            DEFAULT_SCHEMA_INTERVAL,
            MIN_INTERVAL,
        );
        if let Some(source) = source {
            out.push(Database {
                name: d.name.value,
                source,
                interval,
            });
        }
    }
    (out, names)
}

#[cfg(test)]
mod tests {
    use super::super::parse_str;
    use super::super::tests::assert_only_problem;
    use crate::state::{Color, SchemaSource};
    use std::time::Duration;

    const GOOD: &str = include_str!("../../../tests/fixtures/one_service.yaml");

    /// GOOD with `extra` (indented as service keys) added to the service.
    fn with_service_keys(extra: &str) -> String {
        GOOD.replace("    active: blue\n", &format!("    active: blue\n{extra}"))
    }

    #[test]
    fn a_service_without_workflow_keys_gets_the_safe_defaults() {
        let s = parse_str(GOOD).unwrap();
        let svc = &s.services[0];
        assert!(svc.preview.enabled);
        assert_eq!(svc.preview.header, "x-switchyard-preview");
        assert_eq!(svc.preview.port, None);
        assert_eq!(svc.shadow, None);
        assert_eq!(svc.gate, None);
        assert_eq!(svc.bake, None);
        assert_eq!(svc.attempt, None);
        assert!(s.databases.is_empty());
    }

    #[test]
    fn every_workflow_key_parses() {
        let text = format!(
            "databases:\n  - name: records\n    file: /tmp/schema\n    interval: 500ms\n{}",
            with_service_keys(
                "    attempt: 2\n    database: records\n    preview:\n      header: X-Try\n      port: 10001\n    shadow:\n      percent: 10\n    gate:\n      path: /ready\n      successes: 2\n      deadline: 30s\n    bake:\n      window: 1m\n      max_error_ratio: 0.1\n      min_requests: 5\n      probe:\n        failures: 2\n"
            )
            .replace(
                "endpoints: [\"127.0.0.1:8081\"]",
                "endpoints: [\"127.0.0.1:8081\"]\n      schemas: [41, \"42\"]"
            )
            .replace(
                "endpoints: [\"127.0.0.1:8082\"]",
                "endpoints: [\"127.0.0.1:8082\"]\n      schemas: [42]"
            )
        );
        let s = parse_str(&text).unwrap();
        let svc = &s.services[0];
        assert_eq!(svc.attempt.as_deref(), Some("2"));
        assert_eq!(svc.preview.header, "x-try");
        assert_eq!(svc.preview.port, Some(10001));
        assert_eq!(svc.shadow.unwrap().percent, 10);
        let gate = svc.gate.as_ref().unwrap();
        assert_eq!(gate.probe.path, "/ready");
        assert_eq!(gate.probe.successes, 2);
        assert_eq!(gate.probe.status, 200);
        assert_eq!(gate.deadline, Duration::from_secs(30));
        let bake = svc.bake.as_ref().unwrap();
        assert_eq!(bake.window, Duration::from_secs(60));
        assert!((bake.max_error_ratio.as_f64() - 0.1).abs() < 1e-9);
        assert_eq!(bake.min_requests, 5);
        assert_eq!(bake.probe.as_ref().unwrap().failures, 2);
        assert_eq!(svc.color(Color::Blue).schemas, vec!["41", "42"]);
        assert_eq!(svc.color(Color::Green).schemas, vec!["42"]);
        assert_eq!(svc.database.as_deref(), Some("records"));
        assert_eq!(
            s.databases[0].source,
            SchemaSource::File("/tmp/schema".into())
        );
        assert_eq!(s.databases[0].interval, Duration::from_millis(500));
    }

    #[test]
    fn a_bad_duration_is_located() {
        assert_only_problem(
            &with_service_keys("    gate:\n      interval: soon\n"),
            15,
            17,
            "interval `soon` is not a duration (for example 500ms, 2s, 5m)",
        );
    }

    #[test]
    fn an_error_ratio_above_one_is_located() {
        assert_only_problem(
            &with_service_keys("    bake:\n      max_error_ratio: 5\n"),
            15,
            24,
            "max_error_ratio `5` must be a number from 0 to 1 (0.05 is 5%)",
        );
    }

    #[test]
    fn an_unknown_database_is_located() {
        assert_only_problem(
            &with_service_keys("    database: orders\n"),
            14,
            15,
            "unknown database `orders` (no `databases:` are defined)",
        );
    }

    #[test]
    fn schemas_without_a_database_are_refused() {
        let text = GOOD.replace(
            "endpoints: [\"127.0.0.1:8081\"]",
            "endpoints: [\"127.0.0.1:8081\"]\n      schemas: [\"1\"]",
        );
        assert_only_problem(
            &text,
            11,
            16,
            "blue lists `schemas:` but the service names no `database:`",
        );
    }

    #[test]
    fn a_preview_port_taken_by_a_listener_is_refused() {
        assert_only_problem(
            &with_service_keys("    preview:\n      port: 10000\n"),
            15,
            13,
            "listener `public` already uses 127.0.0.1 port 10000",
        );
    }

    #[test]
    fn a_reserved_preview_header_is_refused() {
        assert_only_problem(
            &with_service_keys("    preview:\n      header: Host\n"),
            15,
            15,
            "preview header `Host` is reserved by HTTP or Envoy; pick another name",
        );
    }

    #[test]
    fn a_gate_on_shadow_traffic_parses_and_min_alone_is_refused() {
        let s = parse_str(&with_service_keys(
            "    gate:\n      max_shadow_error_ratio: 0.02\n      min_shadow_requests: 50\n",
        ))
        .unwrap();
        let shadow = s.services[0]
            .gate
            .as_ref()
            .unwrap()
            .shadow
            .as_ref()
            .unwrap();
        assert_eq!(shadow.min_requests, 50);
        assert!((shadow.max_error_ratio.as_f64() - 0.02).abs() < 1e-9);
        assert_only_problem(
            &with_service_keys("    gate:\n      min_shadow_requests: 50\n"),
            15,
            28,
            "min_shadow_requests needs max_shadow_error_ratio",
        );
    }

    #[test]
    fn a_shadow_percent_of_zero_is_refused() {
        assert_only_problem(
            &with_service_keys("    shadow:\n      percent: 0\n"),
            15,
            16,
            "percent 0 is out of range 1-100",
        );
    }

    #[test]
    fn a_database_needs_exactly_one_source() {
        let text = format!(
            "databases:\n  - name: records\n    file: /a\n    url: http://127.0.0.1:1/v\n{GOOD}"
        );
        assert_only_problem(&text, 4, 10, "give either `file` or `url`, not both");
        let text = format!("databases:\n  - name: records\n    url: ftp://x/v\n{GOOD}");
        assert_only_problem(
            &text,
            3,
            10,
            "url `ftp://x/v` must be an http:// URL (for example http://127.0.0.1:9000/schema)",
        );
    }
}
