//! Reload as a plan: the one place that compares the running configuration with a new one
//! and says what changes where.
//!
//! - The core's settings (limits, timeouts, rates, heartbeats, keep-alive, queues, users) take
//!   effect at once (`Broker::handle_reload`).
//! - Each listener's transport layers (PROXY policy, TLS certificate and key) apply to
//!   connections accepted after the reload; established connections keep theirs. TLS files
//!   are read again on every reload, so a certificate rotated in place is picked up.
//! - Addresses to bind (`listen`, `http_listen`, the number of listeners), and the loop's
//!   `busy_poll_us`, `write_budget_bytes` and `write_high_water_bytes`, need a restart: they
//!   are reported as such and keep their running values.
//!
//! Reload fails closed (issue #12): an empty file is refused ([`load_file`]), since an editor
//! that truncated it would otherwise reset every key to its default; and a plan that widens
//! access ([`widenings`]: anonymous HELLOs allowed where they were not, a user or one of its
//! permissions removed, TLS dropped from a listener) is refused unless the new file says
//! `reload_widens_access = true`. Applied, those widenings are listed in
//! [`ReloadPlan::widened`] for the loop to log at warning level.

use std::path::Path;

use super::{Config, ConfigError, LoopSettings};

/// What a reload will do, by config key.
#[derive(Clone, Debug)]
pub struct ReloadPlan {
    /// The configuration to run with: the new one, with what needs a restart kept as running.
    pub config: Config,
    /// The new loop settings (listener stacks for new connections).
    pub loop_settings: LoopSettings,
    /// Keys whose new values take effect.
    pub changed: Vec<String>,
    /// Keys that changed but need a restart; their running values are kept.
    pub needs_restart: Vec<String>,
    /// How access widens (one line each); non-empty only when the new file set
    /// `reload_widens_access = true`. Logged at warning level.
    pub widened: Vec<String>,
}

/// Reads a configuration file for a reload: as [`Config::from_file`], but a file with no key
/// at all (empty, or only comments and blank lines) is refused rather than taken as "every
/// default".
///
/// # Errors
/// [`ConfigError`] as [`Config::from_file`]; [`ConfigError::Invalid`] for an empty file.
pub fn load_file(path: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    if is_blank(&text) {
        return Err(ConfigError::Invalid(format!(
            "{} sets no key (empty or truncated?); reload refused",
            path.display()
        )));
    }
    Config::from_toml(&text)
}

/// True if TOML `text` holds nothing but whitespace and comments.
pub fn is_blank(text: &str) -> bool {
    text.lines()
        .map(str::trim)
        .all(|line| line.is_empty() || line.starts_with('#'))
}

/// How `new` widens access compared with `old`, one line per widening: a listener accepting
/// anonymous HELLOs that did not, a user removed, a publish/subscribe pattern or admin right
/// removed from a user, TLS dropped from a listener. Listeners are matched by address.
pub fn widenings(old: &Config, new: &Config) -> Vec<String> {
    let mut found = Vec::new();
    let old_listeners = old.listener_settings();
    let old_tls = old.tls_paths().unwrap_or_default();
    let new_tls = new.tls_paths().unwrap_or_default();
    for (index, listener) in new.listener_settings().iter().enumerate() {
        let Some(at) = old_listeners
            .iter()
            .position(|l| l.listen == listener.listen)
        else {
            continue;
        };
        if listener.allow_anonymous && !old_listeners[at].allow_anonymous {
            found.push(format!("{}: anonymous HELLOs allowed", listener.listen));
        }
        let had_tls = old_tls.get(at).is_some_and(Option::is_some);
        let has_tls = new_tls.get(index).is_some_and(Option::is_some);
        if had_tls && !has_tls {
            found.push(format!("{}: TLS dropped", listener.listen));
        }
    }
    for user in &old.users {
        let Some(now) = new.users.iter().find(|u| u.name == user.name) else {
            found.push(format!("user {:?} removed", user.name));
            continue;
        };
        for (kind, before, after) in [
            ("publish", &user.publish, &now.publish),
            ("subscribe", &user.subscribe, &now.subscribe),
        ] {
            for pattern in before.iter().filter(|p| !after.contains(p)) {
                found.push(format!("user {:?}: {kind} {pattern:?} removed", user.name));
            }
        }
        if user.admin && !now.admin {
            found.push(format!("user {:?}: admin removed", user.name));
        }
    }
    found
}

