//! A ramp (`ramp: {steps: [10, 50, 100], every: 30s}`): a switch moves the traffic to the
//! new color step by step instead of all at once. Pure, like [`super::decide`]: the step
//! in force lives in the service's [`Track`], and [`step`] decides, from the file, the
//! clock and whether every proxy holds the step, whether the next one is due.
//!
//! The rules:
//! - A switch (once its gate passed and the schema guard let it through) puts the first
//!   step in force: the new color gets that percent, the old one the rest. A bake starts
//!   with it and watches the new color.
//! - The next step comes once the current one has been in force for `every`, **and**
//!   every connected proxy holds it (its stream serves the state version the cache owes
//!   it now, acknowledged: the census of [`crate::fleet`]), **and** the bake has not
//!   tripped. The last step (100) ends the ramp; the bake goes on for at least `every`
//!   after each step.
//! - A tripped bake rolls back at any step: the old color takes all the traffic again
//!   ([`super::decide`]'s rollback, which ends the ramp). A bake that tripped but could not
//!   roll back (the schema guard) holds the step.
//! - `paused: true` in the file holds the step in force (a switch saved paused goes to
//!   its first step and holds there); saving `paused: false` goes on, the next step as
//!   soon as `every` has passed since the current one began and every proxy holds it.
//! - Setting `active` back aborts: the old color takes all the traffic at once (no gate:
//!   it was carrying the rest all along). Removing `ramp:` mid-way finishes the switch at
//!   once. Editing `steps` goes on from the percent in force to the first step above it.

use tokio::time::Instant;

use super::decide::{Phase, Track, Transition};
pub use super::decide::{RampStep, Wait};
use crate::state::Service;

