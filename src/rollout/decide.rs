//! The rollout decision for one service: given what the file asks, what is in force, and
//! what was observed (the gate's probes, the fleet's load reports, the database's schema
//! version), which color takes the traffic now, and why. Pure: no clock, no I/O; the
//! controller feeds it and carries out the answer.
//!
//! The rules, in order:
//! 1. While the color in force is the file's color: a bake in progress watches it; when the
//!    bake trips, traffic goes back to the previous color, unless that color cannot run
//!    against the current schema (then it stays, and says so).
//! 2. When the file names another color: a ramp on its way stops at once (the color it
//!    came from takes everything back); a rollback or a given-up gate for that same color
//!    and `attempt` stands until the operator changes `active` or `attempt`; a color that
//!    cannot run against the current schema (or when the schema is unknown) is held; a
//!    gate must pass before its deadline; then the switch happens (to the first step of
//!    its ramp, with `ramp:`; [`super::ramp`] takes the next ones), and a bake starts.

use std::time::Duration;

use serde::Serialize;
use tokio::time::Instant;

use crate::state::{Color, Service, Weights};

/// Where one service stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Track {
    /// The color proxies are given (while a ramp is on its way, the color it goes to).
    pub in_force: Color,
    pub phase: Phase,
    /// While a switch ramps up (`ramp:`): the step in force; its `from` has the rest.
    pub ramp: Option<RampStep>,
}

impl Track {
    /// How the traffic of `service` (the file's) is split with this track: as the file
    /// says while its color is in force, a ramp's step, or all of it to the color in force.
    pub fn split(&self, service: &Service) -> Weights {
        match &self.ramp {
            Some(r) => Weights::of(self.in_force, r.percent),
            None if self.in_force == service.active => service.split(),
            None => Weights::all(self.in_force),
        }
    }
}

/// What the rollout of one service is doing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Phase {
    /// In force is what the file says; nothing is watched.
    Steady,
    /// The file asks for `to`; its gate has not passed yet.
    Gating { to: Color, since: Instant },
    /// The gate did not pass before its deadline; `to` stays out until the file changes
    /// `active` or `attempt`.
    GaveUp { to: Color, attempt: Option<String> },
    /// After a switch from `from`: watched until `until`.
    Baking {
        from: Color,
        since: Instant,
        until: Instant,
        /// Set when the bake tripped but `from` could not take the traffic back.
        refused: Option<String>,
    },
    /// Traffic went back to the color in force after `from` tripped its bake; stands until
    /// the file changes `active` or `attempt`.
    RolledBack {
        from: Color,
        attempt: Option<String>,
        reason: Trip,
    },
    /// The file asks for `to`, which cannot run against the current schema.
    Held { to: Color, reason: String },
}

/// Why a bake tripped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Trip {
    /// Failed requests to the new color across the fleet during the bake.
    pub errors: u64,
    pub requests: u64,
    /// The proxies that reported errors, with how many.
    pub proxies: Vec<(String, u64)>,
    /// Endpoints whose probe failed (a probe-based bake), with why.
    pub failing_endpoints: Vec<(String, String)>,
    /// How long the bake had run.
    #[serde(serialize_with = "crate::state::workflow::humane")]
    pub after: Duration,
    /// The bake's window.
    #[serde(serialize_with = "crate::state::workflow::humane")]
    pub window: Duration,
}

/// What the controller observed for one service, as of `now`.
#[derive(Debug, Clone)]
pub struct Observed {
    /// Whether each color may run against the current schema: `Err(why)` when not (or
    /// when the version is unknown). Both `Ok` without a database.
    pub schema: [Result<(), String>; 2],
    /// Whether the gate of the color the file asks for passed (false while pending).
    pub gate_passed: bool,
    /// The bake's verdict on the color in force, when one was made: `Some` trips it.
    pub bake_trip: Option<Trip>,
}

