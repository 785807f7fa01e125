//! Every service's [`Track`]: the rollout of a whole state, stepped by the pipeline when a
//! file is accepted and on each tick of the controller. Only services with something to
//! decide (a switch the file asks for that is not in force yet, or a bake) are stepped.

use std::collections::HashMap;
use std::sync::Arc;

use tokio::time::Instant;

use super::decide::{self, Observed, Phase, Track, Transition};
use crate::state::{Color, DesiredState, Service};

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
                    }
                }
                _ => decide::start(s),
            };
            tracks.insert(s.name.clone(), track);
        }
        let mut tracks = Tracks { tracks, pending: 0 };
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
        let mut decisions = Vec::new();
        self.pending = 0;
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
                    self.tracks.insert(s.name.clone(), next);
                    if let Some(transition) = transition {
                        decisions.push(Decision {
                            service: s.name.clone(),
                            transition,
                        });
                    }
                }
            }
            self.pending += usize::from(self.needs_step(s));
        }
        decisions
    }

    /// The color in force for `service`.
    pub fn in_force(&self, service: &Service) -> Color {
        self.tracks
            .get(&service.name)
            .map_or(service.active, |t| t.in_force)
    }

    /// [`Tracks::apply`], and no shadow or preview traffic to an idle color the schema
    /// guard refuses (after a contract migration the old color must not run at all).
    pub fn apply_guarded(
        &self,
        state: &Arc<DesiredState>,
        observe: &dyn Observe,
    ) -> Arc<DesiredState> {
        let in_force = self.apply(state);
        let refused: Vec<usize> = in_force
            .services
            .iter()
            .enumerate()
            .filter(|(_, s)| s.database.is_some() && (s.shadow.is_some() || s.preview.enabled))
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
        }
        Arc::new(guarded)
    }

    /// `state` with each service's `active` set to the color in force: what proxies get.
    /// The same `Arc` when nothing differs.
    pub fn apply(&self, state: &Arc<DesiredState>) -> Arc<DesiredState> {
        if state.services.iter().all(|s| self.in_force(s) == s.active) {
            return state.clone();
        }
        let mut in_force = (**state).clone();
        for s in &mut in_force.services {
            s.active = self.in_force(s);
        }
        Arc::new(in_force)
    }
}

/// A kept decision applies while the file still asks for the color it refused, with the
/// same attempt; a kept bake while the file still asks for the color being baked.
fn still_applies(s: &Service, t: &Track) -> bool {
    match &t.phase {
        Phase::RolledBack { from, attempt, .. } => *from == s.active && *attempt == s.attempt,
        Phase::GaveUp { to, attempt } => *to == s.active && *attempt == s.attempt,
        Phase::Baking { .. } => t.in_force == s.active && s.bake.is_some(),
        Phase::Held { to, .. } | Phase::Gating { to, .. } => *to == s.active && t.in_force != *to,
        Phase::Steady => false,
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
        };
        let restored = HashMap::from([("summarizer".to_owned(), rolled)]);
        let tracks = Tracks::start(&green, restored.clone());
        assert_eq!(tracks.in_force(&green.services[0]), Color::Blue);
        let retried =
            parse_str(&BLUE.replace("active: blue", "active: green\n    attempt: 2")).unwrap();
        let tracks = Tracks::start(&retried, restored);
        assert_eq!(tracks.in_force(&retried.services[0]), Color::Green);
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
    fn no_shadow_or_preview_reaches_an_idle_color_the_schema_guard_refuses() {
        let text = format!(
            "databases:\n  - name: db\n    file: /v\n{}",
            BLUE.replace(
                "active: blue",
                "active: blue\n    database: db\n    shadow:\n      percent: 10"
            )
            .replace("8081\"]", "8081\"]\n      schemas: [1]")
            .replace("8082\"]", "8082\"]\n      schemas: [1]")
        );
        let state = Arc::new(parse_str(&text).unwrap());
        let tracks = Tracks::start(&state, HashMap::new());
        let guarded = tracks.apply_guarded(&state, &Refuses(Color::Green));
        assert_eq!(guarded.services[0].shadow, None);
        assert!(!guarded.services[0].preview.enabled);
        // Refusing the live color changes nothing of the idle one's traffic.
        let kept = tracks.apply_guarded(&state, &Refuses(Color::Blue));
        assert!(Arc::ptr_eq(&kept, &state));
    }
}
