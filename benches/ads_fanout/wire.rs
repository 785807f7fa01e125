//! The wire format of the simulated proxies' ADS streams: the requests they send, written
//! by hand, and the few fields of a response they read, walked without decoding the rest,
//! so that the load generator stays cheap. [`self_check`] compares both against prost.

use bytes::{BufMut, Bytes, BytesMut};
use envoy_types::pb::envoy::config::core::v3::Node;
use prost::Message;
use prost::encoding::{WireType, decode_key, decode_varint, encode_key, encode_varint};

pub const CDS: usize = 0;
pub const EDS: usize = 1;
pub const LDS: usize = 2;
pub const RDS: usize = 3;
pub const TYPE_URLS: [&str; 4] = [
    "type.googleapis.com/envoy.config.cluster.v3.Cluster",
    "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment",
    "type.googleapis.com/envoy.config.listener.v3.Listener",
    "type.googleapis.com/envoy.config.route.v3.RouteConfiguration",
];
/// Which ADS variant a simulated proxy speaks (`--delta`), and how each writes what the
/// stream logic (`fleet.rs`, shared by both) decides to send.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Protocol {
    /// State of the world: every response carries the whole set of its type, every
    /// request the whole set of names wanted.
    #[default]
    Sotw,
    /// Incremental: responses carry the resources added or changed and the names removed,
    /// requests the names to subscribe and to unsubscribe.
    Delta,
}

impl Protocol {
    /// How the report names it.
    pub fn word(self) -> &'static str {
        match self {
            Protocol::Sotw => "SotW",
            Protocol::Delta => "delta",
        }
    }

    /// The ADS method's path.
    pub fn path(self) -> &'static str {
        match self {
            Protocol::Sotw => {
                "/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources"
            }
            Protocol::Delta => {
                "/envoy.service.discovery.v3.AggregatedDiscoveryService/DeltaAggregatedResources"
            }
        }
    }

    /// The stream's first request: clusters, wildcard (no names; in delta the legacy
    /// implicit wildcard, as Envoy 1.40 sends it), with the node.
    pub fn first_request(self, node: &Node) -> Bytes {
        match self {
            Protocol::Sotw => request_frame(CDS, "", "", &[], Some(node)),
            Protocol::Delta => delta_request_frame(CDS, "", &[], &[], Some(node)),
        }
    }

    /// The request that takes the names of type `t` subscribed from `before` (None: none
    /// asked for yet) to `after` (sorted): SotW, the whole set, with the type's last
    /// acknowledged version and nonce; delta, the names added and those dropped, no nonce
    /// (it is no acknowledgement). An empty first request is a wildcard in both.
    pub fn subscribe(
        self,
        t: usize,
        before: Option<&[String]>,
        after: &[String],
        acked: &str,
        nonce: &str,
    ) -> Bytes {
        match self {
            Protocol::Sotw => request_frame(t, acked, nonce, after, None),
            Protocol::Delta => {
                let before = before.unwrap_or_default();
                let subscribe = minus(after, before);
                let unsubscribe = minus(before, after);
                delta_request_frame(t, "", &subscribe, &unsubscribe, None)
            }
        }
    }

    /// The acknowledgement of `response`, of type `t`, while `names` are subscribed: SotW,
    /// its version and nonce and the names again; delta, its nonce alone.
    pub fn ack(self, t: usize, response: &Response<'_>, names: &[String]) -> Bytes {
        match self {
            Protocol::Sotw => request_frame(t, response.version, response.nonce, names, None),
            Protocol::Delta => delta_request_frame(t, response.nonce, &[], &[], None),
        }
    }
}

/// The names of sorted `a` that are not in sorted `b`.
fn minus<'a>(a: &'a [String], b: &[String]) -> Vec<&'a str> {
    a.iter()
        .filter(|name| b.binary_search(name).is_err())
        .map(String::as_str)
        .collect()
}

/// The fields of a response an ACK needs, borrowed from the message. A
/// `DeltaDiscoveryResponse` has them at the same field numbers as a `DiscoveryResponse`
/// (its `system_version_info` where the other has `version_info`), so one walk reads both.
pub struct Response<'a> {
    pub version: &'a str,
    pub type_url: &'a str,
    pub nonce: &'a str,
}

