"""The asyncio Weir client: one session over a connection that it re-establishes and resumes
(protocol.md §Reconnection)."""

from __future__ import annotations

import asyncio
import collections
import inspect
import itertools
import json
import logging
import ssl
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Iterable, Union

from . import protocol as P
from .errors import (AuthFailed, AuthRequired, ConnectionClosed,
                     ProtocolViolation, ServerError, SessionLost, Timeout, WeirError,
                     server_error)
from .protocol import ErrorCode, Name, to_bytes
from .ws import WebSocketError, WsLink
from .ws import parse_url as parse_ws_url

__all__ = ["Client", "Delivery", "Subscription", "Resumed", "ReconnectFailed", "Event",
           "SubscriptionEnded"]

_READ_SIZE = 256 * 1024
log = logging.getLogger("weir")
_NAME_CACHE: dict[bytes, str] = {}


def _name_str(b: bytes) -> str:
    s = _NAME_CACHE.get(b)
    if s is None:
        s = b.decode("utf-8", "surrogateescape")
        if len(_NAME_CACHE) < 4096:
            _NAME_CACHE[b] = s
    return s


@dataclass(frozen=True, slots=True)
class Delivery:
    """One message as the application receives it (protocol.md §DELIVER)."""

    seq: int
    message_id: int
    queue: str
    event: str
    payload: bytes
    redelivered: bool


@dataclass(frozen=True)
class Resumed:
    """Event: the connection was lost and the session resumed with nothing lost."""

    session_id: int
    last_publish_seq: int
    resent_publishes: int


class SubscriptionEnded(WeirError):
    """The subscription was unsubscribed, or its client closed by the application."""


class ReconnectFailed(WeirError):
    """The client gave up reconnecting (``give_up_after`` passed); ``last`` is the last error."""

    def __init__(self, last: BaseException | None) -> None:
        super().__init__(f"gave up reconnecting: {last!r}")
        self.last = last


Event = Union[Resumed, SessionLost]


class _Pub:
    __slots__ = ("queue", "event", "payload", "key", "future", "error")

    def __init__(self, queue: bytes, event: bytes, payload: bytes, key: bytes | None,
                 future: asyncio.Future[None]) -> None:
        self.queue, self.event, self.payload, self.key = queue, event, payload, key
        self.future = future
        self.error: BaseException | None = None


class _Ctl:
    """A request answered by a control frame: SUBSCRIBE, UNSUBSCRIBE or STATS."""

    __slots__ = ("kind", "key", "frame", "future")

    def __init__(self, kind: str, key: Any, frame: bytes, future: asyncio.Future[Any]) -> None:
        self.kind, self.key, self.frame, self.future = kind, key, frame, future


class _Cause:
    """Why a connection ended, and whether the session may be resumed."""

    def __init__(self, exc: BaseException, resume: bool) -> None:
        self.exc, self.resume = exc, resume


class _Conn:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                 decoder: P.Decoder, welcome: P.Welcome, ws: WsLink | None = None) -> None:
        self.reader, self.writer, self.decoder, self.welcome = reader, writer, decoder, welcome
        #: the WebSocket framing, or None on TCP
        self.ws = ws
        self._loop = asyncio.get_running_loop()
        self.last_rx = self._loop.time()
        self.dead = False
        # Frames written in one event-loop iteration go out in one send (a syscall per
        # frame cost a third of the client's time at high publish rates).
        self._pending: list[bytes] = []

    def write(self, data: bytes) -> None:
        if self.dead:
            return
        if not self._pending:
            self._loop.call_soon(self.flush)
        self._pending.append(data)

    def flush(self) -> None:
        """Hands everything written since the last flush to the transport, in order."""
        if self._pending and not self.dead:
            if self.ws is not None:
                # one binary message per frame (protocol.md §WebSocket), one socket write
                self.ws.send(self.writer, self._pending)
                self._pending.clear()
                return
            data = b"".join(self._pending)
            self._pending.clear()
            self.writer.write(data)
        else:
            self._pending.clear()

    def abort(self) -> None:
        self.dead = True
        try:
            self.writer.transport.abort()
        except Exception:  # pragma: no cover - already closed
            pass


_END = object()

DeliveryCallback = Callable[[Delivery], Union[None, Awaitable[None]]]


