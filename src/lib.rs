//! Weir: a single-threaded message-queue broker.
//!
//! # Layout
//!
//! Dependencies point one way: `protocol` ← `broker` ← `net` ← `server`.
//!
//! - [`protocol`]: pure bytes ⇄ frames, the wire format of protocol.md.
#![forbid(unsafe_code)]
#![warn(
    missing_docs,
    missing_debug_implementations,
    unreachable_pub,
    rust_2018_idioms
)]

pub mod protocol;
pub mod broker;
pub mod config;
pub mod metrics;
pub mod control;
pub(crate) mod net;
pub mod server;

pub use config::Config;
pub use server::{Server, ServerHandle};
