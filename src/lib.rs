//! Weir: a single-threaded message-queue broker with acknowledged, bounded, conflating
//! per-session queues.
//!
//! # Layout
//!
//! Dependencies point one way: `protocol` ← `credentials` ← `config` ← `broker` ← `net` ←
//! `server`; `metrics` sits beside `protocol`; `client` uses only `protocol`. Nothing imports
//! `net` but `server`; nothing imports upward; there are no import circles.
//!
//! - [`protocol`]: pure bytes ⇄ frames, the wire format of protocol.md; no I/O, no panics.
//! - [`credentials`]: password hashes, tokens, signed tokens, permission patterns: pure
//!   functions (the failed-auth slowdown, which holds state, is in `broker::auth`).
//! - [`config`]: embedded defaults, TOML parsing, validation; `config::loop_settings` is what
//!   the event loop needs (sockets, transport stacks, write budgets), the rest is the core's;
//!   `config::reload` plans a reload (what changes where, what needs a restart).
//! - [`broker`]: the sans-IO core that decides: sessions, queues, routing, acks, conflation,
//!   limits, timers, and the scheduling of input (`broker::flow`: budgets, pauses,
//!   draining). Takes bytes, `now` and a seeded [`broker::Origin`]; yields bytes, closes and
//!   deadlines. Its call order is documented on [`broker::Broker`].
//! - `net` (private): the only code that touches sockets or mio; it moves bytes. The event
//!   loop (a checklist), listeners, transport layers (PROXY prefix, TLS over TCP), the HTTP
//!   listener, commands and signals.
//! - `storage` (private): durable queues' segment files, recovery, and the journal thread;
//!   it talks to the loop only through a channel and the loop's waker
//!   (`broker::journal` is the core's side: records to persist, receipts that wait).
//! - [`server`]: wires [`Config`], [`broker::Broker`] and the loop, reads the clock and the OS
//!   random source once for the broker; [`ServerHandle`] stops it, reloads it or reads stats
//!   from another thread (via [`control`]).
//! - [`metrics`]: every counter and gauge declared once (name, kind, unit, help);
//!   [`prometheus`] renders them for scraping, STATS_REPLY from the same table.
//! - [`client`]: a blocking client for tests, tools and embedding programs.
//!
//! The path of a PUBLISH: the loop reads the socket through the connection's transport
//! (`net::transport`) into a shared scratch buffer and hands the bytes to
//! [`broker::Broker::handle_input`]; `broker::intake` decodes frames (keeping a partial one),
//! `broker::publish` stores the payload once and links a node into each subscriber's
//! delivery queue (`broker::delivery_queue`), marking their connections dirty; the loop's
//! flush pass asks [`broker::Broker::poll_transmit`] for each dirty connection's DELIVERs
//! and writes them through the transport.
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
pub(crate) mod storage;

pub use config::Config;
pub use server::{Server, ServerHandle};