impl<'a> Response<'a> {
    pub fn parse(message: &'a [u8]) -> Result<Response<'a>, String> {
        let mut r = Response {
            version: "",
            type_url: "",
            nonce: "",
        };
        for_each_field(message, |field, value| {
            match field {
                1 => r.version = text(value)?,
                4 => r.type_url = text(value)?,
                5 => r.nonce = text(value)?,
                _ => {}
            }
            Ok(())
        })?;
        Ok(r)
    }

    /// The version of the routes a RouteConfiguration response brings, if it brings any:
    /// SotW, the response's; delta, its resource's (`Resource.version`, what Envoy tracks:
    /// `system_version_info` is for debugging only), none when it only removes. The
    /// bench's state has one listener, hence one route configuration (with several, the
    /// last one's version would stand for them all).
    pub fn routes_version(
        &self,
        protocol: Protocol,
        message: &'a [u8],
    ) -> Result<Option<&'a str>, String> {
        match protocol {
            Protocol::Sotw => Ok(Some(self.version)),
            Protocol::Delta => Ok(Changes::parse(message)?.changed.last().map(|&(_, v)| v)),
        }
    }
}

/// What a response of clusters or listeners changes in the set the proxy holds.
pub enum Update<'a> {
    /// SotW: every resource the proxy is to hold, by name, sorted.
    Whole(Vec<String>),
    /// Delta: what changed.
    Changes(Changes<'a>),
}

/// The resources of a `DeltaDiscoveryResponse`.
pub struct Changes<'a> {
    /// Added or changed: `Resource.name` and `.version`, in the response's order.
    pub changed: Vec<(&'a str, &'a str)>,
    /// `removed_resources`.
    pub removed: Vec<&'a str>,
}

