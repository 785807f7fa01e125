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
pub const ADS_PATH: &str =
    "/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources";

/// The fields of a `DiscoveryResponse` an ACK needs, borrowed from the message.
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
        let text = |b: &'a [u8]| std::str::from_utf8(b).map_err(|e| e.to_string());
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

    /// The names of the resources (`Any.value` field 1 is the name of a Cluster and of a
    /// Listener), sorted.
    pub fn names(&self, message: &[u8]) -> Result<Vec<String>, String> {
        let mut names = Vec::new();
        for_each_field(message, |field, any| {
            if field == 2 {
                for_each_field(any, |f, value| {
                    if f == 2 {
                        for_each_field(value, |f, name| {
                            if f == 1 {
                                let name = std::str::from_utf8(name).map_err(|e| e.to_string())?;
                                names.push(name.to_owned());
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
pub fn request_frame(
    t: usize,
    version: &str,
    nonce: &str,
    names: &[String],
    node: Option<&Node>,
) -> Bytes {
    let mut b = BytesMut::with_capacity(256);
    b.put_bytes(0, 5);
    put_str(1, version, &mut b);
    if let Some(node) = node {
        encode_key(2, WireType::LengthDelimited, &mut b);
        encode_varint(node.encoded_len() as u64, &mut b);
        node.encode(&mut b).expect("BytesMut grows");
    }
    for name in names {
        put_str(3, name, &mut b);
    }
    put_str(4, TYPE_URLS[t], &mut b);
    put_str(5, nonce, &mut b);
    let len = (b.len() - 5) as u32;
    b[1..5].copy_from_slice(&len.to_be_bytes());
    b.freeze()
}

/// A string field (proto3: empty strings are not written).
fn put_str(field: u32, s: &str, b: &mut BytesMut) {
    if !s.is_empty() {
        encode_key(field, WireType::LengthDelimited, b);
        encode_varint(s.len() as u64, b);
        b.put_slice(s.as_bytes());
    }
}

/// Checks the hand-written encoding and parsing against prost, so that a mistake there
/// fails the bench at once instead of skewing it.
pub fn self_check() {
    use envoy_types::pb::envoy::config::cluster::v3::Cluster;
    use envoy_types::pb::envoy::service::discovery::v3::{DiscoveryRequest, DiscoveryResponse};
    use envoy_types::pb::google::protobuf::Any;
    {
        let node = Node {
            id: "n".into(),
            ..Default::default()
        };
        let names = vec!["a".to_owned(), "b".to_owned()];
        let frame = request_frame(RDS, "v1", "7", &names, Some(&node));
        let len = u32::from_be_bytes(frame[1..5].try_into().unwrap()) as usize;
        assert_eq!(len, frame.len() - 5);
        let req = DiscoveryRequest::decode(&frame[5..]).unwrap();
        assert_eq!(req.version_info, "v1");
        assert_eq!(req.response_nonce, "7");
        assert_eq!(req.type_url, TYPE_URLS[RDS]);
        assert_eq!(req.resource_names, names);
        assert_eq!(req.node.unwrap().id, "n");
    }
    {
        let cluster = |name: &str| Any {
            type_url: TYPE_URLS[CDS].into(),
            value: Cluster {
                name: name.into(),
                ..Default::default()
            }
            .encode_to_vec(),
        };
        let msg = DiscoveryResponse {
            version_info: "v9".into(),
            resources: vec![cluster("b"), cluster("a")],
            type_url: TYPE_URLS[CDS].into(),
            nonce: "3".into(),
            ..Default::default()
        }
        .encode_to_vec();
        let r = Response::parse(&msg).unwrap();
        assert_eq!(
            (r.version, r.type_url, r.nonce),
            ("v9", TYPE_URLS[CDS], "3")
        );
        assert_eq!(r.names(&msg).unwrap(), ["a", "b"]);
    }
}
