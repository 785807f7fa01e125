//! The properties the fuzz targets (`fuzz/fuzz_targets/`) and the property tests
//! (`tests/integration/properties.rs`) both check, in one place: each includes this file
//! with `#[path]`, so a property strengthened here is checked by both.
//!
//! - [`state_file`]: any bytes parse or are refused with problems; an accepted state
//!   translates (consistency is guaranteed by validation) and has a stable version.
//! - [`ads_requests`]: any bytes, in any chunking, decode to requests and then end cleanly
//!   or with a status; never a panic, never a loop.
//! - [`SotwModel`]: any sequence of requests and snapshot changes keeps the SotW rules:
//!   unique nonces, one response in flight per type, and make-before-break.

use std::collections::{BTreeSet, HashSet};
use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::envoy::service::discovery::v3::DiscoveryRequest;
use envoy_types::pb::google::rpc::Status;
use http_body_util::StreamBody;
use switchyard::state::parse_bytes;
use switchyard::translate::translate;
use switchyard::xds::ResourceType;
use switchyard::xds::cache::Published;
use switchyard::xds::observer::StreamEvent;
use switchyard::xds::requests::Requests;
use switchyard::xds::snapshot::{ResourceSet, Snapshot};
use switchyard::xds::sotw::SotwStream;

/// Parses `bytes` as a state file. Accepted: it translates, and its version is the same
/// twice. Refused: at least one problem, each with a message.
pub fn state_file(bytes: &[u8]) {
    match parse_bytes(bytes) {
        Ok(state) => {
            let version = state.version();
            assert_eq!(version, state.version(), "the version of one state changed");
            if let Err(e) = translate(&state) {
                panic!(
                    "an accepted state does not translate: {e}\n{}",
                    String::from_utf8_lossy(bytes)
                );
            }
        }
        Err(problems) => {
            assert!(!problems.is_empty(), "refused without a problem");
            assert!(
                problems.iter().all(|p| !p.message.is_empty()),
                "a problem without a message: {problems:?}"
            );
        }
    }
}

/// Reads the request body delivered as `chunks` (one DATA frame each, then an error if
/// `fail_at_end`) with a limit of `max_message` bytes, to the end. It must end, with
/// `Ok(None)` or a status, after at most one message per 5 bytes (the gRPC prefix).
pub fn ads_requests(chunks: Vec<Vec<u8>>, max_message: usize, fail_at_end: bool) {
    let total: usize = chunks.iter().map(Vec::len).sum();
    let mut frames: Vec<Result<http_body::Frame<Bytes>, std::io::Error>> = chunks
        .into_iter()
        .map(|c| Ok(http_body::Frame::data(Bytes::from(c))))
        .collect();
    if fail_at_end {
        frames.push(Err(std::io::Error::other("connection reset")));
    }
    let mut requests = Requests::new(
        StreamBody::new(futures::stream::iter(frames)),
        max_message,
        std::time::Duration::from_secs(10),
    );
    let mut messages = 0;
    // The decoder times a message that arrives in parts: it needs tokio's clock.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("a current-thread runtime");
    runtime.block_on(async {
        loop {
            match requests.message().await {
                Ok(Some(_)) => {
                    messages += 1;
                    assert!(
                        messages * 5 <= total,
                        "{messages} messages from {total} bytes"
                    );
                }
                Ok(None) => {
                    assert!(!fail_at_end, "a body that failed ended cleanly");
                    return;
                }
                Err(status) => {
                    assert_ne!(status.code(), tonic::Code::Ok, "an error status of OK");
                    return;
                }
            }
        }
    });
}

/// The snapshots a [`SotwModel`] switches between: one service on blue, the same on green,
/// a second service added (new clusters for the routes), and nothing at all.
pub fn snapshots() -> &'static [Arc<Published>] {
    static SNAPSHOTS: OnceLock<Vec<Arc<Published>>> = OnceLock::new();
    SNAPSHOTS.get_or_init(|| {
        const ONE: &str = include_str!("../tests/fixtures/one_service.yaml");
        // A second service: the first one's block, renamed, on other ports and a domain.
        let (_, service) = ONE.split_once("services:\n").unwrap();
        let extra = service
            .replace("summarizer", "extra")
            .replace(":808", ":908")
            .replace("[\"*\"]", "[\"extra.example\"]");
        let green = ONE.replace("active: blue", "active: green");
        let two = format!("{green}{extra}");
        let translated = |text: &str| translate(&parse_bytes(text.as_bytes()).unwrap()).unwrap();
        [
            translated(ONE),
            translated(&green),
            translated(&two),
            Snapshot::empty(),
        ]
        .into_iter()
        .map(|s| Arc::new(Published::new(s)))
        .collect()
    })
}

