//! Operator commands that read rather than serve: `status` (a running server's state and
//! proxies, asked over `switchyard.v1`, as tables), `diff` (what replacing one state file
//! by another would change for Envoy) and `schema` (a JSON Schema of the state file, for
//! editors).
//!
//! Each command is a pure function from data to text (unit-tested on sample input) plus a
//! thin edge that reads files or the network; `main.rs` maps their errors to exit codes.

pub mod diff;
pub mod guard;
pub mod schema;
pub mod status;
