"""Weir wire protocol, version 1: frames, encoders and an incremental decoder.

Everything here follows protocol.md (cited as ``protocol.md §SECTION``). The module does no
I/O: :func:`encode` turns a frame object into bytes, :class:`Decoder` turns bytes (split at
any point) into frame objects.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass
from typing import Union

VERSION = 0x01
LEN_PREFIX_LEN = 4
HEADER_LEN = 2  # version + op
MAX_NAME_LEN = 255
MAX_AUTH_SECRET_LEN = 2048
MAX_ACK_SEQS = 65535
WELCOME_BODY_LEN = 71
MISSED_UNKNOWN = 0xFFFF_FFFF_FFFF_FFFF
#: Limit on a server frame's length field before WELCOME: the server then sends only WELCOME
#: (length 73) or an ERROR / GOODBYE with at most 1,024 bytes of text (protocol.md §Framing).
PRE_WELCOME_MAX_LEN = 4096
#: A DELIVER may be this much longer than the PUBLISH that carried it (protocol.md §Limits).
DELIVER_SLACK = 8

_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")
_U64 = struct.Struct(">Q")
_HDR = struct.Struct(">IBB")


class Op(enum.IntEnum):
    HELLO = 0x01
    PUBLISH = 0x02
    SUBSCRIBE = 0x03
    UNSUBSCRIBE = 0x04
    ACK = 0x05
    PING = 0x06
    PONG = 0x07
    BYE = 0x08
    STATS = 0x09
    WELCOME = 0x81
    DELIVER = 0x82
    RECEIPT = 0x83
    SUBSCRIBED = 0x84
    UNSUBSCRIBED = 0x85
    ERROR = 0x86
    GOODBYE = 0x87
    STATS_REPLY = 0x88


_OPS = {int(op) for op in Op}


class ErrorCode(enum.IntEnum):
    """protocol.md §Error codes. Codes not listed are kept as plain ints."""

    MALFORMED_FRAME = 0x0001
    UNKNOWN_OP = 0x0002
    FRAME_TOO_LARGE = 0x0003
    FRAME_TOO_SHORT = 0x0004
    UNSUPPORTED_VERSION = 0x0005
    HELLO_REQUIRED = 0x0006
    DUPLICATE_HELLO = 0x0007
    INVALID_NAME = 0x0008
    UNKNOWN_ACK_SEQ = 0x0009
    PUBLISH_SEQ_GAP = 0x000A
    HANDSHAKE_TIMEOUT = 0x000B
    QUEUE_OVERFLOW = 0x000C
    SLOW_CONSUMER = 0x000D
    SERVER_SHUTDOWN = 0x000E
    CLIENT_BYE = 0x000F
    SERVER_BUSY = 0x0010
    LIMIT_EXCEEDED = 0x0011
    HEARTBEAT_TIMEOUT = 0x0012
    SESSION_UNKNOWN = 0x0013
    SESSION_EXPIRED = 0x0014
    TAKEN_OVER = 0x0015
    RESEND_GAP = 0x0016
    SERVER_RESTARTED = 0x0017
    RESUME_INVALID = 0x0018
    PROXY_REJECTED = 0x0019
    AUTH_REQUIRED = 0x001A
    AUTH_FAILED = 0x001B
    NOT_AUTHORIZED = 0x001C
    STORAGE_FAILED = 0x001D


Code = Union[ErrorCode, int]


def error_code(value: int) -> Code:
    """The :class:`ErrorCode` for ``value``, or ``value`` itself when the code is unknown."""
    try:
        return ErrorCode(value)
    except ValueError:
        return value


def code_name(code: int) -> str:
    try:
        return ErrorCode(code).name
    except ValueError:
        return f"UNKNOWN_CODE_{code}"


# Flags (protocol.md §Flags)
HELLO_RESUME = 0x01
HELLO_AUTH = 0x02
PUBLISH_CONFLATE = 0x01
SUB_ALL_EVENTS = 0x01
DELIVER_REDELIVERED = 0x01
ERROR_FATAL = 0x01


class AuthMethod(enum.IntEnum):
    PASSWORD = 0x01
    TOKEN = 0x02
    SIGNED_TOKEN = 0x03


class Outcome(enum.IntEnum):
    NEW = 0x00
    RESUMED = 0x01
    LOST = 0x02


class DecodeError(Exception):
    """A frame that fails the checks of protocol.md §Framing; ``code`` says which."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(f"{code.name}: {message}")
        self.code = code


