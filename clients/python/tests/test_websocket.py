"""The WebSocket transport (protocol.md §WebSocket): against the real weir-server with a
`transport = "websocket"` listener (ws:// and wss://), and against a scripted WebSocket server
for what the real one does not do on demand (a text message, a close with an error code)."""

from __future__ import annotations

import asyncio
import ssl
import sys
from pathlib import Path

import pytest

import weir
from weir import Client
from weir import protocol as P

from conftest import free_port
from test_auth_tls import make_cert
from test_fake_server import SID, welcome

pytest.importorskip("websockets")  # pip install './clients/python[websocket]'

HOST = "127.0.0.1"


def ws_listener(port: int, extra: str = "") -> str:
    return f'[[listeners]]\nlisten = "{HOST}:{port}"\ntransport = "websocket"\n{extra}'


@pytest.fixture
def ws_server(make_server):
    """A server with its TCP listener (``.port``) and a WebSocket one (``.ws_port``)."""
    ws_port = free_port()
    s = make_server(start=False)
    # with [[listeners]] the top-level `listen` is not used: the TCP one is listed too
    s.config = f'\n[[listeners]]\nlisten = "{HOST}:{s.port}"\n\n' + ws_listener(ws_port)
    s.ws_port = ws_port
    return s.start()


async def test_pubsub_over_ws_and_tcp(ws_server) -> None:
    url = f"ws://{HOST}:{ws_server.ws_port}/"
    async with await Client.connect(url=url, name="ws-sub", inflight_window=64) as ws, \
            await Client.connect(HOST, ws_server.port, name="tcp-pub") as tcp:
        assert ws.url == url and ws.port == ws_server.ws_port
        assert ws.welcome.outcome == P.Outcome.NEW
        sub = await ws.subscribe("wsq", events=["e"])
        await ws.publish("wsq", "e", b"over websocket")
        d = await sub.get(timeout=10)
        assert (d.payload, d.event, d.queue, d.seq) == (b"over websocket", "e", "wsq", 1)
        # binary payloads of every size up to a large one, published over TCP
        payloads = [bytes(range(256)) * (i % 5) + b"%d" % i for i in range(2000)]
        payloads.append(b"\x00" * 200_000)
        for p in payloads:
            tcp.publish_nowait("wsq", "e", p)
        await tcp.wait_receipted(30)
        got = [(await sub.get(timeout=10)).payload for _ in payloads]
        assert got == payloads
        # acks flowed back over WebSocket (window 64 < 2001 messages), nothing left in flight
        for _ in range(100):  # the last ack goes out after ack_delay
            st = await ws.stats()
            me = [s for s in st["sessions"] if int(s["session_id"], 16) == ws.session_id][0]
            if me.get("in_flight") == 0:
                break
            await asyncio.sleep(0.05)
        assert me.get("in_flight") == 0, me
        # the positional form takes a URL too
        c2 = await Client.connect(url)
        assert c2.connected
        await c2.close()


async def test_resume_after_transport_cut_nothing_lost(ws_server) -> None:
    url = f"ws://{HOST}:{ws_server.ws_port}/"
    events: list[weir.Event] = []
    sub_c = await Client.connect(url=url, name="sub", reconnect_delay=0.02,
                                 on_event=events.append)
    pub_c = await Client.connect(url=url, name="pub", reconnect_delay=0.02)
    try:
        sub = await sub_c.subscribe("cut")
        sid = sub_c.session_id
        n = 3000
        got: list[bytes] = []
        for i in range(n):
            pub_c.publish_nowait("cut", "e", b"m%d" % i)
            if i in (700, 1900):
                sub_c._conn.writer.transport.abort()  # noqa: SLF001 - cut the subscriber's
            if i == 1300:
                pub_c._conn.writer.transport.abort()  # noqa: SLF001 - and the publisher's
            if i % 100 == 99:
                await asyncio.sleep(0.01)
                while sub.pending():
                    got.append((await sub.get(timeout=10)).payload)
        await pub_c.wait_receipted(30)
        while len(got) < n:
            got.append((await sub.get(timeout=20)).payload)
        assert got == [b"m%d" % i for i in range(n)]
        with pytest.raises(weir.Timeout):
            await sub.get(timeout=0.3)
        assert sub_c.session_id == sid and sub_c.resumes >= 1 and not sub_c.losses
        assert pub_c.resumes == 1 and not pub_c.losses
        assert all(isinstance(e, weir.Resumed) for e in events) and events
    finally:
        await pub_c.close()
        await sub_c.close()


async def test_resume_through_chaos_proxy(ws_server, make_proxy) -> None:
    """Cuts at random byte offsets: inside WebSocket frames, and inside the HTTP upgrade or
    HELLO/WELCOME on reconnections."""
    proxy = await make_proxy(ws_server.ws_port, cuts=5, seed=3, min_bytes=1, max_bytes=60_000)
    sub_c = await Client.connect(url=f"ws://{HOST}:{proxy.port}/", reconnect_delay=0.02)
    pub_c = await Client.connect(HOST, ws_server.port)
    try:
        sub = await sub_c.subscribe("chaos")
        n = 5000
        for i in range(n):
            pub_c.publish_nowait("chaos", "e", b"c%d" % i)
        await pub_c.wait_receipted(30)
        got = [(await sub.get(timeout=20)).payload for _ in range(n)]
        assert got == [b"c%d" % i for i in range(n)]
        assert proxy.cuts_done >= 1 and sub_c.reconnects >= 1 and not sub_c.losses
    finally:
        await pub_c.close()
        await sub_c.close()


