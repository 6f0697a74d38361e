"""The client against a real weir-server."""

from __future__ import annotations

import asyncio

import pytest

import weir
from weir import Client, ErrorCode

from conftest import ChaosProxy, Server

HOST = "127.0.0.1"


async def take(sub: weir.Subscription, n: int, timeout: float = 20.0) -> list[weir.Delivery]:
    out = []
    for _ in range(n):
        out.append(await sub.get(timeout=timeout))
    return out


async def eventually(pred, timeout: float = 20.0, step: float = 0.02):
    """Poll an async or sync predicate until it returns something truthy."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        r = pred()
        if asyncio.iscoroutine(r):
            r = await r
        if r:
            return r
        if loop.time() > deadline:
            raise AssertionError("condition not reached")
        await asyncio.sleep(step)


async def session_stats(admin: Client, session_id: int) -> dict | None:
    st = await admin.stats()
    for s in st["sessions"]:
        if int(s["session_id"], 16) == session_id:
            return s
    return None


async def test_pubsub_with_event_filters(server: Server) -> None:
    async with await Client.connect(HOST, server.port, name="pub") as pub, \
            await Client.connect(HOST, server.port, name="sub") as subc:
        ab = await subc.subscribe("q", events=["a", "b"])
        allev = await subc.subscribe("q")
        c_only = await subc.subscribe("q", events="c")
        other = await subc.subscribe("other")
        for ev in ["a", "b", "c", "", "d"]:
            await pub.publish("q", ev, ev.encode() or b"empty")
        await pub.publish("other", "x", b"o", key="k1")
        got_ab = await take(ab, 2)
        assert [(d.event, d.payload) for d in got_ab] == [("a", b"a"), ("b", b"b")]
        got_all = await take(allev, 5)
        assert [d.event for d in got_all] == ["a", "b", "c", "", "d"]
        assert [d.seq for d in got_all] == [1, 2, 3, 4, 5]  # one delivery per message
        assert [d.event for d in await take(c_only, 1)] == ["c"]
        o = await take(other, 1)
        assert o[0].queue == "other" and o[0].payload == b"o" and not o[0].redelivered
        assert ab.pending() == 0 and c_only.pending() == 0
        # message ids are server-wide: the same for every subscriber of a message
        assert got_ab[0].message_id == got_all[0].message_id
        await other.unsubscribe()
        await pub.publish("other", "x", b"after")
        await pub.publish("q", "c", b"c2")
        assert (await take(c_only, 1))[0].payload == b"c2"
        with pytest.raises(StopAsyncIteration):
            await other.__anext__()
        st = await subc.stats()
        me = [s for s in st["sessions"] if int(s["session_id"], 16) == subc.session_id][0]
        subs = {(s["queue"], s["event"]) for s in me["subscriptions"]}
        assert subs == {("q", "a"), ("q", "b"), ("q", None), ("q", "c")}


async def test_callback_subscription_and_acks(server: Server) -> None:
    got: list[bytes] = []
    async with await Client.connect(HOST, server.port, inflight_window=8) as c:
        assert c.welcome.inflight_window == 8
        await c.subscribe("cb", callback=lambda d: got.append(d.payload))
        for i in range(50):  # more than the window: only flows if acks are sent
            c.publish_nowait("cb", "e", b"%d" % i)
        await c.wait_receipted()
        await eventually(lambda: len(got) == 50)
        assert got == [b"%d" % i for i in range(50)]
        await eventually(lambda: session_stats(c, c.session_id))
        await eventually(lambda: _acked(c, 50))


async def _acked(c: Client, n: int) -> bool:
    s = await session_stats(c, c.session_id)
    return s is not None and s["acked"] == n and s["in_flight"] == 0


async def test_100k_messages_in_order_none_lost(server: Server) -> None:
    n = 100_000
    async with await Client.connect(HOST, server.port, name="p") as pub, \
            await Client.connect(HOST, server.port, name="s") as subc:
        sub = await subc.subscribe("bulk", events=["tick"])

        async def consume() -> list[int]:
            seen = []
            async for d in sub:
                seen.append(int(d.payload))
                if len(seen) == n:
                    break
            return seen

        task = asyncio.ensure_future(consume())
        chunk = 5000
        for start in range(0, n, chunk):
            last = None
            for i in range(start, start + chunk):
                last = pub.publish_nowait("bulk", "tick", b"%d" % i)
            await last
        seen = await asyncio.wait_for(task, 60)
        assert seen == list(range(n))
        assert pub.unreceipted == 0
        await eventually(lambda: _acked(subc, n))
        st = await subc.stats()
        assert st["server"]["messages_published"] == n
        assert st["server"]["messages_delivered"] == n


async def test_resume_through_chaos_proxy(server: Server, make_proxy) -> None:
    n = 20_000
    cuts = 8
    sproxy: ChaosProxy = await make_proxy(server.port, cuts=cuts, seed=11, max_bytes=60_000)
    pproxy: ChaosProxy = await make_proxy(server.port, cuts=cuts, seed=12, max_bytes=60_000)
    opts = dict(reconnect_delay=0.01, reconnect_max_delay=0.1)
    events: list[weir.Event] = []
    subc = await Client.connect(HOST, sproxy.port, name="s", inflight_window=256,
                                on_event=events.append, **opts)
    sub = await subc.subscribe("chaos")
    pub = await Client.connect(HOST, pproxy.port, name="p", **opts)
    try:
        async def consume() -> list[tuple[int, int]]:
            out = []
            async for d in sub:
                out.append((int(d.payload), d.seq))
                if len(out) == n:
                    break
            return out

        task = asyncio.ensure_future(consume())
        futs = []
        for i in range(n):
            futs.append(pub.publish_nowait("chaos", "e", b"%d" % i))
            if i % 1000 == 999:
                await futs[-1]
        await asyncio.gather(*futs)
        got = await asyncio.wait_for(task, 60)
        assert [p for p, _ in got] == list(range(n)), "lost, duplicated or reordered"
        assert [s for _, s in got] == list(range(1, n + 1))
        assert sproxy.cuts_done + pproxy.cuts_done >= cuts  # the chaos happened
        assert subc.reconnects + pub.reconnects >= cuts
        assert not subc.losses and not pub.losses
        assert all(isinstance(e, weir.Resumed) for e in events)
        # deliveries with REDELIVERED may appear; duplicates were dropped by seq
        st = await pub.stats()
        assert st["server"]["messages_published"] == n
        assert st["server"]["sessions_lost"] == 0
    finally:
        await pub.close()
        await subc.close()


async def test_lost_after_keep_alive_expired(make_server, make_proxy) -> None:
    server = make_server("reconnect_keep_alive_ms = 300\n")
    proxy: ChaosProxy = await make_proxy(server.port)
    events: list[weir.Event] = []
    subc = await Client.connect(HOST, proxy.port, name="s", reconnect_delay=0.02,
                                reconnect_max_delay=0.1, on_event=events.append)
    sub = await subc.subscribe("exp", raise_lost=True)
    old_id = subc.session_id
    admin = await Client.connect(HOST, server.port, name="admin")
    try:
        proxy.refuse = True
        proxy.cut_all()
        for i in range(5):
            await admin.publish("exp", "e", b"held %d" % i)

        async def expired() -> bool:
            st = await admin.stats()
            return any(int(t["session_id"], 16) == old_id and t["reason"] == "SESSION_EXPIRED"
                       for t in st["closed_sessions"])
        await eventually(expired)
        proxy.refuse = False
        ev = await subc.next_event(timeout=20)
        assert isinstance(ev, weir.SessionLost)
        assert ev.reason == ErrorCode.SESSION_EXPIRED
        assert ev.code_name == "SESSION_EXPIRED" and ev.code_number == 0x14
        assert ev.missed == 5
        assert ev.old_session_id == old_id and ev.new_session_id == subc.session_id != old_id
        with pytest.raises(weir.SessionLost) as raised:
            await sub.get(timeout=20)
        assert raised.value is ev
        # it goes on with a new session, subscribed again
        async def resubscribed() -> bool:
            s = await session_stats(admin, subc.session_id)
            return bool(s and s["subscriptions"])
        await eventually(resubscribed)
        await admin.publish("exp", "e", b"new")
        d = await sub.get(timeout=20)
        assert d.payload == b"new" and d.seq == 1
        assert events == [ev]
    finally:
        await admin.close()
        await subc.close()


async def test_lost_after_server_restart(make_server) -> None:
    server = make_server()
    c = await Client.connect(HOST, server.port, reconnect_delay=0.02, reconnect_max_delay=0.1)
    sub = await c.subscribe("r")
    await c.publish("r", "e", b"before")
    assert (await sub.get(timeout=10)).payload == b"before"
    old = c.session_id
    try:
        server.stop()  # GOODBYE(SERVER_SHUTDOWN): the session ends
        server.start()  # same port, a new epoch
        ev = await c.next_event(timeout=30)
        assert isinstance(ev, weir.SessionLost)
        assert ev.reason == ErrorCode.SERVER_RESTARTED and ev.missed is None
        assert c.session_id != old and (c.session_id >> 32) != (old >> 32)
        await c.publish("r", "e", b"after")
        d = await sub.get(timeout=10)
        assert d.payload == b"after" and d.seq == 1
    finally:
        await c.close()


async def test_dead_server_detected_by_heartbeat(server: Server, make_proxy) -> None:
    proxy: ChaosProxy = await make_proxy(server.port)
    c = await Client.connect(HOST, proxy.port, heartbeat_timeout=0.5, reconnect_delay=0.02)
    sub = await c.subscribe("hb")
    await c.publish("hb", "e", b"1")
    assert (await sub.get(timeout=10)).payload == b"1"
    try:
        proxy.freeze_existing()  # the connection stays open but nothing gets through
        fut = c.publish_nowait("hb", "e", b"2")
        ev = await c.next_event(timeout=30)
        assert isinstance(ev, weir.Resumed) and ev.session_id == c.session_id
        await fut
        d = await sub.get(timeout=10)
        assert d.payload == b"2" and d.seq == 2
        assert c.reconnects >= 1 and not c.losses
    finally:
        await c.close()


async def test_close_sends_bye(server: Server) -> None:
    c = await Client.connect(HOST, server.port)
    sub = await c.subscribe("bye")
    await c.publish("bye", "e", b"x")
    await sub.get(timeout=10)
    sid = c.session_id
    await c.close()
    with pytest.raises(StopAsyncIteration):
        await sub.__anext__()
    with pytest.raises(weir.ConnectionClosed):
        c.publish_nowait("bye", "e", b"y")
    async with await Client.connect(HOST, server.port) as admin:
        st = await admin.stats()
        assert st["server"]["closes"].get("CLIENT_BYE", 0) >= 1
        t = [t for t in st["closed_sessions"] if int(t["session_id"], 16) == sid]
        assert t and t[0]["reason"] == "CLIENT_BYE" and t[0]["missed"] == 0


async def test_fatal_error_is_typed(server: Server) -> None:
    c = await Client.connect(HOST, server.port, reconnect=False)
    # an ACK for a seq never delivered: ERROR(UNKNOWN_ACK_SEQ, fatal)
    c._conn.write(weir.protocol.encode_ack(99))  # type: ignore[union-attr]
    exc = await c.wait_closed()
    assert isinstance(exc, weir.ServerError)
    assert exc.code == ErrorCode.UNKNOWN_ACK_SEQ and exc.fatal
    assert exc.code_name == "UNKNOWN_ACK_SEQ" and exc.code_number == 9
    with pytest.raises(weir.ServerError):
        await c.publish("x", "e", b"")


async def test_queue_overflow_ends_session_and_is_reported(make_server) -> None:
    server = make_server("max_queue_depth = 10\nmax_queue_depth_detached = 10\n")
    c = await Client.connect(HOST, server.port, reconnect_delay=0.02, reconnect_max_delay=0.1)
    pub = await Client.connect(HOST, server.port)
    try:
        sub = await c.subscribe("ov")
        old = c.session_id
        for i in range(11):  # nobody takes them: the 11th overflows the session's queue
            await pub.publish("ov", "e", b"%d" % i)
        ev = await c.next_event(timeout=20)
        assert isinstance(ev, weir.SessionLost) and ev.old_session_id == old
        assert ev.reason == ErrorCode.QUEUE_OVERFLOW
        # missed counts the message whose arrival ended the session too (protocol.md §LOST)
        assert ev.missed is not None and sub.pending() + ev.missed == 11
        await eventually(lambda: _subscribed(pub, c.session_id))
        await pub.publish("ov", "e", b"fresh")
        # what was received before the overflow is still handed over, in order; taking it
        # must not ack anything on the new session (that would be UNKNOWN_ACK_SEQ, fatal)
        got = []
        while (d := await sub.get(timeout=10)).payload != b"fresh":
            got.append(int(d.payload))
        assert got == list(range(len(got)))
        assert ev.missed is not None and len(got) + ev.missed == 11  # the 11th is counted
        assert d.seq == 1
        await pub.publish("ov", "e", b"again")
        assert (await sub.get(timeout=10)).payload == b"again"
        assert c.losses == [ev]
        assert c.connected
    finally:
        await pub.close()
        await c.close()


async def _subscribed(admin: Client, sid: int) -> bool:
    s = await session_stats(admin, sid)
    return bool(s and s["subscriptions"])
