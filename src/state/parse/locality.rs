//! Where a color's backends are and how Envoy fails over between them: `localities`
//! (endpoints by region, zone and sub-zone, with a priority), `outlier_detection`,
//! `health_check`, and the service's `retries`.

use std::time::Duration;

use serde::Deserialize;
use serde_saphyr::Spanned;

use super::problems::Problems;
use super::upstream;
use super::workflow::{Scalar, duration, int_in, probe_path};
use crate::state::model::{Color, Endpoint, HealthCheck, LocalityGroup, OutlierDetection};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLocality {
    region: Option<Spanned<String>>,
    zone: Option<Spanned<String>>,
    sub_zone: Option<Spanned<String>>,
    priority: Option<Spanned<i64>>,
    endpoints: Spanned<Vec<Spanned<String>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawOutlierDetection {
    consecutive_5xx: Option<Spanned<i64>>,
    interval: Option<Spanned<Scalar>>,
    base_ejection_time: Option<Spanned<Scalar>>,
    max_ejection_percent: Option<Spanned<i64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawHealthCheck {
    path: Option<Spanned<String>>,
    interval: Option<Spanned<Scalar>>,
    timeout: Option<Spanned<Scalar>>,
    unhealthy_threshold: Option<Spanned<i64>>,
    healthy_threshold: Option<Spanned<i64>>,
}

/// Envoy's priorities go from 0 to this.
const MAX_PRIORITY: u32 = 9;

/// `localities:`: each group valid, priorities from 0 with no gap (Envoy's rule), and the
/// same endpoint in one group only. Returns the groups and all their endpoints.
pub(super) fn localities(
    problems: &mut Problems,
    color: Color,
    raw: Spanned<Vec<Spanned<RawLocality>>>,
) -> Option<(Vec<LocalityGroup>, Vec<Endpoint>)> {
    if raw.value.is_empty() {
        problems.at(
            raw.referenced,
            format!("{color} must list at least one locality"),
        );
        return None;
    }
    let mut groups = Vec::new();
    let mut all: Vec<Endpoint> = Vec::new();
    let mut ok = true;
    for item in raw.value {
        let l = item.value;
        let text =
            |v: Option<Spanned<String>>| v.map(|v| v.value.trim().to_owned()).unwrap_or_default();
        let (region, zone, sub_zone) = (text(l.region), text(l.zone), text(l.sub_zone));
        if region.is_empty() && zone.is_empty() && sub_zone.is_empty() {
            problems.at(
                item.referenced,
                "a locality names at least one of `region`, `zone` and `sub_zone`",
            );
            ok = false;
        }
        let given = l.priority.is_some();
        let priority = given.then(|| int_in(problems, "priority", l.priority, 0, 0..=MAX_PRIORITY));
        let Some(endpoints) = upstream::endpoints(problems, color, l.endpoints) else {
            ok = false;
            continue;
        };
        for e in &endpoints {
            if all.contains(e) {
                problems.at(
                    item.referenced,
                    format!("endpoint `{e}` is in two localities of {color}"),
                );
                ok = false;
            }
        }
        all.extend(endpoints.iter().cloned());
        groups.push(LocalityGroup {
            region,
            zone,
            sub_zone,
            priority,
            endpoints,
        });
    }
    if let Some(first) = all.first()
        && all
            .iter()
            .any(|e| e.address().is_some() != first.address().is_some())
    {
        problems.at(
            raw.referenced,
            format!("{color}'s endpoints are all addresses or all DNS names, across localities"),
        );
        ok = false;
    }
    // With a priority anywhere, one not given is 0; with none, each proxy ranks them.
    if groups.iter().any(|g| g.priority.is_some()) {
        for g in &mut groups {
            g.priority.get_or_insert(0);
        }
    }
    let highest = groups.iter().filter_map(|g| g.priority).max().unwrap_or(0);
    if let Some(missing) = (0..highest).find(|p| !groups.iter().any(|g| g.priority == Some(*p))) {
        problems.at(
            raw.referenced,
            format!(
                "{color}'s localities skip priority {missing}: priorities go from 0 up with no gap"
            ),
        );
        ok = false;
    }
    ok.then_some((groups, all))
}

/// `outlier_detection:`, with defaults that eject a failing backend fast: 3 errors in a
/// row, checked every second, ejected 30 s (longer each time), every backend if need be.
pub(super) fn outlier_detection(
    problems: &mut Problems,
    raw: Option<Spanned<RawOutlierDetection>>,
) -> Option<OutlierDetection> {
    let o = raw?.value;
    let ms = Duration::from_millis;
    Some(OutlierDetection {
        consecutive_5xx: int_in(problems, "consecutive_5xx", o.consecutive_5xx, 3, 1..=1000),
        interval: duration(problems, "interval", o.interval, ms(1000), ms(100)),
        base_ejection_time: duration(
            problems,
            "base_ejection_time",
            o.base_ejection_time,
            ms(30_000),
            ms(100),
        ),
        max_ejection_percent: int_in(
            problems,
            "max_ejection_percent",
            o.max_ejection_percent,
            100,
            1..=100,
        ),
    })
}

/// `health_check:`: GET `path` (default `/healthz`) on every backend every `interval`.
pub(super) fn health_check(
    problems: &mut Problems,
    raw: Option<Spanned<RawHealthCheck>>,
) -> Option<HealthCheck> {
    let h = raw?.value;
    let ms = Duration::from_millis;
    Some(HealthCheck {
        path: probe_path(problems, h.path),
        interval: duration(problems, "interval", h.interval, ms(1000), ms(100)),
        timeout: duration(problems, "timeout", h.timeout, ms(1000), ms(10)),
        unhealthy_threshold: int_in(
            problems,
            "unhealthy_threshold",
            h.unhealthy_threshold,
            2,
            1..=100,
        ),
        healthy_threshold: int_in(
            problems,
            "healthy_threshold",
            h.healthy_threshold,
            2,
            1..=100,
        ),
    })
}

/// A service's `retries:` (1 to 5).
pub(super) fn retries(problems: &mut Problems, raw: Option<Spanned<i64>>) -> Option<u32> {
    raw.is_some()
        .then(|| int_in(problems, "retries", raw, 2, 1..=5))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::state::parse::parse_str;

    const GOOD: &str = include_str!("../../../tests/fixtures/one_service.yaml");

    fn with_blue(blue: &str) -> String {
        GOOD.replace(
            "      endpoints: [\"127.0.0.1:8081\"]\n",
            &format!("{blue}\n"),
        )
    }

    fn problems(blue: &str) -> Vec<String> {
        parse_str(&with_blue(blue))
            .unwrap_err()
            .into_iter()
            .map(|p| format!("{}:{}: {}", p.line, p.column, p.message))
            .collect()
    }

    #[test]
    fn localities_keep_their_place_and_priority_and_every_endpoint_is_the_color_s() {
        let s = parse_str(&with_blue(
            "      localities:\n        - {region: r1, zone: a, endpoints: [\"127.0.0.1:8081\"]}\n        - {region: r1, zone: b, priority: 1, endpoints: [\"127.0.0.1:8083\"]}\n      outlier_detection: {}\n      health_check: {interval: 2s}",
        ))
        .unwrap();
        let blue = &s.services[0].blue;
        assert_eq!(blue.localities.len(), 2);
        assert_eq!(
            (
                blue.localities[1].zone.as_str(),
                blue.localities[1].priority
            ),
            ("b", Some(1))
        );
        assert_eq!(
            blue.localities[0].priority,
            Some(0),
            "0 when another gives one"
        );
        assert_eq!(blue.endpoints.len(), 2);
        let o = blue.outlier_detection.as_ref().unwrap();
        assert_eq!((o.consecutive_5xx, o.max_ejection_percent), (3, 100));
        let h = blue.health_check.as_ref().unwrap();
        assert_eq!(
            (h.path.as_str(), h.interval),
            ("/healthz", Duration::from_secs(2))
        );
    }

    #[test]
    fn localities_without_any_priority_are_ranked_per_proxy_nearest_first() {
        let s = parse_str(&with_blue(
            "      localities:\n        - {region: eu, zone: eu-a, endpoints: [\"127.0.0.1:8081\"]}\n        - {region: eu, zone: eu-b, endpoints: [\"127.0.0.1:8083\"]}\n        - {region: us, zone: us-a, endpoints: [\"127.0.0.1:8084\"]}",
        ))
        .unwrap();
        let blue = &s.services[0].blue;
        assert!(blue.ranks_per_proxy());
        let ranked = |region: &str, zone: &str| {
            let mut c = blue.clone();
            c.ranked_for(region, zone);
            c.localities
                .iter()
                .map(|g| g.priority.unwrap())
                .collect::<Vec<_>>()
        };
        assert_eq!(
            ranked("eu", "eu-b"),
            [1, 0, 2],
            "own zone, own region, the rest"
        );
        assert_eq!(
            ranked("us", "us-b"),
            [1, 1, 0],
            "no gap: us-a's region first"
        );
        assert_eq!(ranked("ap", "ap-a"), [0, 0, 0], "all as far");
    }

    #[test]
    fn a_priority_gap_a_shared_endpoint_and_both_lists_are_refused() {
        assert_eq!(
            problems(
                "      localities:\n        - {zone: a, endpoints: [\"127.0.0.1:8081\"]}\n        - {zone: b, priority: 2, endpoints: [\"127.0.0.1:8083\"]}"
            ),
            ["11:9: blue's localities skip priority 1: priorities go from 0 up with no gap"]
        );
        assert_eq!(
            problems(
                "      localities:\n        - {zone: a, endpoints: [\"127.0.0.1:8081\"]}\n        - {zone: b, endpoints: [\"127.0.0.1:8081\"]}"
            ),
            ["12:11: endpoint `127.0.0.1:8081` is in two localities of blue"]
        );
        assert_eq!(
            problems(
                "      endpoints: [\"127.0.0.1:8081\"]\n      localities:\n        - {zone: a, endpoints: [\"127.0.0.1:8083\"]}"
            ),
            [
                "12:9: blue lists `endpoints` and `localities`: give one (`localities` hold their own endpoints)"
            ]
        );
        assert_eq!(
            problems("      localities:\n        - {endpoints: [\"127.0.0.1:8081\"]}"),
            ["11:11: a locality names at least one of `region`, `zone` and `sub_zone`"]
        );
    }

    #[test]
    fn retries_are_one_to_five() {
        let text = GOOD.replace("    active: blue\n", "    active: blue\n    retries: 9\n");
        let p = parse_str(&text).unwrap_err();
        assert_eq!(p[0].message, "retries 9 is out of range 1-5");
        let text = GOOD.replace("    active: blue\n", "    active: blue\n    retries: 2\n");
        assert_eq!(parse_str(&text).unwrap().services[0].retries, Some(2));
    }
}