impl Observed {
    fn schema_ok(&self, color: Color) -> Result<(), String> {
        self.schema[color as usize].clone()
    }
}

/// A change of phase the controller reports (event, audit record, metric).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transition {
    /// Traffic moved to `to` as the file asks (after the gate, if any).
    Switched {
        from: Color,
        to: Color,
    },
    GateWaiting {
        to: Color,
    },
    GaveUp {
        to: Color,
    },
    RolledBack {
        from: Color,
        to: Color,
        reason: Trip,
    },
    /// Rolled back with `member` of the same release group, whose bake tripped.
    RolledBackWith {
        from: Color,
        to: Color,
        member: String,
        reason: Trip,
    },
    /// A bake tripped but the previous color cannot run against the schema.
    RollbackRefused {
        from: Color,
        why: String,
    },
    Held {
        to: Color,
        why: String,
    },
    BakePassed {
        color: Color,
    },
    /// The bake window ended after a rollback was refused: the color failed its bake and
    /// kept the traffic.
    BakeFailed {
        color: Color,
    },
    /// A switch reached wave `wave` (from 1) of `of`: its proxies get `color` now.
    WaveReached {
        color: Color,
        wave: usize,
        of: usize,
    },
    /// A ramp put step `step` (from 1) of `of` in force: `color` has `percent` of the
    /// traffic (100: the ramp is complete).
    RampStep {
        color: Color,
        percent: u32,
        step: usize,
        of: usize,
    },
    /// A ramp holds its step: paused by the file, waiting for proxies to acknowledge it,
    /// or after a bake that could not roll back.
    RampWaiting {
        color: Color,
        percent: u32,
        step: usize,
        of: usize,
        wait: Wait,
    },
    /// The file set `active` back to `to` mid-ramp: `to` has all the traffic again.
    RampAborted {
        from: Color,
        to: Color,
        percent: u32,
    },
    /// `ramp:` left the file mid-ramp: `color` has all the traffic at once.
    RampDropped {
        color: Color,
    },
}

