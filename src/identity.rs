//! Who a client of the xDS port is, from its TLS certificate, and what it may do.
//!
//! A certificate names its holder in its subject alternative names: DNS names and URIs
//! (SPIFFE IDs such as `spiffe://fleet.example/ns/edge/envoy-1`). The rules:
//! - With mutual TLS (`--client-ca`), a proxy's certificate must name the node id it
//!   claims: a DNS name equal to it, or a URI whose last path segment is it. One proxy
//!   cannot pose as another, read its configuration or report rejections in its name.
//! - `--allow-node GLOB` / `--allow-cluster GLOB` (any number): only proxies whose node id,
//!   or node cluster, matches one of them are served.
//! - `--operator GLOB`: only clients whose certificate has a name matching one may call
//!   CSDS, `switchyard.v1` and server reflection (gRPC health stays open to all).
//!
//! A refused proxy gets PERMISSION_DENIED before anything is sent to it, and a log line.

use envoy_types::pb::envoy::config::core::v3::Node;
use globset::{Glob, GlobSet, GlobSetBuilder};
use tokio_rustls::rustls::pki_types::CertificateDer;
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::xds::observer::NodeAuthorizer;

/// The names a certificate gives its holder.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PeerIdentity {
    pub dns: Vec<String>,
    pub uris: Vec<String>,
}

impl PeerIdentity {
    /// The names in the leaf (first) certificate of `chain`; `None` without one, or when
    /// it cannot be parsed.
    pub fn of_chain(chain: &[CertificateDer<'_>]) -> Option<PeerIdentity> {
        let (_, cert) = X509Certificate::from_der(chain.first()?.as_ref()).ok()?;
        let mut identity = PeerIdentity::default();
        if let Ok(Some(san)) = cert.subject_alternative_name() {
            for name in &san.value.general_names {
                match name {
                    GeneralName::DNSName(d) => identity.dns.push((*d).to_owned()),
                    GeneralName::URI(u) => identity.uris.push((*u).to_owned()),
                    _ => {}
                }
            }
        }
        Some(identity)
    }

    /// Every name, DNS names first.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.dns.iter().chain(&self.uris).map(String::as_str)
    }

    /// Does it name node `id`: a DNS name equal to it, or a URI whose last path segment
    /// is it?
    pub fn names_node(&self, id: &str) -> bool {
        !id.is_empty()
            && (self.dns.iter().any(|d| d == id)
                || self
                    .uris
                    .iter()
                    .any(|u| u.rsplit('/').next() == Some(id) && u.contains("://")))
    }

    fn describe(&self) -> String {
        let names: Vec<&str> = self.names().collect();
        if names.is_empty() {
            "no DNS or URI name".to_owned()
        } else {
            names.join(", ")
        }
    }
}

/// Globs, compiled once.
#[derive(Debug, Clone)]
pub struct Globs {
    patterns: Vec<String>,
    set: GlobSet,
}

impl Globs {
    /// `None` for no patterns (no rule).
    pub fn new(patterns: &[String]) -> Result<Option<Globs>, globset::Error> {
        if patterns.is_empty() {
            return Ok(None);
        }
        let mut builder = GlobSetBuilder::new();
        for p in patterns {
            builder.add(Glob::new(p)?);
        }
        Ok(Some(Globs {
            patterns: patterns.to_vec(),
            set: builder.build()?,
        }))
    }

    pub fn matches(&self, s: &str) -> bool {
        self.set.is_match(s)
    }
}

/// Who may be served and who may inspect.
#[derive(Debug, Clone, Default)]
pub struct AccessPolicy {
    /// A proxy's certificate must name its node id (on with mutual TLS).
    pub node_identity: bool,
    pub allow_nodes: Option<Globs>,
    pub allow_clusters: Option<Globs>,
    pub operators: Option<Globs>,
}

impl AccessPolicy {
    /// May a client with this certificate chain call the operator services?
    pub fn operator(&self, chain: Option<&[CertificateDer<'_>]>) -> Result<(), String> {
        let Some(operators) = &self.operators else {
            return Ok(());
        };
        let identity = chain.and_then(PeerIdentity::of_chain).unwrap_or_default();
        if identity.names().any(|n| operators.matches(n)) {
            Ok(())
        } else {
            Err(format!(
                "only operators may call this service: the certificate names {}, which \
                 matches none of --operator {}",
                identity.describe(),
                operators.patterns.join(", ")
            ))
        }
    }
}

impl NodeAuthorizer for AccessPolicy {
    fn authorize(
        &self,
        node: Option<&Node>,
        chain: Option<&[CertificateDer<'static>]>,
    ) -> Result<(), String> {
        let rules =
            self.node_identity || self.allow_nodes.is_some() || self.allow_clusters.is_some();
        let Some(node) = node else {
            return match rules {
                true => Err("the stream's first request names no node".to_owned()),
                false => Ok(()),
            };
        };
        if self.node_identity {
            let identity = chain.and_then(PeerIdentity::of_chain).unwrap_or_default();
            if !identity.names_node(&node.id) {
                return Err(format!(
                    "the proxy claims node id `{}` but its certificate names {}",
                    node.id,
                    identity.describe()
                ));
            }
        }
        if self.allow_nodes.is_none() && self.allow_clusters.is_none() {
            return Ok(());
        }
        let by_id = self
            .allow_nodes
            .as_ref()
            .is_some_and(|g| g.matches(&node.id));
        let by_cluster = self
            .allow_clusters
            .as_ref()
            .is_some_and(|g| g.matches(&node.cluster));
        if by_id || by_cluster {
            Ok(())
        } else {
            Err(format!(
                "node `{}` (cluster `{}`) is not allowed by --allow-node/--allow-cluster",
                node.id, node.cluster
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identity(dns: &[&str], uris: &[&str]) -> PeerIdentity {
        PeerIdentity {
            dns: dns.iter().map(|s| s.to_string()).collect(),
            uris: uris.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn a_certificate_names_a_node_by_dns_name_or_the_last_segment_of_a_uri() {
        assert!(identity(&["envoy-1"], &[]).names_node("envoy-1"));
        let spiffe = identity(&[], &["spiffe://fleet.example/ns/edge/envoy-1"]);
        assert!(spiffe.names_node("envoy-1"));
        assert!(!spiffe.names_node("edge"));
        assert!(!identity(&["envoy-10"], &[]).names_node("envoy-1"));
        assert!(!identity(&[], &[]).names_node(""));
    }

    #[test]
    fn allowlists_match_node_ids_or_clusters_by_glob() {
        let policy = AccessPolicy {
            allow_nodes: Globs::new(&["edge-*".to_owned()]).unwrap(),
            allow_clusters: Globs::new(&["gateways".to_owned()]).unwrap(),
            ..AccessPolicy::default()
        };
        let node = |id: &str, cluster: &str| Node {
            id: id.to_owned(),
            cluster: cluster.to_owned(),
            ..Node::default()
        };
        assert!(policy.authorize(Some(&node("edge-7", "x")), None).is_ok());
        assert!(
            policy
                .authorize(Some(&node("gw-1", "gateways")), None)
                .is_ok()
        );
        let refused = policy
            .authorize(Some(&node("rogue", "x")), None)
            .unwrap_err();
        assert_eq!(
            refused,
            "node `rogue` (cluster `x`) is not allowed by --allow-node/--allow-cluster"
        );
        assert!(policy.authorize(None, None).is_err(), "no node, no service");
        assert!(AccessPolicy::default().authorize(None, None).is_ok());
    }
}
