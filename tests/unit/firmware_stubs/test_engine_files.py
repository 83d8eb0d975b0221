"""The emulated USIM's file commands: SELECT, FCP, READ/UPDATE BINARY and RECORD, STATUS, T=0."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from firmware_stubs.usim.engine import ATR
from uicc import fs
from uicc.sw import is_valid_sw

from .conftest import Card, make_card

USIM_AID = fs.USIM_AID


def _parse_atr(atr: bytes) -> tuple[list[int], dict[str, int], bytes, int]:
    """ISO/IEC 7816-3 §8.2 read again in the test: (protocols offered, interface bytes by
    name such as "TA1", historical bytes, XOR of T0 … TCK)."""
    assert atr[0] == 0x3B
    y, k = atr[1] >> 4, atr[1] & 0x0F
    i, n, protocols, interface = 2, 1, [], {}
    while True:
        for bit, name in ((1, "TA"), (2, "TB"), (4, "TC")):
            if y & bit:
                interface[f"{name}{n}"] = atr[i]
                i += 1
        if not y & 8:
            break
        td = atr[i]
        i += 1
        protocols.append(td & 0x0F)
        y, n = td >> 4, n + 1
    historical = atr[i : i + k]
    check = 0
    for byte in atr[1:]:
        check ^= byte
    assert len(atr) == i + k + (1 if any(protocols) else 0)
    return protocols, interface, historical, check


def test_atr_is_well_formed(card: Card) -> None:
    atr = card.engine.power_on()
    assert atr == card.engine.atr == ATR == card.engine.reset()
    protocols, interface, historical, check = _parse_atr(atr)
    assert protocols == [0, 1, 15]  # T=0 first (the default), T=1, global bytes of T=15
    assert check == 0  # TCK
    assert interface["TA1"] == 0x96 and interface["TA4"] == 0xC7  # classes A, B and C
    assert interface["TA3"] == 0xFE  # IFSC of T=1
    # historical bytes: category 80, then COMPACT-TLV objects (ISO/IEC 7816-4 §8.1.1)
    assert historical[0] == 0x80
    objects, i = {}, 1
    while i < len(historical):
        tag, length = historical[i] >> 4, historical[i] & 0x0F
        objects[tag] = historical[i + 1 : i + 1 + length]
        i += 1 + length
    assert objects[3][0] & 0xC0 == 0xC0  # selection by full and by partial DF name
    capabilities = objects[7]
    assert capabilities[1] & 0x80  # BER-TLV EFs
    assert capabilities[2] & 0x40  # extended Lc and Le fields (ISO/IEC 7816-4, card capabilities)
    assert capabilities[2] & 0x80 == 0  # no command chaining
    assert capabilities[2] & 0x07 == 0x07  # 8 or more logical channels
    assert capabilities[2] & 0x10  # assigned by the card (MANAGE CHANNEL P2 00)


def test_select_mf_fcp(card: Card) -> None:
    raw = card.raw("00a40004023f00")
    assert raw[0] == 0x61
    data, sw = card.send(bytes([0x00, 0xC0, 0, 0, raw[1]]))
    assert sw == 0x9000 and len(data) == raw[1]
    fcp = fs.parse_fcp(data)
    assert fcp.fid == 0x3F00 and fcp.is_df and fcp.structure == "df"
    assert fcp.lcsi == 0x05
    assert fcp.pin1_enabled is True
    assert 0x8C in fcp.raw and 0xA5 in fcp.raw


def test_select_usim_by_aid_prefix_and_full(card: Card) -> None:
    for aid in (USIM_AID[:7], USIM_AID, USIM_AID[:12]):
        data, sw = card.send(bytes([0x00, 0xA4, 0x04, 0x04, len(aid)]) + aid)
        assert sw == 0x9000
        fcp = fs.parse_fcp(data)
        assert fcp.aid == USIM_AID and fcp.is_df and fcp.pin_status is not None


def test_select_unknown_aid_and_fid(card: Card) -> None:
    assert card.send("00a4040407a0000000871009")[1] == 0x6A82  # no such 3GPP application
    assert card.send("00a40004026f07")[1] == 0x6A82  # EF.IMSI is not under the MF
    assert card.send("00a40004027fff")[1] == 0x6A82  # no application active yet
    assert card.send("00a4000402abcd")[1] == 0x6A82


def test_select_no_data_p2_0c(card: Card) -> None:
    assert card.raw("00a4040c07a0000000871002") == b"\x90\x00"
    assert card.raw("00a4000c026f07") == b"\x90\x00"


def test_select_ef_fcp_contents(card: Card) -> None:
    card.select_usim()
    data, sw = card.send("00a40004026f07")
    assert sw == 0x9000
    fcp = fs.parse_fcp(data)
    assert (fcp.fid, fcp.size, fcp.sfi, fcp.structure) == (0x6F07, 9, 0x07, "transparent")
    # 8B: referenced to ADF.USIM's EF.ARR (6F06); that record reads, in the expanded format of
    # TS 102 221 §9.2.4: AM 01 (read) under PIN1, AM 02 (update) under ADM1
    assert 0x8C not in fcp.raw
    arr_fid, record = fcp.arr_reference or (0, 0)
    assert arr_fid == 0x6F06
    card.send("00a40004026f06")
    rule, sw = card.send(bytes([0x00, 0xB2, record, 0x04, fs.ARR_RECORD_LEN]))
    assert sw == 0x9000
    assert rule.rstrip(b"\xff") == bytes.fromhex("800101a406830101950108800102a40683010a950108")
    data, _ = card.send("00a40804022f00")
    fcp = fs.parse_fcp(data)
    assert fcp.structure == "linear-fixed"
    assert (fcp.record_length, fcp.records) == (fs.EF_DIR.record_len, fs.EF_DIR.records)


def test_select_by_path(card: Card) -> None:
    data, sw = card.send("00a40804047fff6f07")  # 7FFF before any ADF: not found
    assert sw == 0x6A82
    card.select_usim()
    for apdu in ("00a40804047fff6f07", "00a408040 63f007fff6f07".replace(" ", "")):
        data, sw = card.send(apdu)
        assert sw == 0x9000 and fs.parse_fcp(data).fid == 0x6F07
    data, sw = card.send("00a40804022fe2")
    assert sw == 0x9000 and fs.parse_fcp(data).fid == 0x2FE2
    card.send("00a40004027fff")  # current DF is the ADF again
    data, sw = card.send("00a40904026fad")
    assert sw == 0x9000 and fs.parse_fcp(data).fid == 0x6FAD
    assert card.send("00a40804036f07")[1] == 0x6700  # odd path length
    assert card.send("00a40804042fe26f07")[1] == 0x6A82  # path through an EF


def test_select_parent_and_7fff(card: Card) -> None:
    card.select_usim()
    card.send("00a40004026f07")
    data, sw = card.send("00a4030400")
    assert sw == 0x9000 and fs.parse_fcp(data).fid == 0x3F00
    data, sw = card.send("00a40004027fff")
    assert sw == 0x9000 and fs.parse_fcp(data).aid == USIM_AID
    assert card.send("00a40004022fe2")[1] == 0x9000  # sibling of the ADF via the MF


def test_select_wrong_parameters(card: Card) -> None:
    assert card.send("00a4000802 3f00".replace(" ", ""))[1] == 0x6A86  # P2
    assert card.send("00a4050402 3f00".replace(" ", ""))[1] == 0x6A86  # P1
    assert card.send("00a4000403 3f0000".replace(" ", ""))[1] == 0x6700  # Lc 3
    assert card.send("00a4040411" + "a0" * 17)[1] == 0x6700  # AID > 16 bytes


def test_read_iccid_and_dir(card: Card) -> None:
    card.send("00a4000c022fe2")
    data, sw = card.send("00b000000a")
    assert sw == 0x9000 and fs.decode_iccid(data) == card.engine.profile.iccid
    card.send("00a4000c022f00")
    data, sw = card.send("00b2010420")
    assert sw == 0x9000
    assert fs.EF_DIR.codec.decode(data) == {"aid": USIM_AID.hex(), "label": "USIM"}
    data, sw = card.send("00b2020420")
    assert fs.EF_DIR.codec.decode(data) == {"aid": fs.ISIM_AID.hex(), "label": "ISIM"}
    assert card.send("00b2050420")[1] == 0x6A83  # record 5 of 4
    assert card.send("00b2010410")[1] == 0x6C20  # wrong Le → exact record length


def test_read_binary_offsets_sfi_and_le(card: Card) -> None:
    card.send("00a4000c022fe2")
    full, _ = card.send("00b000000a")
    assert card.send("00b0000304")[0] == full[3:7]
    assert card.send("00b0000000")[0] == full  # Le 00: everything left
    assert card.raw("00b000050a") == b"\x6c\x05"  # more than left → exact length
    assert card.send("00b0000a01")[1] == 0x6B00  # offset beyond the end
    card.send("00a4000c023f00")
    # SFI 02 (EF.ICCID) in P1 selects and reads without SELECT
    assert card.send("00b0820204")[0] == full[2:6]
    assert card.send("00b0000001")[1] == 0x9000  # EF.ICCID is now current
    assert card.send("00b0950001")[1] == 0x6A82  # no SFI 15 under the MF


def test_read_without_ef_and_wrong_structure(card: Card) -> None:
    assert card.send("00b0000001")[1] == 0x6986
    card.send("00a4000c022f00")
    assert card.send("00b0000001")[1] == 0x6981  # READ BINARY on a record EF
    card.send("00a4000c022fe2")
    assert card.send("00b2010410")[1] == 0x6981  # READ RECORD on a transparent EF


def test_read_imsi_needs_pin1(card: Card) -> None:
    card.select_usim()
    card.send("00a4000c026f07")
    assert card.send("00b0000009")[1] == 0x6982
    card.verify_pin1()
    data, sw = card.send("00b0000009")
    assert sw == 0x9000 and fs.decode_imsi(data) == "001010123456789"
    assert card.engine.imsi == "001010123456789"
    card.engine.power_on()  # PIN verification is volatile
    card.select_usim()
    card.send("00a4000c026f07")
    assert card.send("00b0000009")[1] == 0x6982


def test_read_imsi_without_pin_when_disabled() -> None:
    from firmware_stubs.usim.profile import DEFAULT_PROFILE

    card = make_card({**DEFAULT_PROFILE, "pin1_enabled": False})
    card.select_usim()
    assert card.send("00b0870009")[1] == 0x9000  # SFI 07 = EF.IMSI
    data, _ = card.send("00a4000402 3f00".replace(" ", ""))
    assert fs.parse_fcp(data).pin1_enabled is False


def test_update_binary_needs_adm(card: Card) -> None:
    card.select_usim()
    card.verify_pin1()
    card.send("00a4000c026f07")
    new = fs.encode_imsi("001019876543210")
    apdu = bytes([0x00, 0xD6, 0x00, 0x00, len(new)]) + new
    assert card.send(apdu)[1] == 0x6982  # PIN1 is not enough
    before = card.engine.state
    assert card.send(b"\x00\x20\x00\x0a\x08" + b"00000000")[1] == 0x63C2
    assert card.engine.state.files == before.files
    card.verify_adm1()
    assert card.send(apdu)[1] == 0x9000
    assert card.send("00b0000009")[0] == new
    assert card.engine.imsi == "001019876543210"
    # offsets and bounds
    assert card.send("00d6000802aaaa")[1] == 0x6700  # 8 + 2 > 9
    assert card.send("00d6000902aaaa")[1] == 0x6B00
    assert card.send("00d60008 01 ff".replace(" ", ""))[1] == 0x9000
    # EF.ICCID is never updatable
    card.send("00a4000c022fe2")
    assert card.send("00d600000101")[1] == 0x6982


def test_update_binary_by_sfi_and_update_record(card: Card) -> None:
    card.select_usim()
    card.verify_pin1()
    # EF.LOCI (SFI 0B) is updatable with PIN1
    assert card.send("00d68b0004 01020304".replace(" ", ""))[1] == 0x9000
    assert card.send("00b08b0004")[0] == bytes.fromhex("01020304")
    card.send("00a4000c023f00")
    card.send("00a4000c022f00")
    record = fs.EF_DIR.codec.encode({"aid": "a000000087100400", "label": "X"}, 32)
    assert card.send(bytes([0, 0xDC, 2, 4, 32]) + record)[1] == 0x6982  # ADM needed
    card.verify_adm1()
    assert card.send(bytes([0, 0xDC, 2, 4, 31]) + record[:31])[1] == 0x6700
    assert card.send(bytes([0, 0xDC, 2, 4, 32]) + record)[1] == 0x9000
    assert card.send("00b2020420")[0] == record
    # next / previous modes move the record pointer
    assert card.send("00b2000220")[0] == card.send("00b2010420")[0]  # next → 1
    assert card.send("00b2000220")[0] == record  # next → 2
    assert card.send("00b2000220")[1] == 0x9000  # next → 3
    assert card.send("00b2000220")[1] == 0x9000  # next → 4
    assert card.send("00b2000220")[1] == 0x6A83  # past the end of a linear file
    assert card.send("00b2000420")[1] == 0x9000  # current = 4 (the failed NEXT kept it)
    assert card.send("00b2000320")[1] == 0x9000  # previous → 3
    assert card.send("00b2000320")[0] == record  # previous → 2


def test_status(card: Card) -> None:
    data, sw = card.send("80f2000000")
    assert sw == 0x9000 and fs.parse_fcp(data).fid == 0x3F00
    assert card.raw("80f2000c00") == b"\x90\x00"
    assert card.send("80f2000100")[1] == 0x6985  # no application yet
    card.select_usim()
    data, sw = card.send("80f2000100")
    assert sw == 0x9000 and data == b"\x84\x10" + USIM_AID
    assert card.raw("80f2000005")[0] == 0x6C  # wrong Le → exact length
    assert card.send("00f2000000")[1] == 0x6E00  # STATUS is a UICC-class (80) command


def test_t0_get_response_flow(card: Card) -> None:
    raw = card.raw("00a4000402 3f00".replace(" ", ""))
    assert raw[0] == 0x61
    length = raw[1]
    # wrong Le → 6Cxx, and the data stays available
    assert card.raw(bytes([0, 0xC0, 0, 0, length + 1])) == bytes([0x6C, length])
    assert card.raw("00c0000000") == bytes([0x6C, length])
    # shorter Le → partial data + 61 rest
    part = card.raw("00c0000004")
    assert part[-2] == 0x61 and part[-1] == length - 4
    rest = card.raw(bytes([0, 0xC0, 0, 0, length - 4]))
    assert rest[-2:] == b"\x90\x00"
    assert fs.parse_fcp(part[:-2] + rest[:-2]).fid == 0x3F00
    # consumed: nothing left
    assert card.raw("00c0000010") == b"\x69\x85"
    # any other command in between drops the pending response
    card.raw("00a4000402 3f00".replace(" ", ""))
    card.raw("80f2000c00")
    assert card.raw("00c0000010") == b"\x69\x85"
    assert card.raw("00c0010010") == b"\x6a\x86"


def test_power_cycle_clears_volatile_state(card: Card) -> None:
    card.select_usim()
    raw = card.raw("00a40004026f07")
    assert raw[0] == 0x61
    card.engine.power_off()
    assert not card.engine.powered
    # a card that is off gets powered on by the next command: pending data and selection gone
    assert card.raw(bytes([0, 0xC0, 0, 0, raw[1]])) == b"\x69\x85"
    assert card.engine.powered
    assert card.send("00b0000001")[1] == 0x6986


@pytest.mark.parametrize(
    ("apdu", "sw"),
    [
        ("", 0x6700),
        ("00", 0x6700),
        ("00a400", 0x6700),
        ("00a4000402", 0x6700),  # Lc 2 announced, no data
        ("00a40004023f", 0x6700),  # truncated data
        ("00a40004023f0000ff", 0x6700),  # too long for Lc
        ("00a40004" + "00" + "3f00", 0x6700),  # extended length: not supported
        ("00b000000a0000", 0x6700),
        ("002000010831323334ffffff", 0x6700),  # PIN block 7 bytes: Lc says 8
        ("0020000104" + "31323334", 0x6700),  # PIN block must be 8 bytes
        ("0020000108", 0x6700),  # VERIFY announcing 8 bytes, none sent
        ("00ee000000", 0x6D00),
        ("0012000000", 0x6D00),
        ("80a40004023f00", 0x6E00),  # SELECT in the proprietary class
        ("a1a40000023f00", 0x6E00),  # not the GSM SIM class (A0)
        ("a0a40004023f00", 0x6B00),  # GSM SIM class: P1 P2 00 00 only
        ("a0a4000003" + "3f0000", 0x6700),
        ("a0b000000a0000", 0x6700),
        ("a0200001083132", 0x6700),
        ("a0880000" + "10" + "00" * 15, 0x6700),
        ("a0a20000", 0x6700),  # SEEK without a pattern
        ("a0c0000010", 0x6F00),  # GET RESPONSE out of sequence (TS 102 221 §12.1.1.1)
        ("a0ee000000", 0x6D00),
        ("ffa40000023f00", 0x6E00),
        ("20a40000023f00", 0x6E00),
        ("10a40004023f00", 0x6E00),  # command chaining
        ("01a40004023f00", 0x6881),  # logical channel 1, not open
        ("40a40004023f00", 0x6881),  # channel 4, not open
        ("cff2000000", 0x6881),  # channel 19 in the UICC class, not open
        ("0070000202", 0x6700),  # MANAGE CHANNEL: Le for a channel the terminal names
        ("0070001400", 0x6A86),  # channel 20
        ("0070800000", 0x6A86),  # closing the basic channel
        ("04a40004023f00", 0x6882),  # secure messaging
        ("00b2000520", 0x6A86),  # record mode 5
        ("0088008211" + "10" + "00" * 16, 0x6A86),  # unsupported AUTHENTICATE context
        ("0020000208" + "31323334ffffffff", 0x6A88),  # key reference 02 absent
        ("0020008104" + "35363738", 0x6700),  # PIN2 block must be 8 bytes
        ("002c008108" + "3233343536373839", 0x6700),  # UNBLOCK PIN2: PUK2 ‖ new PIN2
        ("0024008210" + "35363738ffffffff" + "35363738ffffffff", 0x6A88),  # no key 82
        ("a0200003083536373839ffffff", 0x6B00),  # CHV3
        ("00a2010501ff", 0x6986),  # SEARCH RECORD without a current EF
        ("80e2900002f100", 0x6985),  # STORE DATA without the ARA-M selected
        ("8032000003000001", 0x6986),  # INCREASE without a current EF
        ("00b00000" + "000100", 0x6986),  # extended READ BINARY, no EF
        ("00a40004" + "000002" + "3f00", 0x6700),  # extended SELECT: short only
    ],
)
def test_malformed_and_refused(card: Card, apdu: str, sw: int) -> None:
    before = (card.engine.state, card.engine.open_channels)
    out = card.raw(apdu)
    assert out == sw.to_bytes(2, "big")
    assert card.engine.last_error is None
    assert (card.engine.state, card.engine.open_channels) == before


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_random_bytes_never_raise(apdu: bytes) -> None:
    card = make_card()
    out = card.raw(apdu)
    assert len(out) >= 2
    sw = int.from_bytes(out[-2:], "big")
    assert is_valid_sw(sw)
    assert card.engine.last_error is None  # an internal error (6F00 with a reason)


@settings(max_examples=200, deadline=None)
@given(
    st.sampled_from([0x00, 0x80, 0x01, 0xA0, 0x40, 0xC3, 0x4F]),
    st.sampled_from(
        [
            0xA4,
            0xB0,
            0xB2,
            0xD6,
            0xDC,
            0x20,
            0x24,
            0x26,
            0x28,
            0x2C,
            0x88,
            0xC0,
            0xF2,
            0x10,
            0xA2,
            0x70,
            0xCB,
            0xDB,
            0xE2,
            0xCA,
            0x32,
        ]
    ),
    st.integers(0, 255),
    st.integers(0, 255),
    st.binary(max_size=40),
    st.one_of(st.none(), st.integers(0, 255)),
    st.booleans(),
)
def test_structured_garbage_never_raises(
    cla: int, ins: int, p1: int, p2: int, data: bytes, le: int | None, unlocked: bool
) -> None:
    card = make_card()
    card.select_usim()
    if unlocked:  # reach the UPDATE and AUTHENTICATE paths too
        card.verify_pin1()
        card.verify_adm1()
        assert card.send(b"\x00\x20\x00\x81\x08" + b"5678" + b"\xff" * 4)[1] == 0x9000
    apdu = bytes([cla, ins, p1, p2])
    if data:
        apdu += bytes([len(data)]) + data
    if le is not None:
        apdu += bytes([le])
    out = card.raw(apdu)
    assert len(out) >= 2 and is_valid_sw(int.from_bytes(out[-2:], "big"))
    assert card.engine.last_error is None


def test_cyclic_file_update_and_read(card: Card) -> None:
    card.select_usim()
    card.verify_pin1()
    data, sw = card.send("00a40004026f80")
    assert sw == 0x9000
    fcp = fs.parse_fcp(data)
    assert fcp.structure == "cyclic" and (fcp.record_length, fcp.records) == (30, 5)
    first, second = bytes([1]) * 30, bytes([2]) * 30
    # cyclic files accept UPDATE RECORD in PREVIOUS mode only; the new record becomes #1
    assert card.send(bytes([0, 0xDC, 1, 0x04, 30]) + first)[1] == 0x6A86
    assert card.send(bytes([0, 0xDC, 0, 0x03, 30]) + first)[1] == 0x9000
    assert card.send(bytes([0, 0xDC, 0, 0xA3, 30]) + second)[1] == 0x9000  # by SFI 14
    assert card.send("00b201041e")[0] == second
    assert card.send("00b202041e")[0] == first
    assert card.send("00b203041e")[0] == b"\xff" * 30
    # NEXT from record 1 (set by the update) runs 2…5, then wraps to 1
    card.send("00b205041e")  # absolute: pointer unchanged (1, after the update)
    assert [card.send("00b200021e")[0][:1] for _ in range(5)] == [
        b"\x01",
        b"\xff",
        b"\xff",
        b"\xff",
        b"\x02",
    ]
    assert card.send("00b200031e")[0] == b"\xff" * 30  # previous from 1 wraps to 5
    assert card.send("00a4010402 5f3a".replace(" ", ""))[1] == 0x6A82  # no child DF here


def test_profile_values_reach_the_files() -> None:
    from firmware_stubs.usim.profile import DEFAULT_PROFILE

    card = make_card(
        {**DEFAULT_PROFILE, "mnc_length": 3, "spn": "Lab Net", "imsi": "310150123456780"}
    )
    card.select_usim()
    card.verify_pin1()
    assert fs.EF_AD.codec.decode(card.send("00b0830004")[0])["mnc_length"] == 3  # ALW
    assert fs.EF_SPN.codec.decode(card.send("00a4000c026f46") and card.send("00b0000011")[0]) == {
        "display_condition": 1,
        "name": "Lab Net",
    }
    assert fs.decode_imsi(card.send("00b0870009")[0]) == "310150123456780"
    assert fs.EF_ACC.codec.decode(card.send("00b0860002")[0]) == (0,)  # last IMSI digit
    assert 27 in fs.EF_UST.codec.decode(card.send("00b0840000")[0])  # GSM access: Kc returned
