//! The decisions switchyard made by itself, kept across a restart (`serve --decisions
//! PATH`): automatic rollbacks, given-up switches, and bakes in progress. Without it a
//! restart starts every service on its file's color, as at any start.
//!
//! What a restart does with a kept decision:
//! - a rollback or a given-up switch stands while the file still asks for the same color
//!   with the same `attempt` (traffic stays on the color in force: no flapping back);
//! - a bake in progress resumes for what was left of its window, if the file's color is
//!   still the one being baked;
//! - a switch that was waiting for its gate or held by the schema guard keeps the color in
//!   force, and the gate and the schema are checked again from the start;
//! - a ramp on its way resumes at its step while the file still asks for its color with a
//!   `ramp:` (the step's `every` starts over: the proxies have to hold it again);
//! - a switch on its way through its waves resumes at the last wave reached while the file
//!   still asks for its color with a `rollout:` (that wave soaks again; the waves after it
//!   keep the old color);
//! - anything else is dropped.
//!
//! The file is JSON, written whole to a temporary file and renamed over the old one, so a
//! crash leaves either the old or the new content. A file that cannot be read or parsed is
//! reported and ignored: it must never keep switchyard from serving.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use super::decide::{Phase, Track, Trip};
use super::decide::{RampStep, Wait};
use super::tracks::Tracks;
use crate::state::Color;

/// The largest journal read back (a kept decision is a few hundred bytes).
pub const MAX_JOURNAL_BYTES: u64 = 16 * 1024 * 1024;

#[derive(Debug, Serialize, Deserialize, PartialEq)]
struct Journal {
    /// Kept decisions by service.
    services: BTreeMap<String, Kept>,
    /// Switches on their way through their waves, by service.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    waves: BTreeMap<String, KeptWaves>,
}

/// A switch on its way through its waves: the waves after `reached` keep `from`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
struct KeptWaves {
    from: Color,
    reached: usize,
}

/// What a journal gives back: each service's track, and where switches stand in their
/// waves (from, last wave reached).
#[derive(Debug, Default, PartialEq)]
pub struct Restored {
    pub tracks: HashMap<String, Track>,
    pub waves: HashMap<String, (Color, usize)>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "phase", rename_all = "snake_case")]
enum Kept {
    RolledBack {
        in_force: Color,
        from: Color,
        attempt: Option<String>,
        errors: u64,
        requests: u64,
        proxies: Vec<(String, u64)>,
        failing_endpoints: Vec<(String, String)>,
        after_ms: u64,
        #[serde(default)]
        window_ms: u64,
    },
    GaveUp {
        in_force: Color,
        to: Color,
        attempt: Option<String>,
    },
    Baking {
        in_force: Color,
        from: Color,
        /// Milliseconds since the Unix epoch.
        since_ms: u64,
        until_ms: u64,
        /// The ramp on its way, if any.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        ramp: Option<KeptRamp>,
    },
    /// A ramp on its way, without a bake.
    Ramping { in_force: Color, ramp: KeptRamp },
    /// A switch to `to` waiting for its gate or held by the schema guard: after a restart
    /// it is checked again from the start, never taken on trust.
    Waiting { in_force: Color, to: Color },
}

/// A ramp's step in force.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
struct KeptRamp {
    from: Color,
    step: usize,
    percent: u32,
}

impl KeptRamp {
    fn of(r: &RampStep) -> KeptRamp {
        KeptRamp {
            from: r.from,
            step: r.step,
            percent: r.percent,
        }
    }

    /// The step, put in force again at `now`.
    fn resume(self, now: Instant) -> RampStep {
        RampStep {
            from: self.from,
            step: self.step,
            percent: self.percent,
            since: now,
            waiting: Wait::Soak,
        }
    }
}

