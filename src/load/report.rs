//! A load report as switchyard decodes it.
//!
//! Envoy sends its whole node with every `LoadStatsRequest`, not only the first: with Envoy
//! 1.40 that is 61 KB, nearly all of it the list of its 516 extensions, every interval,
//! from every proxy. Decoding that list into `Node`'s strings would be most of what a
//! report costs (a debug build: 513 µs per report as a `LoadStatsRequest`, 54 µs as a
//! [`Report`]). A [`Report`] has the same wire format with only the node fields that
//! identify it: the rest are unknown fields to prost, stepped over without allocating.

use envoy_types::pb::envoy::config::core::v3::{Locality, Node};
use envoy_types::pb::envoy::config::endpoint::v3::ClusterStats;
use envoy_types::pb::google::protobuf::Struct;

/// `envoy.service.load_stats.v3.LoadStatsRequest`, with [`NodeIdentity`] for its node.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Report {
    #[prost(message, optional, tag = "1")]
    pub node: Option<NodeIdentity>,
    #[prost(message, repeated, tag = "2")]
    pub cluster_stats: Vec<ClusterStats>,
}

impl prost::Name for Report {
    const NAME: &'static str = "LoadStatsRequest";
    const PACKAGE: &'static str = "envoy.service.load_stats.v3";
}

/// The fields of `envoy.config.core.v3.Node` (same tags) that an authorizer reads.
#[derive(Clone, PartialEq, prost::Message)]
pub struct NodeIdentity {
    #[prost(string, tag = "1")]
    pub id: String,
    #[prost(string, tag = "2")]
    pub cluster: String,
    #[prost(message, optional, tag = "3")]
    pub metadata: Option<Struct>,
    #[prost(message, optional, tag = "4")]
    pub locality: Option<Locality>,
}

impl NodeIdentity {
    /// As a `Node`, for the authorizer.
    pub fn to_node(&self) -> Node {
        Node {
            id: self.id.clone(),
            cluster: self.cluster.clone(),
            metadata: self.metadata.clone(),
            locality: self.locality.clone(),
            ..Node::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use envoy_types::pb::envoy::config::core::v3::Extension;
    use envoy_types::pb::envoy::config::endpoint::v3::UpstreamLocalityStats;
    use envoy_types::pb::envoy::service::load_stats::v3::LoadStatsRequest;
    use prost::Message;

    #[test]
    fn a_report_decodes_envoys_request_but_the_node_extensions() {
        let node = Node {
            id: "edge-1".into(),
            cluster: "edge".into(),
            locality: Some(Locality {
                zone: "a".into(),
                ..Default::default()
            }),
            extensions: vec![
                Extension {
                    name: "envoy.filters.http.router".into(),
                    ..Default::default()
                };
                500
            ],
            client_features: vec!["envoy.lrs.supports_send_all_clusters".into()],
            ..Default::default()
        };
        let request = LoadStatsRequest {
            node: Some(node.clone()),
            cluster_stats: vec![ClusterStats {
                cluster_name: "summarizer-blue".into(),
                upstream_locality_stats: vec![UpstreamLocalityStats {
                    total_issued_requests: 3,
                    ..Default::default()
                }],
                ..Default::default()
            }],
        };
        let report = Report::decode(request.encode_to_vec().as_slice()).unwrap();
        let identity = report.node.as_ref().unwrap().to_node();
        assert_eq!(
            (identity.id.as_str(), identity.cluster.as_str()),
            ("edge-1", "edge")
        );
        assert_eq!(identity.locality, node.locality);
        assert!(identity.extensions.is_empty(), "skipped");
        assert_eq!(report.cluster_stats, request.cluster_stats);
    }
}
