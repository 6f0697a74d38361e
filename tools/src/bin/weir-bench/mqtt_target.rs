//! The MQTT 3.1.1 adapter (mosquitto): CONNECT (clean session, keep-alive off) → CONNACK,
//! SUBSCRIBE at the URL's QoS → SUBACK, PUBLISH at that QoS. At QoS 1 each PUBLISH is
//! confirmed by its PUBACK and each delivery acknowledged with one (MQTT has no cumulative
//! ack). At QoS 0 nothing is confirmed, so a publisher sends PINGREQ every `confirm_every`
//! publishes: the broker handles a connection's packets in order, so PINGRESP confirms what
//! came before it. DISCONNECT to end.

use std::collections::VecDeque;
use std::io;

use crate::target::{protocol_error, Adapter, AdapterOptions, Event};

pub(crate) struct MqttAdapter {
    client_id: Vec<u8>,
    topic: Vec<u8>,
    qos: u8,
    confirm_every: u64,
    /// Last packet id used (1..=65,535, then around again).
    packet_id: u16,
    published: u64,
    /// QoS 0: publishes covered by the last PINGREQ, and each outstanding PINGREQ's count.
    requested: u64,
    pending_pings: VecDeque<u64>,
    confirmed: u64,
}

impl MqttAdapter {
    pub(crate) fn new(name: &str, qos: u8, options: &AdapterOptions) -> Self {
        MqttAdapter {
            client_id: name.as_bytes().to_vec(),
            topic: options.topic.as_bytes().to_vec(),
            qos,
            confirm_every: options.confirm_every.max(1),
            packet_id: 0,
            published: 0,
            requested: 0,
            pending_pings: VecDeque::new(),
            confirmed: 0,
        }
    }

    fn next_packet_id(&mut self) -> u16 {
        self.packet_id = self.packet_id.checked_add(1).unwrap_or(1);
        self.packet_id
    }
}

