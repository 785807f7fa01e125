//! The fleet keys of a service: `rollout:` (a switch reaches the proxies wave by wave) and
//! `group:` (services that move together). Plain data; which proxy is in which wave is
//! worked out from its node in [`crate::fleet`].

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use serde::Serialize;

/// How long each wave runs before the next gets the switch, unless the file says.
pub const DEFAULT_SOAK: Duration = Duration::from_secs(30);

/// A service's rollout: a switch (or a rollback the operator asks for) reaches the proxies
/// of the first wave, then the next once every proxy of the waves so far has acknowledged
/// it and it soaked (with a `bake`, its error ratio held) for `soak`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Rollout {
    /// In order. A proxy is in the first wave whose selector it matches; a proxy that
    /// matches none is in the last.
    pub waves: Vec<Selector>,
    #[serde(serialize_with = "crate::state::workflow::humane")]
    pub soak: Duration,
}

impl Rollout {
    /// The index of the last wave.
    pub fn last(&self) -> usize {
        self.waves.len().saturating_sub(1)
    }
}

/// Which proxies a wave holds, by what their node says. Every key given must match; a
/// selector with none matches every proxy.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct Selector {
    /// The node's `cluster`, exactly.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cluster: Option<String>,
    /// A glob over the node's `id` (`*`, `?`, `[a-z]`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// The node's locality, exactly.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub zone: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sub_zone: Option<String>,
    /// String fields of the node's metadata, exactly.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub metadata: BTreeMap<String, String>,
}

/// `zone=a, cluster=edge`, or `every proxy`: how `/status` and events name a wave.
impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts: Vec<String> = [
            ("cluster", &self.cluster),
            ("node", &self.node),
            ("region", &self.region),
            ("zone", &self.zone),
            ("sub_zone", &self.sub_zone),
        ]
        .into_iter()
        .filter_map(|(k, v)| v.as_ref().map(|v| format!("{k}={v}")))
        .collect();
        parts.extend(
            self.metadata
                .iter()
                .map(|(k, v)| format!("metadata.{k}={v}")),
        );
        if parts.is_empty() {
            f.write_str("every proxy")
        } else {
            f.write_str(&parts.join(", "))
        }
    }
}
