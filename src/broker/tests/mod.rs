//! Deterministic tests of the broker core, one file per topic.
//!
//! Every test drives a [`harness::Harness`]: frames in through the protocol encoders and
//! decoder, bytes out through `poll_transmit`, closes through `poll_close`, time through an
//! explicit fake clock. `model.rs` checks random operation sequences against a reference model.

mod harness;

mod auth;
mod backlog;
mod conflation;
mod delivery;
mod durable;
mod expiry;
mod groups;
mod heartbeat;
mod intake;
mod lifecycle;
mod memory;
mod model;
mod overflow;
mod patterns;
mod publish;
mod reconnect;
mod routing;
mod stats;
