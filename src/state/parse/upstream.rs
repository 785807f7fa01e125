//! How Envoy reaches a color's backends, from the raw YAML to the model: `endpoints`
//! (addresses or DNS names), `dns`, `tls`, `host_rewrite`, `path_prefix` and `credential`,
//! each problem at the value it concerns.

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use serde::Deserialize;
use serde_saphyr::{Location, Spanned};

use super::problems::Problems;
use crate::state::limits::MAX_ENDPOINTS_PER_COLOR;
use crate::state::model::{
    ClientCertificate, Color, Credential, DnsDiscovery, Endpoint, FileRef, UpstreamTls,
};
use crate::state::yaml::clamp;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTls {
    sni: Option<Spanned<String>>,
    ca: Option<Spanned<String>>,
    client_certificate: Option<Spanned<RawClientCertificate>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawClientCertificate {
    cert: Spanned<String>,
    key: Spanned<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCredential {
    file: Spanned<String>,
    header: Option<Spanned<String>>,
    prefix: Option<Spanned<String>>,
}

/// Headers a credential may not be put in: pseudo-headers and what Envoy routes or frames
/// by.
const RESERVED_HEADERS: [&str; 6] = [
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "te",
    "upgrade",
];

/// A color's endpoints: every one valid, and all addresses or all names. `None` (with the
/// problems recorded) when any is not.
pub(super) fn endpoints(
    problems: &mut Problems,
    color: Color,
    raw: Spanned<Vec<Spanned<String>>>,
) -> Option<Vec<Endpoint>> {
    if raw.value.is_empty() {
        problems.at(
            raw.referenced,
            format!("{color} must list at least one endpoint"),
        );
        return None;
    }
    let mut out: Vec<Endpoint> = Vec::new();
    let mut seen: HashSet<Endpoint> = HashSet::new();
    let mut ok = true;
    for (i, e) in raw.value.into_iter().enumerate() {
        if i == MAX_ENDPOINTS_PER_COLOR {
            problems.at(
                e.referenced,
                format!(
                    "{color} lists more than {MAX_ENDPOINTS_PER_COLOR} endpoints \
                     (the limit is {MAX_ENDPOINTS_PER_COLOR})"
                ),
            );
            ok = false;
        }
        let endpoint = match parse_endpoint(&e.value) {
            Ok(endpoint) => endpoint,
            Err(why) => {
                problems.at(e.referenced, format!("endpoint `{}` {why}", e.value));
                ok = false;
                continue;
            }
        };
        if let Some(first) = out.first()
            && first.address().is_some() != endpoint.address().is_some()
        {
            problems.at(
                e.referenced,
                format!(
                    "endpoint `{}`: a color's endpoints are all addresses or all DNS names \
                     (`{first}` is the first)",
                    e.value
                ),
            );
            ok = false;
            continue;
        }
        if !seen.insert(endpoint.clone()) {
            problems.at(
                e.referenced,
                format!("endpoint `{}` is listed twice", e.value),
            );
            ok = false;
            continue;
        }
        out.push(endpoint);
    }
    ok.then_some(out)
}

impl std::str::FromStr for Endpoint {
    type Err = String;

    /// As a state file's endpoint is read and checked.
    fn from_str(text: &str) -> Result<Endpoint, String> {
        parse_endpoint(text)
    }
}

/// `IP:PORT`, `[IPv6]:PORT` or `NAME:PORT`; the error says what is wrong.
fn parse_endpoint(text: &str) -> Result<Endpoint, String> {
    const SHAPE: &str = "is not IP:PORT or NAME:PORT (for example 127.0.0.1:8081, [::1]:8081 or models.internal:443)";
    if let Ok(addr) = text.parse::<SocketAddr>() {
        if addr.port() == 0 {
            return Err("has port 0".to_owned());
        }
        return match endpoint_address_problem(addr) {
            Some(why) => Err(why),
            None => Ok(Endpoint::Address(addr)),
        };
    }
    let Some((host, port)) = text.rsplit_once(':') else {
        return Err(SHAPE.to_owned());
    };
    let Ok(port) = port.parse::<u16>() else {
        return Err(SHAPE.to_owned());
    };
    if port == 0 {
        return Err("has port 0".to_owned());
    }
    if host.parse::<IpAddr>().is_ok() || host.starts_with('[') {
        return Err(SHAPE.to_owned());
    }
    dns_name_problem(host).map_or_else(
        || {
            Ok(Endpoint::Name {
                host: host.to_ascii_lowercase(),
                port,
            })
        },
        Err,
    )
}

/// Why `name` is not a DNS host name (RFC 1123: dot-separated labels of letters, digits and
/// inner hyphens, 63 bytes each, 253 in all), if it is not.
pub(super) fn dns_name_problem(name: &str) -> Option<String> {
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    let trimmed = name.strip_suffix('.').unwrap_or(name);
    if trimmed.is_empty() || trimmed.len() > 253 || !trimmed.split('.').all(label_ok) {
        return Some(format!(
            "`{name}` is not a DNS name (letters, digits, `-` and `.`; for example \
             us-central1-aiplatform.googleapis.com)"
        ));
    }
    if trimmed.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return Some(format!("`{name}` is not a DNS name or an IP address"));
    }
    None
}

/// `dns:`, given endpoints that are names (`None` for addresses).
pub(super) fn dns(
    problems: &mut Problems,
    color: Color,
    raw: Option<Spanned<String>>,
    endpoints: Option<&[Endpoint]>,
) -> Option<DnsDiscovery> {
    let by_name = endpoints.is_some_and(|e| e.first().is_some_and(|e| e.address().is_none()));
    let Some(raw) = raw else {
        return by_name.then_some(DnsDiscovery::Strict);
    };
    let kind = match raw.value.as_str() {
        "strict" => DnsDiscovery::Strict,
        "logical" => DnsDiscovery::Logical,
        other => {
            problems.at(
                raw.referenced,
                format!("dns must be `strict` or `logical`, not `{other}`"),
            );
            return None;
        }
    };
    match endpoints {
        Some(_) if !by_name => problems.at(
            raw.referenced,
            format!("{color} has `dns:` but its endpoints are addresses, not DNS names"),
        ),
        Some(e) if kind == DnsDiscovery::Logical && e.len() > 1 => problems.at(
            raw.referenced,
            format!(
                "dns `logical` takes exactly one endpoint ({color} lists {}); use `strict` \
                 for several",
                e.len()
            ),
        ),
        _ => {}
    }
    by_name.then_some(kind)
}

/// `tls:`. Without `sni`, the server name is the endpoints' one DNS name; TLS to addresses
/// needs one said.
pub(super) fn tls(
    problems: &mut Problems,
    color: Color,
    raw: Option<Spanned<RawTls>>,
    endpoints: Option<&[Endpoint]>,
) -> Option<UpstreamTls> {
    let raw = raw?;
    let at = raw.referenced;
    let t = raw.value;
    let sni = match t.sni {
        Some(sni) => {
            let name = sni.value.trim().to_ascii_lowercase();
            if let Some(why) = dns_name_problem(&name) {
                problems.at(
                    sni.referenced,
                    format!("tls sni: {why}; the server name must be a DNS name"),
                );
                None
            } else {
                Some(name)
            }
        }
        None => default_sni(problems, color, at, endpoints?),
    };
    let ca = t.ca.map(|ca| file(problems, "tls ca", ca));
    let client_certificate = t.client_certificate.map(|c| {
        let cert = file(problems, "tls client_certificate cert", c.value.cert);
        let key = file(problems, "tls client_certificate key", c.value.key);
        cert.zip(key)
            .map(|(cert, key)| ClientCertificate { cert, key })
    });
    let (Some(sni), Some(ca), Some(client_certificate)) = (
        sni,
        ca.map_or(Some(None), |ca| ca.map(Some)),
        client_certificate.map_or(Some(None), |c| c.map(Some)),
    ) else {
        return None;
    };
    Some(UpstreamTls {
        sni,
        ca,
        client_certificate,
    })
}

fn default_sni(
    problems: &mut Problems,
    color: Color,
    at: Location,
    endpoints: &[Endpoint],
) -> Option<String> {
    let names: std::collections::BTreeSet<String> = endpoints
        .iter()
        .filter(|e| e.address().is_none())
        .map(Endpoint::host)
        .collect();
    match names.len() {
        1 => names.into_iter().next(),
        0 => {
            problems.at(
                at,
                format!(
                    "TLS to an IP address needs a server name: set `sni:` under {color}'s \
                     `tls:` to the name in the backends' certificate"
                ),
            );
            None
        }
        _ => {
            problems.at(
                at,
                format!(
                    "{color}'s endpoints name {} hosts: set `sni:` under `tls:` to the name \
                     in the backends' certificate",
                    names.len()
                ),
            );
            None
        }
    }
}

/// `credential:`: the header defaults to `authorization`.
pub(super) fn credential(
    problems: &mut Problems,
    raw: Option<Spanned<RawCredential>>,
) -> Option<Credential> {
    let c = raw?.value;
    let header = match c.header {
        None => Some("authorization".to_owned()),
        Some(h) => {
            let name = h.value.trim().to_ascii_lowercase();
            let token = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
            if name.is_empty() || !name.bytes().all(token) {
                problems.at(
                    h.referenced,
                    format!("credential header `{}` is not an HTTP header name", h.value),
                );
                None
            } else if RESERVED_HEADERS.contains(&name.as_str()) {
                problems.at(
                    h.referenced,
                    format!("credential header `{name}` is not one a credential can go in"),
                );
                None
            } else {
                Some(name)
            }
        }
    };
    let prefix = match c.prefix {
        None => Some(String::new()),
        Some(p) if p.value.bytes().all(|b| (0x20..0x7f).contains(&b)) => Some(p.value),
        Some(p) => {
            problems.at(
                p.referenced,
                "credential prefix must be printable ASCII (for example \"Bearer \")",
            );
            None
        }
    };
    let file = file(problems, "credential file", c.file);
    Some(Credential {
        header: header?,
        prefix: prefix?,
        file: file?,
    })
}

/// `host_rewrite:`: a host, with an optional port.
pub(super) fn host_rewrite(
    problems: &mut Problems,
    raw: Option<Spanned<String>>,
) -> Option<String> {
    let raw = raw?;
    let value = raw.value.trim();
    let host = match value.rsplit_once(':') {
        Some((host, port)) if port.parse::<u16>().is_ok() => host,
        _ => value,
    };
    let ok = host.parse::<Ipv4Addr>().is_ok()
        || host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .is_some_and(|h| h.parse::<std::net::Ipv6Addr>().is_ok())
        || dns_name_problem(host).is_none();
    if ok {
        Some(value.to_ascii_lowercase())
    } else {
        problems.at(
            raw.referenced,
            format!(
                "host_rewrite `{}` is not a host name (with an optional :PORT)",
                raw.value
            ),
        );
        None
    }
}

/// `path_prefix:`: `/` then path segments, kept without a trailing `/`.
pub(super) fn path_prefix(problems: &mut Problems, raw: Option<Spanned<String>>) -> Option<String> {
    let raw = raw?;
    let value = raw.value.trim();
    let bad = |b: u8| b.is_ascii_whitespace() || b.is_ascii_control() || b"?#%\\".contains(&b);
    if !value.starts_with('/') || value.bytes().any(bad) || value.contains("//") {
        problems.at(
            raw.referenced,
            format!(
                "path_prefix `{}` must be an absolute path without `?`, `#`, `%` or `//` \
                 (for example /v1/projects/p/locations/us-central1/endpoints/openapi)",
                raw.value
            ),
        );
        return None;
    }
    let trimmed = value.trim_end_matches('/');
    (!trimmed.is_empty())
        .then(|| trimmed.to_owned())
        .or_else(|| {
            problems.at(
                raw.referenced,
                "path_prefix `/` changes nothing; leave it out",
            );
            None
        })
}

fn file(problems: &mut Problems, what: &str, raw: Spanned<String>) -> Option<FileRef> {
    let path = raw.value.trim();
    if path.is_empty() {
        problems.at(raw.referenced, format!("{what} must name a file"));
        return None;
    }
    Some(FileRef {
        path: path.into(),
        at: (clamp(raw.referenced.line()), clamp(raw.referenced.column())),
    })
}

/// IPv4-mapped IPv6 addresses (`::ffff:127.0.0.1`) are refused rather than rewritten
/// to their IPv4 form. Envoy takes them literally: an endpoint opens an IPv6 socket that
/// fails on every request where the host does not map IPv4 into IPv6, and a listener
/// binds IPv6 only. Refusing says what to write instead, keeps the file saying what
/// Envoy gets, and so makes duplicates plain (`[::ffff:127.0.0.1]:8081` is never a
/// second spelling of `127.0.0.1:8081` that the duplicate check must see through).
pub(super) fn ipv4_mapped(ip: IpAddr) -> Option<Ipv4Addr> {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped(),
        IpAddr::V4(_) => None,
    }
}

