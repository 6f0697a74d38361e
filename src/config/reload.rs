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
}

/// Keys bound to sockets or read once by the loop.
const RESTART_KEYS: &[&str] = &[
    "busy_poll_us",
    "listen",
    "http_listen",
    "write_budget_bytes",
    "write_high_water_bytes",
];

/// Compares `old` (running) with `new` (validated).
///
/// # Errors
/// As [`Config::loop_settings`] for `new`.
pub fn plan(old: &Config, mut new: Config) -> Result<ReloadPlan, ConfigError> {
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

    #[test]
    fn nothing_changed_is_an_empty_plan() {
        let plan = plan(&base(), base()).unwrap();
        assert!(plan.changed.is_empty() && plan.needs_restart.is_empty());
    }
}
