"""Codec tests against the byte blocks of protocol.md §Worked example."""

from __future__ import annotations

import random

import pytest

from weir import protocol as P
from weir.protocol import ErrorCode


def h(s: str) -> bytes:
    return bytes.fromhex(s)


TOKEN = h("3f a2 91 0c 5e 77 d4 18 b6 20 e9 4d 81 c3 6a f5")

CASES: list[tuple[P.Frame, str]] = [
    (P.Hello(0, b"demo"), "00 00 00 0c 01 01 00 00 00 00 00 04 64 65 6d 6f"),
    (P.Welcome(0, 0, 0, 0x5A3C91E200000001, TOKEN, 0, 1048576, 1024, 10000, 30000, 100000,
               67108864),
     "00 00 00 49 01 81 00 00 00 00 00 00 00 00 00 00 00 5a 3c 91 e2 00 00 00 01 3f a2 91 0c"
     " 5e 77 d4 18 b6 20 e9 4d 81 c3 6a f5 00 00 00 00 00 00 00 00 00 10 00 00 00 00 04 00 00"
     " 00 27 10 00 00 75 30 00 01 86 a0 00 00 00 00 04 00 00 00"),
    (P.Subscribe(b"db", b"update"), "00 00 00 0d 01 03 00 02 64 62 06 75 70 64 61 74 65"),
    (P.Subscribed(b"db", b"update"), "00 00 00 0d 01 84 00 02 64 62 06 75 70 64 61 74 65"),
    (P.Publish(1, b"db", b"update", b"hi"),
     "00 00 00 17 01 02 00 00 00 00 00 00 00 01 00 02 64 62 06 75 70 64 61 74 65 68 69"),
    (P.Receipt(1), "00 00 00 0a 01 83 00 00 00 00 00 00 00 01"),
    (P.Deliver(1, 1, 0, b"db", b"update", b"hi"),
     "00 00 00 1f 01 82 00 00 00 00 00 00 00 01 00 00 00 00 00 00 00 01 00 02 64 62 06 75 70"
     " 64 61 74 65 68 69"),
    (P.Ack(1), "00 00 00 0c 01 05 00 00 00 00 00 00 00 01 00 00"),
    (P.Bye(), "00 00 00 02 01 08"),
    (P.Goodbye(ErrorCode.CLIENT_BYE, "bye"), "00 00 00 07 01 87 00 0f 62 79 65"),
    (P.Hello(256, b"demo", P.Resume(0x5A3C91E200000007, TOKEN, 41, 12)),
     "00 00 00 34 01 01 01 00 00 01 00 04 64 65 6d 6f 5a 3c 91 e2 00 00 00 07 3f a2 91 0c 5e"
     " 77 d4 18 b6 20 e9 4d 81 c3 6a f5 00 00 00 00 00 00 00 29 00 00 00 00 00 00 00 0c"),
    (P.Deliver(42, 1234, 1, b"db", b"update", b"hi"),
     "00 00 00 1f 01 82 00 00 00 00 00 00 00 2a 00 00 00 00 00 00 04 d2 01 02 64 62 06 75 70"
     " 64 61 74 65 68 69"),
    (P.Welcome(2, 0x14, 3, 0x5A3C91E200000009, h("9b 07 4e d1 22 6c f0 85 3a 5d c8 71 0e b4 69 2f"),
               0, 1048576, 256, 10000, 30000, 100000, 67108864),
     "00 00 00 49 01 81 02 00 14 00 00 00 00 00 00 00 03 5a 3c 91 e2 00 00 00 09 9b 07 4e d1"
     " 22 6c f0 85 3a 5d c8 71 0e b4 69 2f 00 00 00 00 00 00 00 00 00 10 00 00 00 00 01 00 00"
     " 00 27 10 00 00 75 30 00 01 86 a0 00 00 00 00 04 00 00 00"),
    (P.Subscribe(b"db", None), "00 00 00 07 01 03 01 02 64 62 00"),
    (P.Publish(2, b"px", b"", b"1.08", b"EURUSD"),
     "00 00 00 1a 01 02 00 00 00 00 00 00 00 02 01 02 70 78 00 06 45 55 52 55 53 44 31 2e 30"
     " 38"),
    (P.Ack(3, (5, 7)),
     "00 00 00 1c 01 05 00 00 00 00 00 00 00 03 00 02 00 00 00 00 00 00 00 05 00 00 00 00 00"
     " 00 00 07"),
    (P.Ping(0x1122334455667788), "00 00 00 0a 01 06 11 22 33 44 55 66 77 88"),
    (P.Pong(0x1122334455667788), "00 00 00 0a 01 07 11 22 33 44 55 66 77 88"),
    (P.Stats(), "00 00 00 02 01 09"),
    (P.Error(ErrorCode.PUBLISH_SEQ_GAP, 1, 5, "expected 3"),
     "00 00 00 17 01 86 00 0a 01 00 00 00 00 00 00 00 05 65 78 70 65 63 74 65 64 20 33"),
    (P.Hello(0, b"demo", None, P.Auth(P.AuthMethod.PASSWORD, b"alice", b"s3cret")),
     "00 00 00 1b 01 01 02 00 00 00 00 04 64 65 6d 6f 01 05 61 6c 69 63 65 00 06 73 33 63 72"
     " 65 74"),
    (P.Error(ErrorCode.NOT_AUTHORIZED, 0, 2, "no publish to px"),
     "00 00 00 1d 01 86 00 1c 00 00 00 00 00 00 00 00 02 6e 6f 20 70 75 62 6c 69 73 68 20 74"
     " 6f 20 70 78"),
    (P.Unsubscribed(b"db", None), "00 00 00 07 01 85 01 02 64 62 00"),
    (P.StatsReply(b'{"a":1}'), "00 00 00 09 01 88 7b 22 61 22 3a 31 7d"),
]