/// IPv6 link-local (fe80::/10) addresses mean nothing without the interface they are on.
pub(super) fn is_ipv6_link_local(ip: IpAddr) -> bool {
    matches!(ip, IpAddr::V6(v6) if v6.is_unicast_link_local())
}

/// Why an endpoint cannot be `addr`, if it cannot.
fn endpoint_address_problem(addr: SocketAddr) -> Option<String> {
    if let Some(v4) = ipv4_mapped(addr.ip()) {
        return Some(format!(
            "is an IPv4-mapped IPv6 address; write {v4}:{}",
            addr.port()
        ));
    }
    // A link-local address means nothing without the interface it is on, and Envoy's
    // endpoint addresses have no place for that zone (switchyard would send `fe80::1` and
    // every request would fail), so none is accepted, zoned or not.
    is_ipv6_link_local(addr.ip()).then(|| {
        "is an IPv6 link-local address (fe80::/10), which Envoy cannot be told the \
         interface of; use a global or unique-local (fd00::/8) address"
            .to_owned()
    })
}

#[cfg(test)]
mod tests {
    use crate::state::parse::parse_str;
    use crate::state::{DnsDiscovery, Endpoint};

    const GOOD: &str = include_str!("../../../tests/fixtures/one_service.yaml");

    /// The fixture with blue's endpoints and extra keys replaced by `blue`.
    fn with_blue(blue: &str) -> String {
        GOOD.replace(
            "      endpoints: [\"127.0.0.1:8081\"]\n",
            &format!("{blue}\n"),
        )
    }