/// The names a request may ask for: every resource name of every snapshot, the wildcard,
/// the empty name and one no snapshot has.
pub fn names() -> &'static [String] {
    static NAMES: OnceLock<Vec<String>> = OnceLock::new();
    NAMES.get_or_init(|| {
        let mut names: BTreeSet<String> = ["*", "", "nowhere"].map(String::from).into();
        for published in snapshots() {
            for t in ResourceType::ALL {
                names.extend(published.snapshot().get(t).names.iter().cloned());
            }
        }
        names.into_iter().collect()
    })
}

/// Which nonce a request carries.
#[derive(Debug, Clone)]
pub enum NonceChoice {
    /// The latest response's of the request's type (none if none was sent).
    Latest,
    /// The `n`th response's sent on the stream (any type; wraps around).
    Sent(usize),
    Other(String),
}

/// Which version a request carries.
#[derive(Debug, Clone)]
pub enum VersionChoice {
    /// The latest response's of the request's type (an ACK when the nonce is its too).
    Latest,
    Other(String),
}

/// One input to the stream.
#[derive(Debug, Clone)]
pub enum Op {
    Request {
        /// 0..=3: [`ResourceType::ALL`]; anything else a type switchyard does not serve.
        type_index: usize,
        nonce: NonceChoice,
        version: VersionChoice,
        /// A NACK's message.
        error: Option<String>,
        /// Indexes into [`names`] (wrap around).
        names: Vec<usize>,
        with_node: bool,
    },
    /// Switch to [`snapshots`]`[n]` (wraps around).
    Snapshot(usize),
}

/// What the proxy was last sent of one type.
#[derive(Debug, Clone)]
struct Latest {
    nonce: String,
    version: String,
    resources: Arc<ResourceSet>,
}

/// A [`SotwStream`] and a model of the proxy on the other end, checking the SotW rules on
/// every response. Panics on a broken rule.
pub struct SotwModel {
    stream: SotwStream,
    nonces: HashSet<String>,
    sent_in_order: Vec<String>,
    latest: [Option<Latest>; 4],
    /// The nonce of the response of each type still awaiting an ACK or NACK.
    awaiting: [Option<String>; 4],
    /// What the proxy holds of each type: the resources of the latest response it
    /// acknowledged.
    held: [Arc<ResourceSet>; 4],
}

impl Default for SotwModel {
    fn default() -> Self {
        SotwModel {
            stream: SotwStream::new(snapshots()[0].clone(), "fuzz"),
            nonces: HashSet::new(),
            sent_in_order: Vec::new(),
            latest: Default::default(),
            awaiting: Default::default(),
            held: Default::default(),
        }
    }
}

impl SotwModel {
    /// Runs `ops` on a new stream.
    pub fn run(ops: impl IntoIterator<Item = Op>) -> SotwModel {
        let mut model = SotwModel::default();
        for op in ops {
            model.apply(op);
        }
        model
    }

    pub fn apply(&mut self, op: Op) {
        let step = match op {
            Op::Snapshot(n) => {
                let all = snapshots();
                self.stream.on_snapshot(all[n % all.len()].clone())
            }
            Op::Request {
                type_index,
                nonce,
                version,
                error,
                names: wanted,
                with_node,
            } => {
                let request = self.request(type_index, nonce, version, error, wanted, with_node);
                if let Some(t) = ResourceType::from_type_url(&request.type_url) {
                    self.proxy_sent(t, &request);
                }
                self.stream.on_request(request)
            }
        };
        let sent = step.events.iter().filter_map(|e| match e {
            StreamEvent::Sent {
                type_,
                version,
                resources,
                ..
            } => Some((*type_, version, resources)),
            _ => None,
        });
        let sent: Vec<_> = sent.collect();
        assert_eq!(
            sent.len(),
            step.responses.len(),
            "one Sent event per response"
        );
        for (response, (t, version, resources)) in step.responses.iter().zip(sent) {
            assert_eq!(response.type_url, t.type_url());
            assert_eq!(&response.version_info, version);
            assert_eq!(response.resource_count, resources.len());
            self.check_response(t, &response.nonce, version, resources);
        }
        let _ = (
            self.stream.statuses(),
            ResourceType::ALL.map(|t| self.stream.wildcard(t)),
        );
    }

