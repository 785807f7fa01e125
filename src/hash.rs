//! Stable short hashes of canonical values: the versions of desired states and of Envoy
//! resources, identical in every process and on every replica.

use serde::Serialize;
use sha2::{Digest, Sha256};

/// First 16 hex digits of the SHA-256 of `value`'s JSON form. Callers pass values whose
/// JSON is canonical (no maps with unordered keys), so the hash is stable across processes.
pub fn short_hash<T: Serialize>(value: &T) -> String {
    let json = serde_json::to_vec(value).expect("bug: hashed values always serialize");
    let digest = Sha256::digest(&json);
    hex::encode(&digest[..8])
}
