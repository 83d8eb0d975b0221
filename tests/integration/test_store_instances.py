"""More than one machine, by simulation: two `trelab network serve` instances, each with two
gunicorn workers, on their own ports and one PostgreSQL database. Devices (software USIMs: the
attach needs no TPM) are spread across them at once; each device's first request is then sent
again to the other instance. Same guarantees as one process: the retry gets the same reply,
the subscriber's SQN moved once per attach, nothing lost, the audit chain whole."""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization

from aka.keyholder import SoftwareAes
from aka.milenage import Milenage
from aka.sqn import SqnState
from aka.usim import AkaSuccess, usim_authenticate
from lab.postgres import PostgresServer
from network.config import init_config, load_config
from network.server import NetworkApp
from network.store import Store
from protocol import messages as m
from protocol.client import HttpTransport
from protocol.transitions import Session, SessionState
from tests.helpers import REPO
from tests.unit.network.conftest import make_ca

DEVICES = 8


@contextmanager
def serving(config: Path, store: str, log: Path) -> Iterator[str]:
    """`trelab network serve --workers 2` on a free loopback port; yields its URL."""
    argv = [sys.executable, "-m", "host.cli", "network", "serve", "--listen", "127.0.0.1:0",
            "--plain-http", "--workers", "2", "--config", str(config), "--store", store, "--json"]  # fmt: skip
    with log.open("w") as err:
        process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=err, text=True, cwd=REPO)
    try:
        assert process.stdout is not None
        ready, _, _ = select.select([process.stdout], [], [], 90)
        line = process.stdout.readline() if ready else ""
        assert line, f"serve did not start: {log.read_text()[-800:]}"
        yield json.loads(line)["listening"]
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def attach_request(imsi: str) -> tuple[Session, bytes]:
    s = Session("device", SessionState(os.urandom(32)))
    return s, s.send(s.make(m.AttachRequest, imsi=imsi))


def finish_attach(
    transport: HttpTransport, s: Session, challenge: Any, k: bytes, opc: bytes
) -> Any:
    assert isinstance(challenge, m.AuthChallenge)
    result, _ = usim_authenticate(
        Milenage(SoftwareAes(k), opc), SqnState(), challenge.rand, challenge.autn
    )
    assert isinstance(result, AkaSuccess)
    return s.receive(transport.post("sho/auth", s.send(s.make(m.AuthResponse, res=result.res))))


def test_two_instances_share_one_postgresql(tmp_path: Path, postgres: PostgresServer) -> None:
    ca, _ = make_ca()
    bundle = tmp_path / "ca.pem"
    bundle.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    config_path = init_config(tmp_path / "network", ca_bundle=bundle)
    config = load_config(config_path)
    name = f"instances_{os.getpid()}"
    url = postgres.create_database(name)
    store = Store(url, config.store_key)
    try:
        app = NetworkApp(config, store)
        subscribers = []
        with store.transaction() as tx:
            for i in range(DEVICES):
                imsi, k, opc = f"00101{i + 1:010d}", os.urandom(16), os.urandom(16)
                app.operator.add_subscriber(tx, sho="sho-a", imsi=imsi, k=k, opc=opc,
                                            request_id=f"card:{imsi}", now=app.now())  # fmt: skip
                subscribers.append((imsi, k, opc))
        with ExitStack() as stack:
            urls = [
                stack.enter_context(serving(config_path.parent, url, tmp_path / f"serve-{n}.log"))
                for n in range(2)
            ]
            assert urls[0] != urls[1]
            servers = [HttpTransport(u) for u in urls]
            requests = [attach_request(imsi) for imsi, _, _ in subscribers]

            def first(i: int) -> bytes:  # device i on instance i % 2
                return servers[i % 2].post("sho/attach", requests[i][1])

            def retry(i: int) -> bytes:  # the same request, landing on the other instance
                return servers[(i + 1) % 2].post("sho/attach", requests[i][1])

            with ThreadPoolExecutor(DEVICES) as pool:
                replies = list(pool.map(first, range(DEVICES)))
                retried = list(pool.map(retry, range(DEVICES)))
            assert retried == replies  # the stored reply: same RAND/AUTN, no second vector
            results = []
            for i, (s, _) in enumerate(requests):
                challenge = s.receive(replies[i])
                _, k, opc = subscribers[i]
                results.append(finish_attach(servers[(i + 1) % 2], s, challenge, k, opc))
        assert all(isinstance(r, m.AttachResult) for r in results)
        with store.transaction() as tx:
            for imsi, _, _ in subscribers:
                record = tx.hss(imsi)
                assert record is not None and record.sqn["seq_he"] == 1  # one vector each
        events = Counter((e.event, e.subject) for e in store.audit_events())
        for (
            imsi,
            _,
            _,
        ) in subscribers:  # one vector and one attach per device: none twice, none lost
            assert events["vector", imsi] == events["attach", imsi] == 1
        store.verify_audit()
    finally:
        store.close()
        postgres.drop_database(name)