@pytest.mark.parametrize("frame,hexbytes", CASES)
def test_worked_example_bytes(frame: P.Frame, hexbytes: str) -> None:
    wire = h(hexbytes)
    assert P.encode(frame) == wire
    d = P.Decoder(1 << 20)
    d.feed(wire)
    assert d.next() == frame
    assert d.next() is None


def test_split_at_every_byte_and_many_per_read() -> None:
    stream = b"".join(h(x) for _, x in CASES)
    frames = [f for f, _ in CASES]
    rng = random.Random(7)
    for _ in range(50):
        d = P.Decoder(1 << 20)
        out = []
        i = 0
        while i < len(stream):
            n = rng.randint(1, 40)
            d.feed(stream[i:i + n])
            i += n
            out.extend(d)
        assert out == frames
    d = P.Decoder(1 << 20)
    for b in stream:  # one byte at a time
        d.feed(bytes((b,)))
        out = list(d)
    d = P.Decoder(1 << 20)
    res = []
    for b in stream:
        d.feed(bytes((b,)))
        res.extend(d)
    assert res == frames


def test_need_more_for_partial() -> None:
    wire = P.encode(P.Publish(1, b"q", b"e", b"x" * 100))
    d = P.Decoder(1 << 20)
    for i in range(len(wire) - 1):
        d.feed(wire[i:i + 1])
        assert d.next() is None
    d.feed(wire[-1:])
    assert isinstance(d.next(), P.Publish)


def test_rejects_over_long_length_before_body() -> None:
    d = P.Decoder(4096)
    with pytest.raises(P.DecodeError) as e:
        d.feed(b"\x00\x00\x10\x01")  # 4097: refused from the 4 length bytes alone
    assert e.value.code == ErrorCode.FRAME_TOO_LARGE
    assert d.buffered() == 4
    with pytest.raises(P.DecodeError):
        d.next()  # sticky
    d = P.Decoder(4096)
    with pytest.raises(P.DecodeError) as e:
        d.feed(b"PROX")
    assert e.value.code == ErrorCode.FRAME_TOO_LARGE


@pytest.mark.parametrize("wire,code", [
    ("00 00 00 00", ErrorCode.FRAME_TOO_SHORT),
    ("00 00 00 01", ErrorCode.FRAME_TOO_SHORT),
    ("00 00 00 02 02", ErrorCode.UNSUPPORTED_VERSION),
    ("00 00 00 02 01 42", ErrorCode.UNKNOWN_OP),
    ("00 00 00 03 01 08 00", ErrorCode.MALFORMED_FRAME),  # BYE with a body byte
    ("00 00 00 0b 01 83 00 00 00 00 00 00 00 01 00", ErrorCode.MALFORMED_FRAME),  # trailing
    ("00 00 00 08 01 03 01 02 64 62 01 78", ErrorCode.MALFORMED_FRAME),  # event + ALL_EVENTS
    ("00 00 00 07 01 03 02 02 64 62 00", ErrorCode.MALFORMED_FRAME),  # undefined flag
    ("00 00 00 0c 01 05 00 00 00 00 00 00 00 01 00 01", ErrorCode.MALFORMED_FRAME),  # count
    ("00 00 00 05 01 84 00 09 64", ErrorCode.MALFORMED_FRAME),  # str8 past the end
])
def test_decode_errors(wire: str, code: ErrorCode) -> None:
    d = P.Decoder(1 << 20)
    with pytest.raises(P.DecodeError) as e:
        d.feed(h(wire))
        d.next()
    assert e.value.code == code


def test_encoder_refuses_long_names_and_secrets() -> None:
    with pytest.raises(P.EncodeError):
        P.encode(P.Publish(1, b"q" * 256, b"", b""))
    with pytest.raises(P.EncodeError):
        P.encode(P.Hello(0, b"", None, P.Auth(P.AuthMethod.TOKEN, b"", b"x" * 2049)))
    P.encode(P.Publish(1, b"q" * 255, b"", b""))


def test_unknown_codes_are_kept_as_numbers() -> None:
    d = P.Decoder(1 << 20)
    d.feed(P.encode(P.Goodbye(0x7777, "x")))
    g = d.next()
    assert isinstance(g, P.Goodbye) and g.code == 0x7777
    assert P.error_code(0x7777) == 0x7777 and P.code_name(0x7777) == "UNKNOWN_CODE_30583"
