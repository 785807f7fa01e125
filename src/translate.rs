//! Desired state -> Envoy resources. A pure function: no I/O, no clocks, same input, same
//! output (and the same versions) in every process.
//!
//! Per listener: a Listener whose HTTP connection manager loads its routes over ADS (RDS)
//! and a RouteConfiguration of the same name. Per service: a virtual host with its domains
//! whose default route splits traffic between `<service>-blue` and `<service>-green` by
//! weight. Per color: an EDS Cluster and its ClusterLoadAssignment.

use envoy_types::pb::envoy::config::cluster::v3::{Cluster, cluster};
use envoy_types::pb::envoy::config::core::v3::Address;
use envoy_types::pb::envoy::config::core::v3::{
    AggregatedConfigSource, ApiVersion, ConfigSource, SocketAddress, address, config_source,
    socket_address,
};
use envoy_types::pb::envoy::config::endpoint::v3::{
    ClusterLoadAssignment, Endpoint, LbEndpoint, LocalityLbEndpoints, lb_endpoint,
};
use envoy_types::pb::envoy::config::listener::v3::{Filter, FilterChain, Listener, filter};
use envoy_types::pb::envoy::config::route::v3::{
    Route, RouteAction, RouteConfiguration, RouteMatch, VirtualHost, WeightedCluster, route,
    route_action, route_match, weighted_cluster::ClusterWeight,
};
use envoy_types::pb::envoy::extensions::filters::http::router::v3::Router;
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
    HttpConnectionManager, HttpFilter, Rds, http_connection_manager, http_filter,
};
use envoy_types::pb::google::protobuf::{Any, Duration, UInt32Value};
use prost::Name;
use serde::Serialize;

use crate::hash::short_hash;
use crate::state::{self, Color, DesiredState, Service};
use crate::xds::ResourceType;
use crate::xds::snapshot::{InconsistentSnapshot, Resource, Snapshot, TypeSnapshot};

/// Bumped whenever translation changes what it produces for the same input, so that
/// versions change with it.
const TRANSLATION: &str = "switchyard/translate/1";

/// Builds the consistency-checked snapshot for `state`.
pub fn translate(state: &DesiredState) -> Result<Snapshot, InconsistentSnapshot> {
    let mut clusters = Vec::new();
    let mut endpoints = Vec::new();
    for service in &state.services {
        for color in Color::ALL {
            clusters.push(cluster(service, color));
            endpoints.push(load_assignment(service, color));
        }
    }
    let mut listeners = Vec::new();
    let mut routes = Vec::new();
    for l in &state.listeners {
        listeners.push(listener(l));
        routes.push(route_configuration(state, &l.name));
    }
    let snapshot = Snapshot::new(
        state.version(),
        [
            TypeSnapshot::new(clusters),
            TypeSnapshot::new(endpoints),
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
    Address {
        address: Some(address::Address::SocketAddress(SocketAddress {
            address: ip.to_string(),
            port_specifier: Some(socket_address::PortSpecifier::PortValue(port.into())),
            ..Default::default()
        })),
    }
}

fn cluster(service: &Service, color: Color) -> Resource {
    let name = service.cluster_name(color);
    let c = Cluster {
        name: name.clone(),
        cluster_discovery_type: Some(cluster::ClusterDiscoveryType::Type(
            cluster::DiscoveryType::Eds as i32,
        )),
        eds_cluster_config: Some(cluster::EdsClusterConfig {
            eds_config: Some(ads()),
            service_name: String::new(),
        }),
        connect_timeout: Some(Duration {
            seconds: 1,
            nanos: 0,
        }),
        ..Default::default()
    };
    // A cluster depends only on its name: its endpoints come separately.
    resource(name, &(), &c, Vec::new())
}

fn load_assignment(service: &Service, color: Color) -> Resource {
    let name = service.cluster_name(color);
    let spec = service.color(color);
    let cla = ClusterLoadAssignment {
        cluster_name: name.clone(),
        endpoints: vec![LocalityLbEndpoints {
            lb_endpoints: spec
                .endpoints
                .iter()
                .map(|ep| LbEndpoint {
                    host_identifier: Some(lb_endpoint::HostIdentifier::Endpoint(Endpoint {
                        address: Some(socket_address(ep.ip(), ep.port())),
                        ..Default::default()
                    })),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }],
        ..Default::default()
    };
    resource(name, spec, &cla, Vec::new())
}

fn listener(l: &state::Listener) -> Resource {
    let hcm = HttpConnectionManager {
        stat_prefix: l.name.clone(),
        codec_type: http_connection_manager::CodecType::Auto as i32,
        route_specifier: Some(http_connection_manager::RouteSpecifier::Rds(Rds {
            config_source: Some(ads()),
            route_config_name: l.name.clone(),
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
        name: l.name.clone(),
        address: Some(socket_address(l.address, l.port)),
        filter_chains: vec![FilterChain {
            filters: vec![Filter {
                name: "envoy.filters.network.http_connection_manager".to_owned(),
                config_type: Some(filter::ConfigType::TypedConfig(any(&hcm))),
            }],
            ..Default::default()
        }],
        ..Default::default()
    };
    resource(l.name.clone(), l, &listener, Vec::new())
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
}

fn route_configuration(state: &DesiredState, listener: &str) -> Resource {
    let mut inputs = Vec::new();
    let mut virtual_hosts = Vec::new();
    let mut clusters = Vec::new();
    for service in state.services_on(listener) {
        let weights = Color::ALL.map(|c| (c, service.weight(c)));
        inputs.push(VirtualHostInput {
            service: &service.name,
            domains: &service.domains,
            weights,
        });
        let cluster_weights: Vec<ClusterWeight> = weights
            .iter()
            .map(|(color, weight)| ClusterWeight {
                name: service.cluster_name(*color),
                weight: Some(UInt32Value { value: *weight }),
                ..Default::default()
            })
            .collect();
        clusters.extend(cluster_weights.iter().map(|w| w.name.clone()));
        virtual_hosts.push(VirtualHost {
            name: service.name.clone(),
            domains: service.domains.clone(),
            routes: vec![Route {
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
                    ..Default::default()
                })),
                ..Default::default()
            }],
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
        let Some(route::Action::Route(action)) = &rc.virtual_hosts[0].routes[0].action else {
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
        // re-download its config on upgrade) is a conscious decision.
        let s = snapshot(STATE);
        assert_eq!(s.state_version, "02eb7b93e1379900");
        assert_eq!(
            ResourceType::ALL.map(|t| s.version(t)),
            [
                "6c0044076fe34aa4",
                "c4a41611b3ce42c9",
                "3d44cb86e9f1538b",
                "2cde8c1833f11dfb"
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
}
