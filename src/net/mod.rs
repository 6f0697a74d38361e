//! The only code that touches sockets or mio.
//!
//! [`event_loop`] multiplexes the listener, every connection, the control channel's waker and
//! (optionally) signals on one thread; [`conn`] holds a connection's socket and buffers. All
//! broker semantics are behind `crate::broker::Broker`'s `handle_*` / `poll_*` calls.

pub(crate) mod conn;
pub(crate) mod event_loop;
pub(crate) mod http;
