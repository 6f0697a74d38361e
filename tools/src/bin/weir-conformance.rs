//! Conformance driver for the Rust client (`weir::client::ReconnectingClient`).
//!
//! Reads one JSON command per line on stdin and writes one JSON answer per line on stdout,
//! as `clients/conformance/README.md` describes; the suite in `clients/conformance/` runs the
//! same scenarios through this driver and through the Python and TypeScript ones. Nothing
//! else is written to stdout (diagnostics go to stderr).

use std::collections::VecDeque;
use std::io::{self, BufRead, Write};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{json, Map, Value};
use weir::client::{
    Client, ClientError, ClientOptions, Credentials, Delivery, Event, ReconnectOptions,
    ReconnectingClient, TlsOptions,
};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// What the driver keeps between commands.
#[derive(Default)]
struct Driver {
    client: Option<ReconnectingClient>,
    /// For `stats`: ReconnectingClient has no STATS call, so a plain `Client` with the same
    /// address, credentials and TLS asks on a connection of its own.
    addr: String,
    options: ClientOptions,
    tls: Option<TlsOptions>,
    /// Deliveries taken from the client while `events` waited, handed out first by `recv`.
    pending: VecDeque<Delivery>,
    /// LOST and RESUMED seen and not yet reported by `events`.
    events: Vec<Value>,
}

/// A failed command: `code` is the protocol error code name when there is one.
struct Failure {
    code: Option<String>,
    message: String,
}

impl From<ClientError> for Failure {
    fn from(e: ClientError) -> Failure {
        let code = match &e {
            ClientError::Server { code, .. } | ClientError::Goodbye { code, .. } => {
                code.ok().map(|c| c.name().to_owned())
            }
            ClientError::Timeout => Some(String::from("TIMEOUT")),
            _ => None,
        };
        Failure {
            code,
            message: e.to_string(),
        }
    }
}

fn fail(message: impl Into<String>) -> Failure {
    Failure {
        code: None,
        message: message.into(),
    }
}

type Answer = Result<Map<String, Value>, Failure>;

fn str_arg<'a>(cmd: &'a Value, key: &str) -> Option<&'a str> {
    cmd.get(key).and_then(Value::as_str)
}

fn u64_arg(cmd: &Value, key: &str, default: u64) -> u64 {
    cmd.get(key).and_then(Value::as_u64).unwrap_or(default)
}

/// The payload of a `publish`: `payload` (text) or `payload_b64`.
fn payload_arg(cmd: &Value) -> Result<Vec<u8>, Failure> {
    if let Some(b64) = str_arg(cmd, "payload_b64") {
        return B64
            .decode(b64)
            .map_err(|e| fail(format!("payload_b64: {e}")));
    }
    Ok(str_arg(cmd, "payload").unwrap_or("").as_bytes().to_vec())
}

fn delivery_json(d: &Delivery) -> Value {
    json!({
        "queue": String::from_utf8_lossy(&d.queue),
        "event": String::from_utf8_lossy(&d.event),
        "payload": String::from_utf8_lossy(&d.payload),
        "payload_b64": B64.encode(&d.payload),
        "seq": d.seq,
        "redelivered": d.redelivered,
    })
}

fn event_json(event: &Event) -> Option<Value> {
    match event {
        Event::Lost { reason, missed, .. } => Some(json!({
            "type": "lost",
            "reason": reason.map(|r| r.name()),
            "missed": missed,
        })),
        Event::Resumed { .. } => Some(json!({"type": "resumed"})),
        _ => None,
    }
}

impl Driver {
    fn client(&mut self) -> Result<&mut ReconnectingClient, Failure> {
        self.client.as_mut().ok_or_else(|| fail("not connected"))
    }