fn millis(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// The wall-clock time of `at`, given that `now` is `wall`.
fn wall_of(at: Instant, now: Instant, wall: SystemTime) -> SystemTime {
    if at <= now {
        wall - now.duration_since(at)
    } else {
        wall + at.duration_since(now)
    }
}

/// The instant of wall-clock `ms`, given that `now` is `wall`.
fn instant_of(ms: u64, now: Instant, wall: SystemTime) -> Instant {
    let at = UNIX_EPOCH + Duration::from_millis(ms);
    match at.duration_since(wall) {
        Ok(ahead) => now + ahead,
        Err(e) => now.checked_sub(e.duration()).unwrap_or(now),
    }
}

/// The journal of `tracks`: only the decisions worth keeping.
pub fn encode(tracks: &Tracks, now: Instant, wall: SystemTime) -> Vec<u8> {
    let mut services = BTreeMap::new();
    for (name, t) in tracks.iter() {
        let kept = match &t.phase {
            Phase::RolledBack {
                from,
                attempt,
                reason,
            } => Kept::RolledBack {
                in_force: t.in_force,
                from: *from,
                attempt: attempt.clone(),
                errors: reason.errors,
                requests: reason.requests,
                proxies: reason.proxies.clone(),
                failing_endpoints: reason.failing_endpoints.clone(),
                after_ms: u64::try_from(reason.after.as_millis()).unwrap_or(u64::MAX),
                window_ms: u64::try_from(reason.window.as_millis()).unwrap_or(u64::MAX),
            },
            Phase::GaveUp { to, attempt } => Kept::GaveUp {
                in_force: t.in_force,
                to: *to,
                attempt: attempt.clone(),
            },
            Phase::Baking {
                from, since, until, ..
            } => Kept::Baking {
                in_force: t.in_force,
                from: *from,
                since_ms: millis(wall_of(*since, now, wall)),
                until_ms: millis(wall_of(*until, now, wall)),
                ramp: t.ramp.as_ref().map(KeptRamp::of),
            },
            Phase::Gating { to, .. } | Phase::Held { to, .. } => Kept::Waiting {
                in_force: t.in_force,
                to: *to,
            },
            Phase::Steady => match &t.ramp {
                Some(r) => Kept::Ramping {
                    in_force: t.in_force,
                    ramp: KeptRamp::of(r),
                },
                None => continue,
            },
        };
        services.insert(name.clone(), kept);
    }
    let waves = tracks
        .rolling()
        .into_iter()
        .flat_map(|r| {
            r.services.into_iter().map(move |name| {
                (
                    name,
                    KeptWaves {
                        from: r.from,
                        reached: r.reached,
                    },
                )
            })
        })
        .collect();
    let mut out = serde_json::to_vec_pretty(&Journal { services, waves })
        .expect("bug: a journal always serializes");
    out.push(b'\n');
    out
}

/// The tracks a journal keeps, to hand to [`Tracks::start`] (which drops those that no
/// longer apply to the file).
pub fn decode(
    bytes: &[u8],
    now: Instant,
    wall: SystemTime,
) -> Result<HashMap<String, Track>, String> {
    let journal: Journal = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
    let mut out = HashMap::new();
    for (name, kept) in journal.services {
        let track = match kept {
            Kept::RolledBack {
                in_force,
                from,
                attempt,
                errors,
                requests,
                proxies,
                failing_endpoints,
                after_ms,
                window_ms,
            } => Track {
                in_force,
                phase: Phase::RolledBack {
                    from,
                    attempt,
                    reason: Trip {
                        errors,
                        requests,
                        proxies,
                        failing_endpoints,
                        after: Duration::from_millis(after_ms),
                        window: Duration::from_millis(window_ms),
                    },
                },
                ramp: None,
            },
            Kept::GaveUp {
                in_force,
                to,
                attempt,
            } => Track {
                in_force,
                phase: Phase::GaveUp { to, attempt },
                ramp: None,
            },
            Kept::Baking {
                in_force,
                from,
                since_ms,
                until_ms,
                ramp,
            } => Track {
                in_force,
                phase: Phase::Baking {
                    from,
                    since: instant_of(since_ms, now, wall),
                    until: instant_of(until_ms, now, wall),
                    refused: None,
                },
                ramp: ramp.map(|r| r.resume(now)),
            },
            Kept::Ramping { in_force, ramp } => Track {
                in_force,
                phase: Phase::Steady,
                ramp: Some(ramp.resume(now)),
            },
            Kept::Waiting { in_force, to } => Track {
                in_force,
                phase: Phase::Held {
                    to,
                    reason: "checking the gate and the schema again after a restart".into(),
                },
                ramp: None,
            },
        };
        out.insert(name, track);
    }
    Ok(out)
}

/// Reads the journal at `path`: `Ok(None)` when there is none yet.
pub fn read(path: &Path, now: Instant, wall: SystemTime) -> Result<Option<Restored>, String> {
    let shown = path.display();
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("cannot read {shown}: {e}")),
    };
    if !meta.is_file() {
        return Err(format!("{shown} is not a regular file"));
    }
    if meta.len() > MAX_JOURNAL_BYTES {
        return Err(format!("{shown} is larger than {MAX_JOURNAL_BYTES} bytes"));
    }
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read {shown}: {e}"))?;
    let not_ours = |e: String| format!("{shown} is not a switchyard decisions file: {e}");
    let tracks = decode(&bytes, now, wall).map_err(not_ours)?;
    let waves = decode_waves(&bytes).map_err(not_ours)?;
    Ok(Some(Restored { tracks, waves }))
}

