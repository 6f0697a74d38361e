//! Model test: random operation sequences against a reference model of every session.
//!
//! The model keeps, per session, its subscriptions, pending messages (with the conflation
//! rule), in-flight deliveries and window, and says exactly what each connection must receive
//! at every flush: RECEIPT, DELIVERs in acceptance order without duplicates, GOODBYE on
//! overflow or heartbeat timeout. After every step the broker's stats must agree with it on
//! depths, and the store must hold exactly the messages some live session still references.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Duration;

use proptest::prelude::*;

use super::harness::{test_config, Delivery, Harness, Received, CONFLATING_QUEUE};
use crate::broker::{CloseReason, ConnId};
use crate::config::Config;
use crate::protocol::{ErrorCode, Frame, Hello};

const CLIENTS: usize = 3;
const QUEUES: [&str; 3] = ["a", "b", CONFLATING_QUEUE];
/// Events a message may carry; subscriptions name only the non-empty ones.
const EVENTS: [&str; 3] = ["x", "y", ""];
const KEYS: [&str; 2] = ["", "k"];
const MAX_PAYLOAD_LEN: usize = 12;

fn model_config() -> Config {
    Config {
        handshake_timeout_ms: 500,
        heartbeat_interval_ms: 1_000,
        heartbeat_timeout_ms: 3_000,
        inflight_window: 3,
        max_queue_depth: 6,
        max_queue_bytes: 40,
        max_subscriptions: 16,
        ..test_config()
    }
}

#[derive(Clone, Debug)]
enum Op {
    Publish {
        client: usize,
        queue: usize,
        event: usize,
        key: Option<usize>,
        len: usize,
    },
    /// Resends the client's last accepted publish seq.
    RepeatPublish {
        client: usize,
    },
    Subscribe {
        client: usize,
        queue: usize,
        event: Option<usize>,
    },
    Unsubscribe {
        client: usize,
        queue: usize,
        event: Option<usize>,
    },
    /// `up_to` and `seqs` are percentages of the last delivery seq sent, so always valid.
    Ack {
        client: usize,
        up_to: u64,
        seqs: Vec<u64>,
    },
    Transmit,
    Disconnect {
        client: usize,
    },
    Reconnect {
        client: usize,
        window: u32,
    },
    Advance {
        ms: u64,
    },
}

fn op() -> impl Strategy<Value = Op> {
    let client = 0..CLIENTS;
    let queue = 0..QUEUES.len();
    let sub_event = proptest::option::of(0..2usize);
    let key = proptest::option::of(0..KEYS.len());
    let publish = (
        client.clone(),
        queue.clone(),
        0..EVENTS.len(),
        key,
        0..=MAX_PAYLOAD_LEN,
    )
        .prop_map(|(client, queue, event, key, len)| Op::Publish {
            client,
            queue,
            event,
            key,
            len,
        });
    let subscribe =
        (client.clone(), queue.clone(), sub_event.clone()).prop_map(|(client, queue, event)| {
            Op::Subscribe {
                client,
                queue,
                event,
            }
        });
    let unsubscribe =
        (client.clone(), queue, sub_event).prop_map(|(client, queue, event)| Op::Unsubscribe {
            client,
            queue,
            event,
        });
    let ack = (
        client.clone(),
        0..=100u64,
        proptest::collection::vec(0..=100u64, 0..3),
    )
        .prop_map(|(client, up_to, seqs)| Op::Ack {
            client,
            up_to,
            seqs,
        });
    prop_oneof![
        10 => publish,
        1 => client.clone().prop_map(|client| Op::RepeatPublish { client }),
        5 => subscribe,
        1 => unsubscribe,
        3 => ack,
        5 => Just(Op::Transmit),
        1 => client.clone().prop_map(|client| Op::Disconnect { client }),
        1 => (client, 0..=4u32).prop_map(|(client, window)| Op::Reconnect { client, window }),
        2 => (0..1_500u64).prop_map(|ms| Op::Advance { ms }),
    ]
}

#[derive(Clone, Debug)]
struct Message {
    id: u64,
    queue: usize,
    event: usize,
    /// (queue, event, key) when the message conflates.
    identity: Option<(usize, usize, &'static str)>,
    len: usize,
}

impl Message {
    fn payload(&self) -> Vec<u8> {
        vec![self.id as u8; self.len]
    }

