"""firmware_stubs.modem.at: the AT interpreter (V.250, TS 27.007) with the real emulated USIM,
bytes in and out, no pty (the serial path is in tests/integration/test_modem.py)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from firmware_stubs.modem.at import MAX_LINE, AtModem, parse_arguments
from firmware_stubs.usim.engine import UsimEngine
from firmware_stubs.usim.profile import DEFAULT_PROFILE, parse_profile
from tests.usim_vectors import milenage_cards
from uicc.links.at_codec import AtResponseReader, build_csim, parse_crsm, parse_csim
from uicc.links.base import exchange
from uicc.usim import UsimClient


@pytest.fixture
def modem() -> AtModem:
    m = AtModem(UsimEngine(parse_profile(DEFAULT_PROFILE)))
    m.echo = False
    return m


def at(modem: AtModem, line: str, end: bytes = b"\r") -> str:
    return modem.receive_data(line.encode("latin-1") + end).decode("latin-1")


def test_plain_at_and_echo() -> None:
    m = AtModem(UsimEngine(parse_profile(DEFAULT_PROFILE)))
    assert m.receive_data(b"AT\r") == b"AT\r\r\nOK\r\n"  # echo is on after power-up
    assert m.receive_data(b"ATE0\r") == b"ATE0\r\r\nOK\r\n"  # echoed before it took effect
    assert m.receive_data(b"AT\r") == b"\r\nOK\r\n"
    assert m.receive_data(b"ATE1\r") == b"\r\nOK\r\n"
    assert m.receive_data(b"at\r") == b"at\r\r\nOK\r\n"  # case does not matter


@pytest.mark.parametrize("end", [b"\r", b"\n", b"\r\n"])
def test_line_endings(modem: AtModem, end: bytes) -> None:
    assert at(modem, "AT", end) == "\r\nOK\r\n"
    assert at(modem, "AT+CGMI", end) == "\r\ntrelab\r\n\r\nOK\r\n"


def test_identification(modem: AtModem) -> None:
    ident = modem.identity
    assert at(modem, "ATI") == (
        f"\r\n{ident.manufacturer}\r\n\r\n{ident.model}\r\n\r\nRevision: {ident.revision}\r\n"
        "\r\nOK\r\n"
    )
    for command, value in (("+CGMM", ident.model), ("+CGMR", ident.revision),
                           ("+CGSN", ident.imei), ("+GMI", ident.manufacturer)):  # fmt: skip
        assert at(modem, "AT" + command) == f"\r\n{value}\r\n\r\nOK\r\n"
        assert at(modem, "AT" + command + "=?") == "\r\nOK\r\n"
    digits = [int(d) for d in ident.imei]  # Luhn check digit (TS 23.003 §6.2.1)
    total = sum(d if i % 2 == 0 else (2 * d - 9 if d > 4 else 2 * d) for i, d in enumerate(digits))
    assert total % 10 == 0


def test_cmee_modes(modem: AtModem) -> None:
    assert at(modem, "AT+CIMI") == "\r\nERROR\r\n"  # CMEE 0: plain ERROR
    assert at(modem, "AT+CMEE=1") == "\r\nOK\r\n"
    assert at(modem, "AT+CMEE?") == "\r\n+CMEE: 1\r\n\r\nOK\r\n"
    assert at(modem, "AT+CIMI") == "\r\n+CME ERROR: 11\r\n"  # SIM PIN required
    assert at(modem, "AT+CMEE=2") == "\r\nOK\r\n"
    assert at(modem, "AT+CIMI") == "\r\n+CME ERROR: SIM PIN required\r\n"
    assert at(modem, "AT+CMEE=?") == "\r\n+CMEE: (0-2)\r\n\r\nOK\r\n"
    assert at(modem, "AT+CMEE=7") == "\r\n+CME ERROR: Incorrect parameters\r\n"
    assert at(modem, "ATZ") == "\r\nOK\r\n" and modem.cmee == 0 and modem.echo


def test_pin_flow_and_imsi(modem: AtModem) -> None:
    at(modem, "AT+CMEE=1")
    assert at(modem, "AT+CPIN?") == "\r\n+CPIN: SIM PIN\r\n\r\nOK\r\n"
    assert at(modem, 'AT+CPIN="0000"') == "\r\n+CME ERROR: 16\r\n"  # incorrect password
    assert at(modem, 'AT+CPIN="1234"') == "\r\nOK\r\n"
    assert at(modem, "AT+CPIN?") == "\r\n+CPIN: READY\r\n\r\nOK\r\n"
    assert at(modem, 'AT+CPIN="1234"') == "\r\n+CME ERROR: 3\r\n"  # nothing to enter
    assert at(modem, "AT+CIMI") == f"\r\n{DEFAULT_PROFILE['imsi']}\r\n\r\nOK\r\n"


def test_pin_blocked_after_three_tries_then_puk(modem: AtModem) -> None:
    at(modem, "AT+CMEE=1")
    for _ in range(3):
        assert at(modem, 'AT+CPIN="9999"') == "\r\n+CME ERROR: 16\r\n"
    assert at(modem, "AT+CPIN?") == "\r\n+CPIN: SIM PUK\r\n\r\nOK\r\n"
    assert at(modem, "AT+CIMI") == "\r\n+CME ERROR: 12\r\n"  # SIM PUK required
    assert at(modem, 'AT+CPIN="12345678"') == "\r\n+CME ERROR: 50\r\n"  # new PIN missing
    assert at(modem, 'AT+CPIN="00000000","4321"') == "\r\n+CME ERROR: 16\r\n"
    assert at(modem, 'AT+CPIN="12345678","4321"') == "\r\nOK\r\n"
    assert at(modem, "AT+CPIN?") == "\r\n+CPIN: READY\r\n\r\nOK\r\n"


def test_several_commands_on_one_line(modem: AtModem) -> None:
    out = at(modem, 'ATE0V1+CMEE=1;+CPIN="1234";+CIMI')
    assert out == f"\r\n{DEFAULT_PROFILE['imsi']}\r\n\r\nOK\r\n"
    # The first failing command ends the line: later ones do not run.
    assert at(modem, "AT+CGMI;+NOPE;+CGMM") == "\r\ntrelab\r\n\r\nERROR\r\n"


def test_numeric_and_quiet_result_codes(modem: AtModem) -> None:
    assert at(modem, "ATV0") == "0\r"
    assert at(modem, "AT+CGMI") == "trelab\r\n0\r"
    assert at(modem, "AT+XYZ") == "4\r"
    assert at(modem, "ATV1Q1") == ""
    assert at(modem, "AT+CGMI") == "\r\ntrelab\r\n"  # information text stays, no OK
    assert at(modem, "ATQ0") == "\r\nOK\r\n"


def test_csim_passes_tpdus_through_61xx_included(modem: AtModem) -> None:
    out = at(modem, 'AT+CSIM=14,"00A4000C023F00"')
    assert out == '\r\n+CSIM: 4,"9000"\r\n\r\nOK\r\n'
    select_mf = at(modem, 'AT+CSIM=14,"00A40004023F00"')
    assert select_mf.startswith('\r\n+CSIM: 4,"61')  # the modem does not fetch for the host
    length = select_mf.split('"')[1][2:]
    fcp = at(modem, f'AT+CSIM=10,"00C00000{length}"')
    assert fcp.startswith("\r\n+CSIM: ") and '"62' in fcp and fcp.endswith('9000"\r\n\r\nOK\r\n')


def test_csim_malformed(modem: AtModem) -> None:
    at(modem, "AT+CMEE=1")
    assert at(modem, 'AT+CSIM=10,"00A4000C023F00"') == "\r\n+CME ERROR: 50\r\n"  # length
    assert at(modem, 'AT+CSIM=13,"00A4000C023F0"') == "\r\n+CME ERROR: 50\r\n"  # odd hex
    assert at(modem, 'AT+CSIM=14,"00A4000C023FZZ"') == "\r\n+CME ERROR: 25\r\n"  # not hex
    assert at(modem, "AT+CSIM=14") == "\r\n+CME ERROR: 50\r\n"
    assert at(modem, 'AT+CSIM=4,"00A4') == "\r\nERROR\r\n"  # unterminated string
    # A well-formed AT line with a malformed APDU: the card's status word comes back.
    assert at(modem, 'AT+CSIM=14,"00A4000C053F00"') == '\r\n+CSIM: 4,"6700"\r\n\r\nOK\r\n'
    assert at(modem, 'AT+CSIM=10,"00EE000000"') == '\r\n+CSIM: 4,"6D00"\r\n\r\nOK\r\n'
    assert at(modem, 'AT+CSIM=10,"FFA4000000"') == '\r\n+CSIM: 4,"6E00"\r\n\r\nOK\r\n'
    assert at(modem, 'AT+CSIM=4,"00A4"') == '\r\n+CSIM: 4,"6700"\r\n\r\nOK\r\n'


def test_crsm(modem: AtModem) -> None:
    at(modem, "AT+CMEE=1")
    iccid = parse_crsm(_info(at(modem, "AT+CRSM=176,12258,0,0,10")))
    assert iccid[0] == 0x9000 and iccid[1].hex().startswith("98881201")
    assert parse_crsm(_info(at(modem, "AT+CRSM=176,28423,0,0,9")))[0] == 0x6982  # EF.IMSI: PIN
    at(modem, 'AT+CPIN="1234"')
    sw, imsi = parse_crsm(_info(at(modem, 'AT+CRSM=176,28423,0,0,9,,"3F007FFF"')))
    assert sw == 0x9000 and imsi.hex() == "080910101032547698"
    sw, record = parse_crsm(_info(at(modem, "AT+CRSM=178,12032,1,4,0")))  # EF.DIR record 1
    assert sw in (0x9000, 0x6700) or record  # P3 0 means 256 on READ RECORD: card decides
    sw, fcp = parse_crsm(_info(at(modem, "AT+CRSM=192,28423")))  # GET RESPONSE: FCP
    assert sw == 0x9000 and fcp[0] == 0x62
    assert parse_crsm(_info(at(modem, "AT+CRSM=176,28672,0,0,1")))[0] == 0x6A82  # no 7000
    assert parse_crsm(_info(at(modem, "AT+CRSM=242")))[0] == 0x9000
    assert at(modem, "AT+CRSM=99,28423") == "\r\n+CME ERROR: 50\r\n"
    assert at(modem, 'AT+CRSM=214,28423,0,0,1,"ZZ"') == "\r\n+CME ERROR: 25\r\n"
    assert at(modem, "AT+CRSM=214,28423,0,0,1") == "\r\n+CME ERROR: 50\r\n"  # data missing


def _info(out: str) -> tuple[str, ...]:
    reader = AtResponseReader()
    final = reader.feed(out.encode())
    assert final is not None and final.ok, out
    return final.lines


def test_garbage_and_unknown_commands_are_errors(modem: AtModem) -> None:
    for line in ("hello", "A", "AT+", "AT+CGMI?X", "ATX9", "AT&", "AT!", "AT+CGMI=1?", "ATE?"):
        assert at(modem, line) == "\r\nERROR\r\n", line
    assert at(modem, "") == ""  # an empty line is no command
    assert modem.receive_data(b"\xff\x00\x1b[A\r") == b"\r\nERROR\r\n"
    assert at(modem, "AT") == "\r\nOK\r\n"  # and the modem still works


def test_over_long_lines_are_errors_and_memory_stays_bounded(modem: AtModem) -> None:
    assert at(modem, "AT" + "E" * (MAX_LINE - 2)) == "\r\nOK\r\n"  # E E E …: valid V.250
    assert at(modem, "AT" + "E" * (MAX_LINE - 1)) == "\r\nERROR\r\n"  # too long
    assert at(modem, "AT" + " " * (MAX_LINE - 2)) == "\r\nOK\r\n"  # 1024 characters: fine
    assert at(modem, "AT" + " " * (MAX_LINE - 1)) == "\r\nERROR\r\n"  # 1025: too long
    modem.receive_data(b"A" * 100_000)
    assert len(modem._line) <= MAX_LINE
    assert modem.receive_data(b"\r") == b"\r\nERROR\r\n"
    assert at(modem, "AT") == "\r\nOK\r\n"


def test_backspace_edits_the_line(modem: AtModem) -> None:
    assert modem.receive_data(b"ATX\x08+CGMI\r") == b"\r\ntrelab\r\n\r\nOK\r\n"


def test_parse_arguments() -> None:
    assert parse_arguments('1, "a,b" ,,x') == ["1", "a,b", None, "x"]
    assert parse_arguments("") == [None]
    assert parse_arguments('""') == [""]


def test_the_host_client_works_over_csim(modem: AtModem) -> None:
    """UsimClient ↔ AT+CSIM text ↔ modem ↔ USIM, all in memory: a 3GPP vector."""

    def csim(tpdu: bytes) -> bytes:
        final = AtResponseReader().feed(modem.receive_data(build_csim(tpdu).encode() + b"\r"))
        assert final is not None and final.ok
        return parse_csim(final.lines)

    class Link:
        name, atr = "memory", None

        def transmit(self, apdu: bytes) -> bytes:
            return exchange(csim, apdu)

        def close(self) -> None: ...

    card = milenage_cards()[0]
    client = UsimClient(Link())
    client.verify_pin("1234")
    assert client.authenticate(card.rand, card.autn).to_json()["res"] == card.expected["res"]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(max_size=64) | st.sampled_from(
    [b"AT+CSIM=", b'"00A4', b"AT+CRSM=176,", b"\r", b"\n", b",", b"AT+CPIN", b"?", b"=?",
     b"AT+CMEE=2;", b'"', b"ATV0", b"ATQ1", b"ATE1"]), max_size=20))  # fmt: skip
def test_fuzzed_input_never_raises_and_every_line_gets_an_answer(chunks: list[bytes]) -> None:
    modem = AtModem(UsimEngine(parse_profile(DEFAULT_PROFILE)))
    for chunk in chunks:
        out = modem.receive_data(chunk)
        assert isinstance(out, bytes)
    modem.receive_data(b"\rATZ\r")  # whatever state the fuzz left, a reset line recovers
    assert modem.receive_data(b"ATE0\r").endswith(b"\r\nOK\r\n")
    assert modem.receive_data(b"AT\r") == b"\r\nOK\r\n"
