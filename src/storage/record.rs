//! One record of a segment file: the byte layout, declared once, and its checksum.
//!
//! Layout (all integers big-endian, as on the wire):
//!
//! | offset | size | field | meaning |
//! | --- | --- | --- | --- |
//! | 0 | 4 | body_len | bytes after the 28-byte header: e + k + payload |
//! | 4 | 4 | crc32c | CRC32C (Castagnoli) of bytes 0..4 and 8..28 + body_len |
//! | 8 | 1 | kind | `0x01` MESSAGE; other kinds are refused |
//! | 9 | 1 | flags | `0x01` HAS_KEY: a conflation key follows the event name |
//! | 10 | 1 | event_len | e |
//! | 11 | 1 | key_len | k (0 without HAS_KEY) |
//! | 12 | 8 | position | the message's position in its queue |
//! | 20 | 8 | unix_ms | acceptance time, ms since the Unix epoch |
//! | 28 | e | event | event name |
//! | 28 + e | k | key | conflation key |
//! | 28 + e + k | rest | payload | the message |
//!
//! A record proves itself: a torn or flipped record fails its checksum (or its length runs
//! past the file), and is never handed out.

use byteorder::{BigEndian, ByteOrder};

use crate::broker::journal::DurableMessage;

/// Bytes before the body.
pub(crate) const HEADER_LEN: usize = 28;
/// Record kind of an accepted message.
pub(crate) const KIND_MESSAGE: u8 = 0x01;
const FLAG_HAS_KEY: u8 = 0x01;
/// Largest body accepted when reading: a frame is at most 16 MiB, names 255 bytes each.
pub(crate) const MAX_BODY_LEN: usize = 16 * 1024 * 1024 + 512;

mod field {
    use std::ops::Range;
    pub(super) const BODY_LEN: Range<usize> = 0..4;
    pub(super) const CRC: Range<usize> = 4..8;
    pub(super) const KIND: usize = 8;
    pub(super) const FLAGS: usize = 9;
    pub(super) const EVENT_LEN: usize = 10;
    pub(super) const KEY_LEN: usize = 11;
    pub(super) const POSITION: Range<usize> = 12..20;
    pub(super) const UNIX_MS: Range<usize> = 20..28;
}

/// A record read back from a segment.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Record {
    pub(crate) position: u64,
    pub(crate) unix_ms: u64,
    pub(crate) message: DurableMessage,
}

/// Why the bytes at an offset are not a record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum BadRecord {
    /// The file ends inside the record (header or body): what a torn write leaves.
    Incomplete,
    /// The checksum does not match, or a field is impossible.
    Corrupt,
}

/// Appends the record of one message to `out`.
pub(crate) fn encode(position: u64, unix_ms: u64, message: &DurableMessage, out: &mut Vec<u8>) {
    let event = message.event();
    let key = message.key();
    let payload = message.payload();
    let body_len = event.len() + key.map_or(0, <[u8]>::len) + payload.len();
    let start = out.len();
    out.resize(start + HEADER_LEN, 0);
    let header = &mut out[start..];
    BigEndian::write_u32(&mut header[field::BODY_LEN], body_len as u32);
    header[field::KIND] = KIND_MESSAGE;
    header[field::FLAGS] = if key.is_some() { FLAG_HAS_KEY } else { 0 };
    header[field::EVENT_LEN] = event.len() as u8;
    header[field::KEY_LEN] = key.map_or(0, <[u8]>::len) as u8;
    BigEndian::write_u64(&mut header[field::POSITION], position);
    BigEndian::write_u64(&mut header[field::UNIX_MS], unix_ms);
    out.extend_from_slice(event);
    out.extend_from_slice(key.unwrap_or_default());
    out.extend_from_slice(payload);
    let crc = checksum(&out[start..]);
    BigEndian::write_u32(&mut out[start + 4..start + 8], crc);
}

/// Reads the record at the start of `bytes`: the record and its length in bytes.
///
/// # Errors
/// [`BadRecord::Incomplete`] if `bytes` ends inside it, [`BadRecord::Corrupt`] if it does not
/// check.
pub(crate) fn decode(bytes: &[u8]) -> Result<(Record, usize), BadRecord> {
    let header = bytes.get(..HEADER_LEN).ok_or(BadRecord::Incomplete)?;
    let body_len = BigEndian::read_u32(&header[field::BODY_LEN]) as usize;
    if body_len > MAX_BODY_LEN {
        return Err(BadRecord::Corrupt);
    }
    let record = bytes
        .get(..HEADER_LEN + body_len)
        .ok_or(BadRecord::Incomplete)?;
    if BigEndian::read_u32(&header[field::CRC]) != checksum(record) {
        return Err(BadRecord::Corrupt);
    }
    let flags = header[field::FLAGS];
    let event_len = header[field::EVENT_LEN] as usize;
    let key_len = header[field::KEY_LEN] as usize;
    if header[field::KIND] != KIND_MESSAGE
        || flags & !FLAG_HAS_KEY != 0
        || (flags & FLAG_HAS_KEY == 0 && key_len != 0)
        || event_len + key_len > body_len
    {
        return Err(BadRecord::Corrupt);
    }
    let body = &record[HEADER_LEN..];
    let event = &body[..event_len];
    let key = (flags & FLAG_HAS_KEY != 0).then(|| &body[event_len..event_len + key_len]);
    let payload = &body[event_len + key_len..];
    let record = Record {
        position: BigEndian::read_u64(&header[field::POSITION]),
        unix_ms: BigEndian::read_u64(&header[field::UNIX_MS]),
        message: DurableMessage::new(event, key, payload),
    };
    Ok((record, HEADER_LEN + body_len))
}

/// CRC32C of a whole record with its checksum field skipped.
fn checksum(record: &[u8]) -> u32 {
    let crc = crc32c::crc32c(record.get(field::BODY_LEN).unwrap_or_default());
    crc32c::crc32c_append(crc, record.get(field::CRC.end..).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<u8> {
        let mut out = Vec::new();
        let message = DurableMessage::new(b"ev", Some(b"k"), b"payload");
        encode(7, 1_700_000_000_000, &message, &mut out);
        out
    }

    #[test]
    fn a_record_reads_back_as_written() {
        let bytes = sample();
        let (record, len) = decode(&bytes).unwrap();
        assert_eq!(len, bytes.len());
        assert_eq!(record.position, 7);
        assert_eq!(record.unix_ms, 1_700_000_000_000);
        assert_eq!(record.message.event(), b"ev");
        assert_eq!(record.message.key(), Some(&b"k"[..]));
        assert_eq!(record.message.payload(), b"payload");
    }

    #[test]
    fn every_cut_of_a_record_is_incomplete() {
        let bytes = sample();
        for cut in 0..bytes.len() {
            assert_eq!(
                decode(&bytes[..cut]),
                Err(BadRecord::Incomplete),
                "cut {cut}"
            );
        }
    }

    #[test]
    fn every_single_bit_flip_is_detected() {
        let bytes = sample();
        for index in 0..bytes.len() {
            for bit in 0..8 {
                let mut flipped = bytes.clone();
                flipped[index] ^= 1 << bit;
                assert!(decode(&flipped).is_err(), "byte {index} bit {bit}");
            }
        }
    }
}
