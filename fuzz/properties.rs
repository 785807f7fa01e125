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
//! - [`delta::DeltaModel`] (`properties/delta.rs`): the same for incremental ADS, with a model of
//!   what the proxy holds: well-formed responses, removals only of what it was sent, and
//!   (`DeltaModel::converge`) a proxy that then accepts everything holds exactly the
//!   snapshot.

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
use switchyard::xds::encode::EncodedResponse;
use switchyard::xds::observer::StreamEvent;
use switchyard::xds::requests::Requests;
use switchyard::xds::snapshot::{Resource, ResourceSet, Snapshot};
use switchyard::xds::sotw::{SotwStream, Step};

#[path = "properties/delta.rs"]
pub mod delta;

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

/// The snapshots the stream models switch between: one service on blue, the same on green,
/// a second service added (new clusters for the routes), nothing at all, and the second
/// service on a listener of its own with the first one's blue endpoints moved (a listener
/// and a route configuration more, endpoints changed in place).
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
        let internal = "listeners:\n  - name: internal\n    address: 127.0.0.1\n    port: 10001\n";
        let apart = format!(
            "{}{}",
            ONE.replace(":8081", ":8071")
                .replace("listeners:\n", internal),
            extra.replace("listener: public", "listener: internal")
        );
        let translated = |text: &str| translate(&parse_bytes(text.as_bytes()).unwrap()).unwrap();
        [
            translated(ONE),
            translated(&green),
            translated(&two),
            Snapshot::empty(),
            translated(&apart),
        ]
        .into_iter()
        .map(|s| Arc::new(Published::new(s)))
        .collect()
    })
}

/// [`snapshots`]`[n]`, wrapping around.
fn published(n: usize) -> Arc<Published> {
    let all = snapshots();
    all[n % all.len()].clone()
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
        /// 0..=4: [`ResourceType::ALL`]; anything else a type switchyard does not serve.
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

/// One response of a step, with what its [`StreamEvent::Sent`] says of it.
struct SentResponse<'s> {
    response: &'s EncodedResponse,
    type_: ResourceType,
    version: &'s str,
    /// What the proxy holds once it applies the response, by the stream's account.
    resources: &'s Arc<ResourceSet>,
    carried: usize,
    removed: usize,
}

/// The responses of `step`, each with its `Sent` event: one per response, in order, saying
/// its type, version and how many resources it carries.
fn sent_responses(step: &Step) -> Vec<SentResponse<'_>> {
    let events: Vec<_> = step
        .events
        .iter()
        .filter_map(|e| match e {
            StreamEvent::Sent {
                type_,
                version,
                resources,
                carried,
                removed,
            } => Some((*type_, version, resources, *carried, *removed)),
            _ => None,
        })
        .collect();
    assert_eq!(
        events.len(),
        step.responses.len(),
        "one Sent event per response"
    );
    let pairs = step.responses.iter().zip(events);
    pairs
        .map(
            |(response, (type_, version, resources, carried, removed))| {
                assert_eq!(response.type_url, type_.type_url());
                assert_eq!(&response.version_info, version);
                assert_eq!(response.resource_count, carried, "Sent.carried");
                SentResponse {
                    response,
                    type_,
                    version,
                    resources,
                    carried,
                    removed,
                }
            },
        )
        .collect()
}

/// The responses of one stream as the proxy sees them, checking the rules both protocols
/// keep: a nonce is never used twice on the stream, and no response of a type is sent while
/// the latest of that type awaits the proxy's reply (a request of its type carrying its
/// nonce). `P` is what a model keeps of each response.
struct Flight<P> {
    nonces: HashSet<String>,
    in_order: Vec<String>,
    /// The latest response of each type: its nonce, and what the model keeps of it.
    latest: [Option<(String, P)>; 5],
    /// The latest response of each type has had no reply yet.
    awaiting: [bool; 5],
}

impl<P> Default for Flight<P> {
    fn default() -> Self {
        Flight {
            nonces: HashSet::new(),
            in_order: Vec::new(),
            latest: Default::default(),
            awaiting: [false; 5],
        }
    }
}

