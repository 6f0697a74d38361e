//! How a client introduces itself: its options and credentials.

use std::fmt;
use std::time::Duration;

use crate::protocol::{Auth, AuthMethod};

/// How a [`Client`] introduces itself and how long it waits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientOptions {
    /// Name shown in the server's STATS report, at most 255 bytes.
    pub name: String,
    /// Deliveries the server may have in flight (sent, not acked) to this client; 0 asks for
    /// the server's default. The server grants at most its own `inflight_window`; the window in
    /// force is in [`Client::welcome`].
    pub inflight_window: u32,
    /// Upper bound for each blocking wait: connecting, WELCOME, SUBSCRIBED, RECEIPT, PONG,
    /// STATS_REPLY, GOODBYE, an event in [`Client::recv`], and each socket write. `None` waits
    /// without limit. Must not be zero.
    pub timeout: Option<Duration>,
    /// Credentials sent in every HELLO, resumes included; `None` connects anonymously
    /// (protocol.md §Authentication).
    pub auth: Option<Credentials>,
    /// Set EXTENSIONS in HELLO (protocol.md §Extensions): needed for
    /// [`Client::subscribe_group`]; the server then also sends DROPPED notices, which this
    /// client skips. Default false.
    pub extensions: bool,
}

/// Credentials for HELLO's auth block. `Debug` never shows the secret.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// How the server checks `secret`.
    pub method: AuthMethod,
    /// User name for [`AuthMethod::Password`]; empty otherwise.
    pub user: String,
    /// Password, token or signed token (at most 2,048 bytes).
    pub secret: String,
}

impl Credentials {
    /// A user name and password.
    pub fn password(user: &str, password: &str) -> Credentials {
        Credentials {
            method: AuthMethod::Password,
            user: user.to_owned(),
            secret: password.to_owned(),
        }
    }

    /// A token configured for one user.
    pub fn token(token: &str) -> Credentials {
        Credentials {
            method: AuthMethod::Token,
            user: String::new(),
            secret: token.to_owned(),
        }
    }

    /// A token signed with the server's `token_signing_key`.
    pub fn signed_token(token: &str) -> Credentials {
        Credentials {
            method: AuthMethod::SignedToken,
            user: String::new(),
            secret: token.to_owned(),
        }
    }

    pub(super) fn as_auth(&self) -> Auth<'_> {
        Auth {
            method: self.method,
            user: self.user.as_bytes(),
            secret: self.secret.as_bytes(),
        }
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("method", &self.method)
            .field("user", &self.user)
            .field("secret", &"<redacted>")
            .finish()
    }
}

impl Default for ClientOptions {
    fn default() -> ClientOptions {
        ClientOptions {
            name: String::from("weir-client"),
            inflight_window: 0,
            timeout: Some(DEFAULT_TIMEOUT),
            auth: None,
            extensions: false,
        }
    }
}

/// Default for [`ClientOptions::timeout`]: a server on a LAN answers requests in milliseconds,
/// and 10 s notices a dead one well before the server's own 30 s heartbeat timeout would.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
