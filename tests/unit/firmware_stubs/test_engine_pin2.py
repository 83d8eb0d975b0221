"""The second application PIN (key reference 81, TS 102 221 §9.5.1) and its PUK: VERIFY, CHANGE,
DISABLE/ENABLE, UNBLOCK in the UICC class and as CHV2 in the GSM class (TS 51.011 §9.2.9–13);
EF.FDN and EF.BDN updated under PIN2 (TS 31.102 §4.2.24, §4.2.44); EF.ARR rules referenced from
every EF's FCP with tag 8B (TS 102 221 §9.2.4, §11.1.1.4.7.3)."""

from __future__ import annotations

from pathlib import Path

import pytest

from firmware_stubs.usim.engine import UsimEngine
from firmware_stubs.usim.profile import DEFAULT_PROFILE, parse_profile
from firmware_stubs.usim.state import CardStore
from uicc import fs

from .conftest import PIN1, Card, make_card, make_profile

PIN2 = b"5678" + b"\xff" * 4
PUK2 = b"23456789"
WRONG = b"9999" + b"\xff" * 4
NEW = b"2468" + b"\xff" * 4
FDN_RECORD = fs.EF_FDN.codec.encode({"alpha": "Home", "number": "12345678"}, 28)


def apdu(cla: int, ins: int, p2: int, data: bytes = b"") -> bytes:
    return bytes([cla, ins, 0x00, p2, len(data)]) + data


def sw(card: Card, command: bytes | str) -> int:
    return card.send(command)[1]


def update_fdn(card: Card) -> int:
    card.select_usim()
    assert sw(card, "00a40004026f3b") == 0x9000
    return sw(card, bytes([0x00, 0xDC, 0x01, 0x04, 28]) + FDN_RECORD)


def test_lab_profile_has_pin2_and_puk2() -> None:
    assert (DEFAULT_PROFILE["pin2"], DEFAULT_PROFILE["puk2"]) == ("5678", "23456789")


def test_verify_pin2_counts_tries_and_is_separate_from_pin1(card: Card) -> None:
    assert sw(card, "00200081") == 0x63C3
    assert sw(card, apdu(0, 0x20, 0x81, WRONG)) == 0x63C2
    assert sw(card, apdu(0, 0x20, 0x81, PIN1)) == 0x63C1  # PIN1's value is not PIN2
    assert sw(card, apdu(0, 0x20, 0x81, PIN2)) == 0x9000
    assert sw(card, "00200081") == 0x9000
    assert sw(card, "00200001") == 0x63C3  # PIN1 still unverified
    assert card.engine.state.pins["pin2"].remaining == 3


def test_fdn_update_needs_pin2_not_pin1_nor_adm1(card: Card) -> None:
    card.verify_pin1()
    assert update_fdn(card) == 0x6982
    card.verify_adm1()
    assert update_fdn(card) == 0x6982  # ADM1 is not the second PIN
    assert sw(card, apdu(0, 0x20, 0x81, PIN2)) == 0x9000
    assert update_fdn(card) == 0x9000
    data, status = card.send("00b2010400")
    assert status == 0x9000
    assert fs.EF_FDN.codec.decode(data) == {"alpha": "Home", "number": "12345678"}
    card.send("00a40004026f4d")  # EF.BDN: the same rule
    bdn = fs.EF_BDN.codec.encode({"alpha": "Premium", "number": "09000000"}, 29)
    assert sw(card, bytes([0x00, 0xDC, 0x01, 0x04, 29]) + bdn) == 0x9000


def test_pin2_blocks_and_puk2_unblocks_pin2_only(card: Card) -> None:
    assert [sw(card, apdu(0, 0x20, 0x81, WRONG)) for _ in range(3)] == [0x63C2, 0x63C1, 0x6983]
    assert sw(card, apdu(0, 0x20, 0x81, PIN2)) == 0x6983
    assert sw(card, "002c0081") == 0x63CA  # PUK2 tries
    assert sw(card, apdu(0, 0x2C, 0x01, PUK2 + NEW)) == 0x63C9  # PUK2 is not PUK1
    assert card.engine.state.pins["puk1"].remaining == 9
    assert card.engine.state.pins["puk2"].remaining == 10
    assert sw(card, apdu(0, 0x2C, 0x81, b"00000000" + NEW)) == 0x63C9
    assert sw(card, apdu(0, 0x2C, 0x81, PUK2 + b"12\xff\xff\xff\xff\xff\xff")) == 0x6A80
    assert sw(card, apdu(0, 0x2C, 0x81, PUK2 + NEW)) == 0x9000
    assert card.engine.state.pins["puk2"].remaining == 10
    assert sw(card, "00200081") == 0x9000  # verified by the unblock
    assert update_fdn(card) == 0x9000
    assert card.engine.state.pins["pin1"].remaining == 3  # PIN1 untouched


