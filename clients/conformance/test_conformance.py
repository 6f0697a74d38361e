"""Conformance scenarios, written once and run for every client (rust, python, typescript)
through its driver (README.md). Each asserts behaviour, never durations: what arrives, in
which order, how many times, and what the client reports.
"""

from __future__ import annotations

import datetime
import hashlib
import ipaddress
import os
import subprocess
from pathlib import Path

import pytest

from conftest import (HOST, DriverError, eventually, free_port, hash_password, require,
                      server_bin, session_id)

WS_BRANCH_NOTE = ("this weir-server has no WebSocket listener (--check-config refuses "
                  "`transport = \"websocket\"`; it came with branch wip-ws)")


def ws_config(tcp_port: int, ws_port: int) -> str:
    return (f'[[listeners]]\nlisten = "{HOST}:{tcp_port}"\n\n'
            f'[[listeners]]\nlisten = "{HOST}:{ws_port}"\ntransport = "websocket"\n')


def server_has_websocket(tmp: Path) -> bool:
    """True when this weir-server accepts a `transport = "websocket"` listener."""
    cfg = tmp / "ws-probe.toml"
    cfg.write_text(ws_config(free_port(), free_port()))
    r = subprocess.run([server_bin(), "--check-config", "-c", str(cfg)], capture_output=True,
                       timeout=30)
    return r.returncode == 0


# ------------------------------------------------------------------------------ pub/sub


def test_pubsub_event_filters(make_server, make_driver) -> None:
    """A subscriber to one event gets only that event, to several events only those, to all
    events every message of the queue (the empty event included); other queues reach nobody;
    publish seqs count 1, 2, 3, ..."""
    server = make_server()
    only_a, a_and_c, every, pub = (make_driver(n) for n in ("only_a", "a_and_c", "every", "pub"))
    for d in (only_a, a_and_c, every, pub):
        d.connect(server.port)
    only_a.subscribe("q", ["a"])
    a_and_c.subscribe("q", ["a", "c"])
    every.subscribe("q", None)

    sent = [("a", "a1"), ("b", "b1"), ("c", "c1"), ("a", "a2"), ("", "no-event"), ("c", "c2")]
    seqs = [pub.publish("q", e, p) for e, p in sent]
    assert seqs == list(range(1, len(sent) + 1))
    assert pub.publish("other", "a", "elsewhere") == len(sent) + 1

    def take(d, n):
        got = [d.recv() for _ in range(n)]
        assert all(g is not None for g in got), f"{d.label}: fewer than {n} deliveries"
        return got

    got = {d.label: take(d, n) for d, n in ((only_a, 2), (a_and_c, 4), (every, len(sent)))}
    assert [(g["queue"], g["event"], g["payload"]) for g in got["only_a"]] == [
        ("q", "a", "a1"), ("q", "a", "a2")]
    assert [g["payload"] for g in got["a_and_c"]] == ["a1", "c1", "a2", "c2"]
    assert [(g["event"], g["payload"]) for g in got["every"]] == sent
    for d in (only_a, a_and_c, every):
        mine = got[d.label]
        assert [g["seq"] for g in mine] == list(range(1, len(mine) + 1)), mine
        assert not any(g["redelivered"] for g in mine)
        assert d.recv(timeout_ms=300) is None, f"{d.label} got a message it did not subscribe to"
    for d in (only_a, a_and_c, every, pub):
        d.call({"cmd": "close"})


def test_binary_payload_roundtrip(make_server, make_driver) -> None:
    """Payloads are bytes: every byte value and the empty payload arrive unchanged."""
    import base64
    server = make_server()
    d = make_driver("self")
    d.connect(server.port)
    d.subscribe("bin")
    blobs = [bytes(range(256)), b"", b"\x00\xff" * 1000]
    for b in blobs:
        d.call({"cmd": "publish", "queue": "bin", "event": "e",
                "payload_b64": base64.b64encode(b).decode()})
    for b in blobs:
        got = d.recv()
        assert got is not None and base64.b64decode(got["payload_b64"]) == b
    d.call({"cmd": "close"})