/// Keys bound to sockets or read once by the loop.
const RESTART_KEYS: &[&str] = &[
    "busy_poll_us",
    "data_dir",
    "listen",
    "http_listen",
    "segment_bytes",
    "write_budget_bytes",
    "write_high_water_bytes",
];

/// Compares `old` (running) with `new` (validated).
///
/// # Errors
/// As [`Config::loop_settings`] for `new`.
/// [`ConfigError::Invalid`] if the plan widens access ([`widenings`]) and `new` does not
/// set `reload_widens_access = true`.
pub fn plan(old: &Config, mut new: Config) -> Result<ReloadPlan, ConfigError> {
    if new.max_memory_bytes == 0 {
        // 0 means "a quarter of physical memory", resolved once at startup: keep that.
        new.max_memory_bytes = old.max_memory_bytes;
    }
    let widened = widenings(old, &new);
    if !widened.is_empty() && !new.reload_widens_access {
        return Err(ConfigError::Invalid(format!(
            "reload refused: it widens access ({}); set reload_widens_access = true in the \
             file to apply it",
            widened.join("; ")
        )));
    }
    let mut changed = Vec::new();
    let mut needs_restart = Vec::new();
    let old_value = toml::Value::try_from(old).ok();
    let new_value = toml::Value::try_from(&new).ok();
    let empty = toml::map::Map::new();
    let old_table = old_value
        .as_ref()
        .and_then(|v| v.as_table())
        .unwrap_or(&empty);
    let new_table = new_value
        .as_ref()
        .and_then(|v| v.as_table())
        .unwrap_or(&empty);
    let mut keys: Vec<&String> = old_table.keys().chain(new_table.keys()).collect();
    keys.sort();
    keys.dedup();
    let old_addrs: Vec<_> = old.listener_settings().iter().map(|l| l.listen).collect();
    let new_addrs: Vec<_> = new.listener_settings().iter().map(|l| l.listen).collect();
    let same_sockets = old_addrs == new_addrs;
    for key in keys {
        if old_table.get(key) == new_table.get(key) {
            continue;
        }
        let is_restart =
            RESTART_KEYS.contains(&key.as_str()) || (key == "listeners" && !same_sockets);
        if is_restart {
            needs_restart.push(key.clone());
        } else {
            changed.push(key.clone());
        }
    }
    // Keep what is bound to sockets, or read once by the loop, as it runs.
    new.listen = old.listen;
    new.http_listen = old.http_listen;
    new.busy_poll_us = old.busy_poll_us;
    // The journal thread's files are opened once, at startup.
    new.data_dir.clone_from(&old.data_dir);
    new.segment_bytes = old.segment_bytes;
    new.write_budget_bytes = old.write_budget_bytes;
    new.write_high_water_bytes = old.write_high_water_bytes;
    if !same_sockets {
        new.listeners = old.listeners.clone();
        if let Some(at) = changed.iter().position(|k| k == "listeners") {
            changed.remove(at);
        }
    }
    let loop_settings = new.loop_settings()?;
    Ok(ReloadPlan {
        config: new,
        loop_settings,
        changed,
        needs_restart,
        widened,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> Config {
        Config::default()
    }

    #[test]
    fn a_core_limit_is_changed_and_an_address_needs_a_restart() {
        let old = base();
        let new = Config {
            max_queue_depth: 7,
            listen: "127.0.0.1:7999".parse().unwrap(),
            ..base()
        };
        let plan = plan(&old, new).unwrap();
        assert_eq!(plan.changed, ["max_queue_depth"]);
        assert_eq!(plan.needs_restart, ["listen"]);
        assert_eq!(
            plan.config.listen, old.listen,
            "the running address is kept"
        );
        assert_eq!(plan.config.max_queue_depth, 7);
    }

    #[test]
    fn tls_and_proxy_settings_are_changes_for_new_connections_not_restarts() {
        let old = base();
        let new = Config {
            tls_cert: Some("cert.pem".into()),
            tls_key: Some("key.pem".into()),
            proxy_protocol: true,
            trusted_proxies: vec!["127.0.0.1/32".into()],
            ..base()
        };
        let plan = plan(&old, new).unwrap();
        assert!(plan.needs_restart.is_empty(), "{:?}", plan.needs_restart);
        for key in ["proxy_protocol", "tls_cert", "tls_key", "trusted_proxies"] {
            assert!(
                plan.changed.iter().any(|k| k == key),
                "{key} in {:?}",
                plan.changed
            );
        }
        let stack = &plan.loop_settings.listeners[0];
        assert!(stack.proxy.is_some() && stack.tls.is_some());
    }

    fn user(name: &str, publish: &[&str]) -> crate::config::UserConfig {
        crate::config::UserConfig {
            name: name.into(),
            password_hash: None,
            token_hash: Some(format!("sha256${}", "ab".repeat(32))),
            publish: publish.iter().map(|p| (*p).to_owned()).collect(),
            subscribe: Vec::new(),
            admin: false,
        }
    }

    // Issue #12: an empty file was taken as all defaults on SIGHUP.
    #[test]
    fn an_empty_or_comment_only_file_is_refused_on_reload() {
        let dir = std::env::temp_dir().join(format!("weir-reload-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("empty.toml");
        for text in ["", "\n  \n", "# only a comment\n"] {
            std::fs::write(&path, text).unwrap();
            let err = load_file(&path).unwrap_err().to_string();
            assert!(err.contains("sets no key"), "{err}");
        }
        std::fs::write(&path, "max_queue_depth = 9\n").unwrap();
        assert_eq!(load_file(&path).unwrap().max_queue_depth, 9);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    // Issue #12: a reload that widens access needs the file's explicit consent.
    #[test]
    fn a_reload_that_widens_access_is_refused_unless_the_file_says_so() {
        let old = Config {
            listen: "10.0.0.1:7400".parse().unwrap(),
            allow_anonymous: Some(false),
            users: vec![user("alice", &["orders"]), user("bob", &[])],
            tls_cert: Some("c.pem".into()),
            tls_key: Some("k.pem".into()),
            ..base()
        };
        let cases: Vec<(Config, &str)> = vec![
            (
                Config {
                    allow_anonymous: Some(true),
                    ..old.clone()
                },
                "anonymous HELLOs allowed",
            ),
            (
                Config {
                    users: vec![user("alice", &["orders"])],
                    ..old.clone()
                },
                "user \"bob\" removed",
            ),
            (
                Config {
                    users: vec![user("alice", &[]), user("bob", &[])],
                    ..old.clone()
                },
                "publish \"orders\" removed",
            ),
            (
                Config {
                    tls_cert: None,
                    tls_key: None,
                    ..old.clone()
                },
                "TLS dropped",
            ),
        ];
        for (new, what) in cases {
            let err = plan(&old, new.clone()).unwrap_err().to_string();
            assert!(err.contains(what), "{err}");
            let plan = plan(
                &old,
                Config {
                    reload_widens_access: true,
                    ..new
                },
            )
            .unwrap();
            assert!(
                plan.widened.iter().any(|w| w.contains(what)),
                "{:?}",
                plan.widened
            );
        }
        let narrower = Config {
            users: vec![
                user("alice", &["orders", "more"]),
                user("bob", &[]),
                user("carol", &[]),
            ],
            ..old.clone()
        };
        assert!(plan(&old, narrower).unwrap().widened.is_empty());
    }

    #[test]
    fn nothing_changed_is_an_empty_plan() {
        let plan = plan(&base(), base()).unwrap();
        assert!(plan.changed.is_empty() && plan.needs_restart.is_empty());
    }
}