async def test_wss_with_self_signed_certificate(make_server, tmp_path: Path) -> None:
    cert, key = make_cert(tmp_path)
    ws_port = free_port()
    server = make_server(start=False)
    server.config = (f'\n[[listeners]]\nlisten = "{HOST}:{server.port}"\n\n'
                     + ws_listener(ws_port, f'tls_cert = "{cert}"\ntls_key = "{key}"\n'))
    server.start()
    ctx = ssl.create_default_context(cafile=str(cert))
    async with await Client.connect(url=f"wss://{HOST}:{ws_port}/", tls=ctx) as c:
        sub = await c.subscribe("tls", events=["e"])
        await c.publish("tls", "e", b"secret over wss")
        assert (await sub.get(timeout=10)).payload == b"secret over wss"
    async with await Client.connect(url=f"wss://localhost:{ws_port}/", tls=ctx,
                                    server_hostname="localhost") as c:
        assert c.connected
    # not trusting the certificate: no session
    with pytest.raises(ssl.SSLError):
        await Client.connect(url=f"wss://{HOST}:{ws_port}/", tls=ssl.create_default_context())
    # plain ws:// to the wss:// listener: no session either
    with pytest.raises((weir.WeirError, OSError)):
        await Client.connect(url=f"ws://{HOST}:{ws_port}/", connect_timeout=5)


async def test_bad_urls_and_refusals(ws_server) -> None:
    with pytest.raises(ValueError):
        Client(url="http://127.0.0.1:1/")
    with pytest.raises(ValueError):
        await Client.connect(url=f"ws://{HOST}:{ws_server.ws_port}/",
                             tls=ssl.create_default_context())
    # a WebSocket upgrade sent to the TCP listener is no Weir frame: no session
    with pytest.raises((weir.WebSocketError, OSError, weir.WeirError)):
        await Client.connect(url=f"ws://{HOST}:{ws_server.port}/", connect_timeout=5)


def test_missing_websockets_package_is_a_clear_import_error(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "websockets", None)
    with pytest.raises(ImportError, match=r"weir\[websocket\]"):
        weir.ws.require_websockets()

    async def main() -> None:
        with pytest.raises(ImportError, match="websockets"):
            await Client.connect(url="ws://127.0.0.1:1/")
        # TCP needs nothing
        with pytest.raises(OSError):
            await Client.connect(HOST, free_port(), connect_timeout=2)
    asyncio.run(main())


class FakeWs:
    """A scripted WebSocket server (the websockets package's own) for the client."""

    def __init__(self) -> None:
        self.conns: asyncio.Queue = asyncio.Queue()

    async def start(self) -> "FakeWs":
        from websockets.asyncio.server import serve

        async def handler(conn) -> None:
            done = asyncio.get_running_loop().create_future()
            await self.conns.put((conn, done))
            await done
        self.srv = await serve(handler, HOST, 0, subprotocols=["weir.v1"])
        self.port = self.srv.sockets[0].getsockname()[1]
        return self

    async def accept(self):
        return await asyncio.wait_for(self.conns.get(), 10)

    def close(self) -> None:
        self.srv.close()


async def recv_frame(conn) -> P.Frame:
    msg = await asyncio.wait_for(conn.recv(), 10)
    assert isinstance(msg, bytes), msg
    dec = P.Decoder(1 << 20)
    dec.feed(msg)
    f = dec.next()
    assert f is not None and dec.buffered() == 0, "one whole Weir frame per message"
    return f


async def test_text_message_and_close_codes_end_the_connection_and_resume() -> None:
    fs = await FakeWs().start()
    try:
        connect = asyncio.ensure_future(Client.connect(url=f"ws://{HOST}:{fs.port}/",
                                                       name="fake", reconnect_delay=0.01))
        conn, done = await fs.accept()
        assert conn.request.headers.get("Origin") is None  # protocol.md: no Origin
        assert conn.subprotocol == "weir.v1"
        hello = await recv_frame(conn)
        assert isinstance(hello, P.Hello) and hello.resume is None and hello.client_name == b"fake"
        await conn.send(welcome(window=4))
        c = await connect
        assert c.session_id == SID
        await conn.send(P.encode(P.Deliver(1, 101, 0, b"q", b"e", b"d1")))
        # a text message ends the connection; the client resumes
        await conn.send("not a weir frame")
        conn2, done2 = await fs.accept()
        hello2 = await recv_frame(conn2)
        assert isinstance(hello2, P.Hello) and hello2.resume is not None
        assert hello2.resume.session_id == SID and hello2.resume.last_delivery_seq == 1
        await conn2.send(welcome(outcome=P.Outcome.RESUMED, window=4))
        ev = await c.next_event(timeout=10)
        assert isinstance(ev, weir.Resumed)
        # a publish is one binary message holding exactly one PUBLISH frame
        fut = c.publish_nowait("q", "e", b"p1")
        f = await recv_frame(conn2)
        assert f == P.Publish(1, b"q", b"e", b"p1", None) or isinstance(f, (P.Ack, P.Publish))
        while not isinstance(f, P.Publish):
            f = await recv_frame(conn2)
        assert f.seq == 1 and f.payload == b"p1"
        await conn2.send(P.encode(P.Receipt(1)))
        await asyncio.wait_for(fut, 10)
        # a close with an error code (1002) ends it too; the client resumes again
        await conn2.close(1002, "broken")
        conn3, done3 = await fs.accept()
        hello3 = await recv_frame(conn3)
        assert hello3.resume is not None and hello3.resume.session_id == SID
        await conn3.send(welcome(outcome=P.Outcome.RESUMED, window=4, last_publish_seq=1))
        assert isinstance(await c.next_event(timeout=10), weir.Resumed)
        assert c.reconnects == 2 and c.resumes == 2 and not c.losses
        c.abort()
        for d in (done, done2, done3):
            if not d.done():
                d.set_result(None)
    finally:
        fs.close()
