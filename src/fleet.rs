//! Which proxy is in which wave of a rollout, and the snapshot variants that hold a switch
//! back from the waves it has not reached yet, or rank a color's localities from where the
//! proxy is.
//!
//! A rolling unit is one service with a `rollout:` whose switch is on its way through the
//! waves, or a release group of them (they share the rollout, so they move together). Its
//! waves are matched against each proxy's node once per stream and snapshot; the proxy
//! gets the published snapshot when every unit has reached its wave, else the variant in
//! which the units it has not reached keep their previous color. The variant key is one
//! byte per unit (reached or not), so the number of snapshots is bounded by the
//! combinations of reached units the connected proxies fall into: one unit rolling, two
//! snapshots, however many proxies and waves.
//!
//! A color whose localities give no priority is ranked per proxy: its zone first, then its
//! region, then the rest. The proxy's region and zone then join its key, so there is one
//! variant per zone the proxies are in (and none for a proxy without a locality: it gets
//! every locality at one priority).

use std::sync::Arc;

use envoy_types::pb::envoy::config::core::v3::Node;
use globset::{Glob, GlobMatcher};
use tracing::error;

use crate::proxies::ProxyRegistry;
use crate::state::files::Files;
use crate::state::{Color, DesiredState, Rollout, Selector};
use crate::xds::cache::{Published, Variants};
use crate::xds::snapshot::{InconsistentSnapshot, Snapshot};
use crate::xds::sync::ProxyStatus;

/// A selector ready to match nodes (its glob compiled once).
#[derive(Debug, Clone)]
pub struct Matcher {
    selector: Selector,
    /// The node-id glob, if any (`Some(None)`: one that does not compile, matching nothing).
    node: Option<Option<GlobMatcher>>,
}

impl Matcher {
    pub fn new(selector: &Selector) -> Matcher {
        Matcher {
            selector: selector.clone(),
            // Validation compiled it already; a glob that does not compile matches nothing.
            node: selector
                .node
                .as_deref()
                .map(|g| Glob::new(g).map(|g| g.compile_matcher()).ok()),
        }
    }

    /// Does `node` carry everything the selector asks?
    pub fn matches(&self, node: &Node) -> bool {
        let s = &self.selector;
        let locality = node.locality.as_ref();
        let field = |want: &Option<String>, have: Option<&str>| {
            want.as_deref().is_none_or(|w| have == Some(w))
        };
        field(&s.cluster, Some(node.cluster.as_str()))
            && self
                .node
                .as_ref()
                .is_none_or(|g| g.as_ref().is_some_and(|g| g.is_match(&node.id)))
            && field(&s.region, locality.map(|l| l.region.as_str()))
            && field(&s.zone, locality.map(|l| l.zone.as_str()))
            && field(&s.sub_zone, locality.map(|l| l.sub_zone.as_str()))
            && s.metadata
                .iter()
                .all(|(k, v)| metadata_string(node, k) == Some(v))
    }
}

/// A string field of the node's metadata (a number is compared as its text).
fn metadata_string<'a>(node: &'a Node, key: &str) -> Option<&'a String> {
    use envoy_types::pb::google::protobuf::value::Kind;
    match node.metadata.as_ref()?.fields.get(key)?.kind.as_ref()? {
        Kind::StringValue(s) => Some(s),
        _ => None,
    }
}

/// A rollout's waves, ready to place proxies.
#[derive(Debug, Clone)]
pub struct Waves {
    matchers: Vec<Matcher>,
}

impl Waves {
    pub fn new(rollout: &Rollout) -> Waves {
        Waves {
            matchers: rollout.waves.iter().map(Matcher::new).collect(),
        }
    }

    /// One wave of every proxy (a ramp's step waits for all of them).
    pub fn everyone() -> Waves {
        Waves {
            matchers: vec![Matcher::new(&Selector::default())],
        }
    }

    /// The wave `node` is in (from 0): the first whose selector it matches, else the last.
    pub fn wave_of(&self, node: &Node) -> usize {
        self.matchers
            .iter()
            .position(|m| m.matches(node))
            .unwrap_or(self.matchers.len().saturating_sub(1))
    }
}

/// The proxies of one wave, and where they stand.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct WaveCensus {
    pub proxies: usize,
    /// Synced at the state they are owed now.
    pub synced: usize,
    /// Subscribed to nothing yet: they hold nothing to wait for.
    pub connecting: usize,
}

impl WaveCensus {
    /// Every proxy holds what it is owed, or holds nothing yet.
    pub fn settled(&self) -> bool {
        self.synced + self.connecting == self.proxies
    }
}