    /// The one problem of `blue`'s state, as `LINE:COLUMN: message`.
    fn problem(blue: &str) -> String {
        let problems = parse_str(&with_blue(blue)).unwrap_err();
        assert_eq!(problems.len(), 1, "{problems:?}");
        let p = &problems[0];
        format!("{}:{}: {}", p.line, p.column, p.message)
    }

    #[test]
    fn names_make_a_strict_dns_color_and_logical_takes_one_endpoint() {
        let s = parse_str(&with_blue(
            "      endpoints: [\"Models.Internal:8081\", \"models-2.internal:8081\"]",
        ))
        .unwrap();
        let blue = &s.services[0].blue;
        assert_eq!(blue.dns, Some(DnsDiscovery::Strict));
        assert_eq!(
            blue.endpoints[0],
            Endpoint::Name {
                host: "models.internal".into(),
                port: 8081
            }
        );
        assert_eq!(s.services[0].green.dns, None);
        assert_eq!(
            problem("      endpoints: [\"a.internal:1\", \"b.internal:1\"]\n      dns: logical"),
            "11:12: dns `logical` takes exactly one endpoint (blue lists 2); use `strict` for several"
        );
        assert_eq!(
            problem("      endpoints: [\"127.0.0.1:8081\"]\n      dns: strict"),
            "11:12: blue has `dns:` but its endpoints are addresses, not DNS names"
        );
    }

