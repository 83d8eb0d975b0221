"""The declared card file system: every sample round-trips, declarations are consistent, FCP/TLV parse."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trelab.errors import BadInput
from uicc import fs

SAMPLES = [
    pytest.param(ef, raw, value, id=f"{ef.name}-{i}")
    for ef in fs.all_efs()
    for i, (raw, value) in enumerate(ef.samples)
]


def unit_size(ef: fs.EF) -> int:
    return ef.record_len if isinstance(ef, fs.LinearFixedEF) else ef.size


@pytest.mark.parametrize(("ef", "raw", "value"), SAMPLES)
def test_every_sample_round_trips(ef: fs.EF, raw: bytes, value: object) -> None:
    if isinstance(ef, fs.BerTlvEF):  # data objects one after the other, no padding
        assert len(raw) <= ef.size
    else:
        assert len(raw) == unit_size(ef)
    assert ef.codec.decode(raw) == value
    assert ef.codec.encode(value, unit_size(ef)) == raw


def test_every_ef_has_samples_and_sane_defaults() -> None:
    for ef in fs.all_efs():
        assert ef.samples, ef.name
        if isinstance(ef, fs.LinearFixedEF):
            assert all(len(r) == ef.record_len for r in ef.initial_records())
        elif isinstance(ef, fs.BerTlvEF):
            assert len(ef.initial()) <= ef.size
        else:
            assert len(ef.initial()) == ef.size
            if ef.default is not None:  # a declared default decodes
                ef.codec.decode(ef.default)


def test_declarations_are_consistent() -> None:
    names = [ef.name for ef in fs.all_efs()]
    assert len(names) == len(set(names))
    for df in (fs.MF, *fs.APPLICATIONS):
        fids = [child.fid for child in df.children]
        sfids = [c.sfid for c in df.children if not isinstance(c, fs.DF) and c.sfid is not None]
        assert len(fids) == len(set(fids)), df.name
        assert len(sfids) == len(set(sfids)), df.name
        assert all(1 <= s <= 30 for s in sfids)
    assert fs.ADF_USIM.aid.startswith(bytes.fromhex("a0000000871002"))
    assert fs.EF_IMSI.read is fs.Access.PIN1 and fs.EF_IMSI.update is fs.Access.ADM1
    assert fs.EF_ICCID.update is fs.Access.NEV
    expected = {0x6F07, 0x6FAD, 0x6F38, 0x6F56, 0x6F7E, 0x6F73, 0x6FE3, 0x6F7B, 0x6F46, 0x6F08}
    assert expected <= {c.fid for c in fs.ADF_USIM.children}


def test_imsi_codec_spec_example() -> None:
    # TS 31.102 §4.2.2: length 08, digit 1 with parity 9 (odd count), then swapped BCD
    assert fs.encode_imsi("001010123456789") == bytes.fromhex("080910101032547698")
    # even digit count: parity nibble 1 and an F filler in the last high nibble
    assert fs.encode_imsi("23410123456789") == bytes.fromhex("082143012143658 7f9".replace(" ", ""))
    assert fs.decode_imsi(bytes.fromhex("0821430121436587f9")) == "23410123456789"


@pytest.mark.parametrize(
    "raw",
    [
        "0819430191603254f6",  # parity 9 claims odd, 14 digits
        "090910101032547698",  # length 9
        "08a910101032547698",  # first digit not BCD
        "08091010103254769a",  # nibble A
        "0809",  # length byte longer than the data
    ],
)
def test_imsi_decode_rejects(raw: str) -> None:
    with pytest.raises(BadInput):
        fs.decode_imsi(bytes.fromhex(raw))


@given(st.text(alphabet="0123456789", min_size=6, max_size=15))
def test_imsi_round_trip_any(imsi: str) -> None:
    assert fs.decode_imsi(fs.encode_imsi(imsi)) == imsi


@given(st.text(alphabet="0123456789", min_size=1, max_size=20))
def test_iccid_round_trip_any(iccid: str) -> None:
    assert fs.decode_iccid(fs.encode_iccid(iccid)) == iccid


def test_encoders_reject_bad_values() -> None:
    with pytest.raises(BadInput):
        fs.encode_imsi("12345")
    with pytest.raises(BadInput):
        fs.encode_iccid("1" * 21)
    with pytest.raises(BadInput):
        fs.EF_UST.codec.encode((153,), fs.EF_UST.size)
    with pytest.raises(BadInput):
        fs.EF_SPN.codec.encode({"display_condition": 0, "name": "ü"}, fs.EF_SPN.size)
    with pytest.raises(BadInput):
        fs.EF_FPLMN.codec.encode(("0010",), 12)
    with pytest.raises(BadInput):
        fs.EF_AD.codec.encode({"ue_operation_mode": 0, "additional_info": "00", "mnc_length": 2}, 4)


def test_tlv_and_fcp_parsing() -> None:
    long = fs.encode_tlv(0x80, bytes(200))
    assert long[:3] == b"\x80\x81\xc8"
    assert fs.parse_tlvs(long + b"\xff\xff" + fs.encode_tlv(0x83, b"\x3f\x00")) == [
        (0x80, bytes(200)),
        (0x83, b"\x3f\x00"),
    ]
    for truncated in ("8302 3f".replace(" ", ""), "83", "8081", "8082 0001".replace(" ", "")):
        with pytest.raises(BadInput):
            fs.parse_tlvs(bytes.fromhex(truncated))
    fcp = fs.parse_fcp(
        bytes.fromhex("621582054221002002830 22f008a01058002004088 01f0".replace(" ", ""))
    )
    assert fcp.structure == "linear-fixed" and fcp.record_length == 0x20 and fcp.records == 2
    assert fcp.fid == 0x2F00 and fcp.size == 0x40 and fcp.sfi == 0x1E and fcp.pin1_enabled is None
    with pytest.raises(BadInput):
        fs.parse_fcp(bytes.fromhex("6f00"))
    with pytest.raises(BadInput):
        fs.parse_fcp(bytes.fromhex("6203830100"))


@pytest.mark.parametrize("ef", list(fs.all_efs()), ids=lambda ef: ef.name)
@settings(max_examples=40, deadline=None)
@given(data=st.binary(max_size=300))
def test_every_codec_decodes_any_bytes_or_says_bad_input(ef: fs.EF, data: bytes) -> None:
    """A physical card's file can hold anything: decoding answers a value or BadInput."""
    try:
        value = ef.codec.decode(data)
    except BadInput:
        return
    unit = ef.record_len if isinstance(ef, fs.LinearFixedEF) else ef.size
    if len(data) == unit:  # what decodes at the declared size encodes back to a valid file
        try:
            again = ef.codec.encode(value, unit)
        except BadInput:
            return
        assert ef.codec.decode(again) == value
