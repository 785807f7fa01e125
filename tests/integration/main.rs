//! Every integration test, in one test crate: CI links the project once for all of them
//! instead of once per file. One module per concern; `common` is the harness (a real
//! Envoy, real backends on loopback, polling helpers), shared with the demo and the
//! benches.
//!
//! `cargo test --test integration MODULE::` runs one concern, e.g. `zero_downtime::`.

#[macro_use]
#[path = "../common/mod.rs"]
mod common;

mod architecture;
mod audit_and_metrics;
mod backend_models;
mod bake_and_rollback;
mod cli;
mod cli_diff;
mod cli_schema;
mod cli_status;
mod dashboard;
mod delta_wire;
mod e2e_switch;
mod gate;
mod harness_smoke;
mod hostile_under_traffic;
mod inspection;
mod limits_admin;
mod limits_watch_events;
mod limits_xds;
mod load_reports;
mod locality_failover;
mod make_before_break;
mod mixed_fleet;
mod model_clients;
mod model_clients_install;
mod model_examples;
mod preview_and_shadow;
mod probe;
mod properties;
mod proxy_rejection;
mod ramp;
mod release_groups;
mod replicas;
mod sample_backend;
mod schema_guard;
mod secret_redaction;
mod state_watch;
mod state_watch_hostile;
mod tls;
mod upstream_tls;
mod walkthrough;
mod waves;
mod zero_downtime;
