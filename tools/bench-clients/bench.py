"""Publish-and-receive throughput of the Python Weir client next to nats-py, in one process:
one publisher connection and one subscriber connection, N messages of SIZE bytes pipelined,
timed from the first publish to the last message received.

Weir acknowledges every delivery (the client acks as the application takes messages) and
confirms every publish with a RECEIPT; NATS core does neither (fire and forget), so the
comparison favours NATS. Usage: bench.py weir|nats HOST PORT N SIZE
"""

from __future__ import annotations

import asyncio
import sys
import time


async def weir_run(host: str, port: int, n: int, size: int) -> float:
    import weir

    sub_client = await weir.Client.connect(host, port, name="bench-sub")
    pub_client = await weir.Client.connect(host, port, name="bench-pub")
    sub = sub_client.subscribe("bench", ["e"])
    await sub
    payload = b"x" * size
    start = time.perf_counter()

    async def receive() -> None:
        got = 0
        async for _ in sub:
            got += 1
            if got == n:
                return

    receiver = asyncio.create_task(receive())
    pending = []
    for _ in range(n):
        pending.append(pub_client.publish_nowait("bench", "e", payload))
        if len(pending) >= 4096:
            await asyncio.gather(*pending)
            pending.clear()
    await asyncio.gather(*pending)
    await receiver
    elapsed = time.perf_counter() - start
    await pub_client.close()
    await sub_client.close()
    return n / elapsed


async def nats_run(host: str, port: int, n: int, size: int) -> float:
    import nats

    sub_conn = await nats.connect(f"nats://{host}:{port}")
    pub_conn = await nats.connect(f"nats://{host}:{port}")
    done = asyncio.get_running_loop().create_future()
    got = 0

    async def on_message(_msg) -> None:
        nonlocal got
        got += 1
        if got == n and not done.done():
            done.set_result(None)

    await sub_conn.subscribe("bench.e", cb=on_message, pending_msgs_limit=n + 1)
    await sub_conn.flush()
    payload = b"x" * size
    start = time.perf_counter()
    for i in range(n):
        await pub_conn.publish("bench.e", payload)
        if i % 4096 == 0:
            await pub_conn.flush()
    await pub_conn.flush()
    await done
    elapsed = time.perf_counter() - start
    await pub_conn.close()
    await sub_conn.close()
    return n / elapsed


def main() -> None:
    kind, host, port, n, size = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
    run = weir_run if kind == "weir" else nats_run
    rate = asyncio.run(run(host, port, n, size))
    print(f"{rate:.0f}")


if __name__ == "__main__":
    main()
