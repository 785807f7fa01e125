//! Convergence: when has every connected proxy acknowledged a new state? Measures file
//! seen -> last acknowledgement (a histogram in `/metrics`) and announces
//! [`Event::SwitchComplete`].
//!
//! A stream reports when its proxy becomes synced at a state version; that only counts
//! (no walk over the proxies). Once as many proxies are synced at the rollout's version as
//! are connected and not still connecting (a proxy that has asked for nothing holds
//! nothing to wait for), one task confirms it against the proxy registry (one walk), so a
//! rollout to N proxies costs O(N), not a walk per proxy. Disconnects and the start of a
//! rollout ask for that confirmation too.

use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use tokio::sync::Notify;
use tokio::time::Instant;

use crate::events::{Event, EventBus};
use crate::metrics::Metrics;
use crate::proxies::ProxyRegistry;

#[derive(Debug)]
struct Target {
    version: String,
    seen_at: Instant,
    /// Proxies that reported being synced at `version` since the rollout started.
    synced: usize,
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
    /// What each proxy is served: where proxies get variants of the published snapshot
    /// (a rollout between waves, localities ranked per proxy), each is settled at its own.
    cache: std::sync::OnceLock<crate::xds::cache::SnapshotCache>,
}

impl Convergence {
    pub fn new(registry: ProxyRegistry, metrics: Metrics, events: EventBus) -> Arc<Convergence> {
        Arc::new(Convergence {
            target: Mutex::new(None),
            notify: Notify::new(),
            registry,
            metrics,
            events,
            cache: std::sync::OnceLock::new(),
        })
    }

    /// Judges each proxy against what `cache` serves it (once; without it, every proxy
    /// against the published snapshot).
    pub fn watch_cache(&self, cache: crate::xds::cache::SnapshotCache) {
        let _ = self.cache.set(cache);
    }

    /// The published snapshot, when some proxies get variants of it.
    fn with_variants(&self) -> Option<std::sync::Arc<crate::xds::cache::Published>> {
        Some(self.cache.get()?.current()).filter(|p| p.has_variants())
    }

    /// State `version`, read from the file at `seen_at`, is about to be published (called
    /// before the publish, so that no proxy can sync at it uncounted).
    ///
    /// The same version again (a rollout's next wave) keeps the first `seen_at`: the
    /// switch converges when its last wave does.
    pub fn started(&self, version: String, seen_at: Instant) {
        let mut target = self.target.lock().expect("bug: convergence lock poisoned");
        // The proxies of the waves so far were counted already.
        let (seen_at, synced) = match target.as_ref() {
            Some(t) if t.version == version => (t.seen_at, t.synced),
            _ => (seen_at, 0),
        };
        *target = Some(Target {
            version,
            seen_at,
            synced,
        });
        drop(target);
        // With no proxy connected (or all already at this version) it is complete now.
        self.notify.notify_one();
    }

    /// A proxy has just become synced at state `version`.
    pub fn proxy_synced(&self, version: &str) {
        let mut target = self.target.lock().expect("bug: convergence lock poisoned");
        let Some(t) = target.as_mut() else { return };
        if t.version == version {
            t.synced += 1;
        }
        match self.with_variants() {
            // Mid-rollout nothing has converged; the last wave's publish looks again.
            Some(published) if published.on_the_way() => {}
            // Proxies are synced at versions of their own: look each time (wake-ups
            // coalesce while a look runs).
            Some(_) => self.notify.notify_one(),
            // Proxies still connecting hold nothing: they do not hold a rollout up.
            None => {
                if t.version == version
                    && t.synced + self.registry.connecting() >= self.registry.len()
                {
                    self.notify.notify_one();
                }
            }
        }
    }

    /// The snapshot of the rollout [`Self::started`] is published: every proxy may hold
    /// what it is owed already (a wave with no proxy, a proxy that held it).
    pub fn published(&self) {
        self.notify.notify_one();
    }

