//! Integration tests: a real server on 127.0.0.1:0, real TCP sockets.
//!
//! One test binary with a module per feature area (link time matters on the 2-core CI
//! machine). Wire-format tests assert raw bytes; behaviour tests use `weir::client`.

mod common;
mod malformed_frames;
mod proxy_haproxy;
mod server_lifecycle;
