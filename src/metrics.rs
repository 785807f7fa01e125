//! Prometheus metrics, served at `GET /metrics` in the OpenMetrics text format.
//!
//! Handles are cheap clones of `Arc`ed atomics; streams update them without locks. The
//! registry itself sits behind the `Arc` only so `/metrics` can encode it.

use std::sync::Arc;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::state::{Color, DesiredState};
use crate::xds::ResourceType;
use crate::xds::observer::{Protocol, StreamEvent};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProtocolLabel {
    protocol: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TypeLabel {
    r#type: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabel {
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WeightLabel {
    service: String,
    color: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DecisionLabel {
    service: String,
    decision: &'static str,
}

/// Every metric switchyard exports.
#[derive(Clone, Debug)]
pub struct Metrics {
    registry: Arc<Registry>,
    connected: Family<ProtocolLabel, Gauge>,
    /// Per resource type (`ResourceType::index`), created up front: a stream counts each
    /// response and ACK without a label lookup, and every type shows from the start.
    responses: [Counter; 5],
    resources_sent: [Counter; 5],
    resources_removed: [Counter; 5],
    acks: [Counter; 5],
    nacks: [Counter; 5],
    nacks_repeated: [Counter; 5],
    state_files: Family<ResultLabel, Counter>,
    weights: Family<WeightLabel, Gauge>,
    rollout_decisions: Family<DecisionLabel, Counter>,
    subscribed: Family<TypeLabel, Gauge>,
    convergence: Histogram,
    file_readable: Gauge,
    file_unreadable: Family<ReasonLabel, Gauge>,
    named_files_unreadable: Gauge,
    audit_records_dropped: Counter,
    load_streams: Gauge,
    load_reports: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("switchyard");
        let connected = Family::<ProtocolLabel, Gauge>::default();
        registry.register(
            "connected_proxies",
            "ADS streams open now, by protocol (sotw or delta)",
            connected.clone(),
        );
        let responses = Family::<TypeLabel, Counter>::default();
        registry.register(
            "xds_responses",
            "Discovery responses sent, by resource type",
            responses.clone(),
        );
        let resources_sent = Family::<TypeLabel, Counter>::default();
        registry.register(
            "xds_resources_sent",
            "Resources carried by discovery responses, by resource type: every resource of \
             a SotW response, only those added or changed in a delta response",
            resources_sent.clone(),
        );
        let resources_removed = Family::<TypeLabel, Counter>::default();
        registry.register(
            "xds_resources_removed",
            "Resource names removed by delta responses (removed_resources), by resource type",
            resources_removed.clone(),
        );
        let acks = Family::<TypeLabel, Counter>::default();
        registry.register(
            "xds_acks",
            "Responses acknowledged by a proxy",
            acks.clone(),
        );
        let nacks = Family::<TypeLabel, Counter>::default();
        registry.register("xds_nacks", "Responses rejected by a proxy", nacks.clone());
        let nacks_repeated = Family::<TypeLabel, Counter>::default();
        registry.register(
            "xds_nacks_repeated",
            "The same rejection of the same response sent again by a proxy (counted, not logged)",
            nacks_repeated.clone(),
        );
        let state_files = Family::<ResultLabel, Counter>::default();
        registry.register(
            "state_files",
            "State file contents read, by result (accepted, rejected, or internal_error: a valid file switchyard failed to translate)",
            state_files.clone(),
        );
        let weights = Family::<WeightLabel, Gauge>::default();
        registry.register(
            "service_weight",
            "Traffic weight (percent) of each service's colors in the active state",
            weights.clone(),
        );
        let rollout_decisions = Family::<DecisionLabel, Counter>::default();
        registry.register(
            "rollout_decisions",
            "Decisions the rollout made by itself, per service: switched, gate_waiting, gave_up, held, bake_passed, bake_failed, rolled_back, rollback_refused, wave_reached, ramp_step, ramp_paused, ramp_waiting, ramp_aborted",
            rollout_decisions.clone(),
        );
        let subscribed = Family::<TypeLabel, Gauge>::default();
        registry.register(
            "subscribed_proxies",
            "Connected proxies subscribed to each resource type",
            subscribed.clone(),
        );
        // 1 ms .. ~16 s.
        let convergence = Histogram::new(exponential_buckets(0.001, 2.0, 15));
        registry.register(
            "convergence_seconds",
            "From reading a new state file to every connected proxy acknowledging it",
            convergence.clone(),
        );
        let file_readable = Gauge::default();
        registry.register(
            "state_file_readable",
            "1 if the watcher can read the state file, 0 if not (the last good state stays in force)",
            file_readable.clone(),
        );
        let named_files_unreadable = Gauge::default();
        registry.register(
            "state_named_files_unreadable",
            "How many files the state in force names (credentials, CAs, client certificates) cannot be read now; the proxies keep their last content and a rotation waits",
            named_files_unreadable.clone(),
        );
        let file_unreadable = Family::<ReasonLabel, Gauge>::default();
        registry.register(
            "state_file_unreadable",
            "1 for why the state file cannot be read now (missing, not_regular_file, too_large, permission_denied, timed_out, io_error); absent while it can",
            file_unreadable.clone(),
        );
        let audit_records_dropped = Counter::default();
        registry.register(
            "audit_records_dropped",
            "Audit log records dropped because the writer was behind (its queue full); each drop is also counted in the log itself",
            audit_records_dropped.clone(),
        );
        let load_streams = Gauge::default();
        registry.register(
            "load_report_streams",
            "Load reporting (LRS) streams open now",
            load_streams.clone(),
        );
        let load_reports = Counter::default();
        registry.register(
            "load_reports",
            "Load reports (LoadStatsRequest messages) received from proxies",
            load_reports.clone(),
        );
        let by_type = |family: &Family<TypeLabel, Counter>| {
            ResourceType::ALL.map(|t| {
                family
                    .get_or_create(&TypeLabel {
                        r#type: t.short_name(),
                    })
                    .clone()
            })
        };
        let (responses, acks, nacks) = (by_type(&responses), by_type(&acks), by_type(&nacks));
        let nacks_repeated = by_type(&nacks_repeated);
        let resources_sent = by_type(&resources_sent);
        let resources_removed = by_type(&resources_removed);
        Metrics {
            registry: Arc::new(registry),
            subscribed,
            convergence,
            connected,
            responses,
            resources_sent,
            resources_removed,
            acks,
            nacks,
            nacks_repeated,
            state_files,
            weights,
            rollout_decisions,
            file_readable,
            file_unreadable,
            named_files_unreadable,
            audit_records_dropped,
            load_streams,
            load_reports,
        }
    }

    /// A load reporting stream opened.
    pub fn load_stream_opened(&self) {
        self.load_streams.inc();
    }

    /// A load reporting stream ended.
    pub fn load_stream_closed(&self) {
        self.load_streams.dec();
    }

    /// A proxy sent a load report.
    pub fn load_report_received(&self) {
        self.load_reports.inc();
    }

    /// The audit log's queue was full: a record was dropped.
    pub fn audit_record_dropped(&self) {
        self.audit_records_dropped.inc();
    }

    /// A stream opened.
    pub fn stream_opened(&self, protocol: Protocol) {
        self.connected
            .get_or_create(&ProtocolLabel {
                protocol: protocol.as_str(),
            })
            .inc();
    }

    /// A stream ended.
    pub fn stream_closed(&self, protocol: Protocol) {
        self.connected
            .get_or_create(&ProtocolLabel {
                protocol: protocol.as_str(),
            })
            .dec();
    }

    pub fn record_stream_event(&self, event: &StreamEvent) {
        match event {
            StreamEvent::Sent {
                type_,
                carried,
                removed,
                ..
            } => {
                self.responses[type_.index()].inc();
                self.resources_sent[type_.index()].inc_by(*carried as u64);
                self.resources_removed[type_.index()].inc_by(*removed as u64);
            }
            StreamEvent::Acked { type_, .. } => {
                self.acks[type_.index()].inc();
            }
            StreamEvent::Rejected { type_, .. } => {
                self.nacks[type_.index()].inc();
            }
            StreamEvent::RepeatedNack { type_ } => {
                self.nacks_repeated[type_.index()].inc();
            }
            StreamEvent::Stale { .. } | StreamEvent::UnknownType { .. } => {}
        }
    }

    /// The rollout decided `decision` for `service` by itself.
    pub fn rollout_decision(&self, service: &str, decision: &'static str) {
        self.rollout_decisions
            .get_or_create(&DecisionLabel {
                service: service.to_owned(),
                decision,
            })
            .inc();
    }

    pub fn state_accepted(&self, state: &DesiredState) {
        self.state_files
            .get_or_create(&ResultLabel { result: "accepted" })
            .inc();
        self.weights.clear();
        for s in &state.services {
            for c in Color::ALL {
                self.weights
                    .get_or_create(&WeightLabel {
                        service: s.name.clone(),
                        color: c.as_str(),
                    })
                    .set(s.weight(c).into());
            }
        }
    }

    /// A valid state file that could not be translated (a bug in switchyard).
    pub fn state_internal_error(&self) {
        self.state_files
            .get_or_create(&ResultLabel {
                result: "internal_error",
            })
            .inc();
    }

    pub fn state_rejected(&self) {
        self.state_files
            .get_or_create(&ResultLabel { result: "rejected" })
            .inc();
    }

    pub fn observe_convergence(&self, took: std::time::Duration) {
        self.convergence.observe(took.as_secs_f64());
    }

    /// Sets how many proxies subscribe to each type (computed when scraped).
    pub fn set_subscribed(&self, counts: [(ResourceType, i64); 5]) {
        for (t, n) in counts {
            self.subscribed
                .get_or_create(&TypeLabel {
                    r#type: t.short_name(),
                })
                .set(n);
        }
    }

    /// Sets how many files the state names cannot be read now. Computed when scraped.
    pub fn set_named_files_unreadable(&self, n: usize) {
        self.named_files_unreadable
            .set(i64::try_from(n).unwrap_or(i64::MAX));
    }

    /// Sets whether the state file can be read: `None` if it can, else why not (a
    /// `ReadError::label`). Computed when scraped.
    pub fn set_state_file_unreadable(&self, reason: Option<&'static str>) {
        self.file_readable.set(i64::from(reason.is_none()));
        self.file_unreadable.clear();
        if let Some(reason) = reason {
            self.file_unreadable
                .get_or_create(&ReasonLabel { reason })
                .set(1);
        }
    }

    /// The OpenMetrics text of every metric.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("bug: encoding metrics into a String cannot fail");
        out
    }
}
