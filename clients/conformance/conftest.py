"""The conformance suite's machinery: a real weir-server per test, a chaos TCP proxy, and the
drivers (one subprocess per client connection, speaking the line-delimited JSON protocol of
README.md). Every scenario in test_conformance.py runs once per client: rust, python,
typescript.

Binaries (each overridable by an environment variable):
- WEIR_SERVER_BIN: target/release/weir-server
- WEIR_CONFORMANCE_BIN: target/release/weir-conformance (the Rust client's driver)
- the TypeScript driver imports clients/typescript/dist (npm run build), WEIR_TS_DIST
- the Python driver runs with this interpreter, clients/python first on PYTHONPATH
"""

from __future__ import annotations

import json
import os
import queue
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable

import pytest

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
HOST = "127.0.0.1"
CLIENTS = ["rust", "python", "typescript"]


def _binary(env: str, default: Path, how: str) -> str:
    path = os.environ.get(env) or str(default)
    if not os.access(path, os.X_OK):
        pytest.fail(f"{path} not found or not executable: set {env}, or {how}", pytrace=False)
    return path


def server_bin() -> str:
    return _binary("WEIR_SERVER_BIN", ROOT / "target/release/weir-server",
                   "cargo build --release --bin weir-server -p weir")


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


# ------------------------------------------------------------------------------------ server


class Server:
    """One weir-server process with a temporary config file, stopped by PID."""

    def __init__(self, tmp: Path, config: str = "", port: int | None = None) -> None:
        self.tmp = tmp
        self.port = port or free_port()
        self.config = config
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = tmp / f"server-{self.port}.log"

    def start(self) -> "Server":
        cfg = self.tmp / f"weir-{self.port}.toml"
        cfg.write_text(f'listen = "{HOST}:{self.port}"\n{self.config}\n')
        self.proc = subprocess.Popen([server_bin(), "-c", str(cfg)], stdout=open(self.log, "ab"),
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 20
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"weir-server exited {self.proc.returncode}: "
                                   f"{self.log.read_text()[-2000:]}")
            try:
                socket.create_connection((HOST, self.port), timeout=0.5).close()
                return self
            except OSError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError("weir-server did not start listening")
                time.sleep(0.02)

    def stop(self) -> None:
        p, self.proc = self.proc, None
        if p is None:
            return
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

    def make(config: str = "", port: int | None = None) -> Server:
        s = Server(tmp_path, config, port)
        servers.append(s)
        return s.start()

    yield make
    for s in servers:
        s.stop()


def hash_password(password: str) -> str:
    out = subprocess.run([server_bin(), "--hash-password"], input=password.encode() + b"\n",
                         capture_output=True, check=True, timeout=30)
    return out.stdout.decode().strip()


# ------------------------------------------------------------------------------ chaos proxy


