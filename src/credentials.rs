//! Credentials and permissions, as pure functions and values (issue 5; rules: protocol.md
//! §Authentication): PBKDF2 password hashes, SHA-256 token hashes, HMAC-SHA256 signed tokens,
//! queue permission patterns, and the [`Authenticator`] that checks a HELLO auth block against
//! the users and signing key in force.
//!
//! Nothing here holds run-time state or reads a clock: verification takes the current Unix
//! time as an argument, and an [`Authenticator`] never changes once built (a reload builds a new
//! one). The failed-authentication slowdown, which does change per attempt, is the broker's
//! (`broker::auth`). Dependencies: `protocol` only; `config` builds an [`Authenticator`] from
//! its `[[users]]`, the broker uses it.
//!
//! Invariants: every comparison of a secret, a hash or a signature is constant-time (`subtle`
//! or `hmac`'s own `verify_slice`); no secret, hash or signing key is ever logged or shown by
//! `Debug`.

use std::fmt;

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use hmac::{Hmac, Mac};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::protocol::{Auth, AuthMethod, MAX_NAME_LEN};

/// PBKDF2 iterations of hashes made by `weir-server --hash-password`.
///
/// Password checks run on the server's worker threads ([`PasswordCheck`]), at most
/// `max_password_checks_per_second`: OWASP's 600,000 took about 0.3 s of a core per password
/// HELLO here (release build), 10,000 take about 5 ms. Brute force over the network is held
/// back by the failed-auth slowdown (5 tries, then one per 10 s per source and per user);
/// clients that reconnect often should use tokens (one SHA-256). A hash with more iterations
/// in the config is still accepted.
pub const PASSWORD_HASH_ITERATIONS: u32 = 10_000;

/// Shortest `token_signing_key` accepted, in bytes: HMAC-SHA256's full strength.
pub const MIN_SIGNING_KEY_LEN: usize = 32;

/// A queue name pattern: exact name, `prefix*`, or `*`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Pattern {
    /// Every queue.
    Any,
    /// Every queue whose name starts with these bytes.
    Prefix(Box<[u8]>),
    /// One queue.
    Exact(Box<[u8]>),
}

impl Pattern {
    /// Parses a pattern from the config or a signed token.
    pub(crate) fn parse(text: &str) -> Result<Pattern, String> {
        if text.is_empty() {
            return Err("a permission pattern must not be empty".into());
        }
        let bytes = text.as_bytes();
        match bytes.iter().position(|&b| b == b'*') {
            None => Ok(Pattern::Exact(bytes.into())),
            Some(at) if at + 1 == bytes.len() => match bytes.get(..at) {
                Some([]) | None => Ok(Pattern::Any),
                Some(prefix) => Ok(Pattern::Prefix(prefix.into())),
            },
            Some(_) => Err(format!(
                "permission pattern {text:?}: `*` may only end a pattern"
            )),
        }
    }

    /// True if the queue `name` matches. Bounded work: O(pattern length).
    pub(crate) fn matches(&self, name: &[u8]) -> bool {
        match self {
            Pattern::Any => true,
            Pattern::Prefix(prefix) => name.starts_with(prefix),
            Pattern::Exact(exact) => **exact == *name,
        }
    }
}

/// What a session may do.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Permissions {
    pub(crate) publish: Vec<Pattern>,
    pub(crate) subscribe: Vec<Pattern>,
    /// May use STATS.
    pub(crate) admin: bool,
}

impl Permissions {
    /// An anonymous session's: everything, admin only when asked (loopback listeners).
    pub(crate) fn everything(admin: bool) -> Permissions {
        Permissions {
            publish: vec![Pattern::Any],
            subscribe: vec![Pattern::Any],
            admin,
        }
    }

    fn parse(publish: &[String], subscribe: &[String], admin: bool) -> Result<Self, String> {
        let parse_all = |list: &[String]| -> Result<Vec<Pattern>, String> {
            list.iter().map(|p| Pattern::parse(p)).collect()
        };
        Ok(Permissions {
            publish: parse_all(publish)?,
            subscribe: parse_all(subscribe)?,
            admin,
        })
    }

