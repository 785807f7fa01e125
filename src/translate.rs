//! Desired state -> Envoy resources. A pure function: no I/O, no clocks, same input, same
//! output (and the same versions) in every process.
//!
//! Per listener: a Listener whose HTTP connection manager loads its routes over ADS (RDS)
//! and a RouteConfiguration of the same name. Per service: a virtual host with its domains
//! whose default route splits traffic between `<service>-blue` and `<service>-green` by
//! weight: 100/0 by `active`, or as `weights` says (a static split, or a ramp's step in
//! the state in force). Per color: an EDS Cluster and its ClusterLoadAssignment; or, when the color's
//! endpoints are DNS names, a `STRICT_DNS` (or `LOGICAL_DNS`) Cluster that carries them and
//! that Envoy resolves itself (IPv4 preferred), with no ClusterLoadAssignment.
//!
//! How a color is reached, per color:
//! - `tls`: an `UpstreamTlsContext` sending the SNI and checking the backend's certificate
//!   against it (a DNS SAN) and against the CA: the proxy's system bundle
//!   ([`SYSTEM_CA_BUNDLE`], read by Envoy on its own host), or the state's `ca` file, served
//!   as a validation-context secret over SDS; a client certificate is a TLS-certificate
//!   secret;
//! - `credential`: a generic secret over SDS (`<cluster>-credential`), put in its header
//!   by Envoy's credential injector, run as an upstream filter of the cluster (so it
//!   reaches that color's backends only), overwriting whatever the client sent;
//! - `host_rewrite`: the `Host` / `:authority` set per weighted cluster;
//! - `path_prefix`: per-color routes instead of one weighted route: blue's route matches
//!   a runtime fraction of the requests equal to its weight (100 % when active, 0 when
//!   not, 90 % of a 90/10 split), green's the rest, each with its own prefix rewrite; one
//!   RouteConfiguration still switches both.
//!
//! The workflow keys add, per service:
//! - preview routes before the default one: the preview header (`x-switchyard-preview:
//!   blue|green` unless renamed) sends a request to that color's cluster alone, so a preview
//!   never falls back to the other color (a color without endpoints answers 503);
//! - with `preview.port`, a Listener and RouteConfiguration `<service>-preview` on that
//!   port whose every request goes to the idle color;
//! - with `shadow`, a request mirror policy on the default route: that percent of live
//!   requests is copied to the idle color, marked `x-switchyard-shadow: true` (Envoy also
//!   appends `-shadow` to the Host).
//!
//! The state given here is the one in force: its `active` is what the rollout decided
//! (`crate::rollout`), which may differ from the file's.

use envoy_types::pb::envoy::config::cluster::v3::{
    CircuitBreakers, Cluster, circuit_breakers, cluster,
};
use envoy_types::pb::envoy::config::common::mutation_rules::v3::{HeaderMutation, header_mutation};
use envoy_types::pb::envoy::config::core::v3::{
    Address, DataSource, HealthCheck, Locality, TransportSocket, TypedExtensionConfig, data_source,
    health_check, transport_socket,
};
use envoy_types::pb::envoy::config::core::v3::{
    AggregatedConfigSource, ApiVersion, ConfigSource, SocketAddress, address, config_source,
    socket_address,
};
use envoy_types::pb::envoy::config::core::v3::{
    HeaderValue, HeaderValueOption, RuntimeFractionalPercent, header_value_option,
};
use envoy_types::pb::envoy::config::endpoint::v3::{
    ClusterLoadAssignment, Endpoint, LbEndpoint, LocalityLbEndpoints, lb_endpoint,
};
use envoy_types::pb::envoy::config::listener::v3::{Filter, FilterChain, Listener, filter};
use envoy_types::pb::envoy::config::route::v3::{
    HeaderMatcher, Route, RouteAction, RouteConfiguration, RouteMatch, VirtualHost,
    WeightedCluster, header_matcher, route, route_action, route_match, weighted_cluster,
    weighted_cluster::ClusterWeight,
};
use envoy_types::pb::envoy::config::route::v3::{RetryPolicy, retry_policy as route_retry};
use envoy_types::pb::envoy::extensions::filters::http::credential_injector::v3::CredentialInjector;
use envoy_types::pb::envoy::extensions::filters::http::router::v3::Router;
use envoy_types::pb::envoy::extensions::filters::http::upstream_codec::v3::UpstreamCodec;
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
    HttpConnectionManager, HttpFilter, Rds, http_connection_manager, http_filter,
};
use envoy_types::pb::envoy::extensions::http::injected_credentials::generic::v3::Generic;
use envoy_types::pb::envoy::extensions::retry::host::previous_hosts::v3::PreviousHostsPredicate;
use envoy_types::pb::envoy::extensions::retry::priority::previous_priorities::v3::PreviousPrioritiesConfig;
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::{
    CertificateValidationContext, CommonTlsContext, GenericSecret, SdsSecretConfig, Secret,
    SubjectAltNameMatcher, TlsCertificate, UpstreamTlsContext, common_tls_context, secret,
    subject_alt_name_matcher,
};
use envoy_types::pb::envoy::extensions::upstreams::http::v3::{
    HttpProtocolOptions, http_protocol_options,
};
use envoy_types::pb::envoy::r#type::matcher::v3::{StringMatcher, string_matcher};
use envoy_types::pb::envoy::r#type::v3::Percent;
use envoy_types::pb::envoy::r#type::v3::{FractionalPercent, fractional_percent};
use envoy_types::pb::google::protobuf::{Any, Duration, UInt32Value};
use prost::Name;
use serde::Serialize;

use crate::hash::short_hash;
use crate::state::files::Files;
use crate::state::{Color, ColorSpec, DesiredState, DnsDiscovery, SYSTEM_CA_BUNDLE, Service};
use crate::xds::ResourceType;
use crate::xds::snapshot::{InconsistentSnapshot, Resource, Snapshot, TypeSnapshot};

/// Bumped whenever translation changes what it produces for the same input, so that
/// versions change with it.
const TRANSLATION: &str = "switchyard/translate/1";

/// The header that marks a mirrored (shadow) request.
pub const SHADOW_HEADER: &str = "x-switchyard-shadow";

/// The name of a service's preview Listener and RouteConfiguration.
pub fn preview_listener_name(service: &str) -> String {
    format!("{service}-preview")
}

/// Builds the consistency-checked snapshot for `state`, which names no file.
pub fn translate(state: &DesiredState) -> Result<Snapshot, InconsistentSnapshot> {
    translate_with(state, &Files::default())
}

