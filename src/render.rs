//! Envoy resources as proto3 JSON with Envoy's own field names (`snake_case`, `@type` on
//! `Any`), the same form as Envoy's `/config_dump`, so an operator can compare the two.
//!
//! Uses the FileDescriptorSet that envoy-types ships (copied into `OUT_DIR` by `build.rs`).

use std::sync::LazyLock;

use prost_reflect::{DescriptorPool, DynamicMessage, SerializeOptions};
use serde_json::{Map, Value, json};

use crate::xds::ResourceType;
use crate::xds::snapshot::Snapshot;

/// The encoded FileDescriptorSet of every Envoy API type (and its dependencies).
pub static ENVOY_DESCRIPTORS: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/envoy_types.bin"));

static POOL: LazyLock<DescriptorPool> = LazyLock::new(|| {
    DescriptorPool::decode(ENVOY_DESCRIPTORS)
        .expect("bug: envoy-types' descriptor set does not decode")
});

/// Errors turning a resource into JSON.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error("unknown type {0}")]
    UnknownType(String),
    #[error("cannot decode {type_name}: {source}")]
    Decode {
        type_name: String,
        source: prost::DecodeError,
    },
    #[error("cannot write JSON: {0}")]
    Json(#[from] serde_json::Error),
}

/// One `Any`-packed resource as JSON, with `@type` first, like Envoy's config dump.
pub fn any_to_json(type_url: &str, bytes: &[u8]) -> Result<Value, RenderError> {
    let type_name = type_url.rsplit('/').next().unwrap_or(type_url);
    let desc = POOL
        .get_message_by_name(type_name)
        .ok_or_else(|| RenderError::UnknownType(type_name.to_owned()))?;
    let message = DynamicMessage::decode(desc, bytes).map_err(|source| RenderError::Decode {
        type_name: type_name.to_owned(),
        source,
    })?;
    let options = SerializeOptions::new().use_proto_field_name(true);
    let body = message.serialize_with_options(serde_json::value::Serializer, &options)?;
    let mut out = Map::new();
    out.insert("@type".to_owned(), Value::String(type_url.to_owned()));
    if let Value::Object(fields) = body {
        out.extend(fields);
    }
    Ok(Value::Object(out))
}

/// Every resource of `snapshot`, by type in push order, with each type's version. Secrets
/// show their names and versions, never their values ([`Resource::shown_body`]).
///
/// [`Resource::shown_body`]: crate::xds::snapshot::Resource::shown_body
pub fn snapshot_to_json(snapshot: &Snapshot) -> Result<Value, RenderError> {
    let mut types = Map::new();
    for t in ResourceType::ALL {
        let ts = snapshot.get(t);
        let resources = ts
            .resources
            .values()
            .map(|r| {
                let body = r.shown_body();
                any_to_json(&body.type_url, &body.value)
            })
            .collect::<Result<Vec<_>, _>>()?;
        types.insert(
            t.short_name().to_owned(),
            json!({ "version_info": ts.version, "resources": resources }),
        );
    }
    Ok(json!({ "state_version": snapshot.state_version, "resources": types }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::parse_str;
    use crate::translate::translate;

    #[test]
    fn render_uses_envoys_field_names_and_expands_any() {
        let state = parse_str(
            "listeners:\n  - {name: public, address: 127.0.0.1, port: 10000}\nservices:\n  - name: s\n    listener: public\n    blue: {endpoints: [\"127.0.0.1:8081\"]}\n    green: {endpoints: [\"127.0.0.1:8082\"]}\n    active: green\n",
        )
        .unwrap();
        let json = snapshot_to_json(&translate(&state).unwrap()).unwrap();
        let cluster = &json["resources"]["clusters"]["resources"][0];
        assert_eq!(cluster["@type"], ResourceType::Cluster.type_url());
        assert_eq!(cluster["name"], "s-blue");
        assert_eq!(cluster["type"], "EDS");
        assert_eq!(cluster["connect_timeout"], "1s");
        let listener = &json["resources"]["listeners"]["resources"][0];
        let hcm = &listener["filter_chains"][0]["filters"][0]["typed_config"];
        assert_eq!(
            hcm["@type"],
            "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
        );
        assert_eq!(hcm["rds"]["route_config_name"], "public");
        let route = &json["resources"]["routes"]["resources"][0];
        // After the two preview routes, the weighted default.
        let weighted = &route["virtual_hosts"][0]["routes"][2]["route"]["weighted_clusters"];
        assert_eq!(weighted["clusters"][1]["name"], "s-green");
        assert_eq!(weighted["clusters"][1]["weight"], 100);
    }
}