    /// The next delivery, waiting until `deadline`; LOST and RESUMED on the way are recorded.
    fn next_delivery(&mut self, deadline: Instant) -> Result<Option<Delivery>, Failure> {
        if let Some(d) = self.pending.pop_front() {
            return Ok(Some(d));
        }
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let client = self.client()?;
            match client.recv_timeout(left)? {
                Some(Event::Deliver(d)) => return Ok(Some(d)),
                Some(other) => {
                    if let Some(v) = event_json(&other) {
                        self.events.push(v);
                    }
                }
                None => return Ok(None),
            }
            if Instant::now() >= deadline {
                return Ok(None);
            }
        }
    }

    fn run(&mut self, cmd: &Value) -> Answer {
        let name = str_arg(cmd, "cmd").unwrap_or("");
        let mut out = Map::new();
        match name {
            "hello" => {
                out.insert("client".into(), json!("rust"));
                out.insert(
                    "features".into(),
                    json!(["tcp", "tls", "password", "token"]),
                );
            }
            "connect" => {
                if str_arg(cmd, "url").is_some() {
                    return Err(fail("the Rust client has no WebSocket transport"));
                }
                let host = str_arg(cmd, "host").unwrap_or("127.0.0.1");
                let port = u64_arg(cmd, "port", 7400);
                self.addr = format!("{host}:{port}");
                let auth = match (str_arg(cmd, "user"), str_arg(cmd, "password")) {
                    (Some(u), Some(p)) => Some(Credentials::password(u, p)),
                    _ => str_arg(cmd, "token").map(Credentials::token),
                };
                self.options = ClientOptions {
                    name: str_arg(cmd, "name").unwrap_or("conformance").to_owned(),
                    auth,
                    ..ClientOptions::default()
                };
                self.tls = str_arg(cmd, "tls_ca")
                    .map(|ca| TlsOptions::ca_file(str_arg(cmd, "tls_name").unwrap_or(host), ca));
                let reconnect = ReconnectOptions {
                    initial_backoff: Duration::from_millis(u64_arg(cmd, "reconnect_delay_ms", 20)),
                    max_backoff: Duration::from_millis(u64_arg(cmd, "reconnect_max_delay_ms", 200)),
                    ..ReconnectOptions::default()
                };
                let client = match &self.tls {
                    Some(tls) => {
                        ReconnectingClient::connect_tls(&*self.addr, &self.options, tls, &reconnect)
                    }
                    None => ReconnectingClient::connect(&*self.addr, &self.options, &reconnect),
                }?;
                out.insert(
                    "session_id".into(),
                    json!(format!("{:x}", client.session_id())),
                );
                self.client = Some(client);
                self.pending.clear();
                self.events.clear();
            }
            "subscribe" => {
                let queue = str_arg(cmd, "queue").unwrap_or("").to_owned();
                let client = self.client()?;
                match cmd.get("events").and_then(Value::as_array) {
                    None => client.subscribe_all(&queue)?,
                    Some(events) => {
                        for event in events {
                            client.subscribe(&queue, event.as_str().unwrap_or(""))?;
                        }
                    }
                }
            }
            "publish" => {
                let payload = payload_arg(cmd)?;
                let queue = str_arg(cmd, "queue").unwrap_or("");
                let event = str_arg(cmd, "event").unwrap_or("");
                let client = self.client.as_mut().ok_or_else(|| fail("not connected"))?;
                let seq = client.publish(queue, event, payload)?;
                client.wait_receipted()?;
                out.insert("seq".into(), json!(seq));
            }
            "publish_many" => {
                let queue = str_arg(cmd, "queue").unwrap_or("");
                let event = str_arg(cmd, "event").unwrap_or("");
                let prefix = str_arg(cmd, "prefix").unwrap_or("");
                let n = u64_arg(cmd, "n", 0);
                let client = self.client.as_mut().ok_or_else(|| fail("not connected"))?;
                for i in 0..n {
                    client.publish(queue, event, format!("{prefix}{i}"))?;
                }
                client.wait_receipted()?;
                out.insert("count".into(), json!(n));
            }
            "recv" => {
                let deadline =
                    Instant::now() + Duration::from_millis(u64_arg(cmd, "timeout_ms", 5000));
                match self.next_delivery(deadline)? {
                    Some(d) => {
                        out.insert("delivery".into(), delivery_json(&d));
                    }
                    None => {
                        out.insert("timeout".into(), json!(true));
                    }
                }
                self.client()?.flush()?;
            }
            "recv_many" => {
                let n = u64_arg(cmd, "n", 0);
                let idle = Duration::from_millis(u64_arg(cmd, "timeout_ms", 10_000));
                let prefix = str_arg(cmd, "prefix").map(str::to_owned);
                let collect = cmd.get("collect").and_then(Value::as_bool).unwrap_or(false);
                let mut received = 0u64;
                let mut redelivered = 0u64;
                let mut first_bad = Value::Null;
                let mut payloads = Vec::new();
                let mut timed_out = false;
                while received < n {
                    let Some(d) = self.next_delivery(Instant::now() + idle)? else {
                        timed_out = true;
                        break;
                    };
                    if let Some(prefix) = &prefix {
                        if first_bad.is_null()
                            && d.payload != format!("{prefix}{received}").as_bytes()
                        {
                            first_bad = json!({
                                "index": received,
                                "payload": String::from_utf8_lossy(&d.payload),
                            });
                        }
                    }
                    if d.redelivered {
                        redelivered += 1;
                    }
                    if collect {
                        payloads.push(Value::from(
                            String::from_utf8_lossy(&d.payload).into_owned(),
                        ));
                    }
                    received += 1;
                }
                self.client()?.flush()?;
                out.insert("received".into(), json!(received));
                out.insert("timed_out".into(), json!(timed_out));
                out.insert("redelivered".into(), json!(redelivered));
                if prefix.is_some() {
                    out.insert("in_order".into(), json!(first_bad.is_null()));
                    out.insert("first_bad".into(), first_bad);
                }
                if collect {
                    out.insert("payloads".into(), Value::Array(payloads));
                }
            }
            "events" => {
                let deadline = Instant::now() + Duration::from_millis(u64_arg(cmd, "wait_ms", 0));
                // Reading is what makes this client notice a lost connection and resume.
                loop {
                    let left = deadline.saturating_duration_since(Instant::now());
                    let step = left.min(Duration::from_millis(50));
                    let client = self.client()?;
                    match client.recv_timeout(step)? {
                        Some(Event::Deliver(d)) => self.pending.push_back(d),
                        Some(other) => {
                            if let Some(v) = event_json(&other) {
                                self.events.push(v);
                            }
                        }
                        None => {}
                    }
                    if !self.events.is_empty() || Instant::now() >= deadline {
                        break;
                    }
                }
                out.insert(
                    "events".into(),
                    Value::Array(std::mem::take(&mut self.events)),
                );
            }
            "stats" => {
                let client = match &self.tls {
                    Some(tls) => Client::connect_tls(&*self.addr, &self.options, tls),
                    None => Client::connect(&*self.addr, &self.options),
                };
                let mut client = client?;
                let text = client.stats()?;
                client.bye()?;
                let stats: Value =
                    serde_json::from_str(&text).map_err(|e| fail(format!("STATS_REPLY: {e}")))?;
                out.insert("stats".into(), stats);
            }
            "close" => {
                if let Some(client) = self.client.take() {
                    client.bye()?;
                }
            }
            other => return Err(fail(format!("unknown command {other:?}"))),
        }
        Ok(out)
    }
}

fn main() {
    let stdin = io::stdin();
    let mut stdout = io::stdout().lock();
    let mut driver = Driver::default();
    for line in stdin.lock().lines() {
        let Ok(line) = line else { break };
        if line.trim().is_empty() {
            continue;
        }
        let answer = match serde_json::from_str::<Value>(&line) {
            Ok(cmd) => driver.run(&cmd),
            Err(e) => Err(fail(format!("bad JSON: {e}"))),
        };
        let value = match answer {
            Ok(mut map) => {
                map.insert("ok".into(), json!(true));
                Value::Object(map)
            }
            Err(f) => json!({"ok": false, "error": {"code": f.code, "message": f.message}}),
        };
        if writeln!(stdout, "{value}")
            .and_then(|()| stdout.flush())
            .is_err()
        {
            break;
        }
    }
}
