//! Malformed frames as fixture files: `tests/fixtures/malformed/*.bin`, one case per file,
//! listed in `manifest.txt` with the expected error code and the frame limit to decode with.
//! The bytes are written out by hand in [`malformed_cases`], not with the encoders, so a bug in
//! an encoder cannot hide the same bug in the decoder.

use std::collections::BTreeSet;
use std::path::PathBuf;

use super::support::{frame, frame_raw, one_of_each_op, op_of, repo_path, Owned};
use crate::protocol::codec::{decode, fuzz_decode};
use crate::protocol::{ErrorCode, MAX_FRAME_LEN, MAX_FRAME_LEN_BEFORE_HELLO};

#[test]
fn malformed_fixtures_decode_to_their_expected_error_code() {
    let manifest = read_manifest();
    assert!(!manifest.is_empty());
    for entry in &manifest {
        let bytes = std::fs::read(fixtures_dir().join(&entry.file)).unwrap();
        let code = ErrorCode::ALL
            .iter()
            .copied()
            .find(|c| c.name() == entry.code)
            .unwrap_or_else(|| panic!("{}: unknown code {}", entry.file, entry.code));
        let what = format!("{} ({})", entry.file, entry.description);

        let err = decode(&bytes, entry.max_frame_len).expect_err(&what);
        assert_eq!(err.code(), code, "{what}: {err}");

        // What follows the bad frame does not change the verdict.
        let mut longer = bytes.clone();
        longer.extend_from_slice(&[0x01; 16]);
        let result = decode(&longer, entry.max_frame_len).map(|_| ());
        assert_eq!(result, Err(err), "{what}");

        // A prefix is either still incomplete or already shows the same error.
        for cut in 0..bytes.len() {
            match decode(&bytes[..cut], entry.max_frame_len) {
                Ok(None) => {}
                Ok(Some(_)) => panic!("{what}: prefix of {cut} bytes decodes"),
                Err(e) => assert_eq!(e.code(), code, "{what}: prefix of {cut} bytes"),
            }
        }

        assert_eq!(fuzz_decode(&bytes), 0, "{what}");
    }
}

#[test]
fn every_malformed_fixture_is_in_the_manifest() {
    let listed: BTreeSet<String> = read_manifest().into_iter().map(|e| e.file).collect();
    let on_disk: BTreeSet<String> = std::fs::read_dir(fixtures_dir())
        .unwrap()
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .filter(|name| name.ends_with(".bin"))
        .collect();
    assert_eq!(listed, on_disk);
}

#[test]
fn malformed_fixtures_on_disk_match_their_generator() {
    if std::env::var_os("WEIR_WRITE_FIXTURES").is_some() {
        write_fixtures();
    }
    let cases = malformed_cases();
    let manifest = read_manifest();
    let hint = "regenerate with WEIR_WRITE_FIXTURES=1";
    assert_eq!(manifest.len(), cases.len(), "{hint}");
    for (case, entry) in cases.iter().zip(&manifest) {
        assert_eq!(entry.file, case.file, "{hint}");
        assert_eq!(entry.code, case.code.name(), "{}: {hint}", case.file);
        assert_eq!(
            entry.max_frame_len, case.max_frame_len,
            "{}: {hint}",
            case.file
        );
        let on_disk = std::fs::read(fixtures_dir().join(case.file)).unwrap();
        assert_eq!(on_disk, case.bytes, "{}: {hint}", case.file);
    }
}

struct ManifestEntry {
    file: String,
    code: String,
    max_frame_len: u32,
    description: String,
}

fn read_manifest() -> Vec<ManifestEntry> {
    let text = std::fs::read_to_string(fixtures_dir().join("manifest.txt")).unwrap();
    text.lines()
        .filter(|line| !line.trim().is_empty() && !line.starts_with('#'))
        .map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            assert!(fields.len() >= 3, "short manifest line: {line}");
            ManifestEntry {
                file: fields[0].to_owned(),
                code: fields[1].to_owned(),
                max_frame_len: fields[2].parse().unwrap(),
                description: fields[3..].join(" "),
            }
        })
        .collect()
}

