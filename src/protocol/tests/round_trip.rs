//! Every frame type survives encode then decode; the per-frame encoders agree with `encode`;
//! the encoders refuse what the layout cannot carry.

use proptest::prelude::*;

use super::support::{
    ack, any_frame, bytes, deliver, encoded, error_frame, goodbye, hello, known_code, op_of,
    publish, subscription, welcome, Owned,
};
use crate::protocol::codec::{
    decode, encode, encode_ack, encode_deliver, encode_deliver_counted, encode_dropped,
    encode_empty, encode_error, encode_goodbye, encode_hello, encode_ping, encode_publish,
    encode_receipt, encode_subscription, encode_welcome, EncodeError, MAX_TEXT_LEN,
    WELCOME_BODY_LEN,
};
use crate::protocol::frame::{
    Ack, AckSeqs, ErrorFrame, Frame, Goodbye, Hello, Publish, Resume, Subscription, OUTCOME_NEW,
};
use crate::protocol::header::Op;
use crate::protocol::{
    DecodeError, ErrorCode, MAX_FRAME_LEN, MAX_FRAME_LEN_BEFORE_HELLO, MAX_NAME_LEN,
    RESUME_TOKEN_LEN, VERSION,
};

proptest! {
    #![proptest_config(super::support::config())]

    #[test]
    fn hello_round_trips(f in hello()) {
        assert_round_trip(&f.frame());
    }

    #[test]
    fn publish_round_trips(f in publish()) {
        assert_round_trip(&f.frame());
    }

    #[test]
    fn subscribe_unsubscribe_subscribed_unsubscribed_round_trip(f in subscription()) {
        assert_round_trip(&f.frame());
    }

    #[test]
    fn ack_round_trips(f in ack()) {
        assert_round_trip(&f.frame());
    }

    #[test]
    fn ping_and_pong_round_trip(nonce in any::<u64>(), is_ping in any::<bool>()) {
        let f = if is_ping { Frame::Ping(nonce) } else { Frame::Pong(nonce) };
        assert_round_trip(&f);
    }

    #[test]
    fn bye_and_stats_round_trip(is_bye in any::<bool>()) {
        assert_round_trip(if is_bye { &Frame::Bye } else { &Frame::Stats });
    }

    #[test]
    fn welcome_round_trips(f in welcome()) {
        assert_round_trip(&f.frame());
    }

    #[test]
    fn deliver_round_trips(f in deliver()) {
        assert_round_trip(&f.frame());
    }

    #[test]
    fn receipt_round_trips(seq in any::<u64>()) {
        assert_round_trip(&Frame::Receipt(seq));
    }

    #[test]
    fn error_round_trips(f in error_frame()) {
        assert_round_trip(&f.frame());
    }

    #[test]
    fn goodbye_round_trips(f in goodbye()) {
        assert_round_trip(&f.frame());
    }

    #[test]
    fn stats_reply_round_trips(json in bytes(0..=512)) {
        assert_round_trip(&Frame::StatsReply(&json));
    }

    #[test]
    fn any_frame_round_trips(f in any_frame()) {
        assert_round_trip(&f.frame());
    }

    #[test]
    fn the_per_frame_encoders_write_what_encode_writes(f in any_frame()) {
        let frame = f.frame();
        let mut specific = Vec::new();
        match &f {
            Owned::Hello(h) => encode_hello(&h.frame(), &mut specific).unwrap(),
            Owned::Publish(p) => encode_publish(&p.frame(), &mut specific).unwrap(),
            Owned::Subscription { op, sub } => {
                encode_subscription(*op, &sub.frame(), &mut specific).unwrap();
            }
            Owned::Ack(a) => encode_ack(a.up_to, &a.seqs, &mut specific).unwrap(),
            Owned::Ping(nonce) => encode_ping(Op::Ping, *nonce, &mut specific),
            Owned::Pong(nonce) => encode_ping(Op::Pong, *nonce, &mut specific),
            Owned::Bye => encode_empty(Op::Bye, &mut specific),
            Owned::Stats => encode_empty(Op::Stats, &mut specific),
            Owned::Welcome(w) => encode_welcome(w, &mut specific),
            Owned::Deliver(d) => encode_deliver_counted(
                d.seq,
                d.message_id,
                d.flags,
                d.delivery_count,
                &d.queue,
                &d.event,
                &d.payload,
                &mut specific,
            )
            .unwrap(),
            Owned::Receipt(seq) => encode_receipt(*seq, &mut specific),
            Owned::Dropped(d) => encode_dropped(d, &mut specific),
            // ERROR and GOODBYE have typed encoders taking &str: see the next test.
            Owned::Error(_) | Owned::Goodbye(_) | Owned::StatsReply(_) => {
                encode(&frame, &mut specific).unwrap();
            }
        }
        prop_assert_eq!(specific, encoded(&frame));
    }

    #[test]
    fn the_error_and_goodbye_encoders_write_what_encode_writes(
        code in known_code(),
        fatal in any::<bool>(),
        ref_seq in any::<u64>(),
        text in ".{0,200}",
    ) {
        let mut typed = Vec::new();
        encode_error(code, fatal, ref_seq, &text, &mut typed).unwrap();
        let error = ErrorFrame { ref_op: None, code: Ok(code), fatal, ref_seq, text: text.as_bytes() };
        prop_assert_eq!(&typed, &encoded(&Frame::Error(error)));

        typed.clear();
        encode_goodbye(code, &text, &mut typed);
        let goodbye = Goodbye { code: Ok(code), text: text.as_bytes() };
        prop_assert_eq!(&typed, &encoded(&Frame::Goodbye(goodbye)));
    }
}

