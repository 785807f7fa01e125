//! Every connected proxy: what it was sent, acknowledged and rejected per resource type,
//! and where it stands ([`SyncStatus`], as the stream's state machine worked it out).
//!
//! Written from the ADS streams through the application's observer, read by `/status`,
//! `switchyard.v1`, CSDS and convergence. A `DashMap` keyed by stream id: thousands of
//! streams update their own entries concurrently without a global lock, and the rare
//! reader iterates shard by shard.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::SystemTime;

use dashmap::DashMap;
use envoy_types::pb::envoy::config::core::v3::{Node, node::UserAgentVersionType};
use serde::Serialize;

use crate::time::rfc3339;
use crate::xds::ResourceType;
use crate::xds::observer::{Protocol, StepReport, StreamEvent, StreamId};
use crate::xds::snapshot::ResourceSet;
use crate::xds::sync::{ProxyStatus, SyncStatus};

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
#[derive(Debug, Clone, Default)]
pub struct TypeRecord {
    /// Where the proxy stands on this type.
    pub status: SyncStatus,
    /// It subscribes to every resource of this type (a wildcard).
    pub wildcard: bool,
    pub sent: Option<VersionAt>,
    pub acked: Option<VersionAt>,
    /// The latest rejection, even once a newer version fixed it (`status` says whether it
    /// still stands).
    pub rejected: Option<Rejection>,
    /// Resources of the latest response sent and acknowledged (for CSDS).
    pub sent_resources: Arc<ResourceSet>,
    pub acked_resources: Arc<ResourceSet>,
}

/// In `/status`: `status`, the versions, and `synced` (`true` when synced, `false` when
/// stale or rejected, `null` when not subscribed: what `/status` showed before `status`).
impl Serialize for TypeRecord {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let synced = match self.status {
            SyncStatus::NotSubscribed => None,
            status => Some(status == SyncStatus::Synced),
        };
        let mut out = s.serialize_struct("TypeRecord", 5)?;
        out.serialize_field("status", &self.status)?;
        out.serialize_field("synced", &synced)?;
        out.serialize_field("sent", &self.sent)?;
        out.serialize_field("acked", &self.acked)?;
        out.serialize_field("rejected", &self.rejected)?;
        out.end()
    }
}

/// One connected proxy (one ADS stream).
#[derive(Debug, Clone, Serialize)]
pub struct ProxyRecord {
    pub stream_id: u64,
    pub node_id: String,
    pub node_cluster: String,
    pub envoy_version: String,
    /// `sotw` or `delta`.
    #[serde(serialize_with = "protocol_name")]
    pub protocol: Protocol,
    pub peer: String,
    #[serde(serialize_with = "rfc3339")]
    pub connected_at: SystemTime,
    /// The full node the proxy sent (for CSDS).
    #[serde(skip)]
    pub node: Option<Arc<Node>>,
    /// The state version the proxy's stream serves now.
    pub state_version: String,
    /// Where it stands overall (from the types' statuses).
    pub status: ProxyStatus,
    /// The last state version it was synced at: reaching a new one is announced once.
    #[serde(skip)]
    synced_version: String,
    pub clusters: TypeRecord,
    pub endpoints: TypeRecord,
    pub secrets: TypeRecord,
    pub listeners: TypeRecord,
    pub routes: TypeRecord,
}

impl ProxyRecord {
    pub fn type_record(&self, t: ResourceType) -> &TypeRecord {
        match t {
            ResourceType::Cluster => &self.clusters,
            ResourceType::Endpoint => &self.endpoints,
            ResourceType::Secret => &self.secrets,
            ResourceType::Listener => &self.listeners,
            ResourceType::Route => &self.routes,
        }
    }

    fn type_record_mut(&mut self, t: ResourceType) -> &mut TypeRecord {
        match t {
            ResourceType::Cluster => &mut self.clusters,
            ResourceType::Endpoint => &mut self.endpoints,
            ResourceType::Secret => &mut self.secrets,
            ResourceType::Listener => &mut self.listeners,
            ResourceType::Route => &mut self.routes,
        }
    }
}

/// Every connected proxy. Cheap to clone (shared).
#[derive(Debug, Clone, Default)]
pub struct ProxyRegistry {
    /// Boxed: a record is ~850 bytes, and the map's spare slots (and its copies while it
    /// grows) then cost a pointer each instead.
    proxies: Arc<DashMap<StreamId, Box<ProxyRecord>>>,
    /// How many of them are [`ProxyStatus::Connecting`], kept as they change, so that
    /// convergence can tell "every proxy that holds anything is synced" without a walk.
    connecting: Arc<AtomicUsize>,
}

impl ProxyRegistry {
    /// A stream opened.
    pub fn open(&self, stream: StreamId, protocol: Protocol, peer: &str) {
        self.connecting.fetch_add(1, Ordering::Relaxed);
        self.proxies.insert(
            stream,
            Box::new(ProxyRecord {
                stream_id: stream,
                node_id: String::new(),
                node_cluster: String::new(),
                envoy_version: String::new(),
                protocol,
                peer: peer.to_owned(),
                connected_at: SystemTime::now(),
                node: None,
                state_version: String::new(),
                status: ProxyStatus::Connecting,
                synced_version: String::new(),
                clusters: TypeRecord::default(),
                endpoints: TypeRecord::default(),
                secrets: TypeRecord::default(),
                listeners: TypeRecord::default(),
                routes: TypeRecord::default(),
            }),
        );
    }

