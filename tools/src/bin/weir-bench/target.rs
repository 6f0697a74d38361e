//! Targets (brokers named by URL) and the [`Adapter`] every protocol implements.
//!
//! An adapter is sans-IO (quinn-proto style): it appends the bytes to send to a buffer the
//! caller owns and decodes the bytes the caller read, reporting [`Event`]s. It never touches a
//! socket or a clock. The socket side, identical for every target, is [`crate::link::Link`],
//! and the loop that drives many links is [`crate::worker`]. So a figure for Redis and one for
//! Weir come from the same buffers, the same syscalls and the same threads; only the bytes
//! differ.
//!
//! A new target is a [`Kind`] variant, its URL scheme, and one module implementing
//! [`Adapter`].

use std::fmt;
use std::io;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use weir::protocol::AuthMethod;

use crate::mqtt_target::MqttAdapter;
use crate::nats_target::NatsAdapter;
use crate::redis_target::RedisAdapter;
use crate::weir_target::WeirAdapter;
use crate::ws_target::WsFraming;

/// A broker to measure: `SCHEME://HOST:PORT[?key=value&...]`.
///
/// Query keys: `qos=0|1` (MQTT only), `pid=N`: the server's process id, so that its CPU time
/// and memory can be read from `/proc` when it runs on this machine.
///
/// Weir only: `user=NAME&password=PW`, `token=T` or `signed_token=T` send those credentials
/// in HELLO (values taken literally, no %-decoding); `weirs://HOST:PORT?ca=PATH[&name=N]`
/// speaks TLS, trusting the CA certificates in the PEM file PATH and checking the server's
/// certificate for name N (default: HOST).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Target {
    pub(crate) kind: Kind,
    /// `HOST:PORT`.
    pub(crate) address: String,
    /// The server's process id, for `/proc/PID/{stat,status}`.
    pub(crate) pid: Option<u32>,
    /// Weir: credentials for HELLO.
    pub(crate) auth: Option<Credentials>,
    /// Weir: TLS (`weirs://`, `wss://`).
    pub(crate) tls: Option<Tls>,
    /// Over WebSocket (`ws://`, `wss://`, `nats-ws://`).
    pub(crate) is_websocket: bool,
}

/// Credentials a Weir connection sends in HELLO.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Credentials {
    pub(crate) method: AuthMethod,
    /// The user name (password method only).
    pub(crate) user: String,
    pub(crate) secret: String,
}

/// A `weirs://` target's TLS settings, with the client configuration built once from them.
#[derive(Clone)]
pub(crate) struct Tls {
    pub(crate) ca: PathBuf,
    pub(crate) name: String,
    config: Arc<rustls::ClientConfig>,
}

impl Tls {
    fn new(ca: PathBuf, name: String) -> Result<Tls, String> {
        let mut roots = rustls::RootCertStore::empty();
        let certs =
            CertificateDer::pem_file_iter(&ca).map_err(|e| format!("{}: {e}", ca.display()))?;
        for cert in certs {
            let cert = cert.map_err(|e| format!("{}: {e}", ca.display()))?;
            roots
                .add(cert)
                .map_err(|e| format!("{}: {e}", ca.display()))?;
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_root_certificates(roots)
            .with_no_client_auth();
        ServerName::try_from(name.clone()).map_err(|e| format!("name={name}: {e}"))?;
        Ok(Tls {
            ca,
            name,
            config: Arc::new(config),
        })
    }

    /// A new client session (the handshake starts with the first flush).
    pub(crate) fn connection(&self) -> io::Result<rustls::ClientConnection> {
        let name = ServerName::try_from(self.name.clone())
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        rustls::ClientConnection::new(Arc::clone(&self.config), name)
            .map_err(|e| io::Error::other(e.to_string()))
    }
}

impl PartialEq for Tls {
    fn eq(&self, other: &Tls) -> bool {
        (&self.ca, &self.name) == (&other.ca, &other.name)
    }
}

impl Eq for Tls {}

impl fmt::Debug for Tls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tls")
            .field("ca", &self.ca)
            .field("name", &self.name)
            .finish()
    }
}

/// Which protocol a target speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    /// `mqtt://`: MQTT 3.1.1 publish/subscribe at QoS 0 or 1.
    Mqtt { qos: u8 },
    /// `nats://`: the NATS core protocol (no JetStream).
    Nats,
    /// `redis://`: Redis pub/sub over RESP2.
    Redis,
    /// `weir://`.
    Weir,
}

impl FromStr for Target {
    type Err = String;

