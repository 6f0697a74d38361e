"""Test helpers: a real weir-server per test, on a free loopback port, stopped by PID."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
DEFAULT_BIN = (HERE.parent / "../../target/release/weir-server").resolve()


def server_bin() -> str:
    env = os.environ.get("WEIR_SERVER_BIN")
    if env:
        if not os.access(env, os.X_OK):
            pytest.fail(f"WEIR_SERVER_BIN={env} is not an executable file", pytrace=False)
        return env
    if DEFAULT_BIN.exists():
        return str(DEFAULT_BIN)
    pytest.fail(
        "weir-server binary not found: set WEIR_SERVER_BIN, or build it with "
        f"`cargo build --release --bin weir-server` (expected at {DEFAULT_BIN})", pytrace=False)
    raise AssertionError  # unreachable


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """One weir-server process with a temporary config file."""

    def __init__(self, tmp: Path, config: str = "", port: int | None = None) -> None:
        self.tmp = tmp
        self.port = port or free_port()
        self.config = config
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = tmp / f"server-{self.port}.log"

    def start(self) -> "Server":
        cfg = self.tmp / f"weir-{self.port}.toml"
        cfg.write_text(f'listen = "127.0.0.1:{self.port}"\n{self.config}\n')
        self.proc = subprocess.Popen([server_bin(), "-c", str(cfg)], stdout=open(self.log, "ab"),
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 20
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"weir-server exited {self.proc.returncode}: "
                                   f"{self.log.read_text()[-2000:]}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return self
            except OSError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError("weir-server did not start listening")
                time.sleep(0.02)

    def stop(self) -> None:
        p = self.proc
        if p is None:
            return
        self.proc = None
        if p.poll() is None:
            os.kill(p.pid, signal.SIGTERM)
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                os.kill(p.pid, signal.SIGKILL)
                p.wait()


@pytest.fixture
def make_server(tmp_path: Path):
    servers: list[Server] = []

    def make(config: str = "", port: int | None = None, start: bool = True) -> Server:
        s = Server(tmp_path, config, port)
        servers.append(s)
        return s.start() if start else s

    yield make
    for s in servers:
        s.stop()


@pytest.fixture
def server(make_server) -> Server:
    return make_server()


def hash_password(password: str) -> str:
    out = subprocess.run([server_bin(), "--hash-password"], input=password.encode() + b"\n",
                         capture_output=True, check=True, timeout=30)
    return out.stdout.decode().strip()


class ChaosProxy:
    """A loopback TCP proxy that can cut connections mid-frame.

    With ``cuts`` > 0, each of the first ``cuts`` connections is cut (both sides closed at
    once) after a random number of bytes in a random direction, in ``[min_bytes, max_bytes]``;
    later connections are forwarded untouched. ``hold`` makes it refuse new connections
    (accept and close) until released; ``freeze`` stops forwarding without closing.
    """

    def __init__(self, upstream_port: int, cuts: int = 0, seed: int = 1,
                 min_bytes: int = 1, max_bytes: int = 200_000) -> None:
        import random
        self.upstream_port = upstream_port
        self.cuts_left = cuts
        self.cuts_done = 0
        self.rng = random.Random(seed)
        self.min_bytes, self.max_bytes = min_bytes, max_bytes
        self.port = 0
        self.refuse = False
        self.frozen = False
        self.frozen_upto = 0  # connections numbered up to this stop forwarding
        self.connections = 0
        self._server: asyncio.base_events.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> "ChaosProxy":
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        self.cut_all()
        if self._server is not None:
            await self._server.wait_closed()

    def freeze_existing(self) -> None:
        """Stop forwarding on the connections open now, without closing them (a dead peer)."""
        self.frozen_upto = self.connections

    def cut_all(self) -> None:
        for w in list(self._writers):
            w.transport.abort()
        self._writers.clear()

    async def _handle(self, cr: asyncio.StreamReader, cw: asyncio.StreamWriter) -> None:
        if self.refuse:
            cw.transport.abort()
            return
        self.connections += 1
        try:
            ur, uw = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        except OSError:
            cw.transport.abort()
            return
        self._writers.update((cw, uw))
        # bytes (both directions together) forwarded before the cut, wherever it falls
        budget: list[int | None] = [None]
        if self.cuts_left > 0:
            self.cuts_left -= 1
            budget[0] = self.rng.randint(self.min_bytes, self.max_bytes)

        conn_id = self.connections

        def cut() -> None:
            # close, not abort: the partial frame already written reaches the peer, then EOF
            self.cuts_done += 1
            cw.close()
            uw.close()

        async def pump(r: asyncio.StreamReader, w: asyncio.StreamWriter, i: int) -> None:
            try:
                while True:
                    data = await r.read(65536)
                    if not data:
                        break
                    while self.frozen or conn_id <= self.frozen_upto:
                        await asyncio.sleep(0.01)
                    b = budget[0]
                    if b is not None:
                        if len(data) >= b:
                            budget[0] = 0
                            w.write(data[:b])
                            await w.drain()
                            cut()
                            return
                        budget[0] = b - len(data)
                    w.write(data)
                    await w.drain()
            except (OSError, asyncio.CancelledError):
                pass
            finally:
                cw.close()
                uw.close()
                self._writers.discard(cw)
                self._writers.discard(uw)

        await asyncio.gather(pump(cr, uw, 0), pump(ur, cw, 1))


@pytest.fixture
async def make_proxy():
    proxies: list[ChaosProxy] = []

    async def make(upstream_port: int, **kw) -> ChaosProxy:
        p = await ChaosProxy(upstream_port, **kw).start()
        proxies.append(p)
        return p

    yield make
    for p in proxies:
        await p.stop()