def test_largest_publish_and_its_longer_deliver(make_server, make_driver) -> None:
    """max_frame_len = 65,536: the largest PUBLISH the server accepts goes through, and its
    DELIVER, 8 bytes longer (protocol.md §Limits), is accepted by the client; a payload one
    byte larger is refused by the client before it is sent, and the session goes on."""
    import base64
    limit = 65_536
    server = make_server(f"max_frame_len = {limit}\n")
    d = make_driver("self")
    d.connect(server.port)
    d.subscribe("big")
    queue, event = "big", "e"
    # PUBLISH length field: version + op (2) + seq, flags, str8 queue, str8 event (11 + q + e)
    biggest = limit - 2 - 11 - len(queue) - len(event)
    payload = bytes(i % 251 for i in range(biggest))
    d.call({"cmd": "publish", "queue": queue, "event": event,
            "payload_b64": base64.b64encode(payload).decode()})
    got = d.recv()
    assert got is not None and base64.b64decode(got["payload_b64"]) == payload
    too_big = d.call({"cmd": "publish", "queue": queue, "event": event,
                      "payload_b64": base64.b64encode(payload + b"x").decode()}, check=False)
    assert not too_big["ok"], "a PUBLISH above max_frame_len was not refused"
    assert d.publish(queue, event, "still here") == 2
    got = d.recv()
    assert got is not None and got["payload"] == "still here" and got["seq"] == 2, got
    d.call({"cmd": "close"})


# ------------------------------------------------------------------------------ volume


N_BULK = int(os.environ.get("WEIR_CONFORMANCE_N", "100000"))


def test_100k_messages_in_order_with_acks(make_server, make_driver) -> None:
    """100,000 messages published and received with acks: none lost, none duplicated, in
    order. The in-flight window (1,024 by default) is far smaller, so the run finishes only
    if the subscriber acks."""
    server = make_server()
    sub, pub = make_driver("sub"), make_driver("pub")
    sub_id = session_id(sub.connect(server.port)["session_id"])
    pub.connect(server.port)
    sub.subscribe("bulk")
    sub.send({"cmd": "recv_many", "n": N_BULK, "prefix": "m", "timeout_ms": 20_000})
    pub.send({"cmd": "publish_many", "queue": "bulk", "event": "e", "n": N_BULK,
              "prefix": "m"})
    assert pub.reply(timeout=300)["count"] == N_BULK
    got = sub.reply(timeout=300)
    assert got["received"] == N_BULK, got
    assert got["in_order"], got["first_bad"]
    assert got["redelivered"] == 0
    assert sub.recv(timeout_ms=300) is None, "a message arrived twice"

    def all_acked():
        s = [x for x in pub.stats()["sessions"] if session_id(x["session_id"]) == sub_id]
        return s and s[0]["acked"] == N_BULK and s[0]["in_flight"] == 0
    eventually(all_acked, what="every delivery acked")
    st = pub.stats()["server"]
    assert st["messages_published"] == N_BULK and st["messages_duplicate"] == 0
    sub.call({"cmd": "close"})
    pub.call({"cmd": "close"})


# ------------------------------------------------------------------------------ resume


N_CHAOS = 20_000
CHAOS_SEED = int(os.environ.get("WEIR_CHAOS_SEED", "11"))
CHAOS_CUTS = 6