    pub(crate) fn may_publish(&self, queue: &[u8]) -> bool {
        self.publish.iter().any(|p| p.matches(queue))
    }

    pub(crate) fn may_subscribe(&self, queue: &[u8]) -> bool {
        self.subscribe.iter().any(|p| p.matches(queue))
    }
}

/// Who a session is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Identity {
    /// HELLO carried no auth block.
    Anonymous,
    /// A configured user (password or token).
    User(Box<str>),
    /// The subject of a signed token.
    Subject(Box<str>),
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Identity::Anonymous => f.write_str("anonymous"),
            Identity::User(name) => write!(f, "user:{name}"),
            Identity::Subject(subject) => write!(f, "subject:{subject}"),
        }
    }
}

/// Who a session is and what it may do, as granted at HELLO. Shared (`Arc<Grant>`): every
/// anonymous session holds one of the broker's two anonymous grants, so an idle session
/// carries one pointer instead of an identity and two pattern lists (idle-connection memory).
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Grant {
    pub(crate) identity: Identity,
    pub(crate) permissions: Permissions,
}

impl Grant {
    /// An anonymous session's: everything, admin only when asked (loopback listeners).
    pub(crate) fn anonymous(admin: bool) -> Grant {
        Grant {
            identity: Identity::Anonymous,
            permissions: Permissions::everything(admin),
        }
    }
}

/// A parsed `pbkdf2-sha256$<iterations>$<salt b64>$<hash b64>`.
#[derive(Clone, PartialEq, Eq)]
struct PasswordHash {
    iterations: u32,
    salt: Vec<u8>,
    hash: Vec<u8>,
}

impl PasswordHash {
    fn parse(text: &str) -> Result<PasswordHash, String> {
        let bad = || {
            "password_hash must be pbkdf2-sha256$<iterations>$<salt base64>$<hash base64> \
             (make one with `weir-server --hash-password`)"
                .to_owned()
        };
        let mut parts = text.split('$');
        let (Some("pbkdf2-sha256"), Some(iterations), Some(salt), Some(hash), None) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        ) else {
            return Err(bad());
        };
        let iterations: u32 = iterations.parse().map_err(|_| bad())?;
        let salt = STANDARD.decode(salt).map_err(|_| bad())?;
        let hash = STANDARD.decode(hash).map_err(|_| bad())?;
        if iterations == 0 || salt.len() < 8 || hash.len() != 32 {
            return Err(format!(
                "{}; iterations must be > 0, the salt at least 8 bytes, the hash 32 bytes",
                bad()
            ));
        }
        Ok(PasswordHash {
            iterations,
            salt,
            hash,
        })
    }

    /// Bounded work: `iterations` HMAC-SHA256 blocks.
    fn verify(&self, password: &[u8]) -> bool {
        let mut computed = [0u8; 32];
        pbkdf2::pbkdf2_hmac::<Sha256>(password, &self.salt, self.iterations, &mut computed);
        bool::from(computed.ct_eq(&self.hash[..]))
    }
}

/// Hashes `password` as `pbkdf2-sha256$<iterations>$<salt>$<hash>` with a given salt.
pub fn hash_password_with(password: &[u8], salt: &[u8], iterations: u32) -> String {
    let mut hash = [0u8; 32];
    pbkdf2::pbkdf2_hmac::<Sha256>(password, salt, iterations, &mut hash);
    format!(
        "pbkdf2-sha256${iterations}${}${}",
        STANDARD.encode(salt),
        STANDARD.encode(hash)
    )
}

/// Hashes `password` with a fresh random 16-byte salt and [`PASSWORD_HASH_ITERATIONS`].
///
/// # Errors
/// The OS random source failed.
pub fn hash_password(password: &[u8]) -> Result<String, getrandom::Error> {
    let mut salt = [0u8; 16];
    getrandom::getrandom(&mut salt)?;
    Ok(hash_password_with(
        password,
        &salt,
        PASSWORD_HASH_ITERATIONS,
    ))
}