    #[test]
    fn addresses_and_names_do_not_mix_and_a_bad_name_says_why() {
        assert_eq!(
            problem("      endpoints: [\"127.0.0.1:8081\", \"models.internal:8081\"]"),
            "10:37: endpoint `models.internal:8081`: a color's endpoints are all addresses or \
             all DNS names (`127.0.0.1:8081` is the first)"
        );
        assert!(
            problem("      endpoints: [\"bad_name.internal:80\"]").contains("is not a DNS name")
        );
        assert!(problem("      endpoints: [\"300.1.1.1:80\"]").contains("not a DNS name or an IP"));
        assert!(problem("      endpoints: [\"models.internal\"]").contains("NAME:PORT"));
    }

    #[test]
    fn tls_to_an_address_needs_a_server_name_and_to_a_name_defaults_to_it() {
        assert_eq!(
            problem("      endpoints: [\"127.0.0.1:8443\"]\n      tls: {}"),
            "11:12: TLS to an IP address needs a server name: set `sni:` under blue's `tls:` \
             to the name in the backends' certificate"
        );
        let s = parse_str(&with_blue(
            "      endpoints: [\"api.example.com:443\"]\n      tls: {ca: ca.pem}",
        ))
        .unwrap();
        let tls = s.services[0].blue.tls.as_ref().unwrap();
        assert_eq!(tls.sni, "api.example.com");
        assert_eq!(
            tls.ca.as_ref().unwrap().path,
            std::path::Path::new("ca.pem")
        );
        assert_eq!(tls.ca.as_ref().unwrap().at, (11, 17));
        let s = parse_str(&with_blue(
            "      endpoints: [\"127.0.0.1:8443\"]\n      tls: {sni: backend.internal}",
        ))
        .unwrap();
        assert_eq!(
            s.services[0].blue.tls.as_ref().unwrap().sni,
            "backend.internal"
        );
    }