/// Builds the consistency-checked snapshot for `state`, whose secrets are the content of
/// `files`. The snapshot's version is the state's, or, when the state names files, the
/// hash of the state's and of the secrets' versions: rotating a credential is a new
/// version, with the same state.
pub fn translate_with(
    state: &DesiredState,
    files: &Files,
) -> Result<Snapshot, InconsistentSnapshot> {
    // A secret is never sent empty: every file must have been read.
    let named = state.services.iter().flat_map(|s| [&s.blue, &s.green]);
    if let Some(unread) = named
        .flat_map(|c| c.files())
        .find(|f| files.get(f).is_none())
    {
        return Err(InconsistentSnapshot::UnreadFile(unread.path.clone()));
    }
    let mut clusters = Vec::new();
    let mut endpoints = Vec::new();
    let mut secrets = Vec::new();
    for service in &state.services {
        for color in Color::ALL {
            let color_secrets = color_secrets(service, color, files);
            clusters.push(cluster(service, color, &color_secrets));
            if !service.color(color).by_name() {
                endpoints.push(load_assignment(service, color));
            }
            secrets.extend(color_secrets);
        }
    }
    let mut listeners = Vec::new();
    let mut routes = Vec::new();
    for l in &state.listeners {
        listeners.push(listener(&l.name, l.address, l.port, l));
        routes.push(route_configuration(state, &l.name));
    }
    for service in &state.services {
        if let (true, Some(port), Some(l)) = (
            service.preview.enabled,
            service.preview.port,
            state.listener(&service.listener),
        ) {
            let name = preview_listener_name(&service.name);
            listeners.push(listener(&name, l.address, port, &(l, port)));
            routes.push(preview_route_configuration(service));
        }
    }
    let secrets = TypeSnapshot::new(secrets);
    let version = if secrets.resources.is_empty() {
        state.version()
    } else {
        short_hash(&(state.version(), &secrets.version))
    };
    let snapshot = Snapshot::new(
        version,
        [
            TypeSnapshot::new(clusters),
            TypeSnapshot::new(endpoints),
            secrets,
            TypeSnapshot::new(listeners),
            TypeSnapshot::new(routes),
        ],
    );
    snapshot.check_consistent()?;
    Ok(snapshot)
}

/// A resource whose version is the hash of `input`, the part of the desired state it is
/// built from.
fn resource<M: Name, I: Serialize>(
    name: String,
    input: &I,
    message: &M,
    clusters: Vec<String>,
) -> Resource {
    Resource {
        version: short_hash(&(TRANSLATION, &name, input)),
        body: Any {
            type_url: M::type_url(),
            value: message.encode_to_vec(),
        },
        name,
        clusters,
        needs: Vec::new(),
    }
}

fn ads() -> ConfigSource {
    ConfigSource {
        config_source_specifier: Some(config_source::ConfigSourceSpecifier::Ads(
            AggregatedConfigSource {},
        )),
        resource_api_version: ApiVersion::V3 as i32,
        ..Default::default()
    }
}

fn socket_address(ip: std::net::IpAddr, port: u16) -> Address {
    host_port(ip.to_string(), port)
}

/// An address or a DNS name (for DNS clusters) and a port.
fn host_port(host: String, port: u16) -> Address {
    Address {
        address: Some(address::Address::SocketAddress(SocketAddress {
            address: host,
            port_specifier: Some(socket_address::PortSpecifier::PortValue(port.into())),
            ..Default::default()
        })),
    }
}

/// What a cluster is built from besides its name, when it is more than an EDS cluster:
/// hashed for its version. A plain color hashes `()`, as it always did.
#[derive(Serialize)]
struct ClusterInput<'a> {
    /// The endpoints, when the cluster carries them (DNS).
    endpoints: Option<&'a [crate::state::Endpoint]>,
    /// Their localities, likewise.
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    localities: &'a [crate::state::LocalityGroup],
    dns: Option<DnsDiscovery>,
    tls: Option<&'a crate::state::UpstreamTls>,
    credential_header: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    outlier_detection: Option<&'a crate::state::OutlierDetection>,
    #[serde(skip_serializing_if = "Option::is_none")]
    health_check: Option<&'a crate::state::HealthCheck>,
    #[serde(skip_serializing_if = "Option::is_none")]
    retries: Option<u32>,
}

fn cluster(service: &Service, color: Color, secrets: &[Resource]) -> Resource {
    let name = service.cluster_name(color);
    let spec = service.color(color);
    let mut c = Cluster {
        name: name.clone(),
        connect_timeout: Some(Duration {
            seconds: 1,
            nanos: 0,
        }),
        ..Default::default()
    };
    let mut needs = Vec::new();
    match spec.dns {
        None => {
            c.cluster_discovery_type = Some(cluster::ClusterDiscoveryType::Type(
                cluster::DiscoveryType::Eds as i32,
            ));
            c.eds_cluster_config = Some(cluster::EdsClusterConfig {
                eds_config: Some(ads()),
                service_name: String::new(),
            });
            needs.push((ResourceType::Endpoint, name.clone()));
        }
        Some(dns) => {
            let kind = match dns {
                DnsDiscovery::Strict => cluster::DiscoveryType::StrictDns,
                DnsDiscovery::Logical => cluster::DiscoveryType::LogicalDns,
            };
            c.cluster_discovery_type = Some(cluster::ClusterDiscoveryType::Type(kind as i32));
            // Most backends listen on IPv4; a name with only IPv6 addresses still works.
            c.dns_lookup_family = cluster::DnsLookupFamily::V4Preferred as i32;
            c.load_assignment = Some(assignment(&name, spec));
        }
    }
    if let Some(tls) = &spec.tls {
        c.transport_socket = Some(upstream_tls(&name, tls));
    }
    c.outlier_detection = spec.outlier_detection.as_ref().map(outlier_detection);
    if let Some(retries) = service.retries {
        c.circuit_breakers = Some(retry_budget(retries));
    }
    c.health_checks = spec.health_check.iter().map(health_check).collect();
    if let Some(credential) = &spec.credential {
        c.typed_extension_protocol_options.insert(
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions".to_owned(),
            any(&injecting_protocol_options(
                &credential_secret_name(&name),
                &credential.header,
            )),
        );
    }
    needs.extend(
        secrets
            .iter()
            .map(|s| (ResourceType::Secret, s.name.clone())),
    );
    let plain = spec.dns.is_none()
        && spec.tls.is_none()
        && spec.credential.is_none()
        && spec.outlier_detection.is_none()
        && spec.health_check.is_none()
        && service.retries.is_none();
    let mut r = if plain {
        // A plain cluster depends only on its name: its endpoints come separately.
        resource(name, &(), &c, Vec::new())
    } else {
        let input = ClusterInput {
            endpoints: spec.by_name().then_some(spec.endpoints.as_slice()),
            localities: if spec.by_name() {
                spec.localities.as_slice()
            } else {
                &[]
            },
            dns: spec.dns,
            tls: spec.tls.as_ref(),
            credential_header: spec.credential.as_ref().map(|c| c.header.as_str()),
            outlier_detection: spec.outlier_detection.as_ref(),
            health_check: spec.health_check.as_ref(),
            retries: service.retries,
        };
        resource(name, &input, &c, Vec::new())
    };
    r.needs = needs;
    r
}

fn credential_secret_name(cluster: &str) -> String {
    format!("{cluster}-credential")
}

fn ca_secret_name(cluster: &str) -> String {
    format!("{cluster}-ca")
}

fn client_certificate_secret_name(cluster: &str) -> String {
    format!("{cluster}-client-certificate")
}

/// The SDS reference to secret `name`, served over ADS.
fn sds(name: &str) -> SdsSecretConfig {
    SdsSecretConfig {
        name: name.to_owned(),
        sds_config: Some(ads()),
    }
}