    /// A stream ended; returns the protocol it spoke (`None` when it was not open).
    pub fn close(&self, stream: StreamId) -> Option<Protocol> {
        let (_, p) = self.proxies.remove(&stream)?;
        if p.status == ProxyStatus::Connecting {
            self.connecting.fetch_sub(1, Ordering::Relaxed);
        }
        Some(p.protocol)
    }

    /// Records the proxy's node (once known).
    pub fn identify(&self, stream: StreamId, node: &Arc<Node>) {
        if let Some(mut p) = self.proxies.get_mut(&stream) {
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

    /// Applies one step of a stream: what was sent, acknowledged and rejected, and where
    /// each type stands now. Returns whether the proxy has just become synced at a state
    /// version it was not synced at before (once per proxy and state version). Only what
    /// the step changed is copied.
    pub fn record(&self, stream: StreamId, step: &StepReport<'_>) -> bool {
        let Some(mut p) = self.proxies.get_mut(&stream) else {
            return false;
        };
        if p.state_version != step.state_version {
            p.state_version = step.state_version.to_owned();
        }
        for t in ResourceType::ALL {
            let r = p.type_record_mut(t);
            r.status = step.status[t.index()];
            r.wildcard = step.wildcard[t.index()];
        }
        let status = ProxyStatus::of(&step.status);
        match (
            p.status == ProxyStatus::Connecting,
            status == ProxyStatus::Connecting,
        ) {
            (true, false) => self.connecting.fetch_sub(1, Ordering::Relaxed),
            (false, true) => self.connecting.fetch_add(1, Ordering::Relaxed),
            _ => 0,
        };
        p.status = status;
        let at = SystemTime::now();
        for e in step.events {
            match e {
                StreamEvent::Sent {
                    type_,
                    version,
                    resources,
                    ..
                } => {
                    let r = p.type_record_mut(*type_);
                    r.sent = Some(VersionAt {
                        version: version.clone(),
                        at,
                    });
                    r.sent_resources = resources.clone();
                }
                StreamEvent::Acked {
                    type_,
                    version,
                    resources,
                } => {
                    let r = p.type_record_mut(*type_);
                    r.acked = Some(VersionAt {
                        version: version.clone(),
                        at,
                    });
                    r.acked_resources = resources.clone();
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
                StreamEvent::Stale { .. }
                | StreamEvent::UnknownType { .. }
                | StreamEvent::RepeatedNack { .. } => {}
            }
        }
        let newly_synced = p.status == ProxyStatus::Synced && p.synced_version != p.state_version;
        if newly_synced {
            p.synced_version = p.state_version.clone();
        }
        newly_synced
    }

    /// The node id of a stream (empty until known).
    pub fn node_id(&self, stream: StreamId) -> String {
        self.proxies
            .get(&stream)
            .map(|p| p.node_id.clone())
            .unwrap_or_default()
    }

    /// Every connected proxy, sorted by node id then stream id.
    pub fn proxies(&self) -> Vec<ProxyRecord> {
        let mut all: Vec<ProxyRecord> = self.proxies.iter().map(|e| (**e).clone()).collect();
        all.sort_by(|a, b| (&a.node_id, a.stream_id).cmp(&(&b.node_id, b.stream_id)));
        all
    }

    /// Calls `f` with each connected proxy's record (none copied).
    pub fn each(&self, mut f: impl FnMut(&ProxyRecord)) {
        for p in self.proxies.iter() {
            f(&p);
        }
    }

    /// Is every connected proxy synced at state `version`, or still connecting (it holds
    /// nothing, and will be sent the state in force when it asks)? Returns how many
    /// proxies that is (0 with none connected), or `None` when one is not.
    pub fn all_settled_at(&self, version: &str) -> Option<usize> {
        self.all_settled(|_| version.to_owned())
    }

    /// [`Self::all_settled_at`], each proxy at the version `owed` says it is owed.
    pub fn all_settled(&self, owed: impl Fn(&ProxyRecord) -> String) -> Option<usize> {
        let mut n = 0;
        for p in self.proxies.iter() {
            let settled = match p.status {
                ProxyStatus::Connecting => true,
                ProxyStatus::Synced => p.state_version == owed(&p),
                ProxyStatus::Stale | ProxyStatus::Rejected => false,
            };
            if !settled {
                return None;
            }
            n += 1;
        }
        Some(n)
    }

    /// How many proxies are still connecting (subscribed to nothing).
    pub fn connecting(&self) -> usize {
        self.connecting.load(Ordering::Relaxed)
    }

    /// How many proxies subscribe to each resource type (without copying any record).
    pub fn subscribed_counts(&self) -> [usize; 5] {
        let mut counts = [0; 5];
        for p in self.proxies.iter() {
            for t in ResourceType::ALL {
                if p.type_record(t).status != SyncStatus::NotSubscribed {
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

fn protocol_name<S: serde::Serializer>(p: &Protocol, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(p.as_str())
}
