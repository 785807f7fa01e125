//! Every service's [`Track`]: the rollout of a whole state, stepped by the pipeline when a
//! file is accepted and on each tick of the controller. Only services with something to
//! decide (a switch the file asks for that is not in force yet, a bake, a rollout between
//! waves) are stepped.
//!
//! A ramp's next step ([`super::ramp`]) is decided here too, after the service's own
//! decision, with one answer per step to whether every proxy holds what it is owed (so
//! the members of a release group, which share their ramp, step together).
//!
//! Two things span more than one service's decision, and are worked out here:
//! - **Waves** (`rollout:`): a switch reaches the first wave; the next gets it once every
//!   proxy of the waves so far acknowledged it and it soaked for `soak` (with a bake that
//!   has not tripped: the bake goes on until the last wave has soaked). A tripped bake
//!   rolls every wave back at once, and so does the operator setting `active` back.
//! - **Release groups** (`group:`): members switch in the same step or not at all (one
//!   waiting for its gate holds the others), advance through their waves together, and
//!   when one rolls back, those that moved with it roll back too.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::decide::{self, Observed, Phase, Track, Transition};
use crate::fleet::Rolling;
use crate::state::{Color, DesiredState, Service, Weights};

/// What the controller observed, handed to [`Tracks::step`] one service at a time.
pub trait Observe: std::fmt::Debug {
    fn observe(&self, service: &Service, track: &Track, now: Instant) -> Observed;

    /// Called after the tracks changed (a file accepted, a decision made): start or stop
    /// whatever watching the tracks now need.
    fn sync(&self, _state: &DesiredState, _tracks: &Tracks) {}

    /// Whether each color of `service` may run against its database's current schema
    /// (blue, then green): what keeps shadow and preview traffic off a refused color.
    fn schema(&self, _service: &Service) -> [Result<(), String>; 2] {
        [Ok(()), Ok(())]
    }

    /// Each followed database's schema version, for `/status`.
    fn databases(&self) -> Vec<super::view::DatabaseStatus> {
        Vec::new()
    }

    /// What `/status` shows beyond the track: the gate's progress, each color's traffic.
    fn details(&self, _service: &Service, _track: &Track) -> super::view::Details {
        super::view::Details::default()
    }

    /// Whether every connected proxy of `service`'s waves up to `progress.reached` holds
    /// the configuration it is owed (still connecting counts: it will get it).
    fn waves_synced(&self, _service: &Service, _progress: &WaveProgress) -> bool {
        true
    }

    /// Whether every connected proxy holds the configuration it is owed (still connecting
    /// counts: it will get it): what a ramp's next step waits for.
    fn proxies_synced(&self) -> bool {
        true
    }
}

/// A switch on its way through a rollout's waves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WaveProgress {
    /// The color the waves not reached yet keep.
    pub from: Color,
    /// The last wave that has the switch (from 0).
    pub reached: usize,
    /// When it got it.
    pub since: Instant,
}

/// Observes nothing: every color may run, no gate has passed, nothing trips. For a
/// pipeline without a controller (tests, `render`).
#[derive(Debug, Default)]
pub struct Nothing;

impl Observe for Nothing {
    fn observe(&self, _: &Service, _: &Track, _: Instant) -> Observed {
        Observed {
            schema: [Ok(()), Ok(())],
            gate_passed: false,
            bake_trip: None,
        }
    }
}

/// The tracks of the services of the state in force.
#[derive(Debug, Clone, Default)]
pub struct Tracks {
    tracks: HashMap<String, Track>,
    /// Services of the state last started or stepped with something to decide: a tick
    /// asks this, not every service, whether there is anything to do.
    pending: usize,
    /// Switches on their way through their waves, by service.
    waves: HashMap<String, WaveProgress>,
    /// Per release group: the members that switched together last, to roll back together.
    moved: HashMap<String, Vec<String>>,
}

/// A transition of one service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub service: String,
    pub transition: Transition,
}

impl Tracks {
    /// Every service starts on its file's color, except where `restored` (decisions kept
    /// across a restart) says otherwise and still applies, and where the schema guard
    /// refuses the file's color and not the other (given `versions` read at start): then
    /// the other color is in force and the switch is held.
    pub fn start(state: &DesiredState, restored: HashMap<String, Track>) -> Tracks {
        Tracks::start_guarded(state, restored, &super::schema::Versions::new())
    }