/// TLS to the backends: SNI, the certificate checked against the SNI (a DNS SAN) and the
/// CA, and the client certificate when there is one.
fn upstream_tls(cluster: &str, tls: &crate::state::UpstreamTls) -> TransportSocket {
    let san = SubjectAltNameMatcher {
        san_type: subject_alt_name_matcher::SanType::Dns as i32,
        matcher: Some(StringMatcher {
            match_pattern: Some(string_matcher::MatchPattern::Exact(tls.sni.clone())),
            ..Default::default()
        }),
        ..Default::default()
    };
    let validation = match &tls.ca {
        None => common_tls_context::ValidationContextType::ValidationContext(
            CertificateValidationContext {
                trusted_ca: Some(DataSource {
                    specifier: Some(data_source::Specifier::Filename(
                        SYSTEM_CA_BUNDLE.to_owned(),
                    )),
                    ..Default::default()
                }),
                match_typed_subject_alt_names: vec![san],
                ..Default::default()
            },
        ),
        Some(_) => common_tls_context::ValidationContextType::CombinedValidationContext(
            common_tls_context::CombinedCertificateValidationContext {
                default_validation_context: Some(CertificateValidationContext {
                    match_typed_subject_alt_names: vec![san],
                    ..Default::default()
                }),
                validation_context_sds_secret_config: Some(sds(&ca_secret_name(cluster))),
                ..Default::default()
            },
        ),
    };
    let context = UpstreamTlsContext {
        sni: tls.sni.clone(),
        common_tls_context: Some(CommonTlsContext {
            tls_certificate_sds_secret_configs: tls
                .client_certificate
                .iter()
                .map(|_| sds(&client_certificate_secret_name(cluster)))
                .collect(),
            validation_context_type: Some(validation),
            ..Default::default()
        }),
        ..Default::default()
    };
    TransportSocket {
        name: "envoy.transport_sockets.tls".to_owned(),
        config_type: Some(transport_socket::ConfigType::TypedConfig(any(&context))),
    }
}

/// HTTP/1.1 to the backends, through an upstream filter chain whose credential injector
/// puts secret `secret` in `header` (replacing the client's), then the upstream codec.
fn injecting_protocol_options(secret: &str, header: &str) -> HttpProtocolOptions {
    let injector = CredentialInjector {
        overwrite: true,
        credential: Some(TypedExtensionConfig {
            name: "envoy.http.injected_credentials.generic".to_owned(),
            typed_config: Some(any(&Generic {
                credential: Some(sds(secret)),
                header: header.to_owned(),
                ..Default::default()
            })),
        }),
        ..Default::default()
    };
    HttpProtocolOptions {
        upstream_protocol_options: Some(
            http_protocol_options::UpstreamProtocolOptions::ExplicitHttpConfig(
                http_protocol_options::ExplicitHttpConfig {
                    protocol_config: Some(
                        http_protocol_options::explicit_http_config::ProtocolConfig::HttpProtocolOptions(
                            Default::default(),
                        ),
                    ),
                },
            ),
        ),
        http_filters: vec![
            HttpFilter {
                name: "envoy.filters.http.credential_injector".to_owned(),
                config_type: Some(http_filter::ConfigType::TypedConfig(any(&injector))),
                ..Default::default()
            },
            HttpFilter {
                name: "envoy.filters.http.upstream_codec".to_owned(),
                config_type: Some(http_filter::ConfigType::TypedConfig(any(
                    &UpstreamCodec::default(),
                ))),
                ..Default::default()
            },
        ],
        ..Default::default()
    }
}

/// The secrets of `color`: its credential (with its prefix), CA and client certificate,
/// from `files` (every one read: [`translate_with`] checks). Each one's version is the hash
/// of its content's digest, never of the content.
fn color_secrets(service: &Service, color: Color, files: &Files) -> Vec<Resource> {
    let cluster = service.cluster_name(color);
    let spec = service.color(color);
    let content = |f: &crate::state::FileRef| {
        files
            .get(f)
            .map(|c| (c.bytes().to_vec(), c.digest().to_owned()))
            .unwrap_or_default()
    };
    let inline = |bytes: Vec<u8>| DataSource {
        specifier: Some(data_source::Specifier::InlineBytes(bytes)),
        ..Default::default()
    };
    let mut out = Vec::new();
    let mut push = |name: String, digests: Vec<String>, kind: secret::Type| {
        let body = Secret {
            name: name.clone(),
            r#type: Some(kind),
        };
        out.push(resource(name, &(SECRETS, &digests), &body, Vec::new()));
    };
    if let Some(c) = &spec.credential {
        let (bytes, digest) = content(&c.file);
        let mut value = c.prefix.clone().into_bytes();
        value.extend(bytes);
        push(
            credential_secret_name(&cluster),
            vec![c.prefix.clone(), digest],
            secret::Type::GenericSecret(GenericSecret {
                secret: Some(inline(value)),
                ..Default::default()
            }),
        );
    }
    if let Some(ca) = spec.tls.as_ref().and_then(|t| t.ca.as_ref()) {
        let (bytes, digest) = content(ca);
        push(
            ca_secret_name(&cluster),
            vec![digest],
            secret::Type::ValidationContext(CertificateValidationContext {
                trusted_ca: Some(inline(bytes)),
                ..Default::default()
            }),
        );
    }
    if let Some(cert) = spec
        .tls
        .as_ref()
        .and_then(|t| t.client_certificate.as_ref())
    {
        let (chain, chain_digest) = content(&cert.cert);
        let (key, key_digest) = content(&cert.key);
        push(
            client_certificate_secret_name(&cluster),
            vec![chain_digest, key_digest],
            secret::Type::TlsCertificate(TlsCertificate {
                certificate_chain: Some(inline(chain)),
                private_key: Some(inline(key)),
                ..Default::default()
            }),
        );
    }
    out
}

/// Domain separation for secrets' versions.
const SECRETS: &str = "switchyard/secret/1";

fn load_assignment(service: &Service, color: Color) -> Resource {
    let name = service.cluster_name(color);
    let spec = service.color(color);
    resource(name.clone(), spec, &assignment(&name, spec), Vec::new())
}

/// The endpoints of `spec` as a ClusterLoadAssignment for cluster `name` (sent over EDS,
/// or carried in a DNS cluster).
fn assignment(name: &str, spec: &ColorSpec) -> ClusterLoadAssignment {
    let lb_endpoints = |endpoints: &[crate::state::Endpoint]| -> Vec<LbEndpoint> {
        endpoints
            .iter()
            .map(|ep| LbEndpoint {
                host_identifier: Some(lb_endpoint::HostIdentifier::Endpoint(Endpoint {
                    address: Some(host_port(ep.host(), ep.port())),
                    ..Default::default()
                })),
                ..Default::default()
            })
            .collect()
    };
    let endpoints = if spec.localities.is_empty() {
        vec![LocalityLbEndpoints {
            lb_endpoints: lb_endpoints(&spec.endpoints),
            ..Default::default()
        }]
    } else {
        spec.localities
            .iter()
            .map(|g| LocalityLbEndpoints {
                locality: Some(Locality {
                    region: g.region.clone(),
                    zone: g.zone.clone(),
                    sub_zone: g.sub_zone.clone(),
                }),
                lb_endpoints: lb_endpoints(&g.endpoints),
                // Without priorities in the file, and before a proxy's locality ranks
                // them: one priority.
                priority: g.priority.unwrap_or(0),
                ..Default::default()
            })
            .collect()
    };
    ClusterLoadAssignment {
        cluster_name: name.to_owned(),
        endpoints,
        ..Default::default()
    }
}

/// Envoy's outlier detection for a color.
fn outlier_detection(
    o: &crate::state::OutlierDetection,
) -> envoy_types::pb::envoy::config::cluster::v3::OutlierDetection {
    envoy_types::pb::envoy::config::cluster::v3::OutlierDetection {
        consecutive_5xx: Some(UInt32Value {
            value: o.consecutive_5xx,
        }),
        interval: Some(duration(o.interval)),
        base_ejection_time: Some(duration(o.base_ejection_time)),
        max_ejection_percent: Some(UInt32Value {
            value: o.max_ejection_percent,
        }),
        ..Default::default()
    }
}

