//! switchyard: an Envoy xDS control plane for blue-green deployment.
//!
//! Operators edit one desired-state file; switchyard validates it and streams clusters,
//! endpoints, listeners and routes to every connected Envoy over ADS, moving each service's
//! traffic between its blue and green environments without dropping a request.
//!
//! # Layout
//! The data flows in one line: state file -> watcher -> pipeline (translate, check,
//! publish) -> snapshot cache -> one ADS stream loop per proxy -> Envoy, whose ACKs and
//! NACKs come back through the stream's observer to the proxy registry, metrics, events
//! and convergence. Arrows point one way: `xds` knows nothing above it.
//!
//! - [`state`]: the desired-state file: model, parsing and validation with locations,
//!   what changed between two states, the watcher (its debounce rules a pure function).
//! - [`translate`]: pure function from desired state to a consistency-checked snapshot.
//! - [`pipeline`]: each file content accepted (translated, published) or rejected, and
//!   reported; one synchronous step.
//! - [`xds`]: resource types and push order, snapshots and their cache, the SotW state
//!   machine, where a proxy stands ([`xds::sync`]), the ADS server and its observer seam.
//! - [`tracker`]: the observer the application gives the ADS server: fans each stream's
//!   steps out to the registry, metrics, events and convergence.
//! - [`proxies`]: every connected proxy: sent, acknowledged, rejected, status.
//! - [`convergence`]: when every proxy has acknowledged a new state.
//! - [`events`]: what happens, as events for sinks and live readers; [`audit`] is the sink
//!   that appends them to the audit log.
//! - [`load`]: Envoy's load reports (LRS): the service on the xDS port and the board that
//!   adds them up per cluster and proxy (what `/status` shows of each color's traffic).
//! - [`status`]: the state in force, the last rejection, the last internal error.
//! - [`metrics`]: Prometheus metrics.
//! - [`admin`]: the admin HTTP server (`/healthz`, `/readyz`, `/status`, `/metrics`, and
//!   the live dashboard: `/` and its event stream `/events`).
//! - [`grpc`]: CSDS, the `switchyard.v1` API and server reflection on the xDS port.
//! - [`render`]: Envoy resources as proto3 JSON with Envoy's field names.
//! - [`rollout`]: the workflow around a switch: gate, ramp, waves, release groups, bake
//!   and rollback, schema guard; which color is in force for each service and why.
//! - [`fleet`]: which proxy is in which wave, and the snapshot variants some proxies get
//!   (the waves a switch has not reached, localities ranked from the proxy's own).
//! - [`accept`]: the xDS port's accept loop: connection cap, no busy loop out of file
//!   descriptors, socket options.
//! - [`tls`]: TLS and mutual TLS on the xDS port, certificates reloaded when they change.
//! - [`identity`]: who a client is (its certificate's names) and what it may do: proxies
//!   must be named by their certificates, allowlists, operators.
//! - [`server`]: wiring of all of the above; `Server::bind` then `Server::run`.
//! - [`cli`]: the `status`, `diff` and `schema` commands: pure text from data, thin I/O.
//! - [`hash`], [`time`]: stable short hashes (versions); RFC 3339 times.

#![forbid(unsafe_code)]
#![deny(rust_2018_idioms)]

pub mod accept;
pub mod admin;
pub mod audit;
pub mod cli;
pub mod convergence;
pub mod events;
pub mod fleet;
pub mod grpc;
pub mod hash;
pub mod identity;
pub mod load;
pub mod metrics;
pub mod pipeline;
pub mod proxies;
pub mod render;
pub mod rollout;
pub mod server;
pub mod state;
pub mod status;
pub mod time;
pub mod tls;
pub mod tracker;
pub mod translate;
pub mod xds;

pub use server::{Config, ServeError, Server};