    /// [`Tracks::start`], with the schema guard applied at start.
    pub fn start_guarded(
        state: &DesiredState,
        restored: HashMap<String, Track>,
        versions: &super::schema::Versions,
    ) -> Tracks {
        let mut tracks = HashMap::with_capacity(state.services.len());
        for s in &state.services {
            let guard = super::schema::check_both(s, versions);
            let track = match (restored.get(&s.name), &guard[s.active as usize]) {
                (Some(t), _) if still_applies(s, t) => t.clone(),
                (_, Err(why))
                    if !versions.is_empty() && guard[s.active.other() as usize].is_ok() =>
                {
                    Track {
                        in_force: s.active.other(),
                        phase: Phase::Held {
                            to: s.active,
                            reason: why.clone(),
                        },
                        ramp: None,
                    }
                }
                _ => decide::start(s),
            };
            tracks.insert(s.name.clone(), track);
        }
        let mut tracks = Tracks {
            tracks,
            ..Tracks::default()
        };
        tracks.pending = state
            .services
            .iter()
            .filter(|s| tracks.needs_step(s))
            .count();
        tracks
    }

    pub fn get(&self, service: &str) -> Option<&Track> {
        self.tracks.get(service)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&String, &Track)> {
        self.tracks.iter()
    }

    /// Whether any service of the state last stepped has something to decide (else a tick
    /// has nothing to do).
    pub fn busy(&self) -> bool {
        self.pending > 0
    }

    /// A service has something to decide unless it is steady on its file's color, or
    /// stands on a decision only a file change can end (a rollback or a given-up switch
    /// for the file's color and `attempt`).
    fn needs_step(&self, s: &Service) -> bool {
        match self.tracks.get(&s.name) {
            None => true,
            Some(_) if self.waves.contains_key(&s.name) => true,
            Some(t) if t.ramp.is_some() => true,
            Some(t) => match &t.phase {
                Phase::RolledBack { .. } | Phase::GaveUp { .. } => !still_applies(s, t),
                Phase::Steady => t.in_force != s.active,
                _ => true,
            },
        }
    }

    /// Steps every service that needs it against `state` (the file's), returning what
    /// changed. Services gone from the file are forgotten; new ones start on their color.
    pub fn step(
        &mut self,
        state: &DesiredState,
        observe: &dyn Observe,
        now: Instant,
    ) -> Vec<Decision> {
        if self.tracks.len() != state.services.len()
            || state
                .services
                .iter()
                .any(|s| !self.tracks.contains_key(&s.name))
        {
            let keep: std::collections::HashSet<&str> =
                state.services.iter().map(|s| s.name.as_str()).collect();
            self.tracks.retain(|name, _| keep.contains(name.as_str()));
        }
        self.waves
            .retain(|name, _| state.service(name).is_some_and(|s| s.rollout.is_some()));
        // The file went back to the color the waves not reached still have: back on every
        // wave at once, with no gate (every proxy ran it a moment ago). Told first, after
        // what follows has looked at the step's own decisions (this is no new rollout).
        let mut reverted = Vec::new();
        let back: Vec<(String, Color)> = self
            .waves
            .iter()
            .filter_map(|(name, w)| {
                let s = state.service(name)?;
                (s.active == w.from).then(|| (name.clone(), w.from))
            })
            .collect();
        for (name, to) in back {
            self.waves.remove(&name);
            if let Some(t) = self.tracks.get_mut(&name) {
                let from = t.in_force;
                *t = Track {
                    in_force: to,
                    phase: Phase::Steady,
                    ramp: None,
                };
                reverted.push(Decision {
                    service: name,
                    transition: Transition::Switched { from, to },
                });
            }
        }
        // While waves roll out, the bake goes on (it judges every wave).
        for name in self.waves.keys() {
            if let (Some(s), Some(t)) = (state.service(name), self.tracks.get_mut(name)) {
                decide::extend_bake(t, s, now);
            }
        }
        // Each service's own decision first, then what spans services.
        let mut stepped: Vec<(&Service, Track, Option<Transition>)> = Vec::new();
        for s in &state.services {
            if !self.needs_step(s) {
                continue;
            }
            match self.tracks.get(&s.name) {
                None => {
                    self.tracks.insert(s.name.clone(), decide::start(s));
                }
                Some(track) => {
                    let seen = observe.observe(s, track, now);
                    let (next, transition) = decide::decide(s, track, &seen, now);
                    stepped.push((s, next, transition));
                }
            }
        }
        self.hold_groups(state, &mut stepped, now);
        let mut decisions = Vec::new();
        // Asked once per step, and only when a ramp's soak is over.
        let synced = std::cell::OnceCell::new();
        for (s, mut next, transition) in stepped {
            let mut ramped = None;
            match (&transition, &next.ramp) {
                (Some(Transition::Switched { .. }), Some(r)) => {
                    ramped = Some(Transition::RampStep {
                        color: next.in_force,
                        percent: r.percent,
                        step: r.step,
                        of: s.ramp.as_ref().map_or(1, |r| r.steps.len()),
                    });
                }
                (_, Some(_)) => {
                    let (after, t) = super::ramp::step(s, &next, now, || {
                        *synced.get_or_init(|| observe.proxies_synced())
                    });
                    next = after;
                    ramped = t;
                }
                _ => {}
            }
            self.tracks.insert(s.name.clone(), next);
            for transition in transition.into_iter().chain(ramped) {
                decisions.push(Decision {
                    service: s.name.clone(),
                    transition,
                });
            }
        }
        self.follow_waves(state, &mut decisions, now);
        self.roll_back_groups(state, &mut decisions);
        self.advance_waves(state, observe, &mut decisions, now);
        self.pending = state.services.iter().filter(|s| self.needs_step(s)).count();
        reverted.extend(decisions);
        reverted
    }