def test_resume_through_chaos_proxy(make_server, make_proxy, make_driver) -> None:
    """Publisher and subscriber each go through a proxy that cuts their connection at random
    byte offsets (mid-frame, and on reconnections also inside HELLO or WELCOME), 6 times each:
    the clients resume, and every message arrives once, in order; the server routed each once
    and lost no session."""
    server = make_server()
    # min_bytes: the first connection carries HELLO/WELCOME/SUBSCRIBE before its cut (the
    # first connect is not retried); later ones may be cut anywhere (later_min_bytes=1).
    # max_bytes: 6 cuts stay well inside either client's traffic (about 29 bytes a PUBLISH,
    # 37 a DELIVER, 20,000 of each), so all 6 happen.
    kw = {"cuts": CHAOS_CUTS, "min_bytes": 2_000, "later_min_bytes": 1, "max_bytes": 60_000}
    sub_proxy = make_proxy(server.port, seed=CHAOS_SEED, **kw)
    pub_proxy = make_proxy(server.port, seed=CHAOS_SEED + 1, **kw)
    sub, pub = make_driver("sub"), make_driver("pub")
    sub.connect(sub_proxy.port)
    sub.subscribe("chaos")
    pub.connect(pub_proxy.port)
    sub.send({"cmd": "recv_many", "n": N_CHAOS, "prefix": "c", "timeout_ms": 30_000})
    pub.send({"cmd": "publish_many", "queue": "chaos", "event": "e", "n": N_CHAOS,
              "prefix": "c"})
    assert pub.reply(timeout=300)["count"] == N_CHAOS
    got = sub.reply(timeout=300)
    offsets = f"cut offsets: sub {sub_proxy.offsets}, pub {pub_proxy.offsets}"
    assert got["received"] == N_CHAOS, (got, offsets)
    assert got["in_order"], (got["first_bad"], offsets)
    assert sub.recv(timeout_ms=300) is None, "a message arrived twice"
    assert sub_proxy.cuts_done == CHAOS_CUTS and pub_proxy.cuts_done == CHAOS_CUTS, offsets
    for d in (sub, pub):
        evs = d.events()
        assert evs and all(e["type"] == "resumed" for e in evs), (d.label, evs)
    st = pub.stats()["server"]
    assert st["messages_published"] == N_CHAOS, st
    assert st["sessions_lost"] == 0 and st["sessions_resumed"] >= 2, st
    sub.call({"cmd": "close"})
    pub.call({"cmd": "close"})


def test_silent_connection_detected_by_heartbeat(make_server, make_proxy, make_driver) -> None:
    """heartbeat_timeout_ms = 1,000: the subscriber's connection goes silent (the proxy stops
    forwarding without closing); the client notices from the heartbeat rule (nothing received
    for heartbeat_timeout_ms), reconnects and resumes; what was published meanwhile arrives
    once, in order."""
    server = make_server("heartbeat_interval_ms = 250\nheartbeat_timeout_ms = 1000\n")
    proxy = make_proxy(server.port)
    sub, pub = make_driver("sub"), make_driver("pub")
    sub.connect(proxy.port)
    pub.connect(server.port)
    sub.subscribe("hb")
    pub.publish("hb", "e", "before")
    assert sub.recv()["payload"] == "before"
    proxy.freeze_existing()
    for i in range(3):
        pub.publish("hb", "e", f"during {i}")
    got = sub.call({"cmd": "recv_many", "n": 3, "collect": True, "timeout_ms": 30_000},
                   timeout=120)
    assert got["payloads"] == [f"during {i}" for i in range(3)], got
    assert sub.recv(timeout_ms=300) is None
    evs = sub.events()
    assert evs and all(e["type"] == "resumed" for e in evs), evs
    assert proxy.connections >= 2
    assert pub.stats()["server"]["sessions_lost"] == 0
    sub.call({"cmd": "close"})
    pub.call({"cmd": "close"})


# ------------------------------------------------------------------------------ LOST


