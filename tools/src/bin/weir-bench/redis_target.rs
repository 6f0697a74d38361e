//! The Redis adapter: pub/sub over RESP2. A subscriber sends SUBSCRIBE and reads `message`
//! pushes; a publisher pipelines PUBLISH commands, each confirmed by its integer reply. Redis
//! pub/sub has no acks and no handshake (the connection is ready once open).

use std::io::{self, Write};

use crate::target::{protocol_error, Adapter, AdapterOptions, Event};

pub(crate) struct RedisAdapter {
    channel: Vec<u8>,
    /// PUBLISH replies received.
    replies: u64,
}

impl RedisAdapter {
    pub(crate) fn new(options: &AdapterOptions) -> Self {
        RedisAdapter {
            channel: options.topic.as_bytes().to_vec(),
            replies: 0,
        }
    }
}

impl Adapter for RedisAdapter {
    fn open(&mut self, _out: &mut Vec<u8>, events: &mut dyn FnMut(Event<'_>)) {
        events(Event::Ready);
    }

    fn subscribe(&mut self, out: &mut Vec<u8>) {
        resp_command(out, &[b"SUBSCRIBE", &self.channel]);
    }

    fn publish(&mut self, payload: &[u8], out: &mut Vec<u8>) {
        resp_command(out, &[b"PUBLISH", &self.channel, payload]);
    }

    fn request_confirm(&mut self, _out: &mut Vec<u8>) {}

    fn confirmed(&self) -> u64 {
        self.replies
    }

    fn handle_input(
        &mut self,
        input: &[u8],
        _out: &mut Vec<u8>,
        events: &mut dyn FnMut(Event<'_>),
    ) -> io::Result<usize> {
        let mut used = 0;
        while let Some((reply, len)) = resp_parse(&input[used..])? {
            used += len;
            match reply {
                Resp::Array(3, [kind, _channel, payload, _]) if kind == b"message" => {
                    events(Event::Message(payload));
                }
                Resp::Array(3, [kind, ..]) if kind == b"subscribe" => events(Event::Subscribed),
                Resp::Integer(_) => self.replies += 1,
                Resp::Error(text) => {
                    events(Event::Closed(String::from_utf8_lossy(text).into_owned()));
                }
                _ => {}
            }
        }
        Ok(used)
    }

    fn end_of_input(&mut self, _out: &mut Vec<u8>) {}

    fn close(&mut self, out: &mut Vec<u8>) {
        resp_command(out, &[b"QUIT"]);
    }
}

/// One RESP value, borrowed from the read buffer. Arrays hold up to 4 scalar elements (every
/// pub/sub reply fits).
#[derive(Debug)]
enum Resp<'a> {
    Array(usize, [&'a [u8]; 4]),
    Bulk(Option<&'a [u8]>),
    Error(&'a [u8]),
    /// Kept as its text; checked to be a number.
    Integer(&'a [u8]),
    Simple(&'a [u8]),
}

/// Appends a command as a RESP array of bulk strings.
fn resp_command(out: &mut Vec<u8>, parts: &[&[u8]]) {
    // Writing to a Vec cannot fail.
    let _ = write!(out, "*{}\r\n", parts.len());
    for part in parts {
        let _ = write!(out, "${}\r\n", part.len());
        out.extend_from_slice(part);
        out.extend_from_slice(b"\r\n");
    }
}

/// Parses one value from the front of `buf`; `Ok(None)` when it is incomplete.
fn resp_parse(buf: &[u8]) -> io::Result<Option<(Resp<'_>, usize)>> {
    if buf.first() != Some(&b'*') {
        return resp_scalar(buf, 0);
    }
    let Some((line, mut at)) = resp_line(buf, 1)? else {
        return Ok(None);
    };
    let len = resp_int(line)?;
    let len = usize::try_from(len)
        .ok()
        .filter(|&n| n <= 4)
        .ok_or_else(|| protocol_error(format!("unexpected RESP array of {len}")))?;
    let mut items: [&[u8]; 4] = [b""; 4];
    for item in items.iter_mut().take(len) {
        let Some((value, next)) = resp_scalar(buf, at)? else {
            return Ok(None);
        };
        *item = match value {
            Resp::Bulk(bytes) => bytes.unwrap_or_default(),
            Resp::Simple(text) | Resp::Error(text) | Resp::Integer(text) => text,
            Resp::Array(..) => return Err(protocol_error("nested RESP array")),
        };
        at = next;
    }
    Ok(Some((Resp::Array(len, items), at)))
}

fn resp_scalar(buf: &[u8], at: usize) -> io::Result<Option<(Resp<'_>, usize)>> {
    let Some(&kind) = buf.get(at) else {
        return Ok(None);
    };
    let Some((line, next)) = resp_line(buf, at + 1)? else {
        return Ok(None);
    };
    let value = match kind {
        b'+' => Resp::Simple(line),
        b'-' => Resp::Error(line),
        b':' => {
            resp_int(line)?;
            Resp::Integer(line)
        }
        b'$' => {
            let Ok(len) = usize::try_from(resp_int(line)?) else {
                return Ok(Some((Resp::Bulk(None), next)));
            };
            let Some(bytes) = buf.get(next..next + len + 2) else {
                return Ok(None);
            };
            return Ok(Some((Resp::Bulk(Some(&bytes[..len])), next + len + 2)));
        }
        _ => {
            return Err(protocol_error(format!(
                "unexpected RESP type byte {kind:#04x}"
            )))
        }
    };
    Ok(Some((value, next)))
}

/// The line starting at `at` without its CRLF, and the offset after it.
fn resp_line(buf: &[u8], at: usize) -> io::Result<Option<(&[u8], usize)>> {
    let rest = buf.get(at..).unwrap_or_default();
    let Some(newline) = rest.iter().position(|&b| b == b'\n') else {
        return Ok(None);
    };
    match rest[..newline].strip_suffix(b"\r") {
        Some(line) => Ok(Some((line, at + newline + 1))),
        None => Err(protocol_error("RESP line without CR")),
    }
}

fn resp_int(text: &[u8]) -> io::Result<i64> {
    std::str::from_utf8(text)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| protocol_error("bad RESP integer"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pubsub_message_parses_once_complete() {
        let wire = b"*3\r\n$7\r\nmessage\r\n$5\r\nbench\r\n$4\r\nab\r\n\r\n:1\r\n";
        let message_len = wire.len() - b":1\r\n".len();
        for cut in 0..message_len {
            assert!(resp_parse(&wire[..cut]).unwrap().is_none(), "cut at {cut}");
        }
        let (value, used) = resp_parse(wire).unwrap().unwrap();
        assert_eq!(used, message_len);
        assert!(matches!(
            value,
            Resp::Array(3, [b"message", b"bench", b"ab\r\n", _])
        ));
        let (value, used) = resp_parse(&wire[used..]).unwrap().unwrap();
        assert!(matches!(value, Resp::Integer(b"1")));
        assert_eq!(used, 4);
    }

    #[test]
    fn the_subscribe_reply_keeps_its_integer_as_text() {
        let (value, _) = resp_parse(b"*3\r\n$9\r\nsubscribe\r\n$1\r\nq\r\n:1\r\n")
            .unwrap()
            .unwrap();
        assert!(matches!(
            value,
            Resp::Array(3, [b"subscribe", b"q", b"1", _])
        ));
    }

    #[test]
    fn errors_and_malformed_input_are_told_apart() {
        let (value, _) = resp_parse(b"-ERR wrong\r\n").unwrap().unwrap();
        assert!(matches!(value, Resp::Error(b"ERR wrong")));
        assert!(resp_parse(b"?what\r\n").is_err());
        assert!(resp_parse(b":12x\r\n").is_err());
    }

    #[test]
    fn replies_confirm_publishes_and_pushes_are_messages() {
        let options = AdapterOptions {
            topic: "ch".into(),
            window: 0,
            is_acking: true,
            confirm_every: 1,
        };
        let mut redis = RedisAdapter::new(&options);
        let input = b":1\r\n:0\r\n*3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$2\r\nhi\r\n*3\r\n$7\r\nmess";
        let mut seen = Vec::new();
        let used = redis
            .handle_input(input, &mut Vec::new(), &mut |event| {
                seen.push(format!("{event:?}"))
            })
            .unwrap();
        assert_eq!(used, input.len() - b"*3\r\n$7\r\nmess".len());
        assert_eq!(redis.confirmed(), 2);
        assert_eq!(seen, ["Message([104, 105])"]);
    }

    #[test]
    fn commands_are_arrays_of_bulk_strings() {
        let mut out = Vec::new();
        resp_command(&mut out, &[b"PUBLISH", b"ch", b"\x00\x01"]);
        assert_eq!(
            out,
            b"*3\r\n$7\r\nPUBLISH\r\n$2\r\nch\r\n$2\r\n\x00\x01\r\n"
        );
    }
}