/// Each wave's proxies, and how many hold the snapshot (or variant) `published` owes
/// them.
pub fn census(
    registry: &ProxyRegistry,
    published: &Arc<Published>,
    waves: &Waves,
) -> Vec<WaveCensus> {
    let mut census = vec![WaveCensus::default(); waves.matchers.len().max(1)];
    registry.each(|p| {
        let Some(node) = p.node.as_deref() else {
            let last = census.last_mut().expect("at least one wave");
            last.proxies += 1;
            last.connecting += 1;
            return;
        };
        let wave = &mut census[waves.wave_of(node)];
        wave.proxies += 1;
        match p.status {
            ProxyStatus::Connecting => wave.connecting += 1,
            ProxyStatus::Synced
                if p.state_version == published.for_node(Some(node)).snapshot().state_version =>
            {
                wave.synced += 1
            }
            _ => {}
        }
    });
    census
}

/// One service (or release group) whose switch is on its way through its waves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rolling {
    /// The services that move (one, or a release group's members).
    pub services: Vec<String>,
    /// The color the waves not reached yet keep.
    pub from: Color,
    /// The last wave that has the switch (from 0).
    pub reached: usize,
}

/// The variants of a published state while some units roll out (see the module docs).
pub struct FleetVariants {
    units: Vec<(Rolling, Waves)>,
    /// The (region, zone) of each locality of the colors that rank theirs per proxy: a
    /// node's region and zone count only as far as they are among these (a proxy
    /// elsewhere ranks them like one with no locality), so there are at most as many
    /// variants as the file names places, whatever the nodes say.
    places: Vec<(String, String)>,
    state: Arc<DesiredState>,
    files: Arc<Files>,
    translate: fn(&DesiredState, &Files) -> Result<Snapshot, InconsistentSnapshot>,
}

impl std::fmt::Debug for FleetVariants {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FleetVariants")
            .field("units", &self.units)
            .finish_non_exhaustive()
    }
}

impl FleetVariants {
    /// The variants of `state` (in force, every switch complete) while `rolling` roll out,
    /// and where colors rank their localities per proxy; `None` when neither. Each unit's waves come from the rollout of its first
    /// service (a group's members share one).
    pub fn new(
        rolling: &[Rolling],
        state: Arc<DesiredState>,
        files: Arc<Files>,
        translate: fn(&DesiredState, &Files) -> Result<Snapshot, InconsistentSnapshot>,
    ) -> Option<Arc<FleetVariants>> {
        let units: Vec<(Rolling, Waves)> = rolling
            .iter()
            .filter_map(|r| {
                let first = state.service(r.services.first()?)?;
                Some((r.clone(), Waves::new(first.rollout.as_ref()?)))
            })
            .collect();
        let mut places: Vec<(String, String)> = state
            .services
            .iter()
            .flat_map(|s| [&s.blue, &s.green])
            .filter(|c| c.ranks_per_proxy())
            .flat_map(|c| &c.localities)
            .map(|l| (l.region.clone(), l.zone.clone()))
            .collect();
        places.sort();
        places.dedup();
        if units.is_empty() && places.is_empty() {
            return None;
        }
        Some(Arc::new(FleetVariants {
            units,
            places,
            state,
            files,
            translate,
        }))
    }
}

impl Variants for FleetVariants {
    /// One byte per rolling unit (1: not reached), then, when colors rank their
    /// localities per proxy and the node is in a region the file names: the region's
    /// length (4 bytes), the region, and the zone if the file names it in that region.
    fn key(&self, node: &Node) -> Option<Vec<u8>> {
        let mut key: Vec<u8> = self
            .units
            .iter()
            .map(|(r, waves)| u8::from(waves.wave_of(node) > r.reached))
            .collect();
        let mut varies = key.contains(&1);
        if let Some(l) = &node.locality
            && !l.region.is_empty()
            && self.places.iter().any(|(region, _)| *region == l.region)
        {
            let known_zone = self
                .places
                .iter()
                .any(|(region, zone)| *region == l.region && *zone == l.zone);
            let len = u32::try_from(l.region.len()).unwrap_or(u32::MAX);
            key.extend_from_slice(&len.to_le_bytes());
            key.extend_from_slice(l.region.as_bytes());
            if known_zone {
                key.extend_from_slice(l.zone.as_bytes());
            }
            varies = true;
        }
        varies.then_some(key)
    }

    fn on_the_way(&self) -> bool {
        !self.units.is_empty()
    }