    fn request(
        &self,
        type_index: usize,
        nonce: NonceChoice,
        version: VersionChoice,
        error: Option<String>,
        wanted: Vec<usize>,
        with_node: bool,
    ) -> DiscoveryRequest {
        let t = ResourceType::ALL.get(type_index).copied();
        let latest = t.and_then(|t| self.latest[t.index()].as_ref());
        let all_names = names();
        DiscoveryRequest {
            type_url: match t {
                Some(t) => t.type_url().to_owned(),
                None => "type.googleapis.com/envoy.config.core.v3.TypedExtensionConfig".into(),
            },
            response_nonce: match nonce {
                NonceChoice::Latest => latest.map(|l| l.nonce.clone()).unwrap_or_default(),
                NonceChoice::Sent(_) if self.sent_in_order.is_empty() => String::new(),
                NonceChoice::Sent(n) => self.sent_in_order[n % self.sent_in_order.len()].clone(),
                NonceChoice::Other(s) => s,
            },
            version_info: match version {
                VersionChoice::Latest => latest.map(|l| l.version.clone()).unwrap_or_default(),
                VersionChoice::Other(s) => s,
            },
            error_detail: error.map(|message| Status {
                code: 13,
                message,
                details: Vec::new(),
            }),
            resource_names: wanted
                .into_iter()
                .map(|i| all_names[i % all_names.len()].clone())
                .collect(),
            node: with_node.then(|| Node {
                id: "envoy-fuzz".into(),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    /// The proxy's side of a request: it answers the latest response of its type (so that
    /// one is no longer awaited), and takes it when it is an ACK.
    fn proxy_sent(&mut self, t: ResourceType, request: &DiscoveryRequest) {
        let i = t.index();
        let Some(latest) = &self.latest[i] else {
            return;
        };
        if request.response_nonce != latest.nonce {
            return;
        }
        self.awaiting[i] = None;
        if request.error_detail.is_none() && request.version_info == latest.version {
            self.held[i] = latest.resources.clone();
        }
    }

    fn check_response(
        &mut self,
        t: ResourceType,
        nonce: &str,
        version: &str,
        resources: &Arc<ResourceSet>,
    ) {
        assert!(
            self.nonces.insert(nonce.to_owned()),
            "nonce {nonce} sent twice on one stream"
        );
        let i = t.index();
        if let Some(earlier) = &self.awaiting[i] {
            panic!("{t:?} response {nonce} sent while {earlier} awaits a reply");
        }
        if t == ResourceType::Route {
            self.check_make_before_break(resources);
        }
        self.awaiting[i] = Some(nonce.to_owned());
        self.sent_in_order.push(nonce.to_owned());
        self.latest[i] = Some(Latest {
            nonce: nonce.to_owned(),
            version: version.to_owned(),
            resources: resources.clone(),
        });
    }

    /// Every cluster the routes name is held by the proxy, with its endpoints, and stays
    /// held once any cluster or endpoint response still in flight is applied.
    fn check_make_before_break(&self, routes: &ResourceSet) {
        for t in [ResourceType::Cluster, ResourceType::Endpoint] {
            let i = t.index();
            let in_flight = self.awaiting[i]
                .as_ref()
                .and_then(|_| self.latest[i].as_ref());
            for (route, cluster) in routes
                .values()
                .flat_map(|r| r.clusters.iter().map(move |c| (&r.name, c)))
            {
                assert!(
                    self.held[i].contains_key(cluster),
                    "route {route} sent naming {cluster}, whose {t:?} the proxy does not hold: \
                     {:?}",
                    self.held[i].keys().collect::<Vec<_>>()
                );
                if let Some(in_flight) = in_flight {
                    assert!(
                        in_flight.resources.contains_key(cluster),
                        "route {route} sent naming {cluster}, which the {t:?} response in \
                         flight drops"
                    );
                }
            }
        }
    }

    /// How many responses the stream has sent (for tests that the ops reached deep).
    pub fn responses_sent(&self) -> usize {
        self.sent_in_order.len()
    }
}