    fn from_str(url: &str) -> Result<Target, String> {
        let (scheme, rest) = url
            .split_once("://")
            .ok_or_else(|| format!("{url}: expected SCHEME://HOST:PORT"))?;
        let (address, query) = rest.split_once('?').unwrap_or((rest, ""));
        let address = address.trim_end_matches('/');
        match address.rsplit_once(':') {
            Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => {}
            _ => return Err(format!("{url}: the address needs a host and a port")),
        }
        let mut kind = match scheme {
            "mqtt" => Kind::Mqtt { qos: 0 },
            "nats" | "nats-ws" => Kind::Nats,
            "redis" => Kind::Redis,
            "weir" | "weirs" | "ws" | "wss" => Kind::Weir,
            _ => {
                return Err(format!(
                    "{url}: unknown scheme (weir://, weirs://, ws://, wss://, redis://, nats://, \
                     nats-ws:// or mqtt://)"
                ))
            }
        };
        let is_tls = scheme == "weirs" || scheme == "wss";
        let mut pid = None;
        let (mut user, mut password, mut token, mut ca, mut name) = (None, None, None, None, None);
        for pair in query.split('&').filter(|pair| !pair.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            match (key, &mut kind) {
                ("pid", _) => {
                    pid = Some(
                        value
                            .parse()
                            .map_err(|_| format!("{url}: pid must be a number"))?,
                    )
                }
                ("qos", Kind::Mqtt { qos }) => {
                    *qos = match value {
                        "0" => 0,
                        "1" => 1,
                        _ => return Err(format!("{url}: qos must be 0 or 1")),
                    }
                }
                ("user", Kind::Weir) => user = Some(value.to_owned()),
                ("password", Kind::Weir) => password = Some(value.to_owned()),
                ("token", Kind::Weir) => token = Some((AuthMethod::Token, value.to_owned())),
                ("signed_token", Kind::Weir) => {
                    token = Some((AuthMethod::SignedToken, value.to_owned()))
                }
                ("ca", Kind::Weir) if is_tls => ca = Some(PathBuf::from(value)),
                ("name", Kind::Weir) if is_tls => name = Some(value.to_owned()),
                _ => return Err(format!("{url}: unknown query key {key:?}")),
            }
        }
        let auth = match (user, password, token) {
            (None, None, None) => None,
            (Some(user), Some(secret), None) => Some(Credentials {
                method: AuthMethod::Password,
                user,
                secret,
            }),
            (None, None, Some((method, secret))) => Some(Credentials {
                method,
                user: String::new(),
                secret,
            }),
            _ => {
                return Err(format!(
                    "{url}: credentials are user= with password=, or one token="
                ))
            }
        };
        let tls = if is_tls {
            let ca = ca.ok_or_else(|| format!("{url}: {scheme}:// needs ca=PATH"))?;
            let host = address.rsplit_once(':').map_or("", |(host, _)| host);
            let name = name.unwrap_or_else(|| host.trim_matches(['[', ']']).to_owned());
            Some(Tls::new(ca, name).map_err(|e| format!("{url}: {e}"))?)
        } else {
            None
        };
        Ok(Target {
            kind,
            address: address.to_owned(),
            pid,
            auth,
            tls,
            is_websocket: matches!(scheme, "ws" | "wss" | "nats-ws"),
        })
    }
}

/// Shows the target without its `pid` (a name for tables, stable across runs).
impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            Kind::Mqtt { qos } => write!(f, "mqtt://{}?qos={qos}", self.address),
            Kind::Nats if self.is_websocket => write!(f, "nats-ws://{}", self.address),
            Kind::Nats => write!(f, "nats://{}", self.address),
            Kind::Redis => write!(f, "redis://{}", self.address),
            Kind::Weir => {
                let scheme = match (self.tls.is_some(), self.is_websocket) {
                    (false, false) => "weir",
                    (true, false) => "weirs",
                    (false, true) => "ws",
                    (true, true) => "wss",
                };
                write!(f, "{scheme}://{}", self.address)?;
                match &self.auth {
                    None => Ok(()),
                    Some(auth) if auth.method == AuthMethod::Password => {
                        write!(f, "?user={}", auth.user)
                    }
                    Some(_) => write!(f, "?token"),
                }
            }
        }
    }
}

