//! Any sequence of requests and snapshot changes on one delta stream
//! (`properties::DeltaModel`): unique nonces, one response in flight per type, well-formed
//! responses, removals only of what the proxy was sent, make-before-break; then a proxy
//! that accepts everything converges on the snapshot.

#![no_main]

use libfuzzer_sys::arbitrary::{Result, Unstructured};

#[allow(dead_code)]
#[path = "../properties.rs"]
mod properties;

use properties::delta::{DeltaModel, DeltaOp, DeltaRequest, InitialVersion};
use properties::{Model, NonceChoice};

/// Names: indexes into `properties::names()`, up to `most`.
fn names(u: &mut Unstructured<'_>, most: usize) -> Result<Vec<usize>> {
    let count = u.int_in_range(0..=most)?;
    (0..count)
        .map(|_| u.arbitrary::<u8>().map(usize::from))
        .collect()
}

/// Most requests answer the latest response or none (as Envoy does), so the stream gets
/// deep.
fn op(u: &mut Unstructured<'_>) -> Result<DeltaOp> {
    if u.ratio(1, 6)? {
        return Ok(DeltaOp::Snapshot(
            u.choose_index(properties::snapshots().len())?,
        ));
    }
    let nonce = match u.int_in_range(0..=6)? {
        0..=2 => NonceChoice::Latest,
        3 | 4 => NonceChoice::Other(String::new()),
        5 => NonceChoice::Sent(u.arbitrary::<u8>()?.into()),
        _ => NonceChoice::Other(u.arbitrary()?),
    };
    let error = match u.ratio(1, 8)? {
        true => Some(u.arbitrary()?),
        false => None,
    };
    let subscribe = names(u, 3)?;
    let unsubscribe = match u.ratio(1, 4)? {
        true => names(u, 2)?,
        false => Vec::new(),
    };
    let mut initial = Vec::new();
    if u.ratio(1, 4)? {
        for name in names(u, 3)? {
            let version = match u.ratio(3, 4)? {
                true => InitialVersion::Current,
                false => InitialVersion::Other(u.arbitrary()?),
            };
            initial.push((name, version));
        }
    }
    Ok(DeltaOp::Request(DeltaRequest {
        type_index: u.int_in_range(0..=5)?,
        nonce,
        error,
        subscribe,
        unsubscribe,
        initial,
        with_node: u.arbitrary()?,
    }))
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    DeltaModel::run(properties::ops(data, op)).converge();
});