impl Transition {
    /// The decision's name in events, the audit log and metrics.
    pub fn name(&self) -> &'static str {
        match self {
            Transition::Switched { .. } => "switched",
            Transition::GateWaiting { .. } => "gate_waiting",
            Transition::GaveUp { .. } => "gave_up",
            Transition::RolledBack { .. } | Transition::RolledBackWith { .. } => "rolled_back",
            Transition::RollbackRefused { .. } => "rollback_refused",
            Transition::Held { .. } => "held",
            Transition::BakePassed { .. } => "bake_passed",
            Transition::BakeFailed { .. } => "bake_failed",
            Transition::WaveReached { .. } => "wave_reached",
            Transition::RampStep { .. } | Transition::RampDropped { .. } => "ramp_step",
            Transition::RampWaiting {
                wait: Wait::Paused, ..
            } => "ramp_paused",
            Transition::RampWaiting { .. } => "ramp_waiting",
            Transition::RampAborted { .. } => "ramp_aborted",
        }
    }

    /// Why, in words, when there is more to say than the name.
    pub fn reason(&self) -> Option<String> {
        match self {
            Transition::RolledBack { from, reason, .. } => {
                let mut why = format!(
                    "{from} failed its bake: {} errors in {} requests, {} into its {} window",
                    reason.errors,
                    reason.requests,
                    humantime::format_duration(reason.after),
                    humantime::format_duration(reason.window)
                );
                for (endpoint, failing) in &reason.failing_endpoints {
                    why.push_str(&format!("; {endpoint}: {failing}"));
                }
                Some(why)
            }
            Transition::RolledBackWith { member, .. } => Some(format!(
                "rolled back with {member}, of the same release group, which failed its bake: {} errors in {} requests",
                self.trip().map_or(0, |t| t.errors),
                self.trip().map_or(0, |t| t.requests),
            )),
            Transition::RollbackRefused { from, why } => {
                Some(format!("cannot roll back to {from}: {why}"))
            }
            Transition::Held { why, .. } => Some(why.clone()),
            Transition::GaveUp { to } => {
                Some(format!("the gate of {to} did not pass before its deadline"))
            }
            Transition::WaveReached { color, wave, of } if wave == of => Some(format!(
                "wave {wave} of {of} has {color}: the rollout reached every proxy"
            )),
            Transition::WaveReached { color, wave, of } => {
                Some(format!("wave {wave} of {of} has {color}"))
            }
            Transition::RampStep {
                color,
                percent,
                step,
                of,
            } => Some(if *percent == 100 {
                format!("{color} at 100 % (step {step} of {of}): the ramp is complete")
            } else {
                format!("{color} at {percent} % (step {step} of {of})")
            }),
            Transition::RampWaiting {
                color,
                percent,
                step,
                of,
                wait,
            } => {
                let at = format!("{color} at {percent} % (step {step} of {of})");
                Some(match wait {
                    Wait::Paused => format!("{at}: paused by the file (`ramp.paused`)"),
                    Wait::Proxies => format!(
                        "{at}: step {} waits for every proxy to acknowledge this one",
                        step + 1
                    ),
                    Wait::Bake => format!(
                        "{at}: held, {color} failed its bake and {} cannot take the traffic back",
                        color.other()
                    ),
                    Wait::Soak => at,
                })
            }
            Transition::RampAborted { from, to, percent } => Some(format!(
                "`active` is {to} again: the ramp to {from} stopped at {percent} % and {to} takes all the traffic"
            )),
            Transition::RampDropped { color } => Some(format!(
                "{color} at 100 %: `ramp:` was removed from the file"
            )),
            _ => None,
        }
    }

    /// What tripped a rollback.
    pub fn trip(&self) -> Option<&Trip> {
        match self {
            Transition::RolledBack { reason, .. } | Transition::RolledBackWith { reason, .. } => {
                Some(reason)
            }
            _ => None,
        }
    }
}

/// The track a service starts with: the file's color in force (no proxy has anything yet,
/// so there is nothing to gate or bake).
pub fn start(service: &Service) -> Track {
    Track {
        in_force: service.active,
        phase: Phase::Steady,
        ramp: None,
    }
}

/// One step: the new track and what changed.
pub fn decide(
    service: &Service,
    track: &Track,
    seen: &Observed,
    now: Instant,
) -> (Track, Option<Transition>) {
    let wanted = service.active;
    let attempt = &service.attempt;
    if track.in_force == wanted {
        let after = bake_step(service, track, seen, now);
        let transition = bake_transition(track, &after);
        return (after, transition);
    }
    // The file names the other color: mid-ramp, the one the ramp came from takes it all
    // back at once (it carried the rest all along: no gate), if it can run.
    if let Some(r) = &track.ramp
        && seen.schema_ok(wanted).is_ok()
    {
        return (
            Track {
                in_force: wanted,
                phase: Phase::Steady,
                ramp: None,
            },
            Some(Transition::RampAborted {
                from: track.in_force,
                to: wanted,
                percent: r.percent,
            }),
        );
    }
    match &track.phase {
        Phase::RolledBack {
            from, attempt: a, ..
        } if *from == wanted && a == attempt => return (track.clone(), None),
        Phase::GaveUp { to, attempt: a } if *to == wanted && a == attempt => {
            return (track.clone(), None);
        }
        _ => {}
    }
    if let Err(why) = seen.schema_ok(wanted) {
        let held = Phase::Held {
            to: wanted,
            reason: why.clone(),
        };
        let transition = (track.phase != held).then_some(Transition::Held { to: wanted, why });
        return (
            Track {
                in_force: track.in_force,
                phase: held,
                ramp: None,
            },
            transition,
        );
    }
    if let Some(gate) = &service.gate {
        let since = match track.phase {
            Phase::Gating { to, since } if to == wanted => since,
            _ => {
                let gating = Track {
                    in_force: track.in_force,
                    phase: Phase::Gating {
                        to: wanted,
                        since: now,
                    },
                    ramp: None,
                };
                if seen.gate_passed {
                    return switch(service, track.in_force, now);
                }
                return (gating, Some(Transition::GateWaiting { to: wanted }));
            }
        };
        if !seen.gate_passed {
            if now.saturating_duration_since(since) >= gate.deadline {
                return (
                    Track {
                        in_force: track.in_force,
                        phase: Phase::GaveUp {
                            to: wanted,
                            attempt: attempt.clone(),
                        },
                        ramp: None,
                    },
                    Some(Transition::GaveUp { to: wanted }),
                );
            }
            return (track.clone(), None);
        }
    }
    switch(service, track.in_force, now)
}