def test_lost_session_expired_with_missed_count(make_server, make_proxy, make_driver) -> None:
    """A subscriber away longer than reconnect_keep_alive_ms comes back to LOST
    (SESSION_EXPIRED) with missed = the messages published while it was away (protocol.md
    §LOST: pending ones; those it received before are not counted), then goes on in a new
    session, subscribed again, delivery seqs from 1."""
    server = make_server("reconnect_keep_alive_ms = 300\n")
    proxy = make_proxy(server.port)
    sub, pub = make_driver("sub"), make_driver("pub")
    old_id = session_id(sub.connect(proxy.port)["session_id"])
    pub.connect(server.port)
    sub.subscribe("exp")
    for i in range(3):
        pub.publish("exp", "e", f"before {i}")
    assert [sub.recv()["payload"] for _ in range(3)] == [f"before {i}" for i in range(3)]

    proxy.refuse = True
    proxy.cut_all()
    away = 5
    for i in range(away):
        pub.publish("exp", "e", f"held {i}")

    def expired():
        return any(session_id(t["session_id"]) == old_id and t["reason"] == "SESSION_EXPIRED"
                   for t in pub.stats()["closed_sessions"])
    eventually(expired, what="the session's expiry")
    proxy.refuse = False

    evs = sub.events(wait_ms=30_000)
    assert evs == [{"type": "lost", "reason": "SESSION_EXPIRED", "missed": away}], evs

    def resubscribed():
        sub.events(wait_ms=50)  # a blocking client resubscribes inside a call
        return any(s["client_name"] == sub_name and s["subscriptions"]
                   and session_id(s["session_id"]) != old_id
                   for s in pub.stats()["sessions"])
    sub_name = f"{sub.kind}-sub"
    eventually(resubscribed, what="the new session's subscription")
    pub.publish("exp", "e", "new")
    d = sub.recv()
    assert d is not None and d["payload"] == "new" and d["seq"] == 1, d
    assert sub.recv(timeout_ms=300) is None
    sub.call({"cmd": "close"})
    pub.call({"cmd": "close"})


def test_lost_queue_overflow_with_missed_count(make_server, make_proxy, make_driver) -> None:
    """max_queue_depth(_detached) = 10: while a subscriber is away, 15 messages are published;
    the 11th overflows its session, which ends. Back, the client gets LOST(QUEUE_OVERFLOW)
    with missed = 11: the 10 queued plus the one whose arrival ended it; the 4 published after
    the session ended were never its own and are not counted (protocol.md §LOST)."""
    server = make_server("max_queue_depth = 10\nmax_queue_depth_detached = 10\n"
                         "reconnect_keep_alive_ms = 60000\n")
    proxy = make_proxy(server.port)
    sub, pub = make_driver("sub"), make_driver("pub")
    old_id = session_id(sub.connect(proxy.port)["session_id"])
    pub.connect(server.port)
    sub.subscribe("ov")
    proxy.refuse = True
    proxy.cut_all()

    def detached():
        return any(session_id(s["session_id"]) == old_id and s["state"] == "detached"
                   for s in pub.stats()["sessions"])
    eventually(detached, what="the subscriber's session detached")
    for i in range(15):
        pub.publish("ov", "e", f"away {i}")

    def overflowed():
        return any(session_id(t["session_id"]) == old_id and t["reason"] == "QUEUE_OVERFLOW"
                   for t in pub.stats()["closed_sessions"])
    eventually(overflowed, what="the session's overflow")
    proxy.refuse = False
    evs = sub.events(wait_ms=30_000)
    assert evs == [{"type": "lost", "reason": "QUEUE_OVERFLOW", "missed": 11}], evs

    def resubscribed():
        sub.events(wait_ms=50)
        return any(s["client_name"] == f"{sub.kind}-sub" and s["subscriptions"]
                   and session_id(s["session_id"]) != old_id
                   for s in pub.stats()["sessions"])
    eventually(resubscribed, what="the new session's subscription")
    pub.publish("ov", "e", "fresh")
    d = sub.recv()
    assert d is not None and d["payload"] == "fresh" and d["seq"] == 1, d
    assert sub.recv(timeout_ms=300) is None
    sub.call({"cmd": "close"})
    pub.call({"cmd": "close"})


