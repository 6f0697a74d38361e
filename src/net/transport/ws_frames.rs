//! The frames a WebSocket client sends (RFC 6455 §5), decoded in place: headers checked as
//! they arrive, payloads unmasked straight into the caller's buffer.
//!
//! The layer treats a client's binary messages as one byte stream (protocol.md §WebSocket), so
//! fragmentation needs no reassembly: each data frame's payload is passed on as it arrives.
//! Nothing is allocated per frame or per message; the size limit is checked from each frame
//! header, against the whole message, before any of its payload is taken. Control frames
//! (at most 125 bytes, never fragmented) are read whole into a small array.
//!
//! This replaced tungstenite's reader on this path: under callgrind its frame machinery, the
//! zeroing of its read buffer and two extra copies were about a quarter of the server's
//! instructions per 64-byte message over WebSocket.

/// Close codes this layer sends (RFC 6455 §7.4.1).
pub(crate) mod close_code {
    /// The Weir-level end: the ERROR or GOODBYE before it says why.
    pub(crate) const NORMAL: u16 = 1000;
    /// Broken WebSocket framing.
    pub(crate) const PROTOCOL: u16 = 1002;
    /// A text message.
    pub(crate) const UNSUPPORTED: u16 = 1003;
    /// A message over the size limit.
    pub(crate) const TOO_BIG: u16 = 1009;
}

const OP_CONTINUATION: u8 = 0x0;
const OP_TEXT: u8 = 0x1;
const OP_BINARY: u8 = 0x2;
const OP_CLOSE: u8 = 0x8;
const OP_PING: u8 = 0x9;
const OP_PONG: u8 = 0xA;

/// Longest control frame payload (RFC 6455 §5.5).
const MAX_CONTROL_LEN: usize = 125;

/// What decoding the input found.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Step {
    /// `n` payload bytes were written to the caller's buffer (more may follow).
    Data(usize),
    /// More input is needed.
    NeedMore,
    /// A ping: this pong frame should be sent.
    Pong(Vec<u8>),
    /// The client closed: answer with a close frame (its code, or 1000) and end the stream.
    Close(u16),
    /// A fault: close with this code, telling the core why.
    Fault(u16, &'static str),
}

/// The frame being read.
#[derive(Debug, Default)]
struct Current {
    /// Payload bytes of the current data frame still to come.
    remaining: u64,
    mask: [u8; 4],
    /// Offset into the mask of the next payload byte.
    mask_at: usize,
    /// The current frame is the last of its message.
    is_final: bool,
}

/// Decoder state of one connection.
#[derive(Debug)]
pub(crate) struct Inbound {
    /// Largest message accepted, in payload bytes (over all its fragments).
    max_message_len: u64,
    /// A data frame's payload is being passed on.
    current: Option<Current>,
    /// A fragmented message is in progress (a continuation frame is expected next).
    is_in_message: bool,
    /// Payload bytes of the message in progress so far.
    message_len: u64,
}

impl Inbound {
    pub(crate) fn new(max_message_len: usize) -> Inbound {
        Inbound {
            max_message_len: max_message_len as u64,
            current: None,
            is_in_message: false,
            message_len: 0,
        }
    }

