"""PCR selection text and bitmaps (tpm2-tools syntax; TPM 2.0 Part 2 §10.6)."""

from __future__ import annotations

import hashlib

import pytest

from tpm.pcrsel import (
    format_selection,
    normalise,
    parse_selection,
    selection_from_bitmaps,
    selection_to_bitmaps,
    values_digest,
)
from trelab.errors import BadInput


def test_parse_and_format_round_trip() -> None:
    sel = parse_selection("sha256:16,0,3+sha1:7")
    assert sel == (("sha256", (0, 3, 16)), ("sha1", (7,)))
    assert format_selection(sel) == "sha256:0,3,16+sha1:7"
    assert parse_selection(format_selection(sel)) == sel


@pytest.mark.parametrize(
    "text",
    [
        "",
        "sha256",
        "md5:0",
        "sha256:",
        "sha256:0,x",
        "sha256:32",
        "sha256:1,1",
        "sha256:0+sha256:1",
        "garbage\n",
    ],
)
def test_malformed_selection_is_bad_input(text: str) -> None:
    with pytest.raises(BadInput):
        parse_selection(text)


def test_bitmaps_follow_part2_layout() -> None:
    # PCR i is bit i % 8 of byte i // 8; PC Client TPMs expect at least 3 bytes.
    bitmaps = selection_to_bitmaps((("sha256", (0, 1, 2, 3, 16)),))
    assert bitmaps == [("sha256", bytes([0x0F, 0x00, 0x01]))]
    assert selection_from_bitmaps(bitmaps) == (("sha256", (0, 1, 2, 3, 16)),)
    assert selection_to_bitmaps((("sha1", (31,)),)) == [("sha1", bytes([0, 0, 0, 0x80]))]


def test_normalise_drops_empty_banks() -> None:
    assert normalise((("sha1", ()), ("sha256", (2, 1)))) == (("sha256", (1, 2)),)


def test_values_digest_is_plain_hash_of_concatenation() -> None:
    values = bytes(range(64))
    assert values_digest("sha256", values) == hashlib.sha256(values).digest()
    assert values_digest("sha384", values) == hashlib.sha384(values).digest()
