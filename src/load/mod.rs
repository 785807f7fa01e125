//! Envoy's Load Reporting Service (LRS): every proxy reports, at an interval switchyard
//! sets, the requests it sent to each cluster, how many failed and how many are in flight.
//!
//! - [`board`]: the reports added up per cluster and per proxy over a recent window (pure:
//!   every call takes `now`).

pub mod board;