    #[test]
    fn a_credential_defaults_to_authorization_and_refuses_reserved_headers() {
        let s = parse_str(&with_blue(
            "      endpoints: [\"127.0.0.1:8081\"]\n      credential: {file: token, prefix: \"Bearer \"}",
        ))
        .unwrap();
        let c = s.services[0].blue.credential.as_ref().unwrap();
        assert_eq!(
            (c.header.as_str(), c.prefix.as_str()),
            ("authorization", "Bearer ")
        );
        assert_eq!(
            problem(
                "      endpoints: [\"127.0.0.1:8081\"]\n      credential: {file: k, header: Host}"
            ),
            "11:37: credential header `host` is not one a credential can go in"
        );
        assert!(
            problem("      endpoints: [\"127.0.0.1:8081\"]\n      credential: {file: \" \"}")
                .contains("credential file must name a file")
        );
    }

    #[test]
    fn rewrites_are_checked_and_kept_without_a_trailing_slash() {
        let s = parse_str(&with_blue(
            "      endpoints: [\"127.0.0.1:8081\"]\n      host_rewrite: API.example.com\n      path_prefix: /v1/x/",
        ))
        .unwrap();
        let blue = &s.services[0].blue;
        assert_eq!(blue.host_rewrite.as_deref(), Some("api.example.com"));
        assert_eq!(blue.path_prefix.as_deref(), Some("/v1/x"));
        assert!(
            problem("      endpoints: [\"127.0.0.1:8081\"]\n      path_prefix: v1?x")
                .contains("must be an absolute path")
        );
        assert!(
            problem("      endpoints: [\"127.0.0.1:8081\"]\n      host_rewrite: \"a b\"")
                .contains("is not a host name")
        );
    }

    #[test]
    fn shadow_with_rewrites_and_probes_of_tls_colors_are_refused() {
        let shadowed =
            with_blue("      endpoints: [\"127.0.0.1:8081\"]\n      host_rewrite: api.example.com")
                + "    shadow: {percent: 10}\n";
        let problems = parse_str(&shadowed).unwrap_err();
        assert!(
            problems[0].message.contains("`shadow:` cannot be used"),
            "{problems:?}"
        );
        let gated = with_blue("      endpoints: [\"api.example.com:443\"]\n      tls: {}")
            + "    gate: {path: /healthz}\n";
        let problems = parse_str(&gated).unwrap_err();
        assert!(
            problems[0].message.contains("probes reach plain IP:PORT"),
            "{problems:?}"
        );
    }
}
