//! Weir: a single-threaded message-queue broker with acknowledged, bounded, conflating
//! per-session queues.
//!
//! # Layout
//!
//! Dependencies point one way: `protocol` ← `credentials` ← `broker` ← `net` ← `server`;
//! `config` uses `credentials`; `client` uses only `protocol`.
//!
//! - [`protocol`]: pure bytes ⇄ frames, the wire format of protocol.md; no I/O, no panics.
//! - [`broker`]: the sans-IO core: sessions, queues, routing, acks, conflation, limits,
//!   timers. Takes frames and `now`, yields bytes and closes.
//! - `net` (private): the mio event loop, connections and their buffers; the only code that
//!   touches sockets or starts threads (the password worker pool, fed by the core's
//!   `poll_password_check`, answering through `handle_password_checked`).
//! - [`server`]: wires [`Config`], [`broker::Broker`] and the loop; [`ServerHandle`] stops it
//!   or reads stats from another thread (via [`control`]).
//! - [`config`]: embedded defaults, TOML parsing, validation.
//! - [`credentials`]: password hashes, tokens, signed tokens, permission patterns: pure
//!   functions (the failed-auth slowdown, which holds state, is in `broker::auth`).
//! - [`metrics`]: every counter and gauge declared once (name, kind, unit, help);
//!   [`prometheus`] renders them for scraping.
//! - `client`: a blocking client for tests, tools and embedding programs.
#![forbid(unsafe_code)]
#![warn(
    missing_docs,
    missing_debug_implementations,
    unreachable_pub,
    rust_2018_idioms
)]

pub mod broker;
pub mod client;
pub mod config;
pub mod control;
pub mod credentials;
pub mod metrics;
pub(crate) mod net;
pub mod notify;
pub mod prometheus;
pub mod protocol;
pub mod server;

pub use config::Config;
pub use server::{Server, ServerHandle};