impl<'a> Update<'a> {
    /// Reads the resources of `message`, a response of clusters or listeners. SotW: their
    /// names (`Any.value` field 1 is the name of a Cluster and of a Listener); delta:
    /// `Resource.name`, which the server keeps equal to it, as Envoy requires.
    pub fn parse(protocol: Protocol, message: &'a [u8]) -> Result<Update<'a>, String> {
        match protocol {
            Protocol::Sotw => whole_names(message).map(Update::Whole),
            Protocol::Delta => Changes::parse(message).map(Update::Changes),
        }
    }

    /// The names held after this response, sorted, given those held before (`before`,
    /// sorted; None: nothing received yet).
    pub fn held(self, before: Option<&[String]>) -> Vec<String> {
        match self {
            Update::Whole(names) => names,
            Update::Changes(Changes { changed, removed }) => {
                let mut held: Vec<String> = before
                    .unwrap_or_default()
                    .iter()
                    .filter(|name| !removed.contains(&name.as_str()))
                    .cloned()
                    .collect();
                held.extend(changed.iter().map(|&(name, _)| name.to_owned()));
                held.sort_unstable();
                held.dedup();
                held
            }
        }
    }
}

/// The names of a `DiscoveryResponse`'s resources, sorted.
fn whole_names(message: &[u8]) -> Result<Vec<String>, String> {
    let mut names = Vec::new();
    for_each_field(message, |field, any| {
        if field == 2 {
            for_each_field(any, |f, value| {
                if f == 2 {
                    for_each_field(value, |f, name| {
                        if f == 1 {
                            names.push(text(name)?.to_owned());
                        }
                        Ok(())
                    })?;
                }
                Ok(())
            })?;
        }
        Ok(())
    })?;
    names.sort();
    Ok(names)
}

impl<'a> Changes<'a> {
    fn parse(message: &'a [u8]) -> Result<Changes<'a>, String> {
        let mut changes = Changes {
            changed: Vec::new(),
            removed: Vec::new(),
        };
        for_each_field(message, |field, value| {
            match field {
                2 => {
                    let (mut name, mut version) = ("", "");
                    for_each_field(value, |f, value| {
                        match f {
                            1 => version = text(value)?,
                            3 => name = text(value)?,
                            _ => {}
                        }
                        Ok(())
                    })?;
                    changes.changed.push((name, version));
                }
                6 => changes.removed.push(text(value)?),
                _ => {}
            }
            Ok(())
        })?;
        Ok(changes)
    }
}

fn text(b: &[u8]) -> Result<&str, String> {
    std::str::from_utf8(b).map_err(|e| e.to_string())
}

/// Calls `f` with every length-delimited field of a protobuf message (others skipped).
fn for_each_field<'a>(
    mut b: &'a [u8],
    mut f: impl FnMut(u32, &'a [u8]) -> Result<(), String>,
) -> Result<(), String> {
    let bad = |e: prost::DecodeError| e.to_string();
    while !b.is_empty() {
        let (field, wire) = decode_key(&mut b).map_err(bad)?;
        let skip = match wire {
            WireType::LengthDelimited => {
                let len = decode_varint(&mut b).map_err(bad)? as usize;
                if len > b.len() {
                    return Err("truncated message".to_owned());
                }
                f(field, &b[..len])?;
                len
            }
            WireType::Varint => {
                decode_varint(&mut b).map_err(bad)?;
                0
            }
            WireType::SixtyFourBit => 8,
            WireType::ThirtyTwoBit => 4,
            other => return Err(format!("unexpected wire type {other:?}")),
        };
        if skip > b.len() {
            return Err("truncated message".to_owned());
        }
        b = &b[skip..];
    }
    Ok(())
}

/// A `DiscoveryRequest` in a gRPC frame.
fn request_frame(
    t: usize,
    version: &str,
    nonce: &str,
    names: &[String],
    node: Option<&Node>,
) -> Bytes {
    grpc_frame(|b| {
        put_str(1, version, b);
        put_node(2, node, b);
        for name in names {
            put_str(3, name, b);
        }
        put_str(4, TYPE_URLS[t], b);
        put_str(5, nonce, b);
    })
}

/// A `DeltaDiscoveryRequest` in a gRPC frame.
fn delta_request_frame(
    t: usize,
    nonce: &str,
    subscribe: &[&str],
    unsubscribe: &[&str],
    node: Option<&Node>,
) -> Bytes {
    grpc_frame(|b| {
        put_node(1, node, b);
        put_str(2, TYPE_URLS[t], b);
        for name in subscribe {
            put_str(3, name, b);
        }
        for name in unsubscribe {
            put_str(4, name, b);
        }
        put_str(6, nonce, b);
    })
}

/// The message `write` puts, in a gRPC frame (its 5-byte prefix: not compressed, length).
fn grpc_frame(write: impl FnOnce(&mut BytesMut)) -> Bytes {
    let mut b = BytesMut::with_capacity(256);
    b.put_bytes(0, 5);
    write(&mut b);
    let len = (b.len() - 5) as u32;
    b[1..5].copy_from_slice(&len.to_be_bytes());
    b.freeze()
}

/// A message field holding the node, if any.
fn put_node(field: u32, node: Option<&Node>, b: &mut BytesMut) {
    if let Some(node) = node {
        encode_key(field, WireType::LengthDelimited, b);
        encode_varint(node.encoded_len() as u64, b);
        node.encode(b).expect("BytesMut grows");
    }
}

/// A string field (proto3: empty strings are not written).
fn put_str(field: u32, s: &str, b: &mut BytesMut) {
    if !s.is_empty() {
        encode_key(field, WireType::LengthDelimited, b);
        encode_varint(s.len() as u64, b);
        b.put_slice(s.as_bytes());
    }
}

/// Checks the hand-written encoding and parsing against prost, both protocols, so that a
/// mistake there fails the bench at once instead of skewing it.
pub fn self_check() {
    use envoy_types::pb::envoy::config::cluster::v3::Cluster;
    use envoy_types::pb::envoy::service::discovery::v3::{
        DeltaDiscoveryRequest, DeltaDiscoveryResponse, DiscoveryRequest, DiscoveryResponse,
        Resource,
    };
    use envoy_types::pb::google::protobuf::Any;
    let message = |frame: &Bytes| {
        let len = u32::from_be_bytes(frame[1..5].try_into().unwrap()) as usize;
        assert_eq!(len, frame.len() - 5);
        frame.slice(5..)
    };
    let names = |names: &[&str]| names.iter().map(|&n| n.to_owned()).collect::<Vec<_>>();
    let cluster = |name: &str| Any {
        type_url: TYPE_URLS[CDS].into(),
        value: Cluster {
            name: name.into(),
            ..Default::default()
        }
        .encode_to_vec(),
    };
    let resource = |name: &str, version: &str| Resource {
        name: name.into(),
        version: version.into(),
        resource: Some(cluster(name)),
        ..Default::default()
    };

    // Requests.
    let node = Node {
        id: "n".into(),
        ..Default::default()
    };
    let first = DiscoveryRequest::decode(message(&Protocol::Sotw.first_request(&node))).unwrap();
    assert_eq!(
        (first.node.unwrap().id, first.type_url),
        ("n".into(), TYPE_URLS[CDS].into())
    );
    let frame = Protocol::Delta.first_request(&node);
    let first = DeltaDiscoveryRequest::decode(message(&frame)).unwrap();
    assert_eq!(
        (first.node.unwrap().id, first.type_url),
        ("n".into(), TYPE_URLS[CDS].into())
    );
    assert!(first.resource_names_subscribe.is_empty());
    let frame = Protocol::Sotw.subscribe(RDS, None, &names(&["a", "b"]), "v1", "7");
    let req = DiscoveryRequest::decode(message(&frame)).unwrap();
    assert_eq!(
        (req.version_info, req.response_nonce),
        ("v1".into(), "7".into())
    );
    assert_eq!(
        (req.type_url, req.resource_names),
        (TYPE_URLS[RDS].into(), names(&["a", "b"]))
    );
    let before = names(&["a", "b", "c"]);
    let frame = Protocol::Delta.subscribe(EDS, Some(&before), &names(&["b", "d"]), "v1", "7");
    let req = DeltaDiscoveryRequest::decode(message(&frame)).unwrap();
    assert_eq!(
        (req.type_url.as_str(), req.response_nonce.as_str()),
        (TYPE_URLS[EDS], "")
    );
    assert_eq!(req.resource_names_subscribe, ["d"]);
    assert_eq!(req.resource_names_unsubscribe, ["a", "c"]);

    // Responses, and their acknowledgements.
    let sotw = DiscoveryResponse {
        version_info: "v9".into(),
        resources: vec![cluster("b"), cluster("a")],
        type_url: TYPE_URLS[CDS].into(),
        nonce: "3".into(),
        ..Default::default()
    }
    .encode_to_vec();
    let delta = DeltaDiscoveryResponse {
        system_version_info: "v9".into(),
        resources: vec![resource("d", "4"), resource("b", "2")],
        type_url: TYPE_URLS[CDS].into(),
        removed_resources: vec!["c".into()],
        nonce: "3".into(),
        ..Default::default()
    }
    .encode_to_vec();
    for msg in [&sotw, &delta] {
        let r = Response::parse(msg).unwrap();
        assert_eq!(
            (r.version, r.type_url, r.nonce),
            ("v9", TYPE_URLS[CDS], "3")
        );
    }
    let r = Response::parse(&sotw).unwrap();
    let update = Update::parse(Protocol::Sotw, &sotw).unwrap();
    assert_eq!(update.held(Some(&before)), ["a", "b"]);
    let ack = DiscoveryRequest::decode(message(&Protocol::Sotw.ack(EDS, &r, &before))).unwrap();
    assert_eq!(
        (ack.version_info, ack.response_nonce),
        ("v9".into(), "3".into())
    );
    assert_eq!(ack.resource_names, before);
    let r = Response::parse(&delta).unwrap();
    let Update::Changes(changes) = Update::parse(Protocol::Delta, &delta).unwrap() else {
        panic!("a delta response reads as changes");
    };
    assert_eq!(changes.changed, [("d", "4"), ("b", "2")]);
    assert_eq!(changes.removed, ["c"]);
    let update = Update::parse(Protocol::Delta, &delta).unwrap();
    assert_eq!(update.held(Some(&before)), ["a", "b", "d"]);
    assert_eq!(
        r.routes_version(Protocol::Delta, &delta).unwrap(),
        Some("2")
    );
    let ack = DeltaDiscoveryRequest::decode(message(&Protocol::Delta.ack(CDS, &r, &[]))).unwrap();
    assert_eq!(
        (ack.type_url, ack.response_nonce),
        (TYPE_URLS[CDS].into(), "3".into())
    );
    assert!(ack.resource_names_subscribe.is_empty() && ack.resource_names_unsubscribe.is_empty());
}