/// Encodes `frame`, checks the header, decodes it back and checks frame and length; also checks
/// that a limit equal to the length field accepts it and one less rejects it from the header.
fn assert_round_trip(frame: &Frame<'_>) {
    let bytes = encoded(frame);
    let len = u32::from_be_bytes(bytes[..4].try_into().unwrap());
    assert_eq!(
        len as usize,
        bytes.len() - 4,
        "length counts version + op + body"
    );
    assert_eq!(bytes[4], VERSION);
    assert_eq!(bytes[5], op_of(frame) as u8);

    let (decoded, used) = decode(&bytes, MAX_FRAME_LEN).unwrap().unwrap();
    assert_eq!(decoded, *frame);
    assert_eq!(used, bytes.len());

    assert_eq!(decode(&bytes, len).unwrap().unwrap().1, bytes.len());
    assert_eq!(
        decode(&bytes[..4], len - 1),
        Err(DecodeError::FrameTooLarge { len, max: len - 1 })
    );
}

#[test]
fn names_longer_than_255_bytes_are_refused_and_nothing_is_written() {
    let long = [b'x'; MAX_NAME_LEN + 1];
    let ok = [b'x'; MAX_NAME_LEN];
    let mut out = vec![0xEE];
    let hello = Hello {
        extensions: false,
        inflight_window: 0,
        client_name: &long,
        resume: None,
        auth: None,
    };
    assert_eq!(
        encode_hello(&hello, &mut out),
        Err(EncodeError::NameTooLong)
    );
    for (queue, event, key) in [
        (&long[..], &ok[..], None),
        (&ok[..], &long[..], None),
        (&ok[..], &ok[..], Some(&long[..])),
    ] {
        let publish = Publish {
            seq: 1,
            queue,
            event,
            key,
            ttl_ms: None,
            payload: b"p",
        };
        assert_eq!(
            encode_publish(&publish, &mut out),
            Err(EncodeError::NameTooLong)
        );
    }
    for (queue, event) in [(&long[..], None), (&ok[..], Some(&long[..]))] {
        let sub = Subscription {
            queue,
            event,
            group: None,
            is_pattern: false,
            start: None,
        };
        let result = encode_subscription(Op::Subscribe, &sub, &mut out);
        assert_eq!(result, Err(EncodeError::NameTooLong));
    }
    let result = encode_deliver(1, 1, 0, &long, b"", b"", &mut out);
    assert_eq!(result, Err(EncodeError::NameTooLong));
    assert_eq!(out, [0xEE]);

    // 255 bytes is fine.
    assert_round_trip(&Owned::publish(1, &ok, &ok, Some(&ok), b"").frame());
}

