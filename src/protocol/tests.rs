//! Tests of the wire format against protocol.md, one concept per file under `tests/`:
//!
//! - `doc`: the error-code and op tables of protocol.md are parsed and compared with
//!   [`ErrorCode::ALL`](super::ErrorCode::ALL) and [`Op::ALL`](super::Op::ALL), and the worked
//!   example's hex with the encoders, so doc and code cannot drift.
//! - `round_trip`: every frame type survives encode then decode (proptest); encoder limits.
//! - `split`: a stream of frames cut at every byte boundary decodes to the same frames, never
//!   an error (nats `split_test` style).
//! - `malformed`: fixtures under `tests/fixtures/malformed/`, listed with their expected code in
//!   `manifest.txt`, each decoding to exactly that error. They are written out by hand in
//!   `malformed.rs`, not with the encoders; after changing a case run
//!   `WEIR_WRITE_FIXTURES=1 cargo test -p weir --lib protocol::tests` to rewrite them (and the
//!   seed corpus of `tools/fuzz`).
//! - `header_checks`: length, version and op errors reported from the header bytes alone.
//! - `untrusted_input`: random bytes never panic `decode` or `fuzz_decode`.
//! - `support`: owned frames, proptest strategies and small helpers shared by the others.

// A failing test panics: that is how the harness reports it. The module-wide denials in
// mod.rs protect the decoder from untrusted input; they are not meant for test code.
#![allow(
    clippy::indexing_slicing,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic
)]

mod doc;
mod header_checks;
mod malformed;
mod round_trip;
mod split;
mod support;
mod untrusted_input;
