"""Properties where a round trip is the better oracle than "raises only typed errors": each
parser and its encoder are inverse on what the parser accepts, so an accepted input has one
encoding and a value survives the trip unchanged (hypothesis, in-process, a few seconds)."""

from __future__ import annotations

import dataclasses
import string

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from tpm2_pytss import TPM2B_PUBLIC

from protocol import messages as m
from tests.fuzz import fuzz_messages
from tests.fuzz.fuzz_tpm_identity import AKS, SRK
from tpm.marshal import unmarshal_exact
from tpm.pcrsel import (
    DIGEST_SIZES,
    MAX_PCR,
    format_selection,
    normalise,
    parse_selection,
    selection_from_bitmaps,
    selection_to_bitmaps,
)
from trelab.digits import MAX_DIGITS, is_decimal, parse_decimal
from trelab.errors import BadInput, TrelabError
from trelab.hexargs import parse_hex
from uicc import fs
from uicc.apdu import CommandApdu, parse_command
from uicc.links.at_codec import build_csim, parse_crsm, parse_csim

PROPERTY = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# ---- digits and hex ------------------------------------------------------------------------------


@PROPERTY
@given(st.integers(0, 10**MAX_DIGITS - 1), st.integers(0, 3))
def test_decimal_text_reads_back_as_its_value(value: int, zeros: int) -> None:
    text = "0" * zeros + str(value)
    if len(text) <= MAX_DIGITS:
        assert parse_decimal("n", text) == value


@PROPERTY
@given(st.text(max_size=45))
def test_only_ascii_digit_text_is_decimal(text: str) -> None:
    try:
        value = parse_decimal("n", text)
    except BadInput:
        assert not (text.isascii() and text.isdigit() and 0 < len(text) <= MAX_DIGITS)
        return
    assert text.isascii() and text.isdigit() and value == int(text)
    assert is_decimal(text)


@PROPERTY
@given(st.binary(max_size=64), st.sampled_from(["", "0x", "0X"]), st.booleans(), st.booleans())
def test_hex_text_reads_back_as_its_bytes(
    data: bytes, prefix: str, upper: bool, colons: bool
) -> None:
    digits = data.hex().upper() if upper else data.hex()
    if colons:
        digits = ":".join(digits[i : i + 2] for i in range(0, len(digits), 2))
    assert parse_hex("h", prefix + digits) == data


@PROPERTY
@given(st.text(alphabet=string.hexdigits + " :xX²٣g", max_size=40))
def test_hex_parser_gives_bytes_or_bad_input(text: str) -> None:
    try:
        value = parse_hex("h", text)
    except BadInput:
        return
    cleaned = text.strip().removeprefix("0x").removeprefix("0X").replace(" ", "").replace(":", "")
    assert value.hex() == cleaned.lower()


# ---- PCR selections ------------------------------------------------------------------------------

selections = st.lists(
    st.tuples(
        st.sampled_from(sorted(DIGEST_SIZES)),
        st.sets(st.integers(0, MAX_PCR), min_size=1).map(lambda s: tuple(sorted(s))),
    ),
    min_size=1,
    max_size=len(DIGEST_SIZES),
    unique_by=lambda bank: bank[0],
).map(tuple)


@PROPERTY
@given(selections)
def test_pcr_selection_text_round_trips(selection: tuple[tuple[str, tuple[int, ...]], ...]) -> None:
    assert parse_selection(format_selection(selection)) == selection


@PROPERTY
@given(selections)
def test_pcr_selection_bitmaps_round_trip(
    selection: tuple[tuple[str, tuple[int, ...]], ...],
) -> None:
    assert selection_from_bitmaps(selection_to_bitmaps(selection)) == normalise(selection)


@PROPERTY
@given(st.text(alphabet="sha125:0123456789,+ ²", max_size=30))
def test_an_accepted_pcr_selection_formats_to_what_parses_to_it(text: str) -> None:
    try:
        selection = parse_selection(text)
    except BadInput:
        return
    assert parse_selection(format_selection(selection)) == selection


# ---- APDUs and the AT codec ----------------------------------------------------------------------

commands = st.builds(
    CommandApdu,
    st.integers(0, 255),
    st.integers(0, 255),
    st.integers(0, 255),
    st.integers(0, 255),
    st.binary(max_size=255),
    st.none() | st.integers(1, 256),
)


@PROPERTY
@given(commands)
def test_a_command_apdu_round_trips(apdu: CommandApdu) -> None:
    assert parse_command(apdu.encode()) == apdu


@PROPERTY
@given(st.binary(max_size=262))
def test_an_accepted_command_apdu_has_one_encoding(raw: bytes) -> None:
    try:
        apdu = parse_command(raw)
    except BadInput:
        return
    assert apdu.encode() == raw


