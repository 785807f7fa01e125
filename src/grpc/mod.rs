//! gRPC services on the xDS port besides ADS and LRS: CSDS, switchyard's own `switchyard.v1` API,
//! and server reflection over all of them.

pub mod api;
pub mod csds;
pub mod matcher;

use std::time::SystemTime;

/// Generated `switchyard.v1` code (from `proto/` by `build.rs`).
pub mod pb {
    #![allow(clippy::all, missing_docs)]
    tonic::include_proto!("switchyard.v1");

    /// The encoded FileDescriptorSet of `switchyard.v1` (with its imports).
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        include_bytes!(concat!(env!("OUT_DIR"), "/switchyard_descriptor.bin"));
}

/// The fully qualified names of every gRPC service switchyard serves; reflection lists
/// exactly these.
pub const SERVICES: [&str; 7] = [
    "envoy.service.discovery.v3.AggregatedDiscoveryService",
    "envoy.service.load_stats.v3.LoadReportingService",
    "envoy.service.status.v3.ClientStatusDiscoveryService",
    "switchyard.v1.Switchyard",
    "grpc.health.v1.Health",
    "grpc.reflection.v1.ServerReflection",
    "grpc.reflection.v1alpha.ServerReflection",
];

/// The reflection services, serving descriptors for every service in [`SERVICES`]:
/// Envoy's from the set envoy-types ships, ours from `build.rs`. Both protocol versions:
/// v1, and v1alpha, which is all that grpcurl up to 1.8 speaks.
#[allow(clippy::type_complexity)]
pub fn reflection() -> Result<
    (
        tonic_reflection::server::v1::ServerReflectionServer<
            impl tonic_reflection::server::v1::ServerReflection,
        >,
        tonic_reflection::server::v1alpha::ServerReflectionServer<
            impl tonic_reflection::server::v1alpha::ServerReflection,
        >,
    ),
    tonic_reflection::server::Error,
> {
    Ok((
        reflection_builder().build_v1()?,
        reflection_builder().build_v1alpha()?,
    ))
}

fn reflection_builder() -> tonic_reflection::server::Builder<'static> {
    let mut builder = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(crate::render::ENVOY_DESCRIPTORS)
        .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET);
    for s in SERVICES {
        builder = builder.with_service_name(s);
    }
    builder
}

/// A `SystemTime` as prost's `Timestamp` (for `switchyard.v1`).
pub fn timestamp(t: SystemTime) -> prost_types::Timestamp {
    prost_types::Timestamp::from(t)
}

/// A `SystemTime` as envoy-types' `Timestamp` (for CSDS).
pub fn envoy_timestamp(t: SystemTime) -> envoy_types::pb::google::protobuf::Timestamp {
    let ts = prost_types::Timestamp::from(t);
    envoy_types::pb::google::protobuf::Timestamp {
        seconds: ts.seconds,
        nanos: ts.nanos,
    }
}
