//! Responses encoded once and shared by every stream that sends them.
//!
//! A `DiscoveryResponse` for a type, version and set of resources is the same for every
//! proxy but for its nonce. Protobuf lets fields come in any order and a message be the
//! concatenation of its parts, so the response is encoded once without the nonce (the
//! `shared` bytes, reference-counted), and each stream sends its own nonce field followed
//! by those bytes, not copied ([`EncodedResponse::grpc_frames`]). An incremental response
//! (`DeltaDiscoveryResponse`) keeps its nonce in the same field number, so it is sent the
//! same way: the resources that changed and the names removed, encoded once for every
//! stream owed the same change.

use std::hash::{Hash, Hasher};
use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};
use envoy_types::pb::envoy::config::core::v3::ControlPlane;
use envoy_types::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryResponse, DiscoveryResponse, Resource as DeltaResource,
};
use prost::Message;

use super::ResourceType;
use super::snapshot::{Resource, ResourceSet};

/// `DiscoveryResponse.nonce` is field 5, and so is `DeltaDiscoveryResponse.nonce`.
const NONCE_FIELD: u32 = 5;

/// One response as a stream sends it: shared bytes plus this stream's nonce.
#[derive(Debug, Clone)]
pub struct EncodedResponse {
    pub type_url: &'static str,
    pub version_info: String,
    pub nonce: String,
    /// How many resources it carries.
    pub resource_count: usize,
    shared: Bytes,
}

impl EncodedResponse {
    pub fn new(
        t: ResourceType,
        version: String,
        nonce: String,
        count: usize,
        shared: Bytes,
    ) -> Self {
        EncodedResponse {
            type_url: t.type_url(),
            version_info: version,
            nonce,
            resource_count: count,
            shared,
        }
    }

    /// Size on the wire (without gRPC framing).
    pub fn encoded_len(&self) -> usize {
        self.shared.len() + prost::encoding::string::encoded_len(NONCE_FIELD, &self.nonce)
    }

    /// Writes the whole message: this stream's nonce field, then the shared bytes.
    pub fn write_to(&self, dst: &mut impl BufMut) {
        prost::encoding::string::encode(NONCE_FIELD, &self.nonce, dst);
        dst.put_slice(&self.shared);
    }

    /// The response as one gRPC message (uncompressed flag, length, message), in two
    /// parts: a small buffer of its own with the gRPC prefix and this stream's nonce field,
    /// then the shared bytes themselves (reference-counted, not copied), so a response
    /// sent to 10,000 streams is not copied 10,000 times.
    pub fn grpc_frames(&self) -> [Bytes; 2] {
        let len = self.encoded_len();
        let nonce = prost::encoding::string::encoded_len(NONCE_FIELD, &self.nonce);
        let mut head = BytesMut::with_capacity(5 + nonce);
        head.put_u8(0);
        head.put_u32(u32::try_from(len).expect("bug: a response over 4 GiB"));
        prost::encoding::string::encode(NONCE_FIELD, &self.nonce, &mut head);
        [head.freeze(), self.shared.clone()]
    }

    /// The message as prost decodes it (tests and tools).
    pub fn decode(&self) -> DiscoveryResponse {
        let mut buf = Vec::with_capacity(self.encoded_len());
        self.write_to(&mut buf);
        DiscoveryResponse::decode(buf.as_slice())
            .expect("bug: a response we encoded does not decode")
    }

    /// The message as prost decodes it, for an incremental response (tests and tools).
    pub fn decode_delta(&self) -> DeltaDiscoveryResponse {
        let mut buf = Vec::with_capacity(self.encoded_len());
        self.write_to(&mut buf);
        DeltaDiscoveryResponse::decode(buf.as_slice())
            .expect("bug: a delta response we encoded does not decode")
    }

    /// Do two responses share their encoded bytes (not merely equal bytes)?
    pub fn shares_bytes_with(&self, other: &EncodedResponse) -> bool {
        self.shared.as_ptr() == other.shared.as_ptr() && self.shared.len() == other.shared.len()
    }
}

/// Encodes the nonce-less part of a response.
pub fn encode_shared(
    t: ResourceType,
    version: &str,
    resources: &ResourceSet,
    control_plane: &str,
) -> Bytes {
    let response = DiscoveryResponse {
        version_info: version.to_owned(),
        resources: resources.values().map(|r| r.body.clone()).collect(),
        type_url: t.type_url().to_owned(),
        control_plane: Some(ControlPlane {
            identifier: control_plane.to_owned(),
        }),
        ..Default::default()
    };
    Bytes::from(response.encode_to_vec())
}

/// A key that identifies the content of a response: type, version and each resource's
/// name and version.
pub fn response_key(t: ResourceType, version: &str, resources: &ResourceSet) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    t.hash(&mut h);
    version.hash(&mut h);
    for (name, r) in resources {
        name.hash(&mut h);
        r.version.hash(&mut h);
    }
    h.finish()
}

/// Encodes the nonce-less part of an incremental response: `changed` resources (each with
/// its own name and version) and the names of `removed` ones.
pub fn encode_delta_shared<'a>(
    t: ResourceType,
    version: &str,
    changed: impl Iterator<Item = &'a Arc<Resource>>,
    removed: impl Iterator<Item = &'a str>,
    control_plane: &str,
) -> Bytes {
    let response = DeltaDiscoveryResponse {
        system_version_info: version.to_owned(),
        resources: changed
            .map(|r| DeltaResource {
                name: r.name.clone(),
                version: r.version.clone(),
                resource: Some(r.body.clone()),
                ..Default::default()
            })
            .collect(),
        type_url: t.type_url().to_owned(),
        removed_resources: removed.map(str::to_owned).collect(),
        control_plane: Some(ControlPlane {
            identifier: control_plane.to_owned(),
        }),
        ..Default::default()
    };
    Bytes::from(response.encode_to_vec())
}

/// [`response_key`] of an incremental response: type, version, each changed resource's
/// name and version, and the names removed.
pub fn delta_response_key<'a>(
    t: ResourceType,
    version: &str,
    changed: impl Iterator<Item = &'a Arc<Resource>>,
    removed: impl Iterator<Item = &'a str>,
) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    "delta".hash(&mut h);
    t.hash(&mut h);
    version.hash(&mut h);
    for r in changed {
        r.name.hash(&mut h);
        r.version.hash(&mut h);
    }
    "removed".hash(&mut h);
    for n in removed {
        n.hash(&mut h);
    }
    h.finish()
}
