//! How a service's traffic is split, from its raw YAML form to the model: `active` (all of
//! it to one color) or `weights` (a static split), and the `ramp` that moves it to a new
//! `active` step by step; each problem at the value it concerns.

use std::time::Duration;

use serde::Deserialize;
use serde_saphyr::{Location, Spanned};

use super::problems::Problems;
use super::workflow::{Scalar, duration};
use crate::state::model::{Color, Weights};
use crate::state::workflow::{DEFAULT_RAMP_EVERY, Ramp};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawWeights {
    blue: Option<Spanned<i64>>,
    green: Option<Spanned<i64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRamp {
    steps: Spanned<Vec<Spanned<i64>>>,
    every: Option<Spanned<Scalar>>,
    paused: Option<Spanned<bool>>,
}

/// The service's `active`, or the color its `weights` count as active, with the weights:
/// exactly one of the two keys. `None` when neither is valid.
pub(super) fn active_or_weights(
    problems: &mut Problems,
    service_at: Location,
    active: Option<Spanned<String>>,
    weights: Option<Spanned<RawWeights>>,
) -> Option<(Color, Option<Weights>)> {
    match (active, weights) {
        (Some(active), None) => active_color(problems, active).map(|c| (c, None)),
        (None, Some(raw)) => split(problems, raw).map(|w| (w.active(), Some(w))),
        (Some(_), Some(raw)) => {
            problems.at(
                raw.referenced,
                "give `active` (all the traffic to one color) or `weights` (a split), not both",
            );
            None
        }
        (None, None) => {
            problems.at(
                service_at,
                "a service needs `active` (blue or green) or `weights` (for example {blue: 90, green: 10})",
            );
            None
        }
    }
}

fn active_color(problems: &mut Problems, raw: Spanned<String>) -> Option<Color> {
    match raw.value.as_str() {
        "blue" => Some(Color::Blue),
        "green" => Some(Color::Green),
        other => {
            problems.at(
                raw.referenced,
                format!("active must be `blue` or `green`, not `{other}`"),
            );
            None
        }
    }
}

/// `weights:`: both colors, each 0 to 100, adding up to 100.
fn split(problems: &mut Problems, raw: Spanned<RawWeights>) -> Option<Weights> {
    let at = raw.referenced;
    let mut percent = |color: Color, v: Option<Spanned<i64>>| {
        let Some(v) = v else {
            problems.at(
                at,
                format!("weights must give both `blue` and `green` (`{color}` is missing)"),
            );
            return None;
        };
        match u32::try_from(v.value) {
            Ok(p) if p <= 100 => Some(p),
            _ => {
                problems.at(
                    v.referenced,
                    format!("weight {} is out of range 0-100", v.value),
                );
                None
            }
        }
    };
    let blue = percent(Color::Blue, raw.value.blue);
    let green = percent(Color::Green, raw.value.green);
    let (blue, green) = (blue?, green?);
    if blue + green != 100 {
        problems.at(
            at,
            format!("weights must add up to 100, not {}", blue + green),
        );
        return None;
    }
    Some(Weights { blue, green })
}

/// `ramp:`: steps strictly increasing from 1 to 100 and ending at 100, and how long each
/// lasts at least.
pub(super) fn ramp(problems: &mut Problems, raw: Option<Spanned<RawRamp>>) -> Option<Ramp> {
    let r = raw?.value;
    let every = duration(
        problems,
        "every",
        r.every,
        DEFAULT_RAMP_EVERY,
        Duration::ZERO,
    );
    let before = problems.0.len();
    let mut steps: Vec<u32> = Vec::with_capacity(r.steps.value.len());
    for step in &r.steps.value {
        match u32::try_from(step.value) {
            Ok(p) if (1..=100).contains(&p) => {
                if let Some(&last) = steps.last().filter(|&&last| last >= p) {
                    problems.at(
                        step.referenced,
                        format!("ramp steps must increase: {p} comes after {last}"),
                    );
                }
                steps.push(p);
            }
            _ => problems.at(
                step.referenced,
                format!("step {} is out of range 1-100", step.value),
            ),
        }
    }
    match r.steps.value.last() {
        None => problems.at(
            r.steps.referenced,
            "a ramp needs at least one step (for example [10, 50, 100])",
        ),
        Some(last) if problems.0.len() == before && last.value != 100 => problems.at(
            last.referenced,
            format!(
                "the last step of a ramp must be 100 (all the traffic), not {}",
                last.value
            ),
        ),
        Some(_) => {}
    }
    (problems.0.len() == before).then_some(Ramp {
        steps,
        every,
        paused: r.paused.is_some_and(|p| p.value),
    })
}

/// What `ramp:` cannot go with: `weights` (a ramp moves all the traffic to `active`) and
/// `rollout` (waves hand the switch to proxies a wave at a time; a ramp steps every
/// proxy's weights at once).
pub(super) fn check_ramp(
    problems: &mut Problems,
    at: Option<Location>,
    weights: bool,
    rollout: bool,
) {
    let Some(at) = at else { return };
    if weights {
        problems.at(
            at,
            "`ramp:` moves all the traffic to `active` step by step; it cannot be used with \
             `weights:` (give `active`)",
        );
    }
    if rollout {
        problems.at(
            at,
            "`ramp:` and `rollout:` cannot be combined: a rollout moves all of a proxy's \
             traffic wave by wave, a ramp moves every proxy's weights step by step; pick one",
        );
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::state::parse::parse_str;
    use crate::state::parse::tests::assert_only_problem;
    use crate::state::{Color, Ramp, Weights};

    const GOOD: &str = include_str!("../../../tests/fixtures/one_service.yaml");

    /// GOOD with its `active: blue` line replaced by `lines` (indented as service keys).
    fn with(lines: &str) -> String {
        GOOD.replace("    active: blue\n", lines)
    }

    #[test]
    fn weights_split_the_traffic_and_the_larger_counts_as_active() {
        let state = parse_str(&with("    weights: {blue: 90, green: 10}\n")).unwrap();
        let s = &state.services[0];
        assert_eq!(
            s.weights,
            Some(Weights {
                blue: 90,
                green: 10
            })
        );
        assert_eq!(s.active, Color::Blue);
        assert_eq!((s.weight(Color::Blue), s.weight(Color::Green)), (90, 10));
        let state = parse_str(&with("    weights: {blue: 30, green: 70}\n")).unwrap();
        assert_eq!(state.services[0].active, Color::Green);
    }

    #[test]
    fn an_even_split_counts_blue_as_active() {
        let state = parse_str(&with("    weights: {blue: 50, green: 50}\n")).unwrap();
        assert_eq!(state.services[0].active, Color::Blue);
    }

    #[test]
    fn weights_that_do_not_add_up_to_100_are_located() {
        assert_only_problem(
            &with("    weights: {blue: 90, green: 5}\n"),
            13,
            14,
            "weights must add up to 100, not 95",
        );
    }

    #[test]
    fn a_weight_out_of_range_or_missing_is_located() {
        assert_only_problem(
            &with("    weights: {blue: 120, green: 0}\n"),
            13,
            21,
            "weight 120 is out of range 0-100",
        );
        assert_only_problem(
            &with("    weights: {green: 100}\n"),
            13,
            14,
            "weights must give both `blue` and `green` (`blue` is missing)",
        );
    }

    #[test]
    fn active_and_weights_together_or_neither_are_refused() {
        assert_only_problem(
            &with("    active: blue\n    weights: {blue: 90, green: 10}\n"),
            14,
            14,
            "give `active` (all the traffic to one color) or `weights` (a split), not both",
        );
        assert_only_problem(
            &with(""),
            6,
            5,
            "a service needs `active` (blue or green) or `weights` (for example {blue: 90, green: 10})",
        );
    }

    #[test]
    fn a_ramp_lists_its_steps_and_how_long_each_lasts() {
        let state = parse_str(&with(
            "    active: blue\n    ramp: {steps: [10, 50, 100], every: 1m, paused: true}\n",
        ))
        .unwrap();
        let ramp = state.services[0].ramp.as_ref().unwrap();
        assert_eq!(
            *ramp,
            Ramp {
                steps: vec![10, 50, 100],
                every: Duration::from_secs(60),
                paused: true
            }
        );
        assert_eq!(ramp.after(0), Some((1, 10)));
        assert_eq!(ramp.after(10), Some((2, 50)));
        assert_eq!(ramp.after(30), Some((2, 50)));
        assert_eq!(ramp.after(100), None);
        let state = parse_str(&with("    active: blue\n    ramp: {steps: [100]}\n")).unwrap();
        let ramp = state.services[0].ramp.as_ref().unwrap();
        assert_eq!(ramp.every, Duration::from_secs(30));
        assert!(!ramp.paused);
    }

    #[test]
    fn ramp_steps_must_increase_stay_in_range_and_end_at_100() {
        assert_only_problem(
            &with("    active: blue\n    ramp: {steps: [10, 10, 100]}\n"),
            14,
            24,
            "ramp steps must increase: 10 comes after 10",
        );
        assert_only_problem(
            &with("    active: blue\n    ramp: {steps: [0, 100]}\n"),
            14,
            20,
            "step 0 is out of range 1-100",
        );
        assert_only_problem(
            &with("    active: blue\n    ramp: {steps: [10, 50]}\n"),
            14,
            24,
            "the last step of a ramp must be 100 (all the traffic), not 50",
        );
        assert_only_problem(
            &with("    active: blue\n    ramp: {steps: []}\n"),
            14,
            19,
            "a ramp needs at least one step (for example [10, 50, 100])",
        );
    }

    #[test]
    fn a_ramp_with_weights_or_a_rollout_is_refused() {
        assert_only_problem(
            &with("    weights: {blue: 90, green: 10}\n    ramp: {steps: [10, 100]}\n"),
            14,
            11,
            "`ramp:` moves all the traffic to `active` step by step; it cannot be used with \
             `weights:` (give `active`)",
        );
        assert_only_problem(
            &with(
                "    active: blue\n    ramp: {steps: [10, 100]}\n    rollout:\n      waves: [{zone: a}, {}]\n",
            ),
            14,
            11,
            "`ramp:` and `rollout:` cannot be combined: a rollout moves all of a proxy's \
             traffic wave by wave, a ramp moves every proxy's weights step by step; pick one",
        );
    }
}