def test_lost_server_restarted(make_server, make_driver) -> None:
    """After the server restarts, the resume is LOST(SERVER_RESTARTED), missed unknown; the
    client goes on in a new session of the new run, subscribed again."""
    server = make_server()
    c = make_driver("c")
    old_id = session_id(c.connect(server.port)["session_id"])
    c.subscribe("r")
    c.publish("r", "e", "before")
    assert c.recv()["payload"] == "before"
    server.stop()  # GOODBYE(SERVER_SHUTDOWN): every session ends
    server.start()  # same port, a new epoch
    evs = c.events(wait_ms=30_000)
    assert evs == [{"type": "lost", "reason": "SERVER_RESTARTED", "missed": None}], evs
    new = [s for s in c.stats()["sessions"] if s["client_name"] == f"{c.kind}-c"]
    assert new and all(session_id(s["session_id"]) >> 32 != old_id >> 32 for s in new), new
    assert c.publish("r", "e", "after") == 1
    d = c.recv()
    assert d is not None and d["payload"] == "after" and d["seq"] == 1, d
    c.call({"cmd": "close"})


# ------------------------------------------------------------------------------ auth


def test_auth_password_and_token(make_server, make_driver) -> None:
    """allow_anonymous = false: user/password and token are accepted; a bad password is
    AUTH_FAILED, no credentials AUTH_REQUIRED."""
    alice = hash_password("s3cret")
    token_hash = "sha256$" + hashlib.sha256(b"tok-bob").hexdigest()
    server = make_server(f'''
allow_anonymous = false

[[users]]
name = "alice"
password_hash = "{alice}"
publish = ["*"]
subscribe = ["*"]
admin = true

[[users]]
name = "bob"
token_hash = "{token_hash}"
publish = ["*"]
subscribe = ["*"]
''')
    a = make_driver("alice")
    require(a, "password", "no user/password authentication")
    a.connect(server.port, user="alice", password="s3cret")
    a.subscribe("auth")
    a.publish("auth", "e", "by alice")
    assert a.recv()["payload"] == "by alice"
    me = [s for s in a.stats()["sessions"] if s["client_name"] == f"{a.kind}-alice"]
    assert me and me[0]["identity"] == "user:alice", me

    if "token" in a.features:
        b = make_driver("bob")
        b.connect(server.port, token="tok-bob")
        b.publish("auth", "e", "by bob")
        assert a.recv()["payload"] == "by bob"
        b.call({"cmd": "close"})

    bad = make_driver("bad")
    with pytest.raises(DriverError) as e:
        bad.connect(server.port, user="alice", password="wrong")
    assert e.value.code == "AUTH_FAILED", e.value
    with pytest.raises(DriverError) as e:
        bad.connect(server.port)
    assert e.value.code == "AUTH_REQUIRED", e.value
    a.call({"cmd": "close"})


# ------------------------------------------------------------------------------ TLS