class EncodeError(ValueError):
    """A frame that cannot be encoded (a name over 255 bytes, a secret over 2,048, ...)."""


# --------------------------------------------------------------------------------------------
# Frames. Names (queue, event, key, client name, user) are bytes on the wire; the encoders
# also take str (UTF-8).

Name = Union[str, bytes]


def to_bytes(name: Name) -> bytes:
    if isinstance(name, str):
        return name.encode("utf-8", "surrogateescape")
    return bytes(name)


@dataclass(frozen=True)
class Auth:
    method: AuthMethod
    user: bytes
    secret: bytes


@dataclass(frozen=True)
class Resume:
    session_id: int
    resume_token: bytes
    last_delivery_seq: int
    first_resendable_publish_seq: int


@dataclass(frozen=True)
class Hello:
    inflight_window: int = 0
    client_name: bytes = b""
    resume: Resume | None = None
    auth: Auth | None = None


@dataclass(frozen=True)
class Publish:
    seq: int
    queue: bytes
    event: bytes
    payload: bytes
    key: bytes | None = None


@dataclass(frozen=True)
class Subscribe:
    queue: bytes
    event: bytes | None  # None = ALL_EVENTS


@dataclass(frozen=True)
class Unsubscribe:
    queue: bytes
    event: bytes | None


@dataclass(frozen=True)
class Subscribed:
    queue: bytes
    event: bytes | None


@dataclass(frozen=True)
class Unsubscribed:
    queue: bytes
    event: bytes | None


@dataclass(frozen=True)
class Ack:
    up_to: int
    seqs: tuple[int, ...] = ()


@dataclass(frozen=True)
class Ping:
    nonce: int


@dataclass(frozen=True)
class Pong:
    nonce: int


@dataclass(frozen=True)
class Bye:
    pass


@dataclass(frozen=True)
class Stats:
    pass


@dataclass(frozen=True)
class Welcome:
    outcome: int
    lost_reason: int
    missed: int
    session_id: int
    resume_token: bytes
    last_publish_seq: int
    max_frame_len: int
    inflight_window: int
    heartbeat_interval_ms: int
    heartbeat_timeout_ms: int
    max_queue_depth: int
    max_queue_bytes: int


@dataclass(frozen=True)
class Deliver:
    seq: int
    message_id: int
    flags: int
    queue: bytes
    event: bytes
    payload: bytes

    @property
    def redelivered(self) -> bool:
        return bool(self.flags & DELIVER_REDELIVERED)


@dataclass(frozen=True)
class Receipt:
    seq: int


@dataclass(frozen=True)
class Error:
    code: int
    flags: int
    ref_seq: int
    text: str

    @property
    def fatal(self) -> bool:
        return bool(self.flags & ERROR_FATAL)


@dataclass(frozen=True)
class Goodbye:
    code: int
    text: str


@dataclass(frozen=True)
class StatsReply:
    json: bytes


Frame = Union[
    Hello, Publish, Subscribe, Unsubscribe, Ack, Ping, Pong, Bye, Stats,
    Welcome, Deliver, Receipt, Subscribed, Unsubscribed, Error, Goodbye, StatsReply,
]


# --------------------------------------------------------------------------------------------
# Encoding


def _str8(name: bytes) -> bytes:
    if len(name) > MAX_NAME_LEN:
        raise EncodeError(f"name of {len(name)} bytes, the longest is {MAX_NAME_LEN}")
    return bytes((len(name),)) + name


def _frame(op: int, body: bytes) -> bytes:
    return _HDR.pack(len(body) + HEADER_LEN, VERSION, op) + body


