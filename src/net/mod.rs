//! The only code that touches sockets or mio: it moves bytes, the broker decides.
//!
//! - [`event_loop`]: the turn checklist over every socket, the waker and signals;
//! - [`listener`]: a Weir listener and the transport stack of the connections it accepts;
//! - [`transport`]: the layers of one connection's stream (PROXY prefix, TLS, WebSocket)
//!   over TCP;
//! - [`connection`]: a connection's transport, write buffer and readiness;
//! - [`http`]: the HTTP listener (metrics, the dashboard page and its `/stats.json`);
//! - [`password_pool`]: worker threads that run the core's password checks;
//! - `commands`: commands from `ServerHandle`, signals, and applying a reload plan.

mod commands;
pub(crate) mod connection;
pub(crate) mod event_loop;
pub(crate) mod http;
pub(crate) mod listener;
pub(crate) mod password_pool;
pub(crate) mod transport;
