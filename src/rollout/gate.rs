//! The gate's verdict and the probe-based bake's: pure functions of each endpoint's
//! probe history and of the time, which is an argument (no I/O, no clock).
//!
//! - An endpoint is *healthy* once its last `successes` probes in a row answered the
//!   expected status (at least one: an endpoint never probed is never healthy). Any other
//!   answer, a timeout or a refused connection starts the count again.
//! - A gate *passes* when at least `healthy_share` percent of the color's endpoints are
//!   healthy, rounded up (2 of 3 at 50 %), and never with none: a color without endpoints
//!   does not pass. Until then it is *pending*, with each endpoint that is not healthy and
//!   why; once `deadline` has passed since the switch was asked for, it *gives up*. A gate
//!   that passes at its deadline passes.
//! - A bake probe finds a color *failing* when more than `100 - healthy_share` percent of
//!   its endpoints have failed their last `failures` probes in a row (at least one).

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::state::Probe;

/// What one probe of one endpoint saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProbeResult {
    /// The endpoint answered with this status.
    Status(u16),
    /// No whole answer within the probe's timeout.
    Timeout(Duration),
    /// Nothing listens there.
    Refused,
    /// Anything else: another connect error, a reset, a malformed response.
    Error(String),
}

impl ProbeResult {
    /// Whether it counts as a success for a probe expecting `expected`.
    pub fn passed(&self, expected: u16) -> bool {
        *self == ProbeResult::Status(expected)
    }
}

impl fmt::Display for ProbeResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProbeResult::Status(status) => write!(f, "status {status}"),
            ProbeResult::Timeout(timeout) => {
                write!(
                    f,
                    "no answer within {}",
                    humantime::format_duration(*timeout)
                )
            }
            ProbeResult::Refused => f.write_str("connection refused"),
            ProbeResult::Error(error) => f.write_str(error),
        }
    }
}

/// One endpoint's probes so far: how many in a row passed or failed, and the last result.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProbeHistory {
    successes: u32,
    failures: u32,
    last: Option<ProbeResult>,
}

impl ProbeHistory {
    /// Adds one result of a probe expecting status `expected`. Results must be recorded in
    /// the order the probes were sent (the prober has one probe in flight per endpoint).
    pub fn record(&mut self, result: ProbeResult, expected: u16) {
        if result.passed(expected) {
            self.successes = self.successes.saturating_add(1);
            self.failures = 0;
        } else {
            self.failures = self.failures.saturating_add(1);
            self.successes = 0;
        }
        self.last = Some(result);
    }

    /// Consecutive successes up to the last result.
    pub fn successes(&self) -> u32 {
        self.successes
    }

    /// Consecutive failures up to the last result.
    pub fn failures(&self) -> u32 {
        self.failures
    }

    pub fn last(&self) -> Option<&ProbeResult> {
        self.last.as_ref()
    }
}

/// How an endpoint no probe of which has come back yet reads.
pub const NOT_PROBED: &str = "not probed yet";

/// Why an endpoint does not count as healthy (gate) or counts as failing (bake).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotHealthy {
    /// No probe of it has come back yet.
    NotProbed,
    /// Its last `failures` probes failed, the last one with `result`.
    Failed {
        result: ProbeResult,
        expected: u16,
        failures: u32,
    },
    /// Its last probes passed, but fewer than `needed` in a row so far.
    Warming { successes: u32, needed: u32 },
}

impl fmt::Display for NotHealthy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NotHealthy::NotProbed => f.write_str(NOT_PROBED),
            NotHealthy::Failed {
                result: result @ ProbeResult::Status(_),
                expected,
                failures,
            } => write!(f, "{result}, expected {expected} ({failures} in a row)"),
            NotHealthy::Failed {
                result, failures, ..
            } => write!(f, "{result} ({failures} in a row)"),
            NotHealthy::Warming { successes, needed } => {
                write!(f, "{successes} of {needed} successes in a row")
            }
        }
    }
}

