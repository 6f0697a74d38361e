//! Applying a new configuration at run time (SIGHUP).
//!
//! Limits, timeouts, rates, heartbeat and keep-alive settings, and queue declarations change
//! at once for every session (they are read from the settings on use). Addresses and the PROXY
//! settings of listeners need sockets re-bound: a change there is reported as needing a
//! restart and the running values are kept.

use log::debug;

use super::Broker;
use crate::config::Config;

/// What a reload did, by config key.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReloadOutcome {
    /// Keys whose new values are now in force.
    pub changed: Vec<String>,
    /// Keys that changed in the file but need a restart; their running values were kept.
    pub needs_restart: Vec<String>,
}

/// Keys bound to sockets.
const RESTART_KEYS: &[&str] = &[
    "listen",
    "metrics_listen",
    "proxy_protocol",
    "trusted_proxies",
];

impl Broker {
    /// Applies `new` (already validated) where possible. Never drops a connection.
    pub fn handle_reload(&mut self, mut new: Config) -> ReloadOutcome {
        let mut outcome = ReloadOutcome::default();
        let old = &self.config;
        let old_table = toml::Value::try_from(old).ok();
        let new_table = toml::Value::try_from(&new).ok();
        let (Some(old_table), Some(new_table)) = (
            old_table.as_ref().and_then(|v| v.as_table()),
            new_table.as_ref().and_then(|v| v.as_table()),
        ) else {
            return outcome;
        };
        let mut keys: Vec<&String> = old_table.keys().chain(new_table.keys()).collect();
        keys.sort();
        keys.dedup();
        let same_sockets = old.listeners.len() == new.listeners.len()
            && old.listeners.iter().zip(&new.listeners).all(|(a, b)| {
                a.listen == b.listen
                    && a.proxy_protocol == b.proxy_protocol
                    && a.trusted_proxies == b.trusted_proxies
            });
        for key in keys {
            if old_table.get(key) == new_table.get(key) {
                continue;
            }
            let is_restart =
                RESTART_KEYS.contains(&key.as_str()) || (key == "listeners" && !same_sockets);
            if is_restart {
                outcome.needs_restart.push(key.clone());
            } else {
                outcome.changed.push(key.clone());
            }
        }
        // Keep what is bound to sockets as it runs.
        new.listen = old.listen;
        new.metrics_listen = old.metrics_listen;
        new.proxy_protocol = old.proxy_protocol;
        new.trusted_proxies = old.trusted_proxies.clone();
        if !same_sockets {
            new.listeners = old.listeners.clone();
        }
        for declared in &new.queues {
            self.routes.declare(declared);
        }
        for stale in self
            .config
            .queues
            .iter()
            .filter(|q| !new.queues.iter().any(|n| n.name == q.name))
        {
            self.routes.undeclare(&stale.name);
        }
        match new.authenticator() {
            // Sessions already open keep what they authenticated with.
            Ok(authenticator) => self.authenticator = authenticator,
            Err(error) => log::warn!("reload: authentication config refused: {error}"),
        }
        self.listeners = new.listener_settings();
        self.config = new;
        debug!("reload outcome: {outcome:?}");
        outcome
    }
}