/// Traffic goes back to the other color because `reason` tripped the bake of `member`, of
/// the same release group; stands like any rollback.
pub fn roll_back_with(
    service: &Service,
    track: &Track,
    member: &str,
    reason: Trip,
) -> (Track, Transition) {
    let to = track.in_force.other();
    (
        Track {
            in_force: to,
            phase: Phase::RolledBack {
                from: track.in_force,
                attempt: service.attempt.clone(),
                reason: reason.clone(),
            },
            ramp: None,
        },
        Transition::RolledBackWith {
            from: track.in_force,
            to,
            member: member.to_owned(),
            reason,
        },
    )
}

/// Traffic moves to the file's color (to the first step of its ramp, when it ramps); a
/// bake starts when one is configured.
fn switch(service: &Service, from: Color, now: Instant) -> (Track, Option<Transition>) {
    let phase = match &service.bake {
        Some(bake) => Phase::Baking {
            from,
            since: now,
            until: now + bake.window,
            refused: None,
        },
        None => Phase::Steady,
    };
    let mut track = Track {
        in_force: service.active,
        phase,
        ramp: first_ramp_step(service, from, now),
    };
    if track.ramp.is_some() {
        extend_bake(&mut track, service, now);
    }
    (
        track,
        Some(Transition::Switched {
            from,
            to: service.active,
        }),
    )
}

/// The color in force is the file's: a bake in progress goes on, ends (not while a ramp
/// is on its way: it watches every step), or trips (and a rollback ends the ramp).
fn bake_step(service: &Service, track: &Track, seen: &Observed, now: Instant) -> Track {
    let steady = || Track {
        in_force: track.in_force,
        phase: Phase::Steady,
        ramp: track.ramp.clone(),
    };
    let Phase::Baking {
        from,
        since,
        until,
        refused,
    } = &track.phase
    else {
        return steady();
    };
    if service.bake.is_none() || (now >= *until && track.ramp.is_none()) {
        return steady();
    }
    let Some(trip) = &seen.bake_trip else {
        return track.clone();
    };
    match seen.schema_ok(*from) {
        Ok(()) => Track {
            in_force: *from,
            phase: Phase::RolledBack {
                from: track.in_force,
                attempt: service.attempt.clone(),
                reason: Trip {
                    after: now.saturating_duration_since(*since),
                    ..trip.clone()
                },
            },
            ramp: None,
        },
        Err(why) => Track {
            in_force: track.in_force,
            phase: Phase::Baking {
                from: *from,
                since: *since,
                until: *until,
                refused: Some(refused.clone().unwrap_or(why)),
            },
            ramp: track.ramp.clone(),
        },
    }
}

