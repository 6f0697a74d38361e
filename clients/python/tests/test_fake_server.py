"""The client against a scripted server written with the codec: checks the exact frames the
client sends (resume block, resends, ACK batching, PONG) and its deduplication."""

from __future__ import annotations

import asyncio

import weir
from weir import Client, ErrorCode
from weir import protocol as P

SID = 0x5A3C91E200000007
TOKEN = bytes(range(16))


def welcome(outcome: int = 0, window: int = 4, last_publish_seq: int = 0, sid: int = SID,
            lost_reason: int = 0, missed: int = 0) -> bytes:
    return P.encode(P.Welcome(outcome, lost_reason, missed, sid, TOKEN, last_publish_seq,
                              1 << 20, window, 10_000, 30_000, 100_000, 1 << 26))


class Peer:
    """One accepted connection, read frame by frame."""

    def __init__(self, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        self.r, self.w = r, w
        self.dec = P.Decoder(1 << 20)

    async def frame(self, skip: tuple[type, ...] = ()) -> P.Frame:
        while True:
            f = self.dec.next()
            if f is None:
                data = await asyncio.wait_for(self.r.read(65536), 10)
                assert data, "client closed the connection"
                self.dec.feed(data)
                continue
            if not isinstance(f, skip):
                return f

    def send(self, *frames: P.Frame | bytes) -> None:
        for f in frames:
            self.w.write(f if isinstance(f, bytes) else P.encode(f))


class FakeServer:
    def __init__(self) -> None:
        self.peers: asyncio.Queue[Peer] = asyncio.Queue()

    async def start(self) -> "FakeServer":
        async def on(r, w):
            await self.peers.put(Peer(r, w))
            await asyncio.sleep(3600)
        self.srv = await asyncio.start_server(on, "127.0.0.1", 0)
        self.port = self.srv.sockets[0].getsockname()[1]
        return self

    async def accept(self) -> Peer:
        return await asyncio.wait_for(self.peers.get(), 10)

    def close(self) -> None:
        self.srv.close()


async def test_resume_block_resend_dedupe_and_acks() -> None:
    fs = await FakeServer().start()
    try:
        connect = asyncio.ensure_future(Client.connect("127.0.0.1", fs.port, name="demo",
                                                       reconnect_delay=0.01))
        p = await fs.accept()
        hello = await p.frame()
        assert hello == P.Hello(0, b"demo", None, None)
        p.send(welcome(window=4))
        c = await connect
        sub = c.subscribe("db")
        assert await p.frame() == P.Subscribe(b"db", None)
        p.send(P.Subscribed(b"db", None))
        await sub
        for s in (1, 2, 3):
            p.send(P.Deliver(s, 100 + s, 0, b"db", b"e", b"m%d" % s))
        f1 = c.publish_nowait("db", "e", b"p1")
        f2 = c.publish_nowait("db", "e", b"p2")
        assert await p.frame() == P.Publish(1, b"db", b"e", b"p1")
        assert await p.frame() == P.Publish(2, b"db", b"e", b"p2")
        p.send(P.Receipt(1), P.Ping(0x77))
        assert await p.frame() == P.Pong(0x77)
        await f1
        assert [d.seq for d in [await sub.get(), await sub.get()]] == [1, 2]
        acks = []
        while not acks or acks[-1].up_to < 2:  # window 4: acks go out as deliveries are taken
            acks.append(await p.frame())
        assert all(isinstance(a, P.Ack) and not a.seqs for a in acks)
        p.w.transport.abort()  # connection lost: seq 3 received, not taken; publish 2 unreceipted

        p = await fs.accept()
        hello = await p.frame()
        assert hello.resume == P.Resume(SID, TOKEN, 3, 2)  # R = 3 received, F = 2 held
        p.send(welcome(outcome=1, last_publish_seq=1))
        assert await p.frame(skip=(P.Ack,)) == P.Publish(2, b"db", b"e", b"p2")  # same seq
        p.send(P.Deliver(3, 103, 1, b"db", b"e", b"m3"),  # a redelivery the client already has
               P.Deliver(4, 104, 0, b"db", b"e", b"m4"), P.Receipt(2))
        await f2
        d3, d4 = await sub.get(timeout=5), await sub.get(timeout=5)
        assert (d3.seq, d3.redelivered, d4.seq) == (3, False, 4)  # the first copy of 3 is kept
        ev = await c.next_event(timeout=5)
        assert ev == weir.Resumed(SID, 1, 1)
        while True:
            a = await p.frame()
            if isinstance(a, P.Ack) and a.up_to == 4:
                break
        await asyncio.sleep(0.05)
        assert c.duplicates_dropped == 1
        close = asyncio.ensure_future(c.close())
        assert await p.frame(skip=(P.Ack,)) == P.Bye()
        p.send(P.Goodbye(ErrorCode.CLIENT_BYE, "bye"))
        p.w.close()
        await close
    finally:
        fs.close()


async def test_out_of_order_takes_are_listed_then_cumulative() -> None:
    fs = await FakeServer().start()
    try:
        connect = asyncio.ensure_future(Client.connect("127.0.0.1", fs.port, ack_delay=0.001))
        p = await fs.accept()
        await p.frame()
        p.send(welcome(window=1024))
        c = await connect
        a = c.subscribe("q", "a")
        b = c.subscribe("q", "b")
        for _ in range(2):
            f = await p.frame()
            p.send(P.Subscribed(f.queue, f.event))
        await a
        await b
        p.send(P.Deliver(1, 1, 0, b"q", b"a", b""), P.Deliver(2, 2, 0, b"q", b"b", b""),
               P.Deliver(3, 3, 0, b"q", b"zzz", b""))  # 3 matches nothing: acked at once
        assert (await b.get(timeout=5)).seq == 2
        ack = await p.frame()
        assert ack == P.Ack(0, (2, 3))  # seq 1 not taken: 2 and 3 only listed
        assert (await a.get(timeout=5)).seq == 1
        ack = await p.frame()
        assert ack == P.Ack(3, ())  # now cumulative
        c.abort()
    finally:
        fs.close()


async def test_lost_resubscribes_and_republishes() -> None:
    fs = await FakeServer().start()
    try:
        connect = asyncio.ensure_future(Client.connect("127.0.0.1", fs.port,
                                                       reconnect_delay=0.01))
        p = await fs.accept()
        await p.frame()
        p.send(welcome())
        c = await connect
        sub = c.subscribe("q", ["x"], raise_lost=True)
        await p.frame()
        p.send(P.Subscribed(b"q", b"x"))
        await sub
        fut = c.publish_nowait("q", "x", b"maybe")
        assert (await p.frame()).seq == 1
        p.w.transport.abort()

        p = await fs.accept()
        assert (await p.frame()).resume == P.Resume(SID, TOKEN, 0, 1)
        p.send(welcome(outcome=2, lost_reason=ErrorCode.SESSION_EXPIRED, missed=7,
                       sid=SID + 1))
        assert await p.frame() == P.Subscribe(b"q", b"x")
        assert await p.frame() == P.Publish(1, b"q", b"x", b"maybe")  # seqs from 1 again
        p.send(P.Subscribed(b"q", b"x"), P.Receipt(1))
        await fut
        ev = await c.next_event(timeout=5)
        assert isinstance(ev, weir.SessionLost)
        assert (ev.reason, ev.missed, ev.old_session_id, ev.new_session_id, ev.unreceipted) \
            == (ErrorCode.SESSION_EXPIRED, 7, SID, SID + 1, 1)
        try:
            await sub.get(timeout=5)
            raise AssertionError("expected SessionLost")
        except weir.SessionLost as e:
            assert e is ev
        p.send(P.Deliver(1, 9, 0, b"q", b"x", b"new"))
        d = await sub.get(timeout=5)
        assert d.seq == 1 and d.payload == b"new"
        c.abort()
    finally:
        fs.close()


async def test_frame_above_limit_from_server_is_refused_and_resumed() -> None:
    fs = await FakeServer().start()
    try:
        connect = asyncio.ensure_future(Client.connect("127.0.0.1", fs.port,
                                                       reconnect_delay=0.01))
        p = await fs.accept()
        await p.frame()
        p.send(welcome())
        c = await connect
        p.send(b"\x00\x10\x00\x09")  # length max_frame_len + 9: refused before any body
        p2 = await fs.accept()  # the client dropped the connection and resumes
        assert (await p2.frame()).resume is not None
        c.abort()
    finally:
        fs.close()
