"""Every parser of a CLI argument that takes hex or digits: keys, nonces and RAND/AUTN
(``parse_hex``), counters and indices (``parse_decimal``), ``--listen``, ``--vpcd``,
``--levels``, PINs and PUKs, IMSI/ICCID/PLMN digits, reader indices. The first byte picks the
parser, the rest is the argument."""

from __future__ import annotations

from collections.abc import Iterator

from bench.throughput import parse_levels
from firmware_stubs.card_serve import parse_vpcd_address
from firmware_stubs.usim.profile import encode_pin
from network.server import parse_listen
from tests.fuzz.oracle import typed
from trelab.digits import parse_decimal
from trelab.hexargs import parse_hex
from uicc import apdu, fs

PARSERS = (
    lambda t: parse_hex("--k", t, length=16),
    lambda t: parse_hex("--nonce", t),
    lambda t: parse_decimal("--counter", t, low=0, high=2**40),
    parse_listen,
    parse_vpcd_address,
    parse_levels,
    lambda t: encode_pin("--pin", t, digits=(4, 8)),
    lambda t: encode_pin("--adm", t, digits=(8, 8), allow_hex=True),
    apdu.encode_pin,
    lambda t: apdu.build_unblock_pin(t, "1234"),
    fs.encode_imsi,
    fs.encode_iccid,
    lambda t: fs.encode_bcd_swapped(t, 3),
)


def test_one_input(data: bytes) -> None:
    if not data:
        return
    parser = PARSERS[data[0] % len(PARSERS)]
    text = data[1:].decode("utf-8", "replace")
    result = typed(parser, text)
    if parser is PARSERS[2] and isinstance(result, int):
        assert text.isascii() and str(result) == text.lstrip("0").rjust(1, "0")


def starting_inputs() -> Iterator[bytes]:
    samples = [
        "465b5ce8b199b49faa5f0a2ee238a6bc",
        "0x00112233",
        "42",
        "127.0.0.1:8443",
        "localhost:35963",
        "1,2,4,8",
        "1234",
        "88888888",
        "1234",
        "12345678",
        "001010123456789",
        "8988211000000000017",
        "00101",
    ]
    for index, text in enumerate(samples):
        yield bytes([index]) + text.encode()
    yield bytes([2]) + "²".encode()
