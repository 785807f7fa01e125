//! The fleet keys of a service, `rollout:` and `group:`, from their raw YAML form to the
//! model, each problem at the value it concerns; and the rule that binds a release
//! group's members to one rollout.

use std::collections::{BTreeMap, HashMap};

use serde::Deserialize;
use serde_saphyr::{Location, Spanned};

use super::problems::{Problems, check_name};
use super::workflow::{Scalar, duration};
use crate::state::fleet::{DEFAULT_SOAK, Rollout, Selector};
use crate::state::model::Service;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRollout {
    waves: Spanned<Vec<Spanned<RawSelector>>>,
    soak: Option<Spanned<Scalar>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSelector {
    cluster: Option<Spanned<String>>,
    node: Option<Spanned<String>>,
    region: Option<Spanned<String>>,
    zone: Option<Spanned<String>>,
    sub_zone: Option<Spanned<String>>,
    metadata: Option<Spanned<BTreeMap<String, Spanned<Scalar>>>>,
}

/// At most this many waves: a rollout is a few steps across a fleet, not one per proxy.
pub const MAX_WAVES: usize = 10;

/// Matched against node fields of at most a few hundred bytes.
const MAX_SELECTOR_TEXT: usize = 256;

/// `rollout:`: two waves or more (up to [`MAX_WAVES`]), each a valid selector, and no two
/// alike (the second would never hold a proxy).
pub(super) fn rollout(
    problems: &mut Problems,
    raw: Option<Spanned<RawRollout>>,
) -> Option<Rollout> {
    let raw = raw?.value;
    let soak = duration(
        problems,
        "soak",
        raw.soak,
        DEFAULT_SOAK,
        std::time::Duration::ZERO,
    );
    let n = raw.waves.value.len();
    if !(2..=MAX_WAVES).contains(&n) {
        problems.at(
            raw.waves.referenced,
            format!("a rollout has from 2 to {MAX_WAVES} waves, not {n}"),
        );
        return None;
    }
    let mut waves: Vec<Selector> = Vec::with_capacity(n);
    // The waves without a problem, by index: only those are compared.
    let mut valid: Vec<usize> = Vec::with_capacity(n);
    for (i, w) in raw.waves.value.into_iter().enumerate() {
        let at = w.referenced;
        let before = problems.0.len();
        let selector = selector(problems, w.value);
        let alike = |other: &Selector| valid.iter().position(|&j| waves[j] == *other);
        if problems.0.len() > before {
            // A selector with a problem is not compared with the others.
        } else if let Some(earlier) = alike(&selector).map(|k| valid[k]) {
            problems.at(
                at,
                format!(
                    "wave {} selects the same proxies as wave {}: it would never hold one",
                    i + 1,
                    earlier + 1
                ),
            );
        } else if let Some(earlier) = alike(&Selector::default()).map(|k| valid[k]) {
            problems.at(
                at,
                format!(
                    "wave {} comes after wave {}, which selects every proxy: it would never \
                     hold one",
                    i + 1,
                    earlier + 1
                ),
            );
        } else {
            valid.push(i);
        }
        waves.push(selector);
    }
    Some(Rollout { waves, soak })
}

fn selector(problems: &mut Problems, raw: RawSelector) -> Selector {
    let mut text = |key: &str, v: Option<Spanned<String>>| {
        let v = v?;
        if v.value.is_empty() || v.value.len() > MAX_SELECTOR_TEXT {
            problems.at(
                v.referenced,
                format!("{key} must be 1 to {MAX_SELECTOR_TEXT} characters"),
            );
            return None;
        }
        Some((v.value, v.referenced))
    };
    let cluster = text("cluster", raw.cluster).map(|v| v.0);
    let node = text("node", raw.node);
    let region = text("region", raw.region).map(|v| v.0);
    let zone = text("zone", raw.zone).map(|v| v.0);
    let sub_zone = text("sub_zone", raw.sub_zone).map(|v| v.0);
    let node = node.and_then(|(glob, at)| match globset::Glob::new(&glob) {
        Ok(_) => Some(glob),
        Err(e) => {
            problems.at(at, format!("node `{glob}` is not a glob: {}", e.kind()));
            None
        }
    });
    let metadata = raw
        .metadata
        .map(|m| {
            m.value
                .into_iter()
                .map(|(k, v)| (k, v.value.0))
                .collect::<BTreeMap<_, _>>()
        })
        .unwrap_or_default();
    Selector {
        cluster,
        node,
        region,
        zone,
        sub_zone,
        metadata,
    }
}

/// `group:`: a name.
pub(super) fn group(problems: &mut Problems, raw: Option<Spanned<String>>) -> Option<String> {
    let raw = raw?;
    check_name(problems, "group", &raw);
    Some(raw.value)
}

/// The members of a release group move as one: they must declare the same rollout (or
/// none), so that every proxy gets all of them in the same wave, and the same ramp (or
/// none), so that they step (and pause) together.
pub(super) fn check_groups(problems: &mut Problems, services: &[Service], at: &[Location]) {
    let mut first: HashMap<&str, &Service> = HashMap::new();
    for (s, at) in services.iter().zip(at) {
        let Some(group) = &s.group else { continue };
        match first.get(group.as_str()) {
            None => {
                first.insert(group, s);
            }
            Some(leader) if leader.rollout != s.rollout => problems.at(
                *at,
                format!(
                    "`{}` and `{}` are in release group `{group}` but declare different \
                     rollouts; the members of a group move together, wave by wave",
                    leader.name, s.name
                ),
            ),
            Some(leader) if leader.ramp != s.ramp => problems.at(
                *at,
                format!(
                    "`{}` and `{}` are in release group `{group}` but declare different \
                     ramps; the members of a group move together, step by step",
                    leader.name, s.name
                ),
            ),
            Some(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::state::parse::parse_str;

    const GOOD: &str = include_str!("../../../tests/fixtures/one_service.yaml");

    fn with(extra: &str) -> String {
        GOOD.replace("    active: blue\n", &format!("    active: blue\n{extra}"))
    }

    fn problems(extra: &str) -> Vec<String> {
        parse_str(&with(extra))
            .unwrap_err()
            .into_iter()
            .map(|p| format!("{}:{}: {}", p.line, p.column, p.message))
            .collect()
    }

    #[test]
    fn a_rollout_lists_its_waves_in_order_with_a_soak() {
        let state = parse_str(&with(
            "    rollout:\n      soak: 5s\n      waves:\n        - {zone: a, cluster: edge}\n        - {node: \"edge-*\", metadata: {ring: 2}}\n",
        ))
        .unwrap();
        let r = state.services[0].rollout.as_ref().unwrap();
        assert_eq!(r.soak, Duration::from_secs(5));
        assert_eq!(r.waves.len(), 2);
        assert_eq!(r.waves[0].to_string(), "cluster=edge, zone=a");
        assert_eq!(r.waves[1].to_string(), "node=edge-*, metadata.ring=2");
    }

    #[test]
    fn the_soak_defaults_to_thirty_seconds() {
        let state = parse_str(&with("    rollout:\n      waves: [{zone: a}, {}]\n")).unwrap();
        let r = state.services[0].rollout.as_ref().unwrap();
        assert_eq!(r.soak, Duration::from_secs(30));
        assert_eq!(r.waves[1].to_string(), "every proxy");
    }

    #[test]
    fn a_rollout_of_one_wave_is_refused() {
        assert_eq!(
            problems("    rollout:\n      waves: [{zone: a}]\n"),
            ["15:14: a rollout has from 2 to 10 waves, not 1"]
        );
    }

    #[test]
    fn a_wave_no_proxy_can_reach_is_refused() {
        assert_eq!(
            problems("    rollout:\n      waves: [{zone: a}, {zone: a}]\n"),
            ["15:26: wave 2 selects the same proxies as wave 1: it would never hold one"]
        );
        assert_eq!(
            problems("    rollout:\n      waves: [{}, {zone: a}]\n"),
            [
                "15:19: wave 2 comes after wave 1, which selects every proxy: it would never hold one"
            ]
        );
    }

    #[test]
    fn a_bad_node_glob_and_an_unknown_key_are_located() {
        let p = problems("    rollout:\n      waves: [{node: \"a[\"}, {}]\n");
        assert_eq!(p.len(), 1);
        assert!(p[0].starts_with("15:22: node `a[` is not a glob"), "{p:?}");
        let p = problems("    rollout:\n      waves: [{zonе: a}, {}]\n");
        assert!(p[0].contains("unknown field"), "{p:?}");
    }

    /// Two services in release group `chat`: summarizer with `first` keys, gateway with
    /// `second`.
    fn grouped(first: &str, second: &str) -> String {
        format!(
            "{GOOD}  - name: gateway\n    listener: public\n    domains: [gw]\n    blue:\n      endpoints: [\"127.0.0.1:8083\"]\n    green:\n      endpoints: [\"127.0.0.1:8084\"]\n    active: blue\n    group: chat\n{second}"
        )
        .replacen(
            "    active: blue\n",
            &format!("    active: blue\n    group: chat\n{first}"),
            1,
        )
    }

    fn messages(text: &str) -> Vec<String> {
        parse_str(text)
            .unwrap_err()
            .into_iter()
            .map(|p| p.message)
            .collect()
    }

    #[test]
    fn weights_with_a_rollout_are_refused() {
        let text = GOOD.replace(
            "    active: blue\n",
            "    weights: {blue: 90, green: 10}\n    rollout:\n      waves: [{zone: a}, {}]\n",
        );
        let p: Vec<String> = parse_str(&text)
            .unwrap_err()
            .into_iter()
            .map(|p| format!("{}:{}: {}", p.line, p.column, p.message))
            .collect();
        assert_eq!(
            p,
            [
                "13:14: `weights:` and `rollout:` cannot be combined: a rollout moves each wave of proxies from one color to the other; give `active`"
            ]
        );
    }

    #[test]
    fn members_of_a_release_group_must_share_their_rollout() {
        let waves = "    rollout:\n      waves: [{zone: a}, {}]\n";
        assert_eq!(
            messages(&grouped(waves, "")),
            [
                "`summarizer` and `gateway` are in release group `chat` but declare different rollouts; the members of a group move together, wave by wave"
            ]
        );
        let state = parse_str(&grouped(waves, waves)).unwrap();
        assert_eq!(state.services[1].group.as_deref(), Some("chat"));
    }

    #[test]
    fn members_of_a_release_group_must_share_their_ramp() {
        let ramp = "    ramp: {steps: [10, 100]}\n";
        let paused = "    ramp: {steps: [10, 100], paused: true}\n";
        assert_eq!(
            messages(&grouped(paused, ramp)),
            [
                "`summarizer` and `gateway` are in release group `chat` but declare different ramps; the members of a group move together, step by step"
            ]
        );
        assert!(parse_str(&grouped(ramp, ramp)).is_ok());
    }
}
