//! Validation: ranges and consistency of a whole configuration, checked at load and before a
//! reload is planned.

use super::*;

impl Config {
    /// Checks ranges and consistency.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] naming the key and the rule it breaks.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |msg: String| Err(ConfigError::Invalid(msg));
        // The biggest HELLO, auth block included (issue 9: 303 passed although an
        // authenticated HELLO can be 2,610 bytes), measured by the encoder.
        let max_hello = crate::protocol::codec::max_hello_len() as u32;
        if self.max_frame_len_before_hello < max_hello {
            return invalid(format!(
                "max_frame_len_before_hello must be at least {max_hello} (the largest HELLO)"
            ));
        }
        if self.max_frame_len < self.max_frame_len_before_hello {
            return invalid("max_frame_len must be >= max_frame_len_before_hello".into());
        }
        if self.max_frame_len as usize > 64 * 1024 * 1024 {
            return invalid("max_frame_len must be at most 64 MiB".into());
        }
        for (key, value) in [
            ("max_connections", self.max_connections as u64),
            ("handshake_timeout_ms", self.handshake_timeout_ms),
            ("read_budget_bytes", self.read_budget_bytes as u64),
            ("write_budget_bytes", self.write_budget_bytes as u64),
            ("write_high_water_bytes", self.write_high_water_bytes as u64),
            ("in_flight_window", u64::from(self.in_flight_window)),
            ("max_queue_depth", u64::from(self.max_queue_depth)),
            ("max_queue_bytes", self.max_queue_bytes),
            ("heartbeat_interval_ms", self.heartbeat_interval_ms),
            ("heartbeat_timeout_ms", self.heartbeat_timeout_ms),
            ("max_queues", self.max_queues as u64),
            ("max_subscriptions", self.max_subscriptions as u64),
            ("max_name_len", self.max_name_len as u64),
            ("max_sessions", self.max_sessions as u64),
            ("segment_bytes", self.segment_bytes),
            (
                "max_sessions_per_identity",
                self.max_sessions_per_identity as u64,
            ),
            (
                "max_sessions_per_address",
                self.max_sessions_per_address as u64,
            ),
            (
                "max_queues_per_identity",
                self.max_queues_per_identity as u64,
            ),
            ("max_queues_per_address", self.max_queues_per_address as u64),
            (
                "max_password_checks_per_second",
                u64::from(self.max_password_checks_per_second),
            ),
        ] {
            if value == 0 {
                return invalid(format!("{key} must be greater than 0"));
            }
        }
        if self.busy_poll_us > 10_000 {
            return invalid("busy_poll_us must be at most 10000 (10 ms)".into());
        }
        if self.max_write_buffer_bytes < self.write_high_water_bytes + self.max_frame_len as usize {
            return invalid(
                "max_write_buffer_bytes must be >= write_high_water_bytes + max_frame_len".into(),
            );
        }
        if self.heartbeat_timeout_ms <= self.heartbeat_interval_ms {
            return invalid(
                "heartbeat_timeout_ms must be greater than heartbeat_interval_ms".into(),
            );
        }
        let mut addresses = HashSet::new();
        for (index, listener) in self.listener_settings().iter().enumerate() {
            let at = format!("listeners[{index}] ({})", listener.listen);
            // Port 0 asks the OS for any free port, so it can appear more than once.
            if listener.listen.port() != 0 && !addresses.insert(listener.listen) {
                return invalid(format!("{at}: address listed twice"));
            }
            if listener.max_frame_len < self.max_frame_len_before_hello
                || listener.max_frame_len as usize > 64 * 1024 * 1024
            {
                return invalid(format!(
                    "{at}: max_frame_len must be between max_frame_len_before_hello and 64 MiB"
                ));
            }
            if self.max_write_buffer_bytes
                < self.write_high_water_bytes + listener.max_frame_len as usize
            {
                return invalid(format!(
                    "{at}: max_write_buffer_bytes must be >= write_high_water_bytes + \
                     max_frame_len"
                ));
            }
            if listener.heartbeat_interval.is_zero()
                || listener.heartbeat_timeout <= listener.heartbeat_interval
            {
                return invalid(format!(
                    "{at}: heartbeat_timeout_ms must be greater than heartbeat_interval_ms > 0"
                ));
            }
            if listener.in_flight_window == 0
                || listener.max_queue_depth == 0
                || listener.max_queue_bytes == 0
            {
                return invalid(format!(
                    "{at}: in_flight_window, max_queue_depth and max_queue_bytes must be > 0"
                ));
            }
        }
        self.authenticator().map_err(ConfigError::Invalid)?;
        let can_authenticate = !self.users.is_empty() || self.token_signing_key.is_some();
        if let Some(listener) = self
            .listener_settings()
            .iter()
            .find(|l| !l.allow_anonymous && !can_authenticate)
        {
            return invalid(format!(
                "listener {} does not allow anonymous sessions (the default on a non-loopback \
                 address) but no [[users]] or token_signing_key is configured: nobody could \
                 connect; add users or set allow_anonymous = true",
                listener.listen
            ));
        }
        if self.max_name_len > MAX_NAME_LEN {
            return invalid(format!("max_name_len must be at most {MAX_NAME_LEN}"));
        }
        // Both parse (PROXY in front of TLS is a supported stack: the header comes in clear,
        // then the handshake).
        self.proxy_policies()?;
        self.tls_paths()?;
        if self.queues.len() > self.max_queues {
            return invalid("more [[queues]] declared than max_queues".into());
        }
        let mut names = HashSet::new();
        for queue in &self.queues {
            if queue.name.is_empty() || queue.name.len() > MAX_NAME_LEN {
                return invalid(format!(
                    "queue name {:?} must be 1 to {MAX_NAME_LEN} bytes",
                    queue.name
                ));
            }
            if !names.insert(queue.name.as_str()) {
                return invalid(format!("queue {:?} is declared twice", queue.name));
            }
            if queue.ack_deadline_ms == 0 || !(1..=1_000).contains(&queue.max_deliveries) {
                return invalid(format!(
                    "queue {:?}: ack_deadline_ms must be > 0 and max_deliveries 1 to 1000",
                    queue.name
                ));
            }
            if let Some(dead_letter_queue) = &queue.dead_letter_queue {
                if dead_letter_queue.is_empty()
                    || dead_letter_queue.len() > MAX_NAME_LEN
                    || *dead_letter_queue == queue.name
                {
                    return invalid(format!(
                        "queue {:?}: dead_letter_queue must be 1 to {MAX_NAME_LEN} bytes and \
                         another queue",
                        queue.name
                    ));
                }
            }
            if queue.max_payload_len == Some(0) {
                return invalid(format!(
                    "queue {:?}: max_payload_len must be > 0",
                    queue.name
                ));
            }
            if queue.durable && self.data_dir.is_none() {
                return invalid(format!(
                    "queue {:?} is durable but no data_dir is configured",
                    queue.name
                ));
            }
            let is_durable_key = queue.fsync.is_some()
                || queue.fsync_interval_ms.is_some()
                || queue.max_messages.is_some()
                || queue.max_bytes.is_some();
            if is_durable_key && !queue.durable {
                return invalid(format!(
                    "queue {:?}: fsync, fsync_interval_ms, max_messages and max_bytes need \
                     durable = true",
                    queue.name
                ));
            }
            if queue.fsync.as_deref().is_some_and(|f| f != "always") {
                return invalid(format!(
                    "queue {:?}: fsync must be \"always\" (or use fsync_interval_ms)",
                    queue.name
                ));
            }
            if queue.fsync.is_some() && queue.fsync_interval_ms.is_some() {
                return invalid(format!(
                    "queue {:?}: fsync = \"always\" and fsync_interval_ms exclude each other",
                    queue.name
                ));
            }
            if queue.fsync_interval_ms == Some(0)
                || queue.max_messages == Some(0)
                || queue.max_bytes == Some(0)
            {
                return invalid(format!(
                    "queue {:?}: fsync_interval_ms, max_messages and max_bytes must be > 0",
                    queue.name
                ));
            }
        }
        Ok(())
    }
}