/// Where a gate stands: how many endpoints are healthy, how many must be, and why the
/// others are not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Standing {
    pub healthy: usize,
    pub total: usize,
    /// Healthy endpoints the gate needs to pass.
    pub needed: usize,
    /// Every endpoint that is not healthy, in the color's order, and why.
    pub failing: Vec<(SocketAddr, NotHealthy)>,
    /// Since the switch was asked for.
    pub waited: Duration,
}

/// Whether the switch to a gated color may go ahead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GateVerdict {
    /// Enough endpoints are healthy: switch.
    Passed(Standing),
    /// Not yet: keep the current color and keep probing.
    Pending(Standing),
    /// Not by the deadline: give the switch up.
    GaveUp(Standing),
}

impl GateVerdict {
    pub fn standing(&self) -> &Standing {
        match self {
            GateVerdict::Passed(standing)
            | GateVerdict::Pending(standing)
            | GateVerdict::GaveUp(standing) => standing,
        }
    }
}

/// The gate's verdict on a color with `endpoints`, whose probes so far are in `history`
/// (endpoints missing from it have not been probed; entries for other endpoints are
/// ignored), for a switch asked for at `started` that gives up after `deadline` (never if
/// `None`).
pub fn verdict(
    probe: &Probe,
    endpoints: &[SocketAddr],
    history: &HashMap<SocketAddr, ProbeHistory>,
    started: Instant,
    deadline: Option<Duration>,
    now: Instant,
) -> GateVerdict {
    let needed_successes = probe.successes.max(1);
    let mut healthy = 0;
    let mut failing = Vec::new();
    for &endpoint in endpoints {
        match history.get(&endpoint) {
            Some(h) if h.successes >= needed_successes => healthy += 1,
            Some(h) if h.successes > 0 => failing.push((
                endpoint,
                NotHealthy::Warming {
                    successes: h.successes,
                    needed: needed_successes,
                },
            )),
            Some(h) => failing.push((endpoint, failed(h, probe))),
            None => failing.push((endpoint, NotHealthy::NotProbed)),
        }
    }
    let total = endpoints.len();
    // At least one: a gate that passes with no healthy endpoint guards nothing.
    let needed = share_of(total, probe.healthy_share).max(1);
    let waited = now.saturating_duration_since(started);
    let standing = Standing {
        healthy,
        total,
        needed,
        failing,
        waited,
    };
    if healthy >= needed {
        GateVerdict::Passed(standing)
    } else if deadline.is_some_and(|deadline| waited >= deadline) {
        GateVerdict::GaveUp(standing)
    } else {
        GateVerdict::Pending(standing)
    }
}

/// What a probe-based bake sees in the color that took the traffic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BakeProbeVerdict {
    /// No more endpoints failing than the share tolerates.
    Steady,
    /// Too many endpoints failing: roll back.
    Failing {
        /// The endpoints with `failures` failed probes in a row, and their last result.
        failing: Vec<(SocketAddr, NotHealthy)>,
        total: usize,
        /// How many failing endpoints the share tolerates.
        tolerated: usize,
    },
}

/// The probe-based bake's verdict on a color with `endpoints` (see the module docs).
pub fn bake_probe_verdict(
    probe: &Probe,
    endpoints: &[SocketAddr],
    history: &HashMap<SocketAddr, ProbeHistory>,
) -> BakeProbeVerdict {
    let needed_failures = probe.failures.max(1);
    let failing: Vec<_> = endpoints
        .iter()
        .filter_map(|endpoint| {
            let h = history.get(endpoint)?;
            (h.failures >= needed_failures).then(|| (*endpoint, failed(h, probe)))
        })
        .collect();
    let total = endpoints.len();
    // More than (100 - healthy_share)% failing, in whole endpoints: more than the floor.
    let tolerated = total - share_of(total, probe.healthy_share);
    if failing.len() > tolerated {
        BakeProbeVerdict::Failing {
            failing,
            total,
            tolerated,
        }
    } else {
        BakeProbeVerdict::Steady
    }
}

/// `share` percent of `total`, rounded up (`share` above 100 counts as 100).
fn share_of(total: usize, share: u32) -> usize {
    let share = share.min(100) as usize;
    (total * share).div_ceil(100)
}

