"""uicc.apdu: command APDU cases, T=0 form, status words, USIM command builders, AUTHENTICATE data."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trelab.errors import BadInput, RemoteProtocolError
from uicc import apdu
from uicc.apdu import CommandApdu, parse_command, parse_response, to_t0


@pytest.mark.parametrize(
    ("raw", "case", "data", "le"),
    [
        ("00a40000", 1, "", None),
        ("00b0000009", 2, "", 9),
        ("00b0000000", 2, "", 256),
        ("00a40004023f00", 3, "3f00", None),
        ("00a40004023f0000", 4, "3f00", 256),
        ("00a40004023f0010", 4, "3f00", 16),
    ],
)
def test_parse_command_cases(raw: str, case: int, data: str, le: int | None) -> None:
    cmd = parse_command(bytes.fromhex(raw))
    assert (cmd.case, cmd.data.hex(), cmd.le) == (case, data, le)
    assert cmd.encode() == bytes.fromhex(raw)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("00a4", "header needs 4"),
        ("00a40004033f00", "Lc 3 but 2 bytes"),
        ("00a40004013f0000aa", "Lc 1 but 4 bytes"),
        ("00a4000400000a", "extended length"),
    ],
)
def test_parse_command_refuses_malformed(raw: str, message: str) -> None:
    with pytest.raises(BadInput, match=message):
        parse_command(bytes.fromhex(raw))


def test_command_fields_are_checked() -> None:
    with pytest.raises(BadInput, match="CLA"):
        CommandApdu(0x100, 0, 0, 0)
    with pytest.raises(BadInput, match="≤ 255"):
        CommandApdu(0, 0xD6, 0, 0, bytes(256))
    with pytest.raises(BadInput, match="Le 0"):
        CommandApdu(0, 0xB0, 0, 0, le=0)


def test_t0_form_drops_le_of_case_4_and_pads_case_1() -> None:
    select = apdu.build_select_fid(0x3F00)
    assert select.encode().hex() == "00a40004023f0000"
    assert to_t0(select).hex() == "00a40004023f00"
    assert to_t0(apdu.build_verify_query()).hex() == "0020000100"
    assert to_t0(apdu.build_read_binary(0, 9)).hex() == "00b0000009"


@given(st.binary(min_size=0, max_size=300))
def test_parse_command_never_crashes(raw: bytes) -> None:
    try:
        cmd = parse_command(raw)
    except BadInput:
        return
    assert cmd.encode() == raw or (raw[4:5] == b"\x00" and len(raw) == 5)


def test_status_word_helpers() -> None:
    assert apdu.more_data(0x6110) == 16 and apdu.more_data(0x6100) == 256
    assert apdu.more_data(0x9F22) == 0x22 and apdu.more_data(0x9000) is None
    assert apdu.wrong_le(0x6C09) == 9 and apdu.wrong_le(0x6700) is None
    assert apdu.pin_tries(0x63C2) == 2 and apdu.pin_tries(0x6983) is None
    assert apdu.is_success(0x9000) and apdu.is_success(0x9112) and not apdu.is_success(0x6982)
    resp = parse_response(bytes.fromhex("0102039000"))
    assert (resp.data, resp.sw, resp.sw1, resp.sw2, resp.ok) == (b"\1\2\3", 0x9000, 0x90, 0, True)
    with pytest.raises(RemoteProtocolError, match="no status word"):
        parse_response(b"\x90")


def test_pin_commands_pad_with_ff_and_check_digits() -> None:
    assert apdu.build_verify_pin("1234").encode().hex() == "0020000108" + "31323334ffffffff"
    unblock = apdu.build_unblock_pin("12345678", "4321").encode().hex()
    assert unblock == "002c000110" + "3132333435363738" + "34333231ffffffff"
    for bad in ("123", "123456789", "12a4", "１２３４"):
        with pytest.raises(BadInput, match="PIN: 4 to 8 decimal digits") as caught:
            apdu.build_verify_pin(bad)
        assert bad not in str(caught.value)  # a PIN never appears in a message
    with pytest.raises(BadInput, match="PUK: 8"):
        apdu.build_unblock_pin("1234", "1234")


def test_authenticate_commands() -> None:
    rand, autn = bytes(range(16)), bytes(range(16, 32))
    cmd = apdu.build_authenticate_3g(rand, autn)
    assert cmd.encode().hex() == "0088008122" + "10" + rand.hex() + "10" + autn.hex() + "00"
    assert to_t0(cmd).hex() == "0088008122" + "10" + rand.hex() + "10" + autn.hex()
    assert (
        apdu.build_authenticate_gsm(rand).encode().hex() == "0088008011" + "10" + rand.hex() + "00"
    )
    with pytest.raises(BadInput, match="RAND: 15 bytes"):
        apdu.build_authenticate_3g(rand[:15], autn)
    with pytest.raises(BadInput, match="AUTN: 15 bytes"):
        apdu.build_authenticate_3g(rand, autn[:15])


def test_authenticate_responses() -> None:
    res, ck, ik, kc = b"R" * 8, b"C" * 16, b"I" * 16, b"K" * 8
    body = b"\xdb\x08" + res + b"\x10" + ck + b"\x10" + ik + b"\x08" + kc
    ok = apdu.parse_auth_3g_response(body)
    assert isinstance(ok, apdu.Auth3gSuccess)
    assert (ok.res, ok.ck, ok.ik, ok.kc) == (res, ck, ik, kc)
    assert "R" not in repr(ok) and "hidden" in repr(ok)
    no_kc = apdu.parse_auth_3g_response(body[:-9])
    assert isinstance(no_kc, apdu.Auth3gSuccess) and no_kc.kc is None
    sync = apdu.parse_auth_3g_response(b"\xdc\x0e" + bytes(14))
    assert sync == apdu.Auth3gSync(bytes(14))
    assert apdu.parse_auth_gsm_response(b"\x04SRES\x08" + kc) == (b"SRES", kc)


@pytest.mark.parametrize(
    "data",
    ["", "db", "db0801", "dd020000", "db0101" + "1010" * 8, "dc0d" + "00" * 13, "db08" + "00" * 8],
)
def test_malformed_authenticate_responses(data: str) -> None:
    with pytest.raises(RemoteProtocolError):
        apdu.parse_auth_3g_response(bytes.fromhex(data))


def test_select_builders() -> None:
    assert (
        apdu.build_select_aid(apdu.USIM_AID_PREFIX).encode().hex() == "00a4040407a000000087100200"
    )
    assert (
        apdu.build_select_path(bytes.fromhex("7fff6f07")).encode().hex() == "00a40804047fff6f0700"
    )
    assert apdu.build_status().encode().hex() == "80f2000000"
    assert apdu.build_read_record(1, 0x20).encode().hex() == "00b2010420"
    with pytest.raises(BadInput):
        apdu.build_select_path(b"\x7f")
    with pytest.raises(BadInput):
        apdu.build_read_record(0, 1)
    with pytest.raises(BadInput):
        apdu.build_select_fid(0x10000)


@settings(max_examples=100, deadline=None)
@given(st.binary(min_size=16, max_size=16), st.binary(min_size=16, max_size=40))
def test_the_aka_paths_authenticate_bytes_are_the_built_apdus(rand: bytes, autn: bytes) -> None:
    from uicc.apdu import build_authenticate_3g, encode_authenticate_3g

    assert encode_authenticate_3g(rand, autn) == build_authenticate_3g(rand, autn).encode()
