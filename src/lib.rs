//! switchyard: an Envoy xDS control plane for blue-green deployment.
//!
//! Operators edit one desired-state file; switchyard validates it and streams clusters,
//! endpoints, listeners and routes to every connected Envoy over ADS, moving each service's
//! traffic between its blue and green environments without dropping a request.
//!
//! # Layout
//! The data flows in one line: state file -> watcher -> translate -> snapshot cache ->
//! one task per ADS stream -> Envoy.
//!
//! - [`state`]: the desired-state file: model, parsing and validation with locations, watcher.
//! - [`translate`]: pure function from desired state to a consistency-checked snapshot.
//! - [`xds`]: resource types and push order, snapshot cache, SotW state machine, ADS server,
//!   per-proxy registry.
//! - [`status`]: the state in force and the last rejection, for `/status`.
//! - [`admin`]: the admin HTTP server (`/healthz`, `/readyz`, `/status`, `/metrics`).
//! - [`metrics`]: Prometheus metrics.
//! - [`events`]: what happens to the state and to each proxy, as a broadcast of events.
//! - [`audit`]: the append-only JSON-lines audit log of those events.
//! - [`convergence`]: when every proxy has acknowledged a new state.
//! - [`grpc`]: CSDS, the `switchyard.v1` API and server reflection on the xDS port.
//! - [`render`]: Envoy resources as proto3 JSON with Envoy's field names.
//! - [`server`]: wiring of all of the above; `Server::bind` then `Server::run`.
//! - [`cli`]: the `status`, `diff` and `schema` commands: pure text from data, thin I/O.

#![forbid(unsafe_code)]
#![deny(rust_2018_idioms)]

pub mod admin;
pub mod audit;
pub mod cli;
pub mod convergence;
pub mod events;
pub mod grpc;
pub mod metrics;
pub mod render;
pub mod server;
pub mod state;
pub mod status;
pub mod translate;
pub mod xds;

pub use server::{Config, ServeError, Server};
