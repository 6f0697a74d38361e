//! What reaches the loop from outside its sockets: commands from [`crate::ServerHandle`]
//! (through the waker), signals, and reloads, applied as the plan of
//! [`crate::config::reload::plan`] says.

use log::{error, info, warn};

use super::event_loop::EventLoop;
use crate::config::reload;
use crate::control::Command;

impl EventLoop {
    pub(super) fn drain_commands(&mut self) {
        while let Ok(command) = self.commands.try_recv() {
            match command {
                Command::Stats(reply) => {
                    let _ = reply.send(self.broker.stats());
                }
                Command::Reload => self.reload(),
                Command::Shutdown => self.begin_shutdown(),
            }
        }
    }

    pub(super) fn drain_signals(&mut self) {
        let (mut is_shutdown, mut is_reload) = (false, false);
        if let Some(signals) = &mut self.signals {
            for signal in signals.pending() {
                if signal == signal_hook::consts::SIGHUP {
                    is_reload = true;
                } else {
                    info!("signal {signal}: shutting down");
                    is_shutdown = true;
                }
            }
        }
        if is_reload && !is_shutdown {
            self.reload();
        }
        if is_shutdown {
            self.begin_shutdown();
        }
    }

    /// Loads a new configuration, plans it against the running one, and applies the plan:
    /// the core's part to the broker, listener stacks to new connections. Keeps the running
    /// configuration on any error; logs what needs a restart as such, never as applied.
    fn reload(&mut self) {
        let Some((load, running)) = &self.reload else {
            warn!("reload requested but this server has no config source to reload");
            return;
        };
        crate::notify::notify("RELOADING=1");
        let plan = match load().and_then(|config| reload::plan(running, config)) {
            Ok(plan) => plan,
            Err(e) => {
                error!("reload failed, keeping the running configuration: {e}");
                crate::notify::notify("READY=1");
                return;
            }
        };
        for widening in &plan.widened {
            warn!("reload widens access (reload_widens_access = true): {widening}");
        }
        let mut changed = plan.changed.clone();
        let mut failed = Vec::new();
        for (index, stack) in plan.loop_settings.listeners.iter().enumerate() {
            let Some(Some(listener)) = self.listeners.get_mut(index) else {
                continue;
            };
            if !listener.reload(stack) {
                failed.push(stack.listen.to_string());
            }
        }
        if !failed.is_empty() {
            // The TLS keys did not take effect on those listeners: do not call them applied.
            changed.retain(|key| !key.starts_with("tls_") && key != "listeners");
        }
        self.broker.handle_reload(plan.config.clone());
        self.settings.listeners = plan.loop_settings.listeners;
        if let Some((_, running)) = &mut self.reload {
            *running = plan.config;
        }
        if changed.is_empty() {
            info!("reload: nothing changed");
        } else {
            info!("reload: applied {}", changed.join(", "));
        }
        if !failed.is_empty() {
            error!(
                "reload: TLS files of {} did not load; those listeners keep their running TLS setup",
                failed.join(", ")
            );
        }
        if !plan.needs_restart.is_empty() {
            let (keys, verb) = (
                plan.needs_restart.join(", "),
                if plan.needs_restart.len() == 1 {
                    "takes"
                } else {
                    "take"
                },
            );
            warn!("reload: {keys} changed but {verb} effect only after a restart; running values kept");
        }
        crate::notify::notify("READY=1");
    }
}
