//! Arbitrary bytes into the wire decoder: every frame it can decode, with the default limit,
//! then each decoded frame re-encoded. Must never panic (protocol.md §Framing).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    weir::protocol::fuzz_decode(data);
});