impl Target {
    /// The kind of target, for tables that span restarts (ports change): `weir`, `redis`,
    /// `nats`, `mqtt-qos0`, `mqtt-qos1`.
    pub(crate) fn label(&self) -> &'static str {
        match self.kind {
            Kind::Mqtt { qos: 0 } => "mqtt-qos0",
            Kind::Mqtt { .. } => "mqtt-qos1",
            Kind::Nats if self.is_websocket => "nats-ws",
            Kind::Nats => "nats",
            Kind::Redis => "redis",
            Kind::Weir if self.is_websocket => "weir-ws",
            Kind::Weir => "weir",
        }
    }

    /// Whether subscribers acknowledge deliveries on this target: Weir always (unless
    /// `--no-acks`), MQTT at QoS 1; Redis and NATS core have no acks.
    pub(crate) fn has_acks(&self, options: &AdapterOptions) -> bool {
        match self.kind {
            Kind::Weir => options.is_acking,
            Kind::Mqtt { qos } => qos > 0,
            Kind::Nats | Kind::Redis => false,
        }
    }

    /// A fresh adapter for one connection. `name` must be unique among the connections of a
    /// run (MQTT client ids must be).
    pub(crate) fn adapter(&self, name: &str, options: &AdapterOptions) -> Box<dyn Adapter> {
        let adapter = self.bare_adapter(name, options);
        if !self.is_websocket {
            return adapter;
        }
        let subprotocol = (self.kind == Kind::Weir).then_some("weir.v1");
        // Masking keys from the connection's name: distinct per connection, repeatable.
        let seed = name.bytes().fold(0x811c_9dc5u32, |h, b| {
            (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
        });
        Box::new(WsFraming::new(adapter, &self.address, subprotocol, seed))
    }

    fn bare_adapter(&self, name: &str, options: &AdapterOptions) -> Box<dyn Adapter> {
        match self.kind {
            Kind::Mqtt { qos } => Box::new(MqttAdapter::new(name, qos, options)),
            Kind::Nats => Box::new(NatsAdapter::new(name, options)),
            Kind::Redis => Box::new(RedisAdapter::new(options)),
            Kind::Weir => Box::new(WeirAdapter::new(
                name,
                options,
                self.auth.clone(),
                self.tls.clone(),
            )),
        }
    }

    /// Most publishes the protocol lets a publisher have unconfirmed (MQTT packet ids are
    /// 16 bits); `None` for no limit of its own.
    pub(crate) fn max_unconfirmed(&self) -> Option<u64> {
        match self.kind {
            Kind::Mqtt { qos: 1.. } => Some(MQTT_MAX_PACKET_IDS),
            _ => None,
        }
    }
}

/// What every adapter needs, whatever the scenario.
#[derive(Clone, Debug)]
pub(crate) struct AdapterOptions {
    /// Queue (Weir), channel (Redis), subject (NATS) or topic (MQTT).
    pub(crate) topic: String,
    /// Weir: in-flight window to ask for in HELLO (0 = the server's default).
    pub(crate) window: u32,
    /// Weir: whether subscribers ACK.
    pub(crate) is_acking: bool,
    /// NATS and MQTT QoS 0 have no per-message confirmation: a publisher asks for one (PING,
    /// PINGREQ; answered in order after everything before it) every this many publishes.
    pub(crate) confirm_every: u64,
}

/// What an adapter reports from the bytes it decoded.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Event<'a> {
    /// The handshake is complete: the connection may publish or subscribe.
    Ready,
    /// The broker confirmed the subscription.
    Subscribed,
    /// A delivered message's payload.
    Message(&'a [u8]),
    /// The broker ended the session, with the reason it gave.
    Closed(String),
}