/// Envoy's active HTTP health check for a color. Every backend is checked every
/// `interval`, those that take no traffic too (Envoy's default checks them once a minute):
/// a standby priority must be known healthy before the traffic needs it.
fn health_check(h: &crate::state::HealthCheck) -> HealthCheck {
    HealthCheck {
        timeout: Some(duration(h.timeout)),
        interval: Some(duration(h.interval)),
        no_traffic_interval: Some(duration(h.interval)),
        unhealthy_threshold: Some(UInt32Value {
            value: h.unhealthy_threshold,
        }),
        healthy_threshold: Some(UInt32Value {
            value: h.healthy_threshold,
        }),
        health_checker: Some(health_check::HealthChecker::HttpHealthCheck(
            health_check::HttpHealthCheck {
                path: h.path.clone(),
                ..Default::default()
            },
        )),
        ..Default::default()
    }
}

fn duration(d: std::time::Duration) -> Duration {
    Duration {
        seconds: i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        nanos: i32::try_from(d.subsec_nanos()).unwrap_or(0),
    }
}

/// How many retries may be outstanding at once on a cluster of a service with `retries`:
/// Envoy's default is 3 (a circuit breaker), fewer than the requests that fail together
/// when a locality goes down under load; a budget of 20 % of the requests in flight, and at
/// least 10 retries at once times `retries`, lets every one of them be retried.
fn retry_budget(retries: u32) -> CircuitBreakers {
    CircuitBreakers {
        thresholds: vec![circuit_breakers::Thresholds {
            retry_budget: Some(circuit_breakers::thresholds::RetryBudget {
                budget_percent: Some(Percent { value: 20.0 }),
                min_retry_concurrency: Some(UInt32Value {
                    value: 10 * retries,
                }),
                ..Default::default()
            }),
            ..Default::default()
        }],
        ..Default::default()
    }
}

/// Up to `retries` retries of a request that failed (5xx, reset, refused, connect
/// failure), each on a host not tried yet and, once a priority has failed twice, on the next
/// priority.
fn retry_policy(retries: u32) -> RetryPolicy {
    RetryPolicy {
        retry_on: "5xx,reset,connect-failure,refused-stream".to_owned(),
        num_retries: Some(UInt32Value { value: retries }),
        retry_host_predicate: vec![route_retry::RetryHostPredicate {
            name: "envoy.retry_host_predicates.previous_hosts".to_owned(),
            config_type: Some(route_retry::retry_host_predicate::ConfigType::TypedConfig(
                any(&PreviousHostsPredicate::default()),
            )),
        }],
        host_selection_retry_max_attempts: 3,
        retry_priority: Some(route_retry::RetryPriority {
            name: "envoy.retry_priorities.previous_priorities".to_owned(),
            config_type: Some(route_retry::retry_priority::ConfigType::TypedConfig(any(
                &PreviousPrioritiesConfig {
                    update_frequency: 2,
                },
            ))),
        }),
        ..Default::default()
    }
}

/// A listener named `name` on `address:port` whose routes are the RouteConfiguration of the
/// same name; its version is the hash of `input`.
fn listener<I: Serialize>(name: &str, address: std::net::IpAddr, port: u16, input: &I) -> Resource {
    let hcm = HttpConnectionManager {
        stat_prefix: name.to_owned(),
        codec_type: http_connection_manager::CodecType::Auto as i32,
        route_specifier: Some(http_connection_manager::RouteSpecifier::Rds(Rds {
            config_source: Some(ads()),
            route_config_name: name.to_owned(),
        })),
        http_filters: vec![HttpFilter {
            name: "envoy.filters.http.router".to_owned(),
            config_type: Some(http_filter::ConfigType::TypedConfig(
                any(&Router::default()),
            )),
            ..Default::default()
        }],
        ..Default::default()
    };
    let listener = Listener {
        name: name.to_owned(),
        address: Some(socket_address(address, port)),
        filter_chains: vec![FilterChain {
            filters: vec![Filter {
                name: "envoy.filters.network.http_connection_manager".to_owned(),
                config_type: Some(filter::ConfigType::TypedConfig(any(&hcm))),
            }],
            ..Default::default()
        }],
        ..Default::default()
    };
    resource(name.to_owned(), input, &listener, Vec::new())
}

fn any<M: Name>(m: &M) -> Any {
    Any {
        type_url: M::type_url(),
        value: m.encode_to_vec(),
    }
}

/// What a virtual host is built from: hashed for the route configuration's version.
#[derive(Serialize)]
struct VirtualHostInput<'a> {
    service: &'a str,
    domains: &'a [String],
    weights: [(Color, u32); 2],
    /// The preview header, when previews are on.
    preview: Option<&'a str>,
    shadow: Option<u32>,
    /// Each color's host and path rewrites, when any is set.
    #[serde(skip_serializing_if = "Option::is_none")]
    rewrites: Option<[(Option<&'a str>, Option<&'a str>); 2]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    retries: Option<u32>,
}

/// How a route to one color's cluster rewrites the request for it.
fn rewrite(action: &mut RouteAction, spec: &ColorSpec) {
    if let Some(host) = &spec.host_rewrite {
        action.host_rewrite_specifier = Some(
            route_action::HostRewriteSpecifier::HostRewriteLiteral(host.clone()),
        );
    }
    if let Some(prefix) = &spec.path_prefix {
        // Routes match the prefix `/`, which this replaces.
        action.prefix_rewrite = format!("{prefix}/");
    }
}

/// A route matching every path (and `headers`) that sends everything to `cluster`, with
/// `spec`'s rewrites.
fn to_cluster(
    name: String,
    cluster: String,
    spec: &ColorSpec,
    headers: Vec<HeaderMatcher>,
) -> Route {
    let mut action = RouteAction {
        cluster_specifier: Some(route_action::ClusterSpecifier::Cluster(cluster)),
        ..Default::default()
    };
    rewrite(&mut action, spec);
    Route {
        name,
        r#match: Some(RouteMatch {
            path_specifier: Some(route_match::PathSpecifier::Prefix("/".to_owned())),
            headers,
            ..Default::default()
        }),
        action: Some(route::Action::Route(action)),
        ..Default::default()
    }
}

/// Matches requests whose header `name` is exactly `value`.
fn header_is(name: &str, value: &str) -> HeaderMatcher {
    HeaderMatcher {
        name: name.to_owned(),
        header_match_specifier: Some(header_matcher::HeaderMatchSpecifier::StringMatch(
            StringMatcher {
                match_pattern: Some(string_matcher::MatchPattern::Exact(value.to_owned())),
                ..Default::default()
            },
        )),
        ..Default::default()
    }
}

/// Copies `percent` of the requests to `cluster`, marked with [`SHADOW_HEADER`].
fn mirror(cluster: String, percent: u32) -> route_action::RequestMirrorPolicy {
    route_action::RequestMirrorPolicy {
        cluster,
        runtime_fraction: Some(RuntimeFractionalPercent {
            default_value: Some(FractionalPercent {
                numerator: percent,
                denominator: fractional_percent::DenominatorType::Hundred as i32,
            }),
            runtime_key: String::new(),
        }),
        request_headers_mutations: vec![HeaderMutation {
            action: Some(header_mutation::Action::Append(HeaderValueOption {
                header: Some(HeaderValue {
                    key: SHADOW_HEADER.to_owned(),
                    value: "true".to_owned(),
                    ..Default::default()
                }),
                append_action: header_value_option::HeaderAppendAction::OverwriteIfExistsOrAdd
                    as i32,
                ..Default::default()
            })),
        }],
        ..Default::default()
    }
}