#[test]
fn an_ack_listing_more_than_65535_seqs_is_refused() {
    let seqs = vec![1u64; 65_536];
    let mut out = Vec::new();
    assert_eq!(
        encode_ack(0, &seqs, &mut out),
        Err(EncodeError::FrameTooLarge)
    );
    let bytes: Vec<u8> = seqs.iter().flat_map(|s| s.to_be_bytes()).collect();
    let ack = Ack {
        up_to: 0,
        seqs: AckSeqs::from_bytes(&bytes).unwrap(),
    };
    assert_eq!(
        encode(&Frame::Ack(ack), &mut out),
        Err(EncodeError::FrameTooLarge)
    );
    assert!(out.is_empty());

    encode_ack(0, &seqs[1..], &mut out).unwrap();
    assert_eq!(out.len(), 4 + 2 + 10 + 65_535 * 8);
    let (frame, _) = decode(&out, MAX_FRAME_LEN).unwrap().unwrap();
    let Frame::Ack(ack) = frame else {
        panic!("not an ACK: {frame:?}")
    };
    assert_eq!(ack.seqs.len(), 65_535);
}

#[test]
fn error_and_goodbye_texts_are_cut_to_max_text_len() {
    let text = "é".repeat(MAX_TEXT_LEN); // 2 bytes each
    let mut out = Vec::new();
    encode_error(ErrorCode::ServerBusy, true, 0, &text, &mut out).unwrap();
    assert_eq!(out.len(), 6 + 11 + MAX_TEXT_LEN);
    out.clear();
    encode_goodbye(ErrorCode::ServerShutdown, &text, &mut out);
    assert_eq!(out.len(), 6 + 2 + MAX_TEXT_LEN);
}

#[test]
fn the_largest_hello_fits_the_before_hello_limit() {
    let resume = Resume {
        session_id: u64::MAX,
        resume_token: [0xFF; RESUME_TOKEN_LEN],
        last_delivery_seq: u64::MAX,
        first_resendable_publish_seq: u64::MAX,
    };
    let bytes = Owned::hello(u32::MAX, &[b'n'; MAX_NAME_LEN], Some(resume)).encoded();
    assert_eq!(
        bytes.len(),
        4 + 2 + 301,
        "protocol.md §HELLO: longest body 301 bytes"
    );
    assert!(decode(&bytes, MAX_FRAME_LEN_BEFORE_HELLO)
        .unwrap()
        .is_some());
}

#[test]
fn welcome_body_is_71_bytes() {
    assert_eq!(WELCOME_BODY_LEN, 71, "protocol.md §WELCOME");
    let welcome = super::support::example_welcome(OUTCOME_NEW, None, Some(0), 1, 1024);
    assert_eq!(welcome.encoded().len(), 6 + 71);
}

#[test]
fn error_codes_are_numbered_from_one_without_gaps() {
    for (i, &code) in ErrorCode::ALL.iter().enumerate() {
        assert_eq!(code as u16 as usize, i + 1, "{}", code.name());
        assert_eq!(ErrorCode::from_u16(code as u16), Some(code));
    }
    assert_eq!(ErrorCode::from_u16(0), None);
}

/// Issue 9: the DELIVER size was computed by hand in the broker, repeating the codec; both now
/// use `deliver_len`, which must be what the encoder writes.
#[test]
fn deliver_len_is_the_length_field_the_encoder_writes() {
    for (queue, event, count, payload) in [
        (1, 0, None, 0),
        (3, 6, None, 64),
        (255, 255, Some(3u16), 70_000),
    ] {
        let mut out = Vec::new();
        crate::protocol::codec::encode_deliver_counted(
            1,
            2,
            0,
            count,
            &vec![b'q'; queue],
            &vec![b'e'; event],
            &vec![0; payload],
            &mut out,
        )
        .unwrap();
        assert_eq!(
            crate::protocol::codec::deliver_len(queue, event, count.is_some(), payload),
            out.len() - crate::protocol::LEN_PREFIX_LEN
        );
    }
}
