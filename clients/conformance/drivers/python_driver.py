#!/usr/bin/env python3
"""Conformance driver for the Python asyncio client (package ``weir``, clients/python).

One JSON command per line on stdin, one JSON answer per line on stdout; see
clients/conformance/README.md. Nothing else goes to stdout.
"""

from __future__ import annotations

import asyncio
import base64
import json
import ssl
import sys
from typing import Any

import weir


def delivery_json(d: weir.Delivery) -> dict[str, Any]:
    return {
        "queue": d.queue.decode("utf-8", "replace") if isinstance(d.queue, bytes) else d.queue,
        "event": d.event.decode("utf-8", "replace") if isinstance(d.event, bytes) else d.event,
        "payload": d.payload.decode("utf-8", "replace"),
        "payload_b64": base64.b64encode(d.payload).decode(),
        "seq": d.seq,
        "redelivered": bool(d.redelivered),
    }


def event_json(ev: Any) -> dict[str, Any] | None:
    if isinstance(ev, weir.SessionLost):
        return {"type": "lost", "reason": ev.code_name, "missed": ev.missed}
    if isinstance(ev, weir.Resumed):
        return {"type": "resumed"}
    return None


class Failure(Exception):
    def __init__(self, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.code = code


def failure_of(e: BaseException) -> dict[str, Any]:
    code = getattr(e, "code_name", None) if isinstance(e, weir.WeirError) else None
    if isinstance(e, Failure):
        code = e.code
    if isinstance(e, (weir.Timeout, asyncio.TimeoutError)) and code is None:
        code = "TIMEOUT"
    return {"code": code, "message": f"{type(e).__name__}: {e}"}


class Driver:
    def __init__(self) -> None:
        self.client: weir.Client | None = None
        # Every subscription's deliveries, in the order the client handed them over.
        self.inbox: asyncio.Queue[weir.Delivery] = asyncio.Queue()
        self.events: list[dict[str, Any]] = []
        self.event_arrived = asyncio.Event()

    def need(self) -> weir.Client:
        if self.client is None:
            raise Failure("not connected")
        return self.client

    def on_event(self, ev: Any) -> None:
        j = event_json(ev)
        if j is not None:
            self.events.append(j)
            self.event_arrived.set()

    async def next_delivery(self, timeout: float) -> weir.Delivery | None:
        try:
            return await asyncio.wait_for(self.inbox.get(), timeout)
        except asyncio.TimeoutError:
            return None

    async def run(self, cmd: dict[str, Any]) -> dict[str, Any]:
        name = cmd.get("cmd")
        if name == "hello":
            hello: dict[str, Any] = {"client": "python",
                                     "features": ["tcp", "tls", "password", "token"]}
            try:
                weir.ws.require_websockets()
                hello["features"].append("websocket")
            except ImportError as e:
                hello["missing"] = {"websocket": str(e)}
            return hello
        if name == "connect":
            tls = None
            if cmd.get("tls_ca"):
                tls = ssl.create_default_context(cafile=cmd["tls_ca"])
            self.inbox = asyncio.Queue()
            self.events = []
            self.client = await weir.Client.connect(
                cmd.get("host", "127.0.0.1"), int(cmd.get("port", 7400)),
                url=cmd.get("url") or None,
                name=cmd.get("name", "conformance"),
                user=cmd.get("user"), password=cmd.get("password"), token=cmd.get("token"),
                tls=tls, server_hostname=cmd.get("tls_name") if tls else None,
                reconnect_delay=cmd.get("reconnect_delay_ms", 20) / 1000,
                reconnect_max_delay=cmd.get("reconnect_max_delay_ms", 200) / 1000,
                on_event=self.on_event)
            return {"session_id": format(self.client.session_id, "x")}
        if name == "subscribe":
            c = self.need()
            events = cmd.get("events")
            sub = c.subscribe(cmd["queue"], events=events, callback=self.inbox.put_nowait)
            await sub
            return {}
        if name == "publish":
            c = self.need()
            payload = (base64.b64decode(cmd["payload_b64"]) if "payload_b64" in cmd
                       else cmd.get("payload", "").encode())
            # publish() returns nothing; its seq is the client's next publish seq.
            seq = c._next_pub_seq  # noqa: SLF001
            await c.publish(cmd["queue"], cmd.get("event", ""), payload)
            return {"seq": seq}
        if name == "publish_many":
            c = self.need()
            q, e, prefix, n = cmd["queue"], cmd.get("event", ""), cmd.get("prefix", ""), cmd["n"]
            futs = []
            for i in range(n):
                while c.unreceipted >= 8192:
                    # bounded like an application would: wait for the oldest receipts
                    await asyncio.wait([futs[len(futs) - c.unreceipted]])
                futs.append(c.publish_nowait(q, e, f"{prefix}{i}".encode()))
                if i % 1024 == 1023:
                    await asyncio.sleep(0)  # let the writer and reader run
            await asyncio.gather(*futs)
            return {"count": n}
        if name == "recv":
            d = await self.next_delivery(cmd.get("timeout_ms", 5000) / 1000)
            return {"timeout": True} if d is None else {"delivery": delivery_json(d)}
        if name == "recv_many":
            n = cmd["n"]
            idle = cmd.get("timeout_ms", 10_000) / 1000
            prefix = cmd.get("prefix")
            collect = cmd.get("collect", False)
            received = redelivered = 0
            first_bad = None
            payloads: list[str] = []
            timed_out = False
            while received < n:
                d = await self.next_delivery(idle)
                if d is None:
                    timed_out = True
                    break
                if prefix is not None and first_bad is None \
                        and d.payload != f"{prefix}{received}".encode():
                    first_bad = {"index": received,
                                 "payload": d.payload.decode("utf-8", "replace")}
                redelivered += bool(d.redelivered)
                if collect:
                    payloads.append(d.payload.decode("utf-8", "replace"))
                received += 1
            out: dict[str, Any] = {"received": received, "timed_out": timed_out,
                                   "redelivered": redelivered}
            if prefix is not None:
                out["in_order"] = first_bad is None
                out["first_bad"] = first_bad
            if collect:
                out["payloads"] = payloads
            return out
        if name == "events":
            wait = cmd.get("wait_ms", 0) / 1000
            if not self.events and wait > 0:
                self.event_arrived.clear()
                try:
                    await asyncio.wait_for(self.event_arrived.wait(), wait)
                except asyncio.TimeoutError:
                    pass
            evs, self.events = self.events, []
            return {"events": evs}
        if name == "stats":
            return {"stats": await self.need().stats()}
        if name == "close":
            if self.client is not None:
                c, self.client = self.client, None
                await c.close()
            return {}
        raise Failure(f"unknown command {name!r}")


async def main() -> None:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=1 << 24)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    driver = Driver()
    while True:
        line = await reader.readline()
        if not line:
            break
        if not line.strip():
            continue
        try:
            answer = await driver.run(json.loads(line))
            answer["ok"] = True
        except Exception as e:  # noqa: BLE001 - every failure is an answer
            answer = {"ok": False, "error": failure_of(e)}
        sys.stdout.write(json.dumps(answer) + "\n")
        sys.stdout.flush()
    if driver.client is not None:
        driver.client.abort()


if __name__ == "__main__":
    asyncio.run(main())