/// The `token_hash` config value for a token: `sha256$<hex of SHA-256(token)>`.
pub fn token_hash(token: &[u8]) -> String {
    let digest = Sha256::digest(token);
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256${hex}")
}

fn parse_token_hash(text: &str) -> Result<[u8; 32], String> {
    let bad = || "token_hash must be sha256$<64 hex digits of SHA-256(token)>".to_owned();
    let hex = text.strip_prefix("sha256$").ok_or_else(bad)?;
    if hex.len() != 64 || !hex.is_ascii() {
        return Err(bad());
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        let pair = hex.get(2 * i..2 * i + 2).ok_or_else(bad)?;
        *byte = u8::from_str_radix(pair, 16).map_err(|_| bad())?;
    }
    Ok(out)
}

/// The payload of a signed token (protocol.md §Authentication).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenPayload {
    /// Identity shown in STATS and logs.
    pub subject: String,
    /// Expiry, Unix seconds.
    pub exp: u64,
    /// Publish patterns.
    #[serde(default)]
    pub publish: Vec<String>,
    /// Subscribe patterns.
    #[serde(default)]
    pub subscribe: Vec<String>,
    /// May use STATS.
    #[serde(default)]
    pub admin: bool,
}

/// Decodes a base64 `token_signing_key`.
///
/// # Errors
/// Not base64, or shorter than [`MIN_SIGNING_KEY_LEN`] bytes.
pub fn parse_signing_key(text: &str) -> Result<Vec<u8>, String> {
    let key = STANDARD
        .decode(text.trim())
        .map_err(|_| "token_signing_key must be base64 (standard alphabet)".to_owned())?;
    if key.len() < MIN_SIGNING_KEY_LEN {
        return Err(format!(
            "token_signing_key must decode to at least {MIN_SIGNING_KEY_LEN} bytes (it has {})",
            key.len()
        ));
    }
    Ok(key)
}

/// Signs a JSON payload: `base64url(payload) "." base64url(HMAC-SHA256(key, first part))`.
///
/// # Errors
/// The payload is not a valid [`TokenPayload`] or has a bad pattern.
pub fn sign_token(key: &[u8], payload_json: &str) -> Result<String, String> {
    let payload: TokenPayload =
        serde_json::from_str(payload_json).map_err(|e| format!("token payload: {e}"))?;
    Permissions::parse(&payload.publish, &payload.subscribe, payload.admin)?;
    let body = URL_SAFE_NO_PAD.encode(payload_json.as_bytes());
    let mut mac = new_mac(key);
    mac.update(body.as_bytes());
    let signature = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
    Ok(format!("{body}.{signature}"))
}

fn new_mac(key: &[u8]) -> Hmac<Sha256> {
    // HMAC accepts keys of any length; this never fails.
    <Hmac<Sha256> as Mac>::new_from_slice(key).unwrap_or_else(|_| unreachable!())
}

/// One `[[users]]` entry as declared, borrowed from the config: the input of
/// [`Authenticator::new`].
#[derive(Clone, Copy)]
pub(crate) struct UserDeclaration<'a> {
    /// User name, 1..=255 bytes.
    pub(crate) name: &'a str,
    /// `pbkdf2-sha256$<iterations>$<salt b64>$<hash b64>`.
    pub(crate) password_hash: Option<&'a str>,
    /// `sha256$<hex of SHA-256(token)>`.
    pub(crate) token_hash: Option<&'a str>,
    /// Publish patterns.
    pub(crate) publish: &'a [String],
    /// Subscribe patterns.
    pub(crate) subscribe: &'a [String],
    /// May use STATS.
    pub(crate) admin: bool,
}

struct User {
    name: Box<str>,
    password: Option<PasswordHash>,
    token_sha256: Option<[u8; 32]>,
    permissions: Permissions,
}

/// The users and signing key in force: checks HELLO auth blocks.
#[derive(Default)]
pub(crate) struct Authenticator {
    users: Vec<User>,
    signing_key: Option<Vec<u8>>,
}

impl fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.users.iter().map(|u| &*u.name).collect();
        f.debug_struct("Authenticator")
            .field("users", &names)
            .field("has_signing_key", &self.signing_key.is_some())
            .finish()
    }
}

