//! What every connected proxy was sent, acknowledged and rejected, per resource type.
//!
//! Written by the ADS stream tasks, read by `/status` (and later CSDS). A `DashMap` keyed
//! by stream id: thousands of streams update their own entries concurrently without a
//! global lock, and the rare reader iterates shard by shard.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use dashmap::DashMap;
use envoy_types::pb::envoy::config::core::v3::{Node, node::UserAgentVersionType};
use serde::Serialize;

use super::ResourceType;
use super::sotw::{ResourceSet, SotwStream, StreamEvent};

/// A version and when it happened.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct VersionAt {
    pub version: String,
    #[serde(serialize_with = "rfc3339")]
    pub at: SystemTime,
}

/// A rejected version, Envoy's message, and when.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Rejection {
    pub version: String,
    pub message: String,
    #[serde(serialize_with = "rfc3339")]
    pub at: SystemTime,
}

/// One resource type as seen by one proxy.
#[derive(Debug, Clone, Default, Serialize)]
pub struct TypeRecord {
    /// Resources of the latest response sent and acknowledged (for CSDS).
    #[serde(skip)]
    pub sent_resources: Arc<ResourceSet>,
    #[serde(skip)]
    pub acked_resources: Arc<ResourceSet>,
    /// Subscribed, latest response acknowledged, nothing newer due; `None` until the proxy
    /// asks for this type.
    pub synced: Option<bool>,
    pub sent: Option<VersionAt>,
    pub acked: Option<VersionAt>,
    pub rejected: Option<Rejection>,
}

/// One connected proxy (one ADS stream).
#[derive(Debug, Clone, Serialize)]
pub struct ProxyRecord {
    pub stream_id: u64,
    pub node_id: String,
    pub node_cluster: String,
    pub envoy_version: String,
    /// `sotw` or `delta`.
    pub protocol: &'static str,
    pub peer: String,
    #[serde(serialize_with = "rfc3339")]
    pub connected_at: SystemTime,
    /// The full node the proxy sent (for CSDS).
    #[serde(skip)]
    pub node: Option<Arc<Node>>,
    /// The state version the proxy's stream serves now.
    pub state_version: String,
    pub clusters: TypeRecord,
    pub endpoints: TypeRecord,
    pub listeners: TypeRecord,
    pub routes: TypeRecord,
}

impl ProxyRecord {
    pub fn type_record(&self, t: ResourceType) -> &TypeRecord {
        match t {
            ResourceType::Cluster => &self.clusters,
            ResourceType::Endpoint => &self.endpoints,
            ResourceType::Listener => &self.listeners,
            ResourceType::Route => &self.routes,
        }
    }

    fn type_record_mut(&mut self, t: ResourceType) -> &mut TypeRecord {
        match t {
            ResourceType::Cluster => &mut self.clusters,
            ResourceType::Endpoint => &mut self.endpoints,
            ResourceType::Listener => &mut self.listeners,
            ResourceType::Route => &mut self.routes,
        }
    }
}

/// Every connected proxy. Cheap to clone (shared).
#[derive(Debug, Clone, Default)]
pub struct ProxyRegistry {
    /// Boxed: a record is ~840 bytes, and the map's spare slots (and its copies while it
    /// grows) then cost a pointer each instead.
    proxies: Arc<DashMap<u64, Box<ProxyRecord>>>,
    next_id: Arc<AtomicU64>,
}

impl ProxyRegistry {
    /// Registers a new stream and returns its id. The entry is removed when the returned
    /// guard is dropped (the stream ended, however it ended).
    pub fn connect(&self, protocol: &'static str, peer: String) -> StreamGuard {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed) + 1;
        self.proxies.insert(
            id,
            Box::new(ProxyRecord {
                stream_id: id,
                node_id: String::new(),
                node_cluster: String::new(),
                envoy_version: String::new(),
                protocol,
                peer,
                connected_at: SystemTime::now(),
                node: None,
                state_version: String::new(),
                clusters: TypeRecord::default(),
                endpoints: TypeRecord::default(),
                listeners: TypeRecord::default(),
                routes: TypeRecord::default(),
            }),
        );
        StreamGuard {
            id,
            registry: self.clone(),
        }
    }

