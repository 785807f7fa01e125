//! CSDS (`envoy.service.status.v3.ClientStatusDiscoveryService`): per connected Envoy, its
//! node and the status of every resource it was sent, in Envoy's own terms.
//!
//! Per resource: `ERROR` (with Envoy's message) when the type's status is rejected (the
//! latest response, which carried it, was rejected); `SYNCED` when the proxy acknowledged
//! the version in force; `STALE` when a newer one is on its way or held back; `NOT_SENT`
//! for a resource in force not yet sent on a wildcard subscription. The type's status comes
//! from the stream's state machine (`xds::sync`); only the per-resource detail is
//! worked out here, from the resources sent and acknowledged.
//!
//! Each client's node is the one the proxy sent, with one key added to its metadata:
//! `switchyard.protocol`, the ADS variant its stream speaks (`sotw` or `delta`).

use std::pin::Pin;

use envoy_types::pb::envoy::admin::v3::{ClientResourceStatus, UpdateFailureState};
use envoy_types::pb::envoy::service::status::v3::client_config::GenericXdsConfig;
use envoy_types::pb::envoy::service::status::v3::client_status_discovery_service_server::ClientStatusDiscoveryService;
use envoy_types::pb::envoy::service::status::v3::{
    ClientConfig, ClientStatusRequest, ClientStatusResponse, ConfigStatus,
};
use envoy_types::pb::google::protobuf::{Value, value};
use futures::{Stream, StreamExt};
use tonic::{Request, Response, Status, Streaming};

use super::envoy_timestamp;
use super::matcher::matches_any;
use crate::proxies::{ProxyRecord, ProxyRegistry};
use crate::xds::ResourceType;
use crate::xds::cache::SnapshotCache;
use crate::xds::snapshot::Snapshot;
use crate::xds::sync::SyncStatus;

/// The CSDS service.
#[derive(Debug, Clone)]
pub struct CsdsService {
    registry: ProxyRegistry,
    cache: SnapshotCache,
}

impl CsdsService {
    pub fn new(registry: ProxyRegistry, cache: SnapshotCache) -> CsdsService {
        CsdsService { registry, cache }
    }

    /// The answer to one request.
    pub fn client_status(&self, req: &ClientStatusRequest) -> Result<ClientStatusResponse, Status> {
        let published = self.cache.current();
        let snapshot = published.snapshot();
        let mut config = Vec::new();
        for proxy in self.registry.proxies() {
            let Some(node) = &proxy.node else { continue };
            let matched = matches_any(&req.node_matchers, node)
                .map_err(|e| Status::invalid_argument(format!("node_matchers: {e}")))?;
            if matched {
                config.push(client_config(
                    &proxy,
                    snapshot,
                    req.exclude_resource_contents,
                ));
            }
        }
        Ok(ClientStatusResponse { config })
    }
}

/// The node metadata key that says which ADS variant a client's stream speaks.
pub const PROTOCOL_KEY: &str = "switchyard.protocol";

fn client_config(proxy: &ProxyRecord, snapshot: &Snapshot, exclude_contents: bool) -> ClientConfig {
    let mut generic_xds_configs = Vec::new();
    for t in ResourceType::ALL {
        let record = proxy.type_record(t);
        let in_force = &snapshot.get(t).resources;
        let sent_version = record.sent.as_ref().map(|s| s.version.as_str());
        let acked_version = record.acked.as_ref().map(|s| s.version.as_str());
        let rejected_latest = record
            .rejected
            .as_ref()
            .filter(|_| record.status == SyncStatus::Rejected);
        let mut names: std::collections::BTreeSet<&String> = record.sent_resources.keys().collect();
        names.extend(record.acked_resources.keys());
        if record.wildcard {
            names.extend(in_force.keys());
        }
        for name in names {
            let sent = record.sent_resources.get(name);
            let acked = record.acked_resources.get(name);
            let current = in_force.get(name);
            let (config_status, client_status) = if sent.is_none() && acked.is_none() {
                (ConfigStatus::NotSent, ClientResourceStatus::Unknown)
            } else if sent.is_some() && rejected_latest.is_some() {
                (ConfigStatus::Error, ClientResourceStatus::Nacked)
            } else if let (Some(a), Some(c)) = (acked, current)
                && sent.is_some()
                && sent_version == acked_version
                && a.version == c.version
            {
                (ConfigStatus::Synced, ClientResourceStatus::Acked)
            } else {
                (ConfigStatus::Stale, ClientResourceStatus::Requested)
            };
            let body = acked.or(sent);
            generic_xds_configs.push(GenericXdsConfig {
                type_url: t.type_url().to_owned(),
                name: name.clone(),
                version_info: match config_status {
                    ConfigStatus::Synced => acked_version.unwrap_or_default().to_owned(),
                    _ => sent_version.unwrap_or_default().to_owned(),
                },
                xds_config: if exclude_contents {
                    None
                } else {
                    // A secret's value is never shown.
                    body.map(|r| r.shown_body().into_owned())
                },
                last_updated: record.acked.as_ref().map(|a| envoy_timestamp(a.at)),
                config_status: config_status as i32,
                client_status: client_status as i32,
                error_state: rejected_latest.filter(|_| sent.is_some()).map(|r| {
                    UpdateFailureState {
                        failed_configuration: None,
                        last_update_attempt: Some(envoy_timestamp(r.at)),
                        details: r.message.clone(),
                        version_info: r.version.clone(),
                    }
                }),
                is_static_resource: false,
            });
        }
    }
    ClientConfig {
        node: proxy.node.as_deref().cloned().map(|mut node| {
            let metadata = node.metadata.get_or_insert_with(Default::default);
            metadata.fields.insert(
                PROTOCOL_KEY.to_owned(),
                Value {
                    kind: Some(value::Kind::StringValue(proxy.protocol.as_str().to_owned())),
                },
            );
            node
        }),
        generic_xds_configs,
        ..Default::default()
    }
}

type ResponseStream = Pin<Box<dyn Stream<Item = Result<ClientStatusResponse, Status>> + Send>>;

#[tonic::async_trait]
impl ClientStatusDiscoveryService for CsdsService {
    type StreamClientStatusStream = ResponseStream;

    async fn stream_client_status(
        &self,
        request: Request<Streaming<ClientStatusRequest>>,
    ) -> Result<Response<Self::StreamClientStatusStream>, Status> {
        let this = self.clone();
        let responses = request
            .into_inner()
            .map(move |req| this.client_status(&req?));
        Ok(Response::new(Box::pin(responses)))
    }

    async fn fetch_client_status(
        &self,
        request: Request<ClientStatusRequest>,
    ) -> Result<Response<ClientStatusResponse>, Status> {
        self.client_status(request.get_ref()).map(Response::new)
    }
}