    /// Decodes from `input`, writing data payload into `out`; returns how many input bytes
    /// were used and what was found. Call again while it returns `Data` with room left.
    pub(crate) fn step(&mut self, input: &[u8], out: &mut [u8]) -> (usize, Step) {
        if let Some(current) = &mut self.current {
            let n = (current.remaining.min(out.len() as u64) as usize).min(input.len());
            if n == 0 && current.remaining > 0 {
                return (
                    0,
                    if out.is_empty() {
                        Step::Data(0)
                    } else {
                        Step::NeedMore
                    },
                );
            }
            if let (Some(to), Some(from)) = (out.get_mut(..n), input.get(..n)) {
                unmask(to, from, current.mask, current.mask_at);
            }
            current.mask_at = (current.mask_at + n) & 3;
            current.remaining -= n as u64;
            if current.remaining == 0 {
                if current.is_final {
                    self.is_in_message = false;
                    self.message_len = 0;
                }
                self.current = None;
            }
            return (n, Step::Data(n));
        }
        let (Some(&b0), Some(&b1)) = (input.first(), input.get(1)) else {
            return (0, Step::NeedMore);
        };
        let is_final = b0 & 0x80 != 0;
        let opcode = b0 & 0x0F;
        if b0 & 0x70 != 0 {
            return (0, Step::Fault(close_code::PROTOCOL, "reserved bits set"));
        }
        if b1 & 0x80 == 0 {
            return (
                0,
                Step::Fault(close_code::PROTOCOL, "an unmasked client frame"),
            );
        }
        let (len, mut used) = match b1 & 0x7F {
            126 => match input.get(2..4) {
                Some(bytes) => (u64::from(u16::from_be_bytes([bytes[0], bytes[1]])), 4),
                None => return (0, Step::NeedMore),
            },
            127 => match input.get(2..10).and_then(|b| <[u8; 8]>::try_from(b).ok()) {
                Some(bytes) => (u64::from_be_bytes(bytes), 10),
                None => return (0, Step::NeedMore),
            },
            short => (u64::from(short), 2),
        };
        let Some(mask) = input
            .get(used..used + 4)
            .and_then(|b| <[u8; 4]>::try_from(b).ok())
        else {
            return (0, Step::NeedMore);
        };
        used += 4;
        match opcode {
            OP_TEXT => (
                0,
                Step::Fault(
                    close_code::UNSUPPORTED,
                    "a text message (Weir frames go in binary messages)",
                ),
            ),
            OP_BINARY | OP_CONTINUATION => {
                if (opcode == OP_CONTINUATION) != self.is_in_message {
                    return (
                        0,
                        Step::Fault(close_code::PROTOCOL, "a fragment out of sequence"),
                    );
                }
                self.message_len = self.message_len.saturating_add(len);
                if self.message_len > self.max_message_len {
                    return (
                        0,
                        Step::Fault(close_code::TOO_BIG, "a message over the size limit"),
                    );
                }
                self.is_in_message = !is_final;
                if len == 0 {
                    if is_final {
                        self.message_len = 0;
                    }
                    return (used, Step::Data(0));
                }
                self.current = Some(Current {
                    remaining: len,
                    mask,
                    mask_at: 0,
                    is_final,
                });
                (used, Step::Data(0))
            }
            OP_CLOSE | OP_PING | OP_PONG => {
                if !is_final || len > MAX_CONTROL_LEN as u64 {
                    return (
                        0,
                        Step::Fault(close_code::PROTOCOL, "a fragmented or long control frame"),
                    );
                }
                let len = len as usize;
                let Some(masked) = input.get(used..used + len) else {
                    return (0, Step::NeedMore);
                };
                used += len;
                let mut payload = [0u8; MAX_CONTROL_LEN];
                for (i, (to, from)) in payload.iter_mut().zip(masked).enumerate() {
                    *to = from ^ mask.get(i & 3).copied().unwrap_or(0);
                }
                let payload = payload.get(..len).unwrap_or_default();
                match opcode {
                    OP_PING => {
                        let mut pong = Vec::with_capacity(2 + len);
                        pong.push(0x80 | OP_PONG);
                        pong.push(len as u8);
                        pong.extend_from_slice(payload);
                        (used, Step::Pong(pong))
                    }
                    OP_PONG => (used, Step::Data(0)),
                    _ => {
                        let code = match payload {
                            [a, b, ..] => u16::from_be_bytes([*a, *b]),
                            _ => close_code::NORMAL,
                        };
                        (used, Step::Close(code))
                    }
                }
            }
            _ => (0, Step::Fault(close_code::PROTOCOL, "an unknown opcode")),
        }
    }
}

/// Writes `from` unmasked into `to` (same length); `at` is the offset of `from[0]` in the
/// payload. Eight bytes at a time: a byte loop was a third of the server's instructions per
/// 64-byte message under callgrind.
fn unmask(to: &mut [u8], from: &[u8], mask: [u8; 4], at: usize) {
    let rotated: [u8; 4] = std::array::from_fn(|i| mask.get((at + i) & 3).copied().unwrap_or(0));
    let half = u32::from_ne_bytes(rotated);
    let word = u64::from(half) | (u64::from(half) << 32);
    let word = if cfg!(target_endian = "little") {
        word
    } else {
        word.rotate_left(32)
    };
    let mut to_words = to.chunks_exact_mut(8);
    let mut from_words = from.chunks_exact(8);
    for (to, from) in (&mut to_words).zip(&mut from_words) {
        let bytes: [u8; 8] = from.try_into().unwrap_or_default();
        to.copy_from_slice(&(u64::from_ne_bytes(bytes) ^ word).to_ne_bytes());
    }
    let tail = to_words
        .into_remainder()
        .iter_mut()
        .zip(from_words.remainder());
    for (i, (to, from)) in tail.enumerate() {
        *to = from ^ rotated.get(i & 3).copied().unwrap_or(0);
    }
}

