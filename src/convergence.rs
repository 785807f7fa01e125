//! Convergence: when has every connected proxy acknowledged a new state? Measures file
//! seen -> last acknowledgement (a histogram in `/metrics`) and announces
//! [`Event::SwitchComplete`].
//!
//! Streams poke a `Notify` after every step (cheap, coalescing); one task then asks the
//! proxy registry whether every proxy is synced at the target version.

use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use tokio::sync::Notify;
use tokio::time::Instant;

use crate::events::{Event, EventBus};
use crate::metrics::Metrics;
use crate::xds::registry::ProxyRegistry;

#[derive(Debug)]
struct Target {
    version: String,
    seen_at: Instant,
}

/// Tracks the state being rolled out. Shared (`Arc`).
#[derive(Debug)]
pub struct Convergence {
    /// The rollout in progress. A std mutex: held for a few instructions, never across an
    /// await.
    target: Mutex<Option<Target>>,
    notify: Notify,
    registry: ProxyRegistry,
    metrics: Metrics,
    events: EventBus,
}

impl Convergence {
    pub fn new(registry: ProxyRegistry, metrics: Metrics, events: EventBus) -> Arc<Convergence> {
        Arc::new(Convergence {
            target: Mutex::new(None),
            notify: Notify::new(),
            registry,
            metrics,
            events,
        })
    }

    /// State `version`, read from the file at `seen_at`, has just been published.
    pub fn started(&self, version: String, seen_at: Instant) {
        *self.target.lock().expect("bug: convergence lock poisoned") =
            Some(Target { version, seen_at });
        self.notify.notify_one();
    }

    /// Something changed on a stream (a step, a disconnect): check again.
    pub fn poke(&self) {
        self.notify.notify_one();
    }

    /// Runs until the task is dropped.
    pub async fn run(self: Arc<Self>) {
        loop {
            self.notify.notified().await;
            self.check();
        }
    }

    fn check(&self) {
        let mut target = self.target.lock().expect("bug: convergence lock poisoned");
        let Some(t) = target.as_ref() else { return };
        let Some(proxies) = self.registry.all_synced_at(&t.version) else {
            return;
        };
        let took = t.seen_at.elapsed();
        self.metrics.observe_convergence(took);
        self.events.emit(Event::SwitchComplete {
            at: SystemTime::now(),
            version: t.version.clone(),
            proxies,
            took_ms: took.as_secs_f64() * 1000.0,
        });
        *target = None;
    }
}
