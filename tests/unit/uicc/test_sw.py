"""Status words explained (TS 102 221 §10.2, TS 31.102 §7.3)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from uicc import sw


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (0x9000, "normal ending"),
        (0x6A82, "file or application not found"),
        (0x6982, "security status not satisfied"),
        (0x6983, "blocked"),
        (0x6700, "wrong length"),
        (0x6D00, "instruction code not supported"),
        (0x6E00, "class not supported"),
        (0x9862, "incorrect MAC"),
        (0x6985, "conditions of use not satisfied"),
        (0x6A86, "incorrect parameters P1 to P2"),
        (0x6881, "logical channel not supported"),
        (0x6135, "53 response bytes still available"),
        (0x6C1D, "exact length is 29"),
        (0x63C2, "2 retries remaining"),
        (0x9110, "proactive command of 16 bytes"),
        (0x9F22, "34 response bytes available"),
        (0x6F12, "technical problem"),
        (0x6BFF, "unknown status word"),
    ],
)
def test_explain(value: int, text: str) -> None:
    assert text in sw.explain_sw(value)


def test_constants_are_explained() -> None:
    for name in sw.__all__:
        if name.startswith("SW_"):
            value = getattr(sw, name)
            assert sw.is_valid_sw(value), name
            assert sw.explain_sw(value) != "unknown status word", name


@given(st.integers(-(2**20), 2**20))
def test_explain_never_raises(value: int) -> None:
    text = sw.explain_sw(value)
    assert text and "\n" not in text


def test_valid_sw_and_bytes() -> None:
    assert sw.is_valid_sw(0x9000) and sw.is_valid_sw(0x6A82)
    assert not sw.is_valid_sw(0x6000) and not sw.is_valid_sw(0x1234) and not sw.is_valid_sw(0x10000)
    assert sw.sw_bytes(0x6A82) == b"\x6a\x82"
    assert sw.explain_sw(0x10000) == "not a status word"