    fn build(&self, key: &[u8]) -> Option<Snapshot> {
        let mut state = (*self.state).clone();
        let (held, locality) = key.split_at(self.units.len().min(key.len()));
        if let Some((len, rest)) = locality.split_first_chunk::<4>() {
            let len = usize::try_from(u32::from_le_bytes(*len)).unwrap_or(usize::MAX);
            let (region, zone) = rest.split_at(len.min(rest.len()));
            let (region, zone) = (
                String::from_utf8_lossy(region),
                String::from_utf8_lossy(zone),
            );
            for s in &mut state.services {
                s.blue.ranked_for(&region, &zone);
                s.green.ranked_for(&region, &zone);
            }
        }
        for ((rolling, _), held) in self.units.iter().zip(held) {
            if *held == 0 {
                continue;
            }
            for s in &mut state.services {
                if rolling.services.contains(&s.name) {
                    s.active = rolling.from;
                }
            }
        }
        match (self.translate)(&state, &self.files) {
            Ok(snapshot) => Some(snapshot),
            Err(e) => {
                error!(error = %e, "bug: a wave's variant of a valid state translated inconsistently; its proxies get the switch early");
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use envoy_types::pb::envoy::config::core::v3::Locality;
    use envoy_types::pb::google::protobuf::{Struct, Value, value::Kind};

    fn node(id: &str, cluster: &str, zone: &str) -> Node {
        Node {
            id: id.into(),
            cluster: cluster.into(),
            locality: Some(Locality {
                region: "eu".into(),
                zone: zone.into(),
                sub_zone: String::new(),
            }),
            ..Default::default()
        }
    }

    fn rollout(yaml_waves: &str) -> Rollout {
        let text = include_str!("../tests/fixtures/one_service.yaml").replace(
            "    active: blue\n",
            &format!("    active: blue\n    rollout:\n      waves: {yaml_waves}\n"),
        );
        let state = crate::state::parse_str(&text).unwrap();
        state.services[0].rollout.clone().unwrap()
    }

    #[test]
    fn a_proxy_is_in_the_first_wave_it_matches_and_else_in_the_last() {
        let waves = Waves::new(&rollout(
            "[{zone: a}, {cluster: edge, node: \"edge-1*\"}, {region: us}]",
        ));
        assert_eq!(waves.wave_of(&node("x", "core", "a")), 0);
        assert_eq!(waves.wave_of(&node("edge-12", "edge", "b")), 1);
        assert_eq!(
            waves.wave_of(&node("edge-2", "edge", "b")),
            2,
            "no match: last"
        );
        assert_eq!(waves.wave_of(&Node::default()), 2, "no locality: last");
    }

    #[test]
    fn metadata_selectors_compare_string_fields() {
        let waves = Waves::new(&rollout("[{metadata: {ring: canary}}, {}]"));
        let mut canary = node("x", "c", "a");
        canary.metadata = Some(Struct {
            fields: [(
                "ring".to_owned(),
                Value {
                    kind: Some(Kind::StringValue("canary".into())),
                },
            )]
            .into(),
        });
        assert_eq!(waves.wave_of(&canary), 0);
        assert_eq!(waves.wave_of(&node("y", "c", "a")), 1);
    }

    #[test]
    fn proxies_of_waves_not_reached_get_the_previous_color_and_share_one_variant() {
        let text = include_str!("../tests/fixtures/one_service.yaml").replace(
            "    active: blue\n",
            "    active: green\n    rollout:\n      waves: [{zone: a}, {zone: b}, {}]\n",
        );
        let state = Arc::new(crate::state::parse_str(&text).unwrap());
        let rolling = [Rolling {
            services: vec!["summarizer".into()],
            from: Color::Blue,
            reached: 0,
        }];
        let variants = FleetVariants::new(
            &rolling,
            state.clone(),
            Arc::new(Files::default()),
            crate::translate::translate_with,
        )
        .unwrap();
        assert_eq!(variants.key(&node("a1", "c", "a")), None);
        let b = variants.key(&node("b1", "c", "b")).unwrap();
        assert_eq!(variants.key(&node("z1", "c", "z")), Some(b.clone()));
        let held = variants.build(&b).unwrap();
        let base = crate::translate::translate(&state).unwrap();
        assert_ne!(held.state_version, base.state_version);
        let mut blue = (*state).clone();
        blue.services[0].active = Color::Blue;
        let blue = crate::translate::translate(&blue).unwrap();
        assert_eq!(held.state_version, blue.state_version);
    }

    #[test]
    fn localities_ranked_per_proxy_vary_only_by_the_places_the_file_names() {
        let text = include_str!("../tests/fixtures/one_service.yaml").replace(
            "      endpoints: [\"127.0.0.1:8081\"]\n",
            "      localities:\n        - {region: eu, zone: a, endpoints: [\"127.0.0.1:8081\"]}\n        - {region: eu, zone: b, endpoints: [\"127.0.0.1:8083\"]}\n",
        );
        let state = Arc::new(crate::state::parse_str(&text).unwrap());
        let variants = FleetVariants::new(
            &[],
            state,
            Arc::new(Files::default()),
            crate::translate::translate_with,
        )
        .expect("ranked localities make variants");
        let in_zone = |region: &str, zone: &str| {
            let mut n = node("x", "c", zone);
            n.locality.as_mut().unwrap().region = region.into();
            variants.key(&n)
        };
        assert_ne!(in_zone("eu", "a"), in_zone("eu", "b"));
        assert_eq!(in_zone("us", "a"), None, "a region the file does not name");
        assert_eq!(
            in_zone("eu", "c"),
            in_zone("eu", &"z".repeat(10_000)),
            "zones the file does not name share one variant"
        );
        let a = variants.build(&in_zone("eu", "a").unwrap()).unwrap();
        let b = variants.build(&in_zone("eu", "b").unwrap()).unwrap();
        assert_ne!(a.state_version, b.state_version);
    }
}