    /// Every connected proxy, sorted by node id then stream id.
    pub fn proxies(&self) -> Vec<ProxyRecord> {
        let mut all: Vec<ProxyRecord> = self.proxies.iter().map(|e| (**e).clone()).collect();
        all.sort_by(|a, b| (&a.node_id, a.stream_id).cmp(&(&b.node_id, b.stream_id)));
        all
    }

    /// Has every connected proxy that declared itself caught up with state `version`?
    /// (True with no proxies.) Returns the number of proxies checked.
    pub fn all_synced_at(&self, version: &str) -> Option<usize> {
        let mut n = 0;
        for p in self.proxies.iter() {
            let synced = p.state_version == version
                && ResourceType::ALL
                    .iter()
                    .all(|t| p.type_record(*t).synced != Some(false));
            if !synced {
                return None;
            }
            n += 1;
        }
        Some(n)
    }

    /// How many proxies subscribe to each resource type (without copying any record).
    pub fn subscribed_counts(&self) -> [usize; 4] {
        let mut counts = [0; 4];
        for p in self.proxies.iter() {
            for t in ResourceType::ALL {
                if p.type_record(t).synced.is_some() {
                    counts[t.index()] += 1;
                }
            }
        }
        counts
    }

    pub fn len(&self) -> usize {
        self.proxies.len()
    }

    pub fn is_empty(&self) -> bool {
        self.proxies.is_empty()
    }
}

/// Keeps one stream's registry entry; removes it on drop.
#[derive(Debug)]
pub struct StreamGuard {
    id: u64,
    registry: ProxyRegistry,
}

impl StreamGuard {
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Records the proxy's node (once known).
    pub fn set_node(&self, node: &Arc<Node>) {
        if let Some(mut p) = self.registry.proxies.get_mut(&self.id) {
            p.node = Some(node.clone());
            p.node_id = node.id.clone();
            p.node_cluster = node.cluster.clone();
            p.envoy_version = match &node.user_agent_version_type {
                Some(UserAgentVersionType::UserAgentVersion(v)) => v.clone(),
                Some(UserAgentVersionType::UserAgentBuildVersion(b)) => b
                    .version
                    .as_ref()
                    .map(|v| format!("{}.{}.{}", v.major_number, v.minor_number, v.patch))
                    .unwrap_or_default(),
                None => String::new(),
            };
        }
    }

    /// Applies what the stream's state machine reported in one step, and where each type
    /// stands (`synced`, from [`SotwStream::is_synced`]). Only what the events changed is
    /// copied.
    pub fn record(&self, events: &[StreamEvent], stream: &SotwStream, synced: [Option<bool>; 4]) {
        let Some(mut p) = self.registry.proxies.get_mut(&self.id) else {
            return;
        };
        if p.state_version != stream.state_version() {
            p.state_version = stream.state_version().to_owned();
        }
        for (t, synced) in ResourceType::ALL.into_iter().zip(synced) {
            p.type_record_mut(t).synced = synced;
        }
        let at = SystemTime::now();
        for e in events {
            match e {
                StreamEvent::Sent { type_, version, .. } => {
                    let r = p.type_record_mut(*type_);
                    r.sent = Some(VersionAt {
                        version: version.clone(),
                        at,
                    });
                    r.sent_resources = stream.sent_resources(*type_).cloned().unwrap_or_default();
                }
                StreamEvent::Acked { type_, version } => {
                    let r = p.type_record_mut(*type_);
                    r.acked = Some(VersionAt {
                        version: version.clone(),
                        at,
                    });
                    r.acked_resources = stream.acked_resources(*type_).cloned().unwrap_or_default();
                }
                StreamEvent::Rejected {
                    type_,
                    version,
                    message,
                } => {
                    p.type_record_mut(*type_).rejected = Some(Rejection {
                        version: version.clone(),
                        message: message.clone(),
                        at,
                    });
                }
                StreamEvent::Stale { .. } | StreamEvent::UnknownType { .. } => {}
            }
        }
    }
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        self.registry.proxies.remove(&self.id);
    }
}

/// Serializes a time as RFC 3339 (UTC, milliseconds).
pub fn rfc3339<S: serde::Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(&humantime::format_rfc3339_millis(*t))
}
