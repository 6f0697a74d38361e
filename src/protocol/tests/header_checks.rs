//! Header errors are reported from the header bytes alone, before any body byte arrives:
//! FRAME_TOO_SHORT and FRAME_TOO_LARGE from the 4 length bytes, UNSUPPORTED_VERSION from byte 4,
//! UNKNOWN_OP from byte 5. Anything shorter is `Ok(None)`.

use crate::protocol::codec::decode;
use crate::protocol::header::{FrameHeader, Op};
use crate::protocol::{DecodeError, MAX_FRAME_LEN, MAX_FRAME_LEN_BEFORE_HELLO, VERSION};

#[test]
fn frame_too_short_is_reported_from_the_four_length_bytes() {
    for len in 0..2u32 {
        let bytes = len.to_be_bytes();
        let result = decode(&bytes, MAX_FRAME_LEN);
        assert_eq!(result, Err(DecodeError::FrameTooShort { len }));
    }
}

#[test]
fn frame_too_large_is_reported_from_the_four_length_bytes() {
    for (len, max) in [
        (MAX_FRAME_LEN + 1, MAX_FRAME_LEN),
        (u32::MAX, MAX_FRAME_LEN),
        (MAX_FRAME_LEN_BEFORE_HELLO + 1, MAX_FRAME_LEN_BEFORE_HELLO),
        (3, 2),
    ] {
        let bytes = len.to_be_bytes();
        let result = decode(&bytes, max);
        assert_eq!(result, Err(DecodeError::FrameTooLarge { len, max }));
    }
}

#[test]
fn a_length_at_the_limit_is_not_an_error() {
    let len = MAX_FRAME_LEN_BEFORE_HELLO;
    assert_eq!(decode(&len.to_be_bytes(), len), Ok(None));
    assert_eq!(decode(&[0, 0, 0, 2], 2), Ok(None));
}

#[test]
fn the_length_is_checked_before_the_version_and_the_version_before_the_op() {
    let result = decode(&[0xFF, 0xFF, 0xFF, 0xFF, 0x02, 0xFF], MAX_FRAME_LEN);
    assert_eq!(
        result,
        Err(DecodeError::FrameTooLarge {
            len: u32::MAX,
            max: MAX_FRAME_LEN
        })
    );
    let result = decode(&[0, 0, 0, 2, 0x02, 0xFF], MAX_FRAME_LEN);
    assert_eq!(
        result,
        Err(DecodeError::UnsupportedVersion { version: 0x02 })
    );
}

#[test]
fn unsupported_version_is_reported_from_the_version_byte() {
    for version in (0..=u8::MAX).filter(|&v| v != VERSION) {
        let expected = Err(DecodeError::UnsupportedVersion { version });
        // 5 bytes: the op has not arrived yet. 6 bytes: a valid op does not save it.
        assert_eq!(decode(&[0, 0, 0, 100, version], MAX_FRAME_LEN), expected);
        let six = [0, 0, 0, 100, version, Op::Publish as u8];
        assert_eq!(decode(&six, MAX_FRAME_LEN), expected);
    }
}

#[test]
fn unknown_op_is_reported_from_six_bytes() {
    for op in (0..=u8::MAX).filter(|&op| Op::from_u8(op).is_none()) {
        let header = [0, 0, 0, 100, VERSION, op];
        let result = decode(&header, MAX_FRAME_LEN);
        assert_eq!(result, Err(DecodeError::UnknownOp { op }));
    }
}

#[test]
fn fewer_than_four_bytes_are_incomplete_whatever_they_are() {
    for first in [0x00, 0x7F, 0xFF] {
        for len in 0..4 {
            assert_eq!(decode(&vec![first; len], 0), Ok(None));
        }
    }
}

#[test]
fn a_good_header_waits_for_the_body() {
    for &op in Op::ALL {
        let header = [0, 0, 0, 100, VERSION, op as u8];
        for cut in 0..=header.len() {
            let result = decode(&header[..cut], MAX_FRAME_LEN);
            assert_eq!(result, Ok(None), "{op:?} cut at {cut}");
        }
        let checked = FrameHeader::check(&header, MAX_FRAME_LEN);
        assert_eq!(checked, Ok(Some(FrameHeader { len: 100, op })));
    }
}