/// Names the transition a bake step made, by comparing the tracks.
fn bake_transition(before: &Track, after: &Track) -> Option<Transition> {
    {
        match (&before.phase, &after.phase) {
            (Phase::Baking { .. }, Phase::RolledBack { from, reason, .. }) => {
                Some(Transition::RolledBack {
                    from: *from,
                    to: after.in_force,
                    reason: reason.clone(),
                })
            }
            (
                Phase::Baking { refused: None, .. },
                Phase::Baking {
                    from,
                    refused: Some(why),
                    ..
                },
            ) => Some(Transition::RollbackRefused {
                from: *from,
                why: why.clone(),
            }),
            (Phase::Baking { refused: None, .. }, Phase::Steady) => Some(Transition::BakePassed {
                color: after.in_force,
            }),
            (
                Phase::Baking {
                    refused: Some(_), ..
                },
                Phase::Steady,
            ) => Some(Transition::BakeFailed {
                color: after.in_force,
            }),
            _ => None,
        }
    }
}

/// The step of a ramp in force.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RampStep {
    /// The color switched from: it keeps the rest of the traffic.
    pub from: Color,
    /// Which step it is (from 1), as put in force.
    pub step: usize,
    /// The new color's share in percent (below 100: the last step ends the ramp).
    pub percent: u32,
    /// When the step was put in force.
    pub since: Instant,
    /// What the next step waits for, as last decided.
    pub waiting: Wait,
}

/// What a ramp's next step waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Wait {
    /// The current step has not been in force for `every` yet.
    Soak,
    /// Some connected proxy does not hold the current step yet.
    Proxies,
    /// The file says `paused: true`.
    Paused,
    /// The bake tripped but the old color could not take the traffic back.
    Bake,
}

impl Wait {
    pub fn name(self) -> &'static str {
        match self {
            Wait::Soak => "soak",
            Wait::Proxies => "proxies",
            Wait::Paused => "paused",
            Wait::Bake => "bake",
        }
    }
}

/// The first step of a switch from `from` to the service's `active`, when it ramps (and
/// its first step is not already 100).
pub(super) fn first_ramp_step(service: &Service, from: Color, now: Instant) -> Option<RampStep> {
    let (step, percent) = service.ramp.as_ref()?.after(0)?;
    (percent < 100).then_some(RampStep {
        from,
        step,
        percent,
        since: now,
        waiting: Wait::Soak,
    })
}