impl Authenticator {
    /// Parses the declared users and the base64 `token_signing_key`.
    ///
    /// # Errors
    /// A message naming the user and key that is wrong.
    pub(crate) fn new<'a>(
        declared: impl IntoIterator<Item = UserDeclaration<'a>>,
        signing_key: Option<&str>,
    ) -> Result<Authenticator, String> {
        let declared = declared.into_iter();
        let mut users: Vec<User> = Vec::with_capacity(declared.size_hint().0);
        for user in declared {
            let at = format!("[[users]] {:?}", user.name);
            if user.name.is_empty() || user.name.len() > MAX_NAME_LEN {
                return Err(format!("{at}: name must be 1 to {MAX_NAME_LEN} bytes"));
            }
            if users.iter().any(|u| *u.name == *user.name) {
                return Err(format!("{at}: declared twice"));
            }
            if user.password_hash.is_none() && user.token_hash.is_none() {
                return Err(format!("{at}: needs password_hash or token_hash"));
            }
            let password = match user.password_hash {
                Some(text) => Some(PasswordHash::parse(text).map_err(|e| format!("{at}: {e}"))?),
                None => None,
            };
            let token_sha256 = match user.token_hash {
                Some(text) => {
                    let hash = parse_token_hash(text).map_err(|e| format!("{at}: {e}"))?;
                    if users.iter().any(|u| u.token_sha256 == Some(hash)) {
                        return Err(format!("{at}: token_hash is the same as another user's"));
                    }
                    Some(hash)
                }
                None => None,
            };
            let permissions = Permissions::parse(user.publish, user.subscribe, user.admin)
                .map_err(|e| format!("{at}: {e}"))?;
            users.push(User {
                name: user.name.into(),
                password,
                token_sha256,
                permissions,
            });
        }
        let signing_key = match signing_key {
            Some(text) => Some(parse_signing_key(text)?),
            None => None,
        };
        Ok(Authenticator { users, signing_key })
    }

    /// The password check a PASSWORD auth block needs, to run off the event-loop thread
    /// ([`PasswordCheck::run`]), and what it grants if it passes. An unknown user (or one
    /// without a password) gets a check against a dummy hash that never passes, with as many
    /// iterations as the costliest configured hash, so its answer takes as long as a real
    /// user's (issue #12: 1.17 ms for an unknown user vs 11.2 ms for a real one).
    pub(crate) fn password_check(
        &self,
        auth: &Auth<'_>,
    ) -> (PasswordCheck, Option<(Identity, Permissions)>) {
        let user = self
            .users
            .iter()
            .find(|u| u.name.as_bytes() == auth.user)
            .and_then(|u| u.password.as_ref().map(|hash| (u, hash)));
        match user {
            Some((user, hash)) => (
                PasswordCheck {
                    salt: hash.salt.clone().into(),
                    hash: hash.hash.clone().into(),
                    iterations: hash.iterations,
                    secret: auth.secret.into(),
                    is_real: true,
                },
                Some((Identity::User(user.name.clone()), user.permissions.clone())),
            ),
            None => (
                PasswordCheck {
                    salt: (*b"weir-unknown-user").into(),
                    hash: [0u8; 32].into(),
                    iterations: self.max_iterations(),
                    secret: auth.secret.into(),
                    is_real: false,
                },
                None,
            ),
        }
    }

    /// The most PBKDF2 iterations of any configured password hash ([`PASSWORD_HASH_ITERATIONS`]
    /// when none is configured).
    pub(crate) fn max_iterations(&self) -> u32 {
        self.users
            .iter()
            .filter_map(|u| u.password.as_ref().map(|p| p.iterations))
            .max()
            .unwrap_or(PASSWORD_HASH_ITERATIONS)
    }

    /// Checks an auth block at `unix_now` (seconds). `None` means AUTH_FAILED, whatever the
    /// cause. PASSWORD blocks are checked by [`Self::password_check`] instead when a
    /// worker pool runs the hashing; this checks them inline (same equal-cost rule).
    ///
    /// Bounded work: one PBKDF2 for PASSWORD, one SHA-256 and a pass over the users for TOKEN,
    /// one HMAC and a JSON parse of ≤ 2,048 bytes for SIGNED_TOKEN.
    pub(crate) fn verify(&self, auth: &Auth<'_>, unix_now: u64) -> Option<(Identity, Permissions)> {
        match auth.method {
            AuthMethod::Password => {
                let user = self
                    .users
                    .iter()
                    .find(|u| u.name.as_bytes() == auth.user)
                    .and_then(|u| u.password.as_ref().map(|hash| (u, hash)));
                let Some((user, hash)) = user else {
                    // Same work for an unknown user as for the costliest real one, so the
                    // answer's timing does not tell whether the name exists.
                    let mut sink = [0u8; 32];
                    pbkdf2::pbkdf2_hmac::<Sha256>(
                        auth.secret,
                        b"weir-unknown-user",
                        self.max_iterations(),
                        &mut sink,
                    );
                    std::hint::black_box(sink);
                    return None;
                };
                hash.verify(auth.secret)
                    .then(|| (Identity::User(user.name.clone()), user.permissions.clone()))
            }
            AuthMethod::Token => {
                if !auth.user.is_empty() {
                    return None;
                }
                let digest: [u8; 32] = Sha256::digest(auth.secret).into();
                // Every user is compared, so the time taken does not depend on which matched.
                let mut found = None;
                for user in &self.users {
                    if let Some(hash) = &user.token_sha256 {
                        if bool::from(hash.ct_eq(&digest)) {
                            found = Some(user);
                        }
                    }
                }
                let user = found?;
                Some((Identity::User(user.name.clone()), user.permissions.clone()))
            }
            AuthMethod::SignedToken => {
                let key = self.signing_key.as_deref()?;
                if !auth.user.is_empty() {
                    return None;
                }
                let payload = verify_signed_token(key, auth.secret, unix_now)?;
                let permissions =
                    Permissions::parse(&payload.publish, &payload.subscribe, payload.admin).ok()?;
                Some((Identity::Subject(payload.subject.into()), permissions))
            }
        }
    }
}