class ChaosProxy:
    """A loopback TCP proxy (threads) that cuts connections at random byte offsets.

    Each of the first ``cuts`` connections is cut after a number of bytes (both directions
    counted together) drawn from ``random.Random(seed)`` in ``[min_bytes, max_bytes]``
    (``[later_min_bytes, max_bytes]`` for every connection but the first): the
    bytes up to the offset are forwarded, wherever a frame boundary falls, then both sockets
    are closed. Later connections are forwarded untouched. ``refuse`` makes it accept and close
    new connections at once; ``cut_all()`` closes every open connection; ``freeze_existing()``
    makes the open ones go silent (nothing forwarded, nothing closed).
    """

    def __init__(self, upstream_port: int, cuts: int = 0, seed: int = 1,
                 min_bytes: int = 1, max_bytes: int = 200_000,
                 later_min_bytes: int | None = None) -> None:
        self.upstream_port = upstream_port
        self.cuts_left = cuts
        self.cuts_done = 0
        self.rng = random.Random(seed)
        self.min_bytes, self.max_bytes = min_bytes, max_bytes
        self.later_min_bytes = min_bytes if later_min_bytes is None else later_min_bytes
        self.refuse = False
        self.frozen_upto = 0  # connections numbered up to this one stop forwarding
        self.connections = 0
        self.offsets: list[int] = []
        self._lock = threading.Lock()
        self._open: set[socket.socket] = set()
        self._listener = socket.socket()
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind((HOST, 0))
        self._listener.listen(64)
        self.port = self._listener.getsockname()[1]
        self._stopped = False
        threading.Thread(target=self._accept_loop, daemon=True).start()

    def stop(self) -> None:
        self._stopped = True
        try:
            self._listener.close()
        except OSError:
            pass
        self.cut_all()

    def freeze_existing(self) -> None:
        """The connections open now stop forwarding, without closing (a peer gone silent)."""
        with self._lock:
            self.frozen_upto = self.connections

    def cut_all(self) -> None:
        with self._lock:
            socks, self._open = list(self._open), set()
        for s in socks:
            _close(s)

    def _accept_loop(self) -> None:
        while not self._stopped:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            if self.refuse:
                _close(client)
                continue
            try:
                upstream = socket.create_connection((HOST, self.upstream_port), timeout=5)
                upstream.settimeout(None)
            except OSError:
                _close(client)
                continue
            with self._lock:
                self.connections += 1
                number = self.connections
                budget: list[int | None] = [None]
                if self.cuts_left > 0:
                    self.cuts_left -= 1
                    low = self.min_bytes if number == 1 else self.later_min_bytes
                    budget[0] = self.rng.randint(low, self.max_bytes)
                    self.offsets.append(budget[0])
                self._open.update((client, upstream))
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump,
                                 args=(src, dst, client, upstream, budget, number),
                                 daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, a: socket.socket,
              b: socket.socket, budget: list[int | None], number: int) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                while number <= self.frozen_upto and not self._stopped:
                    time.sleep(0.01)  # frozen: hold what arrived, forward nothing
                cut = False
                with self._lock:
                    left = budget[0]
                    if left is not None:
                        if len(data) >= left:
                            data, cut = data[:left], True
                            budget[0] = -1
                            if left >= 0:  # the first direction to reach the offset
                                self.cuts_done += 1
                            data = data if left > 0 else b""
                        else:
                            budget[0] = left - len(data)
                if data:
                    dst.sendall(data)
                if cut:
                    break
        except OSError:
            pass
        finally:
            with self._lock:
                self._open.discard(a)
                self._open.discard(b)
            _close(a)
            _close(b)


def _close(s: socket.socket) -> None:
    try:
        s.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    try:
        s.close()
    except OSError:
        pass


@pytest.fixture
def make_proxy():
    proxies: list[ChaosProxy] = []

    def make(upstream_port: int, **kw: Any) -> ChaosProxy:
        p = ChaosProxy(upstream_port, **kw)
        proxies.append(p)
        return p

    yield make
    for p in proxies:
        p.stop()


# ---------------------------------------------------------------------------------- drivers


class DriverError(Exception):
    def __init__(self, cmd: dict[str, Any], error: dict[str, Any]) -> None:
        self.code = error.get("code")
        self.message = error.get("message", "")
        super().__init__(f"{cmd.get('cmd')}: {self.code}: {self.message}")


def _ts_node_args() -> list[str]:
    """Node 20 needs --experimental-websocket for the WHATWG WebSocket global."""
    node = os.environ.get("NODE", "node")
    probe = subprocess.run([node, "-p", "typeof WebSocket"], capture_output=True, text=True)
    if probe.stdout.strip() != "function":
        flag = subprocess.run([node, "--experimental-websocket", "-p", "typeof WebSocket"],
                              capture_output=True, text=True)
        if flag.returncode == 0 and flag.stdout.strip() == "function":
            return [node, "--experimental-websocket"]
    return [node]


_TS_NODE: list[str] | None = None