/// While a switch is on its way (through its waves, or a ramp's steps), its bake goes on
/// for at least the wave's `soak`, or the step's `every`, after each.
pub(super) fn extend_bake(track: &mut Track, service: &Service, now: Instant) {
    let at_least = service
        .rollout
        .as_ref()
        .map(|r| r.soak)
        .or(service.ramp.as_ref().map(|r| r.every))
        .unwrap_or_default();
    if let Phase::Baking { until, .. } = &mut track.phase {
        *until = (*until).max(now + at_least);
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::state::parse_str;

    const FILE: &str = "\
listeners:
  - name: public
    address: 127.0.0.1
    port: 10000
services:
  - name: summarizer
    listener: public
    blue:
      endpoints: [\"127.0.0.1:8081\"]
    green:
      endpoints: [\"127.0.0.1:8082\"]
    active: green
";

    /// The service with `active: green` and `extra` keys.
    pub(in crate::rollout) fn service(extra: &str) -> Service {
        let text = FILE.replace(
            "    active: green\n",
            &format!("    active: green\n{extra}"),
        );
        parse_str(&text).unwrap().services.remove(0)
    }

    pub(in crate::rollout) fn on_blue() -> Track {
        Track {
            in_force: Color::Blue,
            phase: Phase::Steady,
            ramp: None,
        }
    }

    pub(in crate::rollout) fn ok() -> Observed {
        Observed {
            schema: [Ok(()), Ok(())],
            gate_passed: false,
            bake_trip: None,
        }
    }

    pub(in crate::rollout) fn trip() -> Trip {
        Trip {
            errors: 30,
            requests: 100,
            proxies: vec![("envoy-1".into(), 30)],
            failing_endpoints: vec![],
            after: Duration::ZERO,
            window: Duration::from_secs(60),
        }
    }

    const GATE: &str = "    gate:\n      deadline: 30s\n";
    const BAKE: &str = "    bake:\n      window: 60s\n";

    #[test]
    fn without_a_gate_a_switch_is_immediate() {
        let now = Instant::now();
        let (t, what) = decide(&service(""), &on_blue(), &ok(), now);
        assert_eq!(t.in_force, Color::Green);
        assert_eq!(t.phase, Phase::Steady);
        assert_eq!(
            what,
            Some(Transition::Switched {
                from: Color::Blue,
                to: Color::Green
            })
        );
    }

    #[test]
    fn a_failing_gate_holds_the_switch_until_it_passes() {
        let s = service(GATE);
        let t0 = Instant::now();
        let (t, what) = decide(&s, &on_blue(), &ok(), t0);
        assert_eq!(t.in_force, Color::Blue);
        assert_eq!(what, Some(Transition::GateWaiting { to: Color::Green }));
        let (t, what) = decide(&s, &t, &ok(), t0 + Duration::from_secs(10));
        assert_eq!((t.in_force, what), (Color::Blue, None));
        let passed = Observed {
            gate_passed: true,
            ..ok()
        };
        let (t, what) = decide(&s, &t, &passed, t0 + Duration::from_secs(11));
        assert_eq!(t.in_force, Color::Green);
        assert!(matches!(what, Some(Transition::Switched { .. })));
    }

    #[test]
    fn a_gate_past_its_deadline_gives_the_switch_up_until_the_file_changes() {
        let s = service(GATE);
        let t0 = Instant::now();
        let (t, _) = decide(&s, &on_blue(), &ok(), t0);
        let (t, what) = decide(&s, &t, &ok(), t0 + Duration::from_secs(30));
        assert_eq!(what, Some(Transition::GaveUp { to: Color::Green }));
        assert_eq!(t.in_force, Color::Blue);
        // Even a passing gate later does not move traffic: the switch was given up.
        let passed = Observed {
            gate_passed: true,
            ..ok()
        };
        let (t, what) = decide(&s, &t, &passed, t0 + Duration::from_secs(40));
        assert_eq!((t.in_force, what), (Color::Blue, None));
        // A new attempt gates again, and passes.
        let retry = service(&format!("{GATE}    attempt: 2\n"));
        let (t, what) = decide(&retry, &t, &passed, t0 + Duration::from_secs(41));
        assert_eq!(t.in_force, Color::Green);
        assert!(matches!(what, Some(Transition::Switched { .. })));
    }

    #[test]
    fn a_gate_that_already_passes_switches_at_once() {
        let passed = Observed {
            gate_passed: true,
            ..ok()
        };
        let (t, _) = decide(&service(GATE), &on_blue(), &passed, Instant::now());
        assert_eq!(t.in_force, Color::Green);
    }

    #[test]
    fn a_tripped_bake_rolls_back_and_the_rollback_stands_until_a_new_attempt() {
        let s = service(BAKE);
        let t0 = Instant::now();
        let (t, _) = decide(&s, &on_blue(), &ok(), t0);
        assert!(matches!(
            t.phase,
            Phase::Baking {
                from: Color::Blue,
                ..
            }
        ));
        let tripped = Observed {
            bake_trip: Some(trip()),
            ..ok()
        };
        let (t, what) = decide(&s, &t, &tripped, t0 + Duration::from_secs(5));
        assert_eq!(t.in_force, Color::Blue);
        let Some(Transition::RolledBack { from, to, reason }) = what else {
            panic!("expected a rollback, got {what:?}")
        };
        assert_eq!((from, to), (Color::Green, Color::Blue));
        assert_eq!(reason.after, Duration::from_secs(5));
        assert_eq!(reason.errors, 30);
        // The file still says green: no flapping back to it.
        for secs in [6, 100, 1000] {
            let (next, what) = decide(&s, &t, &ok(), t0 + Duration::from_secs(secs));
            assert_eq!((next.in_force, what), (Color::Blue, None));
        }
        // Saving the file with a new attempt switches to green again.
        let retry = service(&format!("{BAKE}    attempt: b\n"));
        let (t, what) = decide(&retry, &t, &ok(), t0 + Duration::from_secs(1001));
        assert_eq!(t.in_force, Color::Green);
        assert!(matches!(what, Some(Transition::Switched { .. })));
    }

    #[test]
    fn accepting_a_rollback_by_setting_active_back_is_steady() {
        let s = service(BAKE);
        let rolled = Track {
            in_force: Color::Blue,
            phase: Phase::RolledBack {
                from: Color::Green,
                attempt: None,
                reason: trip(),
            },
            ramp: None,
        };
        let mut blue = s.clone();
        blue.active = Color::Blue;
        let (t, what) = decide(&blue, &rolled, &ok(), Instant::now());
        assert_eq!(
            (t.in_force, t.phase, what),
            (Color::Blue, Phase::Steady, None)
        );
    }

    #[test]
    fn a_bake_that_runs_its_window_without_trouble_passes() {
        let s = service(BAKE);
        let t0 = Instant::now();
        let (t, _) = decide(&s, &on_blue(), &ok(), t0);
        let (t, what) = decide(&s, &t, &ok(), t0 + Duration::from_secs(60));
        assert_eq!(t.phase, Phase::Steady);
        assert_eq!(
            what,
            Some(Transition::BakePassed {
                color: Color::Green
            })
        );
        // After the window, errors no longer roll back.
        let tripped = Observed {
            bake_trip: Some(trip()),
            ..ok()
        };
        let (t, what) = decide(&s, &t, &tripped, t0 + Duration::from_secs(61));
        assert_eq!((t.in_force, what), (Color::Green, None));
    }

    #[test]
    fn the_schema_guard_holds_a_switch_to_a_color_that_cannot_run() {
        let refused = Observed {
            schema: [Ok(()), Err("green supports 41, not 42".into())],
            ..ok()
        };
        let (t, what) = decide(&service(""), &on_blue(), &refused, Instant::now());
        assert_eq!(t.in_force, Color::Blue);
        assert_eq!(
            what,
            Some(Transition::Held {
                to: Color::Green,
                why: "green supports 41, not 42".into()
            })
        );
        // Reported once, not on every step.
        let (t, what) = decide(&service(""), &t, &refused, Instant::now());
        assert_eq!((t.in_force, what), (Color::Blue, None));
        // Once the schema allows it, the switch goes ahead.
        let (t, _) = decide(&service(""), &t, &ok(), Instant::now());
        assert_eq!(t.in_force, Color::Green);
    }

    #[test]
    fn a_rollback_never_goes_to_a_color_that_cannot_run_against_the_schema() {
        let s = service(BAKE);
        let t0 = Instant::now();
        let (t, _) = decide(&s, &on_blue(), &ok(), t0);
        let contracted = Observed {
            schema: [Err("blue supports 41, not 42".into()), Ok(())],
            bake_trip: Some(trip()),
            ..ok()
        };
        let (t, what) = decide(&s, &t, &contracted, t0 + Duration::from_secs(5));
        assert_eq!(t.in_force, Color::Green);
        assert_eq!(
            what,
            Some(Transition::RollbackRefused {
                from: Color::Blue,
                why: "blue supports 41, not 42".into()
            })
        );
        let (t, what) = decide(&s, &t, &contracted, t0 + Duration::from_secs(6));
        assert_eq!((t.in_force, what), (Color::Green, None));
        // The window ends: a failed bake, not a passed one.
        let (t, what) = decide(&s, &t, &contracted, t0 + Duration::from_secs(60));
        assert_eq!(t.phase, Phase::Steady);
        assert_eq!(
            what,
            Some(Transition::BakeFailed {
                color: Color::Green
            })
        );
    }
}
