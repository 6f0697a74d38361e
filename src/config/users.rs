//! `[[users]]`: names, password and token hashes, permissions.

use super::*;

/// One user (`[[users]]`): a name, a password hash and/or a token hash, and permissions.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserConfig {
    /// User name given in a PASSWORD HELLO, shown in STATS and logs (1..=255 bytes).
    pub name: String,
    /// `pbkdf2-sha256$<iterations>$<salt b64>$<hash b64>`, from `weir-server --hash-password`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_hash: Option<String>,
    /// `sha256$<hex of SHA-256(token)>`, for TOKEN authentication.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_hash: Option<String>,
    /// Queues this user may publish to: exact names, `prefix*`, or `*`. Default none.
    #[serde(default)]
    pub publish: Vec<String>,
    /// Queues this user may subscribe to, same patterns. Default none.
    #[serde(default)]
    pub subscribe: Vec<String>,
    /// May use STATS. Default false.
    #[serde(default)]
    pub admin: bool,
}

impl fmt::Debug for UserConfig {
    // Hashes stay out of debug output and logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UserConfig")
            .field("name", &self.name)
            .field("has_password_hash", &self.password_hash.is_some())
            .field("has_token_hash", &self.token_hash.is_some())
            .field("publish", &self.publish)
            .field("subscribe", &self.subscribe)
            .field("admin", &self.admin)
            .finish()
    }
}