    /// A proxy disconnected: the others may now all be synced.
    pub fn proxy_left(&self) {
        if self
            .target
            .lock()
            .expect("bug: convergence lock poisoned")
            .is_some()
        {
            self.notify.notify_one();
        }
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
        // Started just before its snapshot is published: until it is, nothing to judge.
        if let Some(cache) = self.cache.get()
            && cache.current().snapshot().state_version != t.version
        {
            return;
        }
        let settled = match self.with_variants() {
            // A rollout between waves has not converged until its last wave.
            Some(published) if published.on_the_way() => None,
            Some(published) => self.registry.all_settled(|p| match &p.node {
                Some(node) => published
                    .for_node(Some(node))
                    .snapshot()
                    .state_version
                    .clone(),
                None => t.version.clone(),
            }),
            None => self.registry.all_settled_at(&t.version),
        };
        let Some(proxies) = settled else {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xds::observer::{Protocol, StepReport};
    use crate::xds::sync::SyncStatus;
    use std::time::Duration;

    fn synced_at(registry: &ProxyRegistry, stream: u64, version: &str) {
        registry.record(
            stream,
            &StepReport {
                events: &[],
                state_version: version,
                status: [SyncStatus::Synced; 5],
                wildcard: [true; 5],
            },
        );
    }

    async fn notified(c: &Convergence) -> bool {
        tokio::time::timeout(Duration::from_millis(50), c.notify.notified())
            .await
            .is_ok()
    }

    #[tokio::test]
    async fn a_proxy_still_connecting_does_not_hold_a_rollout_up() {
        let registry = ProxyRegistry::default();
        registry.open(1, Protocol::Sotw, "");
        registry.open(2, Protocol::Sotw, ""); // connects, asks for nothing (yet)
        let stale = StepReport {
            events: &[],
            state_version: "v2",
            status: [SyncStatus::Stale; 5],
            wildcard: [true; 5],
        };
        registry.record(1, &stale);
        let events = EventBus::default();
        let mut rx = events.subscribe();
        let c = Convergence::new(registry.clone(), Metrics::new(), events);
        c.started("v2".into(), Instant::now());
        assert!(notified(&c).await, "a rollout starts with a look");
        c.check();
        assert!(rx.try_recv().is_err(), "proxy 1 is not synced yet");

        synced_at(&registry, 1, "v2");
        c.proxy_synced("v2");
        assert!(
            notified(&c).await,
            "the last proxy holding anything is synced"
        );
        c.check();
        let event = rx.try_recv().expect("switch complete");
        assert!(
            matches!(&*event, Event::SwitchComplete { version, proxies: 2, .. } if version == "v2"),
            "{event:?}"
        );
    }

    #[tokio::test]
    async fn a_proxy_synced_at_an_older_state_holds_a_rollout_up() {
        let registry = ProxyRegistry::default();
        registry.open(1, Protocol::Sotw, "");
        registry.open(2, Protocol::Sotw, "");
        synced_at(&registry, 2, "v1");
        let events = EventBus::default();
        let mut rx = events.subscribe();
        let c = Convergence::new(registry.clone(), Metrics::new(), events);
        c.started("v2".into(), Instant::now());
        synced_at(&registry, 1, "v2");
        c.proxy_synced("v2");
        c.check();
        assert!(rx.try_recv().is_err(), "proxy 2 still runs v1");
    }

    /// Proxy "b" gets a variant of the published snapshot (as in a rollout between waves).
    #[derive(Debug)]
    struct BGetsVariant;

    impl crate::xds::cache::Variants for BGetsVariant {
        fn key(&self, node: &envoy_types::pb::envoy::config::core::v3::Node) -> Option<Vec<u8>> {
            (node.id == "b").then(|| vec![1])
        }
        fn build(&self, _: &[u8]) -> Option<crate::xds::snapshot::Snapshot> {
            let mut s = crate::xds::snapshot::Snapshot::empty();
            s.state_version = "v2-held".into();
            Some(s)
        }
    }

    /// Two connected proxies, nodes "a" (stream 1) and "b" (stream 2).
    fn proxies_a_and_b() -> ProxyRegistry {
        use envoy_types::pb::envoy::config::core::v3::Node;
        let registry = ProxyRegistry::default();
        for (stream, id) in [(1, "a"), (2, "b")] {
            registry.open(stream, Protocol::Sotw, "");
            let node = Node {
                id: id.into(),
                ..Default::default()
            };
            registry.identify(stream, &std::sync::Arc::new(node));
        }
        registry
    }

    #[tokio::test]
    async fn with_variants_each_proxy_is_settled_at_the_version_it_is_served() {
        let registry = proxies_a_and_b();
        let mut published = crate::xds::snapshot::Snapshot::empty();
        published.state_version = "v2".into();
        let (cache, _writer) = crate::xds::cache::snapshot_cache_with(
            published,
            Some(std::sync::Arc::new(BGetsVariant)),
        );
        let events = EventBus::default();
        let mut rx = events.subscribe();
        let c = Convergence::new(registry.clone(), Metrics::new(), events);
        c.watch_cache(cache);
        c.started("v2".into(), Instant::now());
        synced_at(&registry, 1, "v2");
        synced_at(&registry, 2, "v2");
        c.check();
        assert!(rx.try_recv().is_err(), "b is owed its variant, not v2");
        synced_at(&registry, 2, "v2-held");
        c.proxy_synced("v2-held");
        assert!(notified(&c).await, "a sync at any version is looked at");
        c.check();
        let event = rx.try_recv().expect("switch complete");
        assert!(
            matches!(&*event, Event::SwitchComplete { proxies: 2, .. }),
            "{event:?}"
        );
    }

    /// Like [`BGetsVariant`], but on the way: a rollout between waves.
    #[derive(Debug)]
    struct Rolling;

    impl crate::xds::cache::Variants for Rolling {
        fn key(&self, node: &envoy_types::pb::envoy::config::core::v3::Node) -> Option<Vec<u8>> {
            BGetsVariant.key(node)
        }
        fn build(&self, key: &[u8]) -> Option<crate::xds::snapshot::Snapshot> {
            BGetsVariant.build(key)
        }
        fn on_the_way(&self) -> bool {
            true
        }
    }

    #[tokio::test]
    async fn a_rollout_between_waves_converges_when_its_last_wave_does_timed_from_the_save() {
        let registry = proxies_a_and_b();
        let published = || {
            let mut s = crate::xds::snapshot::Snapshot::empty();
            s.state_version = "v2".into();
            s
        };
        let (cache, writer) =
            crate::xds::cache::snapshot_cache_with(published(), Some(std::sync::Arc::new(Rolling)));
        let events = EventBus::default();
        let mut rx = events.subscribe();
        let c = Convergence::new(registry.clone(), Metrics::new(), events);
        c.watch_cache(cache);
        let saved = Instant::now() - Duration::from_secs(5);
        c.started("v2".into(), saved);
        assert!(notified(&c).await, "a rollout starts with a look");
        // Wave 1 ("a") has it, wave 2 ("b") holds the old state.
        synced_at(&registry, 1, "v2");
        c.proxy_synced("v2");
        synced_at(&registry, 2, "v2-held");
        c.proxy_synced("v2-held");
        c.check();
        assert!(rx.try_recv().is_err(), "wave 2 does not have it yet");
        // The last wave: the same version, every proxy gets it.
        c.started("v2".into(), Instant::now());
        writer.publish(published());
        assert!(notified(&c).await);
        c.check();
        assert!(rx.try_recv().is_err(), "b does not hold it yet");
        synced_at(&registry, 2, "v2");
        c.proxy_synced("v2");
        assert!(
            notified(&c).await,
            "counted with wave 1's proxy, every one holds it"
        );
        c.check();
        let event = rx.try_recv().expect("switch complete");
        assert!(
            matches!(&*event, Event::SwitchComplete { took_ms, .. } if *took_ms >= 5000.0),
            "timed from the save: {event:?}"
        );
    }
}
