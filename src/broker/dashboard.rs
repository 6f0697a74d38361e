//! Who may read the server's report over HTTP (the dashboard at `GET /` and `GET /stats.json`):
//! the STATS rule of protocol.md §Authentication, carried over to HTTP Basic credentials. The
//! loop parses nothing but the header's bytes; the decision and its counters are here.

use std::net::IpAddr;
use std::time::Instant;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use log::info;

use super::auth::Admission;
use super::stats::render_json;
use super::Broker;
use crate::protocol::{Auth, AuthMethod};

/// The answer to an HTTP request for the report.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HttpAccess {
    /// Serve it.
    Allowed,
    /// No credentials, or wrong ones: 401 with a Basic challenge.
    Unauthorized,
    /// A user who is not an admin: 403.
    Forbidden,
    /// Too many failures from this address lately: 429, unchecked.
    Throttled,
}

impl Broker {
    /// An HTTP request from `source` for the report, on an HTTP listener bound to a loopback
    /// address (`is_loopback`) or not, with its `Authorization` header if any. On loopback
    /// anyone may read it, as anonymous sessions may use STATS there; elsewhere only HTTP Basic
    /// credentials of a `[[users]]` entry with a `password_hash` and `admin = true`. Failures
    /// count in the same per-address buckets as failed HELLOs, so HTTP is no side door for
    /// guessing passwords. Nothing is cached: each request is checked.
    ///
    /// Bounded work: one PBKDF2 (about 5 ms at 10,000 iterations, on the loop).
    pub fn handle_http_access(
        &mut self,
        source: IpAddr,
        is_loopback: bool,
        authorization: Option<&[u8]>,
        now: Instant,
    ) -> HttpAccess {
        if is_loopback {
            return HttpAccess::Allowed;
        }
        let Some(credentials) = authorization.and_then(basic_credentials) else {
            return HttpAccess::Unauthorized;
        };
        if self.auth_failures.admit(&source, now, now).0 != Admission::Now {
            self.metrics.auth_throttled += 1;
            return HttpAccess::Throttled;
        }
        let colon = credentials.iter().position(|&b| b == b':');
        let (user, password) = match colon {
            Some(at) => (
                credentials.get(..at).unwrap_or_default(),
                credentials.get(at + 1..).unwrap_or_default(),
            ),
            None => (&credentials[..], &[][..]),
        };
        let auth = Auth {
            method: AuthMethod::Password,
            user,
            secret: password,
        };
        // The clock only matters for signed tokens; this is a password.
        match self.authenticator.verify(&auth, 0) {
            Some((_, permissions)) if permissions.admin => HttpAccess::Allowed,
            Some(_) => HttpAccess::Forbidden,
            None => {
                self.metrics.auth_failures += 1;
                self.auth_failures.record_failure(&source, now);
                info!(
                    "HTTP from {source}: authentication failed (user {:?})",
                    String::from_utf8_lossy(user)
                );
                HttpAccess::Unauthorized
            }
        }
    }

    /// The report (STATS_REPLY's document) as JSON of at most `max_len` bytes, sessions left
    /// out when they would not fit (counted in `sessions_omitted`).
    pub fn stats_json(&self, max_len: usize) -> Vec<u8> {
        render_json(self, max_len)
    }
}

/// The decoded `user:password` of an `Authorization: Basic …` value.
fn basic_credentials(value: &[u8]) -> Option<Vec<u8>> {
    let text = std::str::from_utf8(value).ok()?.trim();
    let (scheme, encoded) = text.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    STANDARD.decode(encoded.trim()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_credentials_are_decoded_and_other_schemes_ignored() {
        assert_eq!(
            basic_credentials(b"Basic YWRtaW46czNjcjN0").as_deref(),
            Some(&b"admin:s3cr3t"[..])
        );
        assert_eq!(basic_credentials(b"Bearer abc"), None);
        assert_eq!(basic_credentials(b"Basic !!"), None);
    }
}