struct MalformedCase {
    file: &'static str,
    code: ErrorCode,
    max_frame_len: u32,
    description: &'static str,
    bytes: Vec<u8>,
}

/// `"file" Code limit "description" => bytes;` for each case. A macro so the table stays one
/// case per two lines (rustfmt leaves brace-delimited macro bodies alone).
macro_rules! cases {
    ($($file:literal $code:ident $max:ident $desc:literal => $bytes:expr;)*) => {
        vec![$(MalformedCase {
            file: $file,
            code: ErrorCode::$code,
            max_frame_len: $max,
            description: $desc,
            bytes: $bytes,
        },)*]
    };
}

/// Every malformed case. Op codes: HELLO 01, PUBLISH 02, SUBSCRIBE 03, UNSUBSCRIBE 04, ACK 05,
/// PING 06, PONG 07, BYE 08, STATS 09, WELCOME 81, DELIVER 82, RECEIPT 83, SUBSCRIBED 84,
/// UNSUBSCRIBED 85, ERROR 86, GOODBYE 87.
fn malformed_cases() -> Vec<MalformedCase> {
    const MAX: u32 = MAX_FRAME_LEN;
    const BEFORE_HELLO: u32 = MAX_FRAME_LEN_BEFORE_HELLO;
    let u64 = |v: u64| v.to_be_bytes();
    // HELLO body: flags 0, inflight_window 0, client_name "demo".
    let hello = cat(&[&[0x00], &[0; 4], &name(b"demo")]);
    let resume = cat(&[&u64(7), &[0xAB; 16], &u64(41), &u64(12)]);
    let welcome = {
        let limits: Vec<u8> = [1_048_576u32, 1024, 10_000, 30_000, 100_000]
            .iter()
            .flat_map(|v| v.to_be_bytes())
            .collect();
        // outcome, lost_reason, missed, session_id, resume_token, last_publish_seq, limits.
        let head = cat(&[&[0x00, 0x00, 0x00], &u64(0), &u64(1), &[0x5A; 16], &u64(0)]);
        cat(&[&head, &limits, &u64(67_108_864)])
    };
    assert_eq!(welcome.len(), 71);

    cases! {
        // Header: length.
        "zero-length.bin" FrameTooShort MAX "length field 0"
            => vec![0, 0, 0, 0];
        "len-one.bin" FrameTooShort MAX "length field 1: no room for the op"
            => vec![0, 0, 0, 1, 0x01];
        "len-ffffffff.bin" FrameTooLarge MAX "length field 0xFFFFFFFF"
            => vec![0xFF; 4];
        "len-max-plus-one.bin" FrameTooLarge MAX "length field max_frame_len + 1"
            => vec![0x00, 0x10, 0x00, 0x01, 0x01, 0x02];
        "len-over-before-hello-limit.bin" FrameTooLarge BEFORE_HELLO "length 4097 before HELLO"
            => vec![0x00, 0x00, 0x10, 0x01, 0x01, 0x01];
        "len-too-large-and-bad-version.bin" FrameTooLarge MAX "length checked before version"
            => vec![0xFF, 0xFF, 0xFF, 0xFF, 0x02, 0xFF];
        // Header: version and op.
        "bad-version-00.bin" UnsupportedVersion MAX "version byte 0x00"
            => frame_raw(0x00, 0x08, &[]);
        "bad-version-02.bin" UnsupportedVersion MAX "version byte 0x02"
            => frame_raw(0x02, 0x08, &[]);
        "bad-version-ff-bad-op.bin" UnsupportedVersion MAX "version checked before op"
            => frame_raw(0xFF, 0xFF, &[]);
        "unknown-op-00.bin" UnknownOp MAX "op 0x00"
            => frame(0x00, &[]);
        "unknown-op-0a.bin" UnknownOp MAX "op 0x0A, after STATS"
            => frame(0x0A, &[]);
        "unknown-op-80.bin" UnknownOp MAX "op 0x80, below WELCOME"
            => frame(0x80, &[]);
        "unknown-op-8a.bin" UnknownOp MAX "op 0x8A, after DROPPED"
            => frame(0x8A, &[]);
        "unknown-op-ff.bin" UnknownOp MAX "op 0xFF with a body"
            => frame(0xFF, &[0; 8]);
        // HELLO.
        "hello-empty-body.bin" MalformedFrame MAX "HELLO without a body"
            => frame(0x01, &[]);
        "hello-truncated-name.bin" MalformedFrame MAX "HELLO name length 10, 3 bytes present"
            => frame(0x01, &cat(&[&[0x00], &[0; 4], &[10], b"abc"]));
        "hello-unknown-flag-bits.bin" MalformedFrame MAX "HELLO flags 0x02"
            => frame(0x01, &cat(&[&[0x02], &hello[1..]]));
        "hello-resume-without-block.bin" MalformedFrame MAX "HELLO RESUME flag, no block"
            => frame(0x01, &cat(&[&[0x01], &hello[1..]]));
        "hello-resume-truncated-block.bin" MalformedFrame MAX "HELLO resume block 1 byte short"
            => frame(0x01, &cat(&[&[0x01], &hello[1..], &resume[..39]]));
        "hello-block-without-resume-flag.bin" MalformedFrame MAX "HELLO resume block, no flag"
            => frame(0x01, &cat(&[&hello, &resume]));
        "hello-trailing-bytes.bin" MalformedFrame MAX "HELLO 1 byte after the client name"
            => frame(0x01, &cat(&[&hello, &[0x00]]));
        // PUBLISH.
        "publish-truncated-seq.bin" MalformedFrame MAX "PUBLISH body of 4 bytes"
            => frame(0x02, &[0, 0, 0, 1]);
        "publish-unknown-flag-bits.bin" MalformedFrame MAX "PUBLISH flags 0x80"
            => frame(0x02, &cat(&[&u64(1), &[0x80], &name(b"db"), &name(b"")]));
        "publish-truncated-queue-name.bin" MalformedFrame MAX "PUBLISH queue length 200, 2 bytes"
            => frame(0x02, &cat(&[&u64(1), &[0x00], &[200], b"db"]));
        "publish-missing-event-name.bin" MalformedFrame MAX "PUBLISH ends after the queue"
            => frame(0x02, &cat(&[&u64(1), &[0x00], &name(b"db")]));
        "publish-conflate-without-key.bin" MalformedFrame MAX "PUBLISH CONFLATE flag, no key"
            => frame(0x02, &cat(&[&u64(1), &[0x01], &name(b"db"), &name(b"update")]));
        "publish-truncated-key.bin" MalformedFrame MAX "PUBLISH key length 6, 2 bytes present"
            => frame(0x02, &cat(&[&u64(1), &[0x01], &name(b"db"), &name(b""), &[6], b"EU"]));
        // SUBSCRIBE family.
        "subscribe-all-events-with-event-name.bin" MalformedFrame MAX "ALL_EVENTS and an event"
            => frame(0x03, &cat(&[&[0x01], &name(b"db"), &name(b"update")]));
        "unsubscribe-all-events-with-event-name.bin" MalformedFrame MAX "ALL_EVENTS and an event"
            => frame(0x04, &cat(&[&[0x01], &name(b"db"), &name(b"x")]));
        "subscribed-all-events-with-event-name.bin" MalformedFrame MAX "ALL_EVENTS and an event"
            => frame(0x84, &cat(&[&[0x01], &name(b"db"), &name(b"x")]));
        "subscribe-unknown-flag-bits.bin" MalformedFrame MAX "SUBSCRIBE flags 0x03"
            => frame(0x03, &cat(&[&[0x03], &name(b"db"), &name(b"")]));
        "subscribe-missing-event-field.bin" MalformedFrame MAX "ALL_EVENTS, no empty event field"
            => frame(0x03, &cat(&[&[0x01], &name(b"db")]));
        "subscribe-trailing-bytes.bin" MalformedFrame MAX "SUBSCRIBE 1 byte after the event"
            => frame(0x03, &cat(&[&[0x00], &name(b"db"), &name(b"update"), &[0x00]]));
        "unsubscribed-empty-body.bin" MalformedFrame MAX "UNSUBSCRIBED without a body"
            => frame(0x85, &[]);
        // ACK.
        "ack-count-too-high.bin" MalformedFrame MAX "ACK count 2, one seq present"
            => frame(0x05, &cat(&[&u64(0), &[0, 2], &u64(5)]));
        "ack-count-too-low.bin" MalformedFrame MAX "ACK count 1, two seqs present"
            => frame(0x05, &cat(&[&u64(0), &[0, 1], &u64(5), &u64(7)]));
        "ack-partial-seq.bin" MalformedFrame MAX "ACK count 1, 4 bytes of seq present"
            => frame(0x05, &cat(&[&u64(3), &[0, 1], &[0, 0, 0, 5]]));
        "ack-truncated-count.bin" MalformedFrame MAX "ACK ends inside count"
            => frame(0x05, &cat(&[&u64(3), &[0]]));
        // PING, PONG, BYE, STATS.
        "ping-short-nonce.bin" MalformedFrame MAX "PING nonce of 4 bytes"
            => frame(0x06, &[1, 2, 3, 4]);
        "pong-long-nonce.bin" MalformedFrame MAX "PONG nonce of 9 bytes"
            => frame(0x07, &[1, 2, 3, 4, 5, 6, 7, 8, 9]);
        "bye-with-body.bin" MalformedFrame MAX "BYE with a body byte"
            => frame(0x08, &[0x00]);
        "stats-with-body.bin" MalformedFrame MAX "STATS with a body byte"
            => frame(0x09, &[0x00]);
        // Server-to-client frames.
        "welcome-one-byte-short.bin" MalformedFrame MAX "WELCOME body of 70 bytes"
            => frame(0x81, &welcome[..70]);
        "welcome-extension-truncated.bin" MalformedFrame MAX "WELCOME body of 73 bytes"
            => frame(0x81, &cat(&[&welcome, &[0x00, 0x00]]));
        "welcome-extension-trailing-bytes.bin" MalformedFrame MAX "WELCOME body of 76 bytes"
            => frame(0x81, &cat(&[&welcome, &[0x00; 5]]));
        "welcome-trailing-bytes.bin" MalformedFrame MAX "WELCOME body of 72 bytes"
            => frame(0x81, &cat(&[&welcome, &[0x00]]));
        "deliver-truncated-event-name.bin" MalformedFrame MAX "DELIVER event length 6, 3 bytes"
            => frame(0x82, &cat(&[&u64(1), &u64(1), &[0x00], &name(b"db"), &[6], b"upd"]));
        "deliver-missing-flags.bin" MalformedFrame MAX "DELIVER ends after message_id"
            => frame(0x82, &cat(&[&u64(1), &u64(1)]));
        "receipt-trailing-bytes.bin" MalformedFrame MAX "RECEIPT body of 9 bytes"
            => frame(0x83, &cat(&[&u64(1), &[0x00]]));
        "error-ref-op-missing.bin" MalformedFrame MAX "ERROR flags REF_OP, ends after ref_seq"
            => frame(0x86, &cat(&[&[0x00, 0x1C, 0x02], &u64(0)]));
        "error-truncated-ref-seq.bin" MalformedFrame MAX "ERROR ends inside ref_seq"
            => frame(0x86, &[0x00, 0x0A, 0x01, 0, 0, 0, 0]);
        "goodbye-one-byte-body.bin" MalformedFrame MAX "GOODBYE body of 1 byte"
            => frame(0x87, &[0x00]);
    }
}