    /// A release group switches in one step or not at all: while a member that asks for
    /// a switch cannot make it yet (its gate, the schema guard), the members that could
    /// wait with it, as if gated.
    fn hold_groups(
        &self,
        state: &DesiredState,
        stepped: &mut [(&Service, Track, Option<Transition>)],
        now: Instant,
    ) {
        let switching = |s: &Service| {
            self.tracks
                .get(&s.name)
                .is_some_and(|t| t.in_force != s.active && still_asks(s, t))
        };
        // A group on its way through its waves takes no new switch until it is through:
        // its members move as one.
        let mut blocked: Vec<&str> = state
            .services
            .iter()
            .filter(|s| self.waves.contains_key(&s.name))
            .filter_map(|s| s.group.as_deref())
            .collect();
        for s in &state.services {
            let Some(group) = &s.group else { continue };
            if !switching(s) {
                continue;
            }
            let switched = stepped
                .iter()
                .any(|(t, next, _)| t.name == s.name && next.in_force == s.active);
            if !switched {
                blocked.push(group);
            }
        }
        if blocked.is_empty() {
            return;
        }
        for (s, next, transition) in stepped.iter_mut() {
            let held = s.group.as_deref().is_some_and(|g| blocked.contains(&g));
            if !held || !matches!(transition, Some(Transition::Switched { .. })) {
                continue;
            }
            let before = &self.tracks[&s.name];
            let since = match before.phase {
                Phase::Gating { since, .. } => since,
                _ => now,
            };
            *next = Track {
                in_force: before.in_force,
                phase: Phase::Gating {
                    to: s.active,
                    since,
                },
                ramp: None,
            };
            *transition = None;
        }
    }

    /// Starts, or ends, the waves of each switch just made; remembers which members of a
    /// release group moved together.
    fn follow_waves(&mut self, state: &DesiredState, decisions: &mut [Decision], now: Instant) {
        let mut moved: HashMap<String, Vec<String>> = HashMap::new();
        for d in decisions.iter() {
            let Some(s) = state.service(&d.service) else {
                continue;
            };
            match &d.transition {
                Transition::Switched { from, to } => {
                    if let Some(group) = &s.group {
                        moved.entry(group.clone()).or_default().push(s.name.clone());
                    }
                    let rolling_back = self.waves.get(&s.name).is_some_and(|w| w.from == *to);
                    if rolling_back || s.rollout.is_none() {
                        // Back to the color the waves not reached still have: everywhere
                        // at once.
                        self.waves.remove(&s.name);
                    } else {
                        self.waves.insert(
                            s.name.clone(),
                            WaveProgress {
                                from: *from,
                                reached: 0,
                                since: now,
                            },
                        );
                    }
                }
                Transition::RolledBack { .. } => {
                    self.waves.remove(&s.name);
                }
                _ => {}
            }
        }
        self.moved.extend(moved);
    }