def encode_hello(h: Hello) -> bytes:
    flags = (HELLO_RESUME if h.resume else 0) | (HELLO_AUTH if h.auth else 0)
    parts = [bytes((flags,)), _U32.pack(h.inflight_window), _str8(h.client_name)]
    if h.resume is not None:
        r = h.resume
        if len(r.resume_token) != 16:
            raise EncodeError("resume_token must be 16 bytes")
        parts += [_U64.pack(r.session_id), r.resume_token, _U64.pack(r.last_delivery_seq),
                  _U64.pack(r.first_resendable_publish_seq)]
    if h.auth is not None:
        a = h.auth
        if len(a.secret) > MAX_AUTH_SECRET_LEN:
            raise EncodeError(f"secret of {len(a.secret)} bytes, at most {MAX_AUTH_SECRET_LEN}")
        parts += [bytes((int(a.method),)), _str8(a.user), _U16.pack(len(a.secret)), a.secret]
    return _frame(Op.HELLO, b"".join(parts))


def encode_publish(seq: int, queue: bytes, event: bytes, payload: bytes,
                   key: bytes | None = None) -> bytes:
    if key is None:
        body = b"".join((_U64.pack(seq), b"\x00", _str8(queue), _str8(event), payload))
    else:
        body = b"".join((_U64.pack(seq), b"\x01", _str8(queue), _str8(event), _str8(key),
                         payload))
    return _frame(Op.PUBLISH, body)


def _sub_body(queue: bytes, event: bytes | None) -> bytes:
    if event is None:
        return b"\x01" + _str8(queue) + b"\x00"
    return b"\x00" + _str8(queue) + _str8(event)


def encode_ack(up_to: int, seqs: tuple[int, ...] | list[int] = ()) -> bytes:
    if len(seqs) > MAX_ACK_SEQS:
        raise EncodeError(f"{len(seqs)} listed seqs, at most {MAX_ACK_SEQS}")
    body = _U64.pack(up_to) + _U16.pack(len(seqs)) + b"".join(_U64.pack(s) for s in seqs)
    return _frame(Op.ACK, body)


def encode(frame: Frame) -> bytes:
    """Encode any frame (both directions, so tests can play the server)."""
    match frame:
        case Hello():
            return encode_hello(frame)
        case Publish(seq, queue, event, payload, key):
            return encode_publish(seq, queue, event, payload, key)
        case Subscribe(queue, event):
            return _frame(Op.SUBSCRIBE, _sub_body(queue, event))
        case Unsubscribe(queue, event):
            return _frame(Op.UNSUBSCRIBE, _sub_body(queue, event))
        case Subscribed(queue, event):
            return _frame(Op.SUBSCRIBED, _sub_body(queue, event))
        case Unsubscribed(queue, event):
            return _frame(Op.UNSUBSCRIBED, _sub_body(queue, event))
        case Ack(up_to, seqs):
            return encode_ack(up_to, seqs)
        case Ping(nonce):
            return _frame(Op.PING, _U64.pack(nonce))
        case Pong(nonce):
            return _frame(Op.PONG, _U64.pack(nonce))
        case Bye():
            return _frame(Op.BYE, b"")
        case Stats():
            return _frame(Op.STATS, b"")
        case Welcome():
            w = frame
            if len(w.resume_token) != 16:
                raise EncodeError("resume_token must be 16 bytes")
            body = (bytes((w.outcome,)) + _U16.pack(w.lost_reason) + _U64.pack(w.missed)
                    + _U64.pack(w.session_id) + w.resume_token + _U64.pack(w.last_publish_seq)
                    + struct.pack(">IIIII", w.max_frame_len, w.inflight_window,
                                  w.heartbeat_interval_ms, w.heartbeat_timeout_ms,
                                  w.max_queue_depth)
                    + _U64.pack(w.max_queue_bytes))
            return _frame(Op.WELCOME, body)
        case Deliver(seq, message_id, flags, queue, event, payload):
            body = (_U64.pack(seq) + _U64.pack(message_id) + bytes((flags,)) + _str8(queue)
                    + _str8(event) + payload)
            return _frame(Op.DELIVER, body)
        case Receipt(seq):
            return _frame(Op.RECEIPT, _U64.pack(seq))
        case Error(code, flags, ref_seq, text):
            body = _U16.pack(code) + bytes((flags,)) + _U64.pack(ref_seq) + text.encode()
            return _frame(Op.ERROR, body)
        case Goodbye(code, text):
            return _frame(Op.GOODBYE, _U16.pack(code) + text.encode())
        case StatsReply(json):
            return _frame(Op.STATS_REPLY, json)
    raise EncodeError(f"not a frame: {frame!r}")


