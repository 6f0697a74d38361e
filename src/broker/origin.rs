//! What the core is started with from outside: the time and a random seed.
//!
//! The broker never reads the clock or the OS random source (STYLE §2): the event loop reads
//! them once and passes them in as an [`Origin`], and a test passes fixed ones, so a run can be
//! replayed exactly.

use std::time::{Instant, SystemTime};

use sha2::{Digest, Sha256};

/// The broker's starting point: a monotonic `now`, the Unix time at that instant (for
/// signed-token expiry), and 32 bytes of seed for everything random (resume tokens, the run
/// epoch in session ids, the conflation hash key).
#[derive(Clone, Copy, Debug)]
pub struct Origin {
    /// Monotonic time at start.
    pub now: Instant,
    /// Wall-clock time at `now`.
    pub unix: SystemTime,
    /// Secret seed: from the OS random source in a server; anything in a test.
    pub seed: [u8; 32],
}

impl Origin {
    /// A fixed origin for tests: `now`, the Unix epoch plus 1.7e9 s, and the seed `seed`
    /// repeated.
    pub fn fixed(now: Instant, seed: u8) -> Origin {
        Origin {
            now,
            unix: SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000),
            seed: [seed; 32],
        }
    }
}

/// A deterministic random generator: SHA-256 of (seed, counter), the hash-in-counter-mode
/// construction. With a secret 256-bit seed its output cannot be predicted from earlier
/// output, which is what resume tokens need; it is a few lines over `sha2`, already a
/// dependency, so no RNG crate is added for it.
#[derive(Clone)]
pub(super) struct Entropy {
    seed: [u8; 32],
    counter: u64,
}

impl std::fmt::Debug for Entropy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The seed is a secret: resume tokens derive from it.
        f.debug_struct("Entropy")
            .field("counter", &self.counter)
            .finish_non_exhaustive()
    }
}

impl Entropy {
    pub(super) fn new(seed: [u8; 32]) -> Entropy {
        Entropy { seed, counter: 0 }
    }

    /// Fills `out` with the next bytes of the stream.
    pub(super) fn fill(&mut self, out: &mut [u8]) {
        for chunk in out.chunks_mut(32) {
            let block = Sha256::new()
                .chain_update(self.seed)
                .chain_update(self.counter.to_be_bytes())
                .finalize();
            self.counter += 1;
            let n = chunk.len();
            chunk.copy_from_slice(block.get(..n).unwrap_or_default());
        }
    }

    /// The next 64 random bits.
    pub(super) fn next_u64(&mut self) -> u64 {
        let mut bytes = [0u8; 8];
        self.fill(&mut bytes);
        u64::from_be_bytes(bytes)
    }
}
