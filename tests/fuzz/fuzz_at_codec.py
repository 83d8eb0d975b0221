"""The host's side of AT: the response reader (lines, echo, final result codes) and the
+CSIM/+CRSM decoders, fed what a hostile modem could send."""

from __future__ import annotations

from collections.abc import Iterator

from tests.fuzz.oracle import Reader, typed
from uicc.links.at_codec import AtResponseReader, parse_crsm, parse_csim


def test_one_input(data: bytes) -> None:
    reader = Reader(data)
    echo = reader.flag()
    lines = AtResponseReader('AT+CSIM=10,"00B0000009"' if echo else None)
    while reader.remaining():
        final = typed(lines.feed, reader.chunk(200))
        if isinstance(final, Exception):
            return
        if final is not None:
            csim = typed(parse_csim, final.lines)
            if isinstance(csim, bytes):
                assert len(csim) >= 2
            crsm = typed(parse_crsm, final.lines)
            if isinstance(crsm, tuple):
                assert 0 <= crsm[0] <= 0xFFFF
            lines = AtResponseReader()


def starting_inputs() -> Iterator[bytes]:
    samples = [
        b'\x01AT+CSIM=10,"00B0000009"\r\r\n+CSIM: 22,"089910101032547698F9000"\r\n\r\nOK\r\n',
        b'\x00\r\n+CSIM: 4,"9000"\r\n\r\nOK\r\n',
        b'\x00\r\n+CRSM: 144,0,"089910101032547698"\r\n\r\nOK\r\n',
        b"\x00\r\n+CME ERROR: 10\r\n",
        b"\x00\r\n+CMS ERROR: SIM failure\r\nERROR\r\n",
        '\x00\r\n+CSIM: ²,"9000"\r\n\r\nOK\r\n'.encode(),
    ]
    for sample in samples:
        yield sample[:1] + b"\xc7" + sample[1:]