@PROPERTY
@given(st.binary(min_size=2, max_size=258))
def test_a_csim_answer_round_trips(response: bytes) -> None:
    line = f'+CSIM: {2 * len(response)},"{response.hex().upper()}"'
    assert parse_csim(("", line)) == response


@PROPERTY
@given(st.binary(min_size=4, max_size=261))
def test_a_csim_command_carries_its_length_in_hex_digits(apdu: bytes) -> None:
    length, _, quoted = build_csim(apdu).removeprefix("AT+CSIM=").partition(",")
    assert int(length) == len(quoted.strip('"')) and bytes.fromhex(quoted.strip('"')) == apdu


@PROPERTY
@given(st.integers(0, 255), st.integers(0, 255), st.binary(max_size=64))
def test_a_crsm_answer_round_trips(sw1: int, sw2: int, data: bytes) -> None:
    line = f"+CRSM: {sw1},{sw2}" + (f',"{data.hex().upper()}"' if data else "")
    assert parse_crsm((line,)) == (sw1 << 8 | sw2, data)


# ---- card file codecs ----------------------------------------------------------------------------


@PROPERTY
@given(st.text(alphabet=string.digits, min_size=6, max_size=15))
def test_an_imsi_round_trips_through_ef_imsi(imsi: str) -> None:
    assert fs.decode_imsi(fs.encode_imsi(imsi)) == imsi


@PROPERTY
@given(st.text(alphabet=string.digits, min_size=1, max_size=20))
def test_digits_round_trip_through_swapped_bcd(digits: str) -> None:
    size = (len(digits) + 1) // 2 + 1
    assert fs.decode_bcd_swapped(fs.encode_bcd_swapped(digits, size)) == digits


@PROPERTY
@given(st.binary(max_size=12))
def test_an_accepted_ef_imsi_re_encodes_to_its_digits(data: bytes) -> None:
    try:
        imsi = fs.decode_imsi(data)
    except BadInput:
        return
    if imsi is not None and 6 <= len(imsi) <= 15:
        assert fs.decode_imsi(fs.encode_imsi(imsi)) == imsi


# ---- provisioning messages -----------------------------------------------------------------------

_SAMPLES = fuzz_messages._samples()
_NEAR = string.ascii_lowercase + string.digits + "-_.:,"


def _values_like(value: object) -> st.SearchStrategy[object]:
    """Values of ``value``'s type, most of them close to valid (same length, same alphabet)."""
    if isinstance(value, bool):
        return st.booleans()
    if isinstance(value, bytes):
        return st.binary(min_size=len(value), max_size=len(value)) | st.binary(max_size=80)
    if isinstance(value, str):
        return st.text(alphabet=_NEAR, min_size=1, max_size=24) | st.text(max_size=24)
    assert isinstance(value, int)
    return st.integers(0, 2**32) | st.integers(-(2**70), 2**70)


def _changeable_fields(msg: m.Message) -> list[str]:
    return [
        f.name
        for f in dataclasses.fields(msg)
        if isinstance(getattr(msg, f.name), (bytes, str, int)) and f.name != "version"
    ]


@settings(
    PROPERTY,
    max_examples=60,
    suppress_health_check=[HealthCheck.filter_too_much, HealthCheck.too_slow],
)
@given(st.data())
@pytest.mark.parametrize("sample", _SAMPLES, ids=lambda x: type(x).__name__)
def test_a_message_with_any_accepted_field_value_round_trips(
    sample: m.Message, data: st.DataObject
) -> None:
    name = data.draw(st.sampled_from(_changeable_fields(sample)))
    value = data.draw(_values_like(getattr(sample, name)))
    try:
        msg = dataclasses.replace(sample, **{name: value})
    except TrelabError:
        assume(False)
        return
    wire = m.encode(msg)
    assert m.decode(wire) == msg
    assert m.encode(m.decode(wire)) == wire


# ---- TPM structures ------------------------------------------------------------------------------


@PROPERTY
@given(
    st.sampled_from([*AKS, SRK]),
    st.lists(st.tuples(st.integers(0, 400), st.integers(0, 255)), max_size=3),
    st.integers(0, 3),
)
def test_an_accepted_tpm2b_public_is_exactly_its_own_encoding(
    genuine: bytes, edits: list[tuple[int, int]], cut: int
) -> None:
    blob = bytearray(genuine)
    for at, value in edits:
        blob[at % len(blob)] = value
    blob = blob[: len(blob) - cut]
    try:
        public = unmarshal_exact(TPM2B_PUBLIC, bytes(blob), "public")
    except BadInput:
        return
    assert bytes(public.marshal()) == bytes(blob)
