"""firmware_stubs.card_serve.CardServer over real loopback TCP, the test playing vpcd: framing
on the wire, reconnection when "pcscd" goes away and comes back, the status file, stop()."""

from __future__ import annotations

import io
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from firmware_stubs.card_serve import CardServer, parse_vpcd_address, read_status
from firmware_stubs.usim.engine import ATR, UsimEngine
from firmware_stubs.usim.profile import DEFAULT_PROFILE, parse_profile
from firmware_stubs.vpcd import CTRL_ATR, CTRL_ON, encode_frame
from trelab import proc
from trelab.errors import BadInput


def _recv_frame(conn: socket.socket) -> bytes:
    def exact(n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = conn.recv(n - len(data))
            assert chunk, "card closed the connection"
            data += chunk
        return data

    return exact(int.from_bytes(exact(2), "big"))


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(1)
    sock.settimeout(10)
    yield sock
    sock.close()


@pytest.fixture
def server(listener: socket.socket, tmp_path: Path) -> Iterator[CardServer]:
    card = UsimEngine(parse_profile(DEFAULT_PROFILE))
    port = listener.getsockname()[1]
    srv = CardServer(
        card, ("127.0.0.1", port), status_file=tmp_path / "status.json", log=io.StringIO()
    )
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv
    srv.stop()
    thread.join(5)
    assert not thread.is_alive()
    srv.close()


def test_serves_atr_and_apdus_and_reconnects(
    listener: socket.socket, server: CardServer, tmp_path: Path
) -> None:
    for session in (1, 2):
        conn, _ = listener.accept()
        with conn:
            conn.sendall(encode_frame(bytes([CTRL_ON])) + encode_frame(bytes([CTRL_ATR])))
            assert _recv_frame(conn) == ATR
            conn.sendall(encode_frame(bytes.fromhex("00a40004023f00")))
            assert _recv_frame(conn)[:1] == b"\x61"
            assert proc.wait_until(lambda: server.state == "attached", 5.0)
            assert read_status(tmp_path / "status.json")["state"] == "attached"  # type: ignore[index]
        # vpcd went away (pcscd restart): the card detaches and connects again.
        assert proc.wait_until(lambda s=session: server.counters.sessions == s, 5.0)
    assert server.counters.apdus == 2
    log = server.log.getvalue()  # type: ignore[attr-defined]
    assert log.count("attached") == 2 and "detached" in log


def test_retries_until_vpcd_listens(tmp_path: Path) -> None:
    with socket.socket() as probe:  # a free port nobody listens on yet
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    card = UsimEngine(parse_profile(DEFAULT_PROFILE))
    srv = CardServer(card, ("127.0.0.1", port), status_file=tmp_path / "s.json", log=io.StringIO())
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    try:
        assert proc.wait_until(lambda: "not reachable" in srv.log.getvalue(), 5.0)  # type: ignore[attr-defined]
        with socket.socket() as late:
            late.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            late.bind(("127.0.0.1", port))
            late.listen(1)
            late.settimeout(10)
            conn, _ = late.accept()
            with conn:
                conn.sendall(encode_frame(bytes([CTRL_ATR])))
                assert _recv_frame(conn) == ATR
    finally:
        srv.stop()
        thread.join(5)
        srv.close()
    assert not thread.is_alive()
    assert read_status(tmp_path / "s.json")["state"] == "stopped"  # type: ignore[index]


def test_garbage_from_vpcd_drops_the_connection_not_the_server(
    listener: socket.socket, server: CardServer
) -> None:
    conn, _ = listener.accept()
    with conn:
        conn.sendall(b"\xff\xff" + bytes(16))  # a frame no TPDU can be
        assert conn.recv(10) == b""  # the card hung up
    conn, _ = listener.accept()  # and came back
    with conn:
        conn.sendall(encode_frame(bytes([CTRL_ATR])))
        assert _recv_frame(conn) == ATR
    assert "protocol error" in server.log.getvalue()  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("text", "address"),
    [("127.0.0.1:35964", ("127.0.0.1", 35964)), ("35964", ("127.0.0.1", 35964)),
     ("vpcd.lab", ("vpcd.lab", 35963)), ("[::1]:35963", ("::1", 35963))],
)  # fmt: skip
def test_vpcd_address(text: str, address: tuple[str, int]) -> None:
    assert parse_vpcd_address(text) == address


@pytest.mark.parametrize("text", ["host:0", "host:70000", "host:x"])
def test_bad_vpcd_address(text: str) -> None:
    with pytest.raises(BadInput, match=r"^vpcd: "):
        parse_vpcd_address(text)