/// One protocol, sans-IO: bytes out are appended to `out`, bytes in are decoded from `input`.
pub(crate) trait Adapter: Send {
    /// Appends what opens the session (HELLO, CONNECT, ...); [`Event::Ready`] follows. Redis
    /// has no handshake and reports `Ready` from here.
    fn open(&mut self, out: &mut Vec<u8>, events: &mut dyn FnMut(Event<'_>));
    /// Appends a subscription to the topic; [`Event::Subscribed`] follows.
    fn subscribe(&mut self, out: &mut Vec<u8>);
    /// Appends one publish of `payload` to the topic.
    fn publish(&mut self, payload: &[u8], out: &mut Vec<u8>);
    /// For protocols without per-message confirmation, asks for one covering every publish so
    /// far (if any is uncovered). A no-op for the others.
    fn request_confirm(&mut self, out: &mut Vec<u8>);
    /// Publishes the broker has confirmed so far (Weir RECEIPT, Redis reply, MQTT PUBACK, or
    /// everything before an answered PING).
    fn confirmed(&self) -> u64;
    /// Decodes the complete messages at the front of `input`, reporting each; appends any
    /// reply the protocol needs (PONG, PUBACK) to `out`. Returns the bytes consumed; an
    /// incomplete message is left for the next call.
    ///
    /// # Errors
    /// Bytes that do not parse (`InvalidData`).
    fn handle_input(
        &mut self,
        input: &[u8],
        out: &mut Vec<u8>,
        events: &mut dyn FnMut(Event<'_>),
    ) -> io::Result<usize>;
    /// Called after each batch of input: appends a batched acknowledgement if one is due.
    fn end_of_input(&mut self, out: &mut Vec<u8>);
    /// Appends what ends the session politely (BYE, UNSUBSCRIBE + QUIT, DISCONNECT).
    fn close(&mut self, out: &mut Vec<u8>);
    /// A TLS session for the link to run the bytes through (`weirs://`), once.
    ///
    /// # Errors
    /// The session could not be created.
    fn take_tls(&mut self) -> io::Result<Option<rustls::ClientConnection>> {
        Ok(None)
    }
}

pub(crate) fn protocol_error(text: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, text.into())
}

/// MQTT packet ids are 1..=65,535; a publisher keeps fewer than that unacknowledged.
const MQTT_MAX_PACKET_IDS: u64 = 65_000;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_urls_round_trip_without_their_pid() {
        for url in [
            "weir://127.0.0.1:7400",
            "redis://localhost:6379",
            "nats://127.0.0.1:4222",
            "mqtt://127.0.0.1:1883?qos=0",
            "mqtt://127.0.0.1:1883?qos=1",
            "ws://127.0.0.1:7480",
            "nats-ws://127.0.0.1:8080",
        ] {
            assert_eq!(url.parse::<Target>().unwrap().to_string(), url);
        }
        let target: Target = "weir://127.0.0.1:7400/?pid=42".parse().unwrap();
        assert_eq!(target.pid, Some(42));
        assert_eq!(target.to_string(), "weir://127.0.0.1:7400");
        let mqtt: Target = "mqtt://h:1883?pid=7&qos=1".parse().unwrap();
        assert_eq!((mqtt.kind, mqtt.pid), (Kind::Mqtt { qos: 1 }, Some(7)));
        assert_eq!(
            "mqtt://h:1883".parse::<Target>().unwrap().kind,
            Kind::Mqtt { qos: 0 }
        );
    }

    #[test]
    fn bad_target_urls_are_refused_with_the_reason() {
        for (bad, reason) in [
            ("127.0.0.1:7400", "SCHEME"),
            ("amqp://127.0.0.1:5672", "unknown scheme"),
            ("weir://localhost", "port"),
            ("weir://:7400", "host"),
            ("weir://h:70000", "port"),
            ("mqtt://h:1883?qos=2", "qos"),
            ("weir://h:1?qos=1", "unknown query key"),
            ("weir://h:1?pid=x", "pid"),
            ("weir://h:1?user=u", "credentials"),
            ("weir://h:1?user=u&password=p&token=t", "credentials"),
            ("weirs://h:1", "ca=PATH"),
            ("wss://h:1", "ca=PATH"),
            ("weir://h:1?ca=x", "unknown query key"),
            ("redis://h:1?user=u", "unknown query key"),
        ] {
            let error = bad.parse::<Target>().unwrap_err();
            assert!(error.contains(reason), "{bad}: {error}");
        }
    }

    #[test]
    fn weir_credentials_go_to_hello_and_show_without_their_secret() {
        let target: Target = "weir://h:1?user=bench&password=pw&pid=3".parse().unwrap();
        let auth = target.auth.clone().unwrap();
        assert_eq!(auth.method, AuthMethod::Password);
        assert_eq!((auth.user.as_str(), auth.secret.as_str()), ("bench", "pw"));
        assert_eq!(target.to_string(), "weir://h:1?user=bench");
        let token: Target = "weir://h:1?token=abc".parse().unwrap();
        assert_eq!(token.auth.unwrap().method, AuthMethod::Token);
    }

    #[test]
    fn only_weir_and_mqtt_qos_1_acknowledge() {
        let options = AdapterOptions {
            topic: "t".into(),
            window: 0,
            is_acking: true,
            confirm_every: 1,
        };
        let acks = |url: &str| url.parse::<Target>().unwrap().has_acks(&options);
        assert!(acks("weir://h:1"));
        assert!(acks("mqtt://h:1?qos=1"));
        assert!(!acks("mqtt://h:1?qos=0"));
        assert!(!acks("nats://h:1"));
        assert!(!acks("redis://h:1"));
    }
}