def test_change_disable_enable_pin2(card: Card) -> None:
    assert sw(card, apdu(0, 0x24, 0x81, WRONG + NEW)) == 0x63C2
    assert sw(card, apdu(0, 0x24, 0x81, PIN2 + NEW)) == 0x9000
    card.engine.reset()
    assert sw(card, apdu(0, 0x20, 0x81, PIN2)) == 0x63C2
    assert sw(card, apdu(0, 0x26, 0x81, NEW)) == 0x9000  # DISABLE: PIN2 not needed any more
    assert sw(card, apdu(0, 0x26, 0x81, NEW)) == 0x6985  # already disabled
    card.engine.reset()
    assert update_fdn(card) == 0x9000
    assert sw(card, apdu(0, 0x28, 0x81, NEW)) == 0x9000  # ENABLE
    card.engine.reset()
    assert update_fdn(card) == 0x6982
    assert card.engine.state.pins["pin1"].enabled  # PIN1's state is its own


def test_fcp_pin_status_template_lists_pin2_in_the_usim(card: Card) -> None:
    fcp = fs.parse_fcp(card.select_usim())
    assert (fcp.key_enabled(0x01), fcp.key_enabled(0x81)) == (True, True)
    assert sw(card, apdu(0, 0x26, 0x81, PIN2)) == 0x9000
    fcp = fs.parse_fcp(card.select_usim())
    assert (fcp.key_enabled(0x01), fcp.key_enabled(0x81)) == (True, False)
    mf, _ = card.send("00a40004023f00")
    assert fs.parse_fcp(mf).key_enabled(0x81) is None  # a local PIN of the USIM


def test_gsm_class_chv2(card: Card) -> None:
    def gsm(command: bytes | str) -> int:
        return card.send(command)[1]

    assert gsm(apdu(0xA0, 0x20, 0x02, WRONG)) == 0x9804
    assert gsm(apdu(0xA0, 0x20, 0x02, PIN2)) == 0x9000
    assert gsm(apdu(0xA0, 0x24, 0x02, PIN2 + NEW)) == 0x9000  # CHANGE CHV2
    assert [gsm(apdu(0xA0, 0x20, 0x02, WRONG)) for _ in range(3)] == [0x9804, 0x9804, 0x9840]
    assert gsm(apdu(0xA0, 0x2C, 0x02, PUK2 + PIN2)) == 0x9000  # UNBLOCK CHV2 (P2 02)
    assert card.engine.state.pins["pin2"].value == PIN2
    assert gsm("a0a40000027f20") == 0x9F16  # DF.GSM's response: the CHV2 status bytes
    data, status = card.send("a0c0000016")
    assert status == 0x9000
    assert data[20] == 0x83 and data[21] == 0x8A  # CHV2 3 tries, UNBLOCK CHV2 10


def test_gsm_access_nibble_of_a_pin2_file() -> None:
    # EF.FDN is not in DF.GSM; the nibble is checked on the declaration's GSM response form
    from firmware_stubs.usim import engine

    assert engine._gsm_access(fs.Access.PIN2) == 0x2  # TS 51.011 §9.3: 2 = CHV2


def test_card_without_pin2() -> None:
    card = make_card({k: v for k, v in DEFAULT_PROFILE.items() if k not in ("pin2", "puk2")})
    assert sw(card, "00200081") == 0x6A88
    assert sw(card, apdu(0, 0x2C, 0x81, PUK2 + NEW)) == 0x6A88
    assert sw(card, apdu(0xA0, 0x20, 0x02, PIN2)) == 0x9802  # no CHV2 initialised
    card.verify_pin1()
    card.verify_adm1()
    assert update_fdn(card) == 0x6982
    assert sw(card, "a0a40000023f00") == 0x9F16
    data, _ = card.send("a0c0000016")
    assert data[16] == 3 and data[20] == data[21] == 0


def test_profile_needs_pin2_and_puk2_together() -> None:
    with pytest.raises(Exception, match="pin2 and puk2"):
        make_profile(puk2=None)
    with pytest.raises(Exception, match="pin2 must be 4 to 8 digits"):
        make_profile(pin2="12")


def test_pin2_state_persists_and_old_state_gains_pin2(tmp_path: Path) -> None:
    path = tmp_path / "card.json"
    card = make_card(path=path)
    assert sw(card, apdu(0, 0x20, 0x81, WRONG)) == 0x63C2
    reloaded = make_card(path=path)
    assert reloaded.engine.state.pins["pin2"].remaining == 2
    # a state written by a card personalised without PIN2, loaded with a profile that has one
    old = tmp_path / "old.json"
    without = {k: v for k, v in DEFAULT_PROFILE.items() if k not in ("pin2", "puk2")}
    make_card(without, path=old)
    assert "pin2" not in old.read_text()
    upgraded = UsimEngine(parse_profile(DEFAULT_PROFILE), CardStore(old))
    assert upgraded.state.pins["pin2"].remaining == 3
    assert "pin2" in old.read_text()