# --------------------------------------------------------------------------------------------
# Decoding


class _Body:
    """A cursor over one frame body; every read past the end is MALFORMED_FRAME."""

    __slots__ = ("buf", "pos", "end")

    def __init__(self, buf: bytes | bytearray | memoryview, pos: int, end: int) -> None:
        self.buf, self.pos, self.end = buf, pos, end

    def _need(self, n: int) -> int:
        p = self.pos
        if p + n > self.end:
            raise DecodeError(ErrorCode.MALFORMED_FRAME, "field runs past the end of the frame")
        self.pos = p + n
        return p

    def u8(self) -> int:
        return self.buf[self._need(1)]

    def u16(self) -> int:
        return _U16.unpack_from(self.buf, self._need(2))[0]

    def u32(self) -> int:
        return _U32.unpack_from(self.buf, self._need(4))[0]

    def u64(self) -> int:
        return _U64.unpack_from(self.buf, self._need(8))[0]

    def raw(self, n: int) -> bytes:
        p = self._need(n)
        return bytes(self.buf[p:p + n])

    def str8(self) -> bytes:
        return self.raw(self.u8())

    def rest(self) -> bytes:
        p = self.pos
        self.pos = self.end
        return bytes(self.buf[p:self.end])

    def done(self) -> None:
        if self.pos != self.end:
            raise DecodeError(ErrorCode.MALFORMED_FRAME, "bytes left after the last field")


def _flags(b: _Body, allowed: int) -> int:
    f = b.u8()
    if f & ~allowed:
        raise DecodeError(ErrorCode.MALFORMED_FRAME, f"undefined flag bits {f:#04x}")
    return f


def _sub_fields(b: _Body) -> tuple[bytes, bytes | None]:
    f = _flags(b, SUB_ALL_EVENTS)
    queue = b.str8()
    event = b.str8()
    b.done()
    if f & SUB_ALL_EVENTS:
        if event:
            raise DecodeError(ErrorCode.MALFORMED_FRAME, "event name given with ALL_EVENTS")
        return queue, None
    return queue, event


def decode_body(op: int, buf: bytes | bytearray | memoryview, start: int, end: int) -> Frame:
    """Parse the body ``buf[start:end]`` of a frame with op code ``op``."""
    b = _Body(buf, start, end)
    if op == Op.DELIVER:
        seq = b.u64()
        mid = b.u64()
        flags = b.u8()  # kept as sent (protocol.md §DELIVER)
        queue = b.str8()
        event = b.str8()
        return Deliver(seq, mid, flags, queue, event, b.rest())
    if op == Op.RECEIPT:
        seq = b.u64()
        b.done()
        return Receipt(seq)
    if op == Op.PUBLISH:
        seq = b.u64()
        f = _flags(b, PUBLISH_CONFLATE)
        queue = b.str8()
        event = b.str8()
        key = b.str8() if f & PUBLISH_CONFLATE else None
        return Publish(seq, queue, event, b.rest(), key)
    if op == Op.ACK:
        up_to = b.u64()
        count = b.u16()
        if end - b.pos != 8 * count:
            raise DecodeError(ErrorCode.MALFORMED_FRAME, "ACK count disagrees with the seqs")
        seqs = tuple(b.u64() for _ in range(count))
        return Ack(up_to, seqs)
    if op in (Op.PING, Op.PONG):
        nonce = b.u64()
        b.done()
        return Ping(nonce) if op == Op.PING else Pong(nonce)
    if op in (Op.BYE, Op.STATS):
        b.done()
        return Bye() if op == Op.BYE else Stats()
    if op in (Op.SUBSCRIBE, Op.UNSUBSCRIBE, Op.SUBSCRIBED, Op.UNSUBSCRIBED):
        q, e = _sub_fields(b)
        if op == Op.SUBSCRIBE:
            return Subscribe(q, e)
        if op == Op.UNSUBSCRIBE:
            return Unsubscribe(q, e)
        if op == Op.SUBSCRIBED:
            return Subscribed(q, e)
        return Unsubscribed(q, e)
    if op == Op.WELCOME:
        w = Welcome(
            outcome=b.u8(), lost_reason=b.u16(), missed=b.u64(), session_id=b.u64(),
            resume_token=b.raw(16), last_publish_seq=b.u64(), max_frame_len=b.u32(),
            inflight_window=b.u32(), heartbeat_interval_ms=b.u32(),
            heartbeat_timeout_ms=b.u32(), max_queue_depth=b.u32(), max_queue_bytes=b.u64())
        b.done()
        return w
    if op == Op.ERROR:
        code = b.u16()
        flags = b.u8()
        ref = b.u64()
        return Error(code, flags, ref, b.rest().decode("utf-8", "replace"))
    if op == Op.GOODBYE:
        code = b.u16()
        return Goodbye(code, b.rest().decode("utf-8", "replace"))
    if op == Op.STATS_REPLY:
        return StatsReply(b.rest())
    if op == Op.HELLO:
        f = _flags(b, HELLO_RESUME | HELLO_AUTH)
        window = b.u32()
        name = b.str8()
        resume = None
        auth = None
        if f & HELLO_RESUME:
            resume = Resume(b.u64(), b.raw(16), b.u64(), b.u64())
        if f & HELLO_AUTH:
            m = b.u8()
            if m not in (1, 2, 3):
                raise DecodeError(ErrorCode.MALFORMED_FRAME, f"unknown auth method {m}")
            user = b.str8()
            slen = b.u16()
            if slen > MAX_AUTH_SECRET_LEN:
                raise DecodeError(ErrorCode.MALFORMED_FRAME, "auth secret too long")
            auth = Auth(AuthMethod(m), user, b.raw(slen))
        b.done()
        return Hello(window, name, resume, auth)
    raise DecodeError(ErrorCode.UNKNOWN_OP, f"op {op:#04x}")