impl Adapter for MqttAdapter {
    fn open(&mut self, out: &mut Vec<u8>, _events: &mut dyn FnMut(Event<'_>)) {
        // Variable header: protocol name, level 4 (3.1.1), flags: clean session, keep-alive 0.
        let header = b"\x00\x04MQTT\x04\x02\x00\x00";
        put_fixed_header(out, 0x10, header.len() + 2 + self.client_id.len());
        out.extend_from_slice(header);
        put_string(out, &self.client_id);
    }

    fn subscribe(&mut self, out: &mut Vec<u8>) {
        let id = self.next_packet_id();
        put_fixed_header(out, 0x82, 2 + 2 + self.topic.len() + 1);
        out.extend_from_slice(&id.to_be_bytes());
        put_string(out, &self.topic);
        out.push(self.qos);
    }

    fn publish(&mut self, payload: &[u8], out: &mut Vec<u8>) {
        let id_len = if self.qos > 0 { 2 } else { 0 };
        put_fixed_header(
            out,
            0x30 | self.qos << 1,
            2 + self.topic.len() + id_len + payload.len(),
        );
        put_string(out, &self.topic);
        if self.qos > 0 {
            let id = self.next_packet_id();
            out.extend_from_slice(&id.to_be_bytes());
        }
        out.extend_from_slice(payload);
        self.published += 1;
        if self.qos == 0 && self.published - self.requested >= self.confirm_every {
            self.request_confirm(out);
        }
    }

    fn request_confirm(&mut self, out: &mut Vec<u8>) {
        if self.qos == 0 && self.published > self.requested {
            out.extend_from_slice(&[0xC0, 0x00]);
            self.pending_pings.push_back(self.published);
            self.requested = self.published;
        }
    }

    fn confirmed(&self) -> u64 {
        self.confirmed
    }

    fn handle_input(
        &mut self,
        input: &[u8],
        out: &mut Vec<u8>,
        events: &mut dyn FnMut(Event<'_>),
    ) -> io::Result<usize> {
        let mut used = 0;
        while let Some((kind, body, len)) = parse_packet(&input[used..])? {
            used += len;
            match kind >> 4 {
                2 => match body.get(1) {
                    Some(0) => events(Event::Ready),
                    code => events(Event::Closed(format!("CONNACK refused ({code:?})"))),
                },
                3 => {
                    let qos = (kind >> 1) & 3;
                    let topic_len = body
                        .get(..2)
                        .map(|b| usize::from(u16::from_be_bytes([b[0], b[1]])))
                        .ok_or_else(|| protocol_error("MQTT PUBLISH too short"))?;
                    let mut at = 2 + topic_len;
                    if qos > 0 {
                        let id = body
                            .get(at..at + 2)
                            .ok_or_else(|| protocol_error("MQTT PUBLISH too short"))?;
                        out.extend_from_slice(&[0x40, 0x02, id[0], id[1]]);
                        at += 2;
                    }
                    let payload = body
                        .get(at..)
                        .ok_or_else(|| protocol_error("MQTT PUBLISH too short"))?;
                    events(Event::Message(payload));
                }
                4 => self.confirmed += 1,
                9 => match body.get(2) {
                    Some(0x80) | None => events(Event::Closed("SUBACK refused".into())),
                    Some(_) => events(Event::Subscribed),
                },
                13 => {
                    if let Some(count) = self.pending_pings.pop_front() {
                        self.confirmed = count;
                    }
                }
                _ => {}
            }
        }
        Ok(used)
    }

    fn end_of_input(&mut self, _out: &mut Vec<u8>) {}

    fn close(&mut self, out: &mut Vec<u8>) {
        out.extend_from_slice(&[0xE0, 0x00]);
    }
}

/// Appends the fixed header: the packet type and flags byte, then the remaining length as
/// MQTT's base-128 varint.
fn put_fixed_header(out: &mut Vec<u8>, kind: u8, mut remaining: usize) {
    out.push(kind);
    loop {
        let byte = (remaining % 128) as u8;
        remaining /= 128;
        if remaining == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

fn put_string(out: &mut Vec<u8>, bytes: &[u8]) {
    // Topics and client ids weir-bench makes are far below 65,535 bytes.
    out.extend_from_slice(&(bytes.len() as u16).to_be_bytes());
    out.extend_from_slice(bytes);
}

/// One packet from the front of `buf`: its first byte, its body and its total length;
/// `Ok(None)` when incomplete.
fn parse_packet(buf: &[u8]) -> io::Result<Option<(u8, &[u8], usize)>> {
    let Some(&kind) = buf.first() else {
        return Ok(None);
    };
    let mut remaining = 0usize;
    for (i, &byte) in buf.iter().skip(1).take(4).enumerate() {
        remaining |= usize::from(byte & 0x7F) << (7 * i);
        if byte & 0x80 == 0 {
            let start = 2 + i;
            return Ok(buf
                .get(start..start + remaining)
                .map(|body| (kind, body, start + remaining)));
        }
    }
    if buf.len() >= 5 {
        return Err(protocol_error("MQTT remaining length over 4 bytes"));
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn adapter(qos: u8) -> MqttAdapter {
        let options = AdapterOptions {
            topic: "t".into(),
            window: 0,
            is_acking: true,
            confirm_every: 2,
        };
        MqttAdapter::new("c", qos, &options)
    }

    fn feed(mqtt: &mut MqttAdapter, input: &[u8], out: &mut Vec<u8>) -> Vec<String> {
        let mut seen = Vec::new();
        let used = mqtt
            .handle_input(input, out, &mut |event| seen.push(format!("{event:?}")))
            .unwrap();
        assert_eq!(used, input.len());
        seen
    }

    #[test]
    fn the_remaining_length_is_a_base_128_varint() {
        for (len, bytes) in [
            (0, &[0x00][..]),
            (127, &[0x7F]),
            (128, &[0x80, 0x01]),
            (16_383, &[0xFF, 0x7F]),
            (2_097_152, &[0x80, 0x80, 0x80, 0x01]),
        ] {
            let mut out = Vec::new();
            put_fixed_header(&mut out, 0x30, len);
            assert_eq!(&out[1..], bytes, "{len}");
        }
        let mut packet = Vec::new();
        put_fixed_header(&mut packet, 0x30, 200);
        packet.extend(std::iter::repeat_n(7, 200));
        for cut in 0..packet.len() {
            assert!(parse_packet(&packet[..cut]).unwrap().is_none(), "cut {cut}");
        }
        let (kind, body, len) = parse_packet(&packet).unwrap().unwrap();
        assert_eq!((kind, body.len(), len), (0x30, 200, 203));
        assert!(parse_packet(&[0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x01]).is_err());
    }

    #[test]
    fn qos_1_deliveries_are_each_acknowledged_and_pubacks_confirm() {
        let mut mqtt = adapter(1);
        let mut out = Vec::new();
        mqtt.publish(b"hi", &mut out);
        assert_eq!(out, b"\x32\x07\x00\x01t\x00\x01hi");
        let mut out = Vec::new();
        let input =
            b"\x20\x02\x00\x00\x90\x03\x00\x01\x01\x32\x07\x00\x01t\x12\x34hi\x40\x02\x00\x01";
        let seen = feed(&mut mqtt, input, &mut out);
        assert_eq!(seen, ["Ready", "Subscribed", "Message([104, 105])"]);
        assert_eq!(
            out, b"\x40\x02\x12\x34",
            "PUBACK with the delivery's packet id"
        );
        assert_eq!(mqtt.confirmed(), 1);
    }

    #[test]
    fn qos_0_publishes_are_confirmed_by_pingresp_in_order() {
        let mut mqtt = adapter(0);
        let mut out = Vec::new();
        for _ in 0..3 {
            mqtt.publish(b"x", &mut out);
        }
        mqtt.request_confirm(&mut out);
        assert_eq!(
            out,
            b"\x30\x04\x00\x01tx\x30\x04\x00\x01tx\xC0\x00\x30\x04\x00\x01tx\xC0\x00"
        );
        feed(&mut mqtt, b"\xD0\x00", &mut Vec::new());
        assert_eq!(mqtt.confirmed(), 2);
        feed(&mut mqtt, b"\xD0\x00", &mut Vec::new());
        assert_eq!(mqtt.confirmed(), 3);
    }

    #[test]
    fn refusals_close() {
        let mut mqtt = adapter(0);
        let seen = feed(
            &mut mqtt,
            b"\x20\x02\x00\x05\x90\x03\x00\x01\x80",
            &mut Vec::new(),
        );
        assert_eq!(
            seen,
            [
                r#"Closed("CONNACK refused (Some(5))")"#,
                r#"Closed("SUBACK refused")"#
            ]
        );
    }
}