    /// When a member of a release group rolls back, the members that moved with it and
    /// still have the color it moved to roll back too, for the same reason.
    fn roll_back_groups(&mut self, state: &DesiredState, decisions: &mut Vec<Decision>) {
        let mut more = Vec::new();
        for d in decisions.iter() {
            let Transition::RolledBack { reason, .. } = &d.transition else {
                continue;
            };
            let Some(group) = state.service(&d.service).and_then(|s| s.group.as_ref()) else {
                continue;
            };
            for member in self.moved.get(group).into_iter().flatten() {
                let Some(s) = state.service(member) else {
                    continue;
                };
                let rolled = decisions
                    .iter()
                    .chain(&more)
                    .any(|d: &Decision| d.service == *member && d.transition.trip().is_some());
                let Some(track) = self.tracks.get(member) else {
                    continue;
                };
                if rolled || track.in_force != s.active {
                    continue;
                }
                let (next, transition) =
                    decide::roll_back_with(s, track, &d.service, reason.clone());
                self.tracks.insert(member.clone(), next);
                self.waves.remove(member);
                more.push(Decision {
                    service: member.clone(),
                    transition,
                });
            }
        }
        decisions.extend(more);
    }

    /// Moves each rollout on to its next wave once every proxy of the waves so far holds
    /// the switch and it soaked; a release group's members move on together.
    fn advance_waves(
        &mut self,
        state: &DesiredState,
        observe: &dyn Observe,
        decisions: &mut Vec<Decision>,
        now: Instant,
    ) {
        // Each rolling service judged once (a census walks every proxy).
        let mut judged: HashMap<String, bool> = HashMap::new();
        let mut ready = |s: &Service, w: &WaveProgress| -> bool {
            *judged.entry(s.name.clone()).or_insert_with(|| {
                let soak = s.rollout.as_ref().map_or(Duration::ZERO, |r| r.soak);
                now.saturating_duration_since(w.since) >= soak && observe.waves_synced(s, w)
            })
        };
        let mut go: Vec<String> = Vec::new();
        for s in &state.services {
            let Some(w) = self.waves.get(&s.name) else {
                continue;
            };
            let members_ready = match &s.group {
                None => ready(s, w),
                Some(g) => state
                    .services
                    .iter()
                    .filter(|m| m.group.as_ref() == Some(g))
                    .all(|m| self.waves.get(&m.name).is_none_or(|mw| ready(m, mw))),
            };
            if members_ready {
                go.push(s.name.clone());
            }
        }
        for name in go {
            let Some(s) = state.service(&name) else {
                continue;
            };
            let last = s.rollout.as_ref().map_or(0, |r| r.last());
            let w = self
                .waves
                .get_mut(&name)
                .expect("bug: a rolling service lost its waves");
            w.reached += 1;
            w.since = now;
            let wave = w.reached;
            if wave >= last {
                self.waves.remove(&name);
            }
            if let Some(track) = self.tracks.get_mut(&name) {
                decide::extend_bake(track, s, now);
            }
            decisions.push(Decision {
                service: name,
                transition: Transition::WaveReached {
                    color: s.active,
                    wave: wave + 1,
                    of: last + 1,
                },
            });
        }
    }

    /// The switches on their way through their waves, for the snapshot variants.
    pub fn rolling(&self) -> Vec<Rolling> {
        let mut rolling: Vec<Rolling> = self
            .waves
            .iter()
            .map(|(name, w)| Rolling {
                services: vec![name.clone()],
                from: w.from,
                reached: w.reached,
            })
            .collect();
        rolling.sort_by(|a, b| a.services.cmp(&b.services));
        rolling
    }

    /// Puts back the waves a journal kept (`from`, last wave reached, by service) where
    /// the file still asks for the color in force and the service still rolls out: the
    /// waves not reached keep `from` after a restart; each reached one soaks again.
    pub fn restore_waves(
        &mut self,
        state: &DesiredState,
        waves: HashMap<String, (Color, usize)>,
        now: Instant,
    ) {
        for (name, (from, reached)) in waves {
            let (Some(s), Some(t)) = (state.service(&name), self.tracks.get(&name)) else {
                continue;
            };
            let Some(rollout) = &s.rollout else { continue };
            if t.in_force != s.active || t.in_force == from || reached >= rollout.last() {
                continue;
            }
            self.waves.insert(
                name,
                WaveProgress {
                    from,
                    reached,
                    since: now,
                },
            );
        }
        self.pending = state.services.iter().filter(|s| self.needs_step(s)).count();
    }

