//! YAML -> validated [`DesiredState`], collecting every problem with its line and column.
//!
//! Two stages: serde-saphyr deserializes into `Raw*` structs whose fields carry their
//! source location (`Spanned`); then `validate` checks meaning (references, uniqueness,
//! addresses) and reports each problem at the value it concerns. A syntax or shape error
//! stops at the first problem, since nothing after it can be trusted.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};

use serde::Deserialize;
use serde_saphyr::{Location, Spanned};

use super::model::{Color, ColorSpec, DesiredState, Listener, Problem, Service};

/// Largest state file accepted, in bytes. A desired state for thousands of services fits
/// easily; anything bigger is almost certainly not a state file.
pub const MAX_STATE_BYTES: usize = 16 * 1024 * 1024;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawState {
    listeners: Spanned<Vec<Spanned<RawListener>>>,
    #[serde(default)]
    services: Vec<Spanned<RawService>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawListener {
    name: Spanned<String>,
    address: Spanned<String>,
    port: Spanned<i64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawService {
    name: Spanned<String>,
    listener: Spanned<String>,
    #[serde(default)]
    domains: Option<Spanned<Vec<Spanned<String>>>>,
    blue: Spanned<RawColor>,
    green: Spanned<RawColor>,
    active: Spanned<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawColor {
    endpoints: Spanned<Vec<Spanned<String>>>,
}

/// Parses and validates a state file's text. On failure returns every problem found,
/// in file order.
pub fn parse_str(text: &str) -> Result<DesiredState, Vec<Problem>> {
    if text.len() > MAX_STATE_BYTES {
        return Err(vec![Problem {
            line: 1,
            column: 1,
            message: format!(
                "file is {} bytes; the limit is {MAX_STATE_BYTES} bytes",
                text.len()
            ),
        }]);
    }
    let options = serde_saphyr::options! {
        with_snippet: false,
        // Aliases are allowed (handy for shared endpoint lists) but a "billion laughs"
        // document is stopped by the parser's budget long before it costs memory.
        budget: serde_saphyr::budget! { max_aliases: 10_000 },
    };
    let raw: RawState = serde_saphyr::from_str_with_options(text, options)
        .map_err(|e| vec![problem_from_yaml(&e)])?;
    validate(raw)
}

fn problem_from_yaml(e: &serde_saphyr::Error) -> Problem {
    let (line, column) = e
        .location()
        .filter(|l| l.line() > 0)
        .map_or((1, 1), |l| (clamp(l.line()), clamp(l.column())));
    Problem {
        line,
        column,
        message: tidy_yaml_message(&e.without_snippet().to_string()),
    }
}

/// serde-saphyr's messages end with " at line L, column C", which we print in front
/// instead, and some speak to Rust programmers; say the same to an operator.
fn tidy_yaml_message(message: &str) -> String {
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

fn clamp(n: u64) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// Collects problems while validation walks the raw state.
#[derive(Default)]
struct Problems(Vec<Problem>);

impl Problems {
    fn at(&mut self, location: Location, message: impl Into<String>) {
        self.0.push(Problem {
            line: clamp(location.line()),
            column: clamp(location.column()),
            message: message.into(),
        });
    }
}

fn validate(raw: RawState) -> Result<DesiredState, Vec<Problem>> {
    let mut problems = Problems::default();
    let mut listeners = Vec::new();
    let mut listener_names: HashMap<String, Location> = HashMap::new();
    let mut listener_addrs: HashMap<(IpAddr, u16), String> = HashMap::new();

    for item in raw.listeners.value {
        let l = item.value;
        check_name(&mut problems, "listener", &l.name);
        if let Some(first) = listener_names.get(&l.name.value) {
            problems.at(
                l.name.referenced,
                format!(
                    "duplicate listener name `{}` (first defined at line {})",
                    l.name.value,
                    first.line()
                ),
            );
        } else {
            listener_names.insert(l.name.value.clone(), l.name.referenced);
        }
        let address = match l.address.value.parse::<IpAddr>() {
            Ok(a) => Some(a),
            Err(_) => {
                problems.at(
                    l.address.referenced,
                    format!(
                        "`{}` is not an IP address (for example 127.0.0.1, 0.0.0.0 or ::1)",
                        l.address.value
                    ),
                );
                None
            }
        };
        let port = match u16::try_from(l.port.value) {
            Ok(p) if p > 0 => Some(p),
            _ => {
                problems.at(
                    l.port.referenced,
                    format!("port {} is out of range 1-65535", l.port.value),
                );
                None
            }
        };
        if let (Some(address), Some(port)) = (address, port) {
            if let Some(other) = listener_addrs.get(&(address, port)) {
                problems.at(
                    l.port.referenced,
                    format!("listener `{}` already uses {address} port {port}", other),
                );
            } else {
                listener_addrs.insert((address, port), l.name.value.clone());
            }
            listeners.push(Listener {
                name: l.name.value,
                address,
                port,
            });
        }
    }

    let mut services = Vec::new();
    let mut service_names: HashMap<String, Location> = HashMap::new();
    // (listener, domain) -> service, because Envoy rejects a RouteConfiguration in which
    // two virtual hosts claim the same domain.
    let mut domains_taken: HashMap<(String, String), String> = HashMap::new();

    for item in raw.services {
        let s = item.value;
        check_name(&mut problems, "service", &s.name);
        if let Some(first) = service_names.get(&s.name.value) {
            problems.at(
                s.name.referenced,
                format!(
                    "duplicate service name `{}` (first defined at line {})",
                    s.name.value,
                    first.line()
                ),
            );
        } else {
            service_names.insert(s.name.value.clone(), s.name.referenced);
        }
        if !listener_names.contains_key(&s.listener.value) {
            let known: Vec<&str> = listener_names.keys().map(String::as_str).collect();
            problems.at(
                s.listener.referenced,
                format!(
                    "unknown listener `{}`{}",
                    s.listener.value,
                    known_list(&known)
                ),
            );
        }
        let domains = validate_domains(&mut problems, &s, &mut domains_taken);
        let blue = validate_color(&mut problems, Color::Blue, s.blue);
        let green = validate_color(&mut problems, Color::Green, s.green);
        let active = match s.active.value.as_str() {
            "blue" => Some(Color::Blue),
            "green" => Some(Color::Green),
            other => {
                problems.at(
                    s.active.referenced,
                    format!("active must be `blue` or `green`, not `{other}`"),
                );
                None
            }
        };
        if let (Some(blue), Some(green), Some(active)) = (blue, green, active) {
            services.push(Service {
                name: s.name.value,
                listener: s.listener.value,
                domains,
                blue,
                green,
                active,
            });
        }
    }

    if problems.0.is_empty() {
        Ok(DesiredState {
            listeners,
            services,
        })
    } else {
        problems.0.sort_by_key(|p| (p.line, p.column));
        Err(problems.0)
    }
}

fn known_list(known: &[&str]) -> String {
    if known.is_empty() {
        " (no listeners are defined)".to_owned()
    } else {
        let mut known = known.to_vec();
        known.sort_unstable();
        format!(" (defined: {})", known.join(", "))
    }
}

/// Names become Envoy resource names and stat prefixes: keep them to a safe alphabet.
fn check_name(problems: &mut Problems, what: &str, name: &Spanned<String>) {
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

fn validate_domains(
    problems: &mut Problems,
    s: &RawService,
    taken: &mut HashMap<(String, String), String>,
) -> Vec<String> {
    let Some(domains) = &s.domains else {
        return claim_domain(problems, s, taken, "*", s.name.referenced);
    };
    if domains.value.is_empty() {
        problems.at(
            domains.referenced,
            "domains must list at least one domain (use [\"*\"] for any host)",
        );
        return Vec::new();
    }
    let mut out = Vec::new();
    for d in &domains.value {
        let domain = d.value.trim();
        if domain.is_empty() || domain.contains(char::is_whitespace) {
            problems.at(d.referenced, format!("`{}` is not a valid domain", d.value));
            continue;
        }
        out.extend(claim_domain(problems, s, taken, domain, d.referenced));
    }
    out
}

fn claim_domain(
    problems: &mut Problems,
    s: &RawService,
    taken: &mut HashMap<(String, String), String>,
    domain: &str,
    at: Location,
) -> Vec<String> {
    let key = (s.listener.value.clone(), domain.to_ascii_lowercase());
    match taken.get(&key) {
        Some(other) if *other != s.name.value => {
            problems.at(
                at,
                format!(
                    "domain `{domain}` is already routed to service `{other}` on listener `{}`",
                    s.listener.value
                ),
            );
            Vec::new()
        }
        Some(_) => {
            problems.at(at, format!("domain `{domain}` is listed twice"));
            Vec::new()
        }
        None => {
            taken.insert(key, s.name.value.clone());
            vec![domain.to_owned()]
        }
    }
}

fn validate_color(
    problems: &mut Problems,
    color: Color,
    raw: Spanned<RawColor>,
) -> Option<ColorSpec> {
    let endpoints = raw.value.endpoints;
    if endpoints.value.is_empty() {
        problems.at(
            endpoints.referenced,
            format!("{color} must list at least one endpoint"),
        );
        return None;
    }
    let mut out: Vec<SocketAddr> = Vec::new();
    let mut ok = true;
    for e in endpoints.value {
        match e.value.parse::<SocketAddr>() {
            Ok(addr) if addr.port() == 0 => {
                problems.at(e.referenced, format!("endpoint `{}` has port 0", e.value));
                ok = false;
            }
            Ok(addr) if out.contains(&addr) => {
                problems.at(
                    e.referenced,
                    format!("endpoint `{}` is listed twice", e.value),
                );
                ok = false;
            }
            Ok(addr) => out.push(addr),
            Err(_) => {
                problems.at(
                    e.referenced,
                    format!(
                        "endpoint `{}` is not IP:PORT (for example 127.0.0.1:8081 or [::1]:8081)",
                        e.value
                    ),
                );
                ok = false;
            }
        }
    }
    ok.then_some(ColorSpec { endpoints: out })
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = include_str!("../../tests/fixtures/one_service.yaml");

    /// Parses `text`, expecting exactly the problems `(line, column, message fragment)`.
    fn assert_problems(text: &str, expected: &[(u32, u32, &str)]) {
        let problems = parse_str(text).expect_err("the file should be rejected");
        let got: Vec<(u32, u32, String)> = problems
            .iter()
            .map(|p| (p.line, p.column, p.message.clone()))
            .collect();
        assert_eq!(got.len(), expected.len(), "problems: {got:#?}");
        for ((line, col, msg), (el, ec, frag)) in got.iter().zip(expected) {
            assert_eq!((line, col), (el, ec), "location of `{msg}`");
            assert!(msg.contains(frag), "`{msg}` should mention `{frag}`");
        }
    }

    #[test]
    fn good_file_parses() {
        let s = parse_str(GOOD).unwrap();
        assert_eq!(s.listeners[0].name, "public");
        assert_eq!(s.listeners[0].port, 10000);
        let svc = &s.services[0];
        assert_eq!(svc.active, Color::Blue);
        assert_eq!(svc.domains, vec!["*"]);
        assert_eq!(svc.green.endpoints, vec!["127.0.0.1:8082".parse().unwrap()]);
        assert_eq!(svc.weight(Color::Blue), 100);
        assert_eq!(svc.weight(Color::Green), 0);
    }

    #[test]
    fn domains_default_to_any_host() {
        let text = GOOD.replace("    domains: [\"*\"]\n", "");
        assert_eq!(parse_str(&text).unwrap().services[0].domains, vec!["*"]);
    }

    #[test]
    fn ipv6_endpoints_and_listener_parse() {
        let text = GOOD
            .replace("address: 127.0.0.1", "address: \"::1\"")
            .replace("127.0.0.1:8082", "[::1]:8082");
        let s = parse_str(&text).unwrap();
        assert_eq!(s.listeners[0].address, "::1".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn yaml_syntax_error_is_located() {
        assert_problems(
            &GOOD.replace("domains: [\"*\"]", "domains: [\"*\""),
            &[(9, 9, "illegal placement of ':'")],
        );
    }

    #[test]
    fn unknown_key_is_located() {
        assert_problems(
            &GOOD.replace("    active: blue", "    active: blue\n    colour: red"),
            &[(14, 5, "unknown field `colour`")],
        );
    }

    #[test]
    fn unknown_listener_is_located() {
        assert_problems(
            &GOOD.replace("listener: public", "listener: private"),
            &[(7, 15, "unknown listener `private` (defined: public)")],
        );
    }

    #[test]
    fn duplicate_names_are_located() {
        let text = format!(
            "{GOOD}{}",
            "  - name: summarizer
    listener: public
    domains: [\"other.example\"]
    blue: { endpoints: [\"127.0.0.1:9001\"] }
    green: { endpoints: [\"127.0.0.1:9002\"] }
    active: green
"
        );
        assert_problems(&text, &[(14, 11, "duplicate service name `summarizer`")]);
        let text = GOOD.replace(
            "services:",
            "  - name: public\n    address: 127.0.0.1\n    port: 10001\nservices:",
        );
        assert_problems(&text, &[(5, 11, "duplicate listener name `public`")]);
    }

    #[test]
    fn empty_endpoint_list_is_located() {
        assert_problems(
            &GOOD.replace("endpoints: [\"127.0.0.1:8082\"]", "endpoints: []"),
            &[(12, 18, "green must list at least one endpoint")],
        );
    }

    #[test]
    fn bad_address_and_port_are_located() {
        let text = GOOD
            .replace("address: 127.0.0.1", "address: localhost")
            .replace("port: 10000", "port: 70000")
            .replace("127.0.0.1:8081", "127.0.0.1");
        assert_problems(
            &text,
            &[
                (3, 14, "`localhost` is not an IP address"),
                (4, 11, "port 70000 is out of range"),
                (10, 19, "endpoint `127.0.0.1` is not IP:PORT"),
            ],
        );
    }

    #[test]
    fn non_integer_port_is_located() {
        assert_problems(
            &GOOD.replace("port: 10000", "port: ten"),
            &[(4, 11, "expected an integer")],
        );
    }

    #[test]
    fn active_other_than_blue_or_green_is_located() {
        assert_problems(
            &GOOD.replace("active: blue", "active: purple"),
            &[(13, 13, "active must be `blue` or `green`, not `purple`")],
        );
    }

    #[test]
    fn every_problem_is_reported_not_just_the_first() {
        let text = GOOD
            .replace("listener: public", "listener: nope")
            .replace("active: blue", "active: red")
            .replace("port: 10000", "port: 0");
        let problems = parse_str(&text).unwrap_err();
        assert_eq!(problems.len(), 3, "{problems:#?}");
        assert_eq!(
            problems.iter().map(|p| p.line).collect::<Vec<_>>(),
            vec![4, 7, 13]
        );
    }

    #[test]
    fn duplicate_domain_on_one_listener_is_rejected() {
        let text = format!(
            "{GOOD}{}",
            "  - name: other
    listener: public
    blue: { endpoints: [\"127.0.0.1:9001\"] }
    green: { endpoints: [\"127.0.0.1:9002\"] }
    active: green
"
        );
        // `other` has no domains, so it claims `*`, which summarizer already has.
        assert_problems(
            &text,
            &[(
                14,
                11,
                "domain `*` is already routed to service `summarizer`",
            )],
        );
    }

    #[test]
    fn duplicate_yaml_key_is_located() {
        assert_problems(
            &GOOD.replace("    active: blue", "    active: blue\n    active: green"),
            &[(14, 5, "duplicate key `active`")],
        );
    }

    #[test]
    fn empty_file_is_rejected() {
        assert_problems("", &[(1, 1, "empty")]);
    }

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
        // Twelve levels deep the parser's budget stops the expansion at 250,000 nodes. (The
        // message ends in "(used": `tidy_yaml_message` cuts serde-saphyr's trailing
        // "at line 18, column 41)" as if it were the usual location suffix.)
        assert_eq!(
            parse_str(&merged_green(12)).unwrap_err(),
            [Problem {
                line: 18,
                column: 41,
                message: "budget breached: Nodes { nodes: 250001 } (defined at line 13, \
                          column 27) (used"
                    .to_owned(),
            }]
        );
    }

    #[test]
    fn invalid_name_characters_are_rejected() {
        assert_problems(
            &GOOD.replace("name: summarizer", "name: \"summ arizer\""),
            &[(6, 11, "may use only letters")],
        );
    }
}
