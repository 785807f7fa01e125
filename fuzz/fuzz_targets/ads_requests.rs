//! Any bytes as an ADS request body (`properties::ads_requests`).
//!
//! Input: byte 0 is the DATA frame size (0: the whole body in one frame); byte 1's high
//! bit ends the body with an error instead of cleanly, its low 7 bits times 128 are the
//! message size limit; the rest is the body.

#![no_main]

#[allow(dead_code)]
#[path = "../properties.rs"]
mod properties;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let [frame, flags, body @ ..] = data else {
        return;
    };
    let chunks = match *frame {
        0 => vec![body.to_vec()],
        n => body.chunks(n as usize).map(<[u8]>::to_vec).collect(),
    };
    let max_message = usize::from(flags & 0x7f) * 128;
    properties::ads_requests(chunks, max_message, flags & 0x80 != 0);
});
