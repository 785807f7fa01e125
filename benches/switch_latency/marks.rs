//! Inside switchyard: its log events as stage marks.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tracing::field::{Field, Visit};
use tracing_subscriber::Layer;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;

use crate::flips::{FLIP_TIMEOUT, Flip};

/// The switchyard log events that mark the stages of a switch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// `state accepted`: the new snapshot has been published to the ADS streams.
    Accepted,
    /// `proxy acknowledged` for routes: Envoy applied the new routes and said so.
    RoutesAcked,
}

/// When each stage mark was logged, from a tracing layer on switchyard's events.
#[derive(Clone, Default)]
pub struct Marks {
    /// Appended to by whichever runtime thread logs; read once per series.
    seen: Arc<Mutex<Vec<(Instant, Stage)>>>,
}

impl Marks {
    /// Installs the layer as the global subscriber, for switchyard's events only.
    pub fn install() -> Marks {
        let marks = Marks::default();
        let layer = MarkLayer(marks.clone())
            .with_filter(Targets::new().with_target("switchyard", tracing::Level::DEBUG));
        tracing_subscriber::registry().with(layer).init();
        marks
    }

    /// Per flip, the time from `t0` to the first `stage` mark after it and before the
    /// next flip (`None` if there was none). `flips` must be consecutive.
    pub fn offsets(&self, stage: Stage, flips: &[Flip]) -> Vec<Option<Duration>> {
        let seen = self.seen.lock().unwrap();
        flips
            .iter()
            .enumerate()
            .map(|(i, f)| {
                let end = flips.get(i + 1).map_or(f.t0 + FLIP_TIMEOUT, |next| next.t0);
                seen.iter()
                    .filter(|(at, s)| *s == stage && (f.t0..end).contains(at))
                    .map(|(at, _)| *at - f.t0)
                    .min()
            })
            .collect()
    }
}

struct MarkLayer(Marks);

impl<S: tracing::Subscriber> Layer<S> for MarkLayer {
    fn on_event(&self, event: &tracing::Event<'_>, _: Context<'_, S>) {
        let at = Instant::now();
        let mut fields = EventFields::default();
        event.record(&mut fields);
        let stage = match (fields.message.as_str(), fields.type_.as_str()) {
            ("state accepted", _) => Stage::Accepted,
            ("proxy acknowledged", "routes") => Stage::RoutesAcked,
            _ => return,
        };
        self.0.seen.lock().unwrap().push((at, stage));
    }
}

/// The two fields of an event the marks need.
#[derive(Default)]
struct EventFields {
    message: String,
    type_: String,
}

impl Visit for EventFields {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        match field.name() {
            "message" => self.message = format!("{value:?}"),
            "type_" => self.type_ = format!("{value:?}"),
            _ => {}
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.record_debug(field, &format_args!("{value}"));
    }
}