def driver_argv(kind: str) -> tuple[list[str], dict[str, str]]:
    global _TS_NODE
    env = dict(os.environ)
    if kind == "rust":
        return [_binary("WEIR_CONFORMANCE_BIN", ROOT / "target/release/weir-conformance",
                        "cargo build --release -p weir-tools --bin weir-conformance")], env
    if kind == "python":
        env["PYTHONPATH"] = os.pathsep.join(
            [str(ROOT / "clients/python")] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
        return [sys.executable, str(HERE / "drivers/python_driver.py")], env
    if kind == "typescript":
        dist = Path(os.environ.get("WEIR_TS_DIST") or ROOT / "clients/typescript/dist/src/index.js")
        if not dist.exists():
            pytest.fail(f"{dist} not found: run `npm ci && npm run build` in clients/typescript",
                        pytrace=False)
        if _TS_NODE is None:
            _TS_NODE = _ts_node_args()
        return [*_TS_NODE, str(HERE / "drivers/ts_driver.mjs")], env
    raise ValueError(kind)


class Driver:
    """One driver process: one client, one connection (its session) at a time."""

    def __init__(self, kind: str, label: str, log_dir: Path) -> None:
        self.kind = kind
        self.label = label
        argv, env = driver_argv(kind)
        self.stderr_path = log_dir / f"driver-{kind}-{label}.log"
        self._stderr = open(self.stderr_path, "wb")
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=self._stderr, env=env, cwd=str(HERE))
        self._lines: queue.Queue[bytes] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        self._outstanding: list[dict[str, Any]] = []
        hello = self.call({"cmd": "hello"}, timeout=30)
        self.features: set[str] = set(hello["features"])
        self.missing: dict[str, str] = hello.get("missing") or {}
        assert hello["client"] == kind

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._lines.put(line)
        self._lines.put(b"")

    def send(self, cmd: dict[str, Any]) -> None:
        """Sends a command without waiting; `reply()` reads its answer (in order)."""
        assert self.proc.stdin is not None
        self.proc.stdin.write((json.dumps(cmd) + "\n").encode())
        self.proc.stdin.flush()
        self._outstanding.append(cmd)

    def reply(self, timeout: float = 60, check: bool = True) -> dict[str, Any]:
        cmd = self._outstanding.pop(0)
        try:
            line = self._lines.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"{self.kind} driver {self.label}: no answer to "
                                 f"{cmd.get('cmd')} within {timeout} s; stderr:\n"
                                 f"{self.stderr()}") from None
        if not line:
            raise AssertionError(f"{self.kind} driver {self.label} exited "
                                 f"({self.proc.poll()}) during {cmd.get('cmd')}; stderr:\n"
                                 f"{self.stderr()}")
        answer = json.loads(line)
        if check and not answer.get("ok"):
            raise DriverError(cmd, answer.get("error") or {})
        return answer

    def call(self, cmd: dict[str, Any], timeout: float = 60, check: bool = True) -> dict[str, Any]:
        self.send(cmd)
        return self.reply(timeout, check)

    def stderr(self) -> str:
        self._stderr.flush()
        return self.stderr_path.read_text(errors="replace")[-3000:]

    # shorthands
    def connect(self, port: int, **kw: Any) -> dict[str, Any]:
        return self.call({"cmd": "connect", "host": HOST, "port": port,
                          "name": f"{self.kind}-{self.label}", **kw})

    def subscribe(self, queue_name: str, events: list[str] | None = None) -> None:
        self.call({"cmd": "subscribe", "queue": queue_name, "events": events})

    def publish(self, queue_name: str, event: str, payload: str) -> int:
        return self.call({"cmd": "publish", "queue": queue_name, "event": event,
                          "payload": payload})["seq"]

    def recv(self, timeout_ms: int = 10_000) -> dict[str, Any] | None:
        a = self.call({"cmd": "recv", "timeout_ms": timeout_ms}, timeout=timeout_ms / 1000 + 60)
        return None if a.get("timeout") else a["delivery"]

    def stats(self) -> dict[str, Any]:
        return self.call({"cmd": "stats"})["stats"]

    def events(self, wait_ms: int = 0) -> list[dict[str, Any]]:
        return self.call({"cmd": "events", "wait_ms": wait_ms},
                         timeout=wait_ms / 1000 + 60)["events"]

    def stop(self) -> None:
        p = self.proc
        try:
            if p.stdin:
                p.stdin.close()
        except OSError:
            pass
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            os.kill(p.pid, signal.SIGKILL)
            p.wait()
        self._stderr.close()


@pytest.fixture(params=CLIENTS)
def client(request) -> str:
    """The client under test; each scenario runs once per client."""
    return request.param


@pytest.fixture
def make_driver(client: str, tmp_path: Path):
    drivers: list[Driver] = []

    def make(label: str) -> Driver:
        d = Driver(client, label, tmp_path)
        drivers.append(d)
        return d

    yield make
    for d in drivers:
        d.stop()


def require(driver: Driver, feature: str, what: str) -> None:
    """Skips the scenario, naming the client and what it lacks, when the driver says so."""
    if feature not in driver.features:
        pytest.skip(f"{driver.kind} client: {driver.missing.get(feature, what)}")


def session_id(v: Any) -> int:
    """A session id from STATS_REPLY (a 16-digit hex string) or a driver (hex string)."""
    return v if isinstance(v, int) else int(v, 16)


def eventually(check: Callable[[], Any], timeout: float = 20.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        v = check()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached within {timeout} s")
        time.sleep(0.05)
