"""The emulated modem's AT interpreter (ITU-T V.250, TS 27.007) with a USIM behind it: serial
bytes in, in the chunks the fuzzer picks. It never raises, and the card behind it never hits
an internal error (6F00)."""

from __future__ import annotations

from collections.abc import Iterator

from firmware_stubs.modem.at import AtModem
from tests.fuzz.oracle import Reader
from tests.fuzz.usim_common import MILENAGE, fresh_engine


def test_one_input(data: bytes) -> None:
    engine = fresh_engine(MILENAGE)
    modem = AtModem(engine)
    reader = Reader(data)
    while reader.remaining():
        modem.receive_data(reader.chunk(64))
        assert engine.last_error is None, f"card internal error {engine.last_error}"


def _lines(*lines: str) -> bytes:
    return "".join(line + "\r" for line in lines).encode("latin-1")


def starting_inputs() -> Iterator[bytes]:
    samples = [
        _lines("AT", "ATE0", "ATI", "AT+CGMI;+CGMM;+CGSN", "AT+GCAP"),
        _lines("AT+CMEE=2", "AT+CPIN?", 'AT+CPIN="1234"', "AT+CIMI"),
        _lines('AT+CSIM=14,"00A40004023F00"', 'AT+CSIM=10,"00C0000019"'),
        _lines("AT+CRSM=176,28423,0,0,9", "AT+CRSM=192,12258", "AT+CRSM=242"),
        _lines("ATE1V0Q0", "AT&F", "ATE²", "AT+CMEE=?", "AT+CMEE?"),
        _lines('AT+CPIN="12345678","4321"', "AT+CPIN?"),
    ]
    for sample in samples:
        yield b"".join(bytes([63]) + sample[i : i + 64] for i in range(0, len(sample), 64))
