//! YAML -> validated [`DesiredState`], collecting every problem with its line and column.
//!
//! Two stages: serde-saphyr deserializes into `Raw*` structs whose fields carry their
//! source location (`Spanned`); then `validate` checks meaning (references, uniqueness,
//! addresses) and reports each problem at the value it concerns. A syntax or shape error
//! stops at the first problem, since nothing after it can be trusted.

use std::collections::HashMap;
use std::net::IpAddr;

use serde::Deserialize;
use serde_saphyr::{Location, Spanned};

use super::limits::{MAX_LISTENERS, MAX_SERVICES};
use super::model::{Color, ColorSpec, DesiredState, Listener, Problem, Service};
use super::yaml;

mod fleet;
mod locality;
mod problems;
mod split;
mod upstream;
mod workflow;

use locality::{RawHealthCheck, RawLocality, RawOutlierDetection};
use problems::{Problems, check_name};
use upstream::{RawCredential, RawTls, ipv4_mapped, is_ipv6_link_local};

use workflow::{RawBake, RawDatabase, RawGate, RawPreview, RawShadow, Scalar};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawState {
    listeners: Spanned<Vec<Spanned<RawListener>>>,
    #[serde(default)]
    services: Vec<Spanned<RawService>>,
    databases: Option<Spanned<Vec<Spanned<RawDatabase>>>>,
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
    active: Option<Spanned<String>>,
    weights: Option<Spanned<split::RawWeights>>,
    ramp: Option<Spanned<split::RawRamp>>,
    attempt: Option<Spanned<Scalar>>,
    preview: Option<Spanned<RawPreview>>,
    shadow: Option<Spanned<RawShadow>>,
    gate: Option<Spanned<RawGate>>,
    bake: Option<Spanned<RawBake>>,
    database: Option<Spanned<String>>,
    retries: Option<Spanned<i64>>,
    rollout: Option<Spanned<fleet::RawRollout>>,
    group: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawColor {
    endpoints: Option<Spanned<Vec<Spanned<String>>>>,
    localities: Option<Spanned<Vec<Spanned<RawLocality>>>>,
    outlier_detection: Option<Spanned<RawOutlierDetection>>,
    health_check: Option<Spanned<RawHealthCheck>>,
    dns: Option<Spanned<String>>,
    tls: Option<Spanned<RawTls>>,
    host_rewrite: Option<Spanned<String>>,
    path_prefix: Option<Spanned<String>>,
    credential: Option<Spanned<RawCredential>>,
    schemas: Option<Spanned<Vec<Spanned<Scalar>>>>,
}

/// Parses and validates a state file's text. On failure returns every problem found,
/// in file order.
pub fn parse_str(text: &str) -> Result<DesiredState, Vec<Problem>> {
    yaml::check_size(text.len()).map_err(|p| vec![p])?;
    let raw: RawState = yaml::from_str(text).map_err(|p| vec![p])?;
    validate(raw)
}

/// Parses and validates a state file's bytes: at most
/// [`MAX_STATE_BYTES`](super::limits::MAX_STATE_BYTES), UTF-8, then
/// as [`parse_str`].
pub fn parse_bytes(bytes: &[u8]) -> Result<DesiredState, Vec<Problem>> {
    parse_str(yaml::utf8(bytes).map_err(|p| vec![p])?)
}

fn validate(raw: RawState) -> Result<DesiredState, Vec<Problem>> {
    let mut problems = Problems::default();
    let mut listeners = Vec::new();
    let mut listener_names: HashMap<String, Location> = HashMap::new();
    let mut listener_addrs: HashMap<(IpAddr, u16), String> = HashMap::new();

    for (i, item) in raw.listeners.value.into_iter().enumerate() {
        if i == MAX_LISTENERS {
            problems.at(
                item.referenced,
                format!("more than {MAX_LISTENERS} listeners (the limit is {MAX_LISTENERS})"),
            );
        }
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
            Ok(a) => match listener_address_problem(a) {
                None => Some(a),
                Some(why) => {
                    problems.at(l.address.referenced, format!("`{a}` {why}"));
                    None
                }
            },
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

    let (databases, database_names) = workflow::databases(&mut problems, raw.databases);
    // Preview listeners take ports too: (address, port) -> what has it.
    let mut ports_taken: HashMap<(IpAddr, u16), String> = listener_addrs
        .iter()
        .map(|(addr, name)| (*addr, format!("listener `{name}`")))
        .collect();
    let mut services = Vec::new();
    let mut service_locations = Vec::new();
    let mut service_names: HashMap<String, Location> = HashMap::new();
    // (listener, domain) -> service, because Envoy rejects a RouteConfiguration in which
    // two virtual hosts claim the same domain.
    let mut domains_taken: HashMap<(String, String), String> = HashMap::new();

    for (i, item) in raw.services.into_iter().enumerate() {
        if i == MAX_SERVICES {
            problems.at(
                item.referenced,
                format!("more than {MAX_SERVICES} services (the limit is {MAX_SERVICES})"),
            );
        }
        let service_at = item.referenced;
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
        let database = check_database(&mut problems, &s, &database_names);
        let blue = validate_color(&mut problems, Color::Blue, s.blue, database.is_some());
        let green = validate_color(&mut problems, Color::Green, s.green, database.is_some());
        let (preview, preview_port_at) = workflow::preview(&mut problems, s.preview);
        if let (Some(port), Some(at), Some(l)) = (
            preview.port,
            preview_port_at,
            listeners.iter().find(|l| l.name == s.listener.value),
        ) {
            let what = format!("the preview listener of service `{}`", s.name.value);
            let name = format!("{}-preview", s.name.value);
            if listener_names.contains_key(&name) {
                problems.at(
                    at,
                    format!(
                        "the preview listener would be named `{name}`, which a listener already is"
                    ),
                );
            }
            match ports_taken.get(&(l.address, port)) {
                Some(other) => problems.at(
                    at,
                    format!("{other} already uses {} port {port}", l.address),
                ),
                None => {
                    ports_taken.insert((l.address, port), what);
                }
            }
        }
        let attempt = workflow::attempt(&mut problems, s.attempt);
        let retries = locality::retries(&mut problems, s.retries);
        let shadow = workflow::shadow(&mut problems, s.shadow);
        let gate = workflow::gate(&mut problems, s.gate);
        let bake = workflow::bake(&mut problems, s.bake);
        let rollout = fleet::rollout(&mut problems, s.rollout);
        let group = fleet::group(&mut problems, s.group);
        let ramp_at = s.ramp.as_ref().map(|r| r.referenced);
        let ramp = split::ramp(&mut problems, s.ramp);
        split::check_ramp(
            &mut problems,
            ramp_at,
            s.weights.is_some(),
            rollout.is_some(),
        );
        if let (Some(w), Some(_)) = (&s.weights, &rollout) {
            problems.at(
                w.referenced,
                "`weights:` and `rollout:` cannot be combined: a rollout moves each wave of \
                 proxies from one color to the other; give `active`",
            );
        }
        let active = split::active_or_weights(&mut problems, service_at, s.active, s.weights);
        if let (Some(blue), Some(green), Some((active, weights))) = (blue, green, active) {
            check_color_features(
                &mut problems,
                service_at,
                [&blue, &green],
                shadow.is_some(),
                gate.is_some() || bake.as_ref().is_some_and(|b| b.probe.is_some()),
            );
            services.push(Service {
                name: s.name.value,
                listener: s.listener.value,
                domains,
                blue,
                green,
                active,
                weights,
                ramp,
                attempt,
                preview,
                shadow,
                gate,
                bake,
                database,
                retries,
                rollout,
                group,
            });
            service_locations.push(service_at);
        }
    }

    fleet::check_groups(&mut problems, &services, &service_locations);
    if problems.0.is_empty() {
        Ok(DesiredState {
            listeners,
            services,
            databases,
        })
    } else {
        problems.0.sort_by_key(|p| (p.line, p.column));
        Err(problems.0)
    }
}

/// What the workflow keys cannot do with the colors' upstream keys.
fn check_color_features(
    problems: &mut Problems,
    at: Location,
    colors: [&ColorSpec; 2],
    shadow: bool,
    probed: bool,
) {
    let rewrites = |c: &ColorSpec| c.host_rewrite.is_some() || c.path_prefix.is_some();
    if shadow && colors.iter().any(|c| rewrites(c)) {
        problems.at(
            at,
            "`shadow:` cannot be used with `host_rewrite` or `path_prefix`: Envoy sends the \
             mirrored copy with the live color's host and path, not the idle color's",
        );
    }
    if probed && colors.iter().any(|c| c.by_name() || c.tls.is_some()) {
        problems.at(
            at,
            "gate and bake probes reach plain IP:PORT endpoints only, and a color here uses \
             DNS names or TLS; judge it by the error ratio of Envoy's load reports instead \
             (`bake:` without `probe:`)",
        );
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

/// The service's `database:`, when it names a known one.
fn check_database(
    problems: &mut Problems,
    s: &RawService,
    known: &HashMap<String, Location>,
) -> Option<String> {
    let name = s.database.as_ref()?;
    if known.contains_key(&name.value) {
        return Some(name.value.clone());
    }
    let mut names: Vec<&str> = known.keys().map(String::as_str).collect();
    names.sort_unstable();
    let defined = if names.is_empty() {
        " (no `databases:` are defined)".to_owned()
    } else {
        format!(" (defined: {})", names.join(", "))
    };
    problems.at(
        name.referenced,
        format!("unknown database `{}`{defined}", name.value),
    );
    None
}

fn validate_color(
    problems: &mut Problems,
    color: Color,
    raw: Spanned<RawColor>,
    has_database: bool,
) -> Option<ColorSpec> {
    let at = raw.referenced;
    let c = raw.value;
    let schemas_at = c.schemas.as_ref().map(|s| s.referenced);
    let schemas = workflow::schemas(problems, c.schemas);
    match (has_database, schemas_at) {
        (true, None) => problems.at(
            at,
            format!(
                "{color} needs `schemas:` (the database schema versions it can run against) \
                 because the service names a database"
            ),
        ),
        (true, Some(at)) if schemas.is_empty() => {
            problems.at(at, format!("{color} must list at least one schema version"))
        }
        (false, Some(at)) => problems.at(
            at,
            format!("{color} lists `schemas:` but the service names no `database:`"),
        ),
        _ => {}
    }
    let given = (
        c.tls.is_some(),
        c.host_rewrite.is_some(),
        c.path_prefix.is_some(),
        c.credential.is_some(),
    );
    let (localities, endpoints) = match (c.endpoints, c.localities) {
        (Some(endpoints), None) => (Vec::new(), upstream::endpoints(problems, color, endpoints)),
        (None, Some(localities)) => match locality::localities(problems, color, localities) {
            Some((groups, all)) => (groups, Some(all)),
            None => (Vec::new(), None),
        },
        (Some(_), Some(l)) => {
            problems.at(
                l.referenced,
                format!("{color} lists `endpoints` and `localities`: give one (`localities` hold their own endpoints)"),
            );
            (Vec::new(), None)
        }
        (None, None) => {
            problems.at(
                at,
                format!("{color} needs `endpoints` (or `localities`, endpoints by where they are)"),
            );
            (Vec::new(), None)
        }
    };
    let outlier_detection = locality::outlier_detection(problems, c.outlier_detection);
    let health_check = locality::health_check(problems, c.health_check);
    let dns = upstream::dns(problems, color, c.dns, endpoints.as_deref());
    let tls = upstream::tls(problems, color, c.tls, endpoints.as_deref());
    let host_rewrite = upstream::host_rewrite(problems, c.host_rewrite);
    let path_prefix = upstream::path_prefix(problems, c.path_prefix);
    let credential = upstream::credential(problems, c.credential);
    // A key given but invalid has had its problem recorded: no color.
    let valid = (
        tls.is_some(),
        host_rewrite.is_some(),
        path_prefix.is_some(),
        credential.is_some(),
    );
    if valid != given {
        return None;
    }
    Some(ColorSpec {
        endpoints: endpoints?,
        dns,
        tls,
        host_rewrite,
        path_prefix,
        credential,
        localities,
        outlier_detection,
        health_check,
        schemas,
    })
}

/// Why a listener cannot use `address`, if it cannot.
fn listener_address_problem(address: IpAddr) -> Option<String> {
    if let Some(v4) = ipv4_mapped(address) {
        return Some(format!("is an IPv4-mapped IPv6 address; write {v4}"));
    }
    // A listener address has no place for a zone (`%2`), and Linux will not bind a
    // link-local address without one.
    is_ipv6_link_local(address).then(|| {
        "is an IPv6 link-local address, which needs an interface (zone) that a listener \
         address cannot carry; listen on :: or on a global address"
            .to_owned()
    })
}

#[cfg(test)]
pub(super) mod tests {
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

    /// `parse_str(text)` fails with exactly this one problem.
    pub(in crate::state) fn assert_only_problem(text: &str, line: u32, column: u32, message: &str) {
        let expected = Problem {
            line,
            column,
            message: message.to_owned(),
        };
        assert_eq!(parse_str(text).unwrap_err(), [expected]);
    }

    #[test]
    fn ipv4_mapped_endpoint_is_refused_with_its_ipv4_form() {
        // Also when the IPv4 form is listed too: one problem, not a second "duplicate".
        let text = GOOD.replace(
            "[\"127.0.0.1:8081\"]",
            "[\"127.0.0.1:8081\", \"[::ffff:127.0.0.1]:8081\"]",
        );
        assert_only_problem(
            &text,
            10,
            37,
            "endpoint `[::ffff:127.0.0.1]:8081` is an IPv4-mapped IPv6 address; \
             write 127.0.0.1:8081",
        );
    }

    #[test]
    fn ipv4_mapped_listener_address_is_refused_with_its_ipv4_form() {
        assert_only_problem(
            &GOOD.replace("address: 127.0.0.1", "address: \"::ffff:0.0.0.0\""),
            3,
            14,
            "`::ffff:0.0.0.0` is an IPv4-mapped IPv6 address; write 0.0.0.0",
        );
    }

    #[test]
    fn link_local_endpoints_are_refused_with_or_without_a_zone() {
        for (endpoint, column) in [("[fe80::1]:8081", 19), ("[fe80::1%2]:8081", 19)] {
            assert_only_problem(
                &GOOD.replace("127.0.0.1:8081", endpoint),
                10,
                column,
                &format!(
                    "endpoint `{}` is an IPv6 link-local address (fe80::/10), which Envoy \
                     cannot be told the interface of; use a global or unique-local (fd00::/8) \
                     address",
                    endpoint.parse::<std::net::SocketAddr>().unwrap()
                ),
            );
        }
    }

    #[test]
    fn link_local_listener_address_is_refused() {
        assert_only_problem(
            &GOOD.replace("address: 127.0.0.1", "address: \"fe80::1\""),
            3,
            14,
            "`fe80::1` is an IPv6 link-local address, which needs an interface (zone) that \
             a listener address cannot carry; listen on :: or on a global address",
        );
    }

    #[test]
    fn same_ipv6_endpoint_spelt_twice_is_a_duplicate() {
        assert_only_problem(
            &GOOD.replace(
                "\"127.0.0.1:8081\"",
                "\"[::1]:8081\", \"[0:0:0:0:0:0:0:1]:8081\"",
            ),
            10,
            33,
            "endpoint `[0:0:0:0:0:0:0:1]:8081` is listed twice",
        );
    }

    /// A file with `services` services, each with one endpoint per color.
    fn fleet(services: usize) -> String {
        let mut text =
            String::from("listeners:\n  - {name: l, address: 0.0.0.0, port: 80}\nservices:\n");
        for i in 0..services {
            text.push_str(&format!(
                "  - {{name: s{i}, listener: l, domains: [s{i}.example], \
                 blue: {{endpoints: [\"10.0.0.1:80\"]}}, green: {{endpoints: [\"10.0.0.2:80\"]}}, \
                 active: blue}}\n"
            ));
        }
        text
    }

    #[test]
    fn the_largest_allowed_fleet_parses_and_one_more_service_names_the_limit() {
        let at_limit = fleet(MAX_SERVICES);
        assert_eq!(parse_str(&at_limit).unwrap().services.len(), MAX_SERVICES);
        assert_only_problem(
            &fleet(MAX_SERVICES + 1),
            u32::try_from(MAX_SERVICES).unwrap() + 4,
            5,
            "more than 20000 services (the limit is 20000)",
        );
    }

    #[test]
    fn too_many_endpoints_in_a_color_names_the_limit() {
        use crate::state::limits::MAX_ENDPOINTS_PER_COLOR;
        let endpoints: Vec<String> = (0..=MAX_ENDPOINTS_PER_COLOR)
            .map(|i| format!("\"10.{}.{}.{}:80\"", i >> 16, (i >> 8) & 255, i & 255))
            .collect();
        let text = GOOD.replace("\"127.0.0.1:8082\"", &endpoints.join(", "));
        let problems = parse_str(&text).unwrap_err();
        assert_eq!(
            problems
                .iter()
                .map(|p| (p.line, p.message.as_str()))
                .collect::<Vec<_>>(),
            [(
                12,
                "green lists more than 10000 endpoints (the limit is 10000)"
            )]
        );
    }

    #[test]
    fn too_many_listeners_names_the_limit() {
        let mut text = String::from("listeners:\n");
        for i in 0..=MAX_LISTENERS {
            text.push_str(&format!(
                "  - {{name: l{i}, address: 0.0.0.0, port: {}}}\n",
                i + 1
            ));
        }
        assert_only_problem(
            &text,
            1002,
            5,
            "more than 1000 listeners (the limit is 1000)",
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
