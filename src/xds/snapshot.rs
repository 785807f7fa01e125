//! An immutable, versioned set of Envoy resources: what every proxy should run.
//!
//! Each resource is encoded to protobuf once, when the snapshot is built, and shared by
//! every stream that sends it. Versions come from hashes of the desired state that produced
//! the resources (see `translate`), never from the encoded bytes. A snapshot is plain data:
//! the responses encoded from it while it is served live beside it, in
//! [`Published`](super::cache::Published).

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use envoy_types::pb::google::protobuf::Any;

use super::{COUNT, ResourceType};
use crate::hash::short_hash;

/// Resources by name: one type's resources in a snapshot, or what one response carries.
pub type ResourceSet = BTreeMap<String, Arc<Resource>>;

/// One encoded resource.
#[derive(Debug, Clone, PartialEq)]
pub struct Resource {
    pub name: String,
    /// Hash of the desired-state input this resource was built from.
    pub version: String,
    pub body: Any,
    /// Clusters this resource sends traffic to (routes only); used to hold a route back
    /// until a proxy has accepted every cluster it names.
    pub clusters: Vec<String>,
    /// What a proxy must hold before this cluster can take traffic (clusters only): its
    /// endpoints when they come over EDS, and the secrets it uses.
    pub needs: Vec<(ResourceType, String)>,
}

/// What a secret's value shows as outside the xDS stream.
pub const REDACTED: &str = "[redacted]";

impl Resource {
    /// The body as shown anywhere but the xDS stream (CSDS, `render`, `diff`,
    /// `switchyard.v1`): the very body, except that a secret's value and private key are
    /// [`REDACTED`]. The one place secrets are hidden.
    pub fn shown_body(&self) -> Cow<'_, Any> {
        use envoy_types::pb::envoy::config::core::v3::{DataSource, data_source};
        use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::{Secret, secret};
        use prost::Message;
        if self.body.type_url != ResourceType::Secret.type_url() {
            return Cow::Borrowed(&self.body);
        }
        let redacted = || DataSource {
            specifier: Some(data_source::Specifier::InlineString(REDACTED.to_owned())),
            ..Default::default()
        };
        // A body that does not decode shows nothing of itself.
        let mut shown = Secret::decode(self.body.value.as_slice()).unwrap_or_default();
        shown.name.clone_from(&self.name);
        match &mut shown.r#type {
            Some(secret::Type::GenericSecret(g)) => {
                g.secret = Some(redacted());
                g.secrets.clear();
            }
            Some(secret::Type::TlsCertificate(c)) => {
                c.private_key = Some(redacted());
                c.password = None;
            }
            _ => {}
        }
        Cow::Owned(Any {
            type_url: self.body.type_url.clone(),
            value: shown.encode_to_vec(),
        })
    }

    /// Is this a resource to send? Not when it only stands for one a reconnecting proxy
    /// holds at a version this server does not have (delta's `initial_resource_versions`):
    /// then it has a name and a version but no body.
    pub fn has_body(&self) -> bool {
        !self.body.type_url.is_empty()
    }
}

/// The resources of one type, by name, with the type's version.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TypeSnapshot {
    /// Hash of every (name, resource version) pair: changes exactly when a resource of
    /// this type is added, removed or changed.
    pub version: String,
    /// Shared (`Arc`) so a stream can hold "what I sent" without copying the map.
    pub resources: Arc<ResourceSet>,
    /// The resources' names on their own: what a stream subscribing to every one of them
    /// holds. Kept from one snapshot to the next while they do not change
    /// ([`Snapshot::share_unchanged`]), so such a subscription is one set shared by every
    /// stream, and pins no resources.
    pub names: Arc<BTreeSet<String>>,
}

impl TypeSnapshot {
    pub fn new(resources: impl IntoIterator<Item = Resource>) -> TypeSnapshot {
        let resources: ResourceSet = resources
            .into_iter()
            .map(|r| (r.name.clone(), Arc::new(r)))
            .collect();
        let pairs: Vec<(&str, &str)> = resources
            .values()
            .map(|r| (r.name.as_str(), r.version.as_str()))
            .collect();
        TypeSnapshot {
            version: short_hash(&pairs),
            names: Arc::new(resources.keys().cloned().collect()),
            resources: Arc::new(resources),
        }
    }
}

