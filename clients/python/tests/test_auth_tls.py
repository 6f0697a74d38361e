"""Authentication (protocol.md §Authentication) and TLS against a real weir-server."""

from __future__ import annotations

import base64
import datetime
import json
import subprocess
import time
import hashlib
import ipaddress
import ssl
from pathlib import Path

import pytest

import weir
from weir import Client, ErrorCode

from conftest import hash_password, server_bin

HOST = "127.0.0.1"
SIGNING_KEY = base64.b64encode(bytes(range(32))).decode()


@pytest.fixture
def auth_server(make_server):
    alice = hash_password("s3cret")
    token_hash = "sha256$" + hashlib.sha256(b"tok-bob").hexdigest()
    return make_server(f'''
allow_anonymous = false
token_signing_key = "{SIGNING_KEY}"

[[users]]
name = "alice"
password_hash = "{alice}"
publish = ["*"]
subscribe = ["*"]
admin = true

[[users]]
name = "bob"
token_hash = "{token_hash}"
publish = ["b.*"]
subscribe = ["b.*"]
''')


async def test_password_accepted_and_identity(auth_server) -> None:
    async with await Client.connect(HOST, auth_server.port, name="a", user="alice",
                                    password="s3cret") as c:
        sub = await c.subscribe("any")
        await c.publish("any", "e", b"ok")
        assert (await sub.get(timeout=10)).payload == b"ok"
        st = await c.stats()
        me = [s for s in st["sessions"] if int(s["session_id"], 16) == c.session_id][0]
        assert me["identity"] == "user:alice"


async def test_bad_password_refused(auth_server) -> None:
    with pytest.raises(weir.AuthFailed) as e:
        await Client.connect(HOST, auth_server.port, user="alice", password="wrong")
    assert e.value.code == ErrorCode.AUTH_FAILED
    assert e.value.code_name == "AUTH_FAILED" and e.value.code_number == 0x1B
    with pytest.raises(weir.AuthFailed):
        await Client.connect(HOST, auth_server.port, user="nobody", password="s3cret")
    with pytest.raises(weir.AuthRequired) as e2:
        await Client.connect(HOST, auth_server.port)
    assert e2.value.code == ErrorCode.AUTH_REQUIRED


async def test_token_and_not_authorized_is_not_fatal(auth_server) -> None:
    async with await Client.connect(HOST, auth_server.port, token="tok-bob") as c:
        with pytest.raises(weir.NotAuthorized) as e:
            await c.publish("a.x", "e", b"denied")
        assert e.value.code == ErrorCode.NOT_AUTHORIZED and not e.value.fatal
        assert e.value.ref_seq == 1
        with pytest.raises(weir.NotAuthorized):
            await c.subscribe("a.x")
        with pytest.raises(weir.NotAuthorized):
            await c.stats()
        # the connection and session go on; seq 1 was consumed
        sub = await c.subscribe("b.x")
        await c.publish("b.x", "e", b"fine")
        d = await sub.get(timeout=10)
        assert d.payload == b"fine"
    with pytest.raises(weir.AuthFailed):
        await Client.connect(HOST, auth_server.port, token="tok-wrong")


async def test_signed_token(auth_server) -> None:
    cfg = auth_server.tmp / f"weir-{auth_server.port}.toml"
    payload = {"subject": "svc", "exp": int(time.time()) + 3600, "publish": ["s.*"],
               "subscribe": ["s.*"], "admin": True}
    out = subprocess.run([server_bin(), "-c", str(cfg), "--sign-token", json.dumps(payload)],
                         capture_output=True, check=True, timeout=30)
    token = out.stdout.decode().strip()
    async with await Client.connect(HOST, auth_server.port, signed_token=token) as c:
        sub = await c.subscribe("s.1")
        await c.publish("s.1", "e", b"signed")
        assert (await sub.get(timeout=10)).payload == b"signed"
        st = await c.stats()
        me = [s for s in st["sessions"] if int(s["session_id"], 16) == c.session_id][0]
        assert me["identity"] == "subject:svc"
        with pytest.raises(weir.NotAuthorized):
            await c.publish("other", "e", b"no")
    i = len(token) - 10  # a character inside the signature (full 6 bits, no padding bits)
    bad = token[:i] + ("A" if token[i] != "A" else "B") + token[i + 1:]
    with pytest.raises(weir.AuthFailed):
        await Client.connect(HOST, auth_server.port, signed_token=bad)


def make_cert(tmp: Path) -> tuple[Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=2))
            .add_extension(x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address(HOST))]),
                critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = tmp / "cert.pem", tmp / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


async def test_tls_with_self_signed_certificate(make_server, tmp_path: Path) -> None:
    cert, key = make_cert(tmp_path)
    server = make_server(f'tls_cert = "{cert}"\ntls_key = "{key}"\n'
                         "handshake_timeout_ms = 1000\n")
    ctx = ssl.create_default_context(cafile=str(cert))
    async with await Client.connect(HOST, server.port, tls=ctx,
                                    server_hostname="localhost") as c:
        sub = await c.subscribe("tls", events=["e"])
        await c.publish("tls", "e", b"secret payload")
        d = await sub.get(timeout=10)
        assert d.payload == b"secret payload"
        assert c.welcome.outcome == weir.protocol.Outcome.NEW
    # a client that does not trust the certificate gets no session
    with pytest.raises(ssl.SSLError):
        await Client.connect(HOST, server.port, tls=ssl.create_default_context(),
                             server_hostname="localhost")
    # plain TCP to a TLS listener gets no session either
    with pytest.raises((weir.WeirError, OSError)) as e:
        await Client.connect(HOST, server.port, connect_timeout=5)
    print("plain TCP to TLS listener:", repr(e.value))


async def test_resume_carries_credentials(auth_server, make_proxy) -> None:
    proxy = await make_proxy(auth_server.port)
    c = await Client.connect(HOST, proxy.port, user="alice", password="s3cret",
                             reconnect_delay=0.02)
    try:
        sub = await c.subscribe("r")
        sid = c.session_id
        proxy.cut_all()
        await c.publish("r", "e", b"after cut")
        ev = await c.next_event(timeout=20)
        assert isinstance(ev, weir.Resumed) and ev.session_id == sid
        assert (await sub.get(timeout=10)).payload == b"after cut"
    finally:
        await c.close()
