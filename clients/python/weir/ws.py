"""The WebSocket transport (protocol.md §WebSocket): Weir frames in RFC 6455 binary messages.

The client keeps its own asyncio streams (``asyncio.open_connection``, with ``ssl=`` for
``wss://``) and drives the Sans-I/O protocol of the ``websockets`` package over them: the
upgrade request, masking, control frames and close handling come from ``websockets``; writes
stay synchronous (one binary message per Weir frame, all frames of one event-loop iteration
in one socket write), and reads feed the Weir decoder exactly as on TCP. ``websockets`` is an
optional dependency (``pip install 'weir[websocket]'``), imported only for a ``ws://`` or
``wss://`` URL.
"""

from __future__ import annotations

import asyncio
from typing import Any

from .errors import ConnectionClosed, WeirError

__all__ = ["SUBPROTOCOL", "WebSocketError", "WsLink", "parse_url", "require_websockets"]

SUBPROTOCOL = "weir.v1"
_MISSING = ("ws:// and wss:// URLs need the 'websockets' package (>= 13): "
            "pip install 'weir[websocket]' (or pip install websockets)")


class WebSocketError(WeirError):
    """The WebSocket layer failed: the upgrade was refused (``status``: the HTTP status), the
    server's framing was broken, it sent a text message, or it closed with an error code
    (``close_code``: 1002, 1003, 1009...)."""

    def __init__(self, message: str, status: int | None = None,
                 close_code: int | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.close_code = close_code

    @property
    def permanent(self) -> bool:
        """A refusal that trying again will not change (4xx: no weir.v1, origin, version)."""
        return self.status is not None and 400 <= self.status < 500


def require_websockets() -> Any:
    """The ``websockets`` modules this transport uses; ImportError saying how to get them."""
    try:
        import websockets  # noqa: F401
        from websockets import client, frames, uri
        from websockets.typing import Subprotocol
    except ImportError as e:
        raise ImportError(_MISSING, name="websockets") from e
    if not hasattr(client, "ClientProtocol"):  # pragma: no cover - websockets < 11
        raise ImportError(_MISSING, name="websockets")
    return client, frames, uri, Subprotocol


def parse_url(url: str) -> Any:
    """A ``websockets.uri.WebSocketURI`` (``secure``, ``host``, ``port``, ``resource_name``);
    ValueError for anything but a ws:// or wss:// URL."""
    _, _, uri, _ = require_websockets()
    try:
        return uri.parse_uri(url)
    except Exception as e:  # websockets.exceptions.InvalidURI
        raise ValueError(f"not a ws:// or wss:// URL: {url!r} ({e})") from None


class WsLink:
    """One WebSocket connection's framing over a stream reader/writer pair."""

    def __init__(self, ws_uri: Any, max_message: int) -> None:
        client, frames, _, Subprotocol = require_websockets()
        self._frames = frames
        self._binary = frames.Opcode.BINARY
        self._cont = frames.Opcode.CONT
        self.proto = client.ClientProtocol(ws_uri, subprotocols=[Subprotocol(SUBPROTOCOL)],
                                           max_size=max_message)
        self._in_binary = False  # inside a fragmented binary message
        #: why the WebSocket ended (set once); frames received before it are still handled
        self.end: BaseException | None = None
        self._early: list[Any] = []

    def set_max_message(self, n: int) -> None:
        p = self.proto
        if hasattr(p, "max_message_size"):
            p.max_message_size = n
        else:  # pragma: no cover - websockets < 15
            p.max_size = n

    def _flush(self, writer: asyncio.StreamWriter) -> None:
        # an empty chunk is websockets' "half-close now": the connection is ending anyway
        data = b"".join(self.proto.data_to_send())
        if data:
            writer.write(data)

    async def upgrade(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                      read_size: int) -> None:
        """Sends the upgrade request (no Origin: protocol.md §WebSocket, origin rule) and
        reads the 101; raises :class:`WebSocketError` for a refusal."""
        p = self.proto
        p.send_request(p.connect())
        self._flush(writer)
        while True:
            data = await reader.read(read_size)
            if data:
                p.receive_data(data)
            else:
                p.receive_eof()
            events = p.events_received()
            if events:
                resp = events[0]
                if p.handshake_exc is not None:
                    status = getattr(resp, "status_code", None)
                    body = bytes(getattr(resp, "body", b"") or b"")
                    text = body.decode("utf-8", "replace").strip()
                    raise WebSocketError(
                        f"WebSocket upgrade refused: HTTP {status}"
                        f"{': ' + text if text else ''} ({p.handshake_exc})", status=status)
                if p.subprotocol != SUBPROTOCOL:
                    raise WebSocketError(f"the server did not select subprotocol "
                                         f"{SUBPROTOCOL!r} (got {p.subprotocol!r})")
                self._early = events[1:]
                return
            if p.handshake_exc is not None:
                if not data:
                    raise ConnectionResetError("connection closed during the WebSocket upgrade")
                raise WebSocketError(f"bad WebSocket upgrade answer: {p.handshake_exc}")
            if not data:
                raise ConnectionResetError("connection closed during the WebSocket upgrade")

    def send(self, writer: asyncio.StreamWriter, frames: list[bytes]) -> None:
        """One binary message per Weir frame, all in one write."""
        p = self.proto
        for f in frames:
            p.send_binary(f)
        self._flush(writer)

    def receive(self, data: bytes, writer: asyncio.StreamWriter) -> bytes:
        """Feeds bytes read from the socket (b"": only what came with the 101); returns the
        Weir bytes of the binary messages they completed (in order). Sets :attr:`end` at a close, a text message or broken
        framing; pongs and the close answer go out at once."""
        p = self.proto
        out: list[bytes] = []
        if self._early:
            events, self._early = self._early, []
            self._events(events, out)
        if self.end is None and data:
            p.receive_data(data)
            self._events(p.events_received(), out)
        if self.end is None and getattr(p, "parser_exc", None) is not None:
            exc = p.parser_exc
            code = 1009 if type(exc).__name__ == "PayloadTooBig" else 1002
            self.end = WebSocketError(f"broken WebSocket framing from the server: {exc}",
                                      close_code=code)
        try:
            self._flush(writer)
        except Exception:  # pragma: no cover - the transport is already closing
            pass
        return b"".join(out)

    def _events(self, events: list[Any], out: list[bytes]) -> None:
        op_text, op_close = self._frames.Opcode.TEXT, self._frames.Opcode.CLOSE
        for ev in events:
            if self.end is not None:
                return
            op = ev.opcode
            if op is self._binary or (op is self._cont and self._in_binary):
                out.append(bytes(ev.data))
                self._in_binary = not ev.fin
            elif op is op_text or op is self._cont:
                self.end = WebSocketError("the server sent a WebSocket text message "
                                          "(Weir frames travel in binary messages)",
                                          close_code=1003)
            elif op is op_close:
                try:
                    close = self._frames.Close.parse(bytes(ev.data))
                    code, reason = close.code, close.reason
                except Exception:
                    code, reason = 1005, ""
                if code in (1000, 1005):  # normal, or no code: as a TCP close by the peer
                    self.end = ConnectionClosed(0, f"WebSocket closed by peer ({code}"
                                                   f"{' ' + reason if reason else ''})")
                else:
                    self.end = WebSocketError(f"WebSocket closed by peer with code {code}"
                                              f"{': ' + reason if reason else ''}",
                                              close_code=code)
            # ping: websockets queued the pong; pong: nothing to do
