//! Integration tests: a real server on 127.0.0.1:0, real TCP sockets.
//!
//! One test binary with a module per feature area (link time matters on the 2-core CI
//! machine). Wire-format tests assert raw bytes; behaviour tests use `weir::client`.

mod abuse;
mod auth;
mod chaos_proxy;
mod common;
mod dashboard;
mod durable;
mod expiry;
mod extensions;
mod groups;
mod malformed_frames;
mod metrics_endpoint;
mod patterns;
mod proxy_haproxy;
mod pubsub;
mod reconnect_chaos;
mod reconnect_heartbeat;
mod reconnect_listeners;
mod reconnect_lost;
mod reconnect_resume;
mod reload_tls;
mod server_binary;
mod server_lifecycle;
mod tls;
mod websocket;
