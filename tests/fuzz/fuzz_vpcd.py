"""vpcd framing (the card side of the virtual reader's TCP stream): length-prefixed control
bytes and APDUs, with the emulated USIM answering. Only RemoteProtocolError may leave, and
every APDU answer is framed with a status word."""

from __future__ import annotations

from collections.abc import Iterator

from firmware_stubs.vpcd import VpcdConnection
from tests.fuzz.oracle import Reader, typed
from tests.fuzz.usim_common import MILENAGE, fresh_engine


def test_one_input(data: bytes) -> None:
    engine = fresh_engine(MILENAGE)
    conn = VpcdConnection(engine)
    reader = Reader(data)
    while reader.remaining():
        out = typed(conn.receive_data, reader.chunk(256))
        if isinstance(out, Exception):
            return
        assert engine.last_error is None, f"card internal error {engine.last_error}"
        while out:
            length = int.from_bytes(out[:2], "big")
            assert 2 + length <= len(out)
            out = out[2 + length :]


def _frame(payload: bytes) -> bytes:
    return len(payload).to_bytes(2, "big") + payload


def starting_inputs() -> Iterator[bytes]:
    select = bytes.fromhex("00a4040407a0000000871002")
    yield b"\x80" + _frame(b"\x04") + _frame(b"\x01") + _frame(b"\x00") + _frame(select)
    yield b"\x80" + _frame(b"\x02") + _frame(bytes.fromhex("00a40004023f00"))
    yield b"\x80" + _frame(bytes.fromhex("80f2000000")) + _frame(b"\x03")