class Subscription:
    """Deliveries of one queue, all its events or some of them.

    Await it to wait for SUBSCRIBED (``sub = await client.subscribe(...)``), iterate it with
    ``async for`` (or call :meth:`get`) to take deliveries. A delivery is acknowledged once the
    application has taken it; deliveries never taken hold the server's in-flight window open,
    so iterate every subscription you make (or :meth:`unsubscribe` it).
    """

    def __init__(self, client: Client, queue: bytes, events: tuple[bytes, ...] | None,
                 callback: DeliveryCallback | None, raise_lost: bool) -> None:
        self._client = client
        self.queue = queue
        self.events = events
        self._event_set = None if events is None else frozenset(events)
        self._callback = callback
        self._raise_lost = raise_lost
        self._q: asyncio.Queue[Any] = asyncio.Queue()
        self._ready: asyncio.Future[None] | None = None
        self._active = True
        self._queued = 0  # deliveries in _q

    @property
    def keys(self) -> list[tuple[bytes, bytes | None]]:
        if self.events is None:
            return [(self.queue, None)]
        return [(self.queue, e) for e in self.events]

    def matches(self, queue: bytes, event: bytes) -> bool:
        return self._active and queue == self.queue and (
            self._event_set is None or event in self._event_set)

    # -- delivery intake (called by the client) --

    def _put(self, d: Delivery, gen: int) -> None:
        if self._callback is not None:
            try:
                r = self._callback(d)
            except Exception:
                log.exception("weir: subscription callback failed on delivery %d", d.seq)
                self._client._taken(d.seq, gen)
                return
            if inspect.isawaitable(r):
                async def wait() -> None:
                    try:
                        await r
                    except Exception:
                        log.exception("weir: subscription callback failed on delivery %d",
                                      d.seq)
                    finally:
                        self._client._taken(d.seq, gen)
                asyncio.ensure_future(wait())
            else:
                self._client._taken(d.seq, gen)
        else:
            self._queued += 1
            self._q.put_nowait((d, gen))

    def _notify(self, item: Any) -> None:
        if self._callback is None:
            self._q.put_nowait(item)

    # -- application side --

    async def _wait_ready(self) -> Subscription:
        if self._ready is not None:
            await self._ready
        return self

    def __await__(self):  # type: ignore[no-untyped-def]
        return self._wait_ready().__await__()

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> Delivery:
        try:
            return await self.get()
        except SubscriptionEnded:
            raise StopAsyncIteration from None

    async def get(self, timeout: float | None = None) -> Delivery:
        """The next delivery. Raises the client's terminal error when it failed,
        :class:`SessionLost` when ``raise_lost`` was set and the session was lost, and
        :class:`SubscriptionEnded` after :meth:`unsubscribe` or :meth:`Client.close`."""
        if self._ready is not None and not self._ready.done():
            await self._ready
        while True:
            if timeout is None:
                item = await self._q.get()
            else:
                try:
                    item = await asyncio.wait_for(self._q.get(), timeout)
                except asyncio.TimeoutError:
                    raise Timeout("no delivery within the timeout") from None
            if type(item) is tuple:
                d, gen = item
                self._queued -= 1
                self._client._taken(d.seq, gen)
                return d
            if item is _END:
                self._q.put_nowait(_END)  # every later call ends too
                exc = self._client._terminal
                if self._active and exc is not None and not self._client._closed_by_us:
                    raise exc
                raise SubscriptionEnded("the subscription or its client was closed")
            if isinstance(item, SessionLost):
                if self._raise_lost:
                    raise item
                continue

    def pending(self) -> int:
        """Deliveries received and not yet taken."""
        return self._queued

    async def unsubscribe(self) -> None:
        """Stop this subscription. Deliveries not taken yet are released (acknowledged)."""
        if not self._active:
            return
        self._active = False
        while not self._q.empty():
            item = self._q.get_nowait()
            if type(item) is tuple:
                self._queued -= 1
                self._client._taken(item[0].seq, item[1])
        await self._client._unsubscribe(self)
        self._q.put_nowait(_END)