impl<P> Flight<P> {
    /// The nonce a request of type `t` (`None`: a type not served) carries by `choice`.
    fn nonce(&self, t: Option<ResourceType>, choice: NonceChoice) -> String {
        match choice {
            NonceChoice::Latest => t
                .and_then(|t| self.latest[t.index()].as_ref())
                .map(|(nonce, _)| nonce.clone())
                .unwrap_or_default(),
            NonceChoice::Sent(_) if self.in_order.is_empty() => String::new(),
            NonceChoice::Sent(n) => self.in_order[n % self.in_order.len()].clone(),
            NonceChoice::Other(s) => s,
        }
    }

    /// The latest response of `t`.
    fn latest(&self, t: ResourceType) -> Option<&P> {
        self.latest[t.index()].as_ref().map(|(_, p)| p)
    }

    /// The latest response of `t` and its nonce, if it still awaits its reply.
    fn in_flight(&self, t: ResourceType) -> Option<(&str, &P)> {
        let latest = self.latest[t.index()].as_ref();
        latest
            .filter(|_| self.awaiting[t.index()])
            .map(|(nonce, p)| (nonce.as_str(), p))
    }

    /// A request of `t` carrying `nonce`: the reply to the latest response of `t` if it is
    /// that response's. Returns the response, and whether this is its first reply.
    fn answer(&mut self, t: ResourceType, nonce: &str) -> Option<(&P, bool)> {
        let i = t.index();
        let (latest, p) = self.latest[i].as_ref()?;
        if latest != nonce {
            return None;
        }
        let first = std::mem::replace(&mut self.awaiting[i], false);
        Some((p, first))
    }

    /// A response of `t` sent with `nonce`: checks the nonce rules, then records it.
    fn sent(&mut self, t: ResourceType, nonce: &str, p: P) {
        assert!(
            self.nonces.insert(nonce.to_owned()),
            "nonce {nonce} sent twice on one stream"
        );
        let i = t.index();
        if let Some((earlier, _)) = self.in_flight(t) {
            panic!("{t:?} response {nonce} sent while {earlier} awaits a reply");
        }
        self.awaiting[i] = true;
        self.in_order.push(nonce.to_owned());
        self.latest[i] = Some((nonce.to_owned(), p));
    }
}

/// Make-before-break, as the proxy sees it: every cluster `routes` name is one it `holds`
/// (the Cluster and its endpoints), and no cluster or endpoint response in flight `drops`
/// it.
fn check_make_before_break<'r>(
    routes: impl IntoIterator<Item = &'r Resource>,
    holds: impl Fn(ResourceType, &str) -> bool,
    drops: impl Fn(ResourceType, &str) -> bool,
) {
    for route in routes {
        for cluster in &route.clusters {
            for t in [ResourceType::Cluster, ResourceType::Endpoint] {
                assert!(
                    holds(t, cluster),
                    "route {} sent naming {cluster}, whose {t:?} the proxy does not hold",
                    route.name
                );
                assert!(
                    !drops(t, cluster),
                    "route {} sent naming {cluster}, which the {t:?} response in flight drops",
                    route.name
                );
            }
        }
    }
}

/// A stream and a model of the proxy on the other end, which checks the protocol's rules
/// on every response and panics on a broken one.
pub trait Model: Default {
    /// One input: a request from the proxy, or a new snapshot.
    type Op;

    fn apply(&mut self, op: Self::Op);

    /// Runs `ops` on a new stream.
    fn run(ops: impl IntoIterator<Item = Self::Op>) -> Self {
        let mut model = Self::default();
        for op in ops {
            model.apply(op);
        }
        model
    }
}