/// One password check, owned so it can run on another thread: PBKDF2 of `secret` compared in
/// constant time with the stored hash. Secrets stay out of `Debug`.
#[derive(Clone)]
pub struct PasswordCheck {
    salt: Box<[u8]>,
    hash: Box<[u8]>,
    iterations: u32,
    secret: Box<[u8]>,
    /// False for the dummy check of an unknown user: it never passes.
    is_real: bool,
}

impl fmt::Debug for PasswordCheck {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PasswordCheck")
            .field("iterations", &self.iterations)
            .finish_non_exhaustive()
    }
}

impl PasswordCheck {
    /// PBKDF2 iterations this check costs.
    pub fn iterations(&self) -> u32 {
        self.iterations
    }

    /// Runs the check: true if the password matches.
    ///
    /// Bounded work: `iterations` HMAC-SHA256 blocks, the same for a dummy check.
    pub fn run(&self) -> bool {
        let mut computed = [0u8; 32];
        pbkdf2::pbkdf2_hmac::<Sha256>(&self.secret, &self.salt, self.iterations, &mut computed);
        let matches = bool::from(computed.ct_eq(&self.hash[..]));
        self.is_real & matches
    }
}

/// The payload of a signed token whose signature is good and which has not expired.
fn verify_signed_token(key: &[u8], token: &[u8], unix_now: u64) -> Option<TokenPayload> {
    let dot = token.iter().position(|&b| b == b'.')?;
    let (body, signature) = (token.get(..dot)?, token.get(dot + 1..)?);
    let signature = URL_SAFE_NO_PAD.decode(signature).ok()?;
    let mut mac = new_mac(key);
    mac.update(body);
    mac.verify_slice(&signature).ok()?;
    let payload = URL_SAFE_NO_PAD.decode(body).ok()?;
    let payload: TokenPayload = serde_json::from_slice(&payload).ok()?;
    (unix_now < payload.exp).then_some(payload)
}

#[cfg(test)]
mod tests;
