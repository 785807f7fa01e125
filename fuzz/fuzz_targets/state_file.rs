//! Any bytes as a state file: parsed and validated, and an accepted state translated
//! (`properties::state_file`).

#![no_main]

#[allow(dead_code)]
#[path = "../properties.rs"]
mod properties;

libfuzzer_sys::fuzz_target!(|data: &[u8]| properties::state_file(data));