/// The ops a fuzz target's input reads as, `op` reading each, up to 128. Only in the fuzz
/// targets: the property tests (built with `cfg(test)`) have no libFuzzer.
#[cfg(not(test))]
pub fn ops<T>(
    data: &[u8],
    op: impl Fn(&mut libfuzzer_sys::arbitrary::Unstructured<'_>) -> libfuzzer_sys::arbitrary::Result<T>,
) -> Vec<T> {
    let mut u = libfuzzer_sys::arbitrary::Unstructured::new(data);
    let mut ops = Vec::new();
    while !u.is_empty() && ops.len() < 128 {
        match op(&mut u) {
            Ok(op) => ops.push(op),
            Err(_) => break,
        }
    }
    ops
}

/// What the proxy was last sent of one type on a SotW stream: the whole set, at a version.
#[derive(Debug, Clone)]
struct SotwSent {
    version: String,
    resources: Arc<ResourceSet>,
}

/// A [`SotwStream`] and a model of the proxy on the other end, checking the SotW rules on
/// every response. Panics on a broken rule.
pub struct SotwModel {
    stream: SotwStream,
    flight: Flight<SotwSent>,
    /// What the proxy holds of each type: the resources of the latest response it
    /// acknowledged.
    held: [Arc<ResourceSet>; 5],
}

impl Default for SotwModel {
    fn default() -> Self {
        SotwModel {
            stream: SotwStream::new(snapshots()[0].clone(), "fuzz"),
            flight: Flight::default(),
            held: Default::default(),
        }
    }
}

impl Model for SotwModel {
    type Op = Op;

    fn apply(&mut self, op: Op) {
        let step = match op {
            Op::Snapshot(n) => self.stream.on_snapshot(published(n)),
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
        for sent in sent_responses(&step) {
            assert_eq!(
                sent.carried,
                sent.resources.len(),
                "SotW carries the whole set"
            );
            assert_eq!(sent.removed, 0, "SotW removes by leaving out");
            self.check_response(sent);
        }
        let _ = (
            self.stream.statuses(),
            ResourceType::ALL.map(|t| self.stream.wildcard(t)),
        );
    }
}

impl SotwModel {
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
        let latest = t.and_then(|t| self.flight.latest(t));
        let all_names = names();
        DiscoveryRequest {
            type_url: type_url(t),
            response_nonce: self.flight.nonce(t, nonce),
            version_info: match version {
                VersionChoice::Latest => latest.map(|l| l.version.clone()).unwrap_or_default(),
                VersionChoice::Other(s) => s,
            },
            error_detail: error.map(rejection),
            resource_names: wanted
                .into_iter()
                .map(|i| all_names[i % all_names.len()].clone())
                .collect(),
            node: with_node.then(node),
            ..Default::default()
        }
    }

    /// The proxy's side of a request: it answers the latest response of its type (so that
    /// one is no longer awaited), and takes it when it is an ACK.
    fn proxy_sent(&mut self, t: ResourceType, request: &DiscoveryRequest) {
        let Some((latest, _)) = self.flight.answer(t, &request.response_nonce) else {
            return;
        };
        if request.error_detail.is_none() && request.version_info == latest.version {
            self.held[t.index()] = latest.resources.clone();
        }
    }

    fn check_response(&mut self, sent: SentResponse<'_>) {
        let t = sent.type_;
        if t == ResourceType::Route {
            let held = &self.held;
            let in_flight = |t: ResourceType| self.flight.in_flight(t).map(|(_, s)| s);
            check_make_before_break(
                sent.resources.values().map(|r| &**r),
                |t, cluster| held[t.index()].contains_key(cluster),
                |t, cluster| in_flight(t).is_some_and(|s| !s.resources.contains_key(cluster)),
            );
        }
        let latest = SotwSent {
            version: sent.version.to_owned(),
            resources: sent.resources.clone(),
        };
        self.flight.sent(t, &sent.response.nonce, latest);
    }

    /// How many responses the stream has sent (for tests that the ops reached deep).
    pub fn responses_sent(&self) -> usize {
        self.flight.in_order.len()
    }
}

/// The type URL of [`ResourceType::ALL`]`[i]`, or of a type switchyard does not serve.
fn type_url(t: Option<ResourceType>) -> String {
    match t {
        Some(t) => t.type_url().to_owned(),
        None => "type.googleapis.com/envoy.config.core.v3.TypedExtensionConfig".into(),
    }
}

/// A NACK's `error_detail`, as Envoy sends it.
fn rejection(message: String) -> Status {
    Status {
        code: 13,
        message,
        details: Vec::new(),
    }
}

/// The node a request names.
fn node() -> Node {
    Node {
        id: "envoy-fuzz".into(),
        ..Default::default()
    }
}
