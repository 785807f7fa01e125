//! The bake's verdict: does the new color's real traffic (the fleet's load reports) or its
//! probe say it must give the traffic back? Pure.

use crate::state::Bake;

use super::decide::Trip;

/// The new color's traffic across the fleet since the bake began.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Traffic {
    pub requests: u64,
    pub errors: u64,
    /// Per proxy: (node id, requests, errors).
    pub proxies: Vec<(String, u64, u64)>,
}

impl Traffic {
    /// What came after `before` (an earlier reading of the same window).
    pub fn since(&self, before: &Traffic) -> Traffic {
        let earlier: std::collections::HashMap<&str, (u64, u64)> = before
            .proxies
            .iter()
            .map(|(n, r, e)| (n.as_str(), (*r, *e)))
            .collect();
        let proxies = self
            .proxies
            .iter()
            .map(|(node, requests, errors)| {
                let (r0, e0) = earlier.get(node.as_str()).copied().unwrap_or((0, 0));
                (
                    node.clone(),
                    requests.saturating_sub(r0),
                    errors.saturating_sub(e0),
                )
            })
            .collect();
        Traffic {
            requests: self.requests.saturating_sub(before.requests),
            errors: self.errors.saturating_sub(before.errors),
            proxies,
        }
    }
}

/// Trips when the error ratio exceeds `max_error_ratio` over at least `min_requests`
/// requests, or when the probe reports failing endpoints (`failing`, with why).
pub fn judge(bake: &Bake, traffic: &Traffic, failing: &[(String, String)]) -> Option<Trip> {
    let too_many_errors = traffic.requests >= bake.min_requests
        && bake
            .max_error_ratio
            .exceeded_by(traffic.errors, traffic.requests);
    if !too_many_errors && failing.is_empty() {
        return None;
    }
    let mut proxies: Vec<(String, u64)> = traffic
        .proxies
        .iter()
        .filter(|(_, _, errors)| *errors > 0)
        .map(|(node, _, errors)| (node.clone(), *errors))
        .collect();
    proxies.sort();
    Some(Trip {
        errors: traffic.errors,
        requests: traffic.requests,
        proxies,
        failing_endpoints: failing.to_vec(),
        after: std::time::Duration::ZERO,
        window: bake.window,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::Ratio;
    use std::time::Duration;

    fn bake(ratio: f64, min_requests: u64) -> Bake {
        Bake {
            window: Duration::from_secs(60),
            max_error_ratio: Ratio::from_f64(ratio).unwrap(),
            min_requests,
            probe: None,
        }
    }

    fn traffic(requests: u64, errors: u64) -> Traffic {
        Traffic {
            requests,
            errors,
            proxies: vec![
                ("envoy-1".into(), requests / 2, errors),
                ("envoy-2".into(), requests - requests / 2, 0),
            ],
        }
    }

    #[test]
    fn errors_above_the_ratio_over_enough_requests_trip() {
        let trip = judge(&bake(0.05, 20), &traffic(100, 6), &[]).unwrap();
        assert_eq!((trip.errors, trip.requests), (6, 100));
        assert_eq!(trip.proxies, [("envoy-1".to_owned(), 6)]);
    }

    #[test]
    fn errors_at_the_ratio_do_not_trip() {
        assert_eq!(judge(&bake(0.05, 20), &traffic(100, 5), &[]), None);
    }

    #[test]
    fn too_few_requests_are_not_judged() {
        assert_eq!(judge(&bake(0.05, 20), &traffic(19, 19), &[]), None);
    }

    #[test]
    fn failing_probes_trip_without_traffic() {
        let failing = [("127.0.0.1:8082".to_owned(), "status 503".to_owned())];
        let trip = judge(&bake(0.05, 20), &Traffic::default(), &failing).unwrap();
        assert_eq!(trip.failing_endpoints, failing);
    }

    #[test]
    fn traffic_since_a_baseline_counts_only_what_came_after() {
        let before = traffic(40, 30);
        let after = Traffic {
            requests: 140,
            errors: 31,
            proxies: vec![("envoy-1".into(), 70, 31), ("envoy-2".into(), 70, 0)],
        };
        let since = after.since(&before);
        assert_eq!((since.requests, since.errors), (100, 1));
        assert_eq!(since.proxies[0], ("envoy-1".to_owned(), 50, 1));
        assert_eq!(judge(&bake(0.05, 20), &since, &[]), None);
    }

    #[test]
    fn a_zero_ratio_trips_on_the_first_error() {
        assert!(judge(&bake(0.0, 1), &traffic(1000, 1), &[]).is_some());
        assert_eq!(judge(&bake(0.0, 1), &traffic(1000, 0), &[]), None);
    }
}
