//! Who holds what: live sessions and queues counted per identity and per source address, so
//! that one client cannot take every session or queue name (issue #12).
//!
//! An [`Owner`] is fixed when a session or queue is created: the authenticated identity
//! (`None` for anonymous sessions, which only the address limit applies to) and the source
//! address (the PROXY header's when there was one: the broker replaced the peer address with
//! it). Loopback addresses are not address-limited (local processes; benchmarks open 10,000
//! sessions from 127.0.0.1). Counts live in a [`Tally`] whose entries go away at zero, so its size is bounded by
//! what is live.

use std::collections::HashMap;
use std::net::IpAddr;

use foldhash::fast::RandomState;

use super::{Broker, SessionKey};
use crate::credentials::Identity;
use crate::protocol::ErrorCode;

/// The identity and address a session or queue is counted against.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Owner {
    /// `user:NAME` or `subject:NAME`; `None` for anonymous sessions.
    pub(crate) identity: Option<Box<str>>,
    pub(crate) address: IpAddr,
}

impl Owner {
    pub(crate) fn new(identity: &Identity, address: IpAddr) -> Owner {
        let identity = match identity {
            Identity::Anonymous => None,
            Identity::User(name) => Some(format!("user:{name}").into()),
            Identity::Subject(name) => Some(format!("subject:{name}").into()),
        };
        Owner { identity, address }
    }

    /// Whether `self` and `other` share an identity or an address.
    pub(crate) fn is_related(&self, other: &Owner) -> bool {
        self.address == other.address
            || (self.identity.is_some() && self.identity == other.identity)
    }
}

/// Live things per identity and per address.
#[derive(Debug, Default)]
pub(crate) struct Tally {
    by_identity: HashMap<Box<str>, u32, RandomState>,
    by_address: HashMap<IpAddr, u32, RandomState>,
}

/// Which per-owner limit a new session or queue would break.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum OverLimit {
    Identity,
    Address,
}

impl Tally {
    /// The limit `owner` is at, if any (identity checked first).
    pub(crate) fn over(
        &self,
        owner: &Owner,
        max_per_identity: usize,
        max_per_address: usize,
    ) -> Option<OverLimit> {
        let of_identity = owner
            .identity
            .as_deref()
            .and_then(|id| self.by_identity.get(id))
            .copied()
            .unwrap_or(0);
        if of_identity as usize >= max_per_identity {
            return Some(OverLimit::Identity);
        }
        if owner.address.is_loopback() {
            // Local processes (or a proxy that sends no PROXY header, behind which everyone
            // shares one address) are not address-limited; identity limits still apply.
            return None;
        }
        let of_address = self.by_address.get(&owner.address).copied().unwrap_or(0);
        (of_address as usize >= max_per_address).then_some(OverLimit::Address)
    }

    pub(crate) fn add(&mut self, owner: &Owner) {
        if let Some(identity) = &owner.identity {
            match self.by_identity.get_mut(identity) {
                Some(count) => *count += 1,
                None => {
                    self.by_identity.insert(identity.clone(), 1);
                }
            }
        }
        *self.by_address.entry(owner.address).or_default() += 1;
    }

    pub(crate) fn remove(&mut self, owner: &Owner) {
        if let Some(identity) = &owner.identity {
            if let Some(count) = self.by_identity.get_mut(identity) {
                *count -= 1;
                if *count == 0 {
                    self.by_identity.remove(identity);
                }
            }
        }
        if let Some(count) = self.by_address.get_mut(&owner.address) {
            *count -= 1;
            if *count == 0 {
                self.by_address.remove(&owner.address);
            }
        }
    }
}

/// Most detached sessions evicted for one HELLO: one per limit it can be at.
const MAX_EVICTIONS_PER_HELLO: usize = 3;

impl Broker {
    /// Makes room for a new session of `owner` under `max_sessions_per_identity`,
    /// `max_sessions_per_address` and `max_sessions`: at a limit, the oldest detached session
    /// sharing that identity or address (either, at `max_sessions`) is ended with
    /// SESSION_EVICTED, which its client learns on resume. With none to evict, the error is
    /// what to answer: LIMIT_EXCEEDED at a per-owner limit, SERVER_BUSY at `max_sessions`.
    ///
    /// Bounded work: O(sessions) per eviction, at most three, only at a limit.
    pub(super) fn make_room_for_session(
        &mut self,
        owner: &Owner,
    ) -> Result<(), (ErrorCode, &'static str)> {
        for _ in 0..=MAX_EVICTIONS_PER_HELLO {
            let over = self.session_owners.over(
                owner,
                self.config.max_sessions_per_identity,
                self.config.max_sessions_per_address,
            );
            let is_full = self.sessions.len() >= self.config.max_sessions;
            if over.is_none() && !is_full {
                return Ok(());
            }
            let victim = self
                .sessions
                .iter()
                .filter_map(|(key, s)| s.detached_at.map(|at| (at, key, s)))
                .filter(|(_, _, s)| match over {
                    Some(OverLimit::Identity) => s.owner.identity == owner.identity,
                    Some(OverLimit::Address) => s.owner.address == owner.address,
                    None => s.owner.is_related(owner),
                })
                .min_by_key(|&(at, key, _)| (at, key))
                .map(|(_, key, _)| SessionKey(key));
            let Some(victim) = victim else {
                return Err(match over {
                    Some(OverLimit::Identity) => (
                        ErrorCode::LimitExceeded,
                        "max_sessions_per_identity reached (detached sessions included)",
                    ),
                    Some(OverLimit::Address) => (
                        ErrorCode::LimitExceeded,
                        "max_sessions_per_address reached (detached sessions included)",
                    ),
                    None => (
                        ErrorCode::ServerBusy,
                        "max_sessions reached (detached sessions included)",
                    ),
                });
            };
            self.metrics.sessions_evicted += 1;
            log::debug!(
                "session {:#x} evicted for a new session of {:?} from {}",
                self.sessions[victim.0].id,
                owner.identity,
                owner.address
            );
            self.end_session(victim, ErrorCode::SessionEvicted);
        }
        Err((ErrorCode::ServerBusy, "could not make room for a session"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tally_counts_per_identity_and_address_and_forgets_at_zero() {
        let alice = Owner::new(&Identity::User("alice".into()), [10, 0, 0, 1].into());
        let anon = Owner::new(&Identity::Anonymous, [10, 0, 0, 1].into());
        let local = Owner::new(&Identity::Anonymous, [127, 0, 0, 1].into());
        let mut tally = Tally::default();
        tally.add(&alice);
        assert_eq!(tally.over(&alice, 1, 5), Some(OverLimit::Identity));
        assert_eq!(tally.over(&anon, 1, 5), None, "anonymous: address only");
        tally.add(&anon);
        assert_eq!(tally.over(&anon, 1, 2), Some(OverLimit::Address));
        tally.add(&local);
        tally.add(&local);
        assert_eq!(
            tally.over(&local, 1, 1),
            None,
            "loopback is not address-limited"
        );
        tally.remove(&local);
        tally.remove(&local);
        tally.remove(&alice);
        tally.remove(&anon);
        assert!(tally.by_identity.is_empty() && tally.by_address.is_empty());
        assert!(alice.is_related(&anon));
    }
}