    /// Where `service`'s switch is in its waves, while it is on its way.
    pub fn wave_progress(&self, service: &str) -> Option<&WaveProgress> {
        self.waves.get(service)
    }

    /// The color in force for `service`.
    pub fn in_force(&self, service: &Service) -> Color {
        self.tracks
            .get(&service.name)
            .map_or(service.active, |t| t.in_force)
    }

    /// [`Tracks::apply`], and no shadow, preview or share of a split to an idle color the
    /// schema guard refuses (after a contract migration the old color must not run at all).
    pub fn apply_guarded(
        &self,
        state: &Arc<DesiredState>,
        observe: &dyn Observe,
    ) -> Arc<DesiredState> {
        let in_force = self.apply(state);
        let reaches_idle =
            |s: &Service| s.shadow.is_some() || s.preview.enabled || s.weight(s.active.other()) > 0;
        let refused: Vec<usize> = in_force
            .services
            .iter()
            .enumerate()
            .filter(|(_, s)| s.database.is_some() && reaches_idle(s))
            .filter(|(_, s)| observe.schema(s)[s.active.other() as usize].is_err())
            .map(|(i, _)| i)
            .collect();
        if refused.is_empty() {
            return in_force;
        }
        let mut guarded = (*in_force).clone();
        for i in refused {
            let s = &mut guarded.services[i];
            s.shadow = None;
            s.preview.enabled = false;
            s.weights = None;
        }
        Arc::new(guarded)
    }

    /// How `service`'s traffic is split in force ([`Track::split`]).
    ///
    /// [`Track::split`]: super::decide::Track::split
    pub fn split(&self, service: &Service) -> Weights {
        self.tracks
            .get(&service.name)
            .map_or(service.split(), |t| t.split(service))
    }

    /// `state` with each service's traffic split as in force: what proxies get. A split
    /// (`weights`) stands while its active color is in force; a ramp on its way gives its
    /// step; when the rollout holds or rolls back a switch, the color in force takes all
    /// the traffic. The same `Arc` when nothing differs.
    pub fn apply(&self, state: &Arc<DesiredState>) -> Arc<DesiredState> {
        let differs = |s: &Service| {
            self.tracks
                .get(&s.name)
                .is_some_and(|t| t.ramp.is_some() || t.in_force != s.active)
        };
        if !state.services.iter().any(differs) {
            return state.clone();
        }
        let mut in_force = (**state).clone();
        for s in &mut in_force.services {
            let split = self.split(s);
            if split != s.split() {
                s.set_split(split);
            }
        }
        Arc::new(in_force)
    }
}

/// Does the file still ask for a switch the track has not made (not one a rollback or a
/// given-up gate for the same `attempt` stands against)?
fn still_asks(s: &Service, t: &Track) -> bool {
    match &t.phase {
        Phase::RolledBack { .. } | Phase::GaveUp { .. } => !still_applies(s, t),
        _ => true,
    }
}

