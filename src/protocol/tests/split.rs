//! Split reads (nats `split_test` style): a stream of frames cut anywhere decodes to the same
//! frames; a cut frame is `Ok(None)`, never an error.

use std::collections::BTreeSet;

use proptest::prelude::*;

use super::support::{any_frame, decode_all, encoded, one_of_each_op, op_of, Owned};
use crate::protocol::codec::decode;
use crate::protocol::frame::Frame;
use crate::protocol::header::Op;
use crate::protocol::MAX_FRAME_LEN;

#[test]
fn a_stream_cut_at_every_byte_decodes_to_the_same_frames() {
    let frames = one_of_each_op();
    let ends: Vec<usize> = frames
        .iter()
        .scan(0, |end, f| {
            *end += f.encoded().len();
            Some(*end)
        })
        .collect();
    let stream: Vec<u8> = frames.iter().flat_map(Owned::encoded).collect();
    let expected: Vec<Frame<'_>> = frames.iter().map(Owned::frame).collect();

    for cut in 0..=stream.len() {
        // First read: the first `cut` bytes. Exactly the frames that end within them come out,
        // then Ok(None); decode_all panics on any error.
        let (first, consumed) = decode_all(&stream[..cut]);
        let complete = ends.iter().filter(|&&end| end <= cut).count();
        assert_eq!(first[..], expected[..complete], "cut at {cut}");
        let end_of_complete = complete.checked_sub(1).map_or(0, |last| ends[last]);
        assert_eq!(consumed, end_of_complete, "cut at {cut}");

        // Second read: the unconsumed tail of the first plus everything else.
        let (second, rest) = decode_all(&stream[consumed..]);
        assert_eq!(second[..], expected[complete..], "cut at {cut}");
        assert_eq!(rest, stream.len() - consumed, "cut at {cut}");
    }
}

#[test]
fn every_op_is_in_the_split_stream() {
    let ops: BTreeSet<u8> = one_of_each_op()
        .iter()
        .map(|f| op_of(&f.frame()) as u8)
        .collect();
    let all: BTreeSet<u8> = Op::ALL.iter().map(|&op| op as u8).collect();
    assert_eq!(ops, all);
}

proptest! {
    #![proptest_config(super::support::config())]

    #[test]
    fn frames_arriving_in_random_chunks_decode_the_same(
        frames in prop::collection::vec(any_frame(), 1..8),
        chunks in prop::collection::vec(1usize..64, 1..64),
    ) {
        let stream: Vec<u8> = frames.iter().flat_map(Owned::encoded).collect();
        // A receive buffer the way the event loop uses one: append a read, decode every
        // complete frame, keep the rest.
        let mut buffer = Vec::new();
        let mut decoded = Vec::new();
        let mut offset = 0;
        for &chunk in chunks.iter().cycle() {
            if offset == stream.len() {
                break;
            }
            let end = (offset + chunk).min(stream.len());
            buffer.extend_from_slice(&stream[offset..end]);
            offset = end;
            let mut start = 0;
            while let Some((frame, used)) = decode(&buffer[start..], MAX_FRAME_LEN).unwrap() {
                decoded.push(encoded(&frame));
                start += used;
            }
            buffer.drain(..start);
        }
        prop_assert!(buffer.is_empty());
        let expected: Vec<Vec<u8>> = frames.iter().map(Owned::encoded).collect();
        prop_assert_eq!(decoded, expected);
    }
}