/// The RouteConfiguration of a service's preview listener: everything to the idle color.
fn preview_route_configuration(service: &Service) -> Resource {
    let name = preview_listener_name(&service.name);
    let idle = service.cluster_name(service.active.other());
    let rc = RouteConfiguration {
        name: name.clone(),
        virtual_hosts: vec![VirtualHost {
            name: name.clone(),
            domains: vec!["*".to_owned()],
            routes: vec![to_cluster(
                "idle".to_owned(),
                idle.clone(),
                service.color(service.active.other()),
                Vec::new(),
            )],
            ..Default::default()
        }],
        ..Default::default()
    };
    resource(name, &idle, &rc, vec![idle.clone()])
}

fn route_configuration(state: &DesiredState, listener: &str) -> Resource {
    let mut inputs = Vec::new();
    let mut virtual_hosts = Vec::new();
    let mut clusters = Vec::new();
    for service in state.services_on(listener) {
        let weights = Color::ALL.map(|c| (c, service.weight(c)));
        let preview = service
            .preview
            .enabled
            .then_some(service.preview.header.as_str());
        let shadow = service.shadow.map(|s| s.percent);
        let rewrites = Color::ALL.map(|c| {
            let spec = service.color(c);
            (spec.host_rewrite.as_deref(), spec.path_prefix.as_deref())
        });
        inputs.push(VirtualHostInput {
            service: &service.name,
            domains: &service.domains,
            weights,
            preview,
            shadow,
            rewrites: rewrites
                .iter()
                .any(|(h, p)| h.is_some() || p.is_some())
                .then_some(rewrites),
            retries: service.retries,
        });
        let cluster_weights: Vec<ClusterWeight> = weights
            .iter()
            .map(|(color, weight)| ClusterWeight {
                name: service.cluster_name(*color),
                weight: Some(UInt32Value { value: *weight }),
                host_rewrite_specifier: service.color(*color).host_rewrite.clone().map(
                    weighted_cluster::cluster_weight::HostRewriteSpecifier::HostRewriteLiteral,
                ),
                ..Default::default()
            })
            .collect();
        clusters.extend(cluster_weights.iter().map(|w| w.name.clone()));
        let mut routes = Vec::new();
        if let Some(header) = preview {
            for color in Color::ALL {
                routes.push(to_cluster(
                    format!("preview-{color}"),
                    service.cluster_name(color),
                    service.color(color),
                    vec![header_is(header, color.as_str())],
                ));
            }
        }
        if rewrites.iter().any(|(_, prefix)| prefix.is_some()) {
            routes.extend(per_color_default_routes(service));
        } else {
            let request_mirror_policies = shadow
                .map(|percent| {
                    vec![mirror(
                        service.cluster_name(service.active.other()),
                        percent,
                    )]
                })
                .unwrap_or_default();
            routes.push(Route {
                name: "default".to_owned(),
                r#match: Some(RouteMatch {
                    path_specifier: Some(route_match::PathSpecifier::Prefix("/".to_owned())),
                    ..Default::default()
                }),
                action: Some(route::Action::Route(RouteAction {
                    cluster_specifier: Some(route_action::ClusterSpecifier::WeightedClusters(
                        WeightedCluster {
                            clusters: cluster_weights,
                            ..Default::default()
                        },
                    )),
                    request_mirror_policies,
                    ..Default::default()
                })),
                ..Default::default()
            });
        }
        if let Some(retries) = service.retries {
            for route in &mut routes {
                if let Some(route::Action::Route(action)) = &mut route.action {
                    action.retry_policy = Some(retry_policy(retries));
                }
            }
        }
        virtual_hosts.push(VirtualHost {
            name: service.name.clone(),
            domains: service.domains.clone(),
            routes,
            ..Default::default()
        });
    }
    let rc = RouteConfiguration {
        name: listener.to_owned(),
        virtual_hosts,
        ..Default::default()
    };
    resource(listener.to_owned(), &inputs, &rc, clusters)
}

/// A service whose colors rewrite paths differently cannot use one weighted route (a
/// weighted cluster has no path rewrite of its own): blue's route takes a share of the
/// requests equal to its weight (100 %, none, or its share of a split), green's takes the
/// rest, each rewriting for
/// its color. Both are in the one RouteConfiguration, so a switch is still one update.
/// (`shadow` is refused with path rewrites, by validation.)
fn per_color_default_routes(service: &Service) -> [Route; 2] {
    Color::ALL.map(|color| {
        let mut route = to_cluster(
            format!("default-{color}"),
            service.cluster_name(color),
            service.color(color),
            Vec::new(),
        );
        if color == Color::Blue {
            let m = route
                .r#match
                .as_mut()
                .expect("bug: to_cluster sets a match");
            m.runtime_fraction = Some(RuntimeFractionalPercent {
                default_value: Some(FractionalPercent {
                    numerator: service.weight(color),
                    denominator: fractional_percent::DenominatorType::Hundred as i32,
                }),
                runtime_key: String::new(),
            });
        }
        route
    })
}

