//! Any sequence of requests and snapshot changes on one SotW stream
//! (`properties::SotwModel`): unique nonces, one response in flight per type,
//! make-before-break.

#![no_main]

use libfuzzer_sys::arbitrary::{Result, Unstructured};

#[allow(dead_code)]
#[path = "../properties.rs"]
mod properties;

use properties::{Model, NonceChoice, Op, SotwModel, VersionChoice};

/// Most requests answer the latest response (as Envoy does), so the stream gets deep.
fn op(u: &mut Unstructured<'_>) -> Result<Op> {
    if u.ratio(1, 6)? {
        return Ok(Op::Snapshot(u.choose_index(properties::snapshots().len())?));
    }
    let nonce = match u.int_in_range(0..=5)? {
        0..=3 => NonceChoice::Latest,
        4 => NonceChoice::Sent(u.arbitrary::<u8>()?.into()),
        _ => NonceChoice::Other(u.arbitrary()?),
    };
    let version = match u.ratio(4, 5)? {
        true => VersionChoice::Latest,
        false => VersionChoice::Other(u.arbitrary()?),
    };
    let error = match u.ratio(1, 6)? {
        true => Some(u.arbitrary()?),
        false => None,
    };
    let count = u.int_in_range(0..=3)?;
    let names = (0..count)
        .map(|_| u.arbitrary::<u8>().map(usize::from))
        .collect::<Result<_>>()?;
    Ok(Op::Request {
        type_index: u.int_in_range(0..=5)?,
        nonce,
        version,
        error,
        names,
        with_node: u.arbitrary()?,
    })
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    SotwModel::run(properties::ops(data, op));
});