def _files(node: fs.DF | fs.ADF, path: bytes = b"") -> list[tuple[bytes, fs.EF]]:
    out: list[tuple[bytes, fs.EF]] = []
    for child in node.children:
        here = path + child.fid.to_bytes(2, "big")
        if isinstance(child, fs.DF):
            out += _files(child, here)
        else:
            out.append((here, child))
    return out


@pytest.mark.parametrize("root", [fs.MF, fs.ADF_USIM, fs.ADF_ISIM], ids=lambda r: r.name)
def test_every_ef_fcp_resolves_through_ef_arr_to_its_declared_access(
    card: Card, root: fs.DF | fs.ADF
) -> None:
    """SELECT each file, follow its 8B to the EF.ARR record (selected by FID from there, as a
    terminal does), and compare the decoded rule with the declaration."""
    names = {fs.Access.ALW: "always", fs.Access.NEV: "never"}
    files = _files(root)
    for path, ef in files:
        if isinstance(root, fs.ADF):
            card.send(bytes([0x00, 0xA4, 0x04, 0x04, len(root.aid)]) + root.aid)
            data, status = card.send(bytes([0x00, 0xA4, 0x09, 0x04, len(path)]) + path)
        else:
            data, status = card.send(bytes([0x00, 0xA4, 0x08, 0x04, len(path)]) + path)
        assert status == 0x9000, ef.name
        reference = fs.parse_fcp(data).arr_reference
        assert reference is not None, ef.name
        arr_fid, record = reference
        assert sw(card, bytes([0x00, 0xA4, 0x00, 0x04, 2]) + arr_fid.to_bytes(2, "big")) == 0x9000
        rule, status = card.send(bytes([0x00, 0xB2, record, 0x04, fs.ARR_RECORD_LEN]))
        assert status == 0x9000, ef.name
        described = fs.describe_access_rule(fs.EF_ARR.codec.decode(rule))
        expected = {"read": names.get(ef.read, ef.read.value)}
        expected["update"] = names.get(ef.update, ef.update.value)
        assert described == expected, ef.name
    assert len(files) >= 5


def test_arr_records_are_the_expanded_format_of_ts_102_221() -> None:
    # read PIN1, update PIN2: AM 01 ‖ CRT A4 {83 01 01, 95 01 08}, AM 02 ‖ A4 {83 01 81, 95 01 08}
    expected = bytes.fromhex("800101a406830101950108800102a406830181950108")
    assert fs.arr_record(fs.Access.PIN1, fs.Access.PIN2).rstrip(b"\xff") == expected
    assert fs.arr_record(fs.Access.ALW, fs.Access.ALW).rstrip(b"\xff") == bytes.fromhex(
        "8001039000"
    )
    never = fs.EF_ARR.codec.decode(fs.arr_record(fs.Access.ALW, fs.Access.NEV))
    assert fs.describe_access_rule(never) == {"read": "always", "update": "never"}
    for ef in fs.all_efs():  # every declaration has its record
        assert 1 <= fs.arr_record_number(ef.read, ef.update) <= len(fs.ARR_RULES)


def test_a_card_personalised_with_pin2_disabled() -> None:
    """As test cards are often issued: PIN2 present but its verification disabled, so EF.BDN's
    ten records (TS 31.102 §4.2.44) are updated with PIN1 alone; ENABLE turns it back on."""
    card = make_card(dict(DEFAULT_PROFILE) | {"pin2_enabled": False})
    card.verify_pin1()
    card.select_usim()
    assert sw(card, "00a40004026f4d") == 0x9000
    record = bytes.fromhex("0123456789abcdef") * 3 + bytes.fromhex("0123456789")
    assert sw(card, bytes([0x00, 0xDC, 10, 0x04, 29]) + record) == 0x9000
    assert card.send(bytes([0x00, 0xB2, 10, 0x04, 29]))[0] == record
    assert sw(card, apdu(0, 0x28, 0x81, PIN2)) == 0x9000
    assert sw(card, bytes([0x00, 0xDC, 10, 0x04, 29]) + record) == 0x9000  # just verified
    card.engine.reset()
    card.verify_pin1()
    card.select_usim()
    card.send("00a40004026f4d")
    assert sw(card, bytes([0x00, 0xDC, 10, 0x04, 29]) + record) == 0x6982
    with pytest.raises(Exception, match="pin2_enabled"):
        make_profile(pin2_enabled="no")