/// A kept decision applies while the file still asks for the color it refused, with the
/// same attempt; a kept bake while the file still asks for the color being baked; a kept
/// ramp while the file still ramps to its color.
fn still_applies(s: &Service, t: &Track) -> bool {
    match &t.phase {
        Phase::RolledBack { from, attempt, .. } => *from == s.active && *attempt == s.attempt,
        Phase::GaveUp { to, attempt } => *to == s.active && *attempt == s.attempt,
        Phase::Baking { .. } => t.in_force == s.active && s.bake.is_some(),
        Phase::Held { to, .. } | Phase::Gating { to, .. } => *to == s.active && t.in_force != *to,
        Phase::Steady => t.ramp.is_some() && t.in_force == s.active && s.ramp.is_some(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::parse_str;

    const BLUE: &str = include_str!("../../tests/fixtures/one_service.yaml");

    #[test]
    fn without_workflow_keys_the_in_force_state_is_the_file() {
        let blue = Arc::new(parse_str(BLUE).unwrap());
        let mut tracks = Tracks::start(&blue, HashMap::new());
        assert!(Arc::ptr_eq(&tracks.apply(&blue), &blue));
        let green = Arc::new(parse_str(&BLUE.replace("active: blue", "active: green")).unwrap());
        let decisions = tracks.step(&green, &Nothing, Instant::now());
        assert_eq!(decisions.len(), 1);
        assert!(Arc::ptr_eq(&tracks.apply(&green), &green));
        assert!(!tracks.busy());
    }

    #[test]
    fn a_gated_switch_keeps_the_old_color_in_force() {
        let blue = Arc::new(parse_str(BLUE).unwrap());
        let mut tracks = Tracks::start(&blue, HashMap::new());
        let green = Arc::new(
            parse_str(&BLUE.replace("active: blue", "active: green\n    gate: {}")).unwrap(),
        );
        tracks.step(&green, &Nothing, Instant::now());
        assert_eq!(tracks.apply(&green).services[0].active, Color::Blue);
        assert!(tracks.busy());
    }

    #[test]
    fn a_kept_rollback_applies_only_while_the_file_asks_the_same() {
        let green = parse_str(&BLUE.replace("active: blue", "active: green")).unwrap();
        let rolled = Track {
            in_force: Color::Blue,
            phase: Phase::RolledBack {
                from: Color::Green,
                attempt: None,
                reason: decide::Trip {
                    errors: 1,
                    requests: 1,
                    proxies: vec![],
                    failing_endpoints: vec![],
                    after: std::time::Duration::ZERO,
                    window: std::time::Duration::from_secs(60),
                },
            },
            ramp: None,
        };
        let restored = HashMap::from([("summarizer".to_owned(), rolled)]);
        let tracks = Tracks::start(&green, restored.clone());
        assert_eq!(tracks.in_force(&green.services[0]), Color::Blue);
        let retried =
            parse_str(&BLUE.replace("active: blue", "active: green\n    attempt: 2")).unwrap();
        let tracks = Tracks::start(&retried, restored);
        assert_eq!(tracks.in_force(&retried.services[0]), Color::Green);
    }

    /// Every proxy holds what it is owed when told so.
    #[derive(Debug, Default)]
    struct Acks(std::sync::atomic::AtomicBool);

    impl Observe for Acks {
        fn observe(&self, s: &Service, t: &Track, now: Instant) -> Observed {
            Nothing.observe(s, t, now)
        }

        fn proxies_synced(&self) -> bool {
            self.0.load(std::sync::atomic::Ordering::SeqCst)
        }
    }

    #[test]
    fn a_ramp_puts_each_step_in_force_once_it_soaked_and_every_proxy_holds_the_last() {
        let blue = Arc::new(parse_str(BLUE).unwrap());
        let mut tracks = Tracks::start(&blue, HashMap::new());
        let green = Arc::new(
            parse_str(&BLUE.replace(
                "active: blue",
                "active: green\n    ramp: {steps: [10, 50, 100], every: 1s}",
            ))
            .unwrap(),
        );
        let acks = Acks::default();
        let names = |d: Vec<Decision>| -> Vec<&'static str> {
            d.iter().map(|d| d.transition.name()).collect()
        };
        let t0 = Instant::now();
        let at = |ms: u64| t0 + std::time::Duration::from_millis(ms);
        assert_eq!(
            names(tracks.step(&green, &acks, t0)),
            ["switched", "ramp_step"]
        );
        let first = tracks.apply(&green);
        assert_eq!(first.services[0].split(), Weights::of(Color::Green, 10));
        assert_eq!(first.services[0].active, Color::Blue, "90 % is the larger");
        // Soaked, but a proxy does not hold step 1: said once, and held.
        assert_eq!(
            names(tracks.step(&green, &acks, at(1000))),
            ["ramp_waiting"]
        );
        assert!(names(tracks.step(&green, &acks, at(5000))).is_empty());
        assert_eq!(tracks.apply(&green).version(), first.version());
        acks.0.store(true, std::sync::atomic::Ordering::SeqCst);
        assert_eq!(names(tracks.step(&green, &acks, at(5100))), ["ramp_step"]);
        let second = tracks.apply(&green);
        assert_eq!(second.services[0].split(), Weights::of(Color::Green, 50));
        assert_ne!(second.version(), first.version());
        assert!(names(tracks.step(&green, &acks, at(6000))).is_empty());
        assert_eq!(names(tracks.step(&green, &acks, at(6100))), ["ramp_step"]);
        assert!(
            Arc::ptr_eq(&tracks.apply(&green), &green),
            "all green: the file"
        );
        assert!(!tracks.busy());
    }

    /// Refuses one color for every service.
    #[derive(Debug)]
    struct Refuses(Color);

    impl Observe for Refuses {
        fn observe(&self, s: &Service, t: &Track, now: Instant) -> Observed {
            Nothing.observe(s, t, now)
        }

        fn schema(&self, _: &Service) -> [Result<(), String>; 2] {
            Color::ALL.map(|c| {
                if c == self.0 {
                    Err("cannot run".to_owned())
                } else {
                    Ok(())
                }
            })
        }
    }

    #[test]
    fn a_split_stands_while_its_active_color_is_in_force_and_else_gives_way() {
        let blue = Arc::new(parse_str(BLUE).unwrap());
        let mut tracks = Tracks::start(&blue, HashMap::new());
        // 90/10 keeps blue active: steady, in force as written.
        let canary = Arc::new(
            parse_str(&BLUE.replace("active: blue", "weights: {blue: 90, green: 10}")).unwrap(),
        );
        assert!(tracks.step(&canary, &Nothing, Instant::now()).is_empty());
        assert!(Arc::ptr_eq(&tracks.apply(&canary), &canary));
        // 10/90 makes green active, behind a gate: blue keeps all the traffic meanwhile.
        let gated = Arc::new(
            parse_str(&BLUE.replace(
                "active: blue",
                "weights: {blue: 10, green: 90}\n    gate: {}",
            ))
            .unwrap(),
        );
        tracks.step(&gated, &Nothing, Instant::now());
        let held = tracks.apply(&gated);
        assert_eq!(held.services[0].active, Color::Blue);
        assert_eq!(held.services[0].weights, None);
        assert_eq!(held.services[0].weight(Color::Green), 0);
    }

    /// The service guarded by a database, with `keys` instead of `active: blue`.
    fn guarded(keys: &str) -> Arc<DesiredState> {
        let text = format!(
            "databases:\n  - name: db\n    file: /v\n{}",
            BLUE.replace("active: blue", &format!("{keys}\n    database: db"))
                .replace("8081\"]", "8081\"]\n      schemas: [1]")
                .replace("8082\"]", "8082\"]\n      schemas: [1]")
        );
        Arc::new(parse_str(&text).unwrap())
    }

    #[test]
    fn no_share_of_a_split_reaches_an_idle_color_the_schema_guard_refuses() {
        let state = guarded("weights: {blue: 90, green: 10}");
        let tracks = Tracks::start(&state, HashMap::new());
        let guarded = tracks.apply_guarded(&state, &Refuses(Color::Green));
        assert_eq!(guarded.services[0].weight(Color::Blue), 100);
        assert_eq!(guarded.services[0].weight(Color::Green), 0);
    }

    #[test]
    fn no_shadow_or_preview_reaches_an_idle_color_the_schema_guard_refuses() {
        let state = guarded("active: blue\n    shadow:\n      percent: 10");
        let tracks = Tracks::start(&state, HashMap::new());
        let guarded = tracks.apply_guarded(&state, &Refuses(Color::Green));
        assert_eq!(guarded.services[0].shadow, None);
        assert!(!guarded.services[0].preview.enabled);
        // Refusing the live color changes nothing of the idle one's traffic.
        let kept = tracks.apply_guarded(&state, &Refuses(Color::Blue));
        assert!(Arc::ptr_eq(&kept, &state));
    }

    /// Observes nothing but whether the waves so far are synced.
    #[derive(Debug)]
    struct Synced(std::sync::atomic::AtomicBool);

    impl Observe for Synced {
        fn observe(&self, s: &Service, t: &Track, now: Instant) -> Observed {
            Nothing.observe(s, t, now)
        }

        fn waves_synced(&self, _: &Service, _: &WaveProgress) -> bool {
            self.0.load(std::sync::atomic::Ordering::SeqCst)
        }
    }

    fn rolled(active: &str) -> Arc<DesiredState> {
        let text = BLUE.replace(
            "active: blue",
            &format!("active: {active}\n    rollout:\n      soak: 10s\n      waves: [{{zone: a}}, {{zone: b}}, {{}}]"),
        );
        Arc::new(parse_str(&text).unwrap())
    }

    #[test]
    fn a_wave_follows_only_once_the_waves_so_far_are_synced_and_soaked() {
        let synced = Synced(false.into());
        let t0 = Instant::now();
        let mut tracks = Tracks::start(&rolled("blue"), HashMap::new());
        let green = rolled("green");
        tracks.step(&green, &synced, t0);
        let w = tracks.wave_progress("summarizer").unwrap();
        assert_eq!((w.from, w.reached), (Color::Blue, 0));
        assert!(tracks.busy());
        // Soaked, but a proxy of wave 1 does not hold it yet.
        let later = t0 + std::time::Duration::from_secs(11);
        assert!(tracks.step(&green, &synced, later).is_empty());
        synced.0.store(true, std::sync::atomic::Ordering::SeqCst);
        // Synced, but wave 2 has not soaked: nothing until 10 s after it got it.
        let d = tracks.step(&green, &synced, later);
        assert_eq!(d[0].transition.reason().unwrap(), "wave 2 of 3 has green");
        assert!(
            tracks
                .step(&green, &synced, later + std::time::Duration::from_secs(9))
                .is_empty()
        );
        let d = tracks.step(&green, &synced, later + std::time::Duration::from_secs(10));
        assert_eq!(
            d[0].transition.reason().unwrap(),
            "wave 3 of 3 has green: the rollout reached every proxy"
        );
        assert_eq!(tracks.wave_progress("summarizer"), None);
        assert!(tracks.rolling().is_empty());
        assert!(!tracks.busy());
    }

    #[test]
    fn setting_active_back_mid_rollout_goes_back_everywhere_at_once() {
        let synced = Synced(true.into());
        let t0 = Instant::now();
        let mut tracks = Tracks::start(&rolled("blue"), HashMap::new());
        tracks.step(&rolled("green"), &synced, t0);
        assert_eq!(tracks.rolling().len(), 1);
        let d = tracks.step(&rolled("blue"), &synced, t0);
        assert_eq!(d[0].transition.name(), "switched");
        assert!(tracks.rolling().is_empty(), "no wave keeps green");
        assert_eq!(tracks.in_force(&rolled("blue").services[0]), Color::Blue);
    }

    /// Every gate passes, every proxy holds what it is owed.
    #[derive(Debug)]
    struct GatesPass;

    impl Observe for GatesPass {
        fn observe(&self, s: &Service, t: &Track, now: Instant) -> Observed {
            Observed {
                gate_passed: true,
                ..Nothing.observe(s, t, now)
            }
        }
    }

    #[test]
    fn setting_active_back_mid_rollout_skips_the_gate_of_the_color_the_proxies_still_run() {
        let gated = |active: &str| {
            let text = BLUE.replace(
                "active: blue",
                &format!("active: {active}\n    gate: {{}}\n    rollout:\n      soak: 1h\n      waves: [{{zone: a}}, {{}}]"),
            );
            Arc::new(parse_str(&text).unwrap())
        };
        let mut tracks = Tracks::start(&gated("blue"), HashMap::new());
        tracks.step(&gated("green"), &GatesPass, Instant::now());
        assert_eq!(tracks.rolling().len(), 1);
        // Back to blue: no gate to wait for, no wave left on green.
        let d = tracks.step(&gated("blue"), &Nothing, Instant::now());
        assert_eq!(d[0].transition.name(), "switched", "{d:?}");
        assert!(tracks.rolling().is_empty());
        assert_eq!(tracks.in_force(&gated("blue").services[0]), Color::Blue);
        assert!(!tracks.busy());
    }

    #[test]
    fn a_group_member_waiting_for_its_gate_holds_the_others() {
        let two = |active: &str| {
            let text = format!(
                "{}    group: chat\n    gate: {{}}\n  - name: gateway\n    listener: public\n    domains: [gw]\n    group: chat\n    blue:\n      endpoints: [\"127.0.0.1:8083\"]\n    green:\n      endpoints: [\"127.0.0.1:8084\"]\n    active: {active}\n",
                BLUE.replace("active: blue", &format!("active: {active}"))
            );
            Arc::new(parse_str(&text).unwrap())
        };
        let mut tracks = Tracks::start(&two("blue"), HashMap::new());
        let green = two("green");
        // The summarizer's gate has not passed (Nothing passes no gate): neither moves.
        let d = tracks.step(&green, &Nothing, Instant::now());
        assert!(d.iter().all(|d| d.transition.name() != "switched"), "{d:?}");
        let in_force = tracks.apply(&green);
        assert!(in_force.services.iter().all(|s| s.active == Color::Blue));
        assert!(matches!(
            tracks.get("gateway").unwrap().phase,
            Phase::Gating { .. }
        ));
    }
}