class Client:
    """One Weir session. Create with :meth:`connect`.

    Reconnection: when the connection ends for a reason the session survives (EOF, reset, a
    server that went silent for ``heartbeat_timeout_ms``, GOODBYE(HEARTBEAT_TIMEOUT)...), the
    client reconnects with backoff and resumes: unreceipted publishes are sent again with their
    seqs, deliveries already received are dropped by seq. A resume answered LOST is reported
    as a :class:`SessionLost` event; the client then subscribes again and (with
    ``republish_on_lost``) publishes the unreceipted messages again on the new session.
    Events (:class:`Resumed`, :class:`SessionLost`) go to ``on_event`` and to
    :meth:`next_event`.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 7400, *, url: str | None = None,
                 name: Name = "", user: Name | None = None,
                 password: str | bytes | None = None, token: str | bytes | None = None,
                 signed_token: str | bytes | None = None, tls: ssl.SSLContext | None = None,
                 server_hostname: str | None = None, inflight_window: int = 0,
                 reconnect: bool = True, reconnect_delay: float = 0.05,
                 reconnect_max_delay: float = 2.0, give_up_after: float = 60.0,
                 connect_timeout: float = 10.0, heartbeat_timeout: float | None = None,
                 republish_on_lost: bool = True, ack_delay: float = 0.005,
                 max_unreceipted: int = 65536,
                 on_event: Callable[[Event], None] | None = None) -> None:
        self.host, self.port = host, port
        self.url = url
        self._ws_uri: Any = None
        if url is not None:
            self._ws_uri = parse_ws_url(url)  # ImportError without websockets, ValueError
            self.host, self.port = self._ws_uri.host, self._ws_uri.port
            if self._ws_uri.secure:
                if tls is None:
                    tls = ssl.create_default_context()
            elif tls is not None:
                raise ValueError(f"tls= given with a ws:// URL ({url}): use wss://")
        self._name = to_bytes(name)
        self._auth = self._make_auth(user, password, token, signed_token)
        self._tls = tls
        self._server_hostname = server_hostname
        self._window_req = inflight_window
        self._reconnect = reconnect
        self._reconnect_delay = reconnect_delay
        self._reconnect_max_delay = reconnect_max_delay
        self._give_up_after = give_up_after
        self._connect_timeout = connect_timeout
        self._hb_timeout_override = heartbeat_timeout
        self._republish_on_lost = republish_on_lost
        self._ack_delay = ack_delay
        self._on_event = on_event
        self._max_unreceipted = max_unreceipted

        self._loop = asyncio.get_running_loop()
        self._conn: _Conn | None = None
        self._welcome: P.Welcome | None = None
        self._session_id = 0
        self._token = b""
        self._gen = 0
        self._last_delivery_seq = 0
        self._next_pub_seq = 1
        self._outbox: collections.OrderedDict[int, _Pub] = collections.OrderedDict()
        self._subs: list[Subscription] = []
        self._wanted: collections.Counter[tuple[bytes, bytes | None]] = collections.Counter()
        self._ctl: collections.deque[_Ctl] = collections.deque()
        self._refs: dict[int, int] = {}
        self._reset_acks()
        self._ack_handle: asyncio.TimerHandle | None = None
        self._events: asyncio.Queue[Event] = asyncio.Queue()
        self._terminal: BaseException | None = None
        self._closing = False
        self._closed_by_us = False
        self._done = self._loop.create_future()
        self._supervisor: asyncio.Task[None] | None = None
        self._nonce = itertools.count(1)
        #: counters, for tests and monitoring
        self.reconnects = 0
        self.resumes = 0
        self.losses: list[SessionLost] = []
        self.duplicates_dropped = 0

    # ---------------------------------------------------------------- construction

    @staticmethod
    def _make_auth(user: Name | None, password: str | bytes | None, token: str | bytes | None,
                   signed_token: str | bytes | None) -> P.Auth | None:
        given = sum(x is not None for x in (password, token, signed_token))
        if given > 1:
            raise ValueError("give one of password, token, signed_token")
        sec = lambda s: s.encode() if isinstance(s, str) else bytes(s)  # noqa: E731
        if password is not None:
            if user is None:
                raise ValueError("a password needs a user")
            return P.Auth(P.AuthMethod.PASSWORD, to_bytes(user), sec(password))
        if user is not None:
            raise ValueError("a user needs a password")
        if token is not None:
            return P.Auth(P.AuthMethod.TOKEN, b"", sec(token))
        if signed_token is not None:
            return P.Auth(P.AuthMethod.SIGNED_TOKEN, b"", sec(signed_token))
        return None

    @classmethod
    async def connect(cls, host: str = "127.0.0.1", port: int = 7400, *,
                      url: str | None = None, **options: Any) -> Client:
        """Open a connection and a new session. Raises :class:`AuthFailed`,
        :class:`AuthRequired`, other :class:`ServerError`\\ s, ``OSError`` or :class:`Timeout`;
        the first connection is not retried.

        ``url="ws://host:port/"`` (or ``wss://``, with ``tls=`` an ``ssl.SSLContext`` or, by
        default, ``ssl.create_default_context()``) connects to a WebSocket listener
        (protocol.md §WebSocket) instead of ``host``/``port``; everything else is as on TCP.
        It needs the ``websockets`` package (``pip install 'weir[websocket]'``): without it,
        ``ImportError``. A refused upgrade raises :class:`~weir.ws.WebSocketError`."""
        if url is None and "://" in host:
            url = host
        self = cls(host, port, url=url, **options)
        conn = await self._handshake(resume=False)
        self._apply_welcome(conn)
        self._supervisor = asyncio.ensure_future(self._supervise(conn))
        return self

    # ---------------------------------------------------------------- public state

    @property
    def session_id(self) -> int:
        return self._session_id

    @property
    def welcome(self) -> P.Welcome:
        assert self._welcome is not None
        return self._welcome

    @property
    def connected(self) -> bool:
        return self._conn is not None and not self._conn.dead

    @property
    def unreceipted(self) -> int:
        return len(self._outbox)

    async def next_event(self, timeout: float | None = None) -> Event:
        """The next :class:`Resumed` or :class:`SessionLost` event."""
        try:
            return await asyncio.wait_for(self._events.get(), timeout)
        except asyncio.TimeoutError:
            raise Timeout("no event within the timeout") from None

    # ---------------------------------------------------------------- handshake

    async def _handshake(self, resume: bool) -> _Conn:
        async def attempt() -> _Conn:
            kw: dict[str, Any] = {}
            if self._tls is not None:
                kw["ssl"] = self._tls
                if self._server_hostname is not None:
                    kw["server_hostname"] = self._server_hostname
            reader, writer = await asyncio.open_connection(self.host, self.port, **kw)
            try:
                ws = None
                if self._ws_uri is not None:
                    ws = WsLink(self._ws_uri, P.PRE_WELCOME_MAX_LEN + P.LEN_PREFIX_LEN)
                    await ws.upgrade(reader, writer, _READ_SIZE)
                res = None
                if resume:
                    res = P.Resume(self._session_id, self._token, self._last_delivery_seq,
                                   self._first_resendable())
                hello = P.encode_hello(P.Hello(self._window_req, self._name, res, self._auth))
                if ws is not None:
                    ws.send(writer, [hello])
                else:
                    writer.write(hello)
                dec = P.Decoder(P.PRE_WELCOME_MAX_LEN)
                if ws is not None:
                    dec.feed(ws.receive(b"", writer))  # anything that came with the 101
                while True:
                    frame = dec.next()
                    if frame is not None:
                        break
                    if ws is not None and ws.end is not None:
                        raise ws.end
                    data = await reader.read(_READ_SIZE)
                    if not data:
                        raise ConnectionResetError("connection closed before WELCOME")
                    dec.feed(data if ws is None else ws.receive(data, writer))
                if isinstance(frame, P.Error):
                    raise server_error(frame.code, frame.text, frame.fatal, frame.ref_seq)
                if isinstance(frame, P.Goodbye):
                    raise ConnectionClosed(frame.code, frame.text)
                if not isinstance(frame, P.Welcome):
                    raise ProtocolViolation(ErrorCode.UNKNOWN_OP,
                                            f"expected WELCOME, got {type(frame).__name__}")
                dec.max_len = frame.max_frame_len + P.DELIVER_SLACK
                if ws is not None:
                    ws.set_max_message(dec.max_len + P.LEN_PREFIX_LEN)
                return _Conn(reader, writer, dec, frame, ws)
            except BaseException:
                writer.transport.abort()
                raise

        try:
            return await asyncio.wait_for(attempt(), self._connect_timeout)
        except asyncio.TimeoutError:
            raise Timeout("no WELCOME within connect_timeout") from None
        except P.DecodeError as e:
            raise ProtocolViolation(e.code, str(e)) from None

    def _first_resendable(self) -> int:
        for seq in self._outbox:
            return seq
        return self._next_pub_seq

    def _apply_welcome(self, conn: _Conn) -> None:
        w = conn.welcome
        old_id = self._session_id
        self._welcome = w
        self._conn = conn
        if w.outcome == P.Outcome.RESUMED and old_id:
            self.resumes += 1
            resent = 0
            for seq in list(self._outbox):
                if seq > w.last_publish_seq:
                    break
                self._settle(self._outbox.pop(seq))
            for seq, pub in self._outbox.items():
                conn.write(P.encode_publish(seq, pub.queue, pub.event, pub.payload, pub.key))
                resent += 1
            for ctl in self._ctl:
                conn.write(ctl.frame)
            self._flush_acks(full=True)
            self._emit(Resumed(w.session_id, w.last_publish_seq, resent))
            return
        # NEW, or LOST: a new session
        self._session_id = w.session_id
        self._token = w.resume_token
        self._gen += 1
        self._last_delivery_seq = 0
        self._refs.clear()
        self._reset_acks()
        if not old_id:
            return
        # LOST: subscribe again, publish the unreceipted again (or fail them)
        lost = SessionLost(w.lost_reason, w.missed, old_id, w.session_id, len(self._outbox))
        self.losses.append(lost)
        old = list(self._outbox.values())
        self._outbox.clear()
        self._next_pub_seq = 1
        # subscribe again: queued ahead of the pending requests, so that replies, which come
        # in request order, are matched to the right request
        again = []
        for key in self._wanted:
            fut: asyncio.Future[Any] = self._loop.create_future()
            fut.add_done_callback(self._resubscribed)
            again.append(_Ctl("sub", key, P.encode(P.Subscribe(*key)), fut))
        self._ctl.extendleft(reversed(again))
        for ctl in self._ctl:
            conn.write(ctl.frame)
        for pub in old:
            if self._republish_on_lost:
                seq = self._next_pub_seq
                self._next_pub_seq += 1
                pub.error = None
                self._outbox[seq] = pub
                conn.write(P.encode_publish(seq, pub.queue, pub.event, pub.payload, pub.key))
            elif not pub.future.done():
                pub.future.set_exception(lost)
        for sub in self._subs:
            sub._notify(lost)
        self._emit(lost)

    @staticmethod
    def _resubscribed(fut: asyncio.Future[Any]) -> None:
        if not fut.cancelled() and fut.exception() is not None:
            log.warning("weir: subscribing again after LOST failed: %s", fut.exception())

    def _emit(self, ev: Event) -> None:
        self._events.put_nowait(ev)
        if self._on_event is not None:
            self._on_event(ev)

    # ---------------------------------------------------------------- connection life

    async def _supervise(self, conn: _Conn) -> None:
        try:
            while True:
                cause = await self._read_loop(conn)
                if self._conn is conn:
                    self._conn = None
                if self._closing:
                    self._finish(None if self._closed_by_us else cause.exc)
                    return
                if not cause.resume or not self._reconnect:
                    self._finish(cause.exc)
                    return
                conn = await self._reconnect_loop(cause.exc)
                self.reconnects += 1
                self._apply_welcome(conn)
        except WeirError as e:
            self._finish(e)
        except asyncio.CancelledError:
            self._finish(ConnectionClosed(ErrorCode.CLIENT_BYE, "client cancelled"))
            raise
        except BaseException as e:  # pragma: no cover - a bug; do not hang the application
            self._finish(e)
            raise

    async def _reconnect_loop(self, last: BaseException) -> _Conn:
        delay = self._reconnect_delay
        deadline = self._loop.time() + self._give_up_after
        while True:
            if self._closing:
                raise ConnectionClosed(ErrorCode.CLIENT_BYE, "closed while reconnecting")
            try:
                return await self._handshake(resume=True)
            except (AuthFailed, AuthRequired):
                raise
            except WebSocketError as e:
                if e.permanent:
                    raise  # the listener refuses this upgrade (4xx): trying again won't help
                last = e
            except ServerError as e:
                if e.code != ErrorCode.SERVER_BUSY:
                    raise
                last = e
            except (OSError, ssl.SSLError, Timeout, ConnectionClosed, ProtocolViolation,
                    EOFError) as e:
                last = e
            if self._loop.time() + delay > deadline:
                raise ReconnectFailed(last)
            await asyncio.sleep(delay)
            delay = min(delay * 2, self._reconnect_max_delay)

    async def _watchdog(self, conn: _Conn) -> None:
        w = conn.welcome
        timeout = (self._hb_timeout_override if self._hb_timeout_override is not None
                   else w.heartbeat_timeout_ms / 1000)
        interval = min(w.heartbeat_interval_ms / 1000, timeout / 2)
        step = max(min(interval / 2, 1.0), 0.01)
        pinged_at = 0.0
        while not conn.dead:
            await asyncio.sleep(step)
            idle = self._loop.time() - conn.last_rx
            if idle >= timeout:
                conn.abort()  # the read loop sees the connection end and resumes
                return
            if idle >= interval and self._loop.time() - pinged_at >= interval:
                pinged_at = self._loop.time()
                conn.write(P.encode(P.Ping(next(self._nonce))))

    async def _read_loop(self, conn: _Conn) -> _Cause:
        watchdog = asyncio.ensure_future(self._watchdog(conn))
        try:
            while True:
                for frame in conn.decoder:
                    cause = self._handle(conn, frame)
                    if cause is not None:
                        return cause
                ws = conn.ws
                if ws is not None and ws.end is not None:
                    # a close (or text message, broken framing) after the frames before it:
                    # a GOODBYE or ERROR among those decided already; otherwise resume
                    return _Cause(ws.end, True)
                data = await conn.reader.read(_READ_SIZE)
                if not data:
                    return _Cause(ConnectionClosed(0, "connection closed by peer"), True)
                conn.last_rx = self._loop.time()
                conn.decoder.feed(data if ws is None else ws.receive(data, conn.writer))
        except P.DecodeError as e:
            return _Cause(ProtocolViolation(e.code, str(e)), True)
        except (OSError, ssl.SSLError, EOFError, WebSocketError) as e:
            return _Cause(e, True)
        finally:
            watchdog.cancel()
            conn.abort()

    # ---------------------------------------------------------------- frames

    def _handle(self, conn: _Conn, f: P.Frame) -> _Cause | None:
        t = type(f)
        if t is P.Deliver:
            self._on_deliver(f)  # type: ignore[arg-type]
        elif t is P.Receipt:
            self._on_receipt(f.seq)  # type: ignore[union-attr]
        elif t is P.Ping:
            conn.write(P.encode(P.Pong(f.nonce)))  # type: ignore[union-attr]
        elif t is P.Pong:
            pass
        elif t is P.Subscribed:
            self._resolve_ctl("sub", (f.queue, f.event), None)  # type: ignore[union-attr]
        elif t is P.Unsubscribed:
            self._resolve_ctl("unsub", (f.queue, f.event), None)  # type: ignore[union-attr]
        elif t is P.StatsReply:
            self._resolve_ctl("stats", None, f.json)  # type: ignore[union-attr]
        elif t is P.Error:
            e: P.Error = f  # type: ignore[assignment]
            exc = server_error(e.code, e.text, e.fatal, e.ref_seq)
            if not e.fatal:
                if e.ref_seq:
                    # a refused PUBLISH: its seq is still receipted (ERROR comes first)
                    pub = self._outbox.get(e.ref_seq)
                    if pub is not None:
                        pub.error = exc
                else:
                    self._fail_ctl(exc)  # a refused SUBSCRIBE or STATS
                return None
            return _Cause(exc, False)
        elif t is P.Goodbye:
            g: P.Goodbye = f  # type: ignore[assignment]
            exc2 = ConnectionClosed(g.code, g.text)
            terminal = g.code in (ErrorCode.TAKEN_OVER, ErrorCode.CLIENT_BYE)
            return _Cause(exc2, not terminal)
        else:
            return _Cause(ProtocolViolation(ErrorCode.UNKNOWN_OP,
                                            f"unexpected {type(f).__name__}"), True)
        return None

    def _on_deliver(self, d: P.Deliver) -> None:
        seq = d.seq
        if seq <= self._last_delivery_seq:
            self.duplicates_dropped += 1
            return
        self._last_delivery_seq = seq
        delivery = Delivery(seq, d.message_id, _name_str(d.queue), _name_str(d.event),
                            d.payload, bool(d.flags & P.DELIVER_REDELIVERED))
        targets = [s for s in self._subs if s.matches(d.queue, d.event)]
        gen = self._gen
        if not targets:
            self._taken(seq, gen)
            return
        self._refs[seq] = len(targets)
        for s in targets:
            s._put(delivery, gen)

    def _settle(self, pub: _Pub) -> None:
        if not pub.future.done():
            if pub.error is not None:
                pub.future.set_exception(pub.error)
            else:
                pub.future.set_result(None)

    def _on_receipt(self, seq: int) -> None:
        box = self._outbox
        while box:
            first = next(iter(box))
            if first > seq:
                break
            self._settle(box.pop(first))

    def _resolve_ctl(self, kind: str, key: Any, value: Any) -> None:
        for ctl in self._ctl:
            if ctl.kind == kind and (key is None or ctl.key == key):
                self._ctl.remove(ctl)
                if not ctl.future.done():
                    ctl.future.set_result(value)
                return

    def _fail_ctl(self, exc: BaseException) -> None:
        for ctl in self._ctl:
            if ctl.kind in ("sub", "stats"):
                self._ctl.remove(ctl)
                if not ctl.future.done():
                    ctl.future.set_exception(exc)
                return

    # ---------------------------------------------------------------- acks

    def _reset_acks(self) -> None:
        self._taken_floor = 0  # every seq <= floor has been taken
        self._taken_above: set[int] = set()  # taken seqs > floor
        self._acked_floor = 0
        self._acked_above: set[int] = set()

    def _taken(self, seq: int, gen: int) -> None:
        if gen != self._gen:
            return  # a delivery of a session that is gone
        n = self._refs.pop(seq, 1) - 1
        if n > 0:
            self._refs[seq] = n
            return
        if seq == self._taken_floor + 1:
            floor = seq
            above = self._taken_above
            while floor + 1 in above:
                floor += 1
                above.discard(floor)
            self._taken_floor = floor
        elif seq > self._taken_floor:
            self._taken_above.add(seq)
        window = self._welcome.inflight_window if self._welcome else 1024
        unacked = (self._taken_floor - self._acked_floor
                   + len(self._taken_above) - len(self._acked_above))
        if unacked >= max(1, window // 4):
            self._flush_acks()
        elif self._ack_handle is None:
            self._ack_handle = self._loop.call_later(self._ack_delay, self._flush_acks)

    def _flush_acks(self, full: bool = False) -> None:
        if self._ack_handle is not None:
            self._ack_handle.cancel()
            self._ack_handle = None
        conn = self._conn
        if conn is None or conn.dead:
            return  # sent on resume (full=True)
        floor = self._taken_floor
        if self._acked_above:
            self._acked_above = {s for s in self._acked_above if s > floor}
        if full:
            new = sorted(self._taken_above)
        else:
            new = sorted(self._taken_above - self._acked_above)
        if floor == self._acked_floor and not new and not (full and floor):
            return
        new = new[:P.MAX_ACK_SEQS]
        conn.write(P.encode_ack(floor, new))
        self._acked_floor = floor
        self._acked_above.update(new)

    # ---------------------------------------------------------------- public calls

    def _check_usable(self) -> None:
        if self._terminal is not None:
            raise self._terminal
        if self._closing:
            raise ConnectionClosed(ErrorCode.CLIENT_BYE, "client is closing")

    def publish_nowait(self, queue: Name, event: Name, payload: bytes,
                       key: Name | None = None) -> asyncio.Future[None]:
        """Send a PUBLISH now; the future resolves when a RECEIPT covers it (or fails with
        :class:`NotAuthorized` when the server refused it)."""
        self._check_usable()
        q, e = to_bytes(queue), to_bytes(event)
        k = None if key is None else to_bytes(key)
        if not q:
            raise ValueError("queue name must not be empty")
        seq = self._next_pub_seq
        frame = P.encode_publish(seq, q, e, bytes(payload), k)  # raises EncodeError first
        if self._welcome is not None and len(frame) - P.LEN_PREFIX_LEN > self._welcome.max_frame_len:
            raise P.EncodeError(f"PUBLISH of {len(frame) - P.LEN_PREFIX_LEN} bytes is above "
                                f"WELCOME.max_frame_len {self._welcome.max_frame_len}")
        self._next_pub_seq = seq + 1
        fut: asyncio.Future[None] = self._loop.create_future()
        self._outbox[seq] = _Pub(q, e, bytes(payload), k, fut)
        conn = self._conn
        if conn is not None:
            conn.write(frame)
        return fut

    async def publish(self, queue: Name, event: Name, payload: bytes,
                      key: Name | None = None) -> None:
        """Publish and wait until the server's RECEIPT covers the message. While
        ``max_unreceipted`` publishes await their receipts, waits for room first."""
        while len(self._outbox) >= self._max_unreceipted:
            oldest = next(iter(self._outbox.values()))
            await asyncio.wait([oldest.future])
        fut = self.publish_nowait(queue, event, payload, key)
        conn = self._conn
        if conn is not None and not conn.dead:
            try:
                await conn.writer.drain()
            except (OSError, ssl.SSLError):
                pass  # the read loop handles the lost connection; the message is kept
        await fut

    def subscribe(self, queue: Name, events: Iterable[Name] | Name | None = None, *,
                  callback: DeliveryCallback | None = None,
                  raise_lost: bool = False) -> Subscription:
        """Subscribe to ``queue``: every event (``events=None``) or the ones named.

        Returns a :class:`Subscription` at once; ``await`` it to wait for SUBSCRIBED (raises
        :class:`NotAuthorized` if refused). With ``callback``, deliveries are passed to it (and
        acknowledged when it returns, or when the awaitable it returns completes) instead of
        being queued for iteration. With ``raise_lost``, iteration raises
        :class:`SessionLost` once when the session is lost, then goes on.
        """
        self._check_usable()
        q = to_bytes(queue)
        if not q:
            raise ValueError("queue name must not be empty")
        evs: tuple[bytes, ...] | None
        if events is None:
            evs = None
        elif isinstance(events, (str, bytes)):
            evs = (to_bytes(events),)
        else:
            evs = tuple(to_bytes(e) for e in events)
        if evs is not None and (not evs or any(not e for e in evs)):
            raise ValueError("event names must not be empty (use events=None for all)")
        sub = Subscription(self, q, evs, callback, raise_lost)
        futs = []
        for key in sub.keys:
            self._wanted[key] += 1
            futs.append(self._request("sub", key, P.encode(P.Subscribe(*key))))
        self._subs.append(sub)

        async def ready() -> None:
            try:
                await asyncio.gather(*futs)
            except BaseException:
                sub._active = False
                if sub in self._subs:
                    self._subs.remove(sub)
                for key in sub.keys:
                    self._wanted[key] -= 1
                    if self._wanted[key] <= 0:
                        del self._wanted[key]
                raise
        sub._ready = asyncio.ensure_future(ready())
        return sub

    async def _unsubscribe(self, sub: Subscription) -> None:
        if sub in self._subs:
            self._subs.remove(sub)
        futs = []
        for key in sub.keys:
            if key not in self._wanted:
                continue
            self._wanted[key] -= 1
            if self._wanted[key] <= 0:
                del self._wanted[key]
                if self._terminal is None:
                    futs.append(self._request("unsub", key, P.encode(P.Unsubscribe(*key))))
        if futs:
            await asyncio.gather(*futs)

    def _request(self, kind: str, key: Any, frame: bytes) -> asyncio.Future[Any]:
        fut: asyncio.Future[Any] = self._loop.create_future()
        if self._terminal is not None:
            fut.set_exception(self._terminal)
            return fut
        self._ctl.append(_Ctl(kind, key, frame, fut))
        conn = self._conn
        if conn is not None:
            conn.write(frame)
        return fut

    async def stats(self, timeout: float | None = 30.0) -> Any:
        """STATS: the server's introspection report (protocol.md §STATS_REPLY), parsed."""
        self._check_usable()
        fut = self._request("stats", None, P.encode(P.Stats()))
        try:
            raw = await asyncio.wait_for(fut, timeout)
        except asyncio.TimeoutError:
            raise Timeout("no STATS_REPLY within the timeout") from None
        return json.loads(raw.decode("utf-8", "replace"))

    async def ping(self) -> None:
        """Send a PING (the server's PONG only counts as activity)."""
        conn = self._conn
        if conn is not None:
            conn.write(P.encode(P.Ping(next(self._nonce))))

    async def wait_receipted(self, timeout: float | None = None) -> None:
        """Wait until every publish made so far is receipted."""
        futs = [p.future for p in self._outbox.values()]
        if futs:
            await asyncio.wait_for(asyncio.gather(*futs, return_exceptions=True), timeout)

    async def close(self, timeout: float = 10.0) -> None:
        """Wait (up to ``timeout``) for outstanding publishes' receipts, acknowledge what the
        application took, send BYE and wait for GOODBYE(CLIENT_BYE)."""
        if self._done.done():
            return
        if self._closing:
            await asyncio.shield(self._done)
            return
        try:
            await self.wait_receipted(timeout)
        except asyncio.TimeoutError:
            pass
        self._closing = True
        self._closed_by_us = True
        conn = self._conn
        if conn is not None and not conn.dead:
            self._flush_acks()
            conn.write(P.encode(P.Bye()))
            try:
                await asyncio.wait_for(asyncio.shield(self._done), timeout)
            except asyncio.TimeoutError:
                pass
        if self._supervisor is not None and not self._supervisor.done():
            self._supervisor.cancel()
            try:
                await self._supervisor
            except (asyncio.CancelledError, Exception):
                pass
        self._finish(None)

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()

    def abort(self) -> None:
        """Drop the connection without BYE (the session stays detached on the server) and stop.
        For tests, and for a process that is going away."""
        self._closing = True
        self._closed_by_us = True
        if self._conn is not None:
            self._conn.abort()
        if self._supervisor is not None:
            self._supervisor.cancel()
        self._finish(None)

    def _finish(self, exc: BaseException | None) -> None:
        if self._done.done():
            return
        if exc is None:
            exc = ConnectionClosed(ErrorCode.CLIENT_BYE, "client closed")
        self._terminal = exc
        if self._ack_handle is not None:
            self._ack_handle.cancel()
            self._ack_handle = None
        if self._conn is not None:
            self._conn.abort()
            self._conn = None
        for pub in self._outbox.values():
            if not pub.future.done():
                pub.future.set_exception(exc)
                pub.future.exception()  # mark retrieved: nobody may be waiting
        for ctl in self._ctl:
            if not ctl.future.done():
                ctl.future.set_exception(exc)
                ctl.future.exception()
        self._ctl.clear()
        for sub in self._subs:
            sub._q.put_nowait(_END)
        self._done.set_result(None)

    async def wait_closed(self) -> BaseException | None:
        """Wait until the client has ended; returns the terminal error (None after close)."""
        await asyncio.shield(self._done)
        return None if self._closed_by_us else self._terminal
