"""``trelab network serve`` as a process, built-in server and gunicorn workers alike: SIGTERM
lets a request in flight finish (graceful stop), the server's limits on headers, the access log
(method, path, status, duration — never a grant or a body), TLS under gunicorn with the pinned
CA accepted and another refused by the CLI (exit 1, one line). No TPM: the requests are refused
ones, which is all a transport needs to carry to show these."""

from __future__ import annotations

import json
import os
import select
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from network.config import init_config
from protocol import messages as m
from tests.helpers import REPO
from tests.unit.network.conftest import make_ca


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("serve")
    ca, _ = make_ca()
    bundle = folder / "ca.pem"
    bundle.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    return init_config(folder / "net", ca_bundle=bundle, force=True)


class Server:
    def __init__(self, process: subprocess.Popen[str], url: str, log: Path) -> None:
        self.process, self.url, self.log = process, url, log
        host, port = url.rsplit("/", 1)[1].rsplit(":", 1)
        self.address = (host, int(port))


@contextmanager
def serving(
    config: Path, tmp_path: Path, workers: int | None, *, tls: bool = False
) -> Iterator[Server]:
    argv = [sys.executable, "-m", "host.cli", "network", "serve", "--listen", "127.0.0.1:0"]
    argv += ["--config", str(config), "--db", str(tmp_path / "n.db"), "--json"]
    argv += [] if tls else ["--plain-http"]
    argv += ["--workers", str(workers)] if workers else []
    log = tmp_path / "serve.log"
    with log.open("w") as err:
        process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=err, text=True, cwd=REPO)
    try:
        assert process.stdout is not None
        ready, _, _ = select.select([process.stdout], [], [], 60)
        line = process.stdout.readline() if ready else ""
        assert line, f"serve did not start: {log.read_text()[-800:]}"
        yield Server(process, json.loads(line)["listening"], log)
    finally:
        if process.poll() is None:
            process.kill()
        process.wait()


def raw_request(address: tuple[str, int], head: bytes, body: bytes = b"") -> bytes:
    with socket.create_connection(address, timeout=30) as sock:
        sock.sendall(head + body)
        return read_all(sock)


def read_all(sock: socket.socket) -> bytes:
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


def post_head(path: str, length: int, extra: str = "") -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: t\r\nContent-Type: application/cbor\r\n"
        f"Content-Length: {length}\r\nConnection: close\r\n{extra}\r\n"
    ).encode()


@pytest.mark.parametrize("workers", [None, 2], ids=["built-in", "gunicorn-2"])
def test_sigterm_finishes_the_request_in_flight(
    config: Path, tmp_path: Path, workers: int | None
) -> None:
    request = m.AttachRequest(
        session_id=os.urandom(32), transcript=m.INITIAL_TRANSCRIPT, imsi="001019999999999"
    )
    wire = m.encode(request)
    with serving(config, tmp_path, workers) as server:
        with socket.create_connection(server.address, timeout=30) as sock:
            sock.sendall(post_head("/v1/sho/attach", len(wire)) + wire[:10])
            time.sleep(0.5)  # the server is reading the body
            server.process.send_signal(signal.SIGTERM)
            time.sleep(0.5)
            sock.sendall(wire[10:])
            answer = read_all(sock)
        status_line, _, rest = answer.partition(b"\r\n")
        assert status_line.split()[1] == b"403", answer[:200]
        error = m.decode(rest.partition(b"\r\n\r\n")[2])
        assert isinstance(error, m.Error) and error.code == "unknown-subscriber"
        out, _ = server.process.communicate(timeout=60)
        assert server.process.returncode == 0
        assert json.loads(out)["responses"] == {"403": 1}
        with pytest.raises(OSError):  # stopped: nobody listens any more
            socket.create_connection(server.address, timeout=5).close()


def test_gunicorn_limits_and_access_log(config: Path, tmp_path: Path) -> None:
    grant = os.urandom(16).hex()
    with serving(config, tmp_path, 2) as server:
        many = "".join(f"X-Filler-{i}: {i}\r\n" for i in range(40))
        crowded = raw_request(server.address, post_head("/v1/drf/register", 1, many), b"\x00")
        assert crowded.split()[1] == b"431"  # gunicorn refuses it before the app
        long_line = raw_request(server.address, b"GET /" + b"a" * 5000 + b" HTTP/1.1\r\n\r\n")
        assert long_line.split()[1] in (b"400", b"414")
        body = b"\xa1\x00"
        refused = raw_request(
            server.address,
            post_head("/v1/drf/register", len(body), f"Authorization: PCID {grant}\r\n"),
            body,
        )
        assert refused.split()[1] == b"403"  # an unknown grant
        health = raw_request(server.address, b"GET /v1/health HTTP/1.1\r\nHost: t\r\n\r\n")
        assert health.split()[1] == b"200"
        server.process.send_signal(signal.SIGTERM)
        out, _ = server.process.communicate(timeout=60)
    assert server.process.returncode == 0
    assert json.loads(out)["responses"] == {"200": 1, "403": 1}
    log = server.log.read_text()
    assert "POST /v1/drf/register 403" in log and "GET /v1/health 200" in log
    assert grant not in log and "Authorization" not in log
    access = [line for line in log.splitlines() if "/v1/drf/register 403" in line]
    assert access and access[0].rstrip().endswith("ms")  # the duration


def test_gunicorn_over_tls_pinned_ca_accepted_another_refused(config: Path, tmp_path: Path) -> None:
    from network.config import init_config
    from protocol.client import HttpTransport
    from protocol.errors import RemoteProtocolError, ServerNotTrusted

    pinned = json.loads((config.parent / "device-trust.json").read_text())["tls_ca"]
    bundle = config.parent.parent / "ca.pem"
    other = init_config(tmp_path / "other", ca_bundle=bundle, force=True)
    with serving(config, tmp_path, 2, tls=True) as server:
        assert server.url.startswith("https://")
        with pytest.raises(RemoteProtocolError):  # a round trip over TLS: a 400 Error
            HttpTransport(server.url, tls_ca=pinned).post("drf/register", b"\xff\x00")
        stranger = json.loads((other.parent / "device-trust.json").read_text())["tls_ca"]
        with pytest.raises(ServerNotTrusted):
            HttpTransport(server.url, tls_ca=stranger).post("drf/register", b"\xff\x00")
        order = [sys.executable, "-m", "host.cli", "operator", "order", "--mid", "m1"]
        order += ["--transition", "suspend", "--sho", "sho-a", "--network", server.url]
        ours = subprocess.run(
            [*order, "--config", str(config)], capture_output=True, text=True, cwd=REPO
        )
        assert ours.returncode == 2 and "no MID m1" in ours.stderr  # the network answered it
        theirs = subprocess.run(
            [*order, "--config", str(other)], capture_output=True, text=True, cwd=REPO
        )
        assert theirs.returncode == 1, theirs.stderr
        assert "TLS certificate is not the pinned network's" in theirs.stderr
        assert theirs.stderr.count("\n") == 1 and "Traceback" not in theirs.stderr
        server.process.send_signal(signal.SIGTERM)
        out, _ = server.process.communicate(timeout=60)
    assert json.loads(out)["responses"] == {"400": 1, "403": 1}  # the stranger never got in