/// Writes the fixtures and the manifest, and the seed corpus of `tools/fuzz`: each sample
/// frame alone, the sample stream, and every malformed case.
fn write_fixtures() {
    let dir = fixtures_dir();
    std::fs::create_dir_all(&dir).unwrap();
    let mut manifest = String::from(
        "# Malformed frames, one per .bin file here, checked by src/protocol/tests/malformed.rs,\n\
         # which generates them: WEIR_WRITE_FIXTURES=1 cargo test -p weir --lib protocol::tests\n\
         # file  expected_code  max_frame_len  description\n",
    );
    for case in malformed_cases() {
        std::fs::write(dir.join(case.file), &case.bytes).unwrap();
        let code = case.code.name();
        let line = format!(
            "{}  {code}  {}  {}\n",
            case.file, case.max_frame_len, case.description
        );
        manifest.push_str(&line);
    }
    std::fs::write(dir.join("manifest.txt"), manifest).unwrap();

    let corpus = repo_path("tools/fuzz/corpus/decode");
    std::fs::create_dir_all(&corpus).unwrap();
    let frames = one_of_each_op();
    for f in &frames {
        let file = format!("frame-{}.bin", op_of(&f.frame()).name().to_lowercase());
        std::fs::write(corpus.join(file), f.encoded()).unwrap();
    }
    let stream: Vec<u8> = frames.iter().flat_map(Owned::encoded).collect();
    std::fs::write(corpus.join("stream-one-of-each-op.bin"), stream).unwrap();
    for case in malformed_cases() {
        let file = format!("malformed-{}", case.file);
        std::fs::write(corpus.join(file), &case.bytes).unwrap();
    }
}

