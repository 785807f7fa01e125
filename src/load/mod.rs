//! Envoy's Load Reporting Service (LRS): every proxy reports, at an interval switchyard
//! sets, the requests it sent to each cluster, how many failed and how many are in flight.
//!
//! - [`board`]: the reports added up per cluster and per proxy over a recent window (pure:
//!   every call takes `now`).
//! - [`report`]: a report as switchyard decodes it (the node's extension list skipped).
//! - [`service`]: the `envoy.service.load_stats.v3.LoadReportingService` gRPC service on the
//!   xDS port, with the same bounds and node authorization as ADS.

pub mod board;
pub mod report;
pub mod service;
