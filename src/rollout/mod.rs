//! The blue-green workflow around a switch: which color is in force for each service and
//! why. The file says which color the operator wants; the rollout decides when traffic
//! may go there (the schema guard, the gate) and whether it comes back by itself (the
//! bake).
//!
//! A switch can move the traffic step by step ([`ramp`]): each step a share of it, once
//! the last one soaked, every proxy holds it and the bake held.
//!
//! The gate's pieces: [`gate`], the pure verdicts on each endpoint's probe history (with
//! `now` an argument), and [`probe`], the HTTP prober that feeds them (a GET of a path on
//! every endpoint of a color each interval, each result reported with its time).

pub mod bake;
pub mod controller;
pub mod decide;
pub mod gate;
pub mod journal;
pub mod probe;
pub mod ramp;
pub mod schema;
pub mod source;
pub mod status;
pub mod tracks;
pub mod view;