class Decoder:
    """Incremental frame decoder.

    :meth:`feed` appends bytes; :meth:`next` returns the next complete frame or ``None`` when
    more bytes are needed. The header is checked before the body is waited for, in the order
    of protocol.md §Framing, so an over-long length is refused as soon as its 4 bytes are
    present, without buffering the body. After a :class:`DecodeError` the stream cannot be
    framed any more; the decoder keeps raising it.
    """

    def __init__(self, max_len: int = PRE_WELCOME_MAX_LEN) -> None:
        self.max_len = max_len
        self._buf = bytearray()
        self._pos = 0
        self._error: DecodeError | None = None

    def feed(self, data: bytes) -> None:
        if self._error is not None:
            raise self._error
        if self._pos and self._pos == len(self._buf):
            self._buf.clear()
            self._pos = 0
        self._buf += data
        self._check_header()

    def buffered(self) -> int:
        return len(self._buf) - self._pos

    def _check_header(self) -> None:
        buf, pos = self._buf, self._pos
        avail = len(buf) - pos
        try:
            if avail >= 4:
                length = _U32.unpack_from(buf, pos)[0]
                if length < HEADER_LEN:
                    raise DecodeError(ErrorCode.FRAME_TOO_SHORT, f"length {length}")
                if length > self.max_len:
                    raise DecodeError(ErrorCode.FRAME_TOO_LARGE,
                                      f"length {length} above the limit {self.max_len}")
            if avail >= 5 and buf[pos + 4] != VERSION:
                raise DecodeError(ErrorCode.UNSUPPORTED_VERSION, f"version {buf[pos + 4]}")
            if avail >= 6 and buf[pos + 5] not in _OPS:
                raise DecodeError(ErrorCode.UNKNOWN_OP, f"op {buf[pos + 5]:#04x}")
        except DecodeError as e:
            self._error = e
            raise

    def next(self) -> Frame | None:
        if self._error is not None:
            raise self._error
        self._check_header()
        buf, pos = self._buf, self._pos
        if len(buf) - pos < 6:
            self._compact()
            return None
        length = _U32.unpack_from(buf, pos)[0]
        end = pos + LEN_PREFIX_LEN + length
        if end > len(buf):
            self._compact()
            return None
        try:
            frame = decode_body(buf[pos + 5], buf, pos + 6, end)
        except DecodeError as e:
            self._error = e
            raise
        self._pos = end
        return frame

    def __iter__(self):
        while (f := self.next()) is not None:
            yield f

    def _compact(self) -> None:
        if self._pos:
            del self._buf[:self._pos]
            self._pos = 0