/// The switches a journal keeps on their way through their waves: (from, last wave
/// reached), by service.
pub fn decode_waves(bytes: &[u8]) -> Result<HashMap<String, (Color, usize)>, String> {
    let journal: Journal = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
    Ok(journal
        .waves
        .into_iter()
        .map(|(name, w)| (name, (w.from, w.reached)))
        .collect())
}

/// Writes `bytes` to `path` through a temporary file renamed over it.
pub fn write(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = std::path::PathBuf::from(tmp);
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::parse_str;

    const FILE: &str = include_str!("../../tests/fixtures/one_service.yaml");

    fn rolled_back() -> Track {
        Track {
            in_force: Color::Blue,
            phase: Phase::RolledBack {
                from: Color::Green,
                attempt: Some("2".into()),
                reason: Trip {
                    errors: 7,
                    requests: 40,
                    proxies: vec![("envoy-1".into(), 7)],
                    failing_endpoints: vec![],
                    after: Duration::from_millis(2500),
                    window: Duration::from_secs(60),
                },
            },
            ramp: None,
        }
    }

    #[test]
    fn a_rollback_survives_the_round_trip() {
        let green =
            parse_str(&FILE.replace("active: blue", "active: green\n    attempt: 2")).unwrap();
        let tracks = Tracks::start(
            &green,
            HashMap::from([("summarizer".to_owned(), rolled_back())]),
        );
        let (now, wall) = (Instant::now(), SystemTime::now());
        let bytes = encode(&tracks, now, wall);
        let back = decode(&bytes, now, wall).unwrap();
        assert_eq!(back["summarizer"], rolled_back());
    }

    #[test]
    fn a_bake_keeps_its_wall_clock_window_across_a_restart() {
        let (now, wall) = (Instant::now(), SystemTime::now());
        let baking = Track {
            in_force: Color::Green,
            phase: Phase::Baking {
                from: Color::Blue,
                since: now - Duration::from_secs(20),
                until: now + Duration::from_secs(40),
                refused: None,
            },
            ramp: None,
        };
        let green =
            parse_str(&FILE.replace("active: blue", "active: green\n    bake: {}")).unwrap();
        let tracks = Tracks::start(&green, HashMap::from([("summarizer".to_owned(), baking)]));
        let bytes = encode(&tracks, now, wall);
        // "Restarted" 10 s later: 30 s of the window are left.
        let later = Instant::now() + Duration::from_secs(100);
        let back = decode(&bytes, later, wall + Duration::from_secs(10)).unwrap();
        let Phase::Baking { until, since, .. } = back["summarizer"].phase else {
            panic!("not baking: {:?}", back["summarizer"])
        };
        let left = until.duration_since(later);
        assert!(
            left > Duration::from_secs(29) && left <= Duration::from_secs(30),
            "{left:?}"
        );
        assert!(later.duration_since(since) >= Duration::from_secs(29));
    }

    #[test]
    fn a_switch_held_or_gated_keeps_its_color_and_is_checked_again() {
        let green =
            parse_str(&FILE.replace("active: blue", "active: green\n    gate: {}")).unwrap();
        let gating = Track {
            in_force: Color::Blue,
            phase: Phase::Gating {
                to: Color::Green,
                since: Instant::now(),
            },
            ramp: None,
        };
        let tracks = Tracks::start(&green, HashMap::from([("summarizer".to_owned(), gating)]));
        let (now, wall) = (Instant::now(), SystemTime::now());
        let back = decode(&encode(&tracks, now, wall), now, wall).unwrap();
        let t = &back["summarizer"];
        assert_eq!(t.in_force, Color::Blue);
        assert!(
            matches!(
                t.phase,
                Phase::Held {
                    to: Color::Green,
                    ..
                }
            ),
            "{t:?}"
        );
        // Restarted on that file: blue stays in force until the gate is checked again.
        let restarted = Tracks::start(&green, back);
        assert_eq!(restarted.in_force(&green.services[0]), Color::Blue);
    }

    #[test]
    fn a_ramp_resumes_at_its_step_while_the_file_still_ramps_to_its_color() {
        let green = parse_str(&FILE.replace(
            "active: blue",
            "active: green\n    ramp: {steps: [10, 50, 100]}",
        ))
        .unwrap();
        let (now, wall) = (Instant::now(), SystemTime::now());
        let ramping = Track {
            in_force: Color::Green,
            phase: Phase::Steady,
            ramp: Some(RampStep {
                from: Color::Blue,
                step: 2,
                percent: 50,
                since: now - Duration::from_secs(20),
                waiting: Wait::Proxies,
            }),
        };
        let tracks = Tracks::start(&green, HashMap::from([("summarizer".to_owned(), ramping)]));
        let later = now + Duration::from_secs(5);
        let back = decode(&encode(&tracks, now, wall), later, wall).unwrap();
        let ramp = back["summarizer"].ramp.clone().unwrap();
        assert_eq!((ramp.step, ramp.percent, ramp.since), (2, 50, later));
        let restarted = Tracks::start(&green, back.clone());
        let kept = restarted.get("summarizer").unwrap();
        assert_eq!(kept.split(&green.services[0]).green, 50);
        assert!(restarted.busy(), "a ramp on its way has steps to take");
        // A file without the ramp (or back on blue) drops it.
        let plain = parse_str(&FILE.replace("active: blue", "active: green")).unwrap();
        assert_eq!(
            Tracks::start(&plain, back).get("summarizer").unwrap().ramp,
            None
        );
    }

    #[test]
    fn a_rollout_between_waves_survives_a_restart_and_holds_the_waves_not_reached() {
        let rolled = |active: &str| {
            parse_str(&FILE.replace(
                "active: blue",
                &format!(
                    "active: {active}\n    rollout:\n      waves: [{{zone: a}}, {{zone: b}}, {{}}]"
                ),
            ))
            .unwrap()
        };
        let mut tracks = Tracks::start(&rolled("blue"), HashMap::new());
        let green = rolled("green");
        tracks.step(&green, &super::super::tracks::Nothing, Instant::now());
        assert_eq!(tracks.rolling().len(), 1);
        let bytes = encode(&tracks, Instant::now(), SystemTime::now());
        let waves = decode_waves(&bytes).unwrap();
        assert_eq!(waves["summarizer"], (Color::Blue, 0));
        // After the restart, the file's green is in force on wave 1 only.
        let mut restarted = Tracks::start(
            &green,
            decode(&bytes, Instant::now(), SystemTime::now()).unwrap(),
        );
        restarted.restore_waves(&green, waves.clone(), Instant::now());
        assert_eq!(restarted.rolling(), tracks.rolling());
        assert!(restarted.busy());
        // A file that went back to blue meanwhile drops them.
        let mut back = Tracks::start(&rolled("blue"), HashMap::new());
        back.restore_waves(&rolled("blue"), waves, Instant::now());
        assert!(back.rolling().is_empty());
    }

    #[test]
    fn steady_services_are_not_kept() {
        let blue = parse_str(FILE).unwrap();
        let tracks = Tracks::start(&blue, HashMap::new());
        let bytes = encode(&tracks, Instant::now(), SystemTime::now());
        assert_eq!(
            decode(&bytes, Instant::now(), SystemTime::now()).unwrap(),
            HashMap::new()
        );
    }

    #[test]
    fn a_missing_journal_is_none_and_a_broken_one_says_why() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("decisions.json");
        let (now, wall) = (Instant::now(), SystemTime::now());
        assert_eq!(read(&path, now, wall), Ok(None));
        std::fs::write(&path, "{not json").unwrap();
        let err = read(&path, now, wall).unwrap_err();
        assert!(err.contains("is not a switchyard decisions file"), "{err}");
        write(&path, b"{\"services\":{}}\n").unwrap();
        assert_eq!(read(&path, now, wall), Ok(Some(Restored::default())));
    }
}