/// Every resource of every type for one desired state.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    /// Version of the desired state this snapshot was built from.
    pub state_version: String,
    types: [TypeSnapshot; COUNT],
}

/// A snapshot whose resources do not hang together. Validation should make this
/// impossible; it is checked anyway before anything is published.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InconsistentSnapshot {
    #[error("route configuration `{route}` names cluster `{cluster}`, which is not defined")]
    UnknownCluster { route: String, cluster: String },
    #[error("endpoints `{0}` have no cluster of that name")]
    OrphanEndpoints(String),
    #[error("cluster `{cluster}` needs {needed} `{name}`, which is not defined")]
    MissingDependency {
        cluster: String,
        needed: ResourceType,
        name: String,
    },
    #[error("secret `{0}` is used by no cluster")]
    OrphanSecret(String),
    #[error("the file `{}` the state names was not read", .0.display())]
    UnreadFile(std::path::PathBuf),
    #[error("listener `{0}` has no route configuration of that name")]
    ListenerWithoutRoutes(String),
}

impl Snapshot {
    pub fn new(state_version: String, types: [TypeSnapshot; COUNT]) -> Snapshot {
        Snapshot {
            state_version,
            types,
        }
    }

    /// An empty snapshot (before any state is loaded).
    pub fn empty() -> Snapshot {
        Snapshot::new(String::new(), Default::default())
    }

    pub fn get(&self, t: ResourceType) -> &TypeSnapshot {
        &self.types[t.index()]
    }

    /// Takes over from `previous` (the snapshot in force before this one) every type that
    /// has not changed, and every set of names that has not, so what streams hold of them
    /// stays shared from one snapshot to the next: a switch (new routes only) leaves the
    /// clusters, endpoints and listeners the very same sets.
    pub fn share_unchanged(&mut self, previous: &Snapshot) {
        for (new, old) in self.types.iter_mut().zip(&previous.types) {
            if new.version == old.version {
                *new = old.clone();
            } else if new.names == old.names {
                new.names = old.names.clone();
            }
        }
    }

    /// The version string of type `t`.
    pub fn version(&self, t: ResourceType) -> &str {
        &self.get(t).version
    }

    /// Checks that every route names a defined cluster, every cluster has what it needs
    /// (its endpoints, its secrets), every secret a cluster, and every listener its route
    /// configuration (go-control-plane's `Consistent()`).
    pub fn check_consistent(&self) -> Result<(), InconsistentSnapshot> {
        let clusters = &self.get(ResourceType::Cluster).resources;
        let endpoints = &self.get(ResourceType::Endpoint).resources;
        let routes = &self.get(ResourceType::Route).resources;
        for route in routes.values() {
            for c in &route.clusters {
                if !clusters.contains_key(c) {
                    return Err(InconsistentSnapshot::UnknownCluster {
                        route: route.name.clone(),
                        cluster: c.clone(),
                    });
                }
            }
        }
        if let Some(orphan) = endpoints.keys().find(|e| !clusters.contains_key(*e)) {
            return Err(InconsistentSnapshot::OrphanEndpoints(orphan.clone()));
        }
        for cluster in clusters.values() {
            for (t, name) in &cluster.needs {
                if !self.get(*t).resources.contains_key(name) {
                    return Err(InconsistentSnapshot::MissingDependency {
                        cluster: cluster.name.clone(),
                        needed: *t,
                        name: name.clone(),
                    });
                }
            }
        }
        let used = |s: &String| {
            clusters.values().any(|c| {
                c.needs
                    .iter()
                    .any(|(t, n)| *t == ResourceType::Secret && n == s)
            })
        };
        if let Some(orphan) = self
            .get(ResourceType::Secret)
            .resources
            .keys()
            .find(|s| !used(s))
        {
            return Err(InconsistentSnapshot::OrphanSecret(orphan.clone()));
        }
        let listeners = &self.get(ResourceType::Listener).resources;
        if let Some(l) = listeners.keys().find(|l| !routes.contains_key(*l)) {
            return Err(InconsistentSnapshot::ListenerWithoutRoutes(l.clone()));
        }
        Ok(())
    }
}