    fn delivery(&self, seq: u64) -> Delivery {
        Delivery {
            redelivered: false,
            seq,
            message_id: self.id,
            queue: QUEUES[self.queue].to_owned(),
            event: EVENTS[self.event].to_owned(),
            payload: self.payload(),
        }
    }
}

#[derive(Debug)]
struct Session {
    id: u64,
    window: usize,
    subscriptions: BTreeSet<(usize, Option<usize>)>,
    pending: VecDeque<Message>,
    in_flight: BTreeMap<u64, Message>,
    last_sent_seq: u64,
    last_publish_seq: u64,
    is_receipt_due: bool,
    /// Time of the last frame the broker accepted from this client.
    last_recv: Duration,
    conflated: u64,
}

impl Session {
    fn is_routed(&self, message: &Message) -> bool {
        self.subscriptions.contains(&(message.queue, None))
            || (message.event < 2
                && self
                    .subscriptions
                    .contains(&(message.queue, Some(message.event))))
    }

    fn depth(&self) -> usize {
        self.pending.len() + self.in_flight.len()
    }

    fn bytes(&self) -> usize {
        self.pending
            .iter()
            .chain(self.in_flight.values())
            .map(|m| m.len)
            .sum()
    }

    /// Queues `message` under the conflation rule; false if the session overflows instead.
    fn enqueue(&mut self, message: Message, config: &Config) -> bool {
        let replaced = message.identity.and_then(|identity| {
            self.pending
                .iter()
                .position(|old| old.identity == Some(identity))
        });
        let (removed_depth, removed_bytes) = replaced.map_or((0, 0), |i| (1, self.pending[i].len));
        let depth = self.depth() - removed_depth + 1;
        let bytes = self.bytes() - removed_bytes + message.len;
        if depth > config.max_queue_depth as usize || bytes as u64 > config.max_queue_bytes {
            return false;
        }
        if let Some(index) = replaced {
            self.pending.remove(index);
            self.conflated += 1;
        }
        self.pending.push_back(message);
        true
    }
}

#[derive(Debug)]
enum Client {
    Offline,
    /// HELLO sent, WELCOME not yet read.
    Welcoming(u32),
    Live(Box<Session>),
    /// The broker decided to end the session with this GOODBYE code.
    Closing(ErrorCode),
}

struct Model {
    config: Config,
    clients: Vec<Client>,
    next_message_id: u64,
}

fn conn(client: usize) -> ConnId {
    ConnId(client + 1)
}

impl Model {
    fn live(&mut self, client: usize) -> Option<&mut Session> {
        match &mut self.clients[client] {
            Client::Live(session) => Some(session),
            _ => None,
        }
    }
}

fn run(windows: &[u32], ops: &[Op]) {
    let config = model_config();
    let mut h = Harness::with_config(config.clone());
    let mut m = Model {
        config,
        clients: (0..CLIENTS).map(|_| Client::Offline).collect(),
        next_message_id: 1,
    };
    for (client, &window) in windows.iter().enumerate() {
        apply(&mut h, &mut m, &Op::Reconnect { client, window });
    }
    for op in ops {
        apply(&mut h, &mut m, op);
        check_invariants(&h, &m);
    }
    for client in 0..CLIENTS {
        apply(&mut h, &mut m, &Op::Disconnect { client });
    }
    h.drive();
    let server = h.stats().server;
    assert_eq!((server.sessions, server.connections), (0, 0));
    h.assert_store_is_empty();
}

fn apply(h: &mut Harness, m: &mut Model, op: &Op) {
    let now = h.elapsed();
    match *op {
        Op::Publish {
            client,
            queue,
            event,
            key,
            len,
        } => {
            let Some(session) = m.live(client) else {
                if matches!(m.clients[client], Client::Closing(_)) {
                    // Same loop turn as the close: the broker must ignore it.
                    h.publish_with_seq(conn(client), 1, QUEUES[queue], "x", None, b"late");
                }
                return;
            };
            session.last_publish_seq += 1;
            session.is_receipt_due = true;
            session.last_recv = now;
            let seq = session.last_publish_seq;
            let identity =
                (queue == 2 || key.is_some()).then(|| (queue, event, KEYS[key.unwrap_or(0)]));
            let message = Message {
                id: m.next_message_id,
                queue,
                event,
                identity,
                len,
            };
            m.next_message_id += 1;
            let key_bytes = key.map(|k| KEYS[k].as_bytes());
            let payload = message.payload();
            h.publish_with_seq(
                conn(client),
                seq,
                QUEUES[queue],
                EVENTS[event],
                key_bytes,
                &payload,
            );
            for target in &mut m.clients {
                if let Client::Live(session) = target {
                    if session.is_routed(&message) && !session.enqueue(message.clone(), &m.config) {
                        *target = Client::Closing(ErrorCode::QueueOverflow);
                    }
                }
            }
        }
        Op::RepeatPublish { client } => {
            let Some(session) = m.live(client) else {
                return;
            };
            if session.last_publish_seq == 0 {
                return;
            }
            session.is_receipt_due = true;
            session.last_recv = now;
            let seq = session.last_publish_seq;
            h.publish_with_seq(conn(client), seq, "a", "x", None, b"again");
        }
        Op::Subscribe {
            client,
            queue,
            event,
        }
        | Op::Unsubscribe {
            client,
            queue,
            event,
        } => {
            let Some(session) = m.live(client) else {
                return;
            };
            session.last_recv = now;
            let name = event.map(|e| EVENTS[e]);
            if matches!(op, Op::Subscribe { .. }) {
                session.subscriptions.insert((queue, event));
                h.subscribe(conn(client), QUEUES[queue], name);
            } else {
                session.subscriptions.remove(&(queue, event));
                h.unsubscribe(conn(client), QUEUES[queue], name);
            }
        }
        Op::Ack {
            client,
            up_to,
            ref seqs,
        } => {
            let Some(session) = m.live(client) else {
                return;
            };
            session.last_recv = now;
            let last = session.last_sent_seq;
            let up_to = last * up_to / 100;
            let seqs: Vec<u64> = if last == 0 {
                Vec::new()
            } else {
                seqs.iter().map(|p| 1 + (last - 1) * p / 100).collect()
            };
            session
                .in_flight
                .retain(|&seq, _| seq > up_to && !seqs.contains(&seq));
            h.ack(conn(client), up_to, &seqs);
        }
        Op::Transmit => transmit(h, m),
        Op::Disconnect { client } => {
            if !matches!(m.clients[client], Client::Offline) {
                h.disconnect(conn(client), CloseReason::PeerClosed);
                m.clients[client] = Client::Offline;
            }
        }
        Op::Reconnect { client, window } => {
            if !matches!(m.clients[client], Client::Offline) {
                return;
            }
            h.connect(conn(client));
            let hello = Hello {
                inflight_window: window,
                client_name: b"model",
                resume: None,
            };
            h.send(conn(client), &Frame::Hello(hello));
            m.clients[client] = Client::Welcoming(window);
            // HELLO and its WELCOME are one loop turn; the flush covers every connection.
            transmit(h, m);
        }
        Op::Advance { ms } => {
            h.advance(Duration::from_millis(ms));
            let now = h.elapsed();
            let timeout = m.config.heartbeat_timeout();
            for client in &mut m.clients {
                if let Client::Live(session) = client {
                    if now >= session.last_recv + timeout {
                        *client = Client::Closing(ErrorCode::HeartbeatTimeout);
                    }
                }
            }
        }
    }
}

/// One flush and close pass: each connection gets exactly what the model says.
fn transmit(h: &mut Harness, m: &mut Model) {
    h.drive();
    let now = h.elapsed();
    for client in 0..CLIENTS {
        let mut frames: Vec<Received> = h
            .frames(conn(client))
            .into_iter()
            .filter(|f| {
                !matches!(
                    f,
                    Received::Subscribed(_) | Received::Unsubscribed(_) | Received::Ping(_)
                )
            })
            .collect();
        let mut expected = Vec::new();
        match &mut m.clients[client] {
            Client::Offline => {}
            Client::Welcoming(window) => {
                let Some(Received::Welcome(welcome)) = frames.first().cloned() else {
                    panic!("client {client}: expected WELCOME first, got {frames:?}");
                };
                frames.remove(0);
                let server_window = m.config.inflight_window;
                let window = match *window {
                    0 => server_window,
                    w => w.min(server_window),
                };
                assert_eq!(welcome.inflight_window, window);
                m.clients[client] = Client::Live(Box::new(Session {
                    id: welcome.session_id,
                    window: window as usize,
                    subscriptions: BTreeSet::new(),
                    pending: VecDeque::new(),
                    in_flight: BTreeMap::new(),
                    last_sent_seq: 0,
                    last_publish_seq: 0,
                    is_receipt_due: false,
                    last_recv: now,
                    conflated: 0,
                }));
            }
            Client::Live(session) => {
                if session.is_receipt_due {
                    expected.push(Received::Receipt(session.last_publish_seq));
                    session.is_receipt_due = false;
                }
                // The window bounds the span from the oldest unacked seq to the newest sent.
                while session
                    .in_flight
                    .keys()
                    .next()
                    .map_or(0, |&lowest| (session.last_sent_seq + 1 - lowest) as usize)
                    < session.window
                {
                    let Some(message) = session.pending.pop_front() else {
                        break;
                    };
                    session.last_sent_seq += 1;
                    let seq = session.last_sent_seq;
                    expected.push(Received::Deliver(message.delivery(seq)));
                    session.in_flight.insert(seq, message);
                }
            }
            Client::Closing(code) => {
                let code = *code;
                expected.push(Received::Goodbye(code));
                expected.push(Received::Closed(CloseReason::Goodbye(code)));
                m.clients[client] = Client::Offline;
            }
        }
        assert_eq!(frames, expected, "client {client} at {now:?}");
    }
}

fn check_invariants(h: &Harness, m: &Model) {
    let stats = h.stats();
    let sessions: BTreeMap<u64, _> = stats.sessions.iter().map(|s| (s.session_id, s)).collect();
    let mut referenced = BTreeMap::new();
    let mut live = 0u64;
    for (client, state) in m.clients.iter().enumerate() {
        let Client::Live(session) = state else {
            continue;
        };
        live += 1;
        let actual = sessions
            .get(&session.id)
            .unwrap_or_else(|| panic!("client {client}: session {} is gone", session.id));
        let expected = (
            session.depth() as u64,
            session.bytes() as u64,
            session.in_flight.len() as u64,
            session.pending.len() as u64,
            session.last_sent_seq,
            session.conflated,
        );
        let got = (
            actual.queue_depth,
            actual.queue_bytes,
            actual.in_flight,
            actual.pending,
            actual.last_delivery_seq,
            actual.conflated,
        );
        assert_eq!(
            got, expected,
            "client {client}: depth, bytes, in flight, pending, seq"
        );
        for message in session.pending.iter().chain(session.in_flight.values()) {
            referenced.insert(message.id, message.len as u64);
        }
    }
    assert_eq!(stats.server.sessions, live);
    assert_eq!(stats.server.messages_published, m.next_message_id - 1);
    for (index, name) in QUEUES.iter().enumerate() {
        let subscribers = m
            .clients
            .iter()
            .filter(|c| match c {
                Client::Live(session) => session.subscriptions.iter().any(|s| s.0 == index),
                _ => false,
            })
            .count() as u64;
        let queue = stats.queues.iter().find(|q| q.name == *name);
        assert_eq!(
            queue.map_or(0, |q| q.subscribers),
            subscribers,
            "queue {name}"
        );
    }
    assert_eq!(
        (stats.server.stored_messages, stats.server.stored_bytes),
        (referenced.len() as u64, referenced.values().sum::<u64>()),
        "the store holds exactly the messages live sessions reference"
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    // TODO(issue 3): the model does not know the write-stall rule or reconnection yet.
    #[ignore]
    #[test]
    fn random_operations_match_the_model(
        windows in proptest::collection::vec(0..=4u32, CLIENTS),
        ops in proptest::collection::vec(op(), 1..120),
    ) {
        run(&windows, &ops);
    }
}

#[test]
fn the_model_sees_conflation_overflow_and_timeouts() {
    use Op::*;
    let ops = [
        Subscribe {
            client: 1,
            queue: 2,
            event: None,
        },
        Subscribe {
            client: 2,
            queue: 0,
            event: Some(0),
        },
        Subscribe {
            client: 2,
            queue: 0,
            event: None,
        },
        Transmit,
        Publish {
            client: 0,
            queue: 2,
            event: 0,
            key: None,
            len: 3,
        },
        Publish {
            client: 0,
            queue: 2,
            event: 0,
            key: Some(0),
            len: 4,
        },
        Publish {
            client: 0,
            queue: 0,
            event: 0,
            key: Some(1),
            len: 5,
        },
        Publish {
            client: 0,
            queue: 0,
            event: 0,
            key: Some(1),
            len: 6,
        },
        Transmit,
        Ack {
            client: 1,
            up_to: 100,
            seqs: vec![],
        },
        Advance { ms: 1_400 },
        Transmit,
        Advance { ms: 1_400 },
        Advance { ms: 1_400 },
        Transmit,
    ];
    run(&[1, 1, 0], &ops);
}
