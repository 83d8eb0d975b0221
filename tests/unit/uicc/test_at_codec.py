"""uicc.links.at_codec: the terminal side of AT — final result codes, echo, +CSIM/+CRSM lines."""

from __future__ import annotations

import pytest

from trelab.errors import BadInput, RemoteProtocolError
from uicc.links.at_codec import AtResponseReader, build_crsm, build_csim, parse_crsm, parse_csim


def test_reader_in_pieces_with_echo_and_unsolicited_lines() -> None:
    command = 'AT+CSIM=10,"00B0000009"'
    reader = AtResponseReader(echo_of=command)
    stream = (command + '\r\r\n+CREG: 1\r\n\r\n+CSIM: 4,"6982"\r\n\r\nOK\r\nAT').encode()
    finals = [reader.feed(stream[i : i + 3]) for i in range(0, len(stream), 3)]
    final = next(f for f in finals if f is not None)
    assert final.ok and final.lines == ("+CREG: 1", '+CSIM: 4,"6982"')
    assert reader.leftover == b"AT"
    assert parse_csim(final.lines) == b"\x69\x82"


@pytest.mark.parametrize(
    ("text", "kind", "code"),
    [
        ("\r\nERROR\r\n", "error", None),
        ("\r\n+CME ERROR: 10\r\n", "cme", "10"),
        ("\r\n+CME ERROR: SIM PIN required\r\n", "cme", "SIM PIN required"),
        ("\r\n+CMS ERROR: 500\r\n", "cms", "500"),
        ("0\r", "ok", None),
        ("4\r", "error", None),
    ],
)
def test_final_result_codes(text: str, kind: str, code: str | None) -> None:
    final = AtResponseReader().feed(text.encode())
    assert final is not None and (final.kind, final.code) == (kind, code)


def test_endless_garbage_is_a_protocol_error() -> None:
    with pytest.raises(RemoteProtocolError, match="without end"):
        AtResponseReader().feed(b"x" * 5000)


def test_csim_and_crsm_lines() -> None:
    assert build_csim(bytes.fromhex("00a4000c023f00")) == 'AT+CSIM=14,"00A4000C023F00"'
    with pytest.raises(BadInput):
        build_csim(b"\x00")
    for bad in (('+CSIM: 6,"9000"',), ('+CSIM: 2,"90"',), ('+CSIM: 4,"90ZZ"',), ("OK",)):
        with pytest.raises(RemoteProtocolError):
            parse_csim(bad)
    assert build_crsm(176, 28423, 0, 0, 9) == "AT+CRSM=176,28423,0,0,9"
    assert build_crsm(176, 28423, 0, 0, 9, path=b"\x3f\x00\x7f\xff") == (
        'AT+CRSM=176,28423,0,0,9,,"3F007FFF"'
    )
    assert build_crsm(214, 28423, 0, 0, 1, b"\xaa") == 'AT+CRSM=214,28423,0,0,1,"AA"'
    assert build_crsm(242) == "AT+CRSM=242"
    assert parse_crsm(('+CRSM: 144,0,"0102"',)) == (0x9000, b"\x01\x02")
    assert parse_crsm(("+CRSM: 106,130",)) == (0x6A82, b"")
    for bad in (("+CRSM: x,0",), ("+CRSM: 144",), ('+CRSM: 144,0,"0"',), ()):
        with pytest.raises(RemoteProtocolError):
            parse_crsm(bad)