/// One step of a ramp on its way, for a track whose color in force is the file's (a
/// rollback or an abort is [`super::decide::decide`]'s): the next step, or what it waits
/// for (a transition when that changes to something other than the soak). `synced`
/// answers whether every connected proxy holds the step in force; it is asked only once
/// the soak is over.
pub fn step(
    service: &Service,
    track: &Track,
    now: Instant,
    synced: impl FnOnce() -> bool,
) -> (Track, Option<Transition>) {
    let Some(r) = &track.ramp else {
        return (track.clone(), None);
    };
    if track.in_force != service.active {
        return (track.clone(), None);
    }
    let color = track.in_force;
    let mut next = track.clone();
    let Some(ramp) = &service.ramp else {
        next.ramp = None;
        super::decide::extend_bake(&mut next, service, now);
        return (next, Some(Transition::RampDropped { color }));
    };
    let of = ramp.steps.len();
    let refused = matches!(
        track.phase,
        Phase::Baking {
            refused: Some(_),
            ..
        }
    );
    let wait = if refused {
        Some(Wait::Bake)
    } else if ramp.paused {
        Some(Wait::Paused)
    } else if now.saturating_duration_since(r.since) < ramp.every {
        Some(Wait::Soak)
    } else if !synced() {
        Some(Wait::Proxies)
    } else {
        None
    };
    if let Some(wait) = wait {
        if wait == r.waiting {
            return (next, None);
        }
        let held = next.ramp.as_mut().expect("bug: a ramp just seen");
        held.waiting = wait;
        let transition = (wait != Wait::Soak).then_some(Transition::RampWaiting {
            color,
            percent: r.percent,
            step: r.step,
            of,
            wait,
        });
        return (next, transition);
    }
    let (step, percent) = ramp.after(r.percent).unwrap_or((of, 100));
    next.ramp = (percent < 100).then_some(RampStep {
        from: r.from,
        step,
        percent,
        since: now,
        waiting: Wait::Soak,
    });
    super::decide::extend_bake(&mut next, service, now);
    (
        next,
        Some(Transition::RampStep {
            color,
            percent,
            step,
            of,
        }),
    )
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::rollout::decide::tests::{ok, on_blue, service, trip};
    use crate::rollout::decide::{Observed, decide};
    use crate::state::Color;
    use crate::state::Weights;

    const RAMP: &str = "    ramp: {steps: [10, 50, 100], every: 30s}\n";

    /// The track after the switch to green at `t0`.
    fn switched(s: &Service, t0: Instant) -> Track {
        let (t, what) = decide(s, &on_blue(), &ok(), t0);
        assert!(
            matches!(what, Some(Transition::Switched { .. })),
            "{what:?}"
        );
        t
    }

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    #[test]
    fn a_switch_puts_the_first_step_in_force() {
        let s = service(RAMP);
        let t = switched(&s, Instant::now());
        assert_eq!(t.in_force, Color::Green);
        assert_eq!(t.ramp.as_ref().map(|r| (r.step, r.percent)), Some((1, 10)));
        assert_eq!(t.split(&s), Weights::of(Color::Green, 10));
        // Without a ramp, or with a single step of 100, it is all at once.
        assert_eq!(switched(&service(""), Instant::now()).ramp, None);
        let whole = service("    ramp: {steps: [100]}\n");
        assert_eq!(switched(&whole, Instant::now()).split(&whole).green, 100);
    }

    #[test]
    fn the_next_step_waits_for_the_soak_and_for_every_proxy() {
        let s = service(RAMP);
        let t0 = Instant::now();
        let t = switched(&s, t0);
        // Before `every`: the soak; proxies are not even asked.
        let (t, what) = step(&s, &t, t0 + secs(29), || panic!("asked too early"));
        assert_eq!((t.ramp.as_ref().unwrap().percent, what), (10, None));
        // After `every`, a proxy that does not hold the step holds the ramp, said once.
        let (t, what) = step(&s, &t, t0 + secs(30), || false);
        assert_eq!(t.ramp.as_ref().unwrap().waiting, Wait::Proxies);
        assert_eq!(
            what,
            Some(Transition::RampWaiting {
                color: Color::Green,
                percent: 10,
                step: 1,
                of: 3,
                wait: Wait::Proxies
            })
        );
        assert_eq!(
            what.unwrap().reason().unwrap(),
            "green at 10 % (step 1 of 3): step 2 waits for every proxy to acknowledge this one"
        );
        let (t, what) = step(&s, &t, t0 + secs(100), || false);
        assert_eq!((t.ramp.as_ref().unwrap().percent, what), (10, None));
        // Once every proxy holds it: the next step, and its soak starts over.
        let (t, what) = step(&s, &t, t0 + secs(101), || true);
        let Some(Transition::RampStep { percent: 50, .. }) = &what else {
            panic!("expected step 2, got {what:?}")
        };
        assert_eq!(
            what.unwrap().reason().unwrap(),
            "green at 50 % (step 2 of 3)"
        );
        assert_eq!(t.split(&s), Weights::of(Color::Green, 50));
        let (t, what) = step(&s, &t, t0 + secs(130), || true);
        assert_eq!((t.ramp.as_ref().unwrap().percent, what), (50, None));
        // The last step ends the ramp: the file's color has everything.
        let (t, what) = step(&s, &t, t0 + secs(131), || true);
        assert_eq!(t.ramp, None);
        assert_eq!(t.split(&s), Weights::all(Color::Green));
        assert_eq!(
            what.unwrap().reason().unwrap(),
            "green at 100 % (step 3 of 3): the ramp is complete"
        );
    }

    #[test]
    fn a_paused_ramp_holds_its_step_until_the_file_resumes_it() {
        let paused = service("    ramp: {steps: [10, 50, 100], every: 30s, paused: true}\n");
        let t0 = Instant::now();
        let t = switched(&paused, t0);
        assert_eq!(
            t.ramp.as_ref().unwrap().percent,
            10,
            "the first step, then held"
        );
        let (t, what) = step(&paused, &t, t0 + secs(1), || true);
        assert!(
            matches!(
                what,
                Some(Transition::RampWaiting {
                    wait: Wait::Paused,
                    ..
                })
            ),
            "{what:?}"
        );
        assert_eq!(what.unwrap().name(), "ramp_paused");
        for n in [40, 400, 4000] {
            let (next, what) = step(&paused, &t, t0 + secs(n), || true);
            assert_eq!((next.ramp.as_ref().unwrap().percent, what), (10, None));
        }
        // Resumed long after `every`: the next step at once.
        let (t, what) = step(&service(RAMP), &t, t0 + secs(4001), || true);
        assert!(matches!(
            what,
            Some(Transition::RampStep { percent: 50, .. })
        ));
        assert_eq!(t.ramp.unwrap().since, t0 + secs(4001));
    }

    #[test]
    fn setting_active_back_aborts_the_ramp_at_once_even_with_a_gate() {
        let s = service(RAMP);
        let t0 = Instant::now();
        let t = switched(&s, t0);
        let mut back = service(&format!("{RAMP}    gate: {{}}\n"));
        back.active = Color::Blue;
        let (t, what) = decide(&back, &t, &ok(), t0 + secs(5));
        assert_eq!(
            (t.in_force, &t.phase, &t.ramp),
            (Color::Blue, &Phase::Steady, &None)
        );
        assert_eq!(t.split(&back), Weights::all(Color::Blue));
        assert_eq!(
            what.unwrap().reason().unwrap(),
            "`active` is blue again: the ramp to green stopped at 10 % and blue takes all the traffic"
        );
    }

    #[test]
    fn a_tripped_bake_rolls_back_to_all_of_the_old_color_at_any_step() {
        let s = service(&format!("{RAMP}    bake: {{window: 10s}}\n"));
        let t0 = Instant::now();
        let t = switched(&s, t0);
        // The bake outlasts its window while the ramp goes on.
        let (t, _) = step(&s, &t, t0 + secs(30), || true);
        assert!(matches!(t.phase, Phase::Baking { until, .. } if until >= t0 + secs(60)));
        let (t, what) = decide(&s, &t, &ok(), t0 + secs(45));
        assert_eq!((t.ramp.as_ref().unwrap().percent, what), (50, None));
        let tripped = Observed {
            bake_trip: Some(trip()),
            ..ok()
        };
        let (t, what) = decide(&s, &t, &tripped, t0 + secs(50));
        assert!(
            matches!(what, Some(Transition::RolledBack { .. })),
            "{what:?}"
        );
        assert_eq!((t.in_force, &t.ramp), (Color::Blue, &None));
        assert_eq!(t.split(&s), Weights::all(Color::Blue));
        // The rollback stands: no ramp step comes after it.
        assert_eq!(step(&s, &t, t0 + secs(500), || true).1, None);
    }

    #[test]
    fn a_bake_that_could_not_roll_back_holds_the_step() {
        let s = service(&format!("{RAMP}    bake: {{window: 10s}}\n"));
        let t0 = Instant::now();
        let mut t = switched(&s, t0);
        if let Phase::Baking { refused, .. } = &mut t.phase {
            *refused = Some("blue cannot run".into());
        }
        let (t, what) = step(&s, &t, t0 + secs(60), || true);
        assert_eq!(t.ramp.as_ref().unwrap().percent, 10);
        assert!(matches!(
            what,
            Some(Transition::RampWaiting {
                wait: Wait::Bake,
                ..
            })
        ));
    }

    #[test]
    fn removing_the_ramp_from_the_file_finishes_the_switch() {
        let t0 = Instant::now();
        let t = switched(&service(RAMP), t0);
        let plain = service("");
        let (t, what) = step(&plain, &t, t0 + secs(1), || false);
        assert_eq!(t.ramp, None);
        assert_eq!(t.split(&plain), Weights::all(Color::Green));
        assert_eq!(what.unwrap().name(), "ramp_step");
    }
}