fn failed(history: &ProbeHistory, probe: &Probe) -> NotHealthy {
    match &history.last {
        Some(result) => NotHealthy::Failed {
            result: result.clone(),
            expected: probe.status,
            failures: history.failures,
        },
        None => NotHealthy::NotProbed,
    }
}

/// Whether a color's recent shadow traffic (`requests` answered, `errors` of them failed)
/// meets the gate's shadow condition: `Err(why)` while it does not.
pub fn shadow_verdict(
    condition: &crate::state::ShadowCondition,
    requests: u64,
    errors: u64,
) -> Result<(), String> {
    if requests < condition.min_requests {
        return Err(format!(
            "{requests} of {} shadow requests answered so far",
            condition.min_requests
        ));
    }
    if condition.max_error_ratio.exceeded_by(errors, requests) {
        return Err(format!(
            "shadow traffic failed {errors} of {requests} requests, more than {}",
            condition.max_error_ratio.as_f64()
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: Duration = Duration::from_secs(1);

    fn probe(successes: u32, failures: u32, healthy_share: u32) -> Probe {
        Probe {
            path: "/healthz".to_owned(),
            status: 200,
            timeout: SECOND,
            interval: SECOND,
            successes,
            failures,
            healthy_share,
        }
    }

    /// The `n`-th endpoint of a color (`127.0.0.1:900n`).
    fn endpoint(n: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], 9000 + n))
    }

    fn endpoints(n: u16) -> Vec<SocketAddr> {
        (1..=n).map(endpoint).collect()
    }

    /// Records `results` for `endpoint` (status codes; 0 stands for a timeout).
    fn record(
        history: &mut HashMap<SocketAddr, ProbeHistory>,
        endpoint: SocketAddr,
        results: &[u16],
    ) {
        let entry = history.entry(endpoint).or_default();
        for &status in results {
            let result = match status {
                0 => ProbeResult::Timeout(SECOND),
                status => ProbeResult::Status(status),
            };
            entry.record(result, 200);
        }
    }

    fn gate(
        probe: &Probe,
        endpoints: &[SocketAddr],
        history: &HashMap<SocketAddr, ProbeHistory>,
    ) -> GateVerdict {
        let started = Instant::now();
        verdict(
            probe,
            endpoints,
            history,
            started,
            Some(60 * SECOND),
            started,
        )
    }

    /// The endpoints a verdict lists as not healthy, with why, as `"<endpoint>: <why>"`.
    fn reasons(verdict: &GateVerdict) -> Vec<String> {
        let failing = &verdict.standing().failing;
        failing
            .iter()
            .map(|(e, why)| format!("{e}: {why}"))
            .collect()
    }

    #[test]
    fn endpoint_is_healthy_after_enough_successes_in_a_row() {
        let probe = probe(3, 3, 100);
        let a = endpoint(1);
        let mut history = HashMap::new();
        record(&mut history, a, &[200, 200]);
        let verdict = gate(&probe, &[a], &history);
        assert_eq!(
            verdict,
            GateVerdict::Pending(Standing {
                healthy: 0,
                total: 1,
                needed: 1,
                failing: vec![(
                    a,
                    NotHealthy::Warming {
                        successes: 2,
                        needed: 3
                    }
                )],
                waited: Duration::ZERO,
            })
        );
        record(&mut history, a, &[200]);
        assert!(matches!(
            gate(&probe, &[a], &history),
            GateVerdict::Passed(Standing { healthy: 1, .. })
        ));
    }

    #[test]
    fn flapping_endpoint_starts_its_count_again() {
        let probe = probe(3, 3, 100);
        let a = endpoint(1);
        let mut history = HashMap::new();
        record(&mut history, a, &[200, 200, 503, 200, 200]);
        let verdict = gate(&probe, &[a], &history);
        assert_eq!(
            verdict.standing().failing,
            [(
                a,
                NotHealthy::Warming {
                    successes: 2,
                    needed: 3
                }
            )]
        );
        assert!(matches!(verdict, GateVerdict::Pending(_)));
        // Healthy once, then one failure: not healthy any more.
        record(&mut history, a, &[200, 0]);
        let verdict = gate(&probe, &[a], &history);
        assert!(matches!(verdict, GateVerdict::Pending(_)));
        assert_eq!(
            reasons(&verdict),
            ["127.0.0.1:9001: no answer within 1s (1 in a row)"]
        );
    }

    #[test]
    fn pending_gate_says_why_each_endpoint_fails() {
        let probe = probe(1, 3, 100);
        let [a, b, c, d] = [1, 2, 3, 4].map(endpoint);
        let mut history = HashMap::new();
        record(&mut history, a, &[200]);
        record(&mut history, b, &[503, 503]);
        history
            .entry(c)
            .or_default()
            .record(ProbeResult::Refused, 200);
        let verdict = gate(&probe, &[a, b, c, d], &history);
        assert_eq!(
            reasons(&verdict),
            [
                "127.0.0.1:9002: status 503, expected 200 (2 in a row)",
                "127.0.0.1:9003: connection refused (1 in a row)",
                "127.0.0.1:9004: not probed yet",
            ]
        );
        assert_eq!(
            (verdict.standing().healthy, verdict.standing().needed),
            (1, 4)
        );
    }

    #[test]
    fn a_status_other_than_the_expected_one_fails_even_if_it_is_200() {
        let mut probe = probe(1, 1, 100);
        probe.status = 204;
        let a = endpoint(1);
        let mut history: HashMap<_, ProbeHistory> = HashMap::new();
        history
            .entry(a)
            .or_default()
            .record(ProbeResult::Status(200), probe.status);
        let verdict = gate(&probe, &[a], &history);
        assert!(matches!(verdict, GateVerdict::Pending(_)));
        assert_eq!(
            reasons(&verdict),
            ["127.0.0.1:9001: status 200, expected 204 (1 in a row)"]
        );
    }

    #[test]
    fn healthy_share_is_rounded_up_to_whole_endpoints() {
        let three = endpoints(3);
        let mut history = HashMap::new();
        record(&mut history, three[0], &[200]);
        record(&mut history, three[1], &[200]);
        record(&mut history, three[2], &[503]);
        // needed: 3 * 50% = 1.5 -> 2; 3 * 66% = 1.98 -> 2; 3 * 67% = 2.01 -> 3.
        for (share, needed, passes) in [(50, 2, true), (66, 2, true), (67, 3, false)] {
            let verdict = gate(&probe(1, 1, share), &three, &history);
            assert_eq!(verdict.standing().needed, needed, "share {share}");
            assert_eq!(
                matches!(verdict, GateVerdict::Passed(_)),
                passes,
                "share {share}: {verdict:?}"
            );
        }
        // 0% still needs one healthy endpoint.
        let none_healthy = HashMap::new();
        let verdict = gate(&probe(1, 1, 0), &three, &none_healthy);
        assert_eq!(verdict.standing().needed, 1);
        assert!(matches!(verdict, GateVerdict::Pending(_)));
    }

    #[test]
    fn gate_gives_up_at_its_deadline_unless_it_passes() {
        let probe = probe(2, 3, 100);
        let a = endpoint(1);
        let mut history = HashMap::new();
        record(&mut history, a, &[200]);
        let started = Instant::now();
        let deadline = Some(10 * SECOND);
        let at = |secs: u64| started + Duration::from_secs(secs);

        let pending = verdict(&probe, &[a], &history, started, deadline, at(9));
        assert!(matches!(pending, GateVerdict::Pending(_)), "{pending:?}");
        let gave_up = verdict(&probe, &[a], &history, started, deadline, at(10));
        assert!(matches!(gave_up, GateVerdict::GaveUp(_)), "{gave_up:?}");
        assert_eq!(gave_up.standing().waited, 10 * SECOND);
        // No deadline: pending forever.
        let pending = verdict(&probe, &[a], &history, started, None, at(3600));
        assert!(matches!(pending, GateVerdict::Pending(_)), "{pending:?}");
        // Passing at (or after) the deadline passes.
        record(&mut history, a, &[200]);
        let passed = verdict(&probe, &[a], &history, started, deadline, at(10));
        assert!(matches!(passed, GateVerdict::Passed(_)), "{passed:?}");
    }

    #[test]
    fn color_without_endpoints_never_passes_a_gate() {
        let probe = probe(1, 1, 100);
        let history = HashMap::new();
        let started = Instant::now();
        let pending = verdict(&probe, &[], &history, started, Some(SECOND), started);
        assert_eq!(
            pending,
            GateVerdict::Pending(Standing {
                healthy: 0,
                total: 0,
                needed: 1,
                failing: vec![],
                waited: Duration::ZERO,
            })
        );
        let gave_up = verdict(
            &probe,
            &[],
            &history,
            started,
            Some(SECOND),
            started + SECOND,
        );
        assert!(matches!(gave_up, GateVerdict::GaveUp(_)));
        assert_eq!(
            bake_probe_verdict(&probe, &[], &history),
            BakeProbeVerdict::Steady
        );
    }

    #[test]
    fn history_of_endpoints_no_longer_in_the_color_is_ignored() {
        let probe = probe(1, 1, 100);
        let [a, gone] = [1, 2].map(endpoint);
        let mut history = HashMap::new();
        record(&mut history, a, &[200]);
        record(&mut history, gone, &[503, 503, 503]);
        assert!(matches!(
            gate(&probe, &[a], &history),
            GateVerdict::Passed(Standing { total: 1, .. })
        ));
        assert_eq!(
            bake_probe_verdict(&probe, &[a], &history),
            BakeProbeVerdict::Steady
        );
    }

    #[test]
    fn bake_fails_when_more_endpoints_fail_than_the_share_tolerates() {
        // 75% must stay healthy: of 4 endpoints, 1 may fail.
        let probe = probe(1, 3, 75);
        let four = endpoints(4);
        let mut history = HashMap::new();
        for endpoint in &four {
            record(&mut history, *endpoint, &[200]);
        }
        record(&mut history, four[0], &[503, 503, 503]);
        assert_eq!(
            bake_probe_verdict(&probe, &four, &history),
            BakeProbeVerdict::Steady
        );
        record(&mut history, four[1], &[503, 503, 503]);
        assert_eq!(
            bake_probe_verdict(&probe, &four, &history),
            BakeProbeVerdict::Failing {
                failing: vec![
                    (
                        four[0],
                        NotHealthy::Failed {
                            result: ProbeResult::Status(503),
                            expected: 200,
                            failures: 3
                        }
                    ),
                    (
                        four[1],
                        NotHealthy::Failed {
                            result: ProbeResult::Status(503),
                            expected: 200,
                            failures: 3
                        }
                    ),
                ],
                total: 4,
                tolerated: 1,
            }
        );
    }

    #[test]
    fn bake_needs_enough_failures_in_a_row_and_a_success_clears_them() {
        let probe = probe(1, 3, 100);
        let a = endpoint(1);
        let mut history = HashMap::new();
        // Never probed, then two failures: not failing yet.
        assert_eq!(
            bake_probe_verdict(&probe, &[a], &history),
            BakeProbeVerdict::Steady
        );
        record(&mut history, a, &[0, 0]);
        assert_eq!(
            bake_probe_verdict(&probe, &[a], &history),
            BakeProbeVerdict::Steady
        );
        record(&mut history, a, &[200, 0, 0]);
        assert_eq!(
            bake_probe_verdict(&probe, &[a], &history),
            BakeProbeVerdict::Steady,
            "the success in between starts the count again"
        );
        record(&mut history, a, &[0]);
        assert!(matches!(
            bake_probe_verdict(&probe, &[a], &history),
            BakeProbeVerdict::Failing { tolerated: 0, .. }
        ));
    }

    #[test]
    fn the_shadow_condition_waits_for_enough_requests_then_judges_their_errors() {
        let condition = crate::state::ShadowCondition {
            max_error_ratio: crate::state::Ratio::from_f64(0.1).unwrap(),
            min_requests: 20,
        };
        assert_eq!(
            shadow_verdict(&condition, 19, 0),
            Err("19 of 20 shadow requests answered so far".into())
        );
        assert_eq!(shadow_verdict(&condition, 20, 2), Ok(()));
        assert!(
            shadow_verdict(&condition, 20, 3)
                .unwrap_err()
                .contains("failed 3 of 20")
        );
    }
}