/// Is `t`'s version in `b` different from `a`'s?
pub fn changed_types(a: &Snapshot, b: &Snapshot) -> Vec<ResourceType> {
    ResourceType::ALL
        .into_iter()
        .filter(|t| a.version(*t) != b.version(*t))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state;
    use prost::Message;
    use std::sync::Arc;

    const STATE: &str = "\
listeners:
  - name: public
    address: 127.0.0.1
    port: 10000
services:
  - name: summarizer
    listener: public
    domains: [\"*\"]
    blue:
      endpoints: [\"127.0.0.1:8081\", \"127.0.0.1:8083\"]
    green:
      endpoints: [\"127.0.0.1:8082\"]
    active: blue
";

    fn snapshot(text: &str) -> Snapshot {
        translate(&state::parse_str(text).unwrap()).unwrap()
    }

    fn decode<M: Message + Default>(s: &Snapshot, t: ResourceType, name: &str) -> M {
        let r = &s.get(t).resources[name];
        assert_eq!(r.body.type_url, t.type_url());
        M::decode(r.body.value.as_slice()).unwrap()
    }

    fn weights(rc: &RouteConfiguration) -> Vec<(String, u32)> {
        let default = rc.virtual_hosts[0].routes.last().unwrap();
        assert_eq!(default.name, "default");
        let Some(route::Action::Route(action)) = &default.action else {
            panic!("not a route action")
        };
        let Some(route_action::ClusterSpecifier::WeightedClusters(wc)) = &action.cluster_specifier
        else {
            panic!("not weighted clusters")
        };
        wc.clusters
            .iter()
            .map(|c| (c.name.clone(), c.weight.as_ref().unwrap().value))
            .collect()
    }

    #[test]
    fn each_color_gets_an_eds_cluster_and_its_endpoints() {
        let s = snapshot(STATE);
        let names: Vec<&String> = s.get(ResourceType::Cluster).resources.keys().collect();
        assert_eq!(names, ["summarizer-blue", "summarizer-green"]);
        let c: Cluster = decode(&s, ResourceType::Cluster, "summarizer-blue");
        assert_eq!(
            c.cluster_discovery_type,
            Some(cluster::ClusterDiscoveryType::Type(
                cluster::DiscoveryType::Eds as i32
            ))
        );
        let cla: ClusterLoadAssignment = decode(&s, ResourceType::Endpoint, "summarizer-blue");
        assert_eq!(cla.cluster_name, "summarizer-blue");
        assert_eq!(cla.endpoints[0].lb_endpoints.len(), 2);
    }

    #[test]
    fn active_color_gets_all_the_weight() {
        let s = snapshot(STATE);
        let rc: RouteConfiguration = decode(&s, ResourceType::Route, "public");
        assert_eq!(rc.virtual_hosts[0].domains, vec!["*"]);
        assert_eq!(
            weights(&rc),
            vec![
                ("summarizer-blue".to_owned(), 100),
                ("summarizer-green".to_owned(), 0)
            ]
        );
        let s = snapshot(&STATE.replace("active: blue", "active: green"));
        let rc: RouteConfiguration = decode(&s, ResourceType::Route, "public");
        assert_eq!(
            weights(&rc),
            vec![
                ("summarizer-blue".to_owned(), 0),
                ("summarizer-green".to_owned(), 100)
            ]
        );
    }

    #[test]
    fn listener_loads_routes_of_its_own_name_over_ads() {
        let s = snapshot(STATE);
        let l: Listener = decode(&s, ResourceType::Listener, "public");
        let Some(filter::ConfigType::TypedConfig(any)) = &l.filter_chains[0].filters[0].config_type
        else {
            panic!("no typed config")
        };
        let hcm = HttpConnectionManager::decode(any.value.as_slice()).unwrap();
        let Some(http_connection_manager::RouteSpecifier::Rds(rds)) = hcm.route_specifier else {
            panic!("not RDS")
        };
        assert_eq!(rds.route_config_name, "public");
    }

    #[test]
    fn a_switch_changes_only_the_route_version() {
        let blue = snapshot(STATE);
        let green = snapshot(&STATE.replace("active: blue", "active: green"));
        assert_eq!(changed_types(&blue, &green), vec![ResourceType::Route]);
        assert_ne!(blue.state_version, green.state_version);
    }

    #[test]
    fn an_endpoint_change_changes_only_the_endpoint_version() {
        let a = snapshot(STATE);
        let b = snapshot(&STATE.replace("127.0.0.1:8082", "127.0.0.1:9082"));
        assert_eq!(changed_types(&a, &b), vec![ResourceType::Endpoint]);
    }

    #[test]
    fn versions_do_not_depend_on_the_order_in_the_file() {
        let two = format!(
            "{STATE}{}",
            "  - name: other
    listener: public
    domains: [\"other.example\"]
    blue: { endpoints: [\"127.0.0.1:9001\"] }
    green: { endpoints: [\"127.0.0.1:9002\"] }
    active: green
"
        );
        let a = state::parse_str(&two).unwrap();
        let mut b = a.clone();
        b.services.reverse();
        let (sa, sb) = (translate(&a).unwrap(), translate(&b).unwrap());
        assert_eq!(sa.state_version, sb.state_version);
        for t in ResourceType::ALL {
            assert_eq!(sa.version(t), sb.version(t), "{t}");
        }
        // Same resources too: virtual hosts are sorted by service name.
        assert_eq!(sa, sb);
    }

    #[test]
    fn a_published_switch_keeps_every_unchanged_type_the_same_shared_set() {
        let blue = snapshot(STATE);
        let mut green = snapshot(&STATE.replace("active: blue", "active: green"));
        green.share_unchanged(&blue);
        for t in [
            ResourceType::Cluster,
            ResourceType::Endpoint,
            ResourceType::Listener,
        ] {
            assert!(
                Arc::ptr_eq(&green.get(t).resources, &blue.get(t).resources),
                "{t}"
            );
        }
        let routes = ResourceType::Route;
        assert_ne!(green.version(routes), blue.version(routes));
        assert!(!Arc::ptr_eq(
            &green.get(routes).resources,
            &blue.get(routes).resources
        ));
        // Moved endpoints: new resources under the same names, which stay one shared set.
        let mut moved = snapshot(&STATE.replace("8083", "8093"));
        moved.share_unchanged(&green);
        let endpoints = ResourceType::Endpoint;
        assert_ne!(moved.version(endpoints), green.version(endpoints));
        assert!(Arc::ptr_eq(
            &moved.get(endpoints).names,
            &green.get(endpoints).names
        ));
        assert_eq!(moved.get(endpoints).resources.len(), 2);
    }

    #[test]
    fn versions_are_fixed_for_a_given_file() {
        // Pinned so that a change to hashing (which would make every proxy of a fleet
        // re-download its config on upgrade) is a conscious decision. The routes' version
        // changed when preview routes (on by default) were added.
        let s = snapshot(STATE);
        assert_eq!(s.state_version, "02eb7b93e1379900");
        assert_eq!(
            ResourceType::ALL.map(|t| s.version(t)),
            [
                "6c0044076fe34aa4",
                "c4a41611b3ce42c9",
                "4f53cda18c2baa0c",
                "3d44cb86e9f1538b",
                "86cc65cdfc15c93e"
            ]
        );
    }

    #[test]
    fn routes_record_the_clusters_they_name() {
        let s = snapshot(STATE);
        let r = &s.get(ResourceType::Route).resources["public"];
        assert_eq!(r.clusters, ["summarizer-blue", "summarizer-green"]);
    }

    #[test]
    fn a_listener_without_services_has_an_empty_route_configuration() {
        let s = snapshot("listeners:\n  - name: idle\n    address: 127.0.0.1\n    port: 10001\n");
        let rc: RouteConfiguration = decode(&s, ResourceType::Route, "idle");
        assert!(rc.virtual_hosts.is_empty());
    }

    fn with_service_keys(extra: &str) -> String {
        STATE.replace("    active: blue\n", &format!("    active: blue\n{extra}"))
    }

    /// (route name, header matched, cluster) of the service's routes in order.
    fn routes_of(rc: &RouteConfiguration) -> Vec<(String, Option<String>, String)> {
        rc.virtual_hosts[0]
            .routes
            .iter()
            .map(|r| {
                let header = r.r#match.as_ref().unwrap().headers.first().map(|h| {
                    let Some(header_matcher::HeaderMatchSpecifier::StringMatch(m)) =
                        &h.header_match_specifier
                    else {
                        panic!("not a string match")
                    };
                    let Some(string_matcher::MatchPattern::Exact(v)) = &m.match_pattern else {
                        panic!("not exact")
                    };
                    format!("{}={v}", h.name)
                });
                let Some(route::Action::Route(a)) = &r.action else {
                    panic!("not a route")
                };
                let cluster = match &a.cluster_specifier {
                    Some(route_action::ClusterSpecifier::Cluster(c)) => c.clone(),
                    Some(route_action::ClusterSpecifier::WeightedClusters(_)) => "weighted".into(),
                    _ => panic!("no cluster"),
                };
                (r.name.clone(), header, cluster)
            })
            .collect()
    }

    #[test]
    fn preview_header_routes_come_before_the_weighted_default_and_name_one_cluster_each() {
        let s = snapshot(STATE);
        let rc: RouteConfiguration = decode(&s, ResourceType::Route, "public");
        assert_eq!(
            routes_of(&rc),
            [
                (
                    "preview-blue".into(),
                    Some("x-switchyard-preview=blue".into()),
                    "summarizer-blue".into()
                ),
                (
                    "preview-green".into(),
                    Some("x-switchyard-preview=green".into()),
                    "summarizer-green".into()
                ),
                ("default".into(), None, "weighted".into()),
            ]
        );
    }

    #[test]
    fn previews_switched_off_leave_only_the_default_route() {
        let s = snapshot(&with_service_keys("    preview:\n      enabled: false\n"));
        let rc: RouteConfiguration = decode(&s, ResourceType::Route, "public");
        assert_eq!(
            routes_of(&rc),
            [("default".into(), None, "weighted".into())]
        );
    }

    #[test]
    fn a_renamed_preview_header_is_matched_in_lowercase() {
        let s = snapshot(&with_service_keys(
            "    preview:\n      header: X-Try-Color\n",
        ));
        let rc: RouteConfiguration = decode(&s, ResourceType::Route, "public");
        assert_eq!(routes_of(&rc)[0].1.as_deref(), Some("x-try-color=blue"));
    }

    #[test]
    fn a_preview_port_gets_a_listener_whose_routes_reach_only_the_idle_color() {
        let s = snapshot(&with_service_keys("    preview:\n      port: 10001\n"));
        let l: Listener = decode(&s, ResourceType::Listener, "summarizer-preview");
        let Some(address::Address::SocketAddress(sa)) = l.address.unwrap().address else {
            panic!("not a socket address")
        };
        assert_eq!(sa.address, "127.0.0.1");
        assert_eq!(
            sa.port_specifier,
            Some(socket_address::PortSpecifier::PortValue(10001))
        );
        let rc: RouteConfiguration = decode(&s, ResourceType::Route, "summarizer-preview");
        assert_eq!(
            routes_of(&rc),
            [("idle".into(), None, "summarizer-green".into())]
        );
        // When green takes the traffic, the preview listener follows the idle color.
        let green = snapshot(
            &with_service_keys("    preview:\n      port: 10001\n")
                .replace("active: blue", "active: green"),
        );
        let rc: RouteConfiguration = decode(&green, ResourceType::Route, "summarizer-preview");
        assert_eq!(routes_of(&rc)[0].2, "summarizer-blue");
    }

    #[test]
    fn shadow_mirrors_a_share_of_live_requests_to_the_idle_color_marked() {
        let s = snapshot(&with_service_keys("    shadow:\n      percent: 25\n"));
        let rc: RouteConfiguration = decode(&s, ResourceType::Route, "public");
        let Some(route::Action::Route(a)) = &rc.virtual_hosts[0].routes.last().unwrap().action
        else {
            panic!("not a route")
        };
        assert_eq!(a.request_mirror_policies.len(), 1);
        let m = &a.request_mirror_policies[0];
        assert_eq!(m.cluster, "summarizer-green");
        let fraction = m.runtime_fraction.as_ref().unwrap().default_value.unwrap();
        assert_eq!(fraction.numerator, 25);
        assert_eq!(
            fraction.denominator,
            fractional_percent::DenominatorType::Hundred as i32
        );
        let Some(header_mutation::Action::Append(h)) = &m.request_headers_mutations[0].action
        else {
            panic!("not an append")
        };
        assert_eq!(h.header.as_ref().unwrap().key, SHADOW_HEADER);
        // No shadow, no mirror.
        let plain: RouteConfiguration = decode(&snapshot(STATE), ResourceType::Route, "public");
        let Some(route::Action::Route(a)) = &plain.virtual_hosts[0].routes.last().unwrap().action
        else {
            panic!("not a route")
        };
        assert!(a.request_mirror_policies.is_empty());
    }

    /// `STATE` with blue reached as `blue` says (its endpoints line replaced).
    fn with_blue(blue: &str) -> String {
        STATE.replace(
            "      endpoints: [\"127.0.0.1:8081\", \"127.0.0.1:8083\"]\n",
            &format!("{blue}\n"),
        )
    }

    #[test]
    fn a_color_of_names_is_a_dns_cluster_carrying_them_with_no_endpoints_over_eds() {
        let s = snapshot(&with_blue(
            "      endpoints: [\"models.internal:8081\"]\n      dns: logical",
        ));
        let c: Cluster = decode(&s, ResourceType::Cluster, "summarizer-blue");
        assert_eq!(
            c.cluster_discovery_type,
            Some(cluster::ClusterDiscoveryType::Type(
                cluster::DiscoveryType::LogicalDns as i32
            ))
        );
        assert_eq!(
            c.dns_lookup_family,
            cluster::DnsLookupFamily::V4Preferred as i32
        );
        let endpoints = &c.load_assignment.unwrap().endpoints[0].lb_endpoints;
        let Some(lb_endpoint::HostIdentifier::Endpoint(e)) = &endpoints[0].host_identifier else {
            panic!("no endpoint")
        };
        let Some(address::Address::SocketAddress(sa)) = &e.address.as_ref().unwrap().address else {
            panic!("not a socket address")
        };
        assert_eq!(sa.address, "models.internal");
        let eds = &s.get(ResourceType::Endpoint).resources;
        assert!(!eds.contains_key("summarizer-blue"));
        assert!(eds.contains_key("summarizer-green"));
        // What a route waits for: green's endpoints, nothing for blue.
        let needs = |name: &str| s.get(ResourceType::Cluster).resources[name].needs.clone();
        assert!(needs("summarizer-blue").is_empty());
        assert_eq!(
            needs("summarizer-green"),
            [(ResourceType::Endpoint, "summarizer-green".to_owned())]
        );
    }

    #[test]
    fn tls_checks_the_sni_against_the_ca_and_a_credential_is_an_sds_secret_injected_upstream() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("key"), "sk-123\n").unwrap();
        std::fs::write(dir.path().join("ca.pem"), "PEM").unwrap();
        let state = state::parse_str(&with_blue(
            "      endpoints: [\"api.example.com:443\"]\n      tls: {ca: ca.pem}\n      \
             credential: {file: key, header: authorization, prefix: \"Bearer \"}",
        ))
        .unwrap();
        let files = Files::read(&state, dir.path()).unwrap();
        let s = translate_with(&state, &files).unwrap();
        let c: Cluster = decode(&s, ResourceType::Cluster, "summarizer-blue");
        let Some(transport_socket::ConfigType::TypedConfig(any)) =
            c.transport_socket.unwrap().config_type
        else {
            panic!("no TLS")
        };
        let tls = UpstreamTlsContext::decode(any.value.as_slice()).unwrap();
        assert_eq!(tls.sni, "api.example.com");
        let Some(common_tls_context::ValidationContextType::CombinedValidationContext(v)) =
            tls.common_tls_context.unwrap().validation_context_type
        else {
            panic!("not a combined validation context")
        };
        assert_eq!(
            v.validation_context_sds_secret_config.unwrap().name,
            "summarizer-blue-ca"
        );
        let san = &v
            .default_validation_context
            .unwrap()
            .match_typed_subject_alt_names[0];
        assert_eq!(
            san.matcher.as_ref().unwrap().match_pattern,
            Some(string_matcher::MatchPattern::Exact(
                "api.example.com".into()
            ))
        );
        let options = &c.typed_extension_protocol_options["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"];
        let options = HttpProtocolOptions::decode(options.value.as_slice()).unwrap();
        let names: Vec<&str> = options
            .http_filters
            .iter()
            .map(|f| f.name.as_str())
            .collect();
        assert_eq!(
            names,
            [
                "envoy.filters.http.credential_injector",
                "envoy.filters.http.upstream_codec"
            ]
        );
        let secret: Secret = decode(&s, ResourceType::Secret, "summarizer-blue-credential");
        let Some(secret::Type::GenericSecret(g)) = secret.r#type else {
            panic!("not a generic secret")
        };
        assert_eq!(
            g.secret.unwrap().specifier,
            Some(data_source::Specifier::InlineBytes(
                b"Bearer sk-123".to_vec()
            ))
        );
        // Shown anywhere else, it is redacted.
        let shown =
            s.get(ResourceType::Secret).resources["summarizer-blue-credential"].shown_body();
        let shown = Secret::decode(shown.value.as_slice()).unwrap();
        let Some(secret::Type::GenericSecret(g)) = shown.r#type else {
            panic!("not a generic secret")
        };
        assert_eq!(
            g.secret.unwrap().specifier,
            Some(data_source::Specifier::InlineString("[redacted]".into()))
        );
        // A rotation changes the secret's version and the state's, nothing else.
        std::fs::write(dir.path().join("key"), "sk-456").unwrap();
        let rotated = translate_with(&state, &Files::read(&state, dir.path()).unwrap()).unwrap();
        assert_eq!(changed_types(&s, &rotated), [ResourceType::Secret]);
        assert_ne!(s.state_version, rotated.state_version);
    }

    #[test]
    fn localities_become_eds_localities_with_priorities_and_failover_settings_reach_envoy() {
        let text = with_blue(
            "      localities:\n        - {region: r1, zone: a, endpoints: [\"127.0.0.1:8081\"]}\n        - {region: r2, priority: 1, endpoints: [\"127.0.0.1:8083\"]}\n      outlier_detection: {consecutive_5xx: 2}\n      health_check: {interval: 500ms}",
        )
        .replace("    active: blue\n", "    active: blue\n    retries: 2\n");
        let s = snapshot(&text);
        let cla: ClusterLoadAssignment = decode(&s, ResourceType::Endpoint, "summarizer-blue");
        let places: Vec<(String, String, u32, usize)> = cla
            .endpoints
            .iter()
            .map(|l| {
                let at = l.locality.as_ref().unwrap();
                (
                    at.region.clone(),
                    at.zone.clone(),
                    l.priority,
                    l.lb_endpoints.len(),
                )
            })
            .collect();
        assert_eq!(
            places,
            [
                ("r1".into(), "a".into(), 0, 1),
                ("r2".into(), String::new(), 1, 1)
            ]
        );
        let c: Cluster = decode(&s, ResourceType::Cluster, "summarizer-blue");
        let o = c.outlier_detection.unwrap();
        assert_eq!(o.consecutive_5xx.unwrap().value, 2);
        assert_eq!(o.max_ejection_percent.unwrap().value, 100);
        let h = &c.health_checks[0];
        assert_eq!(
            h.interval, h.no_traffic_interval,
            "standby hosts are checked too"
        );
        let budget = c.circuit_breakers.unwrap().thresholds[0]
            .retry_budget
            .unwrap();
        assert_eq!(budget.min_retry_concurrency.unwrap().value, 20);
        let rc: RouteConfiguration = decode(&s, ResourceType::Route, "public");
        for r in &rc.virtual_hosts[0].routes {
            let Some(route::Action::Route(a)) = &r.action else {
                panic!("not a route")
            };
            let retry = a.retry_policy.as_ref().unwrap();
            assert_eq!(retry.num_retries.unwrap().value, 2);
            assert_eq!(
                retry.retry_priority.as_ref().unwrap().name,
                "envoy.retry_priorities.previous_priorities"
            );
        }
        // Without them, nothing changes: the pinned versions hold (see above).
        let plain: Cluster = decode(&snapshot(STATE), ResourceType::Cluster, "summarizer-blue");
        assert!(plain.outlier_detection.is_none() && plain.circuit_breakers.is_none());
    }

    #[test]
    fn a_secret_is_never_sent_empty_a_file_not_read_is_an_error() {
        let state = state::parse_str(&with_blue(
            "      endpoints: [\"127.0.0.1:8081\"]\n      credential: {file: key}",
        ))
        .unwrap();
        assert_eq!(
            translate_with(&state, &Files::default()),
            Err(InconsistentSnapshot::UnreadFile("key".into()))
        );
    }

    #[test]
    fn a_path_prefix_splits_the_default_route_per_color_by_runtime_fraction() {
        let s = snapshot(&with_blue(
            "      endpoints: [\"127.0.0.1:8081\"]\n      path_prefix: /v1/x\n      host_rewrite: api.example.com",
        ));
        let rc: RouteConfiguration = decode(&s, ResourceType::Route, "public");
        let routes = &rc.virtual_hosts[0].routes;
        let names: Vec<&str> = routes.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "preview-blue",
                "preview-green",
                "default-blue",
                "default-green"
            ]
        );
        let fraction = |r: &Route| {
            r.r#match
                .as_ref()
                .unwrap()
                .runtime_fraction
                .as_ref()
                .map(|f| f.default_value.unwrap().numerator)
        };
        assert_eq!(fraction(&routes[2]), Some(100));
        assert_eq!(fraction(&routes[3]), None);
        let Some(route::Action::Route(blue)) = &routes[2].action else {
            panic!("not a route")
        };
        assert_eq!(blue.prefix_rewrite, "/v1/x/");
        assert_eq!(
            blue.host_rewrite_specifier,
            Some(route_action::HostRewriteSpecifier::HostRewriteLiteral(
                "api.example.com".into()
            ))
        );
        // A switch moves blue's share to 0 in the same one route configuration.
        let green = snapshot(
            &with_blue("      endpoints: [\"127.0.0.1:8081\"]\n      path_prefix: /v1/x")
                .replace("active: blue", "active: green"),
        );
        let rc: RouteConfiguration = decode(&green, ResourceType::Route, "public");
        assert_eq!(fraction(&rc.virtual_hosts[0].routes[2]), Some(0));
        // A split gives blue's route its share.
        let split = snapshot(
            &with_blue("      endpoints: [\"127.0.0.1:8081\"]\n      path_prefix: /v1/x")
                .replace("active: blue", "weights: {blue: 90, green: 10}"),
        );
        let rc: RouteConfiguration = decode(&split, ResourceType::Route, "public");
        assert_eq!(fraction(&rc.virtual_hosts[0].routes[2]), Some(90));
    }

    #[test]
    fn weights_become_the_weighted_clusters_and_each_split_is_a_new_route_version() {
        let split = |w: &str| snapshot(&STATE.replace("active: blue", w));
        let ninety = split("weights: {blue: 90, green: 10}");
        let rc: RouteConfiguration = decode(&ninety, ResourceType::Route, "public");
        assert_eq!(
            weights(&rc),
            vec![
                ("summarizer-blue".to_owned(), 90),
                ("summarizer-green".to_owned(), 10)
            ]
        );
        let half = split("weights: {blue: 50, green: 50}");
        assert_eq!(changed_types(&ninety, &half), vec![ResourceType::Route]);
        assert_ne!(ninety.state_version, half.state_version);
        // A split that gives a color everything routes like `active`, at its own version.
        let all = split("weights: {blue: 100, green: 0}");
        let plain = snapshot(STATE);
        let rc: RouteConfiguration = decode(&all, ResourceType::Route, "public");
        let plain_rc: RouteConfiguration = decode(&plain, ResourceType::Route, "public");
        assert_eq!(rc, plain_rc);
    }
}