fn fixtures_dir() -> PathBuf {
    repo_path("tests/fixtures/malformed")
}

/// A str8 name.
fn name(bytes: &[u8]) -> Vec<u8> {
    cat(&[&[u8::try_from(bytes.len()).unwrap()], bytes])
}

fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

/// Issue 5: the auth block of HELLO is bounds-checked like every other field.
#[test]
fn hello_auth_blocks_that_break_the_layout_are_malformed() {
    let head = [0x02, 0, 0, 0, 0, 0];
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("secret over 2048 bytes", {
            let mut body = [&head[..], &[0x01, 0x00, 0x08, 0x01]].concat();
            body.extend(std::iter::repeat_n(b'x', 2049));
            body
        }),
        (
            "unknown method",
            [&head[..], &[0x04, 0x00, 0x00, 0x00]].concat(),
        ),
        ("method 0", [&head[..], &[0x00, 0x00, 0x00, 0x00]].concat()),
        (
            "secret shorter than its length",
            [&head[..], &[0x01, 0x00, 0x00, 0x05, b'a']].concat(),
        ),
        ("auth flag without a block", head.to_vec()),
        (
            "trailing bytes",
            [&head[..], &[0x02, 0x00, 0x00, 0x00, 0xff]].concat(),
        ),
    ];
    for (what, body) in cases {
        let err = decode(&frame(0x01, &body), MAX_FRAME_LEN).expect_err(what);
        assert_eq!(err.code(), ErrorCode::MalformedFrame, "{what}: {err}");
    }
    // The longest secret allowed decodes.
    let mut body = [&head[..], &[0x02, 0x00, 0x08, 0x00]].concat();
    body.extend(std::iter::repeat_n(b'x', 2048));
    assert!(decode(&frame(0x01, &body), MAX_FRAME_LEN_BEFORE_HELLO)
        .unwrap()
        .is_some());
}
