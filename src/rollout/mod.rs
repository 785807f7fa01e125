//! The blue-green workflow around a switch: which color is in force for each service and
//! why. The file says which color the operator wants; the rollout decides when traffic
//! may go there (the schema guard, the gate) and whether it comes back by itself (the
//! bake).

pub mod bake;
pub mod decide;
pub mod schema;
pub mod status;
pub mod tracks;