def make_ca_and_cert(tmp: Path, tag: str) -> tuple[Path, Path, Path]:
    """A self-signed CA and a server certificate it signed, for localhost and 127.0.0.1."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"weir conformance CA {tag}")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - datetime.timedelta(days=1))
          .not_valid_after(now + datetime.timedelta(days=2))
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                       content_commitment=False, key_encipherment=False,
                                       data_encipherment=False, key_agreement=False,
                                       encipher_only=False, decipher_only=False), critical=True)
          .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()),
                         critical=False)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
            .issuer_name(ca_name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=2))
            .add_extension(x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address(HOST))]),
                critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]),
                           critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))
    ca_path, cert_path, key_path = tmp / f"ca-{tag}.pem", tmp / f"cert-{tag}.pem", tmp / f"key-{tag}.pem"
    ca_path.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return ca_path, cert_path, key_path


def test_tls_with_generated_ca(make_server, make_driver, tmp_path: Path) -> None:
    """A TLS listener with a certificate from a CA made here: a client trusting that CA gets a
    session and pub/sub works inside TLS; a client trusting another CA gets none."""
    ca, cert, key = make_ca_and_cert(tmp_path, "a")
    other_ca, _, _ = make_ca_and_cert(tmp_path, "b")
    server = make_server(f'tls_cert = "{cert}"\ntls_key = "{key}"\nhandshake_timeout_ms = 2000\n')
    d = make_driver("tls")
    require(d, "tls", "no TLS transport")
    d.connect(server.port, tls_ca=str(ca), tls_name="localhost")
    d.subscribe("tls", ["e"])
    d.publish("tls", "e", "inside TLS")
    got = d.recv()
    assert got is not None and got["payload"] == "inside TLS"
    d.call({"cmd": "close"})
    untrusting = make_driver("untrusting")
    with pytest.raises(DriverError):
        untrusting.connect(server.port, tls_ca=str(other_ca), tls_name="localhost")


# ------------------------------------------------------------------------------ WebSocket


def test_websocket_pubsub(make_server, make_driver, tmp_path: Path) -> None:
    """A WebSocket listener (subprotocol weir.v1) beside the TCP one: pub/sub over it, and
    1,000 messages published over TCP arrive over WebSocket once each, in order."""
    d = make_driver("ws")
    require(d, "websocket", "no WebSocket transport")
    if not server_has_websocket(tmp_path):
        pytest.skip(WS_BRANCH_NOTE)
    tcp_port, ws_port = free_port(), free_port()
    server = make_server(ws_config(tcp_port, ws_port), port=tcp_port)
    d.call({"cmd": "connect", "url": f"ws://{HOST}:{ws_port}/", "name": f"{d.kind}-ws"})
    d.subscribe("ws", ["e"])
    assert d.publish("ws", "e", "over websocket") == 1
    got = d.recv()
    assert got is not None and got["payload"] == "over websocket" and got["event"] == "e", got
    pub = make_driver("tcp-pub")
    pub.connect(server.port)
    d.send({"cmd": "recv_many", "n": 1000, "prefix": "w", "timeout_ms": 20_000})
    pub.call({"cmd": "publish_many", "queue": "ws", "event": "e", "n": 1000, "prefix": "w"})
    got = d.reply(timeout=120)
    assert got["received"] == 1000 and got["in_order"], got
    assert d.recv(timeout_ms=300) is None
    d.call({"cmd": "close"})
    pub.call({"cmd": "close"})


def test_websocket_resume_through_chaos_proxy(make_server, make_proxy, make_driver,
                                              tmp_path: Path) -> None:
    """A WebSocket subscriber behind the chaos proxy (cuts inside WebSocket frames, and on
    reconnections inside the HTTP upgrade too): it resumes, and 10,000 messages arrive once
    each, in order."""
    d = make_driver("ws")
    require(d, "websocket", "no WebSocket transport")
    if not server_has_websocket(tmp_path):
        pytest.skip(WS_BRANCH_NOTE)
    tcp_port, ws_port = free_port(), free_port()
    server = make_server(ws_config(tcp_port, ws_port), port=tcp_port)
    proxy = make_proxy(ws_port, cuts=CHAOS_CUTS, seed=CHAOS_SEED + 2, min_bytes=2_000,
                       later_min_bytes=1, max_bytes=40_000)
    n = 10_000
    d.call({"cmd": "connect", "url": f"ws://{HOST}:{proxy.port}/", "name": f"{d.kind}-ws"})
    d.subscribe("wsc", ["e"])
    pub = make_driver("tcp-pub")
    pub.connect(server.port)
    d.send({"cmd": "recv_many", "n": n, "prefix": "w", "timeout_ms": 30_000})
    pub.call({"cmd": "publish_many", "queue": "wsc", "event": "e", "n": n, "prefix": "w"})
    got = d.reply(timeout=300)
    assert got["received"] == n and got["in_order"], (got, proxy.offsets)
    assert d.recv(timeout_ms=300) is None
    assert proxy.cuts_done == CHAOS_CUTS, proxy.offsets
    evs = d.events()
    assert evs and all(e["type"] == "resumed" for e in evs), evs
    d.call({"cmd": "close"})
    pub.call({"cmd": "close"})
