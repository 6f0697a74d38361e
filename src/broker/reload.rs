//! Applying a reloaded configuration to the core.
//!
//! What changes where is decided once, by [`crate::config::reload::plan`]; the core applies
//! the configuration the plan hands it. Limits, timeouts, rates, heartbeat and keep-alive
//! settings are read from the settings on use, so they change at once for every session;
//! queue declarations and users are replaced (open sessions keep what they authenticated
//! with).

use log::debug;

use super::Broker;
use crate::config::Config;

impl Broker {
    /// Applies `new` (validated, and planned by [`crate::config::reload::plan`] so that what
    /// needs a restart holds its running values). Never drops a connection.
    pub fn handle_reload(&mut self, new: Config) {
        for declared in &new.queues {
            let existed = self.routes.find(declared.name.as_bytes()).is_some();
            if let Some(owner) = self.routes.declare(declared, false) {
                self.queue_owners.remove(&owner);
            }
            if !existed {
                // A new queue: pattern subscriptions may match it (patterns.rs).
                if let Some(id) = self.routes.find(declared.name.as_bytes()) {
                    self.match_new_queue(id);
                }
            }
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
        debug!("reload applied to the core");
    }
}