/// Appends a close frame with `code` (server frames are unmasked).
pub(crate) fn encode_close(code: u16, out: &mut Vec<u8>) {
    out.push(0x80 | OP_CLOSE);
    out.push(2);
    out.extend_from_slice(&code.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A masked client frame.
    fn frame(first: u8, payload: &[u8]) -> Vec<u8> {
        let mask = [0x11, 0x22, 0x33, 0x44];
        let mut out = vec![first];
        match payload.len() {
            n if n < 126 => out.push(0x80 | n as u8),
            n if n <= 0xFFFF => {
                out.push(0x80 | 126);
                out.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                out.push(0x80 | 127);
                out.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        out.extend_from_slice(&mask);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i & 3]));
        out
    }

    /// Decodes all of `input` fed in pieces of `chunk` bytes; returns the data and the
    /// non-data steps.
    fn decode(input: &[u8], chunk: usize, max: usize) -> (Vec<u8>, Vec<Step>) {
        let mut inbound = Inbound::new(max);
        let (mut data, mut steps) = (Vec::new(), Vec::new());
        let mut buffered: Vec<u8> = Vec::new();
        let mut fed = 0;
        loop {
            let mut out = [0u8; 7];
            let (used, step) = inbound.step(&buffered, &mut out);
            buffered.drain(..used);
            match step {
                Step::Data(n) => data.extend_from_slice(&out[..n]),
                Step::NeedMore => {
                    if fed >= input.len() {
                        return (data, steps);
                    }
                    let end = (fed + chunk).min(input.len());
                    buffered.extend_from_slice(&input[fed..end]);
                    fed = end;
                }
                other => {
                    let is_fault = matches!(other, Step::Fault(..));
                    steps.push(other);
                    if is_fault {
                        return (data, steps);
                    }
                }
            }
        }
    }

    #[test]
    fn binary_messages_fragments_and_pings_decode_at_any_split() {
        let mut input = frame(0x82, b"hello ");
        input.extend(frame(0x02, b"frag"));
        input.extend(frame(0x89, b"p"));
        input.extend(frame(0x80, b"mented"));
        input.extend(frame(0x82, &[7u8; 300]));
        input.extend(frame(0x88, &1000u16.to_be_bytes()));
        let mut expected = b"hello fragmented".to_vec();
        expected.extend([7u8; 300]);
        for chunk in 1..=input.len() {
            let (data, steps) = decode(&input, chunk, 1 << 20);
            assert_eq!(data, expected, "chunk {chunk}");
            assert_eq!(
                steps,
                [Step::Pong(vec![0x8A, 1, b'p']), Step::Close(1000)],
                "chunk {chunk}"
            );
        }
    }

    #[test]
    fn unmasking_eight_bytes_at_a_time_matches_byte_by_byte_at_every_offset() {
        let mask = [0xA1, 0x02, 0xF3, 0x54];
        let from: Vec<u8> = (0..=40u8).collect();
        for at in 0..4 {
            for len in 0..from.len() {
                let mut to = vec![0u8; len];
                unmask(&mut to, &from[..len], mask, at);
                let expected: Vec<u8> = from[..len]
                    .iter()
                    .enumerate()
                    .map(|(i, b)| b ^ mask[(at + i) & 3])
                    .collect();
                assert_eq!(to, expected, "offset {at}, length {len}");
            }
        }
    }

    #[test]
    fn faults_are_named_by_their_close_code() {
        let cases: [(Vec<u8>, u16); 5] = [
            (frame(0x81, b"text"), close_code::UNSUPPORTED),
            (frame(0x82, &[0u8; 101]), close_code::TOO_BIG),
            (frame(0xC2, b"rsv"), close_code::PROTOCOL),
            (frame(0x80, b"no start"), close_code::PROTOCOL),
            (frame(0x09, b"fragmented ping"), close_code::PROTOCOL),
        ];
        for (input, code) in cases {
            let (_, steps) = decode(&input, input.len(), 100);
            assert!(
                matches!(steps[..], [Step::Fault(c, _)] if c == code),
                "{steps:?}"
            );
        }
        let mut unmasked = frame(0x82, b"x");
        unmasked[1] &= 0x7F;
        let (_, steps) = decode(&unmasked, 16, 100);
        assert!(matches!(steps[..], [Step::Fault(close_code::PROTOCOL, _)]));
    }

    #[test]
    fn the_size_limit_counts_every_fragment_of_a_message_and_starts_again_after_it() {
        let mut input = frame(0x02, &[1u8; 60]);
        input.extend(frame(0x80, &[2u8; 40]));
        input.extend(frame(0x82, &[3u8; 100]));
        let (data, steps) = decode(&input, 9, 100);
        assert!(steps.is_empty(), "{steps:?}");
        assert_eq!(data.len(), 200);
        let mut over = frame(0x02, &[1u8; 60]);
        over.extend(frame(0x80, &[2u8; 41]));
        let (_, steps) = decode(&over, 9, 100);
        assert!(matches!(steps[..], [Step::Fault(close_code::TOO_BIG, _)]));
    }
}
